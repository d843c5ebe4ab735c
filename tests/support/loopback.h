// A listening TCP socket on 127.0.0.1 with a port the kernel picks, for the
// small servers tests start in their own process (hook, HTTPS, stub gateway).
#pragma once

#include <cstdint>

namespace mesh::test {

// Returns the listening socket (close-on-exec) and sets `port`; throws
// std::runtime_error when the socket cannot listen.
int listenOnLoopback(std::uint16_t& port, int backlog = 64);

}  // namespace mesh::test
