// Debian's tinyproxy for the node-client tests: started in the foreground
// on a free loopback port with a generated configuration (basic auth,
// CONNECT allowed to the ports a test names, only 127.0.0.1 may use it),
// logging every request to a file, and killed by the destructor.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "support/temp_dir.h"

namespace mesh::test {

struct ProxyConfig {
  std::string user = "proxyuser";
  std::string password = "proxy-pass-0123";
  std::vector<std::uint16_t> connectPorts;  // CONNECT is refused to others
  // Extra lines for the configuration (AddHeader, ...).
  std::vector<std::string> extraLines;
};

class ProxyRunner {
 public:
  ProxyRunner(const TempDir& dir, ProxyConfig config);
  ~ProxyRunner();
  ProxyRunner(const ProxyRunner&) = delete;
  ProxyRunner& operator=(const ProxyRunner&) = delete;

  // Starts tinyproxy (tinyproxy -d -c FILE) and waits until it accepts
  // connections. Throws on failure.
  void start();
  // SIGKILL; waits for the process.
  void kill();

  [[nodiscard]] std::uint16_t port() const { return port_; }
  // http://user:password@127.0.0.1:port, the credentials percent-encoded.
  [[nodiscard]] std::string url() const;
  // The same with another password.
  [[nodiscard]] std::string urlWithPassword(const std::string& password) const;
  // http://127.0.0.1:port without credentials.
  [[nodiscard]] std::string urlWithoutCredentials() const;
  // tinyproxy's log: one line per connection and request.
  [[nodiscard]] std::string log() const;
  // How many CONNECT requests the log shows so far (with or without the
  // right credentials).
  [[nodiscard]] std::size_t connectCount() const;

 private:
  ProxyConfig config_;
  std::uint16_t port_;
  std::string configPath_;
  std::string logPath_;
  std::string outPath_;
  pid_t pid_ = -1;
};

// Debian's nginx as the egress proxy that holds a node's credentials: a
// plain-HTTP listener on loopback that passes WebSocket upgrades to
// `upstreamPort` and sets `Authorization: <authorization>` on every request,
// so the node needs none. (tinyproxy cannot play this part: inside a
// CONNECT tunnel it sees no headers, and it drops the hop-by-hop Upgrade and
// Connection headers of a forwarded request, so an upgrade through it gets
// 426.) Killed by the destructor.
class InjectingProxy {
 public:
  InjectingProxy(const TempDir& dir, std::uint16_t upstreamPort, std::string authorization);
  ~InjectingProxy();
  InjectingProxy(const InjectingProxy&) = delete;
  InjectingProxy& operator=(const InjectingProxy&) = delete;

  void start();
  void kill();
  [[nodiscard]] std::uint16_t port() const { return port_; }
  // ws://127.0.0.1:port/gateway: what the node is given as its relay.
  [[nodiscard]] std::string gatewayUrl() const;
  [[nodiscard]] std::string log() const;

 private:
  std::string dir_;
  std::uint16_t upstreamPort_;
  std::string authorization_;
  std::uint16_t port_;
  pid_t pid_ = -1;
};

}  // namespace mesh::test
