// authflood: one address (127.0.0.2) sends wrong secrets for a mesh as fast
// as it can, over --pairs connections that reconnect as soon as they are
// answered, while the mesh's node connects from another address (127.0.0.3)
// every 100 ms with the right secret. Measures the node's time from connect
// to gateway_auth_ok, and what the flood got: checked and refused (invalid
// credentials) or refused unchecked (rate_limited).
#include <algorithm>
#include <memory>
#include <vector>

#include "bench.h"
#include "stats.h"

namespace mesh::bench {

namespace {

constexpr int kFloodSource = 1;  // 127.0.0.2
constexpr int kNodeSource = 2;   // 127.0.0.3
constexpr int64_t kNodeEveryNs = 100'000'000;

class FloodSession : public ConnHandler {
 public:
  explicit FloodSession(const Options& opt) : opt_(opt) {}

  Result run();
  void on_open(WsConn& c) override;
  void on_text(WsConn& c, std::string_view msg) override;
  void on_closed(WsConn& c, const char* why) override;

 private:
  bool is_node(const WsConn& c) const { return c.index() == node_index_; }
  std::string auth(const std::string& secret) const {
    return R"({"type":"gateway_auth","meshId":")" + mesh_.id + R"(","secret":")" + secret + "\"}";
  }
  // Answered or gone: the connection is opened again from the loop (never
  // from inside a handler, which runs while the connection parses input).
  void done_with(WsConn& c, int64_t delay_ns) {
    if (is_node(c)) {
      node_busy_ = false;
      return;
    }
    again_.emplace_back(now_ns() + delay_ns, c.index());
  }

  const Options& opt_;
  Loop loop_;
  MeshCred mesh_;
  std::vector<std::unique_ptr<WsConn>> conns_;  // the flood's, then the node's
  uint32_t node_index_ = 0;
  bool node_busy_ = false;
  bool measuring_ = false;
  std::vector<std::pair<int64_t, uint32_t>> again_;
  Histogram node_hist_;
  uint64_t node_ok_ = 0, node_failed_ = 0;
  uint64_t flood_sent_ = 0, flood_invalid_ = 0, flood_refused_ = 0, flood_closed_ = 0;
  std::string first_error_;
};

void FloodSession::on_open(WsConn& c) {
  c.t_start = c.t_start ? c.t_start : now_ns();
  if (is_node(c)) {
    c.send_text(auth(mesh_.secret));
  } else {
    c.send_text(auth("wrong-" + mesh_.secret));
    if (measuring_) ++flood_sent_;
  }
}

void FloodSession::on_text(WsConn& c, std::string_view msg) {
  if (c.authed) return;  // the node's frames after its auth_ok
  const bool ok = msg.find("\"gateway_auth_ok\"") != std::string_view::npos;
  if (is_node(c)) {
    if (ok) {
      c.authed = true;
      ++node_ok_;
      node_hist_.record(now_ns() - c.t_start);
    } else {
      ++node_failed_;
      if (first_error_.empty()) first_error_ = "node: " + std::string(msg.substr(0, 200));
    }
    c.abort();
    done_with(c, 0);
    return;
  }
  if (measuring_) {
    if (msg.find("rate_limited") != std::string_view::npos) {
      ++flood_refused_;
    } else if (msg.find("invalid_credentials") != std::string_view::npos) {
      ++flood_invalid_;
    }
  }
  c.abort();
  done_with(c, 0);
}

void FloodSession::on_closed(WsConn& c, const char* why) {
  if (is_node(c)) {
    if (!c.authed) {
      ++node_failed_;
      if (first_error_.empty()) first_error_ = std::string("node connection closed: ") + why;
    }
    done_with(c, 0);
    return;
  }
  if (measuring_) ++flood_closed_;
  done_with(c, 10'000'000);  // refused upgrades: do not spin
}

Result FloodSession::run() {
  Result r;
  r.scenario = "authflood";
  r.server = opt_.label;
  r.params = {{"flood_conns", opt_.pairs}};
  r.has_latency = true;
  mesh_ = make_meshes(opt_.run_id, "flood", 1).front();
  RegisterResult reg = register_meshes(opt_.ep, {mesh_}, 1);
  if (reg.ok != 1) {
    r.errors = 1;
    r.first_error = "register: " + reg.first_error;
    r.ok = false;
    return r;
  }
  const auto flood = static_cast<uint32_t>(opt_.pairs);
  for (uint32_t i = 0; i <= flood; ++i) conns_.push_back(std::make_unique<WsConn>(loop_, *this, i));
  node_index_ = flood;
  for (uint32_t i = 0; i < flood; ++i) conns_[i]->connect(opt_.ep, kFloodSource);

  const int64_t start = now_ns();
  const int64_t measure_from = start + static_cast<int64_t>(opt_.warmup * 1e9);
  const int64_t end = measure_from + static_cast<int64_t>(opt_.duration * 1e9);
  int64_t next_node = measure_from;
  while (now_ns() < end) {
    const int64_t now = now_ns();
    if (!measuring_ && now >= measure_from) measuring_ = true;
    if (measuring_ && !node_busy_ && now >= next_node) {
      WsConn& n = *conns_[node_index_];
      n.t_start = now;
      node_busy_ = n.connect(opt_.ep, kNodeSource);
      if (!node_busy_) ++node_failed_;
      next_node = now + kNodeEveryNs;
    }
    size_t kept = 0;
    for (auto& [due, idx] : again_) {
      if (due <= now) {
        conns_[idx]->t_start = 0;
        conns_[idx]->connect(opt_.ep, kFloodSource);
      } else {
        again_[kept++] = {due, idx};
      }
    }
    again_.resize(kept);
    loop_.run_once(2'000'000);
  }
  for (auto& c : conns_) c->abort();

  r.seconds = opt_.duration;
  r.received = node_ok_;
  r.latency_samples = node_hist_.count();
  r.p50 = static_cast<double>(node_hist_.percentile(0.50)) / 1e3;
  r.p90 = static_cast<double>(node_hist_.percentile(0.90)) / 1e3;
  r.p99 = static_cast<double>(node_hist_.percentile(0.99)) / 1e3;
  r.p999 = static_cast<double>(node_hist_.percentile(0.999)) / 1e3;
  r.max = static_cast<double>(node_hist_.max()) / 1e3;
  r.errors = node_failed_;
  r.first_error = first_error_;
  r.extra.emplace_back("node_auths_ok", static_cast<double>(node_ok_));
  r.extra.emplace_back("node_auths_failed", static_cast<double>(node_failed_));
  r.extra.emplace_back("flood_auths_sent", static_cast<double>(flood_sent_));
  r.extra.emplace_back("flood_per_s", static_cast<double>(flood_sent_) / opt_.duration);
  r.extra.emplace_back("flood_invalid_credentials", static_cast<double>(flood_invalid_));
  r.extra.emplace_back("flood_rate_limited", static_cast<double>(flood_refused_));
  r.extra.emplace_back("flood_closed_unanswered", static_cast<double>(flood_closed_));
  r.ok = node_failed_ == 0 && node_ok_ > 0;
  return r;
}

}  // namespace

Result run_authflood(const Options& opt) {
  FloodSession s(opt);
  return s.run();
}

}  // namespace mesh::bench
