// Frames a node sends to the relay, as value types.
//
// Raw JSON fields (payload, publicRooms, participants) are views into the
// frame text the decoder was given: exactly the bytes the node sent, valid
// JSON and valid UTF-8, never re-serialized. They live as long as that text.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace mesh::proto {

struct AuthFrame {
  // Empty when absent, which only a frame with a token may be.
  std::string meshId;
  std::optional<std::string> secret;
  std::optional<std::string> resumeToken;
  // A signed token (JWT) naming the mesh in a claim (docs/protocol.md).
  std::optional<std::string> token;
  // Raw JSON array of strings, empty view when absent.
  std::string_view publicRoomsJson;
  // Raw JSON array of {"id","name","type"} objects, empty view when absent.
  std::string_view participantsJson;
  std::size_t participantCount = 0;
  // Part B: the node wants gateway_presence events ("presence": true).
  bool presence = false;
};

struct DiscoverFrame {};

struct RelayFrame {
  std::string targetMeshId;
  std::string_view payloadJson;  // raw JSON object
};

struct BroadcastFrame {
  std::string_view payloadJson;  // raw JSON object
};

struct UpdateRoomsFrame {
  std::string_view publicRoomsJson;  // raw JSON array of strings
};

struct UpdateParticipantsFrame {
  std::string_view participantsJson;  // raw JSON array of objects
  std::size_t participantCount = 0;
};

// A fresh token for a session that authenticated with one, before the old
// one expires.
struct ReauthFrame {
  std::string token;
};

using NodeFrame = std::variant<AuthFrame, DiscoverFrame, RelayFrame, BroadcastFrame,
                               UpdateRoomsFrame, UpdateParticipantsFrame, ReauthFrame>;

// The wire type name of a decoded frame, e.g. "gateway_relay".
[[nodiscard]] std::string_view typeName(const NodeFrame& frame);

}  // namespace mesh::proto
