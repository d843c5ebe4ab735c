#include "registry.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <system_error>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "log.h"
#include "sqlite_util.h"

namespace mesh::relay {
namespace {

using sqlite::Database;
using sqlite::Statement;
using sqlite::Transaction;

constexpr std::size_t kTokenBytes = 32;
constexpr std::size_t kTokenHashBytes = 32;
constexpr std::size_t kTokenKeyBytes = crypto_generichash_KEYBYTES;
static_assert(kTokenKeyBytes == 32);
// base64url of 32 bytes without padding.
constexpr std::size_t kTokenChars = 43;
constexpr const char* kTokenKeyName = "resume_token_key";
constexpr const char* kProbeKeyName = "write_probe";
// A MAC of a constant under the verifier key: tells whether the verifiers in
// the file were made with the key we hold (it reveals nothing about the key).
constexpr const char* kVerifierKeyCheckName = "verifier_key_check";
constexpr std::size_t kVerifierBytes = 32;
constexpr std::size_t kVerifierKeyBytes = crypto_generichash_KEYBYTES;
// Domain separation: these hashes are never confused with token hashes.
constexpr std::string_view kVerifierContext = "mesh-relay secret verifier v1";
constexpr std::string_view kKeyCheckContext = "mesh-relay verifier key check v1";

using TokenHash = std::array<unsigned char, kTokenHashBytes>;
using Verifier = std::array<unsigned char, kVerifierBytes>;
using VerifierKey = std::array<unsigned char, kVerifierKeyBytes>;

// An imported mesh's secret_hash until its first auth: this prefix and the
// original gateway's lowercase hex SHA-256 of the secret.
constexpr std::string_view kLegacyPrefix = "$legacy-sha256$";
// The stored "hash" of a mesh registered by its first token: no secret.
constexpr std::string_view kTokenOnlyHash = "$token-only$";

bool isLegacyHash(std::string_view stored) {
  return stored.substr(0, kLegacyPrefix.size()) == kLegacyPrefix;
}

// Constant-time comparison of the secret's SHA-256 with the stored one.
bool legacyMatches(std::string_view stored, std::string_view secret) {
  std::array<unsigned char, crypto_hash_sha256_BYTES> want{};
  const std::string_view hex = stored.substr(kLegacyPrefix.size());
  std::size_t len = 0;
  if (sodium_hex2bin(want.data(), want.size(), hex.data(), hex.size(), nullptr, &len, nullptr) !=
          0 ||
      len != want.size()) {
    return false;
  }
  std::array<unsigned char, crypto_hash_sha256_BYTES> got{};
  crypto_hash_sha256(got.data(), reinterpret_cast<const unsigned char*>(secret.data()),
                     secret.size());
  const bool same = sodium_memcmp(want.data(), got.data(), got.size()) == 0;
  sodium_memzero(got.data(), got.size());
  return same;
}

// Forward migrations: entry i takes the schema from version i to i + 1.
// Never edit a shipped entry; append a new one.
const std::array<const char*, 3> kMigrations = {
    // 1: the mesh table and a key/value table for the token hash key.
    "CREATE TABLE meshes ("
    "  mesh_id TEXT PRIMARY KEY NOT NULL,"
    "  name TEXT NOT NULL,"
    "  secret_hash TEXT NOT NULL,"
    "  created_at_ms INTEGER NOT NULL,"
    "  updated_at_ms INTEGER NOT NULL,"
    "  last_seen_ms INTEGER NOT NULL DEFAULT 0,"
    "  token_hash BLOB NULL,"
    "  token_expires_ms INTEGER NOT NULL DEFAULT 0"
    ");"
    "CREATE TABLE meta ("
    "  key TEXT PRIMARY KEY NOT NULL,"
    "  value BLOB NOT NULL"
    ");",
    // 2: the keyed fast verifier of the secret (NULL until one is known).
    "ALTER TABLE meshes ADD COLUMN verifier BLOB NULL;",
    // 3: cluster mode. The bucket revision this copy applied (0: never
    // replicated) and when the secret was last set (a new value = a new
    // secret, whatever its hash looks like).
    "ALTER TABLE meshes ADD COLUMN kv_revision INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE meshes ADD COLUMN secret_set_ms INTEGER NOT NULL DEFAULT 0;"
    "UPDATE meshes SET secret_set_ms = updated_at_ms;",
};
constexpr const char* kAppliedRevisionName = "kv_applied_revision";

std::int64_t wallClockMs() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};

struct Entry {
  std::string name;
  std::string secretHash;  // crypto_pwhash_str output
  std::int64_t createdAtMs = 0;
  std::int64_t updatedAtMs = 0;
  std::int64_t lastSeenMs = 0;
  bool hasToken = false;
  TokenHash tokenHash{};
  std::int64_t tokenExpiresMs = 0;
  bool hasVerifier = false;
  Verifier verifier{};
  std::uint64_t revision = 0;  // cluster mode: the bucket revision applied
  std::int64_t secretSetMs = 0;
};

std::string hexOf(const unsigned char* data, std::size_t len) {
  std::string out(len * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), data, len);
  out.pop_back();
  return out;
}

// Reads the verifier key from `path`, or creates the file (0600, never
// replacing one that appears meanwhile) with a fresh random key.
VerifierKey readOrCreateVerifierKey(const std::string& path) {
  VerifierKey key{};
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    char buf[256];
    const ssize_t n = ::read(fd, buf, sizeof buf);
    const int readErr = errno;
    ::close(fd);
    if (n < 0) {
      throw std::runtime_error("verifier key " + path + ": " + std::strerror(readErr));
    }
    std::string_view text(buf, static_cast<std::size_t>(n));
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) {
      text.remove_suffix(1);
    }
    std::size_t got = 0;
    const char* end = nullptr;
    if (text.size() != kVerifierKeyBytes * 2 ||
        sodium_hex2bin(key.data(), key.size(), text.data(), text.size(), nullptr, &got, &end) !=
            0 ||
        got != kVerifierKeyBytes || end != text.data() + text.size()) {
      sodium_memzero(buf, sizeof buf);
      throw std::runtime_error("verifier key " + path + " must hold exactly " +
                               std::to_string(kVerifierKeyBytes * 2) +
                               " hex digits; fix or remove the file");
    }
    sodium_memzero(buf, sizeof buf);
    return key;
  }
  if (errno != ENOENT) {
    throw std::runtime_error("verifier key " + path + ": " + std::strerror(errno));
  }
  randombytes_buf(key.data(), key.size());
  std::string text = hexOf(key.data(), key.size()) + "\n";
  const int out = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (out < 0) {
    const int err = errno;
    sodium_memzero(text.data(), text.size());
    // Another process created it first: use theirs.
    if (err == EEXIST) return readOrCreateVerifierKey(path);
    throw std::runtime_error("cannot create verifier key " + path + ": " + std::strerror(err));
  }
  const bool written =
      ::write(out, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
      ::fsync(out) == 0;
  const int err = errno;
  ::close(out);
  sodium_memzero(text.data(), text.size());
  if (!written) {
    ::unlink(path.c_str());
    throw std::runtime_error("cannot write verifier key " + path + ": " + std::strerror(err));
  }
  return key;
}

MeshRecord toRecord(const std::string& id, const Entry& e) {
  return MeshRecord{id, e.name, e.createdAtMs, e.updatedAtMs, e.lastSeenMs};
}

}  // namespace

struct Registry::Impl {
  Impl(const std::string& path, Argon2Params params, const std::string& keyPath) : argon2(params) {
    if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
    prepareDirectory(path);
    openDatabase(path);
    migrate(path);
    loadTokenKey();
    loadVerifierKey(keyPath.empty() ? defaultVerifierKeyPath(path) : keyPath);
    prepareStatements();
    loadIndex();
  }

  ~Impl() {
    // Statements must be finalised before the connection closes.
    stmts.reset();
    sodium_memzero(verifierKey.data(), verifierKey.size());
  }

  // ---- setup (constructor only, single-threaded) ----

  static void prepareDirectory(const std::string& path) {
    if (path.empty() || path == ":memory:") return;
    const std::filesystem::path parent = std::filesystem::path(path).parent_path();
    if (parent.empty()) return;
    std::error_code ec;
    if (std::filesystem::is_directory(parent, ec)) return;
    std::filesystem::create_directory(parent, ec);
    if (ec) {
      throw std::runtime_error("registry: cannot create directory " + parent.string() + ": " +
                               ec.message());
    }
  }

  void openDatabase(const std::string& path) {
    try {
      db = std::make_unique<Database>(
          path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX);
      check(sqlite3_busy_timeout(db->get(), 5000), "busy_timeout");
      // journal_mode answers with the mode it ended up in; WAL can be refused
      // (some network file systems), and then we would rather know.
      {
        Statement mode(*db, "PRAGMA journal_mode=WAL");
        auto run = mode.run();
        const std::string got = run.step() ? run.text(0) : std::string();
        if (got != "wal" && !(path == ":memory:" && got == "memory")) {
          throw std::runtime_error("journal_mode=WAL refused (got \"" + got + "\")");
        }
      }
      db->exec("PRAGMA synchronous=NORMAL");
      // Replaced secret hashes (an imported SHA-256 above all) are zeroed
      // in the file, not left in free space.
      db->exec("PRAGMA secure_delete=ON");
      db->exec("PRAGMA foreign_keys=ON");
    } catch (const std::exception& e) {
      throw std::runtime_error("registry " + path + ": " + e.what());
    }
  }

  int userVersion() {
    Statement st(*db, "PRAGMA user_version");
    auto run = st.run();
    if (!run.step()) throw std::runtime_error("PRAGMA user_version returned nothing");
    return static_cast<int>(run.int64(0));
  }

  void migrate(const std::string& path) {
    const int known = static_cast<int>(kMigrations.size());
    try {
      // The version is read inside the write transaction so that two
      // processes opening the same new file cannot both migrate it.
      Transaction tx(*db);
      const int current = userVersion();
      if (current > known) {
        throw std::runtime_error("schema version " + std::to_string(current) +
                                 " is newer than this relay understands (" + std::to_string(known) +
                                 "); refusing to open it");
      }
      if (current < 0) {
        throw std::runtime_error("invalid schema version " + std::to_string(current));
      }
      for (int v = current; v < known; ++v) db->exec(kMigrations[static_cast<std::size_t>(v)]);
      if (current != known) db->exec("PRAGMA user_version=" + std::to_string(known));
      tx.commit();
    } catch (const std::exception& e) {
      throw std::runtime_error("registry " + path + ": " + e.what());
    }
  }

  void loadTokenKey() {
    std::array<unsigned char, kTokenKeyBytes> fresh{};
    randombytes_buf(fresh.data(), fresh.size());
    {
      // Keeps an existing key: it must survive restarts or every issued
      // token would die with the process.
      Statement ins(*db, "INSERT OR IGNORE INTO meta(key, value) VALUES (?1, ?2)");
      ins.run().bind(1, kTokenKeyName).bindBlob(2, fresh.data(), fresh.size()).done();
    }
    sodium_memzero(fresh.data(), fresh.size());
    Statement sel(*db, "SELECT value FROM meta WHERE key = ?1");
    auto run = sel.run();
    run.bind(1, kTokenKeyName);
    if (!run.step()) throw std::runtime_error("registry: resume-token key missing after insert");
    const std::string stored = run.blob(0);
    if (stored.size() != kTokenKeyBytes) {
      throw std::runtime_error("registry: resume-token key has the wrong length (corrupt meta)");
    }
    std::copy(stored.begin(), stored.end(), tokenKey.begin());
  }

  // Loads (or creates) the verifier key, and drops every stored verifier if
  // the database was last used with another key: those can never match, and
  // a mismatch would refuse the right secret.
  void loadVerifierKey(const std::string& keyPath) {
    if (keyPath.empty()) {
      randombytes_buf(verifierKey.data(), verifierKey.size());
    } else {
      verifierKey = readOrCreateVerifierKey(keyPath);
    }
    Verifier check{};
    crypto_generichash(check.data(), check.size(),
                       reinterpret_cast<const unsigned char*>(kKeyCheckContext.data()),
                       kKeyCheckContext.size(), verifierKey.data(), verifierKey.size());
    Transaction tx(*db);
    std::string stored;
    {
      Statement sel(*db, "SELECT value FROM meta WHERE key = ?1");
      auto run = sel.run();
      run.bind(1, kVerifierKeyCheckName);
      if (run.step()) stored = run.blob(0);
    }
    if (stored.size() == check.size() &&
        sodium_memcmp(stored.data(), check.data(), check.size()) == 0) {
      return;
    }
    db->exec("UPDATE meshes SET verifier = NULL WHERE verifier IS NOT NULL");
    const int dropped = sqlite3_changes(db->get());
    Statement put(*db, "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)");
    put.run().bind(1, kVerifierKeyCheckName).bindBlob(2, check.data(), check.size()).done();
    tx.commit();
    if (dropped > 0) {
      LOG_WARN("verifier key " << keyPath
                               << " is not the key this database was used with: " << dropped
                               << " secret verifiers dropped; those meshes are checked with "
                                  "Argon2id once more");
    }
  }

  void loadIndex() {
    Statement sel(*db,
                  "SELECT mesh_id, name, secret_hash, created_at_ms, updated_at_ms, last_seen_ms,"
                  " token_hash, token_expires_ms, verifier, kv_revision, secret_set_ms"
                  " FROM meshes");
    auto run = sel.run();
    while (run.step()) {
      Entry e;
      e.name = run.text(1);
      e.secretHash = run.text(2);
      e.createdAtMs = run.int64(3);
      e.updatedAtMs = run.int64(4);
      e.lastSeenMs = run.int64(5);
      if (!run.isNull(6)) {
        const std::string h = run.blob(6);
        // A hash of any other length cannot match; the mesh then simply
        // authenticates with its secret again.
        if (h.size() == kTokenHashBytes) {
          std::copy(h.begin(), h.end(), e.tokenHash.begin());
          e.hasToken = true;
          e.tokenExpiresMs = run.int64(7);
        }
      }
      if (!run.isNull(8)) {
        const std::string v = run.blob(8);
        if (v.size() == kVerifierBytes) {
          std::copy(v.begin(), v.end(), e.verifier.begin());
          e.hasVerifier = true;
        }
      }
      e.revision = static_cast<std::uint64_t>(run.int64(9));
      e.secretSetMs = run.int64(10);
      index.emplace(run.text(0), std::move(e));
    }
  }

  void prepareStatements() { stmts = std::make_unique<Statements>(*db); }

  void check(int rc, std::string_view what) {
    if (rc != SQLITE_OK) sqlite::fail(db->get(), rc, what);
  }

  // ---- helpers usable from any thread ----

  std::string hashSecret(std::string_view secret) const {
    std::array<char, crypto_pwhash_STRBYTES> out{};
    if (crypto_pwhash_str(out.data(), secret.data(), secret.size(), argon2.opsLimit,
                          argon2.memLimit) != 0) {
      throw std::runtime_error("registry: Argon2id hashing failed (out of memory?)");
    }
    return std::string(out.data());
  }

  static bool secretMatches(const std::string& hash, std::string_view secret) {
    return crypto_pwhash_str_verify(hash.c_str(), secret.data(), secret.size()) == 0;
  }

  bool needsRehash(const std::string& hash) const {
    // 1 = other parameters, -1 = not a hash we understand; both deserve a new
    // hash once we know the secret is right.
    return crypto_pwhash_str_needs_rehash(hash.c_str(), argon2.opsLimit, argon2.memLimit) != 0;
  }

  // BLAKE2b keyed with the verifier key over context, meshId (length first,
  // so no two pairs of meshId and secret give the same input) and secret.
  Verifier makeVerifier(std::string_view meshId, std::string_view secret) const {
    crypto_generichash_state st;
    crypto_generichash_init(&st, verifierKey.data(), verifierKey.size(), kVerifierBytes);
    crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(kVerifierContext.data()),
                              kVerifierContext.size());
    const auto idLen = static_cast<unsigned char>(std::min<std::size_t>(meshId.size(), 255));
    crypto_generichash_update(&st, &idLen, 1);
    crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(meshId.data()),
                              meshId.size());
    crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(secret.data()),
                              secret.size());
    Verifier v{};
    crypto_generichash_final(&st, v.data(), v.size());
    sodium_memzero(&st, sizeof st);
    return v;
  }

  // Replaces an imported SHA-256 with an Argon2id hash of the secret that
  // just matched it, stores the secret's verifier, and wipes `secret`;
  // nothing changes if the row moved on meanwhile (another upgrade, a
  // rotation). Throws when it cannot write.
  void upgradeLegacy(const std::string& meshId, std::string& secret, const std::string& legacy) {
    std::string fresh;
    const Verifier verifier = makeVerifier(meshId, secret);
    try {
      fresh = hashSecret(secret);
    } catch (...) {
      sodium_memzero(secret.data(), secret.size());
      throw;
    }
    sodium_memzero(secret.data(), secret.size());
    std::lock_guard dbLock(dbMutex);
    auto run = stmts->storeVerified.run();
    run.bind(1, meshId).bind(2, fresh).bind(3, legacy);
    run.bindBlob(4, verifier.data(), verifier.size()).done();
    if (sqlite3_changes(db->get()) == 0) return;
    std::unique_lock lock(indexMutex);
    if (auto it = index.find(meshId); it != index.end() && it->second.secretHash == legacy) {
      it->second.secretHash = fresh;
      it->second.hasVerifier = true;
      it->second.verifier = verifier;
    }
  }

  // Reads tokenKey: hold indexMutex (shared is enough).
  TokenHash hashToken(const unsigned char* raw) const {
    TokenHash h{};
    crypto_generichash(h.data(), h.size(), raw, kTokenBytes, tokenKey.data(), tokenKey.size());
    return h;
  }

  // ---- state ----

  struct Statements {
    explicit Statements(Database& d)
        : insertMesh(
              d,
              "INSERT INTO meshes(mesh_id, name, secret_hash, created_at_ms,"
              " updated_at_ms, verifier, secret_set_ms) VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?4)"),
          updateName(d,
                     "UPDATE meshes SET name = ?2, updated_at_ms = ?3, verifier = ?5"
                     " WHERE mesh_id = ?1 AND secret_hash = ?4"),
          replaceSecret(d,
                        "UPDATE meshes SET secret_hash = ?2, updated_at_ms = ?3,"
                        " token_hash = NULL, token_expires_ms = 0, verifier = ?4,"
                        " secret_set_ms = ?3 WHERE mesh_id = ?1"),
          // Only if the hash is still the one that was checked: a rotation
          // meanwhile must not get the old secret's verifier back.
          storeVerified(d,
                        "UPDATE meshes SET secret_hash = ?2, verifier = ?4"
                        " WHERE mesh_id = ?1 AND secret_hash = ?3"),
          deleteMesh(d, "DELETE FROM meshes WHERE mesh_id = ?1"),
          importMesh(d,
                     "INSERT OR IGNORE INTO meshes(mesh_id, name, secret_hash, created_at_ms,"
                     " updated_at_ms, secret_set_ms) VALUES (?1, ?2, ?3, ?4, ?4, ?4)"),
          writeVolatile(d,
                        "UPDATE meshes SET last_seen_ms = ?2, token_hash = ?3,"
                        " token_expires_ms = ?4 WHERE mesh_id = ?1"),
          probeWrite(d, "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)"),
          probeRead(d, "SELECT value FROM meta WHERE key = ?1"),
          putReplica(d,
                     "INSERT OR REPLACE INTO meshes(mesh_id, name, secret_hash, created_at_ms,"
                     " updated_at_ms, last_seen_ms, token_hash, token_expires_ms, verifier,"
                     " kv_revision, secret_set_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9,"
                     " ?10, ?11)") {}

    Statement insertMesh;
    Statement updateName;
    Statement replaceSecret;
    Statement storeVerified;
    Statement deleteMesh;
    Statement importMesh;
    Statement writeVolatile;
    Statement probeWrite;
    Statement probeRead;
    Statement putReplica;
  };

  const Argon2Params argon2;
  // Set once, before the server starts (setBackgroundRunner).
  std::function<void(std::function<void()>)> runInBackground;
  // Guarded by indexMutex: replaced when a cluster's key is adopted.
  std::function<void(const TokenReplica&)> tokenListener;  // set once before start
  std::array<unsigned char, kTokenKeyBytes> tokenKey{};
  VerifierKey verifierKey{};  // immutable after construction

  // Guarded by dbMutex. Lock order: dbMutex before indexMutex, never the
  // reverse, and never hold either while running Argon2id.
  std::mutex dbMutex;
  std::unique_ptr<Database> db;
  std::unique_ptr<Statements> stmts;

  // Guarded by indexMutex: the mirror of the meshes table plus the ids whose
  // last-seen time or token changed since the last persistPending().
  mutable std::shared_mutex indexMutex;
  std::unordered_map<std::string, Entry, StringHash, std::equal_to<>> index;
  std::unordered_set<std::string, StringHash, std::equal_to<>> pending;
};

Registry::Registry(const std::string& path, Argon2Params argon2, const std::string& verifierKeyPath)
    : impl_(std::make_unique<Impl>(path, argon2, verifierKeyPath)) {}

std::string Registry::defaultVerifierKeyPath(const std::string& dbPath) {
  if (dbPath.empty() || dbPath == ":memory:") return {};
  return dbPath + ".verifier-key";
}

Registry::~Registry() = default;

RegisterOutcome Registry::registerMesh(std::string_view meshId, std::string_view name,
                                       std::string_view secret) {
  Impl& im = *impl_;
  // Each pass either finishes or saw the row change under it (a concurrent
  // register, rotate or remove); the next pass looks again. The bound only
  // matters if something outside this process edits the file.
  for (int attempt = 0; attempt < 8; ++attempt) {
    std::optional<std::string> existingHash;
    std::optional<Verifier> existingVerifier;
    {
      std::shared_lock lock(im.indexMutex);
      if (auto it = im.index.find(meshId); it != im.index.end()) {
        existingHash = it->second.secretHash;
        if (it->second.hasVerifier) existingVerifier = it->second.verifier;
      }
    }

    if (existingHash && isLegacyHash(*existingHash)) {
      // Imported and not authenticated since: the right secret gets its
      // Argon2id hash now, and the next pass renames against that.
      if (!legacyMatches(*existingHash, secret)) return RegisterOutcome::Conflict;
      std::string copy(secret);
      im.upgradeLegacy(std::string(meshId), copy, *existingHash);
      continue;
    }

    // The secret is known to be right below, so its verifier can be stored.
    const Verifier verifier = im.makeVerifier(meshId, secret);
    if (existingHash) {
      // A node registering again on every start costs no Argon2id once its
      // mesh has a verifier.
      const bool same = existingVerifier ? sodium_memcmp(verifier.data(), existingVerifier->data(),
                                                         kVerifierBytes) == 0
                                         : Impl::secretMatches(*existingHash, secret);
      if (!same) return RegisterOutcome::Conflict;
      const std::int64_t now = wallClockMs();
      std::lock_guard dbLock(im.dbMutex);
      auto run = im.stmts->updateName.run();
      run.bind(1, meshId).bind(2, name).bind(3, now).bind(4, *existingHash);
      run.bindBlob(5, verifier.data(), verifier.size()).done();
      if (sqlite3_changes(im.db->get()) == 0) continue;
      std::unique_lock lock(im.indexMutex);
      if (auto it = im.index.find(meshId); it != im.index.end()) {
        it->second.name = std::string(name);
        it->second.updatedAtMs = now;
        it->second.hasVerifier = true;
        it->second.verifier = verifier;
      }
      return RegisterOutcome::Updated;
    }

    const std::string hash = im.hashSecret(secret);
    const std::int64_t now = wallClockMs();
    std::lock_guard dbLock(im.dbMutex);
    try {
      auto run = im.stmts->insertMesh.run();
      run.bind(1, meshId).bind(2, name).bind(3, hash).bind(4, now);
      run.bindBlob(5, verifier.data(), verifier.size()).done();
    } catch (const sqlite::Error& e) {
      // Someone registered the same id between our look-up and the insert;
      // judge the secret against theirs on the next pass.
      if (e.code() == SQLITE_CONSTRAINT) continue;
      throw;
    }
    std::unique_lock lock(im.indexMutex);
    Entry entry;
    entry.name = std::string(name);
    entry.secretHash = hash;
    entry.createdAtMs = now;
    entry.updatedAtMs = now;
    entry.hasVerifier = true;
    entry.verifier = verifier;
    entry.secretSetMs = now;
    im.index.insert_or_assign(std::string(meshId), std::move(entry));
    return RegisterOutcome::Created;
  }
  throw std::runtime_error("registry: mesh " + std::string(meshId) +
                           " keeps changing under registration; giving up");
}

std::optional<std::string> Registry::verifySecret(std::string_view meshId,
                                                  std::string_view secret) {
  Impl& im = *impl_;
  // The verifier decides when there is one, and an unknown mesh costs the
  // same (checkVerifier); only a mesh without one costs an Argon2id.
  const Verifier presented = im.makeVerifier(meshId, secret);
  std::optional<std::pair<std::string, std::string>> known;  // hash, name
  bool verified = false;
  {
    std::shared_lock lock(im.indexMutex);
    auto it = im.index.find(meshId);
    if (it == im.index.end()) return std::nullopt;
    const Entry& e = it->second;
    if (e.hasVerifier) {
      if (sodium_memcmp(presented.data(), e.verifier.data(), kVerifierBytes) != 0) {
        return std::nullopt;
      }
      // Right; only a hash made with other parameters still needs work.
      if (!im.needsRehash(e.secretHash)) return e.name;
      verified = true;
    }
    known.emplace(e.secretHash, e.name);
  }
  if (isLegacyHash(known->first)) {
    // Imported from the original gateway. A wrong secret is refused as
    // cheaply as at a verifier; the right one is answered at once, its
    // Argon2id hash and verifier made in the background (a failure there
    // only means the next auth tries).
    if (!legacyMatches(known->first, secret)) return std::nullopt;
    auto upgrade = [&im, id = std::string(meshId), copy = std::string(secret),
                    legacy = std::move(known->first)]() mutable {
      try {
        im.upgradeLegacy(id, copy, legacy);
      } catch (const std::exception&) {
      }
    };
    if (im.runInBackground) {
      im.runInBackground(std::move(upgrade));
    } else {
      upgrade();
    }
    return std::move(known->second);
  }
  if (!verified && !Impl::secretMatches(known->first, secret)) return std::nullopt;

  // Best effort: the secret was right, so a failure to store its verifier or
  // to upgrade its hash must not turn into a failed login.
  try {
    const std::string fresh = im.needsRehash(known->first) ? im.hashSecret(secret) : known->first;
    const Verifier& verifier = presented;
    std::lock_guard dbLock(im.dbMutex);
    auto run = im.stmts->storeVerified.run();
    run.bind(1, meshId).bind(2, fresh).bind(3, known->first);
    run.bindBlob(4, verifier.data(), verifier.size()).done();
    if (sqlite3_changes(im.db->get()) > 0) {
      std::unique_lock lock(im.indexMutex);
      if (auto it = im.index.find(meshId);
          it != im.index.end() && it->second.secretHash == known->first) {
        it->second.secretHash = fresh;
        it->second.hasVerifier = true;
        it->second.verifier = verifier;
      }
    }
  } catch (const std::exception& e) {
    LOG_WARN("meshId=" << meshId << ": could not store the secret's verifier: " << e.what());
  }
  return std::move(known->second);
}

VerifierCheck Registry::checkVerifier(std::string_view meshId, std::string_view secret) const {
  const Impl& im = *impl_;
  // Computed before the look-up: an unknown mesh costs the same.
  const Verifier presented = im.makeVerifier(meshId, secret);
  std::shared_lock lock(im.indexMutex);
  auto it = im.index.find(meshId);
  if (it == im.index.end()) return {};
  const Entry& e = it->second;
  if (!e.hasVerifier) return {VerifierOutcome::Absent, {}, false};
  if (sodium_memcmp(presented.data(), e.verifier.data(), kVerifierBytes) != 0) return {};
  return {VerifierOutcome::Match, e.name, im.needsRehash(e.secretHash)};
}

std::size_t Registry::verifierCount() const {
  std::shared_lock lock(impl_->indexMutex);
  return static_cast<std::size_t>(
      std::count_if(impl_->index.begin(), impl_->index.end(),
                    [](const auto& kv) { return kv.second.hasVerifier; }));
}

LegacyImportOutcome Registry::importLegacyMesh(std::string_view meshId, std::string_view name,
                                               std::string_view sha256Hex) {
  Impl& im = *impl_;
  std::string stored(kLegacyPrefix);
  for (char c : sha256Hex) {
    stored += static_cast<char>(c >= 'A' && c <= 'F' ? c - 'A' + 'a' : c);
  }
  const std::int64_t now = wallClockMs();
  std::lock_guard dbLock(im.dbMutex);
  im.stmts->importMesh.run().bind(1, meshId).bind(2, name).bind(3, stored).bind(4, now).done();
  if (sqlite3_changes(im.db->get()) == 0) return LegacyImportOutcome::Exists;
  std::unique_lock lock(im.indexMutex);
  Entry entry;
  entry.name = std::string(name);
  entry.secretHash = std::move(stored);
  entry.createdAtMs = now;
  entry.updatedAtMs = now;
  entry.secretSetMs = now;
  im.index.insert_or_assign(std::string(meshId), std::move(entry));
  return LegacyImportOutcome::Imported;
}

bool Registry::registerTokenMesh(std::string_view meshId, std::string_view name) {
  Impl& im = *impl_;
  // Not an Argon2id string: crypto_pwhash_str_verify refuses every secret
  // against it, and it cannot be mistaken for an imported digest.
  const std::string stored(kTokenOnlyHash);
  const std::int64_t now = wallClockMs();
  std::lock_guard dbLock(im.dbMutex);
  im.stmts->importMesh.run().bind(1, meshId).bind(2, name).bind(3, stored).bind(4, now).done();
  if (sqlite3_changes(im.db->get()) == 0) return false;
  std::unique_lock lock(im.indexMutex);
  Entry entry;
  entry.name = std::string(name);
  entry.secretHash = stored;
  entry.createdAtMs = now;
  entry.updatedAtMs = now;
  im.index.insert_or_assign(std::string(meshId), std::move(entry));
  return true;
}

void Registry::setBackgroundRunner(std::function<void(std::function<void()>)> run) {
  impl_->runInBackground = std::move(run);
}

std::optional<std::string> Registry::verifyResumeToken(std::string_view meshId,
                                                       std::string_view token,
                                                       std::int64_t nowMs) const {
  const Impl& im = *impl_;
  if (token.size() != kTokenChars) return std::nullopt;
  std::array<unsigned char, kTokenBytes> raw{};
  std::size_t rawLen = 0;
  const char* end = nullptr;
  if (sodium_base642bin(raw.data(), raw.size(), token.data(), token.size(), nullptr, &rawLen, &end,
                        sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
      rawLen != kTokenBytes || end != token.data() + token.size()) {
    return std::nullopt;
  }
  std::shared_lock lock(im.indexMutex);
  const TokenHash presented = im.hashToken(raw.data());
  sodium_memzero(raw.data(), raw.size());
  auto it = im.index.find(meshId);
  if (it == im.index.end()) return std::nullopt;
  const Entry& e = it->second;
  if (!e.hasToken || nowMs >= e.tokenExpiresMs) return std::nullopt;
  if (sodium_memcmp(presented.data(), e.tokenHash.data(), kTokenHashBytes) != 0) {
    return std::nullopt;
  }
  return e.name;
}

ResumeToken Registry::issueResumeToken(std::string_view meshId, std::int64_t nowMs,
                                       std::int64_t ttlMs) {
  Impl& im = *impl_;
  std::array<unsigned char, kTokenBytes> raw{};
  randombytes_buf(raw.data(), raw.size());
  std::array<char, kTokenChars + 1> text{};
  sodium_bin2base64(text.data(), text.size(), raw.data(), raw.size(),
                    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  ResumeToken out{std::string(text.data(), kTokenChars), nowMs + ttlMs};
  std::optional<TokenReplica> shared;
  {
    std::unique_lock lock(im.indexMutex);
    const TokenHash hash = im.hashToken(raw.data());
    sodium_memzero(raw.data(), raw.size());
    // An id that vanished meanwhile (removed by an admin) gets a token that
    // is recorded nowhere and so never verifies.
    if (auto it = im.index.find(meshId); it != im.index.end()) {
      it->second.hasToken = true;
      it->second.tokenHash = hash;
      it->second.tokenExpiresMs = out.expiresAtMs;
      im.pending.emplace(meshId);
      if (im.tokenListener) {
        shared = TokenReplica{std::string(meshId),
                              std::string(reinterpret_cast<const char*>(hash.data()), hash.size()),
                              out.expiresAtMs, it->second.secretSetMs};
      }
    }
  }
  if (shared) im.tokenListener(*shared);
  return out;
}

void Registry::noteSeen(std::string_view meshId, std::int64_t nowMs) {
  Impl& im = *impl_;
  std::unique_lock lock(im.indexMutex);
  if (auto it = im.index.find(meshId); it != im.index.end()) {
    it->second.lastSeenMs = nowMs;
    im.pending.emplace(meshId);
  }
}

void Registry::persistPending() {
  Impl& im = *impl_;
  struct Row {
    std::string id;
    std::int64_t lastSeenMs;
    bool hasToken;
    TokenHash tokenHash;
    std::int64_t tokenExpiresMs;
  };

  // dbMutex is held from the snapshot to the commit, so a rotate or remove
  // cannot slip between them and be overwritten by an older snapshot.
  std::lock_guard dbLock(im.dbMutex);
  std::vector<Row> rows;
  {
    std::unique_lock lock(im.indexMutex);
    if (im.pending.empty()) return;
    rows.reserve(im.pending.size());
    for (const std::string& id : im.pending) {
      auto it = im.index.find(id);
      if (it == im.index.end()) continue;  // removed since; nothing to write
      const Entry& e = it->second;
      rows.push_back(Row{id, e.lastSeenMs, e.hasToken, e.tokenHash, e.tokenExpiresMs});
    }
    im.pending.clear();
  }

  try {
    // One transaction, hence one WAL sync, however many meshes reconnected.
    Transaction tx(*im.db);
    for (const Row& r : rows) {
      auto run = im.stmts->writeVolatile.run();
      run.bind(1, r.id).bind(2, r.lastSeenMs);
      if (r.hasToken) {
        run.bindBlob(3, r.tokenHash.data(), r.tokenHash.size());
      } else {
        run.bindNull(3);
      }
      run.bind(4, r.hasToken ? r.tokenExpiresMs : 0).done();
    }
    tx.commit();
  } catch (...) {
    // Queue them again: the next call writes the then-current values.
    std::unique_lock lock(im.indexMutex);
    for (Row& r : rows) im.pending.insert(std::move(r.id));
    throw;
  }
}

bool Registry::hasPending() const {
  std::shared_lock lock(impl_->indexMutex);
  return !impl_->pending.empty();
}

std::optional<MeshRecord> Registry::find(std::string_view meshId) const {
  std::shared_lock lock(impl_->indexMutex);
  auto it = impl_->index.find(meshId);
  if (it == impl_->index.end()) return std::nullopt;
  return toRecord(it->first, it->second);
}

std::vector<MeshRecord> Registry::list() const {
  std::vector<MeshRecord> out;
  {
    std::shared_lock lock(impl_->indexMutex);
    out.reserve(impl_->index.size());
    for (const auto& [id, e] : impl_->index) out.push_back(toRecord(id, e));
  }
  std::sort(out.begin(), out.end(),
            [](const MeshRecord& a, const MeshRecord& b) { return a.meshId < b.meshId; });
  return out;
}

std::size_t Registry::size() const {
  std::shared_lock lock(impl_->indexMutex);
  return impl_->index.size();
}

bool Registry::removeMesh(std::string_view meshId) {
  Impl& im = *impl_;
  std::lock_guard dbLock(im.dbMutex);
  im.stmts->deleteMesh.run().bind(1, meshId).done();
  const bool removed = sqlite3_changes(im.db->get()) > 0;
  std::unique_lock lock(im.indexMutex);
  if (auto it = im.index.find(meshId); it != im.index.end()) im.index.erase(it);
  if (auto it = im.pending.find(meshId); it != im.pending.end()) im.pending.erase(it);
  return removed;
}

bool Registry::rotateSecret(std::string_view meshId, std::string_view newSecret) {
  Impl& im = *impl_;
  {
    std::shared_lock lock(im.indexMutex);
    if (im.index.find(meshId) == im.index.end()) return false;
  }
  const std::string hash = im.hashSecret(newSecret);
  const Verifier verifier = im.makeVerifier(meshId, newSecret);
  const std::int64_t now = wallClockMs();
  std::lock_guard dbLock(im.dbMutex);
  auto run = im.stmts->replaceSecret.run();
  run.bind(1, meshId).bind(2, hash).bind(3, now);
  run.bindBlob(4, verifier.data(), verifier.size()).done();
  if (sqlite3_changes(im.db->get()) == 0) return false;
  std::unique_lock lock(im.indexMutex);
  if (auto it = im.index.find(meshId); it != im.index.end()) {
    Entry& e = it->second;
    e.secretHash = hash;
    e.updatedAtMs = now;
    e.hasToken = false;
    e.tokenHash.fill(0);
    e.tokenExpiresMs = 0;
    e.hasVerifier = true;
    e.verifier = verifier;
    e.secretSetMs = now;
  }
  return true;
}

bool Registry::checkWritable() {
  Impl& im = *impl_;
  try {
    const std::string stamp = std::to_string(wallClockMs());
    std::lock_guard dbLock(im.dbMutex);
    im.stmts->probeWrite.run()
        .bind(1, kProbeKeyName)
        .bindBlob(2, stamp.data(), stamp.size())
        .done();
    auto run = im.stmts->probeRead.run();
    run.bind(1, kProbeKeyName);
    return run.step() && run.blob(0) == stamp;
  } catch (const std::exception&) {
    return false;
  }
}

// ---- cluster mode ----

ReplicaChange Registry::applyReplica(const ReplicaRecord& r, std::string_view secret) {
  Impl& im = *impl_;
  std::lock_guard dbLock(im.dbMutex);
  std::optional<Entry> old;
  {
    std::shared_lock lock(im.indexMutex);
    if (auto it = im.index.find(r.meshId); it != im.index.end()) old = it->second;
  }
  if (old && old->revision >= r.revision) return ReplicaChange::None;

  Entry e;
  ReplicaChange change = ReplicaChange::Added;
  if (old && old->secretSetMs == r.secretSetMs) {
    // The same secret: the hash (possibly re-hashed here with this relay's
    // parameters), verifier and token stay.
    e = *old;
    change = ReplicaChange::Renamed;
  } else {
    if (old) {
      change = ReplicaChange::SecretChanged;
      e.lastSeenMs = old->lastSeenMs;
    }
    e.secretHash = r.secretHash;
  }
  e.name = r.name;
  e.createdAtMs = r.createdAtMs;
  e.updatedAtMs = r.updatedAtMs;
  e.secretSetMs = r.secretSetMs;
  e.revision = r.revision;
  if (!secret.empty() && !e.hasVerifier) {
    e.verifier = im.makeVerifier(r.meshId, secret);
    e.hasVerifier = true;
  }
  auto run = im.stmts->putReplica.run();
  run.bind(1, r.meshId).bind(2, e.name).bind(3, e.secretHash).bind(4, e.createdAtMs);
  run.bind(5, e.updatedAtMs).bind(6, e.lastSeenMs);
  if (e.hasToken) {
    run.bindBlob(7, e.tokenHash.data(), e.tokenHash.size());
  } else {
    run.bindNull(7);
  }
  run.bind(8, e.hasToken ? e.tokenExpiresMs : 0);
  if (e.hasVerifier) {
    run.bindBlob(9, e.verifier.data(), e.verifier.size());
  } else {
    run.bindNull(9);
  }
  run.bind(10, static_cast<std::int64_t>(e.revision)).bind(11, e.secretSetMs).done();
  std::unique_lock lock(im.indexMutex);
  im.index.insert_or_assign(r.meshId, std::move(e));
  return change;
}

bool Registry::applyReplicaRemoval(std::string_view meshId, std::uint64_t revision) {
  Impl& im = *impl_;
  std::lock_guard dbLock(im.dbMutex);
  {
    std::shared_lock lock(im.indexMutex);
    auto it = im.index.find(meshId);
    if (it == im.index.end() || it->second.revision >= revision) return false;
  }
  im.stmts->deleteMesh.run().bind(1, meshId).done();
  std::unique_lock lock(im.indexMutex);
  if (auto it = im.index.find(meshId); it != im.index.end()) im.index.erase(it);
  if (auto it = im.pending.find(meshId); it != im.pending.end()) im.pending.erase(it);
  return true;
}

namespace {
ReplicaRecord toReplica(const std::string& id, const Entry& e) {
  return ReplicaRecord{id,        e.name, e.secretHash, e.createdAtMs, e.updatedAtMs, e.secretSetMs,
                       e.revision};
}
}  // namespace

std::optional<ReplicaRecord> Registry::replica(std::string_view meshId) const {
  std::shared_lock lock(impl_->indexMutex);
  auto it = impl_->index.find(meshId);
  if (it == impl_->index.end()) return std::nullopt;
  return toReplica(it->first, it->second);
}

std::vector<ReplicaRecord> Registry::replicas() const {
  std::vector<ReplicaRecord> out;
  std::shared_lock lock(impl_->indexMutex);
  out.reserve(impl_->index.size());
  for (const auto& [id, e] : impl_->index) out.push_back(toReplica(id, e));
  return out;
}

std::uint64_t Registry::appliedRevision() const {
  Impl& im = *impl_;
  std::lock_guard dbLock(im.dbMutex);
  auto run = im.stmts->probeRead.run();
  run.bind(1, kAppliedRevisionName);
  if (!run.step()) return 0;
  const std::string text = run.blob(0);
  return text.empty() ? 0 : std::stoull(text);
}

void Registry::setAppliedRevision(std::uint64_t revision) {
  Impl& im = *impl_;
  const std::string text = std::to_string(revision);
  std::lock_guard dbLock(im.dbMutex);
  im.stmts->probeWrite.run()
      .bind(1, kAppliedRevisionName)
      .bindBlob(2, text.data(), text.size())
      .done();
}

std::string Registry::tokenKey() const {
  std::shared_lock lock(impl_->indexMutex);
  return std::string(reinterpret_cast<const char*>(impl_->tokenKey.data()), impl_->tokenKey.size());
}

void Registry::adoptTokenKey(std::string_view key) {
  Impl& im = *impl_;
  if (key.size() != kTokenKeyBytes) throw std::runtime_error("registry: token key of wrong length");
  std::lock_guard dbLock(im.dbMutex);
  im.stmts->probeWrite.run().bind(1, kTokenKeyName).bindBlob(2, key.data(), key.size()).done();
  std::unique_lock lock(im.indexMutex);
  std::copy(key.begin(), key.end(), im.tokenKey.begin());
}

void Registry::setTokenListener(std::function<void(const TokenReplica&)> listener) {
  impl_->tokenListener = std::move(listener);
}

bool Registry::applyTokenReplica(const TokenReplica& t) {
  Impl& im = *impl_;
  if (t.hash.size() != kTokenHashBytes) return false;
  std::unique_lock lock(im.indexMutex);
  auto it = im.index.find(t.meshId);
  if (it == im.index.end()) return false;
  Entry& e = it->second;
  // A token of an older secret, or older than the one held, is ignored.
  if (e.secretSetMs != t.secretSetMs) return false;
  if (e.hasToken && e.tokenExpiresMs >= t.expiresAtMs) return false;
  std::copy(t.hash.begin(), t.hash.end(), e.tokenHash.begin());
  e.hasToken = true;
  e.tokenExpiresMs = t.expiresAtMs;
  im.pending.emplace(t.meshId);
  return true;
}

bool Registry::hashMatches(const std::string& stored, std::string_view secret) {
  if (isLegacyHash(stored)) return legacyMatches(stored, secret);
  return Impl::secretMatches(stored, secret);
}

std::string Registry::hashSecret(std::string_view secret) const {
  return impl_->hashSecret(secret);
}

}  // namespace mesh::relay
