// One /gateway WebSocket under its Session, whichever way it is carried:
// PlainConnection (plain_connection.h) is the relay's own socket on plain
// TCP, LwsConnection (lws_connection.h) a libwebsockets connection (TLS,
// HTTP/1.1 or HTTP/2). The session code (gateway.cpp) is the same for both:
// it queues frames on the session, close frames included, and asks the
// connection to write them; how they reach the socket, waiting for it to
// become writable, and closing are the connection's. One virtual call per
// write batch (flush), never per frame.
#pragma once

namespace mesh::relay {

struct Session;

class Connection {
 public:
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  virtual ~Connection() = default;

  // Writes the session's queued frames now, as many per system call as the
  // transport allows; what the socket does not take leaves once it is
  // writable again. A connection whose socket failed is closed, and the
  // session may be gone when this returns.
  virtual void flush(Session& s) = 0;
  // Closes at once, without a close frame; the session is freed before this
  // returns.
  virtual void kill(Session& s) = 0;
  // The relay exits with the connection still open (drain timeout): its
  // socket is closed without callbacks; the session goes with the relay.
  virtual void abandon() = 0;
  // Part of the front queued frame is on the wire already: the rest of it
  // must follow before any other frame (a dropped queue keeps it).
  [[nodiscard]] virtual bool frontFrameStarted() const = 0;

 protected:
  Connection() = default;
};

}  // namespace mesh::relay
