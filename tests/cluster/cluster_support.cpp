#include "cluster_support.h"

#include <gtest/gtest.h>

#include <thread>

namespace mesh::test {

std::set<std::string> discoverIds(WsClient& c) {
  static int n = 0;
  const std::string id = "discover-" + std::to_string(++n);
  c.sendText(R"({"type":"gateway_discover","id":")" + id + R"("})");
  std::set<std::string> out;
  for (int i = 0; i < 50; ++i) {
    const std::string text = c.expectType("gateway_discover_result");
    if (jsonString(text, "id") != id) continue;
    const auto d = json(text);
    for (const auto& inst : d["instances"].GetArray()) out.insert(inst["meshId"].GetString());
    break;
  }
  return out;
}

RelayCluster::RelayCluster(int count, bool shared) : nats(3) {
  for (int i = 0; i < count; ++i) {
    relays.push_back(std::make_unique<TestRelay>([&, i](relay::Config& c) {
      c.natsUrls = shared ? std::vector<std::string>{nats.url(0), nats.url(1), nats.url(2)}
                          : std::vector<std::string>{nats.url(i % nats.size())};
      c.relayId = "r" + std::to_string(i);
      c.logLevel = relay::LogLevel::Warn;
      // Observers poll with discover; ordering tests send fast.
      c.controlRate = 1000;
      c.controlBurst = 1000;
      c.rateLimit = 0;
      c.adminToken = kAdminToken;
    }));
  }
  // Every relay has heard every other one before a test starts.
  for (int i = 0; i < count; ++i) {
    const auto port = relays[static_cast<std::size_t>(i)]->port();
    EXPECT_TRUE(eventually([&] {
      return metricValue(port, "mesh_relay_cluster_relays") == count - 1;
    })) << "relay r"
        << i << " does not see the others";
  }
  for (int i = 0; i < count; ++i) probes.push_back(join(i, "probe-" + std::to_string(i)));
}

void RelayCluster::registerEverywhere(const std::string& meshId) {
  if (!registered.insert(meshId).second) return;
  for (auto& r : relays) {
    const int status = r->registerMesh(meshId, TestRelay::secretFor(meshId), "Name " + meshId);
    EXPECT_TRUE(status == 200 || status == 201) << "register " << meshId << ": " << status;
  }
}

std::unique_ptr<WsClient> RelayCluster::join(int i, const std::string& meshId,
                                             const std::string& extra, std::string* authOk) {
  registerEverywhere(meshId);
  return relay(i).connectAs(meshId, TestRelay::secretFor(meshId), extra, authOk);
}

bool RelayCluster::waitListed(int i, const std::string& meshId, bool listed) {
  return eventually([&] {
    return discoverIds(*probes.at(static_cast<std::size_t>(i))).contains(meshId) == listed;
  });
}

}  // namespace mesh::test
