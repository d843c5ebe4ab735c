// HTTP message framing against a real relay, on the plain listener (the
// relay reads every request head itself) and over TLS (lws parses): a
// request whose body length is in doubt gets 400 and its connection closed,
// and no body is ever served as a second request (RFC 9112 6.3). Also the
// 414/431 answers, the 400 for a WebSocket on another path, and connections
// in the handshake counting toward --max-unauthenticated-per-ip.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "support/raw_peer.h"
#include "support/test_relay.h"
#include "support/tls_client.h"

namespace mesh::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr const char* kAdminToken = "framing-admin-token-0123456789";

// What a smuggled request would get: the mesh list, for the admin token.
const std::string kSmuggled = std::string("GET /meshes HTTP/1.1\r\nHost: relay\r\n") +
                              "Authorization: Bearer " + kAdminToken + "\r\n\r\n";

struct Case {
  std::string name;
  std::string bytes;      // one request with kSmuggled somewhere behind its head
  int plainStatus = 400;  // the answer on the plain listener
  // The answer through lws over TLS; 0 when lws cannot see what is wrong
  // (it is then served once, and the connection still closes).
  int tlsStatus = 400;
};

std::string lengthOf(const std::string& s) {
  return std::to_string(s.size());
}

std::vector<Case> smugglingCases() {
  const std::string head = "POST /register HTTP/1.1\r\nHost: relay\r\n";
  const std::string get = "GET /health HTTP/1.1\r\nHost: relay\r\n";
  return {
      // The three of the report.
      {"ContentLengthNotANumber", head + "Content-Length: abc\r\n\r\n" + kSmuggled},
      {"TwoContentLengths", head + "Content-Length: 2\r\nContent-Length: " +
                                lengthOf("{}" + kSmuggled) + "\r\n\r\n{}" + kSmuggled},
      {"ContentLengthAndChunked",
       head + "Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}" + kSmuggled},
      // More of RFC 9112 6.3.
      {"ChunkedAlone", head + "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n" + kSmuggled},
      {"ChunkedThenContentLength",
       head + "Transfer-Encoding: chunked\r\nContent-Length: " + lengthOf("0\r\n\r\n" + kSmuggled) +
           "\r\n\r\n0\r\n\r\n" + kSmuggled},
      {"ContentLengthsInOneField", head + "Content-Length: 2, 40\r\n\r\n{}" + kSmuggled},
      {"NegativeContentLength", head + "Content-Length: -1\r\n\r\n" + kSmuggled},
      {"SpaceBeforeColon",
       get + "Content-Length : " + lengthOf(kSmuggled) + "\r\n\r\n" + kSmuggled},
      {"TransferEncodingSpaceBeforeColon",
       head + "Transfer-Encoding : chunked\r\nContent-Length: 2\r\n\r\n{}" + kSmuggled},
      // lws reads these its own way; the connection still ends after one
      // answer.
      {"ObsFold",
       get + "X-Note: a\r\n Content-Length: " + lengthOf(kSmuggled) + "\r\n\r\n" + kSmuggled, 400,
       0},
      {"BareLineFeeds", "GET /health HTTP/1.1\nHost: relay\n\n" + kSmuggled, 400, 0},
      // Well-formed and pipelined: one answer, then the connection closes.
      {"PipelinedAfterAGoodRequest", get + "\r\n" + kSmuggled, 200, 200},
  };
}

std::function<void(relay::Config&)> withAdminToken(std::function<void(relay::Config&)> more = {}) {
  return [more](relay::Config& c) {
    c.adminToken = kAdminToken;
    if (more) more(c);
  };
}

// The status of the first response in `bytes` and how many responses there
// are (a second one would be a smuggled request served).
void expectOneAnswer(const std::string& bytes, int status) {
  EXPECT_EQ(bytes.rfind("HTTP/1.", 0), 0u) << bytes;
  if (status != 0) {
    EXPECT_EQ(bytes.substr(9, 3), std::to_string(status)) << bytes;
  }
  EXPECT_EQ(bytes.find("HTTP/1.", 1), std::string::npos) << "a second response:\n" << bytes;
  EXPECT_EQ(bytes.find("\"meshes\""), std::string::npos) << bytes;
}

std::optional<std::string> exchangeTls(std::uint16_t port, const std::string& bytes) {
  auto tls = TlsStream::connect(port);
  tls->write(bytes);
  std::string in;
  const auto deadline = Clock::now() + 5s;
  while (tls->read(in, deadline)) {
  }
  if (Clock::now() >= deadline) return std::nullopt;  // still open
  return in;
}

// Two fresh meshes relay to each other over TLS.
void expectTlsRelayStillServes(TestRelay& relay) {
  static int round = 0;
  const std::string a = "tls-ok-a-" + std::to_string(round);
  const std::string b = "tls-ok-b-" + std::to_string(++round);
  std::vector<std::unique_ptr<TlsWsClient>> clients;
  for (const std::string& id : {a, b}) {
    const std::string body = R"({"meshId":")" + id + R"(","secret":")" + TestRelay::secretFor(id) +
                             R"(","name":")" + id + "\"}";
    ASSERT_EQ(httpsRequest(relay.port(), "POST", "/register", body).status, 201);
    clients.push_back(TlsWsClient::connect(relay.port()));
    clients.back()->sendText(R"({"type":"gateway_auth","meshId":")" + id + R"(","secret":")" +
                             TestRelay::secretFor(id) + "\"}");
    clients.back()->expectType("gateway_auth_ok");
  }
  clients[0]->sendText(R"({"type":"gateway_relay","targetMeshId":")" + b +
                       R"(","payload":{"n":1}})");
  EXPECT_EQ(jsonString(clients[1]->expectType("gateway_incoming"), "fromMeshId"), a);
}

TEST(HttpFraming, AmbiguousLengthsAre400AndCloseOnThePlainListener) {
  TestRelay relay(withAdminToken());
  for (const Case& c : smugglingCases()) {
    SCOPED_TRACE(c.name);
    RawPeer peer(relay.port());
    peer.send(c.bytes);
    const auto answer = peer.readUntilClosed(5000ms);
    ASSERT_TRUE(answer) << "the connection stayed open";
    expectOneAnswer(*answer, c.plainStatus);
  }
  // The admin route itself works: the smuggled request was a real one.
  EXPECT_EQ(httpRequest(relay.port(), "GET", "/meshes", {},
                        {std::string("Authorization: Bearer ") + kAdminToken})
                .status,
            200);
  expectRelayStillServes(relay);
}

TEST(HttpFraming, AmbiguousLengthsAre400AndCloseOverTls) {
  TempDir certs;
  TestRelay relay(
      withAdminToken([&](relay::Config& c) { useSelfSignedCert(c, certs.path(), "framing"); }));
  for (const Case& c : smugglingCases()) {
    SCOPED_TRACE(c.name);
    const auto answer = exchangeTls(relay.port(), c.bytes);
    ASSERT_TRUE(answer) << "the connection stayed open";
    expectOneAnswer(*answer, c.tlsStatus);
  }
  expectTlsRelayStillServes(relay);
}

// Sent in pieces, the head is still read whole before anything is served.
TEST(HttpFraming, HeadArrivingInPiecesIsCheckedWhole) {
  TestRelay relay(withAdminToken());
  const std::string bytes =
      "POST /register HTTP/1.1\r\nHost: relay\r\nContent-Length: abc\r\n\r\n" + kSmuggled;
  for (std::size_t cut : {3u, 20u, 45u, 58u}) {
    SCOPED_TRACE(cut);
    RawPeer peer(relay.port());
    peer.send(bytes.substr(0, cut));
    std::this_thread::sleep_for(20ms);
    peer.send(bytes.substr(cut));
    const auto answer = peer.readUntilClosed(5000ms);
    ASSERT_TRUE(answer);
    expectOneAnswer(*answer, 400);
  }
  // A good body behind a head that came in pieces reaches lws whole.
  const std::string body =
      R"({"meshId":"pieces","secret":")" + TestRelay::secretFor("pieces") + R"(","name":"Pieces"})";
  const std::string post =
      "POST /register HTTP/1.1\r\nHost: relay\r\nContent-Length: " + lengthOf(body) + "\r\n\r\n" +
      body;
  RawPeer peer(relay.port());
  peer.send(post.substr(0, 30));
  std::this_thread::sleep_for(20ms);
  peer.send(post.substr(30, post.size() - 30 - 10));
  std::this_thread::sleep_for(20ms);
  peer.send(post.substr(post.size() - 10));
  const auto answer = peer.readUntilClosed(5000ms);
  ASSERT_TRUE(answer);
  expectOneAnswer(*answer, 201);
  expectRelayStillServes(relay);
}

TEST(HttpFraming, LongUrlIs414AndLargeHeadIs431OnHttpRoutes) {
  TestRelay relay;
  const std::string longPath = "/health?x=" + std::string(5000, 'a');
  RawPeer url(relay.port());
  url.send("GET " + longPath + " HTTP/1.1\r\nHost: relay\r\n\r\n");
  auto answer = url.readUntilClosed(5000ms);
  ASSERT_TRUE(answer);
  expectOneAnswer(*answer, 414);

  for (const char* line : {"GET /health HTTP/1.1", "POST /register HTTP/1.1"}) {
    RawPeer head(relay.port());
    head.send(std::string(line) + "\r\nHost: relay\r\nX-Padding: " + std::string(9000, 'p') +
              "\r\nContent-Length: 2\r\n\r\n{}");
    answer = head.readUntilClosed(5000ms);
    ASSERT_TRUE(answer) << line;
    expectOneAnswer(*answer, 431);
  }
  // Just under the limit is served.
  const auto ok =
      httpRequest(relay.port(), "GET", "/healthz", {}, {"X-Padding: " + std::string(7000, 'p')});
  EXPECT_EQ(ok.status, 200);
  expectRelayStillServes(relay);
}

TEST(HttpFraming, LongUrlIs414OverTls) {
  TempDir certs;
  TestRelay relay([&](relay::Config& c) { useSelfSignedCert(c, certs.path(), "framing"); });
  const auto answer = exchangeTls(
      relay.port(), "GET /" + std::string(5000, 'a') + " HTTP/1.1\r\nHost: relay\r\n\r\n");
  ASSERT_TRUE(answer);
  expectOneAnswer(*answer, 414);
  expectTlsRelayStillServes(relay);
}

std::string upgradeTo(const std::string& path) {
  return "GET " + path +
         " HTTP/1.1\r\nHost: relay\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
}

// As the original relay: an HTTP answer, not a dropped connection.
TEST(HttpFraming, UpgradeOnAnotherPathIs400) {
  TestRelay relay;
  for (const std::string path : {"/elsewhere", "/health", "/gateway/x", "/gatewayz"}) {
    SCOPED_TRACE(path);
    RawPeer peer(relay.port());
    peer.send(upgradeTo(path));
    const auto answer = peer.readUntilClosed(5000ms);
    ASSERT_TRUE(answer);
    expectOneAnswer(*answer, 400);
  }
  expectRelayStillServes(relay);
}

TEST(HttpFraming, UpgradeOnAnotherPathIs400OverTls) {
  TempDir certs;
  TestRelay relay([&](relay::Config& c) { useSelfSignedCert(c, certs.path(), "framing"); });
  for (const std::string path : {"/elsewhere", "/health", "/gateway/x"}) {
    SCOPED_TRACE(path);
    const auto answer = exchangeTls(relay.port(), upgradeTo(path));
    ASSERT_TRUE(answer);
    expectOneAnswer(*answer, 400);
  }
  expectTlsRelayStillServes(relay);
}

// ------------------------------------- --max-unauthenticated-per-ip --

constexpr unsigned kLimit = 4;

// A connection the relay keeps: not closed within a generous second.
std::unique_ptr<RawPeer> admittedPeer(std::uint16_t port) {
  for (int i = 0; i < 50; ++i) {
    auto peer = std::make_unique<RawPeer>(port);
    if (!peer->closedWithin(1000ms)) return peer;
    std::this_thread::sleep_for(20ms);
  }
  ADD_FAILURE() << "every new connection was refused";
  return nullptr;
}

// One more connection from 127.0.0.1 is refused at accept, with a 429.
void expectNextRefused(std::uint16_t port) {
  RawPeer extra(port);
  const auto answer = extra.readUntilClosed(5000ms);
  ASSERT_TRUE(answer) << "an extra connection was kept";
  EXPECT_EQ(answer->rfind("HTTP/1.1 429", 0), 0u) << *answer;
}

TEST(HandshakeLimit, ConnectionsCountFromAccept) {
  TestRelay relay([](relay::Config& c) { c.maxUnauthenticatedPerIp = kLimit; });
  ASSERT_EQ(relay.registerMesh("limit-a", TestRelay::secretFor("limit-a"), "A"), 201);
  // Four that have sent nothing yet hold the address's four places.
  std::vector<std::unique_ptr<RawPeer>> idle;
  for (unsigned i = 0; i < kLimit; ++i) idle.push_back(std::make_unique<RawPeer>(relay.port()));
  expectNextRefused(relay.port());
  // Another address is not affected.
  EXPECT_EQ(httpRequestFrom("127.0.0.2", relay.port(), "GET", "/healthz").status, 200);

  // One goes away: its place is free again, and only its place.
  idle[0].reset();
  idle[0] = admittedPeer(relay.port());
  ASSERT_TRUE(idle[0]);
  expectNextRefused(relay.port());

  // One is an HTTP request: handed to lws, it no longer counts.
  idle[1]->send("GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n");
  const auto answer = idle[1]->readUntilClosed(5000ms);
  ASSERT_TRUE(answer);
  EXPECT_EQ(answer->rfind("HTTP/1.1 200", 0), 0u) << *answer;
  idle[1] = admittedPeer(relay.port());
  ASSERT_TRUE(idle[1]);
  expectNextRefused(relay.port());

  // One upgrades: it counts as an unauthenticated WebSocket until it
  // authenticates, then not at all.
  idle[2]->send(upgradeTo("/gateway"));
  const std::string head = idle[2]->readResponseHead();
  ASSERT_EQ(head.rfind("HTTP/1.1 101", 0), 0u) << head;
  expectNextRefused(relay.port());
  idle[2]->sendFrame(0x1, R"({"type":"gateway_auth","meshId":"limit-a","secret":")" +
                              TestRelay::secretFor("limit-a") + "\"}");
  idle[2]->expectText("gateway_auth_ok");
  auto fifth = admittedPeer(relay.port());
  ASSERT_TRUE(fifth);
  expectNextRefused(relay.port());

  // All gone: the address is served as before.
  idle.clear();
  fifth.reset();
  HttpResponse health;
  for (int i = 0; i < 100 && health.status != 200; ++i) {
    try {
      health = httpRequest(relay.port(), "GET", "/healthz");
    } catch (const std::exception&) {
      std::this_thread::sleep_for(20ms);
    }
    if (health.status != 200) std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(health.status, 200);
  const auto metrics = httpRequest(relay.port(), "GET", "/metrics");
  EXPECT_EQ(metrics.body.find(
                "mesh_relay_connections_refused_total{reason=\"unauthenticated_limit\"} 0\n"),
            std::string::npos)
      << metrics.body;
  expectRelayStillServes(relay);
}

// A TLS connection lws has accepted that is not refused within a second.
std::unique_ptr<TlsStream> admittedTls(std::uint16_t port) {
  for (int i = 0; i < 50; ++i) {
    try {
      return TlsStream::connect(port);
    } catch (const std::runtime_error&) {
      std::this_thread::sleep_for(20ms);
    }
  }
  ADD_FAILURE() << "every new TLS connection was refused";
  return nullptr;
}

// Reads until `needle` arrives; false on close or timeout.
bool readUntil(TlsStream& tls, std::string& in, std::string_view needle) {
  const auto deadline = Clock::now() + 5s;
  while (in.find(needle) == std::string::npos) {
    if (!tls.read(in, deadline)) return false;
  }
  return true;
}

// The same over TLS, where lws accepts: a connection over the limit is
// closed before its TLS handshake.
TEST(HandshakeLimit, ConnectionsCountFromAcceptOverTls) {
  TempDir certs;
  TestRelay relay([&](relay::Config& c) {
    useSelfSignedCert(c, certs.path(), "limit");
    c.maxUnauthenticatedPerIp = kLimit;
  });
  const std::string body =
      R"({"meshId":"limit-t","secret":")" + TestRelay::secretFor("limit-t") + R"(","name":"T"})";
  ASSERT_EQ(httpsRequest(relay.port(), "POST", "/register", body).status, 201);
  std::vector<std::unique_ptr<TlsStream>> idle;
  for (unsigned i = 0; i < kLimit; ++i) idle.push_back(TlsStream::connect(relay.port()));
  EXPECT_THROW(TlsStream::connect(relay.port()), std::runtime_error);

  idle[0].reset();  // goes away
  idle[0] = admittedTls(relay.port());
  ASSERT_TRUE(idle[0]);
  EXPECT_THROW(TlsStream::connect(relay.port()), std::runtime_error);

  std::string in;  // an HTTP request: its head is read
  idle[1]->write("GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n");
  ASSERT_TRUE(readUntil(*idle[1], in, "{\"ok\":true}")) << in;
  idle[1] = admittedTls(relay.port());
  ASSERT_TRUE(idle[1]);
  EXPECT_THROW(TlsStream::connect(relay.port()), std::runtime_error);

  in.clear();  // a WebSocket: counted as a session until it authenticates
  idle[2]->write(upgradeTo("/gateway"));
  ASSERT_TRUE(readUntil(*idle[2], in, "\r\n\r\n")) << in;
  ASSERT_EQ(in.rfind("HTTP/1.1 101", 0), 0u) << in;
  EXPECT_THROW(TlsStream::connect(relay.port()), std::runtime_error);
  idle[2]->write(ws::encodeFrame(0x1,
                                 R"({"type":"gateway_auth","meshId":"limit-t","secret":")" +
                                     TestRelay::secretFor("limit-t") + "\"}",
                                 true, ws::randomMaskKey()));
  ASSERT_TRUE(readUntil(*idle[2], in, "gateway_auth_ok")) << in;
  auto fifth = admittedTls(relay.port());
  ASSERT_TRUE(fifth);
  EXPECT_THROW(TlsStream::connect(relay.port()), std::runtime_error);

  idle.clear();
  fifth.reset();
  std::unique_ptr<TlsStream> again = admittedTls(relay.port());
  ASSERT_TRUE(again);
  again.reset();
  expectTlsRelayStillServes(relay);
}

// A trusted proxy's connections stand for many clients: they are counted
// per client once the head names it, not per proxy at accept.
TEST(HandshakeLimit, TrustedProxyIsNotCountedAtAccept) {
  TestRelay relay([](relay::Config& c) {
    c.maxUnauthenticatedPerIp = 1;
    c.trustedProxies = {"127.0.0.1"};
  });
  std::vector<std::unique_ptr<RawPeer>> idle;
  for (int i = 0; i < 3; ++i) idle.push_back(std::make_unique<RawPeer>(relay.port()));
  EXPECT_EQ(httpRequest(relay.port(), "GET", "/healthz").status, 200);
  for (auto& peer : idle) EXPECT_FALSE(peer->closedWithin(100ms));
  expectRelayStillServes(relay);
}

}  // namespace
}  // namespace mesh::test
