// relay, fanout, latency and authload: messages carry {"seq":N,"t":T,"pad":"..."}
// and the receiver finds seq and t with a plain scan of the incoming frame.
// authload is latency while extra meshes authenticate with their secrets.
// With a target relay (--target-url), relay and latency put every receiver
// on it and every sender on --url: each message crosses the cluster link.
// Before measuring, each sender relays one probe with an id to its receiver
// and waits for a `delivered` ack, so a cluster that cannot route (acks say
// `offline`) is reported as such instead of as lost messages.
#include <algorithm>
#include <charconv>
#include <cstring>

#include "bench.h"
#include "stats.h"

namespace mesh::bench {

namespace {

enum class Mode { relay, fanout, latency, authload };

const char* role_of(Mode m) {
  switch (m) {
    case Mode::relay:
      return "r";
    case Mode::fanout:
      return "f";
    case Mode::latency:
      return "l";
    case Mode::authload:
      return "a";
  }
  return "x";
}

class TrafficSession : public Session {
 public:
  TrafficSession(const Options& opt, Mode mode) : Session(opt, role_of(mode)), mode_(mode) {}

  Result run();
  void on_message(WsConn& c, std::string_view msg) override;
  void on_authed(WsConn& c) override;
  void on_auth_failed(WsConn& c) override;
  void on_closed(WsConn& c, const char* why) override;
  const Endpoint& endpoint_of(size_t i) const override {
    return cross_ && i >= pairs_ && i < 2 * pairs_ ? opt_.target_ep : opt_.ep;
  }

 private:
  // Cross-relay: probes every sender -> receiver route until all are
  // delivered or --route-timeout passes. False (with an error) if not.
  bool check_routes(Result& r);
  void send_probe(size_t pair);
  void on_probe_ack(std::string_view msg);

  struct Stream {  // one sender -> receiver pair (fan-out: one per receiver)
    uint64_t next_seq = 0;
    uint64_t inflight = 0;
    SeqTracker seen;
  };

  size_t streams() const { return mode_ == Mode::fanout ? receivers_ : pairs_; }
  bool is_receiver(size_t conn) const { return mode_ == Mode::fanout ? conn >= 1 : conn >= pairs_; }
  size_t stream_of(size_t conn) const { return mode_ == Mode::fanout ? conn - 1 : conn - pairs_; }
  void send_one(size_t pair, int64_t t);
  void send_broadcast(int64_t t);
  bool open_loop() const { return mode_ == Mode::latency || mode_ == Mode::authload; }
  bool is_storm(size_t conn) const { return conn >= traffic_conns_; }
  // authload: queues every storm mesh for connecting (max_pending at once).
  void start_storm();
  bool storm_over() const { return storm_ok_ + storm_failed_ >= storm_n_; }

  Mode mode_;
  bool cross_ = false;
  bool probing_ = false;
  std::vector<uint8_t> route_state_;  // per pair: 0 waiting, 1 delivered, 2 offline (to retry)
  std::vector<int> route_attempts_;
  size_t routes_ok_ = 0;
  uint64_t offline_acks_ = 0;
  uint64_t probe_errors_ = 0;
  std::string last_offline_;
  size_t pairs_ = 0, receivers_ = 0;
  size_t traffic_conns_ = 0;   // the senders and receivers; storm meshes come after
  bool traffic_lost_ = false;  // a sender or receiver was disconnected
  size_t storm_n_ = 0;
  size_t storm_ok_ = 0, storm_failed_ = 0;
  int64_t storm_start_ = 0, storm_last_ = 0;
  Histogram storm_hist_;  // per storm mesh: connect start -> gateway_auth_ok
  std::vector<Stream> streams_;
  std::vector<std::string> prefix_;  // frame text up to the seq value, per sender
  std::string suffix_;               // ,"pad":"..."}}
  bool sending_ = false;
  bool measuring_ = false;
  uint64_t sent_ = 0, received_ = 0, measured_received_ = 0, dups_ = 0;
  uint64_t bcast_sent_ = 0, bcast_done_ = 0, bcast_inflight_ = 0;
  std::vector<uint32_t> bcast_count_;  // deliveries per broadcast seq, ring
  Histogram hist_;
  char buf_[128];
};

void TrafficSession::send_one(size_t pair, int64_t t) {
  Stream& s = streams_[pair];
  std::string& f = prefix_[pair];
  size_t base = f.size();
  char* p = buf_;
  p = std::to_chars(p, buf_ + sizeof buf_, s.next_seq).ptr;
  std::memcpy(p, ",\"t\":", 5);
  p += 5;
  p = std::to_chars(p, buf_ + sizeof buf_, t).ptr;
  f.append(buf_, static_cast<size_t>(p - buf_));
  f += suffix_;
  conn(pair).send_text(f);
  f.resize(base);
  ++s.next_seq;
  ++s.inflight;
  ++sent_;
}

void TrafficSession::send_broadcast(int64_t t) {
  std::string& f = prefix_[0];
  size_t base = f.size();
  char* p = buf_;
  p = std::to_chars(p, buf_ + sizeof buf_, bcast_sent_).ptr;
  std::memcpy(p, ",\"t\":", 5);
  p += 5;
  p = std::to_chars(p, buf_ + sizeof buf_, t).ptr;
  f.append(buf_, static_cast<size_t>(p - buf_));
  f += suffix_;
  conn(0).send_text(f);
  f.resize(base);
  ++bcast_sent_;
  ++bcast_inflight_;
  sent_ += receivers_;
}

void TrafficSession::on_authed(WsConn& c) {
  if (!is_storm(c.index())) return;
  int64_t now = now_ns();
  ++storm_ok_;
  storm_last_ = now;
  storm_hist_.record(now - c.t_start);
}

void TrafficSession::on_auth_failed(WsConn& c) {
  if (!is_storm(c.index())) return;
  ++storm_failed_;
  storm_last_ = now_ns();
}

void TrafficSession::on_closed(WsConn& c, const char* why) {
  if (c.authed && !is_storm(c.index())) traffic_lost_ = true;
  Session::on_closed(c, why);
}

void TrafficSession::start_storm() {
  storm_start_ = now_ns();
  for (size_t i = traffic_conns_ + storm_n_; i-- > traffic_conns_;) to_connect_.push_back(i);
  start_next_connects();
}

void TrafficSession::send_probe(size_t pair) {
  route_state_[pair] = 0;
  ++route_attempts_[pair];
  // No "seq" in the payload: receivers do not count probes as messages.
  conn(pair).send_text("{\"type\":\"gateway_relay\",\"id\":\"route-" + std::to_string(pair) +
                       "\",\"targetMeshId\":\"" + cred(pairs_ + pair).id +
                       "\",\"payload\":{\"probe\":" + std::to_string(pair) + "}}");
}

void TrafficSession::on_probe_ack(std::string_view msg) {
  auto id = scan_string(msg, "\"id\":");
  if (id.substr(0, 6) != "route-") return;
  size_t pair = 0;
  auto [p, ec] = std::from_chars(id.data() + 6, id.data() + id.size(), pair);
  if (ec != std::errc() || pair >= pairs_ || route_state_[pair] != 0) return;
  auto status = scan_string(msg, "\"status\":");
  if (status == "delivered") {
    route_state_[pair] = 1;
    ++routes_ok_;
  } else {
    // offline, or an error frame: probed again until --route-timeout.
    route_state_[pair] = 2;
    ++(status.empty() ? probe_errors_ : offline_acks_);
    last_offline_.assign(msg.substr(0, 200));
  }
}

bool TrafficSession::check_routes(Result& r) {
  route_state_.assign(pairs_, 0);
  route_attempts_.assign(pairs_, 0);
  probing_ = true;
  const int64_t t0 = now_ns();
  const int64_t deadline = t0 + static_cast<int64_t>(opt_.route_timeout * 1e9);
  for (size_t p = 0; p < pairs_; ++p) send_probe(p);
  // Offline routes are probed again every 100 ms: the other relay may not
  // have told the cluster about its meshes yet.
  int64_t next_retry = t0 + 100'000'000;
  while (routes_ok_ < pairs_ && !traffic_lost_) {
    int64_t now = now_ns();
    if (now >= deadline) break;
    if (now >= next_retry) {
      for (size_t p = 0; p < pairs_; ++p)
        if (route_state_[p] == 2) send_probe(p);
      next_retry = now + 100'000'000;
    }
    int64_t wait = std::min(next_retry, deadline) - now;
    loop_.run_once(wait > 0 ? wait : 0);
  }
  probing_ = false;
  r.extra.emplace_back("route_check_s", static_cast<double>(now_ns() - t0) / 1e9);
  r.extra.emplace_back("routes_delivered", static_cast<double>(routes_ok_));
  r.extra.emplace_back("offline_acks", static_cast<double>(offline_acks_));
  if (probe_errors_) r.extra.emplace_back("probe_errors", static_cast<double>(probe_errors_));
  if (routes_ok_ == pairs_) return true;
  size_t offline = 0, unanswered = 0;
  for (uint8_t st : route_state_) {
    offline += st == 2 ? 1 : 0;
    unanswered += st == 0 ? 1 : 0;
  }
  std::string what = "cross-relay: " + std::to_string(pairs_ - routes_ok_) + " of " +
                     std::to_string(pairs_) + " receivers on " + endpoint_text(opt_.target_ep) +
                     " not reachable from " + endpoint_text(opt_.ep) + " after " +
                     seconds_text(opt_.route_timeout) + " s: " + std::to_string(offline) +
                     " acked offline or refused, " + std::to_string(unanswered) + " unanswered";
  if (offline) what += " (the relays do not route to each other: same --nats cluster?)";
  if (!last_offline_.empty()) what += "; last answer: " + last_offline_;
  note_error(what);
  return false;
}

void TrafficSession::on_message(WsConn& c, std::string_view msg) {
  // Acks of the probes, and errors that name one (a cluster that cannot
  // reach the other relay answers with an error code).
  if (probing_ && (msg.find("\"gateway_ack\"") != std::string_view::npos ||
                   (is_error_frame(msg) && msg.find("\"route-") != std::string_view::npos))) {
    on_probe_ack(msg);
    return;
  }
  if (is_storm(c.index())) {
    if (is_error_frame(msg)) note_error("error frame: " + std::string(msg.substr(0, 200)));
    return;
  }
  size_t at = 0;
  uint64_t seq = 0, t = 0;
  if (!scan_uint(msg, "\"seq\":", at, seq) || !scan_uint(msg, "\"t\":", at, t)) {
    if (is_error_frame(msg)) note_error("error frame: " + std::string(msg.substr(0, 200)));
    return;  // presence, participants, acks: not ours to count
  }
  int64_t now = now_ns();
  if (!is_receiver(c.index())) {
    note_error("sender " + cred(c.index()).id + " received a message");
    return;
  }
  size_t sidx = stream_of(c.index());
  Stream& s = streams_[sidx];
  if (!s.seen.mark(seq)) {
    ++dups_;
    return;
  }
  ++received_;
  if (measuring_) {
    ++measured_received_;
    hist_.record(now - static_cast<int64_t>(t));
  }
  if (mode_ == Mode::relay) {
    Stream& snd = streams_[sidx];
    --snd.inflight;
    if (sending_) send_one(sidx, now);
  } else if (mode_ == Mode::fanout) {
    uint32_t& cnt = bcast_count_[seq % bcast_count_.size()];
    if (++cnt == receivers_) {
      cnt = 0;
      ++bcast_done_;
      --bcast_inflight_;
      if (sending_) send_broadcast(now);
    }
  }
}

Result TrafficSession::run() {
  Result r;
  r.server = opt_.label;
  pairs_ = static_cast<size_t>(opt_.pairs);
  receivers_ = static_cast<size_t>(opt_.receivers);
  cross_ = opt_.has_target && (mode_ == Mode::relay || mode_ == Mode::latency);
  size_t n = 0;
  switch (mode_) {
    case Mode::relay:
      r.scenario = "relay";
      r.params = {{"pairs", opt_.pairs}, {"window", opt_.window}, {"payload", opt_.payload}};
      n = 2 * pairs_;
      break;
    case Mode::latency:
      r.scenario = "latency";
      r.params = {{"pairs", opt_.pairs}, {"rate", opt_.rate}, {"payload", opt_.payload}};
      n = 2 * pairs_;
      break;
    case Mode::authload:
      r.scenario = "authload";
      r.params = {{"pairs", opt_.pairs},
                  {"rate", opt_.rate},
                  {"payload", opt_.payload},
                  {"auth_storm", opt_.auth_storm},
                  {"max_pending", opt_.max_pending}};
      n = 2 * pairs_;
      storm_n_ = static_cast<size_t>(opt_.auth_storm);
      break;
    case Mode::fanout:
      r.scenario = "fanout";
      r.params = {
          {"receivers", opt_.receivers}, {"window", opt_.window}, {"payload", opt_.payload}};
      n = 1 + receivers_;
      break;
  }
  r.has_latency = true;
  auto finish = [&](Result& res) {
    res.errors = errors_;
    res.first_error = first_error_;
    res.ok = res.errors == 0 && res.lost == 0 && res.duplicates == 0;
    return res;
  };
  traffic_conns_ = n;
  // Storm meshes are registered now, so that registration is not measured.
  if (cross_) {
    r.scenario += "-x";
    r.extra.emplace_back("target_port", opt_.target_ep.port);
  }
  if (!register_all(n + storm_n_, r) || !connect_all(r, n)) return finish(r);
  if (cross_ && !check_routes(r)) {
    close_all();
    return finish(r);
  }
  streams_.assign(streams(), Stream{});

  // Pad so that the payload object is about opt_.payload bytes with a
  // typical 7-digit seq and 13-digit timestamp.
  const size_t fixed = std::strlen("{\"seq\":,\"t\":,\"pad\":\"\"}") + 7 + 13;
  size_t pad =
      opt_.payload > static_cast<int>(fixed) ? static_cast<size_t>(opt_.payload) - fixed : 0;
  suffix_ = ",\"pad\":\"" + std::string(pad, 'x') + "\"}}";
  if (mode_ == Mode::fanout) {
    prefix_.assign(1, "{\"type\":\"gateway_broadcast\",\"payload\":{\"seq\":");
    size_t ring = 1;
    while (ring < static_cast<size_t>(opt_.window) * 2) ring <<= 1;
    bcast_count_.assign(ring, 0);
  } else {
    prefix_.clear();
    for (size_t i = 0; i < pairs_; ++i)
      prefix_.push_back("{\"type\":\"gateway_relay\",\"targetMeshId\":\"" + cred(pairs_ + i).id +
                        "\",\"payload\":{\"seq\":");
  }

  pid_t spid = resolve_server_pid(opt_);
  // Cross-relay: the server CPU is both relays'.
  pid_t tpid = cross_ ? find_listening_pid(opt_.target_ep.port) : 0;
  if (tpid == spid) tpid = 0;
  ProcSample tcpu_a;
  const int64_t t0 = now_ns();
  const int64_t t_measure = t0 + static_cast<int64_t>(opt_.warmup * 1e9);
  // authload: the window is the storm, from its first connect to the last
  // answer; --connect-timeout bounds it instead of --duration.
  const bool storm = mode_ == Mode::authload;
  const int64_t t_end =
      t_measure + static_cast<int64_t>((storm ? opt_.connect_timeout : opt_.duration) * 1e9);
  sending_ = true;
  measuring_ = opt_.warmup <= 0;
  ProcSample cpu_a = measuring_ ? sample_proc(spid) : ProcSample{};
  if (measuring_ && tpid) tcpu_a = sample_proc(tpid);
  double self_a = self_cpu_seconds();
  int64_t measure_start = t0;
  if (storm && measuring_) start_storm();

  if (mode_ == Mode::relay) {
    for (size_t p = 0; p < pairs_; ++p)
      for (int w = 0; w < opt_.window; ++w) send_one(p, now_ns());
  } else if (mode_ == Mode::fanout) {
    for (int w = 0; w < opt_.window; ++w) send_broadcast(now_ns());
  }

  // Open loop: message k is due at t0 + k / rate, stamped with that time.
  const double interval = 1e9 / (opt_.rate > 0 ? opt_.rate : 1);
  uint64_t k = 0;
  size_t rr = 0;
  for (;;) {
    int64_t now = now_ns();
    if (!measuring_ && now >= t_measure) {
      measuring_ = true;
      hist_.reset();
      measured_received_ = 0;
      cpu_a = sample_proc(spid);
      if (tpid) tcpu_a = sample_proc(tpid);
      self_a = self_cpu_seconds();
      measure_start = now;
      if (storm) start_storm();
    }
    if (now >= t_end) break;
    if (storm && measuring_ && storm_over()) break;
    int64_t wait = t_end - now;
    if (open_loop()) {
      int burst = 0;
      int64_t due = t0 + static_cast<int64_t>(static_cast<double>(k) * interval);
      while (due <= now && burst < 20000) {
        send_one(rr, due);
        rr = rr + 1 == pairs_ ? 0 : rr + 1;
        ++k;
        ++burst;
        due = t0 + static_cast<int64_t>(static_cast<double>(k) * interval);
      }
      wait = due - now_ns();
      if (wait < 0) wait = 0;
    }
    if (!measuring_ && t_measure - now < wait) wait = t_measure - now;
    if (wait > 50'000'000) wait = 50'000'000;
    loop_.run_once(wait);
    if (traffic_lost_) break;  // lost a connection: stop early
  }
  int64_t measure_end = now_ns();
  ProcSample cpu_b = sample_proc(spid);
  ProcSample tcpu_b = tpid ? sample_proc(tpid) : ProcSample{};
  double self_b = self_cpu_seconds();
  uint64_t in_window = measured_received_;
  measuring_ = false;
  sending_ = false;

  // Drain: wait for everything sent to arrive (bounded).
  run_until(now_ns() + static_cast<int64_t>(opt_.drain * 1e9),
            [&] { return received_ >= sent_ || traffic_lost_; });

  r.seconds = static_cast<double>(measure_end - measure_start) / 1e9;
  r.sent = sent_;
  r.received = received_;
  r.lost = sent_ > received_ ? sent_ - received_ : 0;
  r.duplicates = dups_;
  r.msgs_per_s = r.seconds > 0 ? static_cast<double>(in_window) / r.seconds : 0;
  r.latency_samples = hist_.count();
  r.p50 = static_cast<double>(hist_.percentile(0.50)) / 1e3;
  r.p90 = static_cast<double>(hist_.percentile(0.90)) / 1e3;
  r.p99 = static_cast<double>(hist_.percentile(0.99)) / 1e3;
  r.p999 = static_cast<double>(hist_.percentile(0.999)) / 1e3;
  r.max = static_cast<double>(hist_.max()) / 1e3;
  // authload: the server's CPU includes the Argon2id work, so no per-message figure.
  fill_server_cpu(r, cpu_a, cpu_b, storm ? 0 : in_window);
  if (tcpu_a.ok && tcpu_b.ok && r.server_cpu_s >= 0) {
    double a_s = r.server_cpu_s;
    double b_s = ticks_to_seconds(tcpu_b.cpu_ticks - tcpu_a.cpu_ticks);
    r.extra.emplace_back("server_a_cpu_s", a_s);
    r.extra.emplace_back("server_b_cpu_s", b_s);
    r.server_cpu_s = a_s + b_s;
    if (in_window > 0)
      r.server_cpu_us_per_msg = r.server_cpu_s * 1e6 / static_cast<double>(in_window);
  }
  r.bench_cpu_s = self_b - self_a;
  if (mode_ == Mode::fanout) {
    r.extra.emplace_back(
        "broadcasts_per_s",
        r.seconds > 0 ? static_cast<double>(in_window) / static_cast<double>(receivers_) / r.seconds
                      : 0);
  }
  if (open_loop()) {
    r.extra.emplace_back("target_rate", opt_.rate);
  }
  if (storm) {
    // storm_last_ is the last answer; without one the storm never got going.
    int64_t storm_end = storm_over() && storm_last_ ? storm_last_ : measure_end;
    double auth_s = static_cast<double>(storm_end - storm_start_) / 1e9;
    r.extra.emplace_back("auth_s", auth_s);
    r.extra.emplace_back("auth_ok", static_cast<double>(storm_ok_));
    r.extra.emplace_back("auth_failed", static_cast<double>(storm_failed_));
    r.extra.emplace_back("auths_per_s", auth_s > 0 ? static_cast<double>(storm_ok_) / auth_s : 0);
    // Each storm mesh from its connect to gateway_auth_ok (queueing included).
    r.extra.emplace_back("auth_p50_ms", static_cast<double>(storm_hist_.percentile(0.50)) / 1e6);
    r.extra.emplace_back("auth_p99_ms", static_cast<double>(storm_hist_.percentile(0.99)) / 1e6);
    r.extra.emplace_back("auth_max_ms", static_cast<double>(storm_hist_.max()) / 1e6);
    // Failed auths are errors already; this is for those never answered.
    if (!storm_over())
      note_error("auth storm: only " + std::to_string(storm_ok_ + storm_failed_) + " of " +
                 std::to_string(storm_n_) + " auths answered within --connect-timeout");
  }
  close_all();
  return finish(r);
}

}  // namespace

Result run_traffic(const Options& opt, const std::string& scenario) {
  Mode m = Mode::relay;
  if (scenario == "fanout") m = Mode::fanout;
  if (scenario == "latency") m = Mode::latency;
  if (scenario == "authload") m = Mode::authload;
  TrafficSession s(opt, m);
  return s.run();
}

}  // namespace mesh::bench
