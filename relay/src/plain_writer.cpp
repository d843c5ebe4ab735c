// Batched writes on a plain /gateway connection: the queued frames, already
// framed (OutFrame), leave several per system call, small ones copied into
// one buffer and larger ones by sendmsg() straight from their shared
// buffers. A socket that takes less waits for EV_WRITE.
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>

#include "server_impl.h"

namespace mesh::relay {

namespace {

// Frames put into one sendmsg().
constexpr std::size_t kMaxIov = 64;
// Up to this size, several queued frames are copied into one buffer: the
// kernel's copy from one segment costs less than walking one per frame.
constexpr std::size_t kCoalesceBytes = 16 * 1024;

}  // namespace

// Writes queued frames, several per write, until the queue is empty or the
// socket is full (then the watcher waits for EV_WRITE too): small ones copied
// into one buffer (coalesce()), larger ones by sendmsg() straight from their
// shared buffers. Failed: the connection is done and must close.
Server::Impl::WriteResult Server::Impl::writePlain(Session& s) {
  iovec iov[kMaxIov];
  while (!s.queue.empty()) {
    std::size_t count = 0;
    std::size_t total = 0;
    for (; count < s.queue.size() && count < kMaxIov && total < kWriteBatchBytes; ++count) {
      const OutFrame& f = *s.queue.at(count);
      const std::size_t skip = count == 0 ? s.sentOfFront : 0;
      iov[count].iov_base = const_cast<char*>(f.wire() + skip);
      iov[count].iov_len = f.wireSize() - skip;
      total += iov[count].iov_len;
    }
    ssize_t n;
    // After a partial write (rare: the socket was full) the rest goes from
    // the frames themselves.
    if (count > 1 && total <= kCoalesceBytes && s.sentOfFront == 0) {
      const std::string& bytes = coalesce(s, count);
      n = ::send(s.io.fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    } else {
      msghdr msg{};
      msg.msg_iov = iov;
      msg.msg_iovlen = count;
      n = ::sendmsg(s.io.fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        watchWritable(s, true);
        return WriteResult::Ok;
      }
      return WriteResult::Failed;
    }
    std::size_t left = static_cast<std::size_t>(n);
    std::int64_t now = 0;
    while (left > 0) {
      const std::size_t rest = s.queue.front()->wireSize() - s.sentOfFront;
      if (left < rest) {
        s.sentOfFront += left;
        break;
      }
      left -= rest;
      s.sentOfFront = 0;
      OutFramePtr frame = s.queue.pop();
      frameWritten(s, frame, now);
      // Our answer to the peer's close frame is out: the connection is done.
      if (frame->isClose && s.peerClosed) return WriteResult::Failed;
    }
    if (static_cast<std::size_t>(n) < total) {
      watchWritable(s, true);
      return WriteResult::Ok;
    }
  }
  watchWritable(s, false);
  return WriteResult::Ok;
}

void Server::Impl::watchWritable(Session& s, bool on) {
  if (s.waitingWritable == on) return;
  s.waitingWritable = on;
  ev_io_stop(evLoop, &s.io);
  ev_io_set(&s.io, s.io.fd, on ? EV_READ | EV_WRITE : EV_READ);
  ev_io_start(evLoop, &s.io);
}

void Server::Impl::closePlain(Session& s) {
  ev_io_stop(evLoop, &s.io);
  ::close(s.io.fd);
  onClosed(s);
}

}  // namespace mesh::relay
