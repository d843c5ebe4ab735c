// libmeshclient reading HTTP answers that no relay sends: what a hostile or
// broken server at the relay's address could answer must give an error, not
// a crash. The server here is a loopback socket that answers every request
// with one fixed response.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "mesh/client/http.h"

namespace mesh::test {
namespace {

class FixedAnswerServer {
 public:
  explicit FixedAnswerServer(std::string response) : response_(std::move(response)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        ::listen(fd_, 4) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      throw std::runtime_error("cannot listen on 127.0.0.1");
    }
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~FixedAnswerServer() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
  }
  [[nodiscard]] std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  void serve() {
    while (!stop_) {
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      char buf[4096];
      std::string request;
      while (request.find("\r\n\r\n") == std::string::npos) {
        const ssize_t n = ::recv(c, buf, sizeof buf, 0);
        if (n <= 0) break;
        request.append(buf, static_cast<std::size_t>(n));
      }
      std::string_view out = response_;
      while (!out.empty()) {
        const ssize_t n = ::send(c, out.data(), out.size(), MSG_NOSIGNAL);
        if (n <= 0) break;
        out.remove_prefix(static_cast<std::size_t>(n));
      }
      ::close(c);
    }
  }

  std::string response_;
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

std::string answer(const std::string& status, const std::string& body) {
  return "HTTP/1.1 " + status +
         "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\nConnection: close\r\n\r\n" + body;
}

// A JSON body nested a million levels deep: parsing it by recursion would
// overflow the stack.
const std::string kDeep = std::string(1000000, '[') + std::string(1000000, ']');

TEST(ClientHostileAnswers, DeeplyNestedHealthAnswerIsAProtocolError) {
  FixedAnswerServer server(answer("200 OK", kDeep));
  const auto health = client::checkHealth(server.url());
  ASSERT_FALSE(health.ok());
  EXPECT_EQ(health.error().status, client::Status::ProtocolError);
}

TEST(ClientHostileAnswers, DeeplyNestedRefusalIsReportedAsItsBody) {
  FixedAnswerServer server(answer("400 Bad Request", "{\"error\":" + kDeep + "}"));
  const auto r = client::registerMesh(server.url(), "mesh-a", "mesh-a-secret-0123456789", "A");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().status, client::Status::InvalidArgument);
}

}  // namespace
}  // namespace mesh::test
