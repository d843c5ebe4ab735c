// failover: C meshes authenticated on relay B (--target-url), an observer
// mesh on relay A (--url). mesh-bench kills relay B with SIGKILL (or waits
// for someone else to, --external-kill); every mesh reconnects to relay A
// with the resume token relay B gave it (and its secret). Reports the time
// from the kill until each mesh is authenticated on A (p50/p99/max, and
// until all are), then checks from the observer that A delivers to each of
// them.
#include <signal.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include "bench.h"
#include "stats.h"

namespace mesh::bench {

namespace {

class FailoverSession : public Session {
 public:
  explicit FailoverSession(const Options& opt) : Session(opt, "o") {}

  Result run();

  const Endpoint& endpoint_of(size_t i) const override {
    // The observer (last) lives on A; the meshes start on B and move to A.
    return i == n_ || moved_ ? opt_.ep : opt_.target_ep;
  }
  void on_message(WsConn& /*c*/, std::string_view msg) override {
    if (verifying_ && msg.find("\"gateway_ack\"") != std::string_view::npos) {
      on_verify_ack(msg);
      return;
    }
    if (msg.find("shutting_down") != std::string_view::npos) return;
    if (is_error_frame(msg)) note_error("error frame: " + std::string(msg.substr(0, 200)));
  }
  void on_text(WsConn& c, std::string_view msg) override {
    // Relay A refusing a mesh before gateway_auth_ok (unknown mesh, token
    // and secret refused, rate limited): a final answer, not retried.
    if (moved_ && !c.authed && msg.find("\"gateway_auth_ok\"") == std::string_view::npos &&
        is_error_frame(msg)) {
      ++refused_;
      if (refused_ <= 3 || opt_.verbose)
        note_error("auth of " + creds_[c.index()].id + " on " + endpoint_text(opt_.ep) +
                   " refused: " + std::string(msg.substr(0, 200)));
      --pending_;
      c.abort();
      start_next_connects();
      return;
    }
    Session::on_text(c, msg);
  }
  void on_authed(WsConn& c) override {
    if (!moved_ || c.index() == n_) return;
    int64_t now = now_ns();
    hist_.record(now - t_kill_);
    if (!first_online_) first_online_ = now;
    last_online_ = now;
  }
  void on_closed(WsConn& c, const char* why) override {
    if (c.index() == n_) {
      observer_lost_ = true;
      reconnecting_ = false;  // an error: the observer's relay stays up
      Session::on_closed(c, why);
      reconnecting_ = moved_;
      return;
    }
    if (moved_ && c.authed && !left_b_[c.index()]) {
      int64_t now = now_ns();
      left_b_[c.index()] = 1;
      if (!first_close_) {
        first_close_ = now;
        // With --external-kill the clock starts at the first close seen.
        if (opt_.external_kill) t_kill_ = now;
      }
      last_close_ = now;
      ++closed_;
    }
    Session::on_closed(c, why);
  }

 private:
  void on_verify_ack(std::string_view msg) {
    auto id = scan_string(msg, "\"id\":");
    if (id.substr(0, 2) != "v-") return;
    size_t i = 0;
    auto [p, ec] = std::from_chars(id.data() + 2, id.data() + id.size(), i);
    if (ec != std::errc() || i >= n_ || verify_state_[i] != 0) return;
    bool ok = scan_string(msg, "\"status\":") == "delivered";
    verify_state_[i] = ok ? 1 : 2;
    (ok ? reachable_ : unreachable_)++;
  }

  size_t n_ = 0;
  bool moved_ = false;      // B was killed: connections go to A
  bool verifying_ = false;  // the observer waits for acks
  bool observer_lost_ = false;
  int64_t t_kill_ = 0, first_close_ = 0, last_close_ = 0, first_online_ = 0, last_online_ = 0;
  size_t closed_ = 0;            // meshes whose connection to B ended
  std::vector<uint8_t> left_b_;  // per mesh: its connection to B ended
  Histogram hist_;               // per mesh: kill -> gateway_auth_ok on A
  std::vector<uint8_t> verify_state_;
  size_t reachable_ = 0, unreachable_ = 0;
  size_t refused_ = 0;
};

Result FailoverSession::run() {
  Result r;
  r.scenario = "failover";
  r.server = opt_.label;
  n_ = static_cast<size_t>(opt_.conns);
  r.params = {{"conns", opt_.conns}, {"max_pending", opt_.max_pending}};
  r.has_latency = true;
  auto finish = [&]() {
    close_all();
    r.errors = errors_;
    r.first_error = first_error_;
    r.ok = errors_ == 0;
    return r;
  };
  if (!opt_.has_target || same_endpoint(opt_.ep, opt_.target_ep)) {
    note_error("failover needs --target-url (the relay to kill) besides --url (the survivor)");
    return finish();
  }
  pid_t victim = opt_.kill_pid > 0 ? opt_.kill_pid : find_listening_pid(opt_.target_ep.port);
  if (!opt_.external_kill && victim <= 0) {
    note_error("cannot find the process listening on " + endpoint_text(opt_.target_ep) +
               " (give --kill-pid)");
    return finish();
  }
  pid_t survivor = resolve_server_pid(opt_);
  if (!register_all(n_ + 1, r) || !connect_all(r)) return finish();
  size_t with_token = 0;
  for (size_t i = 0; i < n_; ++i) with_token += creds_[i].resume_token.empty() ? 0 : 1;
  r.extra.emplace_back("meshes_with_token", static_cast<double>(with_token));
  if (with_token < n_)
    note_error(std::to_string(n_ - with_token) + " meshes got no resume token from " +
               endpoint_text(opt_.target_ep));

  // Reconnect with the resume token (and the secret, as nodes do) to A.
  left_b_.assign(n_, 0);
  use_tokens_ = true;
  reconnecting_ = true;
  moved_ = true;
  ProcSample cpu_a = sample_proc(survivor);
  double self_a = self_cpu_seconds();
  const int64_t t_start = now_ns();
  if (opt_.external_kill) {
    std::fprintf(stderr, "mesh-bench: %zu meshes online on %s; waiting for it to be killed\n", n_,
                 endpoint_text(opt_.target_ep).c_str());
  } else if (kill(victim, SIGKILL) != 0) {
    note_error(std::string("kill -9 ") + std::to_string(victim) + ": " + std::strerror(errno));
    return finish();
  }
  t_kill_ = t_start;
  const int64_t deadline = t_start + static_cast<int64_t>(opt_.connect_timeout * 1e9);
  auto settled = [&] {
    // Every mesh is back on A, or refused by it with nothing left to try.
    return closed_ == n_ && authed_ + refused_ == n_ + 1 && pending_ == 0 && to_connect_.empty() &&
           retry_.empty();
  };
  while (now_ns() < deadline && !settled() && !observer_lost_) {
    process_retries();
    loop_.run_once(5'000'000);
  }
  const int64_t t_done = now_ns();
  ProcSample cpu_b = sample_proc(survivor);
  size_t online = authed_ > 0 ? authed_ - 1 : 0;  // without the observer
  if (observer_lost_) online = hist_.count();
  r.bench_cpu_s = self_cpu_seconds() - self_a;
  r.received = online;
  r.seconds = last_online_ ? static_cast<double>(last_online_ - t_kill_) / 1e9
                           : static_cast<double>(t_done - t_kill_) / 1e9;
  r.latency_samples = hist_.count();
  r.p50 = static_cast<double>(hist_.percentile(0.50)) / 1e3;
  r.p90 = static_cast<double>(hist_.percentile(0.90)) / 1e3;
  r.p99 = static_cast<double>(hist_.percentile(0.99)) / 1e3;
  r.p999 = static_cast<double>(hist_.percentile(0.999)) / 1e3;
  r.max = static_cast<double>(hist_.max()) / 1e3;
  if (online == n_ && r.seconds > 0) r.msgs_per_s = static_cast<double>(n_) / r.seconds;
  fill_server_cpu(r, cpu_a, cpu_b, online);
  r.extra.emplace_back("online_again", static_cast<double>(online));
  r.extra.emplace_back("refused", static_cast<double>(refused_));
  if (last_close_)
    r.extra.emplace_back("all_closed_s", static_cast<double>(last_close_ - t_kill_) / 1e9);
  if (first_online_)
    r.extra.emplace_back("first_online_s", static_cast<double>(first_online_ - t_kill_) / 1e9);
  if (last_online_ && online == n_)
    r.extra.emplace_back("all_online_s", static_cast<double>(last_online_ - t_kill_) / 1e9);
  if (closed_ < n_) {
    note_error("only " + std::to_string(closed_) + " of " + std::to_string(n_) +
               " connections to " + endpoint_text(opt_.target_ep) + " closed within " +
               seconds_text(opt_.connect_timeout) + " s" +
               (opt_.external_kill ? " (was the relay killed?)" : ""));
  } else if (online < n_) {
    note_error("only " + std::to_string(online) + " of " + std::to_string(n_) +
               " meshes online again on " + endpoint_text(opt_.ep) + " (" +
               std::to_string(refused_) + " refused; are the relays in one cluster?)");
  }
  reconnecting_ = false;

  // From the observer on A: every mesh that came back must be reachable.
  if (!observer_lost_ && online > 0) {
    verify_state_.assign(n_, 0);
    verifying_ = true;
    WsConn& obs = conn(n_);
    for (size_t i = 0; i < n_; ++i) {
      if (!conn(i).authed) continue;
      obs.send_text("{\"type\":\"gateway_relay\",\"id\":\"v-" + std::to_string(i) +
                    "\",\"targetMeshId\":\"" + cred(i).id + "\",\"payload\":{\"check\":1}}");
    }
    run_until(now_ns() + 5'000'000'000,
              [&] { return reachable_ + unreachable_ >= online || observer_lost_; });
    verifying_ = false;
    r.extra.emplace_back("reachable", static_cast<double>(reachable_));
    if (reachable_ < online)
      note_error(std::to_string(online - reachable_) + " meshes authenticated on " +
                 endpoint_text(opt_.ep) + " but a relay from it to them was not delivered (" +
                 std::to_string(unreachable_) + " acked offline)");
  }
  return finish();
}

}  // namespace

Result run_failover(const Options& opt) {
  FailoverSession s(opt);
  return s.run();
}

}  // namespace mesh::bench
