#!/bin/sh
# CI smoke run of mesh-bench against a freshly started relay.
#   tools/bench-smoke.sh [path/to/mesh-relay] [path/to/mesh-bench]
# Runs every scenario for about a second with small sizes. Fails only when
# mesh-bench reports protocol errors, lost or duplicated messages (its exit
# status); it never looks at timings.
set -eu

relay=${1:-build/relay/mesh-relay}
bench=${2:-$(dirname "$relay")/../tools/mesh-bench/mesh-bench}
[ -x "$relay" ] || { echo "bench-smoke: no relay binary at $relay" >&2; exit 2; }
[ -x "$bench" ] || { echo "bench-smoke: no mesh-bench binary at $bench" >&2; exit 2; }

work=$(mktemp -d)
relay_pid=""
cleanup() {
  if [ -n "$relay_pid" ]; then
    kill "$relay_pid" 2>/dev/null || true
    wait "$relay_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Cheap hashes and no rate limit: this checks the generator, not Argon2id.
relay_flags="--host 127.0.0.1 --rate-limit 0 --argon2-mem 8192 --argon2-ops 1 --log-level warn"

port=$(free_port)
# shellcheck disable=SC2086
"$relay" --port "$port" --db "$work/relay.db" $relay_flags &
relay_pid=$!
i=0
until "$bench" --port "$port" --scenario conns --conns 1 --duration 0.1 >/dev/null 2>&1; do
  i=$((i + 1))
  [ "$i" -lt 100 ] || { echo "bench-smoke: relay did not come up on $port" >&2; exit 1; }
  sleep 0.1
done

common="--port $port --label smoke --duration 1 --warmup 0.2 --drain 3"
status=0
# shellcheck disable=SC2086
"$bench" $common --scenario relay,fanout,latency,authload,conns,authflood --pairs 4 --window 8 \
  --payload 100 --receivers 8 --rate 2000 --auth-storm 20 --max-pending 8 --conns 50 \
  --json "$work/traffic.json" || status=1
cat "$work/traffic.json"

# The cross-relay mode's mechanics (registration on each side, the route
# probe, receivers on the other URL), with both URLs naming this relay.
# shellcheck disable=SC2086
"$bench" $common --target-url "ws://localhost:$port/gateway" --scenario relay,latency --pairs 4 \
  --window 8 --payload 100 --rate 2000 --route-timeout 5 --json "$work/cross.json" || status=1
cat "$work/cross.json"

kill "$relay_pid"
wait "$relay_pid" 2>/dev/null || true
relay_pid=""

# storm starts, kills and restarts its own relay on another free port.
sport=$(free_port)
# shellcheck disable=SC2086
"$bench" --port "$sport" --label smoke --scenario storm --conns 20 \
  --server-cmd "exec '$relay' --port $sport --db '$work/storm.db' $relay_flags" \
  --json "$work/storm.json" || status=1
cat "$work/storm.json"

if [ "$status" -ne 0 ]; then
  echo "bench-smoke: FAILED (protocol errors or lost/duplicated messages, see above)" >&2
fi
exit "$status"
