# mesh-relay container image: Debian 12 slim, built by the same setup script
# and the same cmake commands as tools/run-relay.sh (the README's quick
# start), so CI's tools/test.sh exercises the build steps used here;
# tools/check-deploy.sh checks that both still say the same.

# ---- build stage: compilers and -dev packages, thrown away afterwards
FROM debian:12-slim AS build
WORKDIR /src
COPY tools/setup-debian.sh tools/setup-debian.sh
RUN tools/setup-debian.sh --build && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
RUN cmake --build build -j "$(nproc 2>/dev/null || echo 2)" --target mesh-relay

# ---- runtime stage: runtime libraries and the executable only
FROM debian:12-slim
COPY tools/setup-debian.sh /tmp/setup-debian.sh
RUN /tmp/setup-debian.sh --runtime && rm -rf /var/lib/apt/lists/* /tmp/setup-debian.sh
# An unprivileged account owns the database volume; the relay needs no root
# (port 4000 is above 1024).
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin mesh \
 && mkdir -p /data && chown mesh:mesh /data
COPY --from=build /src/build/relay/mesh-relay /usr/local/bin/mesh-relay
USER mesh
ENV HOST=0.0.0.0 PORT=4000 MESH_DB_PATH=/data/mesh.db
VOLUME ["/data"]
EXPOSE 4000
# Plain HTTP unless the relay terminates TLS itself (--tls-cert), then HTTPS
# with the certificate left unchecked: this only asks "is it alive".
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD curl -fsS "http://127.0.0.1:${PORT}/healthz" >/dev/null \
   || curl -fsSk "https://127.0.0.1:${PORT}/healthz" >/dev/null || exit 1
# SIGTERM drains: sessions are closed with 1001 and queued frames flushed
# for up to MESH_DRAIN_TIMEOUT seconds.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/mesh-relay"]
