// What relays of one cluster say to each other over NATS: the subjects and
// the message bodies (docs/cluster.md, "Subjects"). Pure functions, no I/O:
// cluster_link.cpp publishes and reads them.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "router.h"

namespace mesh::relay::cluster {

// Every subject the relays use starts with this.
inline constexpr std::string_view kPrefix = "mesh.";

// A meshId as one subject token: '.' (a token separator in NATS) becomes
// "%2E". A meshId never holds '%', so two meshIds never share a token.
[[nodiscard]] std::string meshToken(std::string_view meshId);
// The meshId a token came from (the reverse of meshToken).
[[nodiscard]] std::string meshFromToken(std::string_view token);

// A relayId as one subject token: every byte but ASCII letters, digits, '-'
// and '_' becomes "%XX" (hex), so any relayId (a hostname:port by default)
// makes a valid token, and two relayIds never share one.
[[nodiscard]] std::string relayToken(std::string_view relayId);

// mesh.deliver.<relayToken>.<meshToken>: relays for a mesh, sent to the relay
// that holds it as far as the sender knows. Each relay subscribes to its own
// mesh.deliver.<relayToken>.> (deliverWildcard), so a request to a relay
// that is gone gets NATS's "no responders" at once. A relay that has seen
// the mesh move on forwards the request, with its reply subject, to the new
// holder once, with ".f" appended (forwarded).
[[nodiscard]] std::string deliverSubject(std::string_view relayId, std::string_view meshId,
                                         bool forwarded = false);
[[nodiscard]] std::string deliverWildcard(std::string_view relayId);
struct DeliverTarget {
  std::string meshId;
  bool forwarded = false;
};
// The mesh a deliver subject is for, or nullopt for another subject.
[[nodiscard]] std::optional<DeliverTarget> parseDeliverSubject(std::string_view subject);
// Every relay announces itself and its meshes here (heartbeats and deltas).
inline constexpr std::string_view kDirectorySubject = "mesh.cluster.directory";
// A relay took a mesh over from another one.
inline constexpr std::string_view kTakeoverSubject = "mesh.cluster.takeover";
// A gateway_broadcast for every relay's meshes (a request: each relay
// answers with how many of its meshes got it).
inline constexpr std::string_view kBroadcastSubject = "mesh.cluster.broadcast";
// Session events for operators' services (never read by the relays).
inline constexpr std::string_view kConnectedSubject = "mesh.events.connected";
inline constexpr std::string_view kDisconnectedSubject = "mesh.events.disconnected";

// What relays of one cluster must agree on: every directory message says
// which version of these subjects and bodies its sender speaks ("wire"; a
// message without it is version 1, the first release). A relay ignores a
// relay that speaks another version, and says so (cluster_link.cpp).
// 2: relays to mesh.deliver.<relay>.<mesh>, answers on reply + ".a".
inline constexpr std::uint32_t kWireVersion = 2;

// ---- directory (kDirectorySubject): JSON objects with a "type"

enum class DirectoryType {
  Heartbeat,  // every second: the sender's whole list of meshes
  Hello,      // a relay (re)joined: everyone sends a heartbeat now
  Online,     // one mesh came online on the sender
  Offline,    // one mesh went offline on the sender
  Updated,    // one mesh's rooms or participants changed
  Bye,        // the sender stops: its meshes are offline now
};

struct DirectoryMessage {
  DirectoryType type = DirectoryType::Heartbeat;
  std::string relayId;
  std::uint32_t wire = kWireVersion;  // the sender's; 1 when it gave none
  std::vector<MeshInfo> meshes;       // Heartbeat: all (of this part); Online/Updated: one
  // The claim of each mesh in `meshes` (same order; see Claims below).
  std::vector<std::uint64_t> epochs;
  std::string meshId;                     // Offline
  MeshChange change = MeshChange::Rooms;  // Updated
  // Heartbeat: a relay with many meshes sends its list in several parts,
  // one after the other, so that no message exceeds NATS's max_payload.
  std::uint32_t part = 0;
  std::uint32_t parts = 1;
};

// Meshes per heartbeat part are chosen so that a part stays under this.
inline constexpr std::size_t kHeartbeatPartBytes = 256 * 1024;
// A heartbeat of `meshes` in parts of at most kHeartbeatPartBytes each (at
// least one part, empty when there are no meshes).
[[nodiscard]] std::vector<DirectoryMessage> heartbeatParts(std::string_view relayId,
                                                           std::vector<MeshInfo> meshes,
                                                           std::vector<std::uint64_t> epochs);

[[nodiscard]] std::string encodeDirectory(const DirectoryMessage& m);
// Nullopt for anything malformed (the message is ignored).
[[nodiscard]] std::optional<DirectoryMessage> decodeDirectory(std::string_view text);

// ---- takeover (kTakeoverSubject)

struct Takeover {
  std::string meshId;
  std::string fromRelayId;  // held it
  std::string toRelayId;    // holds it now
  std::uint64_t epoch = 0;  // of the new holder's claim
};

// ---- claims: who holds a mesh when two relays say they do

// Every authentication of a mesh is a claim with an epoch: above the
// highest epoch the relay knows for that mesh, and at least the time of the
// claim in unix ms (so the latest authentication wins also on a relay that
// had not heard of an earlier one). A relay that holds a mesh yields to a
// claim with a higher epoch, or with the same epoch from a relay whose id
// sorts higher; a lower epoch is an older claim and changes nothing. Every
// relay compares the same two numbers, so all agree on the holder even when
// their clocks do not.
[[nodiscard]] bool claimWins(std::uint64_t epoch, std::string_view relayId,
                             std::uint64_t otherEpoch, std::string_view otherRelayId);
[[nodiscard]] std::string encodeTakeover(const Takeover& t);
[[nodiscard]] std::optional<Takeover> decodeTakeover(std::string_view text);

// ---- broadcast (kBroadcastSubject): one JSON line, then the frame text

struct Broadcast {
  std::string relayId;       // the sender's relay
  std::string fromMeshId;    // the sending mesh (skipped)
  std::string incomingText;  // the whole gateway_incoming frame
};
[[nodiscard]] std::string encodeBroadcast(const Broadcast& b);
[[nodiscard]] std::optional<Broadcast> decodeBroadcast(std::string_view text);
// The answer: how many meshes of the answering relay got it, as text.
[[nodiscard]] std::optional<std::uint32_t> decodeCount(std::string_view text);

// ---- relay answers (to a request on a deliver subject)
// A relay that answers a request (a relay or a broadcast) publishes the
// answer here, not on the reply subject itself: the reply subject is left
// to NATS's "no responders", which the asking relay must read through a
// callback, while answers are read on its loop (cluster_link.cpp).
[[nodiscard]] inline std::string answerSubject(std::string_view reply) {
  std::string out(reply);
  out += ".a";
  return out;
}

inline constexpr std::string_view kDeliveredReply = "delivered";
inline constexpr std::string_view kOfflineReply = "offline";

// ---- relay batches (several frames for one mesh in one request)
//
// The frames a relay queues for one remote mesh in one loop turn go out as
// one request on its deliver subject: "B", then per frame its length in
// decimal, a newline and the frame text. A lone frame is sent as it is (its
// text starts with '{'). The answer to a batch is one character per frame,
// in order: 'd' delivered, 'o' offline.
inline constexpr char kBatchMark = 'B';
inline constexpr char kBatchDelivered = 'd';
inline constexpr char kBatchOffline = 'o';
[[nodiscard]] std::string encodeRelayBatch(std::span<const std::string> frames);
// The bytes encodeRelayBatch spends on a frame besides the frame itself
// (at most).
inline constexpr std::size_t kBatchFrameOverhead = 12;
// The frames of a batch; nullopt when `text` is not a well-formed batch.
[[nodiscard]] std::optional<std::vector<std::string_view>> decodeRelayBatch(std::string_view text);

// ---- session events (kConnectedSubject, kDisconnectedSubject)

// {"meshId":...,"relay":...,"time":"<ISO 8601 UTC>"}, plus "reason" for a
// disconnect ("closed", "replaced").
[[nodiscard]] std::string encodeSessionEvent(std::string_view meshId, std::string_view relayId,
                                             std::int64_t unixMs, std::string_view reason = {});

}  // namespace mesh::relay::cluster
