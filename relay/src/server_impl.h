// Internals of Server, shared by server.cpp (lifecycle and libwebsockets
// glue), gateway.cpp (WebSocket frames) and http.cpp (HTTP routes).
//
// Thread rules: everything here belongs to the loop thread except `inbox`
// (any thread, under inboxMutex), `stopRequested` (atomic), `registry`
// (thread-safe by itself) and `workers`.
#pragma once

#include <ev.h>
#include <libwebsockets.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <variant>
#include <vector>

#include "auth_guard.h"
#include "authorize.h"
#include "cluster_link.h"
#include "counters.h"
#include "mesh/proto/codec.h"
#include "mesh/relay/config.h"
#include "mesh/relay/server.h"
#include "metrics.h"
#include "net_policy.h"
#include "rate_limiter.h"
#include "recorder.h"
#include "registry.h"
#include "router.h"
#include "session.h"
#include "token_auth.h"
#include "worker_pool.h"

namespace mesh::relay {

class ClusterRegistry;

// One HTTP request/response on a connection.
struct HttpExchange {
  std::uint64_t id = 0;
  lws* wsi = nullptr;
  std::string method;
  std::string path;
  std::string peer;
  std::string authorization;
  std::string body;
  bool bodyTooLarge = false;
  // Routed once: lws may still report a body completion (even an empty
  // one) after a request that was routed or answered straight away.
  bool routed = false;
  // Response, written from HTTP_WRITEABLE: headers first, then the body.
  const char* contentType = "application/json";  // a string literal
  int status = 0;
  std::string response;
  bool headersSent = false;
  bool closeAfter = false;
};

// A loop timer that knows its owner: the sul is the first member, so the
// pointer lws hands back converts to the whole struct.
struct LoopTimer {
  lws_sorted_usec_list_t sul{};
  Server::Impl* owner = nullptr;
};

// What lws keeps per connection: zeroed C memory, pointers only.
struct PerSession {
  Session* session;
  HttpExchange* http;
};

// Bytes of frames put together into one write, at most (lws sends up to the
// protocol's tx_packet_size per call; server.cpp sets it above this).
inline constexpr std::size_t kWriteBatchBytes = 64 * 1024;

// The server is the Router's LocalDelivery: it frames and queues on its own
// sessions (gateway.cpp).
struct Server::Impl final : LocalDelivery {
  explicit Impl(const Config& cfg);
  ~Impl() override;

  // ---- lifecycle (server.cpp)
  int run();
  void requestStop();
  // Closes the listener and plain sockets, then lws's context and the loop.
  void releaseLoop();
  void post(std::function<void()> fn);  // any thread -> loop
  void drainInbox();
  void beginShutdown();
  void finishIfDrained();  // run() asks once a turn while shutting down
  void startCluster();     // cluster mode: the link to the other relays
  static int callback(lws* wsi, lws_callback_reasons reason, void* user, void* in, size_t len);
  int dispatch(lws* wsi, lws_callback_reasons reason, PerSession* pss, void* in, size_t len);
  [[nodiscard]] std::int64_t nowUs() const;
  [[nodiscard]] std::int64_t nowMs() const;
  static std::string peerAddress(lws* wsi);

  // ---- WebSocket (gateway.cpp)
  int onFilterProtocol(lws* wsi);
  // Why a WebSocket from `peer` may not open now, if it may not.
  [[nodiscard]] std::optional<RefuseReason> gatewayRefusal(const std::string& peer);
  int onEstablished(lws* wsi, PerSession* pss);
  // A new session for an upgraded connection, carried by `conn` (a
  // PlainConnection, which the caller starts, or an LwsConnection).
  Session& openSession(std::unique_ptr<Connection> conn, std::string peer);
  // One piece of a message: `binary` is read for a message's first piece,
  // `final` ends the message.
  int onReceive(Session& s, const char* data, std::size_t len, bool binary, bool final);
  void heardFrom(Session& s);  // anything arrived from the peer, now
  void onClosed(PerSession* pss);
  void onClosed(Session& s);  // frees the session
  // Closes the connection at once, without a close frame; frees the session.
  void killSession(Session& s);
  void onAuthTimeout(Session& s);
  void sweepSessions();  // auth timeouts and keepalive pings, once a tick
  void handleMessage(Session& s, std::string_view text, bool binary);
  void handleFrame(Session& s, proto::DecodedFrame& frame);
  void startAuth(Session& s, proto::AuthFrame& auth, std::optional<std::string> id);
  void finishAuth(std::uint64_t sessionId, const std::optional<std::string>& name,
                  const std::string& meshId);
  void pumpSecretChecks();
  void refuseAuth(Session& s, const std::string& meshId, AuthBudget::Verdict why);
  void handleRelay(Session& s, const proto::RelayFrame& f, const std::optional<std::string>& id);
  void handleBroadcast(Session& s, const proto::BroadcastFrame& f,
                       const std::optional<std::string>& id);
  // Counts the outcome of a relay (here, or the answer of another relay)
  // and acks it to its sender when it carried an id.
  void relayAnswered(Session& s, const std::optional<std::string>& id, RelayOutcome outcome);
  void countRelay(RelayOutcome outcome);
  void handleDiscover(Session& s, const std::optional<std::string>& id);
  // LocalDelivery: a LocalConn is a Session*.
  void deliver(std::span<const LocalConn> to, Encoder encode, std::int64_t arrivalUs) override;
  void replaced(LocalConn conn) override;
  void sendError(Session& s, proto::ErrorCode code, std::string_view message,
                 const std::optional<std::string>& id);
  bool takeRate(Session& s, bool messageFrame);
  void enqueue(Session& s, const OutFramePtr& frame);
  void queueFrame(Session& s, OutFramePtr frame);
  void flush(Session& s);  // one Connection::flush() per session and turn
  void flushDirty();
  // Accounting for a frame the connection has handed to the socket.
  void frameWritten(Session& s, const OutFramePtr& frame, std::int64_t& now);
  // `lastWords` (an error frame) goes out right before the close frame.
  void closeSession(Session& s, int code, std::string_view reason, bool dropQueue,
                    OutFramePtr lastWords = nullptr);
  void detach(Session& s, bool announce);
  void releaseUnauthenticated(Session& s);
  void dropQueued(Session& s);
  // Resume tokens and last-seen times are saved by a worker, one save at a
  // time; a failed save is retried after a growing delay (persistFinished).
  void schedulePersist();
  void startPersist();
  void persistFinished(std::optional<std::string> error);
  Session* findSession(std::uint64_t id);

  // ---- signed tokens in gateway_auth and gateway_reauth (token_gateway.cpp)
  void startTokenAuth(Session& s, proto::AuthFrame& auth);
  // Verifies and answers; `mayWait`: an unknown kid may wait for the JWKS
  // fetch it caused, once.
  void checkToken(Session& s, const std::string& token, const std::string& claimedMeshId,
                  bool mayWait);
  // The relay's rules once a token verified (any way of presenting one
  // calls this after TokenAuthority::verify): a meshId the node claimed
  // must be the token's, and the mesh must be registered, or is registered
  // now with --jwt-auto-register (by a worker). `done` runs on the loop,
  // now or later, with the mesh's name or the refusal.
  using TokenAdmission = std::variant<std::string, jwt::Refusal>;
  using TokenAdmitted = std::function<void(const VerifiedToken&, const TokenAdmission&)>;
  void admitToken(const VerifiedToken& verified, const std::string& claimedMeshId,
                  TokenAdmitted done);
  // mesh_relay_token_refusals_total{reason}: every refused token counts once.
  void countTokenRefusal(jwt::Refusal why);
  void refuseToken(Session& s, jwt::Refusal why, std::string_view detail,
                   const std::string& meshId);
  void acceptToken(Session& s, const VerifiedToken& token, std::string name);
  void handleReauth(Session& s, const proto::ReauthFrame& f, const std::optional<std::string>& id);
  // The session lasts until the token's exp (plus the leeway).
  void setTokenClock(Session& s, std::int64_t expiresAtSeconds);
  void tokenTick();  // warnings and closes of sessions whose token runs out
  void renderTokenMetrics(MetricsWriter& w) const;
  void reloadJwksNow();
  [[nodiscard]] std::int64_t unixSeconds() const { return nowMs() / 1000; }

  // ---- WebSocket on plain TCP, served without lws: the listener
  // (plain_listener.cpp), the request head and upgrade (plain_upgrade.cpp),
  // the frame reader (plain_reader.cpp) and batched writes (plain_writer.cpp)
  // A connection whose request is still being read.
  struct Upgrade {
    ev_io io{};
    int fd = -1;
    std::string head;        // the request as read so far
    std::string socketPeer;  // the TCP peer's address
    std::int64_t startedUs = 0;
    // Counted in unauthenticatedPerIp under socketPeer (from accept until
    // it is handed on or dropped).
    bool counted = false;
    // Credentials on the request being checked (upgrade_auth.cpp): set if
    // the upgrade is dropped meanwhile. Counted under the client's address
    // (checkPeer) until the answer.
    std::shared_ptr<std::atomic<bool>> checkCancelled;
    std::string checkPeer;
  };
  void openListener();
  void servePlainOnThisThread();  // run() calls it before turning the loop
  void closeListener();           // and closes every plain socket still open
  void onAccept();
  void onUpgradeReadable(Upgrade& u);
  void finishUpgrade(Upgrade& u);
  // Answers 101 and makes the connection a session; null if the client is
  // gone (the upgrade is dropped) or the session closed. `beforeEarly` runs
  // on the new session before the frames that followed the request
  // (`early`) are handled.
  Session* upgradeToSession(Upgrade& u, std::string peer, std::string_view key, std::string host,
                            std::string early,
                            const std::function<void(Session&)>& beforeEarly = {});
  void handOverToLws(Upgrade& u);
  void dropUpgrade(Upgrade& u, std::string_view response);
  // Answers `status` (400, 414, 431) to a request not served and closes.
  void refuseRequest(Upgrade& u, int status);
  void releaseHandshake(Upgrade& u);  // it no longer counts toward its address
  void sweepUpgrades(std::int64_t now);

  // ---- credentials on the upgrade request, the authorize hook
  // (upgrade_auth.cpp)
  struct UpgradeVerdict {
    enum class Kind { Ok, Invalid, RateLimited };
    Kind kind = Kind::Invalid;
    std::string meshId;
    std::string name;                       // Ok: the mesh's registered name
    std::optional<std::string> token;       // Ok by Bearer: the JWT, for the hook
    std::optional<VerifiedToken> verified;  // Ok by Bearer: what it proved
  };
  using UpgradeDone = std::function<void(UpgradeVerdict)>;
  // Checks an Authorization header from `peer` as gateway_auth would check
  // the same credentials (budgets of failures, keyed verifier, Argon2id on
  // the workers). `done` runs on the loop, possibly before this returns;
  // not at all if `cancelled` is set before the check ran.
  void checkUpgradeCredentials(const std::string& peer, std::string authorization,
                               std::shared_ptr<std::atomic<bool>> cancelled, UpgradeDone done);
  void upgradeCheckFailed(const std::string& peer, const std::string& meshId, UpgradeDone& done);
  // Authorization: Bearer: verified as a token in gateway_auth is; `mayWait`
  // as for checkToken (an unknown kid may wait for the JWKS fetch, once).
  void checkUpgradeToken(const std::string& peer, std::string token, UpgradeDone done,
                         bool mayWait);
  // TLS (lws): from HTTP_CONFIRM_UPGRADE; 0 lets the upgrade go on, -1 when
  // a 401 or 429 was written and the connection is to close.
  int checkLwsUpgrade(lws* wsi);
  void lwsUpgradeChecked(std::uint64_t checkId, UpgradeVerdict verdict);
  // ESTABLISHED: the session takes over its upgrade's check (or starts one
  // for an upgrade lws did not confirm, a WebSocket inside HTTP/2).
  void adoptLwsUpgradeAuth(lws* wsi, Session& s);
  void forgetLwsUpgradeAuth(lws* wsi);  // WSI_DESTROY
  // Plain sockets: the 101 (or the 401/429) waits for the check; nothing is
  // read from the socket meanwhile. `early` is what followed the request.
  void awaitUpgradeCredentials(Upgrade& u, std::string peer, std::string key, std::string host,
                               std::string authorization, std::string early);
  void abandonUpgradeCheck(Upgrade& u);  // dropUpgrade: the answer is not wanted
  // The session of an upgrade whose credentials were checked: authenticated
  // now (gateway_auth_ok is its first frame), or told why not and closed.
  void applyUpgradeVerdict(Session& s, UpgradeVerdict verdict);
  // The hook (finishAuth calls it once the credentials are right).
  void authorizeThenFinish(Session& s, const std::string& name, const std::string& meshId);
  void authorizeAnswered(std::uint64_t sessionId, const std::string& name,
                         const std::string& meshId, std::string cacheKey, AuthorizeAnswer answer);
  void acceptAuthorized(Session& s, const std::string& name, const std::string& meshId,
                        const std::string& answeredMeshId, std::string claimsJson);
  void refuseAuthorization(Session& s, const std::string& meshId, proto::ErrorCode code,
                           const std::string& message);

  // ---- HTTP (http.cpp)
  int onHttp(lws* wsi, PerSession* pss, const char* uri);
  // An upgrade request (LWS_CALLBACK_HTTP_CONFIRM_UPGRADE): 0 lets a
  // WebSocket on /gateway go on; anything else is answered and closed.
  int onHttpUpgrade(lws* wsi, const char* upgrade);
  int onHttpBody(PerSession* pss, const char* data, std::size_t len);
  int onHttpBodyComplete(PerSession* pss);
  int onHttpWriteable(lws* wsi, PerSession* pss);
  void onHttpClosed(PerSession* pss);
  void route(HttpExchange& ex);
  void handleRegister(HttpExchange& ex);
  void respond(HttpExchange& ex, int status, std::string body);
  void respondLater(std::uint64_t exchangeId, int status, std::string body);

  // ---- operators: client addresses (access.cpp), TLS (tls.cpp), metrics
  // and admin routes (admin.cpp)
  [[nodiscard]] std::string clientAddress(lws* wsi) const;
  // TLS: lws accepted `fd` (FILTER_NETWORK_CONNECTION); 1 refuses it.
  int onNetworkConnection(int fd);
  void onWsiCreated(lws* wsi);  // WSI_CREATE: counts the connection just let in
  // The connection (its network wsi) no longer counts toward its address:
  // its request head is read, or it is gone.
  void releaseHandshake(lws* wsi);
  void refuse(RefuseReason reason);
  void reloadTlsNow();
  bool routeOperator(HttpExchange& ex);  // true when the path was one of ours
  bool routeStatus(HttpExchange& ex);    // GET /status and its files (status.cpp)
  [[nodiscard]] std::string renderMetrics() const;
  // A database write probe on a worker every kDatabaseProbeUs (admin.cpp).
  void probeDatabase(std::int64_t now);
  std::int64_t nextDatabaseProbeUs = 0;
  void closeMeshSessions(const std::string& meshId, std::string_view reason);
  void rotateSecret(HttpExchange& ex, const std::string& meshId, std::string newSecret,
                    std::optional<std::string> currentSecret, bool reveal);
  // Cluster mode: the shared registry (cluster_registry.h, admin.cpp); null
  // for a single relay.
  void startClusterRegistry();
  // "registry":{...} for /readyz: bucket reachable, caught up, revision lag.
  [[nodiscard]] std::string registryReadiness() const;
  std::unique_ptr<ClusterRegistry> clusterRegistry;

  Config config;
  Registry registry;
  WorkerPool workers;
  struct ev_loop* evLoop = nullptr;  // libev on epoll; lws runs on it
  void* foreignLoops[1] = {nullptr};
  lws_context* context = nullptr;
  lws_vhost* vhost = nullptr;
  std::vector<lws_protocols> protocols;
  std::uint16_t boundPort = 0;

  std::mutex inboxMutex;
  std::vector<std::function<void()>> inbox;  // guarded by inboxMutex
  std::atomic<bool> stopRequested{false};

  // Loop-thread state.
  std::uint64_t nextId = 1;
  std::unordered_map<std::uint64_t, std::unique_ptr<Session>> sessions;
  // Who is online where: authenticated meshes, presence, participants.
  NoClusterLink noCluster;
  Router router{*this, noCluster};
  // Cluster mode (config.natsUrls set): the Router's link to the other
  // relays, made when the loop starts (server.cpp).
  std::unique_ptr<NatsClusterLink> clusterLink;
  std::unordered_map<std::string, TokenBucket> meshBuckets;
  std::unordered_map<std::string, unsigned> unauthenticatedPerIp;
  std::unordered_map<std::string, TokenBucket> registerBuckets;
  // Failed authentications per address and per meshId, and the secret
  // checks waiting for Argon2id (auth_guard.h).
  AuthBudget authBudget;
  FairCheckQueue secretChecks;
  unsigned secretChecksRunning = 0;  // handed to the workers, answer not back
  std::unordered_map<std::uint64_t, std::unique_ptr<HttpExchange>> exchanges;
  struct PersistState {
    bool scheduled = false;         // a save is running or waiting for its retry
    std::int64_t retryDelayUs = 0;  // 0 while saves work
    std::uint64_t failures = 0;     // in a row, since the last save that worked
    std::uint64_t unreported = 0;   // failures not logged yet
    std::int64_t reportedUs = 0;    // when a failure was last logged
  } persist;
  LoopTimer persistTimer;
  bool shuttingDown = false;
  bool loopDone = false;
  std::int64_t drainDeadlineUs = 0;
  LoopTimer sweepTimer;
  // Sessions with frames queued in this loop turn; written at its end, several
  // frames per write, without waiting for POLLOUT (see flushDirty).
  std::vector<Session*> dirty;
  LoopTimer livenessTimer;
  // A frame copied for lws_write() to put its header in front (HTTP/2).
  std::vector<unsigned char> writeScratch;
  // Several queued frames leave as one contiguous buffer; the last one built
  // is kept for the next recipient (see coalesce()).
  struct Coalesced {
    std::vector<std::uint64_t> serials;  // of the frames in it (OutFrame::serial)
    std::string bytes;
  } coalesced;
  const std::string& coalesce(const Session& s, std::size_t count);

  // Plain TCP (no TLS): the relay listens itself, serves /gateway WebSockets
  // and hands every other connection to lws (plain_listener.cpp).
  int listenFd = -1;
  ev_io listenIo{};
  ev_timer acceptPause{};  // out of file descriptors: accept again later
  std::unordered_map<Upgrade*, std::unique_ptr<Upgrade>> upgrades;
  // TLS: connections lws accepted whose request head is not read yet, each
  // counted in unauthenticatedPerIp under its peer (access.cpp).
  struct TlsHandshake {
    std::string peer;
    std::int64_t startedUs = 0;
  };
  std::unordered_map<lws*, TlsHandshake> tlsHandshakes;
  std::string pendingHandshakePeer;  // between FILTER_NETWORK_CONNECTION and WSI_CREATE
  std::vector<char> readBuffer;
  Counters counters;
  Recorder recorder{config.recorderFrames};  // the last frames of every mesh

  NetPolicy netPolicy;
  // The vhost's OpenSSL SSL_CTX, handed over by lws while the context is
  // created (TLS only). Certificates are swapped on it in place.
  void* tlsContext = nullptr;
  std::int64_t startTimeMs = 0;  // unix ms, for the start-time metric
  // Loop thread: when the node frame being handled arrived (steady us).
  std::int64_t frameArrivalUs = 0;

  // Signed tokens: the key sources and the one verify() the gateway (and
  // any other way of presenting a token) calls; sessions that authenticated
  // with one, by id, watched by tokenTimer while there are any.
  std::unique_ptr<TokenAuthority> tokens;
  std::unordered_set<std::uint64_t> tokenSessions;
  LoopTimer tokenTimer;
  bool tokenTimerRunning = false;
  struct TokenCounters {
    std::array<std::uint64_t, static_cast<std::size_t>(jwt::Refusal::Count)> refusals{};
    std::uint64_t accepted = 0;
    std::uint64_t reauths = 0;
    std::uint64_t warned = 0;
    std::uint64_t expired = 0;  // sessions closed with 4001
    std::uint64_t autoRegistered = 0;
  } tokenCounters;
  // Upgrade requests (lws) whose credentials are being checked, by check id,
  // until their session takes the answer (upgrade_auth.cpp).
  struct LwsUpgradeCheck {
    std::optional<UpgradeVerdict> verdict;  // the answer, while no session has it
    std::uint64_t sessionId = 0;            // the session waiting for it
    std::shared_ptr<std::atomic<bool>> cancelled;
  };
  std::unordered_map<std::uint64_t, LwsUpgradeCheck> lwsUpgradeChecks;
  std::unordered_map<lws*, std::uint64_t> lwsUpgradeCheckOf;
  AuthorizeCache authorizeCache{4096};
  // Last: destroyed first, so that its thread posts nothing to a loop that
  // is being torn down.
  std::unique_ptr<AuthorizeClient> authorizer;  // null without --authorize-url
};

// A control frame (ping, pong, close), queued like any other frame.
OutFramePtr makeControlFrame(std::uint8_t opcode, std::string_view payload);

// Constant-time check of "Authorization: Bearer <token>" against `expected`
// (false when `expected` is empty: no token configured, no access).
[[nodiscard]] bool bearerMatches(std::string_view authorization, std::string_view expected);

// Builds a frame ready for the wire: `encode` appends the frame text, and
// the WebSocket header is put in front of it once. `arrivalUs` is when the
// node frame it forwards arrived, for the delivery histogram (0 for frames
// the relay makes up itself).
template <typename Encode>
OutFramePtr makeFrame(Encode&& encode, std::int64_t arrivalUs = 0) {
  auto f = std::make_shared<OutFrame>();
  f->bytes.reserve(OutFrame::kHeadroom + 256);
  f->bytes.append(OutFrame::kHeadroom, '\0');
  encode(f->bytes);
  f->seal();
  f->kind = static_cast<std::uint8_t>(
      classifyOutFrame(std::string_view(f->bytes).substr(OutFrame::kHeadroom)));
  f->arrivalUs = arrivalUs;
  return f;
}

}  // namespace mesh::relay
