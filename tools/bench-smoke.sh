#!/bin/sh
# CI smoke run of mesh-bench against a freshly started relay.
#   tools/bench-smoke.sh [path/to/mesh-relay] [path/to/mesh-bench]
# Runs every scenario for about a second with small sizes. Fails only when
# mesh-bench reports protocol errors, lost or duplicated messages (its exit
# status); it never looks at timings.
set -eu
tools_dir=$(cd "$(dirname "$0")" && pwd)

relay=${1:-build/relay/mesh-relay}
bench=${2:-$(dirname "$relay")/../tools/mesh-bench/mesh-bench}
[ -x "$relay" ] || { echo "bench-smoke: no relay binary at $relay" >&2; exit 2; }
[ -x "$bench" ] || { echo "bench-smoke: no mesh-bench binary at $bench" >&2; exit 2; }

work=$(mktemp -d)
relay_pid=""
fwd_pid=""
b_pid=""
nats_pid=""
cleanup() {
  for p in $fwd_pid $b_pid $nats_pid; do kill "$p" 2>/dev/null || true; done
  if [ -n "$relay_pid" ]; then
    kill "$relay_pid" 2>/dev/null || true
    wait "$relay_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# A free loopback port, never one this run handed out before.
free_port() {
  python3 "$tools_dir/free-port.py" "$work/ports"
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

# failover's mechanics without a cluster: "relay B" is a TCP forwarder to
# this relay, so B's meshes and resume tokens are this relay's; killing the
# forwarder drops every connection and the meshes come back directly.
cat >"$work/forward.py" <<'EOF_PY'
import asyncio, sys

async def pipe(r, w):
    try:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
    except OSError:
        pass
    w.close()

async def serve(r, w):
    ur, uw = await asyncio.open_connection("127.0.0.1", int(sys.argv[2]))
    asyncio.ensure_future(pipe(r, uw))
    asyncio.ensure_future(pipe(ur, w))

async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()

asyncio.run(main())
EOF_PY
fport=$(free_port)
python3 "$work/forward.py" "$fport" "$port" &
fwd_pid=$!
i=0
until "$bench" --port "$fport" --scenario conns --conns 1 --duration 0.1 >/dev/null 2>&1; do
  i=$((i + 1))
  [ "$i" -lt 100 ] || { echo "bench-smoke: forwarder did not come up on $fport" >&2; exit 1; }
  sleep 0.1
done
"$bench" --port "$port" --target-port "$fport" --kill-pid "$fwd_pid" --label smoke \
  --scenario failover --conns 50 --max-pending 8 --connect-timeout 20 \
  --json "$work/failover.json" || status=1
kill "$fwd_pid" 2>/dev/null || true  # gone already unless the run failed early
wait "$fwd_pid" 2>/dev/null || true
cat "$work/failover.json"

# Two relays that are not a cluster: the cross-relay probe must end the run
# at once with the offline acks, and failover with the refusals, not hang.
oport=$(free_port)
# shellcheck disable=SC2086
"$relay" --port "$oport" --db "$work/other.db" $relay_flags &
other_pid=$!
i=0
until "$bench" --port "$oport" --scenario conns --conns 1 --duration 0.1 >/dev/null 2>&1; do
  i=$((i + 1))
  [ "$i" -lt 100 ] || { echo "bench-smoke: second relay did not come up on $oport" >&2; exit 1; }
  sleep 0.1
done
expect_refusal() {  # expect_refusal STATUS TEXT WHAT: mesh-bench failed, saying TEXT
  if [ "$1" -eq 0 ] || ! grep -q "$2" "$work/apart.json"; then
    echo "bench-smoke: $3 between two separate relays: want a failed run saying '$2'" >&2
    cat "$work/apart.json" >&2
    status=1
  fi
}
rc=0
"$bench" --port "$port" --target-port "$oport" --label apart --scenario relay --pairs 4 \
  --route-timeout 0.5 --json "$work/apart.json" >/dev/null 2>&1 || rc=$?
expect_refusal "$rc" "4 acked offline" "relay-x"
rc=0
"$bench" --port "$port" --target-port "$oport" --kill-pid "$other_pid" --label apart \
  --scenario failover --conns 8 --connect-timeout 20 --json "$work/apart.json" >/dev/null 2>&1 ||
  rc=$?
expect_refusal "$rc" '"refused":8' "failover"
wait "$other_pid" 2>/dev/null || true

kill "$relay_pid"
wait "$relay_pid" 2>/dev/null || true
relay_pid=""

# A real cluster: one NATS server with JetStream, two relays on it. Every
# route from relay A to relay B must deliver, and B's meshes must all come
# back on A after B is killed.
wait_up() {  # wait_up PORT WHAT
  i=0
  until "$bench" --port "$1" --scenario conns --conns 1 --duration 0.1 >/dev/null 2>&1; do
    i=$((i + 1))
    [ "$i" -lt 150 ] || { echo "bench-smoke: $2 did not come up on $1" >&2; exit 1; }
    sleep 0.1
  done
}
if command -v nats-server >/dev/null 2>&1; then
  nport=$(free_port)
  printf 'listen: 127.0.0.1:%s\njetstream { store_dir: "%s" }\n' "$nport" "$work/js" >"$work/nats.conf"
  nats-server -c "$work/nats.conf" >"$work/nats.log" 2>&1 &
  nats_pid=$!
  aport=$(free_port)
  bport=$(free_port)
  # shellcheck disable=SC2086
  "$relay" --port "$aport" --db "$work/a.db" --nats "nats://127.0.0.1:$nport" --relay-id smoke-a \
    $relay_flags &
  relay_pid=$!
  # shellcheck disable=SC2086
  "$relay" --port "$bport" --db "$work/b.db" --nats "nats://127.0.0.1:$nport" --relay-id smoke-b \
    $relay_flags &
  b_pid=$!
  wait_up "$aport" "clustered relay A"
  wait_up "$bport" "clustered relay B"
  # shellcheck disable=SC2086
  "$bench" --port "$aport" --target-port "$bport" --label cluster --duration 1 --warmup 0.2 \
    --drain 3 --scenario relay,latency --pairs 4 --window 8 --payload 100 --rate 2000 \
    --route-timeout 10 --json "$work/cluster.json" || status=1
  cat "$work/cluster.json"
  "$bench" --port "$aport" --target-port "$bport" --kill-pid "$b_pid" --label cluster \
    --scenario failover --conns 50 --max-pending 8 --connect-timeout 20 \
    --json "$work/cluster-failover.json" || status=1
  cat "$work/cluster-failover.json"
  kill "$b_pid" 2>/dev/null || true
  wait "$b_pid" 2>/dev/null || true
  kill "$relay_pid"
  wait "$relay_pid" 2>/dev/null || true
  relay_pid=""
  kill "$nats_pid"
  wait "$nats_pid" 2>/dev/null || true
else
  echo "bench-smoke: no nats-server here (tools/setup-debian.sh installs it); cluster runs skipped"
fi

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
