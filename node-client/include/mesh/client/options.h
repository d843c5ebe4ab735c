// How a Client is configured: from code, or from the environment variables
// existing mesh nodes use (MESH_ID, MESH_SECRET, MESH_GATEWAY_URL).
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
  // Identity at the relay.
  std::string meshId;
  std::string secret;
  // Registered name; auto-register uses it (the meshId when empty).
  std::string name;

  // The relay's WebSocket endpoint: ws:// or wss://. wss:// checks the
  // relay's certificate and host name against the system CA store.
  std::string gatewayUrl = "ws://localhost:4000/gateway";
  // The relay's HTTP base for /register and /health. Empty: derived from
  // gatewayUrl (ws->http, wss->https, a trailing "/gateway" dropped).
  std::string httpBaseUrl;
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

  // Reads MESH_ID, MESH_SECRET, MESH_GATEWAY_URL (default above),
  // MESH_NAME, MESH_HTTP_URL, MESH_CA_FILE, MESH_OUTBOX_PATH and
  // MESH_AUTO_REGISTER (1/true/yes/on or 0/false/no/off) into `base`;
  // unset or empty variables leave `base` as it is. Fails when MESH_ID or
  // MESH_SECRET ends up empty, or MESH_AUTO_REGISTER is another word.
  [[nodiscard]] static Result<Options> fromEnvironment(Options base);
  [[nodiscard]] static Result<Options> fromEnvironment();
};

// Checks the options a client needs: meshId pattern, secret length, URL.
[[nodiscard]] Result<> validate(const Options& options);

// "ws://h:p/gateway" -> "http://h:p"; "wss://h/x/gateway" -> "https://h/x".
[[nodiscard]] Result<std::string> httpBaseFromGatewayUrl(const std::string& gatewayUrl);

}  // namespace mesh::client
