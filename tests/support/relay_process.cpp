#include "support/relay_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <regex>
#include <stdexcept>
#include <thread>

namespace mesh::test {

RelayProcess::RelayProcess(const std::string& binary, const std::vector<std::string>& args) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  std::vector<std::string> argv{binary, "--host", "127.0.0.1", "--port", "0"};
  argv.insert(argv.end(), args.begin(), args.end());
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    dup2(fds[1], STDERR_FILENO);
    std::vector<char*> cargs;
    for (auto& a : argv) cargs.push_back(a.data());
    cargs.push_back(nullptr);
    execv(binary.c_str(), cargs.data());
    _exit(127);
  }
  close(fds[1]);
  stderrFd_ = fds[0];
  const std::regex listening("listening on [^ ]*:([0-9]+)");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    readAvailable(std::chrono::milliseconds(100));
    std::smatch m;
    if (std::regex_search(log_, m, listening)) {
      port_ = static_cast<std::uint16_t>(std::stoi(m[1].str()));
      return;
    }
    if (wait(std::chrono::milliseconds(0)) >= 0) break;
  }
  throw std::runtime_error("relay did not start; its log:\n" + log_);
}

RelayProcess::~RelayProcess() {
  if (!exited_ && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (stderrFd_ >= 0) close(stderrFd_);
}

void RelayProcess::signal(int sig) const {
  ::kill(pid_, sig);
}

int RelayProcess::wait(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exited_ = true;
      readAvailable(std::chrono::milliseconds(0));
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
      return -1;
    }
    if (std::chrono::steady_clock::now() >= deadline) return -1;
    readAvailable(std::chrono::milliseconds(20));
  }
}

std::string RelayProcess::log() {
  readAvailable(std::chrono::milliseconds(0));
  return log_;
}

void RelayProcess::readAvailable(std::chrono::milliseconds timeout) {
  pollfd p{stderrFd_, POLLIN, 0};
  int waitMs = static_cast<int>(timeout.count());
  while (poll(&p, 1, waitMs) > 0) {
    char buf[4096];
    const ssize_t n = read(stderrFd_, buf, sizeof buf);
    if (n <= 0) return;
    log_.append(buf, static_cast<std::size_t>(n));
    waitMs = 0;
  }
}

}  // namespace mesh::test
