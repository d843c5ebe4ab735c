// The budgets of failed authentications and the fair queue of secret
// checks, with time passed in.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "auth_guard.h"

namespace mesh::relay {
namespace {

constexpr std::int64_t kSecond = 1'000'000;

AuthBudgetLimits limits() {
  // 3 failures per address, 5 per mesh, refilling one per 10 s.
  return AuthBudgetLimits{0.1, 3, 0.1, 5};
}

TEST(AuthBudget, AddressIsRefusedOnceItsFailuresAreSpent) {
  AuthBudget b(limits());
  const std::int64_t t = 100 * kSecond;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(b.verdict("10.0.0.1", "alpha", t), AuthBudget::Verdict::Check) << i;
    b.noteFailure("10.0.0.1", "alpha", false, t);
  }
  EXPECT_EQ(b.verdict("10.0.0.1", "alpha", t), AuthBudget::Verdict::AddressSpent);
  EXPECT_EQ(b.verdict("10.0.0.1", "beta", t), AuthBudget::Verdict::AddressSpent);
  EXPECT_EQ(b.verdict("10.0.0.2", "alpha", t), AuthBudget::Verdict::Check);
  // One failure's worth refills in 10 s.
  EXPECT_EQ(b.verdict("10.0.0.1", "alpha", t + 10 * kSecond), AuthBudget::Verdict::Check);
}

TEST(AuthBudget, SpentMeshRefusesOnlyAddressesThatFailedThemselves) {
  AuthBudget b(limits());
  const std::int64_t t = 100 * kSecond;
  // Five addresses fail once each for alpha: its budget is spent.
  for (int i = 1; i <= 5; ++i) b.noteFailure("10.0.0." + std::to_string(i), "alpha", true, t);
  // They are refused for alpha (their own budgets are not spent)...
  EXPECT_EQ(b.verdict("10.0.0.1", "alpha", t), AuthBudget::Verdict::MeshSpent);
  // ...but not for another mesh,
  EXPECT_EQ(b.verdict("10.0.0.1", "beta", t), AuthBudget::Verdict::Check);
  // and an address with a clean record (the real node) is still checked.
  EXPECT_EQ(b.verdict("10.0.0.9", "alpha", t), AuthBudget::Verdict::Check);
}

TEST(AuthBudget, UnknownMeshIdsGetNoBucket) {
  AuthBudget b(limits());
  for (int i = 0; i < 100; ++i) b.noteFailure("10.0.0.1", "made-up-" + std::to_string(i), false, 0);
  EXPECT_EQ(b.trackedMeshes(), 0u);
  EXPECT_EQ(b.trackedAddresses(), 1u);
}

TEST(AuthBudget, FullBucketsAreForgotten) {
  AuthBudget b(limits());
  b.noteFailure("10.0.0.1", "alpha", true, 0);
  b.forgetFull(5 * kSecond);
  EXPECT_EQ(b.trackedAddresses(), 1u);
  EXPECT_EQ(b.trackedMeshes(), 1u);
  b.forgetFull(11 * kSecond);
  EXPECT_EQ(b.trackedAddresses(), 0u);
  EXPECT_EQ(b.trackedMeshes(), 0u);
}

TEST(AuthBudget, ZeroRateMeansNoBudget) {
  AuthBudget b(AuthBudgetLimits{0, 1, 0, 1});
  for (int i = 0; i < 10; ++i) b.noteFailure("10.0.0.1", "alpha", true, 0);
  EXPECT_EQ(b.verdict("10.0.0.1", "alpha", 0), AuthBudget::Verdict::Check);
}

SecretCheck check(const std::string& address, std::uint64_t id) {
  return SecretCheck(id, address, "mesh", "secret-" + std::to_string(id),
                     std::make_shared<std::atomic<bool>>(false));
}

TEST(FairCheckQueue, TakesAddressesInTurn) {
  FairCheckQueue q;
  // A flood from one address, then one check from each of two others.
  for (std::uint64_t i = 1; i <= 5; ++i) q.push(check("attacker", i));
  q.push(check("node-a", 10));
  q.push(check("node-b", 20));
  EXPECT_EQ(q.size(), 7u);
  std::vector<std::uint64_t> order;
  while (auto c = q.pop()) order.push_back(c->sessionId);
  EXPECT_EQ(order, (std::vector<std::uint64_t>{1, 10, 20, 2, 3, 4, 5}));
  EXPECT_TRUE(q.empty());
}

TEST(FairCheckQueue, AnAddressThatReturnsWaitsForItsTurn) {
  FairCheckQueue q;
  q.push(check("a", 1));
  q.push(check("b", 2));
  auto first = q.pop();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->sessionId, 1u);
  q.push(check("a", 3));
  EXPECT_EQ(q.pop()->sessionId, 2u);
  EXPECT_EQ(q.pop()->sessionId, 3u);
  EXPECT_FALSE(q.pop());
}

}  // namespace
}  // namespace mesh::relay
