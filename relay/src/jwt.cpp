#include "jwt.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <sodium.h>

#include <algorithm>
#include <cmath>
#include <unordered_set>

#include "mesh/proto/codec.h"
#include "mesh/proto/limits.h"

namespace mesh::relay::jwt {
namespace {

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* c) const { EVP_PKEY_CTX_free(c); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
struct BnFree {
  void operator()(BIGNUM* b) const { BN_free(b); }
};
struct ParamBldFree {
  void operator()(OSSL_PARAM_BLD* b) const { OSSL_PARAM_BLD_free(b); }
};
struct ParamFree {
  void operator()(OSSL_PARAM* p) const { OSSL_PARAM_free(p); }
};
struct EcdsaSigFree {
  void operator()(ECDSA_SIG* s) const { ECDSA_SIG_free(s); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

// Every OpenSSL failure here is an answer (a bad key, a bad signature), not
// an error to report later: the loop thread also runs TLS, whose error
// handling reads the same per-thread queue, so nothing is left in it.
struct ClearErrors {
  ~ClearErrors() { ERR_clear_error(); }
};

std::shared_ptr<void> sharePkey(PkeyPtr key) {
  return {key.release(), [](void* p) { EVP_PKEY_free(static_cast<EVP_PKEY*>(p)); }};
}

std::optional<Alg> algFrom(std::string_view s) {
  if (s == "HS256") return Alg::HS256;
  if (s == "RS256") return Alg::RS256;
  if (s == "ES256") return Alg::ES256;
  if (s == "EdDSA") return Alg::EdDSA;
  return std::nullopt;
}

Key::Type keyTypeFor(Alg a) {
  switch (a) {
    case Alg::HS256:
      return Key::Type::Hmac;
    case Alg::RS256:
      return Key::Type::Rsa;
    case Alg::ES256:
      return Key::Type::EcP256;
    case Alg::EdDSA:
      return Key::Type::Ed25519;
  }
  return Key::Type::Hmac;
}

// A JSON object with no member name twice: two "sub" or two "alg" claims
// could be read differently by the issuer and by us.
bool distinctNames(const rapidjson::Value& obj) {
  std::unordered_set<std::string_view> names;
  for (const auto& m : obj.GetObject()) {
    if (!names.emplace(m.name.GetString(), m.name.GetStringLength()).second) return false;
  }
  return true;
}

bool parseObject(std::string_view text, rapidjson::Document& doc) {
  doc.Parse<rapidjson::kParseValidateEncodingFlag>(text.data(), text.size());
  return !doc.HasParseError() && doc.IsObject() && distinctNames(doc);
}

std::optional<std::string_view> stringMember(const rapidjson::Value& obj, const char* name) {
  auto it = obj.FindMember(name);
  if (it == obj.MemberEnd() || !it->value.IsString()) return std::nullopt;
  return std::string_view(it->value.GetString(), it->value.GetStringLength());
}

std::optional<std::vector<unsigned char>> decodeMember(const rapidjson::Value& obj,
                                                       const char* name) {
  auto text = stringMember(obj, name);
  if (!text) return std::nullopt;
  auto raw = base64UrlDecode(*text);
  if (!raw || raw->empty()) return std::nullopt;
  return std::vector<unsigned char>(raw->begin(), raw->end());
}

// Builds a public key from OSSL_PARAMs (RSA n/e, EC group/point).
PkeyPtr keyFromParams(const char* type, const OSSL_PARAM* params) {
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(
      EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1) return nullptr;
  EVP_PKEY* raw = nullptr;
  if (EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, const_cast<OSSL_PARAM*>(params)) !=
      1) {
    return nullptr;
  }
  PkeyPtr key(raw);
  // A point off the curve, a modulus that is not odd: refused here, not at
  // the first token.
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> check(
      EVP_PKEY_CTX_new_from_pkey(nullptr, raw, nullptr));
  if (!check || EVP_PKEY_public_check(check.get()) != 1) return nullptr;
  return key;
}

std::string rsaKey(const rapidjson::Value& jwk, Key& out) {
  auto n = decodeMember(jwk, "n");
  auto e = decodeMember(jwk, "e");
  if (!n || !e) return "RSA key needs base64url n and e";
  std::unique_ptr<BIGNUM, BnFree> bn(BN_bin2bn(n->data(), static_cast<int>(n->size()), nullptr));
  std::unique_ptr<BIGNUM, BnFree> be(BN_bin2bn(e->data(), static_cast<int>(e->size()), nullptr));
  std::unique_ptr<OSSL_PARAM_BLD, ParamBldFree> bld(OSSL_PARAM_BLD_new());
  if (!bn || !be || !bld ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, be.get()) != 1) {
    return "out of memory";
  }
  std::unique_ptr<OSSL_PARAM, ParamFree> params(OSSL_PARAM_BLD_to_param(bld.get()));
  if (!params) return "out of memory";
  PkeyPtr key = keyFromParams("RSA", params.get());
  if (!key) return "RSA key is not valid";
  if (EVP_PKEY_get_bits(key.get()) < 2048) return "RSA key is shorter than 2048 bits";
  out.type = Key::Type::Rsa;
  out.pkey = sharePkey(std::move(key));
  return {};
}

std::string ecKey(const rapidjson::Value& jwk, Key& out) {
  auto x = decodeMember(jwk, "x");
  auto y = decodeMember(jwk, "y");
  if (!x || !y || x->size() != 32 || y->size() != 32) return "P-256 key needs 32-byte x and y";
  std::vector<unsigned char> point;
  point.reserve(65);
  point.push_back(0x04);  // uncompressed
  point.insert(point.end(), x->begin(), x->end());
  point.insert(point.end(), y->begin(), y->end());
  char group[] = "prime256v1";
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0),
      OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()),
      OSSL_PARAM_construct_end()};
  PkeyPtr key = keyFromParams("EC", params);
  if (!key) return "P-256 point is not on the curve";
  out.type = Key::Type::EcP256;
  out.pkey = sharePkey(std::move(key));
  return {};
}

std::string okpKey(const rapidjson::Value& jwk, Key& out) {
  auto x = decodeMember(jwk, "x");
  if (!x || x->size() != 32) return "Ed25519 key needs a 32-byte x";
  PkeyPtr key(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, x->data(), x->size()));
  if (!key) return "Ed25519 key is not valid";
  out.type = Key::Type::Ed25519;
  out.pkey = sharePkey(std::move(key));
  return {};
}

std::string octKey(const rapidjson::Value& jwk, Key& out) {
  auto k = decodeMember(jwk, "k");
  if (!k) return "oct key needs base64url k";
  if (k->size() < kMinHmacKeyBytes) return "oct key is shorter than 32 bytes";
  out.type = Key::Type::Hmac;
  out.hmac = std::move(*k);
  return {};
}

// One JWK. Returns "" and sets `use` false for a key this relay does not
// use (other kty or crv, "use" other than "sig", an alg it does not know).
std::string parseJwk(const rapidjson::Value& jwk, Key& out, bool& usable) {
  usable = false;
  if (!jwk.IsObject()) return "a key is not a JSON object";
  if (!distinctNames(jwk)) return "a key names a member twice";
  auto kty = stringMember(jwk, "kty");
  if (!kty) return "a key has no kty";
  if (auto use = stringMember(jwk, "use"); use && *use != "sig") return {};
  if (jwk.HasMember("use") && !jwk["use"].IsString()) return "use must be a string";
  if (jwk.HasMember("kid") && !jwk["kid"].IsString()) return "kid must be a string";
  if (auto kid = stringMember(jwk, "kid")) out.kid = std::string(*kid);
  if (jwk.HasMember("alg")) {
    auto alg = stringMember(jwk, "alg");
    if (!alg) return "alg must be a string";
    out.alg = algFrom(*alg);
    if (!out.alg) return {};  // RS512 and the like: not ours
  }
  std::string err;
  if (*kty == "RSA") {
    err = rsaKey(jwk, out);
  } else if (*kty == "EC") {
    if (stringMember(jwk, "crv") != std::string_view("P-256")) return {};
    err = ecKey(jwk, out);
  } else if (*kty == "OKP") {
    if (stringMember(jwk, "crv") != std::string_view("Ed25519")) return {};
    err = okpKey(jwk, out);
  } else if (*kty == "oct") {
    err = octKey(jwk, out);
  } else {
    return {};
  }
  if (!err.empty()) return err;
  if (out.alg && keyTypeFor(*out.alg) != out.type) return "key type does not fit its alg";
  usable = true;
  return {};
}

bool checkSignature(const Key& key, Alg alg, std::string_view signingInput,
                    const std::string& sig) {
  const auto* data = reinterpret_cast<const unsigned char*>(signingInput.data());
  const auto* sigBytes = reinterpret_cast<const unsigned char*>(sig.data());
  if (alg == Alg::HS256) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    std::size_t macLen = 0;
    if (!EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, key.hmac.data(), key.hmac.size(),
                   data, signingInput.size(), mac, sizeof mac, &macLen)) {
      return false;
    }
    return macLen == sig.size() && CRYPTO_memcmp(mac, sigBytes, macLen) == 0;
  }
  auto* pkey = static_cast<EVP_PKEY*>(key.pkey.get());
  if (!pkey) return false;
  std::string der;
  const unsigned char* verifySig = sigBytes;
  std::size_t verifyLen = sig.size();
  if (alg == Alg::ES256) {
    // JOSE carries r||s (32 bytes each); EVP wants the DER of ECDSA-Sig-Value.
    if (sig.size() != 64) return false;
    std::unique_ptr<ECDSA_SIG, EcdsaSigFree> ecdsa(ECDSA_SIG_new());
    BIGNUM* r = BN_bin2bn(sigBytes, 32, nullptr);
    BIGNUM* s = BN_bin2bn(sigBytes + 32, 32, nullptr);
    if (!ecdsa || !r || !s || ECDSA_SIG_set0(ecdsa.get(), r, s) != 1) {
      BN_free(r);
      BN_free(s);
      return false;
    }
    const int len = i2d_ECDSA_SIG(ecdsa.get(), nullptr);
    if (len <= 0) return false;
    der.resize(static_cast<std::size_t>(len));
    auto* p = reinterpret_cast<unsigned char*>(der.data());
    if (i2d_ECDSA_SIG(ecdsa.get(), &p) != len) return false;
    verifySig = reinterpret_cast<const unsigned char*>(der.data());
    verifyLen = der.size();
  }
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  if (!ctx) return false;
  // Ed25519 hashes inside the signature scheme: no digest is named.
  const EVP_MD* md = alg == Alg::EdDSA ? nullptr : EVP_sha256();
  if (EVP_DigestVerifyInit(ctx.get(), nullptr, md, nullptr, pkey) != 1) return false;
  return EVP_DigestVerify(ctx.get(), verifySig, verifyLen, data, signingInput.size()) == 1;
}

TokenRefusal refuse(Refusal r, std::string detail) {
  return TokenRefusal{r, std::move(detail)};
}

std::optional<double> numberMember(const rapidjson::Value& obj, const char* name, bool& wrongType) {
  auto it = obj.FindMember(name);
  if (it == obj.MemberEnd()) return std::nullopt;
  if (!it->value.IsNumber()) {
    wrongType = true;
    return std::nullopt;
  }
  const double v = it->value.GetDouble();
  if (!std::isfinite(v)) {
    wrongType = true;
    return std::nullopt;
  }
  return v;
}

}  // namespace

std::string_view refusalLabel(Refusal r) {
  switch (r) {
    case Refusal::Oversize:
      return "oversize";
    case Refusal::Malformed:
      return "malformed";
    case Refusal::AlgNone:
      return "alg_none";
    case Refusal::AlgUnsupported:
      return "alg_unsupported";
    case Refusal::UnknownKid:
      return "unknown_kid";
    case Refusal::KeyMismatch:
      return "key_mismatch";
    case Refusal::NoKey:
      return "no_key";
    case Refusal::BadSignature:
      return "bad_signature";
    case Refusal::NoExpiry:
      return "no_expiry";
    case Refusal::Expired:
      return "expired";
    case Refusal::NotYetValid:
      return "not_yet_valid";
    case Refusal::WrongIssuer:
      return "wrong_issuer";
    case Refusal::WrongAudience:
      return "wrong_audience";
    case Refusal::BadMeshClaim:
      return "bad_mesh_claim";
    case Refusal::MeshMismatch:
      return "mesh_mismatch";
    case Refusal::UnknownMesh:
      return "unknown_mesh";
    case Refusal::Count:
      break;
  }
  return "other";
}

std::string_view algName(Alg a) {
  switch (a) {
    case Alg::HS256:
      return "HS256";
    case Alg::RS256:
      return "RS256";
    case Alg::ES256:
      return "ES256";
    case Alg::EdDSA:
      return "EdDSA";
  }
  return "?";
}

std::string base64UrlEncode(std::string_view bytes) {
  const std::size_t cap =
      sodium_base64_ENCODED_LEN(bytes.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  std::string out(cap, '\0');
  sodium_bin2base64(out.data(), cap, reinterpret_cast<const unsigned char*>(bytes.data()),
                    bytes.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  out.resize(std::char_traits<char>::length(out.c_str()));
  return out;
}

std::optional<std::string> base64UrlDecode(std::string_view text) {
  std::string out(text.size() / 4 * 3 + 3, '\0');
  std::size_t len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(),
                        text.size(), nullptr, &len, &end,
                        sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
      end != text.data() + text.size()) {
    return std::nullopt;
  }
  out.resize(len);
  return out;
}

std::shared_ptr<const KeySet> KeySet::fromJwks(std::string_view json, std::string& error) {
  ClearErrors clear;
  if (json.size() > kMaxJwksBytes) {
    error = "JWKS document is larger than " + std::to_string(kMaxJwksBytes) + " bytes";
    return nullptr;
  }
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseValidateEncodingFlag>(json.data(), json.size());
  if (doc.HasParseError()) {
    error = std::string("JWKS is not JSON: ") + rapidjson::GetParseError_En(doc.GetParseError());
    return nullptr;
  }
  if (!doc.IsObject() || !doc.HasMember("keys") || !doc["keys"].IsArray()) {
    error = "JWKS has no \"keys\" array";
    return nullptr;
  }
  const auto& list = doc["keys"].GetArray();
  if (list.Size() > kMaxKeysPerSet) {
    error = "JWKS has more than " + std::to_string(kMaxKeysPerSet) + " keys";
    return nullptr;
  }
  auto set = std::make_shared<KeySet>();
  std::size_t index = 0;
  for (const auto& jwk : list) {
    Key key;
    bool usable = false;
    if (std::string err = parseJwk(jwk, key, usable); !err.empty()) {
      error = "key " + std::to_string(index) + (key.kid.empty() ? "" : " (kid " + key.kid + ")") +
              ": " + err;
      return nullptr;
    }
    if (usable) set->keys_.push_back(std::move(key));
    ++index;
  }
  return set;
}

std::shared_ptr<const KeySet> KeySet::fromSecret(std::string_view secret) {
  auto set = std::make_shared<KeySet>();
  Key key;
  key.type = Key::Type::Hmac;
  key.alg = Alg::HS256;
  key.hmac.assign(secret.begin(), secret.end());
  set->keys_.push_back(std::move(key));
  return set;
}

std::shared_ptr<const KeySet> KeySet::merge(const std::shared_ptr<const KeySet>& a,
                                            const std::shared_ptr<const KeySet>& b) {
  if (!a) return b;
  if (!b) return a;
  auto set = std::make_shared<KeySet>();
  set->keys_ = a->keys_;
  set->keys_.insert(set->keys_.end(), b->keys_.begin(), b->keys_.end());
  return set;
}

bool KeySet::hasKid(std::string_view kid) const {
  return std::any_of(keys_.begin(), keys_.end(), [&](const Key& k) { return k.kid == kid; });
}

VerifyResult TokenVerifier::verify(std::string_view token, const KeySet* keys,
                                   std::int64_t nowSeconds) const {
  ClearErrors clear;
  if (token.size() > kMaxTokenBytes) {
    return refuse(Refusal::Oversize, std::to_string(token.size()) + " bytes");
  }
  const std::size_t dot1 = token.find('.');
  const std::size_t dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos) {
    return refuse(Refusal::Malformed, "not three dot-separated parts");
  }
  auto headerText = base64UrlDecode(token.substr(0, dot1));
  auto claimsText = base64UrlDecode(token.substr(dot1 + 1, dot2 - dot1 - 1));
  auto signature = base64UrlDecode(token.substr(dot2 + 1));
  if (!headerText || !claimsText || !signature) return refuse(Refusal::Malformed, "bad base64url");

  rapidjson::Document header;
  if (!parseObject(*headerText, header)) {
    return refuse(Refusal::Malformed, "header is not a JSON object with distinct names");
  }
  auto algText = stringMember(header, "alg");
  if (!algText) return refuse(Refusal::Malformed, "header has no alg");
  if (*algText == "none" || *algText == "None" || *algText == "NONE") {
    return refuse(Refusal::AlgNone, "alg none");
  }
  const auto alg = algFrom(*algText);
  if (!alg) return refuse(Refusal::AlgUnsupported, "alg " + std::string(*algText).substr(0, 16));
  // Extensions that must be understood: this relay understands none.
  if (header.HasMember("crit")) return refuse(Refusal::Malformed, "crit header");
  if (header.HasMember("kid") && !header["kid"].IsString()) {
    return refuse(Refusal::Malformed, "kid is not a string");
  }
  std::string kid(stringMember(header, "kid").value_or(std::string_view()));
  if (kid.size() > 256) return refuse(Refusal::Malformed, "kid is too long");

  // The key: the kid's, else every key of the alg's type. A key of another
  // type than the alg's is never used (HS256 with an RSA key's bytes as the
  // HMAC secret is the classic confusion).
  const Key::Type wanted = keyTypeFor(*alg);
  std::vector<const Key*> candidates;
  bool kidFound = false;
  bool wrongType = false;
  if (keys) {
    for (const Key& k : keys->keys()) {
      if (!kid.empty() && k.kid != kid) continue;
      kidFound = true;
      if (k.type != wanted || (k.alg && *k.alg != *alg)) {
        wrongType = true;
        continue;
      }
      candidates.push_back(&k);
    }
  }
  if (candidates.empty()) {
    if (!kid.empty() && !kidFound) return refuse(Refusal::UnknownKid, "kid " + kid);
    if (wrongType) {
      return refuse(Refusal::KeyMismatch, "no " + std::string(algName(*alg)) + " key" +
                                              (kid.empty() ? "" : " for kid " + kid));
    }
    return refuse(Refusal::NoKey, "no " + std::string(algName(*alg)) + " key configured");
  }
  const std::string_view signingInput = token.substr(0, dot2);
  const bool signedOk = std::any_of(candidates.begin(), candidates.end(), [&](const Key* k) {
    return checkSignature(*k, *alg, signingInput, *signature);
  });
  if (!signedOk) return refuse(Refusal::BadSignature, "signature does not verify");

  // Claims are read only once the signature holds.
  rapidjson::Document claims;
  if (!parseObject(*claimsText, claims)) {
    return refuse(Refusal::Malformed, "claims are not a JSON object with distinct names");
  }
  const auto now = static_cast<double>(nowSeconds);
  const auto leeway = static_cast<double>(options_.leewaySeconds);
  bool badType = false;
  const auto exp = numberMember(claims, "exp", badType);
  if (badType) return refuse(Refusal::Malformed, "exp is not a number");
  if (!exp) return refuse(Refusal::NoExpiry, "no exp claim");
  if (now >= *exp + leeway) return refuse(Refusal::Expired, "expired");
  const auto nbf = numberMember(claims, "nbf", badType);
  if (badType) return refuse(Refusal::Malformed, "nbf is not a number");
  if (nbf && now + leeway < *nbf) return refuse(Refusal::NotYetValid, "nbf is ahead");
  if (!options_.issuer.empty() && stringMember(claims, "iss") != options_.issuer) {
    return refuse(Refusal::WrongIssuer, "iss is not the configured issuer");
  }
  if (!options_.audience.empty()) {
    bool match = false;
    auto it = claims.FindMember("aud");
    if (it != claims.MemberEnd() && it->value.IsString()) {
      match =
          std::string_view(it->value.GetString(), it->value.GetStringLength()) == options_.audience;
    } else if (it != claims.MemberEnd() && it->value.IsArray()) {
      for (const auto& a : it->value.GetArray()) {
        if (a.IsString() &&
            std::string_view(a.GetString(), a.GetStringLength()) == options_.audience) {
          match = true;
        }
      }
    }
    if (!match) return refuse(Refusal::WrongAudience, "aud does not name this relay");
  }
  auto meshId = stringMember(claims, options_.meshClaim.c_str());
  if (!meshId || !proto::isValidMeshId(*meshId)) {
    return refuse(Refusal::BadMeshClaim, "claim " + options_.meshClaim + " is not a meshId");
  }

  VerifiedToken out;
  out.meshId = std::string(*meshId);
  if (auto name = stringMember(claims, "name");
      name && !name->empty() && name->size() <= proto::kMaxNameBytes) {
    out.name = std::string(*name);
  }
  // Far-future expiries are clamped rather than overflowed.
  out.expiresAt = static_cast<std::int64_t>(std::min(std::floor(*exp), 4102444800.0));
  out.kid = std::move(kid);
  out.alg = *alg;
  return out;
}

}  // namespace mesh::relay::jwt
