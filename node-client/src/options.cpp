#include "mesh/client/options.h"

#include <cctype>
#include <cstdlib>
#include <optional>

#include "mesh/proto/codec.h"
#include "mesh/proto/limits.h"
#include "proxy.h"
#include "url.h"

namespace mesh::client {
namespace {

std::optional<std::string> env(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::string(value);
}

// 1/true/yes/on and 0/false/no/off, in any case; nullopt for anything else.
std::optional<bool> parseFlag(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (text == "1" || text == "true" || text == "yes" || text == "on") return true;
  if (text == "0" || text == "false" || text == "no" || text == "off") return false;
  return std::nullopt;
}

}  // namespace

Result<Options> Options::fromEnvironment() {
  return fromEnvironment(Options{});
}

Result<Options> Options::fromEnvironment(Options base) {
  if (auto v = env("MESH_ID")) base.meshId = *v;
  if (auto v = env("MESH_SECRET")) base.secret = *v;
  if (auto v = env("MESH_TOKEN")) base.token = *v;
  if (auto v = env("MESH_TOKEN_FILE")) base.tokenFile = *v;
  if (auto v = env("MESH_GATEWAY_URL")) {
    base.gatewayUrl = *v;
    base.gatewayUrls.clear();
  }
  if (auto v = env("MESH_PROXY")) base.proxy = *v;
  if (auto v = env("MESH_NAME")) base.name = *v;
  if (auto v = env("MESH_HTTP_URL")) base.httpBaseUrl = *v;
  if (auto v = env("MESH_CA_FILE")) base.caFile = *v;
  if (auto v = env("MESH_OUTBOX_PATH")) base.outboxPath = *v;
  if (auto v = env("MESH_AUTO_REGISTER")) {
    auto flag = parseFlag(*v);
    if (!flag) {
      return Error{
          Status::InvalidArgument,
          "MESH_AUTO_REGISTER must be 1, true, yes, on or 0, false, no, off: '" + *v + "'"};
    }
    base.autoRegister = *flag;
  }
  if (auto v = env("MESH_AUTH_HEADER")) {
    auto flag = parseFlag(*v);
    if (!flag) {
      return Error{Status::InvalidArgument,
                   "MESH_AUTH_HEADER must be 1, true, yes, on or 0, false, no, off: '" + *v + "'"};
    }
    base.authHeader = *flag;
  }
  if (base.meshId.empty()) return Error{Status::InvalidArgument, "MESH_ID is not set"};
  if (base.secret.empty() && base.token.empty() && base.tokenFile.empty() && !base.tokenProvider &&
      !base.authHeader) {
    return Error{Status::InvalidArgument,
                 "MESH_SECRET, MESH_TOKEN or MESH_TOKEN_FILE is not set (or MESH_AUTH_HEADER=1 for "
                 "a proxy that "
                 "adds the credentials)"};
  }
  return base;
}

Result<> validate(const Options& o) {
  if (!proto::isValidMeshId(o.meshId)) {
    return Error{Status::InvalidArgument,
                 "meshId must be 1 to 64 characters of A-Z a-z 0-9 . _ -: '" + o.meshId + "'"};
  }
  if (!o.secret.empty() &&
      (o.secret.size() < proto::kMinSecretBytes || o.secret.size() > proto::kMaxSecretBytes)) {
    return Error{Status::InvalidArgument, "secret must be 16 to 256 bytes"};
  }
  if (o.secret.empty() && o.token.empty() && o.tokenFile.empty() && !o.tokenProvider &&
      !o.authHeader) {
    return Error{Status::InvalidArgument,
                 "a secret or a token is needed (or authHeader, for a proxy that adds them)"};
  }
  if (o.autoRegister && o.secret.empty()) {
    return Error{Status::InvalidArgument, "autoRegister needs the secret"};
  }
  // The token travels in a JSON string or an HTTP header: printable ASCII.
  for (const char c : o.token) {
    if (c <= ' ' || c > '~') {
      return Error{Status::InvalidArgument, "token must be printable ASCII without spaces"};
    }
  }
  if (o.name.size() > proto::kMaxNameBytes) {
    return Error{Status::InvalidArgument, "name is longer than 128 bytes"};
  }
  const auto urls = gatewayUrlList(o);
  if (urls.empty()) return Error{Status::InvalidArgument, "no gateway URL"};
  for (const auto& text : urls) {
    const auto url = detail::parseUrl(text);
    if (!url || (url->scheme != "ws" && url->scheme != "wss")) {
      return Error{Status::InvalidArgument,
                   "gateway URL must be ws://host[:port]/path or wss://...: '" + text + "'"};
    }
    auto via = detail::proxyFor(*url, o.proxy, o.noProxy);
    if (!via) return via.error();
    // libwebsockets keeps the proxy's "user:password" in 95 bytes and its
    // host in 127; longer ones it would drop silently and connect directly.
    if (const auto& p = via.value()) {
      if (url->host.find(':') != std::string::npos) {
        return Error{Status::InvalidArgument,
                     "a relay named by an IPv6 address cannot be reached through a proxy (the "
                     "WebSocket library writes its CONNECT without brackets): use a host name "
                     "for '" +
                         text + "' or exempt it in NO_PROXY"};
      }
      if (p->user.size() + p->password.size() + 1 > 95 || p->host.size() + 8 > 127) {
        return Error{Status::InvalidArgument,
                     "proxy " + p->display() +
                         ": user:password must be at most 95 bytes and the "
                         "host at most 118"};
      }
    }
  }
  if (!o.httpBaseUrl.empty()) {
    const auto http = detail::parseUrl(o.httpBaseUrl);
    if (!http || (http->scheme != "http" && http->scheme != "https")) {
      return Error{Status::InvalidArgument, "HTTP URL must be http:// or https://"};
    }
  }
  if (o.outboxPath.empty()) return Error{Status::InvalidArgument, "outbox path is empty"};
  if (o.reconnectMin.count() <= 0 || o.reconnectMax < o.reconnectMin || o.retryMin.count() <= 0 ||
      o.retryMax < o.retryMin || o.jitter < 0.0 || o.jitter > 1.0) {
    return Error{Status::InvalidArgument, "backoff settings out of range"};
  }
  if (o.maxInFlight == 0) return Error{Status::InvalidArgument, "maxInFlight must be at least 1"};
  if (o.ackTimeout.count() < 0 || o.ackTimeout > std::chrono::hours(24)) {
    return Error{Status::InvalidArgument, "ackTimeout must be 0 to 24 hours"};
  }
  // Bounded so that deadlines computed from it cannot overflow.
  if (o.maxMessageAge.count() <= 0 || o.maxMessageAge > std::chrono::hours(24 * 365 * 100)) {
    return Error{Status::InvalidArgument, "maxMessageAge must be positive and under 100 years"};
  }
  return success();
}

std::vector<std::string> gatewayUrlList(const Options& o) {
  std::vector<std::string> out;
  const auto add = [&out](std::string_view text) {
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) {
      text.remove_prefix(1);
    }
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) {
      text.remove_suffix(1);
    }
    if (!text.empty()) out.emplace_back(text);
  };
  if (!o.gatewayUrls.empty()) {
    for (const auto& u : o.gatewayUrls) add(u);
    return out;
  }
  std::string_view all = o.gatewayUrl;
  while (!all.empty()) {
    const auto comma = all.find(',');
    add(all.substr(0, comma));
    if (comma == std::string_view::npos) break;
    all.remove_prefix(comma + 1);
  }
  return out;
}

Result<std::string> httpBaseFromGatewayUrl(const std::string& gatewayUrl) {
  const auto url = detail::parseUrl(gatewayUrl);
  if (!url || (url->scheme != "ws" && url->scheme != "wss")) {
    return Error{Status::InvalidArgument, "not a ws:// or wss:// URL: '" + gatewayUrl + "'"};
  }
  std::string path = url->path;
  if (const auto q = path.find_first_of("?#"); q != std::string::npos) path.resize(q);
  constexpr std::string_view kGateway = "/gateway";
  if (path.size() >= kGateway.size() &&
      path.compare(path.size() - kGateway.size(), kGateway.size(), kGateway) == 0) {
    path.resize(path.size() - kGateway.size());
  }
  while (!path.empty() && path.back() == '/') path.pop_back();
  const std::string scheme = url->secure() ? "https" : "http";
  return scheme + "://" + url->hostHeader() + path;
}

}  // namespace mesh::client
