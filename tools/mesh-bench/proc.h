#pragma once

#include <sys/types.h>
#include <cstdint>

namespace mesh::bench {

struct ProcSample {
  bool ok = false;
  uint64_t cpu_ticks = 0;  // utime + stime, in clock ticks
  uint64_t rss_kb = 0;     // VmRSS
  int64_t at_ns = 0;
};

// Reads /proc/<pid>/stat and /proc/<pid>/status.
ProcSample sample_proc(pid_t pid);
double ticks_to_seconds(uint64_t ticks);

// The process holding a TCP socket listening on the port (IPv4 or IPv6),
// found through /proc/net/tcp{,6} and /proc/*/fd; 0 if none is visible.
pid_t find_listening_pid(uint16_t port);

}  // namespace mesh::bench
