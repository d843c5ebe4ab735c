// Every protocol limit lives here once, with the reason for its default.
// The relay copies these into its Config so each one becomes a flag; proto
// code only ever reads a Limits value handed to it.
#pragma once

#include <cstddef>

namespace mesh::proto {

struct Limits {
  // Largest text frame we parse. The original allowed 10 KiB; chat messages
  // with a few attachments' metadata fit easily in 64 KiB.
  std::size_t maxFrameBytes = 65536;
  // Deepest nesting inside a payload (the payload object itself is depth 1).
  // Real chat payloads are 3-4 deep; the cap keeps parsing bounded.
  int maxPayloadDepth = 64;
};

// Correlation ids chosen by nodes: 1..64 bytes.
inline constexpr std::size_t kMaxIdBytes = 64;
// meshId must match [A-Za-z0-9._-]{1,64}.
inline constexpr std::size_t kMaxMeshIdBytes = 64;
inline constexpr std::size_t kMaxNameBytes = 128;
inline constexpr std::size_t kMinSecretBytes = 16;
inline constexpr std::size_t kMaxSecretBytes = 256;
// Resume tokens are 32 random bytes in unpadded base64url: 43 characters.
inline constexpr std::size_t kResumeTokenRawBytes = 32;
inline constexpr std::size_t kResumeTokenTextBytes = 43;

}  // namespace mesh::proto
