#include "stats.h"

#include <algorithm>
#include <cmath>

namespace mesh::bench {

namespace {
constexpr size_t kBuckets = 256 + 56 * 128;
}

Histogram::Histogram() : counts_(kBuckets, 0) {}

uint64_t Histogram::value_of(size_t idx) {
  if (idx < 256) return idx;
  size_t rel = idx - 256;
  int msb = 8 + static_cast<int>(rel / 128);
  uint64_t sub = rel % 128;
  int shift = msb - 7;
  uint64_t lo = (128 + sub) << shift;
  return lo + ((uint64_t{1} << shift) >> 1);  // middle of the bucket
}

void Histogram::merge(const Histogram& o) {
  for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += o.counts_[i];
  total_ += o.total_;
  if (o.max_ > max_) max_ = o.max_;
}

void Histogram::reset() {
  std::fill(counts_.begin(), counts_.end(), 0);
  total_ = 0;
  max_ = 0;
}

uint64_t Histogram::percentile(double q) const {
  if (total_ == 0) return 0;
  auto rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(total_)));
  if (rank < 1) rank = 1;
  uint64_t seen = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      uint64_t v = value_of(i);
      return v > max_ ? max_ : v;
    }
  }
  return max_;
}

}  // namespace mesh::bench
