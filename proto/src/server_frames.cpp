// decodeServerFrame: the client side. Frames from the relay are trusted far
// more than node input and are few, so a plain DOM decode is enough.
#include <string>
#include <string_view>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "mesh/proto/server_frames.h"

namespace mesh::proto {
namespace {

using Value = rapidjson::Value;

// Reads a string member into `out`; false when it is missing or not a string.
bool getString(const Value& obj, const char* key, std::string& out) {
  const auto it = obj.FindMember(key);
  if (it == obj.MemberEnd() || !it->value.IsString()) return false;
  out.assign(it->value.GetString(), it->value.GetStringLength());
  return true;
}

// An optional string member: absent is fine, any other type is not.
bool getOptionalString(const Value& obj, const char* key, std::string& out) {
  const auto it = obj.FindMember(key);
  if (it == obj.MemberEnd()) return true;
  if (!it->value.IsString()) return false;
  out.assign(it->value.GetString(), it->value.GetStringLength());
  return true;
}

bool getOptionalId(const Value& obj, std::optional<std::string>& out) {
  const auto it = obj.FindMember("id");
  if (it == obj.MemberEnd()) return true;
  if (!it->value.IsString()) return false;
  out.emplace(it->value.GetString(), it->value.GetStringLength());
  return true;
}

std::string serialize(const Value& v) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
  v.Accept(w);
  return std::string(buffer.GetString(), buffer.GetSize());
}

std::optional<ServerFrame> decodeAuthOk(const Value& d) {
  AuthOk f;
  if (!getString(d, "meshId", f.meshId) || !getString(d, "name", f.name) ||
      !getOptionalString(d, "resumeToken", f.resumeToken) ||
      !getOptionalString(d, "resumeExpiresAt", f.resumeExpiresAt) || !getOptionalId(d, f.id)) {
    return std::nullopt;
  }
  return f;
}

std::optional<ServerFrame> decodeAuthError(const Value& d) {
  AuthError f;
  if (!getString(d, "message", f.message) || !getOptionalString(d, "code", f.code) ||
      !getOptionalId(d, f.id)) {
    return std::nullopt;
  }
  return f;
}

std::optional<ServerFrame> decodeDiscoverResult(const Value& d) {
  const auto it = d.FindMember("instances");
  if (it == d.MemberEnd() || !it->value.IsArray()) return std::nullopt;
  DiscoverResult f;
  for (const Value& v : it->value.GetArray()) {
    if (!v.IsObject()) return std::nullopt;
    Instance inst;
    if (!getString(v, "meshId", inst.meshId) || !getString(v, "name", inst.name)) {
      return std::nullopt;
    }
    const auto rooms = v.FindMember("publicRooms");
    if (rooms != v.MemberEnd()) {
      if (!rooms->value.IsArray()) return std::nullopt;
      for (const Value& room : rooms->value.GetArray()) {
        if (!room.IsString()) return std::nullopt;
        inst.publicRooms.emplace_back(room.GetString(), room.GetStringLength());
      }
    }
    f.instances.push_back(std::move(inst));
  }
  if (!getOptionalId(d, f.id)) return std::nullopt;
  return f;
}

std::optional<ServerFrame> decodeIncoming(const Value& d) {
  Incoming f;
  if (!getString(d, "fromMeshId", f.fromMeshId) || !getString(d, "fromMeshName", f.fromMeshName) ||
      !getOptionalId(d, f.id)) {
    return std::nullopt;
  }
  const auto payload = d.FindMember("payload");
  if (payload == d.MemberEnd()) return std::nullopt;
  f.payloadJson = serialize(payload->value);
  return f;
}

std::optional<ServerFrame> decodeParticipants(const Value& d) {
  const auto it = d.FindMember("remoteParticipants");
  if (it == d.MemberEnd() || !it->value.IsArray()) return std::nullopt;
  Participants f;
  for (const Value& v : it->value.GetArray()) {
    if (!v.IsObject()) return std::nullopt;
    RemoteParticipants r;
    if (!getString(v, "meshId", r.meshId) || !getString(v, "meshName", r.meshName)) {
      return std::nullopt;
    }
    const auto list = v.FindMember("participants");
    if (list == v.MemberEnd() || !list->value.IsArray()) return std::nullopt;
    r.participantsJson = serialize(list->value);
    f.remote.push_back(std::move(r));
  }
  return f;
}

std::optional<ServerFrame> decodeError(const Value& d) {
  ErrorFrame f;
  if (!getString(d, "message", f.message) || !getOptionalString(d, "code", f.code) ||
      !getOptionalId(d, f.id)) {
    return std::nullopt;
  }
  return f;
}

std::optional<ServerFrame> decodeAck(const Value& d) {
  Ack f;
  if (!getString(d, "id", f.id) || !getString(d, "status", f.status)) return std::nullopt;
  const auto it = d.FindMember("recipients");
  if (it == d.MemberEnd() || !it->value.IsUint()) return std::nullopt;
  f.recipients = it->value.GetUint();
  return f;
}

std::optional<ServerFrame> decodePresence(const Value& d) {
  Presence f;
  std::string status;
  if (!getString(d, "meshId", f.meshId) || !getString(d, "name", f.name) ||
      !getString(d, "status", status)) {
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
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseIterativeFlag | rapidjson::kParseFullPrecisionFlag>(text.data(),
                                                                                 text.size());
  if (doc.HasParseError() || !doc.IsObject()) return std::nullopt;
  const auto typeIt = doc.FindMember("type");
  if (typeIt == doc.MemberEnd() || !typeIt->value.IsString()) return std::nullopt;
  const std::string_view type(typeIt->value.GetString(), typeIt->value.GetStringLength());

  if (type == "gateway_incoming") return decodeIncoming(doc);
  if (type == "gateway_ack") return decodeAck(doc);
  if (type == "gateway_presence") return decodePresence(doc);
  if (type == "gateway_auth_ok") return decodeAuthOk(doc);
  if (type == "gateway_auth_error") return decodeAuthError(doc);
  if (type == "gateway_discover_result") return decodeDiscoverResult(doc);
  if (type == "gateway_participants") return decodeParticipants(doc);
  if (type == "error") return decodeError(doc);
  return UnknownServerFrame{std::string(type)};
}

}  // namespace mesh::proto
