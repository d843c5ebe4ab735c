// The plain TCP listener: without TLS the relay owns the listening socket,
// accepts connections, applies the connection and per-address limits, and
// watches each new socket until its request head is read
// (plain_upgrade.cpp). With a certificate configured, lws listens itself and
// none of the plain path runs.
//
// Why not lws for /gateway: lws keeps about 1.9 KB per WebSocket (its
// connection struct and an rx buffer) for the connection's whole life, and
// each write goes through its partial-write machinery. Here an idle
// connection is its Session and its socket, and queued frames leave in one
// write per loop turn (plain_writer.cpp).
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "log.h"
#include "plain_connection.h"
#include "plain_io.h"
#include "server_impl.h"
#include "ws_handshake.h"

namespace mesh::relay {

namespace {

constexpr std::size_t kReadChunk = 64 * 1024;
constexpr int kAcceptsPerEvent = 64;
// Spare descriptors for HTTP exchanges and handshakes above maxConnections.
constexpr std::size_t kSpareConnections = 256;

thread_local Server::Impl* owner = nullptr;

std::string addressText(const sockaddr_storage& sa) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (sa.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(sa).sin_addr, buf, sizeof buf);
  } else if (sa.ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(sa).sin6_addr, buf, sizeof buf);
  } else {
    return "?";
  }
  return canonicalIp(buf);
}

void onListenEvent(struct ev_loop* /*loop*/, ev_io* /*w*/, int /*revents*/) {
  owner->onAccept();
}

void onAcceptPauseOver(struct ev_loop* loop, ev_timer* /*w*/, int /*revents*/) {
  if (owner->listenFd >= 0) ev_io_start(loop, &owner->listenIo);
}

}  // namespace

namespace plain {

Server::Impl* loopOwner() {
  return owner;
}

void onUpgradeEvent(struct ev_loop* /*loop*/, ev_io* w, int /*revents*/) {
  owner->onUpgradeReadable(*static_cast<Server::Impl::Upgrade*>(w->data));
}

void onSessionEvent(struct ev_loop* /*loop*/, ev_io* w, int revents) {
  try {
    auto& s = *static_cast<Session*>(w->data);
    PlainConnection::of(s).onEvent(s, revents);
  } catch (const std::exception& e) {
    // As for lws connections: this one is dropped, the relay goes on.
    LOG_ERROR("internal error on a connection, closing it: " << e.what());
    auto& s = *static_cast<Session*>(w->data);
    s.conn->kill(s);
  }
}

// Best effort: the socket is new and its send buffer empty.
bool sendAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

}  // namespace plain

void Server::Impl::openListener() {
  sockaddr_storage addr{};
  socklen_t addrLen = 0;
  const std::string& host = config.host;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&addr);
  if (host.empty() || host == "0.0.0.0") {
    v4->sin_family = AF_INET;
    v4->sin_addr.s_addr = htonl(INADDR_ANY);
    addrLen = sizeof *v4;
  } else if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    addrLen = sizeof *v4;
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    addrLen = sizeof *v6;
  } else {
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    addrinfo* found = nullptr;
    if (getaddrinfo(host.c_str(), nullptr, &hints, &found) != 0 || !found) {
      throw std::runtime_error("cannot resolve the listen address " + host);
    }
    std::memcpy(&addr, found->ai_addr, found->ai_addrlen);
    addrLen = found->ai_addrlen;
    freeaddrinfo(found);
  }
  const std::uint16_t port = config.port;
  if (addr.ss_family == AF_INET6) {
    v6->sin6_port = htons(port);
  } else {
    v4->sin_port = htons(port);
  }

  const int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  const int one = 1;
  const int zero = 0;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  // "::" means every address, IPv4 ones included.
  if (addr.ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), addrLen) != 0 ||
      ::listen(fd, SOMAXCONN) != 0) {
    const int err = errno;
    ::close(fd);
    throw std::runtime_error("cannot listen on " + (host.empty() ? "0.0.0.0" : host) + ":" +
                             std::to_string(port) + ": " + std::strerror(err));
  }
  sockaddr_storage bound{};
  socklen_t boundLen = sizeof bound;
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &boundLen);
  boundPort = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6&>(bound).sin6_port
                                                : reinterpret_cast<sockaddr_in&>(bound).sin_port);
  listenFd = fd;
  readBuffer.resize(kReadChunk);
  ev_io_init(&listenIo, onListenEvent, fd, EV_READ);
  ev_io_start(evLoop, &listenIo);
  ev_timer_init(&acceptPause, onAcceptPauseOver, 0.1, 0.0);
}

void Server::Impl::servePlainOnThisThread() {
  owner = this;
}

void Server::Impl::closeListener() {
  if (listenFd < 0) return;
  ev_io_stop(evLoop, &listenIo);
  ev_timer_stop(evLoop, &acceptPause);
  ::close(listenFd);
  listenFd = -1;
  std::vector<Upgrade*> pending;
  for (auto& [u, owned] : upgrades) pending.push_back(u);
  for (Upgrade* u : pending) dropUpgrade(*u, {});
  // Sessions left after the drain timeout: their sockets close with the
  // relay.
  for (auto& [id, s] : sessions) s->conn->abandon();
}

void Server::Impl::onAccept() {
  for (int i = 0; i < kAcceptsPerEvent; ++i) {
    sockaddr_storage sa{};
    socklen_t len = sizeof sa;
    const int fd =
        ::accept4(listenFd, reinterpret_cast<sockaddr*>(&sa), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of descriptors: the kernel keeps the connection queued; try
        // again shortly rather than spin on a listener that stays readable.
        LOG_WARN("accept: " << std::strerror(errno) << "; accepting again in 100 ms");
        ev_io_stop(evLoop, &listenIo);
        ev_timer_set(&acceptPause, 0.1, 0.0);
        ev_timer_start(evLoop, &acceptPause);
      }
      return;
    }
    if (shuttingDown) {
      refuse(RefuseReason::ShuttingDown);
      ::close(fd);
      continue;
    }
    if (sessions.size() + upgrades.size() + exchanges.size() >=
        config.maxConnections + kSpareConnections) {
      refuse(RefuseReason::ConnectionLimit);
      ::close(fd);
      continue;
    }
    std::string peer = addressText(sa);
    // A connection counts toward its address's unauthenticated ones from
    // here, through its handshake, until it has authenticated. Not one from
    // a trusted proxy: it stands for a client named in its headers, and
    // counts as that client once they are read.
    const bool counted = !netPolicy.isTrustedProxy(peer);
    if (counted) {
      auto it = unauthenticatedPerIp.find(peer);
      if ((it == unauthenticatedPerIp.end() ? 0u : it->second) >= config.maxUnauthenticatedPerIp) {
        refuse(RefuseReason::UnauthenticatedLimit);
        LOG_DEBUG("refused a connection from " << peer << ": " << config.maxUnauthenticatedPerIp
                                               << " unauthenticated connections already");
        plain::sendAll(fd, ws::httpError("429 Too Many Requests"));
        ::close(fd);
        continue;
      }
      ++unauthenticatedPerIp[peer];
    }
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    auto owned = std::make_unique<Upgrade>();
    Upgrade& u = *owned;
    u.fd = fd;
    u.counted = counted;
    u.socketPeer = std::move(peer);
    u.startedUs = nowUs();
    ev_io_init(&u.io, plain::onUpgradeEvent, fd, EV_READ);
    u.io.data = &u;
    ev_io_start(evLoop, &u.io);
    upgrades.emplace(&u, std::move(owned));
  }
}

}  // namespace mesh::relay
