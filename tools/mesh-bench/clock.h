#pragma once

#include <cstdint>

namespace mesh::bench {

// Monotonic nanoseconds (CLOCK_MONOTONIC). All timestamps embedded in payloads
// use this clock; sender and receiver live in the same process.
int64_t now_ns();

}  // namespace mesh::bench
