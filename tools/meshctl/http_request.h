// One HTTP/1.1 request with an optional bearer token, for the admin routes.
// libmeshclient's HTTP helpers cover /register and /health but cannot send
// an Authorization header, so meshctl carries this small client: one request
// per connection, http:// or https:// (system CA store plus an optional PEM
// bundle, host name checked), the whole exchange bounded by one timeout.
#pragma once

#include <chrono>
#include <string>

#include "mesh/client/status.h"

namespace meshctl {

struct HttpAnswer {
  int status = 0;
  std::string body;
};

// `url` is the full request URL. `bearer`, when not empty, is sent as
// `Authorization: Bearer <bearer>`; it never appears in an error message.
// `caFile`, when not empty, names CA certificates (PEM) trusted besides the
// system store, for a relay whose certificate comes from a private CA.
// Errors: InvalidArgument (not an http:// or https:// URL), ConnectionFailed
// (no connection, TLS failure, no complete answer in time), ProtocolError
// (an answer that is not HTTP/1.x).
[[nodiscard]] mesh::client::Result<HttpAnswer> httpRequest(
    const std::string& method, const std::string& url, const std::string& body,
    const std::string& bearer, std::chrono::milliseconds timeout, const std::string& caFile = {});

}  // namespace meshctl
