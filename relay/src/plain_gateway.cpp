// The /gateway WebSocket on plain TCP, served by the relay itself.
//
// Without TLS the relay owns the listening socket. Every request head is
// checked here first (readRequestHead): one whose body length is in doubt,
// too large a head and a WebSocket on another path are answered and closed.
// An upgrade to /gateway is answered here and its frames are read and
// written here; every other request (the HTTP routes) goes to lws with its
// body still unread (onUpgradeReadable), and lws serves it as before. With a
// certificate configured, lws listens itself and none of this runs.
//
// Why not lws for these too: lws keeps about 1.9 KB per WebSocket (its
// connection struct and an rx buffer) for the connection's whole life, and
// each write goes through its partial-write machinery. Here an idle
// connection is its Session and its socket, and queued frames leave in one
// write per loop turn (writePlain).
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "http_head.h"
#include "log.h"
#include "server_impl.h"
#include "ws_codec.h"

namespace mesh::relay {

namespace {

constexpr std::size_t kReadChunk = 64 * 1024;
constexpr int kReadsPerEvent = 4;
constexpr int kAcceptsPerEvent = 64;
// Frames put into one sendmsg().
constexpr std::size_t kMaxIov = 64;
// Up to this size, several queued frames are copied into one buffer: the
// kernel's copy from one segment costs less than walking one per frame.
constexpr std::size_t kCoalesceBytes = 16 * 1024;
// Spare descriptors for HTTP exchanges and handshakes above maxConnections.
constexpr std::size_t kSpareConnections = 256;

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

// True if the comma-separated header value lists `token` (case-insensitive).
bool hasToken(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    const std::size_t comma = value.find(',');
    if (equalsIgnoreCase(trim(value.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

// "GET /gateway" or with a query string: ours to answer.
bool isGatewayRequest(const RequestHead& h) {
  constexpr std::string_view kPath = "/gateway";
  return h.method == "GET" && h.target.substr(0, kPath.size()) == kPath &&
         (h.target.size() == kPath.size() || h.target[kPath.size()] == '?');
}

std::string_view statusLine(int status) {
  switch (status) {
    case 414:
      return "414 URI Too Long";
    case 431:
      return "431 Request Header Fields Too Large";
    default:
      return "400 Bad Request";
  }
}

struct UpgradeHeaders {
  std::string upgrade;
  std::string connection;
  std::string key;
  std::string version;
  std::string forwardedFor;
  std::string flyClientIp;
  std::string host;
  std::string authorization;  // credentials: wiped once read (upgrade_auth.cpp)
};

UpgradeHeaders parseHeaders(std::string_view lines) {
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
    // A repeated header is one list (RFC 9110 5.3).
    if (!field->empty()) field->append(", ");
    field->append(value);
  }
  return h;
}

// RFC 6455 4.1: the key is 16 random bytes in base64, so 22 characters and
// "==" (the check the original relay's `ws` makes).
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

std::string httpError(std::string_view status) {
  std::string out = "HTTP/1.1 ";
  out.append(status);
  out.append("\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
  return out;
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

// The server whose loop this thread turns (set by run()): libev hands a
// callback only its watcher, and a session's watcher points to the session.
thread_local Server::Impl* loopOwner = nullptr;

Server::Impl* ownerOf(struct ev_loop* /*loop*/) {
  return loopOwner;
}

void onListenEvent(struct ev_loop* loop, ev_io* /*w*/, int /*revents*/) {
  ownerOf(loop)->onAccept();
}

void onAcceptPauseOver(struct ev_loop* loop, ev_timer* /*w*/, int /*revents*/) {
  auto* self = ownerOf(loop);
  if (self->listenFd >= 0) ev_io_start(loop, &self->listenIo);
}

void onUpgradeEvent(struct ev_loop* loop, ev_io* w, int /*revents*/) {
  ownerOf(loop)->onUpgradeReadable(*static_cast<Server::Impl::Upgrade*>(w->data));
}

void onSessionEvent(struct ev_loop* loop, ev_io* w, int revents) {
  auto* self = ownerOf(loop);
  try {
    self->onPlainEvent(*static_cast<Session*>(w->data), revents);
  } catch (const std::exception& e) {
    // As for lws connections: this one is dropped, the relay goes on.
    LOG_ERROR("internal error on a connection, closing it: " << e.what());
    self->closePlain(*static_cast<Session*>(w->data));
  }
}

}  // namespace

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
  loopOwner = this;
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
  for (auto& [id, s] : sessions) {
    if (!s->plainSocket() || !ev_is_active(&s->io)) continue;
    ev_io_stop(evLoop, &s->io);
    ::close(s->io.fd);
  }
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
        sendAll(fd, httpError("429 Too Many Requests"));
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
    ev_io_init(&u.io, onUpgradeEvent, fd, EV_READ);
    u.io.data = &u;
    ev_io_start(evLoop, &u.io);
    upgrades.emplace(&u, std::move(owned));
  }
}

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
  const bool gateway = h.state == RequestHead::State::Complete && isGatewayRequest(h);
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
  UpgradeHeaders h =
      parseHeaders(std::string_view(u.head).substr(lineEnd + 2, headEnd - lineEnd - 4));
  if (!hasToken(h.upgrade, "websocket") || !hasToken(h.connection, "upgrade")) {
    dropUpgrade(u, httpError("426 Upgrade Required\r\nUpgrade: websocket"));
    return;
  }
  if (h.version != "13") {
    // RFC 6455 4.4: name the version this server speaks.
    dropUpgrade(u, httpError("426 Upgrade Required\r\nSec-WebSocket-Version: 13"));
    return;
  }
  if (!isWellFormedKey(h.key)) {
    dropUpgrade(u, httpError("400 Bad Request"));
    return;
  }
  std::string peer = netPolicy.trustsProxies()
                         ? netPolicy.clientAddress(u.socketPeer, h.forwardedFor, h.flyClientIp)
                         : netPolicy.clientAddress(u.socketPeer, {}, {});
  // From here the connection counts as the session it becomes (openSession).
  releaseHandshake(u);
  if (auto reason = gatewayRefusal(peer)) {
    dropUpgrade(
        u, httpError(*reason == RefuseReason::UnauthenticatedLimit ? "429 Too Many Requests"
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
  Session* s = upgradeToSession(u, std::move(peer), h.key);
  if (!s) return;
  s->host = std::move(h.host);
  if (!early.empty()) handleBytes(*s, early.data(), early.size());
}

Session* Server::Impl::upgradeToSession(Upgrade& u, std::string peer, std::string_view key) {
  std::string response =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: ";
  response.append(acceptKey(key));
  response.append("\r\n\r\n");
  if (!sendAll(u.fd, response)) {
    dropUpgrade(u, {});
    return nullptr;
  }
  const int fd = u.fd;
  ev_io_stop(evLoop, &u.io);
  upgrades.erase(&u);

  Session& s = openSession(nullptr, std::move(peer));
  ev_io_init(&s.io, onSessionEvent, fd, EV_READ);
  s.io.data = &s;
  ev_io_start(evLoop, &s.io);
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
  dropUpgrade(u, httpError(statusLine(status)));
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
  if (!response.empty()) sendAll(u.fd, response);
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
  for (Upgrade* u : late) dropUpgrade(*u, httpError("408 Request Timeout"));
  // TLS: lws ends a connection whose head is late by itself. One still
  // counted long after that was freed without a destroy callback (lws does
  // that when setting up a connection fails).
  std::vector<lws*> stale;
  for (auto& [wsi, h] : tlsHandshakes) {
    if (now - h.startedUs >= 3 * limit) stale.push_back(wsi);
  }
  for (lws* wsi : stale) releaseHandshake(wsi);
}

void Server::Impl::onPlainEvent(Session& s, int revents) {
  if ((revents & EV_WRITE) && writePlain(s) == WriteResult::Failed) {
    closePlain(s);
    return;
  }
  if (revents & EV_READ) readPlain(s);
}

bool Server::Impl::readPlain(Session& s) {
  for (int i = 0; i < kReadsPerEvent; ++i) {
    const ssize_t n = ::recv(s.io.fd, readBuffer.data(), readBuffer.size(), 0);
    if (n > 0) {
      if (!handleBytes(s, readBuffer.data(), static_cast<std::size_t>(n))) return false;
      if (static_cast<std::size_t>(n) < readBuffer.size()) return true;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    // End of stream or a reset: the peer is gone.
    closePlain(s);
    return false;
  }
  return true;
}

// RFC 6455 5.2 from the server's side: every client frame is masked, no
// extension is negotiated (so no reserved bit may be set), control frames
// are short and whole. A data frame larger than the relay takes is not
// buffered: its bytes are dropped as they arrive and the node gets
// frame_too_large when its message ends, as for one that fits.
bool Server::Impl::handleBytes(Session& s, char* data, std::size_t len) {
  heardFrom(s);
  if (s.peerClosed) return true;
  if (s.skipRemaining > 0) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(len, s.skipRemaining));
    data += n;
    len -= n;
    dropOversize(s, n);
    if (len == 0) return true;
  }
  // A frame cut off by the previous read is completed in its own buffer.
  std::string carried;
  if (!s.rxPartial.empty()) {
    s.rxPartial.append(data, len);
    carried.swap(s.rxPartial);
    data = carried.data();
    len = carried.size();
  }
  std::size_t pos = 0;
  while (pos < len) {
    const ws::FrameHeader h =
        ws::readHeader(reinterpret_cast<const unsigned char*>(data + pos), len - pos, s.rxActive);
    if (h.error) {
      protocolError(s, h.error);
      return true;
    }
    if (h.length == 0) break;  // the header is not all here yet
    if (!h.control() && h.size > config.limits.maxFrameBytes) {
      if (!s.rxActive) {
        s.rxActive = true;
        s.rxBinary = h.opcode == 0x2;
      }
      s.rxOversize = true;
      s.rx.clear();
      s.rx.shrink_to_fit();
      pos += h.length;
      const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(len - pos, h.size));
      pos += n;
      s.skipRemaining = h.size;
      s.skipFinal = h.fin;
      dropOversize(s, n);
      continue;
    }
    if (len - pos - h.length < h.size) break;  // the payload is not all here yet
    char* payload = data + pos + h.length;
    const auto size = static_cast<std::size_t>(h.size);
    ws::unmask(payload, size, h.mask);
    pos += h.length + size;
    if (h.control()) {
      if (!handleControl(s, h.opcode, std::string_view(payload, size))) return false;
    } else {
      onReceive(s, payload, size, h.opcode == 0x2, h.fin);
    }
    if (s.peerClosed) return true;
  }
  if (pos < len) {
    if (carried.empty()) {
      s.rxPartial.assign(data + pos, len - pos);
    } else {
      carried.erase(0, pos);
      s.rxPartial.swap(carried);
    }
  }
  return true;
}

// `n` more bytes of an oversize frame are gone; the node hears about it once
// the message the frame belongs to has ended.
void Server::Impl::dropOversize(Session& s, std::size_t n) {
  s.skipRemaining -= n;
  if (s.skipRemaining == 0 && s.skipFinal) {
    s.rxActive = false;
    handleMessage(s, {}, s.rxBinary);
  }
}

bool Server::Impl::handleControl(Session& s, std::uint8_t opcode, std::string_view payload) {
  if (opcode == 0x9) {  // ping: answered with the same payload
    enqueue(s, makeControlFrame(OutFrame::kPong, payload));
    return true;
  }
  if (opcode == 0xA) return true;  // pong: handleBytes noted that the peer is alive
  // Close. An answer to ours, or the peer closing first while ours waits:
  // nothing more to say.
  if (s.state == SessionState::Closing) {
    closePlain(s);
    return false;
  }
  const ws::PeerClose close = ws::readClose(payload);
  if (close.problem) {
    // 1002 for a one-byte payload or a code no endpoint may send, 1007 for
    // a reason that is not UTF-8 (RFC 6455 7.4, 8.1).
    protocolError(s, close.problem, static_cast<int>(close.answerCode), close.answerReason);
    return true;
  }
  LOG_DEBUG("conn=" << s.id << " close frame from the peer, code " << close.code);
  // Answered with the same code (RFC 6455 5.5.1); the socket closes once the
  // answer is out (writePlain).
  closeSession(s, static_cast<int>(close.answerCode), "", true);
  s.peerClosed = true;
  return true;
}

void Server::Impl::protocolError(Session& s, std::string_view why, int code,
                                 std::string_view reason) {
  LOG_INFO("conn=" << s.id << " WebSocket protocol error: " << why);
  ++counters.framingErrors;
  s.rxPartial.clear();
  s.rxPartial.shrink_to_fit();
  s.skipRemaining = 0;
  closeSession(s, code, reason, true);
  // Failing the connection (RFC 6455 7.1.7): the socket closes as soon as
  // the close frame is out; the peer's input is no longer read as frames.
  s.peerClosed = true;
}

// Writes queued frames, several per write, until the queue is empty or the
// socket is full (then the watcher waits for EV_WRITE too): small ones copied
// into one buffer (coalesce()), larger ones by sendmsg() straight from their
// shared buffers. Failed: the connection is done and must close.
Server::Impl::WriteResult Server::Impl::writePlain(Session& s) {
  iovec iov[kMaxIov];
  while (!s.queue.empty()) {
    std::size_t count = 0;
    std::size_t total = 0;
    for (; count < s.queue.size() && count < kMaxIov && total < kWriteBatchBytes; ++count) {
      const OutFrame& f = *s.queue.at(count);
      const std::size_t skip = count == 0 ? s.sentOfFront : 0;
      iov[count].iov_base = const_cast<char*>(f.wire() + skip);
      iov[count].iov_len = f.wireSize() - skip;
      total += iov[count].iov_len;
    }
    ssize_t n;
    // After a partial write (rare: the socket was full) the rest goes from
    // the frames themselves.
    if (count > 1 && total <= kCoalesceBytes && s.sentOfFront == 0) {
      const std::string& bytes = coalesce(s, count);
      n = ::send(s.io.fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    } else {
      msghdr msg{};
      msg.msg_iov = iov;
      msg.msg_iovlen = count;
      n = ::sendmsg(s.io.fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        watchWritable(s, true);
        return WriteResult::Ok;
      }
      return WriteResult::Failed;
    }
    std::size_t left = static_cast<std::size_t>(n);
    std::int64_t now = 0;
    while (left > 0) {
      const std::size_t rest = s.queue.front()->wireSize() - s.sentOfFront;
      if (left < rest) {
        s.sentOfFront += left;
        break;
      }
      left -= rest;
      s.sentOfFront = 0;
      OutFramePtr frame = s.queue.pop();
      frameWritten(s, frame, now);
      // Our answer to the peer's close frame is out: the connection is done.
      if (frame->isClose && s.peerClosed) return WriteResult::Failed;
    }
    if (static_cast<std::size_t>(n) < total) {
      watchWritable(s, true);
      return WriteResult::Ok;
    }
  }
  watchWritable(s, false);
  return WriteResult::Ok;
}

void Server::Impl::watchWritable(Session& s, bool on) {
  if (s.waitingWritable == on) return;
  s.waitingWritable = on;
  ev_io_stop(evLoop, &s.io);
  ev_io_set(&s.io, s.io.fd, on ? EV_READ | EV_WRITE : EV_READ);
  ev_io_start(evLoop, &s.io);
}

void Server::Impl::closePlain(Session& s) {
  ev_io_stop(evLoop, &s.io);
  ::close(s.io.fd);
  onClosed(s);
}

}  // namespace mesh::relay
