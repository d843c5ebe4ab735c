#include "recorder.h"

#include <algorithm>
#include <cstring>
#include <ctime>
#include <vector>

#include "iso_time.h"
#include "mesh/proto/codec.h"
#include "session.h"

namespace mesh::relay {
namespace {

// Copies at most `room` bytes of `v`, never ending inside a UTF-8 sequence;
// returns how many were copied.
std::size_t copyCut(char* dst, std::size_t room, std::string_view v) {
  std::size_t n = std::min(room, v.size());
  if (n < v.size()) {
    while (n > 0 && (static_cast<unsigned char>(v[n]) & 0xC0) == 0x80) --n;
  }
  std::memcpy(dst, v.data(), n);
  return n;
}

// The first ring a mesh gets; it doubles as records arrive.
constexpr std::uint32_t kFirstCapacity = 8;
// How often expire() looks at the table.
constexpr std::int64_t kExpireEveryUs = 10'000'000;

}  // namespace

std::string_view outcomeName(Outcome o, proto::ErrorCode code) {
  switch (o) {
    case Outcome::Ok:
      return "ok";
    case Outcome::Delivered:
      return "delivered";
    case Outcome::Offline:
      return "offline";
    case Outcome::Refused:
      return proto::codeText(code);
  }
  return "unknown";
}

// ---- FrameRecord

void FrameRecord::setId(std::string_view v) {
  hasId = true;
  idLen = static_cast<std::uint8_t>(copyCut(id, kIdChars, v));
  cut = cut || idLen < v.size();
}

void FrameRecord::setText(Text what, std::string_view v) {
  textIs = what;
  textLen = static_cast<std::uint8_t>(copyCut(text, kTextChars, v));
  cut = cut || textLen < v.size();
}

std::string_view FrameRecord::idView() const {
  return {id, hasId ? idLen : std::size_t{0}};
}

std::string_view FrameRecord::textView() const {
  return {text, textIs == Text::None ? std::size_t{0} : textLen};
}

// ---- MeshLog

MeshLog::MeshLog(std::string meshId, std::size_t maxRecords)
    : meshId_(std::move(meshId)),
      max_(static_cast<std::uint32_t>(std::clamp<std::size_t>(maxRecords, 1, 1u << 20))) {}

void MeshLog::grow() {
  const std::uint32_t next = std::min(max_, capacity_ == 0 ? kFirstCapacity : capacity_ * 2);
  auto bigger = std::make_unique<FrameRecord[]>(next);
  // Not full yet: the records are in order from slot 0.
  std::copy(ring_.get(), ring_.get() + count_, bigger.get());
  ring_ = std::move(bigger);
  capacity_ = next;
}

FrameRecord& MeshLog::append(std::int64_t atUs) {
  ++total_;
  lastUs_ = atUs;
  if (count_ == capacity_ && capacity_ < max_) grow();
  if (count_ < capacity_) return ring_[count_++];
  FrameRecord& slot = ring_[head_];
  if (++head_ == capacity_) head_ = 0;
  return slot;
}

void MeshLog::push(const FrameRecord& r) {
  if (r.outcome == Outcome::Refused) lastRefusal_ = r;
  append(r.atUs) = r;
}

const FrameRecord& MeshLog::at(std::size_t i) const {
  return ring_[(head_ + i) % capacity_];
}

std::size_t MeshLog::bytes() const {
  return sizeof(MeshLog) + capacity_ * sizeof(FrameRecord) +
         (meshId_.capacity() > 15 ? meshId_.capacity() + 1 : 0);
}

// ---- Recorder

Recorder::Recorder(std::size_t framesPerMesh) : framesPerMesh_(framesPerMesh) {}

Recorder::Inbound::Inbound(Recorder& r, Session& s, std::size_t size, std::int64_t atUs)
    : recorder_(r), outer_(r.current_) {
  r.current_ = this;
  if (s.state != SessionState::Authenticated) return;
  log_ = r.logOf(s);
  record_.atUs = atUs;
  record_.size = static_cast<std::uint32_t>(std::min<std::size_t>(size, UINT32_MAX));
  record_.direction = Direction::In;
  record_.kind = static_cast<std::uint8_t>(InFrameKind::Invalid);
}

Recorder::Inbound::~Inbound() {
  recorder_.current_ = outer_;
  if (log_) recorder_.push(*log_, record_);
}

void Recorder::decoded(InFrameKind kind, const std::optional<std::string>& id) {
  if (!current_ || !current_->log_) return;
  current_->record_.kind = static_cast<std::uint8_t>(kind);
  if (id) current_->record_.setId(*id);
}

void Recorder::relayed(const Session& from, std::string_view target, Session* to, std::size_t size,
                       std::int64_t atUs) {
  if (!enabled()) return;
  // A target closed by this very frame was a slow consumer; slowConsumer()
  // recorded the frame on its side.
  const bool dropped = to && to->state == SessionState::Closing;
  if (current_ && current_->log_) {
    FrameRecord& r = current_->record_;
    r.setText(FrameRecord::Text::Target, target);
    r.outcome = !to ? Outcome::Offline : dropped ? Outcome::Refused : Outcome::Delivered;
    if (dropped) r.setCode(proto::ErrorCode::SlowConsumer);
  }
  if (!to || dropped) return;
  MeshLog* log = logOf(*to);
  if (!log) return;
  // Written in place: this runs for every relayed frame.
  FrameRecord& r = log->append(atUs);
  r.atUs = atUs;
  r.size = static_cast<std::uint32_t>(std::min<std::size_t>(size, UINT32_MAX));
  r.recipients = 0;
  r.direction = Direction::Out;
  r.kind = static_cast<std::uint8_t>(OutFrameKind::Incoming);
  r.outcome = Outcome::Delivered;
  r.code = 0;
  r.cut = false;
  r.hasId = false;
  if (current_ && current_->record_.hasId) r.setId(current_->record_.idView());
  r.setText(FrameRecord::Text::From, from.meshId);
}

void Recorder::broadcast(std::size_t recipients) {
  if (!current_ || !current_->log_) return;
  current_->record_.outcome = Outcome::Delivered;
  current_->record_.recipients =
      static_cast<std::uint32_t>(std::min<std::size_t>(recipients, UINT32_MAX));
}

void Recorder::error(Session& s, proto::ErrorCode code, const std::optional<std::string>& id,
                     std::int64_t atUs) {
  ++errorsSent_[static_cast<std::size_t>(code)];
  if (!enabled()) return;
  if (current_ && current_->log_ && current_->log_ == s.recorderLog.get()) {
    FrameRecord& r = current_->record_;
    r.outcome = Outcome::Refused;
    r.setCode(code);
    if (id && !r.hasId) r.setId(*id);
    if (r.kind == static_cast<std::uint8_t>(InFrameKind::Invalid)) {
      if (code == proto::ErrorCode::FrameTooLarge) {
        r.kind = static_cast<std::uint8_t>(InFrameKind::TooLarge);
      } else if (code == proto::ErrorCode::UnsupportedFrame) {
        r.kind = static_cast<std::uint8_t>(InFrameKind::Binary);
      }
    }
    return;
  }
  // Not the answer to a frame of this mesh (a takeover, revoked
  // credentials): a record of its own.
  MeshLog* log = s.state == SessionState::Authenticated ? logOf(s) : s.recorderLog.get();
  if (!log) return;
  FrameRecord r;
  r.atUs = atUs;
  r.direction = Direction::Out;
  r.kind = static_cast<std::uint8_t>(proto::isAuthError(code) ? OutFrameKind::AuthError
                                                              : OutFrameKind::Error);
  r.outcome = Outcome::Refused;
  r.setCode(code);
  push(*log, r);
}

void Recorder::slowConsumer(Session& s, const OutFrame& frame, std::int64_t atUs) {
  ++errorsSent_[static_cast<std::size_t>(proto::ErrorCode::SlowConsumer)];
  MeshLog* log = logOf(s);
  if (!log) return;
  FrameRecord r;
  r.atUs = atUs;
  r.size = static_cast<std::uint32_t>(frame.textSize());
  r.direction = Direction::Out;
  r.kind = frame.kind;
  r.outcome = Outcome::Refused;
  r.setCode(proto::ErrorCode::SlowConsumer);
  push(*log, r);
}

void Recorder::auth(Session& s, const std::string& meshId, bool ok, std::int64_t atUs,
                    proto::ErrorCode refusal) {
  if (!enabled() || !proto::isValidMeshId(meshId)) return;
  std::shared_ptr<MeshLog> log = logFor(meshId);
  FrameRecord r;
  r.atUs = atUs;
  r.direction = Direction::In;
  r.kind = static_cast<std::uint8_t>(InFrameKind::Auth);
  r.outcome = ok ? Outcome::Ok : Outcome::Refused;
  r.setCode(refusal);
  r.setText(FrameRecord::Text::Address, s.peer);
  push(*log, r);
  if (ok) s.recorderLog = std::move(log);
}

MeshLog* Recorder::logOf(Session& s) {
  if (s.recorderLog) return s.recorderLog.get();
  if (!enabled() || s.meshId.empty()) return nullptr;
  s.recorderLog = logFor(s.meshId);
  return s.recorderLog.get();
}

std::shared_ptr<MeshLog> Recorder::logFor(const std::string& meshId) {
  if (auto it = logs_.find(meshId); it != logs_.end()) return it->second;
  // Between two expire() passes the table may not grow without bound either
  // (auth failures for made-up ids come as fast as connections do).
  if (++madeSinceExpire_ > kMaxIdleLogs) dropIdle(0, kMaxIdleLogs / 2);
  auto log = std::make_shared<MeshLog>(meshId, framesPerMesh_);
  logs_.emplace(meshId, log);
  return log;
}

void Recorder::push(MeshLog& log, const FrameRecord& r) {
  log.push(r);
}

void Recorder::expire(std::int64_t nowUs) {
  if (nowUs - lastExpireUs_ < kExpireEveryUs) return;
  lastExpireUs_ = nowUs;
  dropIdle(nowUs, kMaxIdleLogs);
}

// Drops idle logs (no session holds them) older than kIdleKeepUs, then the
// oldest idle ones beyond `keep` (nowUs 0: only those).
void Recorder::dropIdle(std::int64_t nowUs, std::size_t keep) {
  madeSinceExpire_ = 0;
  std::vector<std::pair<std::int64_t, const std::string*>> idle;
  for (auto it = logs_.begin(); it != logs_.end();) {
    const MeshLog& log = *it->second;
    if (it->second.use_count() == 1) {
      if (nowUs != 0 && nowUs - log.lastUs() > kIdleKeepUs) {
        it = logs_.erase(it);
        continue;
      }
      idle.emplace_back(log.lastUs(), &it->first);
    }
    ++it;
  }
  if (idle.size() <= keep) return;
  const auto cut = idle.begin() + static_cast<std::ptrdiff_t>(idle.size() - keep);
  std::nth_element(idle.begin(), cut, idle.end());
  std::vector<std::string> doomed;
  doomed.reserve(static_cast<std::size_t>(cut - idle.begin()));
  for (auto it = idle.begin(); it != cut; ++it) doomed.push_back(*it->second);
  for (const auto& id : doomed) logs_.erase(id);
}

const MeshLog* Recorder::find(const std::string& meshId) const {
  auto it = logs_.find(meshId);
  return it == logs_.end() ? nullptr : it->second.get();
}

void Recorder::appendRecord(std::string& out, const FrameRecord& r, std::int64_t nowUs,
                            std::int64_t nowMs) {
  out += "{\"time\":";
  out += '"';
  out += isoTimeMs(nowMs - (nowUs - r.atUs) / 1000);
  out += '"';
  out += r.direction == Direction::In ? ",\"direction\":\"in\",\"type\":"
                                      : ",\"direction\":\"out\",\"type\":";
  proto::appendJsonString(out, r.direction == Direction::In
                                   ? inFrameKindName(static_cast<InFrameKind>(r.kind))
                                   : outFrameKindName(static_cast<OutFrameKind>(r.kind)));
  if (r.hasId) {
    out += ",\"id\":";
    proto::appendJsonString(out, r.idView());
  }
  out += ",\"size\":";
  out += std::to_string(r.size);
  switch (r.textIs) {
    case FrameRecord::Text::Target:
      out += ",\"target\":";
      break;
    case FrameRecord::Text::From:
      out += ",\"from\":";
      break;
    case FrameRecord::Text::Address:
      out += ",\"address\":";
      break;
    case FrameRecord::Text::None:
      break;
  }
  if (r.textIs != FrameRecord::Text::None) {
    proto::appendJsonString(out, r.textView());
  }
  if (r.direction == Direction::In && r.kind == static_cast<std::uint8_t>(InFrameKind::Broadcast) &&
      r.outcome == Outcome::Delivered) {
    out += ",\"recipients\":";
    out += std::to_string(r.recipients);
  }
  out += ",\"outcome\":";
  proto::appendJsonString(out, outcomeName(r.outcome, r.errorCode()));
  if (r.cut) out += ",\"truncated\":true";
  out += '}';
}

std::string Recorder::renderJson(const MeshLog* log, const std::string& meshId, std::int64_t nowUs,
                                 std::int64_t nowMs) const {
  std::string out = "{\"meshId\":";
  proto::appendJsonString(out, meshId);
  out += ",\"capacity\":";
  out += std::to_string(framesPerMesh_);
  out += ",\"total\":";
  out += std::to_string(log ? log->total() : 0);
  out += ",\"records\":[";
  const std::size_t n = log ? log->size() : 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (i > 0) out += ',';
    appendRecord(out, log->at(i), nowUs, nowMs);
  }
  out += "]}";
  return out;
}

void Recorder::renderMetrics(MetricsWriter& w) const {
  w.family("mesh_relay_errors_sent_total", "counter",
           "Error frames sent to nodes (refusals), by code.");
  for (std::size_t i = 0; i + 1 < errorsSent_.size(); ++i) {
    const std::string label =
        "code=\"" + std::string(proto::codeText(static_cast<proto::ErrorCode>(i))) + "\"";
    w.sample("mesh_relay_errors_sent_total", label, errorsSent_[i]);
  }
  w.family("mesh_relay_recorder_meshes", "gauge", "Meshes with a flight recorder log kept.");
  w.sample("mesh_relay_recorder_meshes", "", static_cast<std::uint64_t>(logs_.size()));
  w.family("mesh_relay_recorder_bytes", "gauge", "Heap bytes held by the flight recorder's rings.");
  w.sample("mesh_relay_recorder_bytes", "", static_cast<std::uint64_t>(bytes()));
}

std::size_t Recorder::bytes() const {
  std::size_t total = 0;
  for (const auto& [id, log] : logs_) total += log->bytes();
  return total;
}

}  // namespace mesh::relay
