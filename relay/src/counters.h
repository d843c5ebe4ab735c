// Event counters kept by the loop thread (plain integers: only the loop
// writes or reads them), for logs now and a metrics endpoint later.
#pragma once

#include <cstdint>

namespace mesh::relay {

struct Counters {
  std::uint64_t connectionsAccepted = 0;
  std::uint64_t connectionsRefused = 0;
  std::uint64_t authOk = 0;
  std::uint64_t authFailed = 0;
  std::uint64_t authTimeouts = 0;
  std::uint64_t takeovers = 0;
  std::uint64_t framesIn = 0;
  std::uint64_t framesOut = 0;
  std::uint64_t bytesIn = 0;
  std::uint64_t bytesOut = 0;
  std::uint64_t relaysDelivered = 0;
  std::uint64_t relaysOffline = 0;
  std::uint64_t broadcastRecipients = 0;
  std::uint64_t rateLimited = 0;
  std::uint64_t slowConsumers = 0;
  std::uint64_t protocolErrors = 0;
  std::uint64_t registrations = 0;
};

}  // namespace mesh::relay
