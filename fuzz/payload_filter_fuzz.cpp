// The mesh-chat payload filter on arbitrary bytes (the relay only hands it
// objects the decoder accepted; the filter must hold up without that). Its
// answer is always a compact JSON object.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "mesh/proto/codec.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string payload(reinterpret_cast<const char*>(data), size);
  const std::string filtered = mesh::proto::filterMeshChatPayload(payload);
  if (filtered.empty() || filtered.front() != '{') std::abort();
  if (mesh::proto::compactJson(filtered, 1024) != filtered) std::abort();
  return 0;
}
