// JSON helpers on RapidJSON for the frames a node sends and the payloads its
// user hands in. Internal: RapidJSON never appears in public headers.
#pragma once

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mesh/client/types.h"

namespace mesh::client::detail {

// A compact JSON writer that builds one frame.
class JsonOut {
 public:
  JsonOut() : writer_(buffer_) {}
  void beginObject() { writer_.StartObject(); }
  void endObject() { writer_.EndObject(); }
  void key(std::string_view k) {
    writer_.Key(k.data(), static_cast<rapidjson::SizeType>(k.size()));
  }
  void string(std::string_view v) {
    writer_.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
  }
  void field(std::string_view k, std::string_view v) {
    key(k);
    string(v);
  }
  void boolField(std::string_view k, bool v) {
    key(k);
    writer_.Bool(v);
  }
  // `json` must be valid JSON (checked by the caller); copied verbatim.
  void rawField(std::string_view k, std::string_view json) {
    key(k);
    writer_.RawValue(json.data(), json.size(), rapidjson::kObjectType);
  }
  void stringArray(std::string_view k, const std::vector<std::string>& values);
  void participants(std::string_view k, const std::vector<Participant>& values);
  [[nodiscard]] std::string take() { return std::string(buffer_.GetString(), buffer_.GetSize()); }

 private:
  rapidjson::StringBuffer buffer_;
  rapidjson::Writer<rapidjson::StringBuffer> writer_;
};

// Parses `text` iteratively (no recursion on input) and returns it
// re-serialized compactly, every number exactly as written, when it is a
// JSON object; nullopt otherwise.
[[nodiscard]] std::optional<std::string> normalizeObject(std::string_view text);

// Parses a participants array as the relay forwards it; entries without
// string id/name are skipped, a missing type is left empty.
[[nodiscard]] std::vector<Participant> parseParticipants(std::string_view json);

// Re-serializes any JSON text compactly on one line, numbers exactly as
// written; nullopt if invalid.
[[nodiscard]] std::optional<std::string> compactJson(std::string_view text);

}  // namespace mesh::client::detail
