# redis.Dockerfile - a stand-in for the official redis:7 image, built from
# Debian's redis-server (7.0) for machines that reach no container registry
# (CI). Build context: this folder. Only what deploy/compose.yaml uses:
# redis-server and redis-cli on PATH, port 6379. Test use only; elsewhere
# compose pulls the official image.
FROM debian:bookworm-slim
RUN apt-get update \
	&& DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
	&& rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
	&& mkdir -p /data && chown redis:redis /data
WORKDIR /data
USER redis
EXPOSE 6379
CMD ["redis-server", "--protected-mode", "no"]
