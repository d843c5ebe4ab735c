// The /gateway WebSocket against a real relay: every frame of Part A, the
// Part B additions, and every error code followed by proof that the relay
// still serves other meshes.
#include <gtest/gtest.h>

#include <thread>

#include "support/test_relay.h"

namespace mesh::test {
namespace {

using namespace std::chrono_literals;

std::string errorCodeOf(const std::string& frame) {
  return jsonString(frame, "code");
}

// Frames other than presence announcements (which arrive whenever a helper
// mesh joins).
std::vector<std::string> withoutPresence(const std::vector<std::string>& frames) {
  std::vector<std::string> out;
  for (const auto& f : frames) {
    if (jsonString(f, "type") != "gateway_presence") out.push_back(f);
  }
  return out;
}

TEST(Gateway, AuthOkCarriesRegisteredNameAndResumeToken) {
  TestRelay relay;
  std::string ok;
  auto c = relay.join("mesh-a", "", &ok);
  auto d = json(ok);
  EXPECT_STREQ(d["meshId"].GetString(), "mesh-a");
  EXPECT_STREQ(d["name"].GetString(), "Mesh mesh-a");
  EXPECT_EQ(std::string(d["resumeToken"].GetString()).size(), 43u);
  EXPECT_TRUE(d.HasMember("resumeExpiresAt"));
}

TEST(Gateway, WrongSecretIsInvalidCredentialsAndClose1008) {
  TestRelay relay;
  ASSERT_EQ(relay.registerMesh("mesh-a", TestRelay::secretFor("mesh-a"), "A"), 201);
  for (const char* frame :
       {R"({"type":"gateway_auth","meshId":"mesh-a","secret":"wrong-secret-0000"})",
        R"({"type":"gateway_auth","meshId":"nobody","secret":"wrong-secret-0000"})",
        R"({"type":"gateway_auth","meshId":"bad id!","secret":"wrong-secret-0000"})"}) {
    auto c = WsClient::connect(relay.port());
    c->sendText(frame);
    auto err = c->expectType("gateway_auth_error");
    EXPECT_EQ(errorCodeOf(err), "invalid_credentials") << frame;
    EXPECT_EQ(jsonString(err, "message"), "Invalid credentials");
    EXPECT_EQ(c->expectClose(), 1008);
  }
  expectRelayStillServes(relay);
}

TEST(Gateway, AuthTimeoutClosesWith1008) {
  TestRelay relay([](relay::Config& c) { c.authTimeoutSeconds = 0.3; });
  auto c = WsClient::connect(relay.port());
  auto err = c->expectType("gateway_auth_error", 3000ms);
  EXPECT_EQ(errorCodeOf(err), "auth_timeout");
  EXPECT_EQ(c->expectClose(), 1008);
  expectRelayStillServes(relay);
}

// The auth timeout is for a node that sends nothing: one whose secret is
// still being hashed (a long Argon2 queue after a restart) is not cut off.
TEST(Gateway, AuthTimeoutSparesANodeWaitingForItsSecretCheck) {
  TestRelay relay([](relay::Config& c) {
    c.authTimeoutSeconds = 0.3;
    c.argon2OpsLimit = 4;  // several times the auth timeout per check
    c.argon2MemLimit = 128u * 1024u * 1024u;
  });
  // Registering hashes at the same cost: allow for a busy machine.
  const std::string body = R"({"meshId":"mesh-slow","secret":")" +
                           TestRelay::secretFor("mesh-slow") + R"(","name":"Slow"})";
  ASSERT_EQ(httpRequest(relay.port(), "POST", "/register", body, {}, "127.0.0.1", 60000ms).status,
            201);
  auto c = WsClient::connect(relay.port());
  const auto start = std::chrono::steady_clock::now();
  c->sendText(R"({"type":"gateway_auth","meshId":"mesh-slow","secret":")" +
              TestRelay::secretFor("mesh-slow") + "\"}");
  EXPECT_NO_THROW(c->expectType("gateway_auth_ok", 30000ms));
  const auto took = std::chrono::steady_clock::now() - start;
  // Only meaningful when the check outlasted the timeout (it normally does).
  if (took < 400ms) GTEST_LOG_(INFO) << "secret check was faster than the auth timeout";
}

TEST(Gateway, FrameBeforeAuthIsNotAuthenticatedAndStaysOpen) {
  TestRelay relay;
  auto c = WsClient::connect(relay.port());
  c->sendText(R"({"type":"gateway_discover","id":"d1"})");
  auto err = c->expectType("gateway_auth_error");
  EXPECT_EQ(errorCodeOf(err), "not_authenticated");
  EXPECT_EQ(jsonString(err, "message"), "Not authenticated");
  EXPECT_EQ(jsonString(err, "id"), "d1");
  ASSERT_EQ(relay.registerMesh("mesh-a", TestRelay::secretFor("mesh-a"), "A"), 201);
  c->sendText(R"({"type":"gateway_auth","meshId":"mesh-a","secret":")" +
              TestRelay::secretFor("mesh-a") + "\"}");
  EXPECT_NO_THROW(c->expectType("gateway_auth_ok"));
}

TEST(Gateway, SecondAuthIsAlreadyAuthenticated) {
  TestRelay relay;
  auto c = relay.join("mesh-a");
  c->sendText(R"({"type":"gateway_auth","meshId":"mesh-a","secret":")" +
              TestRelay::secretFor("mesh-a") + "\"}");
  EXPECT_EQ(errorCodeOf(c->expectType("error")), "already_authenticated");
  expectRelayStillServes(relay);
  EXPECT_TRUE(withoutPresence(framesUntilProbe(*c)).empty());
}

TEST(Gateway, DiscoverListsEveryOnlineMeshWithRooms) {
  TestRelay relay;
  auto a = relay.join("mesh-a", R"("publicRooms":["general","dev"])");
  auto b = relay.join("mesh-b");
  a->sendText(R"({"type":"gateway_discover"})");
  auto d = json(a->expectType("gateway_discover_result"));
  ASSERT_TRUE(d["instances"].IsArray());
  std::map<std::string, std::string> rooms;
  for (auto& inst : d["instances"].GetArray()) {
    std::string r;
    for (auto& room : inst["publicRooms"].GetArray()) r += std::string(room.GetString()) + ",";
    rooms[inst["meshId"].GetString()] = r;
    EXPECT_TRUE(inst.HasMember("name"));
  }
  EXPECT_EQ(rooms.size(), 2u);
  EXPECT_EQ(rooms["mesh-a"], "general,dev,");
  EXPECT_EQ(rooms["mesh-b"], "");

  a->sendText(R"({"type":"gateway_update_rooms","publicRooms":["ops"]})");
  // The two connections are not ordered with each other: wait until the
  // relay has handled a's update before b asks.
  framesUntilProbe(*a);
  b->sendText(R"({"type":"gateway_discover","id":"q"})");
  auto d2 = json(b->expectType("gateway_discover_result"));
  EXPECT_STREQ(d2["id"].GetString(), "q");
  for (auto& inst : d2["instances"].GetArray()) {
    if (std::string(inst["meshId"].GetString()) == "mesh-a") {
      ASSERT_EQ(inst["publicRooms"].Size(), 1u);
      EXPECT_STREQ(inst["publicRooms"][0].GetString(), "ops");
    }
  }
}

TEST(Gateway, RelayDeliversPayloadBytesAndSessionIdentity) {
  TestRelay relay;
  auto a = relay.join("mesh-a");
  auto b = relay.join("mesh-b");
  // Whitespace, key order, escapes and numbers exactly as sent.
  const std::string payload = R"({ "z":1, "a" : [1.50, "\u00e9", {"k":null}], "s":"\"q\"" })";
  a->sendText(R"({"type":"gateway_relay","fromMeshId":"evil","fromMeshName":"Evil",)"
              R"("targetMeshId":"mesh-b","payload":)" +
              payload + "}");
  const std::string in = b->expectType("gateway_incoming");
  auto d = json(in);
  EXPECT_STREQ(d["fromMeshId"].GetString(), "mesh-a");
  EXPECT_STREQ(d["fromMeshName"].GetString(), "Mesh mesh-a");
  EXPECT_NE(in.find("\"payload\":" + payload), std::string::npos) << in;
  EXPECT_FALSE(d.HasMember("id"));
  // No ack without an id.
  EXPECT_TRUE(withoutPresence(framesUntilProbe(*a)).empty());
}

TEST(Gateway, RelayWithIdIsAckedAndIdForwarded) {
  TestRelay relay;
  auto a = relay.join("mesh-a");
  auto b = relay.join("mesh-b");
  a->sendText(R"({"type":"gateway_relay","id":"m-1","targetMeshId":"mesh-b","payload":{}})");
  auto ack = json(a->expectType("gateway_ack"));
  EXPECT_STREQ(ack["id"].GetString(), "m-1");
  EXPECT_STREQ(ack["status"].GetString(), "delivered");
  EXPECT_EQ(ack["recipients"].GetUint(), 1u);
  EXPECT_EQ(jsonString(b->expectType("gateway_incoming"), "id"), "m-1");
}

TEST(Gateway, RelayToOfflineMeshIsDroppedOrAckedOffline) {
  TestRelay relay;
  auto a = relay.join("mesh-a");
  ASSERT_EQ(relay.registerMesh("mesh-off", TestRelay::secretFor("mesh-off"), "Off"), 201);
  a->sendText(R"({"type":"gateway_relay","targetMeshId":"mesh-off","payload":{}})");
  EXPECT_TRUE(framesUntilProbe(*a).empty());  // silent, as the original
  for (const char* target : {"mesh-off", "never-registered"}) {
    a->sendText(std::string(R"({"type":"gateway_relay","id":"x","targetMeshId":")") + target +
                R"(","payload":{}})");
    auto ack = json(a->expectType("gateway_ack"));
    EXPECT_STREQ(ack["status"].GetString(), "offline");
    EXPECT_EQ(ack["recipients"].GetUint(), 0u);
  }
}

TEST(Gateway, BroadcastReachesEveryoneButTheSender) {
  TestRelay relay;
  auto a = relay.join("mesh-a");
  auto b = relay.join("mesh-b");
  auto c = relay.join("mesh-c");
  a->sendText(R"({"type":"gateway_broadcast","id":"b1","payload":{"hello":true}})");
  auto ack = json(a->expectType("gateway_ack"));
  EXPECT_EQ(ack["recipients"].GetUint(), 2u);
  for (auto* r : {b.get(), c.get()}) {
    auto in = json(r->expectType("gateway_incoming"));
    EXPECT_STREQ(in["fromMeshId"].GetString(), "mesh-a");
    EXPECT_TRUE(in["payload"]["hello"].GetBool());
  }
  for (const auto& f : framesUntilProbe(*a)) {
    EXPECT_NE(jsonString(f, "type"), "gateway_incoming") << f;
  }
}

TEST(Gateway, BroadcastAloneIsDeliveredToNobody) {
  TestRelay relay;
  auto a = relay.join("mesh-a");
  a->sendText(R"({"type":"gateway_broadcast","id":"b1","payload":{}})");
  auto ack = json(a->expectType("gateway_ack"));
  EXPECT_STREQ(ack["status"].GetString(), "delivered");
  EXPECT_EQ(ack["recipients"].GetUint(), 0u);
}

TEST(Gateway, ParticipantsAreExchangedOnAuthAndUpdate) {
  TestRelay relay;
  auto a = relay.join("mesh-a", R"("participants":[{"id":"u1","name":"Ann","type":"human"}])");
  auto silent = relay.join("mesh-s");  // no participants: not listed
  // The newcomer learns a's list; a learns the newcomer's.
  auto b = relay.join("mesh-b", R"("participants":[{"id":"u2","name":"Bob","type":"agent"}])");
  auto toB = json(b->expectType("gateway_participants"));
  ASSERT_EQ(toB["remoteParticipants"].Size(), 1u);
  EXPECT_STREQ(toB["remoteParticipants"][0]["meshId"].GetString(), "mesh-a");
  EXPECT_STREQ(toB["remoteParticipants"][0]["meshName"].GetString(), "Mesh mesh-a");
  EXPECT_STREQ(toB["remoteParticipants"][0]["participants"][0]["name"].GetString(), "Ann");
  auto toA = json(a->expectType("gateway_participants"));
  EXPECT_STREQ(toA["remoteParticipants"][0]["meshId"].GetString(), "mesh-b");
  // A mesh without participants still hears about everybody else's.
  auto first = json(silent->expectType("gateway_participants"));
  EXPECT_STREQ(first["remoteParticipants"][0]["meshId"].GetString(), "mesh-a");
  auto second = json(silent->expectType("gateway_participants"));
  EXPECT_STREQ(second["remoteParticipants"][0]["meshId"].GetString(), "mesh-b");
}

TEST(Gateway, UpdateParticipantsIsPushedToOthersEvenWhenEmpty) {
  TestRelay relay;
  auto a = relay.join("mesh-a");
  auto b = relay.join("mesh-b");
  a->sendText(R"({"type":"gateway_update_participants","participants":[{"id":"u1"}]})");
  auto p = json(b->expectType("gateway_participants"));
  EXPECT_EQ(p["remoteParticipants"][0]["participants"].Size(), 1u);
  a->sendText(R"({"type":"gateway_update_participants","participants":[]})");
  auto empty = json(b->expectType("gateway_participants"));
  EXPECT_EQ(empty["remoteParticipants"][0]["participants"].Size(), 0u);
  for (const auto& f : framesUntilProbe(*a)) {
    EXPECT_NE(jsonString(f, "type"), "gateway_participants") << "sender got its own list";
  }
}

TEST(Gateway, PresenceAnnouncesOnlineAndOfflineToWatchers) {
  TestRelay relay;
  auto a = relay.join("mesh-a", R"("presence":true)");
  auto quiet = relay.join("mesh-q");
  EXPECT_STREQ(json(a->expectType("gateway_presence"))["meshId"].GetString(), "mesh-q");
  auto b = relay.join("mesh-b", R"("presence":true)");
  auto on = json(a->expectType("gateway_presence"));
  EXPECT_STREQ(on["meshId"].GetString(), "mesh-b");
  EXPECT_STREQ(on["name"].GetString(), "Mesh mesh-b");
  EXPECT_STREQ(on["status"].GetString(), "online");
  // The newcomer is not told who was there before.
  for (const auto& f : framesUntilProbe(*b)) EXPECT_NE(jsonString(f, "type"), "gateway_presence");
  b->close();
  auto off = json(a->expectType("gateway_presence"));
  EXPECT_STREQ(off["meshId"].GetString(), "mesh-b");
  EXPECT_STREQ(off["status"].GetString(), "offline");
  // A node that did not ask (every node that knows only Part A) gets none.
  for (const auto& f : framesUntilProbe(*quiet)) {
    EXPECT_NE(jsonString(f, "type"), "gateway_presence") << f;
  }
}

TEST(Gateway, PresenceThatIsNotABooleanIsInvalidFrame) {
  TestRelay relay;
  relay.registerMesh("mesh-p", TestRelay::secretFor("mesh-p"), "P");
  auto c = WsClient::connect(relay.port(), onPath("/gateway"));
  c->sendText(R"({"type":"gateway_auth","meshId":"mesh-p","secret":")" +
              TestRelay::secretFor("mesh-p") + R"(","presence":"yes"})");
  auto err = c->expectType("error");
  EXPECT_EQ(errorCodeOf(err), "invalid_frame");
  EXPECT_NE(err.find("presence"), std::string::npos) << err;
  expectRelayStillServes(relay);
}

TEST(Gateway, TakeoverClosesOlderConnectionWithoutPresence) {
  TestRelay relay;
  auto watcher = relay.join("mesh-w", R"("presence":true)");
  auto first = relay.join("mesh-a");
  EXPECT_EQ(jsonString(watcher->expectType("gateway_presence"), "status"), "online");
  auto second = relay.connectAs("mesh-a", TestRelay::secretFor("mesh-a"));
  EXPECT_EQ(errorCodeOf(first->expectType("error")), "session_replaced");
  EXPECT_EQ(first->expectClose(), 4000);
  // The newer connection is the one that receives.
  watcher->sendText(R"({"type":"gateway_relay","targetMeshId":"mesh-a","payload":{"n":2}})");
  EXPECT_NO_THROW(second->expectType("gateway_incoming"));
  for (const auto& f : framesUntilProbe(*watcher)) {
    EXPECT_NE(jsonString(f, "type"), "gateway_presence") << f;
  }
  auto health = httpRequest(relay.port(), "GET", "/health");
  EXPECT_EQ(health.body, R"({"ok":true,"connected":2})");
}

TEST(Gateway, ResumeTokenReconnectsAndEachAuthRotatesIt) {
  TestRelay relay;
  std::string ok1;
  auto first = relay.join("mesh-a", "", &ok1);
  const std::string token1 = jsonString(ok1, "resumeToken");
  first->close();

  auto byToken = WsClient::connect(relay.port());
  byToken->sendText(R"({"type":"gateway_auth","meshId":"mesh-a","resumeToken":")" + token1 + "\"}");
  const std::string ok2 = byToken->expectType("gateway_auth_ok");
  const std::string token2 = jsonString(ok2, "resumeToken");
  EXPECT_NE(token1, token2);
  byToken->close();

  // The old token died when the new one was issued.
  auto stale = WsClient::connect(relay.port());
  stale->sendText(R"({"type":"gateway_auth","meshId":"mesh-a","resumeToken":")" + token1 + "\"}");
  EXPECT_EQ(errorCodeOf(stale->expectType("gateway_auth_error")), "invalid_credentials");
  EXPECT_EQ(stale->expectClose(), 1008);

  // A bad token with a good secret falls back to the secret.
  auto both = WsClient::connect(relay.port());
  both->sendText(R"({"type":"gateway_auth","meshId":"mesh-a","resumeToken":")" + token1 +
                 R"(","secret":")" + TestRelay::secretFor("mesh-a") + "\"}");
  EXPECT_NO_THROW(both->expectType("gateway_auth_ok"));
}

TEST(Gateway, ResumeTokenIsRejectedAfterExpiry) {
  TestRelay relay([](relay::Config& c) { c.resumeTokenTtlSeconds = 1; });
  std::string ok;
  auto first = relay.join("mesh-a", "", &ok);
  first->close();
  std::this_thread::sleep_for(1200ms);  // the token's lifetime, not a synchronisation
  auto late = WsClient::connect(relay.port());
  late->sendText(R"({"type":"gateway_auth","meshId":"mesh-a","resumeToken":")" +
                 jsonString(ok, "resumeToken") + "\"}");
  EXPECT_EQ(errorCodeOf(late->expectType("gateway_auth_error")), "invalid_credentials");
  expectRelayStillServes(relay);
}

TEST(Gateway, FramesSentDuringAuthAreAnsweredAfterIt) {
  TestRelay relay;
  auto b = relay.join("mesh-b");
  ASSERT_EQ(relay.registerMesh("mesh-a", TestRelay::secretFor("mesh-a"), "A"), 201);
  auto a = WsClient::connect(relay.port());
  a->sendText(R"({"type":"gateway_auth","meshId":"mesh-a","secret":")" +
              TestRelay::secretFor("mesh-a") + "\"}");
  a->sendText(R"({"type":"gateway_relay","id":"early","targetMeshId":"mesh-b","payload":{}})");
  EXPECT_NO_THROW(a->expectType("gateway_auth_ok"));
  EXPECT_EQ(jsonString(a->expectType("gateway_ack"), "status"), "delivered");
  EXPECT_EQ(jsonString(b->expectType("gateway_incoming"), "id"), "early");
}

TEST(GatewayErrors, MalformedFramesAnswerAndKeepTheConnection) {
  TestRelay relay;
  auto a = relay.join("mesh-a");
  struct Case {
    std::string frame;
    std::string code;
  };
  const std::vector<Case> cases = {
      {"not json", "invalid_json"},
      {"[1,2]", "invalid_json"},
      {"{}", "invalid_frame"},
      {R"({"type":7})", "invalid_frame"},
      {R"({"type":"gateway_relay","targetMeshId":"b"})", "invalid_frame"},
      {R"({"type":"gateway_teleport"})", "unknown_type"},
  };
  for (const auto& c : cases) {
    a->sendText(c.frame);
    auto err = a->expectType("error");
    EXPECT_EQ(errorCodeOf(err), c.code) << c.frame;
    EXPECT_FALSE(jsonString(err, "message").empty());
  }
  a->sendText(R"({"type":"gateway_relay","id":"r9","targetMeshId":"b","payload":"str"})");
  auto err = a->expectType("error");
  EXPECT_EQ(jsonString(err, "id"), "r9");
  EXPECT_NE(jsonString(err, "message").find("payload"), std::string::npos);
  EXPECT_TRUE(framesUntilProbe(*a).empty());
  expectRelayStillServes(relay);
}

TEST(GatewayErrors, BinaryFrameIsUnsupported) {
  TestRelay relay;
  auto a = relay.join("mesh-a");
  a->sendBinary(R"({"type":"gateway_discover"})");
  EXPECT_EQ(errorCodeOf(a->expectType("error")), "unsupported_frame");
  EXPECT_TRUE(framesUntilProbe(*a).empty());
  expectRelayStillServes(relay);
}

TEST(GatewayErrors, OversizedFrameIsRefusedUnparsed) {
  TestRelay relay([](relay::Config& c) { c.limits.maxFrameBytes = 1024; });
  auto a = relay.join("mesh-a");
  auto b = relay.join("mesh-b");
  const std::string big = R"({"type":"gateway_relay","id":"big","targetMeshId":"mesh-b",)"
                          R"("payload":{"pad":")" +
                          std::string(4000, 'x') + "\"}}";
  a->sendText(big);
  auto err = a->expectType("error");
  EXPECT_EQ(errorCodeOf(err), "frame_too_large");
  EXPECT_EQ(jsonString(err, "id"), "");
  // Also when it arrives as several fragments.
  a->sendFrame(0x1, big.substr(0, 600), false);
  a->sendFrame(0x0, big.substr(600, 600), false);
  a->sendFrame(0x0, big.substr(1200), true);
  EXPECT_EQ(errorCodeOf(a->expectType("error")), "frame_too_large");
  // A fragmented frame under the limit is reassembled.
  const std::string ok = R"({"type":"gateway_relay","targetMeshId":"mesh-b","payload":{"f":1}})";
  a->sendFrame(0x1, ok.substr(0, 10), false);
  a->sendFrame(0x0, ok.substr(10), true);
  EXPECT_NO_THROW(b->expectType("gateway_incoming"));
  for (const auto& f : framesUntilProbe(*b)) EXPECT_NE(jsonString(f, "type"), "gateway_incoming");
  expectRelayStillServes(relay);
}

TEST(GatewayErrors, InvalidUtf8ClosesWith1007) {
  TestRelay relay;
  auto a = relay.join("mesh-a");
  a->sendText(std::string("{\"type\":\"gateway_discover\",\"id\":\"\xff\xfe\"}"));
  EXPECT_EQ(a->expectClose(), 1007);
  expectRelayStillServes(relay);
}

TEST(GatewayErrors, RateLimitRefusesThenClosesPersistentOffenders) {
  TestRelay relay([](relay::Config& c) {
    c.rateLimit = 1;
    c.rateBurst = 3;
  });
  auto a = relay.join("mesh-a");
  auto b = relay.join("mesh-b");
  const std::string frame =
      R"({"type":"gateway_relay","id":"r","targetMeshId":"mesh-b","payload":{}})";
  for (int i = 0; i < 3; ++i) {
    a->sendText(frame);
    EXPECT_EQ(jsonString(a->expectType("gateway_ack"), "status"), "delivered");
  }
  a->sendText(frame);
  auto err = a->expectType("error");
  EXPECT_EQ(errorCodeOf(err), "rate_limited");
  EXPECT_EQ(jsonString(err, "id"), "r");
  // Refusals in a row beyond the burst close the connection.
  for (int i = 0; i < 5; ++i) a->sendText(frame);
  EXPECT_EQ(a->expectClose(), 1008);
  // The bucket belongs to the mesh: reconnecting does not refill it.
  auto again = relay.connectAs("mesh-a", TestRelay::secretFor("mesh-a"));
  again->sendText(frame);
  EXPECT_EQ(errorCodeOf(again->expectType("error")), "rate_limited");
  // Other meshes are not affected.
  b->sendText(R"({"type":"gateway_relay","id":"rb","targetMeshId":"mesh-a","payload":{}})");
  EXPECT_EQ(jsonString(b->expectType("gateway_ack"), "status"), "delivered");
}

TEST(GatewayErrors, SlowConsumerIsClosedWith1013) {
  TestRelay relay([](relay::Config& c) {
    c.maxSendQueueBytes = 64 * 1024;
    c.rateLimit = 0;
  });
  auto fast = relay.join("mesh-fast");
  auto slow = relay.join("mesh-slow");
  // mesh-slow never reads; fill its socket buffers and then its queue.
  EXPECT_TRUE(relayUntilSlowConsumerIsClosed(relay, *fast, "mesh-slow"));
  // What was queued is dropped; the last frame before the close says why.
  std::string lastText;
  WsMessage m;
  while ((m = slow->recv(10000ms)).kind == WsMessage::Kind::Text) lastText = m.data;
  ASSERT_EQ(m.kind, WsMessage::Kind::Close);
  EXPECT_EQ(m.closeCode, 1013);
  EXPECT_EQ(jsonString(lastText, "type"), "error");
  EXPECT_EQ(jsonString(lastText, "code"), "slow_consumer");
  expectRelayStillServes(relay);
}

TEST(GatewayErrors, TooManyUnauthenticatedFromOneAddressAreRefused) {
  TestRelay relay([](relay::Config& c) { c.maxUnauthenticatedPerIp = 2; });
  // Registered first: with two unauthenticated connections open, any further
  // connection from the address (an HTTP request too) is turned away.
  ASSERT_EQ(relay.registerMesh("mesh-a", TestRelay::secretFor("mesh-a"), "A"), 201);
  auto c1 = WsClient::connect(relay.port());
  auto c2 = WsClient::connect(relay.port());
  EXPECT_THROW(WsClient::connect(relay.port()), std::runtime_error);
  // Another source address still gets in.
  EXPECT_NO_THROW(WsClient::connect(relay.port(), fromAddress("127.0.0.3")));
  // Authenticating frees the slot.
  c1->sendText(R"({"type":"gateway_auth","meshId":"mesh-a","secret":")" +
               TestRelay::secretFor("mesh-a") + "\"}");
  c1->expectType("gateway_auth_ok");
  EXPECT_NO_THROW(WsClient::connect(relay.port()));
}

TEST(Gateway, SilentPeerIsDroppedAfterPingTimeout) {
  TestRelay relay([](relay::Config& c) {
    c.pingIntervalSeconds = 1;
    c.pingTimeoutSeconds = 1;
  });
  auto answering = relay.join("mesh-a");
  auto silent = relay.join("mesh-b");
  silent->setAutoPong(false);
  // Keep reading on the answering side (it pongs while it reads) until the
  // silent one is dropped.
  int code = 0;
  for (int i = 0; i < 40 && code == 0; ++i) {
    code = silent->expectClose(100ms);
    answering->recv(100ms);
  }
  EXPECT_NE(code, 0) << "still open";
  // The one that answers pings is still there.
  answering->sendText(R"({"type":"gateway_discover"})");
  EXPECT_NO_THROW(answering->expectType("gateway_discover_result"));
}

TEST(Gateway, PermessageDeflateOfferIsDeclinedAndWorks) {
  TestRelay relay;
  ASSERT_EQ(relay.registerMesh("mesh-a", TestRelay::secretFor("mesh-a"), "A"), 201);
  ConnectOptions opt;
  opt.extraHeaders = {"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"};
  auto c = WsClient::connect(relay.port(), opt);
  EXPECT_EQ(c->handshakeResponse().find("permessage-deflate"), std::string::npos);
  c->sendText(R"({"type":"gateway_auth","meshId":"mesh-a","secret":")" +
              TestRelay::secretFor("mesh-a") + "\"}");
  EXPECT_NO_THROW(c->expectType("gateway_auth_ok"));
}

TEST(Gateway, ClientVanishingMidFrameHurtsNobody) {
  TestRelay relay;
  auto b = relay.join("mesh-b");
  for (int i = 0; i < 20; ++i) {
    auto a = relay.join("mesh-a");
    // A masked text frame header announcing 1000 bytes, then 10 and gone.
    std::string partial = "\x81\xfe\x03\xe8";
    partial += std::string("\x01\x02\x03\x04", 4);
    partial += std::string(10, 'x');
    a->sendRaw(partial);
    a->abort();
  }
  expectRelayStillServes(relay);
  b->sendText(R"({"type":"gateway_discover"})");
  EXPECT_NO_THROW(b->expectType("gateway_discover_result"));
}

TEST(Gateway, PayloadFilterMeshChatKeepsTheOriginalsWhitelist) {
  TestRelay relay([](relay::Config& c) { c.payloadFilter = relay::PayloadFilter::MeshChat; });
  auto a = relay.join("mesh-a");
  auto b = relay.join("mesh-b");
  a->sendText(
      R"({"type":"gateway_relay","targetMeshId":"mesh-b","payload":{"type":"new_message",)"
      R"("extra":1,"message":{"id":"m1","content":"hi","secret":"x","trustLevel":"owner"}}})");
  auto in = json(b->expectType("gateway_incoming"));
  auto& p = in["payload"];
  EXPECT_FALSE(p.HasMember("extra"));
  EXPECT_STREQ(p["type"].GetString(), "new_message");
  EXPECT_STREQ(p["message"]["content"].GetString(), "hi");
  EXPECT_FALSE(p["message"].HasMember("secret"));
  EXPECT_STREQ(p["message"]["trustLevel"].GetString(), "federated");
}

TEST(Gateway, ShutdownClosesEveryConnectionWith1001) {
  TestRelay relay;
  auto a = relay.join("mesh-a");
  auto pending = WsClient::connect(relay.port());
  std::thread stopper([&] { relay.stop(); });
  EXPECT_EQ(errorCodeOf(a->expectType("error")), "shutting_down");
  EXPECT_EQ(a->expectClose(), 1001);
  EXPECT_EQ(pending->expectClose(), 1001);
  stopper.join();
  EXPECT_EQ(relay.stop(), 0);
}

}  // namespace
}  // namespace mesh::test
