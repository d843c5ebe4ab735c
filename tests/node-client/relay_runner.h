// A mesh-relay child process on 127.0.0.1 for the node-client tests: a port
// chosen once (so a restart comes back where the nodes expect it), a
// temporary database that survives restarts, output in a log file;
// optionally native TLS with a certificate from a test CA, and pausing the
// process (SIGSTOP) to make the relay go quiet while its sockets stay open.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "support/temp_dir.h"

namespace mesh::test {

// A file's whole text; empty if it cannot be read.
[[nodiscard]] std::string readFile(const std::string& path);

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

// A program run to its end: exit code (-1: killed after the timeout),
// stdout and stderr.
struct ProcessResult {
  int code = -1;
  std::string out;
  std::string err;
};
// Runs `binary` with `args` (and `env` lines) to its end, at most `timeout`;
// its output goes through files in `dir`.
[[nodiscard]] ProcessResult runToEnd(const std::string& binary,
                                     const std::vector<std::string>& args, const TempDir& dir,
                                     const std::vector<std::string>& env = {},
                                     std::chrono::milliseconds timeout = std::chrono::seconds(30));

// A private CA and a relay certificate it issued, PEM files in a folder.
struct TestPki {
  std::string caFile;       // the CA certificate: what a node trusts
  std::string certFile;     // the relay's certificate (CN and SAN localhost,
  std::string keyFile;      // SAN IP 127.0.0.1) and its key
  std::string otherCaFile;  // a CA that issued nothing here
};

// Makes the files with the openssl command; throws if it fails.
[[nodiscard]] TestPki makeTestPki(const TempDir& dir);

class RelayRunner {
 public:
  // Picks the port and database file; does not start yet. `pki` non-null:
  // the relay speaks only TLS with its files (it must outlive the runner).
  explicit RelayRunner(const TempDir& dir, const TestPki* pki = nullptr);
  // Kills a running relay (SIGKILL) so no process outlives the test.
  ~RelayRunner();
  RelayRunner(const RelayRunner&) = delete;
  RelayRunner& operator=(const RelayRunner&) = delete;

  // The relay's --admin-token from the next start() on; empty: none.
  void setAdminToken(std::string token) { adminToken_ = std::move(token); }
  // More command-line arguments from the next start() on.
  void setExtraArgs(std::vector<std::string> args) { extraArgs_ = std::move(args); }
  // Starts the relay and waits until /health answers. Throws on failure.
  void start();
  // SIGKILL: a crash, nothing is closed cleanly.
  void kill();
  // SIGTERM and wait for a clean exit; returns the exit status.
  int stop();
  void pause();   // SIGSTOP
  void resume();  // SIGCONT

  [[nodiscard]] std::uint16_t port() const { return port_; }
  [[nodiscard]] std::string gatewayUrl() const;
  [[nodiscard]] std::string httpUrl() const;
  [[nodiscard]] std::string log() const;
  // Registers a mesh (201 or 200) or throws.
  void registerMesh(const std::string& meshId, const std::string& secret,
                    const std::string& name) const;

 private:
  [[nodiscard]] std::string caFile() const;  // the CA to trust; empty without TLS

  std::uint16_t port_;
  std::string dbPath_;
  std::string logPath_;
  std::string adminToken_;
  std::vector<std::string> extraArgs_;
  const TestPki* pki_;
  pid_t pid_ = -1;
};

}  // namespace mesh::test
