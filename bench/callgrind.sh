#!/usr/bin/env bash
# callgrind.sh - instructions per request of each process on the hot path,
# and of the bare HTTP and NNG programs, with valgrind's callgrind. Counts
# of instructions do not depend on what else the machine runs, so this is
# the profile to compare changes with on a busy machine (make profile).
#
#   BUILD=build bench/callgrind.sh [all|ours|bare]
#
# ours: Redis and PostgreSQL (deploy/stack.sh), PRODUCTS products, one
# product-service (PRODUCT_THREADS=1) and one gateway (GATEWAY_THREADS=1),
# both under callgrind with timeouts long enough for its slowdown. wrk
# (bench/wrk/catalog.lua, scenario hot, CONNS connections, one thread)
# warms the cache for WARM s; then both processes' counters are zeroed,
# wrk runs RUN_S s, and both dump. Ir per request = the dump's total over
# the requests wrk completed in that run (all of them hits: the X-Cache
# counts are printed).
# bare: bench/bare_http under callgrind the same way; bench/bare_nng server
# (zeroed before its client starts) and client (whole run) under callgrind,
# CONNS contexts, per round trip.
#
# Writes OUT (default $BUILD/callgrind/<timestamp>/): <name>.out (the
# callgrind dumps), <name>.top (callgrind_annotate, exclusive and
# inclusive) and summary.txt (Ir/request per process and each one's top
# functions per request), which it also prints.
#
# Knobs: RUN_S (20), WARM (15), CONNS (16), PRODUCTS (2000), HOT (1000: ids
# the hot scenario asks; fewer for CONNS=1, whose warm-up is slow), TOP (12),
# OUT. Only Ir (instructions) is counted: time in the kernel (syscalls,
# loopback TCP) is invisible to callgrind, and so is Redis.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
WHAT=${1:-all}
BUILD=${BUILD:-build}
case "$BUILD" in
/*) ;;
*) BUILD=$ROOT/$BUILD ;;
esac
SECONDS_RUN=${RUN_S:-20}
WARM=${WARM:-15}
CONNS=${CONNS:-16}
PRODUCTS=${PRODUCTS:-2000}
TOP=${TOP:-12}
HOT_IDS=${HOT:-1000}
OUT=${OUT:-$BUILD/callgrind/$(date -u +%Y%m%dT%H%M%SZ)}
BIN=$BUILD/bin
BBIN=$BUILD/bench
LUA=$ROOT/bench/wrk/catalog.lua
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
export STACK_DETACH=1
# shellcheck source-path=SCRIPTDIR source=../deploy/stack.sh
. "$ROOT/deploy/stack.sh"

die() {
	echo "callgrind: FAILED: $*" >&2
	exit 1
}
say() {
	echo "callgrind: $*"
}

for t in valgrind callgrind_control callgrind_annotate wrk curl "$PY"; do
	command -v "$t" >/dev/null 2>&1 || die "missing: $t"
done
mkdir -p "$OUT" || exit 1
TMP=$(mktemp -d "$OUT/run.XXXXXX") || exit 1
chmod 755 "$OUT" "$TMP"
PIDS=()
REDIS_PID=
PG_STARTED=0
cleanup() {
	local rc=$? pid
	trap - EXIT INT TERM
	for pid in "${PIDS[@]}"; do
		stack_kill_pid "$pid" valgrind
	done
	[ -n "$REDIS_PID" ] && stack_redis_stop "$REDIS_PID"
	if [ "$PG_STARTED" = 1 ]; then
		stack_pg_stop "$TMP/pg"
		stack_pg_remove "$TMP/pg"
	fi
	[ "$rc" -eq 0 ] && rm -rf "$TMP"
	[ "$rc" -eq 0 ] || echo "callgrind: logs kept in $TMP" >&2
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# cg NAME CMD...: starts CMD under callgrind in the background, output
# OUT/NAME.out (dumps: NAME.out.1, ...); sets CG_PID.
CG_PID=
cg() {
	local name=$1
	shift
	setsid valgrind --tool=callgrind --dump-instr=no \
		--callgrind-out-file="$TMP/$name.out" "$@" \
		>"$TMP/$name.log" 2>&1 </dev/null &
	CG_PID=$!
	PIDS+=("$CG_PID")
}

# wait_http URL SECONDS: until URL answers 2xx.
wait_http() {
	local i
	for ((i = 0; i < $2 * 5; i++)); do
		curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null && return 0
		sleep 0.2
	done
	return 1
}

# wrk_run URL SCENARIO SECS OUTFILE: wrk, one thread, CONNS connections;
# prints the completed requests.
wrk_run() {
	BENCH_SCENARIO=$2 BENCH_PRODUCTS=$PRODUCTS BENCH_HOT=$HOT_IDS \
		BENCH_THREADS=1 BENCH_SEED=$RANDOM BENCH_COLD_PHASE=0 \
		timeout -k 5 $(($3 + 60)) wrk -t 1 -c "$CONNS" -d "${3}s" \
		--timeout 30s -s "$LUA" "$1" >"$4" 2>&1 || {
		cat "$4" >&2
		return 1
	}
	grep -m1 '^BENCH_RESULT ' "$4" | cut -d' ' -f2- |
		"$PY" -c 'import json, sys
r = json.load(sys.stdin)
c = (",", ":")
print(r["requests"], json.dumps(r.get("statuses"), separators=c),
      json.dumps(r.get("x_cache"), separators=c))'
}

# dump NAME PID: asks callgrind in PID for a dump; waits for NAME.out.1.
dump() {
	local i
	callgrind_control -d "$2" >/dev/null || return 1
	for ((i = 0; i < 100; i++)); do
		[ -s "$TMP/$1.out.1" ] && break
		sleep 0.2
	done
	mv "$TMP/$1.out.1" "$OUT/$1.out"
}

# metric URL NAME: the sum of NAME's series at URL (Prometheus text).
metric() {
	curl -fsS --max-time 30 "$1" |
		awk -v n="$2" '$1 == n || index($1, n "{") == 1 { s += $2 }
			END { printf "%.0f\n", s }'
}

SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
# report NAME REQUESTS: Ir per request of NAME.out, and its top functions.
report() {
	local name=$1 n=$2
	callgrind_annotate --threshold=100 "$OUT/$name.out" \
		>"$OUT/$name.top" 2>/dev/null
	{
		echo "### exclusive"
		cat "$OUT/$name.top"
		echo "### inclusive"
		callgrind_annotate --inclusive=yes --threshold=100 \
			"$OUT/$name.out" 2>/dev/null
	} >"$OUT/$name.top.tmp" && mv "$OUT/$name.top.tmp" "$OUT/$name.top"
	"$PY" - "$OUT/$name.top" "$name" "$n" "$TOP" >>"$SUMMARY" <<'EOF'
import re, sys
path, name, n, top = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
total = None
rows = {"exclusive": [], "inclusive": []}
part = None
for line in open(path):
    if line.startswith("### "):
        part = line[4:].strip()
        continue
    m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$", line)
    if not m or part is None:
        continue
    ir = int(m.group(1).replace(",", ""))
    what = m.group(2)
    if what.startswith("PROGRAM TOTALS"):
        total = ir
        continue
    # file:function [object] -> function (object basename)
    fm = re.match(r"(.*?):(\S+) \[(.*)\]$", what)
    if fm:
        what = "%s (%s)" % (fm.group(2), fm.group(3).rsplit("/", 1)[-1])
    rows[part].append((ir, what))
# After a zero, callgrind_annotate shows the functions that were on a
# thread's stack then (thread entries, event loops) with their whole
# inclusive cost as exclusive: leave those out of the exclusive list.
incl = dict((w, ir) for ir, w in rows["inclusive"])
roots = re.compile(r"^(clone|start_thread|event_base_\w+|worker_main|"
                   r"thread_main|loop_main|0x[0-9a-f]+) ")
rows["exclusive"] = [(ir, w) for ir, w in rows["exclusive"]
                     if not (roots.match(w) and incl.get(w) == ir)]
print("== %s: %d requests, %.0f Ir/request" % (name, n, total / n))
for part in ("exclusive", "inclusive"):
    print("  top %s (Ir/request):" % part)
    for ir, what in rows[part][:top]:
        print("    %9.0f  %s" % (ir / n, what))
EOF
}

if [ "$WHAT" = all ] || [ "$WHAT" = ours ]; then
	REDIS_PORT=$(stack_free_port) || exit 1
	PG_PORT=$(stack_free_port) || exit 1
	GW_PORT=$(stack_free_port) || exit 1
	PS_PORT=$(stack_free_port) || exit 1
	GA_PORT=$(stack_free_port) || exit 1
	PA_PORT=$(stack_free_port) || exit 1
	stack_redis_start "$TMP/redis" "$REDIS_PORT" "$TMP/redis.log" ||
		exit 1
	REDIS_PID=$STACK_REDIS_PID
	PG_STARTED=1
	stack_pg_start "$TMP/pg" "$PG_PORT" test || exit 1
	export DATABASE_URL=postgresql://postgres@127.0.0.1:$PG_PORT/catalog
	export REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
	export LOG_LEVEL=${LOG_LEVEL:-warn}
	timeout 60 "$BIN/product-service" migrate >"$TMP/migrate.log" 2>&1 ||
		die "migrate failed"
	timeout 120 "$STACK_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 \
		-h 127.0.0.1 -p "$PG_PORT" -U postgres -d catalog \
		-v products="$PRODUCTS" -f "$ROOT/bench/products.sql" \
		>/dev/null || die "loading products failed"
	# Under callgrind everything runs ~50x slower: timeouts to match.
	PRODUCT_LISTEN=tcp://127.0.0.1:$PS_PORT PRODUCT_THREADS=1 \
		PRODUCT_NAME=replica-1 PRODUCT_REDIS_TIMEOUT_MS=20000 \
		PRODUCT_ADMIN_LISTEN=127.0.0.1:$PA_PORT \
		cg replica "$BIN/product-service"
	PS_PID=$CG_PID
	GATEWAY_LISTEN=127.0.0.1:$GW_PORT GATEWAY_THREADS=1 \
		GATEWAY_UPSTREAMS=tcp://127.0.0.1:$PS_PORT \
		GATEWAY_TIMEOUT_MS=60000 GATEWAY_TRY_TIMEOUT_MS=30000 \
		GATEWAY_ADMIN_LISTEN=127.0.0.1:$GA_PORT \
		cg gateway "$BIN/gateway"
	GW_PID=$CG_PID
	GW=http://127.0.0.1:$GW_PORT
	wait_http "$GW/readyz" 120 || die "the gateway is not ready"
	say "ours: warming the cache for $WARM s"
	wrk_run "$GW" hot "$WARM" "$TMP/wrk-warm" >/dev/null ||
		die "warm-up failed"
	GM=http://127.0.0.1:$GA_PORT/metrics
	PM=http://127.0.0.1:$PA_PORT/metrics
	b0=$(metric "$GM" gateway_upstream_batches_total)
	c0=$(metric "$GM" gateway_upstream_batched_calls_total)
	r0=$(metric "$PM" product_redis_command_duration_seconds_count)
	if ! callgrind_control -z "$GW_PID" >/dev/null ||
		! callgrind_control -z "$PS_PID" >/dev/null; then
		die "zero failed"
	fi
	res=$(wrk_run "$GW" hot "$SECONDS_RUN" "$TMP/wrk-hot") ||
		die "measured run failed"
	if ! dump gateway "$GW_PID" || ! dump replica "$PS_PID"; then
		die "dump failed"
	fi
	b1=$(metric "$GM" gateway_upstream_batches_total)
	c1=$(metric "$GM" gateway_upstream_batched_calls_total)
	r1=$(metric "$PM" product_redis_command_duration_seconds_count)
	read -r n statuses xcache <<<"$res"
	say "ours: $n hot requests, statuses $statuses, X-Cache $xcache"
	"$PY" -c 'import sys
b, c, r, n = (float(x) for x in sys.argv[1:])
print("== batches: %.0f NNG messages, %.2f calls each; %.2f Redis commands a request"
      % (b, c / max(b, 1), r / max(n, 1)))' $((b1 - b0)) $((c1 - c0)) \
		$((r1 - r0)) "$n" >>"$SUMMARY"
	report gateway "$n"
	report replica "$n"
	for pid in "${PIDS[@]}"; do
		stack_kill_pid "$pid" valgrind
	done
	PIDS=()
fi

if [ "$WHAT" = all ] || [ "$WHAT" = bare ]; then
	port=$(stack_free_port) || exit 1
	body=$(curl -fsS --max-time 5 "${GW:-x}/products/1" 2>/dev/null |
		wc -c)
	[ "${body:-0}" -gt 0 ] || body=495
	cg bare_http "$BBIN/bare_http" "$port" "$body" 1
	wait_http "http://127.0.0.1:$port/" 60 || die "bare_http not up"
	wrk_run "http://127.0.0.1:$port" fixed 3 "$TMP/wrk-bare-warm" \
		>/dev/null || die "bare_http warm-up failed"
	callgrind_control -z "$CG_PID" >/dev/null || die "zero failed"
	res=$(wrk_run "http://127.0.0.1:$port" fixed "$SECONDS_RUN" \
		"$TMP/wrk-bare") || die "bare_http run failed"
	dump bare_http "$CG_PID" || die "dump failed"
	read -r n _ <<<"$res"
	report bare_http "$n"
	stack_kill_pid "$CG_PID" valgrind

	port=$(stack_free_port) || exit 1
	cg bare_nng_server "$BBIN/bare_nng" server "tcp://127.0.0.1:$port" \
		"$CONNS" 373
	srv=$CG_PID
	for ((i = 0; i < 300; i++)); do
		stack_port_free "$port" || break
		sleep 0.2
	done
	callgrind_control -z "$srv" >/dev/null || die "zero failed"
	# The client's count includes its own start, which is small next to
	# SECONDS of round trips.
	timeout $((SECONDS_RUN + 120)) valgrind --tool=callgrind \
		--dump-instr=no --callgrind-out-file="$OUT/bare_nng_client.out" \
		"$BBIN/bare_nng" client "tcp://127.0.0.1:$port" "$CONNS" 1 \
		"$SECONDS_RUN" 64 >"$TMP/nng-client.log" 2>&1 ||
		die "bare_nng client failed: $(tail -n 3 "$TMP/nng-client.log")"
	dump bare_nng_server "$srv" || die "dump failed"
	n=$(grep -o 'total=[0-9]*' "$TMP/nng-client.log" | cut -d= -f2)
	report bare_nng_server "$n"
	report bare_nng_client "$n"
fi
cat "$SUMMARY"
say "files in $OUT"
