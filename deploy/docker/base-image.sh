#!/usr/bin/env bash
# base-image.sh - makes the Debian 12 base images locally, for machines that
# reach Debian's package mirror but no container registry (the CI machine).
#
#   bash deploy/docker/base-image.sh [--force]
#
# debootstrap --variant=minbase bookworm, from the mirror apt already uses
# (/etc/apt/sources.list*), trimmed like the official slim image (no docs,
# man pages or locales; dpkg keeps them out of later installs too), then
# imported into podman as debian:bookworm-slim and tagged debian:bookworm,
# under localhost/ and docker.io/library/ so that "FROM debian:bookworm"
# resolves to it without a pull. The rootfs tarball is cached in
# var/cache/containers/ (git-ignored), so later runs only import it (a few
# seconds); --force makes a fresh one. Nothing is done when the images are
# already there. Needs root, debootstrap and podman.
set -euo pipefail
# shellcheck source=env.sh
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

FORCE=0
[ "${1:-}" = --force ] && FORCE=1
SUITE=bookworm
TARBALL=$CACHE_DIR/debian-$SUITE-minbase.tar
NAMES=(localhost/debian:bookworm-slim localhost/debian:bookworm
	docker.io/library/debian:bookworm-slim docker.io/library/debian:bookworm)

have_all() {
	local n
	for n in "${NAMES[@]}"; do
		podman image exists "$n" || return 1
	done
}

# apt_uri SUITE: the first deb URI that apt uses for SUITE, from deb822
# .sources files or one-line sources.list entries.
apt_uri() {
	local suite=$1 f
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk -v s="$suite" 'BEGIN { RS = ""; FS = "\n" }
		{
			types = ""; uris = ""; suites = ""
			for (i = 1; i <= NF; i++) {
				if ($i ~ /^Types:/) types = $i
				if ($i ~ /^URIs:/) uris = $i
				if ($i ~ /^Suites:/) suites = $i
			}
			if (types ~ /[ \t]deb([ \t]|$)/ && (" " suites " ") ~ ("[ \t]" s "[ \t]")) {
				sub(/^URIs:[ \t]*/, "", uris); split(uris, u, /[ \t]+/)
				print u[1]; exit
			}
		}' "$f"
	done
	cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
		awk -v s="$suite" '$1 == "deb" {
			i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
			if ($(i + 1) == s) { print $i; exit }
		}'
	return 0
}

make_tarball() {
	local mirror security tmp root t0
	mirror=$(apt_uri "$SUITE" | head -n 1 || true)
	mirror=${mirror:-http://deb.debian.org/debian}
	security=$(apt_uri "$SUITE-security" | head -n 1 || true)
	security=${security:-http://deb.debian.org/debian-security}
	command -v debootstrap >/dev/null || die "debootstrap is missing (apt install debootstrap)"
	mkdir -p "$CACHE_DIR"
	tmp=$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")
	root=$tmp/root
	# shellcheck disable=SC2064
	trap "rm -rf '$tmp'" EXIT
	t0=$(now_ms)
	say "debootstrap --variant=minbase $SUITE from $mirror (about a minute)"
	if ! debootstrap --variant=minbase "$SUITE" "$root" "$mirror" \
		>"$tmp/debootstrap.log" 2>&1; then
		tail -n 20 "$tmp/debootstrap.log" >&2
		die "debootstrap failed"
	fi
	# Sources as in the official image: release, updates and security.
	rm -f "$root/etc/apt/sources.list"
	cat >"$root/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $mirror
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
	# Keep documentation out of this image and of every later install.
	cat >"$root/etc/dpkg/dpkg.cfg.d/slim" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
DPKG
	find "$root/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete
	find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
	rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* \
		"$root"/usr/share/lintian/* "$root"/var/lib/apt/lists/* \
		"$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
		"$root"/var/log/* "$root"/tmp/* "$root"/root/.cache
	find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias \
		-exec rm -rf {} +
	# The engine provides these at run time; debootstrap copied the host's.
	rm -f "$root/etc/hostname" "$root/etc/resolv.conf"
	: >"$root/etc/machine-id"
	tar --numeric-owner -C "$root" -cf "$TARBALL.part" .
	mv "$TARBALL.part" "$TARBALL"
	rm -rf "$tmp"
	trap - EXIT
	say "rootfs cached in ${TARBALL#"$ROOT"/} ($(du -h "$TARBALL" | cut -f1), $(secs_since "$t0") s)"
}

if [ "$FORCE" = 0 ] && have_all; then
	say "debian:bookworm-slim and debian:bookworm are already there"
	exit 0
fi
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap and rootful podman)"
if [ "$FORCE" = 1 ] || [ ! -s "$TARBALL" ]; then
	make_tarball
fi
t0=$(now_ms)
id=$(podman import --quiet \
	--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	--change 'CMD ["bash"]' \
	--message "debootstrap --variant=minbase $SUITE" \
	"$TARBALL" "${NAMES[0]}")
for n in "${NAMES[@]:1}"; do
	podman tag "$id" "$n"
done
say "imported ${NAMES[*]} ($(secs_since "$t0") s)"
