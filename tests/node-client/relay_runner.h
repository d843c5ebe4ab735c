// A mesh-relay child process on 127.0.0.1 for the node-client tests: a port
// chosen once (so a restart comes back where the nodes expect it), a
// temporary database that survives restarts, output in a log file.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace mesh::test {

// A fresh folder under the system temp dir, removed with its contents.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  [[nodiscard]] std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// A port on 127.0.0.1 that was free a moment ago.
[[nodiscard]] std::uint16_t pickFreePort();

// Runs `binary` with `args`; stdout and stderr go to `logPath` (empty: the
// test's own). `env` holds "KEY=VALUE" lines that replace or add to the
// test's environment. Returns the pid; throws if it cannot start.
[[nodiscard]] pid_t spawnProcess(const std::string& binary, const std::vector<std::string>& args,
                                 const std::string& logPath, const std::string& stdoutPath = {},
                                 const std::vector<std::string>& env = {});
// Waits for `pid` to end: its exit code, 128+signal, or -1 on timeout.
[[nodiscard]] int waitProcess(pid_t pid, std::chrono::milliseconds timeout);

class RelayRunner {
 public:
  // Picks the port and database file; does not start yet.
  explicit RelayRunner(const TempDir& dir);
  // Kills a running relay (SIGKILL) so no process outlives the test.
  ~RelayRunner();
  RelayRunner(const RelayRunner&) = delete;
  RelayRunner& operator=(const RelayRunner&) = delete;

  // The relay's --admin-token from the next start() on; empty: none.
  void setAdminToken(std::string token) { adminToken_ = std::move(token); }
  // Starts the relay and waits until /health answers. Throws on failure.
  void start();
  // SIGKILL: a crash, nothing is closed cleanly.
  void kill();
  // SIGTERM and wait for a clean exit; returns the exit status.
  int stop();

  [[nodiscard]] std::uint16_t port() const { return port_; }
  [[nodiscard]] std::string gatewayUrl() const;
  [[nodiscard]] std::string httpUrl() const;
  // Registers a mesh (201 or 200) or throws.
  void registerMesh(const std::string& meshId, const std::string& secret,
                    const std::string& name) const;

 private:
  std::uint16_t port_;
  std::string dbPath_;
  std::string logPath_;
  std::string adminToken_;
  pid_t pid_ = -1;
};

}  // namespace mesh::test
