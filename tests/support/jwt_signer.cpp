#include "support/jwt_signer.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <chrono>
#include <stdexcept>

namespace mesh::test {
namespace {

std::shared_ptr<void> own(EVP_PKEY* k) {
  if (!k) throw std::runtime_error("OpenSSL could not make a key");
  return {k, [](void* p) { EVP_PKEY_free(static_cast<EVP_PKEY*>(p)); }};
}

EVP_PKEY* raw(const std::shared_ptr<void>& p) {
  return static_cast<EVP_PKEY*>(p.get());
}

std::string b64url(std::string_view bytes) {
  static const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  std::size_t i = 0;
  const auto* b = reinterpret_cast<const unsigned char*>(bytes.data());
  for (; i + 2 < bytes.size(); i += 3) {
    const unsigned v = (b[i] << 16) | (b[i + 1] << 8) | b[i + 2];
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += alphabet[(v >> 6) & 63];
    out += alphabet[v & 63];
  }
  if (i + 1 == bytes.size()) {
    const unsigned v = b[i] << 16;
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
  } else if (i + 2 == bytes.size()) {
    const unsigned v = (b[i] << 16) | (b[i + 1] << 8);
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += alphabet[(v >> 6) & 63];
  }
  return out;
}

std::string bnParam(EVP_PKEY* k, const char* name) {
  BIGNUM* bn = nullptr;
  if (EVP_PKEY_get_bn_param(k, name, &bn) != 1) throw std::runtime_error("no key parameter");
  std::string out(static_cast<std::size_t>(BN_num_bytes(bn)), '\0');
  BN_bn2bin(bn, reinterpret_cast<unsigned char*>(out.data()));
  BN_free(bn);
  return out;
}

std::string hmacSha256(std::string_view key, std::string_view input) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  std::size_t len = 0;
  if (!EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, key.data(), key.size(),
                 reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac,
                 sizeof mac, &len)) {
    throw std::runtime_error("HMAC failed");
  }
  return {reinterpret_cast<char*>(mac), len};
}

std::string pem(EVP_PKEY* k, bool priv) {
  BIO* bio = BIO_new(BIO_s_mem());
  const int ok = priv ? PEM_write_bio_PrivateKey(bio, k, nullptr, nullptr, 0, nullptr, nullptr)
                      : PEM_write_bio_PUBKEY(bio, k);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  std::string out = ok == 1 ? std::string(data, static_cast<std::size_t>(len)) : std::string();
  BIO_free(bio);
  return out;
}

}  // namespace

JwtKey JwtKey::rsa(std::string kid) {
  JwtKey k;
  k.kind_ = Kind::Rsa;
  k.kid_ = std::move(kid);
  k.pkey_ = own(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048)));
  return k;
}

JwtKey JwtKey::ec(std::string kid) {
  JwtKey k;
  k.kind_ = Kind::Ec;
  k.kid_ = std::move(kid);
  k.pkey_ = own(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  return k;
}

JwtKey JwtKey::ed25519(std::string kid) {
  JwtKey k;
  k.kind_ = Kind::Ed25519;
  k.kid_ = std::move(kid);
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr);
  EVP_PKEY* out = nullptr;
  if (ctx && EVP_PKEY_keygen_init(ctx) == 1) EVP_PKEY_keygen(ctx, &out);
  EVP_PKEY_CTX_free(ctx);
  k.pkey_ = own(out);
  return k;
}

JwtKey JwtKey::hmac(std::string secret, std::string kid) {
  JwtKey k;
  k.kind_ = Kind::Hmac;
  k.kid_ = std::move(kid);
  k.secret_ = std::move(secret);
  return k;
}

std::string JwtKey::alg() const {
  switch (kind_) {
    case Kind::Rsa:
      return "RS256";
    case Kind::Ec:
      return "ES256";
    case Kind::Ed25519:
      return "EdDSA";
    case Kind::Hmac:
      return "HS256";
  }
  return "";
}

std::string JwtKey::jwk() const {
  std::string body;
  switch (kind_) {
    case Kind::Rsa:
      body = R"("kty":"RSA","n":")" + b64url(bnParam(raw(pkey_), OSSL_PKEY_PARAM_RSA_N)) +
             R"(","e":")" + b64url(bnParam(raw(pkey_), OSSL_PKEY_PARAM_RSA_E)) + "\"";
      break;
    case Kind::Ec: {
      unsigned char point[65];
      std::size_t len = 0;
      if (EVP_PKEY_get_octet_string_param(raw(pkey_), OSSL_PKEY_PARAM_PUB_KEY, point, sizeof point,
                                          &len) != 1 ||
          len != 65) {
        throw std::runtime_error("no P-256 point");
      }
      const std::string_view p(reinterpret_cast<char*>(point), len);
      body = R"("kty":"EC","crv":"P-256","x":")" + b64url(p.substr(1, 32)) + R"(","y":")" +
             b64url(p.substr(33, 32)) + "\"";
      break;
    }
    case Kind::Ed25519: {
      unsigned char pub[32];
      std::size_t len = sizeof pub;
      if (EVP_PKEY_get_raw_public_key(raw(pkey_), pub, &len) != 1) {
        throw std::runtime_error("no Ed25519 key");
      }
      body = R"("kty":"OKP","crv":"Ed25519","x":")" +
             b64url(std::string_view(reinterpret_cast<char*>(pub), len)) + "\"";
      break;
    }
    case Kind::Hmac:
      body = R"("kty":"oct","k":")" + b64url(secret_) + "\"";
      break;
  }
  std::string out = "{" + body + R"(,"alg":")" + alg() + R"(","use":"sig")";
  if (!kid_.empty()) out += R"(,"kid":")" + kid_ + "\"";
  return out + "}";
}

std::string JwtKey::publicPem() const {
  return kind_ == Kind::Hmac ? std::string() : pem(raw(pkey_), false);
}

std::string JwtKey::privatePem() const {
  return kind_ == Kind::Hmac ? std::string() : pem(raw(pkey_), true);
}

std::string JwtKey::signature(std::string_view input) const {
  if (kind_ == Kind::Hmac) return hmacSha256(secret_, input);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const EVP_MD* md = kind_ == Kind::Ed25519 ? nullptr : EVP_sha256();
  std::size_t len = 0;
  std::string sig;
  const auto* data = reinterpret_cast<const unsigned char*>(input.data());
  if (EVP_DigestSignInit(ctx, nullptr, md, nullptr, raw(pkey_)) == 1 &&
      EVP_DigestSign(ctx, nullptr, &len, data, input.size()) == 1) {
    sig.resize(len);
    if (EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len, data,
                       input.size()) != 1) {
      sig.clear();
    }
    sig.resize(len);
  }
  EVP_MD_CTX_free(ctx);
  if (sig.empty()) throw std::runtime_error("signing failed");
  if (kind_ != Kind::Ec) return sig;
  // DER ECDSA-Sig-Value to JOSE's fixed-width r||s.
  const auto* p = reinterpret_cast<const unsigned char*>(sig.data());
  ECDSA_SIG* ecdsa = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size()));
  if (!ecdsa) throw std::runtime_error("bad ECDSA signature");
  std::string jose(64, '\0');
  BN_bn2binpad(ECDSA_SIG_get0_r(ecdsa), reinterpret_cast<unsigned char*>(jose.data()), 32);
  BN_bn2binpad(ECDSA_SIG_get0_s(ecdsa), reinterpret_cast<unsigned char*>(jose.data()) + 32, 32);
  ECDSA_SIG_free(ecdsa);
  return jose;
}

std::string JwtKey::signWithHeader(std::string_view headerJson, std::string_view claimsJson) const {
  const std::string input = b64url(headerJson) + "." + b64url(claimsJson);
  return input + "." + b64url(signature(input));
}

std::string JwtKey::sign(std::string_view claimsJson) const {
  std::string header = R"({"alg":")" + alg() + R"(","typ":"JWT")";
  if (!kid_.empty()) header += R"(,"kid":")" + kid_ + "\"";
  header += "}";
  return signWithHeader(header, claimsJson);
}

std::string jwksOf(const std::vector<const JwtKey*>& keys) {
  std::string out = R"({"keys":[)";
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (i) out += ",";
    out += keys[i]->jwk();
  }
  return out + "]}";
}

std::string hmacToken(std::string_view secret, std::string_view headerJson,
                      std::string_view claimsJson) {
  const std::string input = b64url(headerJson) + "." + b64url(claimsJson);
  return input + "." + b64url(hmacSha256(secret, input));
}

std::string unsignedToken(std::string_view headerJson, std::string_view claimsJson) {
  return b64url(headerJson) + "." + b64url(claimsJson) + ".";
}

std::int64_t unixNow() {
  using namespace std::chrono;
  return duration_cast<seconds>(system_clock::now().time_since_epoch()).count();
}

std::string claimsFor(const std::string& meshId, std::int64_t ttlSeconds,
                      const std::string& extra) {
  std::string out = R"({"sub":")" + meshId + R"(","exp":)" + std::to_string(unixNow() + ttlSeconds);
  if (!extra.empty()) out += "," + extra;
  return out + "}";
}

}  // namespace mesh::test
