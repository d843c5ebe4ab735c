#!/bin/sh
# Checks the deployment files against the build and each other, since no
# Docker engine or Fly account is around in CI:
#   - the Dockerfile builds with the same setup script and cmake commands as
#     tools/run-relay.sh (which tools/test.sh proves) and keeps its promises
#     (non-root, /data volume, port 4000, health check);
#   - fly.toml keeps the settings the README relies on;
#   - the systemd unit passes systemd-analyze verify (when available);
#   - the nginx example loads in Debian's nginx (nginx -t) and the Caddyfile
#     adapts in Debian's Caddy, each moved to loopback with a throwaway
#     certificate by tools/proxy-test-config.sh;
#   - the Prometheus alert rules pass promtool check rules and their unit
#     tests (promtool test rules), and the Grafana dashboard is JSON whose
#     every metric name is one the relay exports (names from relay/src);
#   - cluster mode (docs/cluster.md, "Deploying"): every nats-server config
#     passes `nats-server -c FILE -t` (paths moved to a temporary folder,
#     throwaway TLS certificates, the variables from the example env files),
#     three servers with the VPS config on loopback form a JetStream cluster,
#     the Fly files parse as TOML and agree with each other, and the NATS
#     unit and the relay's cluster drop-in pass systemd-analyze verify.
# Usage: tools/check-deploy.sh [path/to/mesh-relay]
set -eu
cd "$(dirname "$0")/.."
fail=0
need() {  # need FILE TEXT WHY
  if ! grep -qF -- "$2" "$1"; then
    echo "check-deploy: $1 lacks '$2' ($3)" >&2
    fail=1
  fi
}

configure='cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo'
build='--target mesh-relay'
need tools/run-relay.sh "$configure" "README build command"
need Dockerfile "$configure" "same configure as tools/run-relay.sh"
need tools/run-relay.sh "$build" "README build command"
need Dockerfile "$build" "same build target as tools/run-relay.sh"
need Dockerfile "RUN tools/setup-debian.sh --build &&" "build stage uses the setup script"
need Dockerfile "setup-debian.sh --runtime" "runtime stage has runtime libraries only"
need Dockerfile "FROM debian:12-slim AS build" "multi-stage on Debian 12 slim"
need Dockerfile "USER mesh" "runs as a non-root user"
need Dockerfile 'VOLUME ["/data"]' "database volume"
need Dockerfile "MESH_DB_PATH=/data/mesh.db" "database on the volume"
need Dockerfile "EXPOSE 4000" "relay port"
need Dockerfile "/healthz" "health check"

need fly.toml "internal_port = 4000" "relay port"
need fly.toml 'destination = "/data"' "volume for the registry"
need fly.toml 'MESH_DB_PATH = "/data/mesh.db"' "database on the volume"
need fly.toml 'path = "/health"' "health check"
need fly.toml 'kill_signal = "SIGTERM"' "graceful drain"
need fly.toml 'auto_stop_machines = "off"' "nodes hold long-lived connections"
need fly.toml 'type = "connections"' "connection-based concurrency"
# The kill timeout must cover the drain.
drain=$(sed -n 's/^ *MESH_DRAIN_TIMEOUT = "\([0-9]*\)"/\1/p' fly.toml)
kill=$(sed -n 's/^kill_timeout = "\([0-9]*\)s"/\1/p' fly.toml)
if [ -z "$drain" ] || [ -z "$kill" ] || [ "$kill" -lt $((drain + 5)) ]; then
  echo "check-deploy: fly.toml kill_timeout ($kill) must exceed MESH_DRAIN_TIMEOUT ($drain) by 5 s" >&2
  fail=1
fi

unit=deploy/systemd/mesh-relay.service
need "$unit" "NoNewPrivileges=yes" "sandboxing"
need "$unit" "ProtectSystem=strict" "read-only system"
need "$unit" "StateDirectory=mesh-relay" "state directory for the database"
need "$unit" "MESH_DB_PATH=/var/lib/mesh-relay/mesh.db" "database in the state directory"
need deploy/nginx/mesh-relay.conf 'proxy_set_header Upgrade $http_upgrade' "WebSocket upgrade"
need deploy/nginx/mesh-relay.conf 'proxy_set_header Connection $connection_upgrade' "WebSocket upgrade"

proxies=$(mktemp -d)
trap 'rm -rf "$proxies"' EXIT
if ! tools/proxy-test-config.sh nginx "$proxies/nginx" 4000 8443 8080 ||
  ! out=$(nginx -t -p "$proxies/nginx" -c "$proxies/nginx/nginx.conf" 2>&1); then
  echo "check-deploy: deploy/nginx/mesh-relay.conf does not load: ${out:-}" >&2
  fail=1
fi
if ! tools/proxy-test-config.sh caddy "$proxies/caddy" 4000 8443 8080 ||
  ! out=$(HOME="$proxies/caddy" XDG_DATA_HOME="$proxies/caddy" XDG_CONFIG_HOME="$proxies/caddy" \
    caddy adapt --config "$proxies/caddy/Caddyfile" --adapter caddyfile 2>&1 >/dev/null); then
  echo "check-deploy: deploy/caddy/Caddyfile does not adapt: ${out:-}" >&2
  fail=1
fi

# Monitoring: promtool is Debian's prometheus package (tools/test.sh installs it).
if ! out=$(promtool check rules deploy/prometheus/alerts.yml 2>&1); then
  echo "check-deploy: promtool check rules: $out" >&2
  fail=1
fi
if ! out=$(cd deploy/prometheus && promtool test rules alerts_test.yml 2>&1); then
  echo "check-deploy: promtool test rules: $out" >&2
  fail=1
fi
dashboard=deploy/grafana/mesh-relay.json
if ! jq -e '.panels | length > 0' "$dashboard" >/dev/null 2>&1; then
  echo "check-deploy: $dashboard is not JSON with panels" >&2
  fail=1
fi
# Every name the relay renders appears in its source as a string literal;
# histograms add _bucket, _sum and _count.
grep -ho '"mesh_relay_[a-z0-9_]*"' relay/src/*.cpp | tr -d '"' | sort -u >"$proxies/exported"
{
  jq -r '.. | .expr? // empty' "$dashboard"
  grep -E '^ *expr:' deploy/prometheus/alerts.yml
} | grep -o 'mesh_relay_[a-z0-9_]*' | sed -E 's/_(bucket|sum|count)$//' | sort -u >"$proxies/used"
unknown=$(comm -23 "$proxies/used" "$proxies/exported")
if [ -n "$unknown" ]; then
  echo "check-deploy: dashboard or alerts name metrics the relay does not export:" $unknown >&2
  fail=1
fi

if [ -n "${1:-}" ] && command -v systemd-analyze >/dev/null 2>&1; then
  # Verify a copy that points at the binary just built.
  tmp=$proxies
  bin=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
  sed "s|^ExecStart=.*|ExecStart=$bin|" "$unit" >"$tmp/mesh-relay.service"
  if ! out=$(systemd-analyze verify "$tmp/mesh-relay.service" 2>&1); then
    echo "check-deploy: systemd-analyze verify: $out" >&2
    fail=1
  elif [ -n "$out" ]; then
    echo "check-deploy: systemd-analyze verify warns: $out" >&2
    fail=1
  fi
fi

# ---- cluster mode
fly_relay=deploy/fly/relay.fly.toml
fly_nats=deploy/fly/nats.fly.toml
for f in fly.toml "$fly_relay" "$fly_nats"; do
  if ! out=$(python3 -c 'import sys, tomllib; tomllib.load(open(sys.argv[1], "rb"))' "$f" 2>&1); then
    echo "check-deploy: $f is not TOML: $out" >&2
    fail=1
  fi
done
# The relay cluster app keeps the single app's settings, plus its own.
for setting in "internal_port = 4000" 'destination = "/data"' 'MESH_DB_PATH = "/data/mesh.db"' \
  'path = "/health"' 'kill_signal = "SIGTERM"' 'auto_stop_machines = "off"' \
  'type = "connections"' 'MESH_TRUSTED_PROXIES = "172.16.0.0/12"'; do
  need "$fly_relay" "$setting" "same as fly.toml"
done
# shellcheck disable=SC2016
need "$fly_relay" 'MESH_RELAY_ID=\"${MESH_RELAY_ID:-$FLY_REGION-$FLY_MACHINE_ID}\"' "relay id from the machine"
need "$fly_relay" "exec /usr/local/bin/mesh-relay" "the Dockerfile's binary"
need Dockerfile "/usr/local/bin/mesh-relay" "binary path the cluster app's entrypoint runs"
if grep -Eq '^ *MESH_NATS_URLS *=' "$fly_relay"; then
  echo "check-deploy: $fly_relay sets MESH_NATS_URLS in [env]; it carries a password: a secret" >&2
  fail=1
fi
drain=$(sed -n 's/^ *MESH_DRAIN_TIMEOUT = "\([0-9]*\)"/\1/p' "$fly_relay")
kill=$(sed -n 's/^kill_timeout = "\([0-9]*\)s"/\1/p' "$fly_relay")
if [ -z "$drain" ] || [ -z "$kill" ] || [ "$kill" -lt $((drain + 5)) ]; then
  echo "check-deploy: $fly_relay kill_timeout ($kill) must exceed MESH_DRAIN_TIMEOUT ($drain) by 5 s" >&2
  fail=1
fi
# The NATS app: its image runs deploy/fly/nats.conf, whose store is on the
# volume, whose monitor port is the health check, and whose routes name
# the app's own regions.
nats_app=$(sed -n 's/^app = "\(.*\)"/\1/p' "$fly_nats")
need deploy/fly/nats.Dockerfile "COPY nats.conf /etc/nats-server.conf" "the config in the image"
need deploy/fly/nats.Dockerfile "/usr/sbin/nats-server -c /etc/nats-server.conf" "the image runs that config"
need "$fly_nats" 'destination = "/data"' "JetStream volume"
need deploy/fly/nats.conf 'store_dir: "/data"' "JetStream store on the volume"
need "$fly_nats" "port = 8222" "health check on the monitor port"
need deploy/fly/nats.conf 'http: "[::]:8222"' "monitor port for the health check"
routes=$(grep -c 'nats-route://' deploy/fly/nats.conf || true)
own=$(grep -c "nats-route://[a-z]*\.$nats_app\.internal:6222" deploy/fly/nats.conf || true)
if [ "$routes" -lt 3 ] || [ "$routes" -ne "$own" ]; then
  echo "check-deploy: deploy/fly/nats.conf needs 3 or more routes, each <region>.$nats_app.internal" >&2
  fail=1
fi
# The relay password of the VPS example is the one in the relays' URLs.
relay_pw=$(sed -n 's/^NATS_RELAY_PASSWORD=//p' deploy/systemd/nats-server.env.example)
if [ -z "$relay_pw" ] ||
  ! grep -q "^MESH_NATS_URLS=tls://relay:$relay_pw@" deploy/systemd/mesh-relay-cluster.env.example; then
  echo "check-deploy: mesh-relay-cluster.env.example does not log in with NATS_RELAY_PASSWORD" >&2
  fail=1
fi

# nats-server -t on each config, moved to a temporary folder.
nats_tmp=$proxies/nats
mkdir -p "$nats_tmp/tls" "$nats_tmp/state" "$nats_tmp/data"
if ! out=$(cd "$nats_tmp/tls" && {
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=check-ca -keyout ca-key.pem \
    -out ca.pem &&
    openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server-key.pem \
      -out server.csr &&
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' >ext &&
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 \
      -extfile ext -out server.pem
} 2>&1); then
  echo "check-deploy: cannot make a throwaway certificate: $out" >&2
  fail=1
fi
check_nats() {  # check_nats CONFIG VAR=VALUE...
  conf=$1
  shift
  sed -e "s|/etc/nats-server/tls/|$nats_tmp/tls/|g" -e "s|/var/lib/nats-server|$nats_tmp/state|g" \
    -e "s|\"/data\"|\"$nats_tmp/data\"|g" "$conf" >"$nats_tmp/check.conf"
  if ! out=$(env "$@" nats-server -c "$nats_tmp/check.conf" -t 2>&1); then
    echo "check-deploy: nats-server -t $conf: $out" >&2
    fail=1
  fi
}
# The VPS configuration, running: three servers on loopback (their hosts
# and ports moved, the throwaway CA for the TLS routes) must form a cluster
# whose JetStream has a meta leader (/healthz 200 on all three) within 30 s.
live_nats_cluster() {
  # shellcheck disable=SC2046
  set -- $(python3 -c 'import socket
socks = [socket.socket() for _ in range(9)]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))')
  live_pids=""
  # client, route and monitor are set by the eval (ports $i, $i+3, $i+6).
  # shellcheck disable=SC2154
  for i in 1 2 3; do
    eval "client=\${$i} route=\${$((i + 3))} monitor=\${$((i + 6))}"
    sed -e "s|/etc/nats-server/tls/|$nats_tmp/tls/|g" -e "s|/var/lib/nats-server|$nats_tmp/live$i|g" \
      -e "s|0.0.0.0:4222|127.0.0.1:$client|" -e "s|127.0.0.1:8222|127.0.0.1:$monitor|" \
      -e "s|nats1.example.org:6222|127.0.0.1:$4|" -e "s|nats2.example.org:6222|127.0.0.1:$5|" \
      -e "s|nats3.example.org:6222|127.0.0.1:$6|" deploy/systemd/nats-server.conf >"$nats_tmp/live$i.conf"
    NATS_SERVER_NAME=live$i NATS_CLUSTER_LISTEN=127.0.0.1:$route NATS_RELAY_PASSWORD=check \
      nats-server -c "$nats_tmp/live$i.conf" >"$nats_tmp/live$i.log" 2>&1 &
    live_pids="$live_pids $!"
  done
  healthy=""
  tries=0
  while [ "$tries" -lt 300 ]; do
    if curl -fs "http://127.0.0.1:$7/healthz" >/dev/null && curl -fs "http://127.0.0.1:$8/healthz" >/dev/null &&
      curl -fs "http://127.0.0.1:$9/healthz" >/dev/null; then
      healthy=yes
      break
    fi
    tries=$((tries + 1))
    sleep 0.1
  done
  # shellcheck disable=SC2086
  kill $live_pids 2>/dev/null || true
  wait
  if [ -z "$healthy" ]; then
    echo "check-deploy: deploy/systemd/nats-server.conf: three servers formed no JetStream cluster in 30 s:" >&2
    grep -h "\[ERR\]" "$nats_tmp"/live*.log | tail -n 5 >&2
    fail=1
  fi
}
if ! command -v nats-server >/dev/null 2>&1; then
  echo "check-deploy: nats-server is not installed (tools/setup-debian.sh installs it)" >&2
  fail=1
else
  # shellcheck disable=SC2046
  check_nats deploy/systemd/nats-server.conf $(grep -E '^[A-Z_]+=' deploy/systemd/nats-server.env.example)
  check_nats deploy/fly/nats.conf FLY_MACHINE_ID=0123456789abcd NATS_RELAY_PASSWORD=check
  live_nats_cluster
fi

if command -v systemd-analyze >/dev/null 2>&1; then
  # The NATS unit as it is (Debian's nats-server package provides the binary
  # and the user), and the relay unit with its cluster drop-in.
  units=$proxies/units
  mkdir -p "$units/mesh-relay.service.d"
  cp deploy/systemd/nats-server.service "$units/"
  cp deploy/systemd/mesh-relay.service.d/cluster.conf "$units/mesh-relay.service.d/"
  relay_bin=/bin/true
  if [ -n "${1:-}" ]; then relay_bin=$(cd "$(dirname "$1")" && pwd)/$(basename "$1"); fi
  sed "s|^ExecStart=.*|ExecStart=$relay_bin|" "$unit" >"$units/mesh-relay.service"
  for u in nats-server.service mesh-relay.service; do
    if ! out=$(SYSTEMD_UNIT_PATH="$units:" systemd-analyze verify "$units/$u" 2>&1) ||
      [ -n "$out" ]; then
      echo "check-deploy: systemd-analyze verify $u (with deploy/systemd drop-ins): $out" >&2
      fail=1
    fi
  done
else
  echo "check-deploy: no systemd-analyze here; the systemd units were not verified"
fi

[ "$fail" -eq 0 ] && echo "deployment files: ok"
exit "$fail"
