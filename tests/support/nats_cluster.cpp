#include "support/nats_cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace mesh::test {

namespace {

using Clock = std::chrono::steady_clock;

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

}  // namespace

// Ports come from below the kernel's ephemeral range (32768 and up on
// Linux): everything else the tests start binds port 0 and gets an ephemeral
// port, which could otherwise take a port this cluster picked between the
// check here and nats-server's bind (it cannot be handed over bound).
std::uint16_t freeLoopbackPort() {
  static std::mutex mutex;
  static std::set<std::uint16_t> handedOut;  // never the same port twice
  static std::mt19937 pick(std::random_device{}() ^ static_cast<unsigned>(getpid()));
  const std::lock_guard<std::mutex> lock(mutex);
  std::uniform_int_distribution<int> range(20000, 32000);
  for (int attempt = 0; attempt < 200; ++attempt) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::runtime_error("socket failed");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const auto port = static_cast<std::uint16_t>(range(pick));
    if (handedOut.contains(port)) {
      close(fd);
      continue;
    }
    addr.sin_port = htons(port);
    const bool free = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    close(fd);
    if (free) {
      handedOut.insert(port);
      return port;
    }
  }
  throw std::runtime_error("no free loopback port in 20000-32000");
}

std::string httpGetLocal(std::uint16_t port, const std::string& path,
                         std::chrono::milliseconds timeout) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return {};
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return {};
  }
  const std::string request = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    close(fd);
    return {};
  }
  std::string response;
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left)) <= 0) break;
    char buf[8192];
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    response.append(buf, static_cast<std::size_t>(n));
  }
  close(fd);
  const auto bodyAt = response.find("\r\n\r\n");
  if (response.compare(0, 12, "HTTP/1.0 200") != 0 && response.compare(0, 12, "HTTP/1.1 200") != 0)
    return {};
  return bodyAt == std::string::npos ? std::string() : response.substr(bodyAt + 4);
}

std::string NatsCluster::binary() {
  for (const char* candidate :
       {"/usr/bin/nats-server", "/usr/sbin/nats-server", "/usr/local/bin/nats-server"}) {
    if (access(candidate, X_OK) == 0) return candidate;
  }
  return {};
}

NatsCluster::NatsCluster(int servers, std::string extraConfig)
    : extraConfig_(std::move(extraConfig)) {
  if (binary().empty()) throw std::runtime_error("nats-server is not installed");
  if (servers < 1) throw std::invalid_argument("a cluster needs a server");
  // A port checked free can still be taken by another test's server before
  // ours binds it; then that server exits at once, and the cluster is started
  // again on other ports (its logs say why).
  std::string logs;
  for (int attempt = 1; attempt <= 3; ++attempt) {
    servers_.assign(static_cast<std::size_t>(servers), Server{});
    for (int i = 0; i < servers; ++i) {
      Server& s = servers_[static_cast<std::size_t>(i)];
      s.name = "n" + std::to_string(i + 1);
      s.clientPort = freeLoopbackPort();
      s.clusterPort = freeLoopbackPort();
      s.monitorPort = freeLoopbackPort();
      s.configPath = dir_.file(s.name + ".conf");
      s.logPath = dir_.file(s.name + "-" + std::to_string(attempt) + ".log");
    }
    for (auto& s : servers_) {
      writeConfig(s);
      spawn(s);
    }
    if (waitReady(std::chrono::seconds(30))) return;
    logs += "==== attempt " + std::to_string(attempt) + "\n";
    for (int i = 0; i < size(); ++i)
      logs += "---- " + servers_[static_cast<std::size_t>(i)].name + "\n" + log(i);
    for (int i = 0; i < size(); ++i) kill(i);
  }
  throw std::runtime_error("NATS cluster did not become ready:\n" + logs);
}

NatsCluster::~NatsCluster() {
  for (auto& s : servers_) {
    if (s.pid > 0) {
      ::kill(s.pid, SIGKILL);
      waitpid(s.pid, nullptr, 0);
      s.pid = -1;
    }
  }
}

std::string NatsCluster::url(int i) const {
  return "nats://127.0.0.1:" + std::to_string(servers_.at(static_cast<std::size_t>(i)).clientPort);
}

std::string NatsCluster::urls() const {
  std::string out;
  for (int i = 0; i < size(); ++i) {
    if (!out.empty()) out += ',';
    out += url(i);
  }
  return out;
}

void NatsCluster::writeConfig(const Server& s) const {
  std::ofstream out(s.configPath);
  out << "server_name: " << s.name << "\n"
      << "listen: 127.0.0.1:" << s.clientPort << "\n"
      << "http: 127.0.0.1:" << s.monitorPort << "\n"
      << "jetstream {\n  store_dir: \"" << dir_.file("store-" + s.name) << "\"\n"
      << "  max_memory_store: 64MB\n  max_file_store: 256MB\n}\n";
  if (servers_.size() > 1) {
    out << "cluster {\n  name: meshtest\n  listen: 127.0.0.1:" << s.clusterPort
        << "\n  routes: [\n";
    for (const auto& other : servers_) {
      if (&other == &s) continue;
      out << "    nats-route://127.0.0.1:" << other.clusterPort << "\n";
    }
    out << "  ]\n}\n";
  }
  out << extraConfig_ << "\n";
}

void NatsCluster::spawn(Server& s) {
  const std::string bin = binary();
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    // Its own output goes to its log file (appended across restarts).
    const int fd = open(s.logPath.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
    }
    execl(bin.c_str(), bin.c_str(), "-c", s.configPath.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  s.pid = pid;
}

void NatsCluster::kill(int i) {
  Server& s = servers_.at(static_cast<std::size_t>(i));
  if (s.pid <= 0) return;
  ::kill(s.pid, SIGKILL);
  waitpid(s.pid, nullptr, 0);
  s.pid = -1;
}

void NatsCluster::freeze(int i) {
  const Server& s = servers_.at(static_cast<std::size_t>(i));
  if (s.pid > 0) ::kill(s.pid, SIGSTOP);
}

void NatsCluster::thaw(int i) {
  const Server& s = servers_.at(static_cast<std::size_t>(i));
  if (s.pid > 0) ::kill(s.pid, SIGCONT);
}

void NatsCluster::stop(int i) {
  Server& s = servers_.at(static_cast<std::size_t>(i));
  if (s.pid <= 0) return;
  ::kill(s.pid, SIGTERM);
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < deadline) {
    if (waitpid(s.pid, nullptr, WNOHANG) == s.pid) {
      s.pid = -1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(i);
}

void NatsCluster::restart(int i) {
  Server& s = servers_.at(static_cast<std::size_t>(i));
  if (s.pid > 0) return;
  spawn(s);
}

bool NatsCluster::healthy(const Server& s) const {
  return httpGetLocal(s.monitorPort, "/healthz").find("\"ok\"") != std::string::npos;
}

bool NatsCluster::hasMetaLeader(const Server& s) const {
  if (servers_.size() == 1) return true;
  // /jsz names the meta group's leader once one is elected.
  const std::string body = httpGetLocal(s.monitorPort, "/jsz");
  const auto meta = body.find("\"meta_cluster\"");
  if (meta == std::string::npos) return false;
  const auto leader = body.find("\"leader\":", meta);
  if (leader == std::string::npos) return false;
  auto value = body.find_first_not_of(" \t", leader + 9);
  return value != std::string::npos && body.compare(value, 2, "\"\"") != 0 && body[value] == '"';
}

bool NatsCluster::waitReady(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    bool ready = true;
    for (auto& s : servers_) {
      if (s.pid <= 0) continue;
      if (waitpid(s.pid, nullptr, WNOHANG) == s.pid) {  // it died (and is reaped)
        s.pid = -1;
        return false;
      }
      if (!healthy(s) || !hasMetaLeader(s)) {
        ready = false;
        break;
      }
    }
    if (ready) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

std::string NatsCluster::log(int i) const {
  return readFile(servers_.at(static_cast<std::size_t>(i)).logPath);
}

}  // namespace mesh::test
