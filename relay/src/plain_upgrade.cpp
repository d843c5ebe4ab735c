// A plain connection from accept to its first byte of WebSocket: its request
// head is read and checked (readRequestHead, http_head.h); too large a head,
// one whose body length is in doubt and a WebSocket on another path are
// answered and closed; an upgrade to /gateway is answered here
// (ws_handshake.h) and becomes a Session; every other request (the HTTP
// routes) goes to lws with its body still unread.
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "http_head.h"
#include "log.h"
#include "plain_connection.h"
#include "plain_io.h"
#include "server_impl.h"
#include "ws_handshake.h"

namespace mesh::relay {

void Server::Impl::onUpgradeReadable(Upgrade& u) {
  // Peeked first: what follows a request that is not ours (its body, say)
  // must reach lws untouched (lws 4.1.6 can be handed bytes already read,
  // but loops forever on a request body among them). Only a head not yet
  // complete is read, so that the watcher waits for more; those bytes, never
  // a body, go to lws with the socket should the request not be ours.
  char buf[kMaxRequestHeadBytes + 1];
  const ssize_t n = ::recv(u.fd, buf, sizeof buf - u.head.size(), MSG_PEEK);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
  if (n <= 0) {
    dropUpgrade(u, {});
    return;
  }
  std::string bytes = u.head;
  bytes.append(buf, static_cast<std::size_t>(n));
  const RequestHead h = readRequestHead(bytes);
  if (h.state == RequestHead::State::Refused) {
    LOG_INFO("refused a request from " << u.socketPeer << ": " << h.why);
    refuseRequest(u, h.status);
    return;
  }
  const bool gateway = h.state == RequestHead::State::Complete && ws::isGatewayRequest(h);
  if (h.state == RequestHead::State::Incomplete || gateway) {
    // Ours to read: a head still arriving, or a gateway upgrade with any
    // frames the client sent right behind it.
    if (::recv(u.fd, buf, static_cast<std::size_t>(n), 0) != n) {
      dropUpgrade(u, {});
      return;
    }
    u.head = std::move(bytes);
    if (gateway) finishUpgrade(u);
    return;
  }
  if (h.upgrade) {
    // As the original relay: a WebSocket anywhere but /gateway is a 400.
    LOG_DEBUG("refused an upgrade to " << h.method << " " << h.target);
    refuse(RefuseReason::NotGateway);
    refuseRequest(u, 400);
    return;
  }
  handOverToLws(u);
}

void Server::Impl::finishUpgrade(Upgrade& u) {
  const std::size_t headEnd = u.head.find("\r\n\r\n") + 4;
  const std::size_t lineEnd = u.head.find("\r\n");
  ws::UpgradeHeaders h =
      ws::parseUpgradeHeaders(std::string_view(u.head).substr(lineEnd + 2, headEnd - lineEnd - 4));
  if (std::string error = ws::upgradeError(h); !error.empty()) {
    dropUpgrade(u, error);
    return;
  }
  std::string peer = netPolicy.trustsProxies()
                         ? netPolicy.clientAddress(u.socketPeer, h.forwardedFor, h.flyClientIp)
                         : netPolicy.clientAddress(u.socketPeer, {}, {});
  // From here the connection counts as the session it becomes (openSession).
  releaseHandshake(u);
  if (auto reason = gatewayRefusal(peer)) {
    dropUpgrade(u, ws::httpError(*reason == RefuseReason::UnauthenticatedLimit
                                     ? "429 Too Many Requests"
                                     : "503 Service Unavailable"));
    return;
  }
  // Frames the client sent right behind its request.
  std::string early = u.head.substr(headEnd);
  if (!h.authorization.empty()) {
    // Credentials on the request: the 101 waits for their check.
    awaitUpgradeCredentials(u, std::move(peer), std::move(h.key), std::move(h.host),
                            std::move(h.authorization), std::move(early));
    return;
  }
  upgradeToSession(u, std::move(peer), h.key, std::move(h.host), std::move(early));
}

Session* Server::Impl::upgradeToSession(Upgrade& u, std::string peer, std::string_view key,
                                        std::string host, std::string early,
                                        const std::function<void(Session&)>& beforeEarly) {
  if (!plain::sendAll(u.fd, ws::switchingProtocols(key))) {
    dropUpgrade(u, {});
    return nullptr;
  }
  const int fd = u.fd;
  ev_io_stop(evLoop, &u.io);
  upgrades.erase(&u);

  Session& s = openSession(std::make_unique<PlainConnection>(*this), std::move(peer));
  s.host = std::move(host);
  if (beforeEarly) {
    const std::uint64_t id = s.id;
    beforeEarly(s);
    Session* again = findSession(id);
    if (!again) return nullptr;
    PlainConnection::of(*again).start(*again, fd, std::move(early));
    return findSession(id);
  }
  PlainConnection::of(s).start(s, fd, std::move(early));
  return &s;
}

void Server::Impl::handOverToLws(Upgrade& u) {
  const int fd = u.fd;
  // With the part of the head read while it arrived, if any (never its end,
  // nor a body: those are still in the socket). On failure lws closes the
  // socket itself.
  const std::string early = std::move(u.head);
  releaseHandshake(u);
  ev_io_stop(evLoop, &u.io);
  upgrades.erase(&u);
  lws* wsi = early.empty() ? lws_adopt_socket_vhost(vhost, fd)
                           : lws_adopt_socket_vhost_readbuf(vhost, fd, early.data(), early.size());
  if (wsi == nullptr) LOG_WARN("lws did not take a connection; it is closed");
}

void Server::Impl::refuseRequest(Upgrade& u, int status) {
  // What the client sent is read first: a socket closed with input unread
  // is reset, and the reset can overtake the answer.
  char sink[4096];
  for (int i = 0; i < 16 && ::recv(u.fd, sink, sizeof sink, MSG_DONTWAIT) > 0; ++i) {
  }
  dropUpgrade(u, ws::httpError(ws::refusalStatus(status)));
}

void Server::Impl::releaseHandshake(Upgrade& u) {
  if (!u.counted) return;
  u.counted = false;
  auto it = unauthenticatedPerIp.find(u.socketPeer);
  if (it != unauthenticatedPerIp.end() && --it->second == 0) unauthenticatedPerIp.erase(it);
}

void Server::Impl::dropUpgrade(Upgrade& u, std::string_view response) {
  releaseHandshake(u);
  abandonUpgradeCheck(u);
  if (!response.empty()) plain::sendAll(u.fd, response);
  ev_io_stop(evLoop, &u.io);
  ::close(u.fd);
  upgrades.erase(&u);
}

void Server::Impl::sweepUpgrades(std::int64_t now) {
  const auto limit = static_cast<std::int64_t>(config.handshakeTimeoutSeconds * 1e6);
  std::vector<Upgrade*> late;
  for (auto& [u, owned] : upgrades) {
    if (now - u->startedUs >= limit) late.push_back(u);
  }
  for (Upgrade* u : late) dropUpgrade(*u, ws::httpError("408 Request Timeout"));
  // TLS: lws ends a connection whose head is late by itself. One still
  // counted long after that was freed without a destroy callback (lws does
  // that when setting up a connection fails).
  std::vector<lws*> stale;
  for (auto& [wsi, h] : tlsHandshakes) {
    if (now - h.startedUs >= 3 * limit) stale.push_back(wsi);
  }
  for (lws* wsi : stale) releaseHandshake(wsi);
}

}  // namespace mesh::relay
