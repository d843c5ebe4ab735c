#include "json.h"

#include <rapidjson/document.h>

#include <utility>

#include "mesh/proto/codec.h"

namespace mesh::client::detail {
namespace {

// Deepest JSON accepted from a user or the relay; proto::compactJson checks
// it while parsing, which bounds its recursion when serializing. The relay's
// default payload limit is 64 levels inside the frame's own object.
constexpr int kMaxDepth = 128;

bool withinDepth(const rapidjson::Value& root) {
  std::vector<std::pair<const rapidjson::Value*, int>> stack{{&root, 1}};
  while (!stack.empty()) {
    const auto [value, depth] = stack.back();
    stack.pop_back();
    if (depth > kMaxDepth) return false;
    if (value->IsObject()) {
      for (const auto& m : value->GetObject()) stack.emplace_back(&m.value, depth + 1);
    } else if (value->IsArray()) {
      for (const auto& v : value->GetArray()) stack.emplace_back(&v, depth + 1);
    }
  }
  return true;
}

// Numbers stay text: participant lists carry none the node reads, and
// RapidJSON 1.1's conversion to double reaches undefined behaviour on some
// exponents (signed overflow on "0.0001e-2147483638"), which a list
// forwarded from another mesh must never reach.
std::optional<rapidjson::Document> parse(std::string_view text) {
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseIterativeFlag | rapidjson::kParseNumbersAsStringsFlag>(text.data(),
                                                                                    text.size());
  if (doc.HasParseError() || !withinDepth(doc)) return std::nullopt;
  return doc;
}

}  // namespace

void JsonOut::stringArray(std::string_view k, const std::vector<std::string>& values) {
  key(k);
  writer_.StartArray();
  for (const auto& v : values) string(v);
  writer_.EndArray();
}

void JsonOut::participants(std::string_view k, const std::vector<Participant>& values) {
  key(k);
  writer_.StartArray();
  for (const auto& p : values) {
    writer_.StartObject();
    field("id", p.id);
    field("name", p.name);
    field("type", p.type);
    writer_.EndObject();
  }
  writer_.EndArray();
}

// Payloads keep every number as the user wrote it: the relay and the
// receiving node pass them on unconverted too.
std::optional<std::string> normalizeObject(std::string_view text) {
  auto out = proto::compactJson(text, kMaxDepth);
  if (!out || out->front() != '{') return std::nullopt;
  return out;
}

std::optional<std::string> compactJson(std::string_view text) {
  return proto::compactJson(text, kMaxDepth);
}

std::vector<Participant> parseParticipants(std::string_view json) {
  std::vector<Participant> out;
  auto doc = parse(json);
  if (!doc || !doc->IsArray()) return out;
  for (const auto& item : doc->GetArray()) {
    if (!item.IsObject()) continue;
    const auto id = item.FindMember("id");
    const auto name = item.FindMember("name");
    const auto type = item.FindMember("type");
    if (id == item.MemberEnd() || !id->value.IsString() || name == item.MemberEnd() ||
        !name->value.IsString()) {
      continue;
    }
    Participant p;
    p.id = id->value.GetString();
    p.name = name->value.GetString();
    if (type != item.MemberEnd() && type->value.IsString()) p.type = type->value.GetString();
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace mesh::client::detail
