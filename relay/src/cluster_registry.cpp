#include "cluster_registry.h"

#include <nats/nats.h>
#include <rapidjson/document.h>
#include <sodium.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <limits>
#include <stdexcept>
#include <utility>
#include <vector>

#include "log.h"
#include "mesh/proto/codec.h"
#include "nats_options.h"

namespace mesh::relay {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr std::string_view kMeshPrefix = "mesh.";
constexpr std::string_view kTokenPrefix = "token.";
// The resume-token hash key every relay of the cluster uses.
constexpr const char* kTokenKeyKey = "relay.token-key";
// How long one JetStream request (a KV get or write) may take.
constexpr std::int64_t kRequestWaitMs = 1000;
// A registry write retries until this long has passed, then answers 503.
// When the server that led the bucket's stream dies, JetStream takes some
// seconds to elect another (about 6 s measured with nats-server 2.9.10).
constexpr auto kWriteDeadline = 12s;
// ... or until the connection has been down this long.
constexpr auto kDisconnectedGiveUp = 3s;
constexpr auto kRetryPause = 100ms;
// The watcher probes the bucket's last revision this often.
constexpr auto kProbeEvery = 1s;
// A watcher that has not moved while the bucket is ahead of it this long is
// recreated (its consumer may have been on a server that died).
constexpr auto kStalledWatch = 4s;
// Applied revision and watched tokens are saved at most this often.
constexpr auto kSaveEvery = 500ms;

std::int64_t wallClockMs() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::string lastNatsError(natsStatus s) {
  const char* detail = nats_GetLastError(nullptr);
  std::string out = natsStatus_GetText(s);
  if (detail && *detail && out != detail) out += std::string(" (") + detail + ")";
  return out;
}

std::string hexOf(std::string_view bytes) {
  std::string out(bytes.size() * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                 bytes.size());
  out.pop_back();
  return out;
}

std::optional<std::string> fromHex(std::string_view hex, std::size_t bytes) {
  std::string out(bytes, '\0');
  std::size_t got = 0;
  const char* end = nullptr;
  if (hex.size() != bytes * 2 ||
      sodium_hex2bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), hex.data(),
                     hex.size(), nullptr, &got, &end) != 0 ||
      got != bytes) {
    return std::nullopt;
  }
  return out;
}

std::string meshIdOfKey(std::string_view key, std::string_view prefix) {
  std::string id(key.substr(prefix.size()));
  std::replace(id.begin(), id.end(), '=', '.');
  return id;
}

// The bucket's value of a mesh: everything but the meshId (the key) and the
// revision (the entry's). Never a secret.
std::string encodeMesh(const ReplicaRecord& r) {
  std::string out = "{\"name\":";
  proto::appendJsonString(out, r.name);
  out += ",\"hash\":";
  proto::appendJsonString(out, r.secretHash);
  out += ",\"createdAt\":" + std::to_string(r.createdAtMs);
  out += ",\"updatedAt\":" + std::to_string(r.updatedAtMs);
  out += ",\"secretSetAt\":" + std::to_string(r.secretSetMs);
  out += '}';
  return out;
}

std::optional<ReplicaRecord> decodeMesh(std::string meshId, std::string_view value,
                                        std::uint64_t revision) {
  rapidjson::Document d;
  d.Parse(value.data(), value.size());
  if (d.HasParseError() || !d.IsObject()) return std::nullopt;
  auto str = [&](const char* k) -> std::optional<std::string> {
    auto it = d.FindMember(k);
    if (it == d.MemberEnd() || !it->value.IsString()) return std::nullopt;
    return std::string(it->value.GetString(), it->value.GetStringLength());
  };
  auto num = [&](const char* k) -> std::optional<std::int64_t> {
    auto it = d.FindMember(k);
    if (it == d.MemberEnd() || !it->value.IsInt64()) return std::nullopt;
    return it->value.GetInt64();
  };
  auto name = str("name");
  auto hash = str("hash");
  auto created = num("createdAt");
  auto updated = num("updatedAt");
  auto secretAt = num("secretSetAt");
  if (!name || !hash || hash->empty() || !created || !updated || !secretAt) return std::nullopt;
  return ReplicaRecord{std::move(meshId), std::move(*name), std::move(*hash), *created,
                       *updated,          *secretAt,        revision};
}

std::string encodeToken(const TokenReplica& t) {
  return "{\"hash\":\"" + hexOf(t.hash) + "\",\"expiresAt\":" + std::to_string(t.expiresAtMs) +
         ",\"secretSetAt\":" + std::to_string(t.secretSetMs) + "}";
}

std::optional<TokenReplica> decodeToken(std::string meshId, std::string_view value) {
  rapidjson::Document d;
  d.Parse(value.data(), value.size());
  if (d.HasParseError() || !d.IsObject()) return std::nullopt;
  auto h = d.FindMember("hash");
  auto e = d.FindMember("expiresAt");
  auto s = d.FindMember("secretSetAt");
  if (h == d.MemberEnd() || !h->value.IsString() || e == d.MemberEnd() || !e->value.IsInt64() ||
      s == d.MemberEnd() || !s->value.IsInt64()) {
    return std::nullopt;
  }
  auto hash = fromHex(std::string_view(h->value.GetString(), h->value.GetStringLength()), 32);
  if (!hash) return std::nullopt;
  return TokenReplica{std::move(meshId), std::move(*hash), e->value.GetInt64(),
                      s->value.GetInt64()};
}

void connectedLater(natsConnection* /*nc*/, void* /*closure*/) {
  LOG_INFO("registry: connected to NATS");
}

std::string hostName() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof buf - 1) != 0) return "relay";
  return buf;
}

}  // namespace

std::string registryKeyFor(std::string_view prefix, std::string_view meshId) {
  std::string key(prefix);
  key += meshId;
  std::replace(key.begin() + static_cast<std::ptrdiff_t>(prefix.size()), key.end(), '.', '=');
  return key;
}

struct ClusterRegistry::Nats {
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;        // gets and writes (watcher, writers)
  jsCtx* jsTokens = nullptr;  // pipelined token publishes
  std::atomic<kvStore*> kv{nullptr};

  ~Nats() {
    if (kvStore* k = kv.load()) kvStore_Destroy(k);
    jsCtx_Destroy(jsTokens);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
  }

  // One registry write's attempts: retried while the deadline allows and
  // the connection has not been down too long.
  struct Attempts {
    Clock::time_point deadline = Clock::now() + kWriteDeadline;
    Clock::time_point downSince{};
    std::string lastError = "the registry bucket is not reachable yet";
  };
  bool retry(Attempts& a, std::string error) {
    if (!error.empty()) a.lastError = std::move(error);
    LOG_DEBUG("registry: write attempt failed: " << a.lastError);
    const auto now = Clock::now();
    if (now >= a.deadline) return false;
    if (natsConnection_Status(nc) != NATS_CONN_STATUS_CONNECTED) {
      if (a.downSince == Clock::time_point{}) {
        a.downSince = now;
      } else if (now - a.downSince >= kDisconnectedGiveUp) {
        return false;
      }
    } else {
      a.downSince = {};
    }
    std::this_thread::sleep_for(kRetryPause);
    return true;
  }

  // The mesh's entry in the bucket; nullopt when it has none. False on any
  // error (unreachable, timeout).
  bool getMesh(const std::string& meshId, std::optional<ReplicaRecord>& out, std::string& error) {
    out.reset();
    kvStore* k = kv.load();
    if (!k) {
      error = "the registry bucket is not reachable yet";
      return false;
    }
    kvEntry* e = nullptr;
    const std::string key = registryKeyFor(kMeshPrefix, meshId);
    const natsStatus s = kvStore_Get(&e, k, key.c_str());
    if (s == NATS_NOT_FOUND) return true;
    if (s != NATS_OK) {
      error = lastNatsError(s);
      return false;
    }
    out = decodeMesh(meshId,
                     std::string_view(static_cast<const char*>(kvEntry_Value(e)),
                                      static_cast<std::size_t>(kvEntry_ValueLen(e))),
                     kvEntry_Revision(e));
    kvEntry_Destroy(e);
    if (!out) {
      error = "the bucket's entry of " + meshId + " is not readable";
      return false;
    }
    return true;
  }
};

ClusterRegistry::ClusterRegistry(const Config& config, Registry& registry, Hooks hooks)
    : config_(config),
      registry_(registry),
      hooks_(std::move(hooks)),
      nats_(std::make_unique<Nats>()) {
  const std::string name =
      (config.relayId.empty() ? hostName() + ":" + std::to_string(config.port) : config.relayId) +
      " registry";
  NatsOptionsPtr opts = makeNatsOptions(config, name);
  // With a callback set, a first connect that fails returns at once and
  // goes on in the background; without one, libnats 3.4.1 blocks in
  // natsConnection_Connect until a server answers, and the relay would not
  // start while NATS is down.
  if (natsOptions_SetRetryOnFailedConnect(opts.get(), true, &connectedLater, nullptr) != NATS_OK) {
    throw std::runtime_error("NATS: cannot set retry on failed connect");
  }
  const natsStatus s = natsConnection_Connect(&nats_->nc, opts.get());
  // Not yet connected: the client keeps trying in the background
  // (RetryOnFailedConnect) while the relay serves from its own copy.
  if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) {
    throw std::runtime_error("NATS (registry connection): " + lastNatsError(s));
  }
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = kRequestWaitMs;
  if (natsConnection_JetStream(&nats_->js, nats_->nc, &jo) != NATS_OK) {
    throw std::runtime_error("NATS: cannot open a JetStream context for the registry");
  }
  jsOptions_Init(&jo);
  jo.Wait = kRequestWaitMs;
  jo.PublishAsync.MaxPending = 4096;
  if (natsConnection_JetStream(&nats_->jsTokens, nats_->nc, &jo) != NATS_OK) {
    throw std::runtime_error("NATS: cannot open a JetStream context for resume tokens");
  }
  appliedRevision_ = registry_.appliedRevision();
  registry_.setTokenListener([this](const TokenReplica& t) { queueToken(t); });
  writers_ = std::make_unique<WorkerPool>(2);
  watcher_ = std::thread([this] { watchLoop(); });
  publisher_ = std::thread([this] { publishLoop(); });
}

ClusterRegistry::~ClusterRegistry() {
  writers_.reset();  // finishes the writes under way (each has a deadline)
  stop_ = true;
  tokenWake_.notify_all();
  if (watcher_.joinable()) watcher_.join();
  if (publisher_.joinable()) publisher_.join();
  registry_.setTokenListener({});
  try {
    if (registry_.hasPending()) registry_.persistPending();
    registry_.setAppliedRevision(appliedRevision_.load());
  } catch (const std::exception& e) {
    LOG_WARN("registry: could not save the applied revision: " << e.what());
  }
}

void ClusterRegistry::submit(std::function<void()> job) {
  writers_->post(std::move(job));
}

ClusterRegistry::Status ClusterRegistry::status() const {
  Status st;
  st.reachable = reachable_.load();
  st.bucketRevision = bucketRevision_.load();
  st.appliedRevision = appliedRevision_.load();
  st.caughtUp = caughtUp_.load();
  st.writesUnavailable = writesUnavailable_.load();
  st.watchRestarts = watchRestarts_.load();
  st.tokensPublished = tokensPublished_.load();
  st.tokensApplied = tokensApplied_.load();
  return st;
}

// ---- the bucket and the watcher ----

bool ClusterRegistry::ensureBucket() {
  if (nats_->kv.load()) return true;
  if (natsConnection_Status(nats_->nc) != NATS_CONN_STATUS_CONNECTED) return false;
  kvStore* kv = nullptr;
  natsStatus s = js_KeyValue(&kv, nats_->js, kRegistryBucket);
  if (s != NATS_OK) {
    // Replicated on up to three servers: a majority survives one server's
    // loss. The servers this connection knows of (those it was given and
    // those the cluster told it about) bound the count.
    char** servers = nullptr;
    int count = 0;
    if (natsConnection_GetServers(nats_->nc, &servers, &count) == NATS_OK) {
      for (int i = 0; i < count; ++i) free(servers[i]);
      free(servers);
    }
    kvConfig cfg;
    kvConfig_Init(&cfg);
    cfg.Bucket = kRegistryBucket;
    cfg.Description = "mesh-relay registry (docs/cluster.md)";
    cfg.History = 1;
    cfg.StorageType = js_FileStorage;
    cfg.Replicas = std::clamp(count, 1, 3);
    s = js_CreateKeyValue(&kv, nats_->js, &cfg);
    if (s != NATS_OK) {
      // Another relay may have created it meanwhile.
      s = js_KeyValue(&kv, nats_->js, kRegistryBucket);
    } else {
      LOG_INFO("registry: created bucket " << kRegistryBucket << " with " << cfg.Replicas
                                           << " replicas");
    }
  }
  if (s != NATS_OK) {
    LOG_DEBUG("registry: bucket not reachable: " << lastNatsError(s));
    return false;
  }
  nats_->kv = kv;
  return true;
}

void ClusterRegistry::shareTokenKey() {
  kvStore* kv = nats_->kv.load();
  const std::string ours = registry_.tokenKey();
  kvEntry* e = nullptr;
  natsStatus s = kvStore_Get(&e, kv, kTokenKeyKey);
  if (s == NATS_NOT_FOUND) {
    // The first relay of the cluster gives its key: its tokens stay valid.
    const std::string hex = hexOf(ours);
    std::uint64_t rev = 0;
    if (kvStore_Create(&rev, kv, kTokenKeyKey, hex.data(), static_cast<int>(hex.size())) ==
        NATS_OK) {
      return;
    }
    s = kvStore_Get(&e, kv, kTokenKeyKey);
  }
  if (s != NATS_OK) return;  // the watcher delivers it later
  applyEntry(e, nullptr);
  kvEntry_Destroy(e);
}

void ClusterRegistry::applyEntry(void* raw, std::unordered_map<std::string, std::uint64_t>* seen) {
  auto* e = static_cast<kvEntry*>(raw);
  const std::string_view key = kvEntry_Key(e);
  const std::uint64_t rev = kvEntry_Revision(e);
  const kvOperation op = kvEntry_Operation(e);
  const std::string_view value(static_cast<const char*>(kvEntry_Value(e)),
                               static_cast<std::size_t>(std::max(0, kvEntry_ValueLen(e))));
  if (key.substr(0, kMeshPrefix.size()) == kMeshPrefix) {
    std::string meshId = meshIdOfKey(key, kMeshPrefix);
    if (seen) (*seen)[meshId] = rev;
    if (op == kvOp_Put) {
      {
        std::lock_guard lock(removedMutex_);
        if (auto it = removedAt_.find(meshId); it != removedAt_.end() && it->second >= rev) return;
      }
      auto record = decodeMesh(meshId, value, rev);
      if (!record) {
        LOG_WARN("registry: unreadable bucket entry " << key << " (revision " << rev
                                                      << "), skipped");
        return;
      }
      if (registry_.applyReplica(*record) == ReplicaChange::SecretChanged && hooks_.onRevoked) {
        hooks_.onRevoked(meshId, "secret_rotated");
      }
    } else if (registry_.applyReplicaRemoval(meshId, rev) && hooks_.onRevoked) {
      hooks_.onRevoked(meshId, "mesh_deleted");
    }
  } else if (key.substr(0, kTokenPrefix.size()) == kTokenPrefix) {
    if (op != kvOp_Put) return;
    if (auto token = decodeToken(meshIdOfKey(key, kTokenPrefix), value)) {
      if (registry_.applyTokenReplica(*token)) ++tokensApplied_;
    }
  } else if (key == kTokenKeyKey && op == kvOp_Put) {
    auto shared = fromHex(value, 32);
    if (!shared) {
      LOG_WARN("registry: the bucket's token key is not 64 hex digits; keeping ours");
    } else if (*shared != registry_.tokenKey()) {
      registry_.adoptTokenKey(*shared);
      LOG_INFO("registry: adopted the cluster's resume-token key");
    }
  }
}

void ClusterRegistry::uploadMissing(
    const std::unordered_map<std::string, std::uint64_t>& inBucket) {
  kvStore* kv = nats_->kv.load();
  std::uint64_t lastInitial = 0;
  for (const auto& [id, rev] : inBucket) lastInitial = std::max(lastInitial, rev);
  std::size_t uploaded = 0, swept = 0;
  for (const ReplicaRecord& r : registry_.replicas()) {
    if (inBucket.count(r.meshId)) continue;
    if (r.revision > 0) {
      // Replicated once, and gone from the bucket without a delete marker
      // (purged) while this relay was away: gone here too.
      if (r.revision <= lastInitial && registry_.applyReplicaRemoval(r.meshId, lastInitial + 1)) {
        ++swept;
        if (hooks_.onRevoked) hooks_.onRevoked(r.meshId, "mesh_deleted");
      }
      continue;
    }
    // Never in the bucket: a mesh of this relay from before cluster mode.
    // Create only: a mesh someone else put there meanwhile wins.
    const std::string key = registryKeyFor(kMeshPrefix, r.meshId);
    const std::string value = encodeMesh(r);
    std::uint64_t rev = 0;
    if (kvStore_Create(&rev, kv, key.c_str(), value.data(), static_cast<int>(value.size())) ==
        NATS_OK) {
      ReplicaRecord up = r;
      up.revision = rev;
      registry_.applyReplica(up);
      ++uploaded;
    }
  }
  if (uploaded || swept) {
    LOG_INFO("registry: uploaded " << uploaded << " meshes to the bucket, removed " << swept
                                   << " the bucket no longer has");
  }
}

void ClusterRegistry::probe() {
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = 1000;
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  const std::string stream = std::string("KV_") + kRegistryBucket;
  if (js_GetStreamInfo(&si, nats_->js, stream.c_str(), &jo, &jerr) == NATS_OK) {
    bucketRevision_ = si->State.LastSeq;
    reachable_ = 1;
    jsStreamInfo_Destroy(si);
  } else {
    reachable_ = 0;
  }
}

void ClusterRegistry::watchLoop() {
  bool tokenKeyShared = false;
  while (!stopping()) {
    if (!ensureBucket()) {
      reachable_ = 0;
      std::this_thread::sleep_for(250ms);
      continue;
    }
    if (!tokenKeyShared) {
      shareTokenKey();
      tokenKeyShared = true;
    }
    kvWatcher* w = nullptr;
    kvWatchOptions wo;
    kvWatchOptions_Init(&wo);
    if (kvStore_WatchAll(&w, nats_->kv.load(), &wo) != NATS_OK) {
      reachable_ = 0;
      std::this_thread::sleep_for(250ms);
      continue;
    }
    bool initial = true;
    std::unordered_map<std::string, std::uint64_t> seen;
    auto lastProbe = Clock::time_point{};
    auto lastSave = Clock::now();
    auto lastProgress = Clock::now();
    std::uint64_t savedRevision = registry_.appliedRevision();
    std::uint64_t progressMark = appliedRevision_.load();
    while (!stopping()) {
      kvEntry* e = nullptr;
      const natsStatus s = kvWatcher_Next(&e, w, 200);
      if (s == NATS_OK) {
        if (!e) {
          uploadMissing(seen);
          seen.clear();
          initial = false;
          caughtUp_ = true;
          LOG_INFO("registry: caught up with the bucket at revision "
                   << appliedRevision_.load() << ", " << registry_.size() << " meshes");
        } else {
          const std::uint64_t rev = kvEntry_Revision(e);
          try {
            applyEntry(e, initial ? &seen : nullptr);
          } catch (const std::exception& ex) {
            LOG_ERROR("registry: applying " << kvEntry_Key(e) << " failed: " << ex.what());
          }
          kvEntry_Destroy(e);
          if (rev > appliedRevision_.load()) appliedRevision_ = rev;
        }
      } else if (s != NATS_TIMEOUT) {
        LOG_WARN("registry: watch ended (" << lastNatsError(s) << "); watching again");
        ++watchRestarts_;
        break;
      }
      const auto now = Clock::now();
      if (now - lastSave >= kSaveEvery && (s == NATS_TIMEOUT || now - lastSave >= 4 * kSaveEvery)) {
        lastSave = now;
        try {
          if (registry_.hasPending()) registry_.persistPending();
          if (appliedRevision_.load() != savedRevision) {
            savedRevision = appliedRevision_.load();
            registry_.setAppliedRevision(savedRevision);
          }
        } catch (const std::exception& ex) {
          LOG_WARN("registry: saving watched changes failed: " << ex.what());
        }
      }
      if (now - lastProbe >= kProbeEvery) {
        lastProbe = now;
        probe();
        const std::uint64_t applied = appliedRevision_.load();
        if (applied != progressMark) {
          progressMark = applied;
          lastProgress = now;
        } else if (reachable_.load() == 1 && bucketRevision_.load() > applied &&
                   now - lastProgress >= kStalledWatch) {
          LOG_WARN("registry: watch stalled at revision "
                   << applied << " (bucket at " << bucketRevision_.load() << "); watching again");
          ++watchRestarts_;
          break;
        } else if (bucketRevision_.load() <= applied) {
          lastProgress = now;
        }
      }
    }
    kvWatcher_Stop(w);
    kvWatcher_Destroy(w);
  }
}

// ---- resume tokens ----

void ClusterRegistry::queueToken(const TokenReplica& token) {
  {
    std::lock_guard lock(tokenMutex_);
    tokens_[token.meshId] = token;
  }
  tokenWake_.notify_one();
}

void ClusterRegistry::publishLoop() {
  while (true) {
    std::map<std::string, TokenReplica> batch;
    {
      std::unique_lock lock(tokenMutex_);
      tokenWake_.wait(lock, [&] { return stopping() || !tokens_.empty(); });
      if (stopping()) return;
      batch.swap(tokens_);
    }
    if (!nats_->kv.load() || natsConnection_Status(nats_->nc) != NATS_CONN_STATUS_CONNECTED) {
      // Kept (unless a newer token came meanwhile) until the bucket answers.
      std::unique_lock lock(tokenMutex_);
      for (auto& [id, t] : batch) tokens_.try_emplace(id, std::move(t));
      tokenWake_.wait_for(lock, 500ms, [&] { return stopping(); });
      continue;
    }
    for (const auto& [id, t] : batch) {
      const std::string subject =
          std::string("$KV.") + kRegistryBucket + "." + registryKeyFor(kTokenPrefix, id);
      const std::string value = encodeToken(t);
      if (js_PublishAsync(nats_->jsTokens, subject.c_str(), value.data(),
                          static_cast<int>(value.size()), nullptr) == NATS_OK) {
        ++tokensPublished_;
      }
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 5000;
    if (js_PublishAsyncComplete(nats_->jsTokens, &po) != NATS_OK) {
      // Unacknowledged tokens are dropped: their meshes fall back to their
      // secrets on another relay, as without a token.
      natsMsgList pending;
      if (js_PublishAsyncGetPendingList(&pending, nats_->jsTokens) == NATS_OK) {
        natsMsgList_Destroy(&pending);
      }
    }
  }
}

// ---- writes ----

namespace {

// Whether `secret` is the mesh's, for an entry read from the bucket: the
// local verifier when this copy has the same secret, else Argon2id.
bool secretIsRight(const Registry& registry, const ReplicaRecord& rec, const std::string& secret) {
  if (auto local = registry.replica(rec.meshId); local && local->secretSetMs == rec.secretSetMs) {
    const VerifierCheck v = registry.checkVerifier(rec.meshId, secret);
    if (v.outcome == VerifierOutcome::Match) return true;
    if (v.outcome == VerifierOutcome::Mismatch) return false;
  }
  return Registry::hashMatches(rec.secretHash, secret);
}

}  // namespace

std::variant<RegisterOutcome, RegistryUnavailable> ClusterRegistry::registerMesh(
    const std::string& meshId, const std::string& name, const std::string& secret) {
  Nats::Attempts attempts;
  std::optional<std::string> ourHash;
  std::int64_t createdAt = 0;
  const std::string key = registryKeyFor(kMeshPrefix, meshId);
  std::string error;
  do {
    std::optional<ReplicaRecord> rec;
    if (!nats_->getMesh(meshId, rec, error)) continue;
    kvStore* kv = nats_->kv.load();
    std::uint64_t rev = 0;
    if (rec) {
      if (ourHash && rec->secretHash == *ourHash) {
        // Our create went through, its answer did not.
        registry_.applyReplica(*rec, secret);
        return RegisterOutcome::Created;
      }
      if (!secretIsRight(registry_, *rec, secret)) return RegisterOutcome::Conflict;
      if (rec->name == name) {
        // Nothing to write: a node registering on every start costs no KV
        // write.
        registry_.applyReplica(*rec, secret);
        return RegisterOutcome::Updated;
      }
      ReplicaRecord next = *rec;
      next.name = name;
      next.updatedAtMs = wallClockMs();
      const std::string value = encodeMesh(next);
      const natsStatus s = kvStore_Update(&rev, kv, key.c_str(), value.data(),
                                          static_cast<int>(value.size()), rec->revision);
      if (s != NATS_OK) {
        error = lastNatsError(s);  // raced (re-read) or stalled (retried)
        continue;
      }
      next.revision = rev;
      registry_.applyReplica(next, secret);
      return RegisterOutcome::Updated;
    }
    if (!ourHash) {
      ourHash = registry_.hashSecret(secret);
      createdAt = wallClockMs();
    }
    ReplicaRecord fresh{meshId, name, *ourHash, createdAt, createdAt, createdAt, 0};
    const std::string value = encodeMesh(fresh);
    // Create: two relays registering one new meshId at once cannot both win.
    const natsStatus s =
        kvStore_Create(&rev, kv, key.c_str(), value.data(), static_cast<int>(value.size()));
    if (s != NATS_OK) {
      error = lastNatsError(s);
      continue;
    }
    fresh.revision = rev;
    registry_.applyReplica(fresh, secret);
    return RegisterOutcome::Created;
  } while (nats_->retry(attempts, std::exchange(error, {})));
  ++writesUnavailable_;
  return RegistryUnavailable{"cluster registry unavailable: " + attempts.lastError};
}

std::variant<bool, RegistryUnavailable> ClusterRegistry::removeMesh(const std::string& meshId) {
  Nats::Attempts attempts;
  bool tried = false;
  const std::string key = registryKeyFor(kMeshPrefix, meshId);
  std::string error;
  do {
    std::optional<ReplicaRecord> rec;
    if (!nats_->getMesh(meshId, rec, error)) {
      attempts.lastError = error;
      continue;
    }
    if (!rec) {
      // Gone: deleted by our earlier attempt whose answer was lost, or never
      // there (a mesh only in this copy is removed from it).
      const auto local = registry_.replica(meshId);
      if (local && local->revision == 0) return registry_.removeMesh(meshId);
      if (local) registry_.applyReplicaRemoval(meshId, std::numeric_limits<std::uint64_t>::max());
      return tried || local.has_value();
    }
    tried = true;
    const natsStatus s = kvStore_Delete(nats_->kv.load(), key.c_str());
    if (s != NATS_OK) {
      attempts.lastError = lastNatsError(s);
      continue;
    }
    {
      std::lock_guard lock(removedMutex_);
      removedAt_[meshId] = rec->revision;
    }
    registry_.applyReplicaRemoval(meshId, rec->revision + 1);
    return true;
  } while (nats_->retry(attempts, {}));
  ++writesUnavailable_;
  return RegistryUnavailable{"cluster registry unavailable: " + attempts.lastError};
}

std::variant<RotateOutcome, RegistryUnavailable> ClusterRegistry::rotateSecret(
    const std::string& meshId, const std::string& newSecret,
    const std::optional<std::string>& currentSecret) {
  Nats::Attempts attempts;
  std::optional<std::string> newHash;
  std::int64_t setAt = 0;
  std::optional<std::int64_t> checkedSecretOf;  // secretSetMs the current secret matched
  const std::string key = registryKeyFor(kMeshPrefix, meshId);
  do {
    std::optional<ReplicaRecord> rec;
    std::string error;
    if (!nats_->getMesh(meshId, rec, error)) {
      attempts.lastError = error;
      continue;
    }
    if (!rec) return RotateOutcome::UnknownMesh;
    if (newHash && rec->secretHash == *newHash) {
      registry_.applyReplica(*rec, newSecret);
      return RotateOutcome::Rotated;
    }
    if (currentSecret && checkedSecretOf != rec->secretSetMs) {
      if (!secretIsRight(registry_, *rec, *currentSecret)) return RotateOutcome::WrongSecret;
      checkedSecretOf = rec->secretSetMs;
    }
    if (!newHash) {
      newHash = registry_.hashSecret(newSecret);
      setAt = wallClockMs();
      // Two rotations in one millisecond must still differ.
      if (setAt <= rec->secretSetMs) setAt = rec->secretSetMs + 1;
    }
    ReplicaRecord next = *rec;
    next.secretHash = *newHash;
    next.updatedAtMs = setAt;
    next.secretSetMs = std::max(setAt, rec->secretSetMs + 1);
    const std::string value = encodeMesh(next);
    std::uint64_t rev = 0;
    const natsStatus s = kvStore_Update(&rev, nats_->kv.load(), key.c_str(), value.data(),
                                        static_cast<int>(value.size()), rec->revision);
    if (s != NATS_OK) {
      attempts.lastError = lastNatsError(s);
      continue;
    }
    next.revision = rev;
    registry_.applyReplica(next, newSecret);
    return RotateOutcome::Rotated;
  } while (nats_->retry(attempts, {}));
  ++writesUnavailable_;
  return RegistryUnavailable{"cluster registry unavailable: " + attempts.lastError};
}

}  // namespace mesh::relay
