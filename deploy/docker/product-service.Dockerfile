# product-service.Dockerfile - the product-service image. Build from the
# repository root:
#
#   docker build -f deploy/docker/product-service.Dockerfile -t catalog/product-service .
#
# (make images does it with podman.) Same build stage as the gateway's; the
# run stage is bookworm-slim with only the shared libraries the binary
# links, a numeric non-root user and exec-form ENTRYPOINT/CMD. The same
# image runs the replicas (CMD serve) and the migration Job
# (args: ["migrate"]).

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
		libevent-2.1-7 libevent-pthreads-2.1-7 libhiredis0.14 libpq5 \
		libprotobuf-c1 libnng1 \
	&& rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log
COPY --from=build /out/bin/product-service /usr/local/bin/product-service
# Numeric, so that Kubernetes can check runAsNonRoot without /etc/passwd.
USER 10001:10001
# 7000: NNG rep0 for the gateways; 9100: admin (/healthz, /readyz, /metrics).
EXPOSE 7000 9100
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/product-service"]
CMD ["serve"]
LABEL org.opencontainers.image.title="catalog product-service" \
	org.opencontainers.image.description="product catalog replica: cache-aside over Redis and PostgreSQL" \
	org.opencontainers.image.source="https://example.invalid/catalog"
