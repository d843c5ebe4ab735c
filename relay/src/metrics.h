// The relay's numbers in the Prometheus text format (GET /metrics).
//
// The loop thread owns every counter (see counters.h) and renders the page
// itself, so nothing here needs a lock. Names follow the Prometheus rules:
// a mesh_relay_ prefix, _total on counters, seconds and bytes as units.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace mesh::relay {

// Why a connection was turned away (label reason="...").
enum class RefuseReason : std::uint8_t {
  Denied,                // --allow-ips / --deny-ips
  NotGateway,            // WebSocket upgrade on another path
  ConnectionLimit,       // --max-connections
  UnauthenticatedLimit,  // --max-unauthenticated-per-ip
  ShuttingDown,
  Count,
};
[[nodiscard]] std::string_view refuseReasonName(RefuseReason r);

// Frames from nodes, by type: the NodeFrame alternatives in their variant
// order, then what never became a frame.
enum class InFrameKind : std::uint8_t {
  Auth,
  Discover,
  Relay,
  Broadcast,
  UpdateRooms,
  UpdateParticipants,
  Reauth,
  Invalid,   // failed to decode
  Binary,    // binary WebSocket message
  TooLarge,  // over --max-frame-bytes
  Count,
};
[[nodiscard]] std::string_view inFrameKindName(InFrameKind k);

// Frames to nodes, by type.
enum class OutFrameKind : std::uint8_t {
  Other,
  AuthOk,
  AuthError,
  DiscoverResult,
  Incoming,
  Participants,
  Presence,
  Ack,
  Error,
  // Control frames (the relay's keepalive pings, pongs answering the node's
  // pings, close frames), after the message types.
  Ping,
  Pong,
  Close,
  Count,
};
[[nodiscard]] std::string_view outFrameKindName(OutFrameKind k);
// Reads the "type" an encoder wrote first ({"type":"...). Cheap: called once
// per encoded frame, not per recipient.
[[nodiscard]] OutFrameKind classifyOutFrame(std::string_view text);

// A fixed-bucket histogram of durations in seconds.
class Histogram {
 public:
  // Upper bounds in seconds, from 100 us to 5 s: a frame normally leaves
  // within a loop turn; seconds mean a backed-up consumer.
  static constexpr std::array<double, 12> kBounds{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                  0.01,   0.025,   0.05,   0.1,   1.0,    5.0};
  void observe(double seconds);
  // Appends the _bucket, _sum and _count series for `name`.
  void render(std::string& out, std::string_view name) const;
  [[nodiscard]] std::uint64_t count() const { return count_; }

 private:
  std::array<std::uint64_t, kBounds.size()> buckets_{};  // not cumulative
  std::uint64_t count_ = 0;
  double sum_ = 0;
};

// Writers for the text format. Every family gets its HELP and TYPE once.
class MetricsWriter {
 public:
  explicit MetricsWriter(std::string& out) : out_(out) {}
  void family(std::string_view name, std::string_view type, std::string_view help);
  // `labels` is preformatted: reason="denied" (without braces), or empty.
  void sample(std::string_view name, std::string_view labels, double value);
  void sample(std::string_view name, std::string_view labels, std::uint64_t value);

 private:
  std::string& out_;
};

}  // namespace mesh::relay
