#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace mesh::bench {

// Log-linear latency histogram in nanoseconds: 128 sub-buckets per power of
// two (under 1 % relative error), exact below 256 ns, exact max.
class Histogram {
 public:
  Histogram();
  void record(int64_t ns) {
    uint64_t v = ns < 0 ? 0 : static_cast<uint64_t>(ns);
    ++counts_[index_of(v)];
    ++total_;
    if (v > max_) max_ = v;
  }
  void merge(const Histogram& o);
  void reset();
  uint64_t count() const { return total_; }
  uint64_t max() const { return max_; }
  // q in [0, 1]; 0 when empty.
  uint64_t percentile(double q) const;

 private:
  static size_t index_of(uint64_t v) {
    if (v < 256) return static_cast<size_t>(v);
    int msb = 63 - __builtin_clzll(v);
    return 256 + static_cast<size_t>(msb - 8) * 128 + ((v >> (msb - 7)) & 127);
  }
  static uint64_t value_of(size_t idx);
  std::vector<uint64_t> counts_;
  uint64_t total_ = 0;
  uint64_t max_ = 0;
};

// Per-stream sequence bookkeeping: counts messages and duplicates with a
// growing bitmap (sequence numbers start at 0 and are dense).
class SeqTracker {
 public:
  // Returns false for a duplicate.
  bool mark(uint64_t seq) {
    size_t word = static_cast<size_t>(seq >> 6);
    if (word >= bits_.size()) bits_.resize(word + 1 + bits_.size() / 2, 0);
    uint64_t bit = uint64_t{1} << (seq & 63);
    if (bits_[word] & bit) {
      ++dups_;
      return false;
    }
    bits_[word] |= bit;
    ++unique_;
    return true;
  }
  uint64_t unique() const { return unique_; }
  uint64_t duplicates() const { return dups_; }

 private:
  std::vector<uint64_t> bits_;
  uint64_t unique_ = 0;
  uint64_t dups_ = 0;
};

}  // namespace mesh::bench
