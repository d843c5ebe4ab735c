// Connection options for the NATS cluster (cluster mode), built from the
// relay's Config in one place so that every connection the relay opens to
// NATS (routing, registry) behaves the same way.
#pragma once

#include <memory>
#include <string>

#include "mesh/relay/config.h"

struct __natsOptions;
struct __natsConnection;

namespace mesh::relay {

struct NatsOptionsDeleter {
  void operator()(__natsOptions* opts) const;
};
using NatsOptionsPtr = std::unique_ptr<__natsOptions, NatsOptionsDeleter>;

struct NatsConnectionDeleter {
  void operator()(__natsConnection* nc) const;
};
using NatsConnectionPtr = std::unique_ptr<__natsConnection, NatsConnectionDeleter>;

// Options for one connection named `name` (shown by the NATS server's
// monitoring): every URL of config.natsUrls (user:pass in a URL's userinfo
// is used by the client), --nats-creds (a user JWT with its NKey seed),
// --nats-ca for tls://
// servers. Set on every connection:
// - SendAsap: a publish is written at once; without it libnats's flusher
//   adds about 2 ms to each round trip.
// - the global delivery pool: libnats otherwise starts a thread per
//   subscription. Callbacks still run on libnats's threads: hand what
//   arrives to the loop (Server::Impl::post).
// - reconnect forever, with a short wait and jitter, and publishes buffered
//   while reconnecting (8 MiB) rather than failed.
// - RetryOnFailedConnect: the relay starts while NATS is unreachable and
//   serves its own meshes until the cluster is back.
// Throws std::runtime_error naming the setting that NATS refused.
NatsOptionsPtr makeNatsOptions(const Config& config, const std::string& name);

// "nats://user:secret@host:4222" -> "nats://user:***@host:4222", for logs.
std::string redactNatsUrl(const std::string& url);

}  // namespace mesh::relay
