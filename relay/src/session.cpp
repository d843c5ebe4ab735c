#include "session.h"

#include <utility>

namespace mesh::relay {

namespace {
std::atomic<std::uint64_t> nextFrameSerial{1};
}  // namespace

void OutFrame::seal(std::uint8_t opcode) {
  serial = nextFrameSerial.fetch_add(1, std::memory_order_relaxed);
  const std::size_t n = textSize();
  auto* h = reinterpret_cast<unsigned char*>(bytes.data()) + kHeadroom;
  if (n < 126) {
    headerSize = 2;
    h[-1] = static_cast<unsigned char>(n);
  } else if (n <= 0xffff) {
    headerSize = 4;
    h[-3] = 126;
    h[-2] = static_cast<unsigned char>(n >> 8);
    h[-1] = static_cast<unsigned char>(n);
  } else {
    headerSize = 10;
    h[-9] = 127;
    for (int i = 0; i < 8; ++i) h[-1 - i] = static_cast<unsigned char>(n >> (8 * i));
  }
  h[-static_cast<int>(headerSize)] = static_cast<unsigned char>(0x80 | opcode);  // FIN
}

void FrameQueue::push(OutFramePtr frame) {
  if (count_ == capacity_) {
    const std::size_t grown = capacity_ == 0 ? 4 : capacity_ * 2;
    auto slots = std::make_unique<OutFramePtr[]>(grown);
    for (std::size_t i = 0; i < count_; ++i)
      slots[i] = std::move(slots_[(head_ + i) & (capacity_ - 1)]);
    slots_ = std::move(slots);
    capacity_ = grown;
    head_ = 0;
  }
  slots_[(head_ + count_) & (capacity_ - 1)] = std::move(frame);
  ++count_;
}

OutFramePtr FrameQueue::pop() {
  OutFramePtr frame = std::move(slots_[head_]);
  head_ = (head_ + 1) & (capacity_ - 1);
  if (--count_ == 0) head_ = 0;
  return frame;
}

void FrameQueue::release() {
  if (count_ == 0) clear();
}

void FrameQueue::clear() {
  slots_.reset();
  capacity_ = 0;
  head_ = 0;
  count_ = 0;
}

}  // namespace mesh::relay
