#!/usr/bin/env bash
# install-deps.sh - installs the Debian 12 packages this project needs.
# Does nothing when all are there; uses sudo when not root.
set -euo pipefail

# Tests also use dnsmasq-base (a DNS server for the discovery test),
# prometheus (promtool checks the metrics), iproute2 (network namespaces
# for the network-cut test), and for the smoke benchmark in make test wrk,
# gnuplot-nox, python3 and redis-tools (redis-benchmark). libmbedtls-dev:
# common/cm_tls.c checks certificates with the mbedTLS that NNG's TLS
# engine uses; openssl makes the throw-away certificates of test_tls.
# make fuzz builds with clang and links libFuzzer (libclang_rt.fuzzer),
# which Debian 12 ships in libclang-rt-14-dev: clang only recommends it,
# and recommends are not installed here.

PKGS=(build-essential pkg-config libevent-dev libhiredis-dev libpq-dev
	libjson-c-dev libprotobuf-c-dev protobuf-c-compiler libnng-dev
	libmbedtls-dev openssl libcmocka-dev redis-server postgresql
	postgresql-contrib curl dnsmasq-base prometheus iproute2 wrk gnuplot-nox
	python3 redis-tools clang libclang-rt-14-dev)
if [ "${WITH_CONTAINERS:-0}" = 1 ]; then
	# podman with runc (this sandbox refuses crun's cgroup mode); netavark,
	# aardvark-dns and iptables are only recommends, so name them.
	PKGS+=(podman runc netavark aardvark-dns iptables podman-compose
		debootstrap)
fi
if [ "${WITH_PROFILE:-0}" = 1 ]; then
	PKGS+=(valgrind) # make profile (bench/callgrind.sh)
fi

missing=()
for p in "${PKGS[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
		grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done
# Node.js runs the OpenAPI lint. A machine may already have a node that
# bundles npm (not from Debian); Debian's npm package would conflict with it.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	command -v node >/dev/null 2>&1 || missing+=(nodejs)
	missing+=(npm)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=
[ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
