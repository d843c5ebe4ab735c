// Credentials on the /gateway upgrade request: the Authorization header's
// forms, read without I/O (upgrade_auth.cpp checks them).
#pragma once

#include <string>
#include <string_view>

namespace mesh::relay {

struct HeaderCredentials {
  enum class Kind {
    Basic,      // base64(meshId:secret)
    Bearer,     // a JWT
    Malformed,  // another scheme, bad base64, no colon
  };
  Kind kind = Kind::Malformed;
  std::string meshId;  // Basic only
  std::string secret;  // Basic only; wiped by the destructor
  std::string token;   // Bearer only; wiped by the destructor

  HeaderCredentials() = default;
  HeaderCredentials(HeaderCredentials&&) noexcept = default;
  HeaderCredentials& operator=(HeaderCredentials&&) noexcept = default;
  HeaderCredentials(const HeaderCredentials&) = delete;
  HeaderCredentials& operator=(const HeaderCredentials&) = delete;
  ~HeaderCredentials();
};

// Reads "Basic <base64>" or "Bearer <token>" (the scheme in any case, RFC
// 9110 11.1).
[[nodiscard]] HeaderCredentials parseAuthorization(std::string_view value);

// The body of the 401 (and 429) an upgrade with wrong credentials gets: the
// same for an unknown mesh and a wrong secret.
inline constexpr std::string_view kUpgradeUnauthorizedBody = "{\"error\":\"invalid_credentials\"}";
inline constexpr std::string_view kUpgradeRateLimitedBody = "{\"error\":\"rate_limited\"}";

}  // namespace mesh::relay
