// parseRegisterRequest (the POST /register body) on arbitrary bytes. What it
// accepts must meet the limits it promises.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <variant>

#include "mesh/proto/codec.h"
#include "mesh/proto/limits.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  const auto parsed = mesh::proto::parseRegisterRequest(body);
  if (const auto* r = std::get_if<mesh::proto::RegisterRequest>(&parsed)) {
    if (!mesh::proto::isValidMeshId(r->meshId) || r->name.empty() ||
        r->name.size() > mesh::proto::kMaxNameBytes ||
        r->secret.size() < mesh::proto::kMinSecretBytes ||
        r->secret.size() > mesh::proto::kMaxSecretBytes) {
      std::abort();
    }
  }
  return 0;
}
