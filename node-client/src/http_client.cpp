// A small blocking HTTP/1.1 client: one request per connection
// (Connection: close), plain TCP or TLS via OpenSSL with the system CA
// store (plus an optional PEM bundle) and host name checks.
#include "mesh/client/http.h"

#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string_view>

#include "proxy.h"
#include "tls.h"
#include "url.h"

namespace mesh::client::detail {
namespace {

using Clock = std::chrono::steady_clock;

int remainingMs(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

struct FdCloser {
  int fd = -1;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

struct SslFree {
  void operator()(SSL* ssl) const { SSL_free(ssl); }
};

// Waits until `fd` is ready for `events` or the deadline passes.
bool waitFor(int fd, short events, Clock::time_point deadline) {
  pollfd p{fd, events, 0};
  for (;;) {
    const int n = ::poll(&p, 1, remainingMs(deadline));
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) return false;
  }
}

// Non-blocking connect to the first address that answers in time.
Result<int> connectTcp(const Url& url, Clock::time_point deadline) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  const std::string port = std::to_string(url.port);
  if (const int rc = ::getaddrinfo(url.host.c_str(), port.c_str(), &hints, &list); rc != 0) {
    return Error{Status::ConnectionFailed,
                 "cannot resolve " + url.host + ": " + ::gai_strerror(rc)};
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> owned(list, &::freeaddrinfo);
  std::string lastError = "no address";
  for (addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    const int fd =
        ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      lastError = std::strerror(errno);
      continue;
    }
    FdCloser guard{fd};
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
      lastError = std::strerror(errno);
      continue;
    }
    if (!waitFor(fd, POLLOUT, deadline)) {
      lastError = "connect timed out";
      continue;
    }
    int soError = 0;
    socklen_t len = sizeof soError;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &len);
    if (soError != 0) {
      lastError = std::strerror(soError);
      continue;
    }
    guard.fd = -1;
    return fd;
  }
  return Error{Status::ConnectionFailed,
               "cannot connect to " + url.hostHeader() + ": " + lastError};
}

// Byte transport over either the raw socket or a TLS session; every call
// waits with poll so the deadline holds for TLS too.
class Stream {
 public:
  Stream(int fd, SSL* ssl) : fd_(fd), ssl_(ssl) {}

  bool writeAll(std::string_view data, Clock::time_point deadline) {
    while (!data.empty()) {
      ssize_t n = 0;
      if (ssl_ != nullptr) {
        const int rc = SSL_write(ssl_, data.data(), static_cast<int>(data.size()));
        if (rc <= 0) {
          if (!waitSsl(rc, deadline)) return false;
          continue;
        }
        n = rc;
      } else {
        n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
        if (n < 0) {
          if ((errno == EAGAIN || errno == EINTR) && waitFor(fd_, POLLOUT, deadline)) continue;
          return false;
        }
      }
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  // Appends what arrives next. 1: got bytes, 0: the peer closed, -1: error
  // or deadline.
  int readSome(std::string& out, Clock::time_point deadline) {
    char buf[8192];
    for (;;) {
      if (ssl_ != nullptr) {
        const int rc = SSL_read(ssl_, buf, sizeof buf);
        if (rc > 0) {
          out.append(buf, static_cast<std::size_t>(rc));
          return 1;
        }
        const int err = SSL_get_error(ssl_, rc);
        if (err == SSL_ERROR_ZERO_RETURN) return 0;
        if (err == SSL_ERROR_SYSCALL && rc == 0) return 0;  // closed without notify
        if (!waitSsl(rc, deadline)) return -1;
        continue;
      }
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n > 0) {
        out.append(buf, static_cast<std::size_t>(n));
        return 1;
      }
      if (n == 0) return 0;
      if ((errno == EAGAIN || errno == EINTR) && waitFor(fd_, POLLIN, deadline)) continue;
      return -1;
    }
  }

  bool waitSsl(int rc, Clock::time_point deadline) {
    const int err = SSL_get_error(ssl_, rc);
    if (err == SSL_ERROR_WANT_READ) return waitFor(fd_, POLLIN, deadline);
    if (err == SSL_ERROR_WANT_WRITE) return waitFor(fd_, POLLOUT, deadline);
    return false;
  }

 private:
  int fd_;
  SSL* ssl_;
};

// Undoes Transfer-Encoding: chunked. False if the framing is broken.
bool dechunk(std::string_view in, std::string& out) {
  for (;;) {
    const auto eol = in.find("\r\n");
    if (eol == std::string_view::npos) return false;
    const std::string sizeText(in.substr(0, eol));
    char* end = nullptr;
    const unsigned long size = std::strtoul(sizeText.c_str(), &end, 16);
    if (end == sizeText.c_str()) return false;
    in.remove_prefix(eol + 2);
    if (size == 0) return true;
    if (in.size() < size + 2) return false;
    out.append(in.substr(0, size));
    in.remove_prefix(size + 2);
  }
}

// The value of header `name` (lower case) in `headers`, lower-cased.
std::optional<std::string> headerValue(std::string_view headers, std::string_view name) {
  std::string lower(headers);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const std::string needle = "\r\n" + std::string(name) + ":";
  const auto at = lower.find(needle);
  if (at == std::string::npos) return std::nullopt;
  auto begin = at + needle.size();
  while (begin < lower.size() && lower[begin] == ' ') ++begin;
  const auto lineEnd = lower.find("\r\n", begin);
  return lower.substr(begin, lineEnd == std::string::npos ? std::string::npos : lineEnd - begin);
}

bool isChunked(std::string_view headers) {
  const auto te = headerValue(headers, "transfer-encoding");
  return te && te->find("chunked") != std::string::npos;
}

// True once `raw` holds the whole answer by its own framing, so we need not
// wait for the server to close.
bool answerComplete(const std::string& raw) {
  const auto end = raw.find("\r\n\r\n");
  if (end == std::string::npos) return false;
  const std::string_view headers(raw.data(), end);
  if (isChunked(headers)) {
    return raw.size() >= 5 && raw.compare(raw.size() - 5, 5, "0\r\n\r\n") == 0;
  }
  if (const auto length = headerValue(headers, "content-length")) {
    return raw.size() - end - 4 >= std::strtoull(length->c_str(), nullptr, 10);
  }
  return false;
}

// "host:port" with brackets around IPv6 and the port always written: the
// request target of CONNECT.
std::string connectAuthority(const Url& url) {
  const bool v6 = url.host.find(':') != std::string::npos;
  return (v6 ? "[" + url.host + "]" : url.host) + ":" + std::to_string(url.port);
}

}  // namespace

Result<int> openTunnel(const ProxyUrl& proxy, const Url& target, Clock::time_point deadline) {
  Url at;
  at.scheme = "http";
  at.host = proxy.host;
  at.port = proxy.port;
  auto connected = connectTcp(at, deadline);
  if (!connected) {
    return Error{Status::ConnectionFailed,
                 "cannot reach proxy " + proxy.display() + ": " + connected.error().message};
  }
  FdCloser fd{connected.value()};
  const std::string where = connectAuthority(target);
  std::string request =
      "CONNECT " + where + " HTTP/1.1\r\nHost: " + where + "\r\nUser-Agent: libmeshclient\r\n";
  if (proxy.hasCredentials()) request += "Proxy-Authorization: " + proxy.basicAuth() + "\r\n";
  request += "\r\n";
  Stream stream(fd.fd, nullptr);
  if (!stream.writeAll(request, deadline)) {
    return Error{Status::ConnectionFailed, "sending to proxy " + proxy.display() + " failed"};
  }
  // Nothing comes after the proxy's answer until we speak, so reading past
  // its end cannot swallow the relay's bytes.
  std::string raw;
  while (raw.find("\r\n\r\n") == std::string::npos) {
    const int rc = stream.readSome(raw, deadline);
    if (rc <= 0) {
      return Error{Status::ConnectionFailed, rc == 0 ? "proxy " + proxy.display() +
                                                           " closed the connection instead of "
                                                           "answering CONNECT " +
                                                           where
                                                     : "no answer from proxy " + proxy.display() +
                                                           " to CONNECT " + where +
                                                           " within the timeout"};
    }
    if (raw.size() > 65536) break;
  }
  const std::string statusLine = raw.substr(0, raw.find("\r\n"));
  if (statusLine.compare(0, 7, "HTTP/1.") != 0 || statusLine.size() < 12 || statusLine[9] != '2') {
    return Error{Status::ConnectionFailed,
                 proxyRefusal(proxy, where,
                              statusLine.substr(0, std::min<std::size_t>(200, statusLine.size())))};
  }
  const int out = fd.fd;
  fd.fd = -1;
  return out;
}

}  // namespace mesh::client::detail

namespace mesh::client {

Result<HttpAnswer> httpRequest(const std::string& method, const std::string& urlText,
                               const std::string& body, const std::string& bearer,
                               std::chrono::milliseconds timeout, const std::string& caFile,
                               const std::string& proxy, const std::string& noProxy) {
  using namespace detail;
  const auto url = parseUrl(urlText);
  if (!url || (url->scheme != "http" && url->scheme != "https")) {
    return Error{Status::InvalidArgument, "not an http:// or https:// URL: '" + urlText + "'"};
  }
  auto via = proxyFor(*url, proxy, noProxy);
  if (!via) return via.error();
  const std::optional<ProxyUrl>& viaProxy = via.value();
  const auto deadline = Clock::now() + timeout;
  // Through a proxy, http:// and https:// alike go through a CONNECT
  // tunnel, as the WebSocket does: the proxy needs one rule for the relay's
  // port, and its refusals read the same for every call.
  Result<int> fdResult =
      viaProxy ? openTunnel(*viaProxy, *url, deadline) : connectTcp(*url, deadline);
  if (!fdResult) return fdResult.error();
  FdCloser fd{fdResult.value()};

  SslCtxPtr ctx;
  std::unique_ptr<SSL, SslFree> ssl;
  if (url->secure()) {
    auto made = makeClientTlsContext(caFile);
    if (!made) return made.error();
    ctx = std::move(made).value();
    ssl.reset(SSL_new(ctx.get()));
    if (!ssl || SSL_set_fd(ssl.get(), fd.fd) != 1) {
      return Error{Status::ConnectionFailed, "cannot set up TLS"};
    }
    // An IP address is checked against the certificate's IP entries and
    // sent without SNI (RFC 6066 allows only names there); a name is both.
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl.get());
    if (X509_VERIFY_PARAM_set1_ip_asc(param, url->host.c_str()) != 1) {
      ERR_clear_error();
      // SSL_set_tlsext_host_name() spelled out: the macro casts C-style.
      if (SSL_ctrl(ssl.get(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                   const_cast<char*>(url->host.c_str())) != 1 ||
          SSL_set1_host(ssl.get(), url->host.c_str()) != 1) {
        return Error{Status::ConnectionFailed, "cannot set up TLS"};
      }
    }
    Stream probe(fd.fd, ssl.get());
    for (;;) {
      const int rc = SSL_connect(ssl.get());
      if (rc == 1) break;
      if (!probe.waitSsl(rc, deadline)) {
        const long verify = SSL_get_verify_result(ssl.get());
        const std::string reason =
            verify != X509_V_OK
                ? std::string("certificate verify failed: ") + X509_verify_cert_error_string(verify)
                : takeTlsError("handshake failed or timed out");
        return Error{Status::ConnectionFailed,
                     "TLS with " + url->hostHeader() + " failed: " + reason};
      }
    }
  }

  std::string request = method + " " + url->path + " HTTP/1.1\r\nHost: " + url->hostHeader() +
                        "\r\nUser-Agent: libmeshclient\r\nAccept: application/json\r\n"
                        "Connection: close\r\n";
  if (!bearer.empty()) request += "Authorization: Bearer " + bearer + "\r\n";
  if (!body.empty() || method == "POST") {
    request +=
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  }
  request += "\r\n";
  request += body;

  Stream stream(fd.fd, ssl.get());
  if (!stream.writeAll(request, deadline)) {
    return Error{Status::ConnectionFailed, "sending to " + url->hostHeader() + " failed"};
  }
  std::string raw;
  for (;;) {
    const int rc = stream.readSome(raw, deadline);
    if (rc == 0 || (rc > 0 && answerComplete(raw))) break;
    if (rc < 0) {
      return Error{Status::ConnectionFailed,
                   "no complete answer from " + url->hostHeader() + " within the timeout"};
    }
  }

  const auto headerEnd = raw.find("\r\n\r\n");
  if (raw.compare(0, 7, "HTTP/1.") != 0 || headerEnd == std::string::npos || raw.size() < 12) {
    return Error{Status::ProtocolError, "not an HTTP answer from " + url->hostHeader()};
  }
  HttpAnswer response;
  response.status = std::atoi(raw.c_str() + 9);
  const std::string_view headers(raw.data(), headerEnd);
  const std::string_view payload = std::string_view(raw).substr(headerEnd + 4);
  if (isChunked(headers)) {
    if (!dechunk(payload, response.body)) {
      return Error{Status::ProtocolError, "broken chunked body from " + url->hostHeader()};
    }
  } else {
    response.body = std::string(payload);
  }
  return response;
}

}  // namespace mesh::client
