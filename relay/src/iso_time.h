// Times as the relay writes them everywhere (frames, admin API, recorder,
// log lines): ISO 8601 in UTC with milliseconds, "2026-12-06T05:20:02.123Z".
#pragma once

#include <cstdint>
#include <string>

namespace mesh::relay {

// `unixMs`: milliseconds since the Unix epoch.
[[nodiscard]] std::string isoTimeMs(std::int64_t unixMs);

}  // namespace mesh::relay
