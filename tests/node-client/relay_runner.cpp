#include "relay_runner.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <thread>

#include "mesh/client/http.h"

extern char** environ;

namespace mesh::test {
std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

namespace {

void runShell(const std::string& command) {
  if (std::system((command + " >/dev/null 2>&1").c_str()) != 0) {
    throw std::runtime_error("failed: " + command);
  }
}

std::string shellQuoted(const std::string& path) {
  return "'" + path + "'";
}

// A self-signed CA certificate and key.
void makeCa(const std::string& cert, const std::string& key, const std::string& name) {
  runShell(
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2"
      " -subj '/CN=" +
      name + "' -addext basicConstraints=critical,CA:TRUE" +
      " -addext keyUsage=critical,keyCertSign,cRLSign -keyout " + shellQuoted(key) + " -out " +
      shellQuoted(cert));
}

}  // namespace

std::uint16_t pickFreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("cannot find a free port");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

pid_t spawnProcess(const std::string& binary, const std::vector<std::string>& args,
                   const std::string& logPath, const std::string& stdoutPath,
                   const std::vector<std::string>& env) {
  std::vector<std::string> all{binary};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);

  const auto keyOf = [](std::string_view line) { return line.substr(0, line.find('=')); };
  std::vector<std::string> lines;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view line(*e);
    const bool replaced = std::any_of(env.begin(), env.end(), [&](const std::string& mine) {
      return keyOf(mine) == keyOf(line);
    });
    if (!replaced) lines.emplace_back(line);
  }
  lines.insert(lines.end(), env.begin(), env.end());
  std::vector<char*> envp;
  for (auto& line : lines) envp.push_back(line.data());
  envp.push_back(nullptr);

  // posix_spawn, not fork: the test process has threads (clients) running.
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  const int flags = O_WRONLY | O_CREAT | O_APPEND;
  if (!logPath.empty()) {
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, logPath.c_str(), flags, 0644);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, logPath.c_str(), flags, 0644);
  }
  if (!stdoutPath.empty()) {
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, stdoutPath.c_str(), flags, 0644);
  }
  // The child starts with no signal blocked whatever this thread blocks.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, binary.c_str(), &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) throw std::runtime_error("cannot start " + binary + ": " + std::strerror(rc));
  return pid;
}

int waitProcess(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) {
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
      return -1;
    }
    if (done < 0 || std::chrono::steady_clock::now() > deadline) return -1;
    // Polling a child's exit: there is no condition to wait on here.
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

ProcessResult runToEnd(const std::string& binary, const std::vector<std::string>& args,
                       const TempDir& dir, const std::vector<std::string>& env,
                       std::chrono::milliseconds timeout) {
  static int runs = 0;
  const std::string n = std::to_string(runs++);
  const std::string out = dir.file("run" + n + ".out");
  const std::string err = dir.file("run" + n + ".err");
  const pid_t pid = spawnProcess(binary, args, err, out, env);
  ProcessResult r;
  r.code = waitProcess(pid, timeout);
  if (r.code < 0) {
    ::kill(pid, SIGKILL);
    (void)waitProcess(pid, std::chrono::seconds(10));
  }
  r.out = readFile(out);
  r.err = readFile(err);
  return r;
}

TestPki makeTestPki(const TempDir& dir) {
  TestPki pki;
  pki.caFile = dir.file("ca.pem");
  pki.certFile = dir.file("relay.pem");
  pki.keyFile = dir.file("relay.key");
  pki.otherCaFile = dir.file("other-ca.pem");
  const std::string caKey = dir.file("ca.key");
  const std::string csr = dir.file("relay.csr");
  const std::string ext = dir.file("relay.ext");
  makeCa(pki.caFile, caKey, "Mesh Test CA");
  makeCa(pki.otherCaFile, dir.file("other-ca.key"), "Unrelated Test CA");
  {
    std::ofstream out(ext);
    out << "basicConstraints=CA:FALSE\n"
           "keyUsage=critical,digitalSignature\n"
           "extendedKeyUsage=serverAuth\n"
           "subjectAltName=DNS:localhost,IP:127.0.0.1\n";
  }
  runShell(
      "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
      " -subj '/CN=localhost' -keyout " +
      shellQuoted(pki.keyFile) + " -out " + shellQuoted(csr));
  runShell("openssl x509 -req -days 2 -in " + shellQuoted(csr) + " -CA " + shellQuoted(pki.caFile) +
           " -CAkey " + shellQuoted(caKey) + " -set_serial 1 -extfile " + shellQuoted(ext) +
           " -out " + shellQuoted(pki.certFile));
  return pki;
}

RelayRunner::RelayRunner(const TempDir& dir, const TestPki* pki)
    : port_(pickFreePort()),
      dbPath_(dir.file("relay.db")),
      logPath_(dir.file("relay.log")),
      pki_(pki) {}

RelayRunner::~RelayRunner() {
  kill();
}

void RelayRunner::start() {
  // MESH_RELAY_BIN in the environment runs another build of the relay.
  const char* fromEnv = std::getenv("MESH_RELAY_BIN");
  const std::string bin = fromEnv != nullptr && *fromEnv != '\0' ? fromEnv : MESH_RELAY_BIN;
  std::vector<std::string> args({"--host", "127.0.0.1", "--port", std::to_string(port_), "--db",
                                 dbPath_, "--argon2-ops", "1", "--argon2-mem", "8192",
                                 "--log-level", "warn", "--rate-limit", "0", "--register-burst",
                                 "1000"});
  if (!adminToken_.empty()) args.insert(args.end(), {"--admin-token", adminToken_});
  args.insert(args.end(), extraArgs_.begin(), extraArgs_.end());
  if (pki_ != nullptr) {
    args.insert(args.end(), {"--tls-cert", pki_->certFile, "--tls-key", pki_->keyFile});
  }
  pid_ = spawnProcess(bin, args, logPath_);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (std::chrono::steady_clock::now() < deadline) {
    // The test's own relay on loopback: never through a proxy the machine has.
    if (mesh::client::checkHealth(httpUrl(), std::chrono::milliseconds(500), caFile(), "none")) {
      return;
    }
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("mesh-relay exited at start: " + log());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill();
  throw std::runtime_error("mesh-relay did not answer /health in time: " + log());
}

void RelayRunner::kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGCONT);  // a paused relay too
  ::kill(pid_, SIGKILL);
  (void)waitProcess(pid_, std::chrono::seconds(10));
  pid_ = -1;
}

int RelayRunner::stop() {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  const int status = waitProcess(pid_, std::chrono::seconds(15));
  if (status < 0) {
    kill();
    return -1;
  }
  pid_ = -1;
  return status;
}

void RelayRunner::pause() {
  if (pid_ > 0) ::kill(pid_, SIGSTOP);
}

void RelayRunner::resume() {
  if (pid_ > 0) ::kill(pid_, SIGCONT);
}

// With TLS the host is "localhost", which the test certificate names.
std::string RelayRunner::gatewayUrl() const {
  return (pki_ != nullptr ? "wss://localhost:" : "ws://127.0.0.1:") + std::to_string(port_) +
         "/gateway";
}

std::string RelayRunner::httpUrl() const {
  return (pki_ != nullptr ? "https://localhost:" : "http://127.0.0.1:") + std::to_string(port_);
}

std::string RelayRunner::log() const {
  return readFile(logPath_);
}

std::string RelayRunner::caFile() const {
  return pki_ != nullptr ? pki_->caFile : std::string();
}

void RelayRunner::registerMesh(const std::string& meshId, const std::string& secret,
                               const std::string& name) const {
  auto r = mesh::client::registerMesh(httpUrl(), meshId, secret, name, std::chrono::seconds(10),
                                      caFile(), "none");
  if (!r) throw std::runtime_error("register " + meshId + ": " + r.error().message);
}

}  // namespace mesh::test
