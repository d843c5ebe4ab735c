// RFC 6455 as the relay speaks it on plain TCP, where it serves /gateway
// upgrades itself: control frames, fragmentation, framing errors, the close
// handshake, oversize messages and the opening handshake. Every test runs
// against a real relay, and every failure case ends with proof that the
// relay still serves other meshes.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <thread>

#include "support/raw_peer.h"
#include "support/test_relay.h"

namespace mesh::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// The key of the example in RFC 6455 section 1.3, and the accept value the
// RFC gives for it.
constexpr const char* kSampleKey = "dGhlIHNhbXBsZSBub25jZQ==";
constexpr const char* kSampleAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
const std::string kKeyHeader = std::string("Sec-WebSocket-Key: ") + kSampleKey;

// ------------------------------------------------------------ helpers --

// A frame as a client sends it: masked with a fresh key.
std::string clientFrame(std::uint8_t op, std::string_view payload, bool fin = true) {
  return ws::encodeFrame(op, payload, fin, ws::randomMaskKey());
}

std::string authText(const std::string& meshId) {
  return R"({"type":"gateway_auth","meshId":")" + meshId + R"(","secret":")" +
         TestRelay::secretFor(meshId) + "\"}";
}

std::string discoverText(const std::string& id) {
  return R"({"type":"gateway_discover","id":")" + id + "\"}";
}

std::string relayText(const std::string& target, const std::string& payload,
                      const std::string& id = "") {
  return R"({"type":"gateway_relay",)" + (id.empty() ? "" : R"("id":")" + id + R"(",)") +
         R"("targetMeshId":")" + target + R"(","payload":)" + payload + "}";
}

// A relay to `target` whose text is `size` bytes long.
std::string relayTextOfSize(const std::string& target, std::size_t size) {
  const std::string head =
      R"({"type":"gateway_relay","targetMeshId":")" + target + R"(","payload":{"pad":")";
  const std::string tail = "\"}}";
  return head + std::string(size - head.size() - tail.size(), 'x') + tail;
}

// The upgrade request of a well-behaved client, with the RFC's sample key.
std::string upgradeRequest(std::uint16_t port) {
  return "GET /gateway HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
         "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + kSampleKey +
         "\r\nSec-WebSocket-Version: 13\r\n\r\n";
}

// The bytes of `data`, each write a piece of the next size in `sizes` (the
// last size repeats), with a pause after each so that the relay reads them
// one at a time.
void sendInPieces(WsClient& c, std::string_view data, const std::vector<std::size_t>& sizes) {
  std::size_t next = 0;
  while (!data.empty()) {
    const std::size_t n = std::min(data.size(), sizes[std::min(next, sizes.size() - 1)]);
    c.sendRaw(data.substr(0, n));
    data.remove_prefix(n);
    ++next;
    std::this_thread::sleep_for(1ms);
  }
}

// A registered, authenticated mesh on a raw connection, upgraded with the
// sample key.
std::unique_ptr<RawPeer> joinRaw(TestRelay& relay, const std::string& meshId) {
  const int status = relay.registerMesh(meshId, TestRelay::secretFor(meshId), "Mesh " + meshId);
  if (status != 201 && status != 200) {
    throw std::runtime_error("register " + meshId + " answered " + std::to_string(status));
  }
  auto peer = std::make_unique<RawPeer>(relay.port());
  peer->send(upgradeRequest(relay.port()));
  const std::string head = peer->readResponseHead();
  if (head.rfind("HTTP/1.1 101", 0) != 0 ||
      headerValue(head, "Sec-WebSocket-Accept") != kSampleAccept) {
    throw std::runtime_error("upgrade failed: " + head);
  }
  peer->sendFrame(opcode::kText, authText(meshId));
  peer->expectText("gateway_auth_ok");
  return peer;
}

// The close code the relay sent (0 if it sent none before `timeout`, -1 if
// the connection ended without one) and the texts it sent before.
struct Ending {
  int code = 0;
  std::vector<std::string> texts;
};

Ending readUntilClose(WsClient& c, std::chrono::milliseconds timeout = 5000ms) {
  const auto deadline = Clock::now() + timeout;
  Ending end;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    WsMessage m = c.recv(std::max(left, 0ms));
    switch (m.kind) {
      case WsMessage::Kind::Text:
        end.texts.push_back(std::move(m.data));
        break;
      case WsMessage::Kind::Binary:
        break;
      case WsMessage::Kind::Close:
        end.code = m.closeCode;
        return end;
      case WsMessage::Kind::Disconnected:
        end.code = -1;
        return end;
      case WsMessage::Kind::Timeout:
        return end;
    }
  }
}

// An authenticated node writes `bytes`, which break RFC 6455 5.2: the relay
// fails the connection with 1002 without acting on any frame in them (they
// all carry discovers), closes it, and goes on serving other meshes.
void expectProtocolError(const std::string& bytes) {
  TestRelay relay;
  auto c = relay.join("mesh-bad");
  c->sendRaw(bytes);
  const Ending end = readUntilClose(*c);
  EXPECT_EQ(end.code, 1002);
  for (const auto& text : end.texts) {
    EXPECT_NE(jsonString(text, "type"), "gateway_discover_result") << "acted on: " << text;
  }
  // The answer to our close (sent by recv()) is all the relay still waits for.
  EXPECT_EQ(c->recv(5000ms).kind, WsMessage::Kind::Disconnected) << "the socket stayed open";
  const auto metrics = httpRequest(relay.port(), "GET", "/metrics");
  EXPECT_NE(metrics.body.find("\nmesh_relay_websocket_protocol_errors_total 1\n"),
            std::string::npos)
      << metrics.body;
  expectRelayStillServes(relay);
}

// The median time `exchange` takes over `rounds` runs, one after another.
template <typename Exchange>
std::chrono::milliseconds medianRoundTrip(int rounds, Exchange&& exchange) {
  std::vector<Clock::duration> times;
  for (int i = 0; i < rounds; ++i) {
    const auto start = Clock::now();
    exchange();
    times.push_back(Clock::now() - start);
  }
  std::sort(times.begin(), times.end());
  return std::chrono::duration_cast<std::chrono::milliseconds>(times[times.size() / 2]);
}

// GET /gateway with these headers (beside Host, Content-Length and, unless
// given, Connection: close) is refused over HTTP with `status`.
HttpResponse expectRefused(TestRelay& relay, const std::vector<std::string>& headers, int status) {
  HttpResponse r = httpRequest(relay.port(), "GET", "/gateway", {}, headers);
  EXPECT_EQ(r.status, status) << r.headers;
  EXPECT_EQ(headerValue(r.headers, "Sec-WebSocket-Accept"), "");
  return r;
}

// ------------------------------------------------------ control frames --

TEST(WebSocket, PingIsAnsweredWithAPongCarryingItsPayload) {
  TestRelay relay;
  auto peer = joinRaw(relay, "mesh-a");
  const std::vector<std::string> payloads = {"", "hello", std::string("\x00\x01\xfe\xff", 4),
                                             std::string(125, 'p')};
  for (const auto& payload : payloads) {
    peer->sendFrame(opcode::kPing, payload);
    auto pong = peer->readFrame();
    while (pong && pong->opcode == opcode::kPing) pong = peer->readFrame();  // the relay's own
    ASSERT_TRUE(pong.has_value()) << "no pong for a ping of " << payload.size() << " bytes";
    EXPECT_EQ(pong->opcode, opcode::kPong);
    EXPECT_TRUE(pong->fin);
    EXPECT_FALSE(pong->masked);
    EXPECT_EQ(pong->rsv, 0);
    EXPECT_EQ(pong->payload, payload);
  }
  EXPECT_TRUE(peer->textsUntilProbe().empty());
}

TEST(WebSocket, FragmentedMessageIsDeliveredWholeWithAPingBetweenFragments) {
  TestRelay relay;
  auto sender = joinRaw(relay, "mesh-a");
  auto receiver = relay.join("mesh-b");
  // An empty fragment, and an "é" split between two fragments: UTF-8 is
  // checked on the message, not on its pieces.
  sender->sendFrame(opcode::kText, R"({"type":"gateway_relay",)", false);
  sender->sendFrame(opcode::kContinuation, "", false);
  sender->sendFrame(opcode::kContinuation,
                    "\"targetMeshId\":\"mesh-b\",\"payload\":{\"n\":\"wh\xc3", false);
  // A control frame may come between fragments, and is answered at once.
  sender->sendFrame(opcode::kPing, "between");
  auto pong = sender->readFrame();
  ASSERT_TRUE(pong.has_value()) << "no pong while a message was open";
  EXPECT_EQ(pong->opcode, opcode::kPong);
  EXPECT_EQ(pong->payload, "between");
  sender->sendFrame(opcode::kContinuation, "\xa9le\"}}", true);

  auto in = json(receiver->expectType("gateway_incoming"));
  EXPECT_STREQ(in["fromMeshId"].GetString(), "mesh-a");
  EXPECT_STREQ(in["payload"]["n"].GetString(), "wh\xc3\xa9le");
  for (const auto& f : framesUntilProbe(*receiver)) {
    EXPECT_NE(jsonString(f, "type"), "gateway_incoming") << "delivered twice: " << f;
  }
  for (const auto& f : sender->textsUntilProbe()) ADD_FAILURE() << "sender got " << f;
}

// RFC 6455 5.5.2 asks for the pong "as soon as is practical"; the relay's
// other answers are held to the same standard. Its timers tick every 200 ms,
// so an answer that waits for one takes about that long.
TEST(WebSocket, AnswersLeaveAtOnceRatherThanOnTheNextTimerTick) {
  TestRelay relay;
  auto peer = joinRaw(relay, "mesh-a");
  auto receiver = relay.join("mesh-b");
  const auto pong = medianRoundTrip(5, [&] {
    peer->sendFrame(opcode::kPing, "t");
    auto f = peer->readFrame();
    if (!f || f->opcode != opcode::kPong) throw std::runtime_error("no pong");
  });
  const auto discover = medianRoundTrip(5, [&] {
    peer->sendFrame(opcode::kText, discoverText("t"));
    peer->expectText("gateway_discover_result");
  });
  const auto delivery = medianRoundTrip(5, [&] {
    peer->sendFrame(opcode::kText, relayText("mesh-b", "{}"));
    receiver->expectType("gateway_incoming");
  });
  EXPECT_LT(pong, 100ms) << "median ping to pong: " << pong.count() << " ms";
  EXPECT_LT(discover, 100ms) << "median discover to answer: " << discover.count() << " ms";
  EXPECT_LT(delivery, 100ms) << "median relay to delivery: " << delivery.count() << " ms";
}

// ------------------------------------------------------ framing errors --

TEST(WebSocket, UnmaskedFrameFailsTheConnectionWith1002) {
  expectProtocolError(ws::encodeFrame(opcode::kText, discoverText("unmasked")));
}

TEST(WebSocket, ReservedBitFailsTheConnectionWith1002) {
  std::string frame = clientFrame(opcode::kText, discoverText("rsv1"));
  frame[0] = static_cast<char>(frame[0] | 0x40);  // RSV1: no extension was negotiated
  expectProtocolError(frame);
}

TEST(WebSocket, FragmentedControlFrameFailsTheConnectionWith1002) {
  expectProtocolError(clientFrame(opcode::kPing, "first half", false) +
                      clientFrame(opcode::kText, discoverText("after")));
}

TEST(WebSocket, PingOver125BytesFailsTheConnectionWith1002) {
  expectProtocolError(clientFrame(opcode::kPing, std::string(126, 'p')) +
                      clientFrame(opcode::kText, discoverText("after")));
}

TEST(WebSocket, ContinuationWithoutAMessageFailsTheConnectionWith1002) {
  expectProtocolError(clientFrame(opcode::kContinuation, discoverText("stray")));
}

TEST(WebSocket, NewMessageInsideAFragmentedOneFailsTheConnectionWith1002) {
  const std::string discover = discoverText("interleaved");
  expectProtocolError(clientFrame(opcode::kText, discover.substr(0, 10), false) +
                      clientFrame(opcode::kText, discover));
}

TEST(WebSocket, UnknownOpcodeFailsTheConnectionWith1002) {
  expectProtocolError(clientFrame(0x3, discoverText("data-3")));
  expectProtocolError(clientFrame(0xB, "control-b"));
}

// Failing the connection (RFC 6455 7.1.7) ends in closing the TCP
// connection; once both close frames have crossed, the server closes it
// immediately (5.5.1) rather than when a timer gives up on the client.
TEST(WebSocket, FailedConnectionEndsOnceTheCloseFramesHaveCrossed) {
  TestRelay relay;
  auto c = relay.join("mesh-a");
  c->sendRaw(ws::encodeFrame(opcode::kText, discoverText("unmasked")));
  ASSERT_EQ(readUntilClose(*c).code, 1002);  // recv() answered the close frame
  const auto start = Clock::now();
  EXPECT_EQ(c->recv(5000ms).kind, WsMessage::Kind::Disconnected);
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  EXPECT_LT(took, 1000ms) << "the relay closed the socket " << took.count()
                          << " ms after the close frames crossed";
  expectRelayStillServes(relay);
}

// ------------------------------------------------------ close handshake --

TEST(WebSocket, CloseIsAnsweredWithTheSameCodeAndThenTheConnectionEnds) {
  TestRelay relay;
  auto peer = joinRaw(relay, "mesh-a");
  auto other = relay.join("mesh-b");
  peer->sendFrame(opcode::kClose, ws::closePayload(4001, "going away"));
  auto answer = peer->readFrame();
  ASSERT_TRUE(answer.has_value()) << "no close frame in answer";
  EXPECT_EQ(answer->opcode, opcode::kClose);
  EXPECT_FALSE(answer->masked);
  ASSERT_GE(answer->payload.size(), 2u);
  EXPECT_EQ((static_cast<unsigned char>(answer->payload[0]) << 8) |
                static_cast<unsigned char>(answer->payload[1]),
            4001);
  // The server closes the TCP connection first (RFC 6455 7.1.1), and at once.
  EXPECT_TRUE(peer->closedWithin(1000ms)) << "the socket stayed open";
  // The mesh is gone from the routing table.
  other->sendText(relayText("mesh-a", "{}", "after-close"));
  EXPECT_EQ(jsonString(other->expectType("gateway_ack"), "status"), "offline");
  expectRelayStillServes(relay);
}

// ---------------------------------------------------- oversize messages --

TEST(WebSocket, OversizeFrameArrivingInSmallPiecesIsRefusedAndTheConnectionGoesOn) {
  TestRelay relay([](relay::Config& c) { c.limits.maxFrameBytes = 1024; });
  auto a = relay.join("mesh-a");
  auto b = relay.join("mesh-b");
  // A 16-bit and a 64-bit payload length. The header is cut up as well, and
  // the last piece of the frame carries the start of the discover behind it.
  const std::vector<std::size_t> pieces = {1, 1, 2, 3, 5, 8, 13, 21, 997};
  for (std::size_t size : {4000u, 70000u}) {
    const std::string id = "after-" + std::to_string(size);
    sendInPieces(*a,
                 clientFrame(opcode::kText, relayTextOfSize("mesh-b", size)) +
                     clientFrame(opcode::kText, discoverText(id)),
                 pieces);
    EXPECT_EQ(jsonString(a->expectType("error"), "code"), "frame_too_large") << size;
    EXPECT_EQ(jsonString(a->expectType("gateway_discover_result"), "id"), id);
  }
  // Nothing was delivered: the first message b gets is the one after.
  a->sendText(relayText("mesh-b", R"({"n":"small"})"));
  EXPECT_STREQ(json(b->expectType("gateway_incoming"))["payload"]["n"].GetString(), "small");
  expectRelayStillServes(relay);
}

TEST(WebSocket, OversizeMessageOfSmallFragmentsIsRefusedAndTheConnectionGoesOn) {
  TestRelay relay([](relay::Config& c) { c.limits.maxFrameBytes = 1024; });
  auto a = relay.join("mesh-a");
  auto b = relay.join("mesh-b");
  const std::string big = relayTextOfSize("mesh-b", 4000);
  const std::size_t fragment = 700;  // each under the limit
  for (std::size_t at = 0; at < big.size(); at += fragment) {
    const bool first = at == 0;
    const bool last = at + fragment >= big.size();
    a->sendFrame(first ? opcode::kText : opcode::kContinuation, big.substr(at, fragment), last);
  }
  EXPECT_EQ(jsonString(a->expectType("error"), "code"), "frame_too_large");
  a->sendText(discoverText("after"));
  EXPECT_EQ(jsonString(a->expectType("gateway_discover_result"), "id"), "after");
  // A fragmented message under the limit is still put together.
  const std::string small = relayText("mesh-b", R"({"n":"small"})");
  a->sendFrame(opcode::kText, small.substr(0, 20), false);
  a->sendFrame(opcode::kContinuation, small.substr(20), true);
  EXPECT_STREQ(json(b->expectType("gateway_incoming"))["payload"]["n"].GetString(), "small");
  expectRelayStillServes(relay);
}

// ---------------------------------------------------- opening handshake --

TEST(WebSocketHandshake, FramesInTheSameWriteAsTheRequestAreHandled) {
  TestRelay relay;
  ASSERT_EQ(relay.registerMesh("mesh-a", TestRelay::secretFor("mesh-a"), "A"), 201);
  RawPeer peer(relay.port());
  peer.send(upgradeRequest(relay.port()) + clientFrame(opcode::kText, authText("mesh-a")) +
            clientFrame(opcode::kText, discoverText("early")));
  const std::string head = peer.readResponseHead();
  ASSERT_EQ(head.rfind("HTTP/1.1 101", 0), 0u) << head;
  EXPECT_EQ(headerValue(head, "Sec-WebSocket-Accept"), kSampleAccept);
  EXPECT_NO_THROW(peer.expectText("gateway_auth_ok"));
  EXPECT_EQ(jsonString(peer.expectText("gateway_discover_result"), "id"), "early");
  expectRelayStillServes(relay);
}

TEST(WebSocketHandshake, FrameCutOffBehindTheRequestIsCompletedByTheNextWrite) {
  TestRelay relay;
  ASSERT_EQ(relay.registerMesh("mesh-a", TestRelay::secretFor("mesh-a"), "A"), 201);
  RawPeer peer(relay.port());
  const std::string auth = clientFrame(opcode::kText, authText("mesh-a"));
  peer.send(upgradeRequest(relay.port()) + auth.substr(0, 5));
  const std::string head = peer.readResponseHead();
  ASSERT_EQ(head.rfind("HTTP/1.1 101", 0), 0u) << head;
  peer.send(auth.substr(5));
  EXPECT_NO_THROW(peer.expectText("gateway_auth_ok"));
}

// Bytes sent in pieces, a pause after each.
void sendCut(RawPeer& peer, const std::string& bytes, const std::vector<std::size_t>& cuts) {
  std::size_t from = 0;
  for (std::size_t cut : cuts) {
    peer.send(bytes.substr(from, cut - from));
    from = cut;
    std::this_thread::sleep_for(30ms);
  }
  peer.send(bytes.substr(from));
}

TEST(WebSocketHandshake, RequestArrivingInPiecesStillUpgrades) {
  TestRelay relay;
  const std::string request = upgradeRequest(relay.port());
  const std::size_t blankLine = request.size() - 4;
  // Cut before the request line says /gateway, inside the headers, and
  // inside the blank line.
  const std::vector<std::vector<std::size_t>> cutPlans = {{2, 8}, {14, 40}, {blankLine + 3}};
  int n = 0;
  for (const auto& cuts : cutPlans) {
    const std::string meshId = "mesh-pieces-" + std::to_string(n++);
    ASSERT_EQ(relay.registerMesh(meshId, TestRelay::secretFor(meshId), meshId), 201);
    RawPeer peer(relay.port());
    sendCut(peer, request, cuts);
    const std::string head = peer.readResponseHead();
    ASSERT_EQ(head.rfind("HTTP/1.1 101", 0), 0u) << "cut at " << cuts.front() << ": " << head;
    EXPECT_EQ(headerValue(head, "Sec-WebSocket-Accept"), kSampleAccept);
    peer.sendFrame(opcode::kText, authText(meshId));
    EXPECT_NO_THROW(peer.expectText("gateway_auth_ok")) << "cut at " << cuts.front();
  }
  expectRelayStillServes(relay);
}

// A request line cut off before it says whether it is "GET /gateway" is
// still the relay's to answer when it is (libwebsockets would upgrade a
// malformed key the relay refuses), and still reaches libwebsockets, whole,
// when it is not.
TEST(WebSocketHandshake, RequestLineCutShortIsStillTold) {
  TestRelay relay;
  std::string badKey = upgradeRequest(relay.port());
  badKey.replace(badKey.find(kSampleKey), std::strlen(kSampleKey), "c2hvcnQ=");
  for (const std::vector<std::size_t>& cuts :
       std::vector<std::vector<std::size_t>>{{1}, {2, 8}, {12}, {5, 6, 11}}) {
    RawPeer peer(relay.port());
    sendCut(peer, badKey, cuts);
    const std::string head = peer.readResponseHead();
    EXPECT_EQ(head.rfind("HTTP/1.1 400", 0), 0u) << "cut at " << cuts.front() << ": " << head;
  }
  const std::string health = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
  {
    RawPeer peer(relay.port());
    sendCut(peer, health, {2, 6});
    const std::string head = peer.readResponseHead();
    EXPECT_EQ(head.rfind("HTTP/1.1 200", 0), 0u) << head;
  }
  const std::string elsewhere = "GET /gatewayz HTTP/1.1\r\nHost: x\r\n\r\n";
  {
    RawPeer peer(relay.port());
    sendCut(peer, elsewhere, {11});
    const std::string head = peer.readResponseHead();
    EXPECT_EQ(head.rfind("HTTP/1.1 404", 0), 0u) << head;
  }
  // A body behind a request line that started like ours.
  const std::string body = R"({"meshId":"cut-body","secret":")" + TestRelay::secretFor("cut-body") +
                           R"(","name":"Cut"})";
  const std::string post =
      "GET /register HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(body.size()) +
      "\r\n\r\n" + body;
  {
    RawPeer peer(relay.port());
    sendCut(peer, post, {3});
    const std::string head = peer.readResponseHead();
    EXPECT_EQ(head.rfind("HTTP/1.1 ", 0), 0u) << head;
  }
  expectRelayStillServes(relay);
}

TEST(WebSocketHandshake, RequestWithoutUpgradeHeadersIs426) {
  TestRelay relay;
  // No Upgrade header, and Connection: close.
  expectRefused(relay, {kKeyHeader, "Sec-WebSocket-Version: 13"}, 426);
  // Upgrade without the Connection token that makes it apply.
  expectRefused(
      relay,
      {"Upgrade: websocket", "Connection: keep-alive", kKeyHeader, "Sec-WebSocket-Version: 13"},
      426);
  expectRelayStillServes(relay);
}

TEST(WebSocketHandshake, UnsupportedVersionIs426NamingVersion13) {
  TestRelay relay;
  const HttpResponse r = expectRefused(
      relay, {"Upgrade: websocket", "Connection: Upgrade", kKeyHeader, "Sec-WebSocket-Version: 8"},
      426);
  EXPECT_EQ(headerValue(r.headers, "Sec-WebSocket-Version"), "13") << r.headers;
  expectRelayStillServes(relay);
}

TEST(WebSocketHandshake, MissingKeyIs400) {
  TestRelay relay;
  expectRefused(relay, {"Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13"},
                400);
  expectRelayStillServes(relay);
}

TEST(WebSocketHandshake, KeyThatIsNot16BytesOfBase64Is400) {
  TestRelay relay;
  for (const char* key :
       {"c2hvcnQ=", "dGhlIHNhbXBsZSBub25jZQ=", "dGhlIHNhbXBsZSBub25jZQ===",
        "dGhlIHNhbXBsZSBub25jZ!==", "dGhlIHNhbXBsZSBub25jZQ==, dGhlIHNhbXBsZSBub25jZQ=="}) {
    SCOPED_TRACE(key);
    expectRefused(relay,
                  {"Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13",
                   std::string("Sec-WebSocket-Key: ") + key},
                  400);
  }
  expectRelayStillServes(relay);
}

TEST(WebSocketHandshake, RequestNotCompleteInTimeIs408) {
  TestRelay relay([](relay::Config& c) { c.handshakeTimeoutSeconds = 0.3; });
  RawPeer peer(relay.port());
  peer.send("GET /gateway HTTP/1.1\r\nHost: 127.0.0.1\r\n");  // and nothing more
  const std::string head = peer.readResponseHead(3000ms);
  EXPECT_EQ(head.rfind("HTTP/1.1 408", 0), 0u) << head;
  EXPECT_TRUE(peer.closedWithin(1000ms));
  expectRelayStillServes(relay);
}

TEST(WebSocketHandshake, ConnectionsBeyondTheLimitAreClosedAtAccept) {
  // Room for two sessions plus the relay's spare (256) for requests in
  // progress: 258 connections that send nothing fill it.
  // (They all come from 127.0.0.1: the per-address limit, which counts them
  // from accept too, is raised out of the way.)
  TestRelay relay([](relay::Config& c) {
    c.maxConnections = 2;
    c.maxUnauthenticatedPerIp = 1000;
  });
  std::vector<std::unique_ptr<RawPeer>> idle;
  for (int i = 0; i < 258; ++i) idle.push_back(std::make_unique<RawPeer>(relay.port()));
  // The relay has taken all of them once a late one is turned away: wait
  // for that rather than for a fixed time.
  bool turnedAway = false;
  for (int i = 0; i < 50 && !turnedAway; ++i) {
    RawPeer late(relay.port());
    turnedAway = late.closedWithin(200ms);
  }
  EXPECT_TRUE(turnedAway);
  idle.clear();
  // The turned-away ones are counted, and the relay serves again. Until it
  // has seen the idle peers go, a new connection is still turned away at
  // accept, which the HTTP helper reports as an exception.
  HttpResponse metrics;
  for (int i = 0; i < 50 && metrics.status != 200; ++i) {
    try {
      metrics = httpRequest(relay.port(), "GET", "/metrics");
    } catch (const std::exception&) {
      metrics = HttpResponse{};
    }
    if (metrics.status != 200) std::this_thread::sleep_for(20ms);
  }
  ASSERT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("mesh_relay_connections_refused_total{reason=\"connection_limit\"} "),
            std::string::npos);
  EXPECT_EQ(
      metrics.body.find("mesh_relay_connections_refused_total{reason=\"connection_limit\"} 0\n"),
      std::string::npos)
      << metrics.body;
  expectRelayStillServes(relay);
}

TEST(WebSocketHandshake, RequestHeadersOver8KiBAre431) {
  TestRelay relay;
  // Just under the limit is fine.
  ConnectOptions underLimit;
  underLimit.extraHeaders = {"X-Padding: " + std::string(7000, 'a')};
  EXPECT_NO_THROW(WsClient::connect(relay.port(), underLimit));
  expectRefused(relay,
                {"Upgrade: websocket", "Connection: Upgrade", kKeyHeader,
                 "Sec-WebSocket-Version: 13", "X-Padding: " + std::string(9000, 'a')},
                431);
  expectRelayStillServes(relay);
}

TEST(WebSocketHandshake, AcceptFollowsTheRfcAndNoExtensionIsNegotiated) {
  TestRelay relay;
  // WsClient checks the accept value against its own computation...
  ConnectOptions offer;
  offer.extraHeaders = {"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"};
  auto c = WsClient::connect(relay.port(), offer);
  EXPECT_NE(c->handshakeResponse().find(" 101 "), std::string::npos) << c->handshakeResponse();
  EXPECT_EQ(headerValue(c->handshakeResponse(), "Sec-WebSocket-Extensions"), "");
  // ...and the RFC's own example pins that computation down.
  RawPeer peer(relay.port());
  peer.send(upgradeRequest(relay.port()));
  const std::string head = peer.readResponseHead();
  EXPECT_EQ(head.rfind("HTTP/1.1 101", 0), 0u) << head;
  EXPECT_EQ(headerValue(head, "Sec-WebSocket-Accept"), kSampleAccept);
  EXPECT_EQ(headerValue(head, "Upgrade"), "websocket");
  EXPECT_EQ(headerValue(head, "Sec-WebSocket-Extensions"), "");
}

}  // namespace
}  // namespace mesh::test
