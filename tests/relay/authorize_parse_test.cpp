// What needs no socket: the Authorization header's forms, the authorize
// hook's request body and answers, and the bounded cache of answers.
#include <gtest/gtest.h>

#include "authorize.h"
#include "support/ws_client.h"
#include "upgrade_auth.h"

namespace mesh::relay {
namespace {

using Kind = HeaderCredentials::Kind;
using Outcome = AuthorizeAnswer::Outcome;
using Failure = AuthorizeAnswer::Failure;

TEST(AuthorizationHeader, BasicSplitsAtTheFirstColon) {
  const auto c = parseAuthorization("Basic " + test::ws::base64Encode("mesh-a:se:cret"));
  EXPECT_EQ(c.kind, Kind::Basic);
  EXPECT_EQ(c.meshId, "mesh-a");
  EXPECT_EQ(c.secret, "se:cret");
  // The scheme in any case, extra spaces around the value.
  const auto lower = parseAuthorization("basic   " + test::ws::base64Encode("m:s") + " ");
  EXPECT_EQ(lower.kind, Kind::Basic);
  EXPECT_EQ(lower.meshId, "m");
}

TEST(AuthorizationHeader, BearerKeepsTheToken) {
  const auto c = parseAuthorization("Bearer eyJ.a.b");
  EXPECT_EQ(c.kind, Kind::Bearer);
  EXPECT_EQ(c.token, "eyJ.a.b");
}

TEST(AuthorizationHeader, AnythingElseIsMalformed) {
  for (const std::string& v : std::vector<std::string>{
           "", "Basic", "Basic ", "Basic !!!!", "Basic " + test::ws::base64Encode("no-colon"),
           "Basicx " + test::ws::base64Encode("m:s"), "Digest username=x", "Bearer ", "Bearer"}) {
    EXPECT_EQ(parseAuthorization(v).kind, Kind::Malformed) << v;
  }
}

TEST(AuthorizeHookAnswer, AllowWithEverything) {
  const auto a = parseAuthorizeAnswer(
      200, R"({"allow":true,"meshId":"team","claims":{"a":[1,2],"b":"c"},"ttl":30})");
  EXPECT_EQ(a.outcome, Outcome::Allow);
  EXPECT_EQ(a.meshId, "team");
  EXPECT_EQ(a.claimsJson, R"({"a":[1,2],"b":"c"})");
  ASSERT_TRUE(a.ttlSeconds);
  EXPECT_EQ(*a.ttlSeconds, 30);
}

TEST(AuthorizeHookAnswer, DenyKeepsTheReason) {
  const auto a = parseAuthorizeAnswer(200, R"({"allow":false,"reason":"suspended"})");
  EXPECT_EQ(a.outcome, Outcome::Deny);
  EXPECT_EQ(a.reason, "suspended");
}

TEST(AuthorizeHookAnswer, FailsClosed) {
  EXPECT_EQ(parseAuthorizeAnswer(500, R"({"allow":true})").failure, Failure::Status);
  EXPECT_EQ(parseAuthorizeAnswer(302, R"({"allow":true})").failure, Failure::Status);
  for (const char* body : {"", "true", "[]", R"({"allow":"yes"})", R"({"allow":true,"claims":1})",
                           R"({"allow":true,"meshId":5})", R"({"allow":true,"ttl":-1})",
                           R"({"allow":false,"reason":1})", R"({"allow":true} x)"}) {
    const auto a = parseAuthorizeAnswer(200, body);
    EXPECT_EQ(a.outcome, Outcome::Unavailable) << body;
    EXPECT_EQ(a.failure, Failure::BadAnswer) << body;
  }
}

TEST(AuthorizeHookRequest, BodyHasTheFieldsAndTheTokenOnlyWhenThereIsOne) {
  AuthorizeRequest r{"mesh-a", "10.0.0.1", "relay.example", std::nullopt};
  EXPECT_EQ(authorizeRequestBody(r),
            R"({"meshId":"mesh-a","ip":"10.0.0.1","host":"relay.example"})");
  r.token = "t\"1";
  EXPECT_EQ(authorizeRequestBody(r),
            R"({"meshId":"mesh-a","ip":"10.0.0.1","host":"relay.example","token":"t\"1"})");
}

TEST(AuthorizeCacheTest, EntriesExpireAndTheSizeIsBounded) {
  AuthorizeCache cache(2);
  const AuthorizeRequest a{"a", "ip", "h", std::nullopt};
  const AuthorizeRequest b{"b", "ip", "h", std::nullopt};
  const AuthorizeRequest c{"c", "ip", "h", std::nullopt};
  const AuthorizeRequest aFromElsewhere{"a", "ip2", "h", std::nullopt};
  cache.put(AuthorizeCache::keyOf(a), {"", "", 100}, 0);
  cache.put(AuthorizeCache::keyOf(b), {"", "", 200}, 0);
  EXPECT_NE(cache.find(AuthorizeCache::keyOf(a), 50), nullptr);
  EXPECT_EQ(cache.find(AuthorizeCache::keyOf(aFromElsewhere), 50), nullptr);
  // Full: the entry that expires soonest (a) makes room.
  cache.put(AuthorizeCache::keyOf(c), {"", "", 300}, 50);
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(cache.find(AuthorizeCache::keyOf(a), 60), nullptr);
  EXPECT_NE(cache.find(AuthorizeCache::keyOf(c), 60), nullptr);
  // Expired entries are gone when asked for.
  EXPECT_EQ(cache.find(AuthorizeCache::keyOf(b), 200), nullptr);
  EXPECT_EQ(cache.size(), 1u);
}

}  // namespace
}  // namespace mesh::relay
