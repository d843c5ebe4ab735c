// The client library's error vocabulary: one status enum with a text per
// value, an Error carrying a human message, and a small [[nodiscard]]
// Result<T> that holds either a value or an Error.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace mesh::client {

enum class Status {
  Ok,
  // The caller passed something unusable (bad meshId, payload not a JSON
  // object, frame too large, missing option).
  InvalidArgument,
  // No connection to the relay right now (and the call cannot wait for one).
  NotConnected,
  // A wait ran out before the answer came.
  Timeout,
  // The client was stopped.
  Closed,
  // The relay could not be reached (TCP/TLS/WebSocket handshake failed).
  ConnectionFailed,
  // The relay refused our meshId/secret (invalid_credentials).
  AuthFailed,
  // POST /register answered 409: this meshId belongs to another secret.
  RegistrationConflict,
  // An HTTP answer we did not expect (status and body in the message).
  HttpError,
  // The outbox database could not be opened or written.
  StorageError,
  // A message was given up: target offline past the retry age, or the relay
  // refused it for good (code in the message).
  DeliveryFailed,
  // Another connection authenticated as this mesh (session_replaced).
  SessionReplaced,
  // The relay sent something we could not understand.
  ProtocolError,
  // relay()/broadcast(): the outbox holds Options::maxPendingMessages
  // messages or Options::maxPendingBytes bytes already; nothing was stored.
  OutboxFull,
};

// A short fixed text per status, e.g. "auth failed".
[[nodiscard]] std::string_view statusText(Status status);

struct Error {
  Status status = Status::Ok;
  std::string message;  // human text with the details; never empty for errors
};

// Either a T or an Error. Result<> is the value-less form.
template <typename T = std::monostate>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}  // NOLINT: implicit by design
  Result(Status status, std::string message) : v_(Error{status, std::move(message)}) {}

  [[nodiscard]] bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  [[nodiscard]] Status status() const { return ok() ? Status::Ok : std::get<1>(v_).status; }

  // Precondition: ok().
  [[nodiscard]] const T& value() const& { return std::get<0>(v_); }
  [[nodiscard]] T&& value() && { return std::get<0>(std::move(v_)); }
  // Precondition: !ok().
  [[nodiscard]] const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

// The success value of Result<>.
inline Result<> success() {
  return Result<>(std::monostate{});
}

}  // namespace mesh::client
