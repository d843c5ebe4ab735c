// A tiny HTTPS server for tests: serves one document at any path from a
// thread of its own on 127.0.0.1 (port 0), with a certificate for IP
// 127.0.0.1 made by the openssl command, so a client that trusts caFile()
// verifies it. The document, its status and its headers can be changed
// while it runs; requests are counted.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>

#include "support/temp_dir.h"

namespace mesh::test {

class HttpsServer {
 public:
  HttpsServer();  // throws std::runtime_error if it cannot start
  ~HttpsServer();
  HttpsServer(const HttpsServer&) = delete;
  HttpsServer& operator=(const HttpsServer&) = delete;

  [[nodiscard]] std::uint16_t port() const { return port_; }
  // https://127.0.0.1:<port><path>
  [[nodiscard]] std::string url(const std::string& path = "/jwks.json") const;
  // The certificate to trust (self-signed, so it is its own CA).
  [[nodiscard]] std::string caFile() const { return (dir_.path() / "cert.pem").string(); }

  // What every request gets from now on. `headers` are extra header lines,
  // each ending in \r\n (e.g. "Cache-Control: max-age=60\r\n").
  void serve(int status, std::string body, std::string headers = "");
  [[nodiscard]] int requests() const { return requests_.load(); }

 private:
  void loop();
  void answer(int fd);

  TempDir dir_;
  int listenFd_ = -1;
  std::uint16_t port_ = 0;
  void* ctx_ = nullptr;  // SSL_CTX
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
  std::mutex mutex_;
  int status_ = 200;     // guarded by mutex_
  std::string body_;     // guarded by mutex_
  std::string headers_;  // guarded by mutex_
  std::thread thread_;
};

}  // namespace mesh::test
