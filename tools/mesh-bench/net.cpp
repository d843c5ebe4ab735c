#include "net.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>

namespace mesh::bench {

namespace {

bool make_addr(const std::string& host, uint16_t port, sockaddr_in& sa) {
  sa = sockaddr_in{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  std::string h = host == "localhost" ? std::string("127.0.0.1") : host;
  return inet_pton(AF_INET, h.c_str(), &sa.sin_addr) == 1;
}

}  // namespace

bool parse_ws_url(const std::string& url, Endpoint& out) {
  const std::string scheme = "ws://";
  if (url.rfind(scheme, 0) != 0) return false;
  std::string rest = url.substr(scheme.size());
  auto slash = rest.find('/');
  std::string hostport = rest.substr(0, slash);
  out.path = slash == std::string::npos ? "/" : rest.substr(slash);
  auto colon = hostport.rfind(':');
  if (colon == std::string::npos) {
    out.host = hostport;
    out.port = 80;
  } else {
    out.host = hostport.substr(0, colon);
    unsigned p = 0;
    auto s = hostport.substr(colon + 1);
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), p);
    if (ec != std::errc() || ptr != s.data() + s.size() || p == 0 || p > 65535) return false;
    out.port = static_cast<uint16_t>(p);
  }
  return !out.host.empty();
}

int start_connect(const Endpoint& ep, int src_index) {
  sockaddr_in sa{};
  if (!make_addr(ep.host, ep.port, sa)) {
    errno = EINVAL;
    return -1;
  }
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (src_index >= 0) {
    // Let connect() pick the port per 4-tuple, so each source address has its
    // own ephemeral port range.
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    sockaddr_in src{};
    src.sin_family = AF_INET;
    src.sin_addr.s_addr = htonl(0x7f000001u + static_cast<uint32_t>(src_index));
    if (bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) {
      int e = errno;
      close(fd);
      errno = e;
      return -1;
    }
  }
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 && errno != EINPROGRESS) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

int blocking_connect(const Endpoint& ep, int timeout_ms) {
  int fd = start_connect(ep, -1);
  if (fd < 0) return -1;
  pollfd p{fd, POLLOUT, 0};
  if (poll(&p, 1, timeout_ms) != 1) {
    close(fd);
    return -1;
  }
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) {
    close(fd);
    errno = err;
    return -1;
  }
  int flags = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  return fd;
}

bool port_is_open(const Endpoint& ep) {
  int fd = blocking_connect(ep, 200);
  if (fd < 0) return false;
  close(fd);
  return true;
}

}  // namespace mesh::bench
