// Native TLS: wss:// and https:// on the relay's one port, with certificates
// the tests make; certificate reload on SIGHUP in the real executable.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <thread>

#include "support/relay_process.h"
#include "support/test_relay.h"
#include "support/tls_client.h"

namespace mesh::test {
namespace {

using namespace std::chrono_literals;

std::unique_ptr<TlsWsClient> authenticateTls(std::uint16_t port, const std::string& meshId,
                                             std::string* authOk = nullptr) {
  auto c = TlsWsClient::connect(port);
  c->sendText(R"({"type":"gateway_auth","meshId":")" + meshId + R"(","secret":")" +
              TestRelay::secretFor(meshId) + "\"}");
  const std::string ok = c->expectType("gateway_auth_ok");
  if (authOk) *authOk = ok;
  return c;
}

int registerTls(std::uint16_t port, const std::string& meshId) {
  const std::string body = R"({"meshId":")" + meshId + R"(","secret":")" +
                           TestRelay::secretFor(meshId) + R"(","name":"Mesh )" + meshId + "\"}";
  return httpsRequest(port, "POST", "/register", body).status;
}

// Opens fresh TLS connections until one shows `subject` or time runs out.
bool waitForSubject(std::uint16_t port, const std::string& subject) {
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (TlsStream::connect(port)->peerSubject() == subject) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

TEST(TlsRelay, AuthAndRelayOverWss) {
  TempDir certs;
  TestRelay relay([&](relay::Config& c) { useSelfSignedCert(c, certs.path(), "relay-test"); });
  ASSERT_EQ(registerTls(relay.port(), "tls-a"), 201);
  ASSERT_EQ(registerTls(relay.port(), "tls-b"), 201);
  auto health = httpsRequest(relay.port(), "GET", "/healthz");
  EXPECT_EQ(health.status, 200) << health.body;

  auto a = authenticateTls(relay.port(), "tls-a");
  auto b = authenticateTls(relay.port(), "tls-b");
  EXPECT_EQ(a->peerSubject(), "/CN=relay-test");
  a->sendText(R"({"type":"gateway_relay","id":"m1","targetMeshId":"tls-b","payload":{"x":1}})");
  const std::string incoming = b->expectType("gateway_incoming");
  EXPECT_EQ(jsonString(incoming, "fromMeshId"), "tls-a");
  EXPECT_EQ(jsonString(incoming, "id"), "m1");
  const std::string ack = a->expectType("gateway_ack");
  EXPECT_EQ(jsonString(ack, "status"), "delivered");
}

// Through lws too, frames queued in one loop turn for different nodes leave
// in one write each and are not mixed up.
TEST(TlsRelay, FramesForDifferentNodesInOneTurnStayApart) {
  TempDir certs;
  TestRelay relay([&](relay::Config& c) {
    useSelfSignedCert(c, certs.path(), "relay-test");
    c.rateLimit = 0;
  });
  for (const char* id : {"tls-a", "tls-b", "tls-tx"}) ASSERT_EQ(registerTls(relay.port(), id), 201);
  auto a = authenticateTls(relay.port(), "tls-a");
  auto b = authenticateTls(relay.port(), "tls-b");
  auto tx = authenticateTls(relay.port(), "tls-tx");
  std::string burst;
  for (int i = 0; i < 3; ++i) {
    for (const char* target : {"tls-a", "tls-b"}) {
      burst += ws::encodeFrame(opcode::kText,
                               R"({"type":"gateway_relay","targetMeshId":")" + std::string(target) +
                                   R"(","payload":{"m":")" + target + std::to_string(i) + "\"}}",
                               true, ws::randomMaskKey());
    }
  }
  burst += ws::encodeFrame(opcode::kText, R"({"type":"gateway_broadcast","payload":{"m":"all"}})",
                           true, ws::randomMaskKey());
  tx->sendRaw(burst);
  const std::pair<TlsWsClient*, std::string> nodes[] = {{a.get(), "tls-a"}, {b.get(), "tls-b"}};
  for (const auto& [client, id] : nodes) {
    for (int i = 0; i < 3; ++i) {
      const auto in = json(client->expectType("gateway_incoming"));
      EXPECT_EQ(std::string(in["payload"]["m"].GetString()), id + std::to_string(i));
    }
    const auto all = json(client->expectType("gateway_incoming"));
    EXPECT_EQ(std::string(all["payload"]["m"].GetString()), "all");
  }
}

TEST(TlsRelay, PlainConnectionsGetNoService) {
  TempDir certs;
  TestRelay relay([&](relay::Config& c) { useSelfSignedCert(c, certs.path(), "relay-test"); });
  EXPECT_THROW(WsClient::connect(relay.port()), std::runtime_error);
  EXPECT_EQ(httpsRequest(relay.port(), "GET", "/health").status, 200);
}

TEST(TlsRelay, StartRefusesBadCertificateFiles) {
  TempDir dir;
  makeSelfSignedCert(dir.path() / "a.pem", dir.path() / "a.key", "a");
  makeSelfSignedCert(dir.path() / "b.pem", dir.path() / "b.key", "b");
  auto start = [&](const std::string& cert, const std::string& key) {
    relay::Config c = testConfig(dir.path() / "mesh.db");
    c.tlsCertPath = cert.empty() ? "" : (dir.path() / cert).string();
    c.tlsKeyPath = key.empty() ? "" : (dir.path() / key).string();
    relay::Server server(c);
  };
  EXPECT_THROW(start("missing.pem", "a.key"), std::runtime_error);
  EXPECT_THROW(start("a.pem", "b.key"), std::runtime_error);  // key of another cert
  EXPECT_THROW(start("a.pem", ""), std::runtime_error);
  EXPECT_THROW(start("", "a.key"), std::runtime_error);
  EXPECT_NO_THROW(start("a.pem", "a.key"));
}

TEST(TlsRelay, SighupReloadsTheCertificateWithoutDroppingConnections) {
  TempDir dir;
  const auto cert = dir.path() / "cert.pem";
  const auto key = dir.path() / "key.pem";
  makeSelfSignedCert(cert, key, "before-reload");
  RelayProcess relay(MESH_RELAY_BIN, {"--db", (dir.path() / "mesh.db").string(), "--argon2-ops",
                                      "1", "--argon2-mem", "8192", "--drain-timeout", "1",
                                      "--tls-cert", cert.string(), "--tls-key", key.string()});
  ASSERT_EQ(registerTls(relay.port(), "keep-a"), 201);
  auto before = authenticateTls(relay.port(), "keep-a");
  EXPECT_EQ(before->peerSubject(), "/CN=before-reload");

  makeSelfSignedCert(cert, key, "after-reload");
  relay.signal(SIGHUP);
  EXPECT_TRUE(waitForSubject(relay.port(), "/CN=after-reload")) << relay.log();

  // The connection made with the old certificate still works.
  before->sendText(R"({"type":"gateway_discover","id":"still-here"})");
  EXPECT_EQ(jsonString(before->expectType("gateway_discover_result"), "id"), "still-here");
  ASSERT_EQ(registerTls(relay.port(), "keep-b"), 201);
  auto after = authenticateTls(relay.port(), "keep-b");
  after->sendText(R"({"type":"gateway_relay","targetMeshId":"keep-a","payload":{}})");
  EXPECT_EQ(jsonString(before->expectType("gateway_incoming"), "fromMeshId"), "keep-b");

  // A broken file on the next reload is reported; the current pair stays.
  { std::ofstream(cert) << "not a certificate\n"; }
  relay.signal(SIGHUP);
  bool reported = false;
  for (int i = 0; i < 100 && !reported; ++i) {
    const auto m = httpsRequest(relay.port(), "GET", "/metrics");
    reported = m.body.find("mesh_relay_tls_reloads_total{result=\"error\"} 1") != std::string::npos;
    if (!reported) std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(reported) << relay.log();
  EXPECT_EQ(TlsStream::connect(relay.port())->peerSubject(), "/CN=after-reload");
  EXPECT_NE(relay.log().find("TLS reload failed"), std::string::npos) << relay.log();

  relay.signal(SIGTERM);
  EXPECT_EQ(relay.wait(10000ms), 0) << relay.log();
}

// curl's status code for an HTTPS request over HTTP/2 (ALPN h2), "" if curl
// could not run.
std::string curlHttp2Status(std::uint16_t port, const std::string& path) {
  const std::string cmd =
      "curl -sk --http2 -o /dev/null -w '%{http_code} %{http_version}' "
      "https://127.0.0.1:" +
      std::to_string(port) + path + " 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return {};
  char buf[64] = {0};
  const std::size_t n = std::fread(buf, 1, sizeof buf - 1, p);
  pclose(p);
  return std::string(buf, n);
}

TEST(TlsRelay, RefusalsReachHttp2Clients) {
  if (std::system("command -v curl >/dev/null 2>&1") != 0) GTEST_SKIP() << "curl not installed";
  TempDir certs;
  TestRelay relay([&](relay::Config& c) {
    useSelfSignedCert(c, certs.path(), "relay-test");
    c.denyIps = {"127.0.0.1"};
  });
  // A refusal closes the connection; over HTTP/2 that must not cost the answer.
  EXPECT_EQ(curlHttp2Status(relay.port(), "/healthz"), "403 2");
}

TEST(TlsRelay, CertificateWithoutKeyIsAUsageError) {
  TempDir dir;
  const std::string cmd = std::string(MESH_RELAY_BIN) + " --port 0 --db '" +
                          (dir.path() / "mesh.db").string() + "' --tls-cert '" +
                          (dir.path() / "cert.pem").string() + "' 2>/dev/null";
  const int status = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 2);
}

TEST(TlsRelay, SighupWithoutTlsChangesNothing) {
  TempDir dir;
  RelayProcess relay(MESH_RELAY_BIN, {"--db", (dir.path() / "mesh.db").string()});
  relay.signal(SIGHUP);
  bool logged = false;
  for (int i = 0; i < 100 && !logged; ++i) {
    logged = relay.log().find("TLS is not configured") != std::string::npos;
    if (!logged) std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(logged) << relay.log();
  EXPECT_EQ(httpRequest(relay.port(), "GET", "/healthz").status, 200);
  relay.signal(SIGTERM);
  EXPECT_EQ(relay.wait(10000ms), 0) << relay.log();
}

}  // namespace
}  // namespace mesh::test
