#include "ws_handshake.h"

#include <libwebsockets.h>

#include <algorithm>
#include <cctype>

namespace mesh::relay::ws {

namespace {

constexpr std::string_view kWebSocketGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

bool hasToken(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    const std::size_t comma = value.find(',');
    if (equalsIgnoreCase(trim(value.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

bool isGatewayRequest(const RequestHead& h) {
  constexpr std::string_view kPath = "/gateway";
  return h.method == "GET" && h.target.substr(0, kPath.size()) == kPath &&
         (h.target.size() == kPath.size() || h.target[kPath.size()] == '?');
}

UpgradeHeaders parseUpgradeHeaders(std::string_view lines) {
  UpgradeHeaders h;
  while (!lines.empty()) {
    const std::size_t eol = lines.find("\r\n");
    const std::string_view line = lines.substr(0, eol);
    lines.remove_prefix(eol == std::string_view::npos ? lines.size() : eol + 2);
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    const std::string_view name = line.substr(0, colon);
    const std::string_view value = trim(line.substr(colon + 1));
    std::string* field = nullptr;
    if (equalsIgnoreCase(name, "upgrade")) {
      field = &h.upgrade;
    } else if (equalsIgnoreCase(name, "connection")) {
      field = &h.connection;
    } else if (equalsIgnoreCase(name, "sec-websocket-key")) {
      field = &h.key;
    } else if (equalsIgnoreCase(name, "sec-websocket-version")) {
      field = &h.version;
    } else if (equalsIgnoreCase(name, "x-forwarded-for")) {
      field = &h.forwardedFor;
    } else if (equalsIgnoreCase(name, "fly-client-ip")) {
      field = &h.flyClientIp;
    } else if (equalsIgnoreCase(name, "host")) {
      field = &h.host;
    } else if (equalsIgnoreCase(name, "authorization")) {
      field = &h.authorization;
    }
    if (!field) continue;
    if (!field->empty()) field->append(", ");
    field->append(value);
  }
  return h;
}

// The check the original relay's `ws` makes.
bool isWellFormedKey(std::string_view key) {
  if (key.size() != 24 || key.substr(22) != "==") return false;
  return std::all_of(key.begin(), key.begin() + 22, [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '+' || c == '/';
  });
}

std::string acceptKey(std::string_view key) {
  std::string material(key);
  material.append(kWebSocketGuid);
  unsigned char digest[20];
  lws_SHA1(reinterpret_cast<const unsigned char*>(material.data()), material.size(), digest);
  char out[32];
  lws_b64_encode_string(reinterpret_cast<const char*>(digest), sizeof digest, out, sizeof out);
  return out;
}

std::string httpError(std::string_view status) {
  std::string out = "HTTP/1.1 ";
  out.append(status);
  out.append("\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
  return out;
}

std::string_view refusalStatus(int status) {
  switch (status) {
    case 414:
      return "414 URI Too Long";
    case 431:
      return "431 Request Header Fields Too Large";
    default:
      return "400 Bad Request";
  }
}

std::string upgradeError(const UpgradeHeaders& h) {
  if (!hasToken(h.upgrade, "websocket") || !hasToken(h.connection, "upgrade")) {
    return httpError("426 Upgrade Required\r\nUpgrade: websocket");
  }
  // RFC 6455 4.4: name the version this server speaks.
  if (h.version != "13") return httpError("426 Upgrade Required\r\nSec-WebSocket-Version: 13");
  if (!isWellFormedKey(h.key)) return httpError("400 Bad Request");
  return {};
}

std::string switchingProtocols(std::string_view key) {
  std::string response =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: ";
  response.append(acceptKey(key));
  response.append("\r\n\r\n");
  return response;
}

}  // namespace mesh::relay::ws
