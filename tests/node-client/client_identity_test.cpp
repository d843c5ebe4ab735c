// MESH_TOKEN against the real relay (HS256 tokens made in the test).
#include <gtest/gtest.h>
#include "node_harness.h"
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
