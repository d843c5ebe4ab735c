// conns: C idle authenticated connections; server RSS before and after.
#include "bench.h"

namespace mesh::bench {

namespace {

class IdleSession : public Session {
 public:
  explicit IdleSession(const Options& opt) : Session(opt, "c") {}
  void on_message(WsConn& /*c*/, std::string_view msg) override {
    if (is_error_frame(msg)) note_error("error frame: " + std::string(msg.substr(0, 200)));
  }

  Result run() {
    Result r;
    r.scenario = "conns";
    r.server = opt_.label;
    r.params = {{"conns", opt_.conns}};
    size_t n = static_cast<size_t>(opt_.conns);
    pid_t spid = resolve_server_pid(opt_);
    if (register_all(n, r)) {
      ProcSample before = sample_proc(spid);
      double self_a = self_cpu_seconds();
      bool all = connect_all(r);
      if (all) {
        // Let the server settle, answering pings, then look again.
        int64_t t_idle = now_ns();
        run_until(t_idle + static_cast<int64_t>(opt_.duration * 1e9), [&] { return authed_ < n; });
        ProcSample after = sample_proc(spid);
        r.seconds = static_cast<double>(now_ns() - t_idle) / 1e9;
        if (before.ok && after.ok) {
          r.rss_before_kb = static_cast<double>(before.rss_kb);
          r.rss_after_kb = static_cast<double>(after.rss_kb);
          r.bytes_per_conn = (r.rss_after_kb - r.rss_before_kb) * 1024.0 / static_cast<double>(n);
          fill_server_cpu(r, before, after, 0);
        }
        r.extra.emplace_back("still_open", static_cast<double>(authed_));
        if (authed_ < n) note_error("idle connections were dropped");
      }
      r.bench_cpu_s = self_cpu_seconds() - self_a;
      r.received = authed_;
    }
    close_all();
    r.errors = errors_;
    r.first_error = first_error_;
    r.ok = errors_ == 0;
    return r;
  }
};

}  // namespace

Result run_conns(const Options& opt) {
  IdleSession s(opt);
  return s.run();
}

}  // namespace mesh::bench
