#!/usr/bin/env bash
# run-integration.sh - runs integration test binaries against a private
# Redis and PostgreSQL 15 on free loopback ports.
#
#   BUILD=build tests/run-integration.sh build/tests/test_api ...
#
# Makes a scratch folder under $BUILD/it/, starts Redis and PostgreSQL there
# (deploy/stack.sh), migrates with $BUILD/bin/product-service migrate, and
# runs each binary with:
#
#   IT_BIN IT_TMPDIR IT_REDIS_PORT IT_REDIS_URL IT_DATABASE_URL IT_PG_PORT
#   IT_PG_STOP IT_PG_START    (shell commands: stop / start that PostgreSQL)
#   IT_API_KEY                (an API key, new each run: the harness gives
#                              every gateway a keys file with its digest)
#
# Everything it started is stopped on exit, whatever happens. Exits non-zero
# when any binary fails. KEEP_IT=1 keeps the scratch folder (logs of every
# process) after a green run; after a red one it is always kept.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in
/*) ;;
*) BUILD=$ROOT/$BUILD ;;
esac
# shellcheck source-path=SCRIPTDIR source=../deploy/stack.sh
. "$ROOT/deploy/stack.sh"

if [ $# -eq 0 ]; then
	echo "usage: BUILD=dir $0 test-binary..." >&2
	exit 2
fi
for b in "$BUILD/bin/product-service" "$BUILD/bin/gateway"; do
	if [ ! -x "$b" ]; then
		echo "run-integration: $b is missing; run make BUILD=${BUILD#"$ROOT"/} all" >&2
		exit 2
	fi
done

mkdir -p "$BUILD/it" || exit 1
# Drop the folders that earlier failed runs kept, unless their PostgreSQL
# still runs (another run on the same BUILD).
for old in "$BUILD"/it/run.*; do
	[ -d "$old" ] || continue
	pidf=$old/pg/data/postmaster.pid
	if [ -f "$pidf" ] && kill -0 "$(head -n 1 "$pidf")" 2>/dev/null; then
		continue
	fi
	stack_pg_remove "$old/pg" 2>/dev/null
	rm -rf "$old"
done
TMP=$(mktemp -d "$BUILD/it/run.XXXXXX") || exit 1
# PostgreSQL runs as postgres when we are root: let it reach its folder.
chmod 755 "$BUILD/it" "$TMP"

REDIS_PID=
PG_DIR=$TMP/pg
PG_STARTED=0
failed=0

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$REDIS_PID" ]; then
		stack_redis_stop "$REDIS_PID"
	fi
	if [ "$PG_STARTED" = 1 ]; then
		stack_pg_stop "$PG_DIR"
	fi
	if [ "$rc" -eq 0 ] && [ "${KEEP_IT:-0}" != 1 ]; then
		stack_pg_remove "$PG_DIR"
		rm -rf "$TMP"
	else
		echo "run-integration: logs kept in $TMP" >&2
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

REDIS_PORT=$(stack_free_port) || exit 1
PG_PORT=$(stack_free_port) || exit 1

if ! stack_redis_start "$TMP/redis" "$REDIS_PORT" "$TMP/redis.log"; then
	exit 1
fi
REDIS_PID=$STACK_REDIS_PID
PG_STARTED=1
if ! stack_pg_start "$PG_DIR" "$PG_PORT" test; then
	exit 1
fi
echo "run-integration: redis :$REDIS_PORT (pid $REDIS_PID)," \
	"postgres :$PG_PORT (pid $STACK_PG_PID), scratch $TMP"

export IT_BIN=$BUILD/bin
# A known NNG 1.5.2 leak at exit (see tests/lsan.supp); a sanitizer build
# of ours reads this, a normal build ignores it.
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$ROOT/tests/lsan.supp}
export IT_TMPDIR=$TMP
export IT_REDIS_PORT=$REDIS_PORT
export IT_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
export IT_PG_PORT=$PG_PORT
export IT_DATABASE_URL=postgresql://postgres@127.0.0.1:$PG_PORT/catalog
export IT_PG_STOP="bash '$ROOT/deploy/stack.sh' pg-stop '$PG_DIR'"
export IT_PG_START="bash '$ROOT/deploy/stack.sh' pg-start '$PG_DIR' $PG_PORT test"
IT_API_KEY=${IT_API_KEY:-it-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}
export IT_API_KEY

if ! DATABASE_URL=$IT_DATABASE_URL "$IT_BIN/product-service" migrate \
	>"$TMP/migrate.log" 2>&1; then
	echo "run-integration: product-service migrate failed:" >&2
	cat "$TMP/migrate.log" >&2
	exit 1
fi

results=()
for t in "$@"; do
	name=$(basename "$t")
	echo "== $name"
	start=$(date +%s)
	# A hung binary must not hang CI: 10 minutes each at most.
	timeout -k 10 "${IT_TIMEOUT_S:-600}" "$t"
	rc=$?
	secs=$(($(date +%s) - start))
	if [ "$rc" -eq 0 ]; then
		results+=("$name ok (${secs}s)")
	else
		if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
			echo "run-integration: $name ran past ${IT_TIMEOUT_S:-600}s"
		fi
		results+=("$name FAILED rc=$rc (${secs}s)")
		failed=$((failed + 1))
	fi
done

summary=$(printf '%s; ' "${results[@]}")
echo "== integration summary: $(($# - failed)) of $# binaries passed:" \
	"${summary%; }"
[ "$failed" -eq 0 ]
