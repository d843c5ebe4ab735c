// One libnats connection's socket on the relay's libev loop
// (natsOptions_SetEventLoop). Without it libnats reads the socket on a thread
// of its own and every publish writes it at once; with it the loop reads the
// socket like any other, and what the loop publishes in one turn goes out in
// one write when the turn ends. Messages still reach their subscriptions as
// libnats decides (a callback on its delivery threads, or a synchronous
// subscription read on the loop).
//
// libnats asks for reads and writes from whichever thread it is on (its
// reconnect and ping threads too): on the loop thread the watchers change at
// once, from another thread the change is queued, in order, and an ev_async
// applies it on the loop.
//
// Plaintext connections only (suits()): on TLS, libnats waits with poll(),
// without a deadline, for the rest of a record that has begun to arrive,
// which on the loop would stall every connection of the relay.
#pragma once

#include <ev.h>

#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "mesh/relay/config.h"

struct __natsOptions;
struct __natsConnection;

namespace mesh::relay {

class NatsLoop {
 public:
  // On the thread that runs `loop`, which must outlive this.
  explicit NatsLoop(struct ev_loop* loop);
  // On the loop thread, once the connection is closed (its detach done).
  ~NatsLoop();
  NatsLoop(const NatsLoop&) = delete;
  NatsLoop& operator=(const NatsLoop&) = delete;

  // Whether the connection `config` describes may run on the loop: no
  // tls:// URL and no CA file (see above).
  [[nodiscard]] static bool suits(const Config& config);

  // The connection made with `opts` runs on this loop.
  void install(__natsOptions* opts);
  // Called on the loop after every read of the socket, once libnats has
  // parsed what came.
  void setAfterRead(std::function<void()> fn) { afterRead_ = std::move(fn); }
  // Writes what the connection has buffered, as far as the socket takes it
  // now; the rest when the socket is writable again. Once per loop turn:
  // what the turn published leaves in one write, without a watcher started
  // and stopped for it. And before natsConnection_Close on the loop thread:
  // Close would wait for a PONG that only the loop, busy in Close, could
  // read.
  void flushNow();

  // ---- libnats's callbacks (nats_loop.cpp)
  struct Change {
    enum class Kind { Attach, Read, Write, Detach };
    Kind kind = Kind::Read;
    bool add = false;
    __natsConnection* nc = nullptr;
    int fd = -1;
  };
  void change(const Change& c);

 private:
  void apply(const Change& c);
  void applyQueued();
  static void onRead(struct ev_loop* loop, ev_io* w, int revents);
  static void onWrite(struct ev_loop* loop, ev_io* w, int revents);
  static void onAsync(struct ev_loop* loop, ev_async* w, int revents);

  struct ev_loop* loop_;
  std::thread::id loopThread_;
  ev_io readIo_{};
  ev_io writeIo_{};
  ev_async async_{};
  __natsConnection* nc_ = nullptr;  // between attach and detach
  bool writeWanted_ = false;        // libnats has something to write
  std::function<void()> afterRead_;

  std::mutex mutex_;
  std::vector<Change> queued_;  // from other threads, guarded by mutex_
};

}  // namespace mesh::relay
