// Event counters kept by the loop thread (plain integers: only the loop
// writes or reads them), for logs and GET /metrics (admin.cpp renders them).
#pragma once

#include <array>
#include <cstdint>

#include "metrics.h"

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
  // Connections failed for breaking RFC 6455 framing (1002), on the relay's
  // own sockets; refused frames are counted by kind in framesInBy.
  std::uint64_t framingErrors = 0;
  std::uint64_t registrations = 0;

  // For GET /metrics (metrics.h names the labels).
  std::array<std::uint64_t, static_cast<std::size_t>(RefuseReason::Count)> refusedBy{};
  std::array<std::uint64_t, static_cast<std::size_t>(InFrameKind::Count)> framesInBy{};
  std::array<std::uint64_t, static_cast<std::size_t>(OutFrameKind::Count)> framesOutBy{};
  std::uint64_t registrationsUpdated = 0;
  std::uint64_t registrationConflicts = 0;
  std::uint64_t argon2Queued = 0;  // posted to the workers, answer not back yet
  // gateway_auth refused unchecked because a budget of failures was spent.
  std::uint64_t authRateLimitedAddress = 0;
  std::uint64_t authRateLimitedMesh = 0;
  // Secrets checked by the keyed verifier (microseconds) and by Argon2id.
  std::uint64_t secretChecksByVerifier = 0;
  std::uint64_t secretChecksByArgon2 = 0;
  std::uint64_t meshesDeleted = 0;
  std::uint64_t secretsRotated = 0;
  std::uint64_t tlsReloads = 0;
  std::uint64_t tlsReloadFailures = 0;
  // The last database write probe (/readyz, or the periodic one): 1 ok,
  // 0 failed, -1 none finished yet.
  int databaseWritable = -1;
  // From a node frame's arrival to the write that sent its last copy.
  Histogram deliverySeconds;

  // Authentications by the upgrade request's Authorization header, by result.
  std::uint64_t upgradeAuthOk = 0;
  std::uint64_t upgradeAuthInvalid = 0;
  std::uint64_t upgradeAuthRateLimited = 0;
  // The authorize hook: answers by outcome (failures by
  // AuthorizeAnswer::Failure), answers reused from the cache, call times.
  std::uint64_t authorizeAllowed = 0;
  std::uint64_t authorizeDenied = 0;
  std::uint64_t authorizeCached = 0;
  std::array<std::uint64_t, 5> authorizeFailedBy{};
  Histogram authorizeSeconds;
};

}  // namespace mesh::relay
