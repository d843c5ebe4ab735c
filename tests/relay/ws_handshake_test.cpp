// The plain path's opening handshake (ws_handshake.h): which requests are
// upgrades to /gateway, how their header fields are read and what they are
// answered. Unit tests of the pure functions; websocket_test.cpp and
// wire_noise_test.cpp send real upgrades to a real relay.
#include "ws_handshake.h"

#include <gtest/gtest.h>

#include <string>

namespace mesh::relay::ws {
namespace {

RequestHead head(std::string_view method, std::string_view target) {
  RequestHead h;
  h.state = RequestHead::State::Complete;
  h.method = method;
  h.target = target;
  return h;
}

UpgradeHeaders validHeaders() {
  UpgradeHeaders h;
  h.upgrade = "websocket";
  h.connection = "Upgrade";
  h.key = "dGhlIHNhbXBsZSBub25jZQ==";
  h.version = "13";
  return h;
}

TEST(WsHandshake, AcceptKeyMatchesRfc6455Example) {
  // RFC 6455 section 1.3.
  EXPECT_EQ(acceptKey("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(WsHandshake, SwitchingProtocolsCarriesTheAcceptKey) {
  EXPECT_EQ(switchingProtocols("dGhlIHNhbXBsZSBub25jZQ=="),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n");
}

TEST(WsHandshake, GatewayPathWithOrWithoutQuery) {
  EXPECT_TRUE(isGatewayRequest(head("GET", "/gateway")));
  EXPECT_TRUE(isGatewayRequest(head("GET", "/gateway?v=2")));
  EXPECT_FALSE(isGatewayRequest(head("GET", "/gateway2")));
  EXPECT_FALSE(isGatewayRequest(head("GET", "/gatewa")));
  EXPECT_FALSE(isGatewayRequest(head("GET", "/")));
  EXPECT_FALSE(isGatewayRequest(head("POST", "/gateway")));
}

TEST(WsHandshake, TokensAreCommaSeparatedAndCaseInsensitive) {
  EXPECT_TRUE(hasToken("Upgrade", "upgrade"));
  EXPECT_TRUE(hasToken("keep-alive, Upgrade", "upgrade"));
  EXPECT_TRUE(hasToken(" keep-alive ,\tUPGRADE\t", "upgrade"));
  EXPECT_FALSE(hasToken("keep-alive", "upgrade"));
  EXPECT_FALSE(hasToken("upgraded", "upgrade"));
  EXPECT_FALSE(hasToken("", "upgrade"));
}

TEST(WsHandshake, HeaderNamesAreCaseInsensitiveAndRepeatsJoin) {
  const UpgradeHeaders h = parseUpgradeHeaders(
      "Host: relay.example\r\nUPGRADE: websocket\r\nconnection:  keep-alive \r\n"
      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      "sec-websocket-version: 13\r\nX-Forwarded-For: 203.0.113.7\r\n"
      "X-Forwarded-For: 198.51.100.2\r\nFly-Client-IP: 192.0.2.1\r\nno colon here\r\n"
      "authorization: Basic bTpz\r\n");
  EXPECT_EQ(h.upgrade, "websocket");
  EXPECT_EQ(h.connection, "keep-alive, Upgrade");
  EXPECT_EQ(h.key, "dGhlIHNhbXBsZSBub25jZQ==");
  EXPECT_EQ(h.version, "13");
  EXPECT_EQ(h.forwardedFor, "203.0.113.7, 198.51.100.2");
  EXPECT_EQ(h.flyClientIp, "192.0.2.1");
  EXPECT_EQ(h.host, "relay.example");
  EXPECT_EQ(h.authorization, "Basic bTpz");
}

TEST(WsHandshake, KeyMustBeSixteenBytesOfBase64) {
  EXPECT_TRUE(isWellFormedKey("dGhlIHNhbXBsZSBub25jZQ=="));
  EXPECT_TRUE(isWellFormedKey("AAAAAAAAAAAAAAAAAAAA+/=="));
  EXPECT_FALSE(isWellFormedKey("dGhlIHNhbXBsZSBub25jZQ="));   // 23 characters
  EXPECT_FALSE(isWellFormedKey("dGhlIHNhbXBsZSBub25jZQAA"));  // no padding
  EXPECT_FALSE(isWellFormedKey("dGhlIHNhbXBsZSBub25jZ-=="));  // not base64
  EXPECT_FALSE(isWellFormedKey(""));
}

TEST(WsHandshake, UpgradeErrorsNameWhatIsMissing) {
  EXPECT_EQ(upgradeError(validHeaders()), "");

  UpgradeHeaders noUpgrade = validHeaders();
  noUpgrade.upgrade = "h2c";
  EXPECT_EQ(upgradeError(noUpgrade),
            "HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nContent-Length: 0\r\n"
            "Connection: close\r\n\r\n");
  UpgradeHeaders noConnection = validHeaders();
  noConnection.connection = "keep-alive";
  EXPECT_EQ(upgradeError(noConnection), upgradeError(noUpgrade));

  UpgradeHeaders oldVersion = validHeaders();
  oldVersion.version = "8";
  EXPECT_EQ(upgradeError(oldVersion),
            "HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n"
            "Connection: close\r\n\r\n");

  UpgradeHeaders badKey = validHeaders();
  badKey.key = "short";
  EXPECT_EQ(upgradeError(badKey),
            "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
}

TEST(WsHandshake, RefusedHeadsGetTheirStatusText) {
  EXPECT_EQ(refusalStatus(400), "400 Bad Request");
  EXPECT_EQ(refusalStatus(414), "414 URI Too Long");
  EXPECT_EQ(refusalStatus(431), "431 Request Header Fields Too Large");
}

}  // namespace
}  // namespace mesh::relay::ws
