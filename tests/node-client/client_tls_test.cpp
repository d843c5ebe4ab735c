// libmeshclient over wss:// against the real mesh-relay with native TLS and
// a certificate from a private CA: trusted through Options::caFile, refused
// (with a clear reason, no hang) without it.
#include <gtest/gtest.h>

#include <fstream>

#include "mesh/client/http.h"
#include "node_harness.h"
#include "relay_runner.h"

namespace mesh::test {
namespace {

using client::ConnectionState;
using client::DeliveryReport;
using client::Status;

const std::string kSecretA = "alpha-secret-0123456789";
const std::string kSecretB = "bravo-secret-0123456789";

class MeshClientTls : public ::testing::Test {
 protected:
  void SetUp() override {
    pki = makeTestPki(dir);
    relay = std::make_unique<RelayRunner>(dir, &pki);
    relay->start();
  }

  client::Options optionsFor(const std::string& meshId, const std::string& secret) {
    auto o = Node::options(meshId, secret, relay->gatewayUrl(), dir.file(meshId + ".db"));
    o.caFile = pki.caFile;
    return o;
  }

  TempDir dir;
  TestPki pki;
  std::unique_ptr<RelayRunner> relay;
};

bool hasError(const Seen& s, Status status, const std::string& text) {
  for (const auto& e : s.errors) {
    if (e.status == status && e.message.find(text) != std::string::npos) return true;
  }
  return false;
}

TEST_F(MeshClientTls, AuthRelayAndBroadcastOverWssWithCaFile) {
  relay->registerMesh("bravo", kSecretB, "Bravo");
  // alpha registers itself, over https:// with the same CA file.
  auto a = optionsFor("alpha", kSecretA);
  a.autoRegister = true;
  a.name = "Alpha";
  a.publicRooms = {"lobby"};
  Node alpha(a);
  Node bravo(optionsFor("bravo", kSecretB));
  auto up = alpha->waitConnected(kWait);
  ASSERT_TRUE(up.ok()) << up.error().message << "\n" << relay->log();
  ASSERT_TRUE(bravo->waitConnected(kWait).ok());

  auto sent = alpha->relay("bravo", R"({"type":"chat","n":1})");
  ASSERT_TRUE(sent.ok()) << sent.error().message;
  ASSERT_TRUE(bravo.waitFor([](const Seen& s) { return s.messages.size() == 1; }));
  const auto got = bravo.snapshot().messages.at(0);
  EXPECT_EQ(got.fromMeshId, "alpha");
  EXPECT_EQ(got.fromMeshName, "Alpha");
  EXPECT_EQ(got.id, sent.value());
  ASSERT_TRUE(alpha.waitFor([](const Seen& s) { return s.deliveries.size() == 1; }));
  EXPECT_EQ(alpha.snapshot().deliveries.at(0).outcome, DeliveryReport::Outcome::Delivered);

  auto cast = bravo->broadcast(R"({"type":"chat","n":2})");
  ASSERT_TRUE(cast.ok());
  ASSERT_TRUE(alpha.waitFor([](const Seen& s) { return s.messages.size() == 1; }));
  EXPECT_EQ(alpha.snapshot().messages.at(0).fromMeshId, "bravo");
  EXPECT_EQ(alpha.snapshot().messages.at(0).id, cast.value());
  ASSERT_TRUE(bravo.waitFor([](const Seen& s) { return s.deliveries.size() == 1; }));
  EXPECT_EQ(bravo.snapshot().deliveries.at(0).recipients, 1u);

  auto online = bravo->discover(kWait);
  ASSERT_TRUE(online.ok()) << online.error().message;
  EXPECT_EQ(online.value().size(), 2u);
  EXPECT_TRUE(alpha.snapshot().errors.empty()) << alpha.snapshot().errors.at(0).message << "\n"
                                               << relay->log();
}

TEST_F(MeshClientTls, WithoutTheCaTheConnectionFailsWithACertificateError) {
  relay->registerMesh("alpha", kSecretA, "Alpha");
  for (const std::string& caFile : {std::string(), pki.otherCaFile}) {
    SCOPED_TRACE("caFile: '" + caFile + "'");
    auto o = optionsFor("alpha", kSecretA);
    o.caFile = caFile;
    o.outboxPath = ":memory:";
    Node alpha(o);
    ASSERT_TRUE(alpha.waitFor([](const Seen& s) {
      return hasError(s, Status::ConnectionFailed, "certificate");
    })) << (alpha.snapshot().errors.empty() ? "no error" : alpha.snapshot().errors[0].message);
    const auto error = alpha.snapshot().errors.at(0);
    EXPECT_NE(error.message.find("unable to get local issuer certificate"), std::string::npos)
        << error.message;
    EXPECT_NE(error.message.find(relay->gatewayUrl()), std::string::npos) << error.message;
    // It keeps trying (the certificate may be fixed) without repeating the
    // same error on every attempt, and stops cleanly.
    ASSERT_TRUE(alpha.waitFor([](const Seen& s) {
      int attempts = 0;
      for (auto st : s.states) attempts += st == ConnectionState::Connecting ? 1 : 0;
      return attempts >= 3;
    }));
    EXPECT_EQ(alpha.snapshot().errors.size(), 1u);
    EXPECT_NE(alpha->state(), ConnectionState::Connected);
    alpha->stop();
    EXPECT_EQ(alpha->state(), ConnectionState::Stopped);
  }
  // The blocking HTTP calls say the same.
  auto health = client::checkHealth(relay->httpUrl(), std::chrono::seconds(5));
  ASSERT_FALSE(health.ok());
  EXPECT_EQ(health.status(), Status::ConnectionFailed);
  EXPECT_NE(health.error().message.find("certificate verify failed"), std::string::npos)
      << health.error().message;
}

TEST_F(MeshClientTls, AnIpAddressIsCheckedAgainstTheCertificate) {
  const std::string hostPort = "127.0.0.1:" + std::to_string(relay->port());
  auto health = client::checkHealth("https://" + hostPort, std::chrono::seconds(5), pki.caFile);
  EXPECT_TRUE(health.ok()) << health.error().message;

  relay->registerMesh("alpha", kSecretA, "Alpha");
  auto o = optionsFor("alpha", kSecretA);
  o.gatewayUrl = "wss://" + hostPort + "/gateway";
  Node alpha(o);
  auto up = alpha->waitConnected(kWait);
  EXPECT_TRUE(up.ok()) << up.error().message;
}

TEST(MeshClientTlsOptions, UnreadableCaFileIsRefusedAtStart) {
  TempDir dir;
  const std::string notPem = dir.file("not.pem");
  { std::ofstream(notPem) << "not a certificate\n"; }
  for (const char* url : {"wss://localhost:1/gateway", "ws://localhost:1/gateway"}) {
    for (const std::string& caFile : {dir.file("missing.pem"), notPem}) {
      auto o = Node::options("alpha", kSecretA, url, ":memory:");
      o.caFile = caFile;
      auto started = client::Client::start(o);
      ASSERT_FALSE(started.ok()) << url << " " << caFile;
      EXPECT_EQ(started.status(), Status::InvalidArgument);
      EXPECT_NE(started.error().message.find(caFile), std::string::npos) << started.error().message;
    }
  }
}

}  // namespace
}  // namespace mesh::test
