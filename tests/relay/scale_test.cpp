// Many meshes at once: every relay arrives exactly once.
#include <gtest/gtest.h>
#include <poll.h>

#include <set>

#include "support/test_relay.h"

namespace mesh::test {
namespace {

using namespace std::chrono_literals;

TEST(Scale, FiveHundredMeshesRelayToEachOtherWithoutLossOrDuplicates) {
  constexpr int kMeshes = 500;
  constexpr int kRounds = 4;
  TestRelay relay([](relay::Config& c) {
    c.rateLimit = 0;
    c.maxUnauthenticatedPerIp = 1000;
  });
  std::vector<std::unique_ptr<WsClient>> clients;
  for (int i = 0; i < kMeshes; ++i) clients.push_back(relay.join("m" + std::to_string(i)));
  ASSERT_EQ(httpRequest(relay.port(), "GET", "/health").body, R"({"ok":true,"connected":500})");

  // Every mesh sends kRounds relays, each to a different peer.
  for (int round = 1; round <= kRounds; ++round) {
    for (int i = 0; i < kMeshes; ++i) {
      const int target = (i + round * 37) % kMeshes;
      clients[static_cast<std::size_t>(i)]->sendText(
          R"({"type":"gateway_relay","targetMeshId":"m)" + std::to_string(target) +
          R"(","payload":{"from":)" + std::to_string(i) + R"(,"round":)" + std::to_string(round) +
          "}}");
    }
  }
  // Each mesh receives exactly one relay per round.
  for (int i = 0; i < kMeshes; ++i) {
    std::set<std::string> got;
    while (got.size() < static_cast<std::size_t>(kRounds)) {
      auto m = clients[static_cast<std::size_t>(i)]->recv(10000ms);
      ASSERT_EQ(m.kind, WsMessage::Kind::Text) << "mesh " << i << " after " << got.size();
      if (jsonString(m.data, "type") != "gateway_incoming") continue;  // presence
      auto d = json(m.data);
      const int from = d["payload"]["from"].GetInt();
      const int round = d["payload"]["round"].GetInt();
      EXPECT_EQ((from + round * 37) % kMeshes, i);
      EXPECT_EQ(std::string(d["fromMeshId"].GetString()), "m" + std::to_string(from));
      EXPECT_TRUE(got.insert(std::to_string(from) + "/" + std::to_string(round)).second)
          << "duplicate at mesh " << i;
    }
  }
  // Nothing more is on its way: a probe comes back with no relay before it.
  for (int i = 0; i < kMeshes; i += 25) {
    for (const auto& f : framesUntilProbe(*clients[static_cast<std::size_t>(i)])) {
      EXPECT_NE(jsonString(f, "type"), "gateway_incoming") << "extra frame at mesh " << i;
    }
  }
}

}  // namespace
}  // namespace mesh::test
