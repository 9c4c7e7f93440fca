# env.sh - sourced by the scripts in deploy/docker: podman configuration,
# image names and small helpers. Not a command.
#
# Image names (override for a real registry):
#   CATALOG_IMAGE_PREFIX  default localhost/catalog   (-> .../gateway:TAG)
#   CATALOG_TAG           default dev
#   CATALOG_ENGINE        default podman (docker works for images.sh too)

# shellcheck shell=bash
DOCKER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$DOCKER_DIR/../.." && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$DOCKER_DIR/containers.conf}
CATALOG_IMAGE_PREFIX=${CATALOG_IMAGE_PREFIX:-localhost/catalog}
CATALOG_TAG=${CATALOG_TAG:-dev}
CATALOG_ENGINE=${CATALOG_ENGINE:-podman}
export CATALOG_IMAGE_PREFIX CATALOG_TAG
# Stand-ins for the official redis and postgres images, built from Debian
# packages because this machine reaches no container registry.
export REDIS_IMAGE=${REDIS_IMAGE:-localhost/catalog-testdeps/redis:7-bookworm}
export POSTGRES_IMAGE=${POSTGRES_IMAGE:-localhost/catalog-testdeps/postgres:15-bookworm}
# Where the debootstrapped base rootfs is kept between runs (git-ignored).
CACHE_DIR=${CATALOG_CACHE_DIR:-$ROOT/var/cache/containers}

say() {
	echo "$(basename "$0" .sh): $*"
}

die() {
	echo "$(basename "$0" .sh): $*" >&2
	exit 1
}

# now_ms: milliseconds since the epoch, for timings.
now_ms() {
	date +%s%3N
}

# secs_since START_MS: elapsed seconds with one decimal.
secs_since() {
	local d=$(($(now_ms) - $1))
	printf '%d.%d' $((d / 1000)) $((d % 1000 / 100))
}
