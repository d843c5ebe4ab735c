#include "metrics.h"

#include <cmath>
#include <cstdio>

namespace mesh::relay {
namespace {

void appendDouble(std::string& out, double v) {
  if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
    return;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  out += buf;
}

}  // namespace

std::string_view refuseReasonName(RefuseReason r) {
  switch (r) {
    case RefuseReason::Denied:
      return "denied";
    case RefuseReason::NotGateway:
      return "not_gateway";
    case RefuseReason::ConnectionLimit:
      return "connection_limit";
    case RefuseReason::UnauthenticatedLimit:
      return "unauthenticated_limit";
    case RefuseReason::ShuttingDown:
      return "shutting_down";
    case RefuseReason::Count:
      break;
  }
  return "unknown";
}

std::string_view inFrameKindName(InFrameKind k) {
  switch (k) {
    case InFrameKind::Auth:
      return "gateway_auth";
    case InFrameKind::Discover:
      return "gateway_discover";
    case InFrameKind::Relay:
      return "gateway_relay";
    case InFrameKind::Broadcast:
      return "gateway_broadcast";
    case InFrameKind::UpdateRooms:
      return "gateway_update_rooms";
    case InFrameKind::UpdateParticipants:
      return "gateway_update_participants";
    case InFrameKind::Reauth:
      return "gateway_reauth";
    case InFrameKind::Invalid:
      return "invalid";
    case InFrameKind::Binary:
      return "binary";
    case InFrameKind::TooLarge:
      return "too_large";
    case InFrameKind::Count:
      break;
  }
  return "unknown";
}

std::string_view outFrameKindName(OutFrameKind k) {
  switch (k) {
    case OutFrameKind::AuthOk:
      return "gateway_auth_ok";
    case OutFrameKind::AuthError:
      return "gateway_auth_error";
    case OutFrameKind::DiscoverResult:
      return "gateway_discover_result";
    case OutFrameKind::Incoming:
      return "gateway_incoming";
    case OutFrameKind::Participants:
      return "gateway_participants";
    case OutFrameKind::Presence:
      return "gateway_presence";
    case OutFrameKind::Ack:
      return "gateway_ack";
    case OutFrameKind::Error:
      return "error";
    case OutFrameKind::Ping:
      return "ping";
    case OutFrameKind::Pong:
      return "pong";
    case OutFrameKind::Close:
      return "close";
    case OutFrameKind::Other:
    case OutFrameKind::Count:
      break;
  }
  return "other";
}

OutFrameKind classifyOutFrame(std::string_view text) {
  constexpr std::string_view kPrefix = R"({"type":")";
  if (text.substr(0, kPrefix.size()) != kPrefix) return OutFrameKind::Other;
  text.remove_prefix(kPrefix.size());
  const std::size_t end = text.find('"');
  if (end == std::string_view::npos) return OutFrameKind::Other;
  const std::string_view type = text.substr(0, end);
  for (std::uint8_t i = 1; i <= static_cast<std::uint8_t>(OutFrameKind::Error); ++i) {
    const auto kind = static_cast<OutFrameKind>(i);
    if (outFrameKindName(kind) == type) return kind;
  }
  return OutFrameKind::Other;
}

void Histogram::observe(double seconds) {
  if (seconds < 0) seconds = 0;
  ++count_;
  sum_ += seconds;
  for (std::size_t i = 0; i < kBounds.size(); ++i) {
    if (seconds <= kBounds[i]) {
      ++buckets_[i];
      return;
    }
  }
}

void Histogram::render(std::string& out, std::string_view name) const {
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i <= kBounds.size(); ++i) {
    out += name;
    out += "_bucket{le=\"";
    if (i < kBounds.size()) {
      cumulative += buckets_[i];
      appendDouble(out, kBounds[i]);
    } else {
      cumulative = count_;
      out += "+Inf";
    }
    out += "\"} ";
    out += std::to_string(cumulative);
    out += '\n';
  }
  out += name;
  out += "_sum ";
  appendDouble(out, sum_);
  out += '\n';
  out += name;
  out += "_count ";
  out += std::to_string(count_);
  out += '\n';
}

void MetricsWriter::family(std::string_view name, std::string_view type, std::string_view help) {
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  out_ += help;
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += type;
  out_ += '\n';
}

void MetricsWriter::sample(std::string_view name, std::string_view labels, double value) {
  out_ += name;
  if (!labels.empty()) {
    out_ += '{';
    out_ += labels;
    out_ += '}';
  }
  out_ += ' ';
  appendDouble(out_, value);
  out_ += '\n';
}

void MetricsWriter::sample(std::string_view name, std::string_view labels, std::uint64_t value) {
  out_ += name;
  if (!labels.empty()) {
    out_ += '{';
    out_ += labels;
    out_ += '}';
  }
  out_ += ' ';
  out_ += std::to_string(value);
  out_ += '\n';
}

}  // namespace mesh::relay
