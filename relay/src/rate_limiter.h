// Token buckets: `rate` tokens per second up to `burst`. Time is passed in so
// tests need no clock. Not thread-safe: each bucket belongs to the loop.
#pragma once

#include <algorithm>
#include <cstdint>

namespace mesh::relay {

class TokenBucket {
 public:
  TokenBucket() = default;
  TokenBucket(double rate, double burst, std::int64_t nowUs)
      : rate_(rate), burst_(burst), tokens_(burst), lastUs_(nowUs) {}

  // rate <= 0 means unlimited.
  [[nodiscard]] bool tryTake(std::int64_t nowUs, double cost = 1.0) {
    if (rate_ <= 0) return true;
    refill(nowUs);
    if (tokens_ < cost) return false;
    tokens_ -= cost;
    return true;
  }

  // Whether tryTake(nowUs, cost) would succeed, without taking anything.
  [[nodiscard]] bool canTake(std::int64_t nowUs, double cost = 1.0) const {
    if (rate_ <= 0) return true;
    const double elapsed = nowUs > lastUs_ ? static_cast<double>(nowUs - lastUs_) : 0.0;
    return std::min(burst_, tokens_ + rate_ * elapsed / 1e6) >= cost;
  }

  // True when the bucket is full again, so its owner may forget it.
  [[nodiscard]] bool isFull(std::int64_t nowUs) const {
    const double elapsed = nowUs > lastUs_ ? static_cast<double>(nowUs - lastUs_) : 0.0;
    return rate_ <= 0 || tokens_ + rate_ * elapsed / 1e6 >= burst_;
  }

 private:
  void refill(std::int64_t nowUs) {
    if (nowUs > lastUs_) {
      tokens_ = std::min(burst_, tokens_ + rate_ * static_cast<double>(nowUs - lastUs_) / 1e6);
      lastUs_ = nowUs;
    }
  }

  double rate_ = 0;
  double burst_ = 0;
  double tokens_ = 0;
  std::int64_t lastUs_ = 0;
};

}  // namespace mesh::relay
