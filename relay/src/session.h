// Per-connection state of a /gateway WebSocket, owned by the loop thread.
//
// libwebsockets' per-session memory is zeroed C memory; it holds only a
// pointer to this object, which is created in ESTABLISHED and destroyed in
// CLOSED. Everything else names a session by its 64-bit id.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "connection.h"
#include "rate_limiter.h"

namespace mesh::relay {

class MeshLog;

// One server frame as it goes on the wire: the WebSocket header is written
// once, right in front of the text, when the frame is made. Immutable once
// queued and shared by every recipient of a broadcast, so the relay can put
// several frames into one write without framing anything per recipient.
struct OutFrame {
  // Room in front of the text for the longest server header (2 + 8 bytes),
  // rounded up to what lws_write() needs in front of a buffer.
  static constexpr std::size_t kHeadroom = 16;

  std::string bytes;            // kHeadroom bytes (header right-aligned), then text
  std::uint8_t headerSize = 0;  // bytes of WebSocket header before the text
  std::uint8_t kind = 0;        // OutFrameKind (metrics.h), counted per write
  std::int64_t arrivalUs = 0;   // steady us of the node frame it carries; 0: none
  bool isClose = false;         // a close frame: the last one a session writes
  std::uint64_t serial = 0;     // unique per frame in the process, set by seal()

  [[nodiscard]] std::size_t textSize() const { return bytes.size() - kHeadroom; }
  [[nodiscard]] const char* text() const { return bytes.data() + kHeadroom; }
  // Header and text: what goes on a plain connection.
  [[nodiscard]] const char* wire() const { return text() - headerSize; }
  [[nodiscard]] std::size_t wireSize() const { return headerSize + textSize(); }
  // RFC 6455 opcodes of the frames the relay sends.
  static constexpr std::uint8_t kText = 0x1;
  static constexpr std::uint8_t kClose = 0x8;
  static constexpr std::uint8_t kPing = 0x9;
  static constexpr std::uint8_t kPong = 0xA;

  // Writes the header of an unfragmented, unmasked frame (RFC 6455 5.2) in
  // front of the payload; called once, after the payload is complete.
  void seal(std::uint8_t opcode = kText);
};
using OutFramePtr = std::shared_ptr<const OutFrame>;

// A session's outgoing frames: a ring, freed again by release() once the
// connection has gone quiet (most connections are idle most of the time).
class FrameQueue {
 public:
  [[nodiscard]] bool empty() const { return count_ == 0; }
  [[nodiscard]] std::size_t size() const { return count_; }
  [[nodiscard]] const OutFramePtr& front() const { return slots_[head_]; }
  [[nodiscard]] const OutFramePtr& at(std::size_t i) const {
    return slots_[(head_ + i) & (capacity_ - 1)];
  }
  void push(OutFramePtr frame);
  OutFramePtr pop();
  void clear();
  // Frees the ring when the queue is empty. Called for quiet connections
  // (most are), not after every write: a busy one keeps its ring.
  void release();

 private:
  std::unique_ptr<OutFramePtr[]> slots_;
  std::size_t capacity_ = 0;  // 0 or a power of two
  std::size_t head_ = 0;
  std::size_t count_ = 0;
};

enum class SessionState {
  Unauthenticated,
  Authenticating,  // credentials are being checked off the loop
  Authenticated,
  Closing,  // waiting to flush and close; gets no new frames
};

struct Session {
  std::uint64_t id = 0;
  // What carries the WebSocket: the relay's own plain socket or an lws
  // connection (connection.h).
  std::unique_ptr<Connection> conn;
  std::string peer;  // client address, for logs and per-address limits
  SessionState state = SessionState::Unauthenticated;

  // Set once authenticated.
  std::string meshId;
  std::string name;
  std::string roomsJson = "[]";
  std::string participantsJson = "[]";
  std::size_t participantCount = 0;
  bool inRoutingTable = false;
  // Asked for gateway_presence events ("presence": true in gateway_auth).
  bool wantsPresence = false;
  // Counted in the per-address tally of unauthenticated connections.
  bool countedUnauthenticated = false;

  // The upgrade request's Host header, for the authorize hook.
  std::string host;
  // What the authorize hook answered for this session: a JSON object as
  // text (shown in the admin API), or empty. `authorized` once it allowed.
  std::string claimsJson;
  bool authorized = false;
  // The JWT the session proved itself with, kept only until the hook has
  // seen it.
  std::optional<std::string> authToken;
  // Authenticated by a signed token (token_gateway.cpp): the session ends
  // at tokenDeadlineMs (unix ms) unless gateway_reauth moves it; the node
  // is warned (token_expired) at tokenWarnMs.
  bool authByToken = false;
  bool tokenWarned = false;
  std::int64_t tokenDeadlineMs = 0;
  std::int64_t tokenWarnMs = 0;
  // The token's exp (unix seconds), for a clock started only after the
  // authorize hook allowed the mesh.
  std::int64_t tokenExpiresAt = 0;

  // The `id` of the gateway_auth being answered, echoed on its answer.
  std::optional<std::string> authId;
  // Set when the connection goes while its secret waits for a worker.
  std::shared_ptr<std::atomic<bool>> authCancelled;

  // Frames that arrived while auth was being checked, answered afterwards.
  std::vector<std::string> pendingDuringAuth;

  // Reassembly of one message across RECEIVE callbacks.
  std::string rx;
  bool rxActive = false;
  bool rxBinary = false;
  bool rxOversize = false;

  // Outgoing queue; bytes counted for the slow-consumer limit.
  FrameQueue queue;
  std::size_t queuedBytes = 0;

  // Close requested from elsewhere; done from WRITEABLE after the queue
  // drains (or at once when the queue was dropped).
  int closeCode = 0;
  std::string closeReason;

  // Liveness, checked by the loop's once-a-tick sweep (cheaper than a timer
  // per connection, which lws keeps in one sorted list).
  std::int64_t connectedUs = 0;      // for the auth timeout
  std::int64_t lastHeardUs = 0;      // any frame or pong from the peer
  std::int64_t pingSentUs = 0;       // 0: no ping outstanding
  std::int64_t closeDeadlineUs = 0;  // Closing: dropped if still open then

  // Waiting in Impl::dirty for the end of this loop turn's flush.
  bool flushPending = false;
  // Nothing more is read from the peer: it sent a close frame (lws answers
  // it; on a plain socket our answer is the last frame written), or its
  // framing broke (plain sockets close once our 1002 is out).
  bool peerClosed = false;

  TokenBucket controlBucket;
  unsigned refusedInARow = 0;
  // This mesh's flight recorder log, once it has one (recorder.h).
  std::shared_ptr<MeshLog> recorderLog;
};

}  // namespace mesh::relay
