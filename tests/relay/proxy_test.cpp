// Nodes behind the reverse proxies of deploy/: Debian's nginx and Caddy run
// the examples themselves (tools/proxy-test-config.sh only moves them to
// loopback ports and a throwaway certificate), a node connects through each
// from 127.0.0.2, and the relay must see 127.0.0.2, not the proxy.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/temp_dir.h"
#include "support/test_relay.h"
#include "support/tls_client.h"

extern char** environ;

namespace mesh::test {
namespace {

using namespace std::chrono_literals;

constexpr const char* kAdmin = "proxy-test-admin-token";

// A free loopback port (bound, then released for the proxy to take).
std::uint16_t freePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    throw std::runtime_error("no free port");
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

int runCommand(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawnp(&pid, args[0], nullptr, nullptr, args.data(), environ) != 0) return -1;
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// nginx or Caddy in front of a relay, from the deploy example; killed when
// it goes out of scope.
class Proxy {
 public:
  Proxy(const std::string& kind, std::uint16_t relayPort) : tlsPort_(freePort()) {
    const std::string out = (dir_.path() / kind).string();
    const std::string script = std::string(MESH_SOURCE_DIR) + "/tools/proxy-test-config.sh";
    if (runCommand({"sh", script, kind, out, std::to_string(relayPort), std::to_string(tlsPort_),
                    std::to_string(freePort())}) != 0) {
      throw std::runtime_error(script + " failed for " + kind);
    }
    std::vector<std::string> argv;
    std::vector<std::string> env;
    if (kind == "nginx") {
      argv = {"nginx", "-p", out, "-c", out + "/nginx.conf"};
    } else {
      argv = {"caddy", "run", "--config", out + "/Caddyfile", "--adapter", "caddyfile"};
      // Caddy keeps its state under HOME and XDG folders: the test's own.
      env = {"HOME=" + out, "XDG_DATA_HOME=" + out, "XDG_CONFIG_HOME=" + out};
    }
    env.push_back("PATH=/usr/sbin:/usr/bin:/sbin:/bin");
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    std::vector<char*> envp;
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    const std::string logPath = out + "/proxy.log";
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, logPath.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    const int rc = posix_spawnp(&pid_, args[0], &actions, nullptr, args.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::runtime_error("cannot start " + kind + " (is it installed?)");
    // Ready once it accepts TLS connections.
    const auto deadline = std::chrono::steady_clock::now() + 15s;
    while (std::chrono::steady_clock::now() < deadline) {
      try {
        TlsStream::connect(tlsPort_, 1000ms);
        return;
      } catch (const std::exception&) {
        std::this_thread::sleep_for(50ms);
      }
    }
    throw std::runtime_error(kind + " did not start listening");
  }
  ~Proxy() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  [[nodiscard]] std::uint16_t port() const { return tlsPort_; }

 private:
  TempDir dir_;
  std::uint16_t tlsPort_;
  pid_t pid_ = -1;
};

// The relay believes only the proxy on 127.0.0.1, as the examples say.
void behindProxy(relay::Config& c) {
  c.trustedProxies = {"127.0.0.1"};
  c.adminToken = kAdmin;
}

// A node connects through the proxy from 127.0.0.2 and relays both ways with
// a node connected directly; the admin API shows the node's own address.
void nodeSeenThroughProxy(const std::string& kind) {
  TestRelay relay(behindProxy);
  Proxy proxy(kind, relay.port());
  ASSERT_EQ(relay.registerMesh("far", TestRelay::secretFor("far"), "Far"), 201);
  auto near = relay.join("near");

  auto far = TlsWsClient::connect(proxy.port(), "/gateway", "127.0.0.2");
  far->sendText(TestRelay::authFrameFor("far"));
  far->expectType("gateway_auth_ok");

  const auto meshes = httpRequest(relay.port(), "GET", "/meshes/far", {},
                                  {std::string("Authorization: Bearer ") + kAdmin});
  ASSERT_EQ(meshes.status, 200) << meshes.body;
  const auto doc = json(meshes.body);
  EXPECT_TRUE(doc["online"].GetBool());
  EXPECT_STREQ(doc["address"].GetString(), "127.0.0.2") << "through " << kind;

  far->sendText(R"({"type":"gateway_relay","targetMeshId":"near","payload":{"n":1}})");
  EXPECT_NE(near->expectType("gateway_incoming").find(R"("fromMeshId":"far")"), std::string::npos);
  near->sendText(R"({"type":"gateway_relay","targetMeshId":"far","payload":{"n":2}})");
  EXPECT_NE(far->expectType("gateway_incoming").find(R"("payload":{"n":2})"), std::string::npos);
  expectRelayStillServes(relay);
}

TEST(BehindProxy, NginxExampleForwardsTheNodesAddress) {
  nodeSeenThroughProxy("nginx");
}

TEST(BehindProxy, CaddyExampleForwardsTheNodesAddress) {
  nodeSeenThroughProxy("caddy");
}

}  // namespace
}  // namespace mesh::test
