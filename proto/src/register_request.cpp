// POST /register body: {"meshId","secret","name"}.
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <rapidjson/document.h>

#include "mesh/proto/codec.h"

namespace mesh::proto {

RegisterParse parseRegisterRequest(std::string_view body) {
  static constexpr std::string_view kInvalidJson = "Invalid JSON";
  static constexpr std::string_view kRequired = "meshId, secret, and name required";

  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseIterativeFlag | rapidjson::kParseValidateEncodingFlag>(body.data(),
                                                                                    body.size());
  if (doc.HasParseError()) return std::string(kInvalidJson);
  // Valid JSON without the three fields is the original's "required" answer.
  if (!doc.IsObject()) return std::string(kRequired);

  // Empty strings count as missing, as the original's truthiness test did.
  auto field = [&doc](const char* key) -> std::optional<std::string> {
    const auto it = doc.FindMember(key);
    if (it == doc.MemberEnd() || !it->value.IsString() || it->value.GetStringLength() == 0) {
      return std::nullopt;
    }
    return std::string(it->value.GetString(), it->value.GetStringLength());
  };
  std::optional<std::string> meshId = field("meshId");
  std::optional<std::string> secret = field("secret");
  std::optional<std::string> name = field("name");
  if (!meshId || !secret || !name) return std::string(kRequired);

  if (!isValidMeshId(*meshId)) {
    return std::string("meshId must match [A-Za-z0-9._-]{1,64}");
  }
  if (name->size() > kMaxNameBytes) {
    return std::string("name must be at most 128 bytes");
  }
  if (secret->size() < kMinSecretBytes || secret->size() > kMaxSecretBytes) {
    return std::string("secret must be 16 to 256 bytes");
  }
  return RegisterRequest{std::move(*meshId), std::move(*secret), std::move(*name)};
}

}  // namespace mesh::proto
