// mesh-bench: load generator for mesh relays. See docs/benchmarks.md.
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <sstream>

#include "bench.h"

using namespace mesh::bench;

namespace {

void raise_fd_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

std::string make_run_id(const std::string& prefix) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%lx%x", static_cast<unsigned long>(time(nullptr)) & 0xffffff,
                static_cast<unsigned>(getpid()) & 0xfff);
  return prefix + "-" + buf;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "mesh-bench: load generator for mesh relays (relay, fanout, latency, authload, authflood, "
      "conns, storm, failover)"};
  Options opt;
  std::string url, host, scenarios = "relay", json_path, prefix = "mb", target_url;
  int port = 0, target_port = 0;
  app.add_option("--url", url, "relay WebSocket URL (default ws://127.0.0.1:4000/gateway)");
  app.add_option("--host", host, "relay host (instead of --url)");
  app.add_option("--port", port, "relay port (instead of --url)")->check(CLI::Range(1, 65535));
  app.add_option("--target-url", target_url,
                 "a second relay of the same cluster: relay/latency put every receiver there "
                 "(senders stay on --url); failover connects its meshes there and kills it");
  app.add_option("--target-port", target_port, "like --target-url, on the host of --url")
      ->check(CLI::Range(1, 65535));
  app.add_option("--scenario,-s", scenarios,
                 "comma-separated: relay, fanout, latency, authload, authflood, conns, storm, "
                 "failover, all (all = relay, fanout, latency, conns)");
  app.add_option("--label", opt.label, "server name for the report");
  app.add_option("--pairs", opt.pairs,
                 "relay/latency/authload: sender->receiver pairs; authflood: flood connections")
      ->check(CLI::Range(1, 100000));
  app.add_option("--window", opt.window, "relay/fanout: messages in flight per pair")
      ->check(CLI::Range(1, 100000));
  app.add_option("--payload", opt.payload, "payload object size in bytes")
      ->check(CLI::Range(0, 1 << 20));
  app.add_option("--receivers", opt.receivers, "fanout: receivers of one broadcaster")
      ->check(CLI::Range(1, 100000));
  app.add_option("--rate", opt.rate, "latency/authload: messages per second (open loop)")
      ->check(CLI::Range(1, 10000000));
  app.add_option("--auth-storm", opt.auth_storm,
                 "authload: meshes that connect and authenticate with their secrets during the "
                 "window (--max-pending at once)")
      ->check(CLI::Range(1, 200000));
  app.add_option("--duration", opt.duration,
                 "measured seconds (conns: idle seconds; authload: the storm sets it)")
      ->check(CLI::Range(0.1, 600.0));
  app.add_option("--warmup", opt.warmup, "seconds before measuring")->check(CLI::Range(0.0, 60.0));
  app.add_option("--drain", opt.drain, "seconds to wait for stragglers after sending stops")
      ->check(CLI::Range(0.0, 60.0));
  app.add_option("--conns", opt.conns, "conns/storm: connections (one mesh each)")
      ->check(CLI::Range(1, 200000));
  app.add_option("--storm-rounds", opt.storm_rounds, "storm: restarts per mode")
      ->check(CLI::Range(1, 20));
  app.add_flag("--storm-secret-only", opt.storm_secret_only,
               "storm: only the restarts where every mesh sends its secret and no resume token "
               "(nodes on the original protocol)");
  app.add_option("--json", json_path, "write JSON results to a file, - for stdout");
  app.add_option("--server-pid", opt.server_pid,
                 "server pid for CPU/RSS (default: the process listening on the port)");
  app.add_option("--server-cmd", opt.server_cmd,
                 "storm: shell command that starts the server in the foreground (run with sh -c in "
                 "its own process group; SIGTERM, then SIGKILL after 5 s)");
  app.add_option("--source-addrs", opt.source_addrs,
                 "spread connections over 127.0.0.1..127.0.0.N (default: 1 per 8000 conns)")
      ->check(CLI::Range(1, 254));
  app.add_option("--max-pending", opt.max_pending, "connects/auths in flight at once")
      ->check(CLI::Range(1, 100000));
  app.add_option("--register-parallel", opt.register_parallel, "parallel POST /register")
      ->check(CLI::Range(1, 256));
  app.add_option("--connect-timeout", opt.connect_timeout,
                 "seconds allowed to connect all (authload: the whole storm)");
  app.add_option("--kill-pid", opt.kill_pid,
                 "failover: pid of the relay to kill -9 (default: the process listening on the "
                 "target port)");
  app.add_flag("--external-kill", opt.external_kill,
               "failover: do not kill; wait for the target relay to die (timed from the first "
               "closed connection)");
  app.add_option("--route-timeout", opt.route_timeout,
                 "cross-relay: seconds for every sender -> receiver route to ack delivered")
      ->check(CLI::Range(0.1, 600.0));
  app.add_option("--prefix", prefix, "mesh id prefix (a run id is appended)");
  app.add_flag("--verbose,-v", opt.verbose, "print every error; show server stdout (storm)");
  CLI11_PARSE(app, argc, argv);

  if (!url.empty()) {
    if (!parse_ws_url(url, opt.ep)) {
      std::cerr << "mesh-bench: bad --url (want ws://host:port/path)\n";
      return 2;
    }
  }
  if (!host.empty()) opt.ep.host = host;
  if (port) opt.ep.port = static_cast<uint16_t>(port);
  if (!target_url.empty() || target_port) {
    opt.target_ep = opt.ep;
    if (!target_url.empty() && !parse_ws_url(target_url, opt.target_ep)) {
      std::cerr << "mesh-bench: bad --target-url (want ws://host:port/path)\n";
      return 2;
    }
    if (target_port) opt.target_ep.port = static_cast<uint16_t>(target_port);
    opt.has_target = true;
  }
  opt.run_id = make_run_id(prefix);
  raise_fd_limit();

  std::vector<std::string> list;
  std::stringstream ss(scenarios);
  for (std::string s; std::getline(ss, s, ',');) {
    if (s == "all") {
      for (const char* x : {"relay", "fanout", "latency", "conns"}) list.emplace_back(x);
    } else if (s == "relay" || s == "fanout" || s == "latency" || s == "authload" || s == "conns" ||
               s == "storm" || s == "authflood" || s == "failover") {
      list.push_back(s);
    } else {
      std::cerr << "mesh-bench: unknown scenario '" << s << "'\n";
      return 2;
    }
  }

  for (const auto& s : list) {
    bool cross_ok = s == "relay" || s == "latency" || s == "failover";
    if (opt.has_target && !cross_ok) {
      std::cerr << "mesh-bench: --target-url applies to relay, latency and failover, not " << s
                << "\n";
      return 2;
    }
    if (s == "failover" && !opt.has_target) {
      std::cerr << "mesh-bench: failover needs --target-url or --target-port (the relay to kill)\n";
      return 2;
    }
  }

  std::vector<Result> results;
  for (const auto& s : list) {
    if (opt.verbose) std::fprintf(stderr, "mesh-bench: running %s\n", s.c_str());
    if (s == "conns") {
      results.push_back(run_conns(opt));
    } else if (s == "storm") {
      for (auto& r : run_storm(opt)) results.push_back(std::move(r));
    } else if (s == "authflood") {
      results.push_back(run_authflood(opt));
    } else if (s == "failover") {
      results.push_back(run_failover(opt));
    } else {
      results.push_back(run_traffic(opt, s));
    }
  }

  bool json_stdout = json_path == "-";
  print_table(results, json_stdout);
  if (!json_path.empty()) {
    std::string j = to_json(results, opt.run_id);
    if (json_stdout) {
      std::cout << j;
    } else {
      std::ofstream f(json_path);
      f << j;
      if (!f) {
        std::cerr << "mesh-bench: cannot write " << json_path << "\n";
        return 2;
      }
    }
  }
  bool ok = true;
  for (const auto& r : results) ok = ok && r.ok;
  return ok ? 0 : 1;
}
