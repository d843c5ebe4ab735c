// What relays of a cluster say to each other (cluster_wire.h): subjects and
// message bodies, encoded and read back.
#include "cluster_wire.h"

#include <gtest/gtest.h>

#include <set>

#include "support/test_relay.h"

namespace mesh::relay::cluster {
namespace {

MeshInfo sampleMesh(const std::string& id) {
  MeshInfo m;
  m.meshId = id;
  m.name = "Name \"quoted\" \xc3\xa9";
  m.roomsJson = R"([{"id":"r1","n":1.50}])";
  m.participantsJson = R"([{"id":"u","big":12345678901234567890123}])";
  m.participantCount = 1;
  return m;
}

TEST(ClusterWire, MeshIdsBecomeOneSubjectTokenAndBack) {
  EXPECT_EQ(meshToken("plain-id_1"), "plain-id_1");
  EXPECT_EQ(meshToken("a.b..c."), "a%2Eb%2E%2Ec%2E");
  for (const std::string id : {"a", "a.b", ".x.", "..", "A-b_c.9", "f", "x.f"}) {
    EXPECT_EQ(meshFromToken(meshToken(id)), id);
    for (bool forwarded : {false, true}) {
      const std::string subject = deliverSubject("relay-1", id, forwarded);
      auto t = parseDeliverSubject(subject);
      ASSERT_TRUE(t) << subject;
      EXPECT_EQ(t->meshId, id);
      EXPECT_EQ(t->forwarded, forwarded);
    }
  }
  EXPECT_EQ(deliverSubject("r1", "a.b"), "mesh.deliver.r1.a%2Eb");
  EXPECT_EQ(deliverSubject("r1", "a.b", true), "mesh.deliver.r1.a%2Eb.f");
  EXPECT_FALSE(parseDeliverSubject("mesh.cluster.directory"));
  EXPECT_FALSE(parseDeliverSubject("mesh.deliver."));
  EXPECT_FALSE(parseDeliverSubject("mesh.deliver.r1"));
  EXPECT_FALSE(parseDeliverSubject("mesh.deliver.r1."));
  EXPECT_FALSE(parseDeliverSubject("mesh.deliver.r1.a.b"));
  EXPECT_FALSE(parseDeliverSubject("mesh.deliver..a"));
}

TEST(ClusterWire, AnyRelayIdIsOneSubjectTokenOfItsOwn) {
  EXPECT_EQ(relayToken("relay-a_1"), "relay-a_1");
  EXPECT_EQ(relayToken("host.example.org:4000"), "host%2Eexample%2Eorg%3A4000");
  EXPECT_EQ(relayToken("a b*>\t%"), "a%20b%2A%3E%09%25");
  EXPECT_EQ(relayToken("\xc3\xa9"), "%C3%A9");
  std::set<std::string> tokens;
  for (const std::string id : {"a.b", "a%2Eb", "a:b", "a%3Ab", "a", "A"}) {
    const std::string t = relayToken(id);
    EXPECT_EQ(t.find_first_of(". *>\t"), std::string::npos) << id;
    tokens.insert(t);
  }
  EXPECT_EQ(tokens.size(), 6U);
  EXPECT_EQ(deliverWildcard("h.x:1"), "mesh.deliver.h%2Ex%3A1.>");
  EXPECT_EQ(parseDeliverSubject(deliverSubject("h.x:1", "m"))->meshId, "m");
}

TEST(ClusterWire, DirectoryMessagesSayTheirWireVersion) {
  DirectoryMessage m;
  m.type = DirectoryType::Hello;
  m.relayId = "r1";
  const std::string text = encodeDirectory(m);
  EXPECT_NE(text.find("\"wire\":" + std::to_string(kWireVersion)), std::string::npos) << text;
  EXPECT_EQ(decodeDirectory(text)->wire, kWireVersion);
  // The first release said nothing: version 1, whatever its body holds.
  auto old = decodeDirectory(R"({"type":"heartbeat","relay":"r0","meshes":[{"meshId":"m"}]})");
  ASSERT_TRUE(old);
  EXPECT_EQ(old->wire, 1U);
  EXPECT_EQ(old->relayId, "r0");
  EXPECT_TRUE(old->meshes.empty());
  auto later = decodeDirectory(R"({"type":"someday","relay":"r9","wire":3})");
  EXPECT_FALSE(later);  // an unknown type is still refused
  later = decodeDirectory(R"({"type":"hello","relay":"r9","wire":3,"more":[1]})");
  ASSERT_TRUE(later);
  EXPECT_EQ(later->wire, 3U);
  EXPECT_FALSE(decodeDirectory(R"({"type":"hello","relay":"r9","wire":"2"})"));
}

TEST(ClusterWire, HeartbeatCarriesEveryMeshByteForByte) {
  DirectoryMessage m;
  m.type = DirectoryType::Heartbeat;
  m.relayId = "relay-1.example:4000";
  m.meshes = {sampleMesh("one"), sampleMesh("two.x")};
  const auto back = decodeDirectory(encodeDirectory(m));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->type, DirectoryType::Heartbeat);
  EXPECT_EQ(back->relayId, m.relayId);
  ASSERT_EQ(back->meshes.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(back->meshes[i].meshId, m.meshes[i].meshId);
    EXPECT_EQ(back->meshes[i].name, m.meshes[i].name);
    // Numbers are not reformatted: the arrays are the node's own text.
    EXPECT_EQ(back->meshes[i].roomsJson, m.meshes[i].roomsJson);
    EXPECT_EQ(back->meshes[i].participantsJson, m.meshes[i].participantsJson);
    EXPECT_EQ(back->meshes[i].participantCount, 1u);
  }
  m.meshes.clear();
  const auto empty = decodeDirectory(encodeDirectory(m));
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->meshes.empty());
}

DirectoryMessage message(DirectoryType type, const std::string& relay) {
  DirectoryMessage m;
  m.type = type;
  m.relayId = relay;
  return m;
}

TEST(ClusterWire, DeltasRoundTrip) {
  DirectoryMessage online = message(DirectoryType::Online, "r1");
  online.meshes = {sampleMesh("m")};
  online.epochs = {42};
  auto back = decodeDirectory(encodeDirectory(online));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->type, DirectoryType::Online);
  EXPECT_EQ(back->epochs, std::vector<std::uint64_t>{42});
  EXPECT_EQ(back->meshes.at(0).meshId, "m");

  DirectoryMessage offline = message(DirectoryType::Offline, "r1");
  offline.meshId = "gone.mesh";
  back = decodeDirectory(encodeDirectory(offline));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->type, DirectoryType::Offline);
  EXPECT_EQ(back->meshId, "gone.mesh");

  DirectoryMessage updated = message(DirectoryType::Updated, "r2");
  updated.meshes = {sampleMesh("u")};
  updated.change = MeshChange::Participants;
  back = decodeDirectory(encodeDirectory(updated));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->type, DirectoryType::Updated);
  EXPECT_EQ(back->change, MeshChange::Participants);

  for (auto type : {DirectoryType::Hello, DirectoryType::Bye}) {
    back = decodeDirectory(encodeDirectory(message(type, "r3")));
    ASSERT_TRUE(back);
    EXPECT_EQ(back->type, type);
    EXPECT_EQ(back->relayId, "r3");
  }
}

// A relay with many meshes, or meshes with long lists, sends its heartbeat
// in parts that each fit NATS's default max_payload (1 MiB).
TEST(ClusterWire, LargeHeartbeatsAreSentInPartsThatFitAMessage) {
  std::vector<MeshInfo> meshes;
  std::vector<std::uint64_t> epochs;
  for (int i = 0; i < 3000; ++i) {
    epochs.push_back(1000 + static_cast<std::uint64_t>(i));
    MeshInfo m = sampleMesh("mesh-" + std::to_string(i));
    m.participantsJson = "[\"" + std::string(400, 'p') + "\"]";
    meshes.push_back(std::move(m));
  }
  const auto parts = heartbeatParts("r1", meshes, epochs);
  ASSERT_GT(parts.size(), 1u);
  std::set<std::string> seen;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const std::string text = encodeDirectory(parts[i]);
    EXPECT_LE(text.size(), kHeartbeatPartBytes);
    const auto back = decodeDirectory(text);
    ASSERT_TRUE(back);
    EXPECT_EQ(back->part, i);
    EXPECT_EQ(back->parts, parts.size());
    ASSERT_EQ(back->epochs.size(), back->meshes.size());
    for (std::size_t j = 0; j < back->meshes.size(); ++j) {
      const std::string& id = back->meshes[j].meshId;
      seen.insert(id);
      EXPECT_EQ(back->epochs[j], 1000 + std::stoul(id.substr(5))) << id;
    }
  }
  EXPECT_EQ(seen.size(), meshes.size());

  // No meshes: one empty part, without part numbers on the wire.
  const auto none = heartbeatParts("r1", {}, {});
  ASSERT_EQ(none.size(), 1u);
  EXPECT_EQ(encodeDirectory(none[0]).find("parts"), std::string::npos);
  EXPECT_FALSE(decodeDirectory(
      R"({"type":"heartbeat","relay":"r","wire":2,"meshes":[],"part":2,"parts":2})"));
  EXPECT_FALSE(
      decodeDirectory(R"({"type":"heartbeat","relay":"r","wire":2,"meshes":[],"part":0})"));
}

// (Bodies of this release's version: another version's body is not read.)
TEST(ClusterWire, MalformedDirectoryMessagesAreRefused) {
  for (const char* text :
       {"", "[]", "{", R"({"type":"heartbeat"})", R"({"type":"nope","relay":"r"})",
        R"({"type":"heartbeat","relay":"","wire":2})",
        R"({"type":"heartbeat","relay":"r","wire":2})",
        R"({"type":"online","relay":"r","wire":2,"meshes":[]})",
        R"({"type":"heartbeat","relay":"r","wire":2,"meshes":[{"meshId":"m"}]})",
        R"({"type":"offline","relay":"r","wire":2})",
        R"({"type":"updated","relay":"r","wire":2,"meshes":[{"meshId":"m","name":"n","rooms":"[]",)"
        R"("participants":"[]","participantCount":0}],"change":"colour"})"}) {
    EXPECT_FALSE(decodeDirectory(text)) << text;
  }
}

TEST(ClusterWire, TakeoverBroadcastAndCountsRoundTrip) {
  const auto t = decodeTakeover(encodeTakeover({"m.1", "r1", "r2", 1'765'000'000'000}));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->meshId, "m.1");
  EXPECT_EQ(t->fromRelayId, "r1");
  EXPECT_EQ(t->toRelayId, "r2");
  EXPECT_EQ(t->epoch, 1'765'000'000'000u);
  EXPECT_FALSE(decodeTakeover(R"({"meshId":"m"})"));
  EXPECT_FALSE(decodeTakeover(R"({"meshId":"m","from":"a","to":"b"})"));

  const std::string frame = "{\"type\":\"gateway_incoming\",\"payload\":\"a\\nb\"}\n{tail";
  const auto b = decodeBroadcast(encodeBroadcast({"r1", "sender", frame}));
  ASSERT_TRUE(b);
  EXPECT_EQ(b->relayId, "r1");
  EXPECT_EQ(b->fromMeshId, "sender");
  EXPECT_EQ(b->incomingText, frame);
  EXPECT_FALSE(decodeBroadcast("no header line"));

  EXPECT_EQ(decodeCount("0"), 0u);
  EXPECT_EQ(decodeCount("4096"), 4096u);
  EXPECT_FALSE(decodeCount(""));
  EXPECT_FALSE(decodeCount("12x"));
  EXPECT_FALSE(decodeCount("-1"));
}

TEST(ClusterWire, RelayBatchCarriesItsFramesInOrderByteForByte) {
  const std::vector<std::string> frames = {R"({"type":"gateway_incoming","n":1.50})", "",
                                           std::string("\n12\nB\0x", 7), std::string(70000, 'z')};
  const std::string text = encodeRelayBatch(frames);
  ASSERT_EQ(text.front(), kBatchMark);
  const auto back = decodeRelayBatch(text);
  ASSERT_TRUE(back);
  ASSERT_EQ(back->size(), frames.size());
  for (std::size_t i = 0; i < frames.size(); ++i) EXPECT_EQ((*back)[i], frames[i]) << i;

  // A lone frame is not a batch; broken batches are refused.
  EXPECT_FALSE(decodeRelayBatch(R"({"type":"gateway_incoming"})"));
  EXPECT_FALSE(decodeRelayBatch(""));
  EXPECT_FALSE(decodeRelayBatch("B"));
  EXPECT_FALSE(decodeRelayBatch("B5\nabc"));
  EXPECT_FALSE(decodeRelayBatch("B3abc"));
  EXPECT_FALSE(decodeRelayBatch("Bx\nabc"));
  EXPECT_FALSE(decodeRelayBatch("B3\nabc4"));
}

// Two relays comparing the same two claims reach the same answer.
TEST(ClusterWire, OfTwoClaimsTheHigherEpochWinsThenTheHigherRelayId) {
  EXPECT_TRUE(claimWins(5, "a", 4, "b"));
  EXPECT_FALSE(claimWins(4, "b", 5, "a"));
  EXPECT_TRUE(claimWins(5, "r2", 5, "r1"));
  EXPECT_FALSE(claimWins(5, "r1", 5, "r2"));
  EXPECT_FALSE(claimWins(5, "r1", 5, "r1"));
}

TEST(ClusterWire, SessionEventsAreJsonWithMeshRelayAndTime) {
  const std::string e = encodeSessionEvent("m.1", "r1", 1'700'000'000'123, "replaced");
  EXPECT_EQ(test::jsonString(e, "meshId"), "m.1");
  EXPECT_EQ(test::jsonString(e, "relay"), "r1");
  EXPECT_EQ(test::jsonString(e, "time"), "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(test::jsonString(e, "reason"), "replaced");
  EXPECT_FALSE(test::jsonHas(encodeSessionEvent("m", "r", 0), "reason"));
}

}  // namespace
}  // namespace mesh::relay::cluster
