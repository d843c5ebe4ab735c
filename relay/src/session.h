// Per-connection state of a /gateway WebSocket, owned by the loop thread.
//
// libwebsockets' per-session memory is zeroed C memory; it holds only a
// pointer to this object, which is created in ESTABLISHED and destroyed in
// CLOSED. Everything else names a session by its 64-bit id.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "rate_limiter.h"

struct lws;

namespace mesh::relay {

// One encoded frame with transport headroom in front (LWS_PRE bytes) so it
// can be written without a copy. Immutable once queued and shared by every
// recipient of a broadcast.
struct OutFrame {
  std::string bytes;           // headroom + frame text
  std::uint8_t kind = 0;       // OutFrameKind (metrics.h), counted per write
  std::int64_t arrivalUs = 0;  // steady us of the node frame it carries; 0: none
  [[nodiscard]] std::size_t textSize() const;
};
using OutFramePtr = std::shared_ptr<const OutFrame>;

enum class SessionState {
  Unauthenticated,
  Authenticating,  // credentials are being checked off the loop
  Authenticated,
  Closing,  // waiting to flush and close; gets no new frames
};

struct Session {
  std::uint64_t id = 0;
  lws* wsi = nullptr;
  std::string peer;  // client address, for logs and per-address limits
  SessionState state = SessionState::Unauthenticated;

  // Set once authenticated.
  std::string meshId;
  std::string name;
  std::string roomsJson = "[]";
  std::string participantsJson = "[]";
  std::size_t participantCount = 0;
  bool inRoutingTable = false;
  // Counted in the per-address tally of unauthenticated connections.
  bool countedUnauthenticated = false;

  // Frames that arrived while auth was being checked, answered afterwards.
  std::vector<std::string> pendingDuringAuth;

  // Reassembly of one message across RECEIVE callbacks.
  std::string rx;
  bool rxActive = false;
  bool rxBinary = false;
  bool rxOversize = false;

  // Outgoing queue; bytes counted for the slow-consumer limit.
  std::deque<OutFramePtr> queue;
  std::size_t queuedBytes = 0;

  // Close requested from elsewhere; done from WRITEABLE after the queue
  // drains (or at once when the queue was dropped).
  int closeCode = 0;
  std::string closeReason;

  TokenBucket controlBucket;
  unsigned refusedInARow = 0;
};

}  // namespace mesh::relay
