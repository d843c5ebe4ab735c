// Three relays on a real three-server NATS cluster, for the cluster-mode
// routing tests. Each relay runs in this process (TestRelay) and talks to
// its own NATS server, so every frame between relays crosses a NATS route.
#pragma once

#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support/metrics_scrape.h"
#include "support/nats_cluster.h"
#include "support/test_relay.h"

namespace mesh::test {

// The admin token of every relay of a RelayCluster.
inline constexpr const char* kAdminToken = "cluster-admin-token-0123456789";

// The meshIds a gateway_discover on `c` lists.
std::set<std::string> discoverIds(WsClient& c);

// Polls `check` every 20 ms until it holds or `timeout` passes.
template <typename Check>
bool eventually(Check check, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (check()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

struct RelayCluster {
  // `shared`: every relay is given every NATS server's URL (for tests that
  // kill a NATS server); otherwise relay i talks to server i only.
  explicit RelayCluster(int relays = 3, bool shared = false);

  TestRelay& relay(int i) { return *relays.at(static_cast<std::size_t>(i)); }
  // Registers `meshId` on every relay (each has its own registry for now)
  // and connects it to relay `i`.
  std::unique_ptr<WsClient> join(int i, const std::string& meshId, const std::string& extra = "",
                                 std::string* authOk = nullptr);
  // Until relay `i` lists `meshId` (or no longer lists it) as online.
  [[nodiscard]] bool waitListed(int i, const std::string& meshId, bool listed = true);
  // Registers on every relay without connecting.
  void registerEverywhere(const std::string& meshId);

  NatsCluster nats;
  std::vector<std::unique_ptr<TestRelay>> relays;
  std::vector<std::unique_ptr<WsClient>> probes;  // one observer mesh per relay
  std::set<std::string> registered;
};

}  // namespace mesh::test
