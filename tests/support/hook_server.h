// A small HTTP/1.1 server on 127.0.0.1 (port 0) for tests of the relay's
// outgoing calls (the authorize hook): it reads each request whole (head
// and Content-Length body), records it, and answers what the test's handler
// returns, after the delay the handler asks for. A thread per connection,
// one request per connection (Connection: close). Stops in its destructor.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace mesh::test {

struct HookRequest {
  std::string method;
  std::string target;
  std::string headers;  // the header lines as received
  std::string body;
};

struct HookReply {
  int status = 200;
  std::string body;
  std::chrono::milliseconds delay{0};  // before the answer is written
};

class HookServer {
 public:
  using Handler = std::function<HookReply(const HookRequest&)>;
  explicit HookServer(Handler handler);
  ~HookServer();
  HookServer(const HookServer&) = delete;
  HookServer& operator=(const HookServer&) = delete;

  [[nodiscard]] std::uint16_t port() const { return port_; }
  [[nodiscard]] std::string url(const std::string& path = "/authorize") const;
  // Requests received so far (whole ones only).
  [[nodiscard]] std::vector<HookRequest> requests() const;
  [[nodiscard]] std::size_t requestCount() const;

 private:
  void serve();
  void serveOne(int fd);

  Handler handler_;
  int listenFd_ = -1;
  int wakeFd_[2] = {-1, -1};  // a pipe: written to stop the thread
  std::uint16_t port_ = 0;
  mutable std::mutex mutex_;
  std::vector<HookRequest> requests_;
  std::thread thread_;
  std::vector<std::thread> connections_;  // the accepting thread's only
};

// A port on 127.0.0.1 with nothing listening on it (bound, then closed).
std::uint16_t unusedPort();

}  // namespace mesh::test
