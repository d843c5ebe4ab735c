# NATS for the mesh-nats Fly app: Debian 12's nats-server (2.9), the version
# the relay's tests run against, with deploy/fly/nats.conf.
FROM debian:12-slim
RUN apt-get update && apt-get install -y --no-install-recommends nats-server \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data && chown nats:nats /data
COPY nats.conf /etc/nats-server.conf
USER nats
EXPOSE 4222 6222 8222
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/sbin/nats-server", "-c", "/etc/nats-server.conf"]
