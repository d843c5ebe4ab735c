// gateway_auth under abuse and after restarts: budgets of failed
// authentications (refused with rate_limited before any check, never
// locking the real node out), and the keyed verifier that lets a restarted
// relay check secrets without Argon2id. Each case ends with proof that the
// relay still relays between other meshes.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <thread>
#include <vector>

#include "support/metrics_scrape.h"
#include "support/test_relay.h"

namespace mesh::test {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr char kAdminToken[] = "admin-token-0123456789abcdef";
const std::string kWrong = "wrong-secret-0123456789";

double metric(const TestRelay& relay, const std::string& series) {
  return metricValue(relay.port(), series);
}

const std::string kByVerifier = R"(mesh_relay_secret_checks_total{method="verifier"})";
const std::string kByArgon2 = R"(mesh_relay_secret_checks_total{method="argon2id"})";
const std::string kRateLimited = R"(mesh_relay_auth_failures_total{reason="rate_limited"})";

// Connects from `from`, authenticates with a secret, and returns "ok" or the
// code of the error that came instead. The connection is closed after.
std::string tryAuth(const TestRelay& relay, const std::string& from, const std::string& meshId,
                    const std::string& secret) {
  auto c = WsClient::connect(relay.port(), fromAddress(from));
  c->sendText(R"({"type":"gateway_auth","meshId":")" + meshId + R"(","secret":")" + secret + "\"}");
  const WsMessage m = c->recv(10000ms);
  if (m.kind != WsMessage::Kind::Text) return std::string("no frame: ") + kindName(m.kind);
  const std::string type = jsonString(m.data, "type");
  std::string answer = type == "gateway_auth_ok" ? "ok" : jsonString(m.data, "code");
  if (answer == "rate_limited") {
    EXPECT_EQ(type, "error");
    EXPECT_EQ(c->expectClose(), 1008);
  }
  return answer;
}

TEST(GatewayAuthBudget, SpentAddressIsRefusedWithRateLimitedBeforeAnyCheck) {
  TestRelay relay([](relay::Config& c) {
    c.authFailureBurst = 3;
    c.authFailureRate = 0.001;
  });
  ASSERT_EQ(relay.registerMesh("mesh-a", TestRelay::secretFor("mesh-a"), "A"), 201);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(tryAuth(relay, "127.0.0.2", "mesh-a", kWrong), "invalid_credentials") << i;
  }
  EXPECT_EQ(metric(relay, kByVerifier), 3);
  // Spent: even the right secret is refused, and nothing is checked.
  EXPECT_EQ(tryAuth(relay, "127.0.0.2", "mesh-a", TestRelay::secretFor("mesh-a")), "rate_limited");
  EXPECT_EQ(tryAuth(relay, "127.0.0.2", "nobody", kWrong), "rate_limited");
  EXPECT_EQ(metric(relay, kByVerifier), 3);
  EXPECT_EQ(metric(relay, kByArgon2), 0);
  EXPECT_EQ(metric(relay, kRateLimited), 2);
  EXPECT_EQ(metric(relay, R"(mesh_relay_auth_rate_limited_total{budget="address"})"), 2);
  // Another address is not affected.
  EXPECT_EQ(tryAuth(relay, "127.0.0.3", "mesh-a", TestRelay::secretFor("mesh-a")), "ok");
  expectRelayStillServes(relay);
}

// Attackers flood one mesh with wrong secrets from three addresses while its
// node connects again and again from a fourth: the node gets in every time.
void floodWhileTheNodeConnects(TestRelay& relay, const std::string& meshId) {
  std::atomic<bool> stop{false};
  std::atomic<int> refused{0};
  std::vector<std::thread> attackers;
  for (const char* from : {"127.0.0.2", "127.0.0.4", "127.0.0.5"}) {
    attackers.emplace_back([&, from = std::string(from)] {
      while (!stop.load()) {
        try {
          if (tryAuth(relay, from, meshId, kWrong) == "rate_limited") ++refused;
        } catch (const std::exception&) {
          // Refused connections (too many unauthenticated) are part of it.
        }
      }
    });
  }
  // Let the flood spend the budgets first.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (refused.load() < 10 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_GE(refused.load(), 10) << "the flood was never rate limited";
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(tryAuth(relay, "127.0.0.3", meshId, TestRelay::secretFor(meshId)), "ok") << i;
  }
  stop = true;
  for (auto& t : attackers) t.join();
  EXPECT_GT(metric(relay, R"(mesh_relay_auth_rate_limited_total{budget="mesh"})"), 0);
}

TEST(GatewayAuthBudget, FloodOfWrongSecretsDoesNotLockTheMeshOut) {
  TestRelay relay([](relay::Config& c) {
    c.authFailureBurst = 50;
    c.authFailureRate = 0.001;
    c.authFailureMeshBurst = 3;
    c.authFailureMeshRate = 0.001;
  });
  ASSERT_EQ(relay.registerMesh("target", TestRelay::secretFor("target"), "T"), 201);
  floodWhileTheNodeConnects(relay, "target");
  expectRelayStillServes(relay);
}

// The same for a mesh with no verifier yet, so that every check that is not
// refused is an Argon2id on the workers, queued fairly per address.
TEST(GatewayAuthBudget, FloodAgainstAMeshWithoutVerifierDoesNotLockItOut) {
  TempDir dir;
  const std::string db = dir.file("mesh.db");
  {
    TestRelay first([&](relay::Config& c) { c.dbPath = db; });
    ASSERT_EQ(first.registerMesh("target", TestRelay::secretFor("target"), "T"), 201);
  }
  TestRelay relay([&](relay::Config& c) {
    c.dbPath = db;
    c.verifierKeyPath = dir.file("another.key");  // the verifiers are dropped
    c.authFailureBurst = 50;
    c.authFailureRate = 0.001;
    c.authFailureMeshBurst = 3;
    c.authFailureMeshRate = 0.001;
  });
  floodWhileTheNodeConnects(relay, "target");
  EXPECT_GE(metric(relay, kByArgon2), 4);  // three failures and the node's first
  expectRelayStillServes(relay);
}

TEST(GatewayVerifier, RestartedRelayAuthenticatesByVerifier) {
  TempDir dir;
  const std::string db = dir.file("mesh.db");
  {
    TestRelay first([&](relay::Config& c) { c.dbPath = db; });
    ASSERT_EQ(first.registerMesh("legacy", TestRelay::secretFor("legacy"), "L"), 201);
  }
  TestRelay relay([&](relay::Config& c) { c.dbPath = db; });
  EXPECT_EQ(tryAuth(relay, "127.0.0.1", "legacy", TestRelay::secretFor("legacy")), "ok");
  EXPECT_EQ(tryAuth(relay, "127.0.0.1", "legacy", kWrong), "invalid_credentials");
  EXPECT_EQ(metric(relay, kByVerifier), 2);
  EXPECT_EQ(metric(relay, kByArgon2), 0);
  expectRelayStillServes(relay);
}

TEST(GatewayVerifier, DatabaseCopyWithoutKeyFileFallsBackToArgon2id) {
  TempDir dir;
  const std::string db = dir.file("mesh.db");
  {
    TestRelay first([&](relay::Config& c) { c.dbPath = db; });
    ASSERT_EQ(first.registerMesh("legacy", TestRelay::secretFor("legacy"), "L"), 201);
  }
  fs::create_directory(dir.path() / "copy");
  const std::string copy = (dir.path() / "copy" / "mesh.db").string();
  fs::copy_file(db, copy);
  TestRelay relay([&](relay::Config& c) { c.dbPath = copy; });
  EXPECT_EQ(tryAuth(relay, "127.0.0.1", "legacy", kWrong), "invalid_credentials");
  EXPECT_EQ(metric(relay, kByVerifier), 0);
  EXPECT_EQ(metric(relay, kByArgon2), 1);
  EXPECT_EQ(tryAuth(relay, "127.0.0.1", "legacy", TestRelay::secretFor("legacy")), "ok");
  EXPECT_EQ(metric(relay, kByArgon2), 2);
  // The right secret stored a verifier under this relay's key.
  EXPECT_EQ(tryAuth(relay, "127.0.0.1", "legacy", TestRelay::secretFor("legacy")), "ok");
  EXPECT_EQ(metric(relay, kByVerifier), 1);
  EXPECT_EQ(metric(relay, kByArgon2), 2);
  expectRelayStillServes(relay);
}

TEST(GatewayVerifier, RotationAndDeletionKillIt) {
  TestRelay relay([](relay::Config& c) { c.adminToken = kAdminToken; });
  const std::vector<std::string> auth{std::string("Authorization: Bearer ") + kAdminToken};
  const std::string old = TestRelay::secretFor("rotated");
  const std::string fresh = "chosen-by-operator-0123456789";
  ASSERT_EQ(relay.registerMesh("rotated", old, "R"), 201);
  EXPECT_EQ(tryAuth(relay, "127.0.0.1", "rotated", old), "ok");
  ASSERT_EQ(httpRequest(relay.port(), "POST", "/meshes/rotated/secret",
                        R"({"secret":")" + fresh + "\"}", auth)
                .status,
            200);
  EXPECT_EQ(tryAuth(relay, "127.0.0.1", "rotated", old), "invalid_credentials");
  EXPECT_EQ(tryAuth(relay, "127.0.0.1", "rotated", fresh), "ok");
  ASSERT_EQ(httpRequest(relay.port(), "DELETE", "/meshes/rotated", {}, auth).status, 200);
  EXPECT_EQ(tryAuth(relay, "127.0.0.1", "rotated", fresh), "invalid_credentials");
  // All of it was decided by verifiers: no Argon2id on the auth path.
  EXPECT_EQ(metric(relay, kByVerifier), 4);
  EXPECT_EQ(metric(relay, kByArgon2), 0);
  expectRelayStillServes(relay);
}

}  // namespace
}  // namespace mesh::test
