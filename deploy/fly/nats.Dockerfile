# NATS for the mesh-nats Fly app: Debian 12's nats-server (2.9), the version
# the relay's tests run against, with deploy/fly/nats.conf.
FROM debian:12-slim
RUN apt-get update && apt-get install -y --no-install-recommends nats-server \
 && rm -rf /var/lib/apt/lists/*
COPY nats.conf /etc/nats-server.conf
EXPOSE 4222 6222 8222
STOPSIGNAL SIGTERM
# The volume is mounted at /data when the machine starts, owned by root:
# hand it to the nats user, then run the server as that user.
ENTRYPOINT ["/bin/sh", "-c", "chown -R nats:nats /data && exec setpriv --reuid=nats --regid=nats --init-groups /usr/sbin/nats-server -c /etc/nats-server.conf"]
