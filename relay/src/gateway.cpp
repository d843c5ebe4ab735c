// The /gateway WebSocket: session lifecycle, frame handling and routing.
// Runs on the loop thread only.
#include <sodium.h>

#include <algorithm>
#include <ctime>
#include <variant>

#include "iso_time.h"
#include "log.h"
#include "lws_connection.h"
#include "server_impl.h"

namespace mesh::relay {
namespace {

// How long a peer has to answer our close frame before it is dropped.
constexpr std::int64_t kCloseAnswerUs = 2'000'000;

bool isMessageFrame(const proto::NodeFrame& f) {
  return std::holds_alternative<proto::RelayFrame>(f) ||
         std::holds_alternative<proto::BroadcastFrame>(f);
}

}  // namespace

OutFramePtr makeControlFrame(std::uint8_t opcode, std::string_view payload) {
  auto f = std::make_shared<OutFrame>();
  f->bytes.assign(OutFrame::kHeadroom, '\0');
  f->bytes.append(payload.substr(0, 125));  // a control frame holds 125 bytes
  f->seal(opcode);
  f->isClose = opcode == OutFrame::kClose;
  f->kind = static_cast<std::uint8_t>(opcode == OutFrame::kPing   ? OutFrameKind::Ping
                                      : opcode == OutFrame::kPong ? OutFrameKind::Pong
                                                                  : OutFrameKind::Close);
  return f;
}

Session* Server::Impl::findSession(std::uint64_t id) {
  auto it = sessions.find(id);
  return it == sessions.end() ? nullptr : it->second.get();
}

int Server::Impl::onFilterProtocol(lws* wsi) {
  char uri[256] = {0};
  if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 0 ||
      std::string_view(uri) != "/gateway") {
    LOG_DEBUG("refused WebSocket upgrade on path " << uri);
    refuse(RefuseReason::NotGateway);
    return 1;
  }
  return gatewayRefusal(clientAddress(wsi)) ? 1 : 0;
}

std::optional<RefuseReason> Server::Impl::gatewayRefusal(const std::string& peer) {
  std::optional<RefuseReason> reason;
  if (shuttingDown) {
    reason = RefuseReason::ShuttingDown;
  } else if (sessions.size() >= config.maxConnections) {
    reason = RefuseReason::ConnectionLimit;
    LOG_WARN("refused connection from " << peer << ": connection limit " << config.maxConnections
                                        << " reached");
  } else if (auto it = unauthenticatedPerIp.find(peer);
             it != unauthenticatedPerIp.end() && it->second >= config.maxUnauthenticatedPerIp) {
    reason = RefuseReason::UnauthenticatedLimit;
    LOG_WARN("refused connection from " << peer << ": " << it->second
                                        << " unauthenticated connections already");
  }
  if (reason) refuse(*reason);
  return reason;
}

int Server::Impl::onEstablished(lws* wsi, PerSession* pss) {
  pss->http = nullptr;
  pss->session = &openSession(std::make_unique<LwsConnection>(*this, wsi), clientAddress(wsi));
  adoptLwsUpgradeAuth(wsi, *pss->session);
  return 0;
}

Session& Server::Impl::openSession(std::unique_ptr<Connection> conn, std::string peer) {
  auto owned = std::make_unique<Session>();
  Session& s = *owned;
  s.id = nextId++;
  s.conn = std::move(conn);
  s.peer = std::move(peer);
  s.controlBucket = TokenBucket(config.controlRate, config.controlBurst, nowUs());
  s.countedUnauthenticated = true;
  ++unauthenticatedPerIp[s.peer];
  sessions.emplace(s.id, std::move(owned));
  s.connectedUs = s.lastHeardUs = nowUs();
  if (!netPolicy.admits(s.peer)) {
    // Upgraded only so that the client learns why: closed before any frame
    // of its is read.
    refuse(RefuseReason::Denied);
    LOG_INFO("conn=" << s.id << " refused peer=" << s.peer << ": address not allowed");
    closeSession(s, 1008, "forbidden", true);
    return s;
  }
  ++counters.connectionsAccepted;
  LOG_DEBUG("conn=" << s.id << " connected peer=" << s.peer);
  return s;
}

// One clock read per read from the peer: liveness, the delivery histogram
// and the rate buckets all use it.
void Server::Impl::heardFrom(Session& s) {
  frameArrivalUs = nowUs();
  s.lastHeardUs = frameArrivalUs;
  s.pingSentUs = 0;
}

int Server::Impl::onReceive(Session& s, const char* data, std::size_t len, bool binary,
                            bool final) {
  if (!s.rxActive) {
    s.rxBinary = binary;
    s.rxOversize = false;
    if (final) {
      // The whole message arrived at once: no copy.
      if (len > config.limits.maxFrameBytes) {
        s.rxOversize = true;
        handleMessage(s, {}, s.rxBinary);
      } else {
        handleMessage(s, std::string_view(data, len), s.rxBinary);
      }
      return 0;
    }
    s.rxActive = true;
    s.rx.clear();
  }
  if (!s.rxOversize) {
    if (s.rx.size() + len > config.limits.maxFrameBytes) {
      s.rxOversize = true;
      s.rx.clear();
      s.rx.shrink_to_fit();
    } else {
      s.rx.append(data, len);
    }
  }
  if (final) {
    s.rxActive = false;
    handleMessage(s, s.rx, s.rxBinary);
    s.rx.clear();
    if (s.rx.capacity() > 16 * 1024) s.rx.shrink_to_fit();
  }
  return 0;
}

void Server::Impl::handleMessage(Session& s, std::string_view text, bool binary) {
  ++counters.framesIn;
  counters.bytesIn += text.size();
  const auto record = recorder.inbound(s, text.size(), frameArrivalUs);
  if (s.state == SessionState::Closing) return;
  if (s.rxOversize) {
    s.rxOversize = false;
    ++counters.framesInBy[static_cast<std::size_t>(InFrameKind::TooLarge)];
    sendError(s, proto::ErrorCode::FrameTooLarge,
              "Frame too large (max " + std::to_string(config.limits.maxFrameBytes) + " bytes)",
              std::nullopt);
    return;
  }
  if (binary) {
    ++counters.framesInBy[static_cast<std::size_t>(InFrameKind::Binary)];
    sendError(s, proto::ErrorCode::UnsupportedFrame,
              "Binary frames are not supported; send JSON text frames", std::nullopt);
    return;
  }
  if (s.state == SessionState::Authenticating) {
    if (s.pendingDuringAuth.size() >= config.maxPendingFramesDuringAuth) {
      sendError(s, proto::ErrorCode::RateLimited, "Too many frames while authenticating",
                std::nullopt);
      return;
    }
    s.pendingDuringAuth.emplace_back(text);
    return;
  }

  auto result = proto::decodeNodeFrame(text, s.state == SessionState::Authenticated, config.limits);
  if (auto* err = std::get_if<proto::DecodeError>(&result)) {
    ++counters.framesInBy[static_cast<std::size_t>(InFrameKind::Invalid)];
    if (err->code == proto::ErrorCode::InvalidUtf8) {
      LOG_INFO("conn=" << s.id << " closing: text frame is not valid UTF-8");
      closeSession(s, 1007, "invalid_utf8", true);
      return;
    }
    sendError(s, err->code, err->message, err->id);
    return;
  }
  auto& decoded = std::get<proto::DecodedFrame>(result);
  ++counters.framesInBy[decoded.frame.index()];  // InFrameKind follows the variant order
  handleFrame(s, decoded);
}

bool Server::Impl::takeRate(Session& s, bool messageFrame) {
  bool ok;
  if (messageFrame && config.rateLimit <= 0) {
    ok = true;  // no per-mesh limit: no bucket to find
  } else if (messageFrame) {
    auto [it, inserted] = meshBuckets.try_emplace(s.meshId);
    if (inserted) it->second = TokenBucket(config.rateLimit, config.rateBurst, frameArrivalUs);
    ok = it->second.tryTake(frameArrivalUs);
  } else {
    ok = s.controlBucket.tryTake(frameArrivalUs);
  }
  if (ok) {
    s.refusedInARow = 0;
    return true;
  }
  ++counters.rateLimited;
  ++s.refusedInARow;
  return false;
}

void Server::Impl::handleFrame(Session& s, proto::DecodedFrame& decoded) {
  auto& frame = decoded.frame;
  const auto& id = decoded.id;
  recorder.decoded(static_cast<InFrameKind>(frame.index()), id);
  if (auto* auth = std::get_if<proto::AuthFrame>(&frame)) {
    startAuth(s, *auth, id);
    return;
  }
  const bool message = isMessageFrame(frame);
  if (!takeRate(s, message)) {
    const double burst = message ? config.rateBurst : config.controlBurst;
    sendError(s, proto::ErrorCode::RateLimited,
              message ? "Rate limited: max " + std::to_string(static_cast<long>(config.rateLimit)) +
                            " relay/broadcast frames per second"
                      : "Rate limited: too many control frames",
              id);
    if (static_cast<double>(s.refusedInARow) > burst) {
      LOG_WARN("conn=" << s.id << " meshId=" << s.meshId
                       << " closing: kept sending while rate limited");
      closeSession(s, 1008, "rate_limited", false);
    }
    return;
  }
  std::visit(
      [&](auto& f) {
        using T = std::decay_t<decltype(f)>;
        if constexpr (std::is_same_v<T, proto::DiscoverFrame>) {
          handleDiscover(s, id);
        } else if constexpr (std::is_same_v<T, proto::RelayFrame>) {
          handleRelay(s, f, id);
        } else if constexpr (std::is_same_v<T, proto::BroadcastFrame>) {
          handleBroadcast(s, f, id);
        } else if constexpr (std::is_same_v<T, proto::UpdateRoomsFrame>) {
          router.localRoomsUpdated(s.meshId, f.publicRoomsJson);
        } else if constexpr (std::is_same_v<T, proto::UpdateParticipantsFrame>) {
          router.localParticipantsUpdated(s.meshId, f.participantsJson, f.participantCount);
        } else if constexpr (std::is_same_v<T, proto::ReauthFrame>) {
          handleReauth(s, f, id);
        }
      },
      frame);
}

void Server::Impl::startAuth(Session& s, proto::AuthFrame& auth, std::optional<std::string> id) {
  // Keep what the frame carried: the frame text is gone once we return.
  s.roomsJson.assign(auth.publicRoomsJson.empty() ? std::string_view("[]") : auth.publicRoomsJson);
  s.participantsJson.assign(auth.participantsJson.empty() ? std::string_view("[]")
                                                          : auth.participantsJson);
  s.participantCount = auth.participantCount;
  s.wantsPresence = auth.presence;
  s.authId = std::move(id);
  if (auth.token) {
    // A token decides alone; a secret or resume token beside it is ignored.
    startTokenAuth(s, auth);
    return;
  }

  const bool wellFormedId = proto::isValidMeshId(auth.meshId);
  if (wellFormedId && auth.resumeToken) {
    if (auto name = registry.verifyResumeToken(auth.meshId, *auth.resumeToken, nowMs())) {
      LOG_DEBUG("conn=" << s.id << " resume token accepted meshId=" << auth.meshId);
      finishAuth(s.id, name, auth.meshId);
      return;
    }
  }
  // Past a valid token: an address or mesh that spent its budget of
  // failures is refused before any check of the secret.
  if (const auto verdict = authBudget.verdict(s.peer, auth.meshId, nowUs());
      verdict != AuthBudget::Verdict::Check) {
    refuseAuth(s, auth.meshId, verdict);
    return;
  }
  if (!wellFormedId || !auth.secret) {
    finishAuth(s.id, std::nullopt, auth.meshId);
    return;
  }
  // The keyed verifier answers in microseconds for every mesh that has one
  // (and for unknown meshes); only the others wait for Argon2id.
  auto fast = registry.checkVerifier(auth.meshId, *auth.secret);
  if (fast.outcome != VerifierOutcome::Absent) {
    ++counters.secretChecksByVerifier;
    if (fast.rehash) {
      // The operator raised the Argon2id cost: hash this secret again, once,
      // off the loop (verifySecret does it when the verifier matches).
      workers.post([this, meshId = auth.meshId, secret = *auth.secret]() mutable {
        (void)registry.verifySecret(meshId, secret);
        sodium_memzero(secret.data(), secret.size());
      });
    }
    sodium_memzero(auth.secret->data(), auth.secret->size());
    std::optional<std::string> name;
    if (fast.outcome == VerifierOutcome::Match) name = std::move(fast.name);
    finishAuth(s.id, name, auth.meshId);
    return;
  }
  s.state = SessionState::Authenticating;
  ++counters.argon2Queued;
  // A connection that goes away while its check waits in the queue cancels
  // it: after a relay restart the queue can be long, and hashing for sockets
  // that are gone only delays the ones still waiting.
  s.authCancelled = std::make_shared<std::atomic<bool>>(false);
  secretChecks.push(
      SecretCheck(s.id, s.peer, std::move(auth.meshId), std::move(*auth.secret), s.authCancelled));
  pumpSecretChecks();
}

// Hands queued secret checks to the workers, at most one per worker at a
// time: the queue, not the pool, decides whose turn it is (round robin over
// client addresses), and database writes never wait behind a backlog of
// Argon2id. The job names the session by id because the connection may be
// gone when it finishes.
void Server::Impl::pumpSecretChecks() {
  const unsigned slots = std::max(1u, config.workerThreads);
  while (secretChecksRunning < slots && !secretChecks.empty()) {
    SecretCheck check = std::move(*secretChecks.pop());
    if (check.cancelled->load()) {
      --counters.argon2Queued;
      continue;
    }
    ++secretChecksRunning;
    ++counters.secretChecksByArgon2;
    // Shared: a std::function must be copyable; the secret is wiped when
    // the job is done with it.
    workers.post([this, job = std::make_shared<SecretCheck>(std::move(check))] {
      std::optional<std::string> name;
      const bool checked = !job->cancelled->load();
      if (checked) name = registry.verifySecret(job->meshId, job->secret);
      sodium_memzero(job->secret.data(), job->secret.size());
      post([this, sessionId = job->sessionId, peer = std::move(job->peer),
            meshId = std::move(job->meshId), name = std::move(name), checked,
            done = std::move(job->done)] {
        --counters.argon2Queued;
        --secretChecksRunning;
        if (done) {  // a check for an upgrade request (upgrade_auth.cpp)
          done(name, checked);
          pumpSecretChecks();
          return;
        }
        // A client that hung up while its wrong secret was hashed still
        // spent a guess (finishAuth charges the ones still connected).
        const Session* sp = findSession(sessionId);
        if (checked && !name && (!sp || sp->state == SessionState::Closing)) {
          authBudget.noteFailure(peer, meshId, registry.find(meshId).has_value(), nowUs());
        }
        finishAuth(sessionId, name, meshId);
        pumpSecretChecks();
      });
    });
  }
}

// gateway_auth from an address or for a mesh whose budget of failures is
// spent: refused without a check, and closed (the connection has no other
// use). Not itself a failure: it takes nothing from the budgets.
void Server::Impl::refuseAuth(Session& s, const std::string& meshId, AuthBudget::Verdict why) {
  const bool address = why == AuthBudget::Verdict::AddressSpent;
  ++(address ? counters.authRateLimitedAddress : counters.authRateLimitedMesh);
  LOG_INFO("conn=" << s.id << " auth refused meshId=" << meshId << " peer=" << s.peer << ": "
                   << (address ? "too many failed authentications from this address"
                               : "too many failed authentications for this mesh"));
  recorder.auth(s, meshId, false, nowUs(), proto::ErrorCode::RateLimited);
  s.pendingDuringAuth.clear();
  sendError(s, proto::ErrorCode::RateLimited, "Too many failed authentications; try again later",
            s.authId);
  closeSession(s, 1008, "rate_limited", false);
}

void Server::Impl::finishAuth(std::uint64_t sessionId, const std::optional<std::string>& name,
                              const std::string& meshId) {
  Session* sp = findSession(sessionId);
  if (!sp || sp->state == SessionState::Closing) return;
  Session& s = *sp;
  if (!name) {
    ++counters.authFailed;
    authBudget.noteFailure(s.peer, meshId, registry.find(meshId).has_value(), nowUs());
    recorder.auth(s, meshId, false, nowUs());
    LOG_INFO("conn=" << s.id << " auth failed meshId=" << meshId << " peer=" << s.peer);
    s.pendingDuringAuth.clear();
    sendError(s, proto::ErrorCode::InvalidCredentials, "Invalid credentials", s.authId);
    closeSession(s, 1008, "invalid_credentials", false);
    return;
  }
  // The authorize hook has the last word, once per session.
  if (authorizer && !s.authorized) {
    authorizeThenFinish(s, *name, meshId);
    return;
  }
  if (clusterLink && !clusterLink->mayTakeOver(meshId)) {
    // Two nodes fighting over one meshId on two relays: the mesh moved to
    // another relay less than a second ago and may not move back yet.
    LOG_INFO("conn=" << s.id << " auth refused meshId=" << meshId
                     << ": taken over on another relay less than a second ago");
    recorder.auth(s, meshId, false, nowUs(), proto::ErrorCode::RateLimited);
    s.pendingDuringAuth.clear();
    sendError(s, proto::ErrorCode::RateLimited,
              "This mesh was taken over on another relay less than a second ago; try again later",
              s.authId);
    closeSession(s, 1008, "rate_limited", false);
    return;
  }
  releaseUnauthenticated(s);

  s.state = SessionState::Authenticated;
  s.meshId = meshId;
  s.name = *name;
  ++counters.authOk;
  recorder.auth(s, meshId, true, nowUs());
  LOG_INFO("conn=" << s.id << " auth ok meshId=" << s.meshId << " peer=" << s.peer);

  const auto now = nowMs();
  // A session that came with a signed token gets no resume token: it would
  // outlive the signed one.
  ResumeToken token{};
  if (!s.authByToken) {
    token = registry.issueResumeToken(s.meshId, now, config.resumeTokenTtlSeconds * 1000);
  }
  registry.noteSeen(s.meshId, now);
  schedulePersist();
  const std::string expires = token.token.empty() ? std::string() : isoTimeMs(token.expiresAtMs);
  enqueue(s, makeFrame([&](std::string& out) {
            proto::encodeAuthOk(out, {s.meshId, s.name, token.token, expires, s.authId});
          }));
  s.authId.reset();

  // Into the routing table: a connection that held this mesh is replaced
  // (replaced() below), then the participants exchange and presence.
  MeshInfo info;
  info.meshId = s.meshId;
  info.name = s.name;
  info.roomsJson = std::move(s.roomsJson);
  info.participantsJson = std::move(s.participantsJson);
  info.participantCount = s.participantCount;
  info.wantsPresence = s.wantsPresence;
  s.inRoutingTable = true;
  if (router.localOnline(std::move(info), &s)) ++counters.takeovers;

  // Frames that arrived while the secret was being checked.
  auto pending = std::move(s.pendingDuringAuth);
  s.pendingDuringAuth.clear();
  frameArrivalUs = nowUs();
  for (const auto& text : pending) {
    if (s.state != SessionState::Authenticated) break;
    handleMessage(s, text, false);
  }
}

void Server::Impl::handleRelay(Session& s, const proto::RelayFrame& f,
                               const std::optional<std::string>& id) {
  std::string filtered;
  std::string_view payload = f.payloadJson;
  if (config.payloadFilter == PayloadFilter::MeshChat) {
    filtered = proto::filterMeshChatPayload(payload);
    payload = filtered;
  }
  const auto result =
      router.relay({s.meshId, s.name, &s}, f.targetMeshId, payload, id, frameArrivalUs, [&] {
        // The target is on another relay: the ack waits for its answer.
        return RelayAnswer([this, sessionId = s.id, id](RelayOutcome outcome) {
          if (Session* sp = findSession(sessionId)) {
            relayAnswered(*sp, id, outcome);
          } else {
            countRelay(outcome);  // the sender is gone: nobody to ack
          }
        });
      });
  if (!result.outcome) return;
  recorder.relayed(s, f.targetMeshId, static_cast<Session*>(result.to), f.payloadJson.size(),
                   frameArrivalUs);
  relayAnswered(s, id, *result.outcome);
}

void Server::Impl::relayAnswered(Session& s, const std::optional<std::string>& id,
                                 RelayOutcome outcome) {
  countRelay(outcome);
  if (s.state != SessionState::Authenticated) return;
  if (outcome == RelayOutcome::Unavailable) {
    // Never a silent drop: the node learns the frame did not go, with or
    // without an id, and may retry later or elsewhere.
    sendError(s, proto::ErrorCode::ClusterUnavailable,
              "The relay holding the target cannot be reached; try again later", id);
    return;
  }
  if (!id) return;
  const bool delivered = outcome == RelayOutcome::Delivered;
  enqueue(s, makeFrame([&](std::string& out) {
            proto::encodeAck(out, *id,
                             delivered ? proto::AckStatus::Delivered : proto::AckStatus::Offline,
                             delivered ? 1 : 0);
          }));
}

void Server::Impl::countRelay(RelayOutcome outcome) {
  if (outcome == RelayOutcome::Delivered) {
    ++counters.relaysDelivered;
  } else if (outcome == RelayOutcome::Offline) {
    ++counters.relaysOffline;
  }
}

void Server::Impl::handleBroadcast(Session& s, const proto::BroadcastFrame& f,
                                   const std::optional<std::string>& id) {
  std::string filtered;
  std::string_view payload = f.payloadJson;
  if (config.payloadFilter == PayloadFilter::MeshChat) {
    filtered = proto::filterMeshChatPayload(payload);
    payload = filtered;
  }
  const auto result = router.broadcast({s.meshId, s.name, &s}, payload, id, frameArrivalUs, [&] {
    // Other relays were asked too: the ack waits for their count.
    return CountAnswer([this, sessionId = s.id, id](std::uint32_t recipients) {
      Session* sp = findSession(sessionId);
      if (!id || !sp || sp->state != SessionState::Authenticated) return;
      enqueue(*sp, makeFrame([&](std::string& out) {
        proto::encodeAck(out, *id, proto::AckStatus::Delivered, recipients);
      }));
    });
  });
  counters.broadcastRecipients += result.localRecipients;
  recorder.broadcast(result.localRecipients);
  if (id && !result.pending)
    enqueue(s, makeFrame([&](std::string& out) {
              proto::encodeAck(out, *id, proto::AckStatus::Delivered, result.localRecipients);
            }));
}

void Server::Impl::handleDiscover(Session& s, const std::optional<std::string>& id) {
  router.discover(&s, id);
}

// Encoded once, shared by every recipient.
void Server::Impl::deliver(std::span<const LocalConn> to, Encoder encode, std::int64_t arrivalUs) {
  if (to.empty()) return;
  const OutFramePtr frame = makeFrame(encode, arrivalUs);
  for (LocalConn conn : to) enqueue(*static_cast<Session*>(conn), frame);
}

void Server::Impl::replaced(LocalConn conn) {
  Session& old = *static_cast<Session*>(conn);
  LOG_INFO("conn=" << old.id << " meshId=" << old.meshId << " replaced by a newer connection");
  old.inRoutingTable = false;
  sendError(old, proto::ErrorCode::SessionReplaced, "Another connection authenticated as this mesh",
            std::nullopt);
  closeSession(old, 4000, "session_replaced", false);
}

void Server::Impl::sendError(Session& s, proto::ErrorCode code, std::string_view message,
                             const std::optional<std::string>& id) {
  std::optional<std::string_view> idView;
  if (id) idView = *id;
  recorder.error(s, code, id, nowUs());
  enqueue(s, makeFrame([&](std::string& out) { proto::encodeError(out, code, message, idView); }));
}

void Server::Impl::enqueue(Session& s, const OutFramePtr& frame) {
  if (s.state == SessionState::Closing || s.peerClosed) return;
  const std::size_t size = frame->textSize();
  if (s.queuedBytes + size > config.maxSendQueueBytes) {
    ++counters.slowConsumers;
    recorder.slowConsumer(s, *frame, nowUs());
    LOG_WARN("conn=" << s.id << " meshId=" << s.meshId << " closing: slow consumer ("
                     << s.queuedBytes << " bytes queued)");
    // The backlog is dropped; the node still learns why (PROTOCOL.md).
    closeSession(s, 1013, "slow_consumer", true, makeFrame([&](std::string& out) {
                   proto::encodeError(out, proto::ErrorCode::SlowConsumer,
                                      "Send queue full: the connection read too slowly",
                                      std::nullopt);
                 }));
    return;
  }
  queueFrame(s, frame);
}

// Queues without the checks of enqueue() (the close frame goes on a closing
// session) and has the session written at the end of this loop turn.
void Server::Impl::queueFrame(Session& s, OutFramePtr frame) {
  s.queuedBytes += frame->textSize();
  s.queue.push(std::move(frame));
  if (s.flushPending) return;
  s.flushPending = true;
  dirty.push_back(&s);
}

// The end of a loop turn (run() calls this before the loop waits again):
// every session that got frames in it writes them now, straight from here
// rather than from a POLLOUT round trip (which costs two epoll_ctl calls and
// a wakeup per burst). A socket that does not take everything waits for
// POLLOUT (WRITEABLE callbacks on lws connections).
void Server::Impl::flushDirty() {
  std::vector<Session*> batch;
  // flush() can close sessions, which can queue frames on others: take the
  // list first, and again until nothing is left.
  while (!dirty.empty()) {
    batch.swap(dirty);
    for (Session* s : batch) {
      s->flushPending = false;
      flush(*s);
    }
    batch.clear();
  }
  // Keep the larger allocation for the next turn.
  if (batch.capacity() > dirty.capacity()) dirty.swap(batch);
}

void Server::Impl::flush(Session& s) {
  if (!s.queue.empty()) s.conn->flush(s);
}

// The first `count` queued frames as one buffer. A broadcast queues the same
// frames on every recipient, so the buffer is built once for all of them.
const std::string& Server::Impl::coalesce(const Session& s, std::size_t count) {
  Coalesced& c = coalesced;
  bool same = c.serials.size() == count;
  for (std::size_t i = 0; same && i < count; ++i) same = c.serials[i] == s.queue.at(i)->serial;
  if (same) return c.bytes;
  c.serials.clear();
  c.bytes.clear();
  for (std::size_t i = 0; i < count; ++i) {
    const OutFrame& f = *s.queue.at(i);
    c.serials.push_back(f.serial);
    c.bytes.append(f.wire(), f.wireSize());
  }
  return c.bytes;
}

// Accounting for a frame that left the queue for the socket. `now` is read
// once per write, and only when needed.
void Server::Impl::frameWritten(Session& s, const OutFramePtr& frame, std::int64_t& now) {
  const std::size_t size = frame->textSize();
  s.queuedBytes -= size;
  ++counters.framesOut;
  counters.bytesOut += size;
  ++counters.framesOutBy[frame->kind];
  // Only this write's copy is left: the frame's last recipient got it.
  if (frame->arrivalUs != 0 && frame.use_count() == 1) {
    if (now == 0) now = nowUs();
    counters.deliverySeconds.observe(static_cast<double>(now - frame->arrivalUs) / 1e6);
  }
  if (frame->isClose) {
    // Our close frame is out: the peer answers with its own or hangs up.
    // One that does neither is dropped soon.
    s.closeDeadlineUs = std::min(s.closeDeadlineUs, nowUs() + kCloseAnswerUs);
  }
}

void Server::Impl::closeSession(Session& s, int code, std::string_view reason, bool dropQueue,
                                OutFramePtr lastWords) {
  if (s.state == SessionState::Closing) return;
  if (s.authCancelled) s.authCancelled->store(true);
  detach(s, s.state == SessionState::Authenticated);
  releaseUnauthenticated(s);
  LOG_INFO("conn=" << s.id << (s.meshId.empty() ? "" : " meshId=") << s.meshId << " closing "
                   << code << " " << reason);
  s.state = SessionState::Closing;
  s.closeCode = code;
  s.closeReason.assign(reason);
  s.pendingDuringAuth.clear();
  if (dropQueue) dropQueued(s);
  if (lastWords) queueFrame(s, std::move(lastWords));
  // The close frame goes out behind whatever is queued, written by the relay
  // like every other frame: lws's own close handshake keeps waiting for the
  // peer's answer even after the peer has hung up.
  std::string payload{static_cast<char>((code >> 8) & 0xff), static_cast<char>(code & 0xff)};
  payload.append(reason.substr(0, 123));
  queueFrame(s, makeControlFrame(OutFrame::kClose, payload));
  // A peer that never reads never lets us write the close frame: give up on
  // it after a while (sweepSessions; an lws timeout per connection costs a
  // scan of lws's timer list each, which a mass close cannot afford).
  const double grace = dropQueue ? 2.0 : config.drainTimeoutSeconds + 1.0;
  s.closeDeadlineUs = nowUs() + static_cast<std::int64_t>(grace * 1e6);
}

// Empties the queue, but a frame already half written stays: the rest of it
// must follow before anything else can.
void Server::Impl::dropQueued(Session& s) {
  OutFramePtr started;
  if (!s.queue.empty() && s.conn->frontFrameStarted()) started = s.queue.front();
  s.queue.clear();
  s.queuedBytes = 0;
  if (started) queueFrame(s, std::move(started));
}

void Server::Impl::releaseUnauthenticated(Session& s) {
  if (!s.countedUnauthenticated) return;
  s.countedUnauthenticated = false;
  auto it = unauthenticatedPerIp.find(s.peer);
  if (it != unauthenticatedPerIp.end() && --it->second == 0) unauthenticatedPerIp.erase(it);
}

void Server::Impl::detach(Session& s, bool announce) {
  if (!s.inRoutingTable) return;
  s.inRoutingTable = false;
  router.localOffline(s.meshId, &s, announce);
}

void Server::Impl::onAuthTimeout(Session& s) {
  ++counters.authTimeouts;
  LOG_INFO("conn=" << s.id << " auth timeout peer=" << s.peer);
  sendError(s, proto::ErrorCode::AuthTimeout, "Auth timeout", std::nullopt);
  closeSession(s, 1008, "auth_timeout", false);
}

void Server::Impl::onClosed(PerSession* pss) {
  if (!pss || !pss->session) return;
  Session& s = *pss->session;
  pss->session = nullptr;
  onClosed(s);
}

void Server::Impl::killSession(Session& s) {
  s.conn->kill(s);
}

void Server::Impl::onClosed(Session& s) {
  if (s.authCancelled) s.authCancelled->store(true);
  if (s.flushPending) {
    dirty.erase(std::find(dirty.begin(), dirty.end(), &s));
    s.flushPending = false;
  }
  if (s.state != SessionState::Closing) {
    detach(s, s.state == SessionState::Authenticated);
    releaseUnauthenticated(s);
    LOG_INFO("conn=" << s.id << (s.meshId.empty() ? "" : " meshId=") << s.meshId
                     << " disconnected by peer");
  }
  sessions.erase(s.id);
}

// One pass over every connection per tick: auth deadlines, pings to quiet
// peers, and dropping peers that did not answer one. A timer per connection
// would cost a sorted insert into lws's timer list for every one of them.
void Server::Impl::sweepSessions() {
  // One byte of payload: lws reports a pong to the protocol only when it has
  // one.
  static const OutFramePtr ping = makeControlFrame(OutFrame::kPing, "k");
  const std::int64_t now = nowUs();
  const auto authLimit = static_cast<std::int64_t>(config.authTimeoutSeconds * 1e6);
  const auto quietLimit = static_cast<std::int64_t>(config.pingIntervalSeconds) * 1'000'000;
  const auto answerLimit = static_cast<std::int64_t>(config.pingTimeoutSeconds) * 1'000'000;
  std::vector<Session*> late;
  std::vector<Session*> silent;
  std::vector<Session*> expired;
  for (auto& [id, owned] : sessions) {
    Session& s = *owned;
    if (s.state == SessionState::Closing) {
      if (now >= s.closeDeadlineUs) expired.push_back(&s);
      continue;
    }
    if (s.peerClosed) continue;
    if (s.queue.empty()) s.queue.release();
    // The timeout is for a node that has not sent gateway_auth: one whose
    // secret is waiting for Argon2 is waiting for us, and closing it would
    // only make it reconnect and queue again.
    if (s.state == SessionState::Unauthenticated && now - s.connectedUs >= authLimit) {
      late.push_back(&s);
    } else if (s.pingSentUs != 0) {
      if (now - s.pingSentUs >= answerLimit) silent.push_back(&s);
    } else if (quietLimit > 0 && now - s.lastHeardUs >= quietLimit) {
      s.pingSentUs = now;
      enqueue(s, ping);
    }
  }
  for (Session* s : late) onAuthTimeout(*s);
  for (Session* s : silent) {
    LOG_INFO("conn=" << s->id << (s->meshId.empty() ? "" : " meshId=") << s->meshId
                     << " dropped: no answer to a ping");
    detach(*s, s->state == SessionState::Authenticated);
    releaseUnauthenticated(*s);
    s->state = SessionState::Closing;
    s->peerClosed = true;
    s->queue.clear();
    s->queuedBytes = 0;
    expired.push_back(s);
  }
  for (Session* s : expired) killSession(*s);
  sweepUpgrades(now);
  recorder.expire(now);
  probeDatabase(now);
}

void Server::Impl::schedulePersist() {
  if (persist.scheduled) return;
  persist.scheduled = true;
  startPersist();
}

void Server::Impl::startPersist() {
  workers.post([this] {
    std::optional<std::string> error;
    try {
      registry.persistPending();
    } catch (const std::exception& e) {
      error = e.what();
    }
    post([this, error = std::move(error)]() mutable { persistFinished(std::move(error)); });
  });
}

namespace {

// A save that failed is tried again after kPersistFirstRetryUs, then twice as
// long each time up to kPersistMaxRetryUs; what was pending stays pending.
// A failure that repeats is logged once per kPersistReportUs, with a count.
constexpr std::int64_t kPersistFirstRetryUs = 250'000;
constexpr std::int64_t kPersistMaxRetryUs = 10'000'000;
constexpr std::int64_t kPersistReportUs = 30'000'000;

void persistRetry(lws_sorted_usec_list_t* sul) {
  reinterpret_cast<LoopTimer*>(sul)->owner->startPersist();
}

}  // namespace

void Server::Impl::persistFinished(std::optional<std::string> error) {
  if (!error) {
    if (persist.failures > 0) {
      LOG_WARN("saving resume tokens works again after " << persist.failures << " failed attempts");
    }
    persist = PersistState{};
    if (registry.hasPending()) schedulePersist();
    return;
  }
  ++persist.failures;
  ++persist.unreported;
  persist.retryDelayUs = persist.retryDelayUs == 0
                             ? kPersistFirstRetryUs
                             : std::min(persist.retryDelayUs * 2, kPersistMaxRetryUs);
  const std::int64_t now = nowUs();
  if (persist.failures == 1 || now - persist.reportedUs >= kPersistReportUs) {
    LOG_ERROR("saving resume tokens failed"
              << (persist.failures == 1
                      ? std::string()
                      : " " + std::to_string(persist.unreported) + " times since the last report")
              << " (retrying in " << persist.retryDelayUs / 1000 << " ms): " << *error);
    persist.reportedUs = now;
    persist.unreported = 0;
  }
  persistTimer.owner = this;
  lws_sul_schedule(context, 0, &persistTimer.sul, persistRetry, persist.retryDelayUs);
}

}  // namespace mesh::relay
