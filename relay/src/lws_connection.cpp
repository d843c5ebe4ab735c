#include "lws_connection.h"

#include "log.h"
#include "server_impl.h"
#include "ws_codec.h"

namespace mesh::relay {

static_assert(OutFrame::kHeadroom >= LWS_PRE, "lws_write needs LWS_PRE bytes in front");

LwsConnection::LwsConnection(Server::Impl& server, lws* wsi)
    : server_(server), wsi_(wsi), relayFramed_(lws_get_network_wsi(wsi) == wsi) {}

LwsConnection& LwsConnection::of(Session& s) {
  return static_cast<LwsConnection&>(*s.conn);
}

void LwsConnection::flush(Session& s) {
  if (s.peerClosed) return;
  switch (write(s)) {
    case WriteResult::Failed:
      // The socket is dead; lws closes it (and CLOSED cleans up) shortly.
      s.queue.clear();
      s.queuedBytes = 0;
      s.peerClosed = true;
      lws_set_timeout(wsi_, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
      return;
    case WriteResult::CloseViaLws:
      closeViaLws_ = true;
      lws_callback_on_writable(wsi_);
      return;
    case WriteResult::Ok:
      break;
  }
  if (!s.queue.empty()) lws_callback_on_writable(wsi_);
}

void LwsConnection::kill(Session& /*s*/) {
  // CLOSED runs inside and frees the session: an asynchronous kill is one
  // more sorted insert into lws's timer list.
  lws_set_timeout(wsi_, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_SYNC);
}

// Writes queued frames until the queue is empty or the kernel stops taking
// them (lws keeps the unsent tail of the last write and asks for POLLOUT).
// Several frames go out in one write: the relay frames them itself, which
// RFC 6455 allows on a connection with no extension (this relay offers
// none).
LwsConnection::WriteResult LwsConnection::write(Session& s) {
  while (!s.queue.empty() && !lws_partial_buffered(wsi_)) {
    // A WebSocket carried inside HTTP/2 is framed by lws: one frame per write.
    if (!relayFramed_ && s.queue.front()->isClose) {
      s.queue.pop();
      return WriteResult::CloseViaLws;  // lws_close_reason() from WRITEABLE
    }
    std::size_t frames = 1;
    const unsigned char* data;
    std::size_t len;
    int n;
    const OutFrame& first = *s.queue.front();
    if (!relayFramed_) {
      // lws writes its header into the headroom, so the shared buffer is
      // copied first.
      server_.writeScratch.assign(first.bytes.begin(), first.bytes.end());
      n = lws_write(wsi_, server_.writeScratch.data() + OutFrame::kHeadroom, first.textSize(),
                    LWS_WRITE_TEXT);
      len = first.textSize();
    } else {
      len = first.wireSize();
      while (frames < s.queue.size() && len + s.queue.at(frames)->wireSize() <= kWriteBatchBytes) {
        len += s.queue.at(frames)->wireSize();
        ++frames;
      }
      // lws_write() takes a mutable buffer but does not change a raw one.
      data = reinterpret_cast<const unsigned char*>(
          frames == 1 ? first.wire() : server_.coalesce(s, frames).data());
      n = lws_write(wsi_, const_cast<unsigned char*>(data), len, LWS_WRITE_RAW);
    }
    if (n < 0 || static_cast<std::size_t>(n) < len) return WriteResult::Failed;
    std::int64_t now = 0;  // read only if a frame's last copy goes out
    for (std::size_t i = 0; i < frames; ++i) server_.frameWritten(s, s.queue.pop(), now);
  }
  return WriteResult::Ok;
}

int LwsConnection::onWriteable(Session& s) {
  if (s.peerClosed) return 0;
  if (closeViaLws_) {
    lws_close_reason(wsi_, static_cast<lws_close_status>(s.closeCode),
                     reinterpret_cast<unsigned char*>(s.closeReason.data()), s.closeReason.size());
    return -1;
  }
  if (!s.queue.empty()) {
    switch (write(s)) {
      case WriteResult::Failed:
        return -1;
      case WriteResult::CloseViaLws:
        closeViaLws_ = true;
        lws_callback_on_writable(wsi_);
        return 0;
      case WriteResult::Ok:
        break;
    }
  }
  if (!s.queue.empty()) lws_callback_on_writable(wsi_);
  return 0;
}

// The peer sent a close frame; lws echoes it and closes. Anything still
// queued can no longer be sent. lws 4.1.6 has already replaced a code no
// endpoint may send with 1002 in `payload` (it also counts 1012-1014, which
// IANA has since assigned, as such), but it checks neither a one-byte
// payload nor the reason's UTF-8, and echoes the peer's reason. A frame
// that breaks RFC 6455 is answered as on the plain path instead: 1002 or
// 1007 with a reason, through lws_close_reason() and a non-zero return,
// which makes lws send that close frame and close.
int LwsConnection::onPeerClose(Session& s, std::string_view payload) {
  const bool answering = s.state == SessionState::Closing;
  s.peerClosed = true;
  s.queue.clear();
  s.queuedBytes = 0;
  if (answering) return 0;  // the answer to our close frame
  ws::PeerClose close = ws::readClose(payload);
  if (!close.problem && close.code == 1002) {
    // The peer's own 1002 or lws's stand-in for an invalid code: either way
    // a protocol error, answered with a reason.
    close.answerReason = "protocol_error";
    close.problem = "close frame with code 1002 or an invalid one";
  }
  if (!close.problem) return 0;
  LOG_INFO("conn=" << s.id << " WebSocket protocol error: " << close.problem);
  ++server_.counters.framingErrors;
  std::string reason(close.answerReason);
  lws_close_reason(wsi_, static_cast<lws_close_status>(close.answerCode),
                   reinterpret_cast<unsigned char*>(reason.data()), reason.size());
  return -1;
}

}  // namespace mesh::relay
