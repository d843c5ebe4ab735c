#include "mesh/proto/errors.h"

namespace mesh::proto {

std::string_view codeText(ErrorCode code) {
  switch (code) {
    case ErrorCode::InvalidJson:
      return "invalid_json";
    case ErrorCode::InvalidFrame:
      return "invalid_frame";
    case ErrorCode::UnknownType:
      return "unknown_type";
    case ErrorCode::UnsupportedFrame:
      return "unsupported_frame";
    case ErrorCode::FrameTooLarge:
      return "frame_too_large";
    case ErrorCode::NotAuthenticated:
      return "not_authenticated";
    case ErrorCode::AlreadyAuthenticated:
      return "already_authenticated";
    case ErrorCode::InvalidCredentials:
      return "invalid_credentials";
    case ErrorCode::AuthTimeout:
      return "auth_timeout";
    case ErrorCode::RateLimited:
      return "rate_limited";
    case ErrorCode::SessionReplaced:
      return "session_replaced";
    case ErrorCode::SlowConsumer:
      return "slow_consumer";
    case ErrorCode::ShuttingDown:
      return "shutting_down";
    case ErrorCode::AuthorizeUnavailable:
      return "authorize_unavailable";
    case ErrorCode::NotAuthorized:
      return "not_authorized";
    case ErrorCode::ClusterUnavailable:
      return "cluster_unavailable";
    case ErrorCode::TokenExpired:
      return "token_expired";
    case ErrorCode::InvalidUtf8:
      return "invalid_utf8";
  }
  return "unknown_error";
}

std::string_view defaultMessage(ErrorCode code) {
  switch (code) {
    case ErrorCode::InvalidJson:
      return "Invalid JSON";
    case ErrorCode::InvalidFrame:
      return "Invalid frame";
    case ErrorCode::UnknownType:
      return "Unknown frame type";
    case ErrorCode::UnsupportedFrame:
      return "Binary frames are not supported";
    case ErrorCode::FrameTooLarge:
      return "Frame too large";
    case ErrorCode::NotAuthenticated:
      // The original relay's exact text; existing nodes may match on it.
      return "Not authenticated";
    case ErrorCode::AlreadyAuthenticated:
      return "Already authenticated";
    case ErrorCode::InvalidCredentials:
      return "Invalid credentials";
    case ErrorCode::AuthTimeout:
      return "Authentication timeout";
    case ErrorCode::RateLimited:
      return "Rate limit exceeded";
    case ErrorCode::SessionReplaced:
      return "Session replaced by a newer connection";
    case ErrorCode::SlowConsumer:
      return "Send queue full";
    case ErrorCode::ShuttingDown:
      return "Relay shutting down";
    case ErrorCode::AuthorizeUnavailable:
      return "Authorization service unavailable";
    case ErrorCode::NotAuthorized:
      return "Not authorized";
    case ErrorCode::ClusterUnavailable:
      return "The relay holding the target cannot be reached";
    case ErrorCode::TokenExpired:
      return "Token expires; send gateway_reauth with a fresh one";
    case ErrorCode::InvalidUtf8:
      return "Text frame is not valid UTF-8";
  }
  return "Error";
}

int closeCode(ErrorCode code) {
  switch (code) {
    case ErrorCode::InvalidCredentials:
    case ErrorCode::AuthTimeout:
    case ErrorCode::AuthorizeUnavailable:
    case ErrorCode::NotAuthorized:
      return 1008;
    case ErrorCode::SessionReplaced:
      return 4000;
    case ErrorCode::SlowConsumer:
      return 1013;
    case ErrorCode::ShuttingDown:
      return 1001;
    case ErrorCode::TokenExpired:
      return 4001;
    case ErrorCode::InvalidUtf8:
      return 1007;
    default:
      return 0;
  }
}

bool isAuthError(ErrorCode code) {
  return code == ErrorCode::NotAuthenticated || code == ErrorCode::InvalidCredentials ||
         code == ErrorCode::AuthTimeout || code == ErrorCode::AuthorizeUnavailable ||
         code == ErrorCode::NotAuthorized;
}

}  // namespace mesh::proto
