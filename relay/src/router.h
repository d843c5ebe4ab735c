// The Router: who is online where. It owns the routing tables (every online
// mesh, the ones that asked for presence, the ones with participants), the
// takeover rule, presence and the participants exchange, and decides where a
// relay, a broadcast or a discover goes. It speaks in meshIds and protocol
// text (proto/codec.h), never in sessions or WebSocket bytes.
//
//   gateway (sessions, frames) ──> Router ──> LocalDelivery (this relay's
//                                    ^  │      connections: the server frames
//                                    │  │      and queues)
//                                    │  └───> ClusterLink (other relays; a
//                                    └─────── no-op when single)
//
// The server (gateway.cpp) tells the Router when a local connection
// authenticates, updates its rooms or participants, and goes away; it asks
// the Router to route relays, broadcasts and discovers. A ClusterLink tells
// the Router about meshes held by other relays and hands it frames for its
// own meshes (the "from the cluster" methods below). Meshes on other relays
// stay in the same tables as local ones, tagged with the relay that holds
// them, so discover, presence, participants and the admin API read a local
// replica and never ask the cluster.
//
// Thread rules: the Router, LocalDelivery and ClusterLink are used on the
// loop thread only. A ClusterLink whose transport calls back on other threads
// (libnats) hands what arrives to the loop first, and calls every answer
// (RelayAnswer, CountAnswer) on the loop thread too.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace mesh::relay {

// A callable borrowed for the length of one call (never stored): two
// pointers, no allocation, unlike std::function.
template <typename Signature>
class FunctionRef;

template <typename R, typename... Args>
class FunctionRef<R(Args...)> {
 public:
  template <typename F>
  requires(!std::is_same_v<std::remove_cvref_t<F>, FunctionRef> &&
           std::is_invocable_r_v<R, F&, Args...>)
      FunctionRef(F&& f)  // NOLINT: converts implicitly, like std::function
      : object_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
        call_([](void* o, Args... args) -> R {
          return (*static_cast<std::remove_reference_t<F>*>(o))(std::forward<Args>(args)...);
        }) {}
  R operator()(Args... args) const { return call_(object_, std::forward<Args>(args)...); }

 private:
  void* object_;
  R (*call_)(void*, Args...);
};

// Appends one frame's text (JSON, no WebSocket header) to `out`.
using Encoder = FunctionRef<void(std::string& out)>;

// The server's handle of one of its own connections. The Router stores it
// and hands it back to LocalDelivery; it never looks at what it points to.
using LocalConn = void*;

// What the cluster knows of an online mesh.
struct MeshInfo {
  std::string meshId;
  std::string name;
  std::string roomsJson = "[]";         // raw JSON array, as the node sent it
  std::string participantsJson = "[]";  // raw JSON array, as the node sent it
  std::size_t participantCount = 0;     // entries in participantsJson
  bool wantsPresence = false;           // asked for gateway_presence events
};

// One row of the Router's table.
struct MeshEntry : MeshInfo {
  std::string relayId;       // the relay holding it; empty: this relay
  LocalConn conn = nullptr;  // its connection when held here

  [[nodiscard]] bool local() const { return relayId.empty(); }
};

// What changed in a gateway_update_* (ClusterLink::meshUpdated and
// Router::remoteUpdated).
enum class MeshChange { Rooms, Participants };

// The answer to a gateway_relay, for its gateway_ack.
enum class RelayOutcome {
  Delivered,    // queued on the target's connection (here or on its relay)
  Offline,      // nobody holds the target
  Unavailable,  // the target is on another relay and the cluster cannot reach it
};
// Called once, on the loop thread, when a relay to another relay is answered.
using RelayAnswer = std::function<void(RelayOutcome)>;
// Called once, on the loop thread, with the number of meshes that got a
// broadcast (on the relays that answered).
using CountAnswer = std::function<void(std::uint32_t recipients)>;

// This relay's own connections; implemented by the server.
class LocalDelivery {
 public:
  virtual ~LocalDelivery() = default;

  // Queues one frame on every connection of `to`, in order. `encode` is
  // called exactly once, before anything is queued (not at all when `to` is
  // empty): the frame is framed once and shared by every recipient.
  // Queuing may close a connection (slow consumer), which calls back into
  // Router::localOffline; the Router never holds an iterator across this
  // call. `arrivalUs` is when the node frame it carries arrived (steady us,
  // for the delivery histogram), 0 for frames the relay makes up itself.
  virtual void deliver(std::span<const LocalConn> to, Encoder encode, std::int64_t arrivalUs) = 0;

  // `conn` lost its mesh to a newer connection, here or on another relay:
  // it is to get error session_replaced and close 4000. The Router has
  // already dropped it from its tables (a later localOffline for it is a
  // no-op) and sends no presence for it.
  virtual void replaced(LocalConn conn) = 0;
};

// The other relays of a cluster. Every method is a notification or a request
// that returns at once; answers come back later through the answer callbacks,
// on the loop thread. The Router calls it after its own tables are updated.
// A NATS implementation publishes these; what arrives from the other relays
// it hands to the Router's "from the cluster" methods.
class ClusterLink {
 public:
  virtual ~ClusterLink() = default;

  // False when there is no cluster (single relay): the Router then never
  // asks the link anything that needs an answer, and acks at once.
  [[nodiscard]] virtual bool active() const = 0;

  // A mesh came online on this relay, or changed connection here (a local
  // takeover): every other relay is to list it as held by this one.
  virtual void meshOnline(const MeshEntry& mesh) = 0;
  // A mesh held by this relay went offline (not after a takeover: the new
  // holder's meshOnline says it all).
  virtual void meshOffline(std::string_view meshId) = 0;
  // A mesh held here changed its rooms or participants; `mesh` is the whole
  // new state.
  virtual void meshUpdated(const MeshEntry& mesh, MeshChange what) = 0;

  // Asks `ownerRelayId`, which holds `targetMeshId` by this relay's table,
  // to queue `incomingText` (a whole gateway_incoming frame) on it. `answer`
  // gets Delivered once the owner queued it, Offline when the owner does not
  // hold the mesh (any more), Unavailable when the owner cannot be reached.
  // Frames from one sender to one target keep their order.
  virtual void relay(std::string_view ownerRelayId, std::string_view targetMeshId,
                     std::string incomingText, RelayAnswer answer) = 0;

  // Asks every other relay to queue `incomingText` (a gateway_incoming) on
  // each of its meshes but `fromMeshId`. `answer` gets the number of meshes
  // that got it on the other relays (0 when none could be reached).
  virtual void broadcast(std::string incomingText, std::string_view fromMeshId,
                         CountAnswer answer) = 0;

  // A connection here authenticated as `meshId`, which `ownerRelayId` held:
  // that relay is to close its connection (Router::takenOver there).
  virtual void takeover(std::string_view ownerRelayId, std::string_view meshId) = 0;
};

// The link of a relay on its own.
class NoClusterLink final : public ClusterLink {
 public:
  [[nodiscard]] bool active() const override { return false; }
  void meshOnline(const MeshEntry&) override {}
  void meshOffline(std::string_view) override {}
  void meshUpdated(const MeshEntry&, MeshChange) override {}
  void relay(std::string_view, std::string_view, std::string, RelayAnswer answer) override {
    answer(RelayOutcome::Unavailable);
  }
  void broadcast(std::string, std::string_view, CountAnswer answer) override { answer(0); }
  void takeover(std::string_view, std::string_view) override {}
};

class Router {
 public:
  Router(LocalDelivery& local, ClusterLink& cluster) : local_(local), cluster_(&cluster) {}
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  // Replaces the link (before any mesh is online: the server starts single
  // and attaches the cluster link once it is configured).
  void setClusterLink(ClusterLink& cluster) { cluster_ = &cluster; }

  // ---- this relay's connections (the gateway)

  // `conn` authenticated as `info.meshId`. The takeover rule: the newest
  // authentication wins. A connection here that held the mesh gets
  // LocalDelivery::replaced; a mesh held by another relay is taken over
  // through ClusterLink::takeover. Then the participants exchange: `conn`
  // gets every other mesh's non-empty list (one gateway_participants), and
  // every other local mesh gets this one's if it is non-empty. Watchers get
  // presence online unless it was a takeover (the mesh never went offline).
  // Returns true for a takeover.
  bool localOnline(MeshInfo info, LocalConn conn);
  // `conn`'s connection is gone (or going). A no-op unless `conn` holds
  // `meshId`. `announce`: watchers get presence offline.
  void localOffline(std::string_view meshId, LocalConn conn, bool announce);
  // gateway_update_rooms: kept for discover, no frame to anyone.
  void localRoomsUpdated(std::string_view meshId, std::string_view roomsJson);
  // gateway_update_participants: every other local mesh gets the new list.
  void localParticipantsUpdated(std::string_view meshId, std::string_view participantsJson,
                                std::size_t participantCount);

  // Who sends a relay or broadcast (a local mesh).
  struct Sender {
    std::string_view meshId;
    std::string_view name;
    LocalConn conn;  // its connection (a broadcast skips it)
  };
  struct RelayResult {
    // Set when known at once; empty when the answer comes later through
    // the RelayAnswer that `later` made.
    std::optional<RelayOutcome> outcome;
    LocalConn to = nullptr;  // the target's connection when it is here
  };
  // gateway_relay: `payloadJson` (already filtered) goes to `targetMeshId`
  // as a gateway_incoming. `later` is called only when the target is on
  // another relay, to make the callback for the answer.
  RelayResult relay(const Sender& from, std::string_view targetMeshId, std::string_view payloadJson,
                    const std::optional<std::string>& id, std::int64_t arrivalUs,
                    FunctionRef<RelayAnswer()> later);

  struct BroadcastResult {
    std::uint32_t localRecipients = 0;
    // The other relays were asked too: the CountAnswer that `later` made
    // gets the total (local + remote); the ack waits for it.
    bool pending = false;
  };
  // gateway_broadcast: one gateway_incoming to every other mesh, here and on
  // the other relays.
  BroadcastResult broadcast(const Sender& from, std::string_view payloadJson,
                            const std::optional<std::string>& id, std::int64_t arrivalUs,
                            FunctionRef<CountAnswer()> later);

  // gateway_discover: `to` gets the list of every online mesh (here and
  // elsewhere), from the tables.
  void discover(LocalConn to, const std::optional<std::string>& id);

  // ---- readers (health, admin, metrics)
  [[nodiscard]] const MeshEntry* find(std::string_view meshId) const;
  // The connection holding `meshId` here, or null.
  [[nodiscard]] LocalConn localConn(std::string_view meshId) const;
  [[nodiscard]] std::size_t localCount() const { return localCount_; }
  [[nodiscard]] std::size_t totalCount() const { return meshes_.size(); }

  // ---- from the cluster (called by the ClusterLink, on the loop thread)

  // `relayId` holds `info.meshId` now. A mesh this relay held is closed as
  // replaced (the other relay's authentication is the newer one). Watchers
  // get presence online and local meshes the participants (if any), as for
  // a local newcomer, unless the mesh was online already.
  void remoteOnline(MeshInfo info, std::string_view relayId);
  // `relayId` no longer holds `meshId` (a no-op when the table says another
  // relay does): watchers get presence offline.
  void remoteOffline(std::string_view meshId, std::string_view relayId);
  // A remote mesh's rooms or participants changed; `info` is its whole
  // state. Local meshes get a participants push for MeshChange::Participants.
  void remoteUpdated(MeshInfo info, std::string_view relayId, MeshChange what);
  // `relayId` is gone (heartbeats lost): all its meshes go offline.
  void relayGone(std::string_view relayId);
  // Another relay asks to queue `incomingText` on local mesh `targetMeshId`:
  // Delivered or Offline, for its answer.
  RelayOutcome deliverRelay(std::string_view targetMeshId, std::string_view incomingText);
  // Another relay's broadcast: queued on every local mesh but `fromMeshId`;
  // returns how many got it.
  std::uint32_t deliverBroadcast(std::string_view incomingText, std::string_view fromMeshId);
  // A connection on another relay took `meshId` over: the local one is
  // closed as replaced (no presence). The new holder's remoteOnline follows.
  void takenOver(std::string_view meshId);

 private:
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using Table = std::unordered_map<std::string, MeshEntry, Hash, std::equal_to<>>;

  MeshEntry* findEntry(std::string_view meshId);
  // Takes `e` out of the tables (not out of meshes_).
  void unindex(MeshEntry& e);
  void index(MeshEntry& e);
  void erase(Table::iterator it);
  // Every local connection but `except` (null: all of them).
  [[nodiscard]] std::vector<LocalConn> localsBut(LocalConn except) const;
  void sendPresence(const MeshEntry& about, bool online);
  // `about`'s participants to every local mesh but itself.
  void pushParticipants(const MeshEntry& about);
  // The newcomer `to` gets every other mesh's non-empty list.
  void sendOthersParticipants(const MeshEntry& newcomer);

  LocalDelivery& local_;
  ClusterLink* cluster_;
  Table meshes_;  // every online mesh of the cluster, by meshId
  std::size_t localCount_ = 0;
  // Local meshes that asked for presence events.
  std::unordered_set<const MeshEntry*> presenceWatchers_;
  // Meshes (local and remote) with a non-empty participant list: what a
  // newcomer is sent, without walking every online mesh.
  std::unordered_set<const MeshEntry*> withParticipants_;
};

}  // namespace mesh::relay
