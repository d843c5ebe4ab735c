#include "bench.h"

#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace mesh::bench {

// Finds key (like "seq":) in text from `from`. memchr() looks for the key's
// last letter, which is rarer in JSON than its quote ('q' in "seq" is not in
// any envelope field); glibc's memmem() was a tenth of the generator's CPU
// in fan-out.
size_t find_key(std::string_view text, std::string_view key, size_t from) {
  size_t anchor = key.find_last_not_of("\":");
  if (anchor == std::string_view::npos) return text.find(key, from);
  const char* const begin = text.data();
  const char* const end = begin + text.size();
  const char* p = begin + from + anchor;
  while (p < end) {
    const void* hit = std::memchr(p, key[anchor], static_cast<size_t>(end - p));
    if (hit == nullptr) break;
    const char* start = static_cast<const char*>(hit) - anchor;
    if (static_cast<size_t>(end - start) < key.size()) break;
    if (std::memcmp(start, key.data(), key.size()) == 0) return static_cast<size_t>(start - begin);
    p = static_cast<const char*>(hit) + 1;
  }
  return std::string_view::npos;
}

bool scan_uint(std::string_view text, std::string_view key, size_t& from, uint64_t& out) {
  if (from >= text.size()) return false;
  const size_t hit = find_key(text, key, from);
  if (hit == std::string_view::npos) return false;
  size_t p = hit + key.size();
  while (p < text.size() && text[p] == ' ') ++p;
  uint64_t v = 0;
  size_t start = p;
  while (p < text.size() && text[p] >= '0' && text[p] <= '9') {
    v = v * 10 + static_cast<uint64_t>(text[p] - '0');
    ++p;
  }
  if (p == start) return false;
  out = v;
  from = p;
  return true;
}

std::string_view scan_string(std::string_view text, std::string_view key) {
  auto k = text.find(key);
  if (k == std::string_view::npos) return {};
  size_t p = k + key.size();
  while (p < text.size() && text[p] == ' ') ++p;
  if (p >= text.size() || text[p] != '"') return {};
  auto end = text.find('"', p + 1);
  if (end == std::string_view::npos) return {};
  return text.substr(p + 1, end - p - 1);
}

bool is_error_frame(std::string_view text) {
  return text.find("\"type\":\"error\"") != std::string_view::npos ||
         text.find("\"gateway_auth_error\"") != std::string_view::npos;
}

Session::Session(const Options& opt, std::string role) : opt_(opt), role_(std::move(role)) {}

Session::~Session() {
  close_all();
}

bool Session::register_all(size_t n, Result& r) {
  creds_ = make_meshes(opt_.run_id, role_, n);
  // Each mesh is registered on the relay it connects to first: on relays
  // that do not share a registry that is the only one that knows it.
  std::vector<MeshCred> here, there;
  for (size_t i = 0; i < n; ++i)
    (same_endpoint(endpoint_of(i), opt_.ep) ? here : there).push_back(creds_[i]);
  double secs = 0;
  bool ok = true;
  for (auto* group : {&here, &there}) {
    if (group->empty()) continue;
    const Endpoint& ep = group == &here ? opt_.ep : opt_.target_ep;
    auto rr = register_meshes(ep, *group, opt_.register_parallel);
    secs += rr.seconds;
    if (rr.failed) {
      note_error(rr.first_error + " (" + std::to_string(rr.failed) + " failed on " +
                 endpoint_text(ep) + ")");
      ok = false;
    }
  }
  r.extra.emplace_back("register_s", secs);
  return ok;
}

void Session::note_error(const std::string& what) {
  ++errors_;
  if (first_error_.empty()) first_error_ = what;
  if (opt_.verbose && errors_ <= 20) std::fprintf(stderr, "mesh-bench: %s\n", what.c_str());
}

std::string Session::auth_frame(size_t i) const {
  const MeshCred& m = creds_[i];
  std::string f = "{\"type\":\"gateway_auth\",\"meshId\":\"" + m.id + "\"";
  if (use_tokens_ && !m.resume_token.empty()) f += ",\"resumeToken\":\"" + m.resume_token + "\"";
  f += ",\"secret\":\"" + m.secret + "\"}";
  return f;
}

void Session::begin_connect(size_t i) {
  WsConn& c = *conns_[i];
  c.t_start = now_ns();
  int src = src_addrs_ > 1 ? static_cast<int>(i % static_cast<size_t>(src_addrs_)) : -1;
  ++pending_;
  if (!c.connect(endpoint_of(i), src)) {
    --pending_;
    if (reconnecting_) {
      retry_.emplace_back(now_ns() + 50'000'000, i);
    } else {
      note_error(std::string("connect: ") + std::strerror(errno));
      on_auth_failed(c);
    }
  }
}

void Session::start_next_connects() {
  while (pending_ < static_cast<size_t>(opt_.max_pending) && !to_connect_.empty()) {
    size_t i = to_connect_.back();
    to_connect_.pop_back();
    begin_connect(i);
  }
}

void Session::process_retries() {
  if (retry_.empty()) return;
  int64_t now = now_ns();
  size_t kept = 0;
  for (auto& e : retry_) {
    if (e.first <= now) {
      to_connect_.push_back(e.second);
    } else {
      retry_[kept++] = e;
    }
  }
  retry_.resize(kept);
  start_next_connects();
}

bool Session::connect_all(Result& r, size_t count) {
  size_t total = creds_.size();
  size_t n = std::min(count, total);
  src_addrs_ = opt_.source_addrs > 0 ? opt_.source_addrs : static_cast<int>(total / 8000 + 1);
  if (src_addrs_ > 254) src_addrs_ = 254;
  conns_.clear();
  conns_.reserve(total);
  for (size_t i = 0; i < total; ++i)
    conns_.push_back(std::make_unique<WsConn>(loop_, *this, static_cast<uint32_t>(i)));
  to_connect_.clear();
  for (size_t i = n; i-- > 0;) to_connect_.push_back(i);
  int64_t t0 = now_ns();
  start_next_connects();
  int64_t deadline = t0 + static_cast<int64_t>(opt_.connect_timeout * 1e9);
  bool all = run_until(deadline, [&] {
    if (authed_ == n) return true;
    // Nothing left in flight and nothing queued: the rest failed.
    return pending_ == 0 && to_connect_.empty() && retry_.empty();
  });
  all = all && authed_ == n;
  r.extra.emplace_back("connect_s", static_cast<double>(now_ns() - t0) / 1e9);
  if (src_addrs_ > 1) r.extra.emplace_back("source_addrs", src_addrs_);
  if (!all)
    note_error("only " + std::to_string(authed_) + " of " + std::to_string(n) +
               " connections authenticated");
  return all;
}

void Session::on_open(WsConn& c) {
  c.send_text(auth_frame(c.index()));
}

void Session::on_text(WsConn& c, std::string_view msg) {
  if (c.authed) {
    on_message(c, msg);
    return;
  }
  if (msg.find("\"gateway_auth_ok\"") != std::string_view::npos) {
    c.authed = true;
    ++authed_;
    --pending_;
    auto tok = scan_string(msg, "\"resumeToken\":");
    if (!tok.empty()) {
      creds_[c.index()].resume_token.assign(tok);
      ++tokens_seen_;
    }
    on_authed(c);
    start_next_connects();
  } else if (msg.find("\"gateway_auth_error\"") != std::string_view::npos) {
    ++auth_failures_;
    note_error("auth of " + creds_[c.index()].id + " refused: " + std::string(msg.substr(0, 200)));
    --pending_;
    c.abort();
    on_auth_failed(c);
    start_next_connects();
  } else if (is_error_frame(msg)) {
    note_error("before auth: " + std::string(msg.substr(0, 200)));
  }
}

void Session::on_closed(WsConn& c, const char* why) {
  if (c.authed) {
    c.authed = false;
    --authed_;
    if (!reconnecting_) {
      ++unexpected_closes_;
      note_error(std::string("connection of ") + creds_[c.index()].id + " lost: " + why);
    }
  } else {
    --pending_;
    if (!reconnecting_) {
      note_error(std::string("connect of ") + creds_[c.index()].id + ": " + why);
      on_auth_failed(c);
    }
  }
  if (reconnecting_) {
    // Jittered retry so that refused attempts do not spin.
    int64_t delay = 20'000'000 + static_cast<int64_t>((c.index() * 7919u) % 50) * 1'000'000;
    retry_.emplace_back(now_ns() + delay, c.index());
  } else {
    start_next_connects();
  }
}

void Session::close_all() {
  for (auto& c : conns_) c->abort();
  authed_ = 0;
  pending_ = 0;
  to_connect_.clear();
  retry_.clear();
}

void fill_server_cpu(Result& r, const ProcSample& a, const ProcSample& b, uint64_t msgs) {
  if (!a.ok || !b.ok) return;
  r.server_cpu_s = ticks_to_seconds(b.cpu_ticks - a.cpu_ticks);
  if (msgs > 0) r.server_cpu_us_per_msg = r.server_cpu_s * 1e6 / static_cast<double>(msgs);
  double wall = static_cast<double>(b.at_ns - a.at_ns) / 1e9;
  if (wall > 0) r.extra.emplace_back("server_cpu_pct", 100.0 * r.server_cpu_s / wall);
}

double self_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

bool same_endpoint(const Endpoint& a, const Endpoint& b) {
  return a.host == b.host && a.port == b.port && a.path == b.path;
}

std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", s);
  return buf;
}

std::string endpoint_text(const Endpoint& ep) {
  return "ws://" + ep.host + ":" + std::to_string(ep.port) + ep.path;
}

pid_t resolve_server_pid(const Options& opt) {
  if (opt.server_pid > 0) return opt.server_pid;
  return find_listening_pid(opt.ep.port);
}

}  // namespace mesh::bench
