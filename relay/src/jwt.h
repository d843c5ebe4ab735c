// Signed tokens (JWT, compact JWS) as a node's proof of identity: key sets
// (JWKS and the HS256 secret) and the verification of one token against
// them. Pure: no I/O, no clocks (the time is passed in), no globals; every
// signature is checked by OpenSSL's EVP. Thread rules: a KeySet is immutable
// once built and may be shared between threads; TokenVerifier::verify is
// const and may run on any thread.
//
// The accepted forms (docs/protocol.md, "Tokens"): alg HS256, RS256, ES256
// or EdDSA (Ed25519); the key must be of the alg's type (an HS256 token is
// never checked with the bytes of a public key); exp is required; nbf, iss
// and aud are checked when present or configured.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace mesh::relay::jwt {

// Why a token was refused. Each has a label for metrics and logs
// (refusalLabel); a node only ever learns invalid_credentials.
enum class Refusal : std::uint8_t {
  Oversize,        // longer than kMaxTokenBytes
  Malformed,       // not three base64url parts, header or claims not JSON objects
  AlgNone,         // "alg": "none" (an unsigned token)
  AlgUnsupported,  // an alg other than HS256, RS256, ES256, EdDSA
  UnknownKid,      // the kid names no key in the set
  KeyMismatch,     // the key is not of the alg's type (e.g. HS256 with an RSA key)
  NoKey,           // no key at all for the token's alg
  BadSignature,
  NoExpiry,       // no exp claim: a session must end some time
  Expired,        // exp (plus the leeway) has passed
  NotYetValid,    // nbf (minus the leeway) is still ahead
  WrongIssuer,    // iss is not --jwt-issuer
  WrongAudience,  // aud does not name --jwt-audience
  BadMeshClaim,   // the mesh claim is missing or not a valid meshId
  // Refused by the relay after verification (gateway.cpp), counted alike.
  MeshMismatch,  // gateway_auth's meshId is not the token's
  UnknownMesh,   // not registered and --jwt-auto-register is off
  Count,
};
[[nodiscard]] std::string_view refusalLabel(Refusal r);

// Tokens are a few hundred bytes; an RS256 token with many claims stays well
// below 8 KiB. Longer input is refused before any decoding.
inline constexpr std::size_t kMaxTokenBytes = 8192;
// HS256 keys shorter than this are guessable offline from one token (RFC
// 7518 3.2 asks for at least the hash size).
inline constexpr std::size_t kMinHmacKeyBytes = 32;
// A JWKS document larger than this is refused (a set holds a few keys).
inline constexpr std::size_t kMaxJwksBytes = 256 * 1024;
inline constexpr std::size_t kMaxKeysPerSet = 64;

enum class Alg : std::uint8_t { HS256, RS256, ES256, EdDSA };
[[nodiscard]] std::string_view algName(Alg a);

// One verification key: a public key (RSA, EC P-256, Ed25519) or an HMAC
// secret, with the JWK's kid and alg when it named them.
struct Key {
  enum class Type : std::uint8_t { Hmac, Rsa, EcP256, Ed25519 };
  Type type = Type::Hmac;
  std::string kid;                  // empty: the JWK had none
  std::optional<Alg> alg;           // the JWK's "alg", when given
  std::shared_ptr<void> pkey;       // EVP_PKEY* (owned) for the public key types
  std::vector<unsigned char> hmac;  // the secret for Hmac
};

// Keys a token may be checked against. Immutable once built.
class KeySet {
 public:
  // Parses a JWKS document ({"keys": [...]}). Keys of a type this relay does
  // not use, or with "use" other than "sig", are skipped; a key of a known
  // type that is broken (bad base64url, a point not on the curve, an RSA
  // modulus under 2048 bits, an oct key under 32 bytes) fails the whole set,
  // so that a typo is not silently ignored. nullptr and `error` on failure.
  static std::shared_ptr<const KeySet> fromJwks(std::string_view json, std::string& error);

  // A set made of the HS256 secret alone (kid-less). The caller checks its
  // length against kMinHmacKeyBytes.
  static std::shared_ptr<const KeySet> fromSecret(std::string_view secret);

  // Both sets' keys in one (either may be null).
  static std::shared_ptr<const KeySet> merge(const std::shared_ptr<const KeySet>& a,
                                             const std::shared_ptr<const KeySet>& b);

  [[nodiscard]] const std::vector<Key>& keys() const { return keys_; }
  [[nodiscard]] std::size_t size() const { return keys_.size(); }
  [[nodiscard]] bool hasKid(std::string_view kid) const;

 private:
  std::vector<Key> keys_;
};

struct VerifyOptions {
  std::string issuer;               // required value of iss; empty: not checked
  std::string audience;             // must be aud or one of aud's strings; empty: not checked
  std::string meshClaim = "sub";    // the claim that names the mesh
  std::int64_t leewaySeconds = 60;  // clock skew allowed on exp and nbf
};

// What a verified token proves.
struct VerifiedToken {
  std::string meshId;               // from the mesh claim, a valid meshId
  std::optional<std::string> name;  // the "name" claim, when a non-empty string
  std::int64_t expiresAt = 0;       // exp, unix seconds
  std::string kid;                  // the header's kid, when given
  Alg alg = Alg::HS256;
};

struct TokenRefusal {
  Refusal reason = Refusal::Malformed;
  std::string detail;  // for the log: never the token or a key
};

using VerifyResult = std::variant<VerifiedToken, TokenRefusal>;

class TokenVerifier {
 public:
  explicit TokenVerifier(VerifyOptions options) : options_(std::move(options)) {}

  // Checks `token` (compact JWS) with `keys` at `nowSeconds` (unix time).
  // With a kid the key of that kid is used; without one every key of the
  // alg's type is tried. Any thread.
  [[nodiscard]] VerifyResult verify(std::string_view token, const KeySet* keys,
                                    std::int64_t nowSeconds) const;

  [[nodiscard]] const VerifyOptions& options() const { return options_; }

 private:
  VerifyOptions options_;
};

// base64url without padding (RFC 7515 2), for tests and tools that sign.
[[nodiscard]] std::string base64UrlEncode(std::string_view bytes);
// Strict: no padding, no characters outside the alphabet. nullopt if bad.
[[nodiscard]] std::optional<std::string> base64UrlDecode(std::string_view text);

}  // namespace mesh::relay::jwt
