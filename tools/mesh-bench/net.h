#pragma once

#include <cstdint>
#include <string>

namespace mesh::bench {

struct Endpoint {
  std::string host = "127.0.0.1";
  uint16_t port = 4000;
  std::string path = "/gateway";
};

// Parses ws://host:port/path. Returns false on anything else.
bool parse_ws_url(const std::string& url, Endpoint& out);

// Non-blocking TCP socket connecting to ep, optionally bound to the source
// address 127.0.0.<src_index + 1> when src_index >= 0. Returns the fd (connect may be in
// progress) or -1 with errno set.
int start_connect(const Endpoint& ep, int src_index);

// Blocking connect with a timeout in milliseconds; -1 on failure.
int blocking_connect(const Endpoint& ep, int timeout_ms);

// True if something accepts TCP connections on ep.
bool port_is_open(const Endpoint& ep);

}  // namespace mesh::bench
