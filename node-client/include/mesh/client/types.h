// Value types the client hands to and receives from its user.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mesh::client {

// Where the client is in its connection's life. Transitions are reported by
// Callbacks::onStateChange.
enum class ConnectionState {
  Stopped,             // not started yet, or stop() finished
  Connecting,          // TCP/TLS/WebSocket handshake under way
  Authenticating,      // gateway_auth sent, waiting for the answer
  Connected,           // authenticated: frames flow
  WaitingToReconnect,  // connection lost; next attempt scheduled with backoff
  Failed,              // gave up for good: bad credentials, registration
                       // conflict or session taken over; see onError
};

// A short fixed text per state, e.g. "waiting to reconnect".
[[nodiscard]] std::string_view stateText(ConnectionState state);

// One chat participant a node announces: {"id","name","type"} on the wire.
struct Participant {
  std::string id;
  std::string name;
  std::string type;
};

// A mesh that is online at the relay, from discover().
struct Instance {
  std::string meshId;
  std::string name;
  std::vector<std::string> publicRooms;
};

// A gateway_incoming frame: a relay to us or a broadcast from another mesh.
struct IncomingMessage {
  std::string fromMeshId;  // set by the relay from the sender's session
  std::string fromMeshName;
  std::string payloadJson;        // the sender's JSON payload, as received
  std::optional<std::string> id;  // the sender's message id, when it gave one
};

// The participant list another mesh announced.
struct RemoteParticipants {
  std::string meshId;
  std::string meshName;
  std::vector<Participant> participants;
};

// gateway_presence: another mesh came online or went offline.
struct PresenceEvent {
  std::string meshId;
  std::string name;
  bool online = false;
};

// What finally happened to a message handed to relay() or broadcast().
struct DeliveryReport {
  enum class Outcome {
    Delivered,  // the relay queued it on the target's socket (or stored it)
    GaveUp,     // target stayed offline past Options::maxMessageAge, or
                // Options::retryOffline is off and the target was offline
    Rejected,   // the relay refused the frame for good (code in `reason`)
  };
  std::string id;
  Outcome outcome = Outcome::Delivered;
  std::uint32_t recipients = 0;  // meshes that got it (Delivered only)
  std::string reason;            // relay's code/message for GaveUp/Rejected
};

[[nodiscard]] std::string_view outcomeText(DeliveryReport::Outcome outcome);

}  // namespace mesh::client
