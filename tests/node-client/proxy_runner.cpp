#include "proxy_runner.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>

#include "relay_runner.h"

namespace mesh::test {
namespace {

std::string percentEncoded(const std::string& text) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) != 0 || c == '-' || c == '_' || c == '.' || c == '~') {
      out += c;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

bool accepts(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

ProxyRunner::ProxyRunner(const TempDir& dir, ProxyConfig config)
    : config_(std::move(config)),
      port_(pickFreePort()),
      configPath_(dir.file("tinyproxy-" + std::to_string(port_) + ".conf")),
      logPath_(dir.file("tinyproxy-" + std::to_string(port_) + ".log")),
      outPath_(dir.file("tinyproxy-" + std::to_string(port_) + ".out")) {}

ProxyRunner::~ProxyRunner() {
  kill();
}

void ProxyRunner::start() {
  {
    std::ofstream conf(configPath_);
    conf << "Port " << port_ << "\n"
         << "Listen 127.0.0.1\n"
         << "Timeout 30\n"
         << "MaxClients 64\n"
         << "LogFile \"" << logPath_ << "\"\n"
         << "LogLevel Info\n"
         << "Allow 127.0.0.1\n"
         << "DisableViaHeader Yes\n"
         << "BasicAuth " << config_.user << " " << config_.password << "\n";
    for (const auto port : config_.connectPorts) conf << "ConnectPort " << port << "\n";
    for (const auto& line : config_.extraLines) conf << line << "\n";
    if (!conf) throw std::runtime_error("cannot write " + configPath_);
  }
  // -d: stay in the foreground, so the pid is tinyproxy's and SIGKILL ends it.
  pid_ = spawnProcess("/usr/bin/tinyproxy", {"-d", "-c", configPath_}, outPath_);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    if (accepts(port_)) return;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("tinyproxy exited at start: " + readFile(outPath_) + log());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill();
  throw std::runtime_error("tinyproxy did not listen in time: " + readFile(outPath_));
}

void ProxyRunner::kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  (void)waitProcess(pid_, std::chrono::seconds(10));
  pid_ = -1;
}

std::string ProxyRunner::url() const {
  return urlWithPassword(config_.password);
}

std::string ProxyRunner::urlWithPassword(const std::string& password) const {
  return "http://" + percentEncoded(config_.user) + ":" + percentEncoded(password) +
         "@127.0.0.1:" + std::to_string(port_);
}

std::string ProxyRunner::urlWithoutCredentials() const {
  return "http://127.0.0.1:" + std::to_string(port_);
}

std::string ProxyRunner::log() const {
  return readFile(logPath_) + readFile(outPath_);
}

std::size_t ProxyRunner::connectCount() const {
  const std::string text = readFile(logPath_);
  std::size_t count = 0;
  for (auto at = text.find("): CONNECT "); at != std::string::npos;
       at = text.find("): CONNECT ", at + 1)) {
    ++count;
  }
  return count;
}

InjectingProxy::InjectingProxy(const TempDir& dir, std::uint16_t upstreamPort,
                               std::string authorization)
    : upstreamPort_(upstreamPort), authorization_(std::move(authorization)), port_(pickFreePort()) {
  dir_ = dir.file("nginx-" + std::to_string(port_));
}

InjectingProxy::~InjectingProxy() {
  kill();
}

void InjectingProxy::start() {
  std::filesystem::create_directories(dir_ + "/tmp");
  {
    std::ofstream conf(dir_ + "/nginx.conf");
    conf << "daemon off;\nmaster_process off;\nworker_processes 1;\n"
         << "pid " << dir_ << "/nginx.pid;\n"
         << "error_log " << dir_ << "/error.log warn;\n"
         << "events { worker_connections 64; }\n"
         << "http {\n"
         << "  access_log " << dir_ << "/access.log;\n"
         << "  client_body_temp_path " << dir_ << "/tmp/body;\n"
         << "  proxy_temp_path " << dir_ << "/tmp/proxy;\n"
         << "  fastcgi_temp_path " << dir_ << "/tmp/fastcgi;\n"
         << "  uwsgi_temp_path " << dir_ << "/tmp/uwsgi;\n"
         << "  scgi_temp_path " << dir_ << "/tmp/scgi;\n"
         << "  server {\n"
         << "    listen 127.0.0.1:" << port_ << ";\n"
         << "    location / {\n"
         << "      proxy_pass http://127.0.0.1:" << upstreamPort_ << ";\n"
         << "      proxy_http_version 1.1;\n"
         << "      proxy_set_header Upgrade $http_upgrade;\n"
         << "      proxy_set_header Connection \"upgrade\";\n"
         << "      proxy_set_header Authorization \"" << authorization_ << "\";\n"
         << "      proxy_read_timeout 1h;\n"
         << "    }\n"
         << "  }\n"
         << "}\n";
    if (!conf) throw std::runtime_error("cannot write the nginx configuration");
  }
  pid_ = spawnProcess("/usr/sbin/nginx", {"-p", dir_, "-c", dir_ + "/nginx.conf"},
                      dir_ + "/stderr.log");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    if (accepts(port_)) return;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("nginx exited at start: " + log());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill();
  throw std::runtime_error("nginx did not listen in time: " + log());
}

void InjectingProxy::kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  (void)waitProcess(pid_, std::chrono::seconds(10));
  pid_ = -1;
}

std::string InjectingProxy::gatewayUrl() const {
  return "ws://127.0.0.1:" + std::to_string(port_) + "/gateway";
}

std::string InjectingProxy::log() const {
  return readFile(dir_ + "/error.log") + readFile(dir_ + "/stderr.log") +
         readFile(dir_ + "/access.log");
}

}  // namespace mesh::test
