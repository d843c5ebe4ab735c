// Payload numbers through a real relay: whatever a mesh writes as a number
// (1e400, 400 digits, -0, 0E193...) reaches the other mesh byte for byte,
// with and without the mesh-chat payload filter, and never upsets the relay.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "support/hostile_numbers.h"
#include "support/relay_process.h"
#include "support/test_relay.h"

namespace mesh::test {
namespace {

using namespace std::chrono_literals;

// True when `frame` carries exactly `payload` as its payload member.
bool carriesPayload(const std::string& frame, const std::string& payload) {
  const std::string member = "\"payload\":" + payload;
  const std::size_t at = frame.find(member);
  if (at == std::string::npos) return false;
  const char after = frame[at + member.size()];
  return after == ',' || after == '}';
}

// The next gateway_incoming frame, read as text: the JSON helpers of the
// test support convert numbers and refuse some of these.
std::string nextIncoming(WsClient& c) {
  for (int i = 0; i < 20; ++i) {
    const WsMessage m = c.recv();
    if (m.kind != WsMessage::Kind::Text) {
      ADD_FAILURE() << "expected a text frame, got " << kindName(m.kind);
      return {};
    }
    if (m.data.rfind(R"({"type":"gateway_incoming",)", 0) == 0) return m.data;
  }
  ADD_FAILURE() << "no gateway_incoming in 20 frames";
  return {};
}

std::unique_ptr<WsClient> joinProcess(const RelayProcess& relay, const std::string& meshId) {
  EXPECT_EQ(
      httpRequest(relay.port(), "POST", "/register", TestRelay::registerBodyFor(meshId)).status,
      201);
  auto c = WsClient::connect(relay.port());
  c->sendText(TestRelay::authFrameFor(meshId));
  c->expectType("gateway_auth_ok");
  return c;
}

TEST(PayloadNumbers, MeshChatFilterForwardsEveryNumberByteForByte) {
  TempDir dir;
  RelayProcess relay(MESH_RELAY_BIN,
                     {"--db", (dir.path() / "mesh.db").string(), "--argon2-ops", "1",
                      "--argon2-mem", "8192", "--payload-filter", "mesh-chat"});
  auto a = joinProcess(relay, "mesh-a");
  auto b = joinProcess(relay, "mesh-b");
  std::vector<std::string> numbers = hostileNumbers();
  numbers.push_back(hostileNumbersArray());
  for (const std::string& n : numbers) {
    const std::string message =
        R"({"id":"m1","content":)" + n + R"(,"createdAt":[)" + n + R"(,{"x":)" + n + "}]";
    const std::string sent = R"({"type":)" + n + R"(,"drop":)" + n + R"(,"message":)" + message +
                             R"(,"trustLevel":"owner"}})";
    const std::string expected =
        R"({"type":)" + n + R"(,"message":)" + message + R"(,"trustLevel":"federated"}})";
    a->sendText(R"({"type":"gateway_relay","targetMeshId":"mesh-b","payload":)" + sent + "}");
    const std::string relayed = nextIncoming(*b);
    EXPECT_TRUE(carriesPayload(relayed, expected)) << n << "\n" << relayed;
    b->sendText(R"({"type":"gateway_broadcast","payload":)" + sent + "}");
    const std::string broadcast = nextIncoming(*a);
    EXPECT_TRUE(carriesPayload(broadcast, expected)) << n << "\n" << broadcast;
  }
  // Still relaying between two other meshes.
  auto c = joinProcess(relay, "mesh-c");
  auto d = joinProcess(relay, "mesh-d");
  c->sendText(R"({"type":"gateway_relay","targetMeshId":"mesh-d","payload":{"n":1}})");
  EXPECT_TRUE(carriesPayload(d->expectType("gateway_incoming"), R"({})"));
  EXPECT_EQ(relay.wait(0ms), -1) << "the relay exited: " << relay.log();
}

TEST(PayloadNumbers, UnfilteredRelayForwardsEveryNumberByteForByte) {
  TestRelay relay;
  auto a = relay.join("mesh-a");
  auto b = relay.join("mesh-b");
  for (const std::string& n : hostileNumbers()) {
    const std::string payload = R"({"n":)" + n + R"(,"a":[)" + n + R"(,{"x":)" + n + "}]}";
    a->sendText(R"({"type":"gateway_relay","targetMeshId":"mesh-b","payload":)" + payload + "}");
    const std::string relayed = nextIncoming(*b);
    EXPECT_TRUE(carriesPayload(relayed, payload)) << n << "\n" << relayed;
  }
  expectRelayStillServes(relay);
}

}  // namespace
}  // namespace mesh::test
