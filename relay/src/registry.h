// The mesh registry: meshId, name, Argon2id secret hash, fast secret
// verifier, resume-token hash.
//
// SQLite (WAL, schema versioned with PRAGMA user_version) is the durable
// copy; an in-memory index mirrors it so that lookups and resume-token checks
// never touch the disk. Every method is thread-safe (one internal mutex for
// the index, one for the database handle).
//
// Which thread: methods marked [blocking] run Argon2id or write SQLite and
// must be called from a worker thread, never from the event loop. The others
// only read the in-memory index and take microseconds.
//
// Secrets are checked two ways. The Argon2id hash is the durable proof and
// is all a copy of the database holds. After a secret has passed Argon2id
// (or was just registered or rotated), a keyed BLAKE2b "verifier" of meshId
// and secret is stored too; its key lives in a file outside the database
// (the verifier key), so a stolen database alone gives an attacker nothing
// faster to guess against than Argon2id, while the relay checks a secret in
// microseconds. A verifier is authoritative: a secret that does not match it
// is wrong (rotation replaces it, removal deletes it). Opening the database
// with another key drops every verifier; they are rebuilt by Argon2id.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mesh::relay {

struct Argon2Params {
  // libsodium's "interactive" profile: ~tens of ms and 64 MiB per hash.
  unsigned long long opsLimit = 2;
  std::size_t memLimit = 64u * 1024u * 1024u;
};

struct MeshRecord {
  std::string meshId;
  std::string name;
  std::int64_t createdAtMs = 0;
  std::int64_t updatedAtMs = 0;
  std::int64_t lastSeenMs = 0;  // 0 = never authenticated
};

enum class RegisterOutcome { Created, Updated, Conflict };

enum class LegacyImportOutcome { Imported, Exists };

// What the fast verifier says about a secret.
enum class VerifierOutcome {
  Match,     // right secret
  Mismatch,  // wrong secret, or unknown mesh
  Absent,    // the mesh has no verifier yet: only Argon2id can tell
};
struct VerifierCheck {
  VerifierOutcome outcome = VerifierOutcome::Mismatch;
  std::string name;     // the mesh's name on Match
  bool rehash = false;  // on Match: the hash has other Argon2id parameters;
                        // verifySecret() on a worker upgrades it
};

struct ResumeToken {
  std::string token;         // 43 chars, base64url without padding
  std::int64_t expiresAtMs;  // unix ms
};

// Cluster mode (cluster_registry.h): a mesh as the shared bucket holds it.
// `secretSetMs` is when its secret was last set (registered or rotated): a
// different value means another secret, whatever the hash text says (a relay
// may re-hash the same secret with its own Argon2id parameters).
struct ReplicaRecord {
  std::string meshId;
  std::string name;
  std::string secretHash;
  std::int64_t createdAtMs = 0;
  std::int64_t updatedAtMs = 0;
  std::int64_t secretSetMs = 0;
  std::uint64_t revision = 0;  // the bucket's revision; 0 = never replicated
};

// What applying a replica changed locally.
enum class ReplicaChange { None, Added, Renamed, SecretChanged };

// A mesh's current resume-token hash, as relays share it in cluster mode.
struct TokenReplica {
  std::string meshId;
  std::string hash;  // 32 bytes
  std::int64_t expiresAtMs = 0;
  std::int64_t secretSetMs = 0;  // the secret it was issued under
};

class Registry {
 public:
  // Opens (creating if needed) the database at `path`, migrates the schema,
  // loads the index. Throws std::runtime_error with a clear message on
  // failure (unwritable directory, corrupt file, newer schema).
  // The resume-token hash key is kept in the database (generated once), so
  // tokens survive a restart. The verifier key is read from
  // `verifierKeyPath` (64 hex digits), or created there with mode 0600 if
  // the file does not exist; empty means defaultVerifierKeyPath(path). A
  // file that exists but holds no valid key is an error (a key the operator
  // restored must not be silently replaced).
  Registry(const std::string& path, Argon2Params argon2, const std::string& verifierKeyPath = {});
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // [blocking] Creates the mesh, or if it exists: same secret -> updates the
  // name (Updated), other secret -> Conflict (nothing changes). The secret of
  // an existing mesh is judged by its verifier when it has one.
  RegisterOutcome registerMesh(std::string_view meshId, std::string_view name,
                               std::string_view secret);

  // [blocking] Adds a mesh from the original gateway's registry, whose
  // secret is known only as its unsalted SHA-256 (`sha256Hex`: 64 hex
  // digits, the caller checks them). The digest is stored, marked as such,
  // only until the mesh's first successful auth (or registration) with the
  // matching secret, which replaces it with an Argon2id hash. An existing
  // meshId is left alone (Exists).
  LegacyImportOutcome importLegacyMesh(std::string_view meshId, std::string_view name,
                                       std::string_view sha256Hex);

  // [blocking] Adds a mesh that proves itself with signed tokens only
  // (--jwt-auto-register): no secret is stored, so no secret ever matches it
  // and POST /register with any secret is a Conflict. True when created;
  // false when the meshId exists (nothing changes).
  bool registerTokenMesh(std::string_view meshId, std::string_view name);

  // Where verifySecret sends the Argon2id hashing that replaces an imported
  // SHA-256 after a successful auth, so the auth is answered without waiting
  // for it (the server posts it to a worker). Unset: done in the call.
  void setBackgroundRunner(std::function<void(std::function<void()>)> run);

  // Where the verifier key lives by default: beside the database file
  // (`<db>.verifier-key`); nowhere (a key in memory) for ":memory:".
  static std::string defaultVerifierKeyPath(const std::string& dbPath);

  // Fast: the keyed verifier, from the index. An unknown mesh costs the same
  // hash and is a Mismatch, like a wrong secret.
  VerifierCheck checkVerifier(std::string_view meshId, std::string_view secret) const;

  // [blocking] Returns the mesh's name when the secret matches; nullopt for
  // an unknown mesh or a wrong secret. The verifier decides when the mesh has
  // one (an unknown mesh costs the same); otherwise Argon2id, and a match
  // then stores the verifier (and a fresh hash if the parameters changed),
  // unless the secret was rotated meanwhile.
  std::optional<std::string> verifySecret(std::string_view meshId, std::string_view secret);

  // Fast: keyed BLAKE2b of the token compared in constant time with the
  // stored hash, and the expiry checked against `nowMs`. Returns the name.
  std::optional<std::string> verifyResumeToken(std::string_view meshId, std::string_view token,
                                               std::int64_t nowMs) const;

  // Fast: issues a fresh token for the mesh (the previous one dies at once
  // in the index), and queues the hash for the database. Call persistPending()
  // [blocking] on a worker to write queued token hashes and last-seen times.
  // An unknown meshId (e.g. removed meanwhile) gets a token that is recorded
  // nowhere and so never verifies; noteSeen ignores unknown ids.
  ResumeToken issueResumeToken(std::string_view meshId, std::int64_t nowMs, std::int64_t ttlMs);
  void noteSeen(std::string_view meshId, std::int64_t nowMs);
  void persistPending();  // [blocking]
  [[nodiscard]] bool hasPending() const;

  // Fast reads from the index.
  std::optional<MeshRecord> find(std::string_view meshId) const;
  std::vector<MeshRecord> list() const;
  std::size_t size() const;

  // Meshes that have a verifier, for logs and tests.
  std::size_t verifierCount() const;

  // [blocking] Admin operations. Both kill the mesh's resume token and its
  // verifier (a rotation stores the new secret's).
  bool removeMesh(std::string_view meshId);
  bool rotateSecret(std::string_view meshId, std::string_view newSecret);

  // [blocking] A cheap write+read round trip, for readiness probes.
  bool checkWritable();

  // ---- Cluster mode: the shared bucket is the source of truth and this
  // database keeps a copy, each mesh with the bucket revision it applied.

  // [blocking] Applies a mesh from the bucket unless this copy already has
  // that revision or a newer one. `secret`, when the caller knows it is the
  // mesh's right secret (it just wrote it), stores its verifier too. A new
  // secret drops the old verifier and resume token.
  ReplicaChange applyReplica(const ReplicaRecord& record, std::string_view secret = {});
  // [blocking] Removes the mesh if the revision this copy applied is older
  // than `revision` (a delete at that revision). True when it was removed.
  bool applyReplicaRemoval(std::string_view meshId, std::uint64_t revision);
  // Fast: the mesh as this copy holds it (hash and revision included).
  std::optional<ReplicaRecord> replica(std::string_view meshId) const;
  // Fast: every mesh of this copy, for the upload of meshes the bucket lacks
  // and for the sweep of meshes the bucket no longer has.
  std::vector<ReplicaRecord> replicas() const;
  // [blocking] The highest bucket revision applied, kept in the database.
  std::uint64_t appliedRevision() const;
  void setAppliedRevision(std::uint64_t revision);

  // The resume-token hash key, and [blocking] replacing it with the
  // cluster's (tokens hashed with the old key stop verifying).
  std::string tokenKey() const;
  void adoptTokenKey(std::string_view key);
  // Called (on the caller's thread, after the index is updated) with every
  // token issueResumeToken records; set once before the server starts.
  void setTokenListener(std::function<void(const TokenReplica&)> listener);
  // Fast: takes a token issued by another relay if it belongs to the mesh's
  // current secret and outlives the one held here; queued for persistPending.
  bool applyTokenReplica(const TokenReplica& token);

  // [blocking] Argon2id check (or an imported SHA-256) of `secret` against
  // a stored hash, for hashes that come from the bucket.
  static bool hashMatches(const std::string& stored, std::string_view secret);
  // [blocking] A new Argon2id hash of `secret` with this registry's cost.
  std::string hashSecret(std::string_view secret) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mesh::relay
