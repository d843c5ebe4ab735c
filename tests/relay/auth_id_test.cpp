// The `id` of a gateway_auth frame comes back on the answer it caused,
// gateway_auth_ok or gateway_auth_error, whichever way the mesh
// authenticated; an answer to a frame without one has none.
#include <gtest/gtest.h>

#include "support/test_relay.h"

namespace mesh::test {
namespace {

std::string authFrame(const std::string& meshId, const std::string& credential,
                      const std::string& id) {
  std::string frame = R"({"type":"gateway_auth","meshId":")" + meshId + "\"," + credential;
  if (!id.empty()) frame += R"(,"id":")" + id + "\"";
  return frame + "}";
}

std::string secretOf(const std::string& meshId) {
  return R"("secret":")" + TestRelay::secretFor(meshId) + "\"";
}

bool hasId(const std::string& frame) {
  return json(frame).HasMember("id");
}

TEST(AuthId, AuthOkCarriesTheIdOfASecretAuth) {
  TestRelay relay;
  ASSERT_EQ(relay.registerMesh("mesh-a", TestRelay::secretFor("mesh-a"), "A"), 201);
  auto c = WsClient::connect(relay.port());
  c->sendText(authFrame("mesh-a", secretOf("mesh-a"), "auth-1"));
  const std::string ok = c->expectType("gateway_auth_ok");
  EXPECT_EQ(jsonString(ok, "id"), "auth-1") << ok;

  // Without an id the answer has none.
  auto d = WsClient::connect(relay.port());
  d->sendText(authFrame("mesh-a", secretOf("mesh-a"), ""));
  EXPECT_FALSE(hasId(d->expectType("gateway_auth_ok")));
  expectRelayStillServes(relay);
}

TEST(AuthId, AuthOkCarriesTheIdOfAResumeTokenAuth) {
  TestRelay relay;
  std::string first;
  auto c = relay.join("mesh-a", "", &first);
  const std::string token = jsonString(first, "resumeToken");
  auto d = WsClient::connect(relay.port());
  d->sendText(authFrame("mesh-a", R"("resumeToken":")" + token + "\"", "resume-7"));
  const std::string ok = d->expectType("gateway_auth_ok");
  EXPECT_EQ(jsonString(ok, "id"), "resume-7") << ok;
  expectRelayStillServes(relay);
}

TEST(AuthId, AuthErrorCarriesTheIdOfTheFailedAuth) {
  TestRelay relay;
  ASSERT_EQ(relay.registerMesh("mesh-a", TestRelay::secretFor("mesh-a"), "A"), 201);
  const std::vector<std::string> failing{
      authFrame("mesh-a", R"("secret":"wrong-secret-0000")", "x1"),        // wrong secret
      authFrame("nobody", R"("secret":"wrong-secret-0000")", "x1"),        // unknown mesh
      authFrame("bad id!", R"("secret":"wrong-secret-0000")", "x1"),       // malformed id
      authFrame("mesh-a", R"("resumeToken":"not-a-token-at-all")", "x1"),  // bad token
  };
  for (const std::string& frame : failing) {
    auto c = WsClient::connect(relay.port());
    c->sendText(frame);
    const std::string err = c->expectType("gateway_auth_error");
    EXPECT_EQ(jsonString(err, "code"), "invalid_credentials") << frame;
    EXPECT_EQ(jsonString(err, "id"), "x1") << frame << " -> " << err;
    EXPECT_EQ(c->expectClose(), 1008);
  }
  auto c = WsClient::connect(relay.port());
  c->sendText(authFrame("mesh-a", R"("secret":"wrong-secret-0000")", ""));
  EXPECT_FALSE(hasId(c->expectType("gateway_auth_error")));
  expectRelayStillServes(relay);
}

TEST(AuthId, ErrorsAboutAParsedAuthFrameCarryItsId) {
  TestRelay relay;
  auto c = WsClient::connect(relay.port());
  // Neither secret nor token: refused by the decoder, with the id.
  c->sendText(R"({"type":"gateway_auth","meshId":"mesh-a","id":"bare"})");
  const std::string err = c->expectType("error");
  EXPECT_EQ(jsonString(err, "code"), "invalid_frame") << err;
  EXPECT_EQ(jsonString(err, "id"), "bare") << err;

  // A second auth on an authenticated connection.
  auto a = relay.join("mesh-a");
  a->sendText(authFrame("mesh-a", secretOf("mesh-a"), "again"));
  const std::string twice = a->expectType("error");
  EXPECT_EQ(jsonString(twice, "code"), "already_authenticated") << twice;
  EXPECT_EQ(jsonString(twice, "id"), "again") << twice;
  expectRelayStillServes(relay);
}

TEST(AuthId, AuthRefusedByTheFailureBudgetCarriesItsId) {
  TestRelay relay([](relay::Config& c) {
    c.authFailureBurst = 1;
    c.authFailureRate = 0.001;
  });
  ASSERT_EQ(relay.registerMesh("mesh-a", TestRelay::secretFor("mesh-a"), "A"), 201);
  auto spend = WsClient::connect(relay.port(), fromAddress("127.0.0.2"));
  spend->sendText(authFrame("mesh-a", R"("secret":"wrong-secret-0000")", "f1"));
  EXPECT_EQ(jsonString(spend->expectType("gateway_auth_error"), "id"), "f1");

  auto c = WsClient::connect(relay.port(), fromAddress("127.0.0.2"));
  c->sendText(authFrame("mesh-a", secretOf("mesh-a"), "f2"));
  const std::string err = c->expectType("error");
  EXPECT_EQ(jsonString(err, "code"), "rate_limited") << err;
  EXPECT_EQ(jsonString(err, "id"), "f2") << err;
  EXPECT_EQ(c->expectClose(), 1008);
  expectRelayStillServes(relay);
}

}  // namespace
}  // namespace mesh::test
