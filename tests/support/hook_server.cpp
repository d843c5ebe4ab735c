#include "support/hook_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <stdexcept>

#include "support/loopback.h"
#include "support/ws_client.h"

namespace mesh::test {
namespace {

std::string reasonPhrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 403:
      return "Forbidden";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return "Status";
  }
}

}  // namespace

HookServer::HookServer(Handler handler) : handler_(std::move(handler)) {
  listenFd_ = listenOnLoopback(port_);
  if (::pipe2(wakeFd_, O_CLOEXEC) != 0) {
    ::close(listenFd_);
    throw std::runtime_error("pipe2() failed");
  }
  thread_ = std::thread([this] { serve(); });
}

HookServer::~HookServer() {
  const char byte = 'x';
  (void)!::write(wakeFd_[1], &byte, 1);
  thread_.join();
  for (auto& t : connections_) t.join();
  ::close(listenFd_);
  ::close(wakeFd_[0]);
  ::close(wakeFd_[1]);
}

std::string HookServer::url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(port_) + path;
}

std::vector<HookRequest> HookServer::requests() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return requests_;
}

std::size_t HookServer::requestCount() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return requests_.size();
}

void HookServer::serve() {
  for (;;) {
    pollfd fds[2] = {{listenFd_, POLLIN, 0}, {wakeFd_[0], POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) continue;
    if (fds[1].revents != 0) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    const int fd = ::accept4(listenFd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    // A thread per connection: a slow answer holds up no other request.
    connections_.emplace_back([this, fd] {
      serveOne(fd);
      ::close(fd);
    });
  }
}

// Reads the head, then as many body bytes as Content-Length says, with a
// deadline; answers; the caller closes.
void HookServer::serveOne(int fd) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  std::string in;
  std::size_t headEnd = std::string::npos;
  std::size_t wanted = 0;
  auto readMore = [&]() {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char buf[4096];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return false;
    in.append(buf, static_cast<std::size_t>(n));
    return true;
  };
  while ((headEnd = in.find("\r\n\r\n")) == std::string::npos) {
    if (!readMore()) return;
  }
  HookRequest req;
  const std::string head = in.substr(0, headEnd + 2);
  const std::size_t lineEnd = head.find("\r\n");
  const std::string line = head.substr(0, lineEnd);
  const std::size_t sp1 = line.find(' ');
  const std::size_t sp2 = line.find(' ', sp1 + 1);
  if (sp1 == std::string::npos || sp2 == std::string::npos) return;
  req.method = line.substr(0, sp1);
  req.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  req.headers = head.substr(lineEnd + 2);
  const std::string length = headerValue(head, "Content-Length");
  wanted = length.empty() ? 0 : static_cast<std::size_t>(std::strtoul(length.c_str(), nullptr, 10));
  while (in.size() < headEnd + 4 + wanted) {
    if (!readMore()) return;
  }
  req.body = in.substr(headEnd + 4, wanted);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    requests_.push_back(req);
  }
  const HookReply reply = handler_(req);
  if (reply.delay.count() > 0) {
    // Waits, but a stop request still ends the wait.
    pollfd p{wakeFd_[0], POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(reply.delay.count())) > 0) return;
  }
  std::string out =
      "HTTP/1.1 " + std::to_string(reply.status) + " " + reasonPhrase(reply.status) +
      "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(reply.body.size()) +
      "\r\nConnection: close\r\n\r\n" + reply.body;
  std::string_view rest = out;
  while (!rest.empty()) {
    const ssize_t n = ::send(fd, rest.data(), rest.size(), MSG_NOSIGNAL);
    if (n <= 0) return;
    rest.remove_prefix(static_cast<std::size_t>(n));
  }
}

std::uint16_t unusedPort() {
  std::uint16_t port = 0;
  const int fd = listenOnLoopback(port);
  ::close(fd);
  return port;
}

}  // namespace mesh::test
