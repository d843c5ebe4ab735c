#!/bin/sh
# Turns a deployment example into a configuration that runs on loopback, so
# that the example itself is what gets checked (tools/check-deploy.sh) and
# what a node connects through (tests/relay/proxy_test.cpp):
#   tools/proxy-test-config.sh nginx|caddy OUTDIR RELAY_PORT TLS_PORT HTTP_PORT
# Writes into OUTDIR a throwaway certificate for 127.0.0.1 (cert.pem,
# key.pem) and
#   nginx: nginx.conf (run: nginx -p OUTDIR -c OUTDIR/nginx.conf)
#   caddy: Caddyfile  (run with HOME/XDG_* pointed into OUTDIR)
# The example's server blocks are kept as they are; only the addresses, the
# ports and the certificate paths change.
set -eu
[ $# -eq 5 ] || {
  echo "usage: $0 nginx|caddy OUTDIR RELAY_PORT TLS_PORT HTTP_PORT" >&2
  exit 2
}
kind=$1 out=$2 relay=$3 tls=$4 http=$5
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=127.0.0.1 -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
  -keyout "$out/key.pem" -out "$out/cert.pem" 2>/dev/null

case "$kind" in
nginx)
  sed -e "s|127\.0\.0\.1:4000|127.0.0.1:$relay|" \
    -e "s|^\( *\)listen 80;|\1listen 127.0.0.1:$http;|" \
    -e "s|^\( *\)listen 443 ssl;|\1listen 127.0.0.1:$tls ssl;|" \
    -e '/listen \[::\]/d' \
    -e "s|^\( *ssl_certificate \).*|\1$out/cert.pem;|" \
    -e "s|^\( *ssl_certificate_key \).*|\1$out/key.pem;|" \
    "$here/deploy/nginx/mesh-relay.conf" >"$out/mesh-relay.conf"
  mkdir -p "$out/tmp"
  cat >"$out/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $out/nginx.pid;
error_log $out/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $out/tmp/body;
    proxy_temp_path $out/tmp/proxy;
    fastcgi_temp_path $out/tmp/fastcgi;
    uwsgi_temp_path $out/tmp/uwsgi;
    scgi_temp_path $out/tmp/scgi;
    include $out/mesh-relay.conf;
}
EOF
  ;;
caddy)
  {
    cat <<EOF
{
	admin off
	http_port $http
	https_port $tls
	auto_https disable_redirects
	storage file_system $out/storage
}
EOF
    sed -e "s|^relay\.example\.org {|https://127.0.0.1:$tls, https://localhost:$tls {\\
	tls $out/cert.pem $out/key.pem|" \
      -e "s|127\.0\.0\.1:4000|127.0.0.1:$relay|" \
      "$here/deploy/caddy/Caddyfile"
  } >"$out/Caddyfile"
  ;;
*)
  echo "$0: unknown proxy '$kind'" >&2
  exit 2
  ;;
esac
