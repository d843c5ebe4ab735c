// relay, fanout and latency: messages carry {"seq":N,"t":T,"pad":"..."} and
// the receiver finds seq and t with a plain scan of the incoming frame.
#include <charconv>
#include <cstring>

#include "bench.h"
#include "stats.h"

namespace mesh::bench {

namespace {

enum class Mode { relay, fanout, latency };

class TrafficSession : public Session {
 public:
  TrafficSession(const Options& opt, Mode mode)
      : Session(opt, mode == Mode::fanout ? "f" : (mode == Mode::relay ? "r" : "l")), mode_(mode) {}

  Result run();
  void on_message(WsConn& c, std::string_view msg) override;

 private:
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

  Mode mode_;
  size_t pairs_ = 0, receivers_ = 0;
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

void TrafficSession::on_message(WsConn& c, std::string_view msg) {
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
  if (!register_all(n, r) || !connect_all(r)) return finish(r);
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
  const int64_t t0 = now_ns();
  const int64_t t_measure = t0 + static_cast<int64_t>(opt_.warmup * 1e9);
  const int64_t t_end = t_measure + static_cast<int64_t>(opt_.duration * 1e9);
  sending_ = true;
  measuring_ = opt_.warmup <= 0;
  ProcSample cpu_a = measuring_ ? sample_proc(spid) : ProcSample{};
  double self_a = self_cpu_seconds();
  int64_t measure_start = t0;

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
      self_a = self_cpu_seconds();
      measure_start = now;
    }
    if (now >= t_end) break;
    int64_t wait = t_end - now;
    if (mode_ == Mode::latency) {
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
    if (authed_ < conns_.size()) break;  // lost a connection: stop early
  }
  int64_t measure_end = now_ns();
  ProcSample cpu_b = sample_proc(spid);
  double self_b = self_cpu_seconds();
  uint64_t in_window = measured_received_;
  measuring_ = false;
  sending_ = false;

  // Drain: wait for everything sent to arrive (bounded).
  run_until(now_ns() + static_cast<int64_t>(opt_.drain * 1e9),
            [&] { return received_ >= sent_ || authed_ < conns_.size(); });

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
  fill_server_cpu(r, cpu_a, cpu_b, in_window);
  r.bench_cpu_s = self_b - self_a;
  if (mode_ == Mode::fanout) {
    r.extra.emplace_back(
        "broadcasts_per_s",
        r.seconds > 0 ? static_cast<double>(in_window) / static_cast<double>(receivers_) / r.seconds
                      : 0);
  }
  if (mode_ == Mode::latency) {
    r.extra.emplace_back("target_rate", opt_.rate);
  }
  close_all();
  return finish(r);
}

}  // namespace

Result run_traffic(const Options& opt, const std::string& scenario) {
  Mode m =
      scenario == "fanout" ? Mode::fanout : (scenario == "latency" ? Mode::latency : Mode::relay);
  TrafficSession s(opt, m);
  return s.run();
}

}  // namespace mesh::bench
