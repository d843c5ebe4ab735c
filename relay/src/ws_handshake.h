// The server's side of the RFC 6455 opening handshake on the plain /gateway
// path: which requests are upgrades to serve, what their headers ask for and
// the answer to them. Pure functions on bytes, no I/O and no server state,
// so they can be unit tested (tests/relay/ws_handshake_test.cpp).
#pragma once

#include <string>
#include <string_view>

#include "http_head.h"

namespace mesh::relay::ws {

// True if the comma-separated header value lists `token` (case-insensitive).
[[nodiscard]] bool hasToken(std::string_view value, std::string_view token);

// "GET /gateway", with or without a query string: the relay's to answer.
[[nodiscard]] bool isGatewayRequest(const RequestHead& h);

// The header fields the upgrade reads. A repeated field is one list, its
// values joined with ", " (RFC 9110 5.3).
struct UpgradeHeaders {
  std::string upgrade;
  std::string connection;
  std::string key;
  std::string version;
  std::string forwardedFor;
  std::string flyClientIp;
  std::string host;
  std::string authorization;  // credentials: wiped once read (upgrade_auth.cpp)
};

// Reads the field lines of a head: what follows the request line, up to
// (not including) the blank line.
[[nodiscard]] UpgradeHeaders parseUpgradeHeaders(std::string_view lines);

// RFC 6455 4.1: the key is 16 random bytes in base64, so 22 characters and
// "==".
[[nodiscard]] bool isWellFormedKey(std::string_view key);

// Sec-WebSocket-Accept for `key` (RFC 6455 4.2.2: SHA-1 of the key and the
// protocol's GUID, in base64).
[[nodiscard]] std::string acceptKey(std::string_view key);

// A response without a body that closes the connection. `status` is the
// status code and text, optionally followed by more header lines
// ("426 Upgrade Required\r\nUpgrade: websocket").
[[nodiscard]] std::string httpError(std::string_view status);

// The status line text for a head readRequestHead() refused (400, 414, 431).
[[nodiscard]] std::string_view refusalStatus(int status);

// The error response for an upgrade whose headers do not ask for a version
// 13 WebSocket with a well-formed key; empty when they do.
[[nodiscard]] std::string upgradeError(const UpgradeHeaders& h);

// The 101 response that opens the WebSocket for a request with `key`.
[[nodiscard]] std::string switchingProtocols(std::string_view key);

}  // namespace mesh::relay::ws
