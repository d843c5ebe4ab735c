// libFuzzer target: readRequestHead() and parseContentLength() on any bytes.
// Besides staying clear of undefined behaviour, the reading must hold
// together: a complete head ends in its blank line within the input and the
// size limits, a refusal is one of the three statuses, a head cut short is
// never complete, and a head refused early stays refused as more arrives.
//
// It needs only relay/src/http_head.cpp; by hand, from the project root:
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Irelay/src \
//       fuzz/http_request_fuzz.cpp relay/src/http_head.cpp -o http_request_fuzz
//   mkdir -p found && ./http_request_fuzz -max_len=12000 found fuzz/corpus/http_request
// (new inputs go to the first folder, so the committed seeds stay as they are).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "http_head.h"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

bool within(std::string_view part, std::string_view whole) {
  return part.empty() ||
         (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using mesh::relay::RequestHead;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const RequestHead h = mesh::relay::readRequestHead(bytes);
  switch (h.state) {
    case RequestHead::State::Complete:
      check(h.status == 0);
      check(h.length >= 4 && h.length <= size && h.length <= mesh::relay::kMaxRequestHeadBytes);
      check(bytes.substr(h.length - 4, 4) == "\r\n\r\n");
      check(bytes.substr(0, h.length - 2).find("\r\n\r\n") == std::string_view::npos);
      check(!h.method.empty() && !h.target.empty());
      check(within(h.method, bytes) && within(h.target, bytes));
      // Cut anywhere before its end, it is not complete yet.
      check(mesh::relay::readRequestHead(bytes.substr(0, h.length - 1)).state !=
            RequestHead::State::Complete);
      break;
    case RequestHead::State::Refused:
      check(h.status == 400 || h.status == 414 || h.status == 431);
      check(!h.why.empty());
      break;
    case RequestHead::State::Incomplete:
      check(h.status == 0 && size < mesh::relay::kMaxRequestHeadBytes);
      break;
  }
  // What is refused from its first half on is refused whole.
  const RequestHead half = mesh::relay::readRequestHead(bytes.substr(0, size / 2));
  if (half.state == RequestHead::State::Refused) check(h.state == RequestHead::State::Refused);

  // A Content-Length value: a number only if made of digits, commas and
  // blanks.
  if (const auto length = mesh::relay::parseContentLength(bytes)) {
    for (char c : bytes) check((c >= '0' && c <= '9') || c == ',' || c == ' ' || c == '\t');
  }
  return 0;
}
