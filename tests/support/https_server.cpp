#include "support/https_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdlib>
#include <stdexcept>

#include "support/loopback.h"

namespace mesh::test {
namespace {

SSL_CTX* serverContext(const std::string& cert, const std::string& key) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, cert.c_str()) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1) {
    SSL_CTX_free(ctx);
    throw std::runtime_error("test HTTPS server: cannot load its certificate");
  }
  return ctx;
}

const char* reasonOf(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 404:
      return "Not Found";
    case 500:
      return "Internal Server Error";
    default:
      return "Status";
  }
}

}  // namespace

HttpsServer::HttpsServer() {
  const std::string cert = (dir_.path() / "cert.pem").string();
  const std::string key = (dir_.path() / "key.pem").string();
  // A certificate for the address the client dials: libcurl checks it.
  const std::string cmd =
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2"
      " -subj '/CN=127.0.0.1' -addext 'subjectAltName=IP:127.0.0.1' -keyout '" +
      key + "' -out '" + cert + "' >/dev/null 2>&1";
  if (std::system(cmd.c_str()) != 0) throw std::runtime_error("openssl req failed: " + cmd);
  ctx_ = serverContext(cert, key);

  try {
    listenFd_ = listenOnLoopback(port_, 16);
  } catch (const std::exception&) {
    SSL_CTX_free(static_cast<SSL_CTX*>(ctx_));
    throw;
  }
  thread_ = std::thread([this] { loop(); });
}

HttpsServer::~HttpsServer() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  ::close(listenFd_);
  SSL_CTX_free(static_cast<SSL_CTX*>(ctx_));
}

std::string HttpsServer::url(const std::string& path) const {
  return "https://127.0.0.1:" + std::to_string(port_) + path;
}

void HttpsServer::serve(int status, std::string body, std::string headers) {
  std::lock_guard lock(mutex_);
  status_ = status;
  body_ = std::move(body);
  headers_ = std::move(headers);
}

void HttpsServer::loop() {
  while (!stop_) {
    pollfd p{listenFd_, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    const int fd = ::accept4(listenFd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    answer(fd);
    ::close(fd);
  }
}

// One request per connection, answered and closed.
void HttpsServer::answer(int fd) {
  const timeval tv{2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  SSL* ssl = SSL_new(static_cast<SSL_CTX*>(ctx_));
  SSL_set_fd(ssl, fd);
  if (SSL_accept(ssl) == 1) {
    std::string head;
    char buf[2048];
    while (head.find("\r\n\r\n") == std::string::npos && head.size() < 16384) {
      const int n = SSL_read(ssl, buf, sizeof buf);
      if (n <= 0) break;
      head.append(buf, static_cast<std::size_t>(n));
    }
    if (head.find("\r\n\r\n") != std::string::npos) {
      ++requests_;
      std::string response;
      {
        std::lock_guard lock(mutex_);
        response = "HTTP/1.1 " + std::to_string(status_) + " " + reasonOf(status_) +
                   "\r\nContent-Type: application/json\r\nContent-Length: " +
                   std::to_string(body_.size()) + "\r\nConnection: close\r\n" + headers_ + "\r\n" +
                   body_;
      }
      SSL_write(ssl, response.data(), static_cast<int>(response.size()));
      SSL_shutdown(ssl);
    }
  }
  SSL_free(ssl);
  ERR_clear_error();
}

}  // namespace mesh::test
