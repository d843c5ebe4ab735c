// --payload-filter mesh-chat: the original relay's whitelist. This is an
// opt-in slow path, so a DOM is fine; it is still parsed iteratively.
#include <array>
#include <string>
#include <string_view>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "mesh/proto/codec.h"

namespace mesh::proto {
namespace {

using Value = rapidjson::Value;

constexpr std::array<std::string_view, 11> kMessageKeys = {
    "id",        "roomId",   "senderId",   "senderName", "content",    "isDm",
    "createdAt", "fromMesh", "fromMeshId", "roomName",   "trustLevel",
};

// With duplicate keys the last one wins, as in the decoder and in JSON.parse.
const Value* lastMember(const Value& object, std::string_view key) {
  const Value* found = nullptr;
  for (auto it = object.MemberBegin(); it != object.MemberEnd(); ++it) {
    if (std::string_view(it->name.GetString(), it->name.GetStringLength()) == key) {
      found = &it->value;
    }
  }
  return found;
}

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

void writeKey(Writer& w, std::string_view key) {
  w.Key(key.data(), static_cast<rapidjson::SizeType>(key.size()));
}

void writeMessage(Writer& w, const Value& message) {
  w.StartObject();
  for (std::string_view key : kMessageKeys) {
    if (key == "trustLevel") {
      writeKey(w, key);
      w.String("federated");
      continue;
    }
    if (const Value* v = lastMember(message, key)) {
      writeKey(w, key);
      v->Accept(w);
    }
  }
  w.EndObject();
}

}  // namespace

std::string filterMeshChatPayload(std::string_view payloadJson) {
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseIterativeFlag | rapidjson::kParseFullPrecisionFlag>(
      payloadJson.data(), payloadJson.size());
  // The decoder only hands over objects; anything RapidJSON cannot hold
  // (e.g. a number beyond double range) filters down to nothing.
  if (doc.HasParseError() || !doc.IsObject()) return "{}";

  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  w.StartObject();
  if (const Value* type = lastMember(doc, "type")) {
    writeKey(w, "type");
    type->Accept(w);
  }
  if (const Value* message = lastMember(doc, "message")) {
    writeKey(w, "message");
    if (message->IsObject()) {
      writeMessage(w, *message);
    } else {
      message->Accept(w);
    }
  }
  w.EndObject();
  return std::string(buffer.GetString(), buffer.GetSize());
}

}  // namespace mesh::proto
