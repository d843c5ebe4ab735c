#include "proxy.h"

#include <arpa/inet.h>
#include <sodium.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <cstring>

namespace mesh::client::detail {
namespace {

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::optional<std::string> env(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::string(value);
}

// The first of `names` that is set.
std::optional<std::string> firstEnv(std::initializer_list<const char*> names) {
  for (const char* name : names) {
    if (auto v = env(name)) return v;
  }
  return std::nullopt;
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<std::string> percentDecode(std::string_view in) {
  std::string out;
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out += in[i];
      continue;
    }
    if (i + 2 >= in.size()) return std::nullopt;
    const int hi = hexValue(in[i + 1]);
    const int lo = hexValue(in[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

bool parsePort(std::string_view text, int& port) {
  int value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value <= 0 || value > 65535) {
    return false;
  }
  port = value;
  return true;
}

// An IPv4 or IPv6 literal as 16 bytes (IPv4 mapped into ::ffff:0:0/96, so
// a v4 range never matches a v6 address by accident); the bit count of the
// family's own address in `bits`.
std::optional<std::array<unsigned char, 16>> ipBytes(const std::string& text, int& bits) {
  std::array<unsigned char, 16> out{};
  in_addr v4{};
  if (::inet_pton(AF_INET, text.c_str(), &v4) == 1) {
    out[10] = 0xff;
    out[11] = 0xff;
    std::memcpy(out.data() + 12, &v4, 4);
    bits = 32;
    return out;
  }
  in6_addr v6{};
  if (::inet_pton(AF_INET6, text.c_str(), &v6) == 1) {
    std::memcpy(out.data(), &v6, 16);
    bits = 128;
    return out;
  }
  return std::nullopt;
}

bool samePrefix(const std::array<unsigned char, 16>& a, const std::array<unsigned char, 16>& b,
                int prefixBits) {
  for (int i = 0; i < prefixBits; ++i) {
    const int byte = i / 8;
    const int mask = 0x80 >> (i % 8);
    if ((a[static_cast<std::size_t>(byte)] & mask) != (b[static_cast<std::size_t>(byte)] & mask)) {
      return false;
    }
  }
  return true;
}

// One NO_PROXY entry against a host (lower case, no trailing dot).
bool entryMatches(std::string entry, const std::string& host, int port) {
  // An optional ":port" at the end; brackets and bare IPv6 need care.
  std::optional<int> wantPort;
  if (entry.front() == '[') {
    const auto close = entry.find(']');
    if (close == std::string::npos) return false;
    std::string rest = entry.substr(close + 1);
    entry = entry.substr(1, close - 1);
    if (!rest.empty()) {
      int p = 0;
      if (rest.front() != ':' || !parsePort(std::string_view(rest).substr(1), p)) return false;
      wantPort = p;
    }
  } else if (std::count(entry.begin(), entry.end(), ':') == 1) {
    const auto colon = entry.find(':');
    int p = 0;
    if (!parsePort(std::string_view(entry).substr(colon + 1), p)) return false;
    wantPort = p;
    entry.resize(colon);
  }
  if (wantPort && *wantPort != port) return false;
  if (entry.empty()) return false;

  int hostBits = 0;
  const auto hostIp = ipBytes(host, hostBits);
  if (const auto slash = entry.find('/'); slash != std::string::npos) {
    int entryBits = 0;
    const auto net = ipBytes(entry.substr(0, slash), entryBits);
    int prefix = 0;
    const std::string prefixText = entry.substr(slash + 1);
    const auto [end, ec] =
        std::from_chars(prefixText.data(), prefixText.data() + prefixText.size(), prefix);
    if (!net || !hostIp || ec != std::errc() || end != prefixText.data() + prefixText.size() ||
        prefix < 0 || prefix > entryBits || entryBits != hostBits) {
      return false;
    }
    return samePrefix(*net, *hostIp, prefix + (128 - entryBits));
  }
  int entryBits = 0;
  if (const auto ip = ipBytes(entry, entryBits)) return hostIp && *ip == *hostIp;

  // A name: itself and every name below it. An address is no name.
  if (hostIp) return false;
  while (!entry.empty() && entry.front() == '.') entry.erase(entry.begin());
  while (!entry.empty() && entry.back() == '.') entry.pop_back();
  if (entry.empty()) return false;
  if (host == entry) return true;
  return host.size() > entry.size() &&
         host.compare(host.size() - entry.size(), entry.size(), entry) == 0 &&
         host[host.size() - entry.size() - 1] == '.';
}

}  // namespace

std::string ProxyUrl::authority() const {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::string ProxyUrl::display() const {
  return "http://" + authority();
}

std::string ProxyUrl::basicAuth() const {
  const std::string pair = user + ":" + password;
  std::string text(sodium_base64_ENCODED_LEN(pair.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(text.data(), text.size(), reinterpret_cast<const unsigned char*>(pair.data()),
                    pair.size(), sodium_base64_VARIANT_ORIGINAL);
  text.resize(std::strlen(text.c_str()));
  return "Basic " + text;
}

std::string redactProxyUrl(const std::string& text) {
  const auto sep = text.find("://");
  const std::size_t start = sep == std::string::npos ? 0 : sep + 3;
  const auto end = text.find_first_of("/?#", start);
  const auto at = text.rfind('@', end == std::string::npos ? std::string::npos : end);
  if (at == std::string::npos || at < start) return text;
  return text.substr(0, start) + "***@" + text.substr(at + 1);
}

Result<ProxyUrl> parseProxyUrl(const std::string& text) {
  const std::string shown = redactProxyUrl(text);
  std::string rest = text;
  if (const auto sep = rest.find("://"); sep != std::string::npos) {
    const std::string scheme = lower(rest.substr(0, sep));
    if (scheme != "http") {
      return Error{Status::InvalidArgument,
                   "proxy URL must be http://[user:password@]host[:port] (other schemes are not "
                   "supported): '" +
                       shown + "'"};
    }
    rest = rest.substr(sep + 3);
  }
  // A path of "/" is common in these variables; anything more is a mistake.
  if (const auto slash = rest.find_first_of("/?#"); slash != std::string::npos) {
    if (rest.substr(slash) != "/") {
      return Error{Status::InvalidArgument, "proxy URL has a path: '" + shown + "'"};
    }
    rest.resize(slash);
  }
  ProxyUrl proxy;
  if (const auto at = rest.rfind('@'); at != std::string::npos) {
    const std::string info = rest.substr(0, at);
    rest = rest.substr(at + 1);
    const auto colon = info.find(':');
    auto user = percentDecode(info.substr(0, colon));
    auto password = colon == std::string::npos ? std::optional<std::string>("")
                                               : percentDecode(info.substr(colon + 1));
    if (!user || !password) {
      return Error{Status::InvalidArgument,
                   "proxy URL has a broken %-escape in its credentials: '" + shown + "'"};
    }
    proxy.user = std::move(*user);
    proxy.password = std::move(*password);
  }
  std::string portText;
  if (!rest.empty() && rest.front() == '[') {
    const auto close = rest.find(']');
    if (close == std::string::npos) {
      return Error{Status::InvalidArgument, "proxy URL has a broken IPv6 address: '" + shown + "'"};
    }
    proxy.host = rest.substr(1, close - 1);
    const std::string after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        return Error{Status::InvalidArgument, "proxy URL is malformed: '" + shown + "'"};
      }
      portText = after.substr(1);
    }
  } else {
    const auto colon = rest.rfind(':');
    proxy.host = rest.substr(0, colon);
    if (colon != std::string::npos) portText = rest.substr(colon + 1);
  }
  if (proxy.host.empty()) {
    return Error{Status::InvalidArgument, "proxy URL has no host: '" + shown + "'"};
  }
  if (!portText.empty() && !parsePort(portText, proxy.port)) {
    return Error{Status::InvalidArgument, "proxy URL has a bad port: '" + shown + "'"};
  }
  return proxy;
}

bool noProxyMatches(std::string_view list, const std::string& hostIn, int port) {
  std::string host = lower(hostIn);
  while (!host.empty() && host.back() == '.') host.pop_back();
  std::size_t i = 0;
  while (i < list.size()) {
    const auto end = list.find_first_of(", \t", i);
    const std::string entry =
        lower(list.substr(i, end == std::string_view::npos ? std::string_view::npos : end - i));
    i = end == std::string_view::npos ? list.size() : end + 1;
    if (entry.empty()) continue;
    if (entry == "*") return true;
    if (entryMatches(entry, host, port)) return true;
  }
  return false;
}

Result<std::optional<ProxyUrl>> proxyFor(const Url& target, const std::string& setting,
                                         const std::string& noProxy) {
  const std::string mode = lower(setting);
  if (mode == "none" || mode == "direct") return std::optional<ProxyUrl>{};
  std::optional<std::string> chosen;
  std::string source = "Options::proxy";
  if (!setting.empty()) {
    chosen = setting;
  } else {
    const bool secure = target.secure();
    chosen =
        secure ? firstEnv({"https_proxy", "HTTPS_PROXY"}) : firstEnv({"http_proxy", "HTTP_PROXY"});
    source = secure ? "HTTPS_PROXY" : "HTTP_PROXY";
    if (!chosen) {
      chosen = firstEnv({"all_proxy", "ALL_PROXY"});
      source = "ALL_PROXY";
    }
  }
  if (!chosen) return std::optional<ProxyUrl>{};
  const std::string exempt =
      !noProxy.empty() ? noProxy : firstEnv({"no_proxy", "NO_PROXY"}).value_or("");
  if (noProxyMatches(exempt, target.host, target.port)) return std::optional<ProxyUrl>{};
  auto parsed = parseProxyUrl(*chosen);
  if (!parsed) {
    return Error{parsed.error().status, source + ": " + parsed.error().message};
  }
  return std::optional<ProxyUrl>(std::move(parsed).value());
}

std::string proxyRefusal(const ProxyUrl& proxy, const std::string& target,
                         std::string_view statusLine) {
  std::string text = "proxy " + proxy.display() + " refused the tunnel to " + target + ": " +
                     std::string(statusLine);
  // 407 is the standard answer; some proxies (tinyproxy 1.11) answer wrong
  // credentials with 401.
  if (statusLine.find(" 407") != std::string_view::npos ||
      statusLine.find(" 401") != std::string_view::npos) {
    text += proxy.hasCredentials() ? " (the proxy refused the user and password of the proxy URL)"
                                   : " (the proxy wants credentials: put them in the proxy URL, "
                                     "http://user:password@host:port)";
  }
  return text;
}

}  // namespace mesh::client::detail
