// A real NATS cluster for tests: Debian's nats-server processes with
// JetStream, on free loopback ports, with their stores in a temporary
// folder. The servers are killed when the object goes.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "support/temp_dir.h"

namespace mesh::test {

class NatsCluster {
 public:
  // Starts `servers` nats-server processes (one: a lone server with
  // JetStream; more: a cluster with routes between all of them) and waits
  // until JetStream has a meta leader. Throws with the servers' logs when
  // they do not come up. `extraConfig` is appended to every server's config
  // file (accounts, authorization, tls blocks).
  explicit NatsCluster(int servers = 3, std::string extraConfig = {});
  ~NatsCluster();
  NatsCluster(const NatsCluster&) = delete;
  NatsCluster& operator=(const NatsCluster&) = delete;

  [[nodiscard]] int size() const { return static_cast<int>(servers_.size()); }
  // "nats://127.0.0.1:p1,nats://127.0.0.1:p2,...": every running server.
  [[nodiscard]] std::string urls() const;
  [[nodiscard]] std::string url(int i) const;
  [[nodiscard]] std::uint16_t clientPort(int i) const { return servers_.at(i).clientPort; }
  [[nodiscard]] bool running(int i) const { return servers_.at(i).pid > 0; }

  // SIGKILL: the server's store stays, as after a crash.
  void kill(int i);
  // SIGTERM and wait: a clean shutdown (lame duck is not used).
  void stop(int i);
  // SIGSTOP / SIGCONT: a server that keeps its connections open and stops
  // reading them, as a hung one does.
  void freeze(int i);
  void thaw(int i);
  // Starts a stopped or killed server again on the same ports and store.
  void restart(int i);
  // Waits until every running server answers its health check and
  // JetStream has a meta leader; false on timeout.
  bool waitReady(std::chrono::milliseconds timeout);
  // What server `i` logged so far.
  [[nodiscard]] std::string log(int i) const;

  // Where nats-server is, or empty when it is not installed.
  static std::string binary();

 private:
  struct Server {
    std::string name;
    std::uint16_t clientPort = 0;
    std::uint16_t clusterPort = 0;
    std::uint16_t monitorPort = 0;
    std::string configPath;
    std::string logPath;
    pid_t pid = -1;
  };
  void writeConfig(const Server& s) const;
  void spawn(Server& s);
  [[nodiscard]] bool healthy(const Server& s) const;
  [[nodiscard]] bool hasMetaLeader(const Server& s) const;

  TempDir dir_;
  std::string extraConfig_;
  std::vector<Server> servers_;
};

// GET `path` on 127.0.0.1:`port` (HTTP/1.0); the body, or empty on any
// failure. For nats-server's monitoring endpoints.
std::string httpGetLocal(std::uint16_t port, const std::string& path,
                         std::chrono::milliseconds timeout = std::chrono::milliseconds(2000));

// A free TCP port on 127.0.0.1 at the time of the call, below the ephemeral
// range (see nats_cluster.cpp).
std::uint16_t freeLoopbackPort();

}  // namespace mesh::test
