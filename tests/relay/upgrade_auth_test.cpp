// Credentials on the /gateway upgrade request (Authorization: Basic), on
// both WebSocket paths: the relay's own plain sockets and lws's TLS ones.
// Right credentials make gateway_auth_ok the first frame with no
// gateway_auth; wrong ones get a 401 before any upgrade, the same for an
// unknown mesh and a wrong secret; a spent budget of failures gets a 429;
// the secret never reaches a log line.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <thread>

#include "support/jwt_signer.h"
#include "support/relay_process.h"
#include "support/test_relay.h"
#include "support/tls_client.h"

namespace mesh::test {
namespace {

using namespace std::chrono_literals;

const std::string kWrong = "wrong-secret-0123456789";
constexpr char kAdminToken[] = "admin-token-0123456789abcdef";

std::string basic(const std::string& meshId, const std::string& secret) {
  return "Authorization: Basic " + ws::base64Encode(meshId + ":" + secret);
}

enum class Path { Plain, Tls };

std::string pathName(const testing::TestParamInfo<Path>& info) {
  return info.param == Path::Plain ? "Plain" : "Tls";
}

// A WebSocket on either path, with the calls these tests need.
class Conn {
 public:
  static std::unique_ptr<Conn> open(Path path, std::uint16_t port,
                                    const std::vector<std::string>& headers,
                                    const std::string& from = {}) {
    auto c = std::make_unique<Conn>();
    if (path == Path::Plain) {
      ConnectOptions opt;
      opt.extraHeaders = headers;
      if (!from.empty()) opt.bindAddress = from;
      c->plain_ = WsClient::connect(port, opt);
    } else {
      c->tls_ = TlsWsClient::connect(port, "/gateway", from, headers);
    }
    return c;
  }
  void sendText(const std::string& text) {
    if (plain_) {
      plain_->sendText(text);
    } else {
      tls_->sendText(text);
    }
  }
  WsMessage recv(std::chrono::milliseconds timeout = 5000ms) {
    return plain_ ? plain_->recv(timeout) : tls_->recv(timeout);
  }
  std::string expectType(std::string_view type) {
    return plain_ ? plain_->expectType(type) : tls_->expectType(type);
  }

 private:
  std::unique_ptr<WsClient> plain_;
  std::unique_ptr<TlsWsClient> tls_;
};

// An upgrade request with `headers`, and what came back until the relay
// closed (or until the 101's head, which is all a refused request shows).
struct RawAnswer {
  int status = 0;
  std::string head;
  std::string body;
};

RawAnswer parseAnswer(const std::string& in) {
  RawAnswer a;
  const std::size_t end = in.find("\r\n\r\n");
  a.head = in.substr(0, end == std::string::npos ? in.size() : end + 2);
  if (end != std::string::npos) a.body = in.substr(end + 4);
  // lws answers a refused upgrade as HTTP/1.0.
  if (a.head.rfind("HTTP/1.", 0) == 0) a.status = std::atoi(a.head.c_str() + 9);
  return a;
}

std::string upgradeRequest(const std::vector<std::string>& headers) {
  std::string req =
      "GET /gateway HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
  for (const auto& h : headers) req += h + "\r\n";
  return req + "\r\n";
}

RawAnswer rawUpgrade(Path path, std::uint16_t port, const std::vector<std::string>& headers,
                     const std::string& from = {}) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  std::string in;
  if (path == Path::Tls) {
    auto s = TlsStream::connect(port, 5000ms, from);
    s->write(upgradeRequest(headers));
    while (s->read(in, deadline)) {
      const std::size_t end = in.find("\r\n\r\n");
      if (end != std::string::npos && in.rfind("HTTP/1.1 101", 0) == 0) break;
    }
    return parseAnswer(in);
  }
  ConnectOptions opt;
  if (!from.empty()) opt.bindAddress = from;
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (!from.empty()) {
    sockaddr_in src{};
    src.sin_family = AF_INET;
    inet_pton(AF_INET, from.c_str(), &src.sin_addr);
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src), 0);
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const std::string req = upgradeRequest(headers);
  EXPECT_EQ(::send(fd, req.data(), req.size(), MSG_NOSIGNAL), static_cast<ssize_t>(req.size()));
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char buf[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    in.append(buf, static_cast<std::size_t>(n));
    if (in.rfind("HTTP/1.1 101", 0) == 0 && in.find("\r\n\r\n") != std::string::npos) break;
  }
  ::close(fd);
  return parseAnswer(in);
}

class UpgradeAuth : public testing::TestWithParam<Path> {
 protected:
  void start(const std::function<void(relay::Config&)>& tweak = {}) {
    relay_ = std::make_unique<TestRelay>([&](relay::Config& c) {
      c.adminToken = kAdminToken;
      if (GetParam() == Path::Tls) useSelfSignedCert(c, certs_.path(), "relay-test");
      if (tweak) tweak(c);
    });
  }
  int registerMesh(const std::string& meshId) {
    const std::string body = TestRelay::registerBodyFor(meshId);
    return GetParam() == Path::Tls ? httpsRequest(port(), "POST", "/register", body).status
                                   : httpRequest(port(), "POST", "/register", body).status;
  }
  HttpResponse get(const std::string& path) {
    const std::vector<std::string> h{std::string("Authorization: Bearer ") + kAdminToken};
    return GetParam() == Path::Tls ? httpsRequest(port(), "GET", path, {}, h)
                                   : httpRequest(port(), "GET", path, {}, h);
  }
  std::unique_ptr<Conn> connectWithHeader(const std::string& meshId, const std::string& from = {}) {
    return Conn::open(GetParam(), port(), {basic(meshId, TestRelay::secretFor(meshId))}, from);
  }
  // Two fresh meshes, authenticated on the upgrade, exchange a relay.
  void expectStillServes() {
    static int round = 0;
    const std::string a = "up-healthy-a-" + std::to_string(round);
    const std::string b = "up-healthy-b-" + std::to_string(round);
    ++round;
    ASSERT_EQ(registerMesh(a), 201);
    ASSERT_EQ(registerMesh(b), 201);
    auto ca = connectWithHeader(a);
    auto cb = connectWithHeader(b);
    ca->expectType("gateway_auth_ok");
    cb->expectType("gateway_auth_ok");
    ca->sendText(R"({"type":"gateway_relay","targetMeshId":")" + b + R"(","payload":{"n":1}})");
    EXPECT_EQ(jsonString(cb->expectType("gateway_incoming"), "fromMeshId"), a);
  }
  std::uint16_t port() const { return relay_->port(); }

  TempDir certs_;
  std::unique_ptr<TestRelay> relay_;
};

TEST_P(UpgradeAuth, BasicCredentialsMakeGatewayAuthOkTheFirstFrame) {
  start();
  ASSERT_EQ(registerMesh("up-a"), 201);
  ASSERT_EQ(registerMesh("up-b"), 201);
  auto a = connectWithHeader("up-a");
  const WsMessage first = a->recv();
  ASSERT_EQ(first.kind, WsMessage::Kind::Text);
  EXPECT_EQ(jsonString(first.data, "type"), "gateway_auth_ok");
  EXPECT_EQ(jsonString(first.data, "meshId"), "up-a");
  EXPECT_FALSE(jsonString(first.data, "resumeToken").empty());
  EXPECT_FALSE(jsonString(first.data, "resumeExpiresAt").empty());

  // The session is a full one: it relays, and a gateway_auth sent anyway is
  // refused as on any authenticated connection.
  auto b = connectWithHeader("up-b");
  b->expectType("gateway_auth_ok");
  a->sendText(R"({"type":"gateway_relay","id":"m1","targetMeshId":"up-b","payload":{"x":1}})");
  EXPECT_EQ(jsonString(b->expectType("gateway_incoming"), "fromMeshId"), "up-a");
  EXPECT_EQ(jsonString(a->expectType("gateway_ack"), "status"), "delivered");
  a->sendText(TestRelay::authFrameFor("up-a"));
  EXPECT_EQ(jsonString(a->expectType("error"), "code"), "already_authenticated");

  // The resume token it got works like any other.
  auto again = Conn::open(GetParam(), port(), {});
  again->sendText(R"({"type":"gateway_auth","meshId":"up-a","resumeToken":")" +
                  jsonString(first.data, "resumeToken") + "\"}");
  EXPECT_EQ(jsonString(again->expectType("gateway_auth_ok"), "meshId"), "up-a");
}

TEST_P(UpgradeAuth, WrongSecretAndUnknownMeshGetTheSame401) {
  start();
  ASSERT_EQ(registerMesh("up-a"), 201);
  const RawAnswer wrong = rawUpgrade(GetParam(), port(), {basic("up-a", kWrong)});
  const RawAnswer unknown = rawUpgrade(GetParam(), port(), {basic("nobody-here", kWrong)});
  const RawAnswer garbage = rawUpgrade(GetParam(), port(), {"Authorization: Basic not-base64!"});
  for (const RawAnswer* a : {&wrong, &unknown, &garbage}) {
    EXPECT_EQ(a->status, 401) << a->head;
    EXPECT_NE(headerValue(a->head, "WWW-Authenticate").find("Basic"), std::string::npos) << a->head;
    EXPECT_EQ(a->body, R"({"error":"invalid_credentials"})");
  }
  EXPECT_EQ(wrong.body, unknown.body);
  expectStillServes();
}

TEST_P(UpgradeAuth, SpentBudgetGets429) {
  start([](relay::Config& c) {
    c.authFailureBurst = 2;
    c.authFailureRate = 0.001;
  });
  ASSERT_EQ(registerMesh("up-a"), 201);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(rawUpgrade(GetParam(), port(), {basic("up-a", kWrong)}, "127.0.0.2").status, 401);
  }
  // Spent: even the right secret is refused from that address.
  const RawAnswer spent =
      rawUpgrade(GetParam(), port(), {basic("up-a", TestRelay::secretFor("up-a"))}, "127.0.0.2");
  EXPECT_EQ(spent.status, 429) << spent.head;
  EXPECT_EQ(spent.body, R"({"error":"rate_limited"})");
  // The same budget as gateway_auth's: a frame from there is refused too.
  auto c = Conn::open(GetParam(), port(), {}, "127.0.0.2");
  c->sendText(TestRelay::authFrameFor("up-a"));
  EXPECT_EQ(jsonString(c->expectType("error"), "code"), "rate_limited");
  // Another address gets in.
  connectWithHeader("up-a", "127.0.0.3")->expectType("gateway_auth_ok");
  expectStillServes();
}

// A mesh with no verifier yet (a database copied without its key file):
// only Argon2id on a worker can tell, and the relay does not wait on the
// loop. On the plain path the 101 waits for the answer; lws cannot hold a
// request that long, so on TLS the upgrade goes on and a wrong secret gets
// gateway_auth_error and close 1008 instead of the 401.
TEST_P(UpgradeAuth, MeshWithoutVerifierIsCheckedByArgon2id) {
  TempDir dir;
  const std::string db = dir.file("mesh.db");
  {
    TestRelay first([&](relay::Config& c) { c.dbPath = db; });
    ASSERT_EQ(first.registerMesh("up-old", TestRelay::secretFor("up-old"), "Old"), 201);
    ASSERT_EQ(first.registerMesh("up-old2", TestRelay::secretFor("up-old2"), "Old2"), 201);
  }
  start([&](relay::Config& c) {
    c.dbPath = db;
    c.verifierKeyPath = dir.file("another.key");
  });
  if (GetParam() == Path::Plain) {
    EXPECT_EQ(rawUpgrade(GetParam(), port(), {basic("up-old", kWrong)}).status, 401);
  } else {
    auto c = Conn::open(GetParam(), port(), {basic("up-old", kWrong)});
    const std::string error = c->expectType("gateway_auth_error");
    EXPECT_EQ(jsonString(error, "code"), "invalid_credentials");
    const WsMessage closed = c->recv();
    EXPECT_EQ(closed.kind, WsMessage::Kind::Close);
    EXPECT_EQ(closed.closeCode, 1008);
  }
  auto ok = connectWithHeader("up-old2");
  const WsMessage first = ok->recv(10000ms);
  ASSERT_EQ(first.kind, WsMessage::Kind::Text);
  EXPECT_EQ(jsonString(first.data, "type"), "gateway_auth_ok");
  EXPECT_EQ(jsonString(first.data, "meshId"), "up-old2");
  expectStillServes();
}

// A signed token as the bearer credential: verified as in gateway_auth
// (here HS256), the session is a token session (no resume token), and a
// refused token gets the same 401 as a wrong secret.
TEST_P(UpgradeAuth, BearerTokenOnTheUpgradeAuthenticates) {
  const std::string key = "an-hs256-secret-of-at-least-32-bytes!";
  start([&](relay::Config& c) { c.jwtSecret = key; });
  ASSERT_EQ(registerMesh("up-tok"), 201);
  const std::string token = JwtKey::hmac(key).sign(claimsFor("up-tok", 300));
  auto c = Conn::open(GetParam(), port(), {"Authorization: Bearer " + token});
  const WsMessage first = c->recv();
  ASSERT_EQ(first.kind, WsMessage::Kind::Text);
  EXPECT_EQ(jsonString(first.data, "type"), "gateway_auth_ok") << first.data;
  EXPECT_EQ(jsonString(first.data, "meshId"), "up-tok");
  EXPECT_FALSE(jsonHas(first.data, "resumeToken")) << first.data;

  const std::string forged = JwtKey::hmac(key + "x").sign(claimsFor("up-tok", 300));
  const std::string unknown = JwtKey::hmac(key).sign(claimsFor("nobody-here", 300));
  const std::string expired = JwtKey::hmac(key).sign(claimsFor("up-tok", -3600));
  const RawAnswer wrongSecret = rawUpgrade(GetParam(), port(), {basic("up-tok", kWrong)});
  for (const std::string& bad : {forged, unknown, expired, std::string("not.a.token")}) {
    const RawAnswer a = rawUpgrade(GetParam(), port(), {"Authorization: Bearer " + bad});
    EXPECT_EQ(a.status, 401) << bad << "\n" << a.head;
    EXPECT_EQ(a.body, wrongSecret.body);
  }
  expectStillServes();
}

INSTANTIATE_TEST_SUITE_P(BothPaths, UpgradeAuth, testing::Values(Path::Plain, Path::Tls), pathName);

// The real executable at debug level: neither the secret nor its base64
// appears in what it logs, whatever the outcome, on either path; nor in the
// flight recorder's view of the mesh.
TEST(UpgradeAuthLogs, SecretsInHeadersNeverReachTheLog) {
  for (const Path path : {Path::Plain, Path::Tls}) {
    TempDir dir;
    std::vector<std::string> args{"--db",          (dir.path() / "mesh.db").string(),
                                  "--argon2-ops",  "1",
                                  "--argon2-mem",  "8192",
                                  "--log-level",   "debug",
                                  "--admin-token", kAdminToken};
    if (path == Path::Tls) {
      makeSelfSignedCert(dir.path() / "cert.pem", dir.path() / "key.pem", "relay-test");
      args.insert(args.end(), {"--tls-cert", (dir.path() / "cert.pem").string(), "--tls-key",
                               (dir.path() / "key.pem").string()});
    }
    RelayProcess relay(MESH_RELAY_BIN, args);
    const std::string secret = TestRelay::secretFor("log-a");
    const std::string body = TestRelay::registerBodyFor("log-a");
    const std::vector<std::string> admin{std::string("Authorization: Bearer ") + kAdminToken};
    auto request = [&](std::string_view method, std::string_view target, std::string_view b,
                       const std::vector<std::string>& h) {
      return path == Path::Tls ? httpsRequest(relay.port(), method, target, b, h)
                               : httpRequest(relay.port(), method, target, b, h);
    };
    ASSERT_EQ(request("POST", "/register", body, {}).status, 201);
    auto ok = Conn::open(path, relay.port(), {basic("log-a", secret)});
    ok->expectType("gateway_auth_ok");
    EXPECT_EQ(rawUpgrade(path, relay.port(), {basic("log-a", secret + "x")}).status, 401);
    EXPECT_EQ(rawUpgrade(path, relay.port(), {basic("nobody", secret)}).status, 401);
    const auto recent = request("GET", "/meshes/log-a/recent", {}, admin);
    EXPECT_EQ(recent.status, 200);
    relay.signal(SIGTERM);
    EXPECT_EQ(relay.wait(10s), 0);
    const std::string log = relay.log();
    EXPECT_NE(log.find("log-a"), std::string::npos) << "nothing was logged at all";
    for (const std::string& secretText :
         {secret, ws::base64Encode("log-a:" + secret), ws::base64Encode("log-a:" + secret + "x"),
          ws::base64Encode("nobody:" + secret)}) {
      EXPECT_EQ(log.find(secretText), std::string::npos) << secretText << " in\n" << log;
      EXPECT_EQ(recent.body.find(secretText), std::string::npos) << recent.body;
    }
  }
}

}  // namespace
}  // namespace mesh::test
