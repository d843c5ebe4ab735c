#include "auth_guard.h"

#include <sodium.h>

#include <iterator>

namespace mesh::relay {

AuthBudget::Verdict AuthBudget::verdict(const std::string& address, std::string_view meshId,
                                        std::int64_t nowUs) const {
  auto a = addresses_.find(address);
  if (a != addresses_.end() && !a->second.canTake(nowUs)) return Verdict::AddressSpent;
  // An address with no bucket (or a full one) has no failure to its name.
  const bool failedLately = a != addresses_.end() && !a->second.isFull(nowUs);
  if (failedLately) {
    auto m = meshes_.find(meshId);
    if (m != meshes_.end() && !m->second.canTake(nowUs)) return Verdict::MeshSpent;
  }
  return Verdict::Check;
}

void AuthBudget::noteFailure(const std::string& address, std::string_view meshId, bool knownMesh,
                             std::int64_t nowUs) {
  if (limits_.addressRate > 0) {
    auto [it, inserted] = addresses_.try_emplace(address);
    if (inserted) it->second = TokenBucket(limits_.addressRate, limits_.addressBurst, nowUs);
    (void)it->second.tryTake(nowUs);
  }
  if (knownMesh && limits_.meshRate > 0) {
    auto it = meshes_.find(meshId);
    if (it == meshes_.end()) {
      it =
          meshes_
              .emplace(std::string(meshId), TokenBucket(limits_.meshRate, limits_.meshBurst, nowUs))
              .first;
    }
    (void)it->second.tryTake(nowUs);
  }
}

void AuthBudget::forgetFull(std::int64_t nowUs) {
  std::erase_if(addresses_, [&](const auto& kv) { return kv.second.isFull(nowUs); });
  std::erase_if(meshes_, [&](const auto& kv) { return kv.second.isFull(nowUs); });
}

SecretCheck::~SecretCheck() {
  if (!secret.empty()) sodium_memzero(secret.data(), secret.size());
}

void FairCheckQueue::push(SecretCheck check) {
  auto& queue = byAddress_[check.peer];
  if (queue.empty()) turns_.push_back(check.peer);
  queue.push_back(std::move(check));
  ++size_;
}

std::optional<SecretCheck> FairCheckQueue::pop() {
  if (turns_.empty()) return std::nullopt;
  std::string address = std::move(turns_.front());
  turns_.pop_front();
  auto it = byAddress_.find(address);
  std::optional<SecretCheck> out(std::move(it->second.front()));
  it->second.pop_front();
  --size_;
  if (it->second.empty()) {
    byAddress_.erase(it);
  } else {
    turns_.push_back(std::move(address));
  }
  return out;
}

}  // namespace mesh::relay
