// A small blocking HTTP/1.1 client: one request per connection
// (Connection: close), plain TCP or TLS via OpenSSL with the system CA
// store (plus an optional PEM bundle) and host name checks. Enough for
// /register and /health.
#pragma once

#include <chrono>
#include <string>

#include "mesh/client/status.h"

namespace mesh::client::detail {

struct HttpResponse {
  int status = 0;
  std::string body;
};

// `url` is the full request URL (http:// or https://). Every step (connect,
// TLS handshake, send, receive) is bounded by `timeout` in total.
// Errors: InvalidArgument (bad URL), ConnectionFailed (no answer),
// ProtocolError (an answer that is not HTTP/1.x). `caFile`: a PEM bundle
// trusted besides the system store (empty: none).
[[nodiscard]] Result<HttpResponse> httpRequest(const std::string& method, const std::string& url,
                                               const std::string& body,
                                               std::chrono::milliseconds timeout,
                                               const std::string& caFile = {});

}  // namespace mesh::client::detail
