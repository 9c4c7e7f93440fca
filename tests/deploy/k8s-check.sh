#!/usr/bin/env bash
# k8s-check.sh - validates the Kubernetes manifests without a cluster
# (make k8s-check):
#
#   1. `kubectl kustomize` renders k8s/base and every k8s/overlays/*;
#   2. schema.cjs: every rendered object against the Kubernetes OpenAPI
#      schema (kubernetes-models, pinned by package-lock.json), unknown
#      fields refused;
#   3. policy.cjs: probes, resources, restricted securityContext, PDB,
#      HPA, NetworkPolicy, grace periods, and every variable a manifest
#      gives the gateway or product-service is in that binary's table
#      (--list-env), every required one (--help) set;
#   4. self-test: each mutation in mutate.cjs, applied to the dev render,
#      must make its checker fail with the expected message (proof that
#      the checks can fail).
#
# GATEWAY_BIN and PRODUCT_BIN (default build/bin/...) are the binaries whose
# tables count. Needs kubectl (with kustomize), node and npm; installs the
# pinned npm packages into tests/deploy/node_modules when missing.
# Prints "k8s-check: N passed, N failed".
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT" || exit 1
GATEWAY_BIN=${GATEWAY_BIN:-build/bin/gateway}
PRODUCT_BIN=${PRODUCT_BIN:-build/bin/product-service}
T0=$(date +%s%3N)

die() {
	echo "k8s-check: $*" >&2
	exit 1
}

for tool in kubectl node npm; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (see deploy/DEPLOY.md)"
done
# Debian's kubernetes-client (1.20) carries kustomize 2, too old for k8s/.
kz=$(kubectl version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\([0-9]*\).*/\1/p')
[ "${kz:-0}" -ge 5 ] ||
	die "kubectl with kustomize 5 or later is needed (kubectl 1.27+); found: $(kubectl version --client 2>&1 | tr '\n' ' ')"
for b in "$GATEWAY_BIN" "$PRODUCT_BIN"; do
	[ -x "$b" ] || die "$b is missing: run make first"
done

# The pinned validators, installed once (again when the lockfile changes).
if [ ! -f "$HERE/node_modules/.package-lock.json" ] ||
	[ "$HERE/package-lock.json" -nt "$HERE/node_modules/.package-lock.json" ]; then
	echo "k8s-check: npm ci in tests/deploy"
	npm ci --prefix "$HERE" --no-audit --no-fund --loglevel=error ||
		die "npm ci failed"
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
PASS=0
FAIL=0

pass() {
	PASS=$((PASS + 1))
	echo "ok   $*"
}

fail() {
	FAIL=$((FAIL + 1))
	echo "FAIL $*"
}

# Tables of the two binaries.
"$GATEWAY_BIN" --help >"$TMP/gateway.help" 2>&1 &&
	"$GATEWAY_BIN" --list-env >"$TMP/gateway.list" &&
	"$PRODUCT_BIN" --help >"$TMP/product-service.help" 2>&1 &&
	"$PRODUCT_BIN" --list-env >"$TMP/product-service.list" ||
	die "could not read the binaries' settings tables"
BINS=(--bin "gateway=$TMP/gateway.help,$TMP/gateway.list"
	--bin "product-service=$TMP/product-service.help,$TMP/product-service.list")

run_check() { # CHECKER FILE -> output in $TMP/out, status
	case $1 in
	schema) node "$HERE/schema.cjs" "$2" >"$TMP/out" 2>&1 ;;
	policy) node "$HERE/policy.cjs" "${BINS[@]}" "$2" >"$TMP/out" 2>&1 ;;
	esac
}

targets=(k8s/base)
for d in k8s/overlays/*/; do
	targets+=("${d%/}")
done
for t in "${targets[@]}"; do
	name=${t//\//-}
	out=$TMP/$name.yaml
	if kubectl kustomize "$t" >"$out" 2>"$TMP/err"; then
		pass "render $t ($(grep -c '^kind:' "$out") objects)"
	else
		fail "render $t"
		sed 's/^/     /' "$TMP/err"
		continue
	fi
	for checker in schema policy; do
		if run_check "$checker" "$out"; then
			pass "$checker $t: $(tail -n 1 "$TMP/out")"
		else
			fail "$checker $t"
			sed 's/^/     /' "$TMP/out"
		fi
	done
done

# Self-test: every way of breaking the dev render must be caught.
DEV=$TMP/k8s-overlays-dev.yaml
if [ -s "$DEV" ]; then
	node "$HERE/mutate.cjs" --self-test "$DEV" "${BINS[@]}" >"$TMP/self" 2>&1
	cat "$TMP/self"
	PASS=$((PASS + $(grep -c '^ok ' "$TMP/self")))
	FAIL=$((FAIL + $(grep -c '^FAIL ' "$TMP/self")))
	if ! grep -q '^ok ' "$TMP/self"; then
		fail "self-test did not run"
	fi
else
	fail "self-test: no dev render to break"
fi

d=$(($(date +%s%3N) - T0))
echo "k8s-check: took $((d / 1000)).$((d % 1000 / 100)) s"
echo "k8s-check: $PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
