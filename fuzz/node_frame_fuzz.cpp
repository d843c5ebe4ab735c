// decodeNodeFrame on arbitrary bytes, authenticated or not, with the default
// limits and tight ones. A payload the decoder accepts must also be one that
// the payload filter and proto::compactJson accept, with every number kept.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>

#include "mesh/proto/codec.h"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

// A view the decoder returned must point into the frame text.
void checkInside(std::string_view part, std::string_view text) {
  if (part.empty()) return;
  check(part.data() >= text.data() && part.data() + part.size() <= text.data() + text.size());
}

void checkPayload(std::string_view payload, std::string_view text, int maxDepth) {
  checkInside(payload, text);
  const auto compact = mesh::proto::compactJson(payload, maxDepth);
  check(compact.has_value() && !compact->empty() && compact->front() == '{');
  // Compacting is idempotent: nothing is converted, so nothing drifts.
  check(mesh::proto::compactJson(*compact, maxDepth) == compact);
  const std::string filtered = mesh::proto::filterMeshChatPayload(payload);
  check(mesh::proto::compactJson(filtered, maxDepth) == filtered);
}

void decode(std::string_view text, bool authenticated, const mesh::proto::Limits& limits) {
  const auto result = mesh::proto::decodeNodeFrame(text, authenticated, limits);
  const auto* decoded = std::get_if<mesh::proto::DecodedFrame>(&result);
  if (decoded == nullptr) return;
  const int depth = 1 + limits.maxPayloadDepth;
  if (const auto* relay = std::get_if<mesh::proto::RelayFrame>(&decoded->frame)) {
    checkPayload(relay->payloadJson, text, depth);
  } else if (const auto* broadcast = std::get_if<mesh::proto::BroadcastFrame>(&decoded->frame)) {
    checkPayload(broadcast->payloadJson, text, depth);
  } else if (const auto* auth = std::get_if<mesh::proto::AuthFrame>(&decoded->frame)) {
    checkInside(auth->publicRoomsJson, text);
    checkInside(auth->participantsJson, text);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  mesh::proto::Limits defaults;
  decode(text, true, defaults);
  decode(text, false, defaults);
  mesh::proto::Limits tight;
  tight.maxFrameBytes = 512;
  tight.maxPayloadDepth = 2;
  decode(text, true, tight);
  return 0;
}
