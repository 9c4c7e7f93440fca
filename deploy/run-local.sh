#!/usr/bin/env bash
# run-local.sh - the whole stack on loopback, for trying it by hand
# (make run). Ctrl-C stops everything it started.
#
#   Redis           127.0.0.1:$REDIS_PORT (6380), nothing kept on disk
#   PostgreSQL 15   127.0.0.1:$PG_PORT (5433), data kept in var/pg
#   product-service tcp://127.0.0.1:7001..7003 ($REPLICA_PORTS),
#                   PRODUCT_NAME replica-1..3
#   gateway         127.0.0.1:$GATEWAY_PORT (8080)
#   admin ports     gateway 127.0.0.1:$GATEWAY_ADMIN_PORT (9090), replica N
#                   127.0.0.1:$((REPLICA_ADMIN_BASE + N)) (9101..9103)
#
# Writes need the development API key in var/api-key (made on the first
# run; var/api-keys holds its digest for GATEWAY_API_KEYS_FILE).
#
# Logs: var/log/{redis,postgres,migrate,replica-N,gateway}.log. The first
# run creates the database and loads 1000 demo products; later runs keep
# the data. BUILD (default build) says where bin/ is.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
BUILD=${BUILD:-build}
BIN=$BUILD/bin
REDIS_PORT=${REDIS_PORT:-6380}
PG_PORT=${PG_PORT:-5433}
GATEWAY_PORT=${GATEWAY_PORT:-8080}
REPLICA_PORTS=${REPLICA_PORTS:-7001 7002 7003}
# Admin listeners (/metrics, /healthz, /readyz): the gateway's, and one per
# replica (replica N on REPLICA_ADMIN_BASE + N).
GATEWAY_ADMIN_PORT=${GATEWAY_ADMIN_PORT:-9090}
REPLICA_ADMIN_BASE=${REPLICA_ADMIN_BASE:-9100}
VAR=$ROOT/var
LOG=$VAR/log

# No load balancer needs time to notice a stop here, so the drain delays
# are 0 and Ctrl-C is quick. Children run in their own sessions so a Ctrl-C reaches only this script,
# which then stops them in order: gateway, replicas, Redis, PostgreSQL.
export STACK_DETACH=1
# shellcheck source-path=SCRIPTDIR source=stack.sh
. "$ROOT/deploy/stack.sh"

say() {
	echo "run-local: $*"
}

die() {
	echo "run-local: $*" >&2
	exit 1
}

for b in "$BIN/product-service" "$BIN/gateway"; do
	[ -x "$b" ] || die "$b is missing: run 'make BUILD=$BUILD' first"
done

# Every port must be free before anything starts.
taken=()
n_replicas=$(echo $REPLICA_PORTS | wc -w)
admin_ports=$GATEWAY_ADMIN_PORT
for ((i = 1; i <= n_replicas; i++)); do
	admin_ports+=" $((REPLICA_ADMIN_BASE + i))"
done
for p in "$REDIS_PORT" "$PG_PORT" "$GATEWAY_PORT" $REPLICA_PORTS $admin_ports; do
	stack_port_free "$p" || taken+=("$p")
done
if [ ${#taken[@]} -gt 0 ]; then
	die "port(s) ${taken[*]} on 127.0.0.1 already in use (another make run?)." \
		"Stop that, or choose others: REDIS_PORT=$REDIS_PORT PG_PORT=$PG_PORT" \
		"GATEWAY_PORT=$GATEWAY_PORT REPLICA_PORTS=\"$REPLICA_PORTS\""
fi

mkdir -p "$VAR/redis" "$LOG" || exit 1

REDIS_PID=
PG_STARTED=0
REPLICA_PIDS=()
GATEWAY_PID=
STOPPING=0

# Stops what this script started, newest first, each by its own PID.
stop_all() {
	local rc=$?
	trap - EXIT INT TERM
	STOPPING=1
	echo
	if [ -n "$GATEWAY_PID" ]; then
		say "stopping gateway (pid $GATEWAY_PID)"
		stack_kill_pid "$GATEWAY_PID" gateway
	fi
	for pid in "${REPLICA_PIDS[@]}"; do
		say "stopping product-service (pid $pid)"
		stack_kill_pid "$pid" product-service
	done
	if [ -n "$REDIS_PID" ]; then
		say "stopping redis (pid $REDIS_PID)"
		stack_redis_stop "$REDIS_PID"
	fi
	if [ "$PG_STARTED" = 1 ]; then
		say "stopping postgres"
		stack_pg_stop "$VAR/pg"
	fi
	say "stopped; data kept in $VAR/pg"
	exit "$rc"
}
trap stop_all EXIT
trap 'exit 0' INT TERM

say "starting redis on 127.0.0.1:$REDIS_PORT"
stack_redis_start "$VAR/redis" "$REDIS_PORT" "$LOG/redis.log" || exit 1
REDIS_PID=$STACK_REDIS_PID

say "starting postgres on 127.0.0.1:$PG_PORT (data in var/pg)"
PG_STARTED=1
stack_pg_start "$VAR/pg" "$PG_PORT" || exit 1
ln -sfn "$STACK_PG_LOG" "$LOG/postgres.log"

DATABASE_URL=postgresql://postgres@127.0.0.1:$PG_PORT/catalog
REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
export DATABASE_URL REDIS_URL

say "migrating"
if ! "$BIN/product-service" migrate >>"$LOG/migrate.log" 2>&1; then
	tail -n 20 "$LOG/migrate.log" >&2
	die "product-service migrate failed (log: var/log/migrate.log)"
fi

count=$(stack_psql "$PG_PORT" catalog "SELECT count(*) FROM products") ||
	die "cannot count products"
if [ "$count" = 0 ]; then
	say "loading 1000 demo products"
	stack_psql "$PG_PORT" catalog "
INSERT INTO products (sku, name, description, price_cents, currency, stock)
SELECT 'SKU-' || lpad(g::text, 4, '0'),
       adj || ' ' || noun || ' ' || (100 + g % 900),
       format('The %s %s, model %s: %s. Ships in %s business days.',
              lower(adj), lower(noun), 100 + g % 900, blurb, 1 + g % 5),
       199 + (g * 7919) % 49800,
       'USD',
       (g * 37) % 250
FROM generate_series(1, 1000) AS g,
LATERAL (SELECT
  (ARRAY['Classic','Compact','Deluxe','Eco','Ultra','Smart','Rugged',
         'Travel','Pro','Mini'])[1 + g % 10] AS adj,
  (ARRAY['Kettle','Backpack','Desk Lamp','Headphones','Water Bottle',
         'Notebook','Office Chair','Blender','Umbrella','Keyboard',
         'Toaster','Rain Jacket'])[1 + (g / 10) % 12] AS noun,
  (ARRAY['built to last with a two-year warranty',
         'light enough to carry every day',
         'made from recycled materials',
         'a customer favourite since its launch',
         'quiet, efficient and easy to clean'])[1 + g % 5] AS blurb) AS w
" >/dev/null || die "loading demo products failed"
else
	say "keeping the $count products already in the database"
fi

i=0
upstreams=
for p in $REPLICA_PORTS; do
	i=$((i + 1))
	say "starting product-service replica-$i on tcp://127.0.0.1:$p"
	PRODUCT_LISTEN=tcp://127.0.0.1:$p PRODUCT_NAME=replica-$i \
		PRODUCT_ADMIN_LISTEN=127.0.0.1:$((REPLICA_ADMIN_BASE + i)) \
		PRODUCT_DRAIN_DELAY_S=0 \
		setsid "$BIN/product-service" >>"$LOG/replica-$i.log" 2>&1 </dev/null &
	REPLICA_PIDS+=($!)
	upstreams+=${upstreams:+,}tcp://127.0.0.1:$p
done
# A replica listens once it has checked the schema and opened its pools.
for p in $REPLICA_PORTS; do
	for ((t = 0; t < 150; t++)); do
		stack_port_free "$p" || break
		sleep 0.1
	done
	stack_port_free "$p" &&
		die "a product-service did not listen on $p in 15 s (see var/log/replica-*.log)"
done

# Writes need an API key. The first run makes a development key in
# var/api-key (only its owner may read it) and its SHA-256 digest in
# var/api-keys, the gateway's keys file; later runs reuse them.
if [ ! -s "$VAR/api-key" ]; then
	(umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' \
		>"$VAR/api-key") || die "cannot write var/api-key"
	say "made a development API key in var/api-key"
fi
printf %s "$(cat "$VAR/api-key")" | sha256sum | cut -d' ' -f1 \
	>"$VAR/api-keys" || die "cannot write var/api-keys"

say "starting gateway on 127.0.0.1:$GATEWAY_PORT -> $upstreams"
GATEWAY_LISTEN=127.0.0.1:$GATEWAY_PORT GATEWAY_UPSTREAMS=$upstreams \
	GATEWAY_ADMIN_LISTEN=127.0.0.1:$GATEWAY_ADMIN_PORT \
	GATEWAY_API_KEYS_FILE=$VAR/api-keys \
	GATEWAY_DRAIN_DELAY_S=0 \
	setsid "$BIN/gateway" >>"$LOG/gateway.log" 2>&1 </dev/null &
GATEWAY_PID=$!

ready=0
for ((t = 0; t < 150; t++)); do
	if curl -fsS -o /dev/null --max-time 1 \
		"http://127.0.0.1:$GATEWAY_PORT/readyz" 2>/dev/null; then
		ready=1
		break
	fi
	kill -0 "$GATEWAY_PID" 2>/dev/null || break
	sleep 0.1
done
[ "$ready" = 1 ] ||
	die "gateway not ready in 15 s (see var/log/gateway.log)"

G=http://127.0.0.1:$GATEWAY_PORT
cat <<EOF

The stack is up. Try:

  curl -i $G/products/1        # first time: X-Cache: MISS
  curl -i $G/products/1        # again:      X-Cache: HIT
  curl -i -H 'If-None-Match: "1"' $G/products/1    # 304
  curl -s '$G/products?limit=5'
  curl -s '$G/products?limit=5&after=5'
  curl -i $G/healthz
  curl -i $G/readyz
  curl -i -X POST -H 'Content-Type: application/json' \
       -H "Authorization: Bearer \$(cat $VAR/api-key)" \
       -d '{"sku":"MY-1","name":"My product","price_cents":1999}' $G/products
  # writes need the key in var/api-key (made on the first run); without
  # it they get 401
  curl -s http://127.0.0.1:$GATEWAY_ADMIN_PORT/metrics | head -30
  make top                                   # live rate, errors, p99, hit ratio

Logs: $LOG/{gateway,replica-1,replica-2,replica-3,redis,postgres,migrate}.log
psql: psql -h 127.0.0.1 -p $PG_PORT -U postgres catalog
Ctrl-C stops everything.

EOF

# Wait for Ctrl-C; if a process dies on its own, say so and stop the rest.
while :; do
	wait -n "$GATEWAY_PID" "${REPLICA_PIDS[@]}" "$REDIS_PID"
	[ "$STOPPING" = 1 ] && break
	for pid in "$GATEWAY_PID" "${REPLICA_PIDS[@]}" "$REDIS_PID"; do
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "run-local: process $pid exited on its own; stopping the" \
				"rest (logs in var/log/)" >&2
			exit 1
		fi
	done
done
