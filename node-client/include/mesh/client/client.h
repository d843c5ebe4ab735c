// libmeshclient: what a mesh node links to talk to a relay.
//
// A Client keeps one WebSocket connection to the relay authenticated and
// alive: it reconnects with capped exponential backoff and jitter, sends its
// rooms and participants again after every reconnect, and authenticates with
// its resume token when it has one (the secret rides along as the fallback).
//
// Messages handed to relay() or broadcast() go to a durable outbox (SQLite)
// first and carry an id; they leave the outbox only when the relay's
// gateway_ack says delivered, or when the retry policy gives up (reported by
// Callbacks::onDelivery). Unsent messages survive a restart of the node
// process and of the relay; a message whose ack does not come in time is
// sent again on the same connection (Options::ackTimeout). So a message may
// reach the relay more than once, always with the same id, which receivers
// (this library included) use to drop repeats. The outbox is bounded
// (Options::maxPendingMessages, maxPendingBytes).
//
// Threads: one network thread runs libwebsockets; one callback thread runs
// every callback (see Callbacks). All public methods are safe to call from
// any thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mesh/client/options.h"
#include "mesh/client/status.h"
#include "mesh/client/types.h"

namespace mesh::client {

class Client {
 public:
  // Validates and copies `options`, opens the outbox, starts the threads and
  // begins connecting; returns without waiting for the connection. Fails
  // only for bad options or an outbox that cannot be opened: an unreachable
  // relay is retried in the background.
  [[nodiscard]] static Result<std::unique_ptr<Client>> start(const Options& options);

  // Stops like stop().
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Closes the connection (WebSocket close 1000), stops the network thread,
  // runs callbacks already queued, stops the callback thread. Messages not
  // yet acknowledged stay in the outbox for the next start. Idempotent. Must
  // not be called from a callback.
  void stop();

  // Stores the message in the outbox and queues it for `targetMeshId`.
  // `payloadJson` must be a JSON object. Returns the message's id, which
  // Callbacks::onDelivery reports on later. Works while disconnected.
  // Fails at once with OutboxFull when the outbox is at its bound, Closed
  // after stop(), StorageError when the outbox cannot be written.
  [[nodiscard]] Result<std::string> relay(std::string_view targetMeshId,
                                          std::string_view payloadJson);
  // As relay(), to every other mesh online.
  [[nodiscard]] Result<std::string> broadcast(std::string_view payloadJson);

  // Asks the relay which meshes are online (this one included) and waits for
  // the answer. Waits for a connection too, within the same timeout.
  [[nodiscard]] Result<std::vector<Instance>> discover(
      std::chrono::milliseconds timeout = std::chrono::seconds(5));

  // Replaces the announced lists: sent now if connected, and in every later
  // gateway_auth.
  [[nodiscard]] Result<> updateRooms(std::vector<std::string> publicRooms);
  [[nodiscard]] Result<> updateParticipants(std::vector<Participant> participants);

  [[nodiscard]] ConnectionState state() const;
  // Waits until the state is Connected (ok) or Failed/Stopped (the error
  // that caused it), or the timeout passes (Timeout).
  [[nodiscard]] Result<> waitConnected(std::chrono::milliseconds timeout);
  // Messages in the outbox not yet acknowledged or given up.
  [[nodiscard]] std::size_t pendingCount() const;

  struct Impl;  // opaque

 private:
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mesh::client
