#include <arpa/inet.h>
#include <ev.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "cluster_registry.h"
#include "http_head.h"
#include "log.h"
#include "lws_connection.h"
#include "server_impl.h"
#include "tls.h"

namespace mesh::relay {
namespace {

// Grows the process's descriptor table now to hold `count` descriptors (or
// the open-file limit, if lower). Linux grows it in powers of two as
// descriptors are opened, and in a process with several threads each growth
// waits for an RCU grace period inside accept(): during a burst of
// reconnecting nodes the loop stood still for 10 to 25 ms at the 256th,
// 512th, ... connection while every relayed frame waited. The table never
// shrinks, so one growth at start, while nothing waits on the loop, is the
// only one.
void reserveDescriptorTable(std::size_t count) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < 2) return;
  const rlim_t limit = std::min<rlim_t>(rl.rlim_cur, static_cast<rlim_t>(count));
  const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  const int high = ::fcntl(fd, F_DUPFD_CLOEXEC, static_cast<int>(limit - 1));
  if (high >= 0) ::close(high);
  ::close(fd);
}

constexpr char kProtocolName[] = "mesh-gateway";

void lwsLogSink(int level, const char* line) {
  std::string text(line);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  // lws 4.1.6 reports, as an error, every socket handed over with the part
  // of a request head read already (handOverToLws): that is routine here.
  if (text.find("adopt_socket_readbuf: calling service") != std::string::npos) {
    level = LLL_DEBUG;
  }
  if (level & LLL_ERR) {
    LOG_ERROR("lws: " << text);
  } else if (level & LLL_WARN) {
    LOG_WARN("lws: " << text);
  } else {
    LOG_DEBUG("lws: " << text);
  }
}

Server::Impl* timerOwner(lws_sorted_usec_list_t* sul) {
  return reinterpret_cast<LoopTimer*>(sul)->owner;
}

void sweepBuckets(lws_sorted_usec_list_t* sul) {
  auto* self = timerOwner(sul);
  // Forget rate buckets that are full again: they carry no state.
  const auto now = self->nowUs();
  std::erase_if(self->meshBuckets, [&](auto& kv) { return kv.second.isFull(now); });
  std::erase_if(self->registerBuckets, [&](auto& kv) { return kv.second.isFull(now); });
  self->authBudget.forgetFull(now);
  lws_sul_schedule(self->context, 0, sul, sweepBuckets, 60 * LWS_US_PER_SEC);
}

// Auth timeouts and keepalive are checked this often.
constexpr lws_usec_t kLivenessTick = 200 * LWS_US_PER_MS;

void livenessTick(lws_sorted_usec_list_t* sul) {
  auto* self = timerOwner(sul);
  self->sweepSessions();
  if (self->clusterLink) self->clusterLink->tick();
  lws_sul_schedule(self->context, 0, sul, livenessTick, kLivenessTick);
}

NetPolicy makeNetPolicy(const Config& cfg) {
  try {
    return NetPolicy(cfg.allowIps, cfg.denyIps, cfg.trustedProxies);
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(std::string("address lists: ") + e.what());
  }
}

constexpr std::size_t kRxBufferBytes = 512;

const lws_retry_bo_t noValidityTimer{};

}  // namespace

Server::Impl::Impl(const Config& cfg)
    : config(cfg),
      registry(cfg.dbPath, Argon2Params{cfg.argon2OpsLimit, cfg.argon2MemLimit},
               cfg.verifierKeyPath),
      workers(cfg.workerThreads),
      authBudget(AuthBudgetLimits{cfg.authFailureRate, cfg.authFailureBurst,
                                  cfg.authFailureMeshRate, cfg.authFailureMeshBurst}),
      netPolicy(makeNetPolicy(cfg)),
      tokens(std::make_unique<TokenAuthority>(
          cfg, [this](std::function<void()> fn) { post(std::move(fn)); })) {
  // Every connection, the spare ones above the limit, and a few dozen of
  // the relay's own (database, listener, eventfd, log).
  reserveDescriptorTable(std::size_t{config.maxConnections} + 512);
  startTimeMs = nowMs();
  sweepTimer.owner = this;
  livenessTimer.owner = this;
  log::setLevel(config.logLevel);
  lws_set_log_level(LLL_ERR | LLL_WARN, lwsLogSink);
  // An imported mesh's first auth is answered before its hash is upgraded.
  registry.setBackgroundRunner([this](std::function<void()> job) { workers.post(std::move(job)); });
  if (!config.authorizeUrl.empty()) {
    authorizer = std::make_unique<AuthorizeClient>(config.authorizeUrl, config.authorizeToken,
                                                   config.authorizeTimeoutSeconds);
  }

  protocols.resize(2);
  protocols[0] = lws_protocols{};
  protocols[0].name = kProtocolName;
  protocols[0].callback = &Impl::callback;
  protocols[0].per_session_data_size = sizeof(PerSession);
  // lws keeps an rx buffer of this size for every WebSocket for its whole
  // life: small, so idle connections stay cheap. A longer message simply
  // arrives in several RECEIVE callbacks (gateway.cpp joins them).
  protocols[0].rx_buffer_size = kRxBufferBytes;
  // But writes are not cut to that size: the gateway batches up to 64 KiB.
  protocols[0].tx_packet_size = 128 * 1024;
  protocols[0].user = this;
  protocols[1] = lws_protocols{};  // terminator

  // Without TLS the relay listens itself and serves /gateway WebSockets
  // without lws (plain_listener.cpp and the plain_*.cpp beside it); lws gets every other
  // connection.
  const bool plain = config.tlsCertPath.empty() && config.tlsKeyPath.empty();
  lws_context_creation_info info{};
  info.port = plain ? CONTEXT_PORT_NO_LISTEN_SERVER : config.port;
  info.iface = config.host.empty() || config.host == "0.0.0.0" ? nullptr : config.host.c_str();
  info.protocols = protocols.data();
  info.user = this;
  info.options = LWS_SERVER_OPTION_FAIL_UPON_UNABLE_TO_BIND | LWS_SERVER_OPTION_DISABLE_IPV6;
  if (config.host == "::") info.options &= ~static_cast<uint64_t>(LWS_SERVER_OPTION_DISABLE_IPV6);
  // Keepalive is the gateway's own sweep (sweepSessions). lws's validity
  // timer is off (a zero hangup time): otherwise lws keeps one per
  // connection in a sorted list and re-inserts it, scanning the list, on
  // every pong.
  info.retry_and_idle_policy = &noValidityTimer;
  info.timeout_secs =
      static_cast<unsigned>(std::max(1.0, std::ceil(config.handshakeTimeoutSeconds)));
  info.pt_serv_buf_size = 32 * 1024;
  // Room for every head the relay accepts (http_head.h): lws closes a
  // connection without an answer when the values of a head overflow it.
  info.max_http_header_data = 2 * kMaxRequestHeadBytes;
  info.fd_limit_per_thread = config.maxConnections + 256;
  info.vhost_name = "mesh-relay";
  if (!config.tlsCertPath.empty() || !config.tlsKeyPath.empty()) {
    if (config.tlsCertPath.empty() || config.tlsKeyPath.empty()) {
      throw std::runtime_error("TLS needs both a certificate and a key");
    }
    // Checked here so that a bad file is reported as such, not as a port
    // that cannot be bound.
    if (std::string err = checkTlsPair(config.tlsCertPath, config.tlsKeyPath); !err.empty()) {
      throw std::runtime_error("TLS: " + err);
    }
    info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.ssl_cert_filepath = config.tlsCertPath.c_str();
    info.ssl_private_key_filepath = config.tlsKeyPath.c_str();
  }

  // lws's own loop is poll(), whose cost grows with every open connection on
  // every turn; libev on epoll costs per event instead. The loop is ours
  // (a foreign loop to lws) so run() keeps turning it one step at a time.
  constexpr unsigned kNoEnv = EVFLAG_NOENV;
  evLoop = ev_loop_new(static_cast<unsigned>(EVBACKEND_EPOLL) | kNoEnv);
  if (!evLoop) evLoop = ev_loop_new(static_cast<unsigned>(EVFLAG_AUTO) | kNoEnv);
  if (!evLoop) throw std::runtime_error("cannot create the event loop");
  foreignLoops[0] = evLoop;
  info.options |= LWS_SERVER_OPTION_LIBEV;
  info.foreign_loops = foreignLoops;

  context = lws_create_context(&info);
  if (!context) {
    ev_loop_destroy(evLoop);
    evLoop = nullptr;
    throw std::runtime_error("cannot listen on " + config.host + ":" + std::to_string(config.port) +
                             " (port in use or no permission?)");
  }
  vhost = lws_get_vhost_by_name(context, "mesh-relay");
  if (!vhost) vhost = lws_get_vhost_by_name(context, "default");
  try {
    if (!vhost) throw std::runtime_error("libwebsockets created no vhost");
    if (plain) {
      openListener();
    } else {
      boundPort = static_cast<std::uint16_t>(lws_get_vhost_listen_port(vhost));
    }
    if (boundPort == 0) throw std::runtime_error("cannot find the bound port");
    if (!config.tlsCertPath.empty() && !tlsContext) {
      throw std::runtime_error("TLS: libwebsockets did not hand over its TLS context");
    }
    if (!config.natsUrls.empty()) startClusterRegistry();
  } catch (...) {
    releaseLoop();
    throw;
  }
  // The JWKS URL's first fetch: its result can now reach the loop.
  tokens->start();
}

void Server::Impl::releaseLoop() {
  closeListener();
  if (context) {
    lws_context_destroy(context);
    context = nullptr;
  }
  if (evLoop) {
    ev_loop_destroy(evLoop);
    evLoop = nullptr;
  }
}

Server::Impl::~Impl() {
  // run() normally closes the cluster link; if it did not get that far, the
  // link goes first, while lws's context (post()) is still there.
  if (clusterLink) {
    router.setClusterLink(noCluster);
    clusterLink.reset();
  }
  // The shared registry's threads next: they post to the inbox and use the
  // registry.
  clusterRegistry.reset();
  // Nothing may be posted once the loop is gone.
  tokens->shutdown();
  lws_sul_cancel(&tokenTimer.sul);
  // Finish blocking work first: it may still post to the inbox, which only
  // needs the context to be alive for lws_cancel_service.
  workers.drain();
  try {
    if (registry.hasPending()) registry.persistPending();
  } catch (const std::exception& e) {
    // Only resume tokens and last-seen times are lost: nodes fall back to
    // their secrets.
    LOG_ERROR("could not save pending registry updates: " << e.what());
  }
  releaseLoop();
}

std::int64_t Server::Impl::nowUs() const {
  using namespace std::chrono;
  return duration_cast<microseconds>(steady_clock::now().time_since_epoch()).count();
}

std::int64_t Server::Impl::nowMs() const {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::string Server::Impl::peerAddress(lws* wsi) {
  char buf[64] = {0};
  if (!lws_get_peer_simple(wsi, buf, sizeof buf)) return "?";
  return canonicalIp(buf);
}

void Server::Impl::post(std::function<void()> fn) {
  {
    std::lock_guard lock(inboxMutex);
    inbox.push_back(std::move(fn));
  }
  lws_cancel_service(context);
}

void Server::Impl::drainInbox() {
  std::vector<std::function<void()>> batch;
  {
    std::lock_guard lock(inboxMutex);
    batch.swap(inbox);
  }
  for (auto& fn : batch) fn();
}

void Server::Impl::requestStop() {
  if (stopRequested.exchange(true)) return;
  if (context) lws_cancel_service(context);
}

int Server::Impl::run() {
  // Settings NATS refuses stop the relay here, before it says it listens.
  startCluster();
  LOG_INFO("listening on " << (config.host.empty() ? "0.0.0.0" : config.host) << ":" << boundPort
                           << " db=" << config.dbPath << " meshes=" << registry.size());
  lws_sul_schedule(context, 0, &sweepTimer.sul, sweepBuckets, 60 * LWS_US_PER_SEC);
  lws_sul_schedule(context, 0, &livenessTimer.sul, livenessTick, kLivenessTick);

  servePlainOnThisThread();
  // One turn of the loop per ev_run; what the turn queued is written before
  // the loop waits again. While shutting down, each turn checks whether the
  // connections have drained (the liveness tick wakes the loop at least
  // every 200 ms for the drain deadline).
  while (!loopDone) {
    // The turn's relays to other relays first: a failure answers at once,
    // and those answers go out with the rest.
    if (clusterLink) clusterLink->flush();
    flushDirty();
    if (shuttingDown) finishIfDrained();
    if (loopDone) break;
    ev_run(evLoop, EVRUN_ONCE);
  }
  closeListener();
  if (clusterLink) {
    router.setClusterLink(noCluster);
    clusterLink.reset();
  }
  lws_sul_cancel(&sweepTimer.sul);
  lws_sul_cancel(&livenessTimer.sul);
  lws_sul_cancel(&persistTimer.sul);
  LOG_INFO("event loop stopped");
  return 0;
}

// Cluster mode: the link to the other relays, on the loop thread (the
// Router's thread). Without --relay-id the relay is "<hostname>:<port>".
void Server::Impl::startCluster() {
  if (config.natsUrls.empty()) return;
  std::string id = config.relayId;
  if (id.empty()) {
    char host[256] = {0};
    if (gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "relay");
    id = std::string(host) + ":" + std::to_string(boundPort);
  }
  clusterLink = std::make_unique<NatsClusterLink>(
      config, std::move(id), router, [this](std::function<void()> fn) { post(std::move(fn)); },
      evLoop);
  router.setClusterLink(*clusterLink);
}

void Server::Impl::beginShutdown() {
  if (shuttingDown) return;
  shuttingDown = true;
  // The other relays drop this relay's meshes now, not after its silence.
  if (clusterLink) clusterLink->leave();
  LOG_INFO("shutting down: closing " << sessions.size() << " connections");
  // From here on new TCP connections are dropped at accept (see
  // FILTER_NETWORK_CONNECTION). lws_context_deprecate() would close the
  // listen socket, but in 4.1.6 it touches the listener after freeing it.
  std::vector<Session*> all;
  all.reserve(sessions.size());
  for (auto& [id, s] : sessions) all.push_back(s.get());
  for (Session* s : all) {
    sendError(*s, proto::ErrorCode::ShuttingDown, "Relay is shutting down", std::nullopt);
    closeSession(*s, 1001, "shutting_down", false);
  }
  drainDeadlineUs = nowUs() + static_cast<std::int64_t>(config.drainTimeoutSeconds * 1e6);
}

void Server::Impl::finishIfDrained() {
  const bool drained = sessions.empty() && exchanges.empty();
  if (drained || nowUs() >= drainDeadlineUs) {
    if (!drained) {
      LOG_WARN("drain timeout: " << sessions.size() << " connections still open");
    }
    loopDone = true;
  }
}

int Server::Impl::callback(lws* wsi, lws_callback_reasons reason, void* user, void* in,
                           size_t len) {
  if (reason == LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS) {
    // While the context is created, on the constructing thread: `user` is
    // the vhost's SSL_CTX, kept for certificate reloads.
    auto* owner = wsi ? static_cast<Impl*>(lws_context_user(lws_get_context(wsi))) : nullptr;
    if (owner) owner->tlsContext = user;
    return 0;
  }
  const lws_protocols* protocol = lws_get_protocol(wsi);
  auto* self = protocol ? static_cast<Impl*>(protocol->user) : nullptr;
  if (!self) return lws_callback_http_dummy(wsi, reason, user, in, len);
  try {
    return self->dispatch(wsi, reason, static_cast<PerSession*>(user), in, len);
  } catch (const std::exception& e) {
    // Nothing may unwind through libwebsockets: drop this connection only.
    LOG_ERROR("internal error on a connection, closing it: " << e.what());
    return -1;
  }
}

int Server::Impl::dispatch(lws* wsi, lws_callback_reasons reason, PerSession* pss, void* in,
                           size_t len) {
  switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
      drainInbox();
      if (stopRequested.load() && !shuttingDown) beginShutdown();
      return 0;

    case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
      return onNetworkConnection(static_cast<int>(reinterpret_cast<std::intptr_t>(in)));
    case LWS_CALLBACK_WSI_CREATE:
      onWsiCreated(wsi);
      return 0;
    case LWS_CALLBACK_WSI_DESTROY:
      releaseHandshake(wsi);
      forgetLwsUpgradeAuth(wsi);
      return 0;

    // WebSocket
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
      return onFilterProtocol(wsi);
    case LWS_CALLBACK_ESTABLISHED:
      return onEstablished(wsi, pss);
    case LWS_CALLBACK_RECEIVE:
      if (!pss || !pss->session) return -1;
      heardFrom(*pss->session);
      return onReceive(*pss->session, static_cast<const char*>(in), len,
                       lws_frame_is_binary(wsi) != 0,
                       lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0);
    case LWS_CALLBACK_SERVER_WRITEABLE:
      if (!pss || !pss->session) return 0;
      return LwsConnection::of(*pss->session).onWriteable(*pss->session);
    case LWS_CALLBACK_RECEIVE_PONG:
      if (pss && pss->session) heardFrom(*pss->session);
      return 0;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
      if (!pss || !pss->session) return 0;
      return LwsConnection::of(*pss->session)
          .onPeerClose(*pss->session, std::string_view(static_cast<const char*>(in), len));
    case LWS_CALLBACK_CLOSED:
      onClosed(pss);
      return 0;

    // HTTP
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
      return onHttpUpgrade(wsi, static_cast<const char*>(in));
    case LWS_CALLBACK_HTTP:
      return onHttp(wsi, pss, static_cast<const char*>(in));
    case LWS_CALLBACK_HTTP_BODY:
      return onHttpBody(pss, static_cast<const char*>(in), len);
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
      return onHttpBodyComplete(pss);
    case LWS_CALLBACK_HTTP_WRITEABLE:
      return onHttpWriteable(wsi, pss);
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
      onHttpClosed(pss);
      return 0;

    default:
      break;
  }
  return lws_callback_http_dummy(wsi, reason, pss, in, len);
}

Server::Server(const Config& config) : impl_(std::make_unique<Impl>(config)) {}
Server::~Server() = default;
std::uint16_t Server::port() const {
  return impl_->boundPort;
}
int Server::run() {
  return impl_->run();
}
void Server::requestStop() {
  impl_->requestStop();
}
void Server::reloadTls() {
  Impl* impl = impl_.get();
  impl->post([impl] { impl->reloadTlsNow(); });
}
void Server::reloadJwks() {
  Impl* impl = impl_.get();
  impl->post([impl] { impl->reloadJwksNow(); });
}

}  // namespace mesh::relay
