// The relay's own TLS certificate: checked before lws sees it at start-up,
// swapped in place on SIGHUP (Server::reloadTls -> Impl::reloadTlsNow, loop
// thread). OpenSSL types stay inside tls.cpp.
#pragma once

#include <string>

namespace mesh::relay {

// Reads a PEM chain and key and checks that they belong together. Returns
// an empty string when they do, otherwise what is wrong, for the operator.
[[nodiscard]] std::string checkTlsPair(const std::string& certPath, const std::string& keyPath);

// Installs the pair on an OpenSSL SSL_CTX in one step, so a handshake never
// sees a new certificate with an old key. Returns "" or the reason it failed
// (the context then keeps its old pair). On success `subject` names the
// new certificate.
[[nodiscard]] std::string installTlsPair(void* sslCtx, const std::string& certPath,
                                         const std::string& keyPath, std::string& subject);

}  // namespace mesh::relay
