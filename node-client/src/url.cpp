#include "url.h"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace mesh::client::detail {

std::string Url::hostHeader() const {
  const bool v6 = host.find(':') != std::string::npos;
  std::string out = v6 ? "[" + host + "]" : host;
  const int defaultPort = secure() ? 443 : 80;
  if (port != defaultPort) out += ":" + std::to_string(port);
  return out;
}

std::optional<Url> parseUrl(const std::string& text) {
  const auto sep = text.find("://");
  if (sep == std::string::npos) return std::nullopt;
  Url url;
  url.scheme = text.substr(0, sep);
  std::transform(url.scheme.begin(), url.scheme.end(), url.scheme.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (url.scheme != "ws" && url.scheme != "wss" && url.scheme != "http" && url.scheme != "https") {
    return std::nullopt;
  }
  const std::string rest = text.substr(sep + 3);
  const auto slash = rest.find_first_of("/?#");
  std::string authority = rest.substr(0, slash);
  url.path = slash == std::string::npos ? "/" : rest.substr(slash);
  if (url.path.front() != '/') url.path.insert(url.path.begin(), '/');
  if (authority.empty() || authority.find('@') != std::string::npos) return std::nullopt;

  std::string portText;
  if (authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string::npos) return std::nullopt;
    url.host = authority.substr(1, close - 1);
    const std::string after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return std::nullopt;
      portText = after.substr(1);
    }
  } else {
    const auto colon = authority.rfind(':');
    url.host = authority.substr(0, colon);
    if (colon != std::string::npos) portText = authority.substr(colon + 1);
  }
  if (url.host.empty()) return std::nullopt;
  url.port = url.secure() ? 443 : 80;
  if (!portText.empty()) {
    int port = 0;
    const auto [end, ec] =
        std::from_chars(portText.data(), portText.data() + portText.size(), port);
    if (ec != std::errc() || end != portText.data() + portText.size() || port <= 0 ||
        port > 65535) {
      return std::nullopt;
    }
    url.port = port;
  }
  return url;
}

}  // namespace mesh::client::detail
