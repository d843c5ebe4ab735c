// The flight recorder: per mesh, the last N frames it sent or was sent, and
// what became of each (delivered, offline, or the error code that refused
// it), so an operator can answer "why was my message dropped?" without
// debug logs (GET /meshes/{id}/recent, meshctl recent).
//
// A record holds the frame's time, direction, type, id, size, its target,
// sender or recipient count, and the outcome: never payload bytes or
// credentials. Records are fixed-size values in a ring per mesh that grows
// on demand up to --recorder-frames, so a quiet mesh costs a few hundred
// bytes. Logs of meshes with no connection are kept for a while and then
// dropped (kIdleKeepMs, kMaxIdleLogs).
//
// Loop thread only. gateway.cpp calls in with one line at each place a frame
// is decided; everything else lives here.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "mesh/proto/errors.h"
#include "metrics.h"

namespace mesh::relay {

struct OutFrame;
struct Session;

// What became of a frame.
enum class Outcome : std::uint8_t {
  Ok,         // handled (discover, updates, a successful auth)
  Delivered,  // queued to its recipient(s)
  Offline,    // a relay whose target was not connected
  Refused,    // answered with an error; FrameRecord::code says which
};
[[nodiscard]] std::string_view outcomeName(Outcome o, proto::ErrorCode code);

enum class Direction : std::uint8_t { In, Out };

// One frame, as a compact value (88 bytes): the id and the text (target,
// sender or address) are kept inline, cut to their arrays' size.
struct FrameRecord {
  static constexpr std::size_t kIdChars = 24;
  static constexpr std::size_t kTextChars = 39;  // an IPv6 address
  enum class Text : std::uint8_t { None, Target, From, Address };

  std::int64_t atUs = 0;         // steady clock, as Server::Impl::nowUs()
  std::uint32_t size = 0;        // bytes of frame text
  std::uint32_t recipients = 0;  // broadcasts: copies queued
  Direction direction = Direction::In;
  std::uint8_t kind = 0;  // InFrameKind (in) or OutFrameKind (out)
  Outcome outcome = Outcome::Ok;
  std::uint8_t code = 0;  // proto::ErrorCode, read when Refused
  Text textIs = Text::None;
  std::uint8_t idLen = 0;  // bytes kept in id
  std::uint8_t textLen = 0;
  bool hasId = false;
  bool cut = false;  // the id or the text was longer than its array
  // Only the first idLen / textLen bytes are ever read: not zeroed, since a
  // record is made for every frame.
  char id[kIdChars];
  char text[kTextChars];

  void setId(std::string_view v);
  void setCode(proto::ErrorCode c) { code = static_cast<std::uint8_t>(c); }
  [[nodiscard]] proto::ErrorCode errorCode() const { return static_cast<proto::ErrorCode>(code); }
  void setText(Text what, std::string_view v);
  [[nodiscard]] std::string_view idView() const;
  [[nodiscard]] std::string_view textView() const;
};

static_assert(sizeof(FrameRecord) == 88, "records stay compact: thousands of meshes keep rings");

// One mesh's ring. Shared between the Recorder's table and the sessions of
// the mesh (Session::recorderLog), so a log in use is never dropped.
class MeshLog {
 public:
  MeshLog(std::string meshId, std::size_t maxRecords);
  void push(const FrameRecord& r);
  // The slot the next record goes to, counted as pushed; the caller fills
  // it in (no refusal: those go through push()).
  FrameRecord& append(std::int64_t atUs);
  [[nodiscard]] const std::string& meshId() const { return meshId_; }
  [[nodiscard]] std::size_t size() const { return count_; }
  [[nodiscard]] std::size_t capacity() const { return capacity_; }
  // i = 0 is the oldest record kept.
  [[nodiscard]] const FrameRecord& at(std::size_t i) const;
  [[nodiscard]] std::uint64_t total() const { return total_; }
  [[nodiscard]] std::int64_t lastUs() const { return lastUs_; }
  // The newest refusal seen, even if it has left the ring.
  [[nodiscard]] const std::optional<FrameRecord>& lastRefusal() const { return lastRefusal_; }
  // Heap bytes held by this log (the ring and the id string).
  [[nodiscard]] std::size_t bytes() const;

 private:
  void grow();
  std::string meshId_;
  std::unique_ptr<FrameRecord[]> ring_;
  std::uint32_t capacity_ = 0;  // grows by doubling up to max_
  std::uint32_t max_;
  std::uint32_t head_ = 0;  // oldest record when full
  std::uint32_t count_ = 0;
  std::uint64_t total_ = 0;
  std::int64_t lastUs_ = 0;
  std::optional<FrameRecord> lastRefusal_;
};

class Recorder {
 public:
  // Logs of meshes with no connection: kept an hour after their last frame
  // (long enough to answer "what happened this morning"), at most this many
  // (a flood of failed auths for made-up ids cannot grow the table).
  static constexpr std::int64_t kIdleKeepUs = 3600LL * 1'000'000;
  static constexpr std::size_t kMaxIdleLogs = 1024;

  explicit Recorder(std::size_t framesPerMesh);
  [[nodiscard]] bool enabled() const { return framesPerMesh_ > 0; }

  // ---- hooks (gateway.cpp)
  // Opens the record of one node frame; it is written when the scope ends,
  // with what the hooks below learned meanwhile. Only an authenticated
  // session's frames are recorded (auth frames are recorded by auth()).
  // Scopes nest (auth replays queued frames inside another frame's
  // handling). The session outlives the scope (sessions are freed outside
  // frame handling), and with it the log the scope writes to.
  class Inbound {
   public:
    Inbound(Recorder& r, Session& s, std::size_t size, std::int64_t atUs);
    ~Inbound();
    Inbound(const Inbound&) = delete;
    Inbound& operator=(const Inbound&) = delete;

   private:
    friend class Recorder;
    Recorder& recorder_;
    MeshLog* log_ = nullptr;
    Inbound* outer_;
    FrameRecord record_;
  };
  [[nodiscard]] Inbound inbound(Session& s, std::size_t size, std::int64_t atUs) {
    return Inbound(*this, s, size, atUs);
  }
  // The frame being handled decoded as `kind`, with this id.
  void decoded(InFrameKind kind, const std::optional<std::string>& id);
  // A relay: `to` is the target's session, null when it was offline.
  void relayed(const Session& from, std::string_view target, Session* to, std::size_t size,
               std::int64_t atUs);
  void broadcast(std::size_t recipients);
  // Every error frame sent to a session: counted by code, and the outcome of
  // the frame being handled (or a record of its own when none is).
  void error(Session& s, proto::ErrorCode code, const std::optional<std::string>& id,
             std::int64_t atUs);
  // `frame` did not fit in the session's send queue: it is closed.
  void slowConsumer(Session& s, const OutFrame& frame, std::int64_t atUs);
  // An auth decided; a failure is recorded against the claimed id (when it
  // is a well-formed one), with the client's address and the code that
  // refused it (wrong credentials, or a spent budget of failed auths).
  void auth(Session& s, const std::string& meshId, bool ok, std::int64_t atUs,
            proto::ErrorCode refusal = proto::ErrorCode::InvalidCredentials);
  // Drops logs of meshes with no connection past the limits (once a tick).
  void expire(std::int64_t nowUs);

  // ---- readers (admin.cpp)
  [[nodiscard]] const MeshLog* find(const std::string& meshId) const;
  // {"meshId":...,"capacity":N,"records":[...]} oldest first; times in UTC
  // (steady times mapped through the current wall clock).
  [[nodiscard]] std::string renderJson(const MeshLog* log, const std::string& meshId,
                                       std::int64_t nowUs, std::int64_t nowMs) const;
  // One record as a JSON object.
  static void appendRecord(std::string& out, const FrameRecord& r, std::int64_t nowUs,
                           std::int64_t nowMs);
  // Appends mesh_relay_errors_sent_total and the recorder's own gauges.
  void renderMetrics(MetricsWriter& w) const;
  [[nodiscard]] std::size_t logCount() const { return logs_.size(); }
  [[nodiscard]] std::size_t bytes() const;

 private:
  MeshLog* logOf(Session& s);
  std::shared_ptr<MeshLog> logFor(const std::string& meshId);
  void push(MeshLog& log, const FrameRecord& r);
  void dropIdle(std::int64_t nowUs, std::size_t keep);

  std::size_t framesPerMesh_;
  std::unordered_map<std::string, std::shared_ptr<MeshLog>> logs_;
  Inbound* current_ = nullptr;  // innermost open inbound record
  std::int64_t lastExpireUs_ = 0;
  std::size_t madeSinceExpire_ = 0;  // logs made since the last dropIdle()
  std::array<std::uint64_t, static_cast<std::size_t>(proto::ErrorCode::InvalidUtf8) + 1>
      errorsSent_{};
};

}  // namespace mesh::relay
