// The frame reader of a plain /gateway connection: what the socket has is
// read in chunks and cut into RFC 6455 frames (the header, unmasking and
// close frames are ws_codec's pure functions); a frame cut off by the end
// of a read waits in the session for the rest. Data frames go to
// onReceive() like lws's, control frames are answered here.
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "log.h"
#include "server_impl.h"
#include "ws_codec.h"

namespace mesh::relay {

namespace {

constexpr int kReadsPerEvent = 4;

}  // namespace

void Server::Impl::onPlainEvent(Session& s, int revents) {
  if ((revents & EV_WRITE) && writePlain(s) == WriteResult::Failed) {
    closePlain(s);
    return;
  }
  if (revents & EV_READ) readPlain(s);
}

bool Server::Impl::readPlain(Session& s) {
  for (int i = 0; i < kReadsPerEvent; ++i) {
    const ssize_t n = ::recv(s.io.fd, readBuffer.data(), readBuffer.size(), 0);
    if (n > 0) {
      if (!handleBytes(s, readBuffer.data(), static_cast<std::size_t>(n))) return false;
      if (static_cast<std::size_t>(n) < readBuffer.size()) return true;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    // End of stream or a reset: the peer is gone.
    closePlain(s);
    return false;
  }
  return true;
}

// RFC 6455 5.2 from the server's side: every client frame is masked, no
// extension is negotiated (so no reserved bit may be set), control frames
// are short and whole. A data frame larger than the relay takes is not
// buffered: its bytes are dropped as they arrive and the node gets
// frame_too_large when its message ends, as for one that fits.
bool Server::Impl::handleBytes(Session& s, char* data, std::size_t len) {
  heardFrom(s);
  if (s.peerClosed) return true;
  if (s.skipRemaining > 0) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(len, s.skipRemaining));
    data += n;
    len -= n;
    dropOversize(s, n);
    if (len == 0) return true;
  }
  // A frame cut off by the previous read is completed in its own buffer.
  std::string carried;
  if (!s.rxPartial.empty()) {
    s.rxPartial.append(data, len);
    carried.swap(s.rxPartial);
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
    if (!h.control() && h.size > config.limits.maxFrameBytes) {
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
      s.skipRemaining = h.size;
      s.skipFinal = h.fin;
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
      onReceive(s, payload, size, h.opcode == 0x2, h.fin);
    }
    if (s.peerClosed) return true;
  }
  if (pos < len) {
    if (carried.empty()) {
      s.rxPartial.assign(data + pos, len - pos);
    } else {
      carried.erase(0, pos);
      s.rxPartial.swap(carried);
    }
  }
  return true;
}

// `n` more bytes of an oversize frame are gone; the node hears about it once
// the message the frame belongs to has ended.
void Server::Impl::dropOversize(Session& s, std::size_t n) {
  s.skipRemaining -= n;
  if (s.skipRemaining == 0 && s.skipFinal) {
    s.rxActive = false;
    handleMessage(s, {}, s.rxBinary);
  }
}

bool Server::Impl::handleControl(Session& s, std::uint8_t opcode, std::string_view payload) {
  if (opcode == 0x9) {  // ping: answered with the same payload
    enqueue(s, makeControlFrame(OutFrame::kPong, payload));
    return true;
  }
  if (opcode == 0xA) return true;  // pong: handleBytes noted that the peer is alive
  // Close. An answer to ours, or the peer closing first while ours waits:
  // nothing more to say.
  if (s.state == SessionState::Closing) {
    closePlain(s);
    return false;
  }
  const ws::PeerClose close = ws::readClose(payload);
  if (close.problem) {
    // 1002 for a one-byte payload or a code no endpoint may send, 1007 for
    // a reason that is not UTF-8 (RFC 6455 7.4, 8.1).
    protocolError(s, close.problem, static_cast<int>(close.answerCode), close.answerReason);
    return true;
  }
  LOG_DEBUG("conn=" << s.id << " close frame from the peer, code " << close.code);
  // Answered with the same code (RFC 6455 5.5.1); the socket closes once the
  // answer is out (writePlain).
  closeSession(s, static_cast<int>(close.answerCode), "", true);
  s.peerClosed = true;
  return true;
}

void Server::Impl::protocolError(Session& s, std::string_view why, int code,
                                 std::string_view reason) {
  LOG_INFO("conn=" << s.id << " WebSocket protocol error: " << why);
  ++counters.framingErrors;
  s.rxPartial.clear();
  s.rxPartial.shrink_to_fit();
  s.skipRemaining = 0;
  closeSession(s, code, reason, true);
  // Failing the connection (RFC 6455 7.1.7): the socket closes as soon as
  // the close frame is out; the peer's input is no longer read as frames.
  s.peerClosed = true;
}

}  // namespace mesh::relay
