// Client: the public methods (any thread) and the network thread's
// libwebsockets loop. See client_impl.h for which thread owns what.
#include <sodium.h>

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <type_traits>

#include "client_impl.h"
#include "json.h"
#include "mesh/client/http.h"
#include "mesh/proto/codec.h"

namespace mesh::client {

using detail::Command;
using detail::Pending;
using std::chrono::milliseconds;

namespace {

static_assert(std::is_standard_layout_v<detail::Timer>);

// Room for the frame around a payload: type, id, targetMeshId and quotes.
constexpr std::size_t kFrameOverhead = 256;
// How long stop() lets the relay answer our close frame.
constexpr lws_usec_t kStopGraceUs = 1000 * LWS_US_PER_MS;
// Meta keys in the outbox.
constexpr const char* kMetaMeshId = "mesh_id";
constexpr const char* kMetaToken = "resume_token";
constexpr const char* kMetaTokenUrl = "resume_token_url";
constexpr const char* kMetaTokenExpires = "resume_expires_at";

std::int64_t wallMs() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::int64_t monoMs() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// 128 random bits in hex: unique across restarts without coordination.
std::string newMessageId() {
  unsigned char raw[16];
  randombytes_buf(raw, sizeof raw);
  char hex[sizeof raw * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, raw, sizeof raw);
  return hex;
}

Client::Impl* ownerOf(lws_sorted_usec_list_t* sul) {
  return reinterpret_cast<detail::Timer*>(sul)->owner;
}

int gatewayCallback(lws* wsi, lws_callback_reasons reason, void* user, void* in, std::size_t len) {
  (void)user;
  auto* impl = static_cast<Client::Impl*>(lws_context_user(lws_get_context(wsi)));
  if (impl == nullptr) return 0;
  // No exception may unwind into C: turn one into closing this connection.
  try {
    return impl->onEvent(wsi, reason, in, len);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "meshclient: closing connection after error: %s\n", e.what());
    return -1;
  }
}

// lws 4.1.6 takes a new process-wide SSL ex_data index for its connection
// pointer each time a context is created with TLS, and its certificate
// check looks the connection up under the newest index. So a handshake
// under way in one client while another client's context is created fails
// ("unspecified certificate verification error"). The gate keeps the two
// apart: a TLS context is created only while no handshake runs, and no
// handshake starts meanwhile. Handshakes never wait for each other.
class TlsGate {
 public:
  static TlsGate& instance() {
    static TlsGate gate;
    return gate;
  }
  // Runs `create` (which makes the context) between handshakes.
  void create(const std::function<void()>& create) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return !creating_; });
    creating_ = true;  // no new handshake from here on
    cv_.wait(lock, [this] { return handshakes_ == 0; });
    create();
    creating_ = false;
    lock.unlock();
    cv_.notify_all();
  }
  void enter() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return !creating_; });
    ++handshakes_;
  }
  void leave() {
    {
      std::lock_guard lock(mu_);
      --handshakes_;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool creating_ = false;
  int handshakes_ = 0;
};

const lws_protocols kProtocols[] = {
    {"mesh-gateway", gatewayCallback, 0, 0, 0, nullptr, 0},
    {nullptr, nullptr, 0, 0, 0, nullptr, 0},
};

}  // namespace

// ---------------------------------------------------------------------------
// Dispatcher (callback thread)

void detail::Dispatcher::start() {
  thread_ = std::thread([this] { run(); });
  id_ = thread_.get_id();
}

void detail::Dispatcher::post(std::function<void()> job) {
  {
    std::lock_guard lock(mu_);
    if (stopped_) return;  // after stop(): nobody would run it
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
}

void detail::Dispatcher::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
  std::lock_guard lock(mu_);
  stopped_ = true;
}

void detail::Dispatcher::run() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    // A throwing user callback must not take the thread down; the user hears
    // nothing better than stderr here, because onError is a callback too.
    try {
      job();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "meshclient: a callback threw: %s\n", e.what());
    } catch (...) {
      std::fprintf(stderr, "meshclient: a callback threw\n");
    }
  }
}

// ---------------------------------------------------------------------------
// Public methods (any thread)

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Client::~Client() {
  stop();
}

Result<std::unique_ptr<Client>> Client::start(const Options& options) {
  if (auto ok = validate(options); !ok) return ok.error();
  if (sodium_init() < 0) return Error{Status::StorageError, "libsodium cannot initialise"};
  auto impl = std::make_unique<Impl>(options);
  const auto urls = gatewayUrlList(options);
  for (const auto& text : urls) {
    detail::Gateway g;
    g.text = text;
    g.url = *detail::parseUrl(text);
    g.hostHeader = g.url.hostHeader();
    if (options.httpBaseUrl.empty()) {
      auto base = httpBaseFromGatewayUrl(text);
      if (!base) return base.error();
      g.httpBase = base.value();
    } else {
      g.httpBase = options.httpBaseUrl;
    }
    auto via = detail::proxyFor(g.url, options.proxy, options.noProxy);
    if (!via) return via.error();
    g.proxy = std::move(via).value();
    impl->gateways.push_back(std::move(g));
  }
  // A list keeps its token whichever relay of it issued the token.
  for (const auto& g : impl->gateways) {
    if (!impl->tokenUrlKey.empty()) impl->tokenUrlKey += ",";
    impl->tokenUrlKey += g.text;
  }
  if (options.authHeader) {
    // A token source is asked again at each connection (connectNow).
    if (!options.token.empty() && !impl->renewableToken()) {
      impl->authorization = "Bearer " + options.token;
    } else if (!options.secret.empty()) {
      const std::string pair = options.meshId + ":" + options.secret;
      std::string text(sodium_base64_ENCODED_LEN(pair.size(), sodium_base64_VARIANT_ORIGINAL),
                       '\0');
      sodium_bin2base64(text.data(), text.size(),
                        reinterpret_cast<const unsigned char*>(pair.data()), pair.size(),
                        sodium_base64_VARIANT_ORIGINAL);
      text.resize(std::strlen(text.c_str()));
      impl->authorization = "Basic " + text;
    }
  }
  impl->rooms = options.publicRooms;
  impl->participants = options.participants;

  auto box = detail::Outbox::open(options.outboxPath, options.durableSync);
  if (!box) return box.error();
  impl->outbox = std::move(box).value();
  detail::Outbox& outbox = *impl->outbox;

  // One outbox belongs to one mesh: its messages and token are that mesh's.
  if (auto owner = outbox.getMeta(kMetaMeshId)) {
    if (*owner != options.meshId) {
      return Error{Status::InvalidArgument, "outbox '" + options.outboxPath +
                                                "' belongs to mesh '" + *owner + "', not '" +
                                                options.meshId + "'"};
    }
  } else if (auto set = outbox.setMeta(kMetaMeshId, options.meshId); !set) {
    return set.error();
  }
  if (outbox.getMeta(kMetaTokenUrl) == impl->tokenUrlKey) {
    impl->resumeToken = outbox.getMeta(kMetaToken);
  }

  auto stored = outbox.all();
  if (!stored) return stored.error();
  const std::int64_t now = monoMs();
  for (auto& m : std::move(stored).value()) {
    const std::int64_t seq = m.seq;
    ++impl->outboxMessages;
    impl->outboxBytes += m.payloadJson.size();
    impl->seqById.emplace(m.id, seq);
    Pending& p = impl->pending[seq];
    p.message = std::move(m);
    impl->schedule(p, now);
  }

  const bool anySecure = std::any_of(impl->gateways.begin(), impl->gateways.end(),
                                     [](const detail::Gateway& g) { return g.url.secure(); });
  // Checked for ws:// too: the file may serve https:// registration, and a
  // wrong path is better reported now than at the first wss:// connect.
  if (!options.caFile.empty() || anySecure) {
    auto tls = detail::makeClientTlsContext(options.caFile);
    if (!tls) return tls.error();
    if (anySecure) impl->tls = std::move(tls).value();
  }

  // lws logs through stderr for the whole process; errors only, since every
  // failure we care about reaches the user through callbacks.
  lws_set_log_level(LLL_ERR, nullptr);
  const auto keepalive =
      static_cast<std::uint16_t>(std::clamp<std::int64_t>(options.keepalive.count(), 1, 30000));
  impl->keepalivePolicy.secs_since_valid_ping = keepalive;
  impl->keepalivePolicy.secs_since_valid_hangup = static_cast<std::uint16_t>(keepalive * 2);

  lws_context_creation_info info{};
  info.port = CONTEXT_PORT_NO_LISTEN;
  info.protocols = kProtocols;
  // TLS set-up only for wss://, and with our own SSL_CTX: it adds the CA
  // file to the system store (lws would use one or the other), and lws
  // 4.1.6 leaks the shared SSL_CTX it builds itself when two contexts are
  // alive in one process (seen under LeakSanitizer). lws never frees a
  // context it was handed; `tls` outlives lws_context_destroy().
  //
  // One vhost per gateway, each with its own proxy setting. lws reads the
  // http_proxy variable by itself for a vhost not given one, which would
  // bypass NO_PROXY, "none" and https_proxy for wss://: every vhost gets an
  // explicit setting, ":0" (port 0) being lws' "no proxy".
  info.options =
      LWS_SERVER_OPTION_EXPLICIT_VHOSTS | (anySecure ? LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT : 0);
  info.provided_client_ssl_ctx = impl->tls.get();
  info.user = impl.get();
  info.fd_limit_per_thread = 16;  // one connection plus lws' own pipes
  const auto connectSecs = static_cast<unsigned>(std::max<std::int64_t>(
      1, std::chrono::duration_cast<std::chrono::seconds>(options.connectTimeout).count()));
  info.timeout_secs = connectSecs;
  info.connect_timeout_secs = connectSecs;
  bool vhostsMade = true;
  const auto create = [&] {
    impl->context = lws_create_context(&info);
    if (impl->context == nullptr) return;
    for (std::size_t i = 0; i < impl->gateways.size(); ++i) {
      detail::Gateway& g = impl->gateways[i];
      // "user:password@host:port": lws sends the part before the last '@'
      // base64-encoded as Proxy-Authorization: basic.
      std::string spec = ":0";
      if (g.proxy) {
        spec = g.proxy->authority();
        if (g.proxy->hasCredentials()) spec = g.proxy->user + ":" + g.proxy->password + "@" + spec;
      }
      const std::string name = "gateway-" + std::to_string(i);
      lws_context_creation_info vi = info;
      vi.vhost_name = name.c_str();
      vi.http_proxy_address = spec.c_str();
      vi.http_proxy_port = 0;
      g.vhost = lws_create_vhost(impl->context, &vi);
      sodium_memzero(spec.data(), spec.size());
      if (g.vhost == nullptr) vhostsMade = false;
    }
  };
  if (anySecure) {
    TlsGate::instance().create(create);
  } else {
    create();
  }
  if (impl->context == nullptr || !vhostsMade) {
    if (impl->context != nullptr) lws_context_destroy(impl->context);
    return Error{Status::ConnectionFailed, "cannot create the libwebsockets context"};
  }
  impl->reconnectTimer.owner = impl.get();
  impl->retryTimer.owner = impl.get();
  impl->stopTimer.owner = impl.get();
  impl->ackTimer.owner = impl.get();
  impl->expiryTimer.owner = impl.get();
  impl->contextAlive = true;
  impl->dispatcher.start();
  Impl* raw = impl.get();
  impl->loop = std::thread([raw] { raw->run(); });
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

void Client::stop() {
  if (impl_) impl_->stop();
}

Result<std::string> Client::relay(std::string_view targetMeshId, std::string_view payloadJson) {
  if (!proto::isValidMeshId(targetMeshId)) {
    return Error{Status::InvalidArgument,
                 "target meshId must be 1 to 64 characters of A-Z a-z 0-9 . _ -"};
  }
  return impl_->enqueue(std::string(targetMeshId), payloadJson);
}

Result<std::string> Client::broadcast(std::string_view payloadJson) {
  return impl_->enqueue(std::nullopt, payloadJson);
}

Result<std::vector<Instance>> Client::discover(milliseconds timeout) {
  auto waiter = std::make_shared<detail::DiscoverWaiter>();
  std::string id;
  {
    std::lock_guard lock(impl_->mu);
    if (!impl_->accepting) return Error{Status::Closed, "client stopped"};
    // Zero-padded so the map's order is the order of the calls.
    char text[32];
    std::snprintf(text, sizeof text, "discover-%012llu",
                  static_cast<unsigned long long>(impl_->nextDiscoverId++));
    id = text;
    impl_->discoverWaiters.emplace(id, waiter);
  }
  impl_->push(detail::DiscoverRequested{id});
  std::unique_lock lock(impl_->mu);
  impl_->changed.wait_for(lock, timeout, [&] { return waiter->done; });
  impl_->discoverWaiters.erase(id);
  if (!waiter->done) {
    const bool connected = impl_->state == ConnectionState::Connected;
    return Error{Status::Timeout, connected ? "the relay did not answer discover in time"
                                            : "not connected to the relay within the timeout (" +
                                                  std::string(stateText(impl_->state)) + ")"};
  }
  return waiter->result;
}

Result<> Client::updateRooms(std::vector<std::string> publicRooms) {
  {
    std::lock_guard lock(impl_->mu);
    if (!impl_->accepting) return Error{Status::Closed, "client stopped"};
    impl_->rooms = std::move(publicRooms);
  }
  impl_->push(detail::RoomsChanged{});
  return success();
}

Result<> Client::updateParticipants(std::vector<Participant> participants) {
  {
    std::lock_guard lock(impl_->mu);
    if (!impl_->accepting) return Error{Status::Closed, "client stopped"};
    impl_->participants = std::move(participants);
  }
  impl_->push(detail::ParticipantsChanged{});
  return success();
}

ConnectionState Client::state() const {
  std::lock_guard lock(impl_->mu);
  return impl_->state;
}

Result<> Client::waitConnected(milliseconds timeout) {
  std::unique_lock lock(impl_->mu);
  const bool settled = impl_->changed.wait_for(lock, timeout, [&] {
    return impl_->state == ConnectionState::Connected || impl_->state == ConnectionState::Failed ||
           !impl_->accepting;
  });
  if (!settled) {
    return Error{Status::Timeout,
                 "not connected within the timeout (" + std::string(stateText(impl_->state)) + ")"};
  }
  if (impl_->state == ConnectionState::Connected) return success();
  if (impl_->failure) return *impl_->failure;
  return Error{Status::Closed, "client stopped"};
}

std::size_t Client::pendingCount() const {
  return impl_->outbox->count();
}

Result<std::string> Client::Impl::enqueue(std::optional<std::string> target,
                                          std::string_view payload) {
  auto normalized = detail::normalizeObject(payload);
  if (!normalized) {
    return Error{Status::InvalidArgument, "payload must be a JSON object"};
  }
  if (normalized->size() + kFrameOverhead > options.maxFrameBytes) {
    return Error{Status::InvalidArgument, "payload of " + std::to_string(normalized->size()) +
                                              " bytes does not fit in a frame of " +
                                              std::to_string(options.maxFrameBytes)};
  }
  const std::size_t bytes = normalized->size();
  {
    // Room is reserved under the lock, so callers on many threads together
    // never pass the caps.
    std::lock_guard lock(mu);
    if (!accepting) return Error{Status::Closed, "client stopped"};
    if (options.maxPendingMessages > 0 && outboxMessages >= options.maxPendingMessages) {
      return Error{Status::OutboxFull, "outbox full: " + std::to_string(outboxMessages) +
                                           " messages wait for delivery (maxPendingMessages " +
                                           std::to_string(options.maxPendingMessages) + ")"};
    }
    if (options.maxPendingBytes > 0 && outboxBytes + bytes > options.maxPendingBytes) {
      return Error{Status::OutboxFull, "outbox full: " + std::to_string(outboxBytes) +
                                           " payload bytes wait for delivery, this message adds " +
                                           std::to_string(bytes) + " (maxPendingBytes " +
                                           std::to_string(options.maxPendingBytes) + ")"};
    }
    ++outboxMessages;
    outboxBytes += bytes;
  }
  auto added = outbox->add(std::move(target), std::move(*normalized), newMessageId(), wallMs());
  if (!added) {
    std::lock_guard lock(mu);
    --outboxMessages;
    outboxBytes -= bytes;
    return added.error();
  }
  std::string id = added.value().id;
  push(detail::NewMessage{std::move(added).value()});
  return id;
}

void Client::Impl::push(Command command) {
  std::lock_guard lock(mu);
  commands.push_back(std::move(command));
  if (contextAlive) lws_cancel_service(context);
}

void Client::Impl::stop() {
  std::lock_guard once(stopMu);
  if (!loop.joinable()) return;
  {
    std::lock_guard lock(mu);
    accepting = false;
  }
  if (dispatcher.onThisThread()) {
    // Joining the callback thread from itself cannot work: a caller bug.
    std::fputs("meshclient: Client::stop() called from a callback\n", stderr);
    std::terminate();
  }
  push(detail::StopRequested{});
  if (loop.joinable()) loop.join();
  {
    std::lock_guard lock(mu);
    for (auto& [id, waiter] : discoverWaiters) {
      waiter->done = true;
      waiter->result = Error{Status::Closed, "client stopped"};
    }
  }
  setState(ConnectionState::Stopped, "stopped");
  dispatcher.stop();
}

void Client::Impl::setState(ConnectionState next, const std::string& reason,
                            std::optional<Error> why) {
  {
    std::lock_guard lock(mu);
    if (state == next && !why) return;
    state = next;
    if (why) failure = why;
  }
  changed.notify_all();
  if (options.callbacks.onStateChange) {
    post([this, next, reason] { options.callbacks.onStateChange(next, reason); });
  }
}

void Client::Impl::reportError(Error error) {
  if (options.callbacks.onError) {
    post([this, e = std::move(error)] { options.callbacks.onError(e); });
  }
}

// ---------------------------------------------------------------------------
// Network thread

void Client::Impl::run() {
  // Gives up what aged out while the node was not running; arms the timer
  // for the rest.
  expireOld();
  beginAttempt();
  while (!exitLoop) {
    if (lws_service(context, 0) < 0) break;
  }
  for (detail::Timer* t : {&reconnectTimer, &retryTimer, &stopTimer, &ackTimer, &expiryTimer}) {
    lws_sul_cancel(&t->sul);
  }
  {
    std::lock_guard lock(mu);
    contextAlive = false;
  }
  lws_context_destroy(context);
  context = nullptr;
  leaveTlsHandshake();  // in case lws reported nothing for the last attempt
}

int Client::Impl::onEvent(lws* w, lws_callback_reasons reason, void* in, std::size_t len) {
  switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
      drainCommands();
      return 0;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
      // `in` is lws' reason text, with or without a length.
      std::string why = in == nullptr ? std::string("connection failed")
                        : len > 0     ? std::string(static_cast<const char*>(in), len)
                                      : std::string(static_cast<const char*>(in));
      onConnectionError(w, std::move(why));
      return 0;
    }
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
      if (authorization.empty() || in == nullptr) return 0;
      auto** cursor = static_cast<unsigned char**>(in);
      const std::string line = "Authorization: " + authorization + "\r\n";
      if (line.size() >= len) return -1;  // no room: fail rather than go without
      std::memcpy(*cursor, line.data(), line.size());
      *cursor += line.size();
      return 0;
    }
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
      onEstablished(w);
      return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE:
      return onReceive(w, in, len);
    case LWS_CALLBACK_CLIENT_WRITEABLE:
      return onWriteable(w);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
      // The payload is a 2-byte big-endian code and an optional reason.
      if (in != nullptr && len >= 2) {
        const auto* bytes = static_cast<const unsigned char*>(in);
        peerCloseCode = bytes[0] * 256 + bytes[1];
        closeReason = "relay closed the connection: " + std::to_string(peerCloseCode);
        if (len > 2) {
          closeReason += " " + std::string(static_cast<const char*>(in) + 2, len - 2);
        }
      }
      return 0;
    case LWS_CALLBACK_CLIENT_CLOSED: {
      // No close frame, or one that says the relay is going away or broken:
      // this relay is gone for now. Anything else (1000, 1008, 4xxx) came
      // from a relay that works.
      const bool gone = peerCloseCode == 0 || peerCloseCode == 1001 || peerCloseCode == 1011 ||
                        peerCloseCode == 1012 || peerCloseCode == 1013;
      onDisconnected(closeReason.empty() ? "connection closed" : closeReason, gone);
      return 0;
    }
    default:
      return 0;
  }
}

void Client::Impl::onConnectionError(lws* w, std::string why) {
  while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
  const detail::Gateway& g = gateway();
  if (options.authHeader && why == "HS: ws upgrade unauthorized") {
    // 401 to credentials on the upgrade: as invalid_credentials in a frame.
    // (Without authHeader a 401 comes from something else in the way, and
    // is retried like any failed connection.)
    const std::string sent = !sentToken.empty()        ? "this token"
                             : !options.secret.empty() ? "this secret"
                                                       : "what the proxy in front added (the node "
                                                         "itself sent no credentials)";
    if (renewableToken()) {
      // A fresh token may come: the next attempt asks the source again.
      reportError(Error{Status::AuthFailed, "relay " + g.text + " refused meshId '" +
                                                options.meshId + "' with " + sent +
                                                " (401 on the upgrade); trying again with the "
                                                "next token"});
      onDisconnected("relay answered 401 to the upgrade");
      return;
    }
    onDisconnected("relay answered 401 to the upgrade");
    failForGood(Error{Status::AuthFailed, "relay " + g.text + " refused meshId '" + options.meshId +
                                              "' with " + sent + " (401 on the upgrade)"});
    return;
  }
  // lws' text for a refused certificate is terse; OpenSSL knows why.
  // UNSPECIFIED is what a handshake that ended before the certificate
  // was checked leaves behind: then lws' text is the better one.
  if (SSL* ssl = w != nullptr ? lws_get_ssl(w) : nullptr) {
    const long verify = SSL_get_verify_result(ssl);
    if (verify != X509_V_OK && verify != X509_V_ERR_UNSPECIFIED) {
      why = std::string("TLS certificate verify failed: ") + X509_verify_cert_error_string(verify);
      if (verify == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
          verify == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT ||
          verify == X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE ||
          verify == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT ||
          verify == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN) {
        why +=
            " (a relay certificate from a private CA needs that CA in MESH_CA_FILE, "
            "Options::caFile)";
      }
    }
  }
  std::string message = "cannot connect to " + g.text;
  if (g.proxy) message += " through proxy " + g.proxy->display();
  message += ": " + why;
  if (g.proxy && why.rfind("proxy ", 0) == 0 && attemptActive && !stopping) {
    // lws only says the proxy did not answer 200. Our own CONNECT learns
    // the proxy's status line (407: its credentials) off this thread; the
    // attempt ends when that answer is in, so the reason a node (and
    // meshctl) sees is the precise one. The backoff applies as usual.
    leaveTlsHandshake();
    proxyProbeRunning = true;
    post([this, proxy = *g.proxy, url = g.url, fallback = message,
          prefix = "cannot connect to " + g.text + ": ", timeout = options.connectTimeout] {
      auto tunnel = detail::openTunnel(proxy, url, std::chrono::steady_clock::now() + timeout);
      std::string text = fallback;
      if (tunnel) {
        ::close(tunnel.value());
      } else {
        text = prefix + tunnel.error().message;
      }
      push(detail::ProxyProbeDone{std::move(text)});
    });
    return;
  }
  const bool wasActive = attemptActive;
  onDisconnected(message, true);
  if (wasActive) reportConnectError(message);
}

void Client::Impl::drainCommands() {
  std::deque<Command> batch;
  {
    std::lock_guard lock(mu);
    batch.swap(commands);
  }
  for (auto& command : batch) {
    std::visit(
        [this](auto& c) {
          using T = std::decay_t<decltype(c)>;
          if constexpr (std::is_same_v<T, detail::NewMessage>) {
            const std::int64_t seq = c.message.seq;
            seqById.emplace(c.message.id, seq);
            Pending& p = pending[seq];
            p.message = std::move(c.message);
            schedule(p, monoMs());
            noteExpiry(p.message.createdMs);
            requestWrite();
          } else if constexpr (std::is_same_v<T, detail::RoomsChanged>) {
            if (!authenticated) return;
            detail::JsonOut out;
            out.beginObject();
            out.field("type", "gateway_update_rooms");
            {
              std::lock_guard lock(mu);
              out.stringArray("publicRooms", rooms);
            }
            out.endObject();
            control.push_back(out.take());
            requestWrite();
          } else if constexpr (std::is_same_v<T, detail::ParticipantsChanged>) {
            if (!authenticated) return;
            detail::JsonOut out;
            out.beginObject();
            out.field("type", "gateway_update_participants");
            {
              std::lock_guard lock(mu);
              out.participants("participants", participants);
            }
            out.endObject();
            control.push_back(out.take());
            requestWrite();
          } else if constexpr (std::is_same_v<T, detail::DiscoverRequested>) {
            // Not connected: sent with the other waiting discovers on auth.
            if (!authenticated) return;
            detail::JsonOut out;
            out.beginObject();
            out.field("type", "gateway_discover");
            out.field("id", c.id);
            out.endObject();
            control.push_back(out.take());
            requestWrite();
          } else if constexpr (std::is_same_v<T, detail::RegistrationDone>) {
            onRegistrationDone(c.result);
          } else if constexpr (std::is_same_v<T, detail::ProxyProbeDone>) {
            proxyProbeRunning = false;
            const bool wasActive = attemptActive;
            onDisconnected(c.message, true);
            if (wasActive && !stopping) reportConnectError(c.message);
          } else if constexpr (std::is_same_v<T, detail::StopRequested>) {
            stopping = true;
            lws_sul_cancel(&reconnectTimer.sul);
            lws_sul_cancel(&retryTimer.sul);
            lws_sul_cancel(&ackTimer.sul);
            lws_sul_cancel(&expiryTimer.sul);
            if (wsi != nullptr) {
              // Close politely from WRITEABLE; the timer ends the wait if the
              // relay never answers our close frame.
              lws_callback_on_writable(wsi);
              lws_sul_schedule(
                  context, 0, &stopTimer.sul,
                  [](lws_sorted_usec_list_t* sul) { ownerOf(sul)->exitLoop = true; }, kStopGraceUs);
            } else {
              exitLoop = true;
            }
            if (proxyProbeRunning) exitLoop = true;
          }
        },
        command);
  }
}

bool Client::Impl::needsRegistration() {
  return options.autoRegister && !outbox->getMeta(registeredKey());
}

void Client::Impl::beginAttempt() {
  if (stopping || failed) return;
  if (needsRegistration()) {
    startRegistration();
  } else {
    connectNow();
  }
}

void Client::Impl::startRegistration() {
  if (registrationRunning) return;
  registrationRunning = true;
  const std::string base = gateway().httpBase;
  setState(ConnectionState::Connecting, "registering at " + base);
  // The HTTP request blocks, so it runs on the callback thread; its result
  // comes back as a command.
  const std::string name = options.name.empty() ? options.meshId : options.name;
  post([this, name, base] {
    auto result = registerMesh(base, options.meshId, options.secret, name, options.connectTimeout,
                               options.caFile, options.proxy, options.noProxy);
    push(detail::RegistrationDone{std::move(result)});
  });
}

void Client::Impl::onRegistrationDone(const Result<RegisterOutcome>& result) {
  registrationRunning = false;
  if (stopping) return;
  if (result) {
    if (auto r = outbox->setMeta(registeredKey(), "1"); !r) reportError(r.error());
    connectNow();
    return;
  }
  if (result.status() == Status::RegistrationConflict ||
      result.status() == Status::InvalidArgument) {
    failForGood(result.error());
    return;
  }
  reportError(result.error());
  // A relay that cannot be reached for registration is gone as much as one
  // that refuses the WebSocket.
  if (result.status() == Status::ConnectionFailed && gateways.size() > 1) {
    current = (current + 1) % gateways.size();
  }
  setState(ConnectionState::WaitingToReconnect, result.error().message);
  scheduleReconnect();
}

void Client::Impl::connectNow() {
  if (stopping || failed || attemptActive) return;
  attemptActive = true;
  closeReason.clear();
  peerCloseCode = 0;
  // The token of this connection, read now from its source.
  sentToken = currentToken();
  if (sentToken.empty() && renewableToken() && options.secret.empty() && !resumeToken) {
    // Nothing to prove who we are with: wait for the source, do not ask
    // the relay to refuse us.
    attemptActive = false;
    setState(ConnectionState::WaitingToReconnect, "no token to connect with yet");
    scheduleReconnect();
    return;
  }
  if (options.authHeader && renewableToken()) {
    if (!sentToken.empty()) {
      authorization = "Bearer " + sentToken;
    } else if (options.secret.empty()) {
      authorization.clear();
    }
  }
  const detail::Gateway& g = gateway();
  setState(ConnectionState::Connecting,
           "connecting to " + g.text + (g.proxy ? " through proxy " + g.proxy->display() : ""));
  lws_client_connect_info info{};
  info.context = context;
  info.vhost = g.vhost;
  info.address = g.url.host.c_str();
  info.port = g.url.port;
  info.path = g.url.path.c_str();
  info.host = g.hostHeader.c_str();
  info.origin = g.hostHeader.c_str();
  info.ssl_connection = g.url.secure() ? LCCSCF_USE_SSL : 0;
  // Bind to our handler without asking the relay for a subprotocol: the
  // relay, like the original, expects none.
  info.protocol = nullptr;
  info.local_protocol_name = kProtocols[0].name;
  info.retry_and_idle_policy = &keepalivePolicy;
  if (g.url.secure()) {
    TlsGate::instance().enter();
    inTlsHandshake = true;
  }
  if (lws_client_connect_via_info(&info) == nullptr) {
    // lws may already have reported CONNECTION_ERROR; onDisconnected ignores
    // a second report for the same attempt.
    const bool wasActive = attemptActive;
    const std::string message = "cannot start a connection to " + g.text;
    onDisconnected(message, true);
    if (wasActive) reportConnectError(message);
  }
}

void Client::Impl::leaveTlsHandshake() {
  if (!inTlsHandshake) return;
  inTlsHandshake = false;
  TlsGate::instance().leave();
}

void Client::Impl::onEstablished(lws* w) {
  leaveTlsHandshake();
  wsi = w;
  rx.clear();
  rxTooLarge = false;
  control.clear();
  // Credentials on the upgrade: the relay speaks first (gateway_auth_ok).
  if (!options.authHeader) control.push_back(authFrame());
  setState(ConnectionState::Authenticating, "authenticating as " + options.meshId);
  lws_callback_on_writable(wsi);
}

std::string Client::Impl::authFrame() {
  detail::JsonOut out;
  out.beginObject();
  out.field("type", "gateway_auth");
  out.field("meshId", options.meshId);
  // The relay tries the token first and falls back to the secret, so both
  // go along: a dead token costs one Argon2 check, never a failed auth.
  if (resumeToken) out.field("resumeToken", *resumeToken);
  if (!sentToken.empty()) out.field("token", sentToken);
  if (!options.secret.empty()) out.field("secret", options.secret);
  // The relay sends gateway_presence only to nodes that ask (the original
  // ignores the field).
  if (options.callbacks.onPresence) out.boolField("presence", true);
  {
    std::lock_guard lock(mu);
    out.stringArray("publicRooms", rooms);
    out.participants("participants", participants);
  }
  out.endObject();
  return out.take();
}

std::string Client::Impl::currentToken() {
  if (!renewableToken()) return options.token;
  std::string token;
  std::string problem;
  if (options.tokenProvider) {
    try {
      token = options.tokenProvider();
    } catch (const std::exception& e) {
      problem = std::string("the token provider threw: ") + e.what();
    } catch (...) {
      problem = "the token provider threw";
    }
  } else {
    std::ifstream in(options.tokenFile, std::ios::binary);
    std::ostringstream text;
    if (in && (text << in.rdbuf())) {
      token = text.str();
    } else if (in) {
      token.clear();  // an empty file
    } else {
      problem = "cannot read the token file " + options.tokenFile + ": " + std::strerror(errno);
    }
  }
  const auto blank = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  while (!token.empty() && blank(token.back())) token.pop_back();
  std::size_t lead = 0;
  while (lead < token.size() && blank(token[lead])) ++lead;
  token.erase(0, lead);
  if (problem.empty() && token.empty()) {
    problem = options.tokenProvider ? "the token provider gave no token"
                                    : "the token file " + options.tokenFile + " is empty";
  }
  if (problem.empty() &&
      std::any_of(token.begin(), token.end(), [](char c) { return c <= ' ' || c > '~'; })) {
    problem = options.tokenProvider
                  ? "the token provider gave a token that is not printable ASCII"
                  : "the token file " + options.tokenFile + " holds more than one printable word";
  }
  if (problem.empty()) {
    tokenProblem.clear();
    lastToken = std::move(token);
    return lastToken;
  }
  if (problem != tokenProblem) {
    tokenProblem = problem;
    reportError(Error{Status::InvalidArgument, problem + "; using the last token"});
  }
  return lastToken.empty() ? options.token : lastToken;
}

void Client::Impl::renewToken(const std::string& warning) {
  const std::string token = currentToken();
  if (!authenticated || token.empty() || token == sentToken) {
    reportError(Error{
        Status::AuthFailed,
        "relay " + warning + (renewableToken() ? " (no fresh token to renew it with yet)" : "")});
    return;
  }
  sentToken = token;
  detail::JsonOut out;
  out.beginObject();
  out.field("type", "gateway_reauth");
  out.field("token", token);
  out.field("id", "reauth-" + std::to_string(++reauthCount));
  out.endObject();
  control.push_back(out.take());
  requestWrite();
}

int Client::Impl::onReceive(lws* w, const void* in, std::size_t len) {
  if (!rxTooLarge) {
    if (rx.size() + len > options.maxIncomingBytes) {
      rxTooLarge = true;
      rx.clear();
    } else {
      rx.append(static_cast<const char*>(in), len);
    }
  }
  if (!lws_is_final_fragment(w) || lws_remaining_packet_payload(w) > 0) return 0;
  if (rxTooLarge) {
    rxTooLarge = false;
    reportError(Error{Status::ProtocolError, "dropped a frame from the relay larger than " +
                                                 std::to_string(options.maxIncomingBytes) +
                                                 " bytes"});
    return 0;
  }
  std::string text;
  text.swap(rx);
  handleFrame(text);
  return 0;
}

int Client::Impl::onWriteable(lws* w) {
  if (stopping) {
    unsigned char bye[] = "client stopping";
    lws_close_reason(w, LWS_CLOSE_STATUS_NORMAL, bye, sizeof bye - 1);
    return -1;
  }
  if (failed) return -1;  // refused for good: do not stay connected
  const std::string frame = nextFrame();
  if (frame.empty()) return 0;
  tx.resize(LWS_PRE + frame.size());
  std::copy(frame.begin(), frame.end(), tx.begin() + LWS_PRE);
  const int written = lws_write(w, tx.data() + LWS_PRE, frame.size(), LWS_WRITE_TEXT);
  if (written < static_cast<int>(frame.size())) return -1;  // the connection is broken
  requestWrite();
  return 0;
}

std::string Client::Impl::nextFrame() {
  if (!control.empty()) {
    std::string frame = std::move(control.front());
    control.pop_front();
    return frame;
  }
  if (!authenticated) return {};
  const std::int64_t now = monoMs();
  while (inFlight < options.maxInFlight && !ready.empty() && ready.begin()->first <= now) {
    const std::int64_t seq = ready.begin()->second;
    ready.erase(ready.begin());
    auto it = pending.find(seq);
    if (it == pending.end()) continue;
    Pending& p = it->second;
    p.readyAt.reset();
    if (p.inFlight) continue;
    if (wallMs() - p.message.createdMs > options.maxMessageAge.count()) {
      finish(seq, DeliveryReport{p.message.id, DeliveryReport::Outcome::GaveUp, 0,
                                 tooOld(p, "not delivered")});
      continue;
    }
    detail::JsonOut out;
    out.beginObject();
    out.field("type", p.message.target ? "gateway_relay" : "gateway_broadcast");
    out.field("id", p.message.id);
    if (p.message.target) out.field("targetMeshId", *p.message.target);
    out.rawField("payload", p.message.payloadJson);
    out.endObject();
    markSent(p);
    return out.take();
  }
  armRetryTimer();
  return {};
}

void Client::Impl::requestWrite() {
  if (wsi == nullptr || stopping) return;
  const bool messageDue = authenticated && inFlight < options.maxInFlight && !ready.empty() &&
                          ready.begin()->first <= monoMs();
  if (!control.empty() || messageDue) {
    lws_callback_on_writable(wsi);
  } else {
    armRetryTimer();
  }
}

void Client::Impl::armRetryTimer() {
  if (!authenticated || ready.empty() || inFlight >= options.maxInFlight) return;
  const std::int64_t wait = std::max<std::int64_t>(0, ready.begin()->first - monoMs());
  lws_sul_schedule(
      context, 0, &retryTimer.sul,
      [](lws_sorted_usec_list_t* sul) {
        Client::Impl* self = ownerOf(sul);
        if (self->wsi != nullptr) lws_callback_on_writable(self->wsi);
      },
      wait * LWS_US_PER_MS + 1);
}

void Client::Impl::onDisconnected(const std::string& reason, bool relayGone) {
  if (!attemptActive) return;
  attemptActive = false;
  if (relayGone && gateways.size() > 1 && !stopping && !failed) {
    current = (current + 1) % gateways.size();
  }
  leaveTlsHandshake();
  wsi = nullptr;
  authenticated = false;
  control.clear();
  rx.clear();
  lws_sul_cancel(&retryTimer.sul);
  lws_sul_cancel(&ackTimer.sul);
  relayAcks = false;
  // Unacknowledged messages go out again on the next connection, with their
  // ids, in their original order.
  const std::int64_t now = monoMs();
  for (auto& [seq, p] : pending) {
    if (p.inFlight) {
      clearInFlight(p);
      p.ackTimeouts = 0;
      schedule(p, now);
      noteExpiry(p.message.createdMs);
    }
  }
  if (stopping) {
    exitLoop = true;
    return;
  }
  if (failed) return;
  setState(ConnectionState::WaitingToReconnect,
           relayGone && gateways.size() > 1 ? reason + "; next: " + gateway().text : reason);
  scheduleReconnect();
}

milliseconds Client::Impl::backoff(milliseconds min, milliseconds max, unsigned attempt) {
  const double base = std::min(
      static_cast<double>(max.count()),
      static_cast<double>(min.count()) * static_cast<double>(1ULL << std::min(attempt, 30U)));
  std::uniform_real_distribution<double> share(0.0, options.jitter);
  const double delay = base * (1.0 - share(rng));
  return milliseconds(std::max<std::int64_t>(1, static_cast<std::int64_t>(delay)));
}

void Client::Impl::scheduleReconnect() {
  const milliseconds delay =
      backoff(options.reconnectMin, options.reconnectMax, reconnectAttempt++);
  lws_sul_schedule(
      context, 0, &reconnectTimer.sul,
      [](lws_sorted_usec_list_t* sul) { ownerOf(sul)->beginAttempt(); },
      delay.count() * LWS_US_PER_MS);
}

void Client::Impl::failForGood(Error error) {
  failed = true;
  lws_sul_cancel(&reconnectTimer.sul);
  if (wsi != nullptr) lws_callback_on_writable(wsi);
  reportError(error);
  const std::string reason = error.message;
  setState(ConnectionState::Failed, reason, std::move(error));
}

void Client::Impl::handleFrame(const std::string& text) {
  if (options.callbacks.onFrame) {
    post([this, text] { options.callbacks.onFrame(text); });
  }
  auto decoded = proto::decodeServerFrame(text);
  if (!decoded) {
    reportError(
        Error{Status::ProtocolError, "unreadable frame from the relay: " +
                                         text.substr(0, std::min<std::size_t>(text.size(), 200))});
    return;
  }
  std::visit(
      [this](auto& f) {
        using T = std::decay_t<decltype(f)>;
        if constexpr (std::is_same_v<T, proto::AuthOk>) {
          onAuthOk(f);
        } else if constexpr (std::is_same_v<T, proto::AuthError>) {
          onAuthError(f);
        } else if constexpr (std::is_same_v<T, proto::DiscoverResult>) {
          onDiscoverResult(std::move(f));
        } else if constexpr (std::is_same_v<T, proto::Incoming>) {
          onIncoming(std::move(f));
        } else if constexpr (std::is_same_v<T, proto::Participants>) {
          if (!options.callbacks.onParticipants) return;
          std::vector<RemoteParticipants> remote;
          for (const auto& r : f.remote) {
            remote.push_back({r.meshId, r.meshName, detail::parseParticipants(r.participantsJson)});
          }
          post([this, remote = std::move(remote)] { options.callbacks.onParticipants(remote); });
        } else if constexpr (std::is_same_v<T, proto::ErrorFrame>) {
          onErrorFrame(f);
        } else if constexpr (std::is_same_v<T, proto::Ack>) {
          onAck(f);
        } else if constexpr (std::is_same_v<T, proto::Presence>) {
          if (!options.callbacks.onPresence) return;
          PresenceEvent event{f.meshId, f.name, f.online};
          post([this, event = std::move(event)] { options.callbacks.onPresence(event); });
        }
        // UnknownServerFrame: ignored, as the protocol asks of clients.
      },
      *decoded);
}

void Client::Impl::onAuthOk(const proto::AuthOk& ok) {
  authenticated = true;
  reconnectAttempt = 0;
  lastConnectError.clear();
  // Only a relay that speaks Part B issues tokens, and it acks every message.
  relayAcks = !ok.resumeToken.empty();
  if (!ok.resumeToken.empty()) {
    resumeToken = ok.resumeToken;
    // The token is only good at this relay; a failure to store it costs an
    // Argon2 check at the next connect, nothing more.
    for (auto r :
         {outbox->setMeta(kMetaToken, ok.resumeToken), outbox->setMeta(kMetaTokenUrl, tokenUrlKey),
          outbox->setMeta(kMetaTokenExpires, ok.resumeExpiresAt)}) {
      if (!r) reportError(r.error());
    }
  }
  setState(ConnectionState::Connected,
           "authenticated as " + ok.meshId + " (" + ok.name + ") at " + gateway().text);
  if (options.authHeader) {
    // No gateway_auth carried them: announce what the node has.
    std::lock_guard lock(mu);
    if (!rooms.empty()) {
      detail::JsonOut out;
      out.beginObject();
      out.field("type", "gateway_update_rooms");
      out.stringArray("publicRooms", rooms);
      out.endObject();
      control.push_back(out.take());
    }
    if (!participants.empty()) {
      detail::JsonOut out;
      out.beginObject();
      out.field("type", "gateway_update_participants");
      out.participants("participants", participants);
      out.endObject();
      control.push_back(out.take());
    }
  }
  // Discover calls made while we were away go out now.
  std::vector<std::string> waiting;
  {
    std::lock_guard lock(mu);
    for (const auto& [id, waiter] : discoverWaiters) {
      if (!waiter->done) waiting.push_back(id);
    }
  }
  for (const auto& id : waiting) {
    detail::JsonOut out;
    out.beginObject();
    out.field("type", "gateway_discover");
    out.field("id", id);
    out.endObject();
    control.push_back(out.take());
  }
  requestWrite();
}

void Client::Impl::onAuthError(const proto::AuthError& error) {
  if (authenticated) {
    // not_authenticated after auth cannot come from a sane relay; say so.
    reportError(Error{Status::ProtocolError, "relay: " + error.code + " " + error.message});
    return;
  }
  // authorize_unavailable: the credentials were right but the relay's
  // authorize hook could not be asked; it may answer next time.
  if (error.code == "auth_timeout" || error.code == "not_authenticated" ||
      error.code == "authorize_unavailable") {
    closeReason = "relay: " + error.message;  // reconnect as usual
    return;
  }
  if (error.code == "not_authorized") {
    // Right credentials, refused by the relay's authorize hook: the resume
    // token is still good, but trying again would get the same answer.
    failForGood(Error{Status::AuthFailed,
                      "relay refused meshId '" + options.meshId + "': " + error.message});
    return;
  }
  // invalid_credentials, or an original relay's codeless refusal. We sent
  // the secret too, so a dead token alone cannot cause this.
  resumeToken.reset();
  for (auto r : {outbox->deleteMeta(kMetaToken), outbox->deleteMeta(kMetaTokenUrl)}) {
    if (!r) reportError(r.error());
  }
  if (renewableToken()) {
    // The token may have run out, or not be there yet; the source may have
    // a fresh one by the next attempt (the relay closes this connection,
    // we reconnect).
    reportError(Error{
        Status::AuthFailed,
        "relay refused meshId '" + options.meshId + "' " +
            (sentToken.empty() ? "without a token (the source has none yet)" : "with this token") +
            ": " + error.message + "; trying again with the next token"});
    closeReason = "relay refused the token";
    return;
  }
  failForGood(Error{Status::AuthFailed, "relay refused meshId '" + options.meshId + "' with this " +
                                            (sentToken.empty() ? "secret" : "token") + ": " +
                                            error.message});
}

void Client::Impl::onAck(const proto::Ack& ack) {
  const auto found = seqById.find(ack.id);
  if (found == seqById.end()) return;  // an answer to a repeat we already settled
  const std::int64_t seq = found->second;
  Pending& p = pending.at(seq);
  // An ack may answer an earlier send of a message that timed out and is
  // queued or in flight again: it settles the message all the same.
  clearInFlight(p);
  p.ackTimeouts = 0;
  if (!relayAcks) {
    // A relay without tokens that acks after all: time out the others too.
    relayAcks = true;
    for (auto& [otherSeq, other] : pending) {
      if (other.inFlight && !other.ackDueAt) {
        clearInFlight(other);
        markSent(other);
      }
    }
  }
  if (ack.status == "delivered" || ack.status == "stored") {
    finish(seq, DeliveryReport{ack.id, DeliveryReport::Outcome::Delivered, ack.recipients, {}});
  } else if (ack.status == "offline") {
    retryLater(p, "target offline");
  } else {
    retryLater(p, "ack status '" + ack.status + "'");
  }
  requestWrite();
}

void Client::Impl::retryLater(Pending& p, const std::string& why) {
  p.lastProblem = why;
  if (wallMs() - p.message.createdMs > options.maxMessageAge.count()) {
    finish(p.message.seq,
           DeliveryReport{p.message.id, DeliveryReport::Outcome::GaveUp, 0, tooOld(p, why)});
    return;
  }
  if (!options.retryOffline) {
    finish(p.message.seq, DeliveryReport{p.message.id, DeliveryReport::Outcome::GaveUp, 0,
                                         why + " (retryOffline is off)"});
    return;
  }
  const milliseconds delay = backoff(options.retryMin, options.retryMax, p.attempts++);
  schedule(p, monoMs() + delay.count());
}

std::string Client::Impl::tooOld(const Pending& p, const std::string& fallback) const {
  const std::int64_t age = std::max<std::int64_t>(0, wallMs() - p.message.createdMs);
  return (p.lastProblem.empty() ? fallback : p.lastProblem) + "; given up after " +
         std::to_string(age) + " ms (maxMessageAge " +
         std::to_string(options.maxMessageAge.count()) + " ms)";
}

void Client::Impl::schedule(Pending& p, std::int64_t dueMs) {
  if (p.readyAt) ready.erase({*p.readyAt, p.message.seq});
  p.readyAt = dueMs;
  ready.emplace(dueMs, p.message.seq);
}

void Client::Impl::markSent(Pending& p) {
  p.inFlight = true;
  ++inFlight;
  if (!relayAcks || options.ackTimeout.count() <= 0) return;
  // 1, 2, 4, then 8 times the timeout for repeated misses of one message.
  const std::int64_t wait = options.ackTimeout.count() << std::min(p.ackTimeouts, 3U);
  p.ackDueAt = monoMs() + wait;
  ackDeadlines.emplace(*p.ackDueAt, p.message.seq);
  armAckTimer();
}

void Client::Impl::clearInFlight(Pending& p) {
  if (!p.inFlight) return;
  p.inFlight = false;
  --inFlight;
  if (p.ackDueAt) {
    ackDeadlines.erase({*p.ackDueAt, p.message.seq});
    p.ackDueAt.reset();
  }
}

void Client::Impl::armAckTimer() {
  if (stopping || ackDeadlines.empty()) return;  // a timer still set finds nothing due
  const std::int64_t wait = std::max<std::int64_t>(0, ackDeadlines.begin()->first - monoMs());
  lws_sul_schedule(
      context, 0, &ackTimer.sul, [](lws_sorted_usec_list_t* sul) { ownerOf(sul)->onAckTimer(); },
      wait * LWS_US_PER_MS + 1);
}

void Client::Impl::onAckTimer() {
  const std::int64_t now = monoMs();
  bool resend = false;
  while (!ackDeadlines.empty() && ackDeadlines.begin()->first <= now) {
    Pending& p = pending.at(ackDeadlines.begin()->second);
    // The relay may just be slow: the same id goes again on this connection,
    // and whichever ack comes first settles the message.
    clearInFlight(p);
    ++p.ackTimeouts;
    schedule(p, now);
    resend = true;
  }
  armAckTimer();
  if (resend) requestWrite();
}

void Client::Impl::noteExpiry(std::int64_t createdMs) {
  const std::int64_t at = createdMs + options.maxMessageAge.count();
  if (stopping || (expiryAt && *expiryAt <= at)) return;
  expiryAt = at;
  const std::int64_t wait = std::max<std::int64_t>(0, at - wallMs());
  lws_sul_schedule(
      context, 0, &expiryTimer.sul, [](lws_sorted_usec_list_t* sul) { ownerOf(sul)->expireOld(); },
      (wait + 1) * LWS_US_PER_MS);
}

void Client::Impl::expireOld() {
  // Messages in flight wait for their answer; their age is checked then.
  expiryAt.reset();
  const std::int64_t now = wallMs();
  std::vector<std::int64_t> old;
  std::optional<std::int64_t> oldestLeft;
  for (const auto& [seq, p] : pending) {
    if (p.inFlight) continue;
    if (now - p.message.createdMs > options.maxMessageAge.count()) {
      old.push_back(seq);
    } else if (!oldestLeft || p.message.createdMs < *oldestLeft) {
      oldestLeft = p.message.createdMs;
    }
  }
  for (const std::int64_t seq : old) {
    const Pending& p = pending.at(seq);
    finish(seq, DeliveryReport{p.message.id, DeliveryReport::Outcome::GaveUp, 0,
                               tooOld(p, reconnectAttempt > 0 && !authenticated
                                             ? "not delivered, relay unreachable"
                                             : "not delivered")});
  }
  if (oldestLeft) noteExpiry(*oldestLeft);
}

void Client::Impl::reportConnectError(const std::string& message) {
  // Once per streak of the same failure: every retry would say it again.
  if (message == lastConnectError) return;
  lastConnectError = message;
  reportError(Error{Status::ConnectionFailed, message});
}

void Client::Impl::finish(std::int64_t seq, DeliveryReport report) {
  const auto it = pending.find(seq);
  if (it == pending.end()) return;
  Pending& p = it->second;
  clearInFlight(p);
  if (p.readyAt) ready.erase({*p.readyAt, seq});
  if (auto r = outbox->remove(p.message.id); !r) reportError(r.error());
  {
    std::lock_guard lock(mu);
    --outboxMessages;
    outboxBytes -= p.message.payloadJson.size();
  }
  seqById.erase(p.message.id);
  pending.erase(it);
  if (options.callbacks.onDelivery) {
    post([this, report = std::move(report)] { options.callbacks.onDelivery(report); });
  }
}

void Client::Impl::onErrorFrame(const proto::ErrorFrame& error) {
  const std::string text = error.code + ": " + error.message;
  if (error.id && error.id->rfind("reauth-", 0) == 0 && seqById.count(*error.id) == 0) {
    // The relay keeps the session until the token it has runs out.
    reportError(Error{Status::AuthFailed, "relay refused the renewed token (" + text +
                                              "); the session ends with the current token"});
    return;
  }
  if (error.code == "token_expired") {
    renewToken(text);
    return;
  }
  if (error.id) {
    if (const auto found = seqById.find(*error.id); found != seqById.end()) {
      const std::int64_t seq = found->second;
      Pending& p = pending.at(seq);
      clearInFlight(p);
      if (error.code == "rate_limited" || error.code == "not_authenticated") {
        retryLater(p, text);
      } else {
        finish(seq, DeliveryReport{p.message.id, DeliveryReport::Outcome::Rejected, 0, text});
      }
      requestWrite();
      return;
    }
    bool wasDiscover = false;
    {
      std::lock_guard lock(mu);
      if (const auto w = discoverWaiters.find(*error.id); w != discoverWaiters.end()) {
        w->second->done = true;
        w->second->result = Error{Status::ProtocolError, "relay refused discover: " + text};
        wasDiscover = true;
      }
    }
    if (wasDiscover) {
      changed.notify_all();
      return;
    }
  }
  if (error.code == "session_replaced") {
    failForGood(Error{Status::SessionReplaced,
                      "another connection authenticated as '" + options.meshId + "'"});
    return;
  }
  if (error.code == "shutting_down") {
    closeReason = "relay shutting down";
    return;
  }
  reportError(Error{Status::ProtocolError, "relay error " + text});
}

void Client::Impl::onIncoming(proto::Incoming incoming) {
  if (incoming.id && !outbox->markSeen(incoming.fromMeshId, *incoming.id, wallMs())) return;
  if (!options.callbacks.onMessage) return;
  IncomingMessage message{std::move(incoming.fromMeshId), std::move(incoming.fromMeshName),
                          std::move(incoming.payloadJson), std::move(incoming.id)};
  post([this, message = std::move(message)] { options.callbacks.onMessage(message); });
}

void Client::Impl::onDiscoverResult(proto::DiscoverResult result) {
  std::vector<Instance> instances;
  for (auto& i : result.instances) {
    instances.push_back({std::move(i.meshId), std::move(i.name), std::move(i.publicRooms)});
  }
  std::lock_guard lock(mu);
  // A relay that echoes no id (the original) answers in order: oldest first.
  auto it = result.id ? discoverWaiters.find(*result.id) : discoverWaiters.begin();
  while (!result.id && it != discoverWaiters.end() && it->second->done) ++it;
  if (it == discoverWaiters.end()) return;
  it->second->done = true;
  it->second->result = std::move(instances);
  changed.notify_all();
}

}  // namespace mesh::client
