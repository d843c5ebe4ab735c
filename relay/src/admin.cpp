// Routes for operators, on the loop thread: GET /metrics, the admin API
// under /meshes (Authorization: Bearer <admin token>, nothing answers
// without it), and POST /rotate-secret, where a mesh proves its current
// secret to set a new one. Registry writes and Argon2 run on the workers;
// the answer comes back by exchange id.
#include <rapidjson/document.h>
#include <sodium.h>

#include <ctime>

#include "cluster_registry.h"
#include "iso_time.h"
#include "log.h"
#include "server_impl.h"
#include "sqlite_util.h"

namespace mesh::relay {
namespace {

constexpr std::string_view kMeshesPath = "/meshes";
constexpr std::size_t kMinSecretBytes = 16;
constexpr std::size_t kMaxSecretBytes = 256;
// How often the database's writability is probed for the readiness gauge
// (an alert fires on minutes of failure; a probe is one tiny write).
constexpr std::int64_t kDatabaseProbeUs = 15'000'000;

std::string errorJson(std::string_view message) {
  std::string out = "{\"error\":";
  proto::appendJsonString(out, message);
  out += '}';
  return out;
}

void appendIsoTime(std::string& out, std::int64_t ms) {
  if (ms <= 0) {
    out += "null";
    return;
  }
  out += '"';
  out += isoTimeMs(ms);
  out += '"';
}

// `online` is the Router's entry when the mesh is online; `session` its
// connection when it is held here: its address is the client's as the relay
// sees it (after a trusted proxy's forwarded header). A mesh held by another
// relay of a cluster names that relay instead.
// `log` is its flight recorder log, if it has one; `nowUs`/`nowMs` map the
// loop's steady times to wall time.
// `thisRelay` is this relay's id in a cluster (empty when single): a mesh
// held here names it too.
void appendMesh(std::string& out, const MeshRecord& m, const MeshEntry* online, const MeshLog* log,
                std::int64_t nowUs, std::int64_t nowMs, std::string_view thisRelay) {
  const auto* session = online ? static_cast<const Session*>(online->conn) : nullptr;
  out += "{\"meshId\":";
  proto::appendJsonString(out, m.meshId);
  out += ",\"name\":";
  proto::appendJsonString(out, m.name);
  out += online ? ",\"online\":true" : ",\"online\":false";
  if (online && (!online->local() || !thisRelay.empty())) {
    out += ",\"relay\":";
    proto::appendJsonString(out, online->local() ? thisRelay : online->relayId);
  }
  if (session) {
    out += ",\"address\":";
    proto::appendJsonString(out, session->peer);
    out += ",\"since\":";
    appendIsoTime(out, nowMs - (nowUs - session->connectedUs) / 1000);
    // What the authorize hook answered for this session.
    if (!session->claimsJson.empty()) {
      out += ",\"claims\":";
      out += session->claimsJson;
    }
  }
  if (log) {
    out += ",\"frames\":" + std::to_string(log->total());
    if (const auto& refusal = log->lastRefusal()) {
      out += ",\"lastRefusal\":{\"time\":";
      appendIsoTime(out, nowMs - (nowUs - refusal->atUs) / 1000);
      out += ",\"code\":";
      proto::appendJsonString(out, proto::codeText(refusal->errorCode()));
      out += '}';
    }
  }
  out += ",\"createdAt\":";
  appendIsoTime(out, m.createdAtMs);
  out += ",\"updatedAt\":";
  appendIsoTime(out, m.updatedAtMs);
  out += ",\"lastSeen\":";
  appendIsoTime(out, m.lastSeenMs);
  out += '}';
}

// 24 random bytes as base64url: 32 characters.
std::string randomSecret() {
  unsigned char raw[24];
  randombytes_buf(raw, sizeof raw);
  char text[64];
  sodium_bin2base64(text, sizeof text, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  sodium_memzero(raw, sizeof raw);
  return text;
}

bool validSecret(std::string_view secret) {
  return secret.size() >= kMinSecretBytes && secret.size() <= kMaxSecretBytes;
}

// The string member `name`, or nullopt when absent or not a string.
std::optional<std::string> stringMember(const rapidjson::Document& d, const char* name) {
  auto it = d.FindMember(name);
  if (it == d.MemberEnd() || !it->value.IsString()) return std::nullopt;
  return std::string(it->value.GetString(), it->value.GetStringLength());
}

// Cluster mode: what the link to the other relays sees and carries.
void renderClusterMetrics(MetricsWriter& w, const NatsClusterLink& link) {
  const ClusterStats& st = link.stats();
  w.family("mesh_relay_cluster_connected", "gauge",
           "Cluster mode: 1 while connected to NATS, 0 while not.");
  w.sample("mesh_relay_cluster_connected", "", std::uint64_t{link.connected() ? 1u : 0u});
  w.family("mesh_relay_cluster_relays", "gauge",
           "Cluster mode: other relays heard from in the last 2.5 s.");
  w.sample("mesh_relay_cluster_relays", "", static_cast<std::uint64_t>(link.relaysSeen()));
  w.family("mesh_relay_cluster_incompatible_relays", "gauge",
           "Cluster mode: relays heard from in the last 2.5 s that speak another cluster wire "
           "version, ignored (run one release on every relay).");
  w.sample("mesh_relay_cluster_incompatible_relays", "",
           static_cast<std::uint64_t>(link.relaysIncompatible()));
  w.family("mesh_relay_cluster_frames_total", "counter",
           "Cluster mode: relays and broadcasts to (out) and from (in) other relays.");
  w.sample("mesh_relay_cluster_frames_total", "kind=\"relay\",direction=\"out\"", st.relaysOut);
  w.sample("mesh_relay_cluster_frames_total", "kind=\"relay\",direction=\"in\"", st.relaysIn);
  w.sample("mesh_relay_cluster_frames_total", "kind=\"broadcast\",direction=\"out\"",
           st.broadcastsOut);
  w.sample("mesh_relay_cluster_frames_total", "kind=\"broadcast\",direction=\"in\"",
           st.broadcastsIn);
  w.family("mesh_relay_cluster_takeovers_total", "counter",
           "Cluster mode: meshes taken from another relay (out) or by one (in).");
  w.sample("mesh_relay_cluster_takeovers_total", "direction=\"out\"", st.takeoversOut);
  w.sample("mesh_relay_cluster_takeovers_total", "direction=\"in\"", st.takeoversIn);
  w.family("mesh_relay_cluster_relays_lost_total", "counter",
           "Cluster mode: relays dropped with their meshes after their heartbeats stopped.");
  w.sample("mesh_relay_cluster_relays_lost_total", "", st.relaysLost);
  w.family("mesh_relay_cluster_relays_forwarded_total", "counter",
           "Cluster mode: relays that reached this relay for a mesh that had moved to another "
           "one, passed on to it.");
  w.sample("mesh_relay_cluster_relays_forwarded_total", "", st.relaysForwarded);
}

std::string labelValue(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

}  // namespace

bool Server::Impl::routeOperator(HttpExchange& ex) {
  const std::string_view path = ex.path;

  if (path == "/metrics") {
    if (ex.method != "GET") {
      respond(ex, 405, errorJson("Method not allowed"));
    } else if (!config.metricsToken.empty() &&
               !bearerMatches(ex.authorization, config.metricsToken) &&
               !bearerMatches(ex.authorization, config.adminToken)) {  // the status page's
      respond(ex, 401, errorJson("Metrics need Authorization: Bearer <metrics token>"));
    } else {
      ex.contentType = "text/plain; version=0.0.4; charset=utf-8";
      respond(ex, 200, renderMetrics());
    }
    return true;
  }

  if (path == "/rotate-secret") {
    if (ex.method != "POST") {
      respond(ex, 405, errorJson("Method not allowed"));
      return true;
    }
    auto [bucket, inserted] = registerBuckets.try_emplace(ex.peer);
    if (inserted) {
      bucket->second = TokenBucket(config.registerRatePerSecond, config.registerBurst, nowUs());
    }
    if (!bucket->second.tryTake(nowUs())) {
      respond(ex, 429, errorJson("Too many requests from this address"));
      return true;
    }
    rapidjson::Document body;
    body.Parse(ex.body.c_str(), ex.body.size());
    if (body.HasParseError() || !body.IsObject()) {
      respond(ex, 400, errorJson("Invalid JSON"));
      return true;
    }
    auto meshId = stringMember(body, "meshId");
    auto secret = stringMember(body, "secret");
    auto newSecret = stringMember(body, "newSecret");
    if (!meshId || !secret || !newSecret) {
      respond(ex, 400, errorJson("meshId, secret, and newSecret required"));
    } else if (!validSecret(*newSecret)) {
      respond(ex, 400, errorJson("newSecret must be 16 to 256 bytes"));
    } else if (!proto::isValidMeshId(*meshId) || !validSecret(*secret)) {
      respond(ex, 401, errorJson("Invalid credentials"));
    } else {
      rotateSecret(ex, *meshId, std::move(*newSecret), std::move(*secret), false);
    }
    return true;
  }

  if (path != kMeshesPath && path.substr(0, kMeshesPath.size() + 1) != "/meshes/") return false;

  // Everything under /meshes is the admin API.
  if (!bearerMatches(ex.authorization, config.adminToken)) {
    LOG_WARN("admin request " << ex.method << " " << ex.path << " from " << ex.peer
                              << " refused: missing or wrong token");
    respond(ex, 401, errorJson("Admin API needs Authorization: Bearer <admin token>"));
    return true;
  }
  if (path == kMeshesPath) {
    if (ex.method != "GET") {
      respond(ex, 405, errorJson("Method not allowed"));
      return true;
    }
    std::string out = "{\"meshes\":[";
    bool first = true;
    const std::string_view thisRelay = clusterLink ? clusterLink->relayId() : std::string_view();
    const std::int64_t us = nowUs(), ms = nowMs();
    for (const MeshRecord& m : registry.list()) {
      if (!first) out += ',';
      first = false;
      appendMesh(out, m, router.find(m.meshId), recorder.find(m.meshId), us, ms, thisRelay);
    }
    out += "]}";
    respond(ex, 200, std::move(out));
    return true;
  }

  std::string_view rest = path.substr(kMeshesPath.size() + 1);
  constexpr std::string_view kSecretSuffix = "/secret";
  const bool secretRoute = rest.size() > kSecretSuffix.size() &&
                           rest.substr(rest.size() - kSecretSuffix.size()) == kSecretSuffix;
  if (secretRoute) rest.remove_suffix(kSecretSuffix.size());
  constexpr std::string_view kRecentSuffix = "/recent";
  const bool recentRoute = !secretRoute && rest.size() > kRecentSuffix.size() &&
                           rest.substr(rest.size() - kRecentSuffix.size()) == kRecentSuffix;
  if (recentRoute) rest.remove_suffix(kRecentSuffix.size());
  const std::string meshId(rest);
  if (!proto::isValidMeshId(meshId)) {
    respond(ex, 404, errorJson("No such mesh"));
    return true;
  }

  if (recentRoute) {
    // The flight recorder: also for ids that only failed to authenticate.
    const MeshLog* log = recorder.find(meshId);
    if (ex.method != "GET") {
      respond(ex, 405, errorJson("Method not allowed"));
    } else if (!log && !registry.find(meshId)) {
      respond(ex, 404, errorJson("No such mesh"));
    } else {
      respond(ex, 200, recorder.renderJson(log, meshId, nowUs(), nowMs()));
    }
    return true;
  }

  if (secretRoute) {
    if (ex.method != "POST") {
      respond(ex, 405, errorJson("Method not allowed"));
      return true;
    }
    std::string newSecret;
    bool reveal = false;
    if (ex.body.empty()) {
      newSecret = randomSecret();
      reveal = true;
    } else {
      rapidjson::Document body;
      body.Parse(ex.body.c_str(), ex.body.size());
      std::optional<std::string> given;
      if (!body.HasParseError() && body.IsObject()) given = stringMember(body, "secret");
      if (!given || !validSecret(*given)) {
        respond(ex, 400, errorJson("Body must be empty or {\"secret\": 16 to 256 bytes}"));
        return true;
      }
      newSecret = std::move(*given);
    }
    rotateSecret(ex, meshId, std::move(newSecret), std::nullopt, reveal);
    return true;
  }

  if (ex.method == "GET") {
    auto record = registry.find(meshId);
    if (!record) {
      respond(ex, 404, errorJson("No such mesh"));
      return true;
    }
    std::string out;
    appendMesh(out, *record, router.find(meshId), recorder.find(meshId), nowUs(), nowMs(),
               clusterLink ? clusterLink->relayId() : std::string_view());
    respond(ex, 200, std::move(out));
  } else if (ex.method == "DELETE" && clusterRegistry) {
    // Cluster mode: the bucket first, on the shared registry's own writers.
    clusterRegistry->submit([this, cluster = clusterRegistry.get(), id = ex.id, meshId] {
      auto result = cluster->removeMesh(meshId);
      post([this, id, meshId, result = std::move(result)] {
        if (auto* down = std::get_if<RegistryUnavailable>(&result)) {
          respondLater(id, 503, errorJson(down->message));
        } else if (!std::get<bool>(result)) {
          respondLater(id, 404, errorJson("No such mesh"));
        } else {
          ++counters.meshesDeleted;
          LOG_INFO("admin deleted meshId=" << meshId);
          closeMeshSessions(meshId, "mesh_deleted");
          respondLater(id, 200, "{\"ok\":true}");
        }
      });
    });
  } else if (ex.method == "DELETE") {
    workers.post([this, id = ex.id, meshId] {
      bool removed = false;
      try {
        removed = registry.removeMesh(meshId);
      } catch (const std::exception& e) {
        LOG_ERROR("removing meshId=" << meshId << " failed: " << e.what());
        post([this, id, reason = sqlite::unavailableReason(e)] {
          respondLater(id, 503, errorJson(reason));
        });
        return;
      }
      post([this, id, meshId, removed] {
        if (!removed) {
          respondLater(id, 404, errorJson("No such mesh"));
          return;
        }
        ++counters.meshesDeleted;
        LOG_INFO("admin deleted meshId=" << meshId);
        closeMeshSessions(meshId, "mesh_deleted");
        respondLater(id, 200, "{\"ok\":true}");
      });
    });
  } else {
    respond(ex, 405, errorJson("Method not allowed"));
  }
  return true;
}

void Server::Impl::rotateSecret(HttpExchange& ex, const std::string& meshId, std::string newSecret,
                                std::optional<std::string> currentSecret, bool reveal) {
  enum class Result { Rotated, UnknownMesh, WrongSecret, Failed };
  ++counters.argon2Queued;
  // Cluster mode: the bucket is written (on the shared registry's writers)
  // before the answer; a stalled bucket answers 503.
  auto run = [this](std::function<void()> job) {
    if (clusterRegistry) {
      clusterRegistry->submit(std::move(job));
    } else {
      workers.post(std::move(job));
    }
  };
  // The job holds the shared registry itself (see handleRegister).
  run([this, cluster = clusterRegistry.get(), id = ex.id, meshId, newSecret = std::move(newSecret),
       current = std::move(currentSecret), reveal]() mutable {
    Result result = Result::Rotated;
    std::string failure;
    try {
      if (cluster) {
        auto outcome = cluster->rotateSecret(meshId, newSecret, current);
        if (auto* down = std::get_if<RegistryUnavailable>(&outcome)) {
          result = Result::Failed;
          failure = down->message;
        } else if (std::get<RotateOutcome>(outcome) == RotateOutcome::UnknownMesh) {
          result = Result::UnknownMesh;
        } else if (std::get<RotateOutcome>(outcome) == RotateOutcome::WrongSecret) {
          result = Result::WrongSecret;
        }
      } else if (current && !registry.verifySecret(meshId, *current)) {
        result = Result::WrongSecret;
      } else if (!registry.rotateSecret(meshId, newSecret)) {
        result = Result::UnknownMesh;
      }
    } catch (const std::exception& e) {
      LOG_ERROR("rotating the secret of meshId=" << meshId << " failed: " << e.what());
      result = Result::Failed;
      failure = sqlite::unavailableReason(e);
    }
    if (current) sodium_memzero(current->data(), current->size());
    std::string answer = "{\"ok\":true}";
    if (result == Result::Rotated && reveal) {
      answer = "{\"ok\":true,\"secret\":";
      proto::appendJsonString(answer, newSecret);
      answer += '}';
    }
    sodium_memzero(newSecret.data(), newSecret.size());
    const bool self = current.has_value();
    post([this, id, meshId, result, self, answer = std::move(answer),
          failure = std::move(failure)]() mutable {
      --counters.argon2Queued;
      switch (result) {
        case Result::Rotated:
          ++counters.secretsRotated;
          LOG_INFO("secret rotated meshId=" << meshId << (self ? " by the mesh" : " by admin"));
          closeMeshSessions(meshId, "secret_rotated");
          respondLater(id, 200, std::move(answer));
          break;
        case Result::UnknownMesh:
          // The self-service route cannot get here: verifySecret fails first.
          respondLater(id, 404, errorJson("No such mesh"));
          break;
        case Result::WrongSecret:
          respondLater(id, 401, errorJson("Invalid credentials"));
          break;
        case Result::Failed:
          respondLater(id, 503, errorJson(failure));
          break;
      }
      sodium_memzero(answer.data(), answer.size());
    });
  });
}

void Server::Impl::startClusterRegistry() {
  ClusterRegistry::Hooks hooks;
  // Another relay deleted the mesh or replaced its secret: its session here
  // closes as if it had been done here.
  hooks.onRevoked = [this](const std::string& meshId, const std::string& reason) {
    post([this, meshId, reason] {
      LOG_INFO("meshId=" << meshId << " revoked in the cluster (" << reason << ")");
      closeMeshSessions(meshId, reason);
    });
  };
  clusterRegistry = std::make_unique<ClusterRegistry>(config, registry, std::move(hooks));
}

std::string Server::Impl::registryReadiness() const {
  const ClusterRegistry::Status st = clusterRegistry->status();
  std::string out = "\"registry\":{\"bucket\":";
  out += st.reachable == 1   ? "\"reachable\""
         : st.reachable == 0 ? "\"unreachable\""
                             : "\"unknown\"";
  out += st.caughtUp ? ",\"caughtUp\":true" : ",\"caughtUp\":false";
  out += ",\"revision\":" + std::to_string(st.appliedRevision);
  out += ",\"lag\":" + std::to_string(st.bucketRevision > st.appliedRevision
                                          ? st.bucketRevision - st.appliedRevision
                                          : 0);
  out += '}';
  return out;
}

void Server::Impl::closeMeshSessions(const std::string& meshId, std::string_view reason) {
  meshBuckets.erase(meshId);
  const LocalConn conn = router.localConn(meshId);
  if (!conn) return;
  Session& s = *static_cast<Session*>(conn);
  sendError(s, proto::ErrorCode::InvalidCredentials,
            "Credentials revoked (" + std::string(reason) + ")", std::nullopt);
  closeSession(s, 1008, reason, false);
}

// Blocking SQLite on a worker; the answer comes back to the loop. The next
// probe is scheduled only once this one is back, so a stuck database gets
// one probe at a time.
void Server::Impl::probeDatabase(std::int64_t now) {
  if (nextDatabaseProbeUs < 0 || now < nextDatabaseProbeUs || shuttingDown) return;
  nextDatabaseProbeUs = -1;  // one in flight
  workers.post([this] {
    const bool writable = registry.checkWritable();
    post([this, writable] {
      counters.databaseWritable = writable ? 1 : 0;
      nextDatabaseProbeUs = nowUs() + kDatabaseProbeUs;
    });
  });
}

std::string Server::Impl::renderMetrics() const {
  std::string out;
  out.reserve(8192);
  MetricsWriter w(out);
  const auto& c = counters;

  w.family("mesh_relay_connections", "gauge", "Open WebSocket connections.");
  w.sample("mesh_relay_connections", "", static_cast<std::uint64_t>(sessions.size()));
  w.family("mesh_relay_connections_accepted_total", "counter",
           "WebSocket connections accepted on /gateway.");
  w.sample("mesh_relay_connections_accepted_total", "", c.connectionsAccepted);
  w.family("mesh_relay_connections_refused_total", "counter",
           "Connections and requests turned away, by reason.");
  for (std::size_t i = 0; i < c.refusedBy.size(); ++i) {
    const std::string label =
        "reason=\"" + std::string(refuseReasonName(static_cast<RefuseReason>(i))) + "\"";
    w.sample("mesh_relay_connections_refused_total", label, c.refusedBy[i]);
  }

  w.family("mesh_relay_meshes_online", "gauge", "Authenticated meshes connected now.");
  w.sample("mesh_relay_meshes_online", "", static_cast<std::uint64_t>(router.localCount()));
  w.family("mesh_relay_meshes_registered", "gauge", "Meshes in the registry.");
  w.sample("mesh_relay_meshes_registered", "", static_cast<std::uint64_t>(registry.size()));
  w.family("mesh_relay_registrations_total", "counter", "POST /register answers, by result.");
  w.sample("mesh_relay_registrations_total", "result=\"created\"", c.registrations);
  w.sample("mesh_relay_registrations_total", "result=\"updated\"", c.registrationsUpdated);
  w.sample("mesh_relay_registrations_total", "result=\"conflict\"", c.registrationConflicts);
  w.family("mesh_relay_meshes_deleted_total", "counter", "Meshes deleted through the admin API.");
  w.sample("mesh_relay_meshes_deleted_total", "", c.meshesDeleted);
  w.family("mesh_relay_secret_rotations_total", "counter",
           "Secrets rotated, by an admin or by the mesh itself.");
  w.sample("mesh_relay_secret_rotations_total", "", c.secretsRotated);

  w.family("mesh_relay_auth_successes_total", "counter", "Successful gateway_auth.");
  w.sample("mesh_relay_auth_successes_total", "", c.authOk);
  w.family("mesh_relay_auth_failures_total", "counter", "Failed authentications, by reason.");
  w.sample("mesh_relay_auth_failures_total", "reason=\"invalid_credentials\"", c.authFailed);
  w.sample("mesh_relay_auth_failures_total", "reason=\"auth_timeout\"", c.authTimeouts);
  w.sample("mesh_relay_auth_failures_total", "reason=\"rate_limited\"",
           c.authRateLimitedAddress + c.authRateLimitedMesh);
  w.family("mesh_relay_auth_rate_limited_total", "counter",
           "gateway_auth refused unchecked: a budget of failed authentications was spent.");
  w.sample("mesh_relay_auth_rate_limited_total", "budget=\"address\"", c.authRateLimitedAddress);
  w.sample("mesh_relay_auth_rate_limited_total", "budget=\"mesh\"", c.authRateLimitedMesh);
  w.family("mesh_relay_secret_checks_total", "counter",
           "gateway_auth secrets checked, by method (keyed verifier or Argon2id).");
  w.sample("mesh_relay_secret_checks_total", "method=\"verifier\"", c.secretChecksByVerifier);
  w.sample("mesh_relay_secret_checks_total", "method=\"argon2id\"", c.secretChecksByArgon2);
  w.family("mesh_relay_session_takeovers_total", "counter",
           "Sessions replaced by a newer connection of the same mesh.");
  w.sample("mesh_relay_session_takeovers_total", "", c.takeovers);
  renderTokenMetrics(w);

  w.family("mesh_relay_frames_received_total", "counter",
           "WebSocket messages from nodes, by type.");
  for (std::size_t i = 0; i < c.framesInBy.size(); ++i) {
    const std::string label =
        "type=\"" + std::string(inFrameKindName(static_cast<InFrameKind>(i))) + "\"";
    w.sample("mesh_relay_frames_received_total", label, c.framesInBy[i]);
  }
  w.family("mesh_relay_frames_sent_total", "counter",
           "WebSocket frames to nodes: messages by type; ping, pong, close.");
  for (std::size_t i = 0; i < c.framesOutBy.size(); ++i) {
    const std::string label =
        "type=\"" + std::string(outFrameKindName(static_cast<OutFrameKind>(i))) + "\"";
    w.sample("mesh_relay_frames_sent_total", label, c.framesOutBy[i]);
  }
  w.family("mesh_relay_received_bytes_total", "counter", "Message bytes received from nodes.");
  w.sample("mesh_relay_received_bytes_total", "", c.bytesIn);
  w.family("mesh_relay_sent_bytes_total", "counter", "Message bytes written to nodes.");
  w.sample("mesh_relay_sent_bytes_total", "", c.bytesOut);

  w.family("mesh_relay_relays_total", "counter", "gateway_relay frames, by outcome.");
  w.sample("mesh_relay_relays_total", "result=\"delivered\"", c.relaysDelivered);
  w.sample("mesh_relay_relays_total", "result=\"offline\"", c.relaysOffline);
  w.family("mesh_relay_broadcast_recipients_total", "counter",
           "Copies of broadcasts queued, one per recipient.");
  w.sample("mesh_relay_broadcast_recipients_total", "", c.broadcastRecipients);
  w.family("mesh_relay_websocket_protocol_errors_total", "counter",
           "Connections failed for breaking WebSocket framing (closed with 1002).");
  w.sample("mesh_relay_websocket_protocol_errors_total", "", c.framingErrors);
  w.family("mesh_relay_rate_limited_total", "counter", "Frames refused as rate_limited.");
  w.sample("mesh_relay_rate_limited_total", "", c.rateLimited);
  w.family("mesh_relay_slow_consumers_total", "counter",
           "Connections closed because their send queue was full.");
  w.sample("mesh_relay_slow_consumers_total", "", c.slowConsumers);
  w.sample("mesh_relay_relays_total", "result=\"cluster_unavailable\"",
           clusterLink ? clusterLink->stats().unavailable : 0);
  if (clusterLink) renderClusterMetrics(w, *clusterLink);
  recorder.renderMetrics(w);

  std::uint64_t queued = 0;
  for (const auto& [id, s] : sessions) queued += s->queuedBytes;
  w.family("mesh_relay_send_queue_bytes", "gauge", "Bytes waiting to be written, all connections.");
  w.sample("mesh_relay_send_queue_bytes", "", queued);
  w.family("mesh_relay_argon2_jobs_queued", "gauge",
           "Argon2id hashes and checks waiting for or running on a worker.");
  w.sample("mesh_relay_argon2_jobs_queued", "", c.argon2Queued);
  w.family("mesh_relay_frame_delivery_seconds", "histogram",
           "Time from a relayed or broadcast frame's arrival to the write of its last copy.");
  c.deliverySeconds.render(out, "mesh_relay_frame_delivery_seconds");

  w.family("mesh_relay_upgrade_auth_total", "counter",
           "Authentications by the upgrade request's Authorization header, by result.");
  w.sample("mesh_relay_upgrade_auth_total", "result=\"ok\"", c.upgradeAuthOk);
  w.sample("mesh_relay_upgrade_auth_total", "result=\"invalid_credentials\"", c.upgradeAuthInvalid);
  w.sample("mesh_relay_upgrade_auth_total", "result=\"rate_limited\"", c.upgradeAuthRateLimited);
  if (authorizer) {
    w.family("mesh_relay_authorize_requests_total", "counter",
             "Decisions of the authorize hook, by outcome (cached: answered from the cache "
             "without a call).");
    w.sample("mesh_relay_authorize_requests_total", "outcome=\"allow\"", c.authorizeAllowed);
    w.sample("mesh_relay_authorize_requests_total", "outcome=\"deny\"", c.authorizeDenied);
    w.sample("mesh_relay_authorize_requests_total", "outcome=\"cached\"", c.authorizeCached);
    for (std::size_t i = 1; i < c.authorizeFailedBy.size(); ++i) {
      const std::string label =
          "outcome=\"" +
          std::string(authorizeFailureName(static_cast<AuthorizeAnswer::Failure>(i))) + "\"";
      w.sample("mesh_relay_authorize_requests_total", label, c.authorizeFailedBy[i]);
    }
    w.family("mesh_relay_authorize_seconds", "histogram",
             "Time the authorize hook took to answer (or to fail).");
    c.authorizeSeconds.render(out, "mesh_relay_authorize_seconds");
  }

  w.family("mesh_relay_tls_reloads_total", "counter", "Certificate reloads (SIGHUP), by result.");
  w.sample("mesh_relay_tls_reloads_total", "result=\"ok\"", c.tlsReloads);
  w.sample("mesh_relay_tls_reloads_total", "result=\"error\"", c.tlsReloadFailures);

  if (clusterRegistry) {
    const ClusterRegistry::Status st = clusterRegistry->status();
    w.family("mesh_relay_registry_bucket_reachable", "gauge",
             "Cluster registry bucket: 1 answered the last probe (every second), 0 did not, -1 "
             "none yet.");
    w.sample("mesh_relay_registry_bucket_reachable", "", static_cast<double>(st.reachable));
    w.family("mesh_relay_registry_revision", "gauge",
             "Cluster registry: the bucket's last revision (as last probed) and the revision "
             "this relay's copy has applied.");
    w.sample("mesh_relay_registry_revision", "source=\"bucket\"", st.bucketRevision);
    w.sample("mesh_relay_registry_revision", "source=\"applied\"", st.appliedRevision);
    w.family("mesh_relay_registry_revision_lag", "gauge",
             "Bucket revisions this relay's registry copy has not applied yet.");
    w.sample("mesh_relay_registry_revision_lag", "",
             st.bucketRevision > st.appliedRevision ? st.bucketRevision - st.appliedRevision
                                                    : std::uint64_t{0});
    w.family("mesh_relay_registry_caught_up", "gauge",
             "1 once this relay's copy has applied the bucket's contents since it started.");
    w.sample("mesh_relay_registry_caught_up", "", std::uint64_t{st.caughtUp ? 1u : 0u});
    w.family("mesh_relay_registry_writes_unavailable_total", "counter",
             "Registry writes answered 503 because the bucket did not take them in time.");
    w.sample("mesh_relay_registry_writes_unavailable_total", "", st.writesUnavailable);
    w.family("mesh_relay_registry_watch_restarts_total", "counter",
             "Times the registry watch was started again (ended or stalled).");
    w.sample("mesh_relay_registry_watch_restarts_total", "", st.watchRestarts);
    w.family("mesh_relay_registry_tokens_total", "counter",
             "Resume-token hashes shared through the bucket, by direction.");
    w.sample("mesh_relay_registry_tokens_total", "direction=\"published\"", st.tokensPublished);
    w.sample("mesh_relay_registry_tokens_total", "direction=\"applied\"", st.tokensApplied);
  }

  w.family("mesh_relay_database_writable", "gauge",
           "Last database write probe (/readyz or every 15 s): 1 ok, 0 failed, -1 none yet.");
  w.sample("mesh_relay_database_writable", "", static_cast<double>(c.databaseWritable));
  w.family("mesh_relay_start_time_seconds", "gauge", "Unix time the relay started.");
  w.sample("mesh_relay_start_time_seconds", "", static_cast<double>(startTimeMs) / 1000.0);
  w.family("mesh_relay_build_info", "gauge", "Always 1; the labels name the build.");
  w.sample("mesh_relay_build_info",
           "version=\"" + labelValue(MESH_RELAY_VERSION) + "\",libwebsockets=\"" +
               labelValue(lws_get_library_version()) + "\"",
           std::uint64_t{1});
  return out;
}

}  // namespace mesh::relay
