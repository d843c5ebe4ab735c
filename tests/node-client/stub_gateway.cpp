#include "stub_gateway.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>
#include <vector>

#include "support/loopback.h"

namespace mesh::test {
namespace {

bool readExact(int fd, unsigned char* out, std::size_t n, const std::atomic<bool>& stopping) {
  std::size_t got = 0;
  while (got < n) {
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, 100);
    if (stopping) return false;
    if (ready <= 0) continue;
    const ssize_t r = ::recv(fd, out + got, n - got, 0);
    if (r <= 0) return false;
    got += static_cast<std::size_t>(r);
  }
  return true;
}

void sendAll(int fd, const std::string& data) {
  std::size_t sent = 0;
  while (sent < data.size()) {
    const ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return;
    sent += static_cast<std::size_t>(n);
  }
}

std::string acceptKey(const std::string& key) {
  const std::string joined = key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(joined.data()), joined.size(), digest);
  unsigned char out[64];
  const int n = EVP_EncodeBlock(out, digest, SHA_DIGEST_LENGTH);
  return std::string(reinterpret_cast<char*>(out), static_cast<std::size_t>(n));
}

std::string headerValue(const std::string& head, const std::string& name) {
  std::string lower = head;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const auto at = lower.find("\r\n" + name + ":");
  if (at == std::string::npos) return {};
  auto begin = at + name.size() + 3;
  while (begin < head.size() && head[begin] == ' ') ++begin;
  return head.substr(begin, head.find("\r\n", begin) - begin);
}

}  // namespace

StubGateway::StubGateway() {
  listenFd_ = listenOnLoopback(port_, 8);
  thread_ = std::thread([this] { run(); });
}

StubGateway::~StubGateway() {
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
  ::close(listenFd_);
}

std::string StubGateway::url() const {
  return "ws://127.0.0.1:" + std::to_string(port_) + "/gateway";
}

void StubGateway::answerUpgradeWith(int status) {
  std::lock_guard lock(mu_);
  status_ = status;
}

std::optional<std::string> StubGateway::waitRequest(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  if (!cv_.wait_for(lock, timeout, [this] { return !requests_.empty(); })) return std::nullopt;
  std::string head = std::move(requests_.front());
  requests_.pop_front();
  return head;
}

std::optional<std::string> StubGateway::waitFrame(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  if (!cv_.wait_for(lock, timeout, [this] { return !frames_.empty(); })) return std::nullopt;
  std::string frame = std::move(frames_.front());
  frames_.pop_front();
  return frame;
}

void StubGateway::send(const std::string& text) {
  std::string frame;
  frame += static_cast<char>(0x81);
  if (text.size() < 126) {
    frame += static_cast<char>(text.size());
  } else {
    frame += static_cast<char>(126);
    frame += static_cast<char>((text.size() >> 8) & 0xff);
    frame += static_cast<char>(text.size() & 0xff);
  }
  frame += text;
  std::lock_guard lock(mu_);
  if (clientFd_ >= 0) sendAll(clientFd_, frame);
}

void StubGateway::run() {
  while (!stopping_) {
    pollfd p{listenFd_, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    const int fd = ::accept4(listenFd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    serve(fd);
    {
      std::lock_guard lock(mu_);
      clientFd_ = -1;
    }
    ::close(fd);
  }
}

void StubGateway::serve(int fd) {
  std::string head;
  unsigned char byte = 0;
  while (head.size() < 16384 && head.find("\r\n\r\n") == std::string::npos) {
    if (!readExact(fd, &byte, 1, stopping_)) return;
    head += static_cast<char>(byte);
  }
  int status = 101;
  {
    std::lock_guard lock(mu_);
    status = status_;
    requests_.push_back(head);
  }
  cv_.notify_all();
  if (status != 101) {
    sendAll(fd, "HTTP/1.1 " + std::to_string(status) +
                    " Refused\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    return;
  }
  sendAll(fd,
          "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          "Sec-WebSocket-Accept: " +
              acceptKey(headerValue(head, "sec-websocket-key")) + "\r\n\r\n");
  {
    std::lock_guard lock(mu_);
    clientFd_ = fd;
  }
  for (;;) {
    unsigned char h[2];
    if (!readExact(fd, h, 2, stopping_)) return;
    std::uint64_t length = h[1] & 0x7f;
    if (length == 126) {
      unsigned char ext[2];
      if (!readExact(fd, ext, 2, stopping_)) return;
      length = (std::uint64_t{ext[0]} << 8) | ext[1];
    } else if (length == 127) {
      unsigned char ext[8];
      if (!readExact(fd, ext, 8, stopping_)) return;
      length = 0;
      for (const unsigned char b : ext) length = (length << 8) | b;
    }
    if (length > (1u << 20)) return;
    unsigned char mask[4] = {0, 0, 0, 0};
    if ((h[1] & 0x80) != 0 && !readExact(fd, mask, 4, stopping_)) return;
    std::vector<unsigned char> payload(length);
    if (length > 0 && !readExact(fd, payload.data(), length, stopping_)) return;
    for (std::size_t i = 0; i < payload.size(); ++i) payload[i] ^= mask[i % 4];
    const int opcode = h[0] & 0x0f;
    if (opcode == 0x8) {  // close: answer and end
      std::lock_guard lock(mu_);
      sendAll(fd, std::string("\x88\x02\x03\xe8", 4));
      return;
    }
    if (opcode == 0x9) {  // ping: pong
      std::string pong;
      pong += static_cast<char>(0x8a);
      pong += static_cast<char>(payload.size());
      pong.append(payload.begin(), payload.end());
      std::lock_guard lock(mu_);
      sendAll(fd, pong);
      continue;
    }
    if (opcode == 0x1) {
      {
        std::lock_guard lock(mu_);
        frames_.emplace_back(payload.begin(), payload.end());
      }
      cv_.notify_all();
    }
  }
}

}  // namespace mesh::test
