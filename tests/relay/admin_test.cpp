// The admin API (/meshes, behind the admin token) and self-service secret
// rotation (/rotate-secret), against a real relay.
#include <gtest/gtest.h>

#include <tuple>

#include "support/test_relay.h"

namespace mesh::test {
namespace {

using namespace std::chrono_literals;

constexpr char kToken[] = "admin-token-0123456789abcdef";

std::string bearer(const std::string& token) {
  return "Authorization: Bearer " + token;
}

HttpResponse admin(const TestRelay& relay, const std::string& method, const std::string& path,
                   const std::string& body = {}) {
  return httpRequest(relay.port(), method, path, body, {bearer(kToken)});
}

void withAdminToken(relay::Config& c) {
  c.adminToken = kToken;
}

// Auth with a resume token; returns the auth answer's type and code.
std::pair<std::string, std::string> resume(std::uint16_t port, const std::string& meshId,
                                           const std::string& token) {
  auto c = WsClient::connect(port);
  c->sendText(R"({"type":"gateway_auth","meshId":")" + meshId + R"(","resumeToken":")" + token +
              "\"}");
  const WsMessage m = c->recv(5000ms);
  return {jsonString(m.data, "type"), jsonString(m.data, "code")};
}

std::string authAnswer(std::uint16_t port, const std::string& meshId, const std::string& secret) {
  auto c = WsClient::connect(port);
  c->sendText(R"({"type":"gateway_auth","meshId":")" + meshId + R"(","secret":")" + secret + "\"}");
  return jsonString(c->recv(5000ms).data, "type");
}

TEST(AdminApi, EveryRouteNeedsTheRightToken) {
  TestRelay relay(withAdminToken);
  ASSERT_EQ(relay.registerMesh("target", TestRelay::secretFor("target"), "T"), 201);
  const std::vector<std::tuple<std::string, std::string, int>> routes = {
      {"GET", "/meshes", 200},
      {"GET", "/meshes/target", 200},
      {"POST", "/meshes/target/secret", 200},
      {"DELETE", "/meshes/target", 200},
  };
  for (const auto& [method, path, expected] : routes) {
    SCOPED_TRACE(method + " " + path);
    EXPECT_EQ(httpRequest(relay.port(), method, path).status, 401);
    EXPECT_EQ(httpRequest(relay.port(), method, path, {}, {bearer("wrong-token")}).status, 401);
    EXPECT_EQ(httpRequest(relay.port(), method, path, {}, {"Authorization: " + std::string(kToken)})
                  .status,
              401);
    EXPECT_EQ(admin(relay, method, path).status, expected);
  }
  // Unknown methods and meshes answer only behind the token too.
  EXPECT_EQ(httpRequest(relay.port(), "PUT", "/meshes").status, 401);
  EXPECT_EQ(admin(relay, "PUT", "/meshes").status, 405);
  EXPECT_EQ(httpRequest(relay.port(), "GET", "/meshes/nobody").status, 401);
  EXPECT_EQ(admin(relay, "GET", "/meshes/nobody").status, 404);
  EXPECT_EQ(admin(relay, "DELETE", "/meshes/nobody").status, 404);
  EXPECT_EQ(admin(relay, "POST", "/meshes/nobody/secret").status, 404);
}

TEST(AdminApi, NoTokenConfiguredMeansNoAdminAccess) {
  TestRelay relay;
  EXPECT_EQ(httpRequest(relay.port(), "GET", "/meshes").status, 401);
  EXPECT_EQ(httpRequest(relay.port(), "GET", "/meshes", {}, {"Authorization: Bearer "}).status,
            401);
  EXPECT_EQ(httpRequest(relay.port(), "GET", "/meshes", {}, {bearer("")}).status, 401);
}

TEST(AdminApi, ListsMeshesOnlineOrNot) {
  TestRelay relay(withAdminToken);
  auto a = relay.join("list-a");
  ASSERT_EQ(relay.registerMesh("list-b", TestRelay::secretFor("list-b"), "Mesh B"), 201);

  const auto all = admin(relay, "GET", "/meshes");
  ASSERT_EQ(all.status, 200);
  const auto doc = json(all.body);
  ASSERT_TRUE(doc["meshes"].IsArray());
  ASSERT_EQ(doc["meshes"].Size(), 2u);
  for (const auto& m : doc["meshes"].GetArray()) {
    const std::string id = m["meshId"].GetString();
    EXPECT_EQ(m["online"].GetBool(), id == "list-a") << id;
    EXPECT_TRUE(m["createdAt"].IsString()) << id;
    EXPECT_EQ(m["lastSeen"].IsNull(), id == "list-b") << id;
  }
  const auto one = admin(relay, "GET", "/meshes/list-b");
  ASSERT_EQ(one.status, 200);
  EXPECT_EQ(jsonString(one.body, "name"), "Mesh B");
  EXPECT_FALSE(jsonBool(one.body, "online", true));
}

TEST(AdminApi, DeleteClosesSessionsAndKillsTokens) {
  TestRelay relay(withAdminToken);
  std::string authOk;
  auto doomed = relay.join("doomed", "", &authOk);
  auto watcher = relay.join("watcher", R"("presence":true)");
  const std::string token = jsonString(authOk, "resumeToken");
  ASSERT_FALSE(token.empty());

  ASSERT_EQ(admin(relay, "DELETE", "/meshes/doomed").status, 200);
  EXPECT_EQ(jsonString(doomed->expectType("gateway_auth_error"), "code"), "invalid_credentials");
  EXPECT_EQ(doomed->expectClose(3000ms), 1008);
  const std::string presence = watcher->expectType("gateway_presence");
  EXPECT_EQ(jsonString(presence, "status"), "offline");

  EXPECT_EQ(resume(relay.port(), "doomed", token).second, "invalid_credentials");
  EXPECT_EQ(authAnswer(relay.port(), "doomed", TestRelay::secretFor("doomed")),
            "gateway_auth_error");
  EXPECT_EQ(admin(relay, "GET", "/meshes/doomed").status, 404);
  EXPECT_EQ(admin(relay, "DELETE", "/meshes/doomed").status, 404);
}

TEST(AdminApi, RotationKillsOldSessionsTokensAndSecret) {
  TestRelay relay(withAdminToken);
  std::string authOk;
  auto old = relay.join("rotated", "", &authOk);
  const std::string token = jsonString(authOk, "resumeToken");

  const auto answer = admin(relay, "POST", "/meshes/rotated/secret");
  ASSERT_EQ(answer.status, 200) << answer.body;
  const std::string fresh = jsonString(answer.body, "secret");
  EXPECT_GE(fresh.size(), 16u);
  EXPECT_EQ(old->expectClose(3000ms), 1008);

  EXPECT_EQ(resume(relay.port(), "rotated", token).second, "invalid_credentials");
  EXPECT_EQ(authAnswer(relay.port(), "rotated", TestRelay::secretFor("rotated")),
            "gateway_auth_error");
  EXPECT_EQ(authAnswer(relay.port(), "rotated", fresh), "gateway_auth_ok");

  // An operator may choose the secret; it is not echoed back.
  const auto chosen =
      admin(relay, "POST", "/meshes/rotated/secret", R"({"secret":"chosen-by-operator-42"})");
  ASSERT_EQ(chosen.status, 200);
  EXPECT_FALSE(jsonHas(chosen.body, "secret"));
  EXPECT_EQ(authAnswer(relay.port(), "rotated", "chosen-by-operator-42"), "gateway_auth_ok");
  EXPECT_EQ(admin(relay, "POST", "/meshes/rotated/secret", R"({"secret":"short"})").status, 400);
  EXPECT_EQ(admin(relay, "POST", "/meshes/rotated/secret", "not json").status, 400);
  EXPECT_EQ(admin(relay, "GET", "/meshes/rotated/secret").status, 405);
}

TEST(SelfRotation, MeshProvesItsCurrentSecret) {
  TestRelay relay;
  std::string authOk;
  auto old = relay.join("self", "", &authOk);
  const std::string token = jsonString(authOk, "resumeToken");
  auto rotate = [&](const std::string& body) {
    return httpRequest(relay.port(), "POST", "/rotate-secret", body);
  };
  const std::string current = TestRelay::secretFor("self");

  EXPECT_EQ(rotate(R"({"meshId":"self","secret":"wrong-secret-0123456789","newSecret":)"
                   R"("next-secret-0123456789"})")
                .status,
            401);
  EXPECT_EQ(rotate(R"({"meshId":"nobody","secret":"wrong-secret-0123456789","newSecret":)"
                   R"("next-secret-0123456789"})")
                .status,
            401);
  EXPECT_EQ(rotate(R"({"meshId":"self","secret":")" + current + R"("})").status, 400);
  EXPECT_EQ(rotate(R"({"meshId":"self","secret":")" + current + R"(","newSecret":"short"})").status,
            400);
  EXPECT_EQ(rotate("{nope").status, 400);
  EXPECT_EQ(httpRequest(relay.port(), "GET", "/rotate-secret").status, 405);
  // Nothing changed so far.
  EXPECT_EQ(authAnswer(relay.port(), "self", current), "gateway_auth_ok");

  const auto ok = rotate(R"({"meshId":"self","secret":")" + current +
                         R"(","newSecret":"next-secret-0123456789"})");
  EXPECT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(authAnswer(relay.port(), "self", current), "gateway_auth_error");
  EXPECT_EQ(authAnswer(relay.port(), "self", "next-secret-0123456789"), "gateway_auth_ok");
  EXPECT_EQ(resume(relay.port(), "self", token).second, "invalid_credentials");
}

TEST(SelfRotation, SharesTheRegistrationRateLimit) {
  TestRelay relay([](relay::Config& c) {
    c.registerBurst = 2;
    c.registerRatePerSecond = 0.001;
  });
  ASSERT_EQ(relay.registerMesh("busy", TestRelay::secretFor("busy"), "B"), 201);
  const std::string body = R"({"meshId":"busy","secret":"wrong-secret-0123456789",)"
                           R"("newSecret":"next-secret-0123456789"})";
  EXPECT_EQ(httpRequest(relay.port(), "POST", "/rotate-secret", body).status, 401);
  EXPECT_EQ(httpRequest(relay.port(), "POST", "/rotate-secret", body).status, 429);
}

}  // namespace
}  // namespace mesh::test
