// decodeServerFrame: the client side. Frames from the relay are few, so a
// DOM decode is enough; it keeps numbers as their text, so a payload reaches
// the node with every number exactly as the sending mesh wrote it, and no
// number from the wire is ever converted.
#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>

#include "exact_json.h"
#include "mesh/proto/server_frames.h"

namespace mesh::proto {
namespace {

using detail::ExactJson;
using Value = ExactJson::Value;

// The frame object, plus the deepest payload a relay's --max-payload-depth
// lets through (512), plus room for the frame's own nesting.
constexpr int kMaxFrameDepth = 520;

// In `json` numbers are held as strings; json.isString() tells real strings
// from them.

// Reads a string member into `out`; false when it is missing or not a string.
bool getString(const ExactJson& json, const Value& obj, const char* key, std::string& out) {
  const auto it = obj.FindMember(key);
  if (it == obj.MemberEnd() || !json.isString(it->value)) return false;
  out.assign(it->value.GetString(), it->value.GetStringLength());
  return true;
}

// An optional string member: absent is fine, any other type is not.
bool getOptionalString(const ExactJson& json, const Value& obj, const char* key, std::string& out) {
  const auto it = obj.FindMember(key);
  if (it == obj.MemberEnd()) return true;
  if (!json.isString(it->value)) return false;
  out.assign(it->value.GetString(), it->value.GetStringLength());
  return true;
}

bool getOptionalId(const ExactJson& json, const Value& obj, std::optional<std::string>& out) {
  const auto it = obj.FindMember("id");
  if (it == obj.MemberEnd()) return true;
  if (!json.isString(it->value)) return false;
  out.emplace(it->value.GetString(), it->value.GetStringLength());
  return true;
}

// A non-negative integer that fits in 32 bits, written without sign,
// fraction or exponent (what RapidJSON's IsUint accepted before).
bool getUint32(const ExactJson& json, const Value& obj, const char* key, std::uint32_t& out) {
  const auto it = obj.FindMember(key);
  if (it == obj.MemberEnd() || !json.isNumber(it->value)) return false;
  const char* begin = it->value.GetString();
  const char* end = begin + it->value.GetStringLength();
  const auto [ptr, ec] = std::from_chars(begin, end, out);
  return ec == std::errc() && ptr == end;
}

std::optional<ServerFrame> decodeAuthOk(const ExactJson& json, const Value& d) {
  AuthOk f;
  if (!getString(json, d, "meshId", f.meshId) || !getString(json, d, "name", f.name) ||
      !getOptionalString(json, d, "resumeToken", f.resumeToken) ||
      !getOptionalString(json, d, "resumeExpiresAt", f.resumeExpiresAt) ||
      !getOptionalId(json, d, f.id)) {
    return std::nullopt;
  }
  return f;
}

std::optional<ServerFrame> decodeAuthError(const ExactJson& json, const Value& d) {
  AuthError f;
  if (!getString(json, d, "message", f.message) || !getOptionalString(json, d, "code", f.code) ||
      !getOptionalId(json, d, f.id)) {
    return std::nullopt;
  }
  return f;
}

std::optional<ServerFrame> decodeDiscoverResult(const ExactJson& json, const Value& d) {
  const auto it = d.FindMember("instances");
  if (it == d.MemberEnd() || !it->value.IsArray()) return std::nullopt;
  DiscoverResult f;
  for (const Value& v : it->value.GetArray()) {
    if (!v.IsObject()) return std::nullopt;
    Instance inst;
    if (!getString(json, v, "meshId", inst.meshId) || !getString(json, v, "name", inst.name)) {
      return std::nullopt;
    }
    const auto rooms = v.FindMember("publicRooms");
    if (rooms != v.MemberEnd()) {
      if (!rooms->value.IsArray()) return std::nullopt;
      for (const Value& room : rooms->value.GetArray()) {
        if (!json.isString(room)) return std::nullopt;
        inst.publicRooms.emplace_back(room.GetString(), room.GetStringLength());
      }
    }
    f.instances.push_back(std::move(inst));
  }
  if (!getOptionalId(json, d, f.id)) return std::nullopt;
  return f;
}

std::optional<ServerFrame> decodeIncoming(const ExactJson& json, const Value& d) {
  Incoming f;
  if (!getString(json, d, "fromMeshId", f.fromMeshId) ||
      !getString(json, d, "fromMeshName", f.fromMeshName) || !getOptionalId(json, d, f.id)) {
    return std::nullopt;
  }
  const auto payload = d.FindMember("payload");
  if (payload == d.MemberEnd()) return std::nullopt;
  f.payloadJson = json.serialize(payload->value);
  return f;
}

std::optional<ServerFrame> decodeParticipants(const ExactJson& json, const Value& d) {
  const auto it = d.FindMember("remoteParticipants");
  if (it == d.MemberEnd() || !it->value.IsArray()) return std::nullopt;
  Participants f;
  for (const Value& v : it->value.GetArray()) {
    if (!v.IsObject()) return std::nullopt;
    RemoteParticipants r;
    if (!getString(json, v, "meshId", r.meshId) || !getString(json, v, "meshName", r.meshName)) {
      return std::nullopt;
    }
    const auto list = v.FindMember("participants");
    if (list == v.MemberEnd() || !list->value.IsArray()) return std::nullopt;
    r.participantsJson = json.serialize(list->value);
    f.remote.push_back(std::move(r));
  }
  return f;
}

std::optional<ServerFrame> decodeError(const ExactJson& json, const Value& d) {
  ErrorFrame f;
  if (!getString(json, d, "message", f.message) || !getOptionalString(json, d, "code", f.code) ||
      !getOptionalId(json, d, f.id)) {
    return std::nullopt;
  }
  return f;
}

std::optional<ServerFrame> decodeAck(const ExactJson& json, const Value& d) {
  Ack f;
  if (!getString(json, d, "id", f.id) || !getString(json, d, "status", f.status))
    return std::nullopt;
  if (!getUint32(json, d, "recipients", f.recipients)) return std::nullopt;
  return f;
}

std::optional<ServerFrame> decodePresence(const ExactJson& json, const Value& d) {
  Presence f;
  std::string status;
  if (!getString(json, d, "meshId", f.meshId) || !getString(json, d, "name", f.name) ||
      !getString(json, d, "status", status)) {
    return std::nullopt;
  }
  if (status == "online") {
    f.online = true;
  } else if (status != "offline") {
    return std::nullopt;
  }
  return f;
}

}  // namespace

std::optional<ServerFrame> decodeServerFrame(std::string_view text) {
  ExactJson json;
  if (!json.parse(text, kMaxFrameDepth) || !json.root().IsObject()) return std::nullopt;
  const Value& doc = json.root();
  const auto typeIt = doc.FindMember("type");
  if (typeIt == doc.MemberEnd() || !json.isString(typeIt->value)) return std::nullopt;
  const std::string_view type(typeIt->value.GetString(), typeIt->value.GetStringLength());

  if (type == "gateway_incoming") return decodeIncoming(json, doc);
  if (type == "gateway_ack") return decodeAck(json, doc);
  if (type == "gateway_presence") return decodePresence(json, doc);
  if (type == "gateway_auth_ok") return decodeAuthOk(json, doc);
  if (type == "gateway_auth_error") return decodeAuthError(json, doc);
  if (type == "gateway_discover_result") return decodeDiscoverResult(json, doc);
  if (type == "gateway_participants") return decodeParticipants(json, doc);
  if (type == "error") return decodeError(json, doc);
  return UnknownServerFrame{std::string(type)};
}

}  // namespace mesh::proto
