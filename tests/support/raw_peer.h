// A client on a bare TCP socket to the relay on 127.0.0.1: it writes exactly
// the bytes it is given and reads every frame the relay sends, pongs
// included, as it arrived. For tests of the handshake and the framing.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "support/ws_client.h"

namespace mesh::test {

class RawPeer {
 public:
  explicit RawPeer(std::uint16_t port);
  ~RawPeer();
  RawPeer(const RawPeer&) = delete;
  RawPeer& operator=(const RawPeer&) = delete;

  // One write() when the kernel takes it all at once, as it does for small
  // requests. Throws std::runtime_error when the socket refuses (the relay
  // has closed it).
  void send(std::string_view bytes);
  // A masked client frame.
  void sendFrame(std::uint8_t op, std::string_view payload, bool fin = true);

  // The HTTP response head, through its blank line; what follows it stays
  // buffered for readFrame(). Throws when none comes in time.
  std::string readResponseHead(std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
  // The next whole frame; nothing if none arrives in time or the
  // connection ends first.
  std::optional<ws::Frame> readFrame(
      std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
  // Reads until a text frame whose JSON type is `type` and returns it;
  // throws on anything but text frames and the relay's own pings.
  std::string expectText(std::string_view type,
                         std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
  // The texts that arrive before the answer to a discover with the given id.
  std::vector<std::string> textsUntilProbe(const std::string& probeId = "probe");
  // True if the relay ends the TCP connection within timeout; whatever it
  // sends before that is discarded.
  bool closedWithin(std::chrono::milliseconds timeout);
  // Everything the relay sends until it ends the connection (what
  // readResponseHead() left buffered included); nothing if it is still open
  // at the timeout.
  std::optional<std::string> readUntilClosed(std::chrono::milliseconds timeout);
  // Makes the close that comes with destruction a reset (RST), not a FIN.
  void resetOnClose();

 private:
  // Appends what arrives before deadline; false on timeout or end of stream.
  bool fill(std::chrono::steady_clock::time_point deadline);

  int fd_ = -1;
  std::string in_;
  bool eof_ = false;
};

}  // namespace mesh::test
