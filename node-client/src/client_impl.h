// Client::Impl: the state behind a Client and who may touch it.
//
// Three kinds of threads meet here:
//  - user threads call the public methods; they only write the outbox (it
//    has its own lock) and push Commands under `mu`, then wake the network
//    thread with lws_cancel_service(), the one lws call safe off its thread;
//  - the network thread runs lws_service() and owns every member marked
//    "network thread" below, the lws context and the connection;
//  - the callback thread (Dispatcher) runs user callbacks and the blocking
//    registration request, in order.
#pragma once

#include <libwebsockets.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "mesh/client/client.h"
#include "mesh/client/http.h"
#include "mesh/proto/server_frames.h"
#include "outbox.h"
#include "proxy.h"
#include "tls.h"
#include "url.h"

namespace mesh::client {

namespace detail {

// One thread that runs posted jobs in order: user callbacks and blocking
// HTTP. stop() runs what is queued, then joins.
class Dispatcher {
 public:
  void start();
  void post(std::function<void()> job);
  void stop();
  [[nodiscard]] bool onThisThread() const { return std::this_thread::get_id() == id_; }

 private:
  void run();
  std::mutex mu_;  // guards jobs_ and stopping_
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  bool stopped_ = false;  // the thread has ended; later posts are dropped
  std::thread thread_;
  std::thread::id id_;
};

// An lws timer with a way back to its owner: `sul` is the first member of a
// standard-layout struct, so the pointer lws hands back converts to Timer*.
struct Timer {
  lws_sorted_usec_list_t sul;
  Client::Impl* owner;
};

// A message of the outbox as the network thread tracks it. A message is
// either waiting in `ready` (readyAt set), or in flight (sent, no answer
// yet), or neither while the network thread works on it.
struct Pending {
  OutboxMessage message;
  bool inFlight = false;                 // sent on the current connection, no ack yet
  unsigned attempts = 0;                 // offline/rate-limited answers so far
  unsigned ackTimeouts = 0;              // sends in a row that got no ack in time
  std::optional<std::int64_t> readyAt;   // its key in Impl::ready, when queued
  std::optional<std::int64_t> ackDueAt;  // its key in Impl::ackDeadlines
  std::string lastProblem;               // why the last attempt failed, for GaveUp
};

struct NewMessage {
  OutboxMessage message;
};
struct RoomsChanged {};
struct ParticipantsChanged {};
struct DiscoverRequested {
  std::string id;
};
struct RegistrationDone {
  Result<RegisterOutcome> result;
};
struct StopRequested {};
// What a CONNECT of our own learnt from a proxy that refused lws' tunnel.
struct ProxyProbeDone {
  std::string message;
};
using Command = std::variant<NewMessage, RoomsChanged, ParticipantsChanged, DiscoverRequested,
                             RegistrationDone, StopRequested, ProxyProbeDone>;

// One relay of Options' list and how to reach it.
struct Gateway {
  std::string text;  // the URL as configured
  Url url;
  std::string hostHeader;  // lws keeps pointers into it while connecting
  std::string httpBase;
  std::optional<ProxyUrl> proxy;  // nullopt: direct
  lws_vhost* vhost = nullptr;     // carries the proxy setting for lws
};

struct DiscoverWaiter {
  bool done = false;
  Result<std::vector<Instance>> result{Error{Status::Timeout, "no answer to discover"}};
};

}  // namespace detail

struct Client::Impl {
  explicit Impl(Options o) : options(std::move(o)) {}

  // ---- fixed after start(), read by every thread ----
  const Options options;
  std::vector<detail::Gateway> gateways;  // at least one
  std::string tokenUrlKey;                // the gateway list a stored resume token is bound to
  detail::SslCtxPtr tls;                  // wss:// only; lws borrows it, we free it
  std::unique_ptr<detail::Outbox> outbox;
  detail::Dispatcher dispatcher;

  // ---- shared: guarded by mu ----
  mutable std::mutex mu;
  std::condition_variable changed;  // state, failure or a discover waiter
  ConnectionState state = ConnectionState::Stopped;
  std::optional<Error> failure;  // why state became Failed
  std::deque<detail::Command> commands;
  bool contextAlive = false;  // lws_cancel_service(context) is allowed
  bool accepting = true;      // false once stop() began
  std::vector<std::string> rooms;
  std::vector<Participant> participants;
  std::map<std::string, std::shared_ptr<detail::DiscoverWaiter>> discoverWaiters;
  std::uint64_t nextDiscoverId = 1;
  // What the outbox holds (and relay() calls have reserved), for the caps.
  std::size_t outboxMessages = 0;
  std::size_t outboxBytes = 0;

  // ---- network thread only (and start() before the thread exists) ----
  lws_context* context = nullptr;
  lws* wsi = nullptr;           // the live connection, once established
  bool attemptActive = false;   // a connection attempt or connection exists
  bool inTlsHandshake = false;  // holds the process-wide TLS gate (client.cpp)
  bool authenticated = false;
  bool stopping = false;
  bool exitLoop = false;
  bool failed = false;  // no more reconnects
  bool registrationRunning = false;
  std::size_t current = 0;  // index into gateways of this (or the next) attempt
  bool proxyProbeRunning = false;
  int peerCloseCode = 0;            // the relay's close frame, 0: none came
  std::string closeReason;          // from the relay's close frame or error
  std::deque<std::string> control;  // frames to send before messages
  std::string rx;                   // a message being reassembled
  bool rxTooLarge = false;
  std::vector<unsigned char> tx;                    // LWS_PRE + one frame
  std::map<std::int64_t, detail::Pending> pending;  // by seq
  std::unordered_map<std::string, std::int64_t> seqById;
  std::set<std::pair<std::int64_t, std::int64_t>> ready;         // (due ms, seq)
  std::set<std::pair<std::int64_t, std::int64_t>> ackDeadlines;  // (due ms, seq)
  unsigned inFlight = 0;
  bool relayAcks = false;                // this connection's relay answers with gateway_ack
  std::optional<std::int64_t> expiryAt;  // wall ms the expiry timer is set for
  std::string lastConnectError;          // reported once until a connect works
  unsigned reconnectAttempt = 0;
  std::optional<std::string> resumeToken;
  std::string authorization;  // the upgrade's Authorization value (authHeader)
  std::string lastToken;      // the newest usable token the source gave
  std::string sentToken;      // the token of the last gateway_auth, upgrade or reauth
  std::string tokenProblem;   // the source's last problem, reported once until it changes
  unsigned reauthCount = 0;   // ids of gateway_reauth frames: "reauth-<n>"
  std::mt19937_64 rng{std::random_device{}()};
  lws_retry_bo_t keepalivePolicy{};
  detail::Timer reconnectTimer{};
  detail::Timer retryTimer{};
  detail::Timer stopTimer{};
  detail::Timer ackTimer{};
  detail::Timer expiryTimer{};
  std::thread loop;
  std::mutex stopMu;  // makes stop() run once even when called concurrently

  // Public entry points (any thread).
  Result<std::string> enqueue(std::optional<std::string> target, std::string_view payload);
  void push(detail::Command command);
  void stop();
  void setState(ConnectionState next, const std::string& reason,
                std::optional<Error> why = std::nullopt);
  void post(std::function<void()> job) { dispatcher.post(std::move(job)); }
  void reportError(Error error);

  // Network thread.
  void run();
  int onEvent(lws* w, lws_callback_reasons reason, void* in, std::size_t len);
  void drainCommands();
  void beginAttempt();
  void startRegistration();
  void onRegistrationDone(const Result<RegisterOutcome>& result);
  void connectNow();
  void onEstablished(lws* w);
  void leaveTlsHandshake();
  int onReceive(lws* w, const void* in, std::size_t len);
  int onWriteable(lws* w);
  // `relayGone`: the relay could not be reached or vanished without a
  // normal close; with several gateways the next attempt goes to the next.
  void onDisconnected(const std::string& reason, bool relayGone = false);
  void onConnectionError(lws* w, std::string why);
  [[nodiscard]] const detail::Gateway& gateway() const { return gateways[current]; }
  [[nodiscard]] bool needsRegistration();
  [[nodiscard]] std::string registeredKey() const { return "registered@" + gateway().httpBase; }
  void handleFrame(const std::string& text);
  void onAuthOk(const proto::AuthOk& ok);
  void onAuthError(const proto::AuthError& error);
  void onAck(const proto::Ack& ack);
  void onErrorFrame(const proto::ErrorFrame& error);
  void onIncoming(proto::Incoming incoming);
  void onDiscoverResult(proto::DiscoverResult result);
  void retryLater(detail::Pending& p, const std::string& why);
  void finish(std::int64_t seq, DeliveryReport report);
  void schedule(detail::Pending& p, std::int64_t dueMs);
  void markSent(detail::Pending& p);
  void clearInFlight(detail::Pending& p);
  void armAckTimer();
  void onAckTimer();
  void noteExpiry(std::int64_t createdMs);
  void expireOld();
  // GaveUp reason: the last problem the message met (`fallback` if none),
  // its age and the limit.
  [[nodiscard]] std::string tooOld(const detail::Pending& p, const std::string& fallback) const;
  void reportConnectError(const std::string& message);
  void requestWrite();
  void armRetryTimer();
  [[nodiscard]] std::string nextFrame();
  [[nodiscard]] std::string authFrame();
  // Options::tokenProvider, tokenFile or token: the token to send now.
  [[nodiscard]] std::string currentToken();
  [[nodiscard]] bool renewableToken() const {
    return static_cast<bool>(options.tokenProvider) || !options.tokenFile.empty();
  }
  void renewToken(const std::string& warning);
  [[nodiscard]] std::chrono::milliseconds backoff(std::chrono::milliseconds min,
                                                  std::chrono::milliseconds max, unsigned attempt);
  void scheduleReconnect();
  void failForGood(Error error);
};

}  // namespace mesh::client
