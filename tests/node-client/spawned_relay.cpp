#include "spawned_relay.h"

#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "mesh/client/http.h"

namespace mesh::test {
namespace {

void run(const std::string& command) {
  if (std::system((command + " >/dev/null 2>&1").c_str()) != 0) {
    throw std::runtime_error("failed: " + command);
  }
}

std::string shellQuoted(const std::string& path) {
  return "'" + path + "'";
}

// A self-signed CA certificate and key.
void makeCa(const std::string& cert, const std::string& key, const std::string& name) {
  run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2"
      " -subj '/CN=" +
      name + "' -addext basicConstraints=critical,CA:TRUE" +
      " -addext keyUsage=critical,keyCertSign,cRLSign -keyout " + shellQuoted(key) + " -out " +
      shellQuoted(cert));
}

}  // namespace

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
  run("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
      " -subj '/CN=localhost' -keyout " +
      shellQuoted(pki.keyFile) + " -out " + shellQuoted(csr));
  run("openssl x509 -req -days 2 -in " + shellQuoted(csr) + " -CA " + shellQuoted(pki.caFile) +
      " -CAkey " + shellQuoted(caKey) + " -set_serial 1 -extfile " + shellQuoted(ext) + " -out " +
      shellQuoted(pki.certFile));
  return pki;
}

SpawnedRelay::SpawnedRelay(const TempDir& dir, const TestPki* pki)
    : port_(pickFreePort()),
      dbPath_(dir.file("spawned-relay.db")),
      logPath_(dir.file("spawned-relay.log")),
      pki_(pki) {}

SpawnedRelay::~SpawnedRelay() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGCONT);
  ::kill(pid_, SIGKILL);
  (void)waitProcess(pid_, std::chrono::seconds(10));
}

void SpawnedRelay::start() {
  const char* fromEnv = std::getenv("MESH_RELAY_BIN");
  const std::string bin = fromEnv != nullptr && *fromEnv != '\0' ? fromEnv : MESH_RELAY_BIN;
  std::vector<std::string> args{
      "--host",       "127.0.0.1", "--port",           std::to_string(port_),
      "--db",         dbPath_,     "--argon2-ops",     "1",
      "--argon2-mem", "8192",      "--log-level",      "warn",
      "--rate-limit", "0",         "--register-burst", "1000"};
  if (pki_ != nullptr) {
    args.insert(args.end(), {"--tls-cert", pki_->certFile, "--tls-key", pki_->keyFile});
  }
  pid_ = spawnProcess(bin, args, logPath_);
  const std::string caFile = pki_ != nullptr ? pki_->caFile : std::string();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (std::chrono::steady_clock::now() < deadline) {
    if (client::checkHealth(httpUrl(), std::chrono::milliseconds(500), caFile)) return;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("mesh-relay exited at start: " + log());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  throw std::runtime_error("mesh-relay did not answer /health in time: " + log());
}

void SpawnedRelay::pause() {
  if (pid_ > 0) ::kill(pid_, SIGSTOP);
}

void SpawnedRelay::resume() {
  if (pid_ > 0) ::kill(pid_, SIGCONT);
}

std::string SpawnedRelay::gatewayUrl() const {
  return (pki_ != nullptr ? "wss://localhost:" : "ws://127.0.0.1:") + std::to_string(port_) +
         "/gateway";
}

std::string SpawnedRelay::httpUrl() const {
  return (pki_ != nullptr ? "https://localhost:" : "http://127.0.0.1:") + std::to_string(port_);
}

std::string SpawnedRelay::log() const {
  std::ifstream in(logPath_);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void SpawnedRelay::registerMesh(const std::string& meshId, const std::string& secret,
                                const std::string& name) const {
  auto r = client::registerMesh(httpUrl(), meshId, secret, name, std::chrono::seconds(10),
                                pki_ != nullptr ? pki_->caFile : std::string());
  if (!r) throw std::runtime_error("register " + meshId + ": " + r.error().message);
}

}  // namespace mesh::test
