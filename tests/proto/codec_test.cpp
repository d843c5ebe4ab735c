// decodeNodeFrame beyond the shared vectors: check order, raw views, ids,
// depth, duplicates and every malformed field.
#include <string>
#include <string_view>
#include <variant>

#include <gtest/gtest.h>

#include "mesh/proto/codec.h"
#include "support/hostile_numbers.h"

namespace mesh::proto {
namespace {

using namespace std::string_literals;

DecodeResult decode(std::string_view text, bool authed = true, const Limits& limits = Limits{}) {
  return decodeNodeFrame(text, authed, limits);
}

// By value: callers often pass a temporary result.
DecodedFrame ok(const DecodeResult& r) {
  if (const auto* err = std::get_if<DecodeError>(&r)) {
    ADD_FAILURE() << "unexpected error " << codeText(err->code) << ": " << err->message;
  }
  return std::get<DecodedFrame>(r);
}

DecodeError error(const DecodeResult& r) {
  if (std::holds_alternative<DecodedFrame>(r)) ADD_FAILURE() << "decoded, expected an error";
  return std::get<DecodeError>(r);
}

void expectError(std::string_view text, ErrorCode code, std::string_view mentions = {},
                 bool authed = true) {
  SCOPED_TRACE(std::string(text.substr(0, 120)));
  const DecodeResult r = decode(text, authed);
  ASSERT_TRUE(std::holds_alternative<DecodeError>(r)) << "decoded, expected an error";
  const DecodeError& e = std::get<DecodeError>(r);
  EXPECT_EQ(codeText(e.code), codeText(code)) << e.message;
  if (!mentions.empty()) {
    EXPECT_NE(e.message.find(mentions), std::string::npos) << e.message;
  }
}

std::string nestedObjects(int depth) {
  std::string s;
  for (int i = 1; i < depth; ++i) s += "{\"a\":";
  s += "{}";
  for (int i = 1; i < depth; ++i) s += '}';
  return s;
}

std::string relayWith(std::string_view payload) {
  return R"({"type":"gateway_relay","targetMeshId":"mesh-b","payload":)" + std::string(payload) +
         "}";
}

// ---- size and encoding ----------------------------------------------------

TEST(FrameCodec, RejectsOversizedFrame) {
  Limits limits;
  limits.maxFrameBytes = 32;
  const std::string text = R"({"type":"gateway_discover","id":"abc"})";
  ASSERT_GT(text.size(), 32u);
  const DecodeError e = error(decode(text, true, limits));
  EXPECT_EQ(e.code, ErrorCode::FrameTooLarge);
  EXPECT_FALSE(e.id.has_value());
  EXPECT_EQ(closeCode(e.code), 0);
}

TEST(FrameCodec, AcceptsFrameOfExactlyTheLimit) {
  const std::string text = R"({"type":"gateway_discover"})";
  Limits limits;
  limits.maxFrameBytes = text.size();
  EXPECT_TRUE(std::holds_alternative<DecodedFrame>(decode(text, true, limits)));
}

TEST(FrameCodec, SizeIsCheckedBeforeUtf8) {
  Limits limits;
  limits.maxFrameBytes = 4;
  EXPECT_EQ(error(decode("\xff\xff\xff\xff\xff", true, limits)).code, ErrorCode::FrameTooLarge);
}

TEST(FrameCodec, InvalidUtf8ClosesWith1007) {
  const std::string bad[] = {
      "\xc0\x80",          // overlong NUL
      "\xc1\xbf",          // overlong 2-byte
      "\xe0\x80\x80",      // overlong 3-byte
      "\xe0\x9f\xbf",      // overlong 3-byte, top of range
      "\xf0\x80\x80\x80",  // overlong 4-byte
      "\xf0\x8f\xbf\xbf",  // overlong 4-byte, top of range
      "\xed\xa0\x80",      // high surrogate U+D800
      "\xed\xbf\xbf",      // low surrogate U+DFFF
      "\xf4\x90\x80\x80",  // U+110000
      "\xf5\x80\x80\x80",  // lead byte past U+10FFFF
      "\xff",
      "\x80",          // stray continuation
      "\xc3",          // truncated 2-byte
      "\xe2\x82",      // truncated 3-byte
      "\xf0\x9f\x98",  // truncated 4-byte
      "\xc3\x28",      // bad continuation
  };
  for (const std::string& b : bad) {
    const std::string text = R"({"type":"gateway_discover","x":")" + b + "\"}";
    SCOPED_TRACE(text);
    EXPECT_FALSE(isValidUtf8(b));
    const DecodeError e = error(decode(text));
    EXPECT_EQ(e.code, ErrorCode::InvalidUtf8);
    EXPECT_EQ(closeCode(e.code), 1007);
    EXPECT_FALSE(e.id.has_value());
  }
}

TEST(FrameCodec, AcceptsValidUtf8) {
  const std::string good[] = {
      "",
      "plain ascii, long enough for the eight-byte fast path",
      "\xc2\x80",          // U+0080
      "\xdf\xbf",          // U+07FF
      "\xe0\xa0\x80",      // U+0800
      "\xed\x9f\xbf",      // U+D7FF
      "\xee\x80\x80",      // U+E000
      "\xef\xbf\xbf",      // U+FFFF
      "\xf0\x90\x80\x80",  // U+10000
      "\xf4\x8f\xbf\xbf",  // U+10FFFF
      "gr\xc3\xbc\xc3\x9f dich \xf0\x9f\x98\x80 \xe2\x82\xac",
  };
  for (const std::string& g : good) {
    SCOPED_TRACE(g);
    EXPECT_TRUE(isValidUtf8(g));
    ok(decode(R"({"type":"gateway_discover","x":")" + g + "\"}"));
  }
}

TEST(FrameCodec, Utf8CheckFindsBadByteAfterLongAsciiRun) {
  std::string s(1000, 'a');
  EXPECT_TRUE(isValidUtf8(s));
  s[997] = '\xff';
  EXPECT_FALSE(isValidUtf8(s));
  s[997] = 'a';
  s.back() = '\xc3';
  EXPECT_FALSE(isValidUtf8(s));
}

// ---- JSON shape -----------------------------------------------------------

TEST(FrameCodec, RejectsMalformedJson) {
  const std::string bad[] = {
      "",
      "   ",
      "hello",
      "[1,2]",
      "\"gateway_discover\"",
      "42",
      "null",
      "true",
      R"({"type":"gateway_discover"} x)",
      R"({"type":"gateway_discover"}{})",
      R"({"type":"gateway_discover")",
      R"({"type":"gateway_discover",})",
      R"({'type':'gateway_discover'})",
      R"({"type":"gateway_discover","x":[1,]})",
      R"({"type":"gateway_discover","x":01})",
      R"({"type":"gateway_discover","x":"a\qb"})",
      R"({"type":"gateway_discover","x":"\ud800"})",
      "{\"type\":\"gateway_discover\",\"x\":\"a\tb\"}",
      "{\"type\":\"gateway_discover\"}\0"s,
      "{\"type\":\"gateway_discover\"}\0{}"s,
      "{\"type\":\"gateway_discover\",\"x\":\"a\0b\"}"s,
      "\0{\"type\":\"gateway_discover\"}"s,
  };
  for (const std::string& b : bad) {
    SCOPED_TRACE(b);
    const DecodeError e = error(decode(b));
    EXPECT_EQ(e.code, ErrorCode::InvalidJson) << e.message;
    EXPECT_FALSE(e.id.has_value());
  }
}

TEST(FrameCodec, DeepArrayRootIsInvalidJsonWithoutRecursion) {
  const std::string text = std::string(100000, '[') + std::string(100000, ']');
  Limits limits;
  limits.maxFrameBytes = text.size();
  EXPECT_EQ(error(decode(text, true, limits)).code, ErrorCode::InvalidJson);
}

TEST(FrameCodec, AcceptsSurroundingWhitespace) {
  ok(decode(" \t\r\n{ \"type\" : \"gateway_discover\" }\n "));
}

TEST(FrameCodec, TypeMissingOrNotString) {
  expectError("{}", ErrorCode::InvalidFrame, "type");
  expectError(R"({"type":42})", ErrorCode::InvalidFrame, "type");
  expectError(R"({"type":null})", ErrorCode::InvalidFrame, "type");
  expectError(R"({"type":{"a":1}})", ErrorCode::InvalidFrame, "type");
  expectError(R"({"type":["gateway_discover"]})", ErrorCode::InvalidFrame, "type");
  expectError(R"({"x":{"type":"gateway_discover"}})", ErrorCode::InvalidFrame, "type");
}

TEST(FrameCodec, UnknownTypeComesBeforeAuthState) {
  expectError(R"({"type":"gateway_teleport"})", ErrorCode::UnknownType, {}, false);
  expectError(R"({"type":"GATEWAY_DISCOVER"})", ErrorCode::UnknownType);
  expectError(R"({"type":""})", ErrorCode::UnknownType);
  expectError(R"({"type":"gateway_discover\u0000"})", ErrorCode::UnknownType);
}

TEST(FrameCodec, AuthStateComesBeforeFieldChecks) {
  expectError(R"({"type":"gateway_relay"})", ErrorCode::NotAuthenticated, {}, false);
  expectError(R"({"type":"gateway_auth"})", ErrorCode::AlreadyAuthenticated, {}, true);
  expectError(R"({"type":"gateway_auth"})", ErrorCode::InvalidFrame, "meshId", false);
}

TEST(FrameCodec, EscapedTypeAndKeysDecode) {
  ok(decode(R"({"\u0074ype":"gateway\u005fdiscover"})"));
  const DecodedFrame f =
      ok(decode(R"({"type":"gateway_broadcast","pay\u006coad":{"k":"\u00e9"}})"));
  EXPECT_EQ(std::get<BroadcastFrame>(f.frame).payloadJson, R"({"k":"\u00e9"})");
}

TEST(FrameCodec, TypeNamesEveryFrame) {
  EXPECT_EQ(typeName(AuthFrame{}), "gateway_auth");
  EXPECT_EQ(typeName(DiscoverFrame{}), "gateway_discover");
  EXPECT_EQ(typeName(RelayFrame{}), "gateway_relay");
  EXPECT_EQ(typeName(BroadcastFrame{}), "gateway_broadcast");
  EXPECT_EQ(typeName(UpdateRoomsFrame{}), "gateway_update_rooms");
  EXPECT_EQ(typeName(UpdateParticipantsFrame{}), "gateway_update_participants");
  EXPECT_EQ(typeName(ReauthFrame{}), "gateway_reauth");
}

// ---- raw views ------------------------------------------------------------

TEST(FrameCodec, PayloadViewIsExactlyTheSentBytes) {
  const std::string payload = "{ \"a\" : [1, 2 ,{\"b\":null}\n] ,\t\"c\":\"}\\\"]\" , \"d\":{} }";
  const std::string text =
      R"({"type":"gateway_relay", "payload" :  )" + payload + R"(  ,"targetMeshId":"m"})";
  const DecodeResult r = decode(text);
  const auto relay = std::get<RelayFrame>(ok(r).frame);
  EXPECT_EQ(relay.payloadJson, payload);
  EXPECT_EQ(relay.targetMeshId, "m");
  // A view into the caller's text, not a copy.
  EXPECT_GE(relay.payloadJson.data(), text.data());
  EXPECT_LE(relay.payloadJson.data() + relay.payloadJson.size(), text.data() + text.size());
}

TEST(FrameCodec, PayloadViewAtEndOfFrame) {
  const std::string text = R"({"type":"gateway_broadcast","payload":{}})";
  EXPECT_EQ(std::get<BroadcastFrame>(ok(decode(text)).frame).payloadJson, "{}");
}

TEST(FrameCodec, PayloadViewKeepsNumbersVerbatim) {
  const std::string payload = R"({"big":1e300,"long":123456789012345678901234567890,"f":-0.10})";
  const std::string text = relayWith(payload);  // the views point into it
  const DecodeResult r = decode(text);
  EXPECT_EQ(std::get<RelayFrame>(ok(r).frame).payloadJson, payload);
}

// Numbers no double can hold are valid JSON, and payloads are forwarded,
// never computed on: each is relayed as written.
TEST(FrameCodec, NumbersBeyondDoubleRangeAreForwardedVerbatim) {
  for (const std::string& n : test::hostileNumbers()) {
    const std::string payload = R"({"n":)" + n + R"(,"a":[)" + n + R"(,{"x":)" + n + "}]}";
    const std::string text = relayWith(payload);
    const DecodeResult r = decode(text);
    ASSERT_TRUE(std::holds_alternative<DecodedFrame>(r)) << n;
    EXPECT_EQ(std::get<RelayFrame>(ok(r).frame).payloadJson, payload) << n;
  }
  // The same numbers outside the payload do not upset the other fields.
  const DecodeResult r = decode(R"({"type":"gateway_relay","x":1e400,"targetMeshId":"m",)"
                                R"("id":"i","payload":{"n":)" +
                                std::string(400, '9') + "}}");
  EXPECT_EQ(std::get<RelayFrame>(ok(r).frame).targetMeshId, "m");
  EXPECT_EQ(ok(r).id, "i");
}

// Number-like text that is not a JSON number stays invalid JSON, wherever
// a number too big for a double sits in the same frame.
TEST(FrameCodec, InvalidNumbersStayInvalidBesideHugeOnes) {
  for (const char* bad : {"01", "1.", ".5", "1e", "1e+", "--1", "+1", "1-2", "0x10", "1.e5", "-",
                          "1e400e1", "Infinity", "NaN"}) {
    const std::string payload = std::string(R"({"big":1e400,"bad":)") + bad + "}";
    EXPECT_EQ(error(decode(relayWith(payload))).code, ErrorCode::InvalidJson) << bad;
  }
  // A number inside a string is text, not a number to rewrite.
  const std::string payload = R"({"s":"1e400 \" 1e400","n":1e400})";
  EXPECT_EQ(std::get<RelayFrame>(ok(decode(relayWith(payload))).frame).payloadJson, payload);
}

TEST(FrameCodec, DeepPayloadViewIsExact) {
  const std::string payload = nestedObjects(64);
  const std::string text = relayWith(payload);
  const DecodeResult r = decode(text);
  EXPECT_EQ(std::get<RelayFrame>(ok(r).frame).payloadJson, payload);
}

TEST(FrameCodec, AuthViewsAndParticipantCount) {
  const std::string rooms = R"([ "general" , "dev" ])";
  const std::string people =
      R"([{"id":"u1","name":"Ann","type":"human"}, {"id":"u2","extra":{"x":[1]}}])";
  const std::string text = R"({"type":"gateway_auth","meshId":"mesh-a","secret":"s3cret",)"
                           R"("resumeToken":"tok","publicRooms":)" +
                           rooms + R"(,"participants":)" + people + "}";
  const DecodeResult r = decode(text, false);
  const auto auth = std::get<AuthFrame>(ok(r).frame);
  EXPECT_EQ(auth.meshId, "mesh-a");
  EXPECT_EQ(auth.secret, "s3cret");
  EXPECT_EQ(auth.resumeToken, "tok");
  EXPECT_EQ(auth.publicRoomsJson, rooms);
  EXPECT_EQ(auth.participantsJson, people);
  EXPECT_EQ(auth.participantCount, 2u);
}

TEST(FrameCodec, AuthOptionalListsAbsentGiveEmptyViews) {
  const DecodeResult r = decode(R"({"type":"gateway_auth","meshId":"m","resumeToken":"t"})", false);
  const auto auth = std::get<AuthFrame>(ok(r).frame);
  EXPECT_FALSE(auth.secret.has_value());
  EXPECT_EQ(auth.resumeToken, "t");
  EXPECT_TRUE(auth.publicRoomsJson.empty());
  EXPECT_TRUE(auth.participantsJson.empty());
  EXPECT_EQ(auth.participantCount, 0u);
  EXPECT_FALSE(auth.presence);
}

TEST(FrameCodec, AuthWithASignedTokenNeedsNoMeshId) {
  const auto alone =
      std::get<AuthFrame>(ok(decode(R"({"type":"gateway_auth","token":"h.c.s"})", false)).frame);
  EXPECT_EQ(alone.token, "h.c.s");
  EXPECT_TRUE(alone.meshId.empty());
  const auto both = std::get<AuthFrame>(
      ok(decode(R"({"type":"gateway_auth","meshId":"m","token":"h.c.s"})", false)).frame);
  EXPECT_EQ(both.meshId, "m");
  expectError(R"({"type":"gateway_auth","token":7})", ErrorCode::InvalidFrame,
              "token must be a string", false);
  expectError(R"({"type":"gateway_auth","meshId":"m"})", ErrorCode::InvalidFrame,
              "a secret, a resumeToken or a token", false);
  // Without a token the meshId stays required.
  expectError(R"({"type":"gateway_auth","secret":"s"})", ErrorCode::InvalidFrame,
              "missing field: meshId", false);
}

TEST(FrameCodec, ReauthCarriesAToken) {
  const DecodeResult r = decode(R"({"type":"gateway_reauth","token":"h.c.s","id":"r"})", true);
  EXPECT_EQ(std::get<ReauthFrame>(ok(r).frame).token, "h.c.s");
  EXPECT_EQ(ok(r).id, "r");
  expectError(R"({"type":"gateway_reauth"})", ErrorCode::InvalidFrame, "missing field: token",
              true);
  expectError(R"({"type":"gateway_reauth","token":"h.c.s"})", ErrorCode::NotAuthenticated, {},
              false);
}

TEST(FrameCodec, AuthPresenceIsAnOptionalBoolean) {
  const std::string head = R"({"type":"gateway_auth","meshId":"m","secret":"s",)";
  EXPECT_TRUE(std::get<AuthFrame>(ok(decode(head + R"("presence":true})", false)).frame).presence);
  EXPECT_FALSE(
      std::get<AuthFrame>(ok(decode(head + R"("presence":false})", false)).frame).presence);
  // The last of duplicate keys wins, as everywhere in the decoder.
  EXPECT_TRUE(
      std::get<AuthFrame>(ok(decode(head + R"("presence":false,"presence":true})", false)).frame)
          .presence);
  for (const char* bad : {R"("presence":1})", R"("presence":"true"})", R"("presence":null})",
                          R"("presence":[true]})", R"("presence":{}})"}) {
    expectError(head + bad, ErrorCode::InvalidFrame, "presence", false);
  }
  // Only gateway_auth reads it: elsewhere it is an unknown field.
  EXPECT_TRUE(std::holds_alternative<DecodedFrame>(
      decode(R"({"type":"gateway_discover","presence":7})", true)));
}

TEST(FrameCodec, UpdateFramesCarryViews) {
  const DecodeResult rooms = decode(R"({"type":"gateway_update_rooms","publicRooms":[]})");
  EXPECT_EQ(std::get<UpdateRoomsFrame>(ok(rooms).frame).publicRoomsJson, "[]");
  const DecodeResult people =
      decode(R"({"type":"gateway_update_participants","participants":[{"id":"a"},{"id":"b"},)"
             R"({"id":"c","name":"C"}]})");
  const auto up = std::get<UpdateParticipantsFrame>(ok(people).frame);
  EXPECT_EQ(up.participantCount, 3u);
  EXPECT_EQ(up.participantsJson, R"([{"id":"a"},{"id":"b"},{"id":"c","name":"C"}])");
  const DecodeResult none = decode(R"({"type":"gateway_update_participants","participants":[]})");
  EXPECT_EQ(std::get<UpdateParticipantsFrame>(ok(none).frame).participantCount, 0u);
}

// ---- duplicates and extra fields ------------------------------------------

TEST(FrameCodec, DuplicateKeysLastOneWins) {
  {
    const DecodeResult r =
        decode(R"({"type":"gateway_relay","targetMeshId":"a","payload":"x","payload":{"n":2},)"
               R"("targetMeshId":"b"})");
    const auto relay = std::get<RelayFrame>(ok(r).frame);
    EXPECT_EQ(relay.targetMeshId, "b");
    EXPECT_EQ(relay.payloadJson, R"({"n":2})");
  }
  expectError(R"({"type":"gateway_relay","targetMeshId":"a","payload":{},"payload":[]})",
              ErrorCode::InvalidFrame, "payload");
  expectError(R"({"type":"gateway_discover","type":"gateway_nope"})", ErrorCode::UnknownType);
  ok(decode(R"({"type":7,"type":"gateway_discover"})"));
  ok(decode(R"({"type":"gateway_update_rooms","publicRooms":[1],"publicRooms":["a"]})"));
  expectError(R"({"type":"gateway_update_rooms","publicRooms":["a"],"publicRooms":[1]})",
              ErrorCode::InvalidFrame, "publicRooms");
  const DecodeResult id = decode(R"({"type":"gateway_discover","id":5,"id":"ok"})");
  EXPECT_EQ(ok(id).id, "ok");
}

TEST(FrameCodec, FieldsOfOtherFrameTypesAreIgnored) {
  ok(decode(R"({"type":"gateway_discover","payload":"x","publicRooms":7,"participants":{}})"));
  ok(decode(R"({"type":"gateway_broadcast","payload":{},"targetMeshId":5,"meshId":[]})"));
  ok(decode(R"({"type":"gateway_relay","targetMeshId":"b","payload":{},"fromMeshId":"evil"})"));
}

// ---- ids ------------------------------------------------------------------

TEST(FrameCodec, IdIsReturnedWithTheFrame) {
  EXPECT_EQ(ok(decode(R"({"id":"r-1","type":"gateway_discover"})")).id, "r-1");
  EXPECT_FALSE(ok(decode(R"({"type":"gateway_discover"})")).id.has_value());
  EXPECT_EQ(ok(decode(R"({"type":"gateway_discover","id":"\u00e9"})")).id, "\xc3\xa9");
}

TEST(FrameCodec, RejectsBadIds) {
  expectError(R"({"type":"gateway_discover","id":""})", ErrorCode::InvalidFrame, "id");
  expectError(R"({"type":"gateway_discover","id":12})", ErrorCode::InvalidFrame, "id");
  expectError(R"({"type":"gateway_discover","id":null})", ErrorCode::InvalidFrame, "id");
  expectError(R"({"type":"gateway_discover","id":["a"]})", ErrorCode::InvalidFrame, "id");
  expectError(R"({"type":"gateway_discover","id":{}})", ErrorCode::InvalidFrame, "id");
  expectError(R"({"type":"gateway_discover","id":")" + std::string(65, 'x') + "\"}",
              ErrorCode::InvalidFrame, "id");
  // A lone surrogate escape decodes to bytes that are not UTF-8.
  expectError(R"({"type":"gateway_discover","id":"\udc00"})", ErrorCode::InvalidFrame, "id");
  // The id check runs before the type lookup.
  expectError(R"({"type":"gateway_nope","id":""})", ErrorCode::InvalidFrame, "id");
  const DecodeError e = error(decode(R"({"type":"gateway_discover","id":""})"));
  EXPECT_FALSE(e.id.has_value());
}

TEST(FrameCodec, ErrorsCarryAValidId) {
  EXPECT_EQ(error(decode(R"({"id":"q","type":"gateway_relay","targetMeshId":"b"})")).id, "q");
  EXPECT_EQ(error(decode(R"({"type":"gateway_relay","id":"q"})", false)).id, "q");
  EXPECT_EQ(error(decode(R"({"type":"gateway_auth","id":"q"})", true)).id, "q");
  EXPECT_EQ(error(decode(R"({"type":"gateway_nope","id":"q"})")).id, "q");
  EXPECT_EQ(error(decode(R"({"id":"q"})")).id, "q");
  EXPECT_EQ(
      error(decode(R"({"id":"q","type":"gateway_relay","payload":)" + nestedObjects(70) + "}")).id,
      "q");
  // Not JSON: nothing was parsed, so no id.
  EXPECT_FALSE(error(decode(R"({"id":"q","type":"gateway_discover")")).id.has_value());
}

// ---- nesting --------------------------------------------------------------

TEST(FrameCodec, PayloadDepthLimit) {
  ok(decode(relayWith(nestedObjects(64))));
  expectError(relayWith(nestedObjects(65)), ErrorCode::InvalidFrame, "payload");
  std::string arrays = "{\"a\":" + std::string(63, '[') + std::string(63, ']') + "}";
  ok(decode(relayWith(arrays)));
  arrays = "{\"a\":" + std::string(64, '[') + std::string(64, ']') + "}";
  expectError(relayWith(arrays), ErrorCode::InvalidFrame, "payload");
}

TEST(FrameCodec, DepthLimitFollowsLimits) {
  Limits limits;
  limits.maxPayloadDepth = 2;
  EXPECT_TRUE(
      std::holds_alternative<DecodedFrame>(decode(relayWith(R"({"a":{"b":1}})"), true, limits)));
  EXPECT_EQ(error(decode(relayWith(R"({"a":{"b":[]}})"), true, limits)).code,
            ErrorCode::InvalidFrame);
  limits.maxPayloadDepth = 1;
  EXPECT_TRUE(std::holds_alternative<DecodedFrame>(decode(relayWith("{}"), true, limits)));
  EXPECT_EQ(error(decode(relayWith(R"({"a":[]})"), true, limits)).code, ErrorCode::InvalidFrame);
}

TEST(FrameCodec, DepthLimitAppliesToEveryField) {
  const std::string deep = std::string(70, '[') + std::string(70, ']');
  expectError(R"({"type":"gateway_discover","junk":)" + deep + "}", ErrorCode::InvalidFrame);
  expectError(R"({"type":"gateway_update_rooms","publicRooms":)" + deep + "}",
              ErrorCode::InvalidFrame, "publicRooms");
}

TEST(FrameCodec, DepthIsCheckedBeforeType) {
  expectError("{\"x\":" + nestedObjects(80) + "}", ErrorCode::InvalidFrame);
}

TEST(FrameCodec, VeryDeepPayloadDoesNotRecurse) {
  const int depth = 30000;
  std::string payload = "{\"a\":" + std::string(depth, '[') + std::string(depth, ']') + "}";
  Limits limits;
  limits.maxFrameBytes = 1 << 20;
  EXPECT_EQ(error(decode(relayWith(payload), true, limits)).code, ErrorCode::InvalidFrame);
  // Unbalanced: refused on depth before the parser finds the JSON error.
  payload = "{\"a\":" + std::string(depth, '[');
  EXPECT_EQ(error(decode(relayWith(payload), true, limits)).code, ErrorCode::InvalidFrame);
}

// ---- per-type field checks ------------------------------------------------

TEST(FrameCodec, AuthFieldErrorsNameTheField) {
  const bool unauthed = false;
  const std::string head = R"({"type":"gateway_auth",)";
  expectError(head + R"("secret":"0123456789abcdef"})", ErrorCode::InvalidFrame, "meshId",
              unauthed);
  expectError(head + R"("meshId":7,"secret":"x"})", ErrorCode::InvalidFrame, "meshId", unauthed);
  expectError(head + R"("meshId":"m"})", ErrorCode::InvalidFrame, "secret", unauthed);
  expectError(head + R"("meshId":"m","secret":5})", ErrorCode::InvalidFrame, "secret", unauthed);
  expectError(head + R"("meshId":"m","secret":"s","resumeToken":null})", ErrorCode::InvalidFrame,
              "resumeToken", unauthed);
  expectError(head + R"("meshId":"m","resumeToken":{}})", ErrorCode::InvalidFrame, "resumeToken",
              unauthed);
  expectError(head + R"("meshId":"\udfff","secret":"s"})", ErrorCode::InvalidFrame, "meshId",
              unauthed);
  expectError(head + R"("meshId":"m","secret":"s","publicRooms":"general"})",
              ErrorCode::InvalidFrame, "publicRooms", unauthed);
  expectError(head + R"("meshId":"m","secret":"s","publicRooms":{}})", ErrorCode::InvalidFrame,
              "publicRooms", unauthed);
  expectError(head + R"("meshId":"m","secret":"s","publicRooms":["ok",3]})",
              ErrorCode::InvalidFrame, "publicRooms[1]", unauthed);
  expectError(head + R"("meshId":"m","secret":"s","publicRooms":[["nested"]]})",
              ErrorCode::InvalidFrame, "publicRooms[0]", unauthed);
  expectError(head + R"("meshId":"m","secret":"s","participants":{}})", ErrorCode::InvalidFrame,
              "participants", unauthed);
  expectError(head + R"("meshId":"m","secret":"s","participants":[{"id":"a"},"b"]})",
              ErrorCode::InvalidFrame, "participants[1]", unauthed);
  expectError(head + R"("meshId":"m","secret":"s","participants":[[]]})", ErrorCode::InvalidFrame,
              "participants[0]", unauthed);
  expectError(head + R"("meshId":"m","secret":"s","participants":[{"name":"Ann"}]})",
              ErrorCode::InvalidFrame, "participants[0]", unauthed);
  expectError(head + R"("meshId":"m","secret":"s","participants":[{"id":1}]})",
              ErrorCode::InvalidFrame, "participants[0].id", unauthed);
  expectError(head + R"("meshId":"m","secret":"s","participants":[{"id":{"v":"a"}}]})",
              ErrorCode::InvalidFrame, "participants[0].id", unauthed);
  expectError(head + R"("meshId":"m","secret":"s","participants":[{"id":"a","name":2}]})",
              ErrorCode::InvalidFrame, "participants[0].name", unauthed);
  expectError(head + R"("meshId":"m","secret":"s","participants":[{"id":"a","type":[]}]})",
              ErrorCode::InvalidFrame, "participants[0].type", unauthed);
}

TEST(FrameCodec, ParticipantFieldsAreCheckedOnlyAtTheirOwnLevel) {
  // "id" inside a nested object of a participant is not the participant's id.
  expectError(R"({"type":"gateway_update_participants","participants":[{"meta":{"id":"x"}}]})",
              ErrorCode::InvalidFrame, "participants[0]");
  ok(decode(R"({"type":"gateway_update_participants","participants":)"
            R"([{"id":"a","meta":{"id":5,"name":[]}}]})"));
  // Last duplicate wins inside a participant too.
  ok(decode(R"({"type":"gateway_update_participants","participants":[{"id":1,"id":"a"}]})"));
}

TEST(FrameCodec, RelayAndBroadcastFieldErrors) {
  expectError(R"({"type":"gateway_relay","payload":{}})", ErrorCode::InvalidFrame, "targetMeshId");
  expectError(R"({"type":"gateway_relay","targetMeshId":5,"payload":{}})", ErrorCode::InvalidFrame,
              "targetMeshId");
  expectError(R"({"type":"gateway_relay","targetMeshId":"b"})", ErrorCode::InvalidFrame, "payload");
  for (const char* p : {R"("hi")", "[1]", "null", "3", "true"}) {
    expectError(relayWith(p), ErrorCode::InvalidFrame, "payload must be a JSON object");
  }
  expectError(R"({"type":"gateway_broadcast"})", ErrorCode::InvalidFrame, "payload");
  expectError(R"({"type":"gateway_broadcast","payload":[]})", ErrorCode::InvalidFrame,
              "payload must be a JSON object");
}

TEST(FrameCodec, UpdateFrameFieldErrors) {
  expectError(R"({"type":"gateway_update_rooms"})", ErrorCode::InvalidFrame, "publicRooms");
  expectError(R"({"type":"gateway_update_rooms","publicRooms":null})", ErrorCode::InvalidFrame,
              "publicRooms");
  expectError(R"({"type":"gateway_update_participants"})", ErrorCode::InvalidFrame, "participants");
  expectError(R"({"type":"gateway_update_participants","participants":"u1"})",
              ErrorCode::InvalidFrame, "participants");
}

TEST(FrameCodec, RepeatedDecodesOnOneThreadAreIndependent) {
  // The reader is reused per thread; a failed parse must not leak state.
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(error(decode(R"({"type":"gateway_discover")")).code, ErrorCode::InvalidJson);
    EXPECT_EQ(error(decode(relayWith(nestedObjects(90)))).code, ErrorCode::InvalidFrame);
    EXPECT_EQ(error(decode("[1]")).code, ErrorCode::InvalidJson);
    const std::string text = relayWith(R"({"x":"y"})");
    const DecodeResult r = decode(text);
    EXPECT_EQ(std::get<RelayFrame>(ok(r).frame).payloadJson, R"({"x":"y"})");
  }
}

TEST(FrameCodec, MeshIdPattern) {
  EXPECT_TRUE(isValidMeshId("a"));
  EXPECT_TRUE(isValidMeshId("Mesh-1.test_X"));
  EXPECT_TRUE(isValidMeshId(std::string(64, 'm')));
  EXPECT_FALSE(isValidMeshId(""));
  EXPECT_FALSE(isValidMeshId(std::string(65, 'm')));
  EXPECT_FALSE(isValidMeshId("mesh a"));
  EXPECT_FALSE(isValidMeshId("mesh/a"));
  EXPECT_FALSE(isValidMeshId("m\xc3\xa9sh"));
  EXPECT_FALSE(isValidMeshId("mesh\0a"s));
}

}  // namespace
}  // namespace mesh::proto
