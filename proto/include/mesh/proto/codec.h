// Decoding node frames and encoding relay frames.
//
// decodeNodeFrame() parses one text frame once, iteratively (no recursion on
// input), validates it against Limits and the connection's auth state, and
// returns either a NodeFrame or the protocol error to answer with. Checks run
// in this order, and the first failure wins:
//   size > maxFrameBytes            -> FrameTooLarge (no id: not parsed)
//   not UTF-8                       -> InvalidUtf8  (close 1007)
//   not JSON / not an object        -> InvalidJson
//   nesting deeper than allowed     -> InvalidFrame
//   "type" missing or not a string  -> InvalidFrame
//   "id" present but not 1..64-byte string -> InvalidFrame
//   unknown type                    -> UnknownType
//   non-auth frame, not authed      -> NotAuthenticated
//   auth frame, already authed      -> AlreadyAuthenticated
//   a field missing or mistyped     -> InvalidFrame (message names the field)
//
// The encode*() functions append one complete frame to `out`, so the caller
// can reserve transport headroom in front. Strings are JSON-escaped; raw JSON
// arguments are copied verbatim.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "mesh/proto/errors.h"
#include "mesh/proto/frames.h"
#include "mesh/proto/limits.h"

namespace mesh::proto {

struct DecodedFrame {
  NodeFrame frame;
  std::optional<std::string> id;
};

struct DecodeError {
  ErrorCode code;
  std::string message;            // human text, names the offending field
  std::optional<std::string> id;  // the frame's id when it could be read
};

using DecodeResult = std::variant<DecodedFrame, DecodeError>;

// `text` must outlive the views inside the returned frame.
[[nodiscard]] DecodeResult decodeNodeFrame(std::string_view text, bool authenticated,
                                           const Limits& limits);

[[nodiscard]] bool isValidUtf8(std::string_view bytes);
// [A-Za-z0-9._-]{1,64}
[[nodiscard]] bool isValidMeshId(std::string_view meshId);

// Appends `s` as a JSON string literal (with quotes), escaping as needed.
void appendJsonString(std::string& out, std::string_view s);

// ---- relay -> node frames -------------------------------------------------

struct AuthOkFields {
  std::string_view meshId;
  std::string_view name;
  std::string_view resumeToken;                       // omitted when empty
  std::string_view resumeExpiresAt;                   // ISO 8601 UTC; omitted when empty
  std::optional<std::string_view> id = std::nullopt;  // the gateway_auth's id
};
void encodeAuthOk(std::string& out, const AuthOkFields& f);

// {"type":"gateway_reauth_ok","meshId","expiresAt"[,"id"]}: the session now
// lasts until `expiresAt` (ISO 8601 UTC).
void encodeReauthOk(std::string& out, std::string_view meshId, std::string_view expiresAt,
                    std::optional<std::string_view> id = std::nullopt);

// gateway_auth_error for auth codes, error for the rest; "id" when given.
void encodeError(std::string& out, ErrorCode code, std::string_view message,
                 std::optional<std::string_view> id = std::nullopt);

struct InstanceView {
  std::string_view meshId;
  std::string_view name;
  std::string_view publicRoomsJson;  // raw JSON array; "[]" when empty
};
void encodeDiscoverResult(std::string& out, const std::vector<InstanceView>& instances,
                          std::optional<std::string_view> id = std::nullopt);

// {"type":"gateway_incoming","fromMeshId","fromMeshName","payload"[,"id"]}
void encodeIncoming(std::string& out, std::string_view fromMeshId, std::string_view fromMeshName,
                    std::string_view payloadJson,
                    std::optional<std::string_view> id = std::nullopt);

struct ParticipantsView {
  std::string_view meshId;
  std::string_view meshName;
  std::string_view participantsJson;  // raw JSON array; "[]" when empty
};
void encodeParticipants(std::string& out, const std::vector<ParticipantsView>& remote);

enum class AckStatus { Delivered, Offline, Stored };
[[nodiscard]] std::string_view ackStatusText(AckStatus status);
void encodeAck(std::string& out, std::string_view id, AckStatus status, std::uint32_t recipients);

void encodePresence(std::string& out, std::string_view meshId, std::string_view name, bool online);

// ---- payload filter (--payload-filter mesh-chat) --------------------------

// The original relay's whitelist (PROTOCOL.md Part A): keeps "type" and
// "message"; of an object "message" keeps id, roomId, senderId, senderName,
// content, isDm, createdAt, fromMesh, fromMeshId, roomName, trustLevel and
// sets trustLevel to "federated". `payloadJson` is a valid JSON object (as
// decodeNodeFrame returned it); the result is a serialized JSON object.
[[nodiscard]] std::string filterMeshChatPayload(std::string_view payloadJson);

// ---- compact JSON ----------------------------------------------------------

// `text` re-serialized compactly on one line, every number exactly as it was
// written (1e400, -0, 400 digits alike) and never converted; nullopt when it
// is not one valid JSON value or nests deeper than `maxDepth` containers.
[[nodiscard]] std::optional<std::string> compactJson(std::string_view text, int maxDepth);

// ---- POST /register body --------------------------------------------------

struct RegisterRequest {
  std::string meshId;
  std::string secret;
  std::string name;
};
// On error: the human reason for a 400 answer. Missing fields give the
// original's text "meshId, secret, and name required"; bad JSON gives
// "Invalid JSON"; the Part B checks (meshId pattern, name <= 128 bytes,
// secret 16..256 bytes) give a reason naming the field.
using RegisterParse = std::variant<RegisterRequest, std::string>;
[[nodiscard]] RegisterParse parseRegisterRequest(std::string_view body);

}  // namespace mesh::proto
