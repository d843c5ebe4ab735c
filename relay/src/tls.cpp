#include "tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cstdio>
#include <memory>

#include "log.h"
#include "server_impl.h"

namespace mesh::relay {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct ChainFree {
  void operator()(STACK_OF(X509) * s) const { sk_X509_pop_free(s, X509_free); }
};

struct PemPair {
  std::unique_ptr<X509, X509Free> leaf;
  std::unique_ptr<STACK_OF(X509), ChainFree> chain;
  std::unique_ptr<EVP_PKEY, KeyFree> key;
};

std::string opensslError() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "no detail";
  char buf[256];
  ERR_error_string_n(code, buf, sizeof buf);
  return buf;
}

std::string loadPair(const std::string& certPath, const std::string& keyPath, PemPair& out) {
  ERR_clear_error();
  std::unique_ptr<BIO, BioFree> certBio(BIO_new_file(certPath.c_str(), "r"));
  if (!certBio) return "cannot read certificate " + certPath + ": " + opensslError();
  out.leaf.reset(PEM_read_bio_X509_AUX(certBio.get(), nullptr, nullptr, nullptr));
  if (!out.leaf) return "no PEM certificate in " + certPath + ": " + opensslError();
  // Intermediates follow the leaf; the end of the file ends the chain.
  out.chain.reset(sk_X509_new_null());
  if (!out.chain) return "out of memory";
  while (X509* extra = PEM_read_bio_X509(certBio.get(), nullptr, nullptr, nullptr)) {
    if (!sk_X509_push(out.chain.get(), extra)) {
      X509_free(extra);
      return "out of memory";
    }
  }
  ERR_clear_error();  // the read that found no further certificate

  std::unique_ptr<BIO, BioFree> keyBio(BIO_new_file(keyPath.c_str(), "r"));
  if (!keyBio) return "cannot read key " + keyPath + ": " + opensslError();
  out.key.reset(PEM_read_bio_PrivateKey(keyBio.get(), nullptr, nullptr, nullptr));
  if (!out.key) return "no PEM private key in " + keyPath + ": " + opensslError();
  if (X509_check_private_key(out.leaf.get(), out.key.get()) != 1) {
    ERR_clear_error();
    return "the key in " + keyPath + " does not belong to the certificate in " + certPath;
  }
  return {};
}

std::string subjectOf(X509* cert) {
  char buf[256] = {0};
  X509_NAME_oneline(X509_get_subject_name(cert), buf, sizeof buf);
  return buf;
}

}  // namespace

std::string checkTlsPair(const std::string& certPath, const std::string& keyPath) {
  PemPair pair;
  return loadPair(certPath, keyPath, pair);
}

std::string installTlsPair(void* sslCtx, const std::string& certPath, const std::string& keyPath,
                           std::string& subject) {
  PemPair pair;
  if (std::string err = loadPair(certPath, keyPath, pair); !err.empty()) return err;
  // SSL objects copy the context's certificate when a handshake starts, so
  // open connections keep theirs.
  if (SSL_CTX_use_cert_and_key(static_cast<SSL_CTX*>(sslCtx), pair.leaf.get(), pair.key.get(),
                               pair.chain.get(), 1) != 1) {
    return "OpenSSL refused the pair: " + opensslError();
  }
  subject = subjectOf(pair.leaf.get());
  return {};
}

void Server::Impl::reloadTlsNow() {
  if (config.tlsCertPath.empty()) {
    LOG_INFO("reload asked for, but TLS is not configured: nothing to do");
    return;
  }
  if (!tlsContext) {
    ++counters.tlsReloadFailures;
    LOG_ERROR("TLS reload failed: no TLS context to update");
    return;
  }
  std::string subject;
  const std::string err =
      installTlsPair(tlsContext, config.tlsCertPath, config.tlsKeyPath, subject);
  if (!err.empty()) {
    ++counters.tlsReloadFailures;
    LOG_ERROR("TLS reload failed, keeping the current certificate: " << err);
    return;
  }
  ++counters.tlsReloads;
  LOG_INFO("TLS certificate reloaded: " << subject);
}

}  // namespace mesh::relay
