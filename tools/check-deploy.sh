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
#     every metric name is one the relay exports (names from relay/src).
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

[ "$fail" -eq 0 ] && echo "deployment files: ok"
exit "$fail"
