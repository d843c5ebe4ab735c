// What the registry's unit tests share: two secrets and the cheapest
// Argon2id cost (the tests check behaviour, not strength).
#pragma once

#include <sodium.h>

#include <string>

#include "registry.h"

namespace mesh::relay::test_fixtures {

inline const std::string kSecret = "correct horse battery staple";
inline const std::string kOtherSecret = "another secret of decent length";

inline Argon2Params fastParams() {
  Argon2Params p;
  p.opsLimit = crypto_pwhash_OPSLIMIT_MIN;
  p.memLimit = crypto_pwhash_MEMLIMIT_MIN;
  return p;
}

}  // namespace mesh::relay::test_fixtures
