// The relay's HTTP routes, as blocking calls: for registration, health
// checks and the admin API, from nodes and tools. http:// and https:// (system CA store, plus
// the PEM bundle `caFile` when not empty, as Options::caFile).
// Callable from any thread; each call opens and closes its own connection.
//
// `proxy` and `noProxy` work as Options::proxy and Options::noProxy: empty
// reads HTTPS_PROXY / HTTP_PROXY / NO_PROXY from the environment, "none"
// connects directly. Both http:// and https:// go through a CONNECT tunnel
// (TLS inside it); a proxy that refuses (407: its credentials) is a
// ConnectionFailed error that names the proxy without its credentials.
#pragma once

#include <chrono>
#include <string>

#include "mesh/client/status.h"

namespace mesh::client {

struct RegisterOutcome {
  bool created = false;  // 201: new mesh; 200: same secret, name updated
};

// POST {base}/register {"meshId","secret","name"}.
// 409 -> RegistrationConflict, 400 -> InvalidArgument (relay's reason),
// unreachable -> ConnectionFailed, anything else -> HttpError.
[[nodiscard]] Result<RegisterOutcome> registerMesh(
    const std::string& httpBaseUrl, const std::string& meshId, const std::string& secret,
    const std::string& name, std::chrono::milliseconds timeout = std::chrono::seconds(10),
    const std::string& caFile = {}, const std::string& proxy = {}, const std::string& noProxy = {});

struct HealthReport {
  int connected = 0;  // authenticated meshes online
  std::string body;   // the answer as the relay sent it
};

// GET {base}/health.
[[nodiscard]] Result<HealthReport> checkHealth(
    const std::string& httpBaseUrl, std::chrono::milliseconds timeout = std::chrono::seconds(10),
    const std::string& caFile = {}, const std::string& proxy = {}, const std::string& noProxy = {});

struct HttpAnswer {
  int status = 0;
  std::string body;  // a chunked body comes back decoded
};

// One request to any of the relay's HTTP routes, its admin API for one:
// `url` is the full request URL; `bearer`, when not empty, is sent as
// `Authorization: Bearer <bearer>` and never appears in an error message.
// Every status is an answer; judging it is the caller's business. Errors:
// InvalidArgument (not an http:// or https:// URL), ConnectionFailed (no
// connection, TLS failure, no complete answer within `timeout`),
// ProtocolError (an answer that is not HTTP/1.x).
[[nodiscard]] Result<HttpAnswer> httpRequest(
    const std::string& method, const std::string& url, const std::string& body = {},
    const std::string& bearer = {}, std::chrono::milliseconds timeout = std::chrono::seconds(10),
    const std::string& caFile = {}, const std::string& proxy = {}, const std::string& noProxy = {});

// A strong random secret for a new mesh: 32 random bytes, base64url.
[[nodiscard]] std::string generateSecret();

}  // namespace mesh::client
