// Several gateway URLs without a load balancer: two real relays that share
// nothing; when the first is gone the node reaches the second.
#include <gtest/gtest.h>

#include "mesh/client/http.h"
#include "node_harness.h"
#include "relay_runner.h"
#include "stub_gateway.h"

namespace mesh::test {
namespace {

using client::ConnectionState;
using client::DeliveryReport;

const std::string kSecretA = "alpha-secret-0123456789";
const std::string kSecretB = "bravo-secret-0123456789";

int connectedAt(const RelayRunner& relay) {
  auto health = client::checkHealth(relay.httpUrl(), std::chrono::seconds(5), {}, "none");
  return health ? health.value().connected : -1;
}

std::size_t timesConnected(const Seen& s) {
  return static_cast<std::size_t>(
      std::count(s.states.begin(), s.states.end(), ConnectionState::Connected));
}

class TwoRelays : public ::testing::Test {
 protected:
  void SetUp() override {
    first = std::make_unique<RelayRunner>(dirFirst);
    second = std::make_unique<RelayRunner>(dirSecond);
    second->start();
    second->registerMesh("alpha", kSecretA, "Alpha");
    second->registerMesh("bravo", kSecretB, "Bravo");
  }

  void startFirst() {
    first->start();
    first->registerMesh("alpha", kSecretA, "Alpha");
  }

  client::Options alphaOptions() {
    auto o = Node::options("alpha", kSecretA, "", dir.file("alpha.db"));
    o.gatewayUrls = {first->gatewayUrl(), second->gatewayUrl()};
    o.proxy = "none";
    return o;
  }

  // alpha ends on the second relay (its `connects`-th connection) and
  // reaches bravo there.
  void expectAlphaMovesAndDelivers(Node& alpha, std::size_t connects = 2) {
    auto b = Node::options("bravo", kSecretB, second->gatewayUrl(), dir.file("bravo.db"));
    b.proxy = "none";
    Node bravo(b);
    ASSERT_TRUE(bravo->waitConnected(kWait).ok());
    ASSERT_TRUE(alpha.waitFor([&](const Seen& s) { return timesConnected(s) >= connects; }))
        << second->log();
    EXPECT_EQ(connectedAt(*second), 2);
    bool named = false;
    for (const auto& r : alpha.snapshot().reasons) {
      named |= r.find("next: " + second->gatewayUrl()) != std::string::npos;
    }
    EXPECT_TRUE(named);
    auto sent = alpha->relay("bravo", R"({"type":"chat","n":1})");
    ASSERT_TRUE(sent.ok());
    ASSERT_TRUE(bravo.waitFor([](const Seen& s) { return s.messages.size() == 1; }));
    ASSERT_TRUE(alpha.waitFor([](const Seen& s) { return s.deliveries.size() == 1; }));
    EXPECT_EQ(alpha.snapshot().deliveries.at(0).outcome, DeliveryReport::Outcome::Delivered);
  }

  TempDir dir;
  TempDir dirFirst;
  TempDir dirSecond;
  std::unique_ptr<RelayRunner> first;
  std::unique_ptr<RelayRunner> second;
};

TEST_F(TwoRelays, AKilledRelayHandsTheNodeToTheNext) {
  startFirst();
  Node alpha(alphaOptions());
  ASSERT_TRUE(alpha->waitConnected(kWait).ok());
  EXPECT_EQ(connectedAt(*first), 1);
  EXPECT_EQ(connectedAt(*second), 0);
  first->kill();
  expectAlphaMovesAndDelivers(alpha);
}

TEST_F(TwoRelays, AStoppedRelayHandsTheNodeToTheNext) {
  startFirst();
  Node alpha(alphaOptions());
  ASSERT_TRUE(alpha->waitConnected(kWait).ok());
  EXPECT_EQ(connectedAt(*first), 1);
  EXPECT_EQ(first->stop(), 0);  // SIGTERM: the relay closes with 1001
  expectAlphaMovesAndDelivers(alpha);
}

TEST_F(TwoRelays, ARelayDownAtStartIsSkipped) {
  // The first relay's port is chosen but nothing listens there.
  Node alpha(alphaOptions());
  expectAlphaMovesAndDelivers(alpha, 1);
  // From the environment, as a comma-separated list.
  ::setenv("MESH_GATEWAY_URL", (first->gatewayUrl() + " , " + second->gatewayUrl()).c_str(), 1);
  auto fromEnv = client::Options::fromEnvironment(alphaOptions());
  ::unsetenv("MESH_GATEWAY_URL");
  ASSERT_TRUE(fromEnv.ok());
  const auto urls = client::gatewayUrlList(fromEnv.value());
  ASSERT_EQ(urls.size(), 2u);
  EXPECT_EQ(urls[0], first->gatewayUrl());
  EXPECT_EQ(urls[1], second->gatewayUrl());
}

TEST_F(TwoRelays, AutoRegisterRegistersAtTheRelayItReaches) {
  // The first relay never knew alpha; the node registers where it lands.
  auto o = alphaOptions();
  o.outboxPath = dir.file("charlie.db");
  o.meshId = "charlie";
  o.autoRegister = true;
  Node charlie(o);
  ASSERT_TRUE(charlie->waitConnected(kWait).ok()) << second->log();
  EXPECT_EQ(connectedAt(*second), 1);
}

TEST_F(TwoRelays, MeshctlTriesEveryRelayOfTheList) {
  // The first relay is not running.
  const std::string both = first->gatewayUrl() + "," + second->gatewayUrl();
  const std::vector<std::string> env = {"MESH_PROXY=none"};
  auto health = runToEnd(MESH_MESHCTL_BIN, {"health", "--url", both}, dir, env);
  EXPECT_EQ(health.code, 0) << health.err;
  EXPECT_NE(health.out.find("\"connected\":0"), std::string::npos) << health.out;
  auto found = runToEnd(
      MESH_MESHCTL_BIN,
      {"discover", "--url", both, "--mesh-id", "alpha", "--secret", kSecretA, "--timeout", "10"},
      dir, env);
  EXPECT_EQ(found.code, 0) << found.err;
  EXPECT_NE(found.out.find("\"alpha\""), std::string::npos) << found.out;
  // Every relay gone: unreachable (3), after trying each.
  auto none = runToEnd(MESH_MESHCTL_BIN,
                       {"discover", "--url", first->gatewayUrl(), "--mesh-id", "alpha", "--secret",
                        kSecretA, "--timeout", "10"},
                       dir, env);
  EXPECT_EQ(none.code, 3) << none.err;
  second->kill();
  auto neither = runToEnd(MESH_MESHCTL_BIN, {"health", "--url", both}, dir, env);
  EXPECT_EQ(neither.code, 3) << neither.err;
}

TEST(GatewayList, TheResumeTokenGoesAlongToTheNextRelay) {
  TempDir dir;
  RelayRunner relay(dir);
  relay.start();
  relay.registerMesh("alpha", kSecretA, "Alpha");
  StubGateway next;

  auto o = Node::options("alpha", kSecretA, "", dir.file("alpha.db"));
  o.gatewayUrls = {relay.gatewayUrl(), next.url()};
  o.proxy = "none";
  std::mutex mu;
  std::string authOk;
  o.callbacks.onFrame = [&](const std::string& frame) {
    std::lock_guard lock(mu);
    if (authOk.empty() && frame.find("gateway_auth_ok") != std::string::npos) authOk = frame;
  };
  Node alpha(o);
  // Callbacks run in order: once onStateChange saw Connected, onFrame has
  // seen gateway_auth_ok.
  ASSERT_TRUE(alpha.waitFor([](const Seen& s) { return timesConnected(s) >= 1; }));
  std::string token;
  {
    std::lock_guard lock(mu);
    const std::string key = "\"resumeToken\":\"";
    const auto at = authOk.find(key);
    ASSERT_NE(at, std::string::npos) << authOk;
    token = authOk.substr(at + key.size(), authOk.find('"', at + key.size()) - at - key.size());
  }
  ASSERT_FALSE(token.empty());

  relay.kill();
  ASSERT_TRUE(next.waitRequest(kWait).has_value());
  auto auth = next.waitFrame(kWait);
  ASSERT_TRUE(auth.has_value());
  EXPECT_NE(auth->find("\"type\":\"gateway_auth\""), std::string::npos) << *auth;
  EXPECT_NE(auth->find("\"resumeToken\":\"" + token + "\""), std::string::npos) << *auth;
  EXPECT_NE(auth->find("\"secret\":\"" + kSecretA + "\""), std::string::npos) << *auth;
}

}  // namespace
}  // namespace mesh::test
