// The flight recorder: its rings as a unit (growth, wrap, cut ids, idle
// logs dropped, memory), then GET /meshes/{id}/recent against a real relay
// for each outcome a node can meet.
#include <gtest/gtest.h>
#include <malloc.h>

#include "recorder.h"
#include "session.h"
#include "support/test_relay.h"

namespace mesh::test {
namespace {

using namespace std::chrono_literals;
using relay::FrameRecord;
using relay::InFrameKind;
using relay::MeshLog;
using relay::Outcome;
using relay::Recorder;
using relay::Session;
using relay::SessionState;

constexpr char kToken[] = "recorder-admin-token-0123456789";

void withAdminToken(relay::Config& c) {
  c.adminToken = kToken;
}

HttpResponse recent(const TestRelay& relay, const std::string& meshId,
                    const std::string& token = kToken) {
  return httpRequest(relay.port(), "GET", "/meshes/" + meshId + "/recent", {},
                     {"Authorization: Bearer " + token});
}

// The records of one mesh, oldest first; fails the test on a bad answer.
rapidjson::Document records(const TestRelay& relay, const std::string& meshId) {
  const auto r = recent(relay, meshId);
  EXPECT_EQ(r.status, 200) << r.body;
  auto doc = json(r.body);
  EXPECT_TRUE(doc.HasMember("records") && doc["records"].IsArray()) << r.body;
  return doc;
}

// The newest record matching `pred`, as text for messages; empty if none.
template <typename Pred>
const rapidjson::Value* newest(const rapidjson::Document& doc, Pred pred) {
  const auto& list = doc["records"];
  for (rapidjson::SizeType i = list.Size(); i-- > 0;) {
    if (pred(list[i])) return &list[i];
  }
  return nullptr;
}

std::string str(const rapidjson::Value& v, const char* key) {
  auto it = v.FindMember(key);
  return it != v.MemberEnd() && it->value.IsString() ? it->value.GetString() : "";
}

Session authenticated(const std::string& meshId, const std::string& peer = "192.0.2.7") {
  Session s;
  s.meshId = meshId;
  s.peer = peer;
  s.state = SessionState::Authenticated;
  return s;
}

// ---- the rings as a unit

TEST(Recorder, RingGrowsOnDemandAndKeepsTheLastN) {
  MeshLog log("m", 20);
  EXPECT_EQ(log.capacity(), 0u);
  FrameRecord r;
  r.atUs = 1;
  log.push(r);
  EXPECT_EQ(log.capacity(), 8u);  // a quiet mesh holds a small ring
  for (int i = 2; i <= 50; ++i) {
    r.atUs = i;
    log.push(r);
  }
  EXPECT_EQ(log.capacity(), 20u);
  ASSERT_EQ(log.size(), 20u);
  EXPECT_EQ(log.total(), 50u);
  for (std::size_t i = 0; i < log.size(); ++i) EXPECT_EQ(log.at(i).atUs, 31 + i);
}

TEST(Recorder, LongIdsAreCutOnACharacterBoundary) {
  FrameRecord r;
  // 23 ASCII bytes, then a two-byte character that does not fit in 24.
  const std::string id = std::string(23, 'a') + "\xc3\xa9" + "tail";
  r.setId(id);
  EXPECT_EQ(r.idView(), std::string(23, 'a'));
  EXPECT_TRUE(r.cut);
  FrameRecord exact;
  exact.setId(std::string(24, 'b'));
  EXPECT_EQ(exact.idView().size(), 24u);
  EXPECT_FALSE(exact.cut);
  std::string out;
  Recorder::appendRecord(out, r, 0, 1'700'000'000'000);
  EXPECT_EQ(jsonString(out, "id"), std::string(23, 'a'));
  EXPECT_TRUE(jsonBool(out, "truncated", false));
}

TEST(Recorder, OffRecordsNothingButStillCountsErrors) {
  Recorder off(0);
  Session s = authenticated("m");
  {
    const auto scope = off.inbound(s, 10, 1);
    off.decoded(InFrameKind::Relay, std::string("x"));
    off.error(s, proto::ErrorCode::RateLimited, std::nullopt, 1);
  }
  off.auth(s, "m", false, 2);
  EXPECT_EQ(off.logCount(), 0u);
  EXPECT_EQ(off.find("m"), nullptr);
  std::string page;
  relay::MetricsWriter w(page);
  off.renderMetrics(w);
  EXPECT_NE(page.find("mesh_relay_errors_sent_total{code=\"rate_limited\"} 1\n"), std::string::npos)
      << page;
}

TEST(Recorder, IdleLogsAreDroppedByAgeAndByCount) {
  Recorder rec(16);
  Session held = authenticated("held");
  rec.auth(held, "held", true, 1);  // a session holds this one
  for (int i = 0; i < 100; ++i) {
    Session gone = authenticated("gone-" + std::to_string(i));
    rec.auth(gone, gone.meshId, false, 1 + i);  // failures: nobody holds them
  }
  EXPECT_EQ(rec.logCount(), 101u);
  rec.expire(Recorder::kIdleKeepUs / 2);
  EXPECT_EQ(rec.logCount(), 101u);  // young enough
  rec.expire(Recorder::kIdleKeepUs + 50);
  // Idle logs older than the keep time are gone; the held one stays.
  EXPECT_NE(rec.find("held"), nullptr);
  EXPECT_EQ(rec.find("gone-10"), nullptr);
  EXPECT_NE(rec.find("gone-99"), nullptr);

  // A flood of made-up ids never grows the table far past the bound.
  for (std::size_t i = 0; i < 5 * Recorder::kMaxIdleLogs; ++i) {
    Session flood = authenticated("flood-" + std::to_string(i));
    rec.auth(flood, flood.meshId, false, Recorder::kIdleKeepUs + 100);
  }
  EXPECT_LE(rec.logCount(), 2 * Recorder::kMaxIdleLogs + 1);
  EXPECT_NE(rec.find("held"), nullptr);
}

// The memory figure in docs/benchmarks.md: heap bytes per mesh whose ring is
// full, measured with mallinfo2 around 1000 such meshes.
TEST(Recorder, MemoryPerFullMeshStaysNear22KiB) {
  constexpr int kMeshes = 1000;
  const std::size_t frames = relay::Config{}.recorderFrames;
  std::vector<Session> sessions;
  sessions.reserve(kMeshes);
  const auto before = mallinfo2().uordblks;
  Recorder rec(frames);
  for (int i = 0; i < kMeshes; ++i) {
    sessions.push_back(authenticated("memory-mesh-" + std::to_string(i)));
    Session& s = sessions.back();
    rec.auth(s, s.meshId, true, 1);
    for (std::size_t f = 0; f < frames; ++f) {
      const auto scope = rec.inbound(s, 100, 2);
      rec.decoded(InFrameKind::Relay, "id-" + std::to_string(f));
      rec.relayed(s, "target-mesh", nullptr, 80, 2);
    }
  }
  const auto after = mallinfo2().uordblks;
  const double perMesh = static_cast<double>(after - before) / kMeshes;
  std::printf("flight recorder: %.0f bytes per mesh with %zu records (record %zu bytes)\n", perMesh,
              frames, sizeof(FrameRecord));
  EXPECT_LT(perMesh, static_cast<double>(frames * sizeof(FrameRecord)) * 1.1);
  EXPECT_GE(static_cast<double>(rec.bytes()), static_cast<double>(frames * 88 * kMeshes));
}

// ---- against a real relay

TEST(RecorderRoute, NeedsTheAdminTokenAndAKnownMesh) {
  TestRelay relay(withAdminToken);
  auto a = relay.join("rec-known");
  EXPECT_EQ(httpRequest(relay.port(), "GET", "/meshes/rec-known/recent").status, 401);
  EXPECT_EQ(recent(relay, "rec-known", "wrong-token").status, 401);
  EXPECT_EQ(recent(relay, "nobody-here").status, 404);
  EXPECT_EQ(recent(relay, "bad*id").status, 404);  // not a meshId
  EXPECT_EQ(httpRequest(relay.port(), "POST", "/meshes/rec-known/recent", {},
                        {std::string("Authorization: Bearer ") + kToken})
                .status,
            405);
  const auto doc = records(relay, "rec-known");
  EXPECT_EQ(str(doc, "meshId"), "rec-known");
  EXPECT_EQ(doc["capacity"].GetUint(), 256u);
  // Its successful auth, with the address it came from.
  const auto* auth = newest(doc, [](const auto& r) { return str(r, "type") == "gateway_auth"; });
  ASSERT_NE(auth, nullptr);
  EXPECT_EQ(str(*auth, "outcome"), "ok");
  EXPECT_EQ(str(*auth, "address"), "127.0.0.1");
  EXPECT_EQ(str(*auth, "direction"), "in");
  EXPECT_FALSE(str(*auth, "time").empty());
}

TEST(RecorderRoute, RelayIsRecordedOnBothSidesWithoutPayload) {
  TestRelay relay(withAdminToken);
  auto a = relay.join("rec-a");
  auto b = relay.join("rec-b");
  a->sendText(
      R"({"type":"gateway_relay","id":"m-1","targetMeshId":"rec-b","payload":{"text":"secret words"}})");
  b->expectType("gateway_incoming");
  a->expectType("gateway_ack");
  a->sendText(R"({"type":"gateway_relay","id":"m-2","targetMeshId":"rec-gone","payload":{}})");
  a->expectType("gateway_ack");
  a->sendText(R"({"type":"gateway_broadcast","id":"m-3","payload":{}})");
  a->expectType("gateway_ack");

  const auto sent = records(relay, "rec-a");
  const auto* delivered = newest(sent, [](const auto& r) { return str(r, "id") == "m-1"; });
  ASSERT_NE(delivered, nullptr);
  EXPECT_EQ(str(*delivered, "type"), "gateway_relay");
  EXPECT_EQ(str(*delivered, "target"), "rec-b");
  EXPECT_EQ(str(*delivered, "outcome"), "delivered");
  EXPECT_GT((*delivered)["size"].GetUint(), 50u);
  const auto* offline = newest(sent, [](const auto& r) { return str(r, "id") == "m-2"; });
  ASSERT_NE(offline, nullptr);
  EXPECT_EQ(str(*offline, "outcome"), "offline");
  EXPECT_EQ(str(*offline, "target"), "rec-gone");
  const auto* broadcast = newest(sent, [](const auto& r) { return str(r, "id") == "m-3"; });
  ASSERT_NE(broadcast, nullptr);
  EXPECT_EQ((*broadcast)["recipients"].GetUint(), 1u);

  const auto got = records(relay, "rec-b");
  const auto* incoming = newest(got, [](const auto& r) { return str(r, "id") == "m-1"; });
  ASSERT_NE(incoming, nullptr);
  EXPECT_EQ(str(*incoming, "direction"), "out");
  EXPECT_EQ(str(*incoming, "type"), "gateway_incoming");
  EXPECT_EQ(str(*incoming, "from"), "rec-a");
  EXPECT_EQ(str(*incoming, "outcome"), "delivered");

  // Never a payload byte or a credential.
  const auto raw = recent(relay, "rec-a").body + recent(relay, "rec-b").body;
  EXPECT_EQ(raw.find("secret words"), std::string::npos);
  EXPECT_EQ(raw.find(TestRelay::secretFor("rec-a")), std::string::npos);
  EXPECT_EQ(raw.find("resumeToken"), std::string::npos);
}

TEST(RecorderRoute, RefusalsCarryTheirErrorCode) {
  TestRelay relay([](relay::Config& c) {
    withAdminToken(c);
    c.rateLimit = 1;
    c.rateBurst = 1;
    c.limits.maxFrameBytes = 1024;
  });
  auto a = relay.join("rec-refused");
  auto b = relay.join("rec-other");
  const std::string frame =
      R"({"type":"gateway_relay","id":"rl","targetMeshId":"rec-other","payload":{}})";
  a->sendText(frame);
  a->expectType("gateway_ack");
  a->sendText(frame);
  EXPECT_EQ(jsonString(a->expectType("error"), "code"), "rate_limited");
  a->sendText(std::string(2000, ' '));
  EXPECT_EQ(jsonString(a->expectType("error"), "code"), "frame_too_large");
  a->sendText(R"({"type":"gateway_relay","id":"bad"})");
  EXPECT_EQ(jsonString(a->expectType("error"), "code"), "invalid_frame");

  const auto doc = records(relay, "rec-refused");
  const auto* limited =
      newest(doc, [](const auto& r) { return str(r, "outcome") == "rate_limited"; });
  ASSERT_NE(limited, nullptr);
  EXPECT_EQ(str(*limited, "id"), "rl");
  EXPECT_EQ(str(*limited, "type"), "gateway_relay");
  const auto* large =
      newest(doc, [](const auto& r) { return str(r, "outcome") == "frame_too_large"; });
  ASSERT_NE(large, nullptr);
  EXPECT_EQ(str(*large, "type"), "too_large");
  const auto* invalid =
      newest(doc, [](const auto& r) { return str(r, "outcome") == "invalid_frame"; });
  ASSERT_NE(invalid, nullptr);
  EXPECT_EQ(str(*invalid, "id"), "bad");

  const auto page = httpRequest(relay.port(), "GET", "/metrics").body;
  EXPECT_NE(page.find("mesh_relay_errors_sent_total{code=\"rate_limited\"} 1\n"),
            std::string::npos);
  EXPECT_NE(page.find("mesh_relay_errors_sent_total{code=\"frame_too_large\"} 1\n"),
            std::string::npos);
  expectRelayStillServes(relay);
}

TEST(RecorderRoute, AuthFailureIsRecordedAgainstTheClaimedIdWithItsAddress) {
  TestRelay relay(withAdminToken);
  ASSERT_EQ(relay.registerMesh("rec-victim", TestRelay::secretFor("rec-victim"), "V"), 201);
  {
    auto c = WsClient::connect(relay.port(), fromAddress("127.0.0.3"));
    c->sendText(
        R"({"type":"gateway_auth","meshId":"rec-victim","secret":"guessed-secret-0123456789"})");
    EXPECT_EQ(c->expectClose(3000ms), 1008);
  }
  {
    // An id nobody registered answers too: someone is trying it.
    auto c = WsClient::connect(relay.port());
    c->sendText(R"({"type":"gateway_auth","meshId":"rec-unknown","secret":"x-secret-0123456789"})");
    EXPECT_EQ(c->expectClose(3000ms), 1008);
  }
  const auto doc = records(relay, "rec-victim");
  ASSERT_EQ(doc["records"].Size(), 1u);
  const auto& r = doc["records"][0];
  EXPECT_EQ(str(r, "type"), "gateway_auth");
  EXPECT_EQ(str(r, "outcome"), "invalid_credentials");
  EXPECT_EQ(str(r, "address"), "127.0.0.3");
  const auto body = recent(relay, "rec-victim").body;
  EXPECT_EQ(body.find("guessed-secret"), std::string::npos);
  EXPECT_EQ(records(relay, "rec-unknown")["records"].Size(), 1u);
  expectRelayStillServes(relay);
}

TEST(RecorderRoute, AuthRefusedByASpentBudgetIsRecordedAsRateLimited) {
  TestRelay relay([](relay::Config& c) {
    withAdminToken(c);
    c.authFailureBurst = 1;
    c.authFailureRate = 0.001;
  });
  ASSERT_EQ(relay.registerMesh("rec-guarded", TestRelay::secretFor("rec-guarded"), "G"), 201);
  for (int i = 0; i < 2; ++i) {
    auto c = WsClient::connect(relay.port(), fromAddress("127.0.0.4"));
    c->sendText(
        R"({"type":"gateway_auth","meshId":"rec-guarded","secret":"guessed-secret-0123456789"})");
    EXPECT_EQ(c->expectClose(3000ms), 1008);
  }
  const auto doc = records(relay, "rec-guarded");
  ASSERT_EQ(doc["records"].Size(), 2u);
  EXPECT_EQ(str(doc["records"][0], "outcome"), "invalid_credentials");
  EXPECT_EQ(str(doc["records"][1], "outcome"), "rate_limited");
  EXPECT_EQ(str(doc["records"][1], "address"), "127.0.0.4");
  expectRelayStillServes(relay);
}

TEST(RecorderRoute, SlowConsumerIsRecordedOnBothSides) {
  TestRelay relay([](relay::Config& c) {
    withAdminToken(c);
    c.maxSendQueueBytes = 64 * 1024;
    c.rateLimit = 0;
  });
  auto fast = relay.join("rec-fast");
  auto slow = relay.join("rec-slow");
  ASSERT_TRUE(relayUntilSlowConsumerIsClosed(relay, *fast, "rec-slow"));
  const auto sender = records(relay, "rec-fast");
  EXPECT_NE(newest(sender, [](const auto& r) { return str(r, "outcome") == "slow_consumer"; }),
            nullptr);
  const auto receiver = records(relay, "rec-slow");
  const auto* dropped =
      newest(receiver, [](const auto& r) { return str(r, "outcome") == "slow_consumer"; });
  ASSERT_NE(dropped, nullptr);
  EXPECT_EQ(str(*dropped, "direction"), "out");
  EXPECT_EQ(str(*dropped, "type"), "gateway_incoming");
  expectRelayStillServes(relay);
}

TEST(RecorderRoute, MeshListCarriesFramesAndTheLastRefusal) {
  TestRelay relay(withAdminToken);
  auto a = relay.join("rec-listed");
  ASSERT_EQ(relay.registerMesh("rec-quiet", TestRelay::secretFor("rec-quiet"), "Q"), 201);
  a->sendText(R"({"type":"gateway_relay","id":"x"})");
  a->expectType("error");
  const auto r = httpRequest(relay.port(), "GET", "/meshes", {},
                             {std::string("Authorization: Bearer ") + kToken});
  ASSERT_EQ(r.status, 200);
  const auto doc = json(r.body);
  bool sawListed = false;
  for (const auto& m : doc["meshes"].GetArray()) {
    const std::string id = m["meshId"].GetString();
    if (id == "rec-quiet") {
      EXPECT_FALSE(m.HasMember("since"));
      EXPECT_FALSE(m.HasMember("frames"));
      EXPECT_FALSE(m.HasMember("lastRefusal"));
      continue;
    }
    sawListed = true;
    EXPECT_TRUE(m["since"].IsString());
    EXPECT_EQ(m["frames"].GetUint(), 2u);  // the auth and the refused frame
    EXPECT_EQ(str(m["lastRefusal"], "code"), "invalid_frame");
    EXPECT_TRUE(m["lastRefusal"]["time"].IsString());
  }
  EXPECT_TRUE(sawListed);
}

TEST(RecorderRoute, ZeroFramesTurnsItOff) {
  TestRelay relay([](relay::Config& c) {
    withAdminToken(c);
    c.recorderFrames = 0;
  });
  auto a = relay.join("rec-off");
  a->sendText(R"({"type":"gateway_relay","id":"x","targetMeshId":"nobody","payload":{}})");
  a->expectType("gateway_ack");
  const auto doc = records(relay, "rec-off");
  EXPECT_EQ(doc["capacity"].GetUint(), 0u);
  EXPECT_EQ(doc["records"].Size(), 0u);
}

TEST(RecorderRoute, KeepsOnlyTheLastFramesAndSurvivesAReconnect) {
  TestRelay relay([](relay::Config& c) {
    withAdminToken(c);
    c.recorderFrames = 4;
    c.rateLimit = 0;
  });
  {
    auto a = relay.join("rec-ring");
    for (int i = 0; i < 10; ++i) {
      a->sendText(R"({"type":"gateway_relay","id":"n)" + std::to_string(i) +
                  R"(","targetMeshId":"nobody","payload":{}})");
      a->expectType("gateway_ack");
    }
    a->close();
  }
  const auto doc = records(relay, "rec-ring");
  ASSERT_EQ(doc["records"].Size(), 4u);
  EXPECT_EQ(str(doc["records"][0], "id"), "n6");
  EXPECT_EQ(str(doc["records"][3], "id"), "n9");
  EXPECT_EQ(doc["total"].GetUint(), 11u);  // with the auth
  // Still there once the mesh is gone, and shared by its next connection.
  auto again = relay.connectAs("rec-ring", TestRelay::secretFor("rec-ring"));
  const auto after = records(relay, "rec-ring");
  EXPECT_EQ(str(after["records"][3], "type"), "gateway_auth");
  EXPECT_EQ(str(after["records"][2], "id"), "n9");
}

}  // namespace
}  // namespace mesh::test
