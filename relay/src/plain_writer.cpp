// Batched writes on a plain /gateway connection: the queued frames, already
// framed (OutFrame), leave several per system call, small ones copied into
// one buffer and larger ones by sendmsg() straight from their shared
// buffers. A socket that takes less waits for EV_WRITE.
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>

#include "plain_connection.h"
#include "server_impl.h"

namespace mesh::relay {

namespace {

// Frames put into one sendmsg().
constexpr std::size_t kMaxIov = 64;
// Up to this size, several queued frames are copied into one buffer: the
// kernel's copy from one segment costs less than walking one per frame.
constexpr std::size_t kCoalesceBytes = 16 * 1024;

}  // namespace

void PlainConnection::flush(Session& s) {
  // After the peer's close frame only our answer to it is still queued.
  if (!write(s)) close(s);
}

// Writes queued frames, several per write, until the queue is empty or the
// socket is full (then the watcher waits for EV_WRITE too): small ones copied
// into one buffer (coalesce()), larger ones by sendmsg() straight from their
// shared buffers.
bool PlainConnection::write(Session& s) {
  iovec iov[kMaxIov];
  while (!s.queue.empty()) {
    std::size_t count = 0;
    std::size_t total = 0;
    for (; count < s.queue.size() && count < kMaxIov && total < kWriteBatchBytes; ++count) {
      const OutFrame& f = *s.queue.at(count);
      const std::size_t skip = count == 0 ? sentOfFront_ : 0;
      iov[count].iov_base = const_cast<char*>(f.wire() + skip);
      iov[count].iov_len = f.wireSize() - skip;
      total += iov[count].iov_len;
    }
    ssize_t n;
    // After a partial write (rare: the socket was full) the rest goes from
    // the frames themselves.
    if (count > 1 && total <= kCoalesceBytes && sentOfFront_ == 0) {
      const std::string& bytes = server_.coalesce(s, count);
      n = ::send(io_.fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    } else {
      msghdr msg{};
      msg.msg_iov = iov;
      msg.msg_iovlen = count;
      n = ::sendmsg(io_.fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        watchWritable(true);
        return true;
      }
      return false;
    }
    std::size_t left = static_cast<std::size_t>(n);
    std::int64_t now = 0;
    while (left > 0) {
      const std::size_t rest = s.queue.front()->wireSize() - sentOfFront_;
      if (left < rest) {
        sentOfFront_ += left;
        break;
      }
      left -= rest;
      sentOfFront_ = 0;
      OutFramePtr frame = s.queue.pop();
      server_.frameWritten(s, frame, now);
      // Our answer to the peer's close frame is out: the connection is done.
      if (frame->isClose && s.peerClosed) return false;
    }
    if (static_cast<std::size_t>(n) < total) {
      watchWritable(true);
      return true;
    }
  }
  watchWritable(false);
  return true;
}

void PlainConnection::watchWritable(bool on) {
  if (waitingWritable_ == on) return;
  waitingWritable_ = on;
  ev_io_stop(server_.evLoop, &io_);
  ev_io_set(&io_, io_.fd, on ? EV_READ | EV_WRITE : EV_READ);
  ev_io_start(server_.evLoop, &io_);
}

void PlainConnection::close(Session& s) {
  ev_io_stop(server_.evLoop, &io_);
  ::close(io_.fd);
  server_.onClosed(s);  // frees the session and this connection
}

void PlainConnection::abandon() {
  if (!ev_is_active(&io_)) return;
  ev_io_stop(server_.evLoop, &io_);
  ::close(io_.fd);
}

}  // namespace mesh::relay
