#!/bin/sh
# Builds the relay and runs it on port 4000 with its registry in ./data/.
# Extra arguments go to mesh-relay (see build/relay/mesh-relay --help).
set -eu
cd "$(dirname "$0")/.."
tools/setup-debian.sh --build
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j "$(nproc 2>/dev/null || echo 2)" --target mesh-relay
mkdir -p data
exec build/relay/mesh-relay --port "${PORT:-4000}" --db "${MESH_DB_PATH:-./data/mesh.db}" "$@"
