// libmeshclient against a relay with an authorize hook (a real HTTP server
// started by the test): authorize_unavailable is passing, so the node tries
// again and gets in once the hook answers; not_authorized is final.
#include <gtest/gtest.h>

#include <atomic>

#include "node_harness.h"
#include "relay_runner.h"
#include "support/hook_server.h"
#include "support/ws_client.h"

namespace mesh::test {
namespace {

using client::ConnectionState;
using client::Status;
using namespace std::chrono_literals;

const std::string kSecret = "alpha-secret-0123456789";

TEST(MeshClientAuthorize, RetriesWhileTheHookIsUnavailableAndGetsInOnceItAnswers) {
  std::atomic<int> calls{0};
  HookServer hook([&](const HookRequest&) {
    // The first three calls fail as a hook that is down for a moment would.
    return ++calls <= 3 ? HookReply{503, "{}", 0ms} : HookReply{200, R"({"allow":true})", 0ms};
  });
  TempDir dir;
  RelayRunner relay(dir);
  relay.setExtraArgs({"--authorize-url", hook.url(), "--authorize-cache-ttl", "0"});
  relay.start();
  relay.registerMesh("alpha", kSecret, "Alpha");
  Node alpha(Node::options("alpha", kSecret, relay.gatewayUrl(), dir.file("alpha.db")));
  ASSERT_TRUE(alpha->waitConnected(kWait).ok());
  EXPECT_GE(calls.load(), 4);
  EXPECT_EQ(alpha->state(), ConnectionState::Connected);
}

TEST(MeshClientAuthorize, NotAuthorizedIsFinal) {
  HookServer hook([](const HookRequest&) {
    return HookReply{200, R"({"allow":false,"reason":"suspended"})", 0ms};
  });
  TempDir dir;
  RelayRunner relay(dir);
  relay.setExtraArgs({"--authorize-url", hook.url()});
  relay.start();
  relay.registerMesh("alpha", kSecret, "Alpha");
  Node alpha(Node::options("alpha", kSecret, relay.gatewayUrl(), dir.file("alpha.db")));
  auto connected = alpha->waitConnected(kWait);
  ASSERT_FALSE(connected.ok());
  EXPECT_EQ(connected.status(), Status::AuthFailed) << connected.error().message;
  EXPECT_NE(connected.error().message.find("suspended"), std::string::npos)
      << connected.error().message;
  EXPECT_EQ(alpha->state(), ConnectionState::Failed);
  EXPECT_EQ(hook.requestCount(), 1u);
}

}  // namespace
}  // namespace mesh::test
