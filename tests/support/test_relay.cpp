#include "support/test_relay.h"

#include <gtest/gtest.h>
#include <sodium.h>

#include <stdexcept>

namespace mesh::test {

relay::Config testConfig(const std::filesystem::path& dbPath) {
  relay::Config c;
  c.host = "127.0.0.1";
  c.port = 0;
  c.dbPath = dbPath.string();
  c.argon2OpsLimit = 1;
  c.argon2MemLimit = 8192;
  c.workerThreads = 2;
  c.logLevel = relay::LogLevel::Warn;
  c.drainTimeoutSeconds = 2;
  return c;
}

TestRelay::TestRelay(const std::function<void(relay::Config&)>& tweak)
    : config_(testConfig(dir_.path() / "mesh.db")) {
  if (tweak) tweak(config_);
  server_ = std::make_unique<relay::Server>(config_);
  port_ = server_->port();
  loop_ = std::thread([this] { exitCode_ = server_->run(); });
}

TestRelay::~TestRelay() {
  stop();
}

int TestRelay::stop() {
  if (loop_.joinable()) {
    server_->requestStop();
    loop_.join();
    server_.reset();
  }
  return exitCode_;
}

std::string TestRelay::registerBodyFor(const std::string& meshId, const std::string& name) {
  return R"({"meshId":")" + meshId + R"(","secret":")" + secretFor(meshId) + R"(","name":")" +
         name + R"("})";
}

std::string TestRelay::authFrameFor(const std::string& meshId) {
  return R"({"type":"gateway_auth","meshId":")" + meshId + R"(","secret":")" + secretFor(meshId) +
         R"("})";
}

int TestRelay::registerMesh(const std::string& meshId, const std::string& secret,
                            const std::string& name) {
  std::string body =
      R"({"meshId":")" + meshId + R"(","secret":")" + secret + R"(","name":")" + name + R"("})";
  return httpRequest(port_, "POST", "/register", body, {"Content-Type: application/json"}).status;
}

std::unique_ptr<WsClient> TestRelay::connectAs(const std::string& meshId, const std::string& secret,
                                               const std::string& extra, std::string* authOk) {
  auto c = WsClient::connect(port_);
  std::string frame = R"({"type":"gateway_auth","meshId":")" + meshId + R"(","secret":")" + secret +
                      "\"" + (extra.empty() ? "" : "," + extra) + "}";
  c->sendText(frame);
  std::string ok = c->expectType("gateway_auth_ok");
  if (authOk) *authOk = ok;
  return c;
}

std::unique_ptr<WsClient> TestRelay::join(const std::string& meshId, const std::string& extra,
                                          std::string* authOk) {
  const int status = registerMesh(meshId, secretFor(meshId), "Mesh " + meshId);
  if (status != 201 && status != 200) {
    throw std::runtime_error("register " + meshId + " answered " + std::to_string(status));
  }
  return connectAs(meshId, secretFor(meshId), extra, authOk);
}

ConnectOptions fromAddress(const std::string& sourceAddress) {
  ConnectOptions o;
  o.bindAddress = sourceAddress;
  return o;
}

ConnectOptions onPath(const std::string& path) {
  ConnectOptions o;
  o.path = path;
  return o;
}

rapidjson::Document json(const std::string& text) {
  rapidjson::Document d;
  d.Parse(text.c_str(), text.size());
  if (d.HasParseError()) throw std::runtime_error("not JSON: " + text);
  return d;
}

std::vector<std::string> framesUntilProbe(WsClient& c, const std::string& probeId) {
  c.sendText(R"({"type":"gateway_discover","id":")" + probeId + R"("})");
  std::vector<std::string> seen;
  for (;;) {
    WsMessage m = c.recv(std::chrono::milliseconds(5000));
    if (m.kind != WsMessage::Kind::Text) {
      throw std::runtime_error("connection ended before the probe answer");
    }
    if (jsonString(m.data, "type") == "gateway_discover_result" &&
        jsonString(m.data, "id") == probeId) {
      return seen;
    }
    seen.push_back(m.data);
  }
}

bool relayUntilSlowConsumerIsClosed(TestRelay& relay, WsClient& sender,
                                    const std::string& targetMeshId) {
  const std::string frame = R"({"type":"gateway_relay","targetMeshId":")" + targetMeshId +
                            R"(","payload":{"p":")" + std::string(16000, 'x') + "\"}}";
  for (int i = 0; i < 2000; ++i) {
    sender.sendText(frame);
    if (i % 50 == 49 &&
        httpRequest(relay.port(), "GET", "/health").body == R"({"ok":true,"connected":1})") {
      return true;
    }
  }
  return false;
}

void expectRelayStillServes(TestRelay& relay) {
  static int round = 0;
  const std::string a = "healthy-a-" + std::to_string(round);
  const std::string b = "healthy-b-" + std::to_string(round);
  ++round;
  auto ca = relay.join(a);
  auto cb = relay.join(b);
  ca->sendText(R"({"type":"gateway_relay","targetMeshId":")" + b + R"(","payload":{"n":1}})");
  EXPECT_EQ(jsonString(cb->expectType("gateway_incoming"), "fromMeshId"), a);
}

}  // namespace mesh::test
