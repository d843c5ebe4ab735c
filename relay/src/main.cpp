// mesh-relay: flags and environment in, a running relay out. Everything else
// lives in the library so tests can run the same server in-process.
#include <CLI/CLI.hpp>

#include <unistd.h>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <map>
#include <thread>

#include "legacy_import.h"
#include "mesh/relay/config.h"
#include "mesh/relay/server.h"

namespace {

using mesh::relay::Config;
using mesh::relay::LogLevel;
using mesh::relay::PayloadFilter;
using mesh::relay::RegistrationPolicy;

// Binds every Config field to a flag and its environment variable.
void bindOptions(CLI::App& app, Config& c) {
  app.option_defaults()->always_capture_default();
  app.add_option("--host", c.host, "Address to listen on")->envname("HOST");
  app.add_option("--port", c.port, "Port for HTTP and the /gateway WebSocket (0 = any free)")
      ->envname("PORT");
  app.add_option("--db", c.dbPath, "SQLite registry file (its folder is created)")
      ->envname("MESH_DB_PATH");
  app.add_option("--admin-token", c.adminToken,
                 "Bearer token for admin routes and --registration token (empty = none)")
      ->envname("ADMIN_TOKEN")
      ->capture_default_str();
  app.add_option("--registration", c.registration,
                 "Who may POST /register: open (anyone), token (admin token), closed")
      ->envname("MESH_REGISTRATION")
      ->transform(CLI::CheckedTransformer(
          std::map<std::string, RegistrationPolicy>{{"open", RegistrationPolicy::Open},
                                                    {"token", RegistrationPolicy::Token},
                                                    {"closed", RegistrationPolicy::Closed}},
          CLI::ignore_case));
  app.add_option("--payload-filter", c.payloadFilter,
                 "none: forward payloads untouched; mesh-chat: the original's chat whitelist")
      ->envname("MESH_PAYLOAD_FILTER")
      ->transform(CLI::CheckedTransformer(
          std::map<std::string, PayloadFilter>{{"none", PayloadFilter::None},
                                               {"mesh-chat", PayloadFilter::MeshChat}},
          CLI::ignore_case));
  app.add_option("--max-frame-bytes", c.limits.maxFrameBytes,
                 "Largest WebSocket message accepted; larger ones get frame_too_large")
      ->envname("MESH_MAX_FRAME_BYTES")
      ->check(CLI::Range(std::size_t{256}, std::size_t{16} << 20));
  app.add_option("--max-payload-depth", c.limits.maxPayloadDepth,
                 "Deepest nesting allowed inside a payload")
      ->envname("MESH_MAX_PAYLOAD_DEPTH")
      ->check(CLI::Range(1, 512));
  app.add_option("--max-http-body-bytes", c.maxHttpBodyBytes, "Largest HTTP request body (413)")
      ->envname("MESH_MAX_HTTP_BODY_BYTES");
  app.add_option("--auth-timeout", c.authTimeoutSeconds, "Seconds a connection has to authenticate")
      ->envname("MESH_AUTH_TIMEOUT")
      ->check(CLI::PositiveNumber);
  app.add_option("--handshake-timeout", c.handshakeTimeoutSeconds,
                 "Seconds a new connection has to send its HTTP request")
      ->envname("MESH_HANDSHAKE_TIMEOUT")
      ->check(CLI::PositiveNumber);
  app.add_option("--rate-limit", c.rateLimit,
                 "Relay+broadcast frames per second per mesh (0 = off)")
      ->envname("MESH_RATE_LIMIT")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--rate-burst", c.rateBurst, "Frames a mesh may send at once above its rate")
      ->envname("MESH_RATE_BURST")
      ->check(CLI::PositiveNumber);
  app.add_option("--control-rate", c.controlRate,
                 "Other frames (discover, updates) per second per connection (0 = off)")
      ->envname("MESH_CONTROL_RATE")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--control-burst", c.controlBurst, "Burst for --control-rate")
      ->envname("MESH_CONTROL_BURST")
      ->check(CLI::PositiveNumber);
  app.add_option("--max-send-queue-bytes", c.maxSendQueueBytes,
                 "Bytes queued to one connection before it is closed as a slow consumer (1013)")
      ->envname("MESH_MAX_SEND_QUEUE_BYTES");
  app.add_option("--max-unauthenticated-per-ip", c.maxUnauthenticatedPerIp,
                 "Connections from one address that have not authenticated yet")
      ->envname("MESH_MAX_UNAUTHENTICATED_PER_IP");
  app.add_option("--max-connections", c.maxConnections, "WebSocket connections in total")
      ->envname("MESH_MAX_CONNECTIONS");
  app.add_option("--register-burst", c.registerBurst,
                 "POST /register requests one address may make at once")
      ->envname("MESH_REGISTER_BURST")
      ->check(CLI::PositiveNumber);
  app.add_option("--register-rate", c.registerRatePerSecond,
                 "POST /register requests per second per address after the burst")
      ->envname("MESH_REGISTER_RATE")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--ping-interval", c.pingIntervalSeconds, "Seconds of silence before a ping")
      ->envname("MESH_PING_INTERVAL")
      ->check(CLI::Range(1u, 3600u));
  app.add_option("--ping-timeout", c.pingTimeoutSeconds,
                 "Seconds after the ping before a silent connection is dropped")
      ->envname("MESH_PING_TIMEOUT")
      ->check(CLI::Range(1u, 3600u));
  app.add_option("--auth-failure-burst", c.authFailureBurst,
                 "Failed authentications one address may make before it is refused")
      ->envname("MESH_AUTH_FAILURE_BURST")
      ->check(CLI::PositiveNumber);
  app.add_option("--auth-failure-rate", c.authFailureRate,
                 "Failed authentications per second per address after the burst (0 = no limit)")
      ->envname("MESH_AUTH_FAILURE_RATE")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--auth-failure-mesh-burst", c.authFailureMeshBurst,
                 "Failed authentications for one meshId before addresses that failed are refused")
      ->envname("MESH_AUTH_FAILURE_MESH_BURST")
      ->check(CLI::PositiveNumber);
  app.add_option("--auth-failure-mesh-rate", c.authFailureMeshRate,
                 "Failed authentications per second per meshId after the burst (0 = no limit)")
      ->envname("MESH_AUTH_FAILURE_MESH_RATE")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--verifier-key", c.verifierKeyPath,
                 "File with the key of the fast secret verifiers, created (0600) if missing "
                 "(default: <db>.verifier-key)")
      ->envname("MESH_VERIFIER_KEY_FILE")
      ->capture_default_str();
  app.add_option("--workers", c.workerThreads, "Threads for Argon2id and database writes")
      ->envname("MESH_WORKERS")
      ->check(CLI::Range(1u, 64u));
  app.add_option("--argon2-ops", c.argon2OpsLimit, "Argon2id passes for new secret hashes")
      ->envname("MESH_ARGON2_OPS")
      ->check(CLI::Range(1ull, 16ull));
  app.add_option("--argon2-mem", c.argon2MemLimit, "Argon2id memory in bytes for new hashes")
      ->envname("MESH_ARGON2_MEM")
      ->check(CLI::Range(std::size_t{8192}, std::size_t{1} << 31));
  app.add_option("--resume-ttl", c.resumeTokenTtlSeconds, "Lifetime of a resume token in seconds")
      ->envname("MESH_RESUME_TTL")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{365} * 24 * 3600));
  app.add_option("--drain-timeout", c.drainTimeoutSeconds,
                 "Seconds queued frames may take to drain on shutdown")
      ->envname("MESH_DRAIN_TIMEOUT")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--tls-cert", c.tlsCertPath,
                 "PEM certificate chain: serve wss:// and https:// (re-read on SIGHUP)")
      ->envname("MESH_TLS_CERT");
  app.add_option("--tls-key", c.tlsKeyPath, "PEM private key for --tls-cert")
      ->envname("MESH_TLS_KEY");
  app.add_option("--trusted-proxies", c.trustedProxies,
                 "CIDRs whose X-Forwarded-For / Fly-Client-IP headers are believed")
      ->envname("MESH_TRUSTED_PROXIES")
      ->delimiter(',');
  app.add_option("--allow-ips", c.allowIps, "CIDRs allowed to connect (empty = everyone)")
      ->envname("MESH_ALLOW_IPS")
      ->delimiter(',');
  app.add_option("--deny-ips", c.denyIps, "CIDRs refused (403 / close 1008); wins over allow")
      ->envname("MESH_DENY_IPS")
      ->delimiter(',');
  app.add_option("--jwt-secret", c.jwtSecret,
                 "HS256 key for signed tokens in gateway_auth (at least 32 bytes)")
      ->envname("MESH_JWT_SECRET")
      ->capture_default_str();
  app.add_option("--jwt-jwks-file", c.jwtJwksFile,
                 "JWKS file of token keys (RS256, ES256, EdDSA, HS256), re-read on SIGHUP")
      ->envname("MESH_JWT_JWKS_FILE");
  app.add_option("--jwt-jwks-url", c.jwtJwksUrl,
                 "https:// URL of a JWKS, cached and fetched again on an unknown kid")
      ->envname("MESH_JWT_JWKS_URL");
  app.add_option("--jwt-jwks-ca", c.jwtJwksCa,
                 "PEM CA file the --jwt-jwks-url server must chain to (default: system store)")
      ->envname("MESH_JWT_JWKS_CA");
  app.add_option("--jwt-jwks-cache", c.jwtJwksCacheSeconds,
                 "Seconds a fetched JWKS is kept when the server sends no max-age")
      ->envname("MESH_JWT_JWKS_CACHE")
      ->check(CLI::Range(std::int64_t{30}, std::int64_t{86400}));
  app.add_option("--jwt-jwks-refetch", c.jwtJwksRefetchSeconds,
                 "Seconds between fetches caused by unknown kids, at least")
      ->envname("MESH_JWT_JWKS_REFETCH")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{3600}));
  app.add_option("--jwt-issuer", c.jwtIssuer, "Required iss claim of tokens (empty = any)")
      ->envname("MESH_JWT_ISSUER");
  app.add_option("--jwt-audience", c.jwtAudience,
                 "Required aud of tokens: the string or one of the array (empty = any)")
      ->envname("MESH_JWT_AUDIENCE");
  app.add_option("--jwt-mesh-claim", c.jwtMeshClaim, "Claim of a token that names the meshId")
      ->envname("MESH_JWT_MESH_CLAIM");
  app.add_option("--jwt-leeway", c.jwtLeewaySeconds, "Seconds of clock skew allowed on exp and nbf")
      ->envname("MESH_JWT_LEEWAY")
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{3600}));
  app.add_flag("--jwt-auto-register", c.jwtAutoRegister,
               "A valid token for an unregistered meshId registers it (no secret stored)")
      ->envname("MESH_JWT_AUTO_REGISTER");
  app.add_option("--metrics-token", c.metricsToken,
                 "Bearer token for GET /metrics (empty = metrics are public)")
      ->envname("MESH_METRICS_TOKEN")
      ->capture_default_str();
  app.add_option("--authorize-url", c.authorizeUrl,
                 "Ask this URL (POST, JSON) whether to accept each mesh (empty = no hook)")
      ->envname("MESH_AUTHORIZE_URL")
      ->check(CLI::Validator(
          [](const std::string& url) -> std::string {
            if (url.empty() || url.rfind("http://", 0) == 0 || url.rfind("https://", 0) == 0) {
              return {};
            }
            return "the authorize URL must start with http:// or https://";
          },
          "URL"));
  app.add_option("--authorize-token", c.authorizeToken,
                 "Sent to the authorize hook as Authorization: Bearer")
      ->envname("MESH_AUTHORIZE_TOKEN");
  app.add_option("--authorize-timeout", c.authorizeTimeoutSeconds,
                 "Seconds the authorize hook has to answer before the mesh is refused")
      ->envname("MESH_AUTHORIZE_TIMEOUT")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--authorize-cache-ttl", c.authorizeCacheTtlSeconds,
                 "Seconds a positive answer of the hook is reused, unless it names its own ttl "
                 "(0 = not cached)")
      ->envname("MESH_AUTHORIZE_CACHE_TTL")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--recorder-frames", c.recorderFrames,
                 "Frames the flight recorder keeps per mesh (0 = off)")
      ->envname("MESH_RECORDER_FRAMES")
      ->check(CLI::Range(std::size_t{0}, std::size_t{65536}));
  app.add_option("--nats", c.natsUrls,
                 "Cluster mode: NATS server URLs, comma-separated (empty = a single relay)")
      ->envname("MESH_NATS_URLS")
      ->delimiter(',');
  app.add_option("--nats-creds", c.natsCredsPath, "NATS credentials file (.creds)")
      ->envname("MESH_NATS_CREDS");
  app.add_option("--nats-ca", c.natsCaPath, "PEM CA of the NATS servers' certificates")
      ->envname("MESH_NATS_CA");
  app.add_option("--relay-id", c.relayId,
                 "This relay's name in the cluster (default: hostname:port)")
      ->envname("MESH_RELAY_ID");
  app.add_option("--log-level", c.logLevel, "error, warn, info or debug")
      ->envname("LOG_LEVEL")
      ->transform(
          CLI::CheckedTransformer(std::map<std::string, LogLevel>{{"error", LogLevel::Error},
                                                                  {"warn", LogLevel::Warn},
                                                                  {"info", LogLevel::Info},
                                                                  {"debug", LogLevel::Debug}},
                                  CLI::ignore_case));
}

// mesh-relay import-legacy FILE: adds the original gateway's meshes to the
// registry at --db and exits; run while the relay is stopped.
int importLegacy(const Config& config, const std::string& file) {
  try {
    // The relay's own verifier key: another key would drop every verifier.
    mesh::relay::Registry registry(
        config.dbPath, mesh::relay::Argon2Params{config.argon2OpsLimit, config.argon2MemLimit},
        config.verifierKeyPath);
    const auto report = mesh::relay::importLegacyRegistry(registry, file);
    for (const std::string& note : report.notes) std::cerr << "mesh-relay: " << note << "\n";
    std::cout << "imported " << report.imported << ", skipped " << report.skipped
              << " (already registered), refused " << report.refused << " into " << config.dbPath
              << std::endl;
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "mesh-relay: import-legacy: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  Config config;
  CLI::App app{"mesh-relay: the relay that federates Mesh instances"};
  bindOptions(app, config);
  std::string legacyFile;
  auto* importCommand = app.add_subcommand(
      "import-legacy",
      "Add the meshes of the original gateway's registry.json to --db, then exit (relay stopped)");
  importCommand->add_option("file", legacyFile, "The original gateway's registry.json")->required();
  importCommand->fallthrough();  // --db and the rest may follow the subcommand
  CLI11_PARSE(app, argc, argv);
  if (importCommand->parsed()) return importLegacy(config, legacyFile);

  if (config.tlsCertPath.empty() != config.tlsKeyPath.empty()) {
    std::cerr << "mesh-relay: --tls-cert and --tls-key go together\n";
    return 2;
  }
  if (config.registration == RegistrationPolicy::Token && config.adminToken.empty()) {
    std::cerr << "mesh-relay: --registration token needs --admin-token (ADMIN_TOKEN)\n";
    return 2;
  }

  // Signals are taken by one thread with sigwait, so the handler logic runs
  // as ordinary code: the first SIGTERM/SIGINT asks for a graceful stop, a
  // second exits at once; SIGHUP re-reads the TLS certificate and the JWKS
  // file.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  try {
    mesh::relay::Server server(config);
    std::thread signalThread([&server, signals] {
      bool stopping = false;
      for (;;) {
        int sig = 0;
        if (sigwait(&signals, &sig) != 0) continue;
        if (sig == SIGHUP) {
          server.reloadTls();
          server.reloadJwks();
        } else if (!stopping) {
          stopping = true;
          server.requestStop();
        } else {
          std::fputs("mesh-relay: second signal, exiting now\n", stderr);
          _exit(1);
        }
      }
    });
    signalThread.detach();
    return server.run();
  } catch (const std::exception& e) {
    std::cerr << "mesh-relay: " << e.what() << "\n";
    return 1;
  }
}
