#include "cluster_wire.h"

#include <rapidjson/document.h>

#include <charconv>

#include "iso_time.h"
#include "mesh/proto/codec.h"

namespace mesh::relay::cluster {
namespace {

constexpr std::string_view kDeliverPrefix = "mesh.deliver.";

std::string_view typeText(DirectoryType t) {
  switch (t) {
    case DirectoryType::Heartbeat:
      return "heartbeat";
    case DirectoryType::Hello:
      return "hello";
    case DirectoryType::Online:
      return "online";
    case DirectoryType::Offline:
      return "offline";
    case DirectoryType::Updated:
      return "updated";
    case DirectoryType::Bye:
      return "bye";
  }
  return "";
}

std::optional<DirectoryType> typeFromText(std::string_view t) {
  for (auto type : {DirectoryType::Heartbeat, DirectoryType::Hello, DirectoryType::Online,
                    DirectoryType::Offline, DirectoryType::Updated, DirectoryType::Bye}) {
    if (typeText(type) == t) return type;
  }
  return std::nullopt;
}

void appendField(std::string& out, std::string_view name, std::string_view value) {
  proto::appendJsonString(out, name);
  out += ':';
  proto::appendJsonString(out, value);
}

// Rooms and participants travel as JSON strings holding the node's array
// text, so that they arrive byte for byte as the node sent them.
void appendMesh(std::string& out, const MeshInfo& m, std::uint64_t epoch) {
  out += '{';
  appendField(out, "meshId", m.meshId);
  out += ',';
  appendField(out, "name", m.name);
  out += ',';
  appendField(out, "rooms", m.roomsJson);
  out += ',';
  appendField(out, "participants", m.participantsJson);
  out += ",\"participantCount\":" + std::to_string(m.participantCount) +
         ",\"epoch\":" + std::to_string(epoch) + '}';
}

std::optional<std::string> stringOf(const rapidjson::Value& o, const char* name) {
  if (!o.IsObject()) return std::nullopt;
  auto it = o.FindMember(name);
  if (it == o.MemberEnd() || !it->value.IsString()) return std::nullopt;
  return std::string(it->value.GetString(), it->value.GetStringLength());
}

std::optional<MeshInfo> meshOf(const rapidjson::Value& o) {
  auto meshId = stringOf(o, "meshId");
  auto name = stringOf(o, "name");
  auto rooms = stringOf(o, "rooms");
  auto participants = stringOf(o, "participants");
  auto count = o.FindMember("participantCount");
  if (!meshId || !name || !rooms || !participants || count == o.MemberEnd() ||
      !count->value.IsUint64()) {
    return std::nullopt;
  }
  MeshInfo m;
  m.meshId = std::move(*meshId);
  m.name = std::move(*name);
  m.roomsJson = std::move(*rooms);
  m.participantsJson = std::move(*participants);
  m.participantCount = static_cast<std::size_t>(count->value.GetUint64());
  return m;
}

bool parseObject(rapidjson::Document& d, std::string_view text) {
  d.Parse(text.data(), text.size());
  return !d.HasParseError() && d.IsObject();
}

}  // namespace

std::string meshToken(std::string_view meshId) {
  std::string out;
  out.reserve(meshId.size());
  for (char c : meshId) {
    if (c == '.') {
      out += "%2E";
    } else {
      out += c;
    }
  }
  return out;
}

std::string meshFromToken(std::string_view token) {
  std::string out;
  out.reserve(token.size());
  for (std::size_t i = 0; i < token.size(); ++i) {
    if (token.substr(i, 3) == "%2E") {
      out += '.';
      i += 2;
    } else {
      out += token[i];
    }
  }
  return out;
}

std::string relayToken(std::string_view relayId) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(relayId.size());
  for (char c : relayId) {
    const auto b = static_cast<unsigned char>(c);
    if ((b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') || b == '-' ||
        b == '_') {
      out += c;
    } else {
      out += '%';
      out += kHex[b >> 4];
      out += kHex[b & 0xF];
    }
  }
  return out;
}

std::string deliverSubject(std::string_view relayId, std::string_view meshId, bool forwarded) {
  std::string out(kDeliverPrefix);
  out += relayToken(relayId);
  out += '.';
  out += meshToken(meshId);
  if (forwarded) out += ".f";
  return out;
}

std::string deliverWildcard(std::string_view relayId) {
  std::string out(kDeliverPrefix);
  out += relayToken(relayId);
  out += ".>";
  return out;
}

std::optional<DeliverTarget> parseDeliverSubject(std::string_view subject) {
  if (subject.substr(0, kDeliverPrefix.size()) != kDeliverPrefix) return std::nullopt;
  subject.remove_prefix(kDeliverPrefix.size());
  const auto relayEnd = subject.find('.');
  if (relayEnd == 0 || relayEnd == std::string_view::npos) return std::nullopt;
  subject.remove_prefix(relayEnd + 1);
  DeliverTarget t;
  if (subject.size() > 2 && subject.substr(subject.size() - 2) == ".f") {
    t.forwarded = true;
    subject.remove_suffix(2);
  }
  if (subject.empty() || subject.find('.') != std::string_view::npos) return std::nullopt;
  t.meshId = meshFromToken(subject);
  return t;
}

std::string encodeDirectory(const DirectoryMessage& m) {
  std::string out = "{";
  appendField(out, "type", typeText(m.type));
  out += ',';
  appendField(out, "relay", m.relayId);
  out += ",\"wire\":" + std::to_string(m.wire);
  switch (m.type) {
    case DirectoryType::Heartbeat:
    case DirectoryType::Online:
    case DirectoryType::Updated:
      out += ",\"meshes\":[";
      for (std::size_t i = 0; i < m.meshes.size(); ++i) {
        if (i > 0) out += ',';
        appendMesh(out, m.meshes[i], i < m.epochs.size() ? m.epochs[i] : 0);
      }
      out += ']';
      if (m.type == DirectoryType::Heartbeat && m.parts > 1) {
        out += ",\"part\":" + std::to_string(m.part) + ",\"parts\":" + std::to_string(m.parts);
      }
      if (m.type == DirectoryType::Updated) {
        out += ',';
        appendField(out, "change", m.change == MeshChange::Rooms ? "rooms" : "participants");
      }
      break;
    case DirectoryType::Offline:
      out += ',';
      appendField(out, "meshId", m.meshId);
      break;
    case DirectoryType::Hello:
    case DirectoryType::Bye:
      break;
  }
  out += '}';
  return out;
}

std::optional<DirectoryMessage> decodeDirectory(std::string_view text) {
  rapidjson::Document d;
  if (!parseObject(d, text)) return std::nullopt;
  auto type = stringOf(d, "type");
  auto relay = stringOf(d, "relay");
  if (!type || !relay || relay->empty()) return std::nullopt;
  auto t = typeFromText(*type);
  if (!t) return std::nullopt;
  DirectoryMessage m;
  m.type = *t;
  m.relayId = std::move(*relay);
  m.wire = 1;
  if (auto wire = d.FindMember("wire"); wire != d.MemberEnd()) {
    if (!wire->value.IsUint()) return std::nullopt;
    m.wire = wire->value.GetUint();
  }
  // Another version's body may not read as this one's: the caller only
  // needs to know who sent it.
  if (m.wire != kWireVersion) return m;
  switch (m.type) {
    case DirectoryType::Heartbeat:
    case DirectoryType::Online:
    case DirectoryType::Updated: {
      auto it = d.FindMember("meshes");
      if (it == d.MemberEnd() || !it->value.IsArray()) return std::nullopt;
      for (const auto& v : it->value.GetArray()) {
        auto mesh = meshOf(v);
        if (!mesh) return std::nullopt;
        auto epoch = v.FindMember("epoch");
        if (epoch == v.MemberEnd() || !epoch->value.IsUint64()) return std::nullopt;
        m.meshes.push_back(std::move(*mesh));
        m.epochs.push_back(epoch->value.GetUint64());
      }
      if (m.type != DirectoryType::Heartbeat && m.meshes.size() != 1) return std::nullopt;
      if (m.type == DirectoryType::Heartbeat) {
        auto part = d.FindMember("part");
        auto parts = d.FindMember("parts");
        if (part != d.MemberEnd() || parts != d.MemberEnd()) {
          if (part == d.MemberEnd() || parts == d.MemberEnd() || !part->value.IsUint() ||
              !parts->value.IsUint() || part->value.GetUint() >= parts->value.GetUint()) {
            return std::nullopt;
          }
          m.part = part->value.GetUint();
          m.parts = parts->value.GetUint();
        }
      }
      if (m.type == DirectoryType::Updated) {
        auto change = stringOf(d, "change");
        if (change == "rooms") {
          m.change = MeshChange::Rooms;
        } else if (change == "participants") {
          m.change = MeshChange::Participants;
        } else {
          return std::nullopt;
        }
      }
      break;
    }
    case DirectoryType::Offline: {
      auto meshId = stringOf(d, "meshId");
      if (!meshId) return std::nullopt;
      m.meshId = std::move(*meshId);
      break;
    }
    case DirectoryType::Hello:
    case DirectoryType::Bye:
      break;
  }
  return m;
}

std::vector<DirectoryMessage> heartbeatParts(std::string_view relayId, std::vector<MeshInfo> meshes,
                                             std::vector<std::uint64_t> epochs) {
  std::vector<DirectoryMessage> out;
  DirectoryMessage part;
  part.type = DirectoryType::Heartbeat;
  part.relayId.assign(relayId);
  std::size_t bytes = 0;
  for (std::size_t i = 0; i < meshes.size(); ++i) {
    MeshInfo& m = meshes[i];
    // JSON escaping can double a string; the field names and numbers take
    // less than 100 bytes.
    const std::size_t size =
        2 * (m.meshId.size() + m.name.size() + m.roomsJson.size() + m.participantsJson.size()) +
        100;
    if (!part.meshes.empty() && bytes + size > kHeartbeatPartBytes) {
      out.push_back(std::move(part));
      part = DirectoryMessage{};
      part.type = DirectoryType::Heartbeat;
      part.relayId.assign(relayId);
      bytes = 0;
    }
    bytes += size;
    part.meshes.push_back(std::move(m));
    part.epochs.push_back(i < epochs.size() ? epochs[i] : 0);
  }
  out.push_back(std::move(part));
  const auto parts = static_cast<std::uint32_t>(out.size());
  for (std::uint32_t i = 0; i < parts; ++i) {
    out[i].part = i;
    out[i].parts = parts;
  }
  return out;
}

std::string encodeTakeover(const Takeover& t) {
  std::string out = "{";
  appendField(out, "meshId", t.meshId);
  out += ',';
  appendField(out, "from", t.fromRelayId);
  out += ',';
  appendField(out, "to", t.toRelayId);
  out += ",\"epoch\":" + std::to_string(t.epoch) + '}';
  return out;
}

std::optional<Takeover> decodeTakeover(std::string_view text) {
  rapidjson::Document d;
  if (!parseObject(d, text)) return std::nullopt;
  auto meshId = stringOf(d, "meshId");
  auto from = stringOf(d, "from");
  auto to = stringOf(d, "to");
  auto epoch = d.FindMember("epoch");
  if (!meshId || !from || !to || epoch == d.MemberEnd() || !epoch->value.IsUint64()) {
    return std::nullopt;
  }
  return Takeover{std::move(*meshId), std::move(*from), std::move(*to), epoch->value.GetUint64()};
}

bool claimWins(std::uint64_t epoch, std::string_view relayId, std::uint64_t otherEpoch,
               std::string_view otherRelayId) {
  if (epoch != otherEpoch) return epoch > otherEpoch;
  return relayId > otherRelayId;
}

std::string encodeBroadcast(const Broadcast& b) {
  std::string out = "{";
  appendField(out, "relay", b.relayId);
  out += ',';
  appendField(out, "from", b.fromMeshId);
  out += "}\n";
  out += b.incomingText;
  return out;
}

std::optional<Broadcast> decodeBroadcast(std::string_view text) {
  const auto nl = text.find('\n');
  if (nl == std::string_view::npos) return std::nullopt;
  rapidjson::Document d;
  if (!parseObject(d, text.substr(0, nl))) return std::nullopt;
  auto relay = stringOf(d, "relay");
  auto from = stringOf(d, "from");
  if (!relay || !from) return std::nullopt;
  return Broadcast{std::move(*relay), std::move(*from), std::string(text.substr(nl + 1))};
}

std::optional<std::uint32_t> decodeCount(std::string_view text) {
  std::uint32_t n = 0;
  const auto* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, n);
  if (ec != std::errc() || ptr != end || text.empty()) return std::nullopt;
  return n;
}

std::string encodeRelayBatch(std::span<const std::string> frames) {
  std::size_t size = 1;
  for (const std::string& f : frames) size += f.size() + kBatchFrameOverhead;
  std::string out;
  out.reserve(size);
  out += kBatchMark;
  for (const std::string& f : frames) {
    out += std::to_string(f.size());
    out += '\n';
    out += f;
  }
  return out;
}

std::optional<std::vector<std::string_view>> decodeRelayBatch(std::string_view text) {
  if (text.empty() || text.front() != kBatchMark) return std::nullopt;
  std::vector<std::string_view> frames;
  std::size_t at = 1;
  while (at < text.size()) {
    std::size_t len = 0;
    const char* begin = text.data() + at;
    const char* end = text.data() + text.size();
    auto [ptr, ec] = std::from_chars(begin, end, len);
    if (ec != std::errc() || ptr == begin || ptr == end || *ptr != '\n') return std::nullopt;
    at = static_cast<std::size_t>(ptr - text.data()) + 1;
    if (len > text.size() - at) return std::nullopt;
    frames.push_back(text.substr(at, len));
    at += len;
  }
  if (frames.empty()) return std::nullopt;
  return frames;
}

std::string encodeSessionEvent(std::string_view meshId, std::string_view relayId,
                               std::int64_t unixMs, std::string_view reason) {
  std::string out = "{";
  appendField(out, "meshId", meshId);
  out += ',';
  appendField(out, "relay", relayId);
  out += ',';
  appendField(out, "time", isoTimeMs(unixMs));
  if (!reason.empty()) {
    out += ',';
    appendField(out, "reason", reason);
  }
  out += '}';
  return out;
}

}  // namespace mesh::relay::cluster
