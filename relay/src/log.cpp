#include "log.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

#include "iso_time.h"

namespace mesh::relay::log {
namespace {

std::atomic<int> gLevel{static_cast<int>(LogLevel::Info)};
std::mutex gWriteMutex;

const char* levelName(LogLevel level) {
  switch (level) {
    case LogLevel::Error:
      return "error";
    case LogLevel::Warn:
      return "warn";
    case LogLevel::Info:
      return "info";
    case LogLevel::Debug:
      return "debug";
  }
  return "?";
}

}  // namespace

void setLevel(LogLevel level) {
  gLevel.store(static_cast<int>(level));
}

bool enabled(LogLevel level) {
  return static_cast<int>(level) <= gLevel.load();
}

void write(LogLevel level, const std::string& line) {
  using namespace std::chrono;
  const std::string stamp =
      isoTimeMs(duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count());
  std::lock_guard lock(gWriteMutex);
  std::fprintf(stderr, "%s %-5s %s\n", stamp.c_str(), levelName(level), line.c_str());
}

}  // namespace mesh::relay::log
