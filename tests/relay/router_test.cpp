// The Router on its own: what it hands to this relay's connections and to
// the other relays, through recording implementations of its two
// interfaces (LocalDelivery, ClusterLink).
#include "router.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

namespace mesh::relay {
namespace {

// A connection handle the Router stores and hands back: the address of one
// of these.
struct Conn {
  std::string name;
};

// What LocalDelivery was asked to do.
class RecordingDelivery : public LocalDelivery {
 public:
  struct Delivery {
    std::vector<LocalConn> to;
    std::string text;
    std::int64_t arrivalUs = 0;
  };
  std::vector<Delivery> deliveries;
  std::vector<LocalConn> replacedConns;
  // Called once per delivery, after it is recorded (to act like a slow
  // consumer that gets closed while frames are queued).
  std::function<void(const Delivery&)> onDeliver;

  void deliver(std::span<const LocalConn> to, Encoder encode, std::int64_t arrivalUs) override {
    if (to.empty()) return;
    Delivery d;
    d.to.assign(to.begin(), to.end());
    encode(d.text);
    d.arrivalUs = arrivalUs;
    deliveries.push_back(d);
    if (onDeliver) onDeliver(d);
  }
  void replaced(LocalConn conn) override { replacedConns.push_back(conn); }

  // Texts of the frames `conn` got, in order.
  std::vector<std::string> framesOf(const Conn& conn) const {
    std::vector<std::string> out;
    for (const auto& d : deliveries) {
      if (std::find(d.to.begin(), d.to.end(), static_cast<LocalConn>(const_cast<Conn*>(&conn))) !=
          d.to.end()) {
        out.push_back(d.text);
      }
    }
    return out;
  }
  // Frames of `conn` whose text contains `part`.
  std::size_t count(const Conn& conn, std::string_view part) const {
    std::size_t n = 0;
    for (const auto& t : framesOf(conn)) n += t.find(part) != std::string::npos;
    return n;
  }
};

// What the Router told or asked the other relays; answers are given by the
// test, later, as a real cluster would.
class RecordingLink : public ClusterLink {
 public:
  bool isActive = true;
  std::vector<std::string> online;     // meshIds announced online
  std::vector<std::string> offline;    // meshIds announced offline
  std::vector<std::string> updated;    // "meshId rooms|participants"
  std::vector<std::string> takeovers;  // "relayId meshId"
  struct RelayAsk {
    std::string owner, target, text;
    RelayAnswer answer;
  };
  std::vector<RelayAsk> relays;
  struct BroadcastAsk {
    std::string text, from;
    CountAnswer answer;
  };
  std::vector<BroadcastAsk> broadcasts;

  bool active() const override { return isActive; }
  void meshOnline(const MeshEntry& mesh) override { online.push_back(mesh.meshId); }
  void meshOffline(std::string_view meshId) override { offline.emplace_back(meshId); }
  void meshUpdated(const MeshEntry& mesh, MeshChange what) override {
    updated.push_back(mesh.meshId +
                      (what == MeshChange::Rooms ? std::string(" rooms") : " participants"));
  }
  void relay(std::string_view owner, std::string_view target, std::string text,
             RelayAnswer answer) override {
    relays.push_back({std::string(owner), std::string(target), std::move(text), std::move(answer)});
  }
  void broadcast(std::string text, std::string_view from, CountAnswer answer) override {
    broadcasts.push_back({std::move(text), std::string(from), std::move(answer)});
  }
  void takeover(std::string_view owner, std::string_view meshId) override {
    takeovers.push_back(std::string(owner) + " " + std::string(meshId));
  }
};

MeshInfo mesh(std::string meshId, std::string participants = "[]", std::size_t count = 0,
              bool presence = false) {
  MeshInfo m;
  m.name = meshId + "-name";
  m.meshId = std::move(meshId);
  m.participantsJson = std::move(participants);
  m.participantCount = count;
  m.wantsPresence = presence;
  return m;
}

LocalConn at(Conn& c) {
  return &c;
}

class RouterTest : public ::testing::Test {
 protected:
  RecordingDelivery local;
  RecordingLink link;
  NoClusterLink single;
};

TEST_F(RouterTest, NewestAuthenticationTakesOverALocalMesh) {
  Router router(local, single);
  Conn first{"first"}, second{"second"}, watcher{"watcher"};
  router.localOnline(mesh("w", "[]", 0, true), at(watcher));
  EXPECT_FALSE(router.localOnline(mesh("m"), at(first)));
  EXPECT_EQ(local.count(watcher, "\"status\":\"online\""), 1u);

  EXPECT_TRUE(router.localOnline(mesh("m"), at(second)));
  ASSERT_EQ(local.replacedConns.size(), 1u);
  EXPECT_EQ(local.replacedConns[0], at(first));
  EXPECT_EQ(router.localConn("m"), at(second));
  EXPECT_EQ(router.localCount(), 2u);
  // A takeover is no presence change.
  EXPECT_EQ(local.count(watcher, "gateway_presence"), 1u);

  // The replaced connection closing later changes nothing.
  router.localOffline("m", at(first), true);
  EXPECT_EQ(router.localConn("m"), at(second));
  EXPECT_EQ(local.count(watcher, "gateway_presence"), 1u);
}

TEST_F(RouterTest, NewestAuthenticationTakesOverAMeshOnAnotherRelay) {
  Router router(local, link);
  Conn here{"here"}, watcher{"watcher"};
  router.localOnline(mesh("w", "[]", 0, true), at(watcher));
  router.remoteOnline(mesh("m"), "relay-b");
  EXPECT_EQ(local.count(watcher, "\"status\":\"online\""), 1u);

  EXPECT_TRUE(router.localOnline(mesh("m"), at(here)));
  EXPECT_EQ(link.takeovers, std::vector<std::string>{"relay-b m"});
  EXPECT_TRUE(local.replacedConns.empty());
  const MeshEntry* e = router.find("m");
  ASSERT_NE(e, nullptr);
  EXPECT_TRUE(e->local());
  EXPECT_EQ(local.count(watcher, "gateway_presence"), 1u);
  EXPECT_EQ(link.online.back(), "m");

  // And the other way: another relay's connection takes it back.
  router.takenOver("m");
  ASSERT_EQ(local.replacedConns.size(), 1u);
  EXPECT_EQ(local.replacedConns[0], at(here));
  EXPECT_EQ(router.find("m"), nullptr);
  router.remoteOnline(mesh("m"), "relay-b");
  EXPECT_EQ(router.find("m")->relayId, "relay-b");
}

TEST_F(RouterTest, ARemoteAnnouncementOfALocalMeshReplacesTheLocalConnection) {
  Router router(local, link);
  Conn here{"here"}, watcher{"watcher"};
  router.localOnline(mesh("w", "[]", 0, true), at(watcher));
  router.localOnline(mesh("m"), at(here));
  router.remoteOnline(mesh("m"), "relay-b");
  EXPECT_EQ(local.replacedConns, std::vector<LocalConn>{at(here)});
  EXPECT_EQ(router.localConn("m"), nullptr);
  EXPECT_EQ(router.find("m")->relayId, "relay-b");
  EXPECT_EQ(local.count(watcher, "gateway_presence"), 1u);  // online once, no more
}

TEST_F(RouterTest, PresenceGoesOnlyToWatchers) {
  Router router(local, link);
  Conn watcher{"watcher"}, quiet{"quiet"}, other{"other"};
  router.localOnline(mesh("watcher", "[]", 0, true), at(watcher));
  router.localOnline(mesh("quiet"), at(quiet));
  router.localOnline(mesh("other", "[]", 0, true), at(other));
  router.remoteOnline(mesh("far"), "relay-b");
  router.localOffline("quiet", at(quiet), true);
  router.remoteOffline("far", "relay-b");

  EXPECT_EQ(
      local.framesOf(watcher),
      (std::vector<std::string>{
          R"({"type":"gateway_presence","meshId":"quiet","name":"quiet-name","status":"online"})",
          R"({"type":"gateway_presence","meshId":"other","name":"other-name","status":"online"})",
          R"({"type":"gateway_presence","meshId":"far","name":"far-name","status":"online"})",
          R"({"type":"gateway_presence","meshId":"quiet","name":"quiet-name","status":"offline"})",
          R"({"type":"gateway_presence","meshId":"far","name":"far-name","status":"offline"})",
      }));
  EXPECT_TRUE(local.framesOf(quiet).empty());
  // Nobody hears of itself.
  EXPECT_EQ(local.count(other, "\"meshId\":\"other\""), 0u);
  EXPECT_EQ(local.count(other, "gateway_presence"), 3u);  // far on and off, quiet off
  EXPECT_EQ(link.offline, std::vector<std::string>{"quiet"});
  // A close without announcement (shutdown, takeover) says nothing.
  router.localOffline("other", at(other), false);
  EXPECT_EQ(local.count(watcher, "gateway_presence"), 5u);
}

TEST_F(RouterTest, ParticipantsAreExchangedOnAuthAndOnUpdate) {
  Router router(local, link);
  Conn a{"a"}, b{"b"}, c{"c"};
  router.localOnline(mesh("a", R"([{"id":"1"}])", 1), at(a));
  router.remoteOnline(mesh("r", R"([{"id":"2"}])", 1), "relay-b");
  // a hears of the remote mesh's list when it arrives.
  EXPECT_EQ(local.framesOf(a),
            std::vector<std::string>{
                R"({"type":"gateway_participants","remoteParticipants":[{"meshId":"r",)"
                R"("meshName":"r-name","participants":[{"id":"2"}]}]})"});

  // A newcomer without participants learns both lists in one frame and
  // pushes nothing.
  router.localOnline(mesh("b"), at(b));
  ASSERT_EQ(local.framesOf(b).size(), 1u);
  EXPECT_NE(local.framesOf(b)[0].find("\"meshId\":\"a\""), std::string::npos);
  EXPECT_NE(local.framesOf(b)[0].find("\"meshId\":\"r\""), std::string::npos);
  EXPECT_EQ(local.framesOf(a).size(), 1u);

  // A newcomer with participants pushes its list to every other local mesh.
  router.localOnline(mesh("c", R"([{"id":"3"}])", 1), at(c));
  EXPECT_EQ(local.count(a, "\"meshId\":\"c\""), 1u);
  EXPECT_EQ(local.count(b, "\"meshId\":\"c\""), 1u);
  EXPECT_EQ(local.count(c, "\"meshId\":\"c\""), 0u);

  // An update goes to every other local mesh and to the cluster; an emptied
  // list is no longer sent to newcomers.
  router.localParticipantsUpdated("a", "[]", 0);
  EXPECT_EQ(local.count(b, R"({"meshId":"a","meshName":"a-name","participants":[]})"), 1u);
  EXPECT_EQ(local.count(c, R"({"meshId":"a","meshName":"a-name","participants":[]})"), 1u);
  EXPECT_EQ(link.updated, std::vector<std::string>{"a participants"});
  Conn d{"d"};
  router.localOnline(mesh("d"), at(d));
  ASSERT_EQ(local.framesOf(d).size(), 1u);
  EXPECT_EQ(local.framesOf(d)[0].find("\"meshId\":\"a\""), std::string::npos);

  // A remote update reaches every local mesh.
  router.remoteUpdated(mesh("r", R"([{"id":"9"}])", 1), "relay-b", MeshChange::Participants);
  for (Conn* x : {&a, &b, &c, &d}) EXPECT_EQ(local.count(*x, R"({"id":"9"})"), 1u) << x->name;
}

TEST_F(RouterTest, RoomUpdatesAreKeptForDiscoverAndAnnounced) {
  Router router(local, link);
  Conn a{"a"};
  router.localOnline(mesh("a"), at(a));
  router.localRoomsUpdated("a", R"(["lobby"])");
  EXPECT_EQ(router.find("a")->roomsJson, R"(["lobby"])");
  EXPECT_EQ(link.updated, std::vector<std::string>{"a rooms"});
  EXPECT_TRUE(local.framesOf(a).empty());
}

TEST_F(RouterTest, DiscoverListsLocalAndRemoteMeshesAndForgetsRemoteOnesGoneOffline) {
  Router router(local, link);
  Conn a{"a"};
  router.localOnline(mesh("a"), at(a));
  router.remoteOnline(mesh("r1"), "relay-b");
  router.remoteOnline(mesh("r2"), "relay-c");
  EXPECT_EQ(router.totalCount(), 3u);
  EXPECT_EQ(router.localCount(), 1u);
  router.discover(at(a), std::string("d1"));
  std::string listed = local.framesOf(a).back();
  for (const char* id : {"\"a\"", "\"r1\"", "\"r2\"", "\"id\":\"d1\""}) {
    EXPECT_NE(listed.find(id), std::string::npos) << id << " in " << listed;
  }

  // An offline from a relay that no longer holds the mesh is stale.
  router.remoteOffline("r1", "relay-c");
  EXPECT_NE(router.find("r1"), nullptr);
  router.remoteOffline("r1", "relay-b");
  EXPECT_EQ(router.find("r1"), nullptr);
  router.relayGone("relay-c");
  EXPECT_EQ(router.find("r2"), nullptr);
  router.discover(at(a), std::nullopt);
  listed = local.framesOf(a).back();
  EXPECT_EQ(listed.find("r1"), std::string::npos) << listed;
  EXPECT_EQ(listed.find("r2"), std::string::npos) << listed;
  EXPECT_NE(listed.find("\"a\""), std::string::npos) << listed;
}

TEST_F(RouterTest, ARelayToALocalMeshIsDeliveredAtOnce) {
  Router router(local, link);
  Conn a{"a"}, b{"b"};
  router.localOnline(mesh("a"), at(a));
  router.localOnline(mesh("b"), at(b));
  bool askedLater = false;
  auto r = router.relay({"a", "a-name", at(a)}, "b", R"({"x":1})", std::string("r1"), 42, [&] {
    askedLater = true;
    return RelayAnswer([](RelayOutcome) {});
  });
  ASSERT_TRUE(r.outcome);
  EXPECT_EQ(*r.outcome, RelayOutcome::Delivered);
  EXPECT_EQ(r.to, at(b));
  EXPECT_FALSE(askedLater);
  ASSERT_EQ(local.framesOf(b).size(), 1u);
  EXPECT_EQ(local.framesOf(b)[0],
            R"({"type":"gateway_incoming","fromMeshId":"a","fromMeshName":"a-name",)"
            R"("payload":{"x":1},"id":"r1"})");
  EXPECT_EQ(local.deliveries.back().arrivalUs, 42);
  EXPECT_TRUE(link.relays.empty());

  r = router.relay({"a", "a-name", at(a)}, "nobody", "{}", std::nullopt, 0,
                   [] { return RelayAnswer([](RelayOutcome) {}); });
  EXPECT_EQ(r.outcome, RelayOutcome::Offline);
  EXPECT_EQ(r.to, nullptr);
}

TEST_F(RouterTest, ARelayToARemoteMeshGoesToItsRelayAndTheAckWaitsForTheAnswer) {
  Router router(local, link);
  Conn a{"a"};
  router.localOnline(mesh("a"), at(a));
  router.remoteOnline(mesh("r"), "relay-b");
  std::vector<RelayOutcome> answers;
  auto r = router.relay({"a", "a-name", at(a)}, "r", R"({"x":1})", std::string("r1"), 0,
                        [&] { return RelayAnswer([&](RelayOutcome o) { answers.push_back(o); }); });
  EXPECT_FALSE(r.outcome);  // pending
  ASSERT_EQ(link.relays.size(), 1u);
  EXPECT_EQ(link.relays[0].owner, "relay-b");
  EXPECT_EQ(link.relays[0].target, "r");
  EXPECT_EQ(link.relays[0].text,
            R"({"type":"gateway_incoming","fromMeshId":"a","fromMeshName":"a-name",)"
            R"("payload":{"x":1},"id":"r1"})");
  EXPECT_TRUE(answers.empty());
  link.relays[0].answer(RelayOutcome::Delivered);
  EXPECT_EQ(answers, std::vector<RelayOutcome>{RelayOutcome::Delivered});

  // Without a cluster a remote mesh cannot be reached: said at once.
  link.isActive = false;
  r = router.relay({"a", "a-name", at(a)}, "r", "{}", std::nullopt, 0,
                   [] { return RelayAnswer([](RelayOutcome) {}); });
  EXPECT_EQ(r.outcome, RelayOutcome::Unavailable);
  EXPECT_EQ(link.relays.size(), 1u);
}

TEST_F(RouterTest, ARelayFromAnotherRelayIsQueuedOnTheLocalMeshAndAnswered) {
  Router router(local, link);
  Conn a{"a"};
  router.localOnline(mesh("a"), at(a));
  const std::string text = R"({"type":"gateway_incoming","fromMeshId":"r","payload":{}})";
  EXPECT_EQ(router.deliverRelay("a", text), RelayOutcome::Delivered);
  EXPECT_EQ(local.framesOf(a), std::vector<std::string>{text});
  EXPECT_EQ(router.deliverRelay("gone", text), RelayOutcome::Offline);
}

TEST_F(RouterTest, ABroadcastCountsLocalAndRemoteRecipients) {
  Router router(local, link);
  Conn a{"a"}, b{"b"}, c{"c"};
  router.localOnline(mesh("a"), at(a));
  router.localOnline(mesh("b"), at(b));
  router.localOnline(mesh("c"), at(c));
  router.remoteOnline(mesh("r"), "relay-b");
  const std::size_t before = local.deliveries.size();
  std::vector<std::uint32_t> totals;
  auto r = router.broadcast({"a", "a-name", at(a)}, R"({"hi":true})", std::string("b1"), 7, [&] {
    return CountAnswer([&](std::uint32_t n) { totals.push_back(n); });
  });
  EXPECT_EQ(r.localRecipients, 2u);
  EXPECT_TRUE(r.pending);
  // One delivery for both local recipients: encoded once.
  ASSERT_EQ(local.deliveries.size(), before + 1);
  EXPECT_EQ(local.deliveries.back().to.size(), 2u);
  EXPECT_EQ(local.count(b, "gateway_incoming"), 1u);
  EXPECT_EQ(local.count(c, "gateway_incoming"), 1u);
  EXPECT_EQ(local.count(a, "gateway_incoming"), 0u);
  ASSERT_EQ(link.broadcasts.size(), 1u);
  EXPECT_EQ(link.broadcasts[0].from, "a");
  EXPECT_EQ(link.broadcasts[0].text, local.deliveries.back().text);
  EXPECT_TRUE(totals.empty());
  link.broadcasts[0].answer(5);
  EXPECT_EQ(totals, std::vector<std::uint32_t>{7});

  // Another relay's broadcast reaches every local mesh but its sender.
  EXPECT_EQ(router.deliverBroadcast("{}", "r"), 3u);
}

TEST_F(RouterTest, OnASingleRelayABroadcastIsAnsweredAtOnce) {
  Router router(local, single);
  Conn a{"a"}, b{"b"};
  router.localOnline(mesh("a"), at(a));
  router.localOnline(mesh("b"), at(b));
  bool askedLater = false;
  auto r = router.broadcast({"a", "a-name", at(a)}, "{}", std::nullopt, 0, [&] {
    askedLater = true;
    return CountAnswer([](std::uint32_t) {});
  });
  EXPECT_EQ(r.localRecipients, 1u);
  EXPECT_FALSE(r.pending);
  EXPECT_FALSE(askedLater);
  EXPECT_EQ(local.count(b, "gateway_incoming"), 1u);
}

TEST_F(RouterTest, AConnectionClosedWhileFramesAreQueuedLeavesTheTables) {
  // A slow consumer closed by the delivery of a broadcast: the server calls
  // localOffline from inside deliver().
  Router router(local, single);
  Conn a{"a"}, slow{"slow"}, watcher{"watcher"};
  router.localOnline(mesh("watcher", "[]", 0, true), at(watcher));
  router.localOnline(mesh("a"), at(a));
  router.localOnline(mesh("slow"), at(slow));
  bool closed = false;
  local.onDeliver = [&](const RecordingDelivery::Delivery& d) {
    if (!closed && d.text.find("gateway_incoming") != std::string::npos) {
      closed = true;
      router.localOffline("slow", at(slow), true);
    }
  };
  auto r = router.broadcast({"a", "a-name", at(a)}, "{}", std::nullopt, 0,
                            [] { return CountAnswer([](std::uint32_t) {}); });
  EXPECT_EQ(r.localRecipients, 2u);
  EXPECT_EQ(router.localConn("slow"), nullptr);
  EXPECT_EQ(local.count(watcher, R"("meshId":"slow","name":"slow-name","status":"offline")"), 1u);
}

}  // namespace
}  // namespace mesh::relay
