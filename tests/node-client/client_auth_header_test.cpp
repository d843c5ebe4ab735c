// MESH_TOKEN and MESH_AUTH_HEADER: the exact bytes the client sends, read by
// a WebSocket server on a real socket (the upgrade request and each frame).
#include <gtest/gtest.h>
#include <sodium.h>

#include <cstdlib>
#include <cstring>

#include "node_harness.h"
#include "proxy_runner.h"
#include "stub_gateway.h"
#include "support/temp_dir.h"

namespace mesh::test {
namespace {

using client::ConnectionState;
using client::Status;

const std::string kSecret = "alpha-secret-0123456789";
// A JWT's shape; the client never looks inside.
const std::string kJwt =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbHBoYSJ9.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg";
constexpr std::chrono::milliseconds kQuiet{700};

client::Options optionsFor(const StubGateway& stub, const TempDir& dir) {
  auto o = Node::options("alpha", "", stub.url(), dir.file("alpha.db"));
  o.proxy = "none";
  return o;
}

std::string base64(const std::string& text) {
  std::string out(sodium_base64_ENCODED_LEN(text.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(text.data()),
                    text.size(), sodium_base64_VARIANT_ORIGINAL);
  out.resize(std::strlen(out.c_str()));
  return out;
}

// The Authorization lines of a request head (any case of the name).
std::vector<std::string> authorizationLines(const std::string& head) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while ((at = head.find("\r\n", at)) != std::string::npos) {
    at += 2;
    const std::string line = head.substr(at, head.find("\r\n", at) - at);
    std::string lower = line;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lower.rfind("authorization:", 0) == 0) out.push_back(line);
  }
  return out;
}

const std::string kAuthOk = R"({"type":"gateway_auth_ok","meshId":"alpha","name":"Alpha"})";

TEST(MeshToken, TheTokenGoesInGatewayAuthInsteadOfTheSecret) {
  TempDir dir;
  StubGateway stub;
  auto o = optionsFor(stub, dir);
  o.token = kJwt;
  Node alpha(o);
  auto head = stub.waitRequest(kWait);
  ASSERT_TRUE(head.has_value());
  EXPECT_TRUE(authorizationLines(*head).empty()) << *head;
  auto auth = stub.waitFrame(kWait);
  ASSERT_TRUE(auth.has_value());
  EXPECT_NE(auth->find("\"type\":\"gateway_auth\""), std::string::npos) << *auth;
  EXPECT_NE(auth->find("\"meshId\":\"alpha\""), std::string::npos) << *auth;
  EXPECT_NE(auth->find("\"token\":\"" + kJwt + "\""), std::string::npos) << *auth;
  EXPECT_EQ(auth->find("\"secret\""), std::string::npos) << *auth;
  stub.send(kAuthOk);
  EXPECT_TRUE(alpha->waitConnected(kWait).ok());
}

TEST(MeshToken, FromTheEnvironment) {
  TempDir dir;
  ::setenv("MESH_ID", "alpha", 1);
  ::setenv("MESH_TOKEN", kJwt.c_str(), 1);
  ::unsetenv("MESH_SECRET");
  auto o = client::Options::fromEnvironment();
  ::unsetenv("MESH_TOKEN");
  ASSERT_TRUE(o.ok()) << o.error().message;
  EXPECT_EQ(o.value().token, kJwt);
  EXPECT_TRUE(o.value().secret.empty());
  // Neither a secret nor a token: refused, unless a proxy adds them.
  auto none = client::Options::fromEnvironment();
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error().message.find("MESH_TOKEN"), std::string::npos);
  ::setenv("MESH_AUTH_HEADER", "1", 1);
  auto byProxy = client::Options::fromEnvironment();
  ASSERT_TRUE(byProxy.ok()) << byProxy.error().message;
  EXPECT_TRUE(byProxy.value().authHeader);
  ::setenv("MESH_AUTH_HEADER", "maybe", 1);
  EXPECT_FALSE(client::Options::fromEnvironment().ok());
  ::unsetenv("MESH_AUTH_HEADER");
  ::unsetenv("MESH_ID");

  // A token with a space or a control byte would break the header.
  auto bad = Node::options("alpha", "", "ws://127.0.0.1:1/gateway", dir.file("a.db"));
  bad.token = "abc def";
  EXPECT_EQ(client::validate(bad).error().status, Status::InvalidArgument);
  bad.token = "abc\r\nX-Evil: 1";
  EXPECT_EQ(client::validate(bad).error().status, Status::InvalidArgument);
  // autoRegister needs the secret: a token cannot register.
  bad.token = kJwt;
  bad.autoRegister = true;
  EXPECT_EQ(client::validate(bad).error().status, Status::InvalidArgument);
}

TEST(AuthHeader, BearerTokenOnTheUpgradeAndNoGatewayAuth) {
  TempDir dir;
  StubGateway stub;
  auto o = optionsFor(stub, dir);
  o.token = kJwt;
  o.authHeader = true;
  o.publicRooms = {"lobby"};
  o.participants = {{"u1", "Ann", "human"}};
  Node alpha(o);
  auto head = stub.waitRequest(kWait);
  ASSERT_TRUE(head.has_value());
  EXPECT_EQ(authorizationLines(*head), std::vector<std::string>{"Authorization: Bearer " + kJwt})
      << *head;
  EXPECT_EQ(head->rfind("GET /gateway HTTP/1.1\r\n", 0), 0u) << *head;
  // The relay speaks first.
  EXPECT_FALSE(stub.waitFrame(kQuiet).has_value());
  EXPECT_EQ(alpha->state(), ConnectionState::Authenticating);
  stub.send(kAuthOk);
  ASSERT_TRUE(alpha->waitConnected(kWait).ok());
  // What gateway_auth would have carried comes right after.
  auto rooms = stub.waitFrame(kWait);
  ASSERT_TRUE(rooms.has_value());
  EXPECT_EQ(*rooms, R"({"type":"gateway_update_rooms","publicRooms":["lobby"]})");
  auto people = stub.waitFrame(kWait);
  ASSERT_TRUE(people.has_value());
  EXPECT_NE(people->find("\"type\":\"gateway_update_participants\""), std::string::npos);
  EXPECT_NE(people->find("\"Ann\""), std::string::npos);
  // Messages flow as usual.
  auto sent = alpha->relay("bravo", R"({"n":1})");
  ASSERT_TRUE(sent.ok());
  auto relay = stub.waitFrame(kWait);
  ASSERT_TRUE(relay.has_value());
  EXPECT_NE(relay->find("\"type\":\"gateway_relay\""), std::string::npos) << *relay;
}

TEST(AuthHeader, BasicWithMeshIdAndSecret) {
  TempDir dir;
  StubGateway stub;
  auto o = optionsFor(stub, dir);
  o.secret = kSecret;
  o.authHeader = true;
  Node alpha(o);
  auto head = stub.waitRequest(kWait);
  ASSERT_TRUE(head.has_value());
  EXPECT_EQ(authorizationLines(*head),
            std::vector<std::string>{"Authorization: Basic " + base64("alpha:" + kSecret)})
      << *head;
  EXPECT_FALSE(stub.waitFrame(kQuiet).has_value());
  stub.send(kAuthOk);
  EXPECT_TRUE(alpha->waitConnected(kWait).ok());
}

TEST(AuthHeader, NoCredentialsAtAllForAProxyToAdd) {
  TempDir dir;
  StubGateway stub;
  auto o = optionsFor(stub, dir);
  o.authHeader = true;  // no secret, no token
  Node alpha(o);
  auto head = stub.waitRequest(kWait);
  ASSERT_TRUE(head.has_value());
  EXPECT_TRUE(authorizationLines(*head).empty()) << *head;
  EXPECT_FALSE(stub.waitFrame(kQuiet).has_value());
  stub.send(kAuthOk);
  EXPECT_TRUE(alpha->waitConnected(kWait).ok());
}

TEST(AuthHeader, AProxyInFrontAddsTheCredentialsTheNodeDoesNotHold) {
  TempDir dir;
  StubGateway stub;
  const std::string held = "Basic " + base64("alpha:" + kSecret);
  InjectingProxy egress(dir, stub.port(), held);
  egress.start();
  auto o = Node::options("alpha", "", egress.gatewayUrl(), dir.file("alpha.db"));
  o.proxy = "none";
  o.authHeader = true;
  Node alpha(o);
  auto head = stub.waitRequest(kWait);
  ASSERT_TRUE(head.has_value()) << egress.log();
  EXPECT_EQ(authorizationLines(*head), std::vector<std::string>{"Authorization: " + held}) << *head;
  EXPECT_FALSE(stub.waitFrame(kQuiet).has_value());
  stub.send(kAuthOk);
  EXPECT_TRUE(alpha->waitConnected(kWait).ok()) << egress.log();
}

TEST(AuthHeader, A401ToTheUpgradeIsAuthFailed) {
  TempDir dir;
  StubGateway stub;
  stub.answerUpgradeWith(401);
  auto o = optionsFor(stub, dir);
  o.token = kJwt;
  o.authHeader = true;
  Node alpha(o);
  auto up = alpha->waitConnected(kWait);
  ASSERT_FALSE(up.ok());
  EXPECT_EQ(up.error().status, Status::AuthFailed) << up.error().message;
  EXPECT_NE(up.error().message.find("401"), std::string::npos) << up.error().message;
  EXPECT_EQ(up.error().message.find(kJwt), std::string::npos);
  EXPECT_EQ(alpha->state(), ConnectionState::Failed);
}

}  // namespace
}  // namespace mesh::test
