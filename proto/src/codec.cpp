// decodeNodeFrame: one SAX pass over the frame text, iterative so hostile
// nesting cannot exhaust the stack, with no DOM and no per-frame allocation
// beyond the strings the returned frame owns.
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <rapidjson/reader.h>
#include <rapidjson/stream.h>

#include "exact_json.h"
#include "mesh/proto/codec.h"

namespace mesh::proto {
namespace {

enum class FrameType : std::uint8_t {
  Unknown,
  Auth,
  Discover,
  Relay,
  Broadcast,
  UpdateRooms,
  UpdateParticipants,
  Reauth,
};

FrameType frameTypeFrom(std::string_view s) {
  if (s == "gateway_relay") return FrameType::Relay;
  if (s == "gateway_broadcast") return FrameType::Broadcast;
  if (s == "gateway_auth") return FrameType::Auth;
  if (s == "gateway_discover") return FrameType::Discover;
  if (s == "gateway_update_rooms") return FrameType::UpdateRooms;
  if (s == "gateway_update_participants") return FrameType::UpdateParticipants;
  if (s == "gateway_reauth") return FrameType::Reauth;
  return FrameType::Unknown;
}

// Top-level keys the decoder cares about; everything else is ignored.
enum class FieldKey : std::uint8_t {
  Other,
  Type,
  Id,
  MeshId,
  Secret,
  ResumeToken,
  Token,
  TargetMeshId,
  PublicRooms,
  Participants,
  Payload,
  Presence,
};

FieldKey keyFrom(std::string_view s) {
  if (s == "type") return FieldKey::Type;
  if (s == "payload") return FieldKey::Payload;
  if (s == "targetMeshId") return FieldKey::TargetMeshId;
  if (s == "id") return FieldKey::Id;
  if (s == "meshId") return FieldKey::MeshId;
  if (s == "secret") return FieldKey::Secret;
  if (s == "resumeToken") return FieldKey::ResumeToken;
  if (s == "token") return FieldKey::Token;
  if (s == "publicRooms") return FieldKey::PublicRooms;
  if (s == "participants") return FieldKey::Participants;
  if (s == "presence") return FieldKey::Presence;
  return FieldKey::Other;
}

// Keys inside one participant object.
enum class ParticipantKey : std::uint8_t { Other, Id, Name, Type };

// The JSON kind of a value; numbers, booleans and null are all Other.
enum class Kind : std::uint8_t { Absent, String, Object, Array, Other };

struct StringField {
  Kind kind = Kind::Absent;
  // A \u escape may decode to a lone surrogate, which is not valid UTF-8.
  bool validUtf8 = true;
  std::string value;
};

enum class ElementProblem : std::uint8_t {
  None,
  NotString,
  NotObject,
  IdMissing,
  IdNotString,
  NameNotString,
  TypeNotString,
};

// A field kept as raw JSON text, plus what validating its elements found.
struct RawField {
  Kind kind = Kind::Absent;
  std::size_t begin = 0;
  std::size_t end = 0;
  std::size_t count = 0;  // array elements
  ElementProblem problem = ElementProblem::None;
  std::size_t problemIndex = 0;
};

enum class Abort : std::uint8_t { None, RootNotObject, TooDeep };

// SAX handler. Depth counts open containers: the frame object is depth 1, a
// top-level field's object or array is depth 2, and so on.
class FrameHandler {
 public:
  using Ch = char;

  FrameHandler(const rapidjson::StringStream& stream, int maxDepth)
      : stream_(stream), maxDepth_(maxDepth) {}

  bool Null() { return scalar(Kind::Other); }
  bool Bool(bool b) {
    if (depth_ == 1 && key_ == FieldKey::Presence) {
      presence = b ? Flag::True : Flag::False;
      return true;
    }
    return scalar(Kind::Other);
  }
  bool Int(int) { return scalar(Kind::Other); }
  bool Uint(unsigned) { return scalar(Kind::Other); }
  bool Int64(std::int64_t) { return scalar(Kind::Other); }
  bool Uint64(std::uint64_t) { return scalar(Kind::Other); }
  bool Double(double) { return scalar(Kind::Other); }
  bool RawNumber(const Ch*, rapidjson::SizeType, bool) { return scalar(Kind::Other); }

  bool String(const Ch* s, rapidjson::SizeType n, bool) {
    if (depth_ == 0) return rootNotObject();
    if (depth_ == 1) {
      topString(std::string_view(s, n));
      return true;
    }
    return nested(Kind::String);
  }

  bool Key(const Ch* s, rapidjson::SizeType n, bool) {
    const std::string_view key(s, n);
    if (depth_ == 1) {
      key_ = keyFrom(key);
    } else if (depth_ == 3 && inParticipant_) {
      if (key == "id") {
        participantKey_ = ParticipantKey::Id;
      } else if (key == "name") {
        participantKey_ = ParticipantKey::Name;
      } else if (key == "type") {
        participantKey_ = ParticipantKey::Type;
      } else {
        participantKey_ = ParticipantKey::Other;
      }
    }
    return true;
  }

  bool StartObject() { return open(Kind::Object); }
  bool StartArray() { return open(Kind::Array); }
  bool EndObject(rapidjson::SizeType) { return close(Kind::Object); }
  bool EndArray(rapidjson::SizeType) { return close(Kind::Array); }

  Abort aborted = Abort::None;
  // Last top-level key seen when nesting ran too deep.
  FieldKey deepKey = FieldKey::Other;

  Kind typeKind = Kind::Absent;
  FrameType type = FrameType::Unknown;
  StringField id;
  StringField meshId;
  StringField secret;
  StringField resumeToken;
  StringField token;
  StringField targetMeshId;
  RawField publicRooms;
  RawField participants;
  RawField payload;
  // The optional boolean "presence" of gateway_auth.
  enum class Flag : std::uint8_t { Absent, True, False, NotBoolean };
  Flag presence = Flag::Absent;

 private:
  bool rootNotObject() {
    aborted = Abort::RootNotObject;
    return false;
  }

  StringField* stringField(FieldKey k) {
    switch (k) {
      case FieldKey::Id:
        return &id;
      case FieldKey::MeshId:
        return &meshId;
      case FieldKey::Secret:
        return &secret;
      case FieldKey::ResumeToken:
        return &resumeToken;
      case FieldKey::Token:
        return &token;
      case FieldKey::TargetMeshId:
        return &targetMeshId;
      default:
        return nullptr;
    }
  }

  RawField* rawField(FieldKey k) {
    switch (k) {
      case FieldKey::PublicRooms:
        return &publicRooms;
      case FieldKey::Participants:
        return &participants;
      case FieldKey::Payload:
        return &payload;
      default:
        return nullptr;
    }
  }

  // A top-level value that is not a string, or a container (kind given).
  void topNonString(Kind kind) {
    if (key_ == FieldKey::Presence) {
      presence = Flag::NotBoolean;
      return;
    }
    if (key_ == FieldKey::Type) {
      typeKind = kind;
      return;
    }
    if (StringField* f = stringField(key_)) {
      f->kind = kind;
      f->value.clear();
      return;
    }
    if (RawField* r = rawField(key_)) *r = RawField{kind};
  }

  void topString(std::string_view s) {
    if (key_ == FieldKey::Presence) {
      presence = Flag::NotBoolean;
      return;
    }
    if (key_ == FieldKey::Type) {
      typeKind = Kind::String;
      type = frameTypeFrom(s);
      return;
    }
    if (StringField* f = stringField(key_)) {
      f->kind = Kind::String;
      f->value.assign(s);
      f->validUtf8 = isValidUtf8(s);
      return;
    }
    if (RawField* r = rawField(key_)) *r = RawField{Kind::String};
  }

  bool scalar(Kind kind) {
    if (depth_ == 0) return rootNotObject();
    if (depth_ == 1) {
      topNonString(kind);
      return true;
    }
    return nested(kind);
  }

  // A value below the top level: an array element of publicRooms or
  // participants (depth 2) or a field of one participant (depth 3).
  bool nested(Kind kind) {
    if (depth_ == 2) {
      element(kind);
    } else if (depth_ == 3 && inParticipant_) {
      participantValue(kind);
    }
    return true;
  }

  void flag(RawField& r, ElementProblem p, std::size_t index) {
    if (r.problem != ElementProblem::None) return;
    r.problem = p;
    r.problemIndex = index;
  }

  void element(Kind kind) {
    if (active_ == FieldKey::PublicRooms && publicRooms.kind == Kind::Array) {
      if (kind != Kind::String) flag(publicRooms, ElementProblem::NotString, publicRooms.count);
      ++publicRooms.count;
    } else if (active_ == FieldKey::Participants && participants.kind == Kind::Array) {
      if (kind != Kind::Object) flag(participants, ElementProblem::NotObject, participants.count);
      ++participants.count;
    }
  }

  void participantValue(Kind kind) {
    switch (participantKey_) {
      case ParticipantKey::Id:
        idKind_ = kind;
        break;
      case ParticipantKey::Name:
        nameKind_ = kind;
        break;
      case ParticipantKey::Type:
        typeKind_ = kind;
        break;
      case ParticipantKey::Other:
        break;
    }
  }

  void finishParticipant() {
    const std::size_t index = participants.count - 1;
    if (idKind_ == Kind::Absent) {
      flag(participants, ElementProblem::IdMissing, index);
    } else if (idKind_ != Kind::String) {
      flag(participants, ElementProblem::IdNotString, index);
    } else if (nameKind_ != Kind::Absent && nameKind_ != Kind::String) {
      flag(participants, ElementProblem::NameNotString, index);
    } else if (typeKind_ != Kind::Absent && typeKind_ != Kind::String) {
      flag(participants, ElementProblem::TypeNotString, index);
    }
    inParticipant_ = false;
  }

  bool open(Kind kind) {
    if (depth_ == 0) {
      if (kind != Kind::Object) return rootNotObject();
    } else if (depth_ == 1) {
      topNonString(kind);
      active_ = key_;
      if (RawField* r = rawField(key_)) {
        // In iterative mode the handler runs before the bracket is consumed,
        // so the stream still points at it.
        r->begin = stream_.Tell();
      }
    } else if (depth_ == 2) {
      element(kind);
      if (active_ == FieldKey::Participants && participants.kind == Kind::Array &&
          kind == Kind::Object) {
        inParticipant_ = true;
        participantKey_ = ParticipantKey::Other;
        idKind_ = nameKind_ = typeKind_ = Kind::Absent;
      }
    } else if (depth_ == 3 && inParticipant_) {
      participantValue(kind);
    }
    if (++depth_ > maxDepth_) {
      aborted = Abort::TooDeep;
      deepKey = key_;
      return false;
    }
    return true;
  }

  bool close(Kind kind) {
    --depth_;
    if (depth_ == 2 && inParticipant_ && kind == Kind::Object) {
      finishParticipant();
    } else if (depth_ == 1) {
      // As in open(): the closing bracket has not been consumed yet.
      if (RawField* r = rawField(active_)) r->end = stream_.Tell() + 1;
      active_ = FieldKey::Other;
    }
    return true;
  }

  const rapidjson::StringStream& stream_;
  int maxDepth_;
  int depth_ = 0;
  FieldKey key_ = FieldKey::Other;     // current top-level key
  FieldKey active_ = FieldKey::Other;  // top-level key whose container is open
  bool inParticipant_ = false;
  ParticipantKey participantKey_ = ParticipantKey::Other;
  Kind idKind_ = Kind::Absent;
  Kind nameKind_ = Kind::Absent;
  Kind typeKind_ = Kind::Absent;
};

constexpr unsigned kParseFlags =
    rapidjson::kParseIterativeFlag | rapidjson::kParseNumbersAsStringsFlag;

std::string_view keyName(FieldKey k) {
  switch (k) {
    case FieldKey::Type:
      return "type";
    case FieldKey::Id:
      return "id";
    case FieldKey::MeshId:
      return "meshId";
    case FieldKey::Secret:
      return "secret";
    case FieldKey::ResumeToken:
      return "resumeToken";
    case FieldKey::Token:
      return "token";
    case FieldKey::TargetMeshId:
      return "targetMeshId";
    case FieldKey::PublicRooms:
      return "publicRooms";
    case FieldKey::Participants:
      return "participants";
    case FieldKey::Payload:
      return "payload";
    case FieldKey::Presence:
      return "presence";
    case FieldKey::Other:
      break;
  }
  return "frame";
}

std::string concat(std::initializer_list<std::string_view> parts) {
  std::size_t n = 0;
  for (std::string_view p : parts) n += p.size();
  std::string s;
  s.reserve(n);
  for (std::string_view p : parts) s += p;
  return s;
}

// Builds decode errors; attaches the frame's id once it is known to be valid.
struct ErrorBuilder {
  const std::optional<std::string>* id;

  DecodeResult operator()(ErrorCode code, std::string message) const {
    return DecodeError{code, std::move(message), id ? *id : std::nullopt};
  }
};

std::optional<std::string> takeValidId(StringField& f) {
  if (f.kind != Kind::String || !f.validUtf8 || f.value.empty() || f.value.size() > kMaxIdBytes) {
    return std::nullopt;
  }
  return std::move(f.value);
}

// Checks a required string field; returns the error message or empty.
std::string checkString(const StringField& f, std::string_view name, bool required) {
  if (f.kind == Kind::Absent) {
    return required ? concat({"missing field: ", name}) : std::string();
  }
  if (f.kind != Kind::String) return concat({name, " must be a string"});
  if (!f.validUtf8) return concat({name, " must be valid Unicode"});
  return {};
}

std::string checkRooms(const RawField& r, bool required) {
  if (r.kind == Kind::Absent) {
    return required ? std::string("missing field: publicRooms") : std::string();
  }
  if (r.kind != Kind::Array) return "publicRooms must be an array of strings";
  if (r.problem != ElementProblem::None) {
    return concat({"publicRooms[", std::to_string(r.problemIndex), "] must be a string"});
  }
  return {};
}

std::string checkParticipants(const RawField& r, bool required) {
  if (r.kind == Kind::Absent) {
    return required ? std::string("missing field: participants") : std::string();
  }
  if (r.kind != Kind::Array) return "participants must be an array of objects";
  const std::string index = std::to_string(r.problemIndex);
  switch (r.problem) {
    case ElementProblem::None:
      return {};
    case ElementProblem::NotObject:
      return concat({"participants[", index, "] must be an object"});
    case ElementProblem::IdMissing:
      return concat({"participants[", index, "] is missing a string id"});
    case ElementProblem::IdNotString:
      return concat({"participants[", index, "].id must be a string"});
    case ElementProblem::NameNotString:
      return concat({"participants[", index, "].name must be a string"});
    case ElementProblem::TypeNotString:
      return concat({"participants[", index, "].type must be a string"});
    case ElementProblem::NotString:
      break;
  }
  return concat({"participants[", index, "] is invalid"});
}

std::string checkPayload(const RawField& r) {
  if (r.kind == Kind::Absent) return "missing field: payload";
  if (r.kind != Kind::Object) return "payload must be a JSON object";
  return {};
}

std::string_view view(std::string_view text, const RawField& r) {
  if (r.kind != Kind::Object && r.kind != Kind::Array) return {};
  return text.substr(r.begin, r.end - r.begin);
}

}  // namespace

DecodeResult decodeNodeFrame(std::string_view text, bool authenticated, const Limits& limits) {
  if (text.size() > limits.maxFrameBytes) {
    return DecodeError{ErrorCode::FrameTooLarge,
                       concat({"frame exceeds ", std::to_string(limits.maxFrameBytes), " bytes"}),
                       std::nullopt};
  }
  if (!isValidUtf8(text)) {
    return DecodeError{ErrorCode::InvalidUtf8, std::string(defaultMessage(ErrorCode::InvalidUtf8)),
                       std::nullopt};
  }

  // One reader per thread: its internal stack keeps its capacity between
  // frames, so steady-state parsing does not allocate. The frame is parsed
  // from a NUL-terminated copy: RapidJSON scans strings (most of a payload)
  // 16 bytes at a time only on such a stream, and its aligned loads may read
  // up to 15 bytes past the NUL, hence the padding. A NUL inside the frame
  // ends the input early, which is caught below as trailing garbage.
  thread_local rapidjson::Reader reader;
  thread_local std::string copy;
  copy.assign(text);
  copy.append(16, '\0');
  rapidjson::StringStream stream(copy.c_str());
  std::optional<FrameHandler> handler;
  handler.emplace(stream, 1 + limits.maxPayloadDepth);
  rapidjson::ParseResult parsed = reader.Parse<kParseFlags>(stream, *handler);
  if (parsed.Code() == rapidjson::kParseErrorNumberTooBig) {
    // Valid JSON all the same (1e400, a 400-digit integer), and payloads are
    // forwarded byte for byte: parse again with every number neutralized to
    // a 0 of the same length, so every offset still points into `text`.
    detail::neutralizeNumbers(copy, text.size());
    stream = rapidjson::StringStream(copy.c_str());
    handler.emplace(stream, 1 + limits.maxPayloadDepth);
    parsed = reader.Parse<kParseFlags>(stream, *handler);
  }
  FrameHandler& h = *handler;

  std::optional<std::string> id = takeValidId(h.id);
  const ErrorBuilder fail{&id};
  const ErrorBuilder failNoId{nullptr};

  if (h.aborted == Abort::RootNotObject) {
    return failNoId(ErrorCode::InvalidJson, "frame must be a JSON object");
  }
  if (h.aborted == Abort::TooDeep) {
    return fail(ErrorCode::InvalidFrame,
                concat({keyName(h.deepKey), " nests deeper than ",
                        std::to_string(limits.maxPayloadDepth), " levels"}));
  }
  // The stream reports a NUL byte as end of input; anything after one is
  // trailing garbage too.
  if (parsed.IsError() || stream.Tell() != text.size()) {
    return failNoId(ErrorCode::InvalidJson, std::string(defaultMessage(ErrorCode::InvalidJson)));
  }

  if (h.typeKind == Kind::Absent) return fail(ErrorCode::InvalidFrame, "missing field: type");
  if (h.typeKind != Kind::String) return fail(ErrorCode::InvalidFrame, "type must be a string");
  if (h.id.kind != Kind::Absent && !id) {
    return fail(ErrorCode::InvalidFrame, "id must be a string of 1 to 64 bytes");
  }
  if (h.type == FrameType::Unknown) {
    return fail(ErrorCode::UnknownType, std::string(defaultMessage(ErrorCode::UnknownType)));
  }
  if (h.type == FrameType::Auth) {
    if (authenticated) {
      return fail(ErrorCode::AlreadyAuthenticated,
                  std::string(defaultMessage(ErrorCode::AlreadyAuthenticated)));
    }
  } else if (!authenticated) {
    return fail(ErrorCode::NotAuthenticated,
                std::string(defaultMessage(ErrorCode::NotAuthenticated)));
  }

  std::string problem;
  auto check = [&problem](std::string p) {
    if (problem.empty()) problem = std::move(p);
  };

  switch (h.type) {
    case FrameType::Auth: {
      // With a token the meshId is the token's; one given must match it.
      check(checkString(h.meshId, "meshId", h.token.kind == Kind::Absent));
      check(checkString(h.secret, "secret", false));
      check(checkString(h.resumeToken, "resumeToken", false));
      check(checkString(h.token, "token", false));
      if (h.secret.kind == Kind::Absent && h.resumeToken.kind == Kind::Absent &&
          h.token.kind == Kind::Absent) {
        check("gateway_auth needs a secret, a resumeToken or a token");
      }
      check(checkRooms(h.publicRooms, false));
      check(checkParticipants(h.participants, false));
      if (h.presence == FrameHandler::Flag::NotBoolean) check("presence must be a boolean");
      if (!problem.empty()) break;
      AuthFrame f;
      f.presence = h.presence == FrameHandler::Flag::True;
      f.meshId = std::move(h.meshId.value);
      if (h.secret.kind == Kind::String) f.secret = std::move(h.secret.value);
      if (h.resumeToken.kind == Kind::String) f.resumeToken = std::move(h.resumeToken.value);
      if (h.token.kind == Kind::String) f.token = std::move(h.token.value);
      f.publicRoomsJson = view(text, h.publicRooms);
      f.participantsJson = view(text, h.participants);
      f.participantCount = h.participants.count;
      return DecodedFrame{std::move(f), std::move(id)};
    }
    case FrameType::Discover:
      return DecodedFrame{DiscoverFrame{}, std::move(id)};
    case FrameType::Relay: {
      check(checkString(h.targetMeshId, "targetMeshId", true));
      check(checkPayload(h.payload));
      if (!problem.empty()) break;
      return DecodedFrame{RelayFrame{std::move(h.targetMeshId.value), view(text, h.payload)},
                          std::move(id)};
    }
    case FrameType::Broadcast:
      check(checkPayload(h.payload));
      if (!problem.empty()) break;
      return DecodedFrame{BroadcastFrame{view(text, h.payload)}, std::move(id)};
    case FrameType::UpdateRooms:
      check(checkRooms(h.publicRooms, true));
      if (!problem.empty()) break;
      return DecodedFrame{UpdateRoomsFrame{view(text, h.publicRooms)}, std::move(id)};
    case FrameType::UpdateParticipants:
      check(checkParticipants(h.participants, true));
      if (!problem.empty()) break;
      return DecodedFrame{UpdateParticipantsFrame{view(text, h.participants), h.participants.count},
                          std::move(id)};
    case FrameType::Reauth:
      check(checkString(h.token, "token", true));
      if (!problem.empty()) break;
      return DecodedFrame{ReauthFrame{std::move(h.token.value)}, std::move(id)};
    case FrameType::Unknown:
      break;
  }
  return fail(ErrorCode::InvalidFrame, std::move(problem));
}

bool isValidMeshId(std::string_view meshId) {
  if (meshId.empty() || meshId.size() > kMaxMeshIdBytes) return false;
  for (const char c : meshId) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::string_view typeName(const NodeFrame& frame) {
  struct Namer {
    std::string_view operator()(const AuthFrame&) const { return "gateway_auth"; }
    std::string_view operator()(const DiscoverFrame&) const { return "gateway_discover"; }
    std::string_view operator()(const RelayFrame&) const { return "gateway_relay"; }
    std::string_view operator()(const BroadcastFrame&) const { return "gateway_broadcast"; }
    std::string_view operator()(const UpdateRoomsFrame&) const { return "gateway_update_rooms"; }
    std::string_view operator()(const UpdateParticipantsFrame&) const {
      return "gateway_update_participants";
    }
    std::string_view operator()(const ReauthFrame&) const { return "gateway_reauth"; }
  };
  return std::visit(Namer{}, frame);
}

}  // namespace mesh::proto
