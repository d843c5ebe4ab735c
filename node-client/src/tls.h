// The client side of TLS for wss:// and https://: one OpenSSL context that
// trusts the system CA store plus, optionally, a PEM bundle of private CAs.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>

#include "mesh/client/status.h"

namespace mesh::client::detail {

struct SslCtxDeleter {
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxDeleter>;

// A TLS client context that verifies the peer against the system CA store
// and, when `caFile` is not empty, the certificates in that PEM file too.
// InvalidArgument when the file cannot be read or holds no certificate.
[[nodiscard]] Result<SslCtxPtr> makeClientTlsContext(const std::string& caFile);

// The last OpenSSL error of this thread as text (and clears the queue);
// `fallback` when there is none.
[[nodiscard]] std::string takeTlsError(const std::string& fallback);

}  // namespace mesh::client::detail
