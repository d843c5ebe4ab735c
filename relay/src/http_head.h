// The head of an HTTP/1.x request (RFC 9112): where it ends, and whether the
// relay may serve it. Pure functions on bytes, no I/O, so that the plain
// listener, the lws callbacks, unit tests and the fuzzer share one reading.
//
// The point is message framing. A request whose body length the relay could
// read one way and another server (a proxy in front, or lws behind) another
// way is refused with 400 and its connection closed (RFC 9112 6.3): an
// invalid or conflicting Content-Length, any Transfer-Encoding (the relay
// implements none), an obs-fold or whitespace between a field name and its
// colon, a bare CR or LF. Then the bytes after the head can never be taken
// for a second request.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace mesh::relay {

// A request line longer than this is answered 414.
inline constexpr std::size_t kMaxRequestLineBytes = 4096;
// A head (request line, fields, blank line) larger than this is answered 431.
inline constexpr std::size_t kMaxRequestHeadBytes = 8192;
// More header fields than this: 431. lws keeps a fixed table of fragments
// (one per known field, query argument and so on) and drops, without an
// answer, a request that overflows it.
inline constexpr std::size_t kMaxHeaderFields = 64;
// More query arguments than this: 414 (the same table).
inline constexpr std::size_t kMaxQueryArguments = 16;

struct RequestHead {
  enum class State {
    Incomplete,  // no blank line yet, and nothing wrong so far
    Complete,    // a well-formed head, `length` bytes
    Refused,     // answer `status` and close the connection
  };
  State state = State::Incomplete;
  int status = 0;           // 400, 414 or 431 when Refused
  std::string_view why;     // for the log, when Refused
  std::size_t length = 0;   // bytes of the head, blank line included
  std::string_view method;  // the rest: when Complete, views into the input
  std::string_view target;  // as sent, query included
  std::uint64_t contentLength = 0;
  bool upgrade = false;  // an Upgrade field and "upgrade" among the Connection options
};

// Reads the head at the start of `bytes` (which may continue with a body or
// more). Refused as soon as the bytes seen so far are wrong or too many.
[[nodiscard]] RequestHead readRequestHead(std::string_view bytes);

// A Content-Length field value as lws hands it over (several fields joined
// with commas): its length, or nothing when it is not one decimal number
// (repeats of the same number are that number, RFC 9110 8.6).
[[nodiscard]] std::optional<std::uint64_t> parseContentLength(std::string_view value);

}  // namespace mesh::relay
