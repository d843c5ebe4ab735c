#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace mesh::bench {

struct Result {
  std::string scenario;
  std::string server;  // label of the relay under test
  std::vector<std::pair<std::string, int64_t>> params;
  bool ok = true;  // no protocol errors, nothing lost or duplicated
  uint64_t sent = 0;
  uint64_t received = 0;  // deliveries (fan-out counts each receiver)
  uint64_t lost = 0;
  uint64_t duplicates = 0;
  uint64_t errors = 0;  // error frames, failed auths, unexpected closes
  std::string first_error;
  double seconds = 0;        // measured interval
  double msgs_per_s = 0;     // deliveries per second in the measured interval
  bool has_latency = false;  // latencies in microseconds
  double p50 = 0, p90 = 0, p99 = 0, p999 = 0, max = 0;
  uint64_t latency_samples = 0;
  double server_cpu_s = -1;  // -1: server pid unknown
  double server_cpu_us_per_msg = -1;
  double bench_cpu_s = 0;
  double rss_before_kb = -1, rss_after_kb = -1, bytes_per_conn = -1;
  std::vector<std::pair<std::string, double>> extra;  // scenario specific
};

void print_table(const std::vector<Result>& results, bool to_stderr);
std::string to_json(const std::vector<Result>& results, const std::string& run_id);

}  // namespace mesh::bench
