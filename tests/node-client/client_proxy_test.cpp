// Nodes behind an HTTP proxy: the rules that pick the proxy (Options, the
// environment, NO_PROXY), and libmeshclient and meshctl through a real
// tinyproxy with basic auth to a real relay, over ws:// and wss://.
#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <thread>

#include "mesh/client/http.h"
#include "node_harness.h"
#include "proxy.h"
#include "proxy_runner.h"
#include "relay_runner.h"

namespace mesh::test {
namespace {

using client::ConnectionState;
using client::DeliveryReport;
using client::Status;

const std::string kSecretA = "alpha-secret-0123456789";
const std::string kSecretB = "bravo-secret-0123456789";

// Sets environment variables for one test and puts the old values back.
class EnvGuard {
 public:
  EnvGuard() = default;
  ~EnvGuard() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
      if (it->second) {
        ::setenv(it->first.c_str(), it->second->c_str(), 1);
      } else {
        ::unsetenv(it->first.c_str());
      }
    }
  }
  EnvGuard(const EnvGuard&) = delete;
  EnvGuard& operator=(const EnvGuard&) = delete;
  void set(const std::string& name, const std::string& value) {
    remember(name);
    ::setenv(name.c_str(), value.c_str(), 1);
  }
  void unset(const std::string& name) {
    remember(name);
    ::unsetenv(name.c_str());
  }
  // Every proxy variable unset, so the machine's own do not leak in.
  void clearProxies() {
    for (const char* name : {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                             "ALL_PROXY", "no_proxy", "NO_PROXY"}) {
      unset(name);
    }
  }

 private:
  void remember(const std::string& name) {
    const char* old = std::getenv(name.c_str());
    saved_.emplace_back(name, old != nullptr ? std::optional<std::string>(old) : std::nullopt);
  }
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

client::detail::Url urlOf(const std::string& text) {
  auto u = client::detail::parseUrl(text);
  if (!u) throw std::runtime_error("bad URL " + text);
  return *u;
}

// The proxy picked for `url` as "host:port" ("direct" for none).
std::string chosen(const std::string& url, const std::string& setting = {},
                   const std::string& noProxy = {}) {
  auto r = client::detail::proxyFor(urlOf(url), setting, noProxy);
  if (!r) return "error: " + r.error().message;
  return r.value() ? r.value()->authority() : "direct";
}

bool hasError(const Seen& s, Status status, const std::string& text) {
  for (const auto& e : s.errors) {
    if (e.status == status && e.message.find(text) != std::string::npos) return true;
  }
  return false;
}

// Every text the client reported: errors and state reasons.
std::string allReported(const Seen& s) {
  std::string out;
  for (const auto& e : s.errors) out += e.message + "\n";
  for (const auto& r : s.reasons) out += r + "\n";
  return out;
}

// ---------------------------------------------------------------------------
// Rules

TEST(ProxyRules, NoProxyEntries) {
  using client::detail::noProxyMatches;
  EXPECT_TRUE(noProxyMatches("*", "relay.example.com", 443));
  EXPECT_TRUE(noProxyMatches("example.com", "example.com", 443));
  EXPECT_TRUE(noProxyMatches("example.com", "relay.example.com", 443));
  EXPECT_TRUE(noProxyMatches(".example.com", "relay.example.com", 443));
  EXPECT_TRUE(noProxyMatches(".example.com", "example.com", 443));
  EXPECT_TRUE(noProxyMatches("EXAMPLE.com", "Relay.Example.COM.", 443));
  EXPECT_FALSE(noProxyMatches("example.com", "badexample.com", 443));
  EXPECT_FALSE(noProxyMatches("relay.example.com", "example.com", 443));
  EXPECT_TRUE(noProxyMatches("other.org, example.com", "a.example.com", 80));
  EXPECT_TRUE(noProxyMatches("other.org example.com", "a.example.com", 80));
  EXPECT_FALSE(noProxyMatches("", "a.example.com", 80));
  EXPECT_FALSE(noProxyMatches(" , ", "a.example.com", 80));
  // Ports.
  EXPECT_TRUE(noProxyMatches("example.com:8443", "relay.example.com", 8443));
  EXPECT_FALSE(noProxyMatches("example.com:8443", "relay.example.com", 443));
  EXPECT_TRUE(noProxyMatches("127.0.0.1:4000", "127.0.0.1", 4000));
  EXPECT_FALSE(noProxyMatches("127.0.0.1:4000", "127.0.0.1", 4001));
  EXPECT_TRUE(noProxyMatches("[::1]:4000", "::1", 4000));
  EXPECT_FALSE(noProxyMatches("[::1]:4000", "::1", 4001));
  // IP literals: exact, never a suffix match.
  EXPECT_TRUE(noProxyMatches("127.0.0.1", "127.0.0.1", 80));
  EXPECT_FALSE(noProxyMatches("0.0.1", "127.0.0.1", 80));
  EXPECT_FALSE(noProxyMatches("127.0.0.1", "127.0.0.10", 80));
  EXPECT_TRUE(noProxyMatches("::1", "::1", 80));
  EXPECT_TRUE(noProxyMatches("[::1]", "0:0::1", 80));
  // CIDR.
  EXPECT_TRUE(noProxyMatches("10.0.0.0/8", "10.20.30.40", 80));
  EXPECT_FALSE(noProxyMatches("10.0.0.0/8", "11.0.0.1", 80));
  EXPECT_TRUE(noProxyMatches("192.168.1.0/24", "192.168.1.77", 80));
  EXPECT_FALSE(noProxyMatches("192.168.1.0/24", "192.168.2.1", 80));
  EXPECT_TRUE(noProxyMatches("fd00::/8", "fd12::1", 80));
  EXPECT_FALSE(noProxyMatches("fd00::/8", "fe80::1", 80));
  EXPECT_FALSE(noProxyMatches("10.0.0.0/8", "10.example.com", 80));
  EXPECT_FALSE(noProxyMatches("10.0.0.0/33", "10.0.0.1", 80));
}

TEST(ProxyRules, ProxyUrlsAndTheirCredentials) {
  using client::detail::parseProxyUrl;
  auto p = parseProxyUrl("http://us%40er:p%3Ass%2Fw@proxy.example:3128/");
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p.value().host, "proxy.example");
  EXPECT_EQ(p.value().port, 3128);
  EXPECT_EQ(p.value().user, "us@er");
  EXPECT_EQ(p.value().password, "p:ss/w");
  EXPECT_EQ(p.value().display(), "http://proxy.example:3128");
  // base64("us@er:p:ss/w")
  EXPECT_EQ(p.value().basicAuth(), "Basic dXNAZXI6cDpzcy93");

  auto bare = parseProxyUrl("proxy.example");
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ(bare.value().port, 1080);
  EXPECT_FALSE(bare.value().hasCredentials());
  auto v6 = parseProxyUrl("http://[::1]:8080");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6.value().host, "::1");
  EXPECT_EQ(v6.value().authority(), "[::1]:8080");

  // Refusals never repeat the password.
  for (const std::string bad :
       {"https://user:hunter2secret@proxy:443", "socks5://user:hunter2secret@proxy:1080",
        "http://user:hunter2secret@proxy:99999", "http://user:hunter2secret@proxy:3128/path",
        "http://user:hunter2%zzsecret@proxy:3128", "http://user:hunter2secret@:3128"}) {
    auto r = parseProxyUrl(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().message.find("hunter2"), std::string::npos) << r.error().message;
  }
  EXPECT_EQ(client::detail::redactProxyUrl("http://u:secret@h:1/"), "http://***@h:1/");
  EXPECT_EQ(client::detail::redactProxyUrl("http://h:1"), "http://h:1");
}

TEST(ProxyRules, EnvironmentLikeCurl) {
  EnvGuard env;
  env.clearProxies();
  EXPECT_EQ(chosen("ws://relay.example/gateway"), "direct");

  env.set("HTTP_PROXY", "http://upper:1");
  env.set("HTTPS_PROXY", "http://secure-upper:2");
  EXPECT_EQ(chosen("ws://relay.example/gateway"), "upper:1");
  EXPECT_EQ(chosen("http://relay.example"), "upper:1");
  EXPECT_EQ(chosen("wss://relay.example/gateway"), "secure-upper:2");
  EXPECT_EQ(chosen("https://relay.example"), "secure-upper:2");
  // The lower-case name wins.
  env.set("http_proxy", "http://lower:3");
  env.set("https_proxy", "secure-lower:4");
  EXPECT_EQ(chosen("ws://relay.example/gateway"), "lower:3");
  EXPECT_EQ(chosen("wss://relay.example/gateway"), "secure-lower:4");
  // ALL_PROXY only when the scheme's own variable is unset.
  env.set("ALL_PROXY", "http://all:5");
  EXPECT_EQ(chosen("wss://relay.example/gateway"), "secure-lower:4");
  env.unset("https_proxy");
  env.unset("HTTPS_PROXY");
  EXPECT_EQ(chosen("wss://relay.example/gateway"), "all:5");

  // NO_PROXY (and no_proxy, which wins).
  env.set("NO_PROXY", "example");
  EXPECT_EQ(chosen("ws://relay.example/gateway"), "direct");
  EXPECT_EQ(chosen("ws://relay.example.org/gateway"), "lower:3");
  env.set("no_proxy", "example.org");
  EXPECT_EQ(chosen("ws://relay.example/gateway"), "lower:3");
  EXPECT_EQ(chosen("ws://relay.example.org/gateway"), "direct");

  // Options: an explicit proxy replaces the environment's; its own noProxy
  // list replaces NO_PROXY; "none" and "direct" mean no proxy at all.
  EXPECT_EQ(chosen("ws://relay.example.org/gateway", "http://mine:6"), "direct");
  EXPECT_EQ(chosen("ws://relay.example/gateway", "http://mine:6"), "mine:6");
  EXPECT_EQ(chosen("ws://relay.example.org/gateway", "http://mine:6", "other.net"), "mine:6");
  EXPECT_EQ(chosen("ws://relay.example/gateway", "none"), "direct");
  EXPECT_EQ(chosen("ws://relay.example/gateway", "DIRECT"), "direct");

  // A broken variable is an error that names it, without its password.
  env.set("http_proxy", "socks5://u:topsecretpw@h:1");
  const std::string broken = chosen("ws://relay.example/gateway");
  EXPECT_NE(broken.find("HTTP_PROXY"), std::string::npos) << broken;
  EXPECT_EQ(broken.find("topsecretpw"), std::string::npos) << broken;
}

TEST(ProxyRules, OptionsAreCheckedAtStart) {
  EnvGuard env;
  env.clearProxies();
  TempDir dir;
  auto o = Node::options("alpha", kSecretA, "ws://127.0.0.1:1/gateway", dir.file("a.db"));
  o.proxy = "https://u:verysecretpw@proxy:443";
  auto started = client::Client::start(o);
  ASSERT_FALSE(started.ok());
  EXPECT_EQ(started.error().status, Status::InvalidArgument);
  EXPECT_EQ(started.error().message.find("verysecretpw"), std::string::npos);
  // lws holds 95 bytes of user:password: a longer pair is refused, never
  // silently dropped (which would connect around the proxy).
  // lws writes "CONNECT ::1:4000", which no proxy understands.
  o.gatewayUrl = "ws://[::1]:4000/gateway";
  o.proxy = "http://proxy:3128";
  started = client::Client::start(o);
  ASSERT_FALSE(started.ok());
  EXPECT_NE(started.error().message.find("IPv6"), std::string::npos);
  o.noProxy = "::1";
  EXPECT_TRUE(client::validate(o).ok());
  o.noProxy.clear();
  o.gatewayUrl = "ws://127.0.0.1:1/gateway";
  o.proxy = "http://user:" + std::string(100, 'x') + "@proxy:3128";
  started = client::Client::start(o);
  ASSERT_FALSE(started.ok());
  EXPECT_EQ(started.error().status, Status::InvalidArgument);
  EXPECT_EQ(started.error().message.find("xxxxxxxx"), std::string::npos);
}

// ---------------------------------------------------------------------------
// Through tinyproxy

class ThroughProxy : public ::testing::Test {
 protected:
  void SetUp() override {
    env.clearProxies();
    relay = std::make_unique<RelayRunner>(dir, usesTls() ? &pki : nullptr);
  }
  virtual bool usesTls() const { return false; }

  void startAll(ProxyConfig config = {}) {
    relay->start();
    config.connectPorts.push_back(relay->port());
    proxy = std::make_unique<ProxyRunner>(dir, config);
    proxy->start();
  }

  client::Options optionsFor(const std::string& meshId, const std::string& secret) {
    auto o = Node::options(meshId, secret, relay->gatewayUrl(), dir.file(meshId + ".db"));
    if (usesTls()) o.caFile = pki.caFile;
    o.proxy.clear();  // the environment decides; SetUp() cleared the machine's
    return o;
  }

  EnvGuard env;
  TempDir dir;
  TestPki pki;
  std::unique_ptr<RelayRunner> relay;
  std::unique_ptr<ProxyRunner> proxy;
};

class ThroughProxyTls : public ThroughProxy {
 protected:
  void SetUp() override {
    pki = makeTestPki(dir);
    ThroughProxy::SetUp();
  }
  bool usesTls() const override { return true; }
};

TEST_F(ThroughProxy, WsConnectsThroughTheTunnelAndRegistersThroughTheProxy) {
  startAll();
  relay->registerMesh("bravo", kSecretB, "Bravo");
  auto a = optionsFor("alpha", kSecretA);
  a.proxy = proxy->url();
  a.autoRegister = true;  // POST /register, through a tunnel of its own
  a.name = "Alpha";
  Node alpha(a);
  auto b = optionsFor("bravo", kSecretB);
  b.proxy = "none";
  Node bravo(b);
  auto up = alpha->waitConnected(kWait);
  ASSERT_TRUE(up.ok()) << up.error().message << "\n" << proxy->log();
  ASSERT_TRUE(bravo->waitConnected(kWait).ok());

  auto sent = alpha->relay("bravo", R"({"type":"chat","n":1})");
  ASSERT_TRUE(sent.ok());
  ASSERT_TRUE(bravo.waitFor([](const Seen& s) { return s.messages.size() == 1; }));
  EXPECT_EQ(bravo.snapshot().messages.at(0).fromMeshName, "Alpha");
  auto back = bravo->relay("alpha", R"({"type":"chat","n":2})");
  ASSERT_TRUE(back.ok());
  ASSERT_TRUE(alpha.waitFor([](const Seen& s) { return s.messages.size() == 1; }));

  const std::string log = proxy->log();
  const std::string where = "127.0.0.1:" + std::to_string(relay->port());
  EXPECT_NE(log.find("CONNECT " + where), std::string::npos) << log;
  // Two tunnels: alpha's registration and its WebSocket; bravo ("none")
  // never went through the proxy.
  EXPECT_EQ(proxy->connectCount(), 2u) << log;
  EXPECT_EQ(allReported(alpha.snapshot()).find("proxy-pass"), std::string::npos);
}

TEST_F(ThroughProxy, HttpCallsThroughTheProxy) {
  startAll();
  auto health = client::checkHealth(relay->httpUrl(), kWait, {}, proxy->url());
  ASSERT_TRUE(health.ok()) << health.error().message;
  EXPECT_EQ(health.value().connected, 0);
  EXPECT_EQ(proxy->connectCount(), 1u);

  // From the environment too.
  env.set("HTTP_PROXY", proxy->url());
  auto reg = client::registerMesh(relay->httpUrl(), "charlie", kSecretA, "Charlie", kWait);
  ASSERT_TRUE(reg.ok()) << reg.error().message;
  EXPECT_TRUE(reg.value().created);
  EXPECT_EQ(proxy->connectCount(), 2u);

  // A wrong password: a clear error, never the password.
  env.unset("HTTP_PROXY");
  auto refused =
      client::checkHealth(relay->httpUrl(), kWait, {}, proxy->urlWithPassword("wr0ngpw"));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().status, Status::ConnectionFailed);
  EXPECT_NE(refused.error().message.find("proxy http://127.0.0.1:" + std::to_string(proxy->port())),
            std::string::npos)
      << refused.error().message;
  EXPECT_NE(refused.error().message.find("401"), std::string::npos) << refused.error().message;
  EXPECT_EQ(refused.error().message.find("wr0ngpw"), std::string::npos);
}

TEST_F(ThroughProxy, WrongProxyPasswordIsAClearErrorWithBackoff) {
  startAll();
  relay->registerMesh("alpha", kSecretA, "Alpha");
  auto a = optionsFor("alpha", kSecretA);
  a.proxy = proxy->urlWithPassword("not-the-pass");
  a.reconnectMin = std::chrono::milliseconds(100);
  a.reconnectMax = std::chrono::milliseconds(200);
  Node alpha(a);
  ASSERT_TRUE(alpha.waitFor([](const Seen& s) {
    return hasError(s, Status::ConnectionFailed, "refused the tunnel");
  })) << allReported(alpha.snapshot());
  // It goes on trying, on its backoff, and says it once.
  ASSERT_TRUE(alpha.waitFor([&](const Seen&) { return proxy->connectCount() >= 6; }));
  const Seen seen = alpha.snapshot();
  std::size_t said = 0;
  for (const auto& e : seen.errors)
    said += e.message.find("refused the tunnel") != std::string::npos;
  EXPECT_EQ(said, 1u) << allReported(seen);
  EXPECT_NE(alpha->state(), ConnectionState::Connected);
  EXPECT_NE(alpha->state(), ConnectionState::Failed);
  const std::string text = allReported(seen);
  // tinyproxy answers wrong credentials with 401 (and none with 407).
  EXPECT_NE(text.find("401"), std::string::npos) << text;
  EXPECT_NE(text.find("user and password of the proxy URL"), std::string::npos) << text;
  EXPECT_EQ(text.find("not-the-pass"), std::string::npos) << text;
  // A state reason says the same, so a tool that waits for the first
  // failure (meshctl) shows it.
  bool inReason = false;
  for (const auto& r : seen.reasons) inReason |= r.find("refused the tunnel") != std::string::npos;
  EXPECT_TRUE(inReason) << text;

  // The relay still serves a node that goes around the proxy.
  auto direct = optionsFor("alpha", kSecretA);
  direct.outboxPath = dir.file("alpha-direct.db");
  direct.proxy = "direct";
  alpha->stop();
  Node again(direct);
  EXPECT_TRUE(again->waitConnected(kWait).ok());
}

TEST_F(ThroughProxy, MissingProxyCredentialsAre407) {
  startAll();
  relay->registerMesh("alpha", kSecretA, "Alpha");
  auto a = optionsFor("alpha", kSecretA);
  a.proxy = proxy->urlWithoutCredentials();
  Node alpha(a);
  ASSERT_TRUE(alpha.waitFor([](const Seen& s) {
    return hasError(s, Status::ConnectionFailed, "407");
  })) << allReported(alpha.snapshot());
  EXPECT_NE(allReported(alpha.snapshot()).find("wants credentials"), std::string::npos);
}

TEST_F(ThroughProxy, APortTheProxyDoesNotAllowIsNamedWithItsStatus) {
  relay->start();
  relay->registerMesh("alpha", kSecretA, "Alpha");
  ProxyConfig config;
  config.connectPorts = {443};  // the usual corporate rule
  proxy = std::make_unique<ProxyRunner>(dir, config);
  proxy->start();
  auto a = optionsFor("alpha", kSecretA);
  a.proxy = proxy->url();
  Node alpha(a);
  ASSERT_TRUE(alpha.waitFor([](const Seen& s) {
    return hasError(s, Status::ConnectionFailed, "refused the tunnel");
  })) << allReported(alpha.snapshot());
  const std::string text = allReported(alpha.snapshot());
  EXPECT_NE(text.find("403"), std::string::npos) << text;
  EXPECT_EQ(text.find("user and password"), std::string::npos) << text;
}

TEST_F(ThroughProxy, NoProxyGoesAroundTheProxy) {
  startAll();
  relay->registerMesh("alpha", kSecretA, "Alpha");
  const std::string relayPort = std::to_string(relay->port());
  env.set("HTTP_PROXY", proxy->url());
  env.set("NO_PROXY", "example.org,127.0.0.1:" + relayPort);
  {
    Node alpha(optionsFor("alpha", kSecretA));
    auto up = alpha->waitConnected(kWait);
    ASSERT_TRUE(up.ok()) << up.error().message;
    auto health = client::checkHealth(relay->httpUrl(), kWait);
    ASSERT_TRUE(health.ok()) << health.error().message;
  }
  EXPECT_EQ(proxy->connectCount(), 0u) << proxy->log();

  // Without the exemption the same node goes through the proxy...
  env.set("NO_PROXY", "127.0.0.1:" + std::to_string(relay->port() + 1));
  {
    Node alpha(optionsFor("alpha", kSecretA));
    ASSERT_TRUE(alpha->waitConnected(kWait).ok());
  }
  EXPECT_EQ(proxy->connectCount(), 1u) << proxy->log();

  // ...and with the proxy gone, only an exempt node still connects.
  proxy->kill();
  env.set("NO_PROXY", "*");
  Node alpha(optionsFor("alpha", kSecretA));
  EXPECT_TRUE(alpha->waitConnected(kWait).ok());
}

TEST_F(ThroughProxy, LibwebsocketsOwnReadingOfHttpProxyIsOverruled) {
  // lws reads http_proxy by itself; the client must decide, not lws.
  startAll();
  relay->registerMesh("alpha", kSecretA, "Alpha");
  env.set("http_proxy", proxy->urlWithPassword("wrong-on-purpose"));
  auto a = optionsFor("alpha", kSecretA);
  a.proxy = "none";
  Node alpha(a);
  auto up = alpha->waitConnected(kWait);
  ASSERT_TRUE(up.ok()) << up.error().message;
  EXPECT_EQ(proxy->connectCount(), 0u) << proxy->log();
}

TEST_F(ThroughProxyTls, WssThroughTheTunnelChecksTheRelaysName) {
  startAll();
  relay->registerMesh("bravo", kSecretB, "Bravo");
  env.set("HTTPS_PROXY", proxy->url());
  // lws would take http_proxy for wss:// too; the client must not.
  env.set("http_proxy", proxy->urlWithPassword("not-for-wss"));
  auto a = optionsFor("alpha", kSecretA);
  a.autoRegister = true;  // https:// through a CONNECT tunnel
  Node alpha(a);
  auto b = optionsFor("bravo", kSecretB);
  b.proxy = "none";
  Node bravo(b);
  auto up = alpha->waitConnected(kWait);
  ASSERT_TRUE(up.ok()) << up.error().message << "\n" << proxy->log();
  ASSERT_TRUE(bravo->waitConnected(kWait).ok());
  auto sent = alpha->relay("bravo", R"({"type":"chat","n":1})");
  ASSERT_TRUE(sent.ok());
  ASSERT_TRUE(bravo.waitFor([](const Seen& s) { return s.messages.size() == 1; }));
  ASSERT_TRUE(alpha.waitFor([](const Seen& s) { return s.deliveries.size() == 1; }));
  EXPECT_EQ(alpha.snapshot().deliveries.at(0).outcome, DeliveryReport::Outcome::Delivered);
  // One tunnel for /register, one for the WebSocket; the proxy saw names
  // and ports only.
  EXPECT_EQ(proxy->connectCount(), 2u) << proxy->log();
  EXPECT_NE(proxy->log().find("CONNECT localhost:" + std::to_string(relay->port())),
            std::string::npos);

  auto health = client::checkHealth(relay->httpUrl(), kWait, pki.caFile);
  ASSERT_TRUE(health.ok()) << health.error().message;
  EXPECT_EQ(proxy->connectCount(), 3u);
}

TEST_F(ThroughProxyTls, TheTlsCheckInsideTheTunnelStillRefusesAnUntrustedRelay) {
  startAll();
  relay->registerMesh("alpha", kSecretA, "Alpha");
  auto a = optionsFor("alpha", kSecretA);
  a.caFile = pki.otherCaFile;
  a.proxy = proxy->url();
  Node alpha(a);
  ASSERT_TRUE(alpha.waitFor([](const Seen& s) {
    return hasError(s, Status::ConnectionFailed, "certificate verify failed");
  })) << allReported(alpha.snapshot());
  EXPECT_GE(proxy->connectCount(), 1u);
}

// meshctl, a process of its own: nothing it prints (lws' log lines
// included) holds the proxy password.
TEST_F(ThroughProxy, MeshctlThroughTheProxyNeverPrintsItsCredentials) {
  startAll();
  relay->registerMesh("alpha", kSecretA, "Alpha");
  auto withArgs = [&](std::vector<std::string> args) {
    args.insert(args.end(), {"--url", relay->gatewayUrl(), "--timeout", "10"});
    if (args.front() != "health")
      args.insert(args.end(), {"--mesh-id", "alpha", "--secret", kSecretA});
    return args;
  };
  auto ok = runToEnd(MESH_MESHCTL_BIN, withArgs({"discover"}), dir, {"HTTP_PROXY=" + proxy->url()});
  EXPECT_EQ(ok.code, 0) << ok.err;
  EXPECT_NE(ok.out.find("\"alpha\""), std::string::npos) << ok.out;
  auto health =
      runToEnd(MESH_MESHCTL_BIN, withArgs({"health"}), dir, {"HTTP_PROXY=" + proxy->url()});
  EXPECT_EQ(health.code, 0) << health.err;
  EXPECT_EQ(proxy->connectCount(), 2u);

  for (const auto& command : {"discover", "health"}) {
    auto refused = runToEnd(MESH_MESHCTL_BIN, withArgs({command}), dir,
                            {"HTTP_PROXY=" + proxy->urlWithPassword("s3cr3t-wrong")});
    EXPECT_EQ(refused.code, 3) << command << ": " << refused.err;
    EXPECT_NE(refused.err.find("refused the tunnel"), std::string::npos) << refused.err;
    EXPECT_EQ(refused.err.find("s3cr3t-wrong"), std::string::npos) << refused.err;
    EXPECT_EQ(refused.out.find("s3cr3t-wrong"), std::string::npos) << refused.out;
  }
  EXPECT_EQ((ok.out + ok.err + health.out + health.err).find("proxy-pass"), std::string::npos);

  // --proxy on the command line wins over the environment.
  auto flag = runToEnd(MESH_MESHCTL_BIN, withArgs({"health", "--proxy", "none"}), dir,
                       {"HTTP_PROXY=" + proxy->urlWithPassword("s3cr3t-wrong")});
  EXPECT_EQ(flag.code, 0) << flag.err;
}

}  // namespace
}  // namespace mesh::test
