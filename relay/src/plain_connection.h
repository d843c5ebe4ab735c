// A /gateway WebSocket on a plain TCP socket of the relay's own (see
// plain_listener.cpp for why not lws). Made by plain_upgrade.cpp once the
// 101 is sent; reads and cuts frames in plain_reader.cpp, writes batches in
// plain_writer.cpp.
#pragma once

#include <ev.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "connection.h"
#include "mesh/relay/server.h"

namespace mesh::relay {

class PlainConnection final : public Connection {
 public:
  explicit PlainConnection(Server::Impl& server) : server_(server) {}

  // Watches `fd`, the upgraded socket, from now on; `early` holds what the
  // client sent right behind its request (frames, handled now).
  void start(Session& s, int fd, std::string early);
  // The socket's watcher fired (EV_READ, EV_WRITE).
  void onEvent(Session& s, int revents);

  void flush(Session& s) override;
  void kill(Session& s) override { close(s); }
  void abandon() override;
  [[nodiscard]] bool frontFrameStarted() const override { return sentOfFront_ > 0; }

  // The PlainConnection of a session known to have one.
  static PlainConnection& of(Session& s);

 private:
  // ---- reading (plain_reader.cpp). False: the session is gone.
  bool read(Session& s);
  bool handleBytes(Session& s, char* data, std::size_t len);
  void dropOversize(Session& s, std::size_t n);
  bool handleControl(Session& s, std::uint8_t opcode, std::string_view payload);
  // Fails the connection (RFC 6455 7.1.7): the close frame goes out, then
  // the socket closes; the peer's input is no longer read.
  void protocolError(Session& s, std::string_view why, int code = 1002,
                     std::string_view reason = "protocol_error");

  // ---- writing (plain_writer.cpp). False: the connection is done and must
  // close.
  bool write(Session& s);
  void watchWritable(bool on);
  void close(Session& s);  // frees the session

  Server::Impl& server_;
  ev_io io_{};                       // the socket (io_.fd); io_.data is the session
  std::string rxPartial_;            // a frame cut off by the end of a read
  std::uint64_t skipRemaining_ = 0;  // payload bytes of an oversize frame to drop
  std::size_t sentOfFront_ = 0;      // bytes of the front frame already written
  bool skipFinal_ = false;           // the frame being dropped ends its message
  bool waitingWritable_ = false;     // the watcher also waits for EV_WRITE
};

}  // namespace mesh::relay
