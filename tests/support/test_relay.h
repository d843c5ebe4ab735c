// A real relay for integration tests: started in-process on 127.0.0.1 with
// port 0 and a temporary database, its loop on a thread of its own.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <rapidjson/document.h>

#include "mesh/relay/config.h"
#include "mesh/relay/server.h"
#include "support/temp_dir.h"
#include "support/ws_client.h"

namespace mesh::test {

// The config tests start from: loopback, port 0, fast Argon2, quiet logs.
relay::Config testConfig(const std::filesystem::path& dbPath);

class TestRelay {
 public:
  explicit TestRelay(const std::function<void(relay::Config&)>& tweak = {});
  // Stops the relay (gracefully) and joins its thread.
  ~TestRelay();
  TestRelay(const TestRelay&) = delete;
  TestRelay& operator=(const TestRelay&) = delete;

  [[nodiscard]] std::uint16_t port() const { return port_; }
  [[nodiscard]] const relay::Config& config() const { return config_; }
  // Stops the relay now; returns what run() returned.
  int stop();

  // POST /register; returns the HTTP status.
  int registerMesh(const std::string& meshId, const std::string& secret, const std::string& name);
  // Connects and authenticates with a secret; fails the test on anything
  // but gateway_auth_ok. `extra` is spliced into the auth frame, e.g.
  // R"("publicRooms":["a"])".
  std::unique_ptr<WsClient> connectAs(const std::string& meshId, const std::string& secret,
                                      const std::string& extra = "", std::string* authOk = nullptr);
  // Registers (secret derived from the id) and connects.
  std::unique_ptr<WsClient> join(const std::string& meshId, const std::string& extra = "",
                                 std::string* authOk = nullptr);
  static std::string secretFor(const std::string& meshId) { return meshId + "-secret-0123456789"; }
  // The POST /register body and the gateway_auth frame of a mesh whose
  // secret is secretFor(meshId), for tests that talk to a relay they did not
  // start as a TestRelay (a child process, TLS, a proxy in front).
  static std::string registerBodyFor(const std::string& meshId, const std::string& name = "N");
  static std::string authFrameFor(const std::string& meshId);

 private:
  TempDir dir_;
  relay::Config config_;
  std::unique_ptr<relay::Server> server_;
  std::thread loop_;
  std::uint16_t port_ = 0;
  int exitCode_ = -1;
};

// Connect options that differ from the defaults in one field.
ConnectOptions fromAddress(const std::string& sourceAddress);
ConnectOptions onPath(const std::string& path);

// Parses a frame or body; fails loudly on bad JSON.
rapidjson::Document json(const std::string& text);

// Sends a discover with the given id and returns every frame that arrived
// before its answer: a barrier proving the relay processed what came before.
std::vector<std::string> framesUntilProbe(WsClient& c, const std::string& probeId = "probe");

// `sender` relays frames of 16 KB to `targetMeshId`, which never reads,
// until the relay closes the target as a slow consumer (its send queue full:
// /health counts one mesh online again). False if that never happens.
[[nodiscard]] bool relayUntilSlowConsumerIsClosed(TestRelay& relay, WsClient& sender,
                                                  const std::string& targetMeshId);

// Two fresh meshes exchange a relay: after a failure case, proof that the
// relay still serves everyone else (a gtest failure if it does not).
void expectRelayStillServes(TestRelay& relay);

}  // namespace mesh::test
