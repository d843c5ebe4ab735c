// decodeServerFrame (what a node reads from the relay) on arbitrary bytes.
// A payload or participant list it hands over is compact JSON whose numbers
// are as they came: decoding it again changes nothing.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <variant>

#include "mesh/proto/codec.h"
#include "mesh/proto/server_frames.h"

namespace {

constexpr int kDepth = 1024;

void checkCompact(const std::string& json) {
  if (mesh::proto::compactJson(json, kDepth) != json) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const auto frame = mesh::proto::decodeServerFrame(text);
  if (!frame) return 0;
  if (const auto* in = std::get_if<mesh::proto::Incoming>(&*frame)) {
    checkCompact(in->payloadJson);
  } else if (const auto* p = std::get_if<mesh::proto::Participants>(&*frame)) {
    for (const auto& r : p->remote) checkCompact(r.participantsJson);
  }
  return 0;
}
