// The NATS cluster the cluster-mode tests run on: three real nats-server
// processes. These tests prove the harness itself (routes between the
// servers, a replicated JetStream KV bucket, a server killed and back).
#include <gtest/gtest.h>
#include <nats/nats.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "support/nats_cluster.h"

namespace {

using mesh::test::NatsCluster;

// One connection to one server of the cluster, closed with the object.
struct Conn {
  natsConnection* nc = nullptr;
  explicit Conn(const std::string& url) {
    natsOptions* opts = nullptr;
    EXPECT_EQ(natsOptions_Create(&opts), NATS_OK);
    // natsOptions_SetURL takes one URL; a list goes to SetServers.
    std::vector<std::string> urls;
    for (std::size_t at = 0; at <= url.size();) {
      const auto comma = std::min(url.find(',', at), url.size());
      urls.push_back(url.substr(at, comma - at));
      at = comma + 1;
    }
    std::vector<const char*> list;
    for (const auto& u : urls) list.push_back(u.c_str());
    EXPECT_EQ(natsOptions_SetServers(opts, list.data(), static_cast<int>(list.size())), NATS_OK);
    natsOptions_SetTimeout(opts, 2000);
    EXPECT_EQ(natsConnection_Connect(&nc, opts), NATS_OK);
    natsOptions_Destroy(opts);
  }
  ~Conn() { natsConnection_Destroy(nc); }
};

TEST(NatsHarness, MessagesCrossTheRoutesBetweenServers) {
  NatsCluster cluster(3);
  Conn a(cluster.url(0));
  Conn c(cluster.url(2));
  ASSERT_NE(a.nc, nullptr);
  ASSERT_NE(c.nc, nullptr);
  natsSubscription* sub = nullptr;
  ASSERT_EQ(natsConnection_SubscribeSync(&sub, a.nc, "harness.ping"), NATS_OK);
  ASSERT_EQ(natsConnection_Flush(a.nc), NATS_OK);
  // Interest crosses the route asynchronously: publish until it arrives.
  natsMsg* msg = nullptr;
  for (int i = 0; i < 50 && msg == nullptr; ++i) {
    ASSERT_EQ(natsConnection_PublishString(c.nc, "harness.ping", "hello"), NATS_OK);
    natsConnection_Flush(c.nc);
    if (natsSubscription_NextMsg(&msg, sub, 100) != NATS_OK) msg = nullptr;
  }
  ASSERT_NE(msg, nullptr);
  EXPECT_EQ(std::string(natsMsg_GetData(msg), static_cast<std::size_t>(natsMsg_GetDataLength(msg))),
            "hello");
  natsMsg_Destroy(msg);
  natsSubscription_Destroy(sub);
}

TEST(NatsHarness, ReplicatedKeyValueSurvivesAKilledServer) {
  NatsCluster cluster(3);
  Conn conn(cluster.urls());
  ASSERT_NE(conn.nc, nullptr);
  jsCtx* js = nullptr;
  ASSERT_EQ(natsConnection_JetStream(&js, conn.nc, nullptr), NATS_OK);
  kvConfig cfg;
  kvConfig_Init(&cfg);
  cfg.Bucket = "harness";
  cfg.Replicas = 3;
  kvStore* kv = nullptr;
  ASSERT_EQ(js_CreateKeyValue(&kv, js, &cfg), NATS_OK) << nats_GetLastError(nullptr);
  std::uint64_t rev = 0;
  ASSERT_EQ(kvStore_PutString(&rev, kv, "k", "v1"), NATS_OK);
  EXPECT_EQ(rev, 1u);

  // Kill one server: with two of three left, writes go on once JetStream
  // has a leader for the stream again.
  cluster.kill(0);
  bool written = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (!written && std::chrono::steady_clock::now() < deadline) {
    written = kvStore_PutString(&rev, kv, "k", "v2") == NATS_OK;
    if (!written) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(written);
  kvEntry* e = nullptr;
  ASSERT_EQ(kvStore_Get(&e, kv, "k"), NATS_OK);
  EXPECT_STREQ(kvEntry_ValueString(e), "v2");
  kvEntry_Destroy(e);

  cluster.restart(0);
  EXPECT_TRUE(cluster.waitReady(std::chrono::seconds(20))) << cluster.log(0);
  kvStore_Destroy(kv);
  jsCtx_Destroy(js);
}

}  // namespace
