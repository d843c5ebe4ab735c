#include "support/raw_peer.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <utility>

namespace mesh::test {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

RawPeer::RawPeer(std::uint16_t port) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const int err = errno;
    ::close(fd_);
    throw std::runtime_error(std::string("connect: ") + std::strerror(err));
  }
  const int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

RawPeer::~RawPeer() {
  ::close(fd_);
}

void RawPeer::send(std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw std::runtime_error(std::string("send: ") + std::strerror(errno));
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

void RawPeer::sendFrame(std::uint8_t op, std::string_view payload, bool fin) {
  send(ws::encodeFrame(op, payload, fin, ws::randomMaskKey()));
}

std::string RawPeer::readResponseHead(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::size_t end;
  while ((end = in_.find("\r\n\r\n")) == std::string::npos) {
    if (!fill(deadline)) throw std::runtime_error("no HTTP response; received: " + in_);
  }
  std::string head = in_.substr(0, end + 4);
  in_.erase(0, end + 4);
  return head;
}

std::optional<ws::Frame> RawPeer::readFrame(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    ws::Frame f;
    const auto r = ws::decodeFrame(in_, f);
    if (r.status == ws::DecodeStatus::Invalid) {
      throw std::runtime_error("invalid frame from the relay: " + r.error);
    }
    if (r.status == ws::DecodeStatus::Complete) {
      in_.erase(0, r.consumed);
      return f;
    }
    if (!fill(deadline)) return std::nullopt;
  }
}

std::string RawPeer::expectText(std::string_view type, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    auto f = readFrame(std::max(left, 0ms));
    if (!f) throw std::runtime_error("expected '" + std::string(type) + "', got nothing");
    if (f->opcode == opcode::kPing) continue;
    if (f->opcode != opcode::kText) {
      throw std::runtime_error("expected '" + std::string(type) + "', got opcode " +
                               std::to_string(f->opcode));
    }
    if (jsonString(f->payload, "type") == type) return f->payload;
  }
}

std::vector<std::string> RawPeer::textsUntilProbe(const std::string& probeId) {
  sendFrame(opcode::kText, R"({"type":"gateway_discover","id":")" + probeId + "\"}");
  std::vector<std::string> seen;
  for (;;) {
    auto f = readFrame();
    if (!f) throw std::runtime_error("no answer to the probe");
    if (f->opcode != opcode::kText) continue;
    if (jsonString(f->payload, "type") == "gateway_discover_result" &&
        jsonString(f->payload, "id") == probeId) {
      return seen;
    }
    seen.push_back(f->payload);
  }
}

bool RawPeer::closedWithin(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!eof_) {
    in_.clear();
    if (!fill(deadline) && !eof_) return false;
  }
  return true;
}

std::optional<std::string> RawPeer::readUntilClosed(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!eof_) {
    if (!fill(deadline) && !eof_) return std::nullopt;
  }
  return std::exchange(in_, {});
}

void RawPeer::resetOnClose() {
  linger lg{};
  lg.l_onoff = 1;
  lg.l_linger = 0;
  ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
}

bool RawPeer::fill(Clock::time_point deadline) {
  if (eof_) return false;
  for (;;) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    pollfd p{fd_, POLLIN, 0};
    const int rc = ::poll(&p, 1, static_cast<int>(std::max<std::int64_t>(left.count(), 0)));
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) return false;
    char buf[16 * 1024];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n > 0) {
      in_.append(buf, static_cast<std::size_t>(n));
      return true;
    }
    if (n < 0 && errno == EINTR) continue;
    eof_ = true;  // end of stream or reset
    return false;
  }
}

}  // namespace mesh::test
