// Which client a connection stands for, on the loop thread. The headers are
// read while lws still has them: in FILTER_PROTOCOL_CONNECTION, ESTABLISHED
// or HTTP, never later. Also the per-address count of TLS connections that
// lws has accepted and that have not sent their request head yet.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "log.h"
#include "server_impl.h"

namespace mesh::relay {
namespace {

std::string tokenHeader(lws* wsi, lws_token_indexes token) {
  const int len = lws_hdr_total_length(wsi, token);
  if (len <= 0 || len > 4096) return {};
  std::string value(static_cast<std::size_t>(len) + 1, '\0');
  if (lws_hdr_copy(wsi, value.data(), len + 1, token) < 0) return {};
  value.resize(static_cast<std::size_t>(len));
  return value;
}

std::string customHeader(lws* wsi, const char* nameWithColon) {
  const int nameLen = static_cast<int>(std::char_traits<char>::length(nameWithColon));
  const int len = lws_hdr_custom_length(wsi, nameWithColon, nameLen);
  if (len <= 0 || len > 256) return {};
  std::string value(static_cast<std::size_t>(len) + 1, '\0');
  if (lws_hdr_custom_copy(wsi, value.data(), len + 1, nameWithColon, nameLen) < 0) return {};
  value.resize(static_cast<std::size_t>(len));
  return value;
}

// The TCP peer of a socket lws has just accepted.
std::string socketPeer(int fd) {
  sockaddr_storage sa{};
  socklen_t len = sizeof sa;
  char buf[INET6_ADDRSTRLEN] = {0};
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) return {};
  if (sa.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(sa).sin_addr, buf, sizeof buf);
  } else if (sa.ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(sa).sin6_addr, buf, sizeof buf);
  } else {
    return {};
  }
  return canonicalIp(buf);
}

}  // namespace

int Server::Impl::onNetworkConnection(int fd) {
  pendingHandshakePeer.clear();
  if (shuttingDown) {
    refuse(RefuseReason::ShuttingDown);
    return 1;
  }
  // As on the plain listener (onAccept): counted from here until the
  // request head has been read; a trusted proxy counts as the client it
  // names, once that is known.
  std::string peer = socketPeer(fd);
  if (peer.empty() || netPolicy.isTrustedProxy(peer)) return 0;
  auto it = unauthenticatedPerIp.find(peer);
  if ((it == unauthenticatedPerIp.end() ? 0u : it->second) >= config.maxUnauthenticatedPerIp) {
    refuse(RefuseReason::UnauthenticatedLimit);
    LOG_DEBUG("refused a connection from " << peer << ": " << config.maxUnauthenticatedPerIp
                                           << " unauthenticated connections already");
    return 1;
  }
  // lws creates the connection's wsi next, in the same call (onWsiCreated).
  pendingHandshakePeer = std::move(peer);
  return 0;
}

void Server::Impl::onWsiCreated(lws* wsi) {
  if (pendingHandshakePeer.empty()) return;
  releaseHandshake(wsi);  // an entry left by a wsi freed without a destroy callback
  ++unauthenticatedPerIp[pendingHandshakePeer];
  tlsHandshakes[wsi] = TlsHandshake{std::move(pendingHandshakePeer), nowUs()};
  pendingHandshakePeer.clear();
}

void Server::Impl::releaseHandshake(lws* wsi) {
  auto h = tlsHandshakes.find(wsi);
  if (h == tlsHandshakes.end()) return;
  auto it = unauthenticatedPerIp.find(h->second.peer);
  if (it != unauthenticatedPerIp.end() && --it->second == 0) unauthenticatedPerIp.erase(it);
  tlsHandshakes.erase(h);
}

std::string Server::Impl::clientAddress(lws* wsi) const {
  const std::string peer = peerAddress(wsi);
  if (!netPolicy.trustsProxies()) return netPolicy.clientAddress(peer, {}, {});
  // lws stores header names it does not know in lower case.
  return netPolicy.clientAddress(peer, tokenHeader(wsi, WSI_TOKEN_X_FORWARDED_FOR),
                                 customHeader(wsi, "fly-client-ip:"));
}

void Server::Impl::refuse(RefuseReason reason) {
  ++counters.connectionsRefused;
  ++counters.refusedBy[static_cast<std::size_t>(reason)];
}

}  // namespace mesh::relay
