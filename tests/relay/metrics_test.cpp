// GET /metrics: values after a scripted sequence, the optional token, and
// the output checked by promtool (Debian package prometheus).
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "support/metrics_scrape.h"
#include "support/test_relay.h"

namespace mesh::test {
namespace {

using namespace std::chrono_literals;

double metric(const std::string& page, const std::string& series) {
  return sampleOf(page, series);
}

std::string scrape(const TestRelay& relay) {
  const auto r = httpRequest(relay.port(), "GET", "/metrics");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_NE(headerValue(r.headers, "Content-Type").find("text/plain"), std::string::npos);
  return r.body;
}

TEST(Metrics, ValuesFollowAScriptedSequence) {
  TestRelay relay;
  const std::string before = scrape(relay);
  EXPECT_EQ(metric(before, "mesh_relay_connections"), 0);
  EXPECT_NE(before.find("mesh_relay_build_info{version=\"0.1.0\""), std::string::npos);
  EXPECT_GT(metric(before, "mesh_relay_start_time_seconds"), 1.6e9);

  auto a = relay.join("metric-a");
  auto b = relay.join("metric-b");
  a->sendText(R"({"type":"gateway_relay","id":"r1","targetMeshId":"metric-b","payload":{}})");
  b->expectType("gateway_incoming");
  a->expectType("gateway_ack");
  a->sendText(R"({"type":"gateway_relay","id":"r2","targetMeshId":"ghost","payload":{}})");
  a->expectType("gateway_ack");
  b->sendText(R"({"type":"gateway_broadcast","id":"b1","payload":{"x":1}})");
  a->expectType("gateway_incoming");
  b->expectType("gateway_ack");
  a->sendBinary("\x01\x02");
  a->expectType("error");
  // A ping is answered before the discover that follows it.
  a->sendFrame(opcode::kPing, "hi");
  a->sendText(R"({"type":"gateway_discover"})");
  a->expectType("gateway_discover_result");
  {
    auto wrong = WsClient::connect(relay.port());
    wrong->sendText(
        R"({"type":"gateway_auth","meshId":"metric-a","secret":"not-the-secret-12345"})");
    EXPECT_EQ(wrong->expectClose(3000ms), 1008);
  }
  EXPECT_THROW(WsClient::connect(relay.port(), onPath("/elsewhere")), std::runtime_error);
  EXPECT_EQ(relay.registerMesh("metric-a", "some-other-secret-123", "x"), 409);

  const std::string page = scrape(relay);
  EXPECT_EQ(metric(page, "mesh_relay_connections"), 2);
  EXPECT_EQ(metric(page, "mesh_relay_connections_accepted_total"), 3);
  EXPECT_EQ(metric(page, "mesh_relay_connections_refused_total{reason=\"not_gateway\"}"), 1);
  EXPECT_EQ(metric(page, "mesh_relay_connections_refused_total{reason=\"denied\"}"), 0);
  EXPECT_EQ(metric(page, "mesh_relay_meshes_online"), 2);
  EXPECT_EQ(metric(page, "mesh_relay_meshes_registered"), 2);
  EXPECT_EQ(metric(page, "mesh_relay_registrations_total{result=\"created\"}"), 2);
  EXPECT_EQ(metric(page, "mesh_relay_registrations_total{result=\"conflict\"}"), 1);
  EXPECT_EQ(metric(page, "mesh_relay_auth_successes_total"), 2);
  EXPECT_EQ(metric(page, "mesh_relay_auth_failures_total{reason=\"invalid_credentials\"}"), 1);
  EXPECT_EQ(metric(page, "mesh_relay_relays_total{result=\"delivered\"}"), 1);
  EXPECT_EQ(metric(page, "mesh_relay_relays_total{result=\"offline\"}"), 1);
  EXPECT_EQ(metric(page, "mesh_relay_broadcast_recipients_total"), 1);
  EXPECT_EQ(metric(page, "mesh_relay_frames_received_total{type=\"gateway_relay\"}"), 2);
  EXPECT_EQ(metric(page, "mesh_relay_frames_received_total{type=\"gateway_broadcast\"}"), 1);
  EXPECT_EQ(metric(page, "mesh_relay_frames_received_total{type=\"gateway_auth\"}"), 3);
  EXPECT_EQ(metric(page, "mesh_relay_frames_received_total{type=\"binary\"}"), 1);
  EXPECT_EQ(metric(page, "mesh_relay_frames_sent_total{type=\"gateway_incoming\"}"), 2);
  EXPECT_EQ(metric(page, "mesh_relay_frames_sent_total{type=\"gateway_ack\"}"), 3);
  EXPECT_EQ(metric(page, "mesh_relay_frames_sent_total{type=\"gateway_auth_ok\"}"), 2);
  EXPECT_EQ(metric(page, "mesh_relay_frames_sent_total{type=\"error\"}"), 1);
  EXPECT_EQ(metric(page, "mesh_relay_frames_sent_total{type=\"pong\"}"), 1);
  EXPECT_EQ(metric(page, "mesh_relay_frames_sent_total{type=\"close\"}"), 1);
  EXPECT_EQ(metric(page, "mesh_relay_frames_sent_total{type=\"other\"}"), 0);
  EXPECT_GT(metric(page, "mesh_relay_received_bytes_total"), 100);
  EXPECT_GT(metric(page, "mesh_relay_sent_bytes_total"), 100);
  // Both forwarded frames reached their last recipient.
  EXPECT_EQ(metric(page, "mesh_relay_frame_delivery_seconds_count"), 2);
  EXPECT_EQ(metric(page, "mesh_relay_frame_delivery_seconds_bucket{le=\"+Inf\"}"), 2);
  EXPECT_EQ(metric(page, "mesh_relay_argon2_jobs_queued"), 0);
  EXPECT_EQ(metric(page, "mesh_relay_send_queue_bytes"), 0);
  EXPECT_EQ(metric(page, "mesh_relay_rate_limited_total"), 0);
  EXPECT_EQ(metric(page, "mesh_relay_slow_consumers_total"), 0);
  // The binary frame is refused as a frame; the connection stays.
  EXPECT_EQ(metric(page, "mesh_relay_websocket_protocol_errors_total"), 0);
  // Refusals by the code sent, the wrong secret's included.
  EXPECT_EQ(metric(page, "mesh_relay_errors_sent_total{code=\"unsupported_frame\"}"), 1);
  EXPECT_EQ(metric(page, "mesh_relay_errors_sent_total{code=\"invalid_credentials\"}"), 1);
  EXPECT_EQ(metric(page, "mesh_relay_errors_sent_total{code=\"rate_limited\"}"), 0);
  // The flight recorder holds the two meshes' logs.
  EXPECT_EQ(metric(page, "mesh_relay_recorder_meshes"), 2);
  EXPECT_GT(metric(page, "mesh_relay_recorder_bytes"), 0);
}

TEST(Metrics, RateLimitAndRefusalsAreCounted) {
  TestRelay relay([](relay::Config& c) {
    c.rateLimit = 1;
    c.rateBurst = 1;
    c.denyIps = {"127.0.0.2"};
  });
  auto a = relay.join("limited");
  a->sendText(R"({"type":"gateway_broadcast","payload":{}})");
  a->sendText(R"({"type":"gateway_broadcast","payload":{}})");
  a->expectType("error");
  auto denied = WsClient::connect(relay.port(), fromAddress("127.0.0.2"));
  EXPECT_EQ(denied->expectClose(3000ms), 1008);
  const std::string page = scrape(relay);
  EXPECT_EQ(metric(page, "mesh_relay_rate_limited_total"), 1);
  EXPECT_EQ(metric(page, "mesh_relay_errors_sent_total{code=\"rate_limited\"}"), 1);
  EXPECT_EQ(metric(page, "mesh_relay_connections_refused_total{reason=\"denied\"}"), 1);
}

// The readiness gauge alerts key on: the periodic probe sets it soon after
// start, /readyz sets it too, and a database another process holds locked
// reads as not writable.
TEST(Metrics, DatabaseWritableGaugeFollowsTheProbe) {
  TestRelay relay;
  double value = -1;
  for (int i = 0; i < 100 && value != 1; ++i) {
    value = metric(scrape(relay), "mesh_relay_database_writable");
    if (value != 1) std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(value, 1);

  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(relay.config().dbPath.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr), SQLITE_OK);
  // The probe waits out the relay's busy timeout (5 s), then fails.
  EXPECT_EQ(httpRequest(relay.port(), "GET", "/readyz", {}, {}, "127.0.0.1", 15000ms).status, 503);
  EXPECT_EQ(metric(scrape(relay), "mesh_relay_database_writable"), 0);
  ASSERT_EQ(sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  EXPECT_EQ(httpRequest(relay.port(), "GET", "/readyz").status, 200);
  EXPECT_EQ(metric(scrape(relay), "mesh_relay_database_writable"), 1);
  expectRelayStillServes(relay);
}

// deploy/grafana and deploy/prometheus name only series a running relay
// exports (histograms by their _bucket, _sum, _count, or family name).
TEST(Metrics, DashboardAndAlertsNameOnlyExportedMetrics) {
  TestRelay relay;
  auto a = relay.join("names-a");
  const std::string page = scrape(relay);
  std::set<std::string> exported;
  // Sample names, and family names (a histogram's, in descriptions).
  const std::regex sample(R"(^(?:# TYPE )?(mesh_relay_[a-z0-9_]+)[{ ])");
  std::istringstream lines(page);
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (std::regex_search(line, m, sample)) exported.insert(m[1]);
  }
  ASSERT_GT(exported.size(), 20u);
  for (const char* file : {"/deploy/grafana/mesh-relay.json", "/deploy/prometheus/alerts.yml"}) {
    std::ifstream in(std::string(MESH_SOURCE_DIR) + file);
    ASSERT_TRUE(in) << file;
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::regex name(R"(mesh_relay_[a-z0-9_]+)");
    std::size_t seen = 0;
    for (auto it = std::sregex_iterator(text.begin(), text.end(), name);
         it != std::sregex_iterator(); ++it, ++seen) {
      EXPECT_TRUE(exported.count(it->str())) << file << " names " << it->str();
    }
    EXPECT_GT(seen, 5u) << file;
  }
}

TEST(Metrics, TokenProtectsThePage) {
  TestRelay relay([](relay::Config& c) { c.metricsToken = "metrics-token-123"; });
  EXPECT_EQ(httpRequest(relay.port(), "GET", "/metrics").status, 401);
  EXPECT_EQ(
      httpRequest(relay.port(), "GET", "/metrics", {}, {"Authorization: Bearer wrong"}).status,
      401);
  const auto ok =
      httpRequest(relay.port(), "GET", "/metrics", {}, {"Authorization: Bearer metrics-token-123"});
  EXPECT_EQ(ok.status, 200);
  EXPECT_NE(ok.body.find("mesh_relay_connections "), std::string::npos);
  EXPECT_EQ(httpRequest(relay.port(), "POST", "/metrics").status, 405);
  // No admin token configured: an empty bearer opens nothing.
  EXPECT_EQ(httpRequest(relay.port(), "GET", "/metrics", {}, {"Authorization: Bearer "}).status,
            401);
}

// The status page reads /metrics with the admin token.
TEST(Metrics, AdminTokenOpensThePageToo) {
  TestRelay relay([](relay::Config& c) {
    c.metricsToken = "metrics-token-123";
    c.adminToken = "admin-token-4567890123";
  });
  EXPECT_EQ(httpRequest(relay.port(), "GET", "/metrics", {},
                        {"Authorization: Bearer admin-token-4567890123"})
                .status,
            200);
  EXPECT_EQ(
      httpRequest(relay.port(), "GET", "/metrics", {}, {"Authorization: Bearer admin"}).status,
      401);
}

TEST(Metrics, PromtoolAcceptsThePage) {
  if (std::system("command -v promtool >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "promtool not installed (Debian package prometheus; tools/test.sh installs it)";
  }
  TestRelay relay;
  auto a = relay.join("prom-a");
  auto b = relay.join("prom-b");
  a->sendText(R"({"type":"gateway_broadcast","payload":{}})");
  b->expectType("gateway_incoming");
  a->sendText(R"({"type":"gateway_relay"})");  // a refusal, for the errors family
  a->expectType("error");
  TempDir dir;
  const auto file = dir.path() / "metrics.txt";
  { std::ofstream(file) << scrape(relay); }
  const auto out = dir.path() / "promtool.txt";
  const std::string cmd =
      "promtool check metrics < '" + file.string() + "' > '" + out.string() + "' 2>&1";
  const int rc = std::system(cmd.c_str());
  std::ifstream in(out);
  const std::string report((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(rc, 0) << report;
  EXPECT_EQ(report, "") << report;
}

}  // namespace
}  // namespace mesh::test
