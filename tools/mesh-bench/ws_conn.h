#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "net.h"

namespace mesh::bench {

class Loop;
class WsConn;

// Receives what a connection delivers. Implemented by the scenarios.
class ConnHandler {
 public:
  virtual ~ConnHandler() = default;
  virtual void on_open(WsConn& c) = 0;                        // upgrade done
  virtual void on_text(WsConn& c, std::string_view msg) = 0;  // one whole text message
  virtual void on_closed(WsConn& c, const char* why) = 0;     // socket gone (fd closed)
};

// Minimal client side of RFC 6455 over a non-blocking socket: upgrade
// request, masked text frames appended to one output buffer (flushed with a
// single write() per loop turn), unmasked server frames parsed in place,
// pings answered with pongs.
class WsConn {
 public:
  enum class State { idle, connecting, upgrading, open, closed };

  WsConn(Loop& loop, ConnHandler& handler, uint32_t index);
  ~WsConn();
  WsConn(const WsConn&) = delete;
  WsConn& operator=(const WsConn&) = delete;

  // Starts a connection; false (and on_closed not called) if the socket could
  // not even be created.
  bool connect(const Endpoint& ep, int src_index);
  // Closes the socket without a close handshake; calls no handler.
  void abort();

  // Appends one masked text frame to the output buffer and marks the
  // connection for flushing at the end of the loop turn.
  void send_text(std::string_view text);
  // Writes as much of the output buffer as the socket takes.
  void flush();

  State state() const { return state_; }
  bool is_open() const { return state_ == State::open; }
  uint32_t index() const { return index_; }
  size_t pending_out() const { return out_.size() - out_off_; }

  // Called by the loop.
  void handle_events(uint32_t events);
  int fd() const { return fd_; }
  bool dirty = false;   // in the loop's flush list
  bool authed = false;  // scenario bookkeeping
  int64_t t_start = 0;  // scenario bookkeeping (connect start)

 private:
  void on_connected();
  void read_some();
  bool parse_upgrade();
  void parse_frames();
  void append_frame(uint8_t opcode, const char* data, size_t len);
  void fail(const char* why);
  void set_want_write(bool on);

  Loop& loop_;
  ConnHandler& handler_;
  uint32_t index_;
  int fd_ = -1;
  State state_ = State::idle;
  bool want_write_ = false;
  uint32_t mask_state_;
  std::string out_;
  size_t out_off_ = 0;
  std::vector<char> in_;
  size_t in_len_ = 0;
  std::string frag_;  // fragmented message being assembled
  bool in_frag_ = false;
  std::string host_header_;
  std::string path_;
};

}  // namespace mesh::bench
