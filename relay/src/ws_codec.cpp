#include "ws_codec.h"

#include <cstring>

#include "mesh/proto/codec.h"

namespace mesh::relay::ws {

void unmask(char* data, std::size_t len, const unsigned char* key) {
  std::uint64_t key8;
  unsigned char repeated[8];
  for (int i = 0; i < 8; ++i) repeated[i] = key[i & 3];
  std::memcpy(&key8, repeated, 8);
  std::size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    std::uint64_t word;
    std::memcpy(&word, data + i, 8);
    word ^= key8;
    std::memcpy(data + i, &word, 8);
  }
  for (; i < len; ++i) data[i] = static_cast<char>(data[i] ^ key[i & 3]);
}

FrameHeader readHeader(const unsigned char* p, std::size_t avail, bool inMessage) {
  FrameHeader h;
  if (avail < 2) return h;
  h.fin = (p[0] & 0x80) != 0;
  h.opcode = p[0] & 0x0f;
  if ((p[0] & 0x70) != 0) {
    h.error = "reserved bits set";
    return h;
  }
  if ((p[1] & 0x80) == 0) {
    h.error = "unmasked frame";
    return h;
  }
  std::size_t length = 2;
  h.size = p[1] & 0x7f;
  if (h.size == 126) {
    if (avail < 4) return h;
    h.size = (std::uint64_t{p[2]} << 8) | p[3];
    length = 4;
  } else if (h.size == 127) {
    if (avail < 10) return h;
    h.size = 0;
    for (int i = 0; i < 8; ++i) h.size = (h.size << 8) | p[2 + i];
    length = 10;
    if (h.size >> 63) {
      h.error = "frame length out of range";
      return h;
    }
  }
  if (h.control()) {
    if (!h.fin || h.size > 125 || h.opcode > 0xA) h.error = "bad control frame";
  } else if (h.opcode > 0x2) {
    h.error = "unknown opcode";
  } else if ((h.opcode == 0x0) != inMessage) {
    h.error =
        h.opcode == 0x0 ? "continuation outside a message" : "new message inside a fragmented one";
  }
  if (h.error || avail < length + 4) return h;
  h.mask = p + length;
  h.length = length + 4;
  return h;
}

bool isSendableCloseCode(unsigned code) {
  if (code >= 3000 && code <= 4999) return true;
  return code >= 1000 && code <= 1014 && code != 1004 && code != 1005 && code != 1006;
}

PeerClose readClose(std::string_view payload) {
  PeerClose c;
  if (payload.empty()) return c;  // no code: answered with 1000
  if (payload.size() == 1) {
    c.answerCode = 1002;
    c.answerReason = "protocol_error";
    c.problem = "close frame with a one-byte payload";
    return c;
  }
  c.code = (static_cast<unsigned>(static_cast<unsigned char>(payload[0])) << 8) |
           static_cast<unsigned char>(payload[1]);
  if (!isSendableCloseCode(c.code)) {
    c.answerCode = 1002;
    c.answerReason = "protocol_error";
    c.problem = "close frame with an invalid code";
    return c;
  }
  if (!proto::isValidUtf8(payload.substr(2))) {
    c.answerCode = 1007;
    c.answerReason = "invalid_utf8";
    c.problem = "close reason is not valid UTF-8";
    return c;
  }
  c.answerCode = c.code;
  return c;
}

}  // namespace mesh::relay::ws
