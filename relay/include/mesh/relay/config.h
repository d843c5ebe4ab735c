// Everything an operator can set, with the reason for each default. main.cpp
// binds every field to a flag and an environment variable; tests build a
// Config in code. Passed by const reference; there are no globals.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "mesh/proto/limits.h"

namespace mesh::relay {

enum class RegistrationPolicy { Open, Token, Closed };
enum class PayloadFilter { None, MeshChat };
enum class LogLevel { Error, Warn, Info, Debug };

struct Config {
  // Listen on every interface, port 4000: what the original relay did.
  std::string host = "0.0.0.0";
  std::uint16_t port = 4000;  // 0 picks a free port (tests)
  // The registry file; its folder is created on first start.
  std::string dbPath = "./data/mesh.db";

  // Bearer token for admin-only routes and --registration token. Empty means
  // no admin access at all.
  std::string adminToken;
  // open: anyone may register, as the original; token: POST /register needs
  // the admin token; closed: no self-service registration.
  RegistrationPolicy registration = RegistrationPolicy::Open;
  // None forwards payloads untouched; MeshChat applies the original's
  // whitelist of chat fields.
  PayloadFilter payloadFilter = PayloadFilter::None;

  proto::Limits limits;
  // POST bodies are three short strings; 16 KiB is generous.
  std::size_t maxHttpBodyBytes = 16 * 1024;
  // Time a fresh connection has to authenticate (the original's 10 s).
  double authTimeoutSeconds = 10;
  // Time a new TCP connection has to send its HTTP request (the upgrade).
  double handshakeTimeoutSeconds = 10;

  // Relay + broadcast frames per second per mesh (0 = off), and the burst a
  // mesh may spend at once. Chat is bursty (a reconnecting node flushes its
  // outbox) but a human-driven mesh rarely sustains 50 messages a second.
  double rateLimit = 50;
  double rateBurst = 200;
  // Other frames (discover, updates) per connection: they cost more to
  // answer than a relay, and a node needs few of them.
  double controlRate = 20;
  double controlBurst = 60;

  // Bytes waiting to go out to one connection before it counts as a slow
  // consumer and is closed (1013): a few seconds of heavy chat.
  std::size_t maxSendQueueBytes = 4 * 1024 * 1024;
  // Frames a connection may send while its auth is being checked; they are
  // answered once auth resolves.
  std::size_t maxPendingFramesDuringAuth = 64;
  // Connections from one address that have not authenticated yet.
  unsigned maxUnauthenticatedPerIp = 64;
  // All WebSocket connections; keep below the process's open-file limit.
  unsigned maxConnections = 16000;
  // POST /register per client address: a burst big enough for an operator
  // scripting a few hundred registrations, then a steady trickle.
  double registerBurst = 1000;
  double registerRatePerSecond = 5;

  // Ping an idle connection after this long, drop it if nothing arrives
  // within the timeout after that.
  unsigned pingIntervalSeconds = 30;
  unsigned pingTimeoutSeconds = 60;

  // Failed authentications (wrong secret or token, unknown mesh) per client
  // address: a burst, then a trickle. Once spent, gateway_auth from that
  // address is refused with rate_limited before any check. A node that
  // mistypes its secret a few times is not locked out; a guesser gets a few
  // tries a minute instead of a dozen a second.
  double authFailureBurst = 10;
  double authFailureRate = 0.2;  // per second (0 = no per-address budget)
  // Failed authentications per meshId, from all addresses together. Once
  // spent, only addresses without a recent failure of their own are still
  // checked for that mesh: the real node gets in, an address that has
  // already guessed wrong waits (docs/protocol.md, Rate limiting).
  double authFailureMeshBurst = 20;
  double authFailureMeshRate = 0.1;  // per second (0 = no per-mesh budget)
  // The key of the fast secret verifiers (64 hex digits in a file, created
  // with mode 0600 if missing). Empty: "<dbPath>.verifier-key". Keep it apart
  // from database copies: with both, secrets can be guessed at BLAKE2b speed.
  std::string verifierKeyPath;

  // Worker threads for Argon2id and database writes. Argon2 takes a core for
  // tens of milliseconds; leave the other core to the event loop.
  unsigned workerThreads = 1;
  // Argon2id cost for new hashes (libsodium's "interactive" profile).
  unsigned long long argon2OpsLimit = 2;
  std::size_t argon2MemLimit = 64u * 1024u * 1024u;
  // Lifetime of a resume token.
  std::int64_t resumeTokenTtlSeconds = 7 * 24 * 3600;

  // PEM certificate chain and key: when both are set the port speaks only
  // TLS (wss:// and https://). Re-read on SIGHUP so a renewed certificate
  // needs no restart. Empty: plain TCP, for relays behind a TLS proxy.
  std::string tlsCertPath;
  std::string tlsKeyPath;

  // CIDR lists (IPv4 and IPv6). Peers in trustedProxies may tell us the
  // client's address in X-Forwarded-For or Fly-Client-IP; nobody else can.
  std::vector<std::string> trustedProxies;
  // When allowIps is not empty only those clients are served; denyIps wins
  // over it. Refused: 403 for HTTP, close 1008 for a WebSocket.
  std::vector<std::string> allowIps;
  std::vector<std::string> denyIps;

  // Signed tokens (JWT) as a mesh's proof of identity, beside secrets
  // (docs/protocol.md, "Tokens"). Any one key source turns them on.
  // HS256 key shared with the identity provider: at least 32 bytes.
  std::string jwtSecret;
  // A JWKS document on disk (RS256, ES256, EdDSA, HS256 keys), re-read on
  // SIGHUP.
  std::string jwtJwksFile;
  // A JWKS URL (https:// only), fetched off the loop, cached for the
  // response's Cache-Control max-age or jwtJwksCacheSeconds, fetched again
  // on an unknown kid at most once per 30 s.
  std::string jwtJwksUrl;
  // PEM CA bundle that the JWKS server's certificate must chain to; empty:
  // the system's trust store.
  std::string jwtJwksCa;
  // How long a fetched JWKS is kept when the server names no max-age.
  std::int64_t jwtJwksCacheSeconds = 300;
  // Unknown kids cause at most one fetch per this many seconds, so made-up
  // kids cannot turn the relay into a load on the identity provider.
  std::int64_t jwtJwksRefetchSeconds = 30;
  // Required iss and (one of) aud; empty: not checked.
  std::string jwtIssuer;
  std::string jwtAudience;
  // The claim that names the mesh.
  std::string jwtMeshClaim = "sub";
  // Clock skew allowed on exp and nbf: a minute covers an unsynchronised
  // clock without keeping a revoked token alive for long.
  std::int64_t jwtLeewaySeconds = 60;
  // A token for a meshId that is not registered creates the mesh (named by
  // the token's "name" claim, no secret stored) instead of being refused.
  bool jwtAutoRegister = false;

  // Bearer token for GET /metrics; empty: metrics are public, as is usual
  // on a private network or behind a proxy that hides the path.
  std::string metricsToken;

  // The authorize hook: when set, every mesh whose credentials are right is
  // accepted only if a POST to this URL answers {"allow": true}
  // (docs/protocol.md, Authorize hook). authorizeToken, when set, goes with
  // it as Authorization: Bearer. The hook fails closed: no answer within the
  // timeout refuses the mesh. Positive answers are kept for the cache TTL
  // (the answer's own "ttl" wins; 0 keeps none).
  std::string authorizeUrl;
  std::string authorizeToken;
  double authorizeTimeoutSeconds = 2;
  double authorizeCacheTtlSeconds = 60;

  // Frames kept per mesh by the flight recorder (GET /meshes/{id}/recent);
  // 0 turns it off. 256 covers a few minutes of a busy mesh in 22 KiB.
  std::size_t recorderFrames = 256;

  // Cluster mode (docs/cluster.md): NATS servers of one cluster, each
  // "nats://[user:pass@]host:port" or tls://. Empty: a single relay, nothing
  // else changes. Several relays on one NATS cluster behave as one relay.
  std::vector<std::string> natsUrls;
  // A NATS credentials file (.creds: a user JWT and its NKey seed, as nsc
  // writes it); user and password go in the URL instead.
  std::string natsCredsPath;
  // PEM CA that signs the NATS servers' certificates (tls:// URLs).
  std::string natsCaPath;
  // This relay's name in the cluster, unique per relay. Empty: hostname and
  // port ("host:4000"), filled in by the server at start.
  std::string relayId;

  // On SIGTERM: how long queued frames may take to drain before exit.
  double drainTimeoutSeconds = 5;
  LogLevel logLevel = LogLevel::Info;
};

}  // namespace mesh::relay
