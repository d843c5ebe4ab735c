#include "tls.h"

#include <openssl/err.h>

namespace mesh::client::detail {

std::string takeTlsError(const std::string& fallback) {
  const unsigned long code = ERR_peek_last_error();
  ERR_clear_error();
  if (code == 0) return fallback;
  char text[256];
  ERR_error_string_n(code, text, sizeof text);
  return text;
}

Result<SslCtxPtr> makeClientTlsContext(const std::string& caFile) {
  ERR_clear_error();
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) {
    return Error{Status::ConnectionFailed,
                 "cannot set up TLS: " + takeTlsError("SSL_CTX_new failed")};
  }
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  // The system store is what a public relay's certificate chains to. A
  // missing store is no error here: a private CA may be all the node needs,
  // and an untrusted peer still fails at the handshake with a clear reason.
  if (SSL_CTX_set_default_verify_paths(ctx.get()) != 1) ERR_clear_error();
  if (!caFile.empty() && SSL_CTX_load_verify_locations(ctx.get(), caFile.c_str(), nullptr) != 1) {
    return Error{Status::InvalidArgument, "cannot load CA file '" + caFile +
                                              "': " + takeTlsError("no PEM certificate in it")};
  }
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  return ctx;
}

}  // namespace mesh::client::detail
