#!/usr/bin/env bash
# images.sh - builds the gateway and product-service images with podman
# (make images), after making the Debian base images locally when they are
# missing (base-image.sh).
#
#   bash deploy/docker/images.sh [--testdeps]
#
# Tags: $CATALOG_IMAGE_PREFIX/{gateway,product-service}:$CATALOG_TAG
# (default localhost/catalog/...:dev). --testdeps also builds the Redis and
# PostgreSQL stand-ins that make container-test runs instead of the official
# images. With Docker and a registry, build the same Dockerfiles directly:
#   docker build -f deploy/docker/gateway.Dockerfile -t REGISTRY/catalog/gateway:TAG .
set -euo pipefail
# shellcheck source=env.sh
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

TESTDEPS=0
[ "${1:-}" = --testdeps ] && TESTDEPS=1
command -v podman >/dev/null || die "podman is missing (apt install podman runc)"
cd "$ROOT"
T0=$(now_ms)
GIT_REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)

bash "$DOCKER_DIR/base-image.sh"

# build NAME DOCKERFILE CONTEXT: one image, quiet unless it fails.
build() {
	local tag=$1 file=$2 ctx=$3 t log
	t=$(now_ms)
	log=$(mktemp)
	if ! podman build --pull=never --layers --build-arg "GIT_REV=$GIT_REV" \
		-f "$file" -t "$tag" "$ctx" \
		>"$log" 2>&1; then
		tail -n 40 "$log" >&2
		rm -f "$log"
		die "building $tag failed"
	fi
	rm -f "$log"
	say "built $tag ($(secs_since "$t") s)"
}

build "$CATALOG_IMAGE_PREFIX/gateway:$CATALOG_TAG" deploy/docker/gateway.Dockerfile .
build "$CATALOG_IMAGE_PREFIX/product-service:$CATALOG_TAG" \
	deploy/docker/product-service.Dockerfile .
if [ "$TESTDEPS" = 1 ]; then
	build "$REDIS_IMAGE" deploy/docker/testdeps/redis.Dockerfile deploy/docker/testdeps
	build "$POSTGRES_IMAGE" deploy/docker/testdeps/postgres.Dockerfile deploy/docker/testdeps
fi
# The untagged build-stage images stay: they are the layer cache that
# makes the next build take seconds.

say "images ready in $(secs_since "$T0") s:"
podman images --format '  {{.Repository}}:{{.Tag}}  {{.Size}}' \
	--filter "reference=$CATALOG_IMAGE_PREFIX/*:$CATALOG_TAG"
