// `mesh-relay import-legacy FILE`: the original gateway's registry.json (an
// array of {"meshId", "secretHash", "name"}, secretHash the lowercase hex
// SHA-256 of the secret) into this relay's registry.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "registry.h"

namespace mesh::relay {

struct LegacyImportReport {
  std::size_t imported = 0;
  std::size_t skipped = 0;  // the meshId is registered already (or earlier in the file)
  std::size_t refused = 0;  // bad meshId, bad secretHash, bad name, not an object
  // One line per skipped or refused entry, naming it by position and meshId.
  std::vector<std::string> notes;
};

// Adds every valid entry of the file at `path` that is not registered yet.
// Throws std::runtime_error when the file cannot be read or is not a JSON
// array; then nothing was imported.
LegacyImportReport importLegacyRegistry(Registry& registry, const std::string& path);

}  // namespace mesh::relay
