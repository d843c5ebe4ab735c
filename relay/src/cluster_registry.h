// The shared registry of cluster mode (docs/cluster.md, "Registry").
//
// A replicated JetStream key/value bucket is the source of truth: one entry
// per mesh (name, Argon2id hash, times; never a secret), the resume-token
// hash key, and each mesh's current resume-token hash. Every relay keeps a
// copy in its own SQLite registry (Registry::applyReplica), with the bucket
// revision it applied, so it authenticates from that copy at once, and
// while NATS is unreachable.
//
// Threads: this object owns its own NATS connection (never the routing
// one, so routing never waits on a KV write) and three kinds of threads:
// - the watcher: connects, binds or creates the bucket, uploads meshes the
//   bucket lacks, then applies every change it watches to the local copy and
//   tells the server (onRevoked) about deleted meshes and new secrets;
// - the token publisher: sends resume-token hashes to the bucket, pipelined,
//   without anyone waiting for them;
// - writers: registerMesh/removeMesh/rotateSecret are blocking (Argon2id and
//   KV round trips, retried through a JetStream leader election) and run on
//   this object's own writer threads (submit), never on the event loop nor
//   on the relay's Argon2 workers.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <variant>

#include "mesh/relay/config.h"
#include "registry.h"
#include "worker_pool.h"

namespace mesh::relay {

// The bucket's name on the NATS cluster (its stream is KV_<name>).
inline constexpr const char* kRegistryBucket = "mesh_registry";

// A registry write that the bucket did not take in time: answered 503.
struct RegistryUnavailable {
  std::string message;
};

enum class RotateOutcome { Rotated, UnknownMesh, WrongSecret };

class ClusterRegistry {
 public:
  struct Hooks {
    // A mesh was deleted or its secret replaced (through any relay): its
    // local session must close. Called on the watcher or a writer thread.
    std::function<void(const std::string& meshId, const std::string& reason)> onRevoked;
  };

  ClusterRegistry(const Config& config, Registry& registry, Hooks hooks);
  // Stops the threads (writers finish their jobs first) and the connection.
  ~ClusterRegistry();
  ClusterRegistry(const ClusterRegistry&) = delete;
  ClusterRegistry& operator=(const ClusterRegistry&) = delete;

  // Runs `job` on one of the writer threads.
  void submit(std::function<void()> job);

  // [blocking, writer thread] The cluster versions of Registry's writes: the
  // bucket first (compare-and-set on the entry's revision), then the local
  // copy, so the answer is true on this relay at once and on the others as
  // soon as their watchers see it.
  std::variant<RegisterOutcome, RegistryUnavailable> registerMesh(const std::string& meshId,
                                                                  const std::string& name,
                                                                  const std::string& secret);
  std::variant<bool, RegistryUnavailable> removeMesh(const std::string& meshId);
  std::variant<RotateOutcome, RegistryUnavailable> rotateSecret(
      const std::string& meshId, const std::string& newSecret,
      const std::optional<std::string>& currentSecret);

  struct Status {
    int reachable = -1;                // 1 the bucket answered the last probe, 0 not, -1 none yet
    std::uint64_t bucketRevision = 0;  // the bucket's last revision, as last probed
    std::uint64_t appliedRevision = 0;
    bool caughtUp = false;  // the watcher has applied the bucket's initial contents
    std::uint64_t writesUnavailable = 0;
    std::uint64_t watchRestarts = 0;
    std::uint64_t tokensPublished = 0;
    std::uint64_t tokensApplied = 0;
  };
  [[nodiscard]] Status status() const;

 private:
  struct Nats;
  void watchLoop();
  void publishLoop();
  bool ensureBucket();
  void shareTokenKey();
  void uploadMissing(const std::unordered_map<std::string, std::uint64_t>& inBucket);
  void applyEntry(void* entry, std::unordered_map<std::string, std::uint64_t>* seen);
  void probe();
  void queueToken(const TokenReplica& token);
  [[nodiscard]] bool stopping() const { return stop_.load(); }

  const Config& config_;
  Registry& registry_;
  Hooks hooks_;
  std::unique_ptr<Nats> nats_;

  std::atomic<bool> stop_{false};
  std::atomic<int> reachable_{-1};
  std::atomic<std::uint64_t> bucketRevision_{0};
  std::atomic<std::uint64_t> appliedRevision_{0};
  std::atomic<bool> caughtUp_{false};
  std::atomic<std::uint64_t> writesUnavailable_{0};
  std::atomic<std::uint64_t> watchRestarts_{0};
  std::atomic<std::uint64_t> tokensPublished_{0};
  std::atomic<std::uint64_t> tokensApplied_{0};

  // Meshes removed here by a writer, with the revision they were removed
  // at: a watched entry that old must not bring them back.
  std::mutex removedMutex_;
  std::unordered_map<std::string, std::uint64_t> removedAt_;

  // Tokens waiting to be published, latest per mesh.
  std::mutex tokenMutex_;
  std::condition_variable tokenWake_;
  std::map<std::string, TokenReplica> tokens_;

  std::thread watcher_;
  std::thread publisher_;
  std::unique_ptr<WorkerPool> writers_;
};

// Bucket keys: "mesh.<id>" and "token.<id>", with '.' in the id written
// as '=' (a key's dots separate subject tokens; ids never contain '=').
std::string registryKeyFor(std::string_view prefix, std::string_view meshId);

}  // namespace mesh::relay
