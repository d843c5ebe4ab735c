// The relay server: one libwebsockets context serving HTTP and the /gateway
// WebSocket on one port. Tests start it in-process on port 0; main.cpp runs
// it from flags.
#pragma once

#include <cstdint>
#include <memory>

#include "mesh/relay/config.h"

namespace mesh::relay {

class Server {
 public:
  // Opens the registry and starts listening. Throws std::runtime_error with
  // a clear message when the database cannot be opened or the port bound.
  explicit Server(const Config& config);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The bound port (the real one when the config asked for 0).
  [[nodiscard]] std::uint16_t port() const;

  // Runs the event loop on the calling thread until a stop completes.
  // Returns 0 after a clean shutdown.
  int run();

  // Any thread, also a signal-handling thread: begin a graceful stop (close
  // every WebSocket with 1001, drain, close the database). Calling it again
  // while a stop is under way changes nothing.
  void requestStop();

  // Any thread, also a signal-handling thread: re-read --tls-cert and
  // --tls-key on the loop. New handshakes use the new certificate; open
  // connections keep theirs. A bad file is logged and the old pair stays.
  // Does nothing without TLS.
  void reloadTls();

  // Any thread, also a signal-handling thread: re-read --jwt-jwks-file on
  // the loop. A bad file is logged and the old keys stay. Does nothing
  // without one.
  void reloadJwks();

  struct Impl;  // opaque; public only so internal helpers can name it

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace mesh::relay
