// UTF-8 helpers shared by the decoder and the JSON writer.
#pragma once

#include <cstddef>

namespace mesh::proto::detail {

// Length of the well-formed UTF-8 sequence starting at p (p < end), or 0 when
// the bytes there are not one (overlong forms, surrogates, code points above
// U+10FFFF, stray continuation bytes, truncation). Follows the table of
// well-formed byte sequences in the Unicode standard, chapter 3.
inline std::size_t utf8SequenceLength(const unsigned char* p, const unsigned char* end) {
  const unsigned char b0 = p[0];
  if (b0 < 0x80) return 1;
  const auto left = static_cast<std::size_t>(end - p);
  auto cont = [](unsigned char b) { return (b & 0xC0) == 0x80; };
  if (b0 < 0xC2) return 0;  // continuation byte or overlong 2-byte lead
  if (b0 < 0xE0) return (left >= 2 && cont(p[1])) ? 2 : 0;
  if (b0 < 0xF0) {
    if (left < 3 || !cont(p[2])) return 0;
    const unsigned char b1 = p[1];
    // E0 needs A0..BF (no overlongs), ED needs 80..9F (no surrogates).
    const unsigned char lo = b0 == 0xE0 ? 0xA0 : 0x80;
    const unsigned char hi = b0 == 0xED ? 0x9F : 0xBF;
    return (b1 >= lo && b1 <= hi) ? 3 : 0;
  }
  if (b0 < 0xF5) {
    if (left < 4 || !cont(p[2]) || !cont(p[3])) return 0;
    const unsigned char b1 = p[1];
    // F0 needs 90..BF (no overlongs), F4 needs 80..8F (nothing past U+10FFFF).
    const unsigned char lo = b0 == 0xF0 ? 0x90 : 0x80;
    const unsigned char hi = b0 == 0xF4 ? 0x8F : 0xBF;
    return (b1 >= lo && b1 <= hi) ? 4 : 0;
  }
  return 0;
}

}  // namespace mesh::proto::detail
