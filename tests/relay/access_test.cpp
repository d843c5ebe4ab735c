// Allow/deny lists and client addresses behind trusted proxies, against a
// real relay. Other loopback addresses (127.0.0.2, ...) stand for other
// clients.
#include <gtest/gtest.h>

#include <stdexcept>

#include "support/test_relay.h"
#include "support/tls_client.h"

namespace mesh::test {
namespace {

using namespace std::chrono_literals;

ConnectOptions withHeader(const std::string& header, const std::string& source = "") {
  ConnectOptions o;
  o.extraHeaders.push_back(header);
  o.bindAddress = source;
  return o;
}

TEST(AccessPolicy, AllowListServesOnlyListedClients) {
  TestRelay relay([](relay::Config& c) { c.allowIps = {"127.0.0.2/32", "2001:db8::/32"}; });
  EXPECT_EQ(httpRequest(relay.port(), "GET", "/health").status, 403);
  EXPECT_EQ(httpRequestFrom("127.0.0.2", relay.port(), "GET", "/health").status, 200);
  EXPECT_EQ(httpRequestFrom("127.0.0.2", relay.port(), "POST", "/register",
                            TestRelay::registerBodyFor("allowed"))
                .status,
            201);

  // A refused WebSocket learns why: close 1008 before anything it sends is read.
  auto refused = WsClient::connect(relay.port());
  EXPECT_EQ(refused->expectClose(3000ms), 1008);

  auto ok = WsClient::connect(relay.port(), fromAddress("127.0.0.2"));
  ok->sendText(R"({"type":"gateway_auth","meshId":"allowed","secret":")" +
               TestRelay::secretFor("allowed") + "\"}");
  EXPECT_NO_THROW(ok->expectType("gateway_auth_ok"));
}

TEST(AccessPolicy, DenyListRefusesHttpAndWebSocket) {
  TestRelay relay([](relay::Config& c) { c.denyIps = {"127.0.0.2", "::ffff:127.0.0.3/128"}; });
  EXPECT_EQ(httpRequest(relay.port(), "GET", "/health").status, 200);
  const auto denied = httpRequestFrom("127.0.0.2", relay.port(), "GET", "/health");
  EXPECT_EQ(denied.status, 403);
  EXPECT_EQ(jsonString(denied.body, "error"), "Forbidden");
  // A denied POST is not acted on, even with its body sent.
  EXPECT_EQ(httpRequestFrom("127.0.0.2", relay.port(), "POST", "/register",
                            TestRelay::registerBodyFor("sneaky"))
                .status,
            403);
  EXPECT_EQ(
      httpRequest(relay.port(), "POST", "/register", TestRelay::registerBodyFor("sneaky")).status,
      201);

  auto two = WsClient::connect(relay.port(), fromAddress("127.0.0.2"));
  two->sendText(R"({"type":"gateway_discover"})");
  EXPECT_EQ(two->expectClose(3000ms), 1008);
  // The IPv4-mapped entry matches the plain IPv4 peer.
  auto three = WsClient::connect(relay.port(), fromAddress("127.0.0.3"));
  EXPECT_EQ(three->expectClose(3000ms), 1008);
  EXPECT_NO_THROW(relay.join("still-fine"));
}

TEST(AccessPolicy, BadListEntriesStopTheStart) {
  TempDir dir;
  relay::Config c = testConfig(dir.path() / "mesh.db");
  c.denyIps = {"10.0.0.0/8", "not-a-range"};
  EXPECT_THROW(relay::Server{c}, std::runtime_error);
  c.denyIps.clear();
  c.trustedProxies = {"10.0.0.0/40"};
  EXPECT_THROW(relay::Server{c}, std::runtime_error);
}

TEST(ForwardedAddress, BelievedOnlyFromTrustedProxies) {
  TestRelay relay([](relay::Config& c) {
    c.trustedProxies = {"127.0.0.1/32"};
    c.denyIps = {"203.0.113.0/24"};
  });
  const auto port = relay.port();
  // Through the trusted proxy: the forwarded client is what counts.
  EXPECT_EQ(httpRequest(port, "GET", "/health", {}, {"X-Forwarded-For: 203.0.113.9"}).status, 403);
  EXPECT_EQ(httpRequest(port, "GET", "/health", {}, {"X-Forwarded-For: 198.51.100.1"}).status, 200);
  EXPECT_EQ(
      httpRequest(port, "GET", "/health", {}, {"X-Forwarded-For: 203.0.113.9, 127.0.0.1"}).status,
      403);
  EXPECT_EQ(httpRequest(port, "GET", "/health", {}, {"Fly-Client-IP: 203.0.113.9"}).status, 403);
  // A client may write anything left of what our proxy appended.
  EXPECT_EQ(httpRequest(port, "GET", "/health", {}, {"X-Forwarded-For: 198.51.100.1, 203.0.113.9"})
                .status,
            403);
  // From an untrusted peer the headers are ignored.
  EXPECT_EQ(httpRequestFrom("127.0.0.2", port, "GET", "/health", {},
                            {"X-Forwarded-For: 203.0.113.9", "Fly-Client-IP: 203.0.113.9"})
                .status,
            200);

  auto viaProxy = WsClient::connect(port, withHeader("X-Forwarded-For: 203.0.113.9"));
  EXPECT_EQ(viaProxy->expectClose(3000ms), 1008);
  auto spoofed = WsClient::connect(port, withHeader("X-Forwarded-For: 203.0.113.9", "127.0.0.2"));
  spoofed->sendText(R"({"type":"gateway_discover"})");
  EXPECT_EQ(jsonString(spoofed->expectType("gateway_auth_error"), "code"), "not_authenticated");
}

TEST(ForwardedAddress, PerAddressLimitCountsTheRealClient) {
  TestRelay relay([](relay::Config& c) {
    c.trustedProxies = {"127.0.0.1"};
    c.maxUnauthenticatedPerIp = 1;
  });
  const auto port = relay.port();
  auto first = WsClient::connect(port, withHeader("X-Forwarded-For: 198.51.100.1"));
  auto second = WsClient::connect(port, withHeader("X-Forwarded-For: 198.51.100.2"));
  // Same real client again: over its limit, although the proxy is one peer.
  EXPECT_THROW(WsClient::connect(port, withHeader("X-Forwarded-For: 198.51.100.1")),
               std::runtime_error);
  // Without a trusted proxy every connection from 127.0.0.2 is one client.
  auto direct = WsClient::connect(port, withHeader("X-Forwarded-For: 198.51.100.3", "127.0.0.2"));
  EXPECT_THROW(WsClient::connect(port, withHeader("X-Forwarded-For: 198.51.100.4", "127.0.0.2")),
               std::runtime_error);
  for (auto* c : {first.get(), second.get(), direct.get()}) {
    c->sendText(R"({"type":"gateway_discover"})");
    EXPECT_EQ(jsonString(c->expectType("gateway_auth_error"), "code"), "not_authenticated");
  }
}

}  // namespace
}  // namespace mesh::test
