// The frame reader of a plain /gateway connection: what the socket has is
// read in chunks and cut into RFC 6455 frames (the header, unmasking and
// close frames are ws_codec's pure functions); a frame cut off by the end
// of a read waits in the session for the rest. Data frames go to
// the session's onReceive() like lws's, control frames are answered here.
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "log.h"
#include "plain_connection.h"
#include "plain_io.h"
#include "server_impl.h"
#include "ws_codec.h"

namespace mesh::relay {

namespace {

constexpr int kReadsPerEvent = 4;

}  // namespace

PlainConnection& PlainConnection::of(Session& s) {
  return static_cast<PlainConnection&>(*s.conn);
}

void PlainConnection::start(Session& s, int fd, std::string early) {
  ev_io_init(&io_, plain::onSessionEvent, fd, EV_READ);
  io_.data = &s;
  ev_io_start(server_.evLoop, &io_);
  if (!early.empty()) handleBytes(s, early.data(), early.size());
}

void PlainConnection::onEvent(Session& s, int revents) {
  if ((revents & EV_WRITE) && !write(s)) {
    close(s);
    return;
  }
  if (revents & EV_READ) read(s);
}

bool PlainConnection::read(Session& s) {
  for (int i = 0; i < kReadsPerEvent; ++i) {
    const ssize_t n = ::recv(io_.fd, server_.readBuffer.data(), server_.readBuffer.size(), 0);
    if (n > 0) {
      if (!handleBytes(s, server_.readBuffer.data(), static_cast<std::size_t>(n))) return false;
      if (static_cast<std::size_t>(n) < server_.readBuffer.size()) return true;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    // End of stream or a reset: the peer is gone.
    close(s);
    return false;
  }
  return true;
}

// RFC 6455 5.2 from the server's side: every client frame is masked, no
// extension is negotiated (so no reserved bit may be set), control frames
// are short and whole. A data frame larger than the relay takes is not
// buffered: its bytes are dropped as they arrive and the node gets
// frame_too_large when its message ends, as for one that fits.
bool PlainConnection::handleBytes(Session& s, char* data, std::size_t len) {
  server_.heardFrom(s);
  if (s.peerClosed) return true;
  if (skipRemaining_ > 0) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(len, skipRemaining_));
    data += n;
    len -= n;
    dropOversize(s, n);
    if (len == 0) return true;
  }
  // A frame cut off by the previous read is completed in its own buffer.
  std::string carried;
  if (!rxPartial_.empty()) {
    rxPartial_.append(data, len);
    carried.swap(rxPartial_);
    data = carried.data();
    len = carried.size();
  }
  std::size_t pos = 0;
  while (pos < len) {
    const ws::FrameHeader h =
        ws::readHeader(reinterpret_cast<const unsigned char*>(data + pos), len - pos, s.rxActive);
    if (h.error) {
      protocolError(s, h.error);
      return true;
    }
    if (h.length == 0) break;  // the header is not all here yet
    if (!h.control() && h.size > server_.config.limits.maxFrameBytes) {
      if (!s.rxActive) {
        s.rxActive = true;
        s.rxBinary = h.opcode == 0x2;
      }
      s.rxOversize = true;
      s.rx.clear();
      s.rx.shrink_to_fit();
      pos += h.length;
      const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(len - pos, h.size));
      pos += n;
      skipRemaining_ = h.size;
      skipFinal_ = h.fin;
      dropOversize(s, n);
      continue;
    }
    if (len - pos - h.length < h.size) break;  // the payload is not all here yet
    char* payload = data + pos + h.length;
    const auto size = static_cast<std::size_t>(h.size);
    ws::unmask(payload, size, h.mask);
    pos += h.length + size;
    if (h.control()) {
      if (!handleControl(s, h.opcode, std::string_view(payload, size))) return false;
    } else {
      server_.onReceive(s, payload, size, h.opcode == 0x2, h.fin);
    }
    if (s.peerClosed) return true;
  }
  if (pos < len) {
    if (carried.empty()) {
      rxPartial_.assign(data + pos, len - pos);
    } else {
      carried.erase(0, pos);
      rxPartial_.swap(carried);
    }
  }
  return true;
}

// `n` more bytes of an oversize frame are gone; the node hears about it once
// the message the frame belongs to has ended.
void PlainConnection::dropOversize(Session& s, std::size_t n) {
  skipRemaining_ -= n;
  if (skipRemaining_ == 0 && skipFinal_) {
    s.rxActive = false;
    server_.handleMessage(s, {}, s.rxBinary);
  }
}

bool PlainConnection::handleControl(Session& s, std::uint8_t opcode, std::string_view payload) {
  if (opcode == 0x9) {  // ping: answered with the same payload
    server_.enqueue(s, makeControlFrame(OutFrame::kPong, payload));
    return true;
  }
  if (opcode == 0xA) return true;  // pong: handleBytes noted that the peer is alive
  // Close. An answer to ours, or the peer closing first while ours waits:
  // nothing more to say.
  if (s.state == SessionState::Closing) {
    close(s);
    return false;
  }
  const ws::PeerClose peerClose = ws::readClose(payload);
  if (peerClose.problem) {
    // 1002 for a one-byte payload or a code no endpoint may send, 1007 for
    // a reason that is not UTF-8 (RFC 6455 7.4, 8.1).
    protocolError(s, peerClose.problem, static_cast<int>(peerClose.answerCode),
                  peerClose.answerReason);
    return true;
  }
  LOG_DEBUG("conn=" << s.id << " close frame from the peer, code " << peerClose.code);
  // Answered with the same code (RFC 6455 5.5.1); the socket closes once the
  // answer is out (write()).
  server_.closeSession(s, static_cast<int>(peerClose.answerCode), "", true);
  s.peerClosed = true;
  return true;
}

void PlainConnection::protocolError(Session& s, std::string_view why, int code,
                                    std::string_view reason) {
  LOG_INFO("conn=" << s.id << " WebSocket protocol error: " << why);
  ++server_.counters.framingErrors;
  rxPartial_.clear();
  rxPartial_.shrink_to_fit();
  skipRemaining_ = 0;
  server_.closeSession(s, code, reason, true);
  // Failing the connection (RFC 6455 7.1.7): the socket closes as soon as
  // the close frame is out; the peer's input is no longer read as frames.
  s.peerClosed = true;
}

}  // namespace mesh::relay
