// HTTP routes on the relay's port: the original's /register and /health,
// plus probes. Runs on the loop thread; blocking work goes to the workers and
// the answer comes back by exchange id.
#include <sodium.h>

#include <strings.h>
#include <algorithm>
#include <cstdlib>

#include "cluster_registry.h"
#include "http_head.h"
#include "log.h"
#include "server_impl.h"
#include "sqlite_util.h"

namespace mesh::relay {
namespace {

std::string errorBody(std::string_view message) {
  std::string out = "{\"error\":";
  proto::appendJsonString(out, message);
  out += '}';
  return out;
}

std::string header(lws* wsi, lws_token_indexes token) {
  const int len = lws_hdr_total_length(wsi, token);
  if (len <= 0) return {};
  std::string value(static_cast<std::size_t>(len) + 1, '\0');
  if (lws_hdr_copy(wsi, value.data(), len + 1, token) < 0) return {};
  value.resize(static_cast<std::size_t>(len));
  return value;
}

std::string methodOf(lws* wsi) {
  if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0) return "GET";
  if (lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0) return "POST";
  if (lws_hdr_total_length(wsi, WSI_TOKEN_DELETE_URI) > 0) return "DELETE";
  if (lws_hdr_total_length(wsi, WSI_TOKEN_PUT_URI) > 0) return "PUT";
  if (lws_hdr_total_length(wsi, WSI_TOKEN_PATCH_URI) > 0) return "PATCH";
  if (lws_hdr_total_length(wsi, WSI_TOKEN_HEAD_URI) > 0) return "HEAD";
  if (lws_hdr_total_length(wsi, WSI_TOKEN_OPTIONS_URI) > 0) return "OPTIONS";
  return "?";
}

// lws keeps "Content-Length : 5" as an unknown field named
// "content-length :". The usual spellings of that are looked for (the plain
// listener refuses every one); the rest cannot frame a second request on
// this connection either, since it closes after one.
bool hasSpacedLengthField(lws* wsi) {
  if (lws_get_network_wsi(wsi) != wsi) return false;  // HTTP/2: names are checked by lws
  static constexpr std::string_view kNames[] = {
      "content-length :", "content-length\t:", "transfer-encoding :", "transfer-encoding\t:"};
  return std::any_of(std::begin(kNames), std::end(kNames), [&](std::string_view name) {
    return lws_hdr_custom_length(wsi, name.data(), static_cast<int>(name.size())) >= 0;
  });
}

}  // namespace

bool bearerMatches(std::string_view authorization, std::string_view expected) {
  constexpr std::string_view kPrefix = "Bearer ";
  if (expected.empty() || authorization.substr(0, kPrefix.size()) != kPrefix) return false;
  const std::string_view given = authorization.substr(kPrefix.size());
  // Compare fixed-size digests so neither length nor content leaks by timing.
  unsigned char a[crypto_generichash_BYTES];
  unsigned char b[crypto_generichash_BYTES];
  crypto_generichash(a, sizeof a, reinterpret_cast<const unsigned char*>(given.data()),
                     given.size(), nullptr, 0);
  crypto_generichash(b, sizeof b, reinterpret_cast<const unsigned char*>(expected.data()),
                     expected.size(), nullptr, 0);
  return sodium_memcmp(a, b, sizeof a) == 0;
}

int Server::Impl::onHttp(lws* wsi, PerSession* pss, const char* uri) {
  releaseHandshake(lws_get_network_wsi(wsi));  // its head is read
  if (!pss) return -1;
  onHttpClosed(pss);  // a previous request on this keep-alive connection
  auto owned = std::make_unique<HttpExchange>();
  HttpExchange* ex = owned.get();
  ex->id = nextId++;
  ex->wsi = wsi;
  ex->path = uri ? uri : "";
  ex->method = methodOf(wsi);
  ex->peer = clientAddress(wsi);
  ex->authorization = header(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
  exchanges.emplace(ex->id, std::move(owned));
  pss->http = ex;
  pss->session = nullptr;
  // One request per HTTP/1 connection: lws's parser is lenient (a bare LF
  // ends a line, a name with a space before its colon is some other field),
  // so what follows a request on the connection may not be what a proxy in
  // front of the relay took it for. It is never read as a request.
  // (An HTTP/2 stream is framed by its connection and ends by itself.)
  ex->closeAfter = lws_get_network_wsi(wsi) == wsi;

  // RFC 9112 6.3: a body whose length is in doubt is refused, and with it
  // the connection (the plain listener has refused these already).
  const std::string lengthText = header(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH);
  const auto length =
      lengthText.empty() ? std::optional<std::uint64_t>(0) : parseContentLength(lengthText);
  const char* malformed = nullptr;
  if (!length) {
    malformed = "Invalid Content-Length";
  } else if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0) {
    malformed = "Transfer-Encoding is not supported";
  } else if (hasSpacedLengthField(wsi)) {
    malformed = "Whitespace before a colon";
  }
  if (malformed) {
    LOG_INFO("refused " << ex->method << " " << ex->path << " from " << ex->peer << ": "
                        << malformed);
    ex->closeAfter = true;
    respond(*ex, 400, errorBody(malformed));
    return 0;
  }
  if (ex->path.size() > kMaxRequestLineBytes) {
    ex->closeAfter = true;
    respond(*ex, 414, errorBody("URI too long"));
    return 0;
  }

  if (!netPolicy.admits(ex->peer)) {
    refuse(RefuseReason::Denied);
    LOG_INFO("refused " << ex->method << " " << ex->path << " from " << ex->peer
                        << ": address not allowed");
    ex->closeAfter = true;
    respond(*ex, 403, errorBody("Forbidden"));
    return 0;
  }

  if (ex->method == "POST") {
    if (*length > config.maxHttpBodyBytes) {
      ex->closeAfter = true;  // the body stays unread
      respond(*ex, 413, errorBody("Request body too large"));
      return 0;
    }
    if (*length > 0) return 0;  // the body follows in HTTP_BODY callbacks
  }
  route(*ex);
  return 0;
}

int Server::Impl::onHttpBody(PerSession* pss, const char* data, std::size_t len) {
  if (!pss || !pss->http) return -1;
  HttpExchange& ex = *pss->http;
  if (ex.bodyTooLarge) return 0;
  if (ex.body.size() + len > config.maxHttpBodyBytes) {
    ex.bodyTooLarge = true;
    ex.body.clear();
    return 0;
  }
  ex.body.append(data, len);
  return 0;
}

int Server::Impl::onHttpBodyComplete(PerSession* pss) {
  if (!pss || !pss->http) return -1;
  HttpExchange& ex = *pss->http;
  if (ex.status != 0 || ex.routed) return 0;  // answered or routed already (403, 413)
  if (ex.bodyTooLarge) {
    ex.closeAfter = true;
    respond(ex, 413, errorBody("Request body too large"));
    return 0;
  }
  route(ex);
  return 0;
}

int Server::Impl::onHttpUpgrade(lws* wsi, const char* upgrade) {
  // Its head is read: from here a WebSocket counts as its session does.
  releaseHandshake(wsi);
  // An Upgrade lws does not know: it has answered 403 itself; this ends
  // the connection, so that nothing after that request is read.
  if (upgrade == nullptr ||
      (strcasecmp(upgrade, "websocket") != 0 && strcasecmp(upgrade, "h2c") != 0)) {
    return -1;
  }
  char uri[64] = {0};
  if (strcasecmp(upgrade, "websocket") == 0 &&
      lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) > 0 &&
      std::string_view(uri) == "/gateway") {
    // Credentials on the request are checked now; FILTER_PROTOCOL_CONNECTION
    // decides the rest.
    return checkLwsUpgrade(wsi);
  }
  // As the original relay: a WebSocket anywhere but /gateway is a 400.
  LOG_DEBUG("refused an upgrade to " << upgrade << " on " << uri);
  refuse(RefuseReason::NotGateway);
  unsigned char buf[LWS_PRE + 256];
  unsigned char* start = buf + LWS_PRE;
  unsigned char* p = start;
  unsigned char* end = buf + sizeof buf - 1;
  // Best effort: the connection closes either way.
  if (lws_add_http_common_headers(wsi, HTTP_STATUS_BAD_REQUEST, "application/json", 0, &p, end) ||
      lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION,
                                   reinterpret_cast<const unsigned char*>("close"), 5, &p, end) ||
      lws_finalize_write_http_header(wsi, start, &p, end)) {
    LOG_DEBUG("the answer to a refused upgrade did not go out");
  }
  return -1;
}

void Server::Impl::route(HttpExchange& ex) {
  ex.routed = true;
  const std::string_view path = ex.path;
  if (routeOperator(ex) || routeStatus(ex)) return;
  if (path == "/health" && ex.method == "GET") {
    respond(ex, 200, "{\"ok\":true,\"connected\":" + std::to_string(router.localCount()) + "}");
  } else if (path == "/healthz" && ex.method == "GET") {
    respond(ex, 200, "{\"ok\":true}");
  } else if (path == "/readyz" && ex.method == "GET") {
    if (shuttingDown) {
      respond(ex, 503, errorBody("shutting down"));
      return;
    }
    // Cluster mode: a relay cut off from NATS serves its own meshes but not
    // the others', so it is not ready for new ones.
    if (clusterLink && !clusterLink->connected()) {
      respond(ex, 503, errorBody("not connected to the cluster"));
      return;
    }
    workers.post([this, id = ex.id] {
      const bool writable = registry.checkWritable();
      post([this, id, writable] {
        counters.databaseWritable = writable ? 1 : 0;
        if (!writable) {
          respondLater(id, 503, errorBody("database not writable"));
          return;
        }
        // Cluster mode: still ready without the bucket (meshes authenticate
        // from the local copy), but the answer says so. The cluster link's
        // own readiness (NATS reachable) is answered before this.
        std::string body = "{\"ok\":true";
        if (clusterLink) body += ",\"cluster\":true";
        if (clusterRegistry) body += "," + registryReadiness();
        body += "}";
        respondLater(id, 200, std::move(body));
      });
    });
  } else if (path == "/register" && ex.method == "POST") {
    handleRegister(ex);
  } else {
    respond(ex, 404, errorBody("Not found"));
  }
}

void Server::Impl::handleRegister(HttpExchange& ex) {
  auto [bucket, inserted] = registerBuckets.try_emplace(ex.peer);
  if (inserted) {
    bucket->second = TokenBucket(config.registerRatePerSecond, config.registerBurst, nowUs());
  }
  if (!bucket->second.tryTake(nowUs())) {
    LOG_WARN("register refused from " << ex.peer << ": too many requests");
    respond(ex, 429, errorBody("Too many registrations from this address"));
    return;
  }
  if (config.registration == RegistrationPolicy::Closed) {
    respond(ex, 403, errorBody("Registration is closed on this relay"));
    return;
  }
  if (config.registration == RegistrationPolicy::Token &&
      !bearerMatches(ex.authorization, config.adminToken)) {
    respond(ex, 401, errorBody("Registration needs Authorization: Bearer <admin token>"));
    return;
  }
  auto parsed = proto::parseRegisterRequest(ex.body);
  if (auto* reason = std::get_if<std::string>(&parsed)) {
    respond(ex, 400, errorBody(*reason));
    return;
  }
  auto req = std::get<proto::RegisterRequest>(std::move(parsed));
  ++counters.argon2Queued;
  // Cluster mode: the shared bucket is written first, on the shared
  // registry's own writers (a stalled bucket never holds up Argon2 checks).
  auto run = [this](std::function<void()> job) {
    if (clusterRegistry) {
      clusterRegistry->submit(std::move(job));
    } else {
      workers.post(std::move(job));
    }
  };
  // The job holds the shared registry itself: the member is already null
  // while the shared registry finishes its queued jobs at shutdown.
  run([this, cluster = clusterRegistry.get(), id = ex.id, peer = ex.peer,
       req = std::move(req)]() mutable {
    std::optional<RegisterOutcome> outcome;
    std::string failure;
    try {
      if (cluster) {
        auto result = cluster->registerMesh(req.meshId, req.name, req.secret);
        if (auto* down = std::get_if<RegistryUnavailable>(&result)) {
          LOG_WARN("registering meshId=" << req.meshId << " failed: " << down->message);
          failure = down->message;
        } else {
          outcome = std::get<RegisterOutcome>(result);
        }
      } else {
        outcome = registry.registerMesh(req.meshId, req.name, req.secret);
      }
    } catch (const std::exception& e) {
      // A full disk, an I/O error: the client is told at once rather than
      // left waiting, and may try again later.
      LOG_ERROR("registering meshId=" << req.meshId << " failed: " << e.what());
      failure = sqlite::unavailableReason(e);
    }
    sodium_memzero(req.secret.data(), req.secret.size());
    post([this, id, peer, meshId = std::move(req.meshId), outcome,
          failure = std::move(failure)]() mutable {
      --counters.argon2Queued;
      if (!outcome) {
        respondLater(id, 503, errorBody(failure));
        return;
      }
      switch (*outcome) {
        case RegisterOutcome::Created:
          ++counters.registrations;
          LOG_INFO("registered meshId=" << meshId << " peer=" << peer);
          respondLater(id, 201, "{\"ok\":true,\"created\":true}");
          break;
        case RegisterOutcome::Updated:
          ++counters.registrationsUpdated;
          LOG_DEBUG("re-registered meshId=" << meshId << " peer=" << peer);
          respondLater(id, 200, "{\"ok\":true,\"created\":false}");
          break;
        case RegisterOutcome::Conflict:
          ++counters.registrationConflicts;
          LOG_INFO("register conflict meshId=" << meshId << " peer=" << peer);
          respondLater(id, 409, errorBody("meshId already registered"));
          break;
      }
    });
  });
}

void Server::Impl::respond(HttpExchange& ex, int status, std::string body) {
  ex.status = status;
  ex.response = std::move(body);
  lws_callback_on_writable(ex.wsi);
}

void Server::Impl::respondLater(std::uint64_t exchangeId, int status, std::string body) {
  auto it = exchanges.find(exchangeId);
  if (it == exchanges.end()) return;  // the client went away meanwhile
  respond(*it->second, status, std::move(body));
}

int Server::Impl::onHttpWriteable(lws* wsi, PerSession* pss) {
  if (!pss || !pss->http || pss->http->status == 0) return 0;
  HttpExchange& ex = *pss->http;
  if (!ex.headersSent) {
    unsigned char buf[LWS_PRE + 1024];
    unsigned char* start = buf + LWS_PRE;
    unsigned char* p = start;
    unsigned char* end = buf + sizeof buf - 1;
    if (lws_add_http_common_headers(wsi, static_cast<unsigned>(ex.status), ex.contentType,
                                    ex.response.size(), &p, end)) {
      return -1;
    }
    // HTTP/2 (TLS with ALPN h2) has no Connection header: adding one fails
    // the whole response. A stream's network connection is its parent.
    const bool http2 = lws_get_network_wsi(wsi) != wsi;
    if (ex.closeAfter && !http2 &&
        lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION,
                                     reinterpret_cast<const unsigned char*>("close"), 5, &p, end)) {
      return -1;
    }
    if (lws_finalize_write_http_header(wsi, start, &p, end)) return -1;
    ex.headersSent = true;
    lws_callback_on_writable(wsi);
    return 0;
  }
  std::string out(LWS_PRE, '\0');
  out += ex.response;
  const std::size_t size = ex.response.size();
  const int n = lws_write(wsi, reinterpret_cast<unsigned char*>(out.data()) + LWS_PRE, size,
                          LWS_WRITE_HTTP_FINAL);
  const bool closeAfter = ex.closeAfter;
  onHttpClosed(pss);
  if (n < static_cast<int>(size) || closeAfter) return -1;
  return lws_http_transaction_completed(wsi) ? -1 : 0;
}

void Server::Impl::onHttpClosed(PerSession* pss) {
  if (!pss || !pss->http) return;
  const std::uint64_t id = pss->http->id;
  pss->http = nullptr;
  exchanges.erase(id);  // destroys the exchange
}

}  // namespace mesh::relay
