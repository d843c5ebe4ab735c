// HTTP proxies for the client: which proxy (if any) a URL goes through,
// from Options or from the environment variables curl and most tools read,
// and the CONNECT tunnel through one.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "mesh/client/status.h"
#include "url.h"

namespace mesh::client::detail {

// An http:// proxy, with the credentials of its URL percent-decoded.
struct ProxyUrl {
  std::string host;  // without IPv6 brackets
  int port = 1080;   // curl's default when the URL names none
  std::string user;
  std::string password;
  [[nodiscard]] bool hasCredentials() const { return !user.empty() || !password.empty(); }
  // "http://host:port": for messages, never with the credentials.
  [[nodiscard]] std::string display() const;
  // "host:port" with brackets around IPv6.
  [[nodiscard]] std::string authority() const;
  // The Proxy-Authorization header's value: "Basic base64(user:password)".
  [[nodiscard]] std::string basicAuth() const;
};

// "http://[user[:password]@]host[:port][/]" or the same without "http://".
// Other schemes (https://, socks5://) are refused: the client speaks to its
// proxy in plain HTTP only. The error message never holds the credentials.
[[nodiscard]] Result<ProxyUrl> parseProxyUrl(const std::string& text);

// A proxy URL with its user information cut out, for messages.
[[nodiscard]] std::string redactProxyUrl(const std::string& text);

// True when `host`:`port` is exempt by a NO_PROXY list: comma (or space)
// separated entries, each "*" (everything), a host name that matches itself
// and every name below it (a leading dot changes nothing: "example.com" and
// ".example.com" both match "a.example.com" and "example.com"), an IP
// address (also "[v6]"), or a CIDR range ("10.0.0.0/8", "fd00::/8"); any of
// these but "*" may end in ":port" to match that port only. Case does not
// matter; a trailing dot of the host is ignored.
[[nodiscard]] bool noProxyMatches(std::string_view list, const std::string& host, int port);

// The proxy `target` goes through. `setting` is Options::proxy: empty reads
// the environment (for ws:// and http://: http_proxy, HTTP_PROXY; for wss://
// and https://: https_proxy, HTTPS_PROXY; then all_proxy, ALL_PROXY; the
// lower-case name wins when both are set), "none" or "direct" means never,
// anything else is the proxy's URL. `noProxy` is Options::noProxy: empty
// reads no_proxy, then NO_PROXY. nullopt: connect directly.
[[nodiscard]] Result<std::optional<ProxyUrl>> proxyFor(const Url& target,
                                                       const std::string& setting,
                                                       const std::string& noProxy);

// Opens a TCP connection to `proxy` and asks it for a tunnel to `target`
// (CONNECT host:port). Returns the socket (non-blocking) once the proxy
// answered 2xx. Errors (ConnectionFailed) name the proxy without its
// credentials and quote the proxy's status line: 407 says the credentials
// were refused or missing.
[[nodiscard]] Result<int> openTunnel(const ProxyUrl& proxy, const Url& target,
                                     std::chrono::steady_clock::time_point deadline);

// The text of a refusal: "<proxy> refused the tunnel to <target>: <status
// line>" and a hint for 407.
[[nodiscard]] std::string proxyRefusal(const ProxyUrl& proxy, const std::string& target,
                                       std::string_view statusLine);

}  // namespace mesh::client::detail
