// Signed tokens against a real relay: gateway_auth with "token", each kind
// of refusal (invalid_credentials, counted by reason, the relay still
// serving others), token_expired then close 4001, gateway_reauth, auto
// registration, a JWKS file re-read on SIGHUP by the real executable, and a
// JWKS URL served over HTTPS by the test and fetched again on an unknown kid.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "support/https_server.h"
#include "support/jwt_signer.h"
#include "support/metrics_scrape.h"
#include "support/relay_process.h"
#include "support/test_relay.h"

namespace mesh::test {
namespace {

using namespace std::chrono_literals;

constexpr char kAudience[] = "mesh-relay-test";

std::string refusals(const std::string& reason) {
  return "mesh_relay_token_refusals_total{reason=\"" + reason + "\"}";
}

std::string authFrame(const std::string& token, const std::string& meshId = "") {
  std::string frame = R"({"type":"gateway_auth","token":")" + token + "\"";
  if (!meshId.empty()) frame += R"(,"meshId":")" + meshId + "\"";
  return frame + R"(,"id":"a1"})";
}

// Authenticates with `token`: the gateway_auth_ok text, or "" after a
// refusal, which must be invalid_credentials followed by close 1008.
std::string authWithToken(std::uint16_t port, const std::string& token,
                          const std::string& meshId = "",
                          std::unique_ptr<WsClient>* keep = nullptr) {
  auto c = WsClient::connect(port);
  c->sendText(authFrame(token, meshId));
  const WsMessage m = c->recv(10s);
  if (m.kind != WsMessage::Kind::Text) {
    ADD_FAILURE() << "no answer: " << kindName(m.kind);
    return "";
  }
  if (jsonString(m.data, "type") == "gateway_auth_ok") {
    if (keep) *keep = std::move(c);
    return m.data;
  }
  EXPECT_EQ(jsonString(m.data, "type"), "gateway_auth_error") << m.data;
  EXPECT_EQ(jsonString(m.data, "code"), "invalid_credentials") << m.data;
  EXPECT_EQ(jsonString(m.data, "id"), "a1");
  EXPECT_EQ(c->expectClose(), 1008);
  return "";
}

class TokenRelay : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ec = new JwtKey(JwtKey::ec("ec-1"));
    rsa = new JwtKey(JwtKey::rsa("rsa-1"));
    ed = new JwtKey(JwtKey::ed25519("ed-1"));
  }
  static void TearDownTestSuite() {
    delete ec;
    delete rsa;
    delete ed;
  }

  // A relay that trusts the three keys through a JWKS file.
  std::unique_ptr<TestRelay> start(const std::function<void(relay::Config&)>& more = {}) {
    { std::ofstream(keysDir.file("jwks.json")) << jwksOf({ec, rsa, ed}); }
    return std::make_unique<TestRelay>([&](relay::Config& c) {
      c.jwtJwksFile = keysDir.file("jwks.json");
      c.jwtAudience = kAudience;
      c.authFailureBurst = 100;  // the refusals below are many, from one address
      if (more) more(c);
    });
  }
  static std::string aud() { return std::string(R"("aud":")") + kAudience + "\""; }

  TempDir keysDir;
  static JwtKey* ec;
  static JwtKey* rsa;
  static JwtKey* ed;
};
JwtKey* TokenRelay::ec = nullptr;
JwtKey* TokenRelay::rsa = nullptr;
JwtKey* TokenRelay::ed = nullptr;

TEST_F(TokenRelay, EachKeyTypeAuthenticatesARegisteredMeshWithoutResumeToken) {
  auto relay = start();
  ASSERT_EQ(relay->registerMesh("tok-a", TestRelay::secretFor("tok-a"), "Mesh A"), 201);
  for (const JwtKey* key : {ec, rsa, ed}) {
    std::unique_ptr<WsClient> c;
    const std::string ok = authWithToken(relay->port(), key->sign(claimsFor("tok-a", 300, aud())),
                                         key == ec ? "tok-a" : "", &c);
    ASSERT_FALSE(ok.empty()) << key->alg();
    EXPECT_EQ(jsonString(ok, "meshId"), "tok-a");
    EXPECT_EQ(jsonString(ok, "name"), "Mesh A");
    EXPECT_EQ(jsonString(ok, "id"), "a1");
    // A resume token would outlive the signed one.
    EXPECT_FALSE(jsonHas(ok, "resumeToken")) << ok;
  }
  // Routing and the rate limits key on the token's meshId.
  std::unique_ptr<WsClient> tokenNode;
  ASSERT_FALSE(
      authWithToken(relay->port(), ed->sign(claimsFor("tok-a", 300, aud())), "", &tokenNode)
          .empty());
  auto secretNode = relay->join("secret-b");
  secretNode->sendText(R"({"type":"gateway_relay","targetMeshId":"tok-a","payload":{"n":1}})");
  EXPECT_EQ(jsonString(tokenNode->expectType("gateway_incoming"), "fromMeshId"), "secret-b");
  tokenNode->sendText(R"({"type":"gateway_relay","targetMeshId":"secret-b","payload":{"n":2}})");
  EXPECT_EQ(jsonString(secretNode->expectType("gateway_incoming"), "fromMeshId"), "tok-a");
  EXPECT_EQ(metricValue(relay->port(), "mesh_relay_token_auths_total"), 4);
}

TEST_F(TokenRelay, EachRefusalIsInvalidCredentialsCountedByReason) {
  auto relay = start();
  ASSERT_EQ(relay->registerMesh("victim", TestRelay::secretFor("victim"), "Victim"), 201);
  const std::string good = claimsFor("victim", 300, aud());
  const std::int64_t now = unixNow();
  const JwtKey stranger = JwtKey::ec("ec-unknown");
  // The claims of one token under the signature of another.
  const std::string t1 = ec->sign(good);
  const std::string t2 = ec->sign(claimsFor("victim", 301, aud()));
  const std::string resigned = t1.substr(0, t1.rfind('.')) + t2.substr(t2.rfind('.'));
  struct Case {
    std::string reason;
    std::string token;
    std::string meshId;
  };
  const std::vector<Case> cases = {
      {"alg_none", unsignedToken(R"({"alg":"none","kid":"ec-1"})", good), ""},
      // HS256 "signed" with the RSA public key's PEM as the HMAC secret.
      {"key_mismatch", hmacToken(rsa->publicPem(), R"({"alg":"HS256","kid":"rsa-1"})", good), ""},
      {"unknown_kid", stranger.sign(good), ""},
      {"wrong_audience", ec->sign(claimsFor("victim", 300, R"("aud":"another-service")")), ""},
      {"expired",
       ec->sign(R"({"sub":"victim","exp":)" + std::to_string(now - 3600) + "," + aud() + "}"), ""},
      {"bad_signature", resigned, ""},
      {"malformed", "not.a.token", ""},
      {"mesh_mismatch", ec->sign(good), "someone-else"},
      {"unknown_mesh", ec->sign(claimsFor("never-registered", 300, aud())), ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.reason);
    EXPECT_EQ(authWithToken(relay->port(), c.token, c.meshId), "");
  }
  for (const Case& c : cases) {
    EXPECT_EQ(metricValue(relay->port(), refusals(c.reason)), 1) << c.reason;
  }
  EXPECT_EQ(
      metricValue(relay->port(), R"(mesh_relay_auth_failures_total{reason="invalid_credentials"})"),
      static_cast<double>(cases.size()));
  // The real token still works, and so does everyone else.
  EXPECT_FALSE(authWithToken(relay->port(), ec->sign(good)).empty());
  expectRelayStillServes(*relay);
}

TEST_F(TokenRelay, RefusedTokensSpendTheFailureBudget) {
  auto relay = start([](relay::Config& c) {
    c.authFailureBurst = 2;
    c.authFailureRate = 0.001;
  });
  ASSERT_EQ(relay->registerMesh("budget", TestRelay::secretFor("budget"), "B"), 201);
  const JwtKey stranger = JwtKey::ed25519("ed-unknown");
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(authWithToken(relay->port(), stranger.sign(claimsFor("budget", 60, aud()))), "");
  }
  // The address has spent its budget: the next bad token is rate_limited.
  auto c = WsClient::connect(relay->port());
  c->sendText(authFrame(stranger.sign(claimsFor("budget", 60, aud()))));
  const std::string answer = c->expectType("error");
  EXPECT_EQ(jsonString(answer, "code"), "rate_limited");
  EXPECT_EQ(c->expectClose(), 1008);
}

TEST_F(TokenRelay, TheSessionIsWarnedThenClosedWhenItsTokenExpires) {
  auto relay = start([](relay::Config& c) { c.jwtLeewaySeconds = 0; });
  ASSERT_EQ(relay->registerMesh("short", TestRelay::secretFor("short"), "Short"), 201);
  std::unique_ptr<WsClient> c;
  ASSERT_FALSE(
      authWithToken(relay->port(), ed->sign(claimsFor("short", 3, aud())), "", &c).empty());
  const std::string warning = c->expectType("error", 10s);
  EXPECT_EQ(jsonString(warning, "code"), "token_expired");
  EXPECT_EQ(c->expectClose(10s), 4001);
  EXPECT_EQ(metricValue(relay->port(), "mesh_relay_token_expiry_warnings_total"), 1);
  EXPECT_EQ(metricValue(relay->port(), "mesh_relay_token_sessions_expired_total"), 1);
  expectRelayStillServes(*relay);
}

TEST_F(TokenRelay, ReauthWithAFreshTokenKeepsTheSessionOpen) {
  auto relay = start([](relay::Config& c) { c.jwtLeewaySeconds = 0; });
  ASSERT_EQ(relay->registerMesh("renew", TestRelay::secretFor("renew"), "Renew"), 201);
  ASSERT_EQ(relay->registerMesh("other", TestRelay::secretFor("other"), "Other"), 201);
  std::unique_ptr<WsClient> c;
  // A token that alone would end the session within 3 s (the test above).
  ASSERT_FALSE(
      authWithToken(relay->port(), ec->sign(claimsFor("renew", 3, aud())), "", &c).empty());

  // A token for another mesh, or one that does not verify, is refused and
  // changes nothing; the session stays open meanwhile.
  c->sendText(R"({"type":"gateway_reauth","id":"r0","token":")" +
              ec->sign(claimsFor("other", 600, aud())) + "\"}");
  std::string refused = c->expectType("error");
  EXPECT_EQ(jsonString(refused, "code"), "invalid_credentials");
  EXPECT_EQ(jsonString(refused, "id"), "r0");

  c->sendText(R"({"type":"gateway_reauth","id":"r1","token":")" +
              rsa->sign(claimsFor("renew", 600, aud())) + "\"}");
  const std::string ok = c->expectType("gateway_reauth_ok");
  EXPECT_EQ(jsonString(ok, "meshId"), "renew");
  EXPECT_EQ(jsonString(ok, "id"), "r1");
  EXPECT_FALSE(jsonString(ok, "expiresAt").empty());
  // Past the first token's end the session is still there. (A warning sent
  // before the reauth arrived may still come in; nothing else may.)
  const auto until = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < until) {
    const WsMessage m = c->recv(500ms);
    if (m.kind == WsMessage::Kind::Timeout) continue;
    ASSERT_EQ(m.kind, WsMessage::Kind::Text) << kindName(m.kind) << " " << m.closeCode;
    EXPECT_EQ(jsonString(m.data, "code"), "token_expired") << m.data;
  }
  c->sendText(R"({"type":"gateway_discover","id":"d"})");
  EXPECT_EQ(jsonString(c->expectType("gateway_discover_result"), "id"), "d");
  EXPECT_EQ(metricValue(relay->port(), "mesh_relay_token_reauths_total"), 1);
  EXPECT_EQ(metricValue(relay->port(), "mesh_relay_token_sessions_expired_total"), 0);
  EXPECT_EQ(metricValue(relay->port(), refusals("mesh_mismatch")), 1);

  // A session that came with a secret has no token to renew.
  auto secretNode = relay->join("secret-node");
  secretNode->sendText(R"({"type":"gateway_reauth","id":"r2","token":")" +
                       ec->sign(claimsFor("secret-node", 600, aud())) + "\"}");
  EXPECT_EQ(jsonString(secretNode->expectType("error"), "code"), "invalid_frame");
}

TEST_F(TokenRelay, AutoRegisterCreatesASecretlessMeshNamedByTheToken) {
  auto relay = start([](relay::Config& c) { c.jwtAutoRegister = true; });
  const std::string ok = authWithToken(
      relay->port(), ed->sign(claimsFor("brand-new", 300, aud() + R"(,"name":"Brand New")")));
  ASSERT_FALSE(ok.empty());
  EXPECT_EQ(jsonString(ok, "name"), "Brand New");
  EXPECT_EQ(metricValue(relay->port(), "mesh_relay_token_meshes_registered_total"), 1);
  // No secret was stored: none matches, and none can claim the meshId.
  EXPECT_EQ(relay->registerMesh("brand-new", TestRelay::secretFor("brand-new"), "Thief"), 409);
  auto c = WsClient::connect(relay->port());
  c->sendText(R"({"type":"gateway_auth","meshId":"brand-new","secret":")" +
              TestRelay::secretFor("brand-new") + "\"}");
  EXPECT_EQ(jsonString(c->expectType("gateway_auth_error"), "code"), "invalid_credentials");
  // The second token finds the mesh registered, name and all.
  const std::string again = authWithToken(
      relay->port(), ec->sign(claimsFor("brand-new", 300, aud() + R"(,"name":"Renamed")")));
  EXPECT_EQ(jsonString(again, "name"), "Brand New");
  EXPECT_EQ(metricValue(relay->port(), "mesh_relay_token_meshes_registered_total"), 1);
  expectRelayStillServes(*relay);
}

TEST(TokenRelayConfig, HmacSecretWorksAndAShortOneRefusesToStart) {
  const std::string secret = "an-hs256-secret-of-at-least-32-bytes!";
  TestRelay relay([&](relay::Config& c) { c.jwtSecret = secret; });
  ASSERT_EQ(relay.registerMesh("hs", TestRelay::secretFor("hs"), "HS"), 201);
  EXPECT_FALSE(authWithToken(relay.port(), JwtKey::hmac(secret).sign(claimsFor("hs", 60))).empty());
  EXPECT_EQ(authWithToken(relay.port(), JwtKey::hmac(secret + "x").sign(claimsFor("hs", 60))), "");
  // An EdDSA token with no key of its type configured.
  EXPECT_EQ(authWithToken(relay.port(), JwtKey::ed25519("").sign(claimsFor("hs", 60))), "");
  EXPECT_EQ(metricValue(relay.port(), refusals("bad_signature")), 1);
  EXPECT_EQ(metricValue(relay.port(), refusals("key_mismatch")), 1);

  EXPECT_THROW(TestRelay([](relay::Config& c) { c.jwtSecret = "too-short-0123456789"; }),
               std::runtime_error);
  EXPECT_THROW(TestRelay([](relay::Config& c) { c.jwtJwksUrl = "http://127.0.0.1/jwks"; }),
               std::runtime_error);
  // Without any key source a token is refused like a wrong secret.
  TestRelay none;
  ASSERT_EQ(none.registerMesh("hs", TestRelay::secretFor("hs"), "HS"), 201);
  EXPECT_EQ(authWithToken(none.port(), JwtKey::hmac(secret).sign(claimsFor("hs", 60))), "");
  expectRelayStillServes(none);
}

TEST(TokenRelayProcess, SighupReadsTheJwksFileAgain) {
  TempDir dir;
  const JwtKey first = JwtKey::ec("first");
  const JwtKey second = JwtKey::ed25519("second");
  const std::string jwks = dir.file("jwks.json");
  { std::ofstream(jwks) << jwksOf({&first}); }
  RelayProcess relay(MESH_RELAY_BIN,
                     {"--db", dir.file("mesh.db"), "--argon2-ops", "1", "--argon2-mem", "8192",
                      "--drain-timeout", "1", "--jwt-jwks-file", jwks});
  ASSERT_EQ(
      httpRequest(relay.port(), "POST", "/register", TestRelay::registerBodyFor("hup")).status,
      201);
  EXPECT_FALSE(authWithToken(relay.port(), first.sign(claimsFor("hup", 60))).empty());
  EXPECT_EQ(authWithToken(relay.port(), second.sign(claimsFor("hup", 60))), "");

  { std::ofstream(jwks) << jwksOf({&first, &second}); }
  relay.signal(SIGHUP);
  bool reloaded = false;
  for (int i = 0; i < 100 && !reloaded; ++i) {
    reloaded = metricValue(relay.port(), R"(mesh_relay_jwks_file_reloads_total{result="ok"})") == 1;
    if (!reloaded) std::this_thread::sleep_for(20ms);
  }
  ASSERT_TRUE(reloaded) << relay.log();
  EXPECT_FALSE(authWithToken(relay.port(), second.sign(claimsFor("hup", 60))).empty());

  // A broken file is reported; the keys read last stay.
  { std::ofstream(jwks) << R"({"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]})"; }
  relay.signal(SIGHUP);
  bool reported = false;
  for (int i = 0; i < 100 && !reported; ++i) {
    reported =
        metricValue(relay.port(), R"(mesh_relay_jwks_file_reloads_total{result="failed"})") == 1;
    if (!reported) std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(reported) << relay.log();
  EXPECT_FALSE(authWithToken(relay.port(), second.sign(claimsFor("hup", 60))).empty());
  EXPECT_FALSE(authWithToken(relay.port(), first.sign(claimsFor("hup", 60))).empty());
}

TEST(TokenRelayUrl, AnUnknownKidFetchesTheJwksAgainAndAFailedFetchKeepsTheKeys) {
  HttpsServer idp;
  const JwtKey first = JwtKey::ec("url-1");
  const JwtKey second = JwtKey::rsa("url-2");
  const JwtKey third = JwtKey::ed25519("url-3");
  idp.serve(200, jwksOf({&first}), "Cache-Control: public, max-age=3600\r\n");
  TestRelay relay([&](relay::Config& c) {
    c.jwtJwksUrl = idp.url();
    c.jwtJwksCa = idp.caFile();
    c.jwtJwksRefetchSeconds = 1;
  });
  ASSERT_EQ(relay.registerMesh("url", TestRelay::secretFor("url"), "URL"), 201);
  // The first token may come before the first fetch ends: it waits for it.
  EXPECT_FALSE(authWithToken(relay.port(), first.sign(claimsFor("url", 60))).empty());
  EXPECT_EQ(idp.requests(), 1);

  // The provider publishes a new key; a token signed with it causes a fetch
  // and is accepted once the fetch brings the key.
  idp.serve(200, jwksOf({&first, &second}), "Cache-Control: max-age=3600\r\n");
  std::this_thread::sleep_for(1100ms);  // past the refetch floor (1 s here)
  EXPECT_FALSE(authWithToken(relay.port(), second.sign(claimsFor("url", 60))).empty());
  EXPECT_EQ(idp.requests(), 2);
  // Within the floor another unknown kid causes no fetch: refused at once.
  EXPECT_EQ(authWithToken(relay.port(), third.sign(claimsFor("url", 60))), "");
  EXPECT_EQ(idp.requests(), 2);

  // The provider fails: the fetch the next unknown kid causes fails, and the
  // keys fetched before still verify.
  idp.serve(500, "{}");
  std::this_thread::sleep_for(1100ms);
  EXPECT_EQ(authWithToken(relay.port(), third.sign(claimsFor("url", 60))), "");
  EXPECT_EQ(idp.requests(), 3);
  EXPECT_EQ(metricValue(relay.port(), R"(mesh_relay_jwks_fetches_total{result="failed"})"), 1);
  EXPECT_EQ(metricValue(relay.port(), R"(mesh_relay_jwks_fetches_total{result="ok"})"), 2);
  EXPECT_FALSE(authWithToken(relay.port(), first.sign(claimsFor("url", 60))).empty());
  EXPECT_FALSE(authWithToken(relay.port(), second.sign(claimsFor("url", 60))).empty());
  EXPECT_EQ(metricValue(relay.port(), "mesh_relay_token_keys"), 2);
  expectRelayStillServes(relay);
}

}  // namespace
}  // namespace mesh::test
