// libmeshclient's general HTTP call against a real relay process: the
// bearer token (what meshctl's admin subcommands send), bodies, TLS with a
// private CA, and errors that never carry the token.
#include <gtest/gtest.h>

#include "mesh/client/http.h"
#include "relay_runner.h"

namespace mesh::test {
namespace {

namespace mc = mesh::client;

constexpr const char* kToken = "client-http-admin-token-0123";
constexpr const char* kSecret = "client-http-secret-0123456789";

// The admin routes answer 401 without the token or with a wrong one, and
// the listing with it; a body goes out as JSON.
void expectAdminAnswers(const RelayRunner& relay, const std::string& caFile) {
  const std::string url = relay.httpUrl() + "/meshes";
  const auto timeout = std::chrono::seconds(10);

  auto without = mc::httpRequest("GET", url, {}, {}, timeout, caFile);
  ASSERT_TRUE(without) << without.error().message;
  EXPECT_EQ(without.value().status, 401);

  auto wrong = mc::httpRequest("GET", url, {}, "not-the-token-0123456789", timeout, caFile);
  ASSERT_TRUE(wrong) << wrong.error().message;
  EXPECT_EQ(wrong.value().status, 401);

  auto right = mc::httpRequest("GET", url, {}, kToken, timeout, caFile);
  ASSERT_TRUE(right) << right.error().message;
  EXPECT_EQ(right.value().status, 200);
  EXPECT_NE(right.value().body.find("\"listed\""), std::string::npos) << right.value().body;

  auto rotated =
      mc::httpRequest("POST", relay.httpUrl() + "/meshes/listed/secret",
                      R"({"secret":"a-new-secret-0123456789"})", kToken, timeout, caFile);
  ASSERT_TRUE(rotated) << rotated.error().message;
  EXPECT_EQ(rotated.value().status, 200) << rotated.value().body;
}

TEST(ClientHttp, RequestSendsTheBearerTokenAndReturnsEveryStatus) {
  TempDir dir;
  RelayRunner relay(dir);
  relay.setAdminToken(kToken);
  relay.start();
  relay.registerMesh("listed", kSecret, "Listed");
  expectAdminAnswers(relay, {});
}

TEST(ClientHttp, RequestOverTlsTrustsThePrivateCa) {
  TempDir dir;
  const TestPki pki = makeTestPki(dir);
  RelayRunner relay(dir, &pki);
  relay.setAdminToken(kToken);
  relay.start();
  relay.registerMesh("listed", kSecret, "Listed");
  expectAdminAnswers(relay, pki.caFile);

  auto untrusted = mc::httpRequest("GET", relay.httpUrl() + "/meshes", {}, kToken,
                                   std::chrono::seconds(5), pki.otherCaFile);
  ASSERT_FALSE(untrusted);
  EXPECT_EQ(untrusted.status(), mc::Status::ConnectionFailed);
  EXPECT_NE(untrusted.error().message.find("certificate"), std::string::npos)
      << untrusted.error().message;
  EXPECT_EQ(untrusted.error().message.find(kToken), std::string::npos);
}

TEST(ClientHttp, ErrorsNameTheProblemButNeverTheToken) {
  auto badUrl = mc::httpRequest("GET", "ftp://127.0.0.1/meshes", {}, kToken);
  ASSERT_FALSE(badUrl);
  EXPECT_EQ(badUrl.status(), mc::Status::InvalidArgument);
  EXPECT_EQ(badUrl.error().message.find(kToken), std::string::npos);

  const std::string nobody = "http://127.0.0.1:" + std::to_string(pickFreePort()) + "/meshes";
  auto refused = mc::httpRequest("GET", nobody, {}, kToken, std::chrono::seconds(2));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.status(), mc::Status::ConnectionFailed);
  EXPECT_EQ(refused.error().message.find(kToken), std::string::npos);
}

}  // namespace
}  // namespace mesh::test
