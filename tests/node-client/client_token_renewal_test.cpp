// Tokens that expire: Options::tokenFile and Options::tokenProvider against
// the real relay (HS256 tokens made in the test, no leeway). A fresh token
// renews the session in place (gateway_reauth); a stale one lets it end
// (close 4001) and the node comes back once the token is renewed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <thread>

#include "node_harness.h"
#include "relay_runner.h"
#include "support/jwt_signer.h"

namespace mesh::test {
namespace {

using client::ConnectionState;
using client::DeliveryReport;
using client::Status;

const std::string kSecretB = "bravo-secret-0123456789";
const std::string kJwtSecret = "jwt-secret-of-the-relay-0123456789abcdef";

std::string tokenFor(std::int64_t ttlSeconds) {
  return JwtKey::hmac(kJwtSecret).sign(claimsFor("alpha", ttlSeconds));
}

void writeFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text << "\n";
}

std::size_t count(const Seen& s, ConnectionState state) {
  return static_cast<std::size_t>(std::count(s.states.begin(), s.states.end(), state));
}

bool hasError(const Seen& s, const std::string& part) {
  return std::any_of(s.errors.begin(), s.errors.end(), [&](const client::Error& e) {
    return e.message.find(part) != std::string::npos;
  });
}

bool hasReason(const Seen& s, const std::string& part) {
  return std::any_of(s.reasons.begin(), s.reasons.end(),
                     [&](const std::string& r) { return r.find(part) != std::string::npos; });
}

class TokenRenewal : public ::testing::Test {
 protected:
  void SetUp() override {
    relay = std::make_unique<RelayRunner>(dir);
    relay->setExtraArgs({"--jwt-secret", kJwtSecret, "--jwt-leeway", "0"});
    relay->start();
    relay->registerMesh("alpha", "alpha-secret-0123456789", "Alpha");
    relay->registerMesh("bravo", kSecretB, "Bravo");
    bravo = std::make_unique<Node>(
        Node::options("bravo", kSecretB, relay->gatewayUrl(), dir.file("bravo.db")));
    ASSERT_TRUE((*bravo)->waitConnected(kWait).ok()) << relay->log();
  }

  client::Options alphaOptions() {
    auto o = Node::options("alpha", "", relay->gatewayUrl(), dir.file("alpha.db"));
    return o;
  }

  // alpha reaches bravo and bravo reaches alpha; `n` numbers the round.
  void expectTraffic(Node& alpha, std::size_t n) {
    ASSERT_TRUE(alpha->relay("bravo", R"({"type":"chat"})").ok());
    ASSERT_TRUE(bravo->waitFor([n](const Seen& s) { return s.messages.size() == n; }));
    ASSERT_TRUE(alpha.waitFor([n](const Seen& s) { return s.deliveries.size() == n; }));
    EXPECT_EQ(alpha.snapshot().deliveries.at(n - 1).outcome, DeliveryReport::Outcome::Delivered);
    ASSERT_TRUE((*bravo)->relay("alpha", R"({"type":"chat"})").ok());
    ASSERT_TRUE(alpha.waitFor([n](const Seen& s) { return s.messages.size() == n; }));
  }

  TempDir dir;
  std::unique_ptr<RelayRunner> relay;
  std::unique_ptr<Node> bravo;
};

TEST_F(TokenRenewal, AFreshTokenInTheFileRenewsTheSessionWithoutReconnecting) {
  const std::string file = dir.file("token");
  writeFile(file, tokenFor(3));
  auto o = alphaOptions();
  o.tokenFile = file;
  Node alpha(o);
  auto up = alpha->waitConnected(kWait);
  ASSERT_TRUE(up.ok()) << up.error().message << "\n" << relay->log();
  writeFile(file, tokenFor(600));
  // Past the first token's end (3 s, no leeway): the same connection lives.
  std::this_thread::sleep_for(std::chrono::seconds(5));
  const Seen seen = alpha.snapshot();
  EXPECT_EQ(count(seen, ConnectionState::Connected), 1U);
  EXPECT_EQ(count(seen, ConnectionState::Connecting), 1U);
  EXPECT_FALSE(hasReason(seen, "4001"));
  for (const auto& e : seen.errors) ADD_FAILURE() << e.message;
  EXPECT_EQ(alpha->state(), ConnectionState::Connected);
  expectTraffic(alpha, 1);
}

TEST_F(TokenRenewal, AStaleTokenFileEndsWith4001AndARenewedOneComesBack) {
  const std::string file = dir.file("token");
  writeFile(file, tokenFor(2));
  auto o = alphaOptions();
  o.tokenFile = file;
  Node alpha(o);
  ASSERT_TRUE(alpha->waitConnected(kWait).ok()) << relay->log();
  // The warning finds no fresh token; the relay ends the session.
  ASSERT_TRUE(alpha.waitFor([](const Seen& s) { return hasReason(s, "4001"); })) << relay->log();
  EXPECT_TRUE(hasError(alpha.snapshot(), "no fresh token"));
  // Whatever the reconnects meet meanwhile, the client keeps trying.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_NE(alpha->state(), ConnectionState::Failed);
  writeFile(file, tokenFor(600));
  ASSERT_TRUE(alpha.waitFor([](const Seen& s) {
    return count(s, ConnectionState::Connected) == 2;
  })) << relay->log();
  expectTraffic(alpha, 1);
}

TEST_F(TokenRenewal, AProviderOnTheUpgradeHeaderGivesTheFreshTokenAfter4001) {
  std::mutex mu;
  std::string current = tokenFor(2);
  auto o = alphaOptions();
  o.authHeader = true;
  o.tokenProvider = [&mu, &current] {
    std::lock_guard lock(mu);
    return current;
  };
  Node alpha(o);
  ASSERT_TRUE(alpha->waitConnected(kWait).ok()) << relay->log();
  ASSERT_TRUE(alpha.waitFor([](const Seen& s) { return hasReason(s, "4001"); })) << relay->log();
  {
    std::lock_guard lock(mu);
    current = tokenFor(600);
  }
  ASSERT_TRUE(alpha.waitFor([](const Seen& s) {
    return count(s, ConnectionState::Connected) == 2;
  })) << relay->log();
  expectTraffic(alpha, 1);
}

TEST_F(TokenRenewal, ARefusedRenewalIsReportedAndTheSessionLastsToItsEnd) {
  const std::string file = dir.file("token");
  writeFile(file, tokenFor(3));
  auto o = alphaOptions();
  o.tokenFile = file;
  Node alpha(o);
  ASSERT_TRUE(alpha->waitConnected(kWait).ok()) << relay->log();
  // Signed with a key the relay does not trust: gateway_reauth is refused.
  writeFile(
      file,
      JwtKey::hmac("another-key-that-the-relay-does-not-know-0123").sign(claimsFor("alpha", 600)));
  ASSERT_TRUE(alpha.waitFor([](const Seen& s) { return hasError(s, "refused the renewed token"); }))
      << relay->log();
  // Still the first connection, and it still works until the token ends.
  EXPECT_EQ(count(alpha.snapshot(), ConnectionState::Connected), 1U);
  EXPECT_FALSE(hasReason(alpha.snapshot(), "4001"));
  expectTraffic(alpha, 1);
  ASSERT_TRUE(alpha.waitFor([](const Seen& s) { return hasReason(s, "4001"); })) << relay->log();
  EXPECT_NE(alpha->state(), ConnectionState::Failed);
  // The relay serves the others as before.
  ASSERT_TRUE((*bravo)->relay("alpha", R"({"type":"chat"})").ok());
  EXPECT_EQ((*bravo)->state(), ConnectionState::Connected);
}

TEST_F(TokenRenewal, ATokenFileNotWrittenYetIsReportedAndWaitedFor) {
  const std::string file = dir.file("token");
  auto o = alphaOptions();
  o.tokenFile = file;
  Node alpha(o);
  ASSERT_TRUE(
      alpha.waitFor([](const Seen& s) { return hasError(s, "cannot read the token file"); }));
  ASSERT_TRUE(
      alpha.waitFor([](const Seen& s) { return hasReason(s, "no token to connect with yet"); }));
  EXPECT_NE(alpha->state(), ConnectionState::Failed);
  writeFile(file, "   ");
  ASSERT_TRUE(alpha.waitFor([](const Seen& s) { return hasError(s, "is empty"); }));
  writeFile(file, tokenFor(600));
  ASSERT_TRUE(alpha->waitConnected(kWait).ok()) << relay->log();
  expectTraffic(alpha, 1);
}

TEST(TokenFile, FromTheEnvironment) {
  ::setenv("MESH_ID", "alpha", 1);
  ::unsetenv("MESH_SECRET");
  ::unsetenv("MESH_TOKEN");
  ::setenv("MESH_TOKEN_FILE", "/run/mesh/token", 1);
  auto o = client::Options::fromEnvironment();
  ::unsetenv("MESH_TOKEN_FILE");
  ::unsetenv("MESH_ID");
  ASSERT_TRUE(o.ok()) << o.error().message;
  EXPECT_EQ(o.value().tokenFile, "/run/mesh/token");
  EXPECT_TRUE(client::validate(o.value()).ok());
  // A provider alone is enough too.
  client::Options p = Node::options("alpha", "", "ws://127.0.0.1:1/gateway", ":memory:");
  EXPECT_FALSE(client::validate(p).ok());
  p.tokenProvider = [] { return std::string("x"); };
  EXPECT_TRUE(client::validate(p).ok());
}

TEST_F(TokenRenewal, MeshctlWithATokenFile) {
  const std::string file = dir.file("token");
  writeFile(file, tokenFor(600));
  const std::vector<std::string> args = {"discover",  "--url",     relay->gatewayUrl(),
                                         "--mesh-id", "alpha",     "--token-file",
                                         file,        "--timeout", "10"};
  auto ok = runToEnd(MESH_MESHCTL_BIN, args, dir, {"MESH_PROXY=none"});
  EXPECT_EQ(ok.code, 0) << ok.err;
  EXPECT_NE(ok.out.find("\"bravo\""), std::string::npos) << ok.out;
  // A token for another mesh: refused, reported, and meshctl gives up.
  writeFile(file, JwtKey::hmac(kJwtSecret).sign(claimsFor("bravo", 600)));
  auto refused = runToEnd(MESH_MESHCTL_BIN, args, dir, {"MESH_PROXY=none"});
  EXPECT_EQ(refused.code, 4) << refused.err;  // the token names another mesh
  EXPECT_NE(refused.err.find("token"), std::string::npos) << refused.err;
}

}  // namespace
}  // namespace mesh::test
