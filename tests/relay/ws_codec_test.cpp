// The plain path's RFC 6455 frame reader (ws_codec.h) on its own: client
// frame headers, unmasking and close frames. websocket_test.cpp and
// wire_noise_test.cpp send the same kinds of frames to a real relay;
// fuzz/ws_frame_fuzz.cpp drives the reader with arbitrary bytes.
#include "ws_codec.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace mesh::relay::ws {
namespace {

using Bytes = std::vector<unsigned char>;

// A masked client frame header: first byte, then the length as encoded,
// then the key 1 2 3 4.
Bytes header(unsigned char first, std::uint64_t size) {
  Bytes b{first};
  if (size < 126) {
    b.push_back(static_cast<unsigned char>(0x80 | size));
  } else if (size <= 0xffff) {
    b.push_back(0x80 | 126);
    b.push_back(static_cast<unsigned char>(size >> 8));
    b.push_back(static_cast<unsigned char>(size));
  } else {
    b.push_back(0x80 | 127);
    for (int i = 7; i >= 0; --i) b.push_back(static_cast<unsigned char>(size >> (8 * i)));
  }
  for (unsigned char k : {1, 2, 3, 4}) b.push_back(k);
  return b;
}

FrameHeader read(const Bytes& b, bool inMessage = false) {
  return readHeader(b.data(), b.size(), inMessage);
}

TEST(WsCodec, ReadsEachLengthEncoding) {
  const FrameHeader small = read(header(0x81, 5));
  EXPECT_EQ(small.error, nullptr);
  EXPECT_TRUE(small.fin);
  EXPECT_EQ(small.opcode, 0x1);
  EXPECT_EQ(small.size, 5u);
  EXPECT_EQ(small.length, 6u);

  const FrameHeader medium = read(header(0x82, 300));
  EXPECT_EQ(medium.size, 300u);
  EXPECT_EQ(medium.length, 8u);

  const Bytes largeBytes = header(0x01, 70000);  // the mask points into it
  const FrameHeader large = read(largeBytes);
  EXPECT_FALSE(large.fin);
  EXPECT_EQ(large.size, 70000u);
  EXPECT_EQ(large.length, 14u);
  ASSERT_NE(large.mask, nullptr);
  EXPECT_EQ(large.mask[0], 1);
  EXPECT_EQ(large.mask[3], 4);
}

TEST(WsCodec, IncompleteHeaderWaitsForMore) {
  const Bytes full = header(0x81, 300);
  for (std::size_t avail = 0; avail < full.size(); ++avail) {
    const FrameHeader h = readHeader(full.data(), avail, false);
    EXPECT_EQ(h.length, 0u) << avail;
    EXPECT_EQ(h.error, nullptr) << avail;
  }
  EXPECT_EQ(read(full).length, full.size());
}

TEST(WsCodec, RefusesFramesNoClientMaySend) {
  EXPECT_STREQ(read(header(0xC1, 1)).error, "reserved bits set");
  Bytes unmasked{0x81, 0x05};
  EXPECT_STREQ(read(unmasked).error, "unmasked frame");
  EXPECT_STREQ(read(header(0x83, 1)).error, "unknown opcode");
  EXPECT_STREQ(read(header(0x89, 126)).error, "bad control frame");  // too long
  EXPECT_STREQ(read(header(0x09, 1)).error, "bad control frame");    // fragmented
  EXPECT_STREQ(read(header(0x8B, 0)).error, "bad control frame");    // reserved opcode
  Bytes huge = header(0x82, 0);
  huge[1] = 0x80 | 127;
  huge.insert(huge.begin() + 2, {0x80, 0, 0, 0, 0, 0, 0, 0});
  huge.resize(2 + 8 + 4);
  EXPECT_STREQ(read(huge).error, "frame length out of range");
}

TEST(WsCodec, FragmentsMustFollowTheirMessage) {
  EXPECT_STREQ(read(header(0x80, 1)).error, "continuation outside a message");
  EXPECT_STREQ(read(header(0x81, 1), true).error, "new message inside a fragmented one");
  EXPECT_EQ(read(header(0x80, 1), true).error, nullptr);
  // A control frame may come between fragments.
  EXPECT_EQ(read(header(0x89, 1), true).error, nullptr);
}

TEST(WsCodec, UnmaskRestoresThePayloadAtAnyLength) {
  const unsigned char key[4] = {0x37, 0xfa, 0x21, 0x3d};
  const std::string text = "Hello, relay! A payload longer than one 8-byte word.";
  for (std::size_t n = 0; n <= text.size(); ++n) {
    std::string masked = text.substr(0, n);
    for (std::size_t i = 0; i < n; ++i) masked[i] = static_cast<char>(masked[i] ^ key[i & 3]);
    unmask(masked.data(), masked.size(), key);
    EXPECT_EQ(masked, text.substr(0, n)) << n;
  }
}

TEST(WsCodec, CloseFramesAreAnsweredPerRfc6455) {
  const PeerClose none = readClose("");
  EXPECT_EQ(none.code, 1005u);
  EXPECT_EQ(none.answerCode, 1000u);
  EXPECT_EQ(none.problem, nullptr);

  const PeerClose normal = readClose(std::string("\x03\xe8", 2) + "bye");
  EXPECT_EQ(normal.code, 1000u);
  EXPECT_EQ(normal.answerCode, 1000u);
  EXPECT_EQ(normal.problem, nullptr);

  const PeerClose app = readClose(std::string("\x0f\xa0", 2));  // 4000
  EXPECT_EQ(app.answerCode, 4000u);
  EXPECT_EQ(app.problem, nullptr);

  const PeerClose oneByte = readClose(std::string("\x03", 1));
  EXPECT_EQ(oneByte.answerCode, 1002u);
  EXPECT_EQ(oneByte.answerReason, "protocol_error");
  EXPECT_NE(oneByte.problem, nullptr);

  const PeerClose reserved = readClose(std::string("\x03\xed", 2));  // 1005
  EXPECT_EQ(reserved.answerCode, 1002u);
  EXPECT_NE(reserved.problem, nullptr);

  const PeerClose badUtf8 = readClose(std::string("\x03\xe8\xc3\x28", 4));
  EXPECT_EQ(badUtf8.answerCode, 1007u);
  EXPECT_EQ(badUtf8.answerReason, "invalid_utf8");
  EXPECT_NE(badUtf8.problem, nullptr);
}

TEST(WsCodec, SendableCloseCodes) {
  for (unsigned code : {1000u, 1001u, 1002u, 1003u, 1007u, 1011u, 1014u, 3000u, 4999u}) {
    EXPECT_TRUE(isSendableCloseCode(code)) << code;
  }
  for (unsigned code : {0u, 999u, 1004u, 1005u, 1006u, 1015u, 2999u, 5000u}) {
    EXPECT_FALSE(isSendableCloseCode(code)) << code;
  }
}

}  // namespace
}  // namespace mesh::relay::ws
