#include "mesh/client/status.h"

#include "mesh/client/types.h"

namespace mesh::client {

std::string_view statusText(Status status) {
  switch (status) {
    case Status::Ok:
      return "ok";
    case Status::InvalidArgument:
      return "invalid argument";
    case Status::NotConnected:
      return "not connected";
    case Status::Timeout:
      return "timed out";
    case Status::Closed:
      return "client stopped";
    case Status::ConnectionFailed:
      return "relay unreachable";
    case Status::AuthFailed:
      return "authentication failed";
    case Status::RegistrationConflict:
      return "meshId registered with another secret";
    case Status::HttpError:
      return "unexpected HTTP answer";
    case Status::StorageError:
      return "outbox storage error";
    case Status::DeliveryFailed:
      return "delivery failed";
    case Status::SessionReplaced:
      return "session replaced by another connection";
    case Status::ProtocolError:
      return "protocol error";
    case Status::OutboxFull:
      return "outbox full";
  }
  return "unknown status";
}

std::string_view stateText(ConnectionState state) {
  switch (state) {
    case ConnectionState::Stopped:
      return "stopped";
    case ConnectionState::Connecting:
      return "connecting";
    case ConnectionState::Authenticating:
      return "authenticating";
    case ConnectionState::Connected:
      return "connected";
    case ConnectionState::WaitingToReconnect:
      return "waiting to reconnect";
    case ConnectionState::Failed:
      return "failed";
  }
  return "unknown state";
}

std::string_view outcomeText(DeliveryReport::Outcome outcome) {
  switch (outcome) {
    case DeliveryReport::Outcome::Delivered:
      return "delivered";
    case DeliveryReport::Outcome::GaveUp:
      return "gave up";
    case DeliveryReport::Outcome::Rejected:
      return "rejected";
  }
  return "unknown outcome";
}

}  // namespace mesh::client
