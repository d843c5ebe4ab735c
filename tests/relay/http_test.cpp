// HTTP routes: PROTOCOL.md's /register and /health tables, row by row.
#include <gtest/gtest.h>

#include "support/test_relay.h"

namespace mesh::test {
namespace {

std::string body(const std::string& meshId, const std::string& secret, const std::string& name) {
  return R"({"meshId":")" + meshId + R"(","secret":")" + secret + R"(","name":")" + name + R"("})";
}

HttpResponse postRegister(const TestRelay& relay, const std::string& b,
                          const std::vector<std::string>& headers = {}) {
  return httpRequest(relay.port(), "POST", "/register", b, headers);
}

TEST(HttpRoutes, HealthCountsAuthenticatedMeshes) {
  TestRelay relay;
  auto r = httpRequest(relay.port(), "GET", "/health");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, R"({"ok":true,"connected":0})");
  auto a = relay.join("mesh-a");
  auto pending = WsClient::connect(relay.port());  // not authenticated: not counted
  r = httpRequest(relay.port(), "GET", "/health");
  EXPECT_EQ(r.body, R"({"ok":true,"connected":1})");
}

TEST(HttpRoutes, ProbesAnswer) {
  TestRelay relay;
  EXPECT_EQ(httpRequest(relay.port(), "GET", "/healthz").status, 200);
  EXPECT_EQ(httpRequest(relay.port(), "GET", "/readyz").status, 200);
}

TEST(HttpRoutes, UnknownPathsAre404) {
  TestRelay relay;
  EXPECT_EQ(httpRequest(relay.port(), "GET", "/nope").status, 404);
  EXPECT_EQ(httpRequest(relay.port(), "GET", "/register").status, 404);
  EXPECT_EQ(httpRequest(relay.port(), "POST", "/health", "{}").status, 404);
  EXPECT_THROW(WsClient::connect(relay.port(), onPath("/elsewhere")), std::runtime_error);
}

TEST(Registration, NewMeshIsCreated) {
  TestRelay relay;
  auto r = postRegister(relay, body("mesh-a", "0123456789abcdef", "Alpha"));
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(r.body, R"({"ok":true,"created":true})");
}

TEST(Registration, SameSecretUpdatesName) {
  TestRelay relay;
  ASSERT_EQ(postRegister(relay, body("mesh-a", "0123456789abcdef", "Alpha")).status, 201);
  auto r = postRegister(relay, body("mesh-a", "0123456789abcdef", "Alpha Two"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, R"({"ok":true,"created":false})");
  std::string ok;
  auto c = relay.connectAs("mesh-a", "0123456789abcdef", "", &ok);
  EXPECT_EQ(jsonString(ok, "name"), "Alpha Two");
}

TEST(Registration, OtherSecretIsConflictAndChangesNothing) {
  TestRelay relay;
  ASSERT_EQ(postRegister(relay, body("mesh-a", "0123456789abcdef", "Alpha")).status, 201);
  auto r = postRegister(relay, body("mesh-a", "fedcba9876543210", "Hijacked"));
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(r.body, R"({"error":"meshId already registered"})");
  std::string ok;
  auto c = relay.connectAs("mesh-a", "0123456789abcdef", "", &ok);
  EXPECT_EQ(jsonString(ok, "name"), "Alpha");
}

TEST(Registration, BadRequestsAre400WithReason) {
  TestRelay relay;
  struct Case {
    std::string body;
    std::string errorContains;
  };
  const std::vector<Case> cases = {
      {"not json", "Invalid JSON"},
      {R"({"meshId":"a","name":"x"})", "meshId, secret, and name required"},
      {R"({"meshId":"a","secret":"0123456789abcdef"})", "meshId, secret, and name required"},
      {R"({"meshId":5,"secret":"0123456789abcdef","name":"x"})",
       "meshId, secret, and name required"},
      {body("bad id!", "0123456789abcdef", "x"), "meshId"},
      {body(std::string(65, 'a'), "0123456789abcdef", "x"), "meshId"},
      {body("mesh-a", "short", "x"), "secret"},
      {body("mesh-a", std::string(257, 's'), "x"), "secret"},
      {body("mesh-a", "0123456789abcdef", std::string(129, 'n')), "name"},
  };
  for (const auto& c : cases) {
    auto r = postRegister(relay, c.body);
    EXPECT_EQ(r.status, 400) << c.body;
    EXPECT_NE(jsonString(r.body, "error").find(c.errorContains), std::string::npos)
        << c.body << " -> " << r.body;
  }
  // Nothing above was registered, and the relay still registers others.
  EXPECT_EQ(postRegister(relay, body("mesh-a", "0123456789abcdef", "Alpha")).status, 201);
}

TEST(Registration, OversizedBodyIs413) {
  TestRelay relay;
  const std::string big = body("mesh-a", "0123456789abcdef", std::string(20000, 'n'));
  EXPECT_EQ(postRegister(relay, big).status, 413);
  EXPECT_EQ(postRegister(relay, body("mesh-b", "0123456789abcdef", "Beta")).status, 201);
}

TEST(Registration, TooManyFromOneAddressIs429) {
  TestRelay relay([](relay::Config& c) {
    c.registerBurst = 5;
    c.registerRatePerSecond = 0.001;
  });
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(
        postRegister(relay, body("mesh-" + std::to_string(i), "0123456789abcdef", "m")).status,
        201);
  }
  EXPECT_EQ(postRegister(relay, body("mesh-x", "0123456789abcdef", "m")).status, 429);
  // Another address is not affected, and WebSocket traffic goes on.
  auto other = WsClient::connect(relay.port(), fromAddress("127.0.0.2"));
  other->sendText(R"({"type":"gateway_auth","meshId":"mesh-1","secret":"0123456789abcdef"})");
  EXPECT_NO_THROW(other->expectType("gateway_auth_ok"));
}

TEST(Registration, DefaultBurstAllowsScriptedBulkRegistration) {
  TestRelay relay;
  for (int i = 0; i < 300; ++i) {
    ASSERT_EQ(
        postRegister(relay, body("bulk-" + std::to_string(i), "0123456789abcdef", "m")).status, 201)
        << i;
  }
}

TEST(Registration, TokenPolicyNeedsAdminToken) {
  TestRelay relay([](relay::Config& c) {
    c.registration = relay::RegistrationPolicy::Token;
    c.adminToken = "admin-token-0123456789";
  });
  const std::string b = body("mesh-a", "0123456789abcdef", "Alpha");
  EXPECT_EQ(postRegister(relay, b).status, 401);
  EXPECT_EQ(postRegister(relay, b, {"Authorization: Bearer wrong"}).status, 401);
  EXPECT_EQ(postRegister(relay, b, {"Authorization: Bearer admin-token-0123456789"}).status, 201);
}

TEST(Registration, ClosedPolicyRefusesSelfService) {
  TestRelay relay([](relay::Config& c) { c.registration = relay::RegistrationPolicy::Closed; });
  EXPECT_EQ(postRegister(relay, body("mesh-a", "0123456789abcdef", "Alpha")).status, 403);
}

}  // namespace
}  // namespace mesh::test
