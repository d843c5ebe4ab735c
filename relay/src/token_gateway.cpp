// Signed tokens on the /gateway WebSocket: gateway_auth with a "token",
// gateway_reauth, and the end of a session whose token runs out
// (docs/protocol.md, "Tokens"). Loop thread only.
#include <algorithm>
#include <variant>

#include "iso_time.h"
#include "log.h"
#include "server_impl.h"

namespace mesh::relay {
namespace {

// How often sessions with a token are looked at for their warning and
// their end: a quarter second is well inside the warning's lead.
constexpr lws_usec_t kTokenTickUs = 250 * LWS_US_PER_MS;
// The token_expired warning comes 10 % of the token's remaining lifetime
// before the end, at least 1 s and at most 30 s before it.
constexpr std::int64_t kMinWarnLeadMs = 1'000;
constexpr std::int64_t kMaxWarnLeadMs = 30'000;

void onTokenTick(lws_sorted_usec_list_t* sul) {
  reinterpret_cast<LoopTimer*>(sul)->owner->tokenTick();
}

bool keysMayChange(jwt::Refusal r) {
  return r == jwt::Refusal::UnknownKid || r == jwt::Refusal::NoKey;
}

}  // namespace

void Server::Impl::startTokenAuth(Session& s, proto::AuthFrame& auth) {
  const std::string token = std::move(*auth.token);
  checkToken(s, token, auth.meshId, true);
}

void Server::Impl::checkToken(Session& s, const std::string& token,
                              const std::string& claimedMeshId, bool mayWait) {
  if (!tokens->enabled()) {
    refuseToken(s, jwt::Refusal::NoKey, "no token keys configured", claimedMeshId);
    return;
  }
  auto result = tokens->verify(token, unixSeconds());
  if (const auto* refused = std::get_if<TokenRefusal>(&result)) {
    // A kid the relay has not seen may be a key the identity provider just
    // published: the fetch it caused decides, once.
    if (mayWait && keysMayChange(refused->reason) && tokens->refetchPending()) {
      s.state = SessionState::Authenticating;
      tokens->whenKeysFetched([this, sessionId = s.id, token, claimedMeshId] {
        Session* sp = findSession(sessionId);
        if (!sp || sp->state != SessionState::Authenticating) return;
        sp->state = SessionState::Unauthenticated;
        checkToken(*sp, token, claimedMeshId, false);
      });
      return;
    }
    refuseToken(s, refused->reason, refused->detail, claimedMeshId);
    return;
  }
  // Decided now, or by a worker when the mesh is registered first: the
  // session waits like one whose secret is being checked.
  s.state = SessionState::Authenticating;
  s.authToken = token;  // for the authorize hook, if there is one
  admitToken(std::get<VerifiedToken>(result), claimedMeshId,
             [this, sessionId = s.id, claimedMeshId](const VerifiedToken& verified,
                                                     const TokenAdmission& admission) {
               Session* sp = findSession(sessionId);
               if (!sp || sp->state != SessionState::Authenticating) return;
               sp->state = SessionState::Unauthenticated;
               if (const auto* name = std::get_if<std::string>(&admission)) {
                 acceptToken(*sp, verified, *name);
               } else {
                 const jwt::Refusal why = std::get<jwt::Refusal>(admission);
                 refuseToken(*sp, why, jwt::refusalLabel(why),
                             why == jwt::Refusal::MeshMismatch ? claimedMeshId : verified.meshId);
               }
             });
}

void Server::Impl::admitToken(const VerifiedToken& verified, const std::string& claimedMeshId,
                              TokenAdmitted done) {
  if (!claimedMeshId.empty() && claimedMeshId != verified.meshId) {
    done(verified, jwt::Refusal::MeshMismatch);
    return;
  }
  if (auto record = registry.find(verified.meshId)) {
    done(verified, record->name);
    return;
  }
  if (!config.jwtAutoRegister) {
    done(verified, jwt::Refusal::UnknownMesh);
    return;
  }
  // Registered by a worker (a database write), then answered on the loop.
  const std::string name = verified.name.value_or(verified.meshId);
  workers.post([this, verified, name, done = std::move(done)]() mutable {
    bool created = false;
    std::string error;
    try {
      created = registry.registerTokenMesh(verified.meshId, name);
    } catch (const std::exception& e) {
      error = e.what();
    }
    post([this, verified, created, error, done = std::move(done)] {
      if (created) {
        ++tokenCounters.autoRegistered;
        LOG_INFO("meshId=" << verified.meshId << " registered by its first token");
      } else if (!error.empty()) {
        LOG_ERROR("meshId=" << verified.meshId << " could not be registered: " << error);
      }
      if (auto record = registry.find(verified.meshId)) {
        done(verified, record->name);
      } else {
        done(verified, jwt::Refusal::UnknownMesh);
      }
    });
  });
}

void Server::Impl::countTokenRefusal(jwt::Refusal why) {
  ++tokenCounters.refusals[static_cast<std::size_t>(why)];
}

// Refused like a wrong secret: invalid_credentials and close 1008, charged
// to the address's and the mesh's failure budgets; once a budget is spent,
// rate_limited instead (uncharged), as for secrets.
void Server::Impl::refuseToken(Session& s, jwt::Refusal why, std::string_view detail,
                               const std::string& meshId) {
  countTokenRefusal(why);
  LOG_INFO("conn=" << s.id << " token refused meshId=" << meshId << " peer=" << s.peer << ": "
                   << jwt::refusalLabel(why) << " (" << detail << ")");
  if (const auto verdict = authBudget.verdict(s.peer, meshId, nowUs());
      verdict != AuthBudget::Verdict::Check) {
    refuseAuth(s, meshId, verdict);
    return;
  }
  finishAuth(s.id, std::nullopt, meshId);
}

void Server::Impl::acceptToken(Session& s, const VerifiedToken& token, std::string name) {
  ++tokenCounters.accepted;
  // Set first: finishAuth issues no resume token to a token session (one
  // would outlive the token).
  s.authByToken = true;
  s.tokenExpiresAt = token.expiresAt;  // the clock starts once the mesh is in
  LOG_DEBUG("conn=" << s.id << " token accepted meshId=" << token.meshId
                    << " alg=" << jwt::algName(token.alg) << " kid=" << token.kid);
  finishAuth(s.id, std::move(name), token.meshId);
  if (s.state == SessionState::Authenticated) setTokenClock(s, token.expiresAt);
}

void Server::Impl::setTokenClock(Session& s, std::int64_t expiresAtSeconds) {
  const std::int64_t now = nowMs();
  const std::int64_t deadline = (expiresAtSeconds + config.jwtLeewaySeconds) * 1000;
  const std::int64_t lead = std::clamp((deadline - now) / 10, kMinWarnLeadMs, kMaxWarnLeadMs);
  s.tokenDeadlineMs = deadline;
  s.tokenWarnMs = deadline - lead;
  s.tokenWarned = false;
  tokenSessions.insert(s.id);
  if (!tokenTimerRunning) {
    tokenTimerRunning = true;
    tokenTimer.owner = this;
    lws_sul_schedule(context, 0, &tokenTimer.sul, onTokenTick, kTokenTickUs);
  }
}

void Server::Impl::tokenTick() {
  const std::int64_t now = nowMs();
  std::vector<Session*> warn;
  std::vector<Session*> end;
  for (auto it = tokenSessions.begin(); it != tokenSessions.end();) {
    Session* s = findSession(*it);
    if (!s || s->state != SessionState::Authenticated || !s->authByToken) {
      it = tokenSessions.erase(it);
      continue;
    }
    if (now >= s->tokenDeadlineMs) {
      end.push_back(s);
    } else if (!s->tokenWarned && now >= s->tokenWarnMs) {
      warn.push_back(s);
    }
    ++it;
  }
  for (Session* s : warn) {
    s->tokenWarned = true;
    ++tokenCounters.warned;
    sendError(*s, proto::ErrorCode::TokenExpired,
              "Token expires at " + isoTimeMs(s->tokenDeadlineMs) +
                  "; send gateway_reauth with a fresh token",
              std::nullopt);
  }
  for (Session* s : end) {
    if (s->state != SessionState::Authenticated) continue;
    ++tokenCounters.expired;
    if (!s->tokenWarned) {
      sendError(*s, proto::ErrorCode::TokenExpired, "Token expired", std::nullopt);
    }
    LOG_INFO("conn=" << s->id << " meshId=" << s->meshId << " closing: token expired");
    closeSession(*s, proto::closeCode(proto::ErrorCode::TokenExpired), "token_expired", false);
  }
  if (tokenSessions.empty()) {
    tokenTimerRunning = false;
    return;
  }
  lws_sul_schedule(context, 0, &tokenTimer.sul, onTokenTick, kTokenTickUs);
}

void Server::Impl::handleReauth(Session& s, const proto::ReauthFrame& f,
                                const std::optional<std::string>& id) {
  if (!s.authByToken) {
    sendError(s, proto::ErrorCode::InvalidFrame,
              "gateway_reauth is for sessions that authenticated with a token", id);
    return;
  }
  auto result = tokens->verify(f.token, unixSeconds());
  std::optional<jwt::Refusal> why;
  std::string detail;
  if (const auto* refused = std::get_if<TokenRefusal>(&result)) {
    why = refused->reason;
    detail = refused->detail;
  } else if (std::get<VerifiedToken>(result).meshId != s.meshId) {
    why = jwt::Refusal::MeshMismatch;
    detail = "the token names another mesh";
  }
  if (why) {
    // The session keeps its current token until it runs out.
    countTokenRefusal(*why);
    authBudget.noteFailure(s.peer, s.meshId, true, nowUs());
    LOG_INFO("conn=" << s.id << " meshId=" << s.meshId
                     << " reauth refused: " << jwt::refusalLabel(*why) << " (" << detail << ")");
    recorder.error(s, proto::ErrorCode::InvalidCredentials, id, nowUs());
    // An error frame, not gateway_auth_error: the session stays open.
    enqueue(s, makeFrame([&](std::string& out) {
              out +=
                  R"({"type":"error","message":"Invalid credentials","code":"invalid_credentials")";
              if (id) {
                out += ",\"id\":";
                proto::appendJsonString(out, *id);
              }
              out += '}';
            }));
    return;
  }
  ++tokenCounters.reauths;
  setTokenClock(s, std::get<VerifiedToken>(result).expiresAt);
  const std::string expires = isoTimeMs(s.tokenDeadlineMs);
  std::optional<std::string_view> idView;
  if (id) idView = *id;
  enqueue(s, makeFrame(
                 [&](std::string& out) { proto::encodeReauthOk(out, s.meshId, expires, idView); }));
}

void Server::Impl::reloadJwksNow() {
  tokens->reloadFile();
}

void Server::Impl::renderTokenMetrics(MetricsWriter& w) const {
  const auto& c = tokenCounters;
  w.family("mesh_relay_token_refusals_total", "counter",
           "Signed tokens refused (gateway_auth and gateway_reauth), by reason.");
  for (std::size_t i = 0; i < c.refusals.size(); ++i) {
    const std::string label =
        "reason=\"" + std::string(jwt::refusalLabel(static_cast<jwt::Refusal>(i))) + "\"";
    w.sample("mesh_relay_token_refusals_total", label, c.refusals[i]);
  }
  w.family("mesh_relay_token_auths_total", "counter", "gateway_auth accepted by a signed token.");
  w.sample("mesh_relay_token_auths_total", "", c.accepted);
  w.family("mesh_relay_token_reauths_total", "counter", "gateway_reauth accepted.");
  w.sample("mesh_relay_token_reauths_total", "", c.reauths);
  w.family("mesh_relay_token_expiry_warnings_total", "counter",
           "token_expired warnings sent before a session's token ran out.");
  w.sample("mesh_relay_token_expiry_warnings_total", "", c.warned);
  w.family("mesh_relay_token_sessions_expired_total", "counter",
           "Sessions closed (4001) because their token ran out.");
  w.sample("mesh_relay_token_sessions_expired_total", "", c.expired);
  w.family("mesh_relay_token_meshes_registered_total", "counter",
           "Meshes registered by their first token (--jwt-auto-register).");
  w.sample("mesh_relay_token_meshes_registered_total", "", c.autoRegistered);
  w.family("mesh_relay_token_keys", "gauge", "Keys tokens are checked with.");
  w.sample("mesh_relay_token_keys", "", static_cast<std::uint64_t>(tokens->keyCount()));
  const TokenKeyStats& k = tokens->stats();
  w.family("mesh_relay_jwks_fetches_total", "counter", "JWKS fetches from --jwt-jwks-url.");
  w.sample("mesh_relay_jwks_fetches_total", "result=\"ok\"", k.fetchesOk);
  w.sample("mesh_relay_jwks_fetches_total", "result=\"failed\"", k.fetchesFailed);
  w.family("mesh_relay_jwks_file_reloads_total", "counter", "--jwt-jwks-file re-reads (SIGHUP).");
  w.sample("mesh_relay_jwks_file_reloads_total", "result=\"ok\"", k.fileReloadsOk);
  w.sample("mesh_relay_jwks_file_reloads_total", "result=\"failed\"", k.fileReloadsFailed);
}

}  // namespace mesh::relay
