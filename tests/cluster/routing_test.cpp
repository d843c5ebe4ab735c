// Cluster mode: three relays on one NATS cluster behave, for every node, as
// one relay (issue "Cluster mode", the routing part). Each relay talks to
// its own server of a real three-server NATS cluster.
#include <gtest/gtest.h>
#include <nats/nats.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>

#include "cluster_support.h"
#include "cluster_wire.h"

namespace mesh::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

std::string relayFrame(const std::string& target, const std::string& payload,
                       const std::string& id = "") {
  std::string f =
      R"({"type":"gateway_relay","targetMeshId":")" + target + R"(","payload":)" + payload;
  if (!id.empty()) f += R"(,"id":")" + id + '"';
  return f + '}';
}

std::string broadcastFrame(const std::string& payload, const std::string& id) {
  return R"({"type":"gateway_broadcast","payload":)" + payload + R"(,"id":")" + id + R"("})";
}

// The next gateway_ack (skipping other frames), as text.
std::string nextAck(WsClient& c, std::chrono::milliseconds timeout = 5000ms) {
  return c.expectType("gateway_ack", timeout);
}

// The next text frame, whatever its type.
std::string nextText(WsClient& c, std::chrono::milliseconds timeout) {
  for (;;) {
    WsMessage m = c.recv(timeout);
    if (m.kind == WsMessage::Kind::Text) return m.data;
    if (m.kind != WsMessage::Kind::Binary) {
      ADD_FAILURE() << "no frame: " << kindName(m.kind);
      return {};
    }
  }
}

// Nothing of `type` arrives before a discover's answer: a barrier.
bool noFrameOfType(WsClient& c, const std::string& type) {
  for (const auto& f : framesUntilProbe(c)) {
    if (jsonString(f, "type") == type) return false;
  }
  return true;
}

// From the test's own connection, a relay that is not running announces
// `meshId` as its own: nothing subscribes to that relay's deliver subjects.
void announceFromPhantomRelay(natsConnection* nc, const std::string& relayId,
                              const std::string& meshId) {
  mesh::relay::cluster::DirectoryMessage online;
  online.type = mesh::relay::cluster::DirectoryType::Online;
  online.relayId = relayId;
  mesh::relay::MeshInfo info;
  info.meshId = meshId;
  info.name = "Name " + meshId;
  online.meshes.push_back(info);
  online.epochs.push_back(1);
  const std::string text = mesh::relay::cluster::encodeDirectory(online);
  const std::string subject(mesh::relay::cluster::kDirectorySubject);
  ASSERT_EQ(natsConnection_Publish(nc, subject.c_str(), text.data(), static_cast<int>(text.size())),
            NATS_OK);
  ASSERT_EQ(natsConnection_Flush(nc), NATS_OK);
}

// A NATS server on TLS for the tests: a self-signed certificate for
// 127.0.0.1 in `dir` (also the CA file relays get as --nats-ca, `cert`) and
// the server's tls block.
std::string natsTlsBlock(const TempDir& dir, std::string& cert) {
  cert = (dir.path() / "nats-cert.pem").string();
  const std::string key = (dir.path() / "nats-key.pem").string();
  const std::string cmd =
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2"
      " -subj '/CN=127.0.0.1' -addext 'subjectAltName=IP:127.0.0.1' -keyout '" +
      key + "' -out '" + cert + "' >/dev/null 2>&1";
  if (std::system(cmd.c_str()) != 0) throw std::runtime_error("openssl req failed: " + cmd);
  return "tls {\n  cert_file: \"" + cert + "\"\n  key_file: \"" + key + "\"\n}\n";
}

TEST(ClusterRouting, RelayCrossesRelaysInOrderAndAcksAfterTheOwnerQueuedIt) {
  RelayCluster cluster;
  auto a = cluster.join(0, "alpha");
  auto b = cluster.join(1, "bravo");
  ASSERT_TRUE(cluster.waitListed(0, "bravo"));

  a->sendText(relayFrame("bravo", R"({"text":"hello","n":1.50})", "m1"));
  const std::string in = b->expectType("gateway_incoming");
  EXPECT_EQ(jsonString(in, "fromMeshId"), "alpha");
  EXPECT_EQ(jsonString(in, "fromMeshName"), "Name alpha");
  EXPECT_EQ(jsonString(in, "id"), "m1");
  // The payload arrives byte for byte, as on one relay.
  EXPECT_NE(in.find(R"("payload":{"text":"hello","n":1.50})"), std::string::npos) << in;
  const std::string ack = nextAck(*a);
  EXPECT_EQ(jsonString(ack, "id"), "m1");
  EXPECT_EQ(jsonString(ack, "status"), "delivered");
  EXPECT_EQ(jsonInt(ack, "recipients"), 1);

  // In order per sender and target, with and without ids.
  constexpr int kCount = 300;
  for (int i = 0; i < kCount; ++i) {
    a->sendText(relayFrame("bravo", R"({"seq":)" + std::to_string(i) + "}",
                           i % 2 ? "s" + std::to_string(i) : ""));
  }
  for (int i = 0; i < kCount; ++i) {
    const std::string f = b->expectType("gateway_incoming");
    ASSERT_NE(f.find(R"("payload":{"seq":)" + std::to_string(i) + "}"), std::string::npos)
        << "frame " << i << ": " << f;
  }
  for (int i = 1; i < kCount; i += 2) {
    const std::string f = nextAck(*a);
    EXPECT_EQ(jsonString(f, "id"), "s" + std::to_string(i));
    EXPECT_EQ(jsonString(f, "status"), "delivered");
  }
  // And back the other way.
  b->sendText(relayFrame("alpha", R"({"back":true})", "r1"));
  EXPECT_EQ(jsonString(a->expectType("gateway_incoming"), "fromMeshId"), "bravo");
  EXPECT_EQ(jsonString(nextAck(*b), "status"), "delivered");
  EXPECT_GE(metricValue(cluster.relay(0).port(),
                        "mesh_relay_cluster_frames_total{kind=\"relay\",direction=\"out\"}"),
            kCount + 1);
  EXPECT_GE(metricValue(cluster.relay(1).port(),
                        "mesh_relay_cluster_frames_total{kind=\"relay\",direction=\"in\"}"),
            kCount + 1);
}

// Not a benchmark (tools/mesh-bench is): a quick figure of what one frame
// across two relays and a NATS route costs, printed with the test's output.
TEST(ClusterRouting, CrossRelayRoundTripsAndABurstAreMeasured) {
  RelayCluster cluster;
  auto a = cluster.join(0, "alpha");
  auto b = cluster.join(1, "bravo");
  ASSERT_TRUE(cluster.waitListed(0, "bravo"));
  std::vector<double> rttUs;
  for (int i = 0; i < 500; ++i) {
    const auto t0 = Clock::now();
    a->sendText(relayFrame("bravo", R"({"n":1})", "q" + std::to_string(i)));
    ASSERT_EQ(jsonString(nextAck(*a), "status"), "delivered");
    rttUs.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    b->expectType("gateway_incoming");
  }
  std::sort(rttUs.begin(), rttUs.end());
  constexpr int kBurst = 5000;
  const auto t0 = Clock::now();
  for (int i = 0; i < kBurst; ++i) a->sendText(relayFrame("bravo", R"({"n":2})"));
  for (int i = 0; i < kBurst; ++i) b->expectType("gateway_incoming");
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  std::cout << "[ measure  ] cross-relay relay, send to ack: median " << rttUs[rttUs.size() / 2]
            << " us, p99 " << rttUs[rttUs.size() * 99 / 100] << " us; a burst of " << kBurst
            << " frames: " << static_cast<int>(kBurst / seconds) << " frames/s\n";
}

TEST(ClusterRouting, RelayToAMeshNobodyHoldsIsOfflineAtOnce) {
  RelayCluster cluster;
  auto a = cluster.join(0, "alpha");
  cluster.registerEverywhere("nobody");
  const auto start = Clock::now();
  a->sendText(relayFrame("nobody", "{}", "x1"));
  const std::string ack = nextAck(*a);
  EXPECT_EQ(jsonString(ack, "status"), "offline");
  EXPECT_EQ(jsonInt(ack, "recipients"), 0);
  EXPECT_LT(Clock::now() - start, 1s);

  // A mesh that was online on another relay and left: offline too.
  auto c = cluster.join(2, "charlie");
  ASSERT_TRUE(cluster.waitListed(0, "charlie"));
  c->close();
  ASSERT_TRUE(cluster.waitListed(0, "charlie", false));
  a->sendText(relayFrame("charlie", "{}", "x2"));
  EXPECT_EQ(jsonString(nextAck(*a), "status"), "offline");
}

// Frames queued in one turn for one remote mesh go out as one batch
// (docs/cluster.md): when nobody is subscribed for that mesh any more (its
// relay died before the others heard of it), NATS answers "no responders"
// and every frame of the batch is offline at once, not after the timeout.
TEST(ClusterRouting, BurstToAMeshWhoseRelayVanishedIsOfflineForEveryFrameAtOnce) {
  RelayCluster cluster;
  auto a = cluster.join(0, "alpha");
  auto b = cluster.join(1, "bravo");
  cluster.registerEverywhere("ghost");
  ASSERT_TRUE(cluster.waitListed(0, "bravo"));
  // A relay that announces "ghost" and is gone without a word: nothing
  // subscribes to its deliver subjects.
  natsConnection* nc = nullptr;
  ASSERT_EQ(natsConnection_ConnectTo(&nc, cluster.nats.url(0).c_str()), NATS_OK);
  announceFromPhantomRelay(nc, "phantom", "ghost");
  natsConnection_Destroy(nc);
  ASSERT_TRUE(cluster.waitListed(0, "ghost"));

  constexpr int kCount = 40;
  const auto start = Clock::now();
  for (int i = 0; i < kCount; ++i) a->sendText(relayFrame("ghost", "{}", "g" + std::to_string(i)));
  for (int i = 0; i < kCount; ++i) {
    const std::string ack = nextAck(*a);
    EXPECT_EQ(jsonString(ack, "id"), "g" + std::to_string(i));
    EXPECT_EQ(jsonString(ack, "status"), "offline");
  }
  // Well before the 2 s a relay gets to answer.
  EXPECT_LT(Clock::now() - start, 1500ms);

  // And the relay still routes to a mesh that is there.
  a->sendText(relayFrame("bravo", R"({"after":1})", "ok"));
  EXPECT_EQ(jsonString(b->expectType("gateway_incoming"), "fromMeshId"), "alpha");
  EXPECT_EQ(jsonString(nextAck(*a), "status"), "delivered");
}

// A relay of another release (another cluster wire version) would send to
// subjects nobody reads: it is ignored, its meshes are not listed, and
// /metrics and the log say so.
TEST(ClusterRouting, ARelaySpeakingAnotherWireVersionIsIgnoredAndShown) {
  RelayCluster cluster(2);
  auto a = cluster.join(0, "alpha");
  natsConnection* nc = nullptr;
  ASSERT_EQ(natsConnection_ConnectTo(&nc, cluster.nats.url(0).c_str()), NATS_OK);
  // The first release's heartbeat: no "wire".
  const std::string old =
      R"({"type":"heartbeat","relay":"old-release","meshes":[{"meshId":"elsewhere","name":"E",)"
      R"("rooms":"[]","participants":"[]","participantCount":0,"epoch":1}]})";
  const std::string subject(mesh::relay::cluster::kDirectorySubject);
  const auto port = cluster.relay(0).port();
  EXPECT_TRUE(eventually([&] {
    natsConnection_Publish(nc, subject.c_str(), old.data(), static_cast<int>(old.size()));
    natsConnection_Flush(nc);
    return metricValue(port, "mesh_relay_cluster_incompatible_relays") == 1;
  }));
  EXPECT_EQ(metricValue(port, "mesh_relay_cluster_relays"), 1);
  EXPECT_FALSE(discoverIds(*a).contains("elsewhere"));
  a->sendText(relayFrame("elsewhere", "{}", "e1"));
  EXPECT_EQ(jsonString(nextAck(*a), "status"), "offline");
  natsConnection_Destroy(nc);
  // Silent for 2.5 s: no longer counted.
  EXPECT_TRUE(eventually(
      [&] { return metricValue(port, "mesh_relay_cluster_incompatible_relays") == 0; }, 5s));
}

// A relay for a mesh goes to the relay the sender's directory names. When
// the mesh has moved on from there (the sender has not heard yet), that
// relay passes the request, with the sender's reply subject, to the holder,
// which answers the sender; a request passed on once is not passed again.
TEST(ClusterRouting, ARelayForAMeshThatMovedOnReachesItsHolderThroughTheOldOne) {
  RelayCluster cluster;
  auto c = cluster.join(2, "charlie");
  ASSERT_TRUE(cluster.waitListed(1, "charlie"));
  natsConnection* nc = nullptr;
  ASSERT_EQ(natsConnection_ConnectTo(&nc, cluster.nats.url(0).c_str()), NATS_OK);
  namespace cw = mesh::relay::cluster;
  // As a relay asks: the answer comes on the reply subject + ".a", NATS's
  // "no responders" on the reply subject itself.
  natsSubscription* sub = nullptr;
  ASSERT_EQ(natsConnection_SubscribeSync(&sub, nc, "test-inbox.>"), NATS_OK);
  int asked = 0;
  auto request = [&](const std::string& subject, const std::string& text) -> std::string {
    const std::string reply = "test-inbox." + std::to_string(++asked);
    if (natsConnection_PublishRequest(nc, subject.c_str(), reply.c_str(), text.data(),
                                      static_cast<int>(text.size())) != NATS_OK) {
      return "not sent";
    }
    natsMsg* msg = nullptr;
    const natsStatus s = natsSubscription_NextMsg(&msg, sub, 3000);
    if (s != NATS_OK) return std::string("status: ") + natsStatus_GetText(s);
    EXPECT_EQ(std::string(natsMsg_GetSubject(msg)), mesh::relay::cluster::answerSubject(reply));
    std::string data(natsMsg_GetData(msg), static_cast<std::size_t>(natsMsg_GetDataLength(msg)));
    natsMsg_Destroy(msg);
    return data;
  };
  const std::string frame =
      R"({"type":"gateway_incoming","fromMeshId":"old-news","payload":{"n":1}})";

  // Sent to r1, which never held charlie but knows r2 does.
  EXPECT_EQ(request(cw::deliverSubject("r1", "charlie"), frame), cw::kDeliveredReply);
  const std::string got = c->expectType("gateway_incoming");
  EXPECT_EQ(jsonString(got, "fromMeshId"), "old-news");
  EXPECT_EQ(metricValue(cluster.relay(1).port(), "mesh_relay_cluster_relays_forwarded_total"), 1);

  // Passed on once already: r1 does not pass it on again.
  EXPECT_EQ(request(cw::deliverSubject("r1", "charlie", true), frame), cw::kOfflineReply);
  // A relay nobody runs: NATS answers "no responders" at once.
  EXPECT_EQ(request(cw::deliverSubject("r9", "charlie"), frame),
            std::string("status: ") + natsStatus_GetText(NATS_NO_RESPONDERS));
  natsSubscription_Destroy(sub);
  natsConnection_Destroy(nc);
  // The mesh got the one frame and nothing more.
  EXPECT_TRUE(noFrameOfType(*c, "gateway_incoming"));
}

TEST(ClusterRouting, BroadcastReachesEveryMeshOnEveryRelayOnceAndCountsThemAll) {
  RelayCluster cluster;
  auto a = cluster.join(0, "alpha");
  auto a2 = cluster.join(0, "alpha2");
  auto b = cluster.join(1, "bravo");
  auto c = cluster.join(2, "charlie");
  auto d = cluster.join(2, "delta");
  for (int i = 0; i < 3; ++i) {
    for (const char* id : {"alpha", "alpha2", "bravo", "charlie", "delta"}) {
      ASSERT_TRUE(cluster.waitListed(i, id)) << id << " on r" << i;
    }
  }
  a->sendText(broadcastFrame(R"({"all":1})", "b1"));
  // alpha2, bravo, charlie, delta and the three observers.
  const std::string ack = nextAck(*a);
  EXPECT_EQ(jsonString(ack, "id"), "b1");
  EXPECT_EQ(jsonString(ack, "status"), "delivered");
  EXPECT_EQ(jsonInt(ack, "recipients"), 7);
  for (WsClient* r : {a2.get(), b.get(), c.get(), d.get(), cluster.probes[0].get(),
                      cluster.probes[1].get(), cluster.probes[2].get()}) {
    const std::string f = r->expectType("gateway_incoming");
    EXPECT_EQ(jsonString(f, "fromMeshId"), "alpha");
    // Exactly once: nothing more before a barrier.
    EXPECT_TRUE(noFrameOfType(*r, "gateway_incoming"));
  }
  EXPECT_TRUE(noFrameOfType(*a, "gateway_incoming"));
}

TEST(ClusterRouting, DiscoverListsEveryMeshOfTheClusterFromTheLocalReplica) {
  RelayCluster cluster;
  auto a = cluster.join(0, "alpha", R"("publicRooms":["lobby"])");
  auto b = cluster.join(1, "bravo", R"("publicRooms":["games","chat"])");
  ASSERT_TRUE(cluster.waitListed(2, "alpha"));
  ASSERT_TRUE(cluster.waitListed(2, "bravo"));
  auto c = cluster.join(2, "charlie");
  c->sendText(R"({"type":"gateway_discover","id":"d"})");
  const auto d = json(c->expectType("gateway_discover_result"));
  std::map<std::string, std::string> rooms;
  for (const auto& inst : d["instances"].GetArray()) {
    std::string r;
    for (const auto& room : inst["publicRooms"].GetArray())
      r += std::string(room.GetString()) + ",";
    rooms[inst["meshId"].GetString()] = r;
  }
  EXPECT_EQ(rooms["alpha"], "lobby,");
  EXPECT_EQ(rooms["bravo"], "games,chat,");
  EXPECT_TRUE(rooms.contains("charlie"));
  EXPECT_EQ(rooms.size(), 6u);  // and the three observers

  // A rooms update on one relay is what the others list next.
  b->sendText(R"({"type":"gateway_update_rooms","publicRooms":["new"]})");
  EXPECT_TRUE(eventually([&] {
    c->sendText(R"({"type":"gateway_discover","id":"d2"})");
    const auto again = json(c->expectType("gateway_discover_result"));
    for (const auto& inst : again["instances"].GetArray()) {
      if (std::string(inst["meshId"].GetString()) == "bravo") {
        return inst["publicRooms"].Size() == 1 &&
               std::string(inst["publicRooms"][0].GetString()) == "new";
      }
    }
    return false;
  }));
  // Stopping a relay takes its meshes out of every list at once ("bye").
  a.reset();
  cluster.relay(0).stop();
  EXPECT_TRUE(cluster.waitListed(2, "probe-0", false));
  EXPECT_FALSE(discoverIds(*c).contains("alpha"));
}

TEST(ClusterRouting, PresenceAndParticipantsCrossRelays) {
  RelayCluster cluster;
  auto watcher = cluster.join(0, "watcher", R"("presence":true)");
  auto withList = cluster.join(0, "lister", R"("participants":[{"id":"u1","n":7.0}])");
  ASSERT_TRUE(cluster.waitListed(1, "lister"));

  // A newcomer on another relay: the watcher learns it is online, the
  // newcomer learns the participants held on relay 0.
  auto newcomer = cluster.join(1, "newcomer", R"("participants":[{"id":"u2"}])");
  std::string presence = watcher->expectType("gateway_presence");
  while (jsonString(presence, "meshId") != "newcomer") {
    presence = watcher->expectType("gateway_presence");
  }
  EXPECT_EQ(jsonString(presence, "status"), "online");
  EXPECT_EQ(jsonString(presence, "name"), "Name newcomer");
  const std::string parts = newcomer->expectType("gateway_participants");
  EXPECT_NE(parts.find(R"("meshId":"lister")"), std::string::npos) << parts;
  EXPECT_NE(parts.find(R"({"id":"u1","n":7.0})"), std::string::npos) << parts;
  // And relay 0's meshes get the newcomer's list.
  const std::string pushed = withList->expectType("gateway_participants");
  EXPECT_NE(pushed.find(R"("meshId":"newcomer")"), std::string::npos) << pushed;

  // An update on relay 0 reaches the newcomer on relay 1.
  withList->sendText(R"({"type":"gateway_update_participants","participants":[{"id":"u9"}]})");
  std::string update = newcomer->expectType("gateway_participants");
  EXPECT_NE(update.find(R"({"id":"u9"})"), std::string::npos) << update;

  // The newcomer leaves: offline for the watcher.
  newcomer->close();
  presence = watcher->expectType("gateway_presence");
  while (jsonString(presence, "meshId") != "newcomer") {
    presence = watcher->expectType("gateway_presence");
  }
  EXPECT_EQ(jsonString(presence, "status"), "offline");
}

TEST(ClusterRouting, AuthOnAnotherRelayTakesOverWithin100Ms) {
  RelayCluster cluster;
  auto watcher = cluster.join(2, "watcher", R"("presence":true)");
  auto first = cluster.join(0, "mover");
  ASSERT_TRUE(cluster.waitListed(1, "mover"));
  ASSERT_TRUE(cluster.waitListed(2, "mover"));
  EXPECT_EQ(jsonString(watcher->expectType("gateway_presence"), "meshId"), "mover");

  std::string authOk;
  auto second = cluster.join(1, "mover", "", &authOk);
  const auto authed = Clock::now();
  const std::string err = first->expectType("error", 2000ms);
  const auto replacedAfter = Clock::now() - authed;
  EXPECT_EQ(jsonString(err, "code"), "session_replaced");
  EXPECT_EQ(first->expectClose(2000ms), 4000);
  EXPECT_LT(replacedAfter, 100ms)
      << std::chrono::duration_cast<std::chrono::milliseconds>(replacedAfter).count() << " ms";
  // The mesh never went offline for anyone watching.
  EXPECT_TRUE(noFrameOfType(*watcher, "gateway_presence"));

  // Everyone routes to the new holder.
  auto sender = cluster.join(2, "sender");
  ASSERT_TRUE(eventually([&] {
    sender->sendText(relayFrame("mover", R"({"after":"takeover"})", "t1"));
    return jsonString(nextAck(*sender), "status") == "delivered";
  }));
  EXPECT_EQ(jsonString(second->expectType("gateway_incoming"), "fromMeshId"), "sender");
  EXPECT_GE(
      metricValue(cluster.relay(0).port(), "mesh_relay_cluster_takeovers_total{direction=\"in\"}"),
      1);
}

TEST(ClusterRouting, TwoNodesFightingOverOneMeshMoveItAtMostOnceASecond) {
  RelayCluster cluster;
  auto first = cluster.join(0, "contested");
  ASSERT_TRUE(cluster.waitListed(1, "contested"));
  auto second = cluster.join(1, "contested");
  EXPECT_EQ(first->expectClose(2000ms), 4000);
  ASSERT_TRUE(cluster.waitListed(0, "contested"));

  // The first node comes straight back on relay 0: refused, the mesh stays.
  auto back = WsClient::connect(cluster.relay(0).port());
  back->sendText(TestRelay::authFrameFor("contested"));
  const std::string refused = back->expectType("error", 2000ms);
  EXPECT_EQ(jsonString(refused, "code"), "rate_limited") << refused;
  EXPECT_EQ(back->expectClose(2000ms), 1008);
  EXPECT_TRUE(noFrameOfType(*second, "error"));

  // After a second it may move again.
  std::this_thread::sleep_for(1100ms);
  auto again = cluster.join(0, "contested");
  EXPECT_EQ(second->expectClose(2000ms), 4000);
  // Other meshes were served all along.
  expectRelayStillServes(cluster.relay(0));
  expectRelayStillServes(cluster.relay(1));
}

// An operator's service subscribed to the session events.
TEST(ClusterRouting, SessionEventsArePublishedForOperators) {
  RelayCluster cluster;
  natsConnection* nc = nullptr;
  ASSERT_EQ(natsConnection_ConnectTo(&nc, cluster.nats.url(2).c_str()), NATS_OK);
  natsSubscription* sub = nullptr;
  ASSERT_EQ(natsConnection_SubscribeSync(&sub, nc, "mesh.events.>"), NATS_OK);
  ASSERT_EQ(natsConnection_Flush(nc), NATS_OK);
  std::this_thread::sleep_for(200ms);  // the interest crosses the routes

  auto a = cluster.join(0, "evented");
  a->close();
  std::vector<std::pair<std::string, std::string>> events;
  for (int i = 0; i < 10 && events.size() < 2; ++i) {
    natsMsg* msg = nullptr;
    if (natsSubscription_NextMsg(&msg, sub, 2000) != NATS_OK) break;
    std::string data(natsMsg_GetData(msg), static_cast<std::size_t>(natsMsg_GetDataLength(msg)));
    if (jsonString(data, "meshId") == "evented") events.emplace_back(natsMsg_GetSubject(msg), data);
    natsMsg_Destroy(msg);
  }
  natsSubscription_Destroy(sub);
  natsConnection_Destroy(nc);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].first, "mesh.events.connected");
  EXPECT_EQ(jsonString(events[0].second, "relay"), "r0");
  EXPECT_EQ(jsonString(events[0].second, "time").size(), 24u) << events[0].second;
  EXPECT_EQ(events[1].first, "mesh.events.disconnected");
  EXPECT_EQ(jsonString(events[1].second, "relay"), "r0");
  EXPECT_EQ(jsonString(events[1].second, "reason"), "closed");
}

TEST(ClusterRouting, MetricsReadyzAndAdminShowTheCluster) {
  RelayCluster cluster;
  auto b = cluster.join(1, "bravo");
  ASSERT_TRUE(cluster.waitListed(0, "bravo"));
  const auto port = cluster.relay(0).port();
  EXPECT_EQ(metricValue(port, "mesh_relay_cluster_connected"), 1);
  EXPECT_EQ(metricValue(port, "mesh_relay_cluster_relays"), 2);
  const auto ready = httpRequest(port, "GET", "/readyz");
  EXPECT_EQ(ready.status, 200);
  EXPECT_TRUE(jsonBool(ready.body, "cluster"));

  // The admin API of any relay names the relay holding each online mesh.
  const std::vector<std::string> auth{std::string("Authorization: Bearer ") + kAdminToken};
  const auto list = httpRequest(port, "GET", "/meshes", {}, auth);
  ASSERT_EQ(list.status, 200) << list.body;
  std::map<std::string, std::string> holder;
  const auto d = json(list.body);
  for (const auto& m : d["meshes"].GetArray()) {
    if (m["online"].GetBool()) holder[m["meshId"].GetString()] = m["relay"].GetString();
  }
  EXPECT_EQ(holder["bravo"], "r1");
  EXPECT_EQ(holder["probe-0"], "r0");
  EXPECT_EQ(holder["probe-2"], "r2");
  const auto one = httpRequest(cluster.relay(2).port(), "GET", "/meshes/bravo", {}, auth);
  EXPECT_EQ(jsonString(one.body, "relay"), "r1") << one.body;
  EXPECT_TRUE(jsonBool(one.body, "online"));
}

// Every NATS server gone: each relay still serves its own meshes; frames
// to meshes on other relays are refused with cluster_unavailable, never
// dropped in silence.
TEST(ClusterRouting, WithoutNatsLocalMeshesTalkAndRemoteOnesAreClusterUnavailable) {
  RelayCluster cluster;
  auto a = cluster.join(0, "alpha");
  auto a2 = cluster.join(0, "alpha2");
  auto b = cluster.join(1, "bravo");
  ASSERT_TRUE(cluster.waitListed(0, "bravo"));
  // Registered while the bucket is reachable, connected once it is not.
  for (const char* id : {"late-a", "late-a2", "late-b", "late-b2"}) cluster.registerEverywhere(id);
  for (int i = 0; i < cluster.nats.size(); ++i) cluster.nats.kill(i);
  ASSERT_TRUE(eventually(
      [&] { return metricValue(cluster.relay(0).port(), "mesh_relay_cluster_connected") == 0; }));

  a->sendText(relayFrame("bravo", R"({"lost":false})", "u1"));
  const std::string err = a->expectType("error");
  EXPECT_EQ(jsonString(err, "code"), "cluster_unavailable");
  EXPECT_EQ(jsonString(err, "id"), "u1");
  // Without an id too.
  a->sendText(relayFrame("bravo", "{}"));
  EXPECT_EQ(jsonString(a->expectType("error"), "code"), "cluster_unavailable");

  a->sendText(relayFrame("alpha2", R"({"local":true})", "u2"));
  EXPECT_EQ(jsonString(a2->expectType("gateway_incoming"), "fromMeshId"), "alpha");
  EXPECT_EQ(jsonString(nextAck(*a), "status"), "delivered");
  // The remote mesh is not forgotten while this relay is the one cut off.
  std::this_thread::sleep_for(3000ms);
  EXPECT_TRUE(discoverIds(*a).contains("bravo"));
  // /readyz says the relay is not connected to the cluster.
  EXPECT_EQ(httpRequest(cluster.relay(0).port(), "GET", "/readyz").status, 503);
  // Both relays still authenticate meshes from their copy of the registry
  // (a registration needs the bucket and answers 503 meanwhile) and route
  // between their own meshes.
  for (const auto& [relayIndex, from, to] :
       {std::tuple{0, "late-a", "late-a2"}, std::tuple{1, "late-b", "late-b2"}}) {
    auto sender = cluster.relay(relayIndex).connectAs(from, TestRelay::secretFor(from));
    auto receiver = cluster.relay(relayIndex).connectAs(to, TestRelay::secretFor(to));
    sender->sendText(relayFrame(to, R"({"still":true})", "s1"));
    EXPECT_EQ(jsonString(receiver->expectType("gateway_incoming"), "fromMeshId"), from);
    EXPECT_EQ(jsonString(nextAck(*sender), "status"), "delivered");
  }
  EXPECT_EQ(cluster.relay(0).registerMesh("too-late", TestRelay::secretFor("too-late"), "Late"),
            503);

  // NATS back: routing resumes.
  for (int i = 0; i < cluster.nats.size(); ++i) cluster.nats.restart(i);
  ASSERT_TRUE(cluster.nats.waitReady(20s));
  ASSERT_TRUE(eventually(
      [&] {
        a->sendText(relayFrame("bravo", R"({"back":1})", "u3"));
        for (;;) {
          const std::string f = nextText(*a, 3000ms);
          if (f.empty()) return false;
          const std::string type = jsonString(f, "type");
          if (type == "gateway_ack") return jsonString(f, "status") == "delivered";
          if (type == "error") return false;
        }
      },
      20s));
  EXPECT_EQ(jsonString(b->expectType("gateway_incoming"), "fromMeshId"), "alpha");
  expectRelayStillServes(cluster.relay(0));
  expectRelayStillServes(cluster.relay(1));
}

// One NATS server of three killed: the relays on the others carry on, the
// one on it reconnects to another, and routing goes on.
TEST(ClusterRouting, RoutingGoesOnWhenOneNatsServerIsKilled) {
  RelayCluster cluster(3, true);
  auto a = cluster.join(0, "alpha");
  auto b = cluster.join(1, "bravo");
  auto c = cluster.join(2, "charlie");
  ASSERT_TRUE(cluster.waitListed(0, "bravo"));
  ASSERT_TRUE(cluster.waitListed(0, "charlie"));
  cluster.nats.kill(1);
  int delivered = 0;
  int refused = 0;
  int offline = 0;
  const auto until = Clock::now() + 6s;
  int n = 0;
  while (Clock::now() < until) {
    const std::string id = "k" + std::to_string(n++);
    a->sendText(relayFrame(n % 2 ? "bravo" : "charlie", "{}", id));
    for (;;) {
      const std::string f = nextText(*a, 6000ms);
      ASSERT_FALSE(f.empty());
      if (jsonString(f, "id") != id) continue;
      // Every frame is answered. While the sender's relay reconnects:
      // cluster_unavailable; while the target's relay reconnects, its
      // subscription is missing for a moment and the ack is offline (a node
      // retries those).
      const bool ack = jsonString(f, "type") == "gateway_ack";
      if (ack && jsonString(f, "status") == "delivered") {
        ++delivered;
      } else if (ack) {
        ++offline;
        EXPECT_EQ(jsonString(f, "status"), "offline") << f;
      } else {
        ++refused;
        EXPECT_EQ(jsonString(f, "code"), "cluster_unavailable") << f;
      }
      break;
    }
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_GT(delivered, 0);
  // Routing settled: every one of the last twenty arrives.
  for (int i = 0; i < 20; ++i) {
    a->sendText(relayFrame("bravo", "{}", "z" + std::to_string(i)));
    EXPECT_EQ(jsonString(nextAck(*a), "status"), "delivered");
  }
  // No relay lost another's meshes.
  EXPECT_TRUE(discoverIds(*a).contains("charlie"));
  EXPECT_TRUE(discoverIds(*c).contains("alpha"));
  std::cout << "[ measure  ] one NATS server killed: " << delivered << " delivered, " << refused
            << " cluster_unavailable, " << offline << " offline in 6 s\n";
}

}  // namespace
}  // namespace mesh::test

namespace mesh::test {
namespace {

// Without --relay-id a relay of a cluster is "<hostname>:<port>".
TEST(ClusterRouting, RelayIdDefaultsToHostnameAndPort) {
  NatsCluster nats(1);
  TestRelay relay([&](relay::Config& c) {
    c.natsUrls = {nats.url(0)};
    c.adminToken = kAdminToken;
  });
  auto a = relay.join("solo");
  char host[256] = {0};
  ASSERT_EQ(gethostname(host, sizeof host - 1), 0);
  const auto one = httpRequest(relay.port(), "GET", "/meshes/solo", {},
                               {std::string("Authorization: Bearer ") + kAdminToken});
  EXPECT_EQ(jsonString(one.body, "relay"), std::string(host) + ":" + std::to_string(relay.port()))
      << one.body;
  EXPECT_EQ(metricValue(relay.port(), "mesh_relay_cluster_connected"), 1);
}

// A single relay has no cluster figures and no relay field.
TEST(ClusterRouting, WithoutNatsThereIsNoClusterLink) {
  TestRelay relay([](relay::Config& c) { c.adminToken = kAdminToken; });
  auto a = relay.join("alone");
  EXPECT_EQ(metricValue(relay.port(), "mesh_relay_cluster_connected"), -1);
  const auto one = httpRequest(relay.port(), "GET", "/meshes/alone", {},
                               {std::string("Authorization: Bearer ") + kAdminToken});
  EXPECT_FALSE(jsonHas(one.body, "relay")) << one.body;
  EXPECT_EQ(httpRequest(relay.port(), "GET", "/readyz").body, R"({"ok":true})");
}

}  // namespace
}  // namespace mesh::test

namespace mesh::test {
namespace {

// A relay that joins late learns the meshes already online from the others'
// heartbeats; with long participant lists a heartbeat comes in several parts.
TEST(ClusterRouting, ARelayJoiningLaterLearnsEveryMeshFromHeartbeatsInParts) {
  NatsCluster nats(3);
  auto tweak = [&](int i) {
    return [&nats, i](relay::Config& c) {
      c.natsUrls = {nats.url(i)};
      c.relayId = "late-r" + std::to_string(i);
      c.controlRate = 1000;
      c.controlBurst = 1000;
    };
  };
  TestRelay first(tweak(0));
  // 24 x 50 KB: more than NATS's default max_payload (1 MiB) in one message.
  constexpr int kBig = 24;
  const std::string participants =
      R"("participants":[{"id":")" + std::string(50'000, 'p') + R"("}])";
  std::vector<std::unique_ptr<WsClient>> meshes;
  for (int i = 0; i < kBig; ++i)
    meshes.push_back(first.join("big-" + std::to_string(i), participants));

  TestRelay late(tweak(1));
  auto observer = late.join("observer");
  ASSERT_TRUE(eventually([&] {
    const auto ids = discoverIds(*observer);
    for (int i = 0; i < kBig; ++i) {
      if (!ids.contains("big-" + std::to_string(i))) return false;
    }
    return true;
  }));
  // And it keeps them: whole heartbeats keep arriving, none drops a mesh.
  std::this_thread::sleep_for(2500ms);
  EXPECT_EQ(discoverIds(*observer).size(), kBig + 1u);
}

}  // namespace
}  // namespace mesh::test

namespace mesh::test {
namespace {

// A NATS setting the client refuses (here a CA file that is not there) stops
// the relay at start with a message naming the flag, rather than a relay
// that looks clustered and is not.
TEST(ClusterRouting, ANatsSettingTheClientRefusesStopsTheRelayAtStart) {
  TempDir dir;
  relay::Config c = testConfig(dir.path() / "mesh.db");
  c.natsUrls = {"tls://127.0.0.1:1"};
  c.natsCaPath = (dir.path() / "missing-ca.pem").string();
  // The shared registry opens its connection when the server is made, the
  // routing link when it runs: either refuses.
  try {
    relay::Server server(c);
    server.run();
    ADD_FAILURE() << "the relay ran without its CA file";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("--nats-ca"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace mesh::test

namespace mesh::test {
namespace {

// Two connections of one meshId authenticating on two relays at the same
// moment: each relay announces its claim before it hears the other's. They
// must agree: exactly one connection keeps the mesh, the other is replaced,
// and every relay routes to the one that kept it.
TEST(ClusterRouting, TwoAuthenticationsAtOnceOnTwoRelaysLeaveExactlyOneHolder) {
  RelayCluster cluster;
  constexpr int kPairs = 8;
  std::vector<std::unique_ptr<WsClient>> first, second;
  for (int i = 0; i < kPairs; ++i) {
    const std::string id = "twin-" + std::to_string(i);
    cluster.registerEverywhere(id);
    first.push_back(WsClient::connect(cluster.relay(0).port()));
    second.push_back(WsClient::connect(cluster.relay(1).port()));
  }
  for (int i = 0; i < kPairs; ++i) {
    const std::string auth = TestRelay::authFrameFor("twin-" + std::to_string(i));
    first[static_cast<std::size_t>(i)]->sendText(auth);
    second[static_cast<std::size_t>(i)]->sendText(auth);
  }
  for (int i = 0; i < kPairs; ++i) {
    first[static_cast<std::size_t>(i)]->expectType("gateway_auth_ok");
    second[static_cast<std::size_t>(i)]->expectType("gateway_auth_ok");
  }
  // Heartbeats settle any disagreement within a second.
  std::this_thread::sleep_for(1500ms);
  for (int i = 0; i < kPairs; ++i) {
    const std::string id = "twin-" + std::to_string(i);
    const int a = first[static_cast<std::size_t>(i)]->expectClose(100ms);
    const int b = second[static_cast<std::size_t>(i)]->expectClose(100ms);
    EXPECT_TRUE((a == 4000 && b == 0) || (a == 0 && b == 4000))
        << id << ": close codes " << a << " and " << b << " (0: still open)";
    WsClient& holder =
        a == 0 ? *first[static_cast<std::size_t>(i)] : *second[static_cast<std::size_t>(i)];
    // Relay 2 routes to the holder.
    cluster.probes[2]->sendText(relayFrame(id, R"({"to":"holder"})", "h" + std::to_string(i)));
    EXPECT_EQ(jsonString(nextAck(*cluster.probes[2]), "status"), "delivered") << id;
    EXPECT_EQ(jsonString(holder.expectType("gateway_incoming", 2000ms), "fromMeshId"), "probe-2")
        << id;
  }
}

}  // namespace
}  // namespace mesh::test

namespace mesh::test {
namespace {

// On TLS the link stays on libnats's own threads (nats_loop.h says why):
// relays, answers, "no responders" and broadcasts work the same there.
TEST(ClusterRouting, OverTlsToNatsRelaysRouteTheSameOnLibnatsThreads) {
  TempDir dir;
  std::string cert;
  NatsCluster nats(1, natsTlsBlock(dir, cert));
  const std::string url = "tls://127.0.0.1:" + std::to_string(nats.clientPort(0));
  auto tweak = [&](int i) {
    return [&, i](relay::Config& c) {
      c.natsUrls = {url};
      c.natsCaPath = cert;
      c.relayId = "tls-r" + std::to_string(i);
      c.adminToken = kAdminToken;
    };
  };
  TestRelay r0(tweak(0));
  TestRelay r1(tweak(1));
  for (TestRelay* r : {&r0, &r1}) {
    ASSERT_TRUE(
        eventually([&] { return metricValue(r->port(), "mesh_relay_cluster_relays") == 1; }));
  }
  for (const char* id : {"alpha", "bravo", "gone"}) {
    for (TestRelay* r : {&r0, &r1}) {
      const int status = r->registerMesh(id, TestRelay::secretFor(id), "Name");
      ASSERT_TRUE(status == 200 || status == 201) << status;
    }
  }
  auto a = r0.connectAs("alpha", TestRelay::secretFor("alpha"));
  auto b = r1.connectAs("bravo", TestRelay::secretFor("bravo"));
  ASSERT_TRUE(eventually([&] { return discoverIds(*a).contains("bravo"); }));

  for (int i = 0; i < 20; ++i)
    a->sendText(relayFrame("bravo", R"({"n":)" + std::to_string(i) + "}", "t" + std::to_string(i)));
  for (int i = 0; i < 20; ++i) {
    const std::string got = b->expectType("gateway_incoming");
    EXPECT_NE(got.find(R"({"n":)" + std::to_string(i) + "}"), std::string::npos) << got;
    EXPECT_EQ(jsonString(nextAck(*a), "status"), "delivered");
  }
  a->sendText(broadcastFrame("{}", "all"));
  EXPECT_EQ(jsonString(b->expectType("gateway_incoming"), "fromMeshId"), "alpha");
  EXPECT_EQ(jsonInt(nextAck(*a), "recipients"), 1);

  // A mesh announced by a relay that is gone: "no responders", offline at once.
  natsOptions* opts = nullptr;
  ASSERT_EQ(natsOptions_Create(&opts), NATS_OK);
  ASSERT_EQ(natsOptions_SetURL(opts, url.c_str()), NATS_OK);
  ASSERT_EQ(natsOptions_LoadCATrustedCertificates(opts, cert.c_str()), NATS_OK);
  natsConnection* nc = nullptr;
  ASSERT_EQ(natsConnection_Connect(&nc, opts), NATS_OK);
  natsOptions_Destroy(opts);
  announceFromPhantomRelay(nc, "tls-phantom", "gone");
  natsConnection_Destroy(nc);
  ASSERT_TRUE(eventually([&] { return discoverIds(*a).contains("gone"); }));
  const auto start = Clock::now();
  a->sendText(relayFrame("gone", "{}", "g"));
  EXPECT_EQ(jsonString(nextAck(*a), "status"), "offline");
  EXPECT_LT(Clock::now() - start, 1s);
}

}  // namespace
}  // namespace mesh::test

namespace mesh::test {
namespace {

// A NATS server that hangs (SIGSTOP: its sockets stay open, nobody reads
// them) is noticed by libnats's pings only after seconds. Meanwhile the
// relay's loop, which writes the NATS socket (or, on TLS, hands its
// publishes to a writer thread), must keep serving its own meshes at once,
// and must not queue relays for the hung server without bound: beyond
// NatsClusterLink::kMaxBufferedBytes they are answered cluster_unavailable
// at once. Once the server runs again, routing resumes.
void hungServerCase(bool tls) {
  TempDir dir;
  std::string cert;
  NatsCluster nats(1, tls ? natsTlsBlock(dir, cert) : std::string());
  const std::string url =
      tls ? "tls://127.0.0.1:" + std::to_string(nats.clientPort(0)) : nats.url(0);
  auto tweak = [&](int i) {
    return [&, i](relay::Config& c) {
      c.natsUrls = {url};
      if (tls) c.natsCaPath = cert;
      c.relayId = "hung-r" + std::to_string(i);
      c.controlRate = 1000;
      c.controlBurst = 1000;
      c.rateLimit = 0;
      c.adminToken = kAdminToken;
    };
  };
  TestRelay r0(tweak(0));
  TestRelay r1(tweak(1));
  for (TestRelay* r : {&r0, &r1}) {
    ASSERT_TRUE(
        eventually([&] { return metricValue(r->port(), "mesh_relay_cluster_relays") == 1; }));
  }
  for (const char* id : {"alpha", "bravo", "charlie", "delta"}) {
    for (TestRelay* r : {&r0, &r1}) {
      const int status = r->registerMesh(id, TestRelay::secretFor(id), "Name");
      ASSERT_TRUE(status == 200 || status == 201) << status;
    }
  }
  auto a = r0.connectAs("alpha", TestRelay::secretFor("alpha"));
  auto c = r0.connectAs("charlie", TestRelay::secretFor("charlie"));
  auto b = r1.connectAs("bravo", TestRelay::secretFor("bravo"));
  auto d = r1.connectAs("delta", TestRelay::secretFor("delta"));
  ASSERT_TRUE(eventually([&] { return discoverIds(*a).contains("delta"); }));

  nats.freeze(0);
  // From here the relay must keep reading: sending 24 MiB to it and the
  // local frame behind them takes well under a second unless it stalls.
  const auto start = Clock::now();
  // 24 MiB for the hung server: three times what the link may hold.
  const std::string big = R"({"blob":")" + std::string(60 * 1024, 'x') + R"("})";
  constexpr int kBig = 410;
  for (int i = 0; i < kBig; ++i) a->sendText(relayFrame("bravo", big, "big" + std::to_string(i)));
  a->sendText(relayFrame("charlie", R"({"local":1})", "local"));
  EXPECT_NE(c->expectType("gateway_incoming", 2000ms).find(R"({"local":1})"), std::string::npos);
  // The local ack and, right after it, the answers to the big frames: most
  // of them cluster_unavailable at once, the rest still waiting for the
  // server (a few MiB sit in the socket's buffer, up to 8 MiB in libnats's).
  int unavailableAtOnce = 0;
  bool localAcked = false;
  for (;;) {
    WsMessage m = a->recv(500ms);
    if (m.kind != WsMessage::Kind::Text) break;
    const std::string& f = m.data;
    if (jsonString(f, "code") == "cluster_unavailable") ++unavailableAtOnce;
    if (jsonString(f, "type") == "gateway_ack" && jsonString(f, "id") == "local") {
      EXPECT_EQ(jsonString(f, "status"), "delivered");
      EXPECT_LT(Clock::now() - start, 1500ms);
      localAcked = true;
    }
  }
  EXPECT_TRUE(localAcked);
  EXPECT_GE(unavailableAtOnce, kBig / 3) << "relays for a hung server were buffered without bound";

  nats.thaw(0);
  // What was buffered reaches bravo (which does not read: the relay closes
  // it as a slow consumer), and routing goes on.
  EXPECT_TRUE(eventually(
      [&] {
        a->sendText(relayFrame("delta", R"({"again":1})", "again"));
        for (;;) {
          WsMessage m = a->recv(3000ms);
          if (m.kind != WsMessage::Kind::Text) return false;
          if (jsonString(m.data, "id") == "again") {
            return jsonString(m.data, "status") == "delivered";
          }
        }
      },
      20s));
}

TEST(ClusterRouting, AHungNatsServerNeitherStallsTheLoopNorFillsMemory) {
  hungServerCase(false);
}

TEST(ClusterRouting, AHungNatsServerOverTlsNeitherStallsTheLoopNorFillsMemory) {
  hungServerCase(true);
}

}  // namespace
}  // namespace mesh::test

namespace mesh::test {
namespace {

// Frames queued in one turn for one remote mesh go out as batches, none
// larger than the NATS server's max_payload (here 100 KiB: four 60 KiB
// frames read in one turn would make a 240 KiB batch, which the server
// refuses). Every frame arrives, in order, and is acked delivered.
TEST(ClusterRouting, BatchesStayWithinTheServersMaxPayload) {
  NatsCluster nats(1, "max_payload: 102400\n");
  auto tweak = [&](int i) {
    return [&, i](relay::Config& c) {
      c.natsUrls = {nats.url(0)};
      c.relayId = "mp-r" + std::to_string(i);
      c.controlRate = 1000;
      c.controlBurst = 1000;
      c.rateLimit = 0;
    };
  };
  TestRelay r0(tweak(0));
  TestRelay r1(tweak(1));
  for (const char* id : {"alpha", "bravo"}) {
    for (TestRelay* r : {&r0, &r1}) {
      const int status = r->registerMesh(id, TestRelay::secretFor(id), "Name");
      ASSERT_TRUE(status == 200 || status == 201) << status;
    }
  }
  auto a = r0.connectAs("alpha", TestRelay::secretFor("alpha"));
  auto b = r1.connectAs("bravo", TestRelay::secretFor("bravo"));
  ASSERT_TRUE(eventually([&] { return discoverIds(*a).contains("bravo"); }));

  constexpr int kCount = 40;
  const std::string fill(60 * 1024, 'y');
  for (int i = 0; i < kCount; ++i) {
    a->sendText(relayFrame("bravo", R"({"n":)" + std::to_string(i) + R"(,"fill":")" + fill + "\"}",
                           "m" + std::to_string(i)));
  }
  for (int i = 0; i < kCount; ++i) {
    const std::string got = b->expectType("gateway_incoming");
    EXPECT_NE(got.find(R"({"n":)" + std::to_string(i) + ","), std::string::npos) << i;
  }
  for (int i = 0; i < kCount; ++i) {
    const std::string ack = nextAck(*a);
    EXPECT_EQ(jsonString(ack, "id"), "m" + std::to_string(i));
    EXPECT_EQ(jsonString(ack, "status"), "delivered") << ack;
  }
}

}  // namespace
}  // namespace mesh::test
