// RFC 6455 framing as the plain /gateway path reads it: client frame
// headers, unmasking, and what a peer's close frame asks for. No I/O and no
// session state, so the frame parser can be tested and fuzzed on its own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace mesh::relay::ws {

// RFC 6455 5.3: XOR with the 4-byte key, 8 bytes at a time where possible.
void unmask(char* data, std::size_t len, const unsigned char* key);

// A client frame's header (RFC 6455 5.2).
struct FrameHeader {
  bool fin = false;
  std::uint8_t opcode = 0;
  std::uint64_t size = 0;               // payload bytes
  std::size_t length = 0;               // header bytes, masking key included; 0: incomplete
  const unsigned char* mask = nullptr;  // the masking key
  const char* error = nullptr;          // set for a frame no client may send

  [[nodiscard]] bool control() const { return (opcode & 0x8) != 0; }
};

// Reads the header at `p`, `avail` bytes of which have arrived. `inMessage`:
// a fragmented message is open, so only a continuation or a control frame
// may come. Every client frame is masked; no extension is negotiated, so no
// reserved bit may be set; control frames are whole and at most 125 bytes.
[[nodiscard]] FrameHeader readHeader(const unsigned char* p, std::size_t avail, bool inMessage);

// A close code a peer may send (RFC 6455 7.4 and the IANA registry it set
// up): 1000-1003, 1007-1014 and 3000-4999.
[[nodiscard]] bool isSendableCloseCode(unsigned code);

// The peer's close frame and the close frame that answers it.
struct PeerClose {
  unsigned code = 1005;           // what the peer sent; 1005: no code
  unsigned answerCode = 1000;     // the code to answer with
  std::string_view answerReason;  // the reason to answer with
  // Set when the frame breaks RFC 6455 (a one-byte payload, a code no
  // endpoint may send, a reason that is not UTF-8): the answer then fails
  // the connection with 1002 or 1007 (section 7.1.7 and 8.1) instead of
  // echoing the peer's code (section 5.5.1).
  const char* problem = nullptr;
};

// Reads a close frame's (unmasked) payload.
[[nodiscard]] PeerClose readClose(std::string_view payload);

}  // namespace mesh::relay::ws
