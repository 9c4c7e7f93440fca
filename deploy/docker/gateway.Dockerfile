# gateway.Dockerfile - the gateway image. Build from the repository root:
#
#   docker build -f deploy/docker/gateway.Dockerfile -t catalog/gateway .
#
# (make images does it with podman.) The build stage compiles on
# debian:bookworm with the -dev packages; the run stage is bookworm-slim
# with only the shared libraries the binary links, a numeric non-root user
# and an exec-form entrypoint, so nothing at run time needs a shell. The
# build stage is the same in both Dockerfiles, so a second build reuses it.

ARG DEBIAN_RELEASE=bookworm

FROM debian:${DEBIAN_RELEASE} AS build
RUN apt-get update \
	&& DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		build-essential pkg-config libevent-dev libhiredis-dev libpq-dev \
		libjson-c-dev libprotobuf-c-dev protobuf-c-compiler libnng-dev \
		libmbedtls-dev \
	&& rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# TEST_HOOKS=0: release binaries carry no test hooks. .git stays out of the
# context, so the revision that --version reports comes in as an argument.
ARG GIT_REV=unknown
RUN make -j"$(nproc)" BUILD=/out TEST_HOOKS=0 GIT_REV="$GIT_REV" all \
	&& strip --strip-unneeded /out/bin/gateway /out/bin/product-service

FROM debian:${DEBIAN_RELEASE}-slim
RUN apt-get update \
	&& DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		libevent-2.1-7 libevent-pthreads-2.1-7 libjson-c5 libprotobuf-c1 \
		libnng1 \
	&& rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log
COPY --from=build /out/bin/gateway /usr/local/bin/gateway
# Numeric, so that Kubernetes can check runAsNonRoot without /etc/passwd.
USER 10001:10001
# 8080: HTTP API; 9090: admin (/healthz, /readyz, /metrics).
EXPOSE 8080 9090
# SIGTERM starts the gateway's drain; no shell sits in between.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/gateway"]
LABEL org.opencontainers.image.title="catalog gateway" \
	org.opencontainers.image.description="HTTP/1.1 JSON front door of the product catalog" \
	org.opencontainers.image.source="https://example.invalid/catalog"
