// The mesh-relay executable: signals, exit code, restart on the same file.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <thread>

#include "support/relay_process.h"
#include "support/test_relay.h"

namespace mesh::test {
namespace {

using namespace std::chrono_literals;

std::vector<std::string> fastArgs(const TempDir& dir) {
  return {"--db",
          (dir.path() / "data" / "mesh.db").string(),
          "--argon2-ops",
          "1",
          "--argon2-mem",
          "8192",
          "--drain-timeout",
          "3"};
}

std::unique_ptr<WsClient> authenticate(std::uint16_t port, const std::string& meshId) {
  auto c = WsClient::connect(port);
  c->sendText(TestRelay::authFrameFor(meshId));
  c->expectType("gateway_auth_ok");
  return c;
}

TEST(RelayProcess, SigtermClosesClientsWith1001AndExitsZero) {
  TempDir dir;
  {
    RelayProcess relay(MESH_RELAY_BIN, fastArgs(dir));
    for (const char* id : {"mesh-a", "mesh-b"}) {
      const std::string body = R"({"meshId":")" + std::string(id) + R"(","secret":")" +
                               TestRelay::secretFor(id) + R"(","name":"N"})";
      ASSERT_EQ(httpRequest(relay.port(), "POST", "/register", body).status, 201);
    }
    auto a = authenticate(relay.port(), "mesh-a");
    auto b = authenticate(relay.port(), "mesh-b");
    auto unauthenticated = WsClient::connect(relay.port());
    relay.signal(SIGTERM);
    EXPECT_EQ(a->expectClose(5000ms), 1001);
    EXPECT_EQ(b->expectClose(5000ms), 1001);
    EXPECT_EQ(unauthenticated->expectClose(5000ms), 1001);
    EXPECT_EQ(relay.wait(10000ms), 0) << relay.log();
    const std::string log = relay.log();
    EXPECT_NE(log.find("shutting down"), std::string::npos) << log;
    // Secrets never reach the log.
    EXPECT_EQ(log.find(TestRelay::secretFor("mesh-a")), std::string::npos) << log;
  }
  // The registry survived: both meshes authenticate after a restart.
  RelayProcess again(MESH_RELAY_BIN, fastArgs(dir));
  EXPECT_NO_THROW(authenticate(again.port(), "mesh-a"));
  EXPECT_NO_THROW(authenticate(again.port(), "mesh-b"));
}

TEST(RelayProcess, ResumeTokenSurvivesRestart) {
  TempDir dir;
  std::string token;
  {
    RelayProcess relay(MESH_RELAY_BIN, fastArgs(dir));
    const std::string body =
        R"({"meshId":"mesh-a","secret":")" + TestRelay::secretFor("mesh-a") + R"(","name":"N"})";
    ASSERT_EQ(httpRequest(relay.port(), "POST", "/register", body).status, 201);
    auto c = WsClient::connect(relay.port());
    c->sendText(R"({"type":"gateway_auth","meshId":"mesh-a","secret":")" +
                TestRelay::secretFor("mesh-a") + "\"}");
    token = jsonString(c->expectType("gateway_auth_ok"), "resumeToken");
    relay.signal(SIGTERM);
    EXPECT_EQ(relay.wait(10000ms), 0);
  }
  RelayProcess again(MESH_RELAY_BIN, fastArgs(dir));
  auto c = WsClient::connect(again.port());
  c->sendText(R"({"type":"gateway_auth","meshId":"mesh-a","resumeToken":")" + token + "\"}");
  EXPECT_NO_THROW(c->expectType("gateway_auth_ok"));
}

TEST(RelayProcess, SecondSignalExitsAtOnce) {
  TempDir dir;
  auto args = fastArgs(dir);
  args.back() = "30";  // a long drain, cut short by the second signal
  RelayProcess relay(MESH_RELAY_BIN, args);
  const std::string body =
      R"({"meshId":"mesh-a","secret":")" + TestRelay::secretFor("mesh-a") + R"(","name":"N"})";
  ASSERT_EQ(httpRequest(relay.port(), "POST", "/register", body).status, 201);
  auto a = authenticate(relay.port(), "mesh-a");
  a->setAutoPong(false);
  relay.signal(SIGINT);
  std::this_thread::sleep_for(200ms);
  relay.signal(SIGINT);
  EXPECT_NE(relay.wait(3000ms), -1) << "still running";
}

TEST(RelayProcess, HelpDocumentsEveryOption) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    execl(MESH_RELAY_BIN, MESH_RELAY_BIN, "--help", nullptr);
    _exit(127);
  }
  close(fds[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_EQ(WEXITSTATUS(status), 0);
  for (const char* env : {"PORT", "HOST", "MESH_DB_PATH", "ADMIN_TOKEN", "MESH_RATE_LIMIT",
                          "MESH_MAX_FRAME_BYTES", "MESH_AUTH_TIMEOUT", "LOG_LEVEL"}) {
    EXPECT_NE(out.find(env), std::string::npos) << env;
  }
}

// A TCP connection to 127.0.0.1:port that sends nothing; -1 if refused.
int idleConnection(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) return fd;
  if (fd >= 0) ::close(fd);
  return -1;
}

// The kernel grows a descriptor table in powers of two, and in a process
// with threads each growth waits for an RCU grace period inside the call
// that opened the descriptor: accept(), on the loop. The relay grows its
// table once at start instead (for --max-connections, within the limit).
TEST(RelayProcess, DescriptorTableIsGrownAtStart) {
  TempDir dir;
  RelayProcess relay(MESH_RELAY_BIN,
                     {"--db", (dir.path() / "mesh.db").string(), "--max-connections", "3000"});
  std::ifstream status("/proc/" + std::to_string(relay.pid()) + "/status");
  std::string line;
  long fdSize = -1;
  while (std::getline(status, line)) {
    if (line.rfind("FDSize:", 0) == 0) fdSize = std::stol(line.substr(7));
  }
  rlimit rl{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
  const long expected = static_cast<long>(std::min<rlim_t>(rl.rlim_cur, 3000));
  EXPECT_GE(fdSize, expected) << "the table grows later, inside accept()";
}

TEST(RelayProcess, RunningOutOfFileDescriptorsPausesAcceptsAndRecovers) {
  TempDir dir;
  // The relay inherits a soft limit of 64 open files.
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  rlimit low = saved;
  low.rlim_cur = 64;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  std::unique_ptr<RelayProcess> relay;
  try {
    relay = std::make_unique<RelayProcess>(MESH_RELAY_BIN, fastArgs(dir));
  } catch (...) {
    setrlimit(RLIMIT_NOFILE, &saved);
    throw;
  }
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);

  // More connections than the relay has descriptors for: the kernel queues
  // the rest while the relay waits before accepting again.
  std::vector<int> idle;
  for (int i = 0; i < 100; ++i) {
    const int fd = idleConnection(relay->port());
    if (fd >= 0) idle.push_back(fd);
  }
  for (int i = 0; i < 50 && relay->log().find("accepting again in 100 ms") == std::string::npos;
       ++i) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_NE(relay->log().find("accepting again in 100 ms"), std::string::npos) << relay->log();
  for (int fd : idle) ::close(fd);

  // Once they are gone it serves again.
  const std::string body =
      R"({"meshId":"mesh-a","secret":")" + TestRelay::secretFor("mesh-a") + R"(","name":"N"})";
  HttpResponse registered;
  for (int i = 0; i < 50 && registered.status != 201; ++i) {
    try {
      registered = httpRequest(relay->port(), "POST", "/register", body);
    } catch (const std::exception&) {
      std::this_thread::sleep_for(100ms);  // still draining the queued ones
    }
  }
  ASSERT_EQ(registered.status, 201);
  EXPECT_NO_THROW(authenticate(relay->port(), "mesh-a"));
}

}  // namespace
}  // namespace mesh::test
