// Decoding frames the relay sends to a node: for the node-client library,
// the tools and the tests. Payload and participant lists stay raw JSON.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace mesh::proto {

struct AuthOk {
  std::string meshId;
  std::string name;
  std::string resumeToken;        // empty when the relay sent none
  std::string resumeExpiresAt;    // empty when the relay sent none
  std::optional<std::string> id;  // the id of the gateway_auth it answers
};
struct AuthError {
  std::string code;  // empty from a relay that sends none (the original)
  std::string message;
  std::optional<std::string> id;  // the id of the frame that caused it
};
struct Instance {
  std::string meshId;
  std::string name;
  std::vector<std::string> publicRooms;
};
struct DiscoverResult {
  std::vector<Instance> instances;
  std::optional<std::string> id;
};
struct Incoming {
  std::string fromMeshId;
  std::string fromMeshName;
  std::string payloadJson;  // serialized JSON value as received
  std::optional<std::string> id;
};
struct RemoteParticipants {
  std::string meshId;
  std::string meshName;
  std::string participantsJson;  // serialized JSON array
};
struct Participants {
  std::vector<RemoteParticipants> remote;
};
struct ErrorFrame {
  std::string code;
  std::string message;
  std::optional<std::string> id;
};
struct Ack {
  std::string id;
  std::string status;  // "delivered", "offline", "stored"
  std::uint32_t recipients = 0;
};
struct Presence {
  std::string meshId;
  std::string name;
  bool online = false;
};
// A well-formed frame of a type this library does not know: ignored by
// clients, as the protocol asks.
struct UnknownServerFrame {
  std::string type;
};

using ServerFrame = std::variant<AuthOk, AuthError, DiscoverResult, Incoming, Participants,
                                 ErrorFrame, Ack, Presence, UnknownServerFrame>;

// nullopt when the text is not a JSON object with a string "type" or a known
// type lacks a required field.
[[nodiscard]] std::optional<ServerFrame> decodeServerFrame(std::string_view text);

}  // namespace mesh::proto
