// Clients for what WsClient does not cover: TLS (wss:// and https://) and
// plain HTTP from a chosen source address (127.0.0.2 and so on), plus a
// throw-away self-signed certificate made with the openssl command.
// Blocking, with deadlines; test use only.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mesh/relay/config.h"
#include "support/ws_client.h"

namespace mesh::test {

// Writes a self-signed EC certificate and its key (PEM) for CN=`commonName`.
// Throws std::runtime_error when the openssl command fails.
void makeSelfSignedCert(const std::filesystem::path& certFile, const std::filesystem::path& keyFile,
                        const std::string& commonName);
// Writes such a pair (cert.pem, key.pem) into `dir` and points `c` at it.
void useSelfSignedCert(relay::Config& c, const std::filesystem::path& dir,
                       const std::string& commonName);

// One TLS connection to 127.0.0.1:port, from `sourceAddress` when given
// (e.g. "127.0.0.2"). The server certificate is not verified (the tests make
// their own); peerSubject() shows which one came.
class TlsStream {
 public:
  static std::unique_ptr<TlsStream> connect(
      std::uint16_t port, std::chrono::milliseconds timeout = std::chrono::milliseconds(5000),
      const std::string& sourceAddress = {});
  ~TlsStream();
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  // The server certificate's subject, e.g. "/CN=relay-a".
  [[nodiscard]] const std::string& peerSubject() const { return subject_; }
  void write(std::string_view bytes);
  // Appends what arrives to `into`; false on end of stream or timeout.
  bool read(std::string& into, std::chrono::steady_clock::time_point deadline);

 private:
  TlsStream() = default;
  int fd_ = -1;
  void* ctx_ = nullptr;  // SSL_CTX
  void* ssl_ = nullptr;  // SSL
  std::string subject_;
};

// A WebSocket over TlsStream: the handful of calls the TLS tests need.
class TlsWsClient {
 public:
  // Throws std::runtime_error carrying the status line if the upgrade fails.
  // `extraHeaders` ("Name: value") go into the upgrade request.
  static std::unique_ptr<TlsWsClient> connect(std::uint16_t port,
                                              const std::string& path = "/gateway",
                                              const std::string& sourceAddress = {},
                                              const std::vector<std::string>& extraHeaders = {});
  void sendText(std::string_view text);
  // Bytes as they are: several frames in one TLS write, for instance.
  void sendRaw(std::string_view bytes) { stream_->write(bytes); }
  WsMessage recv(std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
  // Text of the next message whose "type" is `type`; throws on close/timeout.
  std::string expectType(std::string_view type,
                         std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
  [[nodiscard]] const std::string& peerSubject() const { return stream_->peerSubject(); }

 private:
  explicit TlsWsClient(std::unique_ptr<TlsStream> s) : stream_(std::move(s)) {}
  std::unique_ptr<TlsStream> stream_;
  std::string in_;
};

// HTTP/1.1 over TLS with Connection: close.
HttpResponse httpsRequest(std::uint16_t port, std::string_view method, std::string_view path,
                          std::string_view body = {}, const std::vector<std::string>& headers = {});

// Plain HTTP from `sourceAddress` (e.g. "127.0.0.2") to 127.0.0.1:port.
HttpResponse httpRequestFrom(const std::string& sourceAddress, std::uint16_t port,
                             std::string_view method, std::string_view path,
                             std::string_view body = {},
                             const std::vector<std::string>& headers = {});

}  // namespace mesh::test
