#include "net_policy.h"

#include <arpa/inet.h>

#include <cstring>
#include <stdexcept>

namespace mesh::relay {
namespace {

constexpr std::array<std::uint8_t, 12> kMappedPrefix{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Splits on commas and whitespace, dropping empty pieces.
std::vector<std::string_view> splitList(std::string_view text) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= text.size(); ++i) {
    if (i == text.size() || text[i] == ',' || text[i] == ' ' || text[i] == '\t') {
      if (i > start) out.push_back(text.substr(start, i - start));
      start = i + 1;
    }
  }
  return out;
}

}  // namespace

bool IpAddress::isV4() const {
  return std::memcmp(bytes.data(), kMappedPrefix.data(), kMappedPrefix.size()) == 0;
}

std::optional<IpAddress> parseIp(std::string_view text) {
  text = trim(text);
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') {
    text = text.substr(1, text.size() - 2);
  }
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return std::nullopt;
  char buf[INET6_ADDRSTRLEN] = {0};
  std::memcpy(buf, text.data(), text.size());
  IpAddress ip;
  in_addr v4{};
  if (inet_pton(AF_INET, buf, &v4) == 1) {
    std::memcpy(ip.bytes.data(), kMappedPrefix.data(), kMappedPrefix.size());
    std::memcpy(ip.bytes.data() + 12, &v4, 4);
    return ip;
  }
  if (inet_pton(AF_INET6, buf, ip.bytes.data()) == 1) return ip;
  return std::nullopt;
}

std::string formatIp(const IpAddress& ip) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (ip.isV4()) {
    inet_ntop(AF_INET, ip.bytes.data() + 12, buf, sizeof buf);
  } else {
    inet_ntop(AF_INET6, ip.bytes.data(), buf, sizeof buf);
  }
  return buf;
}

std::string canonicalIp(std::string_view text) {
  const auto ip = parseIp(text);
  return ip ? formatIp(*ip) : std::string(text);
}

bool Cidr::contains(const IpAddress& ip) const {
  unsigned bits = prefix;
  for (std::size_t i = 0; i < ip.bytes.size() && bits > 0; ++i) {
    const unsigned take = bits >= 8 ? 8 : bits;
    const auto mask = static_cast<std::uint8_t>(0xff00u >> take);
    if ((ip.bytes[i] & mask) != base.bytes[i]) return false;
    bits -= take;
  }
  return true;
}

std::optional<Cidr> parseCidr(std::string_view text) {
  text = trim(text);
  const std::size_t slash = text.find('/');
  auto ip = parseIp(text.substr(0, slash));
  if (!ip) return std::nullopt;
  // An IPv4 prefix counts from the start of the mapped range.
  const unsigned offset =
      ip->isV4() && text.substr(0, slash).find(':') == std::string_view::npos ? 96 : 0;
  unsigned prefix = 128;
  if (slash != std::string_view::npos) {
    const std::string_view digits = text.substr(slash + 1);
    if (digits.empty() || digits.size() > 3) return std::nullopt;
    unsigned value = 0;
    for (char c : digits) {
      if (c < '0' || c > '9') return std::nullopt;
      value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value > 128 - offset) return std::nullopt;
    prefix = value + offset;
  }
  Cidr cidr;
  cidr.prefix = prefix;
  unsigned bits = prefix;
  for (std::size_t i = 0; i < cidr.base.bytes.size(); ++i) {
    const unsigned take = bits >= 8 ? 8 : bits;
    cidr.base.bytes[i] = static_cast<std::uint8_t>(ip->bytes[i] & (0xff00u >> take));
    bits -= take;
  }
  return cidr;
}

CidrList::CidrList(const std::vector<std::string>& entries) {
  for (const auto& entry : entries) {
    for (std::string_view item : splitList(entry)) {
      auto cidr = parseCidr(item);
      if (!cidr)
        throw std::invalid_argument("not an IP address or CIDR range: " + std::string(item));
      ranges_.push_back(*cidr);
    }
  }
}

bool CidrList::contains(const IpAddress& ip) const {
  for (const auto& r : ranges_) {
    if (r.contains(ip)) return true;
  }
  return false;
}

NetPolicy::NetPolicy(const std::vector<std::string>& allow, const std::vector<std::string>& deny,
                     const std::vector<std::string>& trustedProxies)
    : allow_(allow), deny_(deny), trusted_(trustedProxies) {}

bool NetPolicy::admits(std::string_view address) const {
  const auto ip = parseIp(address);
  if (!ip) return allow_.empty();
  if (deny_.contains(*ip)) return false;
  return allow_.empty() || allow_.contains(*ip);
}

bool NetPolicy::isTrustedProxy(std::string_view address) const {
  const auto ip = parseIp(address);
  return ip && trusted_.contains(*ip);
}

std::string NetPolicy::clientAddress(std::string_view tcpPeer, std::string_view forwardedFor,
                                     std::string_view flyClientIp) const {
  const auto peer = parseIp(tcpPeer);
  if (!peer) return std::string(tcpPeer);
  if (!trusted_.contains(*peer)) return formatIp(*peer);
  if (auto fly = parseIp(flyClientIp)) return formatIp(*fly);
  const auto hops = splitList(forwardedFor);
  IpAddress client = *peer;
  for (auto it = hops.rbegin(); it != hops.rend(); ++it) {
    const auto hop = parseIp(*it);
    if (!hop) break;  // a garbled entry: trust nothing to its left
    client = *hop;
    if (!trusted_.contains(*hop)) break;
  }
  return formatIp(client);
}

}  // namespace mesh::relay
