// libmeshclient's JSON helpers on arbitrary bytes: the payload a user hands
// to relay() and the participant lists a relay forwards.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "json.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  namespace detail = mesh::client::detail;
  if (const auto normalized = detail::normalizeObject(text)) {
    // Normalizing is idempotent: numbers and all stay as they are.
    if (detail::normalizeObject(*normalized) != normalized) std::abort();
  }
  (void)detail::parseParticipants(text);
  return 0;
}
