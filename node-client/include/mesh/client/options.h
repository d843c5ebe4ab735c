// How a Client is configured: from code, or from the environment variables
// existing mesh nodes use (MESH_ID, MESH_SECRET, MESH_GATEWAY_URL) and the
// proxy variables most tools read (HTTPS_PROXY, HTTP_PROXY, NO_PROXY).
//
// Client::start() copies the Options, so changing an Options value later
// never reaches a running client.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "mesh/client/status.h"
#include "mesh/client/types.h"

namespace mesh::client {

// Every callback runs on the client's one callback thread, never on the
// network thread and never on the thread that called a Client method. They
// run one at a time, in the order the events happened. A callback may call
// any Client method (also discover(), which blocks) except stop() and the
// destructor, which wait for the callback thread to finish.
struct Callbacks {
  // A gateway_incoming frame. Frames with an id are passed on once only,
  // even if the sender retried (de-duplicated on fromMeshId + id).
  std::function<void(const IncomingMessage&)> onMessage;
  // gateway_participants: the other meshes' participant lists.
  std::function<void(const std::vector<RemoteParticipants>&)> onParticipants;
  // gateway_presence: another mesh came online or went offline. Setting it
  // asks the relay for these events at auth ("presence": true).
  std::function<void(const PresenceEvent&)> onPresence;
  // Every state change, with a human reason ("relay closed: 1001 ...").
  std::function<void(ConnectionState, const std::string& reason)> onStateChange;
  // Problems not tied to one call: a connection attempt that failed
  // (Status::ConnectionFailed, e.g. a TLS certificate the node does not
  // trust; reported once until the reason changes or a connection works),
  // auth refused, relay error frames, registration failures, outbox write
  // failures.
  std::function<void(const Error&)> onError;
  // The final fate of every message handed to relay() or broadcast().
  std::function<void(const DeliveryReport&)> onDelivery;
  // Every frame the relay sends, as received (text of one JSON object),
  // before it is interpreted. For tools that print traffic.
  std::function<void(const std::string& frameJson)> onFrame;
};

struct Options {
  // Identity at the relay: the meshId and its secret, or a signed token
  // (JWT) the relay trusts, sent as "token" in gateway_auth. Either may be
  // empty when the other is set; both empty only with authHeader (below).
  std::string meshId;
  std::string secret;
  std::string token;
  // Where fresh tokens come from, for tokens that expire. The first that is
  // set wins: tokenProvider, then tokenFile, then token. The client asks for
  // the current token at every connection (gateway_auth, or the upgrade's
  // Authorization header) and when the relay warns that the session's token
  // runs out (error token_expired): a token different from the one sent is
  // sent in gateway_reauth, so the session lives on without reconnecting.
  // With either set, a refused token (at auth or on the upgrade) is
  // reported and retried with the reconnect backoff instead of stopping
  // the client: the next attempt reads a fresh token.
  // tokenProvider runs on the network thread: it must return quickly (read
  // a value another thread keeps current) and not throw; an empty answer
  // keeps the last token. tokenFile is read whole (surrounding blanks and
  // newlines dropped) each time; a file that cannot be read, or holds no
  // usable token, is reported (onError) and the last token is used.
  std::function<std::string()> tokenProvider;
  std::string tokenFile;
  // Credentials on the WebSocket upgrade request instead of in
  // gateway_auth: "Authorization: Bearer <token>", or "Authorization: Basic
  // base64(meshId:secret)" without a token; the client then sends no
  // gateway_auth and waits for the relay's gateway_auth_ok, and announces
  // its rooms and participants right after it. With neither a secret nor a
  // token, no Authorization header is sent at all: a proxy in front of the
  // node adds it, and the node holds no credentials.
  bool authHeader = false;
  // Registered name; auto-register uses it (the meshId when empty).
  std::string name;

  // The relay's WebSocket endpoint: ws:// or wss://. wss:// checks the
  // relay's certificate and host name against the system CA store. Several
  // relays without a load balancer in front: a comma-separated list (or
  // gatewayUrls).
  std::string gatewayUrl = "ws://localhost:4000/gateway";
  // When not empty, replaces gatewayUrl: relays tried in order. The client
  // stays on one while it works and moves to the next when that one is gone
  // (the connection cannot be made, or drops without a normal close); the
  // resume token goes along.
  std::vector<std::string> gatewayUrls;
  // The relay's HTTP base for /register and /health. Empty: derived from
  // gatewayUrl (ws->http, wss->https, a trailing "/gateway" dropped).
  std::string httpBaseUrl;
  // The HTTP proxy for the WebSocket connection and the HTTP calls. Empty:
  // from the environment, as curl reads it (ws:// and http:// use
  // http_proxy or HTTP_PROXY, wss:// and https:// https_proxy or
  // HTTPS_PROXY, then all_proxy or ALL_PROXY for both; the lower-case name
  // wins). "none" (or "direct"): never a proxy, whatever the environment
  // says. Otherwise the proxy's URL, http://[user:password@]host[:port]
  // (credentials percent-encoded; sent as Proxy-Authorization: Basic, and
  // never shown in messages). Every connection, WebSocket and HTTP, goes
  // through an HTTP CONNECT tunnel (TLS runs inside it, checked against the
  // relay's name), so the proxy must allow CONNECT to the relay's port.
  std::string proxy;
  // Hosts reached without the proxy: empty reads no_proxy or NO_PROXY.
  // Comma-separated: "*" for all, host names (matching their subdomains
  // too, with or without a leading dot), IP addresses, CIDR ranges, each
  // optionally with ":port".
  std::string noProxy;
  // A PEM file of CA certificates trusted for wss:// and https:// besides
  // the system store: for a relay whose certificate a private CA issued.
  // start() fails (InvalidArgument) when it cannot be read. Empty: none.
  std::string caFile;

  // SQLite file of the durable outbox (pending messages, the resume token,
  // ids of received messages). ":memory:" keeps nothing across restarts.
  std::string outboxPath = "mesh-outbox.db";
  // fsync every outbox write (SQLite synchronous=FULL). Off still survives
  // a crash of the process, not a power loss.
  bool durableSync = true;

  // POST /register once, before the first connect, if this outbox has no
  // record of a successful registration. 409 stops the client (Failed).
  bool autoRegister = false;

  // Announced in every gateway_auth, so a reconnect restores them.
  std::vector<std::string> publicRooms;
  std::vector<Participant> participants;

  // Reconnect delay: starts at reconnectMin, doubles per failed attempt up
  // to reconnectMax; each delay is cut by a random share up to `jitter` so a
  // relay restart does not see every node return in the same millisecond.
  std::chrono::milliseconds reconnectMin{500};
  std::chrono::milliseconds reconnectMax{30000};
  double jitter = 0.5;

  // When the relay says the target is offline (or rate limits us): retry
  // with backoff between retryMin and retryMax. retryOffline=false gives up
  // at once. Any message still in the outbox once it is older than
  // maxMessageAge is given up (DeliveryReport::GaveUp, the reason names the
  // last problem, the age and the limit), also while the relay cannot be
  // reached and at start for messages a previous run left; a message in
  // flight is judged when its answer comes (or it times out).
  bool retryOffline = true;
  std::chrono::milliseconds retryMin{1000};
  std::chrono::milliseconds retryMax{60000};
  std::chrono::milliseconds maxMessageAge{std::chrono::hours(24)};

  // Messages sent and not yet acknowledged on one connection. Bounds what
  // the relay's rate limiter and our socket see at once.
  unsigned maxInFlight = 128;
  // A message sent on a live connection whose gateway_ack has not come
  // within this time is sent again, with the same id (receivers drop the
  // repeat); each further timeout of that message doubles its wait, up to
  // 8 times this value. Only once the relay has shown it sends acks (a
  // resume token at auth, or any gateway_ack): the original relay sends
  // none. Zero: wait for the ack until the connection drops.
  std::chrono::milliseconds ackTimeout{10000};
  // Bounds on the outbox: when this many messages, or this many payload
  // bytes, wait in it, relay() and broadcast() fail at once with
  // Status::OutboxFull instead of letting it grow. Zero: no bound.
  std::size_t maxPendingMessages = 100000;
  std::size_t maxPendingBytes = std::size_t{256} << 20;
  // The relay's frame limit; larger messages are refused by relay() and
  // broadcast() at once rather than by the relay later.
  std::size_t maxFrameBytes = 65536;
  // Largest frame we accept from the relay.
  std::size_t maxIncomingBytes = 1 << 20;

  // TCP + TLS + WebSocket handshake, and HTTP requests.
  std::chrono::milliseconds connectTimeout{10000};
  // With no traffic for this long the client pings the relay, and drops
  // the connection if the pong does not come within the same time again.
  std::chrono::seconds keepalive{30};

  Callbacks callbacks;

  // Reads MESH_ID, MESH_SECRET, MESH_TOKEN, MESH_TOKEN_FILE, MESH_AUTH_HEADER,
  // MESH_GATEWAY_URL (default above; may be a comma-separated list),
  // MESH_NAME, MESH_HTTP_URL, MESH_CA_FILE, MESH_PROXY (Options::proxy),
  // MESH_OUTBOX_PATH and MESH_AUTO_REGISTER (MESH_AUTH_HEADER and
  // MESH_AUTO_REGISTER: 1/true/yes/on or 0/false/no/off) into `base`;
  // unset or empty variables leave `base` as it is. Fails when MESH_ID is
  // empty, when MESH_SECRET, MESH_TOKEN and MESH_TOKEN_FILE are empty without
  // MESH_AUTH_HEADER, or a flag is another word. The proxy variables
  // (HTTPS_PROXY, ...) are read when the client starts, not here.
  [[nodiscard]] static Result<Options> fromEnvironment(Options base);
  [[nodiscard]] static Result<Options> fromEnvironment();
};

// Checks the options a client needs: meshId pattern, secret length, URLs,
// the proxy settings.
[[nodiscard]] Result<> validate(const Options& options);

// The relays an Options names, in order: gatewayUrls, or gatewayUrl split
// at commas (blanks around each URL dropped).
[[nodiscard]] std::vector<std::string> gatewayUrlList(const Options& options);

// "ws://h:p/gateway" -> "http://h:p"; "wss://h/x/gateway" -> "https://h/x".
[[nodiscard]] Result<std::string> httpBaseFromGatewayUrl(const std::string& gatewayUrl);

}  // namespace mesh::client
