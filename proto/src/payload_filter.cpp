// --payload-filter mesh-chat: the original relay's whitelist. This is an
// opt-in slow path, so a DOM is fine; it is still parsed iteratively, and
// every number it keeps goes out as the bytes it came in as.
#include <array>
#include <string>
#include <string_view>

#include "exact_json.h"
#include "mesh/proto/codec.h"

namespace mesh::proto {
namespace {

using detail::ExactJson;
using Value = ExactJson::Value;
using Writer = ExactJson::Writer;

// The deepest payload --max-payload-depth lets through; the decoder has
// already refused anything deeper than the configured limit.
constexpr int kMaxPayloadDepth = 512;

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

void writeKey(Writer& w, std::string_view key) {
  w.Key(key.data(), static_cast<rapidjson::SizeType>(key.size()));
}

void writeMessage(const ExactJson& json, Writer& w, const Value& message) {
  w.StartObject();
  for (std::string_view key : kMessageKeys) {
    if (key == "trustLevel") {
      writeKey(w, key);
      w.String("federated");
      continue;
    }
    if (const Value* v = lastMember(message, key)) {
      writeKey(w, key);
      json.write(w, *v);
    }
  }
  w.EndObject();
}

}  // namespace

std::string filterMeshChatPayload(std::string_view payloadJson) {
  ExactJson json;
  // The decoder only hands over objects; anything else filters down to
  // nothing.
  if (!json.parse(payloadJson, kMaxPayloadDepth) || !json.root().IsObject()) return "{}";
  const Value& doc = json.root();

  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  w.StartObject();
  if (const Value* type = lastMember(doc, "type")) {
    writeKey(w, "type");
    json.write(w, *type);
  }
  if (const Value* message = lastMember(doc, "message")) {
    writeKey(w, "message");
    if (message->IsObject()) {
      writeMessage(json, w, *message);
    } else {
      json.write(w, *message);
    }
  }
  w.EndObject();
  return std::string(buffer.GetString(), buffer.GetSize());
}

}  // namespace mesh::proto
