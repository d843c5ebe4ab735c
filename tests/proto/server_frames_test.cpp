// decodeServerFrame, mostly as round trips through the encoders.
#include <string>
#include <variant>

#include <gtest/gtest.h>

#include "mesh/proto/codec.h"
#include "mesh/proto/server_frames.h"
#include "support/hostile_numbers.h"

namespace mesh::proto {
namespace {

template <typename T>
T decodeAs(const std::string& text) {
  const std::optional<ServerFrame> f = decodeServerFrame(text);
  if (!f) {
    ADD_FAILURE() << "not decoded: " << text;
    return T{};
  }
  if (!std::holds_alternative<T>(*f)) {
    ADD_FAILURE() << "wrong frame kind: " << text;
    return T{};
  }
  return std::get<T>(*f);
}

TEST(ServerFrames, AuthOkRoundTrip) {
  std::string out;
  encodeAuthOk(out, {"mesh-a", "Mesh \"A\"", "tok", "2026-01-08T00:00:00Z"});
  const auto f = decodeAs<AuthOk>(out);
  EXPECT_EQ(f.meshId, "mesh-a");
  EXPECT_EQ(f.name, "Mesh \"A\"");
  EXPECT_EQ(f.resumeToken, "tok");
  EXPECT_EQ(f.resumeExpiresAt, "2026-01-08T00:00:00Z");
  const auto plain = decodeAs<AuthOk>(R"({"type":"gateway_auth_ok","meshId":"a","name":"A"})");
  EXPECT_TRUE(plain.resumeToken.empty());
  EXPECT_FALSE(plain.id.has_value());
  out.clear();
  encodeAuthOk(out, {"mesh-a", "A", "tok", "2026-01-08T00:00:00Z", "auth-1"});
  EXPECT_EQ(decodeAs<AuthOk>(out).id, "auth-1");
}

TEST(ServerFrames, AuthErrorRoundTripAndOriginalForm) {
  std::string out;
  encodeError(out, ErrorCode::InvalidCredentials, "Invalid credentials");
  const auto f = decodeAs<AuthError>(out);
  EXPECT_EQ(f.code, "invalid_credentials");
  EXPECT_EQ(f.message, "Invalid credentials");
  const auto original =
      decodeAs<AuthError>(R"({"type":"gateway_auth_error","message":"Not authenticated"})");
  EXPECT_TRUE(original.code.empty());
  EXPECT_EQ(original.message, "Not authenticated");
  EXPECT_FALSE(original.id.has_value());
  out.clear();
  encodeError(out, ErrorCode::InvalidCredentials, "Invalid credentials", "auth-2");
  EXPECT_EQ(decodeAs<AuthError>(out).id, "auth-2");
}

TEST(ServerFrames, ErrorRoundTrip) {
  std::string out;
  encodeError(out, ErrorCode::RateLimited, "slow down", "r-9");
  const auto f = decodeAs<ErrorFrame>(out);
  EXPECT_EQ(f.code, "rate_limited");
  EXPECT_EQ(f.message, "slow down");
  EXPECT_EQ(f.id, "r-9");
}

TEST(ServerFrames, DiscoverResultRoundTrip) {
  std::string out;
  encodeDiscoverResult(out, {{"a", "A", R"(["general","dev"])"}, {"b", "B", "[]"}}, "d1");
  const auto f = decodeAs<DiscoverResult>(out);
  ASSERT_EQ(f.instances.size(), 2u);
  EXPECT_EQ(f.instances[0].meshId, "a");
  EXPECT_EQ(f.instances[0].publicRooms, (std::vector<std::string>{"general", "dev"}));
  EXPECT_TRUE(f.instances[1].publicRooms.empty());
  EXPECT_EQ(f.id, "d1");
}

TEST(ServerFrames, IncomingRoundTrip) {
  std::string out;
  encodeIncoming(out, "a", "Mesh A", R"({"type":"new_message","message":{"content":"hi"}})", "m1");
  const auto f = decodeAs<Incoming>(out);
  EXPECT_EQ(f.fromMeshId, "a");
  EXPECT_EQ(f.fromMeshName, "Mesh A");
  EXPECT_EQ(f.payloadJson, R"({"type":"new_message","message":{"content":"hi"}})");
  EXPECT_EQ(f.id, "m1");
}

TEST(ServerFrames, ParticipantsRoundTrip) {
  std::string out;
  encodeParticipants(out, {{"a", "A", R"([{"id":"u1","name":"Ann","type":"human"}])"}});
  const auto f = decodeAs<Participants>(out);
  ASSERT_EQ(f.remote.size(), 1u);
  EXPECT_EQ(f.remote[0].meshId, "a");
  EXPECT_EQ(f.remote[0].meshName, "A");
  EXPECT_EQ(f.remote[0].participantsJson, R"([{"id":"u1","name":"Ann","type":"human"}])");
}

TEST(ServerFrames, AckRoundTrip) {
  std::string out;
  encodeAck(out, "x1", AckStatus::Offline, 0);
  const auto f = decodeAs<Ack>(out);
  EXPECT_EQ(f.id, "x1");
  EXPECT_EQ(f.status, "offline");
  EXPECT_EQ(f.recipients, 0u);
}

TEST(ServerFrames, AckRecipientsUpToUint32Max) {
  const auto f = decodeAs<Ack>(
      R"({"type":"gateway_ack","id":"x","status":"delivered","recipients":4294967295})");
  EXPECT_EQ(f.recipients, 4294967295u);
}

// The payload reaches the node with every number as the sender wrote it.
TEST(ServerFrames, IncomingKeepsEveryNumberByteForByte) {
  for (const std::string& n : test::hostileNumbers()) {
    const std::string payload = R"({"n":)" + n + R"(,"a":[)" + n + R"(,{"x":)" + n + "}]}";
    std::string out;
    encodeIncoming(out, "a", "A", payload, "m1");
    EXPECT_EQ(decodeAs<Incoming>(out).payloadJson, payload) << n;
  }
  const std::string all = R"({"all":)" + test::hostileNumbersArray() + "}";
  std::string out;
  encodeIncoming(out, "a", "A", all, std::nullopt);
  EXPECT_EQ(decodeAs<Incoming>(out).payloadJson, all);
}

TEST(ServerFrames, ParticipantsKeepEveryNumberByteForByte) {
  const std::string list =
      R"([{"id":"u1","name":"Ann","seen":)" + test::hostileNumbersArray() + "}]";
  std::string out;
  encodeParticipants(out, {{"a", "A", list}});
  const auto f = decodeAs<Participants>(out);
  ASSERT_EQ(f.remote.size(), 1u);
  EXPECT_EQ(f.remote[0].participantsJson, list);
}

// Nesting is bounded before anything recurses over it.
TEST(ServerFrames, DeepNestingIsRefusedWithoutRecursion) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  EXPECT_FALSE(decodeServerFrame(
                   R"({"type":"gateway_incoming","fromMeshId":"a","fromMeshName":"A","payload":)" +
                   deep + "}")
                   .has_value());
  const std::string ok = std::string(512, '[') + std::string(512, ']');
  EXPECT_EQ(
      decodeAs<Incoming>(
          R"({"type":"gateway_incoming","fromMeshId":"a","fromMeshName":"A","payload":)" + ok + "}")
          .payloadJson,
      ok);
}

TEST(ServerFrames, PresenceRoundTrip) {
  std::string out;
  encodePresence(out, "a", "A", true);
  EXPECT_TRUE(decodeAs<Presence>(out).online);
  out.clear();
  encodePresence(out, "a", "A", false);
  const auto f = decodeAs<Presence>(out);
  EXPECT_FALSE(f.online);
  EXPECT_EQ(f.meshId, "a");
  EXPECT_EQ(f.name, "A");
}

TEST(ServerFrames, UnknownTypeIsKeptForIgnoring) {
  EXPECT_EQ(decodeAs<UnknownServerFrame>(R"({"type":"gateway_future","x":1})").type,
            "gateway_future");
}

TEST(ServerFrames, RejectsMalformedFrames) {
  for (
      const char* bad : {
          "",
          "nope",
          "[]",
          R"({"x":1})",
          R"({"type":5})",
          R"({"type":"gateway_auth_ok","meshId":"a"})",
          R"({"type":"gateway_auth_ok","meshId":"a","name":"A","resumeToken":1})",
          R"({"type":"gateway_auth_error"})",
          R"({"type":"error","message":1})",
          R"({"type":"gateway_discover_result"})",
          R"({"type":"gateway_discover_result","instances":[{"meshId":"a"}]})",
          R"({"type":"gateway_discover_result","instances":[{"meshId":"a","name":"A",)"
          R"("publicRooms":[1]}]})",
          R"({"type":"gateway_incoming","fromMeshId":"a","fromMeshName":"A"})",
          R"({"type":"gateway_participants","remoteParticipants":[{"meshId":"a","meshName":"A"}]})",
          R"({"type":"gateway_ack","id":"x","status":"delivered"})",
          R"({"type":"gateway_ack","id":"x","status":"delivered","recipients":-1})",
          R"({"type":"gateway_ack","id":"x","status":"delivered","recipients":1.5})",
          R"({"type":"gateway_ack","id":"x","status":"delivered","recipients":1e2})",
          R"({"type":"gateway_ack","id":"x","status":"delivered","recipients":4294967296})",
          R"({"type":"gateway_ack","id":"x","status":"delivered","recipients":"1"})",
          R"({"type":"gateway_ack","id":"x","status":1,"recipients":1})",
          R"({"type":"gateway_auth_ok","meshId":0E193,"name":"A"})",
          R"({"type":"gateway_incoming","fromMeshId":"a","fromMeshName":"A","payload":{}} x)",
          R"({"type":"gateway_presence","meshId":"a","name":"A","status":"away"})",
      }) {
    EXPECT_FALSE(decodeServerFrame(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace mesh::proto
