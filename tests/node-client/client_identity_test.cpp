// MESH_TOKEN and MESH_AUTH_HEADER against the real relay (HS256 tokens made
// in the test), and a node that holds no credentials at all: it reaches the
// relay through tinyproxy (CONNECT, basic auth) and nginx, which adds its
// Authorization header.
#include <gtest/gtest.h>
#include <sodium.h>

#include <cstring>

#include "node_harness.h"
#include "proxy_runner.h"
#include "relay_runner.h"
#include "support/jwt_signer.h"

namespace mesh::test {
namespace {

using client::ConnectionState;
using client::DeliveryReport;
using client::Status;

const std::string kSecretA = "alpha-secret-0123456789";
const std::string kSecretB = "bravo-secret-0123456789";
const std::string kJwtSecret = "jwt-secret-of-the-relay-0123456789abcdef";

std::string base64(const std::string& text) {
  std::string out(sodium_base64_ENCODED_LEN(text.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(text.data()),
                    text.size(), sodium_base64_VARIANT_ORIGINAL);
  out.resize(std::strlen(out.c_str()));
  return out;
}

class Identity : public ::testing::Test {
 protected:
  void SetUp() override {
    relay = std::make_unique<RelayRunner>(dir);
    relay->setExtraArgs({"--jwt-secret", kJwtSecret});
    relay->start();
    relay->registerMesh("alpha", kSecretA, "Alpha");
    relay->registerMesh("bravo", kSecretB, "Bravo");
    bravo = std::make_unique<Node>(
        Node::options("bravo", kSecretB, relay->gatewayUrl(), dir.file("bravo.db")));
    ASSERT_TRUE((*bravo)->waitConnected(kWait).ok()) << relay->log();
  }

  client::Options alphaOptions(const std::string& secret) {
    return Node::options("alpha", secret, relay->gatewayUrl(), dir.file("alpha.db"));
  }

  std::string tokenFor(const std::string& meshId) {
    return JwtKey::hmac(kJwtSecret).sign(claimsFor(meshId, 600));
  }

  // alpha and bravo exchange one message each way.
  void expectTraffic(Node& alpha) {
    auto sent = alpha->relay("bravo", R"({"type":"chat","n":1})");
    ASSERT_TRUE(sent.ok());
    ASSERT_TRUE(bravo->waitFor([](const Seen& s) { return s.messages.size() == 1; }));
    EXPECT_EQ(bravo->snapshot().messages.at(0).fromMeshId, "alpha");
    ASSERT_TRUE(alpha.waitFor([](const Seen& s) { return s.deliveries.size() == 1; }));
    EXPECT_EQ(alpha.snapshot().deliveries.at(0).outcome, DeliveryReport::Outcome::Delivered);
    auto back = (*bravo)->relay("alpha", R"({"type":"chat","n":2})");
    ASSERT_TRUE(back.ok());
    ASSERT_TRUE(alpha.waitFor([](const Seen& s) { return s.messages.size() == 1; }));
  }

  TempDir dir;
  std::unique_ptr<RelayRunner> relay;
  std::unique_ptr<Node> bravo;
};

TEST_F(Identity, ATokenInGatewayAuthInsteadOfTheSecret) {
  auto o = alphaOptions("");
  o.token = tokenFor("alpha");
  Node alpha(o);
  auto up = alpha->waitConnected(kWait);
  ASSERT_TRUE(up.ok()) << up.error().message << "\n" << relay->log();
  expectTraffic(alpha);
}

TEST_F(Identity, ATokenSignedWithAnotherKeyIsRefused) {
  auto o = alphaOptions("");
  o.token =
      JwtKey::hmac("another-key-that-the-relay-does-not-know-0123").sign(claimsFor("alpha", 600));
  Node alpha(o);
  auto up = alpha->waitConnected(kWait);
  ASSERT_FALSE(up.ok());
  EXPECT_EQ(up.error().status, Status::AuthFailed) << up.error().message;
  EXPECT_NE(up.error().message.find("token"), std::string::npos) << up.error().message;
  // The relay serves the others as before.
  auto again = alphaOptions(kSecretA);
  again.outboxPath = dir.file("alpha-2.db");
  Node fine(again);
  EXPECT_TRUE(fine->waitConnected(kWait).ok());
}

TEST_F(Identity, BearerTokenOnTheUpgrade) {
  auto o = alphaOptions("");
  o.token = tokenFor("alpha");
  o.authHeader = true;
  o.publicRooms = {"lobby"};
  Node alpha(o);
  auto up = alpha->waitConnected(kWait);
  ASSERT_TRUE(up.ok()) << up.error().message << "\n" << relay->log();
  expectTraffic(alpha);
  // The rooms went out after gateway_auth_ok.
  bool announced = false;
  for (int i = 0; i < 100 && !announced; ++i) {
    auto online = (*bravo)->discover(kWait);
    ASSERT_TRUE(online.ok());
    for (const auto& inst : online.value()) {
      announced |= inst.meshId == "alpha" && inst.publicRooms == std::vector<std::string>{"lobby"};
    }
    if (!announced) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(announced);
}

TEST_F(Identity, BasicOnTheUpgrade) {
  auto o = alphaOptions(kSecretA);
  o.authHeader = true;
  Node alpha(o);
  auto up = alpha->waitConnected(kWait);
  ASSERT_TRUE(up.ok()) << up.error().message << "\n" << relay->log();
  expectTraffic(alpha);
}

TEST_F(Identity, AWrongSecretOnTheUpgradeIsAuthFailed) {
  auto o = alphaOptions("not-alphas-secret-0123456789");
  o.authHeader = true;
  Node alpha(o);
  auto up = alpha->waitConnected(kWait);
  ASSERT_FALSE(up.ok());
  EXPECT_EQ(up.error().status, Status::AuthFailed) << up.error().message;
  EXPECT_EQ(up.error().message.find("not-alphas-secret"), std::string::npos);
  auto right = alphaOptions(kSecretA);
  right.outboxPath = dir.file("alpha-2.db");
  right.authHeader = true;
  Node fine(right);
  EXPECT_TRUE(fine->waitConnected(kWait).ok());
}

TEST_F(Identity, ANodeWithoutCredentialsBehindProxiesThatHoldThem) {
  // nginx holds alpha's credentials and adds them to the upgrade; tinyproxy
  // is the node's forward proxy with its own login. The node has neither
  // a secret nor a token.
  InjectingProxy egress(dir, relay->port(), "Basic " + base64("alpha:" + kSecretA));
  egress.start();
  ProxyConfig config;
  config.connectPorts = {egress.port()};
  ProxyRunner forward(dir, config);
  forward.start();

  auto o = Node::options("alpha", "", egress.gatewayUrl(), dir.file("alpha.db"));
  o.authHeader = true;
  o.proxy = forward.url();
  Node alpha(o);
  auto up = alpha->waitConnected(kWait);
  ASSERT_TRUE(up.ok()) << up.error().message << "\n" << relay->log() << egress.log();
  expectTraffic(alpha);
  EXPECT_EQ(forward.connectCount(), 1u);

  // A bearer token held by the proxy works the same.
  InjectingProxy tokenEgress(dir, relay->port(), "Bearer " + tokenFor("charlie"));
  tokenEgress.start();
  relay->registerMesh("charlie", "charlie-secret-0123456789", "Charlie");
  auto c = Node::options("charlie", "", tokenEgress.gatewayUrl(), dir.file("charlie.db"));
  c.authHeader = true;
  Node charlie(c);
  EXPECT_TRUE(charlie->waitConnected(kWait).ok()) << relay->log();

  // And a proxy that adds wrong ones gets the node a clear refusal.
  InjectingProxy wrong(dir, relay->port(), "Basic " + base64("alpha:not-the-secret-0123456"));
  wrong.start();
  auto w = Node::options("alpha", "", wrong.gatewayUrl(), dir.file("alpha-w.db"));
  w.authHeader = true;
  Node refused(w);
  auto no = refused->waitConnected(kWait);
  ASSERT_FALSE(no.ok());
  EXPECT_EQ(no.error().status, Status::AuthFailed) << no.error().message;
  EXPECT_NE(no.error().message.find("proxy in front"), std::string::npos) << no.error().message;
}

TEST(IdentityTls, CredentialsOnTheUpgradeOverWssThroughAProxy) {
  TempDir dir;
  const TestPki pki = makeTestPki(dir);
  RelayRunner relay(dir, &pki);
  relay.start();
  relay.registerMesh("alpha", kSecretA, "Alpha");
  ProxyConfig config;
  config.connectPorts = {relay.port()};
  ProxyRunner forward(dir, config);
  forward.start();
  auto o = Node::options("alpha", kSecretA, relay.gatewayUrl(), dir.file("alpha.db"));
  o.caFile = pki.caFile;
  o.authHeader = true;
  o.proxy = forward.url();
  Node alpha(o);
  auto up = alpha->waitConnected(kWait);
  ASSERT_TRUE(up.ok()) << up.error().message << "\n" << relay.log();
  EXPECT_EQ(forward.connectCount(), 1u);
  auto online = alpha->discover(kWait);
  ASSERT_TRUE(online.ok());
  ASSERT_EQ(online.value().size(), 1u);

  auto w = o;
  w.secret = "not-alphas-secret-0123456789";
  w.outboxPath = dir.file("alpha-w.db");
  Node wrong(w);
  auto no = wrong->waitConnected(kWait);
  ASSERT_FALSE(no.ok());
  EXPECT_EQ(no.error().status, Status::AuthFailed) << no.error().message;
}

TEST_F(Identity, MeshctlWithAToken) {
  const std::vector<std::string> args = {
      "discover", "--url", relay->gatewayUrl(), "--mesh-id", "alpha", "--timeout", "10"};
  auto ok =
      runToEnd(MESH_MESHCTL_BIN, args, dir, {"MESH_TOKEN=" + tokenFor("alpha"), "MESH_PROXY=none"});
  EXPECT_EQ(ok.code, 0) << ok.err;
  EXPECT_NE(ok.out.find("\"alpha\""), std::string::npos) << ok.out;
  auto refused =
      runToEnd(MESH_MESHCTL_BIN, args, dir, {"MESH_TOKEN=" + tokenFor("bravo"), "MESH_PROXY=none"});
  EXPECT_EQ(refused.code, 4) << refused.err;  // the token names another mesh
}

}  // namespace
}  // namespace mesh::test
