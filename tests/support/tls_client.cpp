#include "support/tls_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <stdexcept>

namespace mesh::test {
namespace {

using Clock = std::chrono::steady_clock;

int remainingMs(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

// Blocking TCP connect from an optional source address to 127.0.0.1:port.
int connectLoopback(std::uint16_t port, const std::string& sourceAddress) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket() failed");
  if (!sourceAddress.empty()) {
    sockaddr_in src{};
    src.sin_family = AF_INET;
    if (inet_pton(AF_INET, sourceAddress.c_str(), &src.sin_addr) != 1 ||
        ::bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) {
      ::close(fd);
      throw std::runtime_error("cannot bind to " + sourceAddress);
    }
  }
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  dst.sin_port = htons(port);
  dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof dst) != 0) {
    ::close(fd);
    throw std::runtime_error("cannot connect to port " + std::to_string(port));
  }
  return fd;
}

std::string buildRequest(std::string_view method, std::string_view path, std::string_view body,
                         const std::vector<std::string>& headers) {
  std::string req = std::string(method) + " " + std::string(path) + " HTTP/1.1\r\n";
  req += "Host: 127.0.0.1\r\nConnection: close\r\n";
  req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  if (!body.empty()) req += "Content-Type: application/json\r\n";
  for (const auto& h : headers) req += h + "\r\n";
  req += "\r\n";
  req += body;
  return req;
}

// Complete once the headers and Content-Length bytes (or end of stream) came.
bool parseResponse(const std::string& raw, bool eof, HttpResponse& out) {
  const auto end = raw.find("\r\n\r\n");
  if (end == std::string::npos) return false;
  out.headers = raw.substr(0, end + 2);
  const auto space = out.headers.find(' ');
  out.status = space == std::string::npos ? 0 : std::atoi(out.headers.c_str() + space + 1);
  const std::string length = headerValue(out.headers, "Content-Length");
  out.body = raw.substr(end + 4);
  if (!length.empty()) {
    const auto want = static_cast<std::size_t>(std::strtoull(length.c_str(), nullptr, 10));
    if (out.body.size() < want) return false;
    out.body.resize(want);
    return true;
  }
  return eof;
}

}  // namespace

void makeSelfSignedCert(const std::filesystem::path& certFile, const std::filesystem::path& keyFile,
                        const std::string& commonName) {
  const std::string cmd =
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2"
      " -subj '/CN=" +
      commonName + "' -keyout '" + keyFile.string() + "' -out '" + certFile.string() +
      "' >/dev/null 2>&1";
  if (std::system(cmd.c_str()) != 0) throw std::runtime_error("openssl req failed: " + cmd);
}

void useSelfSignedCert(relay::Config& c, const std::filesystem::path& dir,
                       const std::string& commonName) {
  makeSelfSignedCert(dir / "cert.pem", dir / "key.pem", commonName);
  c.tlsCertPath = (dir / "cert.pem").string();
  c.tlsKeyPath = (dir / "key.pem").string();
}

std::unique_ptr<TlsStream> TlsStream::connect(std::uint16_t port, std::chrono::milliseconds timeout,
                                              const std::string& sourceAddress) {
  std::unique_ptr<TlsStream> s(new TlsStream());
  s->fd_ = connectLoopback(port, sourceAddress);
  const timeval tv{static_cast<time_t>(timeout.count() / 1000),
                   static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  setsockopt(s->fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(s->fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx) throw std::runtime_error("SSL_CTX_new failed");
  s->ctx_ = ctx;
  // Reads come back after non-application records so that poll() deadlines hold.
  SSL_CTX_clear_mode(ctx, SSL_MODE_AUTO_RETRY);
  SSL* ssl = SSL_new(ctx);
  if (!ssl) throw std::runtime_error("SSL_new failed");
  s->ssl_ = ssl;
  SSL_set_fd(ssl, s->fd_);
  if (SSL_connect(ssl) != 1) {
    char buf[256];
    ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
    throw std::runtime_error(std::string("TLS handshake failed: ") + buf);
  }
  if (X509* cert = SSL_get1_peer_certificate(ssl)) {
    char buf[256] = {0};
    X509_NAME_oneline(X509_get_subject_name(cert), buf, sizeof buf);
    s->subject_ = buf;
    X509_free(cert);
  }
  return s;
}

TlsStream::~TlsStream() {
  if (ssl_) SSL_free(static_cast<SSL*>(ssl_));
  if (ctx_) SSL_CTX_free(static_cast<SSL_CTX*>(ctx_));
  if (fd_ >= 0) ::close(fd_);
}

void TlsStream::write(std::string_view bytes) {
  while (!bytes.empty()) {
    const int n = SSL_write(static_cast<SSL*>(ssl_), bytes.data(), static_cast<int>(bytes.size()));
    if (n <= 0) throw std::runtime_error("TLS write failed");
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

bool TlsStream::read(std::string& into, Clock::time_point deadline) {
  SSL* ssl = static_cast<SSL*>(ssl_);
  for (;;) {
    if (SSL_pending(ssl) == 0) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, remainingMs(deadline)) <= 0) return false;
    }
    char buf[16384];
    const int n = SSL_read(ssl, buf, sizeof buf);
    if (n > 0) {
      into.append(buf, static_cast<std::size_t>(n));
      return true;
    }
    const int err = SSL_get_error(ssl, n);
    if (err != SSL_ERROR_WANT_READ || Clock::now() >= deadline) return false;
  }
}

std::unique_ptr<TlsWsClient> TlsWsClient::connect(std::uint16_t port, const std::string& path,
                                                  const std::string& sourceAddress,
                                                  const std::vector<std::string>& extraHeaders) {
  auto stream = TlsStream::connect(port, std::chrono::milliseconds(5000), sourceAddress);
  const std::string key = ws::base64Encode("mesh-relay-tls-k");
  std::string extra;
  for (const auto& h : extraHeaders) extra += h + "\r\n";
  stream->write("GET " + path +
                " HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: " +
                key + "\r\nSec-WebSocket-Version: 13\r\n" + extra + "\r\n");
  std::unique_ptr<TlsWsClient> c(new TlsWsClient(std::move(stream)));
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  std::size_t end;
  while ((end = c->in_.find("\r\n\r\n")) == std::string::npos) {
    if (!c->stream_->read(c->in_, deadline)) throw std::runtime_error("no upgrade answer");
  }
  const std::string head = c->in_.substr(0, end + 2);
  c->in_.erase(0, end + 4);
  if (head.rfind("HTTP/1.1 101", 0) != 0 ||
      headerValue(head, "Sec-WebSocket-Accept") != ws::acceptKey(key)) {
    throw std::runtime_error("upgrade refused: " + head.substr(0, head.find("\r\n")));
  }
  return c;
}

void TlsWsClient::sendText(std::string_view text) {
  stream_->write(ws::encodeFrame(opcode::kText, text, true, ws::randomMaskKey()));
}

WsMessage TlsWsClient::recv(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    ws::Frame f;
    const auto r = ws::decodeFrame(in_, f);
    if (r.status == ws::DecodeStatus::Invalid) throw std::runtime_error("bad frame: " + r.error);
    if (r.status == ws::DecodeStatus::Complete) {
      in_.erase(0, r.consumed);
      if (f.opcode == opcode::kText) return {WsMessage::Kind::Text, f.payload};
      if (f.opcode == opcode::kBinary) return {WsMessage::Kind::Binary, f.payload};
      if (f.opcode == opcode::kClose) {
        const int code = f.payload.size() >= 2 ? (static_cast<unsigned char>(f.payload[0]) << 8) |
                                                     static_cast<unsigned char>(f.payload[1])
                                               : 1005;
        return {WsMessage::Kind::Close, f.payload.size() > 2 ? f.payload.substr(2) : "", code};
      }
      if (f.opcode == opcode::kPing) {
        stream_->write(ws::encodeFrame(opcode::kPong, f.payload, true, ws::randomMaskKey()));
      }
      continue;
    }
    if (!stream_->read(in_, deadline)) {
      return {Clock::now() >= deadline ? WsMessage::Kind::Timeout : WsMessage::Kind::Disconnected,
              ""};
    }
  }
}

std::string TlsWsClient::expectType(std::string_view type, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::string seen;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    WsMessage m = recv(left.count() > 0 ? left : std::chrono::milliseconds(1));
    if (m.kind == WsMessage::Kind::Text) {
      if (jsonString(m.data, "type") == type) return m.data;
      seen += m.data + "\n";
      continue;
    }
    throw std::runtime_error("no " + std::string(type) + " (got " + kindName(m.kind) +
                             " after: " + seen + ")");
  }
}

HttpResponse httpsRequest(std::uint16_t port, std::string_view method, std::string_view path,
                          std::string_view body, const std::vector<std::string>& headers) {
  auto stream = TlsStream::connect(port);
  stream->write(buildRequest(method, path, body, headers));
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  std::string raw;
  HttpResponse resp;
  for (;;) {
    const bool more = stream->read(raw, deadline);
    if (parseResponse(raw, !more, resp)) return resp;
    if (!more) throw std::runtime_error("HTTPS " + std::string(path) + ": no complete answer");
  }
}

HttpResponse httpRequestFrom(const std::string& sourceAddress, std::uint16_t port,
                             std::string_view method, std::string_view path, std::string_view body,
                             const std::vector<std::string>& headers) {
  const int fd = connectLoopback(port, sourceAddress);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  const std::string req = buildRequest(method, path, body, headers);
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    throw std::runtime_error("send failed");
  }
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  std::string raw;
  HttpResponse resp;
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    bool eof = false;
    if (::poll(&p, 1, remainingMs(deadline)) <= 0) {
      throw std::runtime_error("HTTP " + std::string(path) + ": no answer in time");
    }
    char buf[8192];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      eof = true;
    } else {
      raw.append(buf, static_cast<std::size_t>(n));
    }
    if (parseResponse(raw, eof, resp)) return resp;
    if (eof) throw std::runtime_error("HTTP " + std::string(path) + ": closed early: " + raw);
  }
}

}  // namespace mesh::test
