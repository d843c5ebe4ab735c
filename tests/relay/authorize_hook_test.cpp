// The authorize hook (--authorize-url) against a real HTTP server started
// by the test: what the relay POSTs, how each answer decides (allow, deny,
// another meshId, claims in the admin API), that every failure of the hook
// refuses the mesh with authorize_unavailable, and the cache of positive
// answers. Each failure case ends with proof that the relay still serves.
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <mutex>

#include "support/hook_server.h"
#include "support/jwt_signer.h"
#include "support/metrics_scrape.h"
#include "support/relay_process.h"
#include "support/test_relay.h"

namespace mesh::test {
namespace {

using namespace std::chrono_literals;

constexpr char kAdminToken[] = "admin-token-0123456789abcdef";
constexpr char kHookToken[] = "hook-token-abcdef0123456789";

double metric(const TestRelay& relay, const std::string& series) {
  return metricValue(relay.port(), series);
}

std::string outcome(const char* name) {
  return std::string(R"(mesh_relay_authorize_requests_total{outcome=")") + name + "\"}";
}

// Allows every mesh but those the test names, answered as given.
struct Answers {
  std::mutex mutex;
  std::map<std::string, HookReply> byMesh;
  HookReply fallback{200, R"({"allow":true})", 0ms};

  HookReply answer(const HookRequest& req) {
    const std::string meshId = jsonString(req.body, "meshId");
    std::lock_guard<std::mutex> lock(mutex);
    auto it = byMesh.find(meshId);
    return it == byMesh.end() ? fallback : it->second;
  }
  void set(const std::string& meshId, HookReply reply) {
    std::lock_guard<std::mutex> lock(mutex);
    byMesh[meshId] = std::move(reply);
  }
};

// Connects, sends gateway_auth with the mesh's secret, and returns the
// first frame's text; `closeCode` gets the close code if the relay closed.
std::string authFirstFrame(TestRelay& relay, const std::string& meshId, int* closeCode = nullptr) {
  auto c = WsClient::connect(relay.port());
  c->sendText(R"({"type":"gateway_auth","id":"a1","meshId":")" + meshId + R"(","secret":")" +
              TestRelay::secretFor(meshId) + "\"}");
  const WsMessage m = c->recv(10000ms);
  if (m.kind != WsMessage::Kind::Text) return std::string("no frame: ") + kindName(m.kind);
  if (closeCode)
    *closeCode = jsonString(m.data, "type") == "gateway_auth_ok" ? 0 : c->expectClose();
  return m.data;
}

class AuthorizeHook : public testing::Test {
 protected:
  void start(const std::function<void(relay::Config&)>& tweak = {}) {
    hook_ =
        std::make_unique<HookServer>([this](const HookRequest& r) { return answers_.answer(r); });
    relay_ = std::make_unique<TestRelay>([&](relay::Config& c) {
      c.adminToken = kAdminToken;
      c.authorizeUrl = hook_->url();
      c.authorizeToken = kHookToken;
      if (tweak) tweak(c);
    });
  }
  TestRelay& relay() { return *relay_; }
  HttpResponse admin(const std::string& path) {
    return httpRequest(relay_->port(), "GET", path, {},
                       {std::string("Authorization: Bearer ") + kAdminToken});
  }
  // How many requests the hook got for `meshId`.
  std::size_t callsFor(const std::string& meshId) {
    std::size_t n = 0;
    for (const auto& r : hook_->requests()) n += jsonString(r.body, "meshId") == meshId ? 1 : 0;
    return n;
  }

  Answers answers_;
  std::unique_ptr<HookServer> hook_;
  std::unique_ptr<TestRelay> relay_;
};

TEST_F(AuthorizeHook, AllowedMeshIsAcceptedAndTheRequestCarriesWhatTheIssueNames) {
  start();
  ASSERT_EQ(relay().registerMesh("hk-a", TestRelay::secretFor("hk-a"), "A"), 201);
  const std::string ok = authFirstFrame(relay(), "hk-a");
  EXPECT_EQ(jsonString(ok, "type"), "gateway_auth_ok") << ok;
  EXPECT_EQ(jsonString(ok, "meshId"), "hk-a");
  EXPECT_EQ(jsonString(ok, "id"), "a1");
  const auto requests = hook_->requests();
  ASSERT_EQ(requests.size(), 1u);
  const HookRequest& r = requests[0];
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.target, "/authorize");
  EXPECT_EQ(headerValue(r.headers, "Authorization"), std::string("Bearer ") + kHookToken);
  EXPECT_NE(headerValue(r.headers, "Content-Type").find("application/json"), std::string::npos);
  EXPECT_EQ(jsonString(r.body, "meshId"), "hk-a");
  EXPECT_EQ(jsonString(r.body, "ip"), "127.0.0.1");
  EXPECT_EQ(jsonString(r.body, "host"), "127.0.0.1:" + std::to_string(relay().port()));
  EXPECT_FALSE(jsonHas(r.body, "token"));  // a secret was used, not a token
  EXPECT_EQ(r.body.find(TestRelay::secretFor("hk-a")), std::string::npos);
  EXPECT_EQ(metric(relay(), outcome("allow")), 1);
  EXPECT_EQ(metric(relay(), "mesh_relay_authorize_seconds_count"), 1);
}

TEST_F(AuthorizeHook, DeniedMeshGetsNotAuthorizedWithTheReason) {
  start();
  ASSERT_EQ(relay().registerMesh("hk-no", TestRelay::secretFor("hk-no"), "No"), 201);
  answers_.set("hk-no", {200, R"({"allow":false,"reason":"suspended by billing"})", 0ms});
  int close = 0;
  const std::string answer = authFirstFrame(relay(), "hk-no", &close);
  EXPECT_EQ(jsonString(answer, "type"), "gateway_auth_error") << answer;
  EXPECT_EQ(jsonString(answer, "code"), "not_authorized");
  EXPECT_NE(jsonString(answer, "message").find("suspended by billing"), std::string::npos);
  EXPECT_EQ(jsonString(answer, "id"), "a1");
  EXPECT_EQ(close, 1008);
  EXPECT_EQ(metric(relay(), outcome("deny")), 1);
  // Not a failed authentication: the credentials were right.
  EXPECT_EQ(metric(relay(), R"(mesh_relay_auth_failures_total{reason="invalid_credentials"})"), 0);
  // Wrong credentials never reach the hook.
  auto c = WsClient::connect(relay().port());
  c->sendText(R"({"type":"gateway_auth","meshId":"hk-no","secret":"wrong-secret-0123456789"})");
  EXPECT_EQ(jsonString(c->expectType("gateway_auth_error"), "code"), "invalid_credentials");
  EXPECT_EQ(callsFor("hk-no"), 1u);
  expectRelayStillServes(relay());
}

TEST_F(AuthorizeHook, AnsweredMeshIdWinsAndClaimsShowInTheAdminApi) {
  start();
  ASSERT_EQ(relay().registerMesh("hk-login", TestRelay::secretFor("hk-login"), "Login"), 201);
  ASSERT_EQ(relay().registerMesh("hk-team", TestRelay::secretFor("hk-team"), "Team"), 201);
  answers_.set(
      "hk-login",
      {200, R"({"allow":true,"meshId":"hk-team","claims":{"plan":"pro","seats":5}})", 0ms});
  auto c = WsClient::connect(relay().port());
  c->sendText(TestRelay::authFrameFor("hk-login"));
  const std::string ok = c->expectType("gateway_auth_ok");
  EXPECT_EQ(jsonString(ok, "meshId"), "hk-team");
  EXPECT_EQ(jsonString(ok, "name"), "Team");

  const auto one = admin("/meshes/hk-team");
  ASSERT_EQ(one.status, 200) << one.body;
  const auto doc = json(one.body);
  ASSERT_TRUE(doc.HasMember("claims")) << one.body;
  EXPECT_EQ(std::string(doc["claims"]["plan"].GetString()), "pro");
  EXPECT_EQ(doc["claims"]["seats"].GetInt(), 5);
  const auto all = admin("/meshes");
  ASSERT_EQ(all.status, 200);
  EXPECT_NE(all.body.find(R"("claims":{"plan":"pro","seats":5})"), std::string::npos) << all.body;
  // The mesh it logged in as is not online.
  EXPECT_FALSE(json(admin("/meshes/hk-login").body)["online"].GetBool());

  // Others reach it under the answered meshId.
  auto other = relay().join("hk-other");
  other->sendText(R"({"type":"gateway_relay","targetMeshId":"hk-team","payload":{"n":1}})");
  EXPECT_EQ(jsonString(c->expectType("gateway_incoming"), "fromMeshId"), "hk-other");
}

TEST_F(AuthorizeHook, AnsweredMeshIdThatIsNotRegisteredIsRefused) {
  start();
  ASSERT_EQ(relay().registerMesh("hk-x", TestRelay::secretFor("hk-x"), "X"), 201);
  answers_.set("hk-x", {200, R"({"allow":true,"meshId":"hk-nowhere"})", 0ms});
  int close = 0;
  const std::string answer = authFirstFrame(relay(), "hk-x", &close);
  EXPECT_EQ(jsonString(answer, "code"), "authorize_unavailable") << answer;
  EXPECT_EQ(close, 1008);
  expectRelayStillServes(relay());
}

TEST_F(AuthorizeHook, EveryKindOfBadAnswerIsAuthorizeUnavailable) {
  start();
  const std::vector<std::pair<std::string, HookReply>> cases{
      {"hk-500", {500, R"({"allow":true})", 0ms}},
      {"hk-403", {403, R"({"allow":true})", 0ms}},
      {"hk-notjson", {200, "allow", 0ms}},
      {"hk-noallow", {200, R"({"meshId":"hk-noallow"})", 0ms}},
      {"hk-badclaims", {200, R"({"allow":true,"claims":[1,2]})", 0ms}},
  };
  for (const auto& [meshId, reply] : cases) {
    ASSERT_EQ(relay().registerMesh(meshId, TestRelay::secretFor(meshId), "M"), 201);
    answers_.set(meshId, reply);
    int close = 0;
    const std::string answer = authFirstFrame(relay(), meshId, &close);
    EXPECT_EQ(jsonString(answer, "type"), "gateway_auth_error") << meshId << ": " << answer;
    EXPECT_EQ(jsonString(answer, "code"), "authorize_unavailable") << meshId << ": " << answer;
    EXPECT_EQ(close, 1008) << meshId;
  }
  EXPECT_EQ(metric(relay(), outcome("status")), 2);
  EXPECT_EQ(metric(relay(), outcome("bad_answer")), 3);
  expectRelayStillServes(relay());
}

TEST_F(AuthorizeHook, SlowHookTimesOutAsAuthorizeUnavailable) {
  start([](relay::Config& c) { c.authorizeTimeoutSeconds = 0.3; });
  ASSERT_EQ(relay().registerMesh("hk-slow", TestRelay::secretFor("hk-slow"), "S"), 201);
  answers_.set("hk-slow", {200, R"({"allow":true})", 8000ms});
  int close = 0;
  const auto began = std::chrono::steady_clock::now();
  const std::string answer = authFirstFrame(relay(), "hk-slow", &close);
  EXPECT_EQ(jsonString(answer, "code"), "authorize_unavailable") << answer;
  EXPECT_EQ(close, 1008);
  // Well before the hook's answer would have come.
  EXPECT_LT(std::chrono::steady_clock::now() - began, 7000ms);
  EXPECT_EQ(metric(relay(), outcome("timeout")), 1);
  expectRelayStillServes(relay());
}

TEST_F(AuthorizeHook, HookThatIsDownRefusesNewMeshesWhileConnectedOnesGoOn) {
  start([](relay::Config& c) { c.authorizeCacheTtlSeconds = 0; });
  auto a = relay().join("hk-up-a");
  auto b = relay().join("hk-up-b");
  hook_.reset();  // nothing listens on its port any more
  ASSERT_EQ(relay().registerMesh("hk-late", TestRelay::secretFor("hk-late"), "L"), 201);
  int close = 0;
  const std::string answer = authFirstFrame(relay(), "hk-late", &close);
  EXPECT_EQ(jsonString(answer, "code"), "authorize_unavailable") << answer;
  EXPECT_EQ(close, 1008);
  EXPECT_EQ(metric(relay(), outcome("unreachable")), 1);
  a->sendText(R"({"type":"gateway_relay","targetMeshId":"hk-up-b","payload":{"n":2}})");
  EXPECT_EQ(jsonString(b->expectType("gateway_incoming"), "fromMeshId"), "hk-up-a");
}

TEST_F(AuthorizeHook, PositiveAnswersAreCachedForTheirTtl) {
  start([](relay::Config& c) { c.authorizeCacheTtlSeconds = 60; });
  ASSERT_EQ(relay().registerMesh("hk-c", TestRelay::secretFor("hk-c"), "C"), 201);
  ASSERT_EQ(relay().registerMesh("hk-nc", TestRelay::secretFor("hk-nc"), "NC"), 201);
  answers_.set("hk-c", {200, R"({"allow":true,"claims":{"k":"v"}})", 0ms});
  answers_.set("hk-nc", {200, R"({"allow":true,"ttl":0})", 0ms});
  for (int i = 0; i < 2; ++i) {
    auto c = WsClient::connect(relay().port());
    c->sendText(TestRelay::authFrameFor("hk-c"));
    c->expectType("gateway_auth_ok");
    // The cached answer brings its claims along.
    EXPECT_NE(admin("/meshes/hk-c").body.find(R"("claims":{"k":"v"})"), std::string::npos) << i;
    c->close();
    auto n = WsClient::connect(relay().port());
    n->sendText(TestRelay::authFrameFor("hk-nc"));
    n->expectType("gateway_auth_ok");
    n->close();
  }
  EXPECT_EQ(callsFor("hk-c"), 1u);   // the second was answered from the cache
  EXPECT_EQ(callsFor("hk-nc"), 2u);  // "ttl": 0 is not kept
  EXPECT_EQ(metric(relay(), outcome("cached")), 1);
  // A denial is never cached.
  answers_.set("hk-c", {200, R"({"allow":false})", 0ms});
  ASSERT_EQ(relay().registerMesh("hk-d", TestRelay::secretFor("hk-d"), "D"), 201);
  answers_.set("hk-d", {200, R"({"allow":false})", 0ms});
  EXPECT_EQ(jsonString(authFirstFrame(relay(), "hk-d"), "code"), "not_authorized");
  EXPECT_EQ(jsonString(authFirstFrame(relay(), "hk-d"), "code"), "not_authorized");
  EXPECT_EQ(callsFor("hk-d"), 2u);
}

// Every way of proving the credentials goes through the hook: a resume
// token, and the Authorization header on the upgrade.
TEST_F(AuthorizeHook, ResumeTokensAndUpgradeCredentialsAreAuthorizedToo) {
  start([](relay::Config& c) { c.authorizeCacheTtlSeconds = 0; });
  ASSERT_EQ(relay().registerMesh("hk-r", TestRelay::secretFor("hk-r"), "R"), 201);
  std::string ok;
  relay().connectAs("hk-r", TestRelay::secretFor("hk-r"), "", &ok);
  const std::string token = jsonString(ok, "resumeToken");
  ASSERT_FALSE(token.empty());
  EXPECT_EQ(callsFor("hk-r"), 1u);
  answers_.set("hk-r", {200, R"({"allow":false,"reason":"revoked"})", 0ms});
  auto resumed = WsClient::connect(relay().port());
  resumed->sendText(R"({"type":"gateway_auth","meshId":"hk-r","resumeToken":")" + token + "\"}");
  EXPECT_EQ(jsonString(resumed->expectType("gateway_auth_error"), "code"), "not_authorized");
  EXPECT_EQ(callsFor("hk-r"), 2u);

  ConnectOptions opt;
  opt.extraHeaders = {"Authorization: Basic " +
                      ws::base64Encode("hk-r:" + TestRelay::secretFor("hk-r"))};
  auto header = WsClient::connect(relay().port(), opt);
  EXPECT_EQ(jsonString(header->expectType("gateway_auth_error"), "code"), "not_authorized");
  EXPECT_EQ(callsFor("hk-r"), 3u);
  answers_.set("hk-r", {200, R"({"allow":true,"claims":{"via":"header"}})", 0ms});
  auto allowed = WsClient::connect(relay().port(), opt);
  EXPECT_EQ(jsonString(allowed->expectType("gateway_auth_ok"), "meshId"), "hk-r");
  EXPECT_NE(admin("/meshes/hk-r").body.find(R"("claims":{"via":"header"})"), std::string::npos);
  expectRelayStillServes(relay());
}

// A mesh that proves itself with a signed token: the hook sees the token,
// and the session still ends with it although the hook answered later.
TEST_F(AuthorizeHook, TokenSessionsShowTheHookTheTokenAndStillExpire) {
  const std::string key = "an-hs256-secret-of-at-least-32-bytes!";
  start([&](relay::Config& c) {
    c.jwtSecret = key;
    c.jwtLeewaySeconds = 0;
  });
  ASSERT_EQ(relay().registerMesh("hk-tok", TestRelay::secretFor("hk-tok"), "T"), 201);
  const std::string token = JwtKey::hmac(key).sign(claimsFor("hk-tok", 3));
  auto c = WsClient::connect(relay().port());
  c->sendText(R"({"type":"gateway_auth","token":")" + token + "\"}");
  EXPECT_EQ(jsonString(c->expectType("gateway_auth_ok"), "meshId"), "hk-tok");
  ASSERT_EQ(callsFor("hk-tok"), 1u);
  EXPECT_EQ(jsonString(hook_->requests().back().body, "token"), token);
  EXPECT_EQ(jsonString(c->expectType("error", 10s), "code"), "token_expired");
  EXPECT_EQ(c->expectClose(10s), 4001);

  // The same by Authorization: Bearer on the upgrade.
  ConnectOptions opt;
  opt.extraHeaders = {"Authorization: Bearer " + JwtKey::hmac(key).sign(claimsFor("hk-tok", 3))};
  auto h = WsClient::connect(relay().port(), opt);
  EXPECT_EQ(jsonString(h->expectType("gateway_auth_ok"), "meshId"), "hk-tok");
  EXPECT_TRUE(jsonHas(hook_->requests().back().body, "token"));
  EXPECT_EQ(jsonString(h->expectType("error", 10s), "code"), "token_expired");
  EXPECT_EQ(h->expectClose(10s), 4001);
  expectRelayStillServes(relay());
}

// A hook URL libcurl would take for another protocol is refused at start.
TEST(AuthorizeHookFlags, UrlMustBeHttpOrHttps) {
  TempDir dir;
  try {
    RelayProcess relay(MESH_RELAY_BIN,
                       {"--db", dir.file("mesh.db"), "--authorize-url", "file:///etc/passwd"});
    ADD_FAILURE() << "the relay started";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("must start with http:// or https://"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace mesh::test
