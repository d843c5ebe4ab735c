// A minimal mesh node: connects with the environment's settings
// (MESH_ID, MESH_SECRET, MESH_GATEWAY_URL), prints what arrives, answers
// every relayed message with an echo to its sender, and on start broadcasts
// one hello. Stops on Ctrl-C.
#include <csignal>
#include <cstdio>
#include <iostream>

#include "mesh/client/client.h"

int main() {
  // Signals are taken by sigwait below, so the client's threads (which
  // inherit this mask) are never interrupted by them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto options = mesh::client::Options::fromEnvironment();
  if (!options) {
    std::cerr << "echo-node: " << options.error().message << "\n";
    return 2;
  }
  mesh::client::Options o = options.value();
  if (const char* path = std::getenv("MESH_OUTBOX_PATH"); path == nullptr) {
    o.outboxPath = o.meshId + "-outbox.db";
  }

  // Set before start(): the client copies the options, callbacks included.
  // They run on the client's callback thread; `client` is assigned before
  // any of them can run a relay() (start() returns before connecting).
  mesh::client::Client* client = nullptr;
  o.callbacks.onStateChange = [](mesh::client::ConnectionState s, const std::string& why) {
    std::cout << "state: " << mesh::client::stateText(s) << " (" << why << ")" << std::endl;
  };
  o.callbacks.onError = [](const mesh::client::Error& e) {
    std::cerr << "error: " << mesh::client::statusText(e.status) << ": " << e.message << std::endl;
  };
  o.callbacks.onMessage = [&client](const mesh::client::IncomingMessage& m) {
    std::cout << "from " << m.fromMeshId << " (" << m.fromMeshName << "): " << m.payloadJson
              << std::endl;
    if (client != nullptr && m.payloadJson.find("\"echo\"") == std::string::npos) {
      const std::string reply = "{\"type\":\"echo\",\"of\":" + m.payloadJson + "}";
      if (auto sent = client->relay(m.fromMeshId, reply); !sent) {
        std::cerr << "echo failed: " << sent.error().message << std::endl;
      }
    }
  };
  o.callbacks.onDelivery = [](const mesh::client::DeliveryReport& r) {
    std::cout << "message " << r.id << ": " << mesh::client::outcomeText(r.outcome) << std::endl;
  };

  auto started = mesh::client::Client::start(o);
  if (!started) {
    std::cerr << "echo-node: " << started.error().message << "\n";
    return 1;
  }
  std::unique_ptr<mesh::client::Client> owned = std::move(started).value();
  client = owned.get();
  if (auto hello = client->broadcast(R"({"type":"hello","from":")" + o.meshId + "\"}"); !hello) {
    std::cerr << "echo-node: " << hello.error().message << "\n";
  }

  int sig = 0;
  sigwait(&signals, &sig);
  owned->stop();
  return 0;
}
