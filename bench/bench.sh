#!/usr/bin/env bash
# bench.sh - benchmarks the catalog against the machine's ceilings and the
# Node.js peer, all on loopback, in one run (make bench, make bench-smoke).
#
#   BUILD=build bench/bench.sh [full|smoke]
#
# Starts its own Redis and PostgreSQL (deploy/stack.sh) in a scratch folder
# under $BUILD/bench/, loads PRODUCTS products (bench/products.sql), starts
# REPLICAS product-service replicas and GATEWAYS gateways on one port, and,
# when ../shared/peers/express-cache-aside is there, the Express peer with
# NODE_CLUSTER=2 on the same Redis and PostgreSQL (npm ci into a copy in
# the scratch folder). Then REPEAT times, in turn:
#
#   ceilings   redis-benchmark GET of a cached product's size, pgbench
#              select-one-product-by-id, a bare evhttp server
#              ($BUILD/bench/bare_http) and a bare NNG req/rep
#              ($BUILD/bench/bare_nng); chain limit = 1/(1/http + 1/nng +
#              1/redis)
#   scenarios  hot, cold, zipf, notfound, mixed (ours) and hot, cold, zipf,
#              notfound (peer): wrk with bench/wrk/catalog.lua, WARMUP s then
#              DURATION s, Redis flushed before each run
#
# and bench/report.py prints one table (median and min-max over repeats),
# and writes RESULTS/<timestamp>.json, .md and .png.
#
# Knobs (environment): REPLICAS (2), GATEWAYS (1), DURATION (15 s), WARMUP
# (5 s), REPEAT (3), CONNECTIONS (64), THREADS (2, wrk's), PRODUCTS
# (100000), WRK_NICE (0: wrk's nice level), PEER (auto: run the peer when
# its folder is there, and in smoke mode only if its npm ci succeeds; 1:
# fail without it; 0: never), PEER_DIR, RESULTS (bench/results; smoke:
# $BUILD/bench/results), LOG_LEVEL (warn, for our processes),
# PRODUCT_REDIS_TIMEOUT_MS (1000 here), KEEP_BENCH=1 (keep the scratch
# folder), BENCH_TRACE=1 (trace commands with timestamps). smoke:
# DURATION 3, WARMUP 1, REPEAT 1, PRODUCTS 5000, CONNECTIONS 16, WRK_NICE 10.
#
# Fails (exit 1, scratch folder and logs kept) on any socket error, any
# status other than the expected ones (2xx; 404 only and always for
# notfound), a process that dies, or a step that does not finish in time
# (smoke: a scenario whose checks fail is run once more, and the run fails
# when it fails again; the first reason is printed either way).
# Everything it started is stopped by PID on exit, Ctrl-C included.
set -uo pipefail
# BENCH_TRACE=1: trace every command with a timestamp, on stderr.
if [ "${BENCH_TRACE:-0}" = 1 ]; then
	PS4='+ ${EPOCHREALTIME} '
	set -x
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
MODE=${1:-full}
BUILD=${BUILD:-build}
case "$BUILD" in
/*) ;;
*) BUILD=$ROOT/$BUILD ;;
esac

case "$MODE" in
full)
	: "${DURATION:=15}" "${WARMUP:=5}" "${REPEAT:=3}" "${PRODUCTS:=100000}"
	: "${RESULTS:=$ROOT/bench/results}" "${CONNECTIONS:=64}" "${WRK_NICE:=0}"
	;;
smoke)
	# Smoke checks the pipeline, not the numbers, and runs inside make
	# test on a machine that may be busy with other work: 16 connections
	# queue far less than 64, and a niced wrk leaves the CPU to Redis and
	# our processes first when the cores are oversubscribed.
	: "${DURATION:=3}" "${WARMUP:=1}" "${REPEAT:=1}" "${PRODUCTS:=5000}"
	: "${RESULTS:=$BUILD/bench/results}" "${CONNECTIONS:=16}" "${WRK_NICE:=10}"
	;;
*)
	echo "usage: BUILD=dir $0 [full|smoke]" >&2
	exit 2
	;;
esac
REPLICAS=${REPLICAS:-2}
GATEWAYS=${GATEWAYS:-1}
THREADS=${THREADS:-2}
PEER=${PEER:-auto}
# In a git worktree ../shared is next to the main checkout, not this one.
if [ -z "${PEER_DIR:-}" ]; then
	PEER_DIR=$ROOT/../shared/peers/express-cache-aside
	common=$(git -C "$ROOT" rev-parse --path-format=absolute \
		--git-common-dir 2>/dev/null) &&
		[ ! -d "$PEER_DIR" ] &&
		PEER_DIR=$(dirname "$common")/../shared/peers/express-cache-aside
fi
PEER_CLUSTER=2
PG_CLIENTS=16
HOT_IDS=1000
export LOG_LEVEL=${LOG_LEVEL:-warn}
# The replicas' Redis command timeout (default 50 ms) is meant for a Redis
# that answers in a millisecond. On a loaded machine one scheduling stall
# of the replica or of Redis times out every command in flight at once,
# five of them open the circuit breaker, and for its 2 s cooldown reads
# bypass the cache and writes (which must fence in Redis) answer 503. The
# benchmark measures a healthy Redis, so it allows a stall of a second; a
# Redis that is really gone still fails writes, and the run with them.
export PRODUCT_REDIS_TIMEOUT_MS=${PRODUCT_REDIS_TIMEOUT_MS:-1000}
# Admin listeners on loopback ports of their own (the defaults, 0.0.0.0:9090
# and :9100, are shared through SO_REUSEPORT with any other stack here).
export GATEWAY_ADMIN_LISTEN=${GATEWAY_ADMIN_LISTEN:-127.0.0.1:0}
export PRODUCT_ADMIN_LISTEN=${PRODUCT_ADMIN_LISTEN:-127.0.0.1:0}

BIN=$BUILD/bin
BBIN=$BUILD/bench
LUA=$ROOT/bench/wrk/catalog.lua
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
REPORT=$ROOT/bench/report.py

export STACK_DETACH=1
# shellcheck source-path=SCRIPTDIR source=../deploy/stack.sh
. "$ROOT/deploy/stack.sh"

BENCH_T0=$(date +%s)
say() {
	echo "bench: [$(($(date +%s) - BENCH_T0))s] $*"
}

# The reason is repeated as the last line on exit, after the log tails,
# because CI shows only the end of the output.
FAIL_REASON=
die() {
	FAIL_REASON=$*
	echo "bench: FAILED: $*" >&2
	exit 1
}

for v in REPLICAS GATEWAYS DURATION WARMUP REPEAT CONNECTIONS THREADS \
	PRODUCTS; do
	case "${!v}" in
	'' | *[!0-9]* | 0*) die "$v must be a positive integer, not '${!v}'" ;;
	esac
done
case "$WRK_NICE" in
'' | *[!0-9]* | ??*?) die "WRK_NICE must be 0..19, not '$WRK_NICE'" ;;
esac
[ "$PRODUCTS" -ge "$HOT_IDS" ] || die "PRODUCTS must be at least $HOT_IDS"
[ "$CONNECTIONS" -ge "$THREADS" ] || die "CONNECTIONS must be >= THREADS"

# --- tools -----------------------------------------------------------------

need=()
for t in wrk redis-server redis-cli redis-benchmark gnuplot curl "$PY"; do
	command -v "$t" >/dev/null 2>&1 || need+=("$t")
done
[ -x "$STACK_PG_BIN/pgbench" ] || need+=(pgbench)
for b in "$BIN/product-service" "$BIN/gateway" "$BBIN/bare_http" \
	"$BBIN/bare_nng"; do
	[ -x "$b" ] || need+=("$b")
done
PEER_ASKED=$PEER
if [ "$PEER" != 0 ] && [ -f "$PEER_DIR/server.js" ]; then
	PEER=1
	for t in node npm; do
		command -v "$t" >/dev/null 2>&1 || need+=("$t")
	done
else
	[ "$PEER" = 1 ] && die "PEER=1 but $PEER_DIR/server.js is missing"
	PEER=0
fi
[ ${#need[@]} -eq 0 ] || die "missing: ${need[*]}" \
	"(make bench installs the packages and builds the binaries)"

# --- scratch folder and cleanup --------------------------------------------

mkdir -p "$BBIN" "$RESULTS" || exit 1
for old in "$BBIN"/run.*; do
	[ -d "$old" ] || continue
	# A failed run's logs stay until someone removes them.
	[ -f "$old/KEPT" ] && continue
	pidf=$old/pg/data/postmaster.pid
	if [ -f "$pidf" ] && kill -0 "$(head -n 1 "$pidf")" 2>/dev/null; then
		continue
	fi
	stack_pg_remove "$old/pg" 2>/dev/null
	rm -rf "$old"
done
TMP=$(mktemp -d "$BBIN/run.XXXXXX") || exit 1
chmod 755 "$BBIN" "$TMP"
LOG=$TMP/log
mkdir -p "$LOG"
RUNS=$TMP/runs.jsonl
: >"$RUNS"

REDIS_PID=
PG_STARTED=0
GATEWAY_PIDS=()
REPLICA_PIDS=()
PEER_PID=
BARE_PID=

# stop_bare: stops the bare ceiling server, if one runs.
stop_bare() {
	if [ -n "$BARE_PID" ]; then
		stack_kill_pid "$BARE_PID" bare-server
		BARE_PID=
	fi
}

# stop_peer: stops the peer's primary, which stops its workers; then any
# worker left over.
stop_peer() {
	local w workers
	[ -n "$PEER_PID" ] || return 0
	workers=$(children_of "$PEER_PID")
	stack_kill_pid "$PEER_PID" node
	for w in $workers; do
		kill -0 "$w" 2>/dev/null && kill -KILL "$w" 2>/dev/null
	done
	PEER_PID=
}

cleanup() {
	local rc=$? pid f
	trap - EXIT INT TERM
	if [ -n "$FG_PID" ]; then
		# timeout(1) passes the TERM on to its command.
		kill -TERM "$FG_PID" 2>/dev/null
		wait "$FG_PID" 2>/dev/null
	fi
	stop_bare
	stop_peer
	for pid in "${GATEWAY_PIDS[@]}"; do
		stack_kill_pid "$pid" gateway
	done
	for pid in "${REPLICA_PIDS[@]}"; do
		stack_kill_pid "$pid" product-service
	done
	[ -n "$REDIS_PID" ] && stack_redis_stop "$REDIS_PID"
	[ "$PG_STARTED" = 1 ] && stack_pg_stop "$TMP/pg"
	if [ "$rc" -eq 0 ] && [ "${KEEP_BENCH:-0}" != 1 ]; then
		stack_pg_remove "$TMP/pg"
		rm -rf "$TMP"
	else
		# After a failure (not a Ctrl-C), the ends of the logs.
		if [ "$rc" -eq 1 ]; then
			for f in "$LOG"/*.log; do
				[ -s "$f" ] || continue
				echo "---- tail of $f" >&2
				tail -n 15 "$f" >&2
			done
		fi
		[ "$rc" -ne 0 ] && : >"$TMP/KEPT"
		echo "bench: scratch folder and logs kept in $TMP" >&2
		[ -n "$FAIL_REASON" ] && echo "bench: FAILED: $FAIL_REASON" >&2
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_port PORT SECONDS PID: waits until something listens on PORT;
# fails when PID dies first.
wait_port() {
	local port=$1 secs=$2 pid=$3 i
	for ((i = 0; i < secs * 10; i++)); do
		stack_port_free "$port" || return 0
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# redis PORT ARGS...: one redis-cli command, bounded.
rcli() {
	timeout 30 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"
}

# fg CMD...: runs CMD and waits for it. It runs in the background and the
# shell waits with the wait builtin, which a trapped signal interrupts: a
# Ctrl-C then stops the run at once, also while wrk (which ignores
# SIGINT) runs. cleanup stops FG_PID.
FG_PID=
fg() {
	local rc
	"$@" &
	FG_PID=$!
	wait "$FG_PID"
	rc=$?
	FG_PID=
	return "$rc"
}

psql_q() {
	timeout 120 "$STACK_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 \
		-h 127.0.0.1 -p "$PG_PORT" -U postgres -d catalog -tA "$@"
}

# --- process accounting ----------------------------------------------------

# children_of PID: prints the PIDs whose parent is PID.
children_of() {
	"$PY" "$REPORT" children "$1"
}

# snapshot SYSTEM: one line "NAME PID TICKS HWM_KB" per process we watch
# for SYSTEM (ours or peer): CPU ticks (utime+stime) and VmHWM. NAME
# postgres is the postmaster and all its backends, counted as one.
snapshot() {
	local sys=$1 i
	local -a spec=()
	if [ "$sys" = ours ]; then
		for ((i = 0; i < ${#GATEWAY_PIDS[@]}; i++)); do
			spec+=("gateway-$((i + 1))=${GATEWAY_PIDS[$i]}")
		done
		for ((i = 0; i < ${#REPLICA_PIDS[@]}; i++)); do
			spec+=("replica-$((i + 1))=${REPLICA_PIDS[$i]}")
		done
	else
		spec+=("node-primary=$PEER_PID" "node-worker=*$PEER_PID")
	fi
	spec+=("redis=$REDIS_PID" "postgres=+$PG_PID")
	"$PY" "$REPORT" snap "${spec[@]}"
}

# check_alive: every process of ours, Redis, PostgreSQL and the peer runs.
check_alive() {
	local pid
	for pid in "${GATEWAY_PIDS[@]}" "${REPLICA_PIDS[@]}" "$REDIS_PID" \
		"$PG_PID" ${PEER_PID:+"$PEER_PID"}; do
		kill -0 "$pid" 2>/dev/null ||
			die "process $pid died (logs in $LOG)"
	done
	# The peer's primary replaces a dead worker and says so.
	if [ -n "$PEER_PID" ] && grep -q 'died' "$LOG/peer.log"; then
		die "a peer worker died: $(grep -m1 'died' "$LOG/peer.log")"
	fi
}

# --- the stack ------------------------------------------------------------

REDIS_PORT=$(stack_free_port) || exit 1
PG_PORT=$(stack_free_port) || exit 1
GW_PORT=$(stack_free_port) || exit 1
PEER_PORT=$(stack_free_port) || exit 1
BARE_PORT=$(stack_free_port) || exit 1
NNG_PORT=$(stack_free_port) || exit 1
REPLICA_PORTS=()
for ((i = 0; i < REPLICAS; i++)); do
	REPLICA_PORTS+=("$(stack_free_port)") || exit 1
done

say "mode $MODE: REPLICAS=$REPLICAS GATEWAYS=$GATEWAYS DURATION=$DURATION" \
	"WARMUP=$WARMUP REPEAT=$REPEAT CONNECTIONS=$CONNECTIONS" \
	"THREADS=$THREADS PRODUCTS=$PRODUCTS peer=$([ "$PEER" = 1 ] &&
		echo yes || echo no); scratch $TMP"

stack_redis_start "$TMP/redis" "$REDIS_PORT" "$LOG/redis.log" || exit 1
REDIS_PID=$STACK_REDIS_PID
PG_STARTED=1
stack_pg_start "$TMP/pg" "$PG_PORT" || exit 1
PG_PID=$STACK_PG_PID
ln -sfn "$STACK_PG_LOG" "$LOG/postgres.log"

export DATABASE_URL=postgresql://postgres@127.0.0.1:$PG_PORT/catalog
export REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0

timeout 60 "$BIN/product-service" migrate >"$LOG/migrate.log" 2>&1 ||
	die "product-service migrate failed (see $LOG/migrate.log)"
say "loading $PRODUCTS products"
t0=$(date +%s)
psql_q -v products="$PRODUCTS" -f "$ROOT/bench/products.sql" >/dev/null ||
	die "loading products failed"
psql_q -c "VACUUM ANALYZE products" >/dev/null || die "VACUUM failed"
say "loaded in $(($(date +%s) - t0)) s"

upstreams=
for ((i = 0; i < REPLICAS; i++)); do
	p=${REPLICA_PORTS[$i]}
	PRODUCT_LISTEN=tcp://127.0.0.1:$p PRODUCT_NAME=replica-$((i + 1)) \
		setsid "$BIN/product-service" >>"$LOG/replica-$((i + 1)).log" \
		2>&1 </dev/null &
	REPLICA_PIDS+=($!)
	upstreams+=${upstreams:+,}tcp://127.0.0.1:$p
done
for ((i = 0; i < REPLICAS; i++)); do
	wait_port "${REPLICA_PORTS[$i]}" 15 "${REPLICA_PIDS[$i]}" ||
		die "replica-$((i + 1)) did not listen in 15 s"
done
# Writes need an API key: one for this run, its digest in the keys file;
# wrk (catalog.lua) and probe_put read it from BENCH_API_KEY.
BENCH_API_KEY=bench-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
export BENCH_API_KEY
printf %s "$BENCH_API_KEY" | sha256sum | cut -d' ' -f1 >"$TMP/api-keys"
for ((i = 0; i < GATEWAYS; i++)); do
	GATEWAY_LISTEN=127.0.0.1:$GW_PORT GATEWAY_UPSTREAMS=$upstreams \
		GATEWAY_API_KEYS_FILE=$TMP/api-keys \
		setsid "$BIN/gateway" >>"$LOG/gateway-$((i + 1)).log" 2>&1 \
		</dev/null &
	GATEWAY_PIDS+=($!)
done
GW=http://127.0.0.1:$GW_PORT
ready=0
for ((t = 0; t < 150; t++)); do
	if curl -fsS -o /dev/null --max-time 1 "$GW/readyz" 2>/dev/null; then
		ready=1
		break
	fi
	sleep 0.1
done
[ "$ready" = 1 ] || die "gateway not ready in 15 s"
say "ours: $GATEWAYS gateway(s) on $GW, replicas $upstreams"

# Sizes for the ceilings: our JSON answer and our cache entry.
BODY_BYTES=$(curl -fsS --max-time 5 "$GW/products/1" | wc -c) ||
	die "GET /products/1 failed"
VALUE_BYTES=0
for ((t = 0; t < 50; t++)); do
	VALUE_BYTES=$(rcli STRLEN product:1) || die "redis-cli failed"
	[ "$VALUE_BYTES" -gt 1 ] && break
	sleep 0.1
done
[ "$VALUE_BYTES" -gt 1 ] || die "product:1 was not cached after a GET"
say "product answer $BODY_BYTES bytes, cache entry $VALUE_BYTES bytes"

PEER_URL=
if [ "$PEER" = 1 ]; then
	say "peer: npm ci in a copy of $PEER_DIR"
	mkdir -p "$TMP/peer"
	cp "$PEER_DIR"/package.json "$PEER_DIR"/package-lock.json \
		"$PEER_DIR"/server.js "$TMP/peer/" || die "cannot copy the peer"
	if ! fg timeout 300 npm ci --prefix "$TMP/peer" --no-audit --no-fund \
		--prefer-offline --loglevel=error >"$LOG/npm.log" 2>&1; then
		why="npm ci for the peer failed: $(grep -m1 'npm ERR!' \
			"$LOG/npm.log") (see $LOG/npm.log)"
		# The smoke run checks our pipeline; without the registry it
		# goes on without the peer, and says so. A full run compares.
		[ "$MODE" = smoke ] && [ "$PEER_ASKED" != 1 ] || die "$why"
		say "peer: SKIPPED: $why"
		PEER=0
	fi
fi
if [ "$PEER" = 1 ]; then
	# The peer caches in Redis database 1: its JSON entries and our
	# protobuf ones share key names (product:<id>), and a fill still in
	# flight when a run ends must not leave one system's entry for the
	# other to read (the peer answers 500 to ours). FLUSHALL clears both.
	(cd "$TMP/peer" && PORT=$PEER_PORT HOST=127.0.0.1 \
		REDIS_URL=redis://127.0.0.1:$REDIS_PORT/1 \
		DATABASE_URL=postgres://postgres@127.0.0.1:$PG_PORT/catalog \
		NODE_CLUSTER=$PEER_CLUSTER NODE_ENV=production \
		exec setsid node server.js) >>"$LOG/peer.log" 2>&1 </dev/null &
	PEER_PID=$!
	PEER_URL=http://127.0.0.1:$PEER_PORT
	ready=0
	for ((t = 0; t < 300; t++)); do
		if curl -fsS -o /dev/null --max-time 1 "$PEER_URL/products/1" \
			2>/dev/null; then
			ready=1
			break
		fi
		kill -0 "$PEER_PID" 2>/dev/null || break
		sleep 0.1
	done
	[ "$ready" = 1 ] || die "peer not answering in 30 s"
	say "peer: $PEER_URL (node $(node --version), NODE_CLUSTER=$PEER_CLUSTER)"
fi

# --- one wrk run -----------------------------------------------------------

# run_wrk SCENARIO URL SECONDS PHASE OUT: wrk with catalog.lua; sets
# WRK_RES to the BENCH_RESULT JSON. Fails when wrk fails or prints none.
WRK_RES=
run_wrk() {
	local scen=$1 url=$2 secs=$3 phase=$4 out=$5 line
	WRK_RES=
	BENCH_SCENARIO=$scen BENCH_PRODUCTS=$PRODUCTS BENCH_HOT=$HOT_IDS \
		BENCH_THREADS=$THREADS BENCH_SEED=$RANDOM BENCH_COLD_PHASE=$phase \
		fg timeout -k 5 $((secs + 60)) nice -n "$WRK_NICE" \
		wrk -t "$THREADS" -c "$CONNECTIONS" \
		-d "${secs}s" --timeout 5s -s "$LUA" "$url" >"$out" 2>&1 || {
		cat "$out" >&2
		echo "bench: wrk failed on $scen $url" >&2
		return 1
	}
	line=$(grep -m1 '^BENCH_RESULT ' "$out") || {
		cat "$out" >&2
		echo "bench: wrk printed no BENCH_RESULT ($scen $url)" >&2
		return 1
	}
	WRK_RES=${line#BENCH_RESULT }
}

# check_run JSON SCENARIO WHAT [warmup]: fails loudly on socket errors and
# unexpected statuses (and, but for a warm-up, on no request at all).
check_run() {
	local why
	why=$("$PY" "$REPORT" check "$2" ${4:+"$4"} <<<"$1") || {
		FAILURES+=("$3: $why")
		echo "bench: FAILED: $3: $why" >&2
		return 1
	}
}

FAILURES=()
# smoke: scenarios that failed once and passed when run again (see
# run_scenario); printed at the end, and a second failure fails the run.
RETRIED=()
MIXED_STATE=unknown

# probe_put: PUT product 1 with its own fields and a new price. Sets
# MIXED_STATE to ok, or to skipped when the gateway answers 405; any other
# answer fails the run.
probe_put() {
	local body code
	body=$(psql_q -c "SELECT json_build_object('sku', sku, 'name', name,
		'description', description, 'price_cents', price_cents + 1,
		'currency', currency, 'stock', stock) FROM products WHERE id = 1") ||
		die "cannot read product 1"
	code=$(curl -sS -o "$TMP/put.out" -w '%{http_code}' --max-time 10 \
		-X PUT -H 'Content-Type: application/json' --data-binary "$body" \
		-H "Authorization: Bearer $BENCH_API_KEY" \
		"$GW/products/1") || die "PUT /products/1: curl failed"
	case "$code" in
	405)
		MIXED_STATE=skipped
		say "mixed: skipped: PUT not supported (gateway answers 405)"
		;;
	2??)
		MIXED_STATE=ok
		;;
	*)
		die "PUT /products/1 answered $code: $(head -c 400 "$TMP/put.out")"
		;;
	esac
}

# record JSON: appends one run record (one line) to RUNS.
record() {
	echo "$1" >>"$RUNS"
}

# scenario SYSTEM SCENARIO REPEAT: Redis flushed, warm-up, (cold: flushed
# again), measured run; records the result with CPU and RSS per process.
scenario() {
	local sys=$1 scen=$2 rep=$3 url secs=$DURATION out res warm note=
	local before after rps phase cap
	url=$GW
	[ "$sys" = peer ] && url=$PEER_URL
	out=$TMP/wrk-$sys-$scen-$rep
	if [ "$scen" = mixed ]; then
		[ "$MIXED_STATE" = unknown ] && probe_put
		if [ "$MIXED_STATE" = skipped ]; then
			record "{\"kind\":\"scenario\",\"system\":\"$sys\",\"scenario\":\"$scen\",\"repeat\":$rep,\"skipped\":\"PUT not supported\"}"
			return 0
		fi
	fi
	rcli FLUSHALL >/dev/null || die "FLUSHALL failed"
	run_wrk "$scen" "$url" "$WARMUP" 0.5 "$out.warmup" ||
		die "warm-up $sys $scen"
	warm=$WRK_RES
	check_run "$warm" "$scen" "warm-up $sys $scen" warmup || return 0
	if [ "$scen" = cold ]; then
		# Every id once: at the rate the warm-up saw, the measured run
		# may ask at most half the products (the measured rate can be
		# higher); the flush below makes them all misses again.
		rps=$("$PY" "$REPORT" field rps <<<"$warm")
		cap=$("$PY" -c 'import sys
print(max(1, int(0.5 * int(sys.argv[1]) / max(float(sys.argv[2]), 1))))' \
			"$PRODUCTS" "$rps")
		if [ "$cap" -lt "$secs" ]; then
			secs=$cap
			note="measured ${secs} s: half the ids last that long at the warm-up rate"
		fi
		rcli FLUSHALL >/dev/null || die "FLUSHALL failed"
	fi
	phase=$("$PY" -c "print(($rep - 1) / $REPEAT)")
	before=$(snapshot "$sys")
	run_wrk "$scen" "$url" "$secs" "$phase" "$out" || die "$sys $scen"
	res=$WRK_RES
	after=$(snapshot "$sys")
	check_alive
	record "$("$PY" "$REPORT" record scenario "$sys" "$scen" "$rep" \
		"$res" "$before" "$after" "$(getconf CLK_TCK)" "$note")" ||
		die "cannot record $sys $scen"
	check_run "$res" "$scen" "$sys $scen repeat $rep" || return 0
	if [ "$scen" = mixed ]; then
		local bad
		bad=$(psql_q -c "SELECT bench.mismatches()") ||
			die "cannot check the PUT bodies"
		[ "$bad" = 0 ] || die "mixed: $bad products differ from" \
			"bench/products.sql besides their price: catalog.lua and" \
			"products.sql disagree"
	fi
	say "$(printf '%-4s %-8s #%d' "$sys" "$scen" "$rep"):" \
		"$("$PY" "$REPORT" brief <<<"$res")${note:+ ($note)}"
}

# run_scenario SYSTEM SCENARIO REPEAT: scenario(), and in smoke mode once
# more when its checks failed. The smoke run lives inside make test on
# machines that may be busy with other work; it is there so that the
# pipeline cannot rot, which a failure that does not come back does not
# show. The first failure's reason is kept and printed; failing twice
# fails the run. A full run never retries.
run_scenario() {
	local n=${#FAILURES[@]} first
	scenario "$@"
	if [ "$MODE" = smoke ] && [ ${#FAILURES[@]} -gt "$n" ]; then
		first=${FAILURES[*]:$n}
		FAILURES=("${FAILURES[@]:0:$n}")
		say "smoke: $1 $2 failed ($first); running it once more"
		scenario "$@"
		[ ${#FAILURES[@]} -eq "$n" ] && RETRIED+=("$1 $2: $first")
	fi
}

# --- ceilings --------------------------------------------------------------

GW_THREADS=${GATEWAY_THREADS:-0}
[ "$GW_THREADS" = 0 ] && GW_THREADS=$(nproc)

ceiling_redis() {
	local rep=$1 n out line
	n=$((DURATION * 20000))
	out=$TMP/redis-benchmark-$rep
	fg timeout -k 5 $((DURATION * 10 + 60)) redis-benchmark -h 127.0.0.1 \
		-p "$REDIS_PORT" -c "$CONNECTIONS" -n "$n" -d "$VALUE_BYTES" \
		-P 1 -t set,get --csv >"$out" 2>&1 || {
		cat "$out" >&2
		die "redis-benchmark failed"
	}
	line=$(grep -m1 '^"GET"' "$out") || {
		cat "$out" >&2
		die "redis-benchmark printed no GET line"
	}
	rcli DEL key:__rand_int__ >/dev/null
	record "$("$PY" "$REPORT" record redis "$rep" "$line")" ||
		die "cannot record redis-benchmark"
	say "ceiling redis-benchmark GET ${VALUE_BYTES}B #$rep:" \
		"$(tail -n 1 "$RUNS" | "$PY" "$REPORT" brief)"
}

ceiling_pg() {
	local rep=$1 out script
	script=$TMP/pgbench.sql
	out=$TMP/pgbench-$rep
	cat >"$script" <<EOF
\set id random(1, $PRODUCTS)
SELECT id, sku, name, description, price_cents, currency, stock, version, (extract(epoch from created_at)*1000000)::bigint, (extract(epoch from updated_at)*1000000)::bigint FROM products WHERE id = :id;
EOF
	rm -f "$TMP"/pgbench-log-"$rep".*
	fg timeout -k 5 $((DURATION + 60)) \
		"$STACK_PG_BIN/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U postgres \
		-n -M prepared -c "$PG_CLIENTS" -j "$THREADS" -T "$DURATION" \
		-f "$script" -l --sampling-rate 0.2 \
		--log-prefix "$TMP/pgbench-log-$rep" catalog >"$out" 2>&1 || {
		cat "$out" >&2
		die "pgbench failed"
	}
	record "$("$PY" "$REPORT" record pgbench "$rep" "$out" \
		"$TMP"/pgbench-log-"$rep".*)" || die "cannot parse pgbench output"
	rm -f "$TMP"/pgbench-log-"$rep".*
	say "ceiling pgbench select-by-id #$rep:" \
		"$(tail -n 1 "$RUNS" | "$PY" "$REPORT" brief)"
}

ceiling_http() {
	local rep=$1 res out
	out=$TMP/wrk-bare-http-$rep
	setsid "$BBIN/bare_http" "$BARE_PORT" "$BODY_BYTES" "$GW_THREADS" \
		>>"$LOG/bare-http.log" 2>&1 </dev/null &
	BARE_PID=$!
	wait_port "$BARE_PORT" 10 "$BARE_PID" || die "bare_http did not start"
	run_wrk fixed "http://127.0.0.1:$BARE_PORT" "$WARMUP" 0 \
		"$out.warmup" || die "bare_http warm-up"
	run_wrk fixed "http://127.0.0.1:$BARE_PORT" "$DURATION" 0 "$out" ||
		die "bare_http"
	res=$WRK_RES
	stop_bare
	check_run "$res" fixed "bare_http" || return 0
	record "$("$PY" "$REPORT" record http "$rep" "$res")" ||
		die "cannot record bare_http"
	say "ceiling bare evhttp ${BODY_BYTES}B #$rep:" \
		"$("$PY" "$REPORT" brief <<<"$res")"
}

ceiling_nng() {
	local rep=$1 out url=tcp://127.0.0.1:$NNG_PORT
	out=$TMP/bare-nng-$rep
	setsid "$BBIN/bare_nng" server "$url" "$CONNECTIONS" "$VALUE_BYTES" \
		>>"$LOG/bare-nng.log" 2>&1 </dev/null &
	BARE_PID=$!
	wait_port "$NNG_PORT" 10 "$BARE_PID" || die "bare_nng server did not start"
	fg timeout -k 5 $((DURATION + 60)) "$BBIN/bare_nng" client "$url" \
		"$CONNECTIONS" "$GW_THREADS" "$DURATION" 64 >"$out" 2>&1 || {
		cat "$out" >&2
		die "bare_nng client failed"
	}
	stop_bare
	record "$("$PY" "$REPORT" record nng "$rep" "$(grep -m1 '^BARE_NNG' "$out")")" ||
		die "cannot parse bare_nng output"
	say "ceiling bare nng req/rep #$rep:" \
		"$(tail -n 1 "$RUNS" | "$PY" "$REPORT" brief)"
}

# --- the run ---------------------------------------------------------------

SCEN_OURS=(hot cold zipf notfound mixed)
SCEN_PEER=(hot cold zipf notfound)
# Both systems live through the whole run: warm each up once first, not
# recorded (V8 compiles the peer's paths, our pools fill), so that the
# first scenario does not pay for it.
first=$((WARMUP > 3 ? WARMUP : 3))
for sys in ours $([ "$PEER" = 1 ] && echo peer); do
	url=$GW
	[ "$sys" = peer ] && url=$PEER_URL
	rcli FLUSHALL >/dev/null || die "FLUSHALL failed"
	run_wrk zipf "$url" "$first" 0 "$TMP/wrk-$sys-first" ||
		die "first warm-up of $sys"
	res=$WRK_RES
	check_run "$res" zipf "first warm-up of $sys" warmup ||
		die "first warm-up of $sys failed"
	say "warmed up $sys for $first s: $("$PY" "$REPORT" brief <<<"$res")"
done

started=$(date +%s)
for ((rep = 1; rep <= REPEAT; rep++)); do
	say "== repeat $rep of $REPEAT"
	ceiling_redis "$rep"
	ceiling_pg "$rep"
	ceiling_http "$rep"
	ceiling_nng "$rep"
	for scen in "${SCEN_OURS[@]}"; do
		run_scenario ours "$scen" "$rep"
		if [ "$PEER" = 1 ] && [[ " ${SCEN_PEER[*]} " == *" $scen "* ]]; then
			run_scenario peer "$scen" "$rep"
		fi
	done
done
say "measured in $(($(date +%s) - started)) s"
# Not a failure (reads bypass the cache, and a refused write already
# failed its scenario), but it says the machine was too busy for the
# figures to mean much.
opened=$(cat "$LOG"/replica-*.log | grep -c 'PS-REDIS-BREAKER.*-> open')
[ "$opened" -gt 0 ] && say "note: a replica's Redis circuit breaker" \
	"opened $opened time(s) (Redis timeouts: an overloaded machine?)"

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
meta=$("$PY" - <<EOF
import json, os, platform, subprocess
def out(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True,
                              timeout=10).stdout.strip().splitlines()[0]
    except Exception:
        return None
model = None
try:
    for l in open("/proc/cpuinfo"):
        if l.startswith("model name"):
            model = l.split(":", 1)[1].strip(); break
except OSError:
    pass
print(json.dumps({
  "timestamp": "$STAMP", "mode": "$MODE",
  "config": {"replicas": $REPLICAS, "gateways": $GATEWAYS,
    "duration_s": $DURATION, "warmup_s": $WARMUP, "repeat": $REPEAT,
    "connections": $CONNECTIONS, "threads": $THREADS,
    "products": $PRODUCTS, "hot_ids": $HOT_IDS, "pgbench_clients": $PG_CLIENTS,
    "peer_cluster": $PEER_CLUSTER if $PEER else None,
    "gateway_threads": $GW_THREADS, "log_level": "$LOG_LEVEL",
    "body_bytes": $BODY_BYTES, "cache_value_bytes": $VALUE_BYTES},
  "machine": {"cpus": os.cpu_count(), "cpu_model": model,
    "kernel": platform.release(),
    "mem_kb": int(open("/proc/meminfo").readline().split()[1])},
  "versions": {"wrk": out("wrk", "-v"),
    "redis": out("redis-server", "--version"),
    "postgres": out("$STACK_PG_BIN/postgres", "--version"),
    "node": out("node", "--version") if $PEER else None},
}))
EOF
) || die "cannot describe the machine"

"$PY" "$REPORT" report "$RUNS" "$RESULTS/$STAMP" "$meta" "${FAILURES[@]}" ||
	die "report failed"
for r in "${RETRIED[@]}"; do
	say "note: smoke passed on a second run after: $r"
done
if [ ${#FAILURES[@]} -gt 0 ]; then
	die "${#FAILURES[@]} run(s) failed: ${FAILURES[*]}"
fi
say "ok"
