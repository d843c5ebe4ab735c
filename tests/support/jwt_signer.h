// Keys and tokens for the JWT tests: key pairs made by OpenSSL in the test
// (EVP_PKEY_keygen), their public halves as JWKs, and compact JWS tokens
// signed with EVP, exactly as an identity provider would make them. OpenSSL
// types stay in jwt_signer.cpp.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mesh::test {

class JwtKey {
 public:
  enum class Kind { Rsa, Ec, Ed25519, Hmac };
  // A fresh key pair (RSA 2048, P-256, Ed25519) or an HMAC secret.
  static JwtKey rsa(std::string kid);
  static JwtKey ec(std::string kid);
  static JwtKey ed25519(std::string kid);
  static JwtKey hmac(std::string secret, std::string kid = "");

  [[nodiscard]] Kind kind() const { return kind_; }
  [[nodiscard]] const std::string& kid() const { return kid_; }
  // "RS256", "ES256", "EdDSA" or "HS256".
  [[nodiscard]] std::string alg() const;
  // The public JWK (for Hmac the "oct" key), with kid, alg and use "sig".
  [[nodiscard]] std::string jwk() const;
  // The public key as PEM (SubjectPublicKeyInfo); empty for Hmac.
  [[nodiscard]] std::string publicPem() const;
  // The private key as PEM (PKCS#8); empty for Hmac.
  [[nodiscard]] std::string privatePem() const;

  // A token: header {"alg": alg(), "typ": "JWT", "kid": kid()} (no kid when
  // empty) and the given claims, signed with this key.
  [[nodiscard]] std::string sign(std::string_view claimsJson) const;
  // A token with the header given as is, signed with this key's alg.
  [[nodiscard]] std::string signWithHeader(std::string_view headerJson,
                                           std::string_view claimsJson) const;
  // The raw signature of `input` with this key (JOSE form: r||s for ES256).
  [[nodiscard]] std::string signature(std::string_view input) const;

 private:
  Kind kind_ = Kind::Hmac;
  std::string kid_;
  std::string secret_;
  std::shared_ptr<void> pkey_;  // EVP_PKEY*
};

// {"keys": [jwk, ...]}
std::string jwksOf(const std::vector<const JwtKey*>& keys);
// HMAC-SHA256 with an arbitrary secret over header.claims: the forger's
// move in the key confusion attack (the secret being a public key's bytes).
std::string hmacToken(std::string_view secret, std::string_view headerJson,
                      std::string_view claimsJson);
// header.claims. with an empty signature, e.g. for alg none.
std::string unsignedToken(std::string_view headerJson, std::string_view claimsJson);
// Unix seconds now.
std::int64_t unixNow();
// Claims {"sub": meshId, "exp": now + ttl, ...extra}; `extra` is spliced in,
// e.g. R"("aud":"relay")".
std::string claimsFor(const std::string& meshId, std::int64_t ttlSeconds,
                      const std::string& extra = "");

}  // namespace mesh::test
