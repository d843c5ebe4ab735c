// The mesh-relay executable as a child process, for tests of what only a
// real process shows: signals, exit codes, a restart on the same database.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace mesh::test {

class RelayProcess {
 public:
  // Starts `binary` with `args` plus --host 127.0.0.1 --port 0, and waits
  // for its "listening on" line to learn the port. Throws on failure.
  RelayProcess(const std::string& binary, const std::vector<std::string>& args);
  // Kills the process if it is still running.
  ~RelayProcess();
  RelayProcess(const RelayProcess&) = delete;
  RelayProcess& operator=(const RelayProcess&) = delete;

  [[nodiscard]] std::uint16_t port() const { return port_; }
  [[nodiscard]] pid_t pid() const { return pid_; }
  void signal(int sig) const;
  // Waits for exit; returns the exit status, 128+signal if killed by one,
  // or -1 on timeout.
  int wait(std::chrono::milliseconds timeout);
  // Everything the process wrote to stderr so far.
  std::string log();

 private:
  void readAvailable(std::chrono::milliseconds timeout);

  pid_t pid_ = -1;
  int stderrFd_ = -1;
  std::uint16_t port_ = 0;
  std::string log_;
  bool exited_ = false;
};

}  // namespace mesh::test
