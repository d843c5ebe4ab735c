// The relay frames server-to-node messages itself and puts several into one
// write. These tests read the raw bytes a node receives and check them
// against RFC 6455 byte for byte: FIN + text opcode, no mask, the shortest
// length encoding (7 bit, 16 bit, 64 bit), and the exact frame text.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "mesh/proto/codec.h"
#include "support/test_relay.h"

namespace mesh::test {
namespace {

using namespace std::chrono_literals;

std::string wireFrame(const std::string& text) {
  std::string out;
  out.push_back(static_cast<char>(0x81));
  const std::size_t n = text.size();
  if (n < 126) {
    out.push_back(static_cast<char>(n));
  } else if (n <= 0xffff) {
    out.push_back(static_cast<char>(126));
    out.push_back(static_cast<char>(n >> 8));
    out.push_back(static_cast<char>(n & 0xff));
  } else {
    out.push_back(static_cast<char>(127));
    for (int shift = 56; shift >= 0; shift -= 8)
      out.push_back(static_cast<char>((n >> shift) & 0xff));
  }
  return out + text;
}

// Reads exactly `want` bytes from the socket (or what came before the
// deadline).
std::string readRaw(int fd, std::size_t want, std::chrono::milliseconds timeout) {
  std::string got;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[65536];
  while (got.size() < want) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    const ssize_t n = ::recv(fd, buf, std::min(sizeof buf, want - got.size()), 0);
    if (n <= 0) break;
    got.append(buf, static_cast<std::size_t>(n));
  }
  return got;
}

TEST(Framing, BatchedFramesAreByteExactAcrossEveryLengthEncoding) {
  TestRelay relay([](relay::Config& c) {
    c.limits.maxFrameBytes = 256 * 1024;
    c.rateLimit = 0;
  });
  auto receiver = relay.join("frame-rx");
  std::string authOk;
  auto sender = relay.join("frame-tx", "", &authOk);
  const std::string senderName = json(authOk)["name"].GetString();
  // The receiver has seen the sender come online; after the probe's answer
  // nothing more is on its way, so the socket holds only what follows.
  framesUntilProbe(*receiver);

  // Frame text lengths on both sides of each length-encoding boundary, and a
  // run of small frames that the relay writes together.
  std::vector<std::size_t> lengths{125, 126, 127, 65535, 65536, 70000};
  for (int i = 0; i < 40; ++i) lengths.push_back(110 + static_cast<std::size_t>(i));
  std::string overheadText;
  proto::encodeIncoming(overheadText, "frame-tx", senderName, R"({"p":""})", std::nullopt);
  const std::size_t overhead = overheadText.size();

  std::string expected;
  for (std::size_t len : lengths) {
    ASSERT_GT(len, overhead);
    const std::string payload = R"({"p":")" + std::string(len - overhead, 'x') + R"("})";
    std::string text;
    proto::encodeIncoming(text, "frame-tx", senderName, payload, std::nullopt);
    ASSERT_EQ(text.size(), len);
    expected += wireFrame(text);
    sender->sendText(R"({"type":"gateway_relay","targetMeshId":"frame-rx","payload":)" + payload +
                     "}");
  }
  const std::string got = readRaw(receiver->fd(), expected.size(), 10s);
  ASSERT_EQ(got.size(), expected.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (got[i] != expected[i]) {
      FAIL() << "first difference at byte " << i << " of " << got.size();
    }
  }
}

// One broadcast stream to readers that drain at different speeds: the relay
// writes each of them from a different point of the same frames, often
// stopping inside a frame when a socket is full. Large frames first fill the
// sockets, so the small ones behind them are written in pieces too. Each
// reader still gets exactly the frames, byte for byte.
TEST(Framing, BroadcastIsByteExactForReadersThatDrainAtDifferentSpeeds) {
  TestRelay relay([](relay::Config& c) {
    c.rateLimit = 0;
    c.limits.maxFrameBytes = 256 * 1024;
    c.maxSendQueueBytes = 64 * 1024 * 1024;
  });
  // Readers 1 and 2 have small receive buffers (of different sizes), so the
  // relay's writes to them stop early and at different offsets.
  std::vector<std::unique_ptr<WsClient>> readers;
  const int receiveBuffers[] = {0, 4096, 9000, 0};
  for (int i = 0; i < 4; ++i) {
    const std::string id = "speed-rx" + std::to_string(i);
    ASSERT_EQ(relay.registerMesh(id, TestRelay::secretFor(id), id), 201);
    ConnectOptions opt;
    opt.receiveBuffer = receiveBuffers[i];
    readers.push_back(WsClient::connect(relay.port(), opt));
    readers.back()->sendText(R"({"type":"gateway_auth","meshId":")" + id + R"(","secret":")" +
                             TestRelay::secretFor(id) + R"("})");
    readers.back()->expectType("gateway_auth_ok");
  }
  std::string authOk;
  auto sender = relay.join("speed-tx", "", &authOk);
  const std::string senderName = json(authOk)["name"].GetString();
  for (auto& r : readers) framesUntilProbe(*r);

  std::string expected;
  for (int i = 0; i < 120; ++i) {
    const std::size_t len = i < 100 ? 60000 : 20 + static_cast<std::size_t>(i * 37 % 900);
    const std::string payload = R"({"n":)" + std::to_string(i) + R"(,"p":")" +
                                std::string(len, static_cast<char>('a' + i % 26)) + R"("})";
    std::string text;
    proto::encodeIncoming(text, "speed-tx", senderName, payload, std::nullopt);
    expected += wireFrame(text);
    sender->sendText(R"({"type":"gateway_broadcast","payload":)" + payload + "}");
  }
  auto expectExact = [&](const std::string& got, int reader) {
    ASSERT_EQ(got.size(), expected.size()) << "reader " << reader;
    const auto diff = std::mismatch(got.begin(), got.end(), expected.begin());
    EXPECT_EQ(diff.first, got.end())
        << "reader " << reader << ": first difference at byte " << (diff.first - got.begin());
  };
  // Reader 0 drains at once while the others are full; reader 1 takes small
  // pieces; 2 and 3 drain last.
  expectExact(readRaw(readers[0]->fd(), expected.size(), 10s), 0);
  std::string slow;
  while (slow.size() < expected.size()) {
    const std::string piece =
        readRaw(readers[1]->fd(), std::min<std::size_t>(777, expected.size() - slow.size()), 10s);
    if (piece.empty()) break;
    slow += piece;
  }
  expectExact(slow, 1);
  expectExact(readRaw(readers[2]->fd(), expected.size(), 10s), 2);
  expectExact(readRaw(readers[3]->fd(), expected.size(), 10s), 3);
}

// Messages to different nodes that arrive in one write are queued in one
// loop turn: each node gets its own frames, and a broadcast among them, in
// order and byte for byte.
TEST(Framing, FramesForDifferentNodesInOneTurnStayApart) {
  TestRelay relay([](relay::Config& c) { c.rateLimit = 0; });
  auto a = relay.join("apart-a");
  auto b = relay.join("apart-b");
  std::string authOk;
  auto tx = relay.join("apart-tx", "", &authOk);
  const std::string txName = json(authOk)["name"].GetString();
  framesUntilProbe(*a);
  framesUntilProbe(*b);

  std::string burst;
  std::string toA;
  std::string toB;
  auto expectFrame = [&](std::string& out, const std::string& payload) {
    std::string text;
    proto::encodeIncoming(text, "apart-tx", txName, payload, std::nullopt);
    out += wireFrame(text);
  };
  auto relayTo = [&](const std::string& target, const std::string& payload) {
    burst += ws::encodeFrame(
        0x1,
        R"({"type":"gateway_relay","targetMeshId":")" + target + R"(","payload":)" + payload + "}",
        true, ws::randomMaskKey());
    expectFrame(target == "apart-a" ? toA : toB, payload);
  };
  // The same number of frames, of the same sizes, for each node.
  relayTo("apart-a", R"({"m":"a1"})");
  relayTo("apart-b", R"({"m":"b1"})");
  relayTo("apart-a", R"({"m":"a2"})");
  relayTo("apart-b", R"({"m":"b2"})");
  const std::string everyone = R"({"m":"all"})";
  burst += ws::encodeFrame(0x1, R"({"type":"gateway_broadcast","payload":)" + everyone + "}", true,
                           ws::randomMaskKey());
  expectFrame(toA, everyone);
  expectFrame(toB, everyone);
  tx->sendRaw(burst);

  EXPECT_EQ(readRaw(a->fd(), toA.size(), 5s), toA);
  EXPECT_EQ(readRaw(b->fd(), toB.size(), 5s), toB);
}

// Frames queued for one node in one loop turn (an ack, errors, incoming
// messages) keep their order when they leave in one write.
TEST(Framing, FramesKeepTheirOrderWithinABatch) {
  TestRelay relay([](relay::Config& c) { c.rateLimit = 0; });
  auto rx = relay.join("order-rx");
  auto tx = relay.join("order-tx");
  framesUntilProbe(*rx);
  framesUntilProbe(*tx);
  for (int i = 0; i < 200; ++i) {
    tx->sendText(R"({"type":"gateway_relay","id":"m)" + std::to_string(i) +
                 R"(","targetMeshId":"order-rx","payload":{"n":)" + std::to_string(i) + "}}");
  }
  for (int i = 0; i < 200; ++i) {
    auto in = json(rx->expectType("gateway_incoming"));
    ASSERT_EQ(in["payload"]["n"].GetInt(), i);
    auto ack = json(tx->expectType("gateway_ack"));
    ASSERT_EQ(std::string(ack["id"].GetString()), "m" + std::to_string(i));
  }
}

// Our close frame goes out like any other frame; a peer that reads it but
// neither answers nor hangs up is dropped by the relay a little later, and
// the relay keeps serving.
TEST(Framing, PeerThatIgnoresOurCloseFrameIsDropped) {
  TestRelay relay([](relay::Config& c) { c.authTimeoutSeconds = 0.3; });
  auto silent = WsClient::connect(relay.port());
  // Raw reads: the client's close answer is never sent.
  std::string got;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  char buf[4096];
  bool eof = false;
  while (!eof && std::chrono::steady_clock::now() < deadline) {
    pollfd p{silent->fd(), POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    const ssize_t n = ::recv(silent->fd(), buf, sizeof buf, 0);
    if (n <= 0) {
      eof = true;
    } else {
      got.append(buf, static_cast<std::size_t>(n));
    }
  }
  EXPECT_TRUE(eof) << "still open";
  // The auth_timeout error, then a close frame with 1008.
  const std::string close = std::string("\x88\x0e\x03\xf0", 4) + "auth_timeout";
  EXPECT_NE(got.find(close), std::string::npos);

  auto a = relay.join("after-a");
  auto b = relay.join("after-b");
  a->sendText(R"({"type":"gateway_relay","targetMeshId":"after-b","payload":{"n":1}})");
  EXPECT_NO_THROW(b->expectType("gateway_incoming"));
}

// A node that resets its connection while frames are on their way to it:
// writes to it fail, it is dropped, and nobody else notices.
TEST(Framing, NodeResettingWithFramesQueuedHurtsNobody) {
  TestRelay relay([](relay::Config& c) { c.rateLimit = 0; });
  auto sender = relay.join("reset-tx");
  auto doomed = relay.join("reset-rx");
  auto other = relay.join("reset-other");
  const std::string frame =
      R"({"type":"gateway_relay","targetMeshId":"reset-rx","payload":{"p":")" +
      std::string(8000, 'x') + "\"}}";
  for (int i = 0; i < 50; ++i) sender->sendText(frame);
  doomed->abort(true);
  for (int i = 0; i < 50; ++i) sender->sendText(frame);
  framesUntilProbe(*sender);
  bool gone = false;
  for (int i = 0; i < 50 && !gone; ++i) {
    gone = httpRequest(relay.port(), "GET", "/health").body == R"({"ok":true,"connected":2})";
    if (!gone) std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(gone);
  sender->sendText(R"({"type":"gateway_relay","targetMeshId":"reset-other","payload":{"n":2}})");
  EXPECT_NO_THROW(other->expectType("gateway_incoming"));
}

}  // namespace
}  // namespace mesh::test
