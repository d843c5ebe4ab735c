#pragma once

#include <cstdint>
#include <vector>

namespace mesh::bench {

class WsConn;

// Single-threaded level-triggered epoll loop over WsConn objects. Writes are
// deferred: a connection that queued frames is flushed once per turn, so
// frames produced while handling one batch of events leave in one write().
class Loop {
 public:
  Loop();
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  void add(WsConn* c, int fd, bool want_write);
  void modify(WsConn* c, int fd, bool want_write);
  void remove(int fd);
  void mark_dirty(WsConn* c);

  // One turn: waits at most timeout_ns (0 = do not wait) for events, handles
  // them, then flushes dirty connections. Returns the number of events.
  int run_once(int64_t timeout_ns);
  void flush_dirty();

 private:
  int ep_;
  std::vector<WsConn*> dirty_;
  std::vector<WsConn*> flushing_;
};

}  // namespace mesh::bench
