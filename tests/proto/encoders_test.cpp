// Relay -> node encoders: each output is parsed back and checked field by
// field, and its exact text is pinned where the field order matters.
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include "mesh/proto/codec.h"

namespace mesh::proto {
namespace {

rapidjson::Document parse(const std::string& text) {
  rapidjson::Document d;
  d.Parse<rapidjson::kParseValidateEncodingFlag>(text.data(), text.size());
  EXPECT_FALSE(d.HasParseError()) << text;
  EXPECT_TRUE(d.IsObject()) << text;
  return d;
}

std::string str(const rapidjson::Value& v) {
  return std::string(v.GetString(), v.GetStringLength());
}

std::string jsonString(std::string_view s) {
  std::string out;
  appendJsonString(out, s);
  return out;
}

TEST(JsonString, EscapesQuotesBackslashesAndControls) {
  EXPECT_EQ(jsonString(""), R"("")");
  EXPECT_EQ(jsonString("plain"), R"("plain")");
  EXPECT_EQ(jsonString("a\"b\\c"), R"("a\"b\\c")");
  EXPECT_EQ(jsonString("\b\f\n\r\t"), R"("\b\f\n\r\t")");
  EXPECT_EQ(jsonString(std::string("\0\x01\x1f", 3)), R"("\u0000\u0001\u001f")");
  EXPECT_EQ(jsonString("\x7f/"), "\"\x7f/\"");
}

TEST(JsonString, PassesValidUtf8Through) {
  const std::string s = "gr\xc3\xbc\xc3\x9f \xe2\x82\xac \xf0\x9f\x98\x80";
  EXPECT_EQ(jsonString(s), "\"" + s + "\"");
}

TEST(JsonString, ReplacesInvalidUtf8) {
  EXPECT_EQ(jsonString("a\xff"
                       "b"),
            R"("a\ufffdb")");
  EXPECT_EQ(jsonString("\xed\xa0\x80"), R"("\ufffd\ufffd\ufffd")");
  EXPECT_EQ(jsonString("x\xc3"), R"("x\ufffd")");
}

TEST(JsonString, AppendsAndRoundTrips) {
  std::string out = "prefix:";
  appendJsonString(out, "q\"\n\x01\xc3\xa9");
  EXPECT_EQ(out.rfind("prefix:", 0), 0u);
  rapidjson::Document d;
  const std::string literal = out.substr(7);
  d.Parse(literal.data(), literal.size());
  ASSERT_TRUE(d.IsString());
  EXPECT_EQ(str(d), "q\"\n\x01\xc3\xa9");
}

TEST(Encoders, AuthOk) {
  std::string out;
  encodeAuthOk(out, {"mesh-a", "Mesh \"A\"", {}, {}});
  EXPECT_EQ(out, R"({"type":"gateway_auth_ok","meshId":"mesh-a","name":"Mesh \"A\""})");
  out.clear();
  encodeAuthOk(out, {"mesh-a", "A", "tok", "2026-01-01T00:00:00Z"});
  EXPECT_EQ(out, R"({"type":"gateway_auth_ok","meshId":"mesh-a","name":"A","resumeToken":"tok",)"
                 R"("resumeExpiresAt":"2026-01-01T00:00:00Z"})");
  const auto d = parse(out);
  EXPECT_EQ(str(d["resumeToken"]), "tok");
}

TEST(Encoders, ReauthOk) {
  std::string out;
  encodeReauthOk(out, "mesh-a", "2026-12-06T10:00:00.000Z", std::string_view("r1"));
  EXPECT_EQ(
      out,
      R"({"type":"gateway_reauth_ok","meshId":"mesh-a","expiresAt":"2026-12-06T10:00:00.000Z","id":"r1"})");
  out.clear();
  encodeReauthOk(out, "m", "t");
  EXPECT_EQ(out, R"({"type":"gateway_reauth_ok","meshId":"m","expiresAt":"t"})");
}

TEST(Encoders, ErrorAndAuthErrorFrames) {
  for (ErrorCode code :
       {ErrorCode::InvalidJson, ErrorCode::InvalidFrame, ErrorCode::UnknownType,
        ErrorCode::UnsupportedFrame, ErrorCode::FrameTooLarge, ErrorCode::AlreadyAuthenticated,
        ErrorCode::RateLimited, ErrorCode::SessionReplaced, ErrorCode::SlowConsumer,
        ErrorCode::ShuttingDown, ErrorCode::ClusterUnavailable, ErrorCode::TokenExpired}) {
    std::string out;
    encodeError(out, code, "bad \"thing\"\n");
    const auto d = parse(out);
    EXPECT_EQ(str(d["type"]), "error");
    EXPECT_EQ(str(d["message"]), "bad \"thing\"\n");
    EXPECT_EQ(str(d["code"]), codeText(code));
    EXPECT_FALSE(d.HasMember("id"));
    EXPECT_EQ(out.rfind(R"({"type":"error","message":)", 0), 0u);
  }
  for (ErrorCode code :
       {ErrorCode::NotAuthenticated, ErrorCode::InvalidCredentials, ErrorCode::AuthTimeout,
        ErrorCode::AuthorizeUnavailable, ErrorCode::NotAuthorized}) {
    std::string out;
    encodeError(out, code, defaultMessage(code), "r1");
    const auto d = parse(out);
    EXPECT_EQ(str(d["type"]), "gateway_auth_error");
    EXPECT_EQ(str(d["code"]), codeText(code));
    EXPECT_EQ(str(d["id"]), "r1");
  }
  std::string out;
  encodeError(out, ErrorCode::InvalidFrame, "payload must be a JSON object", "a\"b");
  EXPECT_EQ(out,
            R"({"type":"error","message":"payload must be a JSON object","code":"invalid_frame",)"
            R"("id":"a\"b"})");
  out.clear();
  encodeError(out, ErrorCode::NotAuthenticated, "Not authenticated");
  EXPECT_EQ(out, R"({"type":"gateway_auth_error","message":"Not authenticated",)"
                 R"("code":"not_authenticated"})");
}

TEST(Encoders, DiscoverResult) {
  std::string out;
  encodeDiscoverResult(out, {});
  EXPECT_EQ(out, R"({"type":"gateway_discover_result","instances":[]})");
  out.clear();
  const std::vector<InstanceView> instances = {{"a", "Mesh A", R"(["general", "dev"])"},
                                               {"b", "B\n", ""}};
  encodeDiscoverResult(out, instances, "q1");
  EXPECT_EQ(out,
            R"({"type":"gateway_discover_result","instances":[{"meshId":"a","name":"Mesh A",)"
            R"("publicRooms":["general", "dev"]},{"meshId":"b","name":"B\n","publicRooms":[]}],)"
            R"("id":"q1"})");
  const auto d = parse(out);
  ASSERT_EQ(d["instances"].Size(), 2u);
  EXPECT_EQ(d["instances"][0]["publicRooms"].Size(), 2u);
}

TEST(Encoders, IncomingCopiesPayloadVerbatim) {
  std::string out;
  const std::string payload = R"({ "type" : "new_message", "n" : 1.50 })";
  encodeIncoming(out, "mesh-a", "Mesh A", payload);
  EXPECT_EQ(out, R"({"type":"gateway_incoming","fromMeshId":"mesh-a","fromMeshName":"Mesh A",)"
                 R"("payload":)" +
                     payload + "}");
  out.clear();
  encodeIncoming(out, "a", "A", "{}", "m-7");
  EXPECT_EQ(out, R"({"type":"gateway_incoming","fromMeshId":"a","fromMeshName":"A",)"
                 R"("payload":{},"id":"m-7"})");
}

TEST(Encoders, EncodersAppend) {
  std::string out = "HDR";
  encodePresence(out, "a", "A", true);
  EXPECT_EQ(out, R"(HDR{"type":"gateway_presence","meshId":"a","name":"A","status":"online"})");
}

TEST(Encoders, Participants) {
  std::string out;
  encodeParticipants(out, {});
  EXPECT_EQ(out, R"({"type":"gateway_participants","remoteParticipants":[]})");
  out.clear();
  encodeParticipants(out, {{"a", "A", R"([{"id":"u1"}])"}, {"b", "B", ""}});
  EXPECT_EQ(out, R"({"type":"gateway_participants","remoteParticipants":[{"meshId":"a",)"
                 R"("meshName":"A","participants":[{"id":"u1"}]},{"meshId":"b","meshName":"B",)"
                 R"("participants":[]}]})");
  parse(out);
}

TEST(Encoders, Ack) {
  std::string out;
  encodeAck(out, "id-1", AckStatus::Delivered, 3);
  EXPECT_EQ(out, R"({"type":"gateway_ack","id":"id-1","status":"delivered","recipients":3})");
  out.clear();
  encodeAck(out, "x", AckStatus::Offline, 0);
  EXPECT_EQ(out, R"({"type":"gateway_ack","id":"x","status":"offline","recipients":0})");
  out.clear();
  encodeAck(out, "x", AckStatus::Stored, 4294967295u);
  const auto d = parse(out);
  EXPECT_EQ(str(d["status"]), "stored");
  EXPECT_EQ(d["recipients"].GetUint(), 4294967295u);
  EXPECT_EQ(ackStatusText(AckStatus::Offline), "offline");
}

TEST(Encoders, Presence) {
  std::string out;
  encodePresence(out, "mesh-a", "A \"1\"", false);
  EXPECT_EQ(out,
            R"({"type":"gateway_presence","meshId":"mesh-a","name":"A \"1\"","status":"offline"})");
}

TEST(ErrorCodes, TextsAndCloseCodes) {
  EXPECT_EQ(codeText(ErrorCode::InvalidJson), "invalid_json");
  EXPECT_EQ(codeText(ErrorCode::InvalidFrame), "invalid_frame");
  EXPECT_EQ(codeText(ErrorCode::UnknownType), "unknown_type");
  EXPECT_EQ(codeText(ErrorCode::UnsupportedFrame), "unsupported_frame");
  EXPECT_EQ(codeText(ErrorCode::FrameTooLarge), "frame_too_large");
  EXPECT_EQ(codeText(ErrorCode::NotAuthenticated), "not_authenticated");
  EXPECT_EQ(codeText(ErrorCode::AlreadyAuthenticated), "already_authenticated");
  EXPECT_EQ(codeText(ErrorCode::InvalidCredentials), "invalid_credentials");
  EXPECT_EQ(codeText(ErrorCode::AuthTimeout), "auth_timeout");
  EXPECT_EQ(codeText(ErrorCode::RateLimited), "rate_limited");
  EXPECT_EQ(codeText(ErrorCode::SessionReplaced), "session_replaced");
  EXPECT_EQ(codeText(ErrorCode::SlowConsumer), "slow_consumer");
  EXPECT_EQ(codeText(ErrorCode::ShuttingDown), "shutting_down");
  EXPECT_EQ(codeText(ErrorCode::AuthorizeUnavailable), "authorize_unavailable");
  EXPECT_EQ(codeText(ErrorCode::NotAuthorized), "not_authorized");
  EXPECT_EQ(codeText(ErrorCode::ClusterUnavailable), "cluster_unavailable");
  EXPECT_EQ(closeCode(ErrorCode::ClusterUnavailable), 0);
  EXPECT_EQ(codeText(ErrorCode::TokenExpired), "token_expired");

  EXPECT_EQ(defaultMessage(ErrorCode::InvalidJson), "Invalid JSON");
  EXPECT_EQ(defaultMessage(ErrorCode::NotAuthenticated), "Not authenticated");

  EXPECT_EQ(closeCode(ErrorCode::InvalidCredentials), 1008);
  EXPECT_EQ(closeCode(ErrorCode::AuthTimeout), 1008);
  EXPECT_EQ(closeCode(ErrorCode::AuthorizeUnavailable), 1008);
  EXPECT_EQ(closeCode(ErrorCode::NotAuthorized), 1008);
  EXPECT_EQ(closeCode(ErrorCode::SessionReplaced), 4000);
  EXPECT_EQ(closeCode(ErrorCode::SlowConsumer), 1013);
  EXPECT_EQ(closeCode(ErrorCode::ShuttingDown), 1001);
  EXPECT_EQ(closeCode(ErrorCode::TokenExpired), 4001);
  EXPECT_EQ(closeCode(ErrorCode::InvalidUtf8), 1007);
  EXPECT_EQ(closeCode(ErrorCode::RateLimited), 0);
  EXPECT_EQ(closeCode(ErrorCode::InvalidFrame), 0);
  EXPECT_EQ(closeCode(ErrorCode::NotAuthenticated), 0);

  EXPECT_TRUE(isAuthError(ErrorCode::NotAuthenticated));
  EXPECT_TRUE(isAuthError(ErrorCode::InvalidCredentials));
  EXPECT_TRUE(isAuthError(ErrorCode::AuthTimeout));
  EXPECT_FALSE(isAuthError(ErrorCode::AlreadyAuthenticated));
  EXPECT_FALSE(isAuthError(ErrorCode::RateLimited));
}

}  // namespace
}  // namespace mesh::proto
