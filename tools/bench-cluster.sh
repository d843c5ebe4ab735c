#!/bin/bash
# Cluster benchmark in one run: a NATS server with JetStream (loopback, temp
# store), two relays on it (A and B), a single relay without NATS and the Bun
# peer. Alternates, scenario by scenario:
#   bun      every sender and receiver on the Bun peer
#   single   every sender and receiver on the relay without NATS
#   local    every sender and receiver on clustered relay A
#   cross    senders on relay A, receivers on relay B (mesh-bench --target-port)
# for `relay` (closed loop) and `latency` (open loop, RATE msgs/s), then
# `failover` (FAILOVER_CONNS meshes on B, B killed with SIGKILL, all back on A
# with their resume tokens), and prints a table of ratios. Usage:
#   tools/bench-cluster.sh [OUT_DIR]
# Binaries come from build-bench/ (Release):
#   cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DMESH_BUILD_TESTS=OFF
#   cmake --build build-bench --target mesh-bench mesh-relay -j2
# The Bun peer comes from PEERS (default ../shared/peers, not part of this
# repository): PEERS/bun with `npm ci` done is used as it is; a folder without
# node_modules is copied to OUT_DIR and `npm ci` runs there. Without it the
# bun column is skipped, with a message. Settings (environment):
#   ROUNDS=1 PAIRS=50 WINDOW=32 RATE=20000 DURATION=5 FAILOVER_CONNS=1000
#   SERVERS="bun single local cross"   which columns to measure
#   FAILOVER=0                         skip the failover scenario
#   NATS_GOMAXPROCS=1                  the NATS server's GOMAXPROCS, as
#                                      deploy/systemd/nats-server.service
#                                      sets it; empty: Go's default (one
#                                      per core)
set -euo pipefail
cd "$(dirname "$0")/.."
tools_dir=$PWD/tools

out=${1:-$(mktemp -d)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out/ports"
bench=build-bench/tools/mesh-bench/mesh-bench
relay=build-bench/relay/mesh-relay
ROUNDS=${ROUNDS:-1}
PAIRS=${PAIRS:-50}
WINDOW=${WINDOW:-32}
RATE=${RATE:-20000}
DURATION=${DURATION:-5}
FAILOVER_CONNS=${FAILOVER_CONNS:-1000}
FAILOVER=${FAILOVER:-1}
SERVERS=${SERVERS:-"bun single local cross"}
PEERS=${PEERS:-../shared/peers}

for bin in "$bench" "$relay"; do
  [ -x "$bin" ] || {
    echo "bench-cluster: no $bin; build it first (see the top of this script)" >&2
    exit 2
  }
done
command -v nats-server >/dev/null 2>&1 || {
  echo "bench-cluster: nats-server is not installed (tools/setup-debian.sh installs it)" >&2
  exit 2
}

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

# A free loopback port, never one this run handed out before.
free_port() {
  python3 "$tools_dir/free-port.py" "$out/ports"
}
wait_port() {  # wait_port PORT NAME
  for _ in $(seq 150); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "bench-cluster: $2 did not listen on $1 (log in $out)" >&2
  exit 1
}

# One NATS server with JetStream; its store lives in OUT_DIR.
nats_port=$(free_port)
cat >"$out/nats.conf" <<EOF
server_name: bench
listen: 127.0.0.1:$nats_port
jetstream {
  store_dir: "$out/jetstream"
  max_memory_store: 256MB
  max_file_store: 1GB
}
EOF
rm -rf "$out/jetstream"
NATS_GOMAXPROCS=${NATS_GOMAXPROCS-1}
echo "bench-cluster: NATS GOMAXPROCS=${NATS_GOMAXPROCS:-unset}"
${NATS_GOMAXPROCS:+env GOMAXPROCS=$NATS_GOMAXPROCS} nats-server -c "$out/nats.conf" >"$out/nats.log" 2>&1 &
pids+=($!)
nats_pid=$!
wait_port "$nats_port" nats-server

flags=(--host 127.0.0.1 --rate-limit 0 --argon2-mem 8192 --argon2-ops 1
  --register-burst 100000 --max-connections 30000 --log-level warn)
start_relay() {  # start_relay NAME PORT [more flags]; sets last_pid
  local name=$1 port=$2
  shift 2
  rm -f "$out/$name.db"*
  "$relay" "${flags[@]}" --port "$port" --db "$out/$name.db" "$@" >"$out/$name.log" 2>&1 &
  last_pid=$!
  pids+=("$last_pid")
  wait_port "$port" "relay $name"
}
port_single=$(free_port)
port_a=$(free_port)
port_b=$(free_port)
start_relay single "$port_single"
start_relay a "$port_a" --nats "nats://127.0.0.1:$nats_port" --relay-id bench-a
start_relay b "$port_b" --nats "nats://127.0.0.1:$nats_port" --relay-id bench-b
pid_b=$last_pid
# The failover scenario kills it; the shell need not report that.
disown "$pid_b"

# The Bun peer, if there is one.
port_bun=""
bun_dir=""
if [[ " $SERVERS " == *" bun "* ]]; then
  if [ -x "$PEERS/bun/node_modules/.bin/bun" ]; then
    bun_dir=$PEERS/bun
  elif [ -f "$PEERS/bun/package.json" ]; then
    echo "bench-cluster: installing the Bun peer into $out/bun (npm ci)"
    rm -rf "$out/bun"
    cp -r "$PEERS/bun" "$out/bun"
    if (cd "$out/bun" && npm ci --silent >"$out/bun-npm.log" 2>&1); then
      bun_dir=$out/bun
    else
      echo "bench-cluster: npm ci failed for the Bun peer (see $out/bun-npm.log); skipping bun"
    fi
  else
    echo "bench-cluster: no Bun peer at $PEERS/bun (set PEERS=...); skipping the bun column"
  fi
  if [ -n "$bun_dir" ]; then
    port_bun=$(free_port)
    (cd "$bun_dir" && PORT=$port_bun REGISTRY_PATH="$out/bun.json" exec node_modules/.bin/bun \
      relay.ts) >"$out/bun.log" 2>&1 &
    pids+=($!)
    wait_port "$port_bun" "the Bun peer"
  fi
fi

args_for() {
  case $1 in
    relay) echo "-s relay --pairs $PAIRS --window $WINDOW --payload 200 --duration $DURATION --warmup 1" ;;
    latency) echo "-s latency --pairs $PAIRS --rate $RATE --payload 200 --duration $DURATION --warmup 1" ;;
  esac
}
target_for() {  # the mesh-bench URL flags of a column, empty if it is skipped
  case $1 in
    bun) [ -n "$port_bun" ] && echo "--port $port_bun" ;;
    single) echo "--port $port_single" ;;
    local) echo "--port $port_a" ;;
    cross) echo "--port $port_a --target-port $port_b --route-timeout 10" ;;
  esac
}

# NATS's CPU seconds so far (utime + stime), for the cross column.
nats_cpu() {
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f\n", ($14 + $15) / hz }' "/proc/$nats_pid/stat"
}

echo "bench-cluster: load average $(cut -d' ' -f1-3 /proc/loadavg) before the runs"
echo "bench-cluster: nats $nats_port, single $port_single, A $port_a, B $port_b, bun ${port_bun:-none}; results in $out"
for round in $(seq "$ROUNDS"); do
  for sc in relay latency; do
    for server in $SERVERS; do
      where=$(target_for "$server") || true
      [ -n "$where" ] || continue
      before=$(nats_cpu)
      # shellcheck disable=SC2046,SC2086
      "$bench" $where --label "$server" $(args_for "$sc") \
        --json "$out/$sc-$server-$round.json" | sed -n 2p || echo "$server $sc: mesh-bench exit $?"
      # NATS's CPU over the whole run (setup and drain included).
      echo "$before $(nats_cpu)" >"$out/$sc-$server-$round.nats"
    done
  done
done

if [ "$FAILOVER" != 0 ]; then
  # Last: it kills relay B. Meshes come back on A with B's resume tokens.
  "$bench" --port "$port_a" --target-port "$port_b" --kill-pid "$pid_b" --label cluster \
    -s failover --conns "$FAILOVER_CONNS" --connect-timeout 30 \
    --json "$out/failover.json" | sed -n 2p || echo "failover: mesh-bench exit $?"
fi

echo "bench-cluster: load average $(cut -d' ' -f1-3 /proc/loadavg) after the runs"
python3 - "$out" "$ROUNDS" <<'EOF'
import json, os, statistics, sys

out, rounds = sys.argv[1], int(sys.argv[2])
cols = ["bun", "single", "local", "cross"]

def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)["results"][0]
    except (OSError, ValueError, IndexError, KeyError):
        return None

def med(sc, col, pick):
    vals = []
    for r in range(1, rounds + 1):
        res = load(f"{sc}-{col}-{r}.json")
        if res is None:
            continue
        if not res.get("ok"):
            return "FAIL"
        v = pick(res)
        if v is not None:
            vals.append(v)
    return statistics.median(vals) if vals else None

def fmt(v, unit=""):
    if v is None:
        return "-"
    if v == "FAIL":
        return "FAIL"
    if unit == "ms":
        return f"{v:.3f}"
    if unit == "us":
        return f"{v:.2f}"
    return f"{v:,.0f}".replace(",", " ")

def ratio(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
        return f"{a / b:.2f}"
    return "-"

rows = []
def row(label, sc, pick, unit=""):
    vals = {c: med(sc, c, pick) for c in cols}
    rows.append((label, vals, unit))
    return vals

def nats_cpu(sc):
    # NATS CPU seconds over each cross run, divided by the messages of its
    # measured window: an upper bound (setup and drain are included).
    vals = []
    for r in range(1, rounds + 1):
        res = load(f"{sc}-cross-{r}.json")
        try:
            with open(os.path.join(out, f"{sc}-cross-{r}.nats")) as f:
                a, b = map(float, f.read().split())
        except (OSError, ValueError):
            continue
        if res and res.get("ok") and res["msgs_per_s"] > 0:
            vals.append((b - a) * 1e6 / (res["msgs_per_s"] * res["seconds"]))
    return statistics.median(vals) if vals else None

lat = lambda k: (lambda r: r.get("latency_us", {}).get(k, 0) / 1000.0)
cpu = lambda r: r.get("server_cpu_us_per_msg")
thr = row(f"relay msgs/s", "relay", lambda r: r["msgs_per_s"])
row("relay p99 (ms)", "relay", lat("p99"), "ms")
row("relay server cpu/msg (us)", "relay", cpu, "us")
rows.append(("relay NATS cpu/msg (us, at most)", {"bun": None, "single": None, "local": None,
             "cross": nats_cpu("relay")}, "us"))
row("latency p50 (ms)", "latency", lat("p50"), "ms")
p99 = row("latency p99 (ms)", "latency", lat("p99"), "ms")
row("latency p99.9 (ms)", "latency", lat("p99_9"), "ms")
row("latency server cpu/msg (us)", "latency", cpu, "us")
rows.append(("latency NATS cpu/msg (us, at most)", {"bun": None, "single": None, "local": None,
             "cross": nats_cpu("latency")}, "us"))

print(f"\nmedians of {rounds} round(s); cross = senders on relay A, receivers on relay B;"
      " server cpu of cross is both relays'")
print("| figure | " + " | ".join(cols) + " | cross / bun | cross / single |")
print("|---|" + "---|" * (len(cols) + 2))
for label, vals, unit in rows:
    print(f"| {label} | " + " | ".join(fmt(vals[c], unit) for c in cols) +
          f" | {ratio(vals['cross'], vals['bun'])} | {ratio(vals['cross'], vals['single'])} |")

def num(v):
    return isinstance(v, (int, float))

print("\ntargets:")
if num(thr["cross"]) and num(thr["bun"]):
    print(f"  cross-relay throughput >= bun: {thr['cross'] / thr['bun']:.2f}x"
          f" -> {'met' if thr['cross'] >= thr['bun'] else 'NOT met'}")
else:
    print("  cross-relay throughput >= bun: not measured (cross: %s, bun: %s)" %
          (fmt(thr["cross"]), fmt(thr["bun"])))
if num(p99["cross"]) and num(p99["single"]):
    d = p99["cross"] - p99["single"]
    print(f"  latency p99 cross - single <= 1 ms: {d:+.3f} ms -> {'met' if d <= 1 else 'NOT met'}")
else:
    print("  latency p99 cross - single <= 1 ms: not measured (cross: %s, single: %s)" %
          (fmt(p99["cross"], "ms"), fmt(p99["single"], "ms")))
for sc in ("relay", "latency"):
    for c in cols:
        for r in range(1, rounds + 1):
            res = load(f"{sc}-{c}-{r}.json")
            if res is not None and not res.get("ok"):
                print(f"  {sc} {c} round {r} FAILED: {res.get('first_error', '')}")
fo = load("failover.json")
if fo is not None:
    ex = fo.get("extra", {})
    l = fo.get("latency_us", {})
    n = fo["params"].get("conns")
    back = int(ex.get("online_again", 0))
    line = (f"  failover, {n} meshes: {back} online again on A; kill -> online p50 / p99 / max "
            f"{l.get('p50', 0) / 1e6:.3f} / {l.get('p99', 0) / 1e6:.3f} / {l.get('max', 0) / 1e6:.3f} s")
    if "all_online_s" in ex:
        line += f", all in {ex['all_online_s']:.3f} s -> {'met' if ex['all_online_s'] <= 5 else 'NOT met'} (5 s)"
    else:
        line += f" -> NOT met ({fo.get('first_error', 'not all came back')})"
    print(line)
EOF
