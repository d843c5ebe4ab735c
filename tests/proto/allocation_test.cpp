// The decoder is the relay's hot path: a typical relay frame must decode
// without touching the heap once the thread's parser is warm.
#include <atomic>
#include <cstdlib>
#include <new>
#include <string>
#include <variant>

#include <gtest/gtest.h>

#include "mesh/proto/codec.h"

namespace {
std::atomic<bool> gCounting{false};
std::atomic<long> gAllocations{0};
}  // namespace

// Counting replacements for the global allocation functions; the array and
// nothrow forms forward to these by default. Kept out of line so the compiler
// does not pair an inlined free() with the built-in new and warn.
[[gnu::noinline]] void* operator new(std::size_t size) {
  if (gCounting.load(std::memory_order_relaxed)) {
    gAllocations.fetch_add(1, std::memory_order_relaxed);
  }
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void operator delete(void* p) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}

namespace mesh::proto {
namespace {

long allocationsDuring(std::string_view text, bool authed) {
  const Limits limits;
  gAllocations = 0;
  gCounting = true;
  const DecodeResult r = decodeNodeFrame(text, authed, limits);
  gCounting = false;
  EXPECT_TRUE(std::holds_alternative<DecodedFrame>(r));
  return gAllocations.load();
}

TEST(FrameCodecAllocation, RelayFrameDecodesWithoutHeapAllocation) {
  const std::string text =
      R"({"type":"gateway_relay","id":"msg-000123","targetMeshId":"mesh-b","payload":)"
      R"({"type":"new_message","message":{"id":"m1","roomId":"general","senderId":"u1",)"
      R"("senderName":"Ann","content":")" +
      std::string(2000, 'x') + R"(","isDm":false,"createdAt":"2026-01-01T00:00:00Z"}}})";
  allocationsDuring(text, true);  // warms the thread's parser stack
  EXPECT_EQ(allocationsDuring(text, true), 0);
  const std::string broadcast = R"({"type":"gateway_broadcast","payload":{"a":[1,2,{"b":"c"}]}})";
  EXPECT_EQ(allocationsDuring(broadcast, true), 0);
  // The counter is live: a target id past the small-string buffer must be copied.
  const std::string longTarget =
      R"({"type":"gateway_relay","targetMeshId":")" + std::string(40, 't') + R"(","payload":{}})";
  EXPECT_GT(allocationsDuring(longTarget, true), 0);
}

}  // namespace
}  // namespace mesh::proto
