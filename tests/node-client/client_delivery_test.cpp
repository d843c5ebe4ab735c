// Delivery bookkeeping of libmeshclient against the real relay: an ack that
// does not come in time, the outbox caps, and giving up on old messages.
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <memory>
#include <stdexcept>
#include <thread>

#include "node_harness.h"
#include "relay_runner.h"

namespace mesh::test {
namespace {

using client::DeliveryReport;
using client::Status;
using std::chrono::milliseconds;

const std::string kSecretA = "alpha-secret-0123456789";
const std::string kSecretB = "bravo-secret-0123456789";
// Nothing listens here: a node pointed at it never connects.
const std::string kNowhere = "ws://127.0.0.1:1/gateway";

std::string payloadN(int n) {
  return "{\"type\":\"test\",\"n\":" + std::to_string(n) + "}";
}

// Counts the gateway_incoming frames carrying a given id, before the
// client's de-duplication: onFrame sees every frame.
class FrameCounter {
 public:
  void add(const std::string& frame) {
    std::lock_guard lock(mu_);
    frames_.push_back(frame);
  }
  int incomingWithId(const std::string& id) {
    std::lock_guard lock(mu_);
    int n = 0;
    for (const auto& f : frames_) {
      if (f.find("\"gateway_incoming\"") != std::string::npos &&
          f.find("\"id\":\"" + id + "\"") != std::string::npos) {
        ++n;
      }
    }
    return n;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> frames_;
};

// A relay with meshes alpha and bravo registered and connected: alpha with
// the delivery options `tweakAlpha` sets, bravo counting every frame it
// receives.
class AlphaAndBravo {
 public:
  explicit AlphaAndBravo(const std::function<void(client::Options&)>& tweakAlpha) {
    relay.start();
    relay.registerMesh("alpha", kSecretA, "Alpha");
    relay.registerMesh("bravo", kSecretB, "Bravo");
    auto a = Node::options("alpha", kSecretA, relay.gatewayUrl(), dir.file("alpha.db"));
    tweakAlpha(a);
    alpha = std::make_unique<Node>(a);
    auto b = Node::options("bravo", kSecretB, relay.gatewayUrl(), dir.file("bravo.db"));
    b.callbacks.onFrame = [this](const std::string& f) { frames.add(f); };
    bravo = std::make_unique<Node>(b);
    if (!(*alpha)->waitConnected(kWait).ok() || !(*bravo)->waitConnected(kWait).ok()) {
      throw std::runtime_error("alpha and bravo did not both connect");
    }
  }

  TempDir dir;
  RelayRunner relay{dir};
  FrameCounter frames;
  std::unique_ptr<Node> alpha;
  std::unique_ptr<Node> bravo;
};

TEST(MeshClientDelivery, ResendsWhenTheAckDoesNotComeInTime) {
  AlphaAndBravo nodes([](client::Options& a) { a.ackTimeout = milliseconds(200); });
  auto& relay = nodes.relay;
  auto& frames = nodes.frames;
  Node& alpha = *nodes.alpha;
  Node& bravo = *nodes.bravo;
  const std::size_t statesBefore = alpha.snapshot().states.size();

  // The relay stops answering while its sockets stay open: the frame waits
  // in the kernel, no ack comes, and the client sends it again.
  relay.pause();
  auto id = alpha->relay("bravo", payloadN(1));
  ASSERT_TRUE(id.ok());
  // The pause itself is what is tested: time must pass without an ack.
  std::this_thread::sleep_for(milliseconds(900));
  relay.resume();

  ASSERT_TRUE(alpha.waitFor([](const Seen& s) { return !s.deliveries.empty(); }));
  ASSERT_TRUE(bravo.waitFor([](const Seen& s) { return !s.messages.empty(); }));
  // 200, 400 (doubled) and so on: at least one more copy went out.
  ASSERT_TRUE(bravo.waitFor([&](const Seen&) { return frames.incomingWithId(id.value()) >= 2; },
                            milliseconds(5000)))
      << "copies seen: " << frames.incomingWithId(id.value());
  // Let the other copies' acks arrive: they must change nothing.
  const auto settled = alpha->discover(kWait);
  ASSERT_TRUE(settled.ok());
  const Seen sender = alpha.snapshot();
  ASSERT_EQ(sender.deliveries.size(), 1u);
  EXPECT_EQ(sender.deliveries[0].id, id.value());
  EXPECT_EQ(sender.deliveries[0].outcome, DeliveryReport::Outcome::Delivered);
  EXPECT_EQ(alpha->pendingCount(), 0u);
  // On the same connection: no reconnect happened.
  EXPECT_EQ(sender.states.size(), statesBefore);
  // The receiver passed it on once.
  EXPECT_EQ(bravo.snapshot().messages.size(), 1u);
}

TEST(MeshClientDelivery, NoResendWhenAckTimeoutIsOff) {
  AlphaAndBravo nodes([](client::Options& a) { a.ackTimeout = milliseconds(0); });
  auto& relay = nodes.relay;
  Node& alpha = *nodes.alpha;
  Node& bravo = *nodes.bravo;

  relay.pause();
  auto id = alpha->relay("bravo", payloadN(1));
  ASSERT_TRUE(id.ok());
  std::this_thread::sleep_for(milliseconds(500));
  relay.resume();
  ASSERT_TRUE(alpha.waitFor([](const Seen& s) { return !s.deliveries.empty(); }));
  // Frames keep their order on one connection: a copy of the first would
  // reach bravo before the second does.
  ASSERT_TRUE(alpha->relay("bravo", payloadN(2)).ok());
  ASSERT_TRUE(bravo.waitFor([](const Seen& s) { return s.messages.size() == 2; }));
  EXPECT_EQ(nodes.frames.incomingWithId(id.value()), 1);
}

TEST(MeshClientDelivery, OutboxFullFailsFast) {
  TempDir dir;
  auto o = Node::options("alpha", kSecretA, kNowhere, dir.file("alpha.db"));
  o.maxPendingMessages = 3;
  {
    Node alpha(o);
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(alpha->relay("bravo", payloadN(i)).ok());
    auto full = alpha->relay("bravo", payloadN(3));
    ASSERT_FALSE(full.ok());
    EXPECT_EQ(full.status(), Status::OutboxFull);
    EXPECT_NE(full.error().message.find("maxPendingMessages 3"), std::string::npos)
        << full.error().message;
    EXPECT_EQ(alpha->broadcast(payloadN(3)).status(), Status::OutboxFull);
    EXPECT_EQ(alpha->pendingCount(), 3u);
  }
  // What a previous run left counts too.
  {
    Node alpha(o);
    EXPECT_EQ(alpha->relay("bravo", payloadN(4)).status(), Status::OutboxFull);
  }

  // Bytes: payloads of 28 bytes against a cap of 70, so two fit.
  o.maxPendingMessages = 0;
  o.maxPendingBytes = 70;
  o.outboxPath = ":memory:";
  Node bytes(o);
  const std::string small = R"({"type":"t","pad":"0123456"})";
  ASSERT_EQ(small.size(), 28u);
  ASSERT_TRUE(bytes->relay("bravo", small).ok());
  ASSERT_TRUE(bytes->relay("bravo", small).ok());
  auto over = bytes->relay("bravo", small);
  EXPECT_EQ(over.status(), Status::OutboxFull);
  EXPECT_NE(over.error().message.find("maxPendingBytes 70"), std::string::npos)
      << over.error().message;
}

TEST(MeshClientDelivery, OutboxCapHoldsUnderConcurrentCallers) {
  auto o = Node::options("alpha", kSecretA, kNowhere, ":memory:");
  o.maxPendingMessages = 25;
  Node alpha(o);
  std::atomic<int> accepted{0};
  std::atomic<int> refused{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        auto r = t % 2 == 0 ? alpha->relay("bravo", payloadN(i)) : alpha->broadcast(payloadN(i));
        if (r.ok()) {
          ++accepted;
        } else if (r.status() == Status::OutboxFull) {
          ++refused;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(accepted.load(), 25);
  EXPECT_EQ(refused.load(), 55);
  EXPECT_EQ(alpha->pendingCount(), 25u);
}

TEST(MeshClientDelivery, DeliveredMessagesMakeRoomAgain) {
  AlphaAndBravo nodes([](client::Options& a) { a.maxPendingMessages = 2; });
  Node& alpha = *nodes.alpha;
  Node& bravo = *nodes.bravo;
  for (int round = 0; round < 5; ++round) {
    ASSERT_TRUE(alpha->relay("bravo", payloadN(2 * round)).ok());
    ASSERT_TRUE(alpha->relay("bravo", payloadN(2 * round + 1)).ok());
    const std::size_t want = 2 * static_cast<std::size_t>(round + 1);
    ASSERT_TRUE(alpha.waitFor([want](const Seen& s) { return s.deliveries.size() == want; }));
  }
  ASSERT_TRUE(bravo.waitFor([](const Seen& s) { return s.messages.size() == 10; }));
}

TEST(MeshClientDelivery, GivesUpOldMessagesWhileTheRelayIsUnreachable) {
  TempDir dir;
  auto o = Node::options("alpha", kSecretA, kNowhere, dir.file("alpha.db"));
  o.maxMessageAge = milliseconds(300);
  {
    Node alpha(o);
    auto id = alpha->relay("bravo", payloadN(1));
    ASSERT_TRUE(id.ok());
    ASSERT_TRUE(alpha.waitFor([](const Seen& s) { return !s.deliveries.empty(); }));
    const auto report = alpha.snapshot().deliveries.at(0);
    EXPECT_EQ(report.id, id.value());
    EXPECT_EQ(report.outcome, DeliveryReport::Outcome::GaveUp);
    EXPECT_NE(report.reason.find("relay unreachable"), std::string::npos) << report.reason;
    EXPECT_NE(report.reason.find("maxMessageAge 300 ms"), std::string::npos) << report.reason;
    EXPECT_EQ(alpha->pendingCount(), 0u);

    // One left behind for the next start.
    o.maxMessageAge = std::chrono::hours(1);
  }
  {
    Node alpha(o);
    ASSERT_TRUE(alpha->relay("bravo", payloadN(2)).ok());
    alpha->stop();
  }
  // Started again after it aged out: given up at once, not sent.
  o.maxMessageAge = milliseconds(1);
  std::this_thread::sleep_for(milliseconds(20));
  Node alpha(o);
  ASSERT_TRUE(alpha.waitFor([](const Seen& s) { return !s.deliveries.empty(); }));
  EXPECT_EQ(alpha.snapshot().deliveries.at(0).outcome, DeliveryReport::Outcome::GaveUp);
  EXPECT_EQ(alpha->pendingCount(), 0u);
}

}  // namespace
}  // namespace mesh::test
