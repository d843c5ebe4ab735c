// What stands between gateway_auth and the workers: budgets of failed
// authentications, and a fair queue of secret checks waiting for Argon2id.
// Loop thread only; time is passed in (steady microseconds).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "rate_limiter.h"

namespace mesh::relay {

struct AuthBudgetLimits {
  double addressRate = 0;  // failures per second per address (0 = no budget)
  double addressBurst = 0;
  double meshRate = 0;  // failures per second per meshId (0 = no budget)
  double meshBurst = 0;
};

// Failed authentications per client address and per meshId, as token
// buckets that exist only while they are not full.
//
// The rule (docs/protocol.md, Rate limiting): an address whose own budget is
// spent is refused. A meshId whose budget is spent refuses only addresses
// that have failed recently themselves (their bucket is not full), so a
// flood of wrong secrets from elsewhere never locks the real node out: an
// address with a clean record is always checked.
class AuthBudget {
 public:
  enum class Verdict { Check, AddressSpent, MeshSpent };

  explicit AuthBudget(AuthBudgetLimits limits) : limits_(limits) {}

  [[nodiscard]] Verdict verdict(const std::string& address, std::string_view meshId,
                                std::int64_t nowUs) const;
  // `knownMesh`: only registered meshIds get a bucket, so made-up ids cost
  // no memory.
  void noteFailure(const std::string& address, std::string_view meshId, bool knownMesh,
                   std::int64_t nowUs);
  // Drops buckets that are full again (they carry no state).
  void forgetFull(std::int64_t nowUs);

  [[nodiscard]] std::size_t trackedAddresses() const { return addresses_.size(); }
  [[nodiscard]] std::size_t trackedMeshes() const { return meshes_.size(); }

 private:
  struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };
  using Buckets = std::unordered_map<std::string, TokenBucket, StringHash, std::equal_to<>>;

  AuthBudgetLimits limits_;
  Buckets addresses_;
  Buckets meshes_;
};

// A secret waiting for Argon2id. The secret is wiped when the check is
// destroyed.
struct SecretCheck {
  SecretCheck() = default;
  SecretCheck(std::uint64_t session, std::string address, std::string mesh, std::string secretText,
              std::shared_ptr<std::atomic<bool>> cancel)
      : sessionId(session),
        peer(std::move(address)),
        meshId(std::move(mesh)),
        secret(std::move(secretText)),
        cancelled(std::move(cancel)) {}
  SecretCheck(SecretCheck&&) noexcept = default;
  SecretCheck& operator=(SecretCheck&&) noexcept = default;
  SecretCheck(const SecretCheck&) = delete;
  SecretCheck& operator=(const SecretCheck&) = delete;
  ~SecretCheck();

  std::uint64_t sessionId = 0;
  std::string peer;  // the client's address, charged if the secret is wrong
  std::string meshId;
  std::string secret;
  std::shared_ptr<std::atomic<bool>> cancelled;  // set when the connection goes
  // When set, the answer goes here (on the loop) instead of to the session:
  // the name if the secret is right, and whether it was checked at all.
  std::function<void(std::optional<std::string> name, bool checked)> done;
};

// Secret checks queued per client address and taken round robin, so one
// address with many connections gets one check in turn like everybody else
// instead of the whole worker (one FIFO would serve it all first).
class FairCheckQueue {
 public:
  void push(SecretCheck check);  // queued under check.peer
  // The next check, from the address after the one served last.
  [[nodiscard]] std::optional<SecretCheck> pop();
  [[nodiscard]] std::size_t size() const { return size_; }
  [[nodiscard]] bool empty() const { return size_ == 0; }

 private:
  std::unordered_map<std::string, std::deque<SecretCheck>> byAddress_;
  std::deque<std::string> turns_;  // addresses with checks waiting, in turn order
  std::size_t size_ = 0;
};

}  // namespace mesh::relay
