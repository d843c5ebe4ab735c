// The Router's ClusterLink on NATS (cluster mode, docs/cluster.md): the
// relays of one NATS cluster tell each other which meshes they hold, hand
// each other relays and broadcasts, and take meshes over from each other.
//
// Threads: every method runs on the loop thread. A plaintext connection's
// socket is read and written on the loop (nats_loop.h) and the hot
// subscriptions are synchronous ones, read there right after each read.
// libnats still calls back on its own threads for "no responders", for
// connection events, and for everything on TLS; those callbacks copy what
// arrived and post it to the loop, nothing else. Nothing here blocks on
// NATS: publishes are buffered until the loop turn ends (on TLS, handed to
// a writer thread: libnats writes TLS blocking) or while the connection is
// re-established, and requests are plain publishes with a reply subject,
// answered later.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "cluster_wire.h"
#include "mesh/relay/config.h"
#include "nats_loop.h"
#include "router.h"

struct __natsConnection;
struct __natsSubscription;
struct __natsMsg;

namespace mesh::relay {

// Counted on the loop thread, shown by /metrics.
struct ClusterStats {
  std::uint64_t relaysOut = 0;        // gateway_relay sent to another relay
  std::uint64_t relaysIn = 0;         // gateway_relay from another relay, for a mesh here
  std::uint64_t broadcastsOut = 0;    // gateway_broadcast sent to the other relays
  std::uint64_t broadcastsIn = 0;     // gateway_broadcast from another relay
  std::uint64_t unavailable = 0;      // relays answered cluster_unavailable
  std::uint64_t takeoversOut = 0;     // meshes this relay took from another one
  std::uint64_t takeoversIn = 0;      // meshes another relay took from this one
  std::uint64_t relaysLost = 0;       // relays dropped after silence
  std::uint64_t relaysForwarded = 0;  // sent here for a mesh that had moved on
};

class NatsClusterLink final : public ClusterLink {
 public:
  // Hands a job to the loop thread (Server::Impl::post); any thread.
  using Post = std::function<void(std::function<void()>)>;

  // Heartbeats: a relay announces its meshes this often...
  static constexpr std::int64_t kHeartbeatUs = 1'000'000;
  // ...and a relay not heard from for this long is gone with its meshes
  // (at most 3 s after its last sign of life, with the 200 ms tick).
  static constexpr std::int64_t kSilenceUs = 2'500'000;
  // A relay answers a gateway_relay within this, or it counts as unreachable.
  static constexpr std::int64_t kRelayTimeoutUs = 2'000'000;
  // Broadcast counts from the other relays are awaited this long at most.
  static constexpr std::int64_t kBroadcastWaitUs = 1'000'000;
  // A mesh taken over by one relay is not taken back by another sooner.
  static constexpr std::int64_t kTakeoverHoldUs = 1'000'000;
  // With the socket on the loop, publishes wait in libnats's buffer until
  // the socket takes them. A NATS server that stops reading (hung, or a
  // network that drops without a reset) is noticed by the ping check only
  // after seconds; meanwhile relays beyond this much waiting are answered
  // cluster_unavailable at once instead of filling memory.
  static constexpr int kMaxBufferedBytes = 8 * 1024 * 1024;
  // On TLS a write the socket does not take within this breaks the
  // connection (libnats reconnects) rather than wait on (see Writer).
  static constexpr std::int64_t kTlsWriteDeadlineMs = 2000;

  // Connects to config.natsUrls (in the background while NATS is
  // unreachable). On the thread that runs `loop`: a plaintext connection's
  // socket is read and written there (nats_loop.h). Throws
  // std::runtime_error on settings NATS refuses.
  NatsClusterLink(const Config& config, std::string relayId, Router& router, Post post,
                  struct ev_loop* loop);
  // Tells the others this relay is leaving (when connected) and closes.
  ~NatsClusterLink() override;
  NatsClusterLink(const NatsClusterLink&) = delete;
  NatsClusterLink& operator=(const NatsClusterLink&) = delete;

  // ---- ClusterLink (Router)
  [[nodiscard]] bool active() const override { return true; }
  void meshOnline(const MeshEntry& mesh) override;
  void meshOffline(std::string_view meshId) override;
  void meshUpdated(const MeshEntry& mesh, MeshChange what) override;
  void relay(std::string_view ownerRelayId, std::string_view targetMeshId, std::string incomingText,
             RelayAnswer answer) override;
  void broadcast(std::string incomingText, std::string_view fromMeshId,
                 CountAnswer answer) override;
  void takeover(std::string_view ownerRelayId, std::string_view meshId) override;

  // ---- the server
  // Sends the relays queued in this loop turn: one request per target mesh
  // (cluster_wire.h, relay batches). Call once per loop turn, before the
  // sessions' queues are written.
  void flush();
  // Heartbeats, silent relays, late answers; call a few times a second.
  void tick();
  // The rule against two nodes fighting over one meshId on two relays: a
  // mesh another relay took over less than kTakeoverHoldUs ago may not be
  // taken back yet (the auth is refused with rate_limited).
  [[nodiscard]] bool mayTakeOver(std::string_view meshId) const;
  // Publishes "bye": the others drop this relay's meshes at once rather
  // than after the silence. For a clean shutdown, before sessions close.
  void leave();

  [[nodiscard]] bool connected() const { return connected_; }
  [[nodiscard]] const std::string& relayId() const { return relayId_; }
  // Other relays heard from in the last kSilenceUs.
  [[nodiscard]] std::size_t relaysSeen() const { return relays_.size(); }
  // Relays heard from in the last kSilenceUs that speak another cluster
  // wire version (cluster_wire.h): ignored.
  [[nodiscard]] std::size_t relaysIncompatible() const { return incompatible_.size(); }
  [[nodiscard]] const ClusterStats& stats() const { return stats_; }

  // What a libnats callback hands to the loop (cluster_link.cpp).
  struct Inbound;
  struct Shared;
  struct Writer;
  // Called on the loop with what a libnats callback queued.
  void handleInbound(Inbound& in);

 private:
  void connectionChanged(bool up);
  void onDeliver(const cluster::DeliverTarget& target, Inbound& in);
  void subscribe(__natsSubscription** sub, std::string_view subject, const char* what);
  void drainSubscriptions();
  void release(__natsMsg* msg);
  void freeSpent();
  void sendQueuedRelays();
  [[nodiscard]] bool backedUp() const;
  [[nodiscard]] bool up() const;
  void onReply(Inbound& in);
  void onDirectory(const cluster::DirectoryMessage& m);
  void onTakeover(const cluster::Takeover& t);
  void onBroadcast(Inbound& in);
  void publish(std::string_view subject, std::string_view data, std::string_view reply = {});
  void publishDirectory(const cluster::DirectoryMessage& m);
  void sendHeartbeat();
  void failPending();
  void finishBroadcast(std::uint64_t n);
  bool movedAway(const std::string& meshId, const std::string& toRelayId);
  // Records `relayId`'s claim on `meshId` unless the claim this relay
  // knows wins over it (cluster::claimWins); false when it does.
  bool acceptClaim(const std::string& meshId, const std::string& relayId, std::uint64_t epoch);
  void remoteOffline(const std::string& meshId, const std::string& relayId);
  void relayGone(const std::string& relayId);
  static std::uint64_t nextEpoch(std::uint64_t known);
  static std::int64_t nowUs();
  static std::int64_t unixMs();

  std::string relayId_;
  Router& router_;
  std::shared_ptr<Shared> shared_;
  std::unique_ptr<NatsLoop> loop_;  // null on TLS: libnats's own threads
  std::unique_ptr<Writer> writer_;  // on TLS: publishes leave the loop
  __natsConnection* nc_ = nullptr;
  std::int64_t maxPayload_ = 0;  // on TLS, as of the last (re)connection
  __natsSubscription* inboxSub_ = nullptr;
  __natsSubscription* answerSub_ = nullptr;   // inbox_.*.a
  __natsSubscription* deliverSub_ = nullptr;  // mesh.deliver.<this relay>.>
  __natsSubscription* controlSub_ = nullptr;  // the directory
  __natsSubscription* takeoverSub_ = nullptr;
  __natsSubscription* broadcastSub_ = nullptr;
  std::string inbox_;  // reply subjects are inbox_ + "." + a number
  bool connected_ = false;
  bool left_ = false;

  // Synchronous subscriptions, read on the loop (loop_ set).
  std::vector<__natsSubscription*> syncSubs_;
  // Messages read there, destroyed together (release()): at the latest
  // at the next tick, or when this many or this large.
  static constexpr std::size_t kSpentMessages = 512;
  static constexpr std::size_t kSpentBytes = 4 * 1024 * 1024;
  std::vector<__natsMsg*> spent_;
  std::size_t spentBytes_ = 0;

  // This relay's meshes, as announced.
  std::unordered_map<std::string, MeshInfo> local_;

  struct RelayState {
    std::int64_t lastHeardUs = 0;
    std::unordered_set<std::string> meshes;  // as its heartbeats and deltas say
    // A heartbeat in several parts, as far as it arrived.
    std::unordered_set<std::string> assembling;
    std::uint32_t nextPart = 0;
  };
  std::unordered_map<std::string, RelayState> relays_;
  std::unordered_map<std::string, std::int64_t> incompatible_;  // relayId -> last heard (us)

  // One request on a deliver subject: one frame or a batch of them, in
  // order, answered together.
  struct PendingRelay {
    std::vector<RelayAnswer> answers;
    std::int64_t deadlineUs = 0;
  };
  // Relays queued in this loop turn, per target mesh, for flush().
  struct Outgoing {
    std::string relayId;  // the holder as the Router knows it
    std::vector<std::string> frames;
    std::vector<RelayAnswer> answers;
  };
  std::unordered_map<std::string, Outgoing> outgoing_;
  void answerAll(PendingRelay& p, RelayOutcome outcome);
  struct PendingBroadcast {
    CountAnswer answer;
    std::size_t expected = 0;
    std::size_t answered = 0;
    std::uint32_t recipients = 0;
    std::int64_t deadlineUs = 0;
  };
  std::uint64_t nextRequest_ = 1;
  std::unordered_map<std::uint64_t, PendingRelay> pendingRelays_;
  std::unordered_map<std::uint64_t, PendingBroadcast> pendingBroadcasts_;

  struct Move {
    std::int64_t atUs = 0;
    std::string toRelayId;
  };
  std::unordered_map<std::string, Move> moves_;  // meshId -> its last move between relays

  // Who holds each online mesh by the highest claim this relay knows
  // (cluster_wire.h, claimWins): relayId empty for this relay.
  struct Claim {
    std::string relayId;
    std::uint64_t epoch = 0;
    bool justMade = false;  // by takeover(), for the meshOnline() that follows
  };
  std::unordered_map<std::string, Claim> claims_;

  std::int64_t lastHeartbeatUs = 0;
  ClusterStats stats_;
};

}  // namespace mesh::relay
