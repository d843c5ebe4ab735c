// The protocol's error vocabulary (PROTOCOL.md, "Machine-readable errors"):
// one enum, one text table, and which of them end the connection.
#pragma once

#include <string_view>

namespace mesh::proto {

enum class ErrorCode {
  InvalidJson,
  InvalidFrame,
  UnknownType,
  UnsupportedFrame,
  FrameTooLarge,
  NotAuthenticated,
  AlreadyAuthenticated,
  InvalidCredentials,
  AuthTimeout,
  RateLimited,
  SessionReplaced,
  SlowConsumer,
  ShuttingDown,
  // The authorize hook could not be asked or gave no usable answer; the
  // credentials themselves were right.
  AuthorizeUnavailable,
  // The authorize hook answered allow: false.
  NotAuthorized,
  // Cluster mode: the target is held by another relay, which cannot be
  // reached now (NATS unreachable, or that relay did not answer).
  ClusterUnavailable,
  // The token a session authenticated with runs out soon (close 4001 at
  // its expiry unless gateway_reauth brings a fresh one).
  TokenExpired,
  // Not sent as a frame: a text frame that is not UTF-8 closes with 1007.
  InvalidUtf8,
};

// The wire name, e.g. "invalid_json".
[[nodiscard]] std::string_view codeText(ErrorCode code);
// A default human message, e.g. "Invalid JSON".
[[nodiscard]] std::string_view defaultMessage(ErrorCode code);
// The WebSocket close code that follows the error, or 0 if the connection
// stays open. RateLimited is 0 here: the relay closes (1008) only once
// refusals in a row exceed the burst.
[[nodiscard]] int closeCode(ErrorCode code);
// True for the codes sent as gateway_auth_error rather than error.
[[nodiscard]] bool isAuthError(ErrorCode code);

}  // namespace mesh::proto
