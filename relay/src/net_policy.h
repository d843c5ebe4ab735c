// Who may connect, and which client address a connection stands for.
//
// --allow-ips / --deny-ips decide who is served; --trusted-proxies names the
// peers (Fly's proxy, nginx, Caddy) whose X-Forwarded-For and Fly-Client-IP
// headers are believed. Anyone else could write those headers, so from any
// other peer they are ignored.
//
// Plain values without libwebsockets, built once from the Config; the loop
// thread only reads them afterwards.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mesh::relay {

// An IPv4 or IPv6 address. IPv4 is kept as IPv4-mapped IPv6 (::ffff:a.b.c.d),
// so "10.1.2.3" and "::ffff:10.1.2.3" are the same address and both match
// the list entry 10.0.0.0/8.
struct IpAddress {
  std::array<std::uint8_t, 16> bytes{};
  [[nodiscard]] bool isV4() const;
  friend bool operator==(const IpAddress&, const IpAddress&) = default;
};

// Parses "192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1", also "[2001:db8::1]"
// as proxies write it. nullopt for anything else (ports, zones, names).
[[nodiscard]] std::optional<IpAddress> parseIp(std::string_view text);
// Dotted quad for IPv4 (also when it came in mapped), RFC 5952 text for IPv6.
[[nodiscard]] std::string formatIp(const IpAddress& ip);
// An address as formatIp writes it (IPv4-mapped IPv6 reads as IPv4); text
// that is no address comes back as it is.
[[nodiscard]] std::string canonicalIp(std::string_view text);

// "10.0.0.0/8", "2001:db8::/32", or a single address (a /32 or /128).
struct Cidr {
  IpAddress base;       // host bits cleared
  unsigned prefix = 0;  // in IPv6 bits: an IPv4 /8 is stored as /104
  [[nodiscard]] bool contains(const IpAddress& ip) const;
};
[[nodiscard]] std::optional<Cidr> parseCidr(std::string_view text);

class CidrList {
 public:
  CidrList() = default;
  // Entries may also hold several items separated by commas or spaces (as an
  // environment variable does). Throws std::invalid_argument naming the
  // first entry that is not a CIDR.
  explicit CidrList(const std::vector<std::string>& entries);
  [[nodiscard]] bool contains(const IpAddress& ip) const;
  [[nodiscard]] bool empty() const { return ranges_.empty(); }

 private:
  std::vector<Cidr> ranges_;
};

class NetPolicy {
 public:
  NetPolicy() = default;
  // Throws std::invalid_argument for an entry that is not a CIDR.
  NetPolicy(const std::vector<std::string>& allow, const std::vector<std::string>& deny,
            const std::vector<std::string>& trustedProxies);

  // Deny wins over allow; an empty allow list admits everyone not denied.
  // A text that is not an address is admitted only when no allow list is set.
  [[nodiscard]] bool admits(std::string_view address) const;

  // The address a connection stands for. `tcpPeer` is the socket's peer;
  // only when it is a trusted proxy are the headers read: Fly-Client-IP
  // first, then X-Forwarded-For from the right, skipping further trusted
  // proxies (the rightmost untrusted hop is the first one a proxy of ours
  // saw). Malformed header values are ignored. Returns formatted text.
  [[nodiscard]] std::string clientAddress(std::string_view tcpPeer, std::string_view forwardedFor,
                                          std::string_view flyClientIp) const;

  [[nodiscard]] bool trustsProxies() const { return !trusted_.empty(); }
  // True if `address` is one of --trusted-proxies.
  [[nodiscard]] bool isTrustedProxy(std::string_view address) const;

 private:
  CidrList allow_;
  CidrList deny_;
  CidrList trusted_;
};

}  // namespace mesh::relay
