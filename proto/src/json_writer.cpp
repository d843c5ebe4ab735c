// appendJsonString and the relay -> node frame encoders. Frames are written
// by hand in the field order of PROTOCOL.md: "type" first, compact JSON.
#include <array>
#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>

#include "mesh/proto/codec.h"
#include "utf8.h"

namespace mesh::proto {
namespace {

// Bytes that cannot appear verbatim inside a JSON string literal: controls,
// the quote and the backslash. Bytes >= 0x80 are checked as UTF-8 separately.
constexpr std::array<bool, 256> makeEscapeTable() {
  std::array<bool, 256> table{};
  for (int c = 0; c < 0x20; ++c) table[static_cast<std::size_t>(c)] = true;
  table['"'] = true;
  table['\\'] = true;
  for (int c = 0x80; c < 0x100; ++c) table[static_cast<std::size_t>(c)] = true;
  return table;
}
constexpr std::array<bool, 256> kNeedsCare = makeEscapeTable();

void appendEscapedControl(std::string& out, unsigned char c) {
  switch (c) {
    case '"':
      out += "\\\"";
      return;
    case '\\':
      out += "\\\\";
      return;
    case '\b':
      out += "\\b";
      return;
    case '\f':
      out += "\\f";
      return;
    case '\n':
      out += "\\n";
      return;
    case '\r':
      out += "\\r";
      return;
    case '\t':
      out += "\\t";
      return;
    default: {
      static constexpr char kHex[] = "0123456789abcdef";
      const char buf[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xF]};
      out.append(buf, sizeof buf);
      return;
    }
  }
}

// Raw JSON supplied by the caller; an empty view stands for `fallback`.
void appendRaw(std::string& out, std::string_view json, std::string_view fallback) {
  out += json.empty() ? fallback : json;
}

void appendOptionalId(std::string& out, std::optional<std::string_view> id) {
  if (!id) return;
  out += ",\"id\":";
  appendJsonString(out, *id);
}

}  // namespace

void appendJsonString(std::string& out, std::string_view s) {
  out.reserve(out.size() + s.size() + 2);
  out += '"';
  const auto* const begin = reinterpret_cast<const unsigned char*>(s.data());
  const auto* const end = begin + s.size();
  const auto* run = begin;  // start of bytes not yet copied
  const auto* p = begin;
  auto flush = [&] {
    out.append(reinterpret_cast<const char*>(run), static_cast<std::size_t>(p - run));
  };
  while (p < end) {
    if (!kNeedsCare[*p]) {
      ++p;
      continue;
    }
    if (*p >= 0x80) {
      const std::size_t n = detail::utf8SequenceLength(p, end);
      if (n != 0) {
        p += n;
        continue;
      }
      // Never emit invalid UTF-8 in a text frame: replace the stray byte.
      flush();
      out += "\\ufffd";
      ++p;
      run = p;
      continue;
    }
    flush();
    appendEscapedControl(out, *p);
    ++p;
    run = p;
  }
  flush();
  out += '"';
}

void encodeAuthOk(std::string& out, const AuthOkFields& f) {
  out += R"({"type":"gateway_auth_ok","meshId":)";
  appendJsonString(out, f.meshId);
  out += ",\"name\":";
  appendJsonString(out, f.name);
  if (!f.resumeToken.empty()) {
    out += ",\"resumeToken\":";
    appendJsonString(out, f.resumeToken);
  }
  if (!f.resumeExpiresAt.empty()) {
    out += ",\"resumeExpiresAt\":";
    appendJsonString(out, f.resumeExpiresAt);
  }
  appendOptionalId(out, f.id);
  out += '}';
}

void encodeReauthOk(std::string& out, std::string_view meshId, std::string_view expiresAt,
                    std::optional<std::string_view> id) {
  out += R"({"type":"gateway_reauth_ok","meshId":)";
  appendJsonString(out, meshId);
  out += ",\"expiresAt\":";
  appendJsonString(out, expiresAt);
  appendOptionalId(out, id);
  out += '}';
}

void encodeError(std::string& out, ErrorCode code, std::string_view message,
                 std::optional<std::string_view> id) {
  out += isAuthError(code) ? R"({"type":"gateway_auth_error","message":)"
                           : R"({"type":"error","message":)";
  appendJsonString(out, message);
  out += ",\"code\":";
  appendJsonString(out, codeText(code));
  appendOptionalId(out, id);
  out += '}';
}

void encodeDiscoverResult(std::string& out, const std::vector<InstanceView>& instances,
                          std::optional<std::string_view> id) {
  out += R"({"type":"gateway_discover_result","instances":[)";
  bool first = true;
  for (const InstanceView& inst : instances) {
    if (!first) out += ',';
    first = false;
    out += "{\"meshId\":";
    appendJsonString(out, inst.meshId);
    out += ",\"name\":";
    appendJsonString(out, inst.name);
    out += ",\"publicRooms\":";
    appendRaw(out, inst.publicRoomsJson, "[]");
    out += '}';
  }
  out += ']';
  appendOptionalId(out, id);
  out += '}';
}

void encodeIncoming(std::string& out, std::string_view fromMeshId, std::string_view fromMeshName,
                    std::string_view payloadJson, std::optional<std::string_view> id) {
  out.reserve(out.size() + payloadJson.size() + fromMeshId.size() + fromMeshName.size() + 96);
  out += R"({"type":"gateway_incoming","fromMeshId":)";
  appendJsonString(out, fromMeshId);
  out += ",\"fromMeshName\":";
  appendJsonString(out, fromMeshName);
  out += ",\"payload\":";
  appendRaw(out, payloadJson, "{}");
  appendOptionalId(out, id);
  out += '}';
}

void encodeParticipants(std::string& out, const std::vector<ParticipantsView>& remote) {
  out += R"({"type":"gateway_participants","remoteParticipants":[)";
  bool first = true;
  for (const ParticipantsView& r : remote) {
    if (!first) out += ',';
    first = false;
    out += "{\"meshId\":";
    appendJsonString(out, r.meshId);
    out += ",\"meshName\":";
    appendJsonString(out, r.meshName);
    out += ",\"participants\":";
    appendRaw(out, r.participantsJson, "[]");
    out += '}';
  }
  out += "]}";
}

std::string_view ackStatusText(AckStatus status) {
  switch (status) {
    case AckStatus::Delivered:
      return "delivered";
    case AckStatus::Offline:
      return "offline";
    case AckStatus::Stored:
      return "stored";
  }
  return "delivered";
}

void encodeAck(std::string& out, std::string_view id, AckStatus status, std::uint32_t recipients) {
  out += R"({"type":"gateway_ack","id":)";
  appendJsonString(out, id);
  out += ",\"status\":\"";
  out += ackStatusText(status);
  out += "\",\"recipients\":";
  char buf[16];
  const auto res = std::to_chars(buf, buf + sizeof buf, recipients);
  out.append(buf, res.ptr);
  out += '}';
}

void encodePresence(std::string& out, std::string_view meshId, std::string_view name, bool online) {
  out += R"({"type":"gateway_presence","meshId":)";
  appendJsonString(out, meshId);
  out += ",\"name\":";
  appendJsonString(out, name);
  out += online ? R"(,"status":"online"})" : R"(,"status":"offline"})";
}

}  // namespace mesh::proto
