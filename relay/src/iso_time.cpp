#include "iso_time.h"

#include <cstdio>
#include <ctime>

namespace mesh::relay {

std::string isoTimeMs(std::int64_t unixMs) {
  const auto secs = static_cast<std::time_t>(unixMs / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof out, "%s.%03dZ", date, static_cast<int>(unixMs % 1000));
  return out;
}

}  // namespace mesh::relay
