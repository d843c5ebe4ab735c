#!/bin/sh
# Installs the Debian 12 packages the project builds, tests and runs with.
# Safe to run again: apt-get skips what is already installed.
#   tools/setup-debian.sh           build + test dependencies (tools/test.sh:
#                                    the tests also run nginx and Caddy in
#                                    front of a relay, drive the status page
#                                    in headless chromium, read the dashboard
#                                    with jq, fuzz with clang, start a NATS
#                                    cluster and go through tinyproxy;
#                                    check-deploy makes throwaway certificates
#                                    with openssl and reads TOML with python3)
#   tools/setup-debian.sh --build   what building needs, nothing more
#                                    (tools/run-relay.sh, the container's
#                                    build stage)
#   tools/setup-debian.sh --runtime runtime libraries only (container image)
#   tools/setup-debian.sh --promtool promtool, which the metrics test runs
#                                    (package prometheus: large, and on a
#                                    machine with systemd it also starts a
#                                    Prometheus server; tools/test.sh asks
#                                    for it only when promtool is missing)
set -eu

build_pkgs="build-essential cmake pkg-config git ca-certificates curl
  libwebsockets-dev libwebsockets-evlib-ev libev-dev libsqlite3-dev rapidjson-dev libsodium-dev libcli11-dev
  libgtest-dev libssl-dev libnats-dev libcurl4-openssl-dev"
test_pkgs="clang libclang-rt-14-dev nginx-light caddy jq chromium nats-server tinyproxy openssl python3"
runtime_pkgs="libwebsockets17 libwebsockets-evlib-ev libev4 libsqlite3-0 libsodium23 libssl3 libnats3.4 libcurl4 ca-certificates curl"

if [ "${1:-}" = "--build" ]; then
  pkgs=$build_pkgs
elif [ "${1:-}" = "--runtime" ]; then
  pkgs=$runtime_pkgs
elif [ "${1:-}" = "--promtool" ]; then
  pkgs="prometheus"
else
  pkgs="$build_pkgs $test_pkgs"
fi

missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    missing="$missing $p"
done
[ -z "$missing" ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
