// The token verifier on its own: keys made by OpenSSL in the test, tokens
// signed with EVP, every refusal provoked once.
#include "jwt.h"

#include <gtest/gtest.h>

#include "support/jwt_signer.h"

namespace mesh::relay::jwt {
namespace {

using test::claimsFor;
using test::jwksOf;
using test::JwtKey;
using test::unixNow;

const std::string kSecret = "0123456789abcdef0123456789abcdef-hs256";

std::shared_ptr<const KeySet> setOf(const std::vector<const JwtKey*>& keys) {
  std::string error;
  auto set = KeySet::fromJwks(jwksOf(keys), error);
  EXPECT_TRUE(set) << error;
  return set;
}

// The refusal, or Count when the token was accepted.
Refusal refusalOf(const VerifyResult& r) {
  if (const auto* refused = std::get_if<TokenRefusal>(&r)) return refused->reason;
  return Refusal::Count;
}

const VerifiedToken& accepted(const VerifyResult& r) {
  if (const auto* refused = std::get_if<TokenRefusal>(&r)) {
    ADD_FAILURE() << "refused: " << refusalLabel(refused->reason) << " (" << refused->detail << ")";
    static const VerifiedToken none;
    return none;
  }
  return std::get<VerifiedToken>(r);
}

class JwtKeys : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    rsa = new JwtKey(JwtKey::rsa("rsa-1"));
    ec = new JwtKey(JwtKey::ec("ec-1"));
    ed = new JwtKey(JwtKey::ed25519("ed-1"));
  }
  static void TearDownTestSuite() {
    delete rsa;
    delete ec;
    delete ed;
  }
  static JwtKey* rsa;
  static JwtKey* ec;
  static JwtKey* ed;
  TokenVerifier verifier{VerifyOptions{}};
};
JwtKey* JwtKeys::rsa = nullptr;
JwtKey* JwtKeys::ec = nullptr;
JwtKey* JwtKeys::ed = nullptr;

TEST_F(JwtKeys, AcceptsEachAlgorithm) {
  const auto set = setOf({rsa, ec, ed});
  ASSERT_EQ(set->size(), 3u);
  for (const JwtKey* key : {rsa, ec, ed}) {
    const auto r = verifier.verify(key->sign(claimsFor("mesh-a", 300, R"("name":"Mesh A")")),
                                   set.get(), unixNow());
    const VerifiedToken& t = accepted(r);
    EXPECT_EQ(t.meshId, "mesh-a") << key->alg();
    EXPECT_EQ(t.name.value_or(""), "Mesh A");
    EXPECT_EQ(t.kid, key->kid());
    EXPECT_EQ(algName(t.alg), key->alg());
  }
  const auto hs = KeySet::fromSecret(kSecret);
  const auto r =
      verifier.verify(JwtKey::hmac(kSecret).sign(claimsFor("mesh-b", 60)), hs.get(), unixNow());
  EXPECT_EQ(accepted(r).meshId, "mesh-b");
}

TEST_F(JwtKeys, TokenWithoutKidTriesKeysOfItsType) {
  const auto set = setOf({ec, ed});
  const JwtKey anonymous = JwtKey::ec("");
  const auto withAnonymous = setOf({ec, &anonymous});
  const auto r =
      verifier.verify(anonymous.sign(claimsFor("m", 60)), withAnonymous.get(), unixNow());
  EXPECT_EQ(accepted(r).meshId, "m");
  // Signed by a key that is not in the set: no key verifies it.
  EXPECT_EQ(refusalOf(verifier.verify(anonymous.sign(claimsFor("m", 60)), set.get(), unixNow())),
            Refusal::BadSignature);
}

TEST_F(JwtKeys, RefusesAlgNone) {
  const auto set = setOf({rsa});
  for (const char* alg : {"none", "None", "NONE"}) {
    const std::string header = std::string(R"({"alg":")") + alg + R"(","kid":"rsa-1"})";
    EXPECT_EQ(refusalOf(verifier.verify(test::unsignedToken(header, claimsFor("m", 60)), set.get(),
                                        unixNow())),
              Refusal::AlgNone)
        << alg;
  }
}

TEST_F(JwtKeys, RefusesHmacSignedWithAPublicKeysBytes) {
  // The forger knows the public key and signs HS256 with its PEM (and DER
  // in base64, and the JWK's modulus) as the HMAC secret.
  const auto set = setOf({rsa});
  const std::string claims = claimsFor("victim", 60);
  for (const std::string& secret : {rsa->publicPem(), rsa->jwk()}) {
    const auto kid = test::hmacToken(secret, R"({"alg":"HS256","kid":"rsa-1"})", claims);
    EXPECT_EQ(refusalOf(verifier.verify(kid, set.get(), unixNow())), Refusal::KeyMismatch);
    const auto noKid = test::hmacToken(secret, R"({"alg":"HS256"})", claims);
    EXPECT_EQ(refusalOf(verifier.verify(noKid, set.get(), unixNow())), Refusal::KeyMismatch);
  }
  // And the other way round: an RS256 header naming the HS256 key.
  const JwtKey hsWithKid = JwtKey::hmac(kSecret, "hs-1");
  const auto mixed = setOf({&hsWithKid});
  const auto token = rsa->signWithHeader(R"({"alg":"RS256","kid":"hs-1"})", claims);
  EXPECT_EQ(refusalOf(verifier.verify(token, mixed.get(), unixNow())), Refusal::KeyMismatch);
}

TEST_F(JwtKeys, RefusesAKeyWhoseAlgIsAnother) {
  // A JWK's alg must fit its type, and names appear once.
  std::string error;
  std::string jwk = ec->jwk();
  jwk.replace(jwk.find("ES256"), 5, "RS256");
  EXPECT_FALSE(KeySet::fromJwks(R"({"keys":[)" + jwk + "]}", error));
  EXPECT_NE(error.find("alg"), std::string::npos) << error;
  const std::string twice =
      R"({"keys":[)" + rsa->jwk().substr(0, rsa->jwk().size() - 1) + R"(,"alg":"ES256"}]})";
  EXPECT_FALSE(KeySet::fromJwks(twice, error));
}

TEST_F(JwtKeys, RefusesUnknownKid) {
  const auto set = setOf({rsa, ec});
  const JwtKey stranger = JwtKey::ec("ec-2");
  EXPECT_EQ(refusalOf(verifier.verify(stranger.sign(claimsFor("m", 60)), set.get(), unixNow())),
            Refusal::UnknownKid);
}

TEST_F(JwtKeys, RefusesTamperedTokens) {
  const auto set = setOf({ed, ec, rsa});
  for (const JwtKey* key : {ed, ec, rsa}) {
    std::string token = key->sign(claimsFor("m", 60));
    // Another claims part under the same signature.
    const std::size_t dot1 = token.find('.');
    const std::size_t dot2 = token.find('.', dot1 + 1);
    std::string other = key->sign(claimsFor("other-mesh", 60));
    const std::string swapped =
        token.substr(0, dot1 + 1) +
        other.substr(other.find('.') + 1, other.rfind('.') - other.find('.') - 1) +
        token.substr(dot2);
    EXPECT_EQ(refusalOf(verifier.verify(swapped, set.get(), unixNow())), Refusal::BadSignature)
        << key->alg();
  }
  // An ES256 signature of the wrong width (r||s is 64 bytes, DER is not
  // accepted either).
  const std::string token = ec->sign(claimsFor("m", 60));
  const std::string input = token.substr(0, token.rfind('.'));
  const std::string sig = ec->signature(input);
  EXPECT_EQ(refusalOf(verifier.verify(input + "." + base64UrlEncode(sig.substr(0, 63)), set.get(),
                                      unixNow())),
            Refusal::BadSignature);
  EXPECT_EQ(
      refusalOf(verifier.verify(input + "." + base64UrlEncode(sig + "x"), set.get(), unixNow())),
      Refusal::BadSignature);
  EXPECT_EQ(refusalOf(verifier.verify(input + "." + base64UrlEncode(sig), set.get(), unixNow())),
            Refusal::Count);
}

TEST_F(JwtKeys, ChecksTimeClaimsWithLeeway) {
  const auto set = setOf({ed});
  const std::int64_t now = unixNow();
  auto at = [&](const std::string& claims, std::int64_t when) {
    return refusalOf(verifier.verify(ed->sign(claims), set.get(), when));
  };
  const std::string exp = R"({"sub":"m","exp":)" + std::to_string(now) + "}";
  EXPECT_EQ(at(exp, now - 1), Refusal::Count);
  EXPECT_EQ(at(exp, now + 59), Refusal::Count);  // inside the default 60 s
  EXPECT_EQ(at(exp, now + 60), Refusal::Expired);
  EXPECT_EQ(at(R"({"sub":"m"})", now), Refusal::NoExpiry);
  EXPECT_EQ(at(R"({"sub":"m","exp":"soon"})", now), Refusal::Malformed);
  const std::string nbf = R"({"sub":"m","exp":)" + std::to_string(now + 600) + R"(,"nbf":)" +
                          std::to_string(now + 100) + "}";
  EXPECT_EQ(at(nbf, now), Refusal::NotYetValid);
  EXPECT_EQ(at(nbf, now + 40), Refusal::Count);
  // Fractional NumericDates are allowed.
  EXPECT_EQ(at(R"({"sub":"m","exp":)" + std::to_string(now + 10) + ".5}", now), Refusal::Count);

  TokenVerifier strict(VerifyOptions{"", "", "sub", 0});
  EXPECT_EQ(refusalOf(strict.verify(ed->sign(exp), set.get(), now)), Refusal::Expired);
}

TEST_F(JwtKeys, ChecksIssuerAndAudience) {
  const auto set = setOf({ec});
  TokenVerifier v(VerifyOptions{"https://idp.example", "mesh-relay", "sub", 60});
  const std::int64_t now = unixNow();
  auto check = [&](const std::string& extra) {
    return refusalOf(v.verify(ec->sign(claimsFor("m", 60, extra)), set.get(), now));
  };
  EXPECT_EQ(check(R"("iss":"https://idp.example","aud":"mesh-relay")"), Refusal::Count);
  EXPECT_EQ(check(R"("iss":"https://idp.example","aud":["other","mesh-relay"])"), Refusal::Count);
  EXPECT_EQ(check(R"("iss":"https://idp.example","aud":"other-service")"), Refusal::WrongAudience);
  EXPECT_EQ(check(R"("iss":"https://idp.example","aud":["a","b"])"), Refusal::WrongAudience);
  EXPECT_EQ(check(R"("iss":"https://idp.example")"), Refusal::WrongAudience);
  EXPECT_EQ(check(R"("iss":"https://evil.example","aud":"mesh-relay")"), Refusal::WrongIssuer);
  EXPECT_EQ(check(R"("aud":"mesh-relay")"), Refusal::WrongIssuer);
}

TEST_F(JwtKeys, ReadsTheMeshFromTheConfiguredClaim) {
  const auto set = setOf({ed});
  TokenVerifier v(VerifyOptions{"", "", "mesh_id", 60});
  const std::int64_t exp = unixNow() + 60;
  const auto ok =
      v.verify(ed->sign(R"({"sub":"user-7","mesh_id":"mesh-9","exp":)" + std::to_string(exp) + "}"),
               set.get(), unixNow());
  EXPECT_EQ(accepted(ok).meshId, "mesh-9");
  EXPECT_EQ(refusalOf(v.verify(ed->sign(claimsFor("m", 60)), set.get(), unixNow())),
            Refusal::BadMeshClaim);
  EXPECT_EQ(
      refusalOf(verifier.verify(ed->sign(claimsFor("not a mesh id!", 60)), set.get(), unixNow())),
      Refusal::BadMeshClaim);
}

TEST_F(JwtKeys, RefusesMalformedAndOversizeTokens) {
  const auto set = setOf({ed});
  const std::int64_t now = unixNow();
  const std::string good = ed->sign(claimsFor("m", 60));
  for (const std::string& bad :
       {std::string(""), std::string("abc"), std::string("a.b"), good + ".x", std::string("..."),
        "e30=." + good.substr(good.find('.') + 1),  // padding is not base64url
        "e30+" + good.substr(good.find('.')),       // '+' is not in the alphabet
        test::unsignedToken("[1]", "{}") + "AAAA",
        ed->signWithHeader(R"({"alg":"EdDSA","alg":"EdDSA","kid":"ed-1"})", claimsFor("m", 60)),
        ed->signWithHeader(R"({"alg":"EdDSA","kid":"ed-1","crit":["exp"]})", claimsFor("m", 60)),
        ed->signWithHeader(R"({"alg":"EdDSA","kid":"ed-1"})", "not json"),
        ed->signWithHeader(R"({"alg":"EdDSA","kid":"ed-1"})",
                           R"({"sub":"m","sub":"n","exp":)" + std::to_string(now + 60) + "}")}) {
    EXPECT_EQ(refusalOf(verifier.verify(bad, set.get(), now)), Refusal::Malformed) << bad;
  }
  EXPECT_EQ(
      refusalOf(verifier.verify(ed->signWithHeader(R"({"alg":"HS512"})", "{}"), set.get(), now)),
      Refusal::AlgUnsupported);
  const std::string huge =
      ed->sign(claimsFor("m", 60, "\"pad\":\"" + std::string(9000, 'x') + "\""));
  EXPECT_EQ(refusalOf(verifier.verify(huge, set.get(), now)), Refusal::Oversize);
  EXPECT_EQ(refusalOf(verifier.verify(good, nullptr, now)), Refusal::UnknownKid);
  EXPECT_EQ(
      refusalOf(verifier.verify(JwtKey::hmac(kSecret).sign(claimsFor("m", 60)), set.get(), now)),
      Refusal::KeyMismatch);
  const KeySet empty;
  EXPECT_EQ(refusalOf(verifier.verify(JwtKey::hmac(kSecret).sign(claimsFor("m", 60)), &empty, now)),
            Refusal::NoKey);
}

TEST_F(JwtKeys, JwksParsingSkipsForeignKeysAndRefusesBrokenOnes) {
  std::string error;
  // Keys of types and uses the relay does not verify with are skipped.
  const std::string mixed = R"({"keys":[{"kty":"EC","crv":"P-384","x":"AA","y":"AA"},)"
                            R"({"kty":"OKP","crv":"X25519","x":"AA"},)"
                            R"({"kty":"RSA","use":"enc","n":"AA","e":"AQAB"},)"
                            R"({"kty":"RSA","alg":"RS512","n":"AA","e":"AQAB"},)" +
                            ed->jwk() + "]}";
  auto set = KeySet::fromJwks(mixed, error);
  ASSERT_TRUE(set) << error;
  EXPECT_EQ(set->size(), 1u);
  EXPECT_TRUE(set->hasKid("ed-1"));

  for (const std::string& broken : {
           std::string("not json"),
           std::string("[]"),
           std::string(R"({"keys":{}})"),
           std::string(R"({"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA"}]})"),
           std::string(R"({"keys":[{"kty":"oct","k":"c2hvcnQ"}]})"),
           std::string(R"({"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]})"),
           // A P-256 "point" that is not on the curve.
           std::string(R"({"keys":[{"kty":"EC","crv":"P-256","x":")") + std::string(43, 'A') +
               R"(","y":")" + std::string(42, 'A') + R"(E"}]})",
           std::string(R"({"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]})"),
           std::string(R"({"keys":[{"kid":1,"kty":"oct","k":"AA"}]})"),
       }) {
    error.clear();
    EXPECT_FALSE(KeySet::fromJwks(broken, error)) << broken;
    EXPECT_FALSE(error.empty()) << broken;
  }
}

TEST(Base64Url, RoundTripsAndIsStrict) {
  for (const std::string s : {"", "f", "fo", "foo", "foob", "fooba", "foobar", "\xff\xfe\x00"}) {
    EXPECT_EQ(base64UrlDecode(base64UrlEncode(s)).value_or("?"), s);
  }
  EXPECT_EQ(base64UrlEncode("\xfb\xff"), "-_8");
  EXPECT_FALSE(base64UrlDecode("Zm9v="));
  EXPECT_FALSE(base64UrlDecode("Zm9v+"));
  EXPECT_FALSE(base64UrlDecode("Zm9 v"));
}

}  // namespace
}  // namespace mesh::relay::jwt
