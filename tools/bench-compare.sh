#!/bin/bash
# Runs mesh-bench against mesh-relay and the two peer relays, alternating
# servers scenario by scenario so that they share the machine's noise, and
# prints one table per scenario. Usage:
#   tools/bench-compare.sh PEERS_DIR [OUT_DIR] [SCENARIOS...]
# PEERS_DIR holds copies of ../shared/peers/{bun,node-ws} with `npm ci` done.
# Binaries come from build-bench/ (Release):
#   cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DMESH_BUILD_TESTS=OFF
#   cmake --build build-bench --target mesh-bench mesh-relay -j2
# SERVERS="bun:4101 mesh-relay:4300" measures only those; ROUNDS=3 repeats.
# Scenarios: relay fanout latency conns (default: all four). Storm restarts
# servers itself; see docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."

peers=${1:?usage: tools/bench-compare.sh PEERS_DIR [OUT_DIR] [SCENARIOS...]}
out=${2:-$(mktemp -d)}
shift $(($# >= 2 ? 2 : $#))
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(relay fanout latency conns)
mkdir -p "$out"
bench=build-bench/tools/mesh-bench/mesh-bench
relay=build-bench/relay/mesh-relay
ROUNDS=${ROUNDS:-1}
# Which servers to measure, as name:port (all three by default).
SERVERS=${SERVERS:-"node-ws:4200 bun:4101 mesh-relay:4300"}

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

start_servers() {
  (cd "$peers/node-ws" && RATE_LIMIT_PER_MINUTE=0 MAX_PAYLOAD_BYTES=0 LOG_LEVEL=warn PORT=4200 \
    REGISTRY_PATH="$out/node-ws.json" exec node relay.mjs) >"$out/node-ws.log" 2>&1 &
  pids+=($!)
  (cd "$peers/bun" && PORT=4101 REGISTRY_PATH="$out/bun.json" exec node_modules/.bin/bun relay.ts) \
    >"$out/bun.log" 2>&1 &
  pids+=($!)
  rm -f "$out"/mesh.db*
  "$relay" --host 127.0.0.1 --port 4300 --db "$out/mesh.db" --rate-limit 0 --argon2-mem 8192 \
    --argon2-ops 1 --register-burst 100000 --max-connections 30000 --log-level warn \
    >"$out/mesh-relay.log" 2>&1 &
  pids+=($!)
  for port in 4200 4101 4300; do
    for _ in $(seq 100); do
      "$bench" --port $port --scenario conns --conns 1 --duration 0.1 >/dev/null 2>&1 && break
      sleep 0.2
    done
  done
}

args_for() {
  case $1 in
    relay) echo "-s relay --pairs 50 --window 32 --payload 200 --duration 5 --warmup 1" ;;
    fanout) echo "-s fanout --receivers 500 --window 8 --payload 200 --duration 5 --warmup 1" ;;
    latency) echo "-s latency --pairs 50 --rate 50000 --payload 200 --duration 5 --warmup 1" ;;
    conns) echo "-s conns --conns ${CONNS:-5000} --duration 3" ;;
  esac
}

start_servers
for round in $(seq "$ROUNDS"); do
  for sc in "${scenarios[@]}"; do
    for server in $SERVERS; do
      name=${server%%:*}
      port=${server##*:}
      # shellcheck disable=SC2046
      "$bench" --port "$port" --label "$name" $(args_for "$sc") \
        --json "$out/$sc-$name-$round.json" | tail -n 4 || echo "$name $sc: mesh-bench exit $?"
    done
  done
done
echo "results in $out"
