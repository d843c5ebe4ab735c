#include "ws_conn.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "loop.h"

namespace mesh::bench {

namespace {

constexpr size_t kReadChunk = 64 * 1024;
constexpr size_t kMaxReadPerEvent = 512 * 1024;

// XORs len bytes with the 4-byte key, 8 bytes per step.
void apply_mask(char* p, size_t len, uint32_t key) {
  uint64_t k8 = (static_cast<uint64_t>(key) << 32) | key;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t v;
    std::memcpy(&v, p + i, 8);
    v ^= k8;
    std::memcpy(p + i, &v, 8);
  }
  const auto* kb = reinterpret_cast<const unsigned char*>(&key);
  for (; i < len; ++i) p[i] = static_cast<char>(p[i] ^ static_cast<char>(kb[i & 3]));
}

}  // namespace

WsConn::WsConn(Loop& loop, ConnHandler& handler, uint32_t index)
    : loop_(loop), handler_(handler), index_(index), mask_state_(index * 2654435761u + 1u) {}

WsConn::~WsConn() {
  abort();
}

bool WsConn::connect(const Endpoint& ep, int src_index) {
  abort();
  fd_ = start_connect(ep, src_index);
  if (fd_ < 0) return false;
  state_ = State::connecting;
  out_.clear();
  out_off_ = 0;
  in_len_ = 0;
  frag_.clear();
  in_frag_ = false;
  authed = false;
  host_header_ = ep.host + ":" + std::to_string(ep.port);
  path_ = ep.path;
  if (in_.size() < kReadChunk) in_.resize(kReadChunk);
  want_write_ = true;
  loop_.add(this, fd_, true);
  return true;
}

void WsConn::abort() {
  if (fd_ >= 0) {
    loop_.remove(fd_);
    close(fd_);
    fd_ = -1;
  }
  state_ = State::closed;
  out_.clear();
  out_off_ = 0;
}

void WsConn::fail(const char* why) {
  if (state_ == State::closed) return;
  abort();
  handler_.on_closed(*this, why);
}

void WsConn::set_want_write(bool on) {
  if (on == want_write_ || fd_ < 0) return;
  want_write_ = on;
  loop_.modify(this, fd_, on);
}

void WsConn::handle_events(uint32_t events) {
  if (state_ == State::closed || state_ == State::idle) return;
  if (state_ == State::connecting) {
    if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        fail(err == ECONNREFUSED ? "connection refused" : "connect failed");
        return;
      }
      on_connected();
    }
    return;
  }
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) read_some();
  if (state_ != State::closed && (events & EPOLLOUT)) flush();
}

void WsConn::on_connected() {
  state_ = State::upgrading;
  std::string req;
  req.reserve(256);
  req += "GET ";
  req += path_;
  req += " HTTP/1.1\r\nHost: " + host_header_ +
         "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: bWVzaC1iZW5jaC1rZXkwMQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
  out_ += req;
  flush();
}

void WsConn::send_text(std::string_view text) {
  if (state_ == State::closed || state_ == State::idle) return;
  append_frame(0x1, text.data(), text.size());
  loop_.mark_dirty(this);
}

void WsConn::append_frame(uint8_t opcode, const char* data, size_t len) {
  // Reclaim the written prefix before growing.
  if (out_off_ > 0 && out_off_ == out_.size()) {
    out_.clear();
    out_off_ = 0;
  } else if (out_off_ > 64 * 1024 && out_off_ * 2 > out_.size()) {
    out_.erase(0, out_off_);
    out_off_ = 0;
  }
  char hdr[14];
  size_t h = 0;
  hdr[h++] = static_cast<char>(0x80 | opcode);
  if (len < 126) {
    hdr[h++] = static_cast<char>(0x80 | len);
  } else if (len < 65536) {
    hdr[h++] = static_cast<char>(0x80 | 126);
    hdr[h++] = static_cast<char>((len >> 8) & 0xff);
    hdr[h++] = static_cast<char>(len & 0xff);
  } else {
    hdr[h++] = static_cast<char>(0x80 | 127);
    for (int s = 56; s >= 0; s -= 8) hdr[h++] = static_cast<char>((len >> s) & 0xff);
  }
  // xorshift32: a different key per frame, no syscalls.
  uint32_t x = mask_state_;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  mask_state_ = x;
  std::memcpy(hdr + h, &x, 4);
  h += 4;
  size_t at = out_.size();
  out_.resize(at + h + len);
  std::memcpy(out_.data() + at, hdr, h);
  if (len) {
    std::memcpy(out_.data() + at + h, data, len);
    apply_mask(out_.data() + at + h, len, x);
  }
}

void WsConn::flush() {
  if (fd_ < 0 || state_ == State::connecting) return;
  while (out_off_ < out_.size()) {
    ssize_t n = ::send(fd_, out_.data() + out_off_, out_.size() - out_off_, MSG_NOSIGNAL);
    if (n > 0) {
      out_off_ += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      set_want_write(true);
      return;
    }
    fail("write failed");
    return;
  }
  out_.clear();
  out_off_ = 0;
  set_want_write(false);
}

void WsConn::read_some() {
  size_t total = 0;
  while (total < kMaxReadPerEvent) {
    if (in_.size() - in_len_ < kReadChunk / 2) in_.resize(in_.size() * 2);
    ssize_t n = ::recv(fd_, in_.data() + in_len_, in_.size() - in_len_, 0);
    if (n > 0) {
      size_t room = in_.size() - in_len_;
      in_len_ += static_cast<size_t>(n);
      total += static_cast<size_t>(n);
      if (state_ == State::upgrading && !parse_upgrade()) return;
      if (state_ == State::open) parse_frames();
      if (state_ == State::closed) return;
      // A short read drained the socket; level-triggered epoll reports more.
      if (static_cast<size_t>(n) < room) return;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    fail(n == 0 ? "closed by server" : "read failed");
    return;
  }
}

bool WsConn::parse_upgrade() {
  std::string_view buf(in_.data(), in_len_);
  auto end = buf.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    if (in_len_ > 16384) fail("oversized upgrade response");
    return false;
  }
  if (buf.substr(0, 12) != "HTTP/1.1 101") {
    fail("upgrade refused");
    return false;
  }
  size_t consumed = end + 4;
  std::memmove(in_.data(), in_.data() + consumed, in_len_ - consumed);
  in_len_ -= consumed;
  state_ = State::open;
  handler_.on_open(*this);
  return state_ != State::closed;
}

void WsConn::parse_frames() {
  size_t pos = 0;
  auto* b = reinterpret_cast<unsigned char*>(in_.data());
  while (state_ == State::open) {
    size_t avail = in_len_ - pos;
    if (avail < 2) break;
    unsigned char b0 = b[pos], b1 = b[pos + 1];
    uint8_t opcode = b0 & 0x0f;
    bool fin = (b0 & 0x80) != 0;
    bool masked = (b1 & 0x80) != 0;
    uint64_t len = b1 & 0x7f;
    size_t h = 2;
    if (len == 126) {
      if (avail < 4) break;
      len = (static_cast<uint64_t>(b[pos + 2]) << 8) | b[pos + 3];
      h = 4;
    } else if (len == 127) {
      if (avail < 10) break;
      len = 0;
      for (int i = 0; i < 8; ++i) len = (len << 8) | b[pos + 2 + i];
      h = 10;
    }
    uint32_t key = 0;
    if (masked) {
      if (avail < h + 4) break;
      std::memcpy(&key, b + pos + h, 4);
      h += 4;
    }
    if (len > (64u << 20)) {
      fail("frame too large");
      return;
    }
    if (avail < h + len) {
      // Make room for the whole frame.
      if (in_.size() < h + len + kReadChunk) in_.resize(h + len + kReadChunk);
      b = reinterpret_cast<unsigned char*>(in_.data());
      break;
    }
    char* payload = in_.data() + pos + h;
    size_t plen = static_cast<size_t>(len);
    if (masked) apply_mask(payload, plen, key);
    pos += h + plen;
    switch (opcode) {
      case 0x1:
      case 0x2:
        if (fin) {
          handler_.on_text(*this, std::string_view(payload, plen));
        } else {
          frag_.assign(payload, plen);
          in_frag_ = true;
        }
        break;
      case 0x0:
        if (!in_frag_) {
          fail("unexpected continuation frame");
          return;
        }
        frag_.append(payload, plen);
        if (fin) {
          in_frag_ = false;
          handler_.on_text(*this, frag_);
        }
        break;
      case 0x8:
        fail("close frame from server");
        return;
      case 0x9:
        append_frame(0xA, payload, plen);
        loop_.mark_dirty(this);
        break;
      case 0xA:
        break;
      default:
        fail("unknown opcode");
        return;
    }
    b = reinterpret_cast<unsigned char*>(in_.data());
  }
  if (state_ == State::closed) return;
  if (pos > 0) {
    std::memmove(in_.data(), in_.data() + pos, in_len_ - pos);
    in_len_ -= pos;
  }
}

}  // namespace mesh::bench
