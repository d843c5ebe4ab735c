// Payload numbers through libmeshclient and a real relay: what one node
// hands to relay() reaches the other node's onMessage byte for byte,
// whatever the numbers in it, with and without the mesh-chat filter.
#include <gtest/gtest.h>

#include <string>

#include "node_harness.h"
#include "support/hostile_numbers.h"
#include "support/temp_dir.h"
#include "support/test_relay.h"

namespace mesh::test {
namespace {

std::string gatewayUrl(const TestRelay& relay) {
  return "ws://127.0.0.1:" + std::to_string(relay.port()) + "/gateway";
}

// Sends each payload from alpha to bravo and returns what bravo's callback
// saw, in order.
std::vector<std::string> relayThroughNodes(TestRelay& relay, const TempDir& dir,
                                           const std::vector<std::string>& payloads) {
  for (const char* id : {"alpha", "bravo"}) {
    EXPECT_EQ(relay.registerMesh(id, TestRelay::secretFor(id), id), 201);
  }
  Node alpha(Node::options("alpha", TestRelay::secretFor("alpha"), gatewayUrl(relay),
                           dir.file("alpha.db")));
  Node bravo(Node::options("bravo", TestRelay::secretFor("bravo"), gatewayUrl(relay),
                           dir.file("bravo.db")));
  EXPECT_TRUE(alpha->waitConnected(kWait).ok());
  EXPECT_TRUE(bravo->waitConnected(kWait).ok());
  for (const auto& p : payloads) {
    const auto sent = alpha->relay("bravo", p);
    EXPECT_TRUE(sent.ok()) << p << ": " << sent.error().message;
  }
  EXPECT_TRUE(bravo.waitFor([&](const Seen& s) { return s.messages.size() == payloads.size(); }));
  std::vector<std::string> got;
  for (const auto& m : bravo.snapshot().messages) got.push_back(m.payloadJson);
  return got;
}

TEST(MeshClientNumbers, PayloadNumbersReachTheCallbackByteForByte) {
  TempDir dir;
  TestRelay relay;
  std::vector<std::string> payloads;
  for (const std::string& n : hostileNumbers()) {
    payloads.push_back(R"({"n":)" + n + R"(,"a":[)" + n + R"(,{"x":)" + n + "}]}");
  }
  payloads.push_back(R"({"all":)" + hostileNumbersArray() + "}");
  EXPECT_EQ(relayThroughNodes(relay, dir, payloads), payloads);
}

TEST(MeshClientNumbers, MeshChatFilteredNumbersReachTheCallbackByteForByte) {
  TempDir dir;
  TestRelay relay([](relay::Config& c) { c.payloadFilter = relay::PayloadFilter::MeshChat; });
  std::vector<std::string> payloads;
  std::vector<std::string> expected;
  for (const std::string& n : hostileNumbers()) {
    const std::string message = R"({"content":)" + n + R"(,"createdAt":[)" + n + "]";
    payloads.push_back(R"({"type":)" + n + R"(,"message":)" + message + R"(}})");
    expected.push_back(R"({"type":)" + n + R"(,"message":)" + message +
                       R"(,"trustLevel":"federated"}})");
  }
  EXPECT_EQ(relayThroughNodes(relay, dir, payloads), expected);
}

// What the node sends is compacted, numbers untouched.
TEST(MeshClientNumbers, WhitespaceGoesNumbersStay) {
  TempDir dir;
  TestRelay relay;
  const std::string big = std::string(400, '9');
  EXPECT_EQ(relayThroughNodes(relay, dir, {"{ \"n\" : [ 0E193 , -0 ,\n" + big + " ] }"}),
            std::vector<std::string>{R"({"n":[0E193,-0,)" + big + "]}"});
}

}  // namespace
}  // namespace mesh::test
