// The plain /gateway path's RFC 6455 frame parser (ws_codec) on arbitrary
// bytes, read as handleBytes reads a connection: headers one after another,
// each payload unmasked in place once it has all arrived, control payloads
// read as close frames. The first byte says whether a fragmented message is
// open when the stream starts.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "ws_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  bool inMessage = (data[0] & 1) != 0;
  std::string bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  std::size_t pos = 0;
  while (pos < bytes.size()) {
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data() + pos);
    const std::size_t avail = bytes.size() - pos;
    const mesh::relay::ws::FrameHeader h = mesh::relay::ws::readHeader(p, avail, inMessage);
    if (h.error) break;
    if (h.length == 0) break;  // incomplete header
    if (h.length > avail || h.length > 14 || h.mask != p + h.length - 4) std::abort();
    if (h.control() && (h.size > 125 || !h.fin)) std::abort();
    if (avail - h.length < h.size) break;  // payload not all here
    char* payload = bytes.data() + pos + h.length;
    const auto n = static_cast<std::size_t>(h.size);
    mesh::relay::ws::unmask(payload, n, h.mask);
    if (h.opcode == 0x8) {
      const auto close = mesh::relay::ws::readClose(std::string_view(payload, n));
      if (close.problem == nullptr && !mesh::relay::ws::isSendableCloseCode(close.answerCode)) {
        std::abort();
      }
      if (close.problem != nullptr && close.answerCode != 1002 && close.answerCode != 1007) {
        std::abort();
      }
    } else if (!h.control()) {
      inMessage = !h.fin;
    }
    pos += h.length + n;
  }
  return 0;
}
