#include "http_request.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>

namespace meshctl {
namespace {

namespace mc = mesh::client;
using Clock = std::chrono::steady_clock;

// The parts of an http:// or https:// URL a request needs.
struct Target {
  bool tls = false;
  std::string host;  // without IPv6 brackets
  std::string port;  // decimal
  std::string hostHeader;
  std::string path;  // starts with '/'
};

std::string lowered(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::optional<Target> parseTarget(std::string_view url) {
  const auto sep = url.find("://");
  if (sep == std::string_view::npos) return std::nullopt;
  Target t;
  const std::string scheme = lowered(url.substr(0, sep));
  if (scheme == "https") {
    t.tls = true;
  } else if (scheme != "http") {
    return std::nullopt;
  }
  const std::string_view rest = url.substr(sep + 3);
  const auto pathStart = rest.find_first_of("/?#");
  const std::string_view authority = rest.substr(0, pathStart);
  t.path = pathStart == std::string_view::npos ? "/" : std::string(rest.substr(pathStart));
  if (t.path.front() != '/') t.path.insert(t.path.begin(), '/');
  if (authority.empty() || authority.find('@') != std::string_view::npos) return std::nullopt;

  std::string_view portText;
  if (authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    t.host = std::string(authority.substr(1, close - 1));
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return std::nullopt;
      portText = after.substr(1);
    }
  } else {
    const auto colon = authority.rfind(':');
    t.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) portText = authority.substr(colon + 1);
  }
  if (t.host.empty()) return std::nullopt;

  const int defaultPort = t.tls ? 443 : 80;
  int port = defaultPort;
  if (!portText.empty()) {
    const char* end = portText.data() + portText.size();
    const auto [stop, ec] = std::from_chars(portText.data(), end, port);
    if (ec != std::errc() || stop != end || port < 1 || port > 65535) return std::nullopt;
  }
  t.port = std::to_string(port);
  t.hostHeader = t.host.find(':') != std::string::npos ? "[" + t.host + "]" : t.host;
  if (port != defaultPort) t.hostHeader += ":" + t.port;
  return t;
}

bool isIpLiteral(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return ::inet_pton(AF_INET, host.c_str(), buf) == 1 ||
         ::inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

int millisLeft(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

// True when `fd` is ready for `events` before the deadline.
bool waitReady(int fd, short events, Clock::time_point deadline) {
  pollfd p{fd, events, 0};
  for (;;) {
    const int n = ::poll(&p, 1, millisLeft(deadline));
    if (n > 0) return true;
    if (n == 0 || errno != EINTR) return false;
  }
}

class Socket {
 public:
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket() {
    if (fd_ >= 0) ::close(fd_);
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  [[nodiscard]] int fd() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

// A non-blocking TCP connection to the first address that takes one in time.
mc::Result<int> connectTo(const Target& t, Clock::time_point deadline) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (const int rc = ::getaddrinfo(t.host.c_str(), t.port.c_str(), &hints, &found); rc != 0) {
    return mc::Error{mc::Status::ConnectionFailed,
                     "cannot resolve " + t.host + ": " + ::gai_strerror(rc)};
  }
  const std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> list(found, &::freeaddrinfo);
  std::string why = "no address";
  for (const addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    Socket s(
        ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol));
    if (s.fd() < 0) {
      why = std::strerror(errno);
      continue;
    }
    if (::connect(s.fd(), ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
      why = std::strerror(errno);
      continue;
    }
    if (!waitReady(s.fd(), POLLOUT, deadline)) {
      why = "timed out";
      continue;
    }
    int error = 0;
    socklen_t len = sizeof error;
    if (::getsockopt(s.fd(), SOL_SOCKET, SO_ERROR, &error, &len) != 0) error = errno;
    if (error != 0) {
      why = std::strerror(error);
      continue;
    }
    return s.release();
  }
  return mc::Error{mc::Status::ConnectionFailed, "cannot connect to " + t.hostHeader + ": " + why};
}

struct SslCtxFree {
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
struct SslFree {
  void operator()(SSL* ssl) const { SSL_free(ssl); }
};

// Bytes to and from the server, in the clear or over TLS; every wait ends at
// the deadline.
class Channel {
 public:
  Channel(int fd, Clock::time_point deadline) : socket_(fd), deadline_(deadline) {}

  mc::Result<> startTls(const Target& t, const std::string& caFile) {
    const auto setupFailed = mc::Error{mc::Status::ConnectionFailed, "cannot set up TLS"};
    ctx_.reset(SSL_CTX_new(TLS_client_method()));
    if (!ctx_ || SSL_CTX_set_default_verify_paths(ctx_.get()) != 1) return setupFailed;
    if (!caFile.empty() &&
        SSL_CTX_load_verify_locations(ctx_.get(), caFile.c_str(), nullptr) != 1) {
      return mc::Error{mc::Status::InvalidArgument,
                       "cannot read CA certificates from '" + caFile + "'"};
    }
    SSL_CTX_set_verify(ctx_.get(), SSL_VERIFY_PEER, nullptr);
    ssl_.reset(SSL_new(ctx_.get()));
    if (!ssl_ || SSL_set_fd(ssl_.get(), socket_.fd()) != 1) return setupFailed;
    if (isIpLiteral(t.host)) {
      // No SNI for an address; the certificate must name the address itself.
      if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_.get()), t.host.c_str()) != 1) {
        return setupFailed;
      }
    } else if (SSL_ctrl(ssl_.get(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                        const_cast<char*>(t.host.c_str())) != 1 ||
               SSL_set1_host(ssl_.get(), t.host.c_str()) != 1) {
      return setupFailed;
    }
    for (;;) {
      const int rc = SSL_connect(ssl_.get());
      if (rc == 1) return mc::success();
      if (waitTls(rc)) continue;
      const long verify = SSL_get_verify_result(ssl_.get());
      const std::string why = verify != X509_V_OK ? X509_verify_cert_error_string(verify)
                                                  : "handshake failed or timed out";
      return mc::Error{mc::Status::ConnectionFailed, "TLS with " + t.hostHeader + ": " + why};
    }
  }

  bool writeAll(std::string_view data) {
    while (!data.empty()) {
      if (ssl_) {
        const int rc = SSL_write(ssl_.get(), data.data(), static_cast<int>(data.size()));
        if (rc > 0) {
          data.remove_prefix(static_cast<std::size_t>(rc));
        } else if (!waitTls(rc)) {
          return false;
        }
        continue;
      }
      const ssize_t n = ::send(socket_.fd(), data.data(), data.size(), MSG_NOSIGNAL);
      if (n > 0) {
        data.remove_prefix(static_cast<std::size_t>(n));
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n == 0 || errno != EAGAIN || !waitReady(socket_.fd(), POLLOUT, deadline_)) {
        return false;
      }
    }
    return true;
  }

  // Appends what arrives next to `out`: 1 for bytes, 0 when the server has
  // closed, -1 on an error or at the deadline.
  int readSome(std::string& out) {
    char buf[8192];
    for (;;) {
      if (ssl_) {
        const int rc = SSL_read(ssl_.get(), buf, sizeof buf);
        if (rc > 0) {
          out.append(buf, static_cast<std::size_t>(rc));
          return 1;
        }
        const int error = SSL_get_error(ssl_.get(), rc);
        // A close without close_notify is an end too; the framing decides.
        if (error == SSL_ERROR_ZERO_RETURN || (error == SSL_ERROR_SYSCALL && rc == 0)) return 0;
        if (!waitTls(rc)) return -1;
        continue;
      }
      const ssize_t n = ::recv(socket_.fd(), buf, sizeof buf, 0);
      if (n > 0) {
        out.append(buf, static_cast<std::size_t>(n));
        return 1;
      }
      if (n == 0) return 0;
      if (errno == EINTR) continue;
      if (errno != EAGAIN || !waitReady(socket_.fd(), POLLIN, deadline_)) return -1;
    }
  }

 private:
  bool waitTls(int rc) {
    switch (SSL_get_error(ssl_.get(), rc)) {
      case SSL_ERROR_WANT_READ:
        return waitReady(socket_.fd(), POLLIN, deadline_);
      case SSL_ERROR_WANT_WRITE:
        return waitReady(socket_.fd(), POLLOUT, deadline_);
      default:
        return false;
    }
  }

  // Declared first so it is closed last.
  Socket socket_;
  Clock::time_point deadline_;
  std::unique_ptr<SSL_CTX, SslCtxFree> ctx_;
  std::unique_ptr<SSL, SslFree> ssl_;
};

// The value of header `name` (lower case) in a lower-cased header block.
std::optional<std::string_view> headerValue(std::string_view headers, std::string_view name) {
  const std::string needle = "\r\n" + std::string(name) + ":";
  const auto at = headers.find(needle);
  if (at == std::string_view::npos) return std::nullopt;
  std::string_view value = headers.substr(at + needle.size());
  value = value.substr(0, value.find("\r\n"));
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  return value;
}

enum class Framing { Complete, NeedMore, Broken };

// Decodes a chunked body into `out`.
Framing dechunk(std::string_view in, std::string& out) {
  out.clear();
  for (;;) {
    const auto eol = in.find("\r\n");
    if (eol == std::string_view::npos) return Framing::NeedMore;
    const std::string_view line = in.substr(0, eol);
    std::size_t size = 0;
    const auto [stop, ec] = std::from_chars(line.data(), line.data() + line.size(), size, 16);
    if (ec != std::errc() || (stop != line.data() + line.size() && *stop != ';')) {
      return Framing::Broken;
    }
    in.remove_prefix(eol + 2);
    if (size == 0) {
      // Trailer lines, if any, end with an empty line.
      return in.substr(0, 2) == "\r\n" || in.find("\r\n\r\n") != std::string_view::npos
                 ? Framing::Complete
                 : Framing::NeedMore;
    }
    if (in.size() < size + 2) return Framing::NeedMore;
    if (in.substr(size, 2) != "\r\n") return Framing::Broken;
    out.append(in.substr(0, size));
    in.remove_prefix(size + 2);
  }
}

// Splits `raw` into an answer once its own framing says it is whole, or,
// with `closed`, once the server has stopped sending.
std::optional<mc::Result<HttpAnswer>> parseAnswer(const std::string& raw, bool closed,
                                                  const std::string& from) {
  const auto notHttp = mc::Error{mc::Status::ProtocolError, "not an HTTP answer from " + from};
  const auto headerEnd = raw.find("\r\n\r\n");
  if (headerEnd == std::string::npos) {
    if (closed) return notHttp;
    return std::nullopt;
  }
  const std::string_view head(raw.data(), headerEnd);
  int status = 0;
  const char* statusEnd = raw.data() + std::min<std::size_t>(raw.size(), 12);
  if (head.substr(0, 7) != "HTTP/1." || head.size() < 12 || head[8] != ' ' ||
      std::from_chars(raw.data() + 9, statusEnd, status).ptr != statusEnd) {
    return notHttp;
  }
  const std::string headers = lowered(head);
  const std::string_view payload = std::string_view(raw).substr(headerEnd + 4);
  HttpAnswer answer;
  answer.status = status;

  const auto encoding = headerValue(headers, "transfer-encoding");
  if (encoding && encoding->find("chunked") != std::string_view::npos) {
    switch (dechunk(payload, answer.body)) {
      case Framing::Complete:
        return answer;
      case Framing::NeedMore:
        if (!closed) return std::nullopt;
        [[fallthrough]];
      case Framing::Broken:
        return mc::Error{mc::Status::ProtocolError, "a broken chunked answer from " + from};
    }
  }
  if (const auto length = headerValue(headers, "content-length")) {
    std::size_t expected = 0;
    const char* end = length->data() + length->size();
    if (std::from_chars(length->data(), end, expected).ptr != end) return notHttp;
    if (payload.size() < expected) {
      if (!closed) return std::nullopt;
      return mc::Error{mc::Status::ProtocolError, "an answer cut short from " + from};
    }
    answer.body = std::string(payload.substr(0, expected));
    return answer;
  }
  if (!closed) return std::nullopt;
  answer.body = std::string(payload);
  return answer;
}

}  // namespace

mc::Result<HttpAnswer> httpRequest(const std::string& method, const std::string& url,
                                   const std::string& body, const std::string& bearer,
                                   std::chrono::milliseconds timeout, const std::string& caFile) {
  const auto target = parseTarget(url);
  if (!target) {
    return mc::Error{mc::Status::InvalidArgument, "not an http:// or https:// URL: '" + url + "'"};
  }
  if (bearer.find_first_of("\r\n") != std::string::npos) {
    return mc::Error{mc::Status::InvalidArgument, "the token must be one line"};
  }
  const auto deadline = Clock::now() + timeout;
  auto fd = connectTo(*target, deadline);
  if (!fd) return fd.error();
  Channel channel(fd.value(), deadline);
  if (target->tls) {
    if (auto started = channel.startTls(*target, caFile); !started) return started.error();
  }

  std::string request = method + " " + target->path + " HTTP/1.1\r\nHost: " + target->hostHeader +
                        "\r\nUser-Agent: meshctl\r\nAccept: application/json\r\n"
                        "Connection: close\r\n";
  if (!bearer.empty()) request += "Authorization: Bearer " + bearer + "\r\n";
  if (!body.empty() || method == "POST") {
    request +=
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  }
  request += "\r\n";
  request += body;
  const bool sent = channel.writeAll(request);
  OPENSSL_cleanse(request.data(), request.size());  // it may hold the token
  if (!sent) {
    return mc::Error{mc::Status::ConnectionFailed, "sending to " + target->hostHeader + " failed"};
  }

  std::string raw;
  for (;;) {
    const int got = channel.readSome(raw);
    if (got < 0) {
      return mc::Error{mc::Status::ConnectionFailed,
                       "no complete answer from " + target->hostHeader + " in time"};
    }
    if (auto answer = parseAnswer(raw, got == 0, target->hostHeader)) return std::move(*answer);
  }
}

}  // namespace meshctl
