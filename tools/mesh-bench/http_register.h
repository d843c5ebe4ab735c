#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "net.h"

namespace mesh::bench {

struct MeshCred {
  std::string id;
  std::string secret;
  std::string name;
  std::string resume_token;  // last one the relay issued, if any
};

struct RegisterResult {
  uint64_t ok = 0;      // 200 or 201
  uint64_t failed = 0;  // anything else (first reason kept)
  std::string first_error;
  double seconds = 0;
};

// POST /register for every mesh, over `parallel` keep-alive connections
// (blocking sockets, one thread each; reconnects when the server closes).
RegisterResult register_meshes(const Endpoint& ep, const std::vector<MeshCred>& meshes,
                               int parallel);

// meshes named <prefix>-<role><i>, secrets of 32 characters.
std::vector<MeshCred> make_meshes(const std::string& prefix, const std::string& role, size_t n);

}  // namespace mesh::bench
