// storm: C meshes online, the relay is restarted, every mesh reconnects at
// once; time until all are authenticated again, first with secrets only,
// then with the resume tokens the relay handed out (if it does; not with
// --storm-secret-only, which plays nodes on the original protocol).
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>

#include "bench.h"

namespace mesh::bench {

namespace {

pid_t spawn_server(const std::string& cmd, bool quiet) {
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    setpgid(0, 0);
    if (quiet) {
      int devnull = open("/dev/null", O_WRONLY);
      if (devnull >= 0) dup2(devnull, 1);
    }
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  setpgid(pid, pid);
  return pid;
}

bool reap(pid_t pid) {
  int st = 0;
  return waitpid(pid, &st, WNOHANG) == pid;
}

class StormSession : public Session {
 public:
  explicit StormSession(const Options& opt) : Session(opt, "s") {}
  ~StormSession() override { stop_server(); }

  void on_message(WsConn& /*c*/, std::string_view msg) override {
    if (msg.find("shutting_down") != std::string_view::npos) return;
    if (is_error_frame(msg)) note_error("error frame: " + std::string(msg.substr(0, 200)));
  }
  void on_authed(WsConn& /*c*/) override {
    if (first_auth_ == 0) first_auth_ = now_ns();
  }

  std::vector<Result> run();

 private:
  bool start_server(Result& r) {
    server_ = spawn_server(opt_.server_cmd, !opt_.verbose);
    if (server_ <= 0) {
      note_error("cannot start --server-cmd");
      return false;
    }
    (void)r;
    return true;
  }
  bool wait_listening(double secs) {
    int64_t deadline = now_ns() + static_cast<int64_t>(secs * 1e9);
    while (now_ns() < deadline) {
      if (port_is_open(opt_.ep)) return true;
      if (reap(server_)) {
        server_ = 0;
        return false;
      }
      usleep(20'000);
    }
    return false;
  }
  // SIGTERM, then SIGKILL after 5 s; keeps the loop turning meanwhile.
  void stop_server() {
    if (server_ <= 0) return;
    kill(-server_, SIGTERM);
    int64_t deadline = now_ns() + 5'000'000'000;
    bool gone = false;
    while (!(gone = reap(server_)) && now_ns() < deadline) loop_.run_once(10'000'000);
    if (!gone) {
      kill(-server_, SIGKILL);
      waitpid(server_, nullptr, 0);
    }
    server_ = 0;
  }
  Result restart_round(bool tokens);

  pid_t server_ = 0;
  int64_t first_auth_ = 0;
};

Result StormSession::restart_round(bool tokens) {
  Result r;
  r.scenario = tokens ? "storm-tok" : "storm";
  r.server = opt_.label;
  r.params = {{"conns", opt_.conns}, {"tokens", tokens ? 1 : 0}};
  size_t n = creds_.size();
  size_t with_token = 0;
  for (const auto& c : creds_) with_token += c.resume_token.empty() ? 0 : 1;
  r.extra.emplace_back("meshes_with_token", static_cast<double>(with_token));
  uint64_t err0 = errors_, fail0 = auth_failures_;
  std::string first0 = first_error_;
  use_tokens_ = tokens;
  reconnecting_ = true;
  first_auth_ = 0;

  int64_t t_kill = now_ns();
  stop_server();
  // Take note of every connection the old process closed.
  run_until(now_ns() + 1'000'000'000, [&] { return authed_ == 0; });
  int64_t t_spawn = now_ns();
  r.extra.emplace_back("stop_s", static_cast<double>(t_spawn - t_kill) / 1e9);
  server_ = spawn_server(opt_.server_cmd, !opt_.verbose);
  if (server_ <= 0) {
    note_error("cannot restart --server-cmd");
  } else {
    // Count only auths on the new server.
    first_auth_ = 0;
    int64_t deadline = t_spawn + static_cast<int64_t>(opt_.connect_timeout * 1e9);
    while (authed_ < n && now_ns() < deadline) {
      process_retries();
      loop_.run_once(5'000'000);
      if (reap(server_)) {
        server_ = 0;
        note_error("server exited during the storm");
        break;
      }
    }
    int64_t t_done = now_ns();
    // The shell's child may be the server: sample the port's owner.
    pid_t listener = find_listening_pid(opt_.ep.port);
    ProcSample cpu = sample_proc(listener > 0 ? listener : server_);
    r.seconds = static_cast<double>(t_done - t_spawn) / 1e9;
    r.received = authed_;
    r.extra.emplace_back("restart_to_all_auth_s", r.seconds);
    r.extra.emplace_back("kill_to_all_auth_s", static_cast<double>(t_done - t_kill) / 1e9);
    if (first_auth_)
      r.extra.emplace_back("first_auth_s", static_cast<double>(first_auth_ - t_spawn) / 1e9);
    if (first_auth_ && authed_ == n && t_done > first_auth_)
      r.msgs_per_s = static_cast<double>(n) / (static_cast<double>(t_done - first_auth_) / 1e9);
    if (cpu.ok) {
      // The new process's whole CPU time: start-up plus every auth.
      r.server_cpu_s = ticks_to_seconds(cpu.cpu_ticks);
      r.server_cpu_us_per_msg = r.server_cpu_s * 1e6 / static_cast<double>(n);
    }
    if (authed_ < n)
      note_error("only " + std::to_string(authed_) + " of " + std::to_string(n) +
                 " meshes authenticated again");
  }
  reconnecting_ = false;
  r.extra.emplace_back("auth_failures", static_cast<double>(auth_failures_ - fail0));
  r.errors = errors_ - err0;
  if (r.errors) r.first_error = first0.empty() ? first_error_ : first0;
  r.ok = r.errors == 0;
  return r;
}

std::vector<Result> StormSession::run() {
  std::vector<Result> out;
  Result setup;
  setup.scenario = "storm";
  setup.server = opt_.label;
  setup.params = {{"conns", opt_.conns}};
  auto fail = [&](const std::string& why) {
    note_error(why);
    setup.errors = errors_;
    setup.first_error = first_error_;
    setup.ok = false;
    out.push_back(setup);
    return out;
  };
  if (opt_.server_cmd.empty()) return fail("storm needs --server-cmd");
  if (port_is_open(opt_.ep)) return fail("storm starts its own server but the port is in use");
  if (!start_server(setup) || !wait_listening(15)) return fail("server did not start listening");
  if (!register_all(static_cast<size_t>(opt_.conns), setup) || !connect_all(setup)) {
    setup.errors = errors_;
    setup.first_error = first_error_;
    setup.ok = false;
    out.push_back(setup);
    return out;
  }
  for (int round = 0; round < opt_.storm_rounds; ++round) {
    out.push_back(restart_round(false));
    if (!opt_.storm_secret_only) out.push_back(restart_round(true));
  }
  close_all();
  stop_server();
  return out;
}

}  // namespace

std::vector<Result> run_storm(const Options& opt) {
  StormSession s(opt);
  return s.run();
}

}  // namespace mesh::bench
