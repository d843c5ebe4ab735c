// Self-test of the test client's framing, handshake and HTTP code. Needs no
// relay: the peer is one end of a socketpair or a listener in a thread.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "support/ws_client.h"

namespace mesh::test {
namespace {

using namespace std::chrono_literals;

// The server end of a socketpair: writes unmasked frames, reads masked ones.
class FakeServer {
 public:
  explicit FakeServer(int fd) : fd_(fd) {}
  ~FakeServer() {
    if (fd_ >= 0) ::close(fd_);
  }
  void write(std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      ASSERT_GT(n, 0);
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
  }
  void frame(std::uint8_t op, std::string_view payload, bool fin = true) {
    write(ws::encodeFrame(op, payload, fin));
  }
  // Next frame from the client, or nullopt if none arrives within a second.
  std::optional<ws::Frame> read() {
    for (;;) {
      ws::Frame f;
      auto r = ws::decodeFrame(std::string_view(buf_).substr(pos_), f);
      if (r.status == ws::DecodeStatus::Complete) {
        pos_ += r.consumed;
        return f;
      }
      if (r.status == ws::DecodeStatus::Invalid) return std::nullopt;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 1000) <= 0) return std::nullopt;
      char chunk[4096];
      ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n <= 0) return std::nullopt;
      buf_.append(chunk, static_cast<std::size_t>(n));
    }
  }
  void shutdown() {
    ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
  std::string buf_;
  std::size_t pos_ = 0;
};

struct Pair {
  std::unique_ptr<WsClient> client;
  std::unique_ptr<FakeServer> server;
};

Pair makePair() {
  int fds[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  return {WsClient::adopt(fds[0]), std::make_unique<FakeServer>(fds[1])};
}

TEST(WsClientFraming, Sha1AndAcceptKeyMatchKnownValues) {
  auto hex = [](const std::array<std::uint8_t, 20>& d) {
    static const char* digits = "0123456789abcdef";
    std::string s;
    for (auto b : d) {
      s.push_back(digits[b >> 4]);
      s.push_back(digits[b & 0xF]);
    }
    return s;
  };
  EXPECT_EQ(hex(ws::sha1("")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
  EXPECT_EQ(hex(ws::sha1("abc")), "a9993e364706816aba3e25717850c26c9cd0d89d");
  EXPECT_EQ(hex(ws::sha1("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
  EXPECT_EQ(hex(ws::sha1(std::string(1000000, 'a'))), "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
  // The example handshake of RFC 6455 section 1.3.
  EXPECT_EQ(ws::acceptKey("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  EXPECT_EQ(ws::base64Encode("f"), "Zg==");
  EXPECT_EQ(ws::base64Encode("fo"), "Zm8=");
  EXPECT_EQ(ws::base64Encode("foo"), "Zm9v");
}

TEST(WsClientFraming, EncodeDecodeRoundTripsAllLengthForms) {
  const std::array<std::uint8_t, 4> key{0x12, 0x34, 0x56, 0x78};
  for (std::size_t len : {0, 1, 125, 126, 65535, 65536, 70000}) {
    std::string payload(len, '\0');
    for (std::size_t i = 0; i < len; ++i) payload[i] = static_cast<char>(i * 7);
    for (bool masked : {false, true}) {
      auto bytes = masked ? ws::encodeFrame(opcode::kBinary, payload, false, key)
                          : ws::encodeFrame(opcode::kBinary, payload, false);
      std::size_t header = len < 126 ? 2 : len <= 0xFFFF ? 4 : 10;
      ASSERT_EQ(bytes.size(), header + (masked ? 4 : 0) + len) << len;
      if (masked && len > 0) {
        EXPECT_NE(bytes.substr(bytes.size() - len), payload);
      }
      ws::Frame f;
      auto r = ws::decodeFrame(bytes + "extra", f);
      ASSERT_EQ(r.status, ws::DecodeStatus::Complete) << len;
      EXPECT_EQ(r.consumed, bytes.size());
      EXPECT_FALSE(f.fin);
      EXPECT_EQ(f.opcode, opcode::kBinary);
      EXPECT_EQ(f.masked, masked);
      EXPECT_EQ(f.payload, payload);
      // Every proper prefix is incomplete, never an error.
      for (std::size_t cut :
           {std::size_t{0}, std::size_t{1}, header - 1, header, bytes.size() - 1}) {
        if (cut >= bytes.size()) continue;
        EXPECT_EQ(ws::decodeFrame(bytes.substr(0, cut), f).status, ws::DecodeStatus::Incomplete)
            << len << " cut at " << cut;
      }
    }
  }
}

TEST(WsClientFraming, DecodeRejectsNonMinimalAndHugeLengths) {
  ws::Frame f;
  std::string sixteen = {'\x81', '\x7E', '\x00', '\x05', 'h', 'e', 'l', 'l', 'o'};
  EXPECT_EQ(ws::decodeFrame(sixteen, f).status, ws::DecodeStatus::Invalid);
  std::string huge = {'\x82', '\x7F', '\x80', 0, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(ws::decodeFrame(huge, f).status, ws::DecodeStatus::Invalid);
}

TEST(WsClientFraming, ReassemblesFragmentsAndAnswersPings) {
  auto [client, server] = makePair();
  server->frame(opcode::kText, "hel", false);
  server->frame(opcode::kPing, "p1");
  server->frame(opcode::kContinuation, "lo ", false);
  server->frame(opcode::kPong, "ignored");
  server->frame(opcode::kContinuation, "world", true);
  server->frame(opcode::kBinary, std::string("\x00\xff", 2));
  auto m = client->recv(1s);
  EXPECT_EQ(m.kind, WsMessage::Kind::Text);
  EXPECT_EQ(m.data, "hello world");
  m = client->recv(1s);
  EXPECT_EQ(m.kind, WsMessage::Kind::Binary);
  EXPECT_EQ(m.data, std::string("\x00\xff", 2));
  EXPECT_EQ(client->pingsReceived(), 1);
  auto pong = server->read();
  ASSERT_TRUE(pong);
  EXPECT_EQ(pong->opcode, opcode::kPong);
  EXPECT_TRUE(pong->masked);
  EXPECT_EQ(pong->payload, "p1");
}

TEST(WsClientFraming, HandlesFramesSplitAcrossReads) {
  auto [client, server] = makePair();
  const std::string big(70000, 'z');
  const std::string bytes =
      ws::encodeFrame(opcode::kText, "first") + ws::encodeFrame(opcode::kText, big);
  std::thread writer([&, srv = server.get()] {
    // One byte at a time through the headers, then the rest in two pieces.
    for (std::size_t i = 0; i < 12; ++i) {
      srv->write(bytes.substr(i, 1));
      std::this_thread::sleep_for(2ms);
    }
    srv->write(bytes.substr(12, 30000));
    std::this_thread::sleep_for(10ms);
    srv->write(bytes.substr(30012));
  });
  auto a = client->recv(2s);
  auto b = client->recv(2s);
  writer.join();
  EXPECT_EQ(a.kind, WsMessage::Kind::Text);
  EXPECT_EQ(a.data, "first");
  EXPECT_EQ(b.kind, WsMessage::Kind::Text);
  EXPECT_EQ(b.data, big);
}

TEST(WsClientFraming, SendsMaskedFramesWithFreshKeys) {
  auto [client, server] = makePair();
  client->sendText("hello");
  client->sendBinary("hello");
  client->sendFrame(opcode::kText, "part", false);
  auto a = server->read();
  auto b = server->read();
  auto c = server->read();
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(a->opcode, opcode::kText);
  EXPECT_EQ(b->opcode, opcode::kBinary);
  EXPECT_TRUE(a->masked && b->masked && c->masked);
  EXPECT_EQ(a->payload, "hello");
  EXPECT_EQ(b->payload, "hello");
  EXPECT_FALSE(c->fin);
  EXPECT_EQ(c->payload, "part");
}

TEST(WsClientFraming, NoPongWhenAutoPongIsOff) {
  auto [client, server] = makePair();
  client->setAutoPong(false);
  server->frame(opcode::kPing, "x");
  EXPECT_EQ(client->recv(50ms).kind, WsMessage::Kind::Timeout);
  EXPECT_EQ(client->pingsReceived(), 1);
  client->sendText("after");
  auto f = server->read();
  ASSERT_TRUE(f);
  EXPECT_EQ(f->opcode, opcode::kText);
}

TEST(WsClientFraming, CloseFrameIsReportedAndEchoed) {
  auto [client, server] = makePair();
  server->frame(opcode::kClose, ws::closePayload(4001, "bye"));
  auto m = client->recv(1s);
  EXPECT_EQ(m.kind, WsMessage::Kind::Close);
  EXPECT_EQ(m.closeCode, 4001);
  EXPECT_EQ(m.data, "bye");
  auto echo = server->read();
  ASSERT_TRUE(echo);
  EXPECT_EQ(echo->opcode, opcode::kClose);
  EXPECT_EQ(echo->payload, ws::closePayload(4001));
  server->shutdown();
  EXPECT_EQ(client->recv(1s).kind, WsMessage::Kind::Disconnected);
}

TEST(WsClientFraming, EmptyCloseFrameMeans1005) {
  auto [client, server] = makePair();
  server->frame(opcode::kText, R"({"type":"noise"})");
  server->frame(opcode::kClose, "");
  EXPECT_EQ(client->expectClose(1s), 1005);
}

TEST(WsClientFraming, ExpectCloseDistinguishesDropAndTimeout) {
  auto [client, server] = makePair();
  EXPECT_EQ(client->expectClose(50ms), 0);
  server->shutdown();
  EXPECT_EQ(client->expectClose(1s), -1);
}

TEST(WsClientFraming, ExpectTypeSkipsOthersAndReportsWhatItSaw) {
  auto [client, server] = makePair();
  server->frame(opcode::kText, R"({"type":"a"})");
  server->frame(opcode::kBinary, "bin");
  server->frame(opcode::kText, R"({"type":"b","n":3})");
  auto text = client->expectType("b", 1s);
  EXPECT_EQ(jsonInt(text, "n"), 3);
  server->frame(opcode::kText, R"({"type":"c"})");
  try {
    client->expectType("d", 100ms);
    FAIL() << "expectType should have thrown";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(R"({"type":"c"})"), std::string::npos) << e.what();
  }
}

TEST(WsClientFraming, ServerProtocolErrorsThrow) {
  auto [client, server] = makePair();
  server->write(ws::encodeFrame(opcode::kText, "masked", true, ws::randomMaskKey()));
  EXPECT_THROW(client->recv(1s), std::runtime_error);
  auto [client2, server2] = makePair();
  server2->frame(opcode::kContinuation, "stray");
  EXPECT_THROW(client2->recv(1s), std::runtime_error);
}

TEST(WsClientFraming, CloseSendsCloseFrameAndWaitsForReply) {
  auto [client, server] = makePair();
  std::thread peer([srv = server.get()] {
    auto f = srv->read();
    if (f && f->opcode == opcode::kClose) srv->frame(opcode::kClose, f->payload);
  });
  client->close(1000);
  peer.join();
  EXPECT_FALSE(client->isOpen());
  EXPECT_EQ(client->recv(10ms).kind, WsMessage::Kind::Disconnected);
}

TEST(WsClientFraming, JsonHelpers) {
  const std::string json = R"({"type":"x","n":-5,"ok":true,"arr":[]})";
  EXPECT_EQ(jsonString(json, "type"), "x");
  EXPECT_EQ(jsonString(json, "n"), "");
  EXPECT_EQ(jsonString("not json", "type"), "");
  EXPECT_EQ(jsonInt(json, "n"), -5);
  EXPECT_TRUE(jsonBool(json, "ok"));
  EXPECT_TRUE(jsonHas(json, "arr"));
  EXPECT_FALSE(jsonHas(json, "missing"));
}

// A listener on 127.0.0.1 with an ephemeral port, serving one connection.
class OneShotServer {
 public:
  OneShotServer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(fd_, 4), 0);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~OneShotServer() {
    if (thread_.joinable()) thread_.join();
    ::close(fd_);
  }
  std::uint16_t port() const { return port_; }
  // Accepts one connection, reads the request head, hands it to `reply`,
  // writes the answer and keeps the socket until the client goes away.
  template <typename Reply>
  void serve(Reply reply) {
    thread_ = std::thread([this, reply] {
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      std::string req;
      char buf[4096];
      while (req.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = ::recv(c, buf, sizeof buf, 0);
        if (n <= 0) break;
        req.append(buf, static_cast<std::size_t>(n));
      }
      request_ = req;
      std::string out = reply(req);
      ::send(c, out.data(), out.size(), MSG_NOSIGNAL);
      ::shutdown(c, SHUT_WR);
      while (::recv(c, buf, sizeof buf, 0) > 0) {
      }
      ::close(c);
    });
  }
  // The request head the server saw; waits for the connection to end.
  const std::string& request() {
    if (thread_.joinable()) thread_.join();
    return request_;
  }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::thread thread_;
  std::string request_;
};

TEST(WsClientFraming, ConnectVerifiesAcceptAndKeepsEarlyFrames) {
  OneShotServer srv;
  srv.serve([](const std::string& req) {
    std::string key = headerValue(req, "Sec-WebSocket-Key");
    return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Accept: " +
           ws::acceptKey(key) + "\r\n\r\n" + ws::encodeFrame(opcode::kText, "early");
  });
  ConnectOptions opt;
  opt.path = "/gateway?x=1";
  opt.extraHeaders = {"X-Test: yes"};
  auto client = WsClient::connect(srv.port(), opt);
  EXPECT_EQ(headerValue(client->handshakeResponse(), "upgrade"), "websocket");
  auto m = client->recv(1s);
  EXPECT_EQ(m.kind, WsMessage::Kind::Text);
  EXPECT_EQ(m.data, "early");
  client->abort();
  EXPECT_EQ(srv.request().rfind("GET /gateway?x=1 HTTP/1.1\r\n", 0), 0u);
  EXPECT_EQ(headerValue(srv.request(), "Sec-WebSocket-Version"), "13");
  EXPECT_EQ(headerValue(srv.request(), "X-Test"), "yes");
}

TEST(WsClientFraming, ConnectThrowsWithStatusLine) {
  OneShotServer srv;
  srv.serve([](const std::string&) {
    return std::string("HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n");
  });
  try {
    WsClient::connect(srv.port());
    FAIL() << "connect should have thrown";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("HTTP/1.1 426 Upgrade Required"), std::string::npos)
        << e.what();
  }
}

TEST(WsClientFraming, ConnectRejectsWrongAccept) {
  OneShotServer srv;
  srv.serve([](const std::string&) {
    return std::string(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: bogus\r\n\r\n");
  });
  EXPECT_THROW(WsClient::connect(srv.port()), std::runtime_error);
}

TEST(WsClientFraming, HttpRequestSendsBodyAndDecodesChunked) {
  OneShotServer srv;
  srv.serve([](const std::string&) {
    return std::string(
        "HTTP/1.1 409 Conflict\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\n{\"err\r\n8\r\nor\":\"x\"}\r\n0\r\n\r\n");
  });
  auto resp = httpRequest(srv.port(), "POST", "/register", R"({"a":1})", {"X-Extra: 1"});
  EXPECT_EQ(resp.status, 409);
  EXPECT_EQ(resp.body, R"({"error":"x"})");
  EXPECT_EQ(jsonString(resp.body, "error"), "x");
  EXPECT_EQ(srv.request().rfind("POST /register HTTP/1.1\r\n", 0), 0u);
  EXPECT_EQ(headerValue(srv.request(), "Content-Length"), "7");
  EXPECT_EQ(headerValue(srv.request(), "Connection"), "close");
  EXPECT_EQ(headerValue(srv.request(), "X-Extra"), "1");
}

}  // namespace
}  // namespace mesh::test
