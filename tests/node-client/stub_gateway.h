// A WebSocket server on a real loopback socket that records what a client
// sends, byte for byte: the upgrade request head and every text frame. For
// checks of the client's own bytes (credentials on the upgrade, the fields
// of gateway_auth) where a relay would hide them. It answers the upgrade
// with 101 (or the status set) and says nothing unless a test sends.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace mesh::test {

class StubGateway {
 public:
  StubGateway();
  ~StubGateway();
  StubGateway(const StubGateway&) = delete;
  StubGateway& operator=(const StubGateway&) = delete;

  [[nodiscard]] std::uint16_t port() const { return port_; }
  [[nodiscard]] std::string url() const;
  // The status for upgrades from now on: 101 (default) or e.g. 401.
  void answerUpgradeWith(int status);
  // The next upgrade request head (up to the blank line), in arrival order.
  [[nodiscard]] std::optional<std::string> waitRequest(std::chrono::milliseconds timeout);
  // The next text frame from the client; nullopt if none within `timeout`.
  [[nodiscard]] std::optional<std::string> waitFrame(std::chrono::milliseconds timeout);
  // A text frame to the current connection.
  void send(const std::string& text);

 private:
  void run();
  void serve(int fd);

  int listenFd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  int status_ = 101;
  int clientFd_ = -1;
  std::deque<std::string> requests_;
  std::deque<std::string> frames_;
  std::thread thread_;
};

}  // namespace mesh::test
