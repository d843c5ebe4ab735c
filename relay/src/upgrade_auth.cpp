// Credentials on the /gateway upgrade request (Authorization: Basic or
// Bearer) and the authorize hook. Loop thread only, except where noted.
//
// An upgrade's credentials go through what gateway_auth's go through: the
// budgets of failures first, then the keyed verifier (microseconds, also for
// unknown meshes) or, for a mesh without one, Argon2id on the workers in the
// fair queue. On the relay's own plain sockets the 101 waits for the answer
// (plain_upgrade.cpp): wrong credentials get a 401, a spent budget a 429. On
// lws's connections (TLS) the answer must come while lws holds the request
// (HTTP_CONFIRM_UPGRADE cannot be answered later): a verdict known then is a
// 401 or 429 too; a check that has to wait for Argon2id lets the upgrade go
// on, and the session learns the verdict as a gateway_auth would, with
// gateway_auth_ok or with invalid_credentials and close 1008.
#include <sodium.h>
#include <strings.h>
#include <sys/socket.h>
#include <algorithm>

#include "log.h"
#include "server_impl.h"
#include "upgrade_auth.h"

namespace mesh::relay {
namespace {

std::string headerOf(lws* wsi, lws_token_indexes token) {
  const int len = lws_hdr_total_length(wsi, token);
  if (len <= 0) return {};
  std::string value(static_cast<std::size_t>(len) + 1, '\0');
  if (lws_hdr_copy(wsi, value.data(), len + 1, token) < 0) return {};
  value.resize(static_cast<std::size_t>(len));
  return value;
}

void wipe(std::string& s) {
  sodium_memzero(s.data(), s.size());
  s.clear();
}

bool startsWithScheme(std::string_view value, std::string_view scheme) {
  return value.size() > scheme.size() && value[scheme.size()] == ' ' &&
         strncasecmp(value.data(), scheme.data(), scheme.size()) == 0;
}

// A 401 or 429 on an lws connection that asked to upgrade, in one write;
// the connection closes after it.
void answerLwsUpgrade(lws* wsi, bool rateLimited) {
  const std::string_view body = rateLimited ? kUpgradeRateLimitedBody : kUpgradeUnauthorizedBody;
  unsigned char buf[LWS_PRE + 512];
  unsigned char* start = buf + LWS_PRE;
  unsigned char* p = start;
  unsigned char* end = buf + sizeof buf - 1;
  const unsigned status = rateLimited ? 429u : static_cast<unsigned>(HTTP_STATUS_UNAUTHORIZED);
  static constexpr std::string_view kChallenge = "Basic realm=\"mesh-relay\"";
  bool failed =
      lws_add_http_common_headers(wsi, status, "application/json", body.size(), &p, end) != 0;
  if (!failed && !rateLimited) {
    failed = lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_WWW_AUTHENTICATE,
                                          reinterpret_cast<const unsigned char*>(kChallenge.data()),
                                          static_cast<int>(kChallenge.size()), &p, end) != 0;
  }
  if (!failed) {
    failed = lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION,
                                          reinterpret_cast<const unsigned char*>("close"), 5, &p,
                                          end) != 0 ||
             lws_finalize_http_header(wsi, &p, end) != 0 ||
             static_cast<std::size_t>(end - p) < body.size();
  }
  if (!failed) {
    std::copy(body.begin(), body.end(), p);
    p += body.size();
    failed = lws_write(wsi, start, static_cast<std::size_t>(p - start), LWS_WRITE_HTTP_HEADERS) < 0;
  }
  // Best effort: the connection closes either way.
  if (failed) LOG_DEBUG("the answer to a refused upgrade did not go out");
}

std::string plainUpgradeRefusal(bool rateLimited) {
  const std::string_view body = rateLimited ? kUpgradeRateLimitedBody : kUpgradeUnauthorizedBody;
  std::string out = rateLimited ? "HTTP/1.1 429 Too Many Requests\r\n"
                                : "HTTP/1.1 401 Unauthorized\r\n"
                                  "WWW-Authenticate: Basic realm=\"mesh-relay\"\r\n";
  out += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\nConnection: close\r\n\r\n";
  out += body;
  return out;
}

}  // namespace

HeaderCredentials::~HeaderCredentials() {
  sodium_memzero(secret.data(), secret.size());
  sodium_memzero(token.data(), token.size());
}

HeaderCredentials parseAuthorization(std::string_view value) {
  HeaderCredentials c;
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  if (startsWithScheme(value, "Bearer")) {
    std::string_view token = value.substr(7);
    while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
    if (!token.empty()) {
      c.kind = HeaderCredentials::Kind::Bearer;
      c.token.assign(token);
    }
    return c;
  }
  if (!startsWithScheme(value, "Basic")) return c;
  std::string_view encoded = value.substr(6);
  while (!encoded.empty() && encoded.front() == ' ') encoded.remove_prefix(1);
  std::string decoded(encoded.size(), '\0');
  std::size_t length = 0;
  const char* endOfInput = nullptr;
  if (encoded.empty() ||
      sodium_base642bin(reinterpret_cast<unsigned char*>(decoded.data()), decoded.size(),
                        encoded.data(), encoded.size(), nullptr, &length, &endOfInput,
                        sodium_base64_VARIANT_ORIGINAL) != 0 ||
      endOfInput != encoded.data() + encoded.size()) {
    wipe(decoded);
    return c;
  }
  decoded.resize(length);
  const std::size_t colon = decoded.find(':');
  if (colon != std::string::npos) {
    c.kind = HeaderCredentials::Kind::Basic;
    c.meshId = decoded.substr(0, colon);
    c.secret = decoded.substr(colon + 1);
  }
  wipe(decoded);
  return c;
}

void Server::Impl::upgradeCheckFailed(const std::string& peer, const std::string& meshId,
                                      UpgradeDone& done) {
  ++counters.authFailed;
  ++counters.upgradeAuthInvalid;
  authBudget.noteFailure(peer, meshId, registry.find(meshId).has_value(), nowUs());
  LOG_INFO("upgrade auth failed meshId=" << meshId << " peer=" << peer);
  UpgradeVerdict v;
  v.kind = UpgradeVerdict::Kind::Invalid;
  v.meshId = meshId;
  done(std::move(v));
}

void Server::Impl::checkUpgradeCredentials(const std::string& peer, std::string authorization,
                                           std::shared_ptr<std::atomic<bool>> cancelled,
                                           UpgradeDone done) {
  HeaderCredentials c = parseAuthorization(authorization);
  wipe(authorization);
  // As for gateway_auth: an address or mesh that spent its budget of
  // failures is refused before any check.
  if (const auto verdict = authBudget.verdict(peer, c.meshId, nowUs());
      verdict != AuthBudget::Verdict::Check) {
    const bool address = verdict == AuthBudget::Verdict::AddressSpent;
    ++(address ? counters.authRateLimitedAddress : counters.authRateLimitedMesh);
    ++counters.upgradeAuthRateLimited;
    LOG_INFO("upgrade auth refused meshId=" << c.meshId << " peer=" << peer << ": "
                                            << (address ? "too many failed authentications from "
                                                          "this address"
                                                        : "too many failed authentications for "
                                                          "this mesh"));
    UpgradeVerdict v;
    v.kind = UpgradeVerdict::Kind::RateLimited;
    v.meshId = c.meshId;
    done(std::move(v));
    return;
  }
  if (c.kind == HeaderCredentials::Kind::Bearer) {
    checkUpgradeToken(peer, std::move(c.token), std::move(done), true);
    return;
  }
  if (c.kind != HeaderCredentials::Kind::Basic || !proto::isValidMeshId(c.meshId)) {
    upgradeCheckFailed(peer, c.meshId, done);
    return;
  }
  auto fast = registry.checkVerifier(c.meshId, c.secret);
  if (fast.outcome != VerifierOutcome::Absent) {
    ++counters.secretChecksByVerifier;
    if (fast.rehash) {
      workers.post([this, meshId = c.meshId, secret = c.secret]() mutable {
        (void)registry.verifySecret(meshId, secret);
        sodium_memzero(secret.data(), secret.size());
      });
    }
    if (fast.outcome != VerifierOutcome::Match) {
      upgradeCheckFailed(peer, c.meshId, done);
      return;
    }
    ++counters.upgradeAuthOk;
    UpgradeVerdict v;
    v.kind = UpgradeVerdict::Kind::Ok;
    v.meshId = c.meshId;
    v.name = std::move(fast.name);
    done(std::move(v));
    return;
  }
  ++counters.argon2Queued;
  SecretCheck check(0, peer, c.meshId, std::move(c.secret), std::move(cancelled));
  check.done = [this, peer, meshId = c.meshId, done = std::move(done)](
                   std::optional<std::string> name, bool checked) mutable {
    if (!checked) return;  // the connection went away before its turn
    if (!name) {
      upgradeCheckFailed(peer, meshId, done);
      return;
    }
    ++counters.upgradeAuthOk;
    UpgradeVerdict v;
    v.kind = UpgradeVerdict::Kind::Ok;
    v.meshId = meshId;
    v.name = std::move(*name);
    done(std::move(v));
  };
  secretChecks.push(std::move(check));
  pumpSecretChecks();
}

void Server::Impl::checkUpgradeToken(const std::string& peer, std::string token, UpgradeDone done,
                                     bool mayWait) {
  if (!tokens->enabled()) {
    // No key source configured: a token cannot be right.
    countTokenRefusal(jwt::Refusal::NoKey);
    upgradeCheckFailed(peer, {}, done);
    return;
  }
  auto result = tokens->verify(token, unixSeconds());
  if (const auto* refused = std::get_if<TokenRefusal>(&result)) {
    const bool keysMayChange =
        refused->reason == jwt::Refusal::UnknownKid || refused->reason == jwt::Refusal::NoKey;
    if (mayWait && keysMayChange && tokens->refetchPending()) {
      // The JWKS fetch this kid caused decides, once (as for gateway_auth).
      tokens->whenKeysFetched(
          [this, peer, token = std::move(token), done = std::move(done)]() mutable {
            checkUpgradeToken(peer, std::move(token), std::move(done), false);
          });
      return;
    }
    countTokenRefusal(refused->reason);
    LOG_INFO("upgrade token refused peer=" << peer << ": " << jwt::refusalLabel(refused->reason)
                                           << " (" << refused->detail << ")");
    upgradeCheckFailed(peer, {}, done);
    return;
  }
  admitToken(std::get<VerifiedToken>(result), {},
             [this, peer, token = std::move(token), done = std::move(done)](
                 const VerifiedToken& verified, const TokenAdmission& admission) mutable {
               if (const auto* name = std::get_if<std::string>(&admission)) {
                 ++counters.upgradeAuthOk;
                 UpgradeVerdict v;
                 v.kind = UpgradeVerdict::Kind::Ok;
                 v.meshId = verified.meshId;
                 v.name = *name;
                 v.token = std::move(token);
                 v.verified = verified;
                 done(std::move(v));
                 return;
               }
               const jwt::Refusal why = std::get<jwt::Refusal>(admission);
               countTokenRefusal(why);
               LOG_INFO("upgrade token refused meshId=" << verified.meshId << " peer=" << peer
                                                        << ": " << jwt::refusalLabel(why));
               upgradeCheckFailed(peer, verified.meshId, done);
             });
}

int Server::Impl::checkLwsUpgrade(lws* wsi) {
  std::string authorization = headerOf(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
  if (authorization.empty()) return 0;  // gateway_auth follows, as always
  const std::uint64_t checkId = nextId++;
  LwsUpgradeCheck& check = lwsUpgradeChecks[checkId];
  check.cancelled = std::make_shared<std::atomic<bool>>(false);
  lwsUpgradeCheckOf[wsi] = checkId;
  checkUpgradeCredentials(
      clientAddress(wsi), std::move(authorization), check.cancelled,
      [this, checkId](UpgradeVerdict v) { lwsUpgradeChecked(checkId, std::move(v)); });
  auto it = lwsUpgradeChecks.find(checkId);
  if (it == lwsUpgradeChecks.end() || !it->second.verdict ||
      it->second.verdict->kind == UpgradeVerdict::Kind::Ok) {
    return 0;  // right, or not known yet: the session takes it over
  }
  const bool rateLimited = it->second.verdict->kind == UpgradeVerdict::Kind::RateLimited;
  lwsUpgradeChecks.erase(it);
  lwsUpgradeCheckOf.erase(wsi);
  answerLwsUpgrade(wsi, rateLimited);
  return -1;
}

void Server::Impl::lwsUpgradeChecked(std::uint64_t checkId, UpgradeVerdict verdict) {
  auto it = lwsUpgradeChecks.find(checkId);
  if (it == lwsUpgradeChecks.end()) return;  // the connection is gone
  if (it->second.sessionId == 0) {
    it->second.verdict = std::move(verdict);  // the session takes it on ESTABLISHED
    return;
  }
  const std::uint64_t sessionId = it->second.sessionId;
  lwsUpgradeChecks.erase(it);
  if (Session* s = findSession(sessionId)) applyUpgradeVerdict(*s, std::move(verdict));
}

void Server::Impl::adoptLwsUpgradeAuth(lws* wsi, Session& s) {
  if (s.state == SessionState::Closing) {
    forgetLwsUpgradeAuth(wsi);
    return;
  }
  s.host = headerOf(wsi, WSI_TOKEN_HOST);
  auto byWsi = lwsUpgradeCheckOf.find(wsi);
  if (byWsi == lwsUpgradeCheckOf.end()) {
    // No check started while lws held the request (a WebSocket inside
    // HTTP/2 is never confirmed as an upgrade): start one now.
    std::string authorization = headerOf(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
    if (authorization.empty()) return;
    s.state = SessionState::Authenticating;
    s.authCancelled = std::make_shared<std::atomic<bool>>(false);
    checkUpgradeCredentials(s.peer, std::move(authorization), s.authCancelled,
                            [this, id = s.id](UpgradeVerdict v) {
                              if (Session* sp = findSession(id))
                                applyUpgradeVerdict(*sp, std::move(v));
                            });
    return;
  }
  // The wsi keeps naming its check until WSI_DESTROY, which drops a check
  // still waiting (its session cancelled it by closing).
  const std::uint64_t checkId = byWsi->second;
  auto it = lwsUpgradeChecks.find(checkId);
  if (it == lwsUpgradeChecks.end()) return;
  s.authCancelled = it->second.cancelled;
  if (it->second.verdict) {
    UpgradeVerdict v = std::move(*it->second.verdict);
    lwsUpgradeChecks.erase(it);
    applyUpgradeVerdict(s, std::move(v));
    return;
  }
  // Argon2id is still to answer: frames that arrive meanwhile wait.
  s.state = SessionState::Authenticating;
  it->second.sessionId = s.id;
}

void Server::Impl::forgetLwsUpgradeAuth(lws* wsi) {
  auto byWsi = lwsUpgradeCheckOf.find(wsi);
  if (byWsi == lwsUpgradeCheckOf.end()) return;
  auto it = lwsUpgradeChecks.find(byWsi->second);
  if (it != lwsUpgradeChecks.end()) {
    it->second.cancelled->store(true);
    lwsUpgradeChecks.erase(it);
  }
  lwsUpgradeCheckOf.erase(byWsi);
}

void Server::Impl::awaitUpgradeCredentials(Upgrade& u, std::string peer, std::string key,
                                           std::string host, std::string authorization,
                                           std::string early) {
  // The head held the credentials; only what followed it is kept.
  wipe(u.head);
  u.head = std::move(early);
  ev_io_stop(evLoop, &u.io);
  u.checkCancelled = std::make_shared<std::atomic<bool>>(false);
  u.checkPeer = peer;
  ++unauthenticatedPerIp[u.checkPeer];
  Upgrade* up = &u;
  checkUpgradeCredentials(
      peer, std::move(authorization), u.checkCancelled,
      [this, up, cancelled = u.checkCancelled, peer, key = std::move(key),
       host = std::move(host)](UpgradeVerdict v) mutable {
        if (cancelled->load()) return;  // dropped meanwhile: `up` is gone
        Upgrade& waiting = *up;
        abandonUpgradeCheck(waiting);
        if (v.kind != UpgradeVerdict::Kind::Ok) {
          // What the client sent behind its request is read first: a socket
          // closed with input unread is reset, and the reset can overtake
          // the answer.
          char sink[4096];
          for (int i = 0; i < 16 && ::recv(waiting.fd, sink, sizeof sink, MSG_DONTWAIT) > 0; ++i) {
          }
          dropUpgrade(waiting, plainUpgradeRefusal(v.kind == UpgradeVerdict::Kind::RateLimited));
          return;
        }
        std::string behind = std::move(waiting.head);
        upgradeToSession(waiting, std::move(peer), key, std::move(host), std::move(behind),
                         [this, &v](Session& s) { applyUpgradeVerdict(s, std::move(v)); });
      });
}

void Server::Impl::abandonUpgradeCheck(Upgrade& u) {
  if (!u.checkCancelled) return;
  u.checkCancelled->store(true);
  u.checkCancelled.reset();
  auto it = unauthenticatedPerIp.find(u.checkPeer);
  if (it != unauthenticatedPerIp.end() && --it->second == 0) unauthenticatedPerIp.erase(it);
}

void Server::Impl::applyUpgradeVerdict(Session& s, UpgradeVerdict verdict) {
  if (s.state == SessionState::Closing) return;
  switch (verdict.kind) {
    case UpgradeVerdict::Kind::Ok:
      s.authToken = std::move(verdict.token);
      if (verdict.verified) {
        // A session by token: no resume token, and it ends with the token.
        acceptToken(s, *verdict.verified, std::move(verdict.name));
      } else {
        finishAuth(s.id, verdict.name, verdict.meshId);
      }
      return;
    case UpgradeVerdict::Kind::Invalid:
      // Charged already (upgradeCheckFailed).
      recorder.auth(s, verdict.meshId, false, nowUs());
      s.pendingDuringAuth.clear();
      sendError(s, proto::ErrorCode::InvalidCredentials, "Invalid credentials", std::nullopt);
      closeSession(s, 1008, "invalid_credentials", false);
      return;
    case UpgradeVerdict::Kind::RateLimited:
      recorder.auth(s, verdict.meshId, false, nowUs(), proto::ErrorCode::RateLimited);
      s.pendingDuringAuth.clear();
      sendError(s, proto::ErrorCode::RateLimited,
                "Too many failed authentications; try again later", std::nullopt);
      closeSession(s, 1008, "rate_limited", false);
      return;
  }
}

// ---- the authorize hook

void Server::Impl::authorizeThenFinish(Session& s, const std::string& name,
                                       const std::string& meshId) {
  // Frames wait, and the auth timeout does not apply: the hook has its own.
  s.state = SessionState::Authenticating;
  AuthorizeRequest req;
  req.meshId = meshId;
  req.ip = s.peer;
  req.host = s.host;
  req.token = std::move(s.authToken);
  s.authToken.reset();
  std::string key = AuthorizeCache::keyOf(req);
  if (const AuthorizeCache::Entry* hit = authorizeCache.find(key, nowUs())) {
    ++counters.authorizeCached;
    acceptAuthorized(s, name, meshId, hit->meshId, hit->claimsJson);
    return;
  }
  authorizer->submit(
      req, [this, id = s.id, name, meshId, key = std::move(key)](AuthorizeAnswer answer) mutable {
        // On the hook's thread.
        post([this, id, name = std::move(name), meshId = std::move(meshId), key = std::move(key),
              answer = std::move(answer)]() mutable {
          authorizeAnswered(id, name, meshId, std::move(key), std::move(answer));
        });
      });
}

void Server::Impl::authorizeAnswered(std::uint64_t sessionId, const std::string& name,
                                     const std::string& meshId, std::string cacheKey,
                                     AuthorizeAnswer answer) {
  counters.authorizeSeconds.observe(answer.seconds);
  switch (answer.outcome) {
    case AuthorizeAnswer::Outcome::Allow:
      ++counters.authorizeAllowed;
      break;
    case AuthorizeAnswer::Outcome::Deny:
      ++counters.authorizeDenied;
      break;
    case AuthorizeAnswer::Outcome::Unavailable:
      ++counters.authorizeFailedBy[static_cast<std::size_t>(answer.failure)];
      LOG_WARN("authorize hook failed for meshId=" << meshId << ": " << answer.problem);
      break;
  }
  Session* sp = findSession(sessionId);
  if (!sp || sp->state == SessionState::Closing) return;
  Session& s = *sp;
  switch (answer.outcome) {
    case AuthorizeAnswer::Outcome::Allow: {
      const double ttl = answer.ttlSeconds.value_or(config.authorizeCacheTtlSeconds);
      if (ttl > 0) {
        const auto now = nowUs();
        authorizeCache.put(std::move(cacheKey),
                           {answer.meshId, answer.claimsJson,
                            now + static_cast<std::int64_t>(std::min(ttl, 86400.0) * 1e6)},
                           now);
      }
      acceptAuthorized(s, name, meshId, answer.meshId, std::move(answer.claimsJson));
      return;
    }
    case AuthorizeAnswer::Outcome::Deny:
      refuseAuthorization(
          s, meshId, proto::ErrorCode::NotAuthorized,
          answer.reason.empty() ? "Not authorized" : "Not authorized: " + answer.reason);
      return;
    case AuthorizeAnswer::Outcome::Unavailable:
      refuseAuthorization(s, meshId, proto::ErrorCode::AuthorizeUnavailable,
                          "Authorization service unavailable; try again later");
      return;
  }
}

void Server::Impl::acceptAuthorized(Session& s, const std::string& name, const std::string& meshId,
                                    const std::string& answeredMeshId, std::string claimsJson) {
  std::string acceptedId = meshId;
  std::string acceptedName = name;
  if (!answeredMeshId.empty() && answeredMeshId != meshId) {
    // The hook's meshId wins, but only for a mesh this relay knows.
    std::optional<MeshRecord> record;
    if (proto::isValidMeshId(answeredMeshId)) record = registry.find(answeredMeshId);
    if (!record) {
      LOG_WARN("authorize hook answered meshId=" << answeredMeshId << " for meshId=" << meshId
                                                 << ", which is not registered; refused");
      refuseAuthorization(s, meshId, proto::ErrorCode::AuthorizeUnavailable,
                          "Authorization service named an unknown mesh");
      return;
    }
    LOG_INFO("conn=" << s.id << " meshId=" << meshId << " accepted as meshId=" << answeredMeshId
                     << " by the authorize hook");
    acceptedId = answeredMeshId;
    acceptedName = record->name;
  }
  s.authorized = true;
  s.claimsJson = std::move(claimsJson);
  const std::uint64_t id = s.id;
  finishAuth(id, acceptedName, acceptedId);
  // A session by token whose clock acceptToken could not start: the mesh
  // was still waiting for the hook then.
  Session* sp = findSession(id);
  if (sp && sp->authByToken && sp->state == SessionState::Authenticated &&
      sp->tokenDeadlineMs == 0) {
    setTokenClock(*sp, sp->tokenExpiresAt);
  }
}

void Server::Impl::refuseAuthorization(Session& s, const std::string& meshId, proto::ErrorCode code,
                                       const std::string& message) {
  LOG_INFO("conn=" << s.id << " auth refused meshId=" << meshId << " peer=" << s.peer << ": "
                   << proto::codeText(code));
  recorder.auth(s, meshId, false, nowUs(), code);
  s.pendingDuringAuth.clear();
  sendError(s, code, message, s.authId);
  closeSession(s, 1008, proto::codeText(code), false);
}

}  // namespace mesh::relay
