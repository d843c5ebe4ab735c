// meshctl listen prints each frame on one line: a payload the sender wrote
// over several lines is compacted, with every number as it was written.
#include <gtest/gtest.h>
#include <signal.h>

#include <string>
#include <thread>

#include "relay_runner.h"
#include "support/hostile_numbers.h"
#include "support/ws_client.h"

namespace mesh::test {
namespace {

using namespace std::chrono_literals;

TEST(MeshctlNumbers, ListenKeepsNumbersWhenItCompactsAPayload) {
  TempDir dir;
  RelayRunner relay(dir);
  relay.start();
  relay.registerMesh("echo", "echo-secret-0123456789", "Echo");
  relay.registerMesh("fox", "fox-secret-0123456789", "Fox");

  const std::string out = dir.file("listen.out");
  const pid_t listener = spawnProcess(MESH_MESHCTL_BIN,
                                      {"listen", "--url", relay.gatewayUrl(), "--mesh-id", "echo",
                                       "--secret", "echo-secret-0123456789", "--timeout", "5"},
                                      dir.file("listen.err"), out);
  auto fox = WsClient::connect(relay.port());
  fox->sendText(R"({"type":"gateway_auth","meshId":"fox","secret":"fox-secret-0123456789"})");
  fox->expectType("gateway_auth_ok");
  // Relayed once the listener is online (until then: offline acks).
  const std::string numbers = hostileNumbersArray();
  const std::string frame =
      "{\"type\":\"gateway_relay\",\"targetMeshId\":\"echo\",\"id\":\"n1\","
      "\"payload\":{\n  \"n\" : " +
      numbers + "\n}}";
  bool delivered = false;
  for (int attempt = 0; attempt < 100 && !delivered; ++attempt) {
    fox->sendText(frame);
    delivered = jsonString(fox->expectType("gateway_ack"), "status") == "delivered";
    if (!delivered) std::this_thread::sleep_for(50ms);
  }
  ASSERT_TRUE(delivered);
  std::string lines;
  for (int attempt = 0; attempt < 100; ++attempt) {
    lines = readFile(out);
    if (lines.find("gateway_incoming") != std::string::npos) break;
    std::this_thread::sleep_for(50ms);
  }
  ::kill(listener, SIGINT);
  EXPECT_EQ(waitProcess(listener, std::chrono::seconds(10)), 0);
  EXPECT_NE(lines.find("\"payload\":{\"n\":" + numbers + "}"), std::string::npos) << lines;
}

}  // namespace
}  // namespace mesh::test
