// libmeshclient against a real mesh-relay process on 127.0.0.1.
#include <gtest/gtest.h>
#include <rapidjson/document.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "mesh/client/http.h"
#include "node_harness.h"
#include "relay_runner.h"
#include "support/ws_client.h"

namespace mesh::test {

std::map<int, int> countByN(const std::vector<client::IncomingMessage>& messages) {
  std::map<int, int> counts;
  for (const auto& m : messages) {
    rapidjson::Document doc;
    doc.Parse(m.payloadJson.data(), m.payloadJson.size());
    if (!doc.HasParseError() && doc.IsObject() && doc.HasMember("n") && doc["n"].IsInt()) {
      ++counts[doc["n"].GetInt()];
    }
  }
  return counts;
}

namespace {

using client::ConnectionState;
using client::DeliveryReport;
using client::Status;
using std::chrono::milliseconds;

const std::string kSecretA = "alpha-secret-0123456789";
const std::string kSecretB = "bravo-secret-0123456789";

std::string payloadN(int n) {
  return "{\"type\":\"test\",\"n\":" + std::to_string(n) + "}";
}

bool hasAllOnce(const std::map<int, int>& counts, int total) {
  if (static_cast<int>(counts.size()) != total) return false;
  for (const auto& [n, count] : counts) {
    if (count != 1) return false;
  }
  return true;
}

class MeshClient : public ::testing::Test {
 protected:
  void SetUp() override {
    relay = std::make_unique<RelayRunner>(dir);
    relay->start();
    relay->registerMesh("alpha", kSecretA, "Alpha");
    relay->registerMesh("bravo", kSecretB, "Bravo");
  }

  client::Options optionsFor(const std::string& meshId) {
    return Node::options(meshId, meshId == "alpha" ? kSecretA : kSecretB, relay->gatewayUrl(),
                         dir.file(meshId + ".db"));
  }

  TempDir dir;
  std::unique_ptr<RelayRunner> relay;
};

TEST(ClientOptions, DerivesHttpBaseFromGatewayUrl) {
  EXPECT_EQ(client::httpBaseFromGatewayUrl("ws://localhost:4000/gateway").value(),
            "http://localhost:4000");
  EXPECT_EQ(client::httpBaseFromGatewayUrl("wss://relay.example/gateway").value(),
            "https://relay.example");
  EXPECT_EQ(client::httpBaseFromGatewayUrl("wss://relay.example:8443/mesh/gateway").value(),
            "https://relay.example:8443/mesh");
  EXPECT_FALSE(client::httpBaseFromGatewayUrl("http://relay.example/gateway").ok());
}

TEST(ClientOptions, RefusesBadIdentity) {
  auto o = Node::options("not valid!", kSecretA, "ws://127.0.0.1:1/gateway", ":memory:");
  EXPECT_EQ(client::Client::start(o).status(), Status::InvalidArgument);
  o = Node::options("alpha", "short", "ws://127.0.0.1:1/gateway", ":memory:");
  EXPECT_EQ(client::Client::start(o).status(), Status::InvalidArgument);
  o = Node::options("alpha", kSecretA, "http://127.0.0.1:1/gateway", ":memory:");
  EXPECT_EQ(client::Client::start(o).status(), Status::InvalidArgument);
}

// Sets environment variables for one test and puts the old values back.
class ScopedEnv {
 public:
  ScopedEnv() {
    for (const char* name :
         {"MESH_ID", "MESH_SECRET", "MESH_GATEWAY_URL", "MESH_NAME", "MESH_HTTP_URL",
          "MESH_CA_FILE", "MESH_OUTBOX_PATH", "MESH_AUTO_REGISTER"}) {
      set(name, std::nullopt);
    }
  }
  ~ScopedEnv() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) apply(it->first, it->second);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

  void set(const std::string& name, std::optional<std::string> value) {
    const char* old = std::getenv(name.c_str());
    saved_.emplace_back(name, old != nullptr ? std::optional<std::string>(old) : std::nullopt);
    apply(name, value);
  }

 private:
  static void apply(const std::string& name, const std::optional<std::string>& value) {
    if (value) {
      ::setenv(name.c_str(), value->c_str(), 1);
    } else {
      ::unsetenv(name.c_str());
    }
  }
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

TEST(ClientOptions, ReadsTheEnvironment) {
  ScopedEnv env;
  auto none = client::Options::fromEnvironment();
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status(), Status::InvalidArgument);
  EXPECT_NE(none.error().message.find("MESH_ID"), std::string::npos);
  env.set("MESH_ID", "alpha");
  auto noSecret = client::Options::fromEnvironment();
  ASSERT_FALSE(noSecret.ok());
  EXPECT_NE(noSecret.error().message.find("MESH_SECRET"), std::string::npos);

  env.set("MESH_SECRET", kSecretA);
  auto minimal = client::Options::fromEnvironment();
  ASSERT_TRUE(minimal.ok()) << minimal.error().message;
  EXPECT_EQ(minimal.value().meshId, "alpha");
  EXPECT_EQ(minimal.value().secret, kSecretA);
  EXPECT_EQ(minimal.value().gatewayUrl, "ws://localhost:4000/gateway");
  EXPECT_TRUE(minimal.value().httpBaseUrl.empty());
  EXPECT_TRUE(minimal.value().caFile.empty());
  EXPECT_FALSE(minimal.value().autoRegister);
  EXPECT_TRUE(client::validate(minimal.value()).ok());

  env.set("MESH_GATEWAY_URL", "wss://relay.example:8443/gateway");
  env.set("MESH_NAME", "Alpha Mesh");
  env.set("MESH_HTTP_URL", "https://relay.example:8443");
  env.set("MESH_CA_FILE", "/etc/mesh/relay-ca.pem");
  env.set("MESH_OUTBOX_PATH", "alpha.db");
  env.set("MESH_AUTO_REGISTER", "TRUE");
  client::Options base;
  base.maxInFlight = 7;
  base.autoRegister = false;
  auto full = client::Options::fromEnvironment(base);
  ASSERT_TRUE(full.ok()) << full.error().message;
  const auto& o = full.value();
  EXPECT_EQ(o.gatewayUrl, "wss://relay.example:8443/gateway");
  EXPECT_EQ(o.name, "Alpha Mesh");
  EXPECT_EQ(o.httpBaseUrl, "https://relay.example:8443");
  EXPECT_EQ(o.caFile, "/etc/mesh/relay-ca.pem");
  EXPECT_EQ(o.outboxPath, "alpha.db");
  EXPECT_TRUE(o.autoRegister);
  EXPECT_EQ(o.maxInFlight, 7u);  // what the environment does not name stays

  for (const char* off : {"0", "false", "No", "off"}) {
    env.set("MESH_AUTO_REGISTER", off);
    base.autoRegister = true;
    EXPECT_FALSE(client::Options::fromEnvironment(base).value().autoRegister) << off;
  }
  env.set("MESH_AUTO_REGISTER", "maybe");
  auto bad = client::Options::fromEnvironment();
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("MESH_AUTO_REGISTER"), std::string::npos);
}

TEST(ClientOptions, RefusesBadLimits) {
  auto o = Node::options("alpha", kSecretA, "ws://127.0.0.1:1/gateway", ":memory:");
  o.ackTimeout = milliseconds(-1);
  EXPECT_EQ(client::Client::start(o).status(), Status::InvalidArgument);
  o = Node::options("alpha", kSecretA, "ws://127.0.0.1:1/gateway", ":memory:");
  o.reconnectMax = milliseconds(10);
  o.reconnectMin = milliseconds(20);
  EXPECT_EQ(client::Client::start(o).status(), Status::InvalidArgument);
}

TEST(ClientReconnect, BackoffDoublesUpToTheCapWithJitter) {
  // Nothing listens: every attempt fails at once, so the time between two
  // attempts is the backoff delay.
  auto o = Node::options("alpha", kSecretA, "ws://127.0.0.1:1/gateway", ":memory:");
  o.reconnectMin = milliseconds(100);
  o.reconnectMax = milliseconds(400);
  o.jitter = 0.5;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::chrono::steady_clock::time_point> attempts;
  o.callbacks.onStateChange = [&](ConnectionState s, const std::string&) {
    if (s != ConnectionState::Connecting) return;
    {
      std::lock_guard lock(mu);
      attempts.push_back(std::chrono::steady_clock::now());
    }
    cv.notify_all();
  };
  auto started = client::Client::start(o);
  ASSERT_TRUE(started.ok());
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, kWait, [&] { return attempts.size() >= 9; }));
  }
  started.value()->stop();
  std::vector<double> gaps;
  for (std::size_t i = 1; i < 9; ++i) {
    gaps.push_back(
        std::chrono::duration<double, std::milli>(attempts[i] - attempts[i - 1]).count());
  }
  // Delay k: min(100 * 2^k, 400) cut by up to half. The upper bound leaves
  // room for a busy machine but stays under 800, where an uncapped
  // doubling would be by the fourth gap.
  for (std::size_t k = 0; k < gaps.size(); ++k) {
    const double base = std::min(100.0 * static_cast<double>(1U << k), 400.0);
    EXPECT_GE(gaps[k], base * 0.5 - 2) << "gap " << k;
    EXPECT_LE(gaps[k], base + 300) << "gap " << k;
  }
  const auto [lo, hi] = std::minmax_element(gaps.begin() + 2, gaps.end());
  EXPECT_GT(*hi - *lo, 5.0) << "capped delays all alike: no jitter";
}

TEST_F(MeshClient, ConnectsAuthenticatesRelaysBroadcastsAndDiscovers) {
  auto a = optionsFor("alpha");
  a.publicRooms = {"lobby"};
  Node alpha(a);
  Node bravo(optionsFor("bravo"));
  ASSERT_TRUE(alpha->waitConnected(kWait).ok());
  ASSERT_TRUE(bravo->waitConnected(kWait).ok());

  auto sent = alpha->relay("bravo", payloadN(1));
  ASSERT_TRUE(sent.ok()) << sent.error().message;
  ASSERT_TRUE(bravo.waitFor([](const Seen& s) { return s.messages.size() == 1; }));
  const auto got = bravo.snapshot().messages.at(0);
  EXPECT_EQ(got.fromMeshId, "alpha");
  EXPECT_EQ(got.fromMeshName, "Alpha");
  EXPECT_EQ(got.payloadJson, payloadN(1));
  EXPECT_EQ(got.id, sent.value());
  ASSERT_TRUE(alpha.waitFor([](const Seen& s) { return s.deliveries.size() == 1; }));
  EXPECT_EQ(alpha.snapshot().deliveries.at(0).outcome, DeliveryReport::Outcome::Delivered);
  EXPECT_EQ(alpha.snapshot().deliveries.at(0).recipients, 1u);

  ASSERT_TRUE(bravo->broadcast(payloadN(2)).ok());
  ASSERT_TRUE(alpha.waitFor([](const Seen& s) { return s.messages.size() == 1; }));
  EXPECT_EQ(alpha.snapshot().messages.at(0).fromMeshId, "bravo");

  auto online = bravo->discover(kWait);
  ASSERT_TRUE(online.ok()) << online.error().message;
  std::set<std::string> ids;
  for (const auto& i : online.value()) {
    ids.insert(i.meshId);
    if (i.meshId == "alpha") {
      EXPECT_EQ(i.publicRooms, std::vector<std::string>{"lobby"});
    }
  }
  EXPECT_EQ(ids, (std::set<std::string>{"alpha", "bravo"}));
  EXPECT_EQ(alpha->pendingCount(), 0u);
}

TEST_F(MeshClient, AnnouncesRoomsAndParticipantsAndSeesPresence) {
  Node alpha(optionsFor("alpha"));
  ASSERT_TRUE(alpha->waitConnected(kWait).ok());
  Node bravo(optionsFor("bravo"));
  ASSERT_TRUE(bravo->waitConnected(kWait).ok());
  ASSERT_TRUE(alpha.waitFor([](const Seen& s) {
    return !s.presence.empty() && s.presence.back().meshId == "bravo" && s.presence.back().online;
  }));

  ASSERT_TRUE(bravo->updateRooms({"general", "random"}).ok());
  ASSERT_TRUE(bravo->updateParticipants({{"u1", "Una", "human"}}).ok());
  ASSERT_TRUE(alpha.waitFor([](const Seen& s) {
    return s.participants.size() == 1 && s.participants[0].meshId == "bravo" &&
           s.participants[0].participants.size() == 1 &&
           s.participants[0].participants[0].name == "Una";
  }));
  auto online = alpha->discover(kWait);
  ASSERT_TRUE(online.ok());
  bool found = false;
  for (const auto& i : online.value()) {
    if (i.meshId == "bravo") {
      found = true;
      EXPECT_EQ(i.publicRooms, (std::vector<std::string>{"general", "random"}));
    }
  }
  EXPECT_TRUE(found);
}

TEST_F(MeshClient, RefusesPayloadThatIsNotAnObject) {
  Node alpha(optionsFor("alpha"));
  EXPECT_EQ(alpha->relay("bravo", "[1,2]").status(), Status::InvalidArgument);
  EXPECT_EQ(alpha->relay("bravo", "{\"a\":").status(), Status::InvalidArgument);
  EXPECT_EQ(alpha->relay("no such id!", "{}").status(), Status::InvalidArgument);
  const std::string huge = "{\"text\":\"" + std::string(70000, 'x') + "\"}";
  EXPECT_EQ(alpha->broadcast(huge).status(), Status::InvalidArgument);
  EXPECT_EQ(alpha->pendingCount(), 0u);
}

TEST_F(MeshClient, ReconnectsAfterRelayRestart) {
  Node alpha(optionsFor("alpha"));
  Node bravo(optionsFor("bravo"));
  ASSERT_TRUE(alpha->waitConnected(kWait).ok());
  ASSERT_TRUE(bravo->waitConnected(kWait).ok());

  // The node keeps sending from its own thread through the whole restart.
  std::mutex mu;
  std::condition_variable cv;
  int sent = 0;
  bool stopSending = false;
  bool sendFailed = false;
  std::thread sender([&] {
    for (int n = 0;; ++n) {
      {
        std::lock_guard lock(mu);
        if (stopSending) return;
      }
      const bool ok = alpha->relay("bravo", payloadN(n)).ok();
      {
        std::lock_guard lock(mu);
        sent = n + 1;
        sendFailed = sendFailed || !ok;
      }
      cv.notify_all();
      // Pacing, not synchronisation: spreads the messages over the restart.
      std::this_thread::sleep_for(milliseconds(2));
    }
  });
  auto stopSender = [&] {
    {
      std::lock_guard lock(mu);
      stopSending = true;
    }
    if (sender.joinable()) sender.join();
  };
  // A failed ASSERT returns early; the thread must not outlive the test.
  struct Finally {
    std::function<void()> run;
    ~Finally() { run(); }
  } joinSender{stopSender};
  auto waitSent = [&](int count) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, kWait, [&] { return sent >= count; });
  };

  ASSERT_TRUE(bravo.waitFor([](const Seen& s) { return s.messages.size() >= 20; }));
  // A crash: whatever was in flight gets no ack and must be sent again.
  relay->kill();
  ASSERT_TRUE(alpha.waitFor([](const Seen& s) {
    return !s.states.empty() && s.states.back() != ConnectionState::Connected;
  }));
  int mark = 0;
  {
    std::lock_guard lock(mu);
    mark = sent;
  }
  ASSERT_TRUE(waitSent(mark + 30));
  relay->start();
  ASSERT_TRUE(alpha->waitConnected(kWait).ok());
  ASSERT_TRUE(bravo->waitConnected(kWait).ok());
  {
    std::lock_guard lock(mu);
    mark = sent;
  }
  ASSERT_TRUE(waitSent(mark + 30));
  stopSender();
  ASSERT_FALSE(sendFailed);
  const int n = sent;

  const int total = n;
  ASSERT_TRUE(bravo.waitFor([total](const Seen& s) {
    return static_cast<int>(countByN(s.messages).size()) == total;
  })) << "received "
      << countByN(bravo.snapshot().messages).size() << " of " << total;
  ASSERT_TRUE(alpha.waitFor(
      [total](const Seen& s) { return static_cast<int>(s.deliveries.size()) == total; }));
  EXPECT_EQ(alpha->pendingCount(), 0u);
  EXPECT_TRUE(hasAllOnce(countByN(bravo.snapshot().messages), total));
  for (const auto& d : alpha.snapshot().deliveries) {
    EXPECT_EQ(d.outcome, DeliveryReport::Outcome::Delivered) << d.reason;
  }
}

TEST_F(MeshClient, DeliversOutboxAfterNodeProcessRestart) {
  const auto outbox = dir.file("alpha.db");
  constexpr int kCount = 25;
  relay->stop();  // messages must stay in the outbox, unsent

  // The node process: writes its messages, says so, and is killed.
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(ready[0]);
    try {
      Node alpha(optionsFor("alpha"));
      for (int i = 0; i < kCount; ++i) {
        if (!alpha->relay("bravo", payloadN(i)).ok()) ::_exit(3);
      }
      const char one = '1';
      if (::write(ready[1], &one, 1) != 1) ::_exit(4);
      for (;;) ::pause();
    } catch (...) {
      ::_exit(5);
    }
  }
  ::close(ready[1]);
  char byte = 0;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1) << "the node process failed before writing";
  ::close(ready[0]);
  ::kill(child, SIGKILL);
  ASSERT_EQ(waitProcess(child, std::chrono::seconds(10)), 128 + SIGKILL);

  relay->start();
  Node bravo(optionsFor("bravo"));
  ASSERT_TRUE(bravo->waitConnected(kWait).ok());
  Node alpha(optionsFor("alpha"));
  EXPECT_EQ(alpha->pendingCount(), static_cast<std::size_t>(kCount));
  ASSERT_TRUE(bravo.waitFor(
      [](const Seen& s) { return static_cast<int>(countByN(s.messages).size()) == kCount; }));
  ASSERT_TRUE(
      alpha.waitFor([](const Seen& s) { return static_cast<int>(s.deliveries.size()) == kCount; }));
  EXPECT_TRUE(hasAllOnce(countByN(bravo.snapshot().messages), kCount));
  EXPECT_EQ(alpha->pendingCount(), 0u);
}

TEST_F(MeshClient, WrongSecretFailsWithAuthError) {
  auto o = optionsFor("alpha");
  o.secret = "definitely-not-the-secret";
  Node alpha(o);
  auto connected = alpha->waitConnected(kWait);
  ASSERT_FALSE(connected.ok());
  EXPECT_EQ(connected.status(), Status::AuthFailed) << connected.error().message;
  EXPECT_EQ(alpha->state(), ConnectionState::Failed);
  ASSERT_TRUE(alpha.waitFor([](const Seen& s) {
    return !s.errors.empty() && s.errors.back().status == Status::AuthFailed;
  }));
}

TEST_F(MeshClient, DeadResumeTokenFallsBackToTheSecret) {
  const std::string first = dir.file("alpha-first.db");
  auto o = optionsFor("alpha");
  o.outboxPath = first;
  {
    Node alpha(o);  // stores a token in `first`
    ASSERT_TRUE(alpha->waitConnected(kWait).ok());
  }
  {
    Node alpha(optionsFor("alpha"));  // another outbox: a new token kills the old
    ASSERT_TRUE(alpha->waitConnected(kWait).ok());
  }
  Node alpha(o);  // sends the dead token and the secret
  auto connected = alpha->waitConnected(kWait);
  ASSERT_TRUE(connected.ok()) << connected.error().message;
  EXPECT_TRUE(alpha.snapshot().errors.empty());
}

TEST_F(MeshClient, RoomsAndParticipantsComeBackAfterARelayCrash) {
  auto a = optionsFor("alpha");
  a.publicRooms = {"initial"};
  Node alpha(a);
  ASSERT_TRUE(alpha->waitConnected(kWait).ok());
  ASSERT_TRUE(alpha->updateRooms({"lobby", "dev"}).ok());
  ASSERT_TRUE(alpha->updateParticipants({{"u1", "Una", "human"}}).ok());
  ASSERT_TRUE(alpha->discover(kWait).ok());  // the updates went before it

  relay->kill();  // the relay forgets everything but its database
  ASSERT_TRUE(alpha.waitFor([](const Seen& s) {
    return !s.states.empty() && s.states.back() == ConnectionState::WaitingToReconnect;
  }));
  relay->start();
  ASSERT_TRUE(alpha->waitConnected(kWait).ok());

  Node bravo(optionsFor("bravo"));
  ASSERT_TRUE(bravo->waitConnected(kWait).ok());
  ASSERT_TRUE(bravo.waitFor([](const Seen& s) {
    return s.participants.size() == 1 && s.participants[0].meshId == "alpha" &&
           s.participants[0].participants.size() == 1 &&
           s.participants[0].participants[0].id == "u1";
  }));
  auto online = bravo->discover(kWait);
  ASSERT_TRUE(online.ok());
  bool found = false;
  for (const auto& i : online.value()) {
    if (i.meshId != "alpha") continue;
    found = true;
    EXPECT_EQ(i.publicRooms, (std::vector<std::string>{"lobby", "dev"}));
  }
  EXPECT_TRUE(found);
}

TEST_F(MeshClient, ResumeTokenIsStoredAndSurvivesRestart) {
  {
    Node alpha(optionsFor("alpha"));
    ASSERT_TRUE(alpha->waitConnected(kWait).ok());
  }
  // With a stored token the second start authenticates too (token first).
  Node alpha(optionsFor("alpha"));
  ASSERT_TRUE(alpha->waitConnected(kWait).ok());
}

TEST_F(MeshClient, ConnectsOnceRelayComesUpAndAutoRegisters) {
  relay->stop();
  auto o = Node::options("charlie", "charlie-secret-0123456789", relay->gatewayUrl(),
                         dir.file("charlie.db"));
  o.autoRegister = true;
  o.name = "Charlie";
  Node charlie(o);
  ASSERT_TRUE(charlie.waitFor([](const Seen& s) {
    for (auto st : s.states) {
      if (st == ConnectionState::WaitingToReconnect) return true;
    }
    return false;
  }));
  auto early = charlie->relay("bravo", payloadN(7));
  ASSERT_TRUE(early.ok());

  relay->start();
  Node bravo(optionsFor("bravo"));
  ASSERT_TRUE(bravo->waitConnected(kWait).ok());
  ASSERT_TRUE(charlie->waitConnected(kWait).ok());
  ASSERT_TRUE(bravo.waitFor([](const Seen& s) { return s.messages.size() == 1; }));
  EXPECT_EQ(bravo.snapshot().messages[0].fromMeshName, "Charlie");
  EXPECT_EQ(bravo.snapshot().messages[0].id, early.value());
}

TEST_F(MeshClient, AutoRegisterOfAMeshWithTheSameSecretConnects) {
  // alpha is registered (201 in SetUp); a fresh outbox registers again: 200.
  auto o = optionsFor("alpha");
  o.autoRegister = true;
  Node alpha(o);
  auto connected = alpha->waitConnected(kWait);
  ASSERT_TRUE(connected.ok()) << connected.error().message;
  EXPECT_TRUE(alpha.snapshot().errors.empty());
}

TEST_F(MeshClient, AutoRegisterConflictIsAConfigurationError) {
  auto o = optionsFor("alpha");
  o.secret = "another-secret-0123456789";
  o.autoRegister = true;
  Node alpha(o);
  auto connected = alpha->waitConnected(kWait);
  ASSERT_FALSE(connected.ok());
  EXPECT_EQ(connected.status(), Status::RegistrationConflict) << connected.error().message;
}

TEST_F(MeshClient, GivesUpOnOfflineTargetAfterMaxAge) {
  auto o = optionsFor("alpha");
  o.maxMessageAge = milliseconds(300);
  Node alpha(o);
  ASSERT_TRUE(alpha->waitConnected(kWait).ok());
  auto id = alpha->relay("bravo", payloadN(1));  // bravo is not connected
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(alpha.waitFor([](const Seen& s) { return !s.deliveries.empty(); }));
  const auto report = alpha.snapshot().deliveries.at(0);
  EXPECT_EQ(report.id, id.value());
  EXPECT_EQ(report.outcome, DeliveryReport::Outcome::GaveUp);
  EXPECT_NE(report.reason.find("target offline"), std::string::npos) << report.reason;
  EXPECT_NE(report.reason.find("maxMessageAge 300 ms"), std::string::npos) << report.reason;
  EXPECT_EQ(alpha->pendingCount(), 0u);
}

TEST_F(MeshClient, DropsRepeatedIncomingIds) {
  Node bravo(optionsFor("bravo"));
  ASSERT_TRUE(bravo->waitConnected(kWait).ok());
  // A sender that retries by hand: the same id twice, then a new one.
  auto raw = WsClient::connect(relay->port());
  raw->sendText(R"({"type":"gateway_auth","meshId":"alpha","secret":")" + kSecretA + "\"}");
  raw->expectType("gateway_auth_ok");
  for (const char* id : {"m-1", "m-1", "m-2"}) {
    raw->sendText(std::string(R"({"type":"gateway_relay","targetMeshId":"bravo","id":")") + id +
                  R"(","payload":{"n":1}})");
  }
  // The relay forwards in order, so a repeat of m-1 would arrive before m-2.
  ASSERT_TRUE(bravo.waitFor([](const Seen& s) {
    return !s.messages.empty() && s.messages.back().id == std::optional<std::string>("m-2");
  }));
  const auto seen = bravo.snapshot().messages;
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].id, "m-1");
  raw->close();
}

TEST_F(MeshClient, StopsCleanlyWhileConnected) {
  Node alpha(optionsFor("alpha"));
  Node bravo(optionsFor("bravo"));
  ASSERT_TRUE(alpha->waitConnected(kWait).ok());
  ASSERT_TRUE(bravo->waitConnected(kWait).ok());
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(alpha->relay("bravo", payloadN(i)).ok());

  const auto before = std::chrono::steady_clock::now();
  alpha->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - before, std::chrono::seconds(3));
  EXPECT_EQ(alpha->state(), ConnectionState::Stopped);
  alpha->stop();  // idempotent
  // The relay saw the connection end: bravo hears alpha went offline.
  ASSERT_TRUE(bravo.waitFor([](const Seen& s) {
    return !s.presence.empty() && s.presence.back().meshId == "alpha" && !s.presence.back().online;
  }));
  EXPECT_EQ(alpha->relay("bravo", "{}").status(), Status::Closed);
  EXPECT_EQ(alpha->broadcast("{}").status(), Status::Closed);
  EXPECT_EQ(alpha->updateRooms({}).status(), Status::Closed);
  EXPECT_EQ(alpha->discover(milliseconds(100)).status(), Status::Closed);
  EXPECT_EQ(alpha->waitConnected(milliseconds(100)).status(), Status::Closed);
}

TEST_F(MeshClient, StopsCleanlyWhileRelayIsDown) {
  relay->stop();
  Node alpha(optionsFor("alpha"));
  ASSERT_TRUE(alpha->relay("bravo", payloadN(1)).ok());
  auto discovered = alpha->discover(milliseconds(200));
  EXPECT_EQ(discovered.status(), Status::Timeout);
  alpha->stop();
  EXPECT_EQ(alpha->state(), ConnectionState::Stopped);
  EXPECT_EQ(alpha->relay("bravo", payloadN(2)).status(), Status::Closed);
  EXPECT_EQ(alpha->pendingCount(), 1u);
}

}  // namespace
}  // namespace mesh::test
