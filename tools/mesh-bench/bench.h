#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "clock.h"
#include "http_register.h"
#include "loop.h"
#include "net.h"
#include "proc.h"
#include "report.h"
#include "ws_conn.h"

namespace mesh::bench {

struct Options {
  Endpoint ep;
  // Cross-relay runs: a second relay of the same cluster. relay/latency put
  // the receivers there (senders stay on ep); failover connects its meshes
  // there, kills it and lets them reconnect to ep.
  Endpoint target_ep;
  bool has_target = false;
  pid_t kill_pid = 0;          // failover: the relay to kill (0: the target port's listener)
  bool external_kill = false;  // failover: someone else kills the target relay
  double route_timeout = 10;   // cross-relay: seconds to wait for every route to say delivered
  std::string label = "server";
  int pairs = 50;
  int window = 32;
  int payload = 200;  // bytes of the payload object
  int receivers = 100;
  int rate = 20000;       // latency scenario, messages per second in total
  int auth_storm = 1000;  // authload: meshes that authenticate during the window
  double duration = 5;
  double warmup = 1;
  double drain = 2;
  int conns = 1000;
  int storm_rounds = 1;
  bool storm_secret_only = false;  // storm: skip the rounds with resume tokens
  pid_t server_pid = 0;
  std::string server_cmd;
  int source_addrs = 0;  // 0 = automatic
  int max_pending = 48;  // connection attempts + auths in flight
  int register_parallel = 8;
  double connect_timeout = 60;
  std::string run_id;
  bool verbose = false;
};

// Finds "key": (key given with quotes and colon) and parses the unsigned
// integer after it, starting at *from; advances *from past the number.
bool scan_uint(std::string_view text, std::string_view key, size_t& from, uint64_t& out);
// First string value after "key": , or empty.
std::string_view scan_string(std::string_view text, std::string_view key);
// Classifies frames a benchmark does not expect: error / auth_error.
bool is_error_frame(std::string_view text);

// Base of the scenarios: owns the loop and the connections, registers the
// meshes, connects and authenticates them with a bounded number of attempts
// in flight, and counts protocol errors.
class Session : public ConnHandler {
 public:
  Session(const Options& opt, std::string role);
  ~Session() override;

  // Registers `n` meshes named <run>-<role><i>; false (with an error in the
  // result) if any registration failed.
  bool register_all(size_t n, Result& r);
  // Creates one connection per mesh and authenticates the first `count` of
  // them (all by default); the others stay idle for the scenario to connect
  // later. Returns false if not all were authenticated within the timeout.
  bool connect_all(Result& r, size_t count = SIZE_MAX);

  void on_open(WsConn& c) override;
  void on_text(WsConn& c, std::string_view msg) override;
  void on_closed(WsConn& c, const char* why) override;

  // Called for frames on authenticated connections.
  virtual void on_message(WsConn& c, std::string_view msg) = 0;
  virtual void on_authed(WsConn& /*c*/) {}
  // A connection attempt ended without gateway_auth_ok (socket error, closed,
  // refused credentials); not called for the retries of the storm scenario.
  virtual void on_auth_failed(WsConn& /*c*/) {}

  // Where connection i goes (and where its mesh is registered).
  virtual const Endpoint& endpoint_of(size_t /*i*/) const { return opt_.ep; }

  void note_error(const std::string& what);
  void close_all();
  // Runs the loop until pred() or the deadline (monotonic ns).
  template <class Pred>
  bool run_until(int64_t deadline_ns, Pred pred);

  size_t authed_count() const { return authed_; }
  WsConn& conn(size_t i) { return *conns_[i]; }
  const MeshCred& cred(size_t i) const { return creds_[i]; }
  std::vector<MeshCred>& creds() { return creds_; }

 protected:
  void start_next_connects();
  // Moves due reconnects to the connect queue.
  void process_retries();
  void begin_connect(size_t i);
  std::string auth_frame(size_t i) const;

  const Options& opt_;
  std::string role_;
  Loop loop_;
  std::vector<MeshCred> creds_;
  std::vector<std::unique_ptr<WsConn>> conns_;
  std::vector<size_t> to_connect_;  // stack of indexes waiting for a slot
  size_t pending_ = 0;              // connecting / upgrading / waiting for auth_ok
  size_t authed_ = 0;
  int src_addrs_ = 1;
  bool use_tokens_ = false;    // storm: authenticate with the resume token too
  bool reconnecting_ = false;  // storm: closed connections are expected
  uint64_t errors_ = 0;
  uint64_t unexpected_closes_ = 0;
  uint64_t auth_failures_ = 0;
  uint64_t tokens_seen_ = 0;
  std::string first_error_;
  std::vector<std::pair<int64_t, size_t>> retry_;  // (due time, index) for reconnects
};

template <class Pred>
bool Session::run_until(int64_t deadline_ns, Pred pred) {
  for (;;) {
    if (pred()) return true;
    int64_t left = deadline_ns - now_ns();
    if (left <= 0) return pred();
    loop_.run_once(left < 50'000'000 ? left : 50'000'000);
  }
}

// Fills the server CPU fields from two samples and a message count.
void fill_server_cpu(Result& r, const ProcSample& a, const ProcSample& b, uint64_t msgs);
// CPU seconds used by this process so far.
double self_cpu_seconds();
// The pid to sample: --server-pid, or the listener of the port.
pid_t resolve_server_pid(const Options& opt);
// Same endpoint (host, port and path).
bool same_endpoint(const Endpoint& a, const Endpoint& b);
// "2.5", for messages.
std::string seconds_text(double s);
// ws://host:port/path, for messages.
std::string endpoint_text(const Endpoint& ep);

Result run_traffic(const Options& opt, const std::string& scenario);
Result run_conns(const Options& opt);
std::vector<Result> run_storm(const Options& opt);
Result run_authflood(const Options& opt);
Result run_failover(const Options& opt);

}  // namespace mesh::bench
