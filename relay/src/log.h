// One line per meaningful event, to stderr, with a UTC timestamp and level.
// Thread-safe. Callers never pass secrets or tokens.
#pragma once

#include <sstream>
#include <string>

#include "mesh/relay/config.h"

namespace mesh::relay::log {

void setLevel(LogLevel level);
[[nodiscard]] bool enabled(LogLevel level);
void write(LogLevel level, const std::string& line);

// Usage: LOG_INFO("conn=" << id << " auth ok meshId=" << meshId);
#define MESH_LOG(level, expr)                               \
  do {                                                      \
    if (::mesh::relay::log::enabled(level)) {               \
      std::ostringstream mesh_log_os_;                      \
      mesh_log_os_ << expr;                                 \
      ::mesh::relay::log::write(level, mesh_log_os_.str()); \
    }                                                       \
  } while (0)
#define LOG_ERROR(expr) MESH_LOG(::mesh::relay::LogLevel::Error, expr)
#define LOG_WARN(expr) MESH_LOG(::mesh::relay::LogLevel::Warn, expr)
#define LOG_INFO(expr) MESH_LOG(::mesh::relay::LogLevel::Info, expr)
#define LOG_DEBUG(expr) MESH_LOG(::mesh::relay::LogLevel::Debug, expr)

}  // namespace mesh::relay::log
