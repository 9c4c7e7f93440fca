#!/usr/bin/env bash
# container-test.sh - the images and deploy/compose.yaml end to end, under
# podman and podman-compose (make container-test):
#
#   1. builds the images (images.sh --testdeps);
#   2. starts the compose stack as project catalog-ct-PID, the gateway on a
#      free 127.0.0.1 port, and waits for GET /readyz;
#   3. runs every service's health check once (no systemd here to run them
#      on a timer);
#   4. creates a product through POST /products, or, while the gateway
#      answers 405 (write API not there yet), inserts it with psql in the
#      postgres container, and says which;
#   5. reads it twice through the gateway's published port: 200 MISS, then
#      200 HIT (X-Cache);
#   6. stops one replica container and reads again: 200 every time;
#   7. tears everything down (containers, network, volume of this project
#      only), also on failure, after printing the containers' logs.
#
# Prints the time of each step and the image sizes. Needs root, podman,
# runc, podman-compose, debootstrap and curl.
set -uo pipefail
# shellcheck source=env.sh
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
# shellcheck source=../stack.sh
. "$ROOT/deploy/stack.sh"

cd "$ROOT" || exit 1
for tool in podman podman-compose curl; do
	command -v "$tool" >/dev/null || die "$tool is missing (see deploy/DEPLOY.md)"
done
[ "$(id -u)" -eq 0 ] || die "needs root (rootful podman)"

PROJECT=catalog-ct-$$
COMPOSE=(podman-compose -p "$PROJECT" -f deploy/compose.yaml)
LOGDIR=$ROOT/var/container-test
mkdir -p "$LOGDIR"
LOG=$LOGDIR/compose.log
: >"$LOG"
T0=$(now_ms)
TIMES=()
STARTED=0
PASSED=0
FAILED=0

# step NAME START_MS: records how long a step took.
step() {
	TIMES+=("$(printf '%-28s %6s s' "$1" "$(secs_since "$2")")")
}

check() { # DESCRIPTION CONDITION...
	local what=$1
	shift
	if "$@"; then
		PASSED=$((PASSED + 1))
		say "ok   $what"
	else
		FAILED=$((FAILED + 1))
		say "FAIL $what"
	fi
}

both() { # A A2 B B2: A = A2 and B = B2
	[ "$1" = "$2" ] && [ "$3" = "$4" ]
}

container() { # SERVICE -> container name
	podman ps -a --filter "label=io.podman.compose.project=$PROJECT" \
		--filter "label=com.docker.compose.service=$1" --format '{{.Names}}' |
		head -n 1
}

teardown() {
	local rc=$? t c
	trap - EXIT INT TERM
	[ "$STARTED" = 1 ] || exit "$rc"
	if [ "$rc" -ne 0 ] || [ "$FAILED" -ne 0 ]; then
		for c in $(podman ps -a --filter "label=io.podman.compose.project=$PROJECT" \
			--format '{{.Names}}'); do
			echo "---- podman logs $c (last 30 lines)"
			podman logs --tail 30 "$c" 2>&1
		done
	fi
	t=$(now_ms)
	"${COMPOSE[@]}" down -v -t 10 >>"$LOG" 2>&1
	# Whatever podman-compose 1.0 leaves (its network, anything half made).
	for c in $(podman ps -aq --filter "label=io.podman.compose.project=$PROJECT"); do
		podman rm -f "$c" >>"$LOG" 2>&1
	done
	for n in $(podman network ls -q --filter "label=io.podman.compose.project=$PROJECT"); do
		podman network rm -f "$n" >>"$LOG" 2>&1
	done
	for v in $(podman volume ls -q --filter "label=io.podman.compose.project=$PROJECT"); do
		podman volume rm -f "$v" >>"$LOG" 2>&1
	done
	step "tear down" "$t"
	left=$(podman ps -aq --filter "label=io.podman.compose.project=$PROJECT" | wc -l)
	left=$((left + $(podman network ls -q --filter "label=io.podman.compose.project=$PROJECT" | wc -l)))
	left=$((left + $(podman volume ls -q --filter "label=io.podman.compose.project=$PROJECT" | wc -l)))
	if [ "$left" -ne 0 ]; then
		say "FAIL tear down left $left object(s) of $PROJECT"
		FAILED=$((FAILED + 1))
	fi
	step "total" "$T0"
	echo
	say "timings:"
	printf '  %s\n' "${TIMES[@]}"
	say "image sizes:"
	podman images --format '  {{.Repository}}:{{.Tag}}  {{.Size}}' |
		grep -E "$CATALOG_IMAGE_PREFIX/|catalog-testdeps/|/debian:" | sort
	say "compose log: ${LOG#"$ROOT"/}"
	say "$PASSED passed, $FAILED failed"
	[ "$rc" -eq 0 ] && [ "$FAILED" -eq 0 ] && exit 0
	exit 1
}
trap teardown EXIT
trap 'exit 130' INT TERM

t=$(now_ms)
bash "$DOCKER_DIR/images.sh" --testdeps || exit 1
step "images (base + 4 builds)" "$t"

GATEWAY_PORT=$(stack_free_port) || exit 1
export GATEWAY_PORT
# An API key for this run; the gateway gets its digest (CATALOG_API_KEYS).
API_KEY=ct-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
CATALOG_API_KEYS=$LOGDIR/api-keys
printf %s "$API_KEY" | sha256sum | cut -d' ' -f1 >"$CATALOG_API_KEYS"
chmod 644 "$CATALOG_API_KEYS" # the gateway runs as 10001
export CATALOG_API_KEYS
G=http://127.0.0.1:$GATEWAY_PORT

t=$(now_ms)
say "starting project $PROJECT (gateway on 127.0.0.1:$GATEWAY_PORT)"
STARTED=1
if ! "${COMPOSE[@]}" up -d --no-build >>"$LOG" 2>&1; then
	tail -n 20 "$LOG" >&2
	die "podman-compose up failed"
fi
step "compose up" "$t"

t=$(now_ms)
ready=0
for ((i = 0; i < 1200; i++)); do
	if curl -fsS -o /dev/null --max-time 1 "$G/readyz" 2>/dev/null; then
		ready=1
		break
	fi
	sleep 0.1
done
step "until gateway /readyz 200" "$t"
check "gateway /readyz answers 200 (within 120 s)" [ "$ready" = 1 ]
[ "$ready" = 1 ] || exit 1

# Health checks, once each: podman runs them on systemd timers, which this
# machine lacks, so ask for each explicitly.
t=$(now_ms)
for s in redis postgres product-1 product-2 product-3 gateway; do
	c=$(container "$s")
	ok=0
	for ((i = 0; i < 30; i++)); do
		if podman healthcheck run "$c" >/dev/null 2>&1; then
			ok=1
			break
		fi
		sleep 1
	done
	check "health check of $s passes" [ "$ok" = 1 ]
done
step "health checks" "$t"
migrate_status=$(podman inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$(container migrate)")
check "migrate ran once and exited 0 ($migrate_status)" [ "$migrate_status" = "exited 0" ]

# request METHOD PATH [BODY]: sets CODE, CACHE and BODY.
request() {
	local hdr=$LOGDIR/headers body=$LOGDIR/body
	local args=(-sS -o "$body" -D "$hdr" -w '%{http_code}' --max-time 5 -X "$1")
	[ $# -ge 3 ] && args+=(-H 'Content-Type: application/json' --data "$3")
	[ "$1" != GET ] && args+=(-H "Authorization: Bearer $API_KEY")
	CODE=$(curl "${args[@]}" "$G$2" 2>>"$LOG") || CODE=000
	CACHE=$(awk -F': *' 'tolower($1) == "x-cache" { gsub(/\r/, "", $2); print $2 }' "$hdr" 2>/dev/null)
	BODY=$(cat "$body" 2>/dev/null)
}

t=$(now_ms)
SKU=CT-$$-$(date +%s)
request POST /products "{\"sku\":\"$SKU\",\"name\":\"Container test lamp\",\"description\":\"made by make container-test\",\"price_cents\":1999,\"currency\":\"USD\",\"stock\":3}"
case $CODE in
200 | 201)
	ID=$(printf '%s' "$BODY" | grep -o '"id":[0-9]*' | head -n 1 | cut -d: -f2)
	say "created product $ID through POST /products ($CODE)"
	HOW=api
	;;
405)
	say "POST /products answers 405 (the write API is not in this build):" \
		"inserting the row with psql in the postgres container instead"
	ID=$(podman exec "$(container postgres)" psql -qtAX -U postgres -d catalog \
		-v ON_ERROR_STOP=1 -c "INSERT INTO products (sku, name, description,
		price_cents, currency, stock) VALUES ('$SKU', 'Container test lamp',
		'made by make container-test', 1999, 'USD', 3) RETURNING id" 2>>"$LOG" |
		head -n 1)
	HOW=psql
	;;
*)
	ID=
	HOW="POST answered $CODE"
	;;
esac
step "create product ($HOW)" "$t"
check "product created ($HOW), id '$ID'" [ -n "$ID" ]
[ -n "$ID" ] || exit 1

t=$(now_ms)
request GET "/products/$ID"
check "first read: 200 MISS (got $CODE ${CACHE:--})" both "$CODE" 200 "$CACHE" MISS
check "the body is our product" grep -q "\"sku\":\"$SKU\"" "$LOGDIR/body"
request GET "/products/$ID"
check "second read: 200 HIT (got $CODE ${CACHE:--})" both "$CODE" 200 "$CACHE" HIT
step "two reads" "$t"

# The rate limiter resolved "redis" on the container network (evdns) and
# decided in the shared buckets: its metrics say so.
t=$(now_ms)
metrics=$(podman exec "$(container gateway)" bash -c 'exec 3<>/dev/tcp/127.0.0.1/9090 &&
	printf "GET /metrics HTTP/1.0\r\n\r\n" >&3 && cat <&3' 2>>"$LOG")
shared=$(printf '%s\n' "$metrics" | awk '/^gateway_ratelimit_decisions_total\{/ &&
	/source="redis"/ { n += $NF } END { print n + 0 }')
check "rate limits decided in Redis: $shared request(s)" [ "$shared" -gt 0 ]
# Every lookup of a service name so far worked (evdns asks resolv.conf's
# first nameserver, podman's own, only). A Redis that was not listening
# yet is another matter: only failed lookups count.
dnsfail='name resolution\|nodename nor servname'
fails=$(podman logs "$(container gateway)" 2>&1 |
	grep 'GW-DNS-FAIL\|GW-RL-REDIS-DOWN' | grep -c "$dnsfail")
check "the gateway resolved every name ($fails failures logged)" [ "$fails" = 0 ]
fails=0
for r in product-1 product-2 product-3; do
	fails=$((fails + $(podman logs "$(container $r)" 2>&1 |
		grep 'PS-REDIS-DOWN' | grep -c "$dnsfail")))
done
check "the replicas resolved redis ($fails failures logged)" [ "$fails" = 0 ]
step "rate limits in Redis" "$t"

t=$(now_ms)
victim=$(container product-1)
podman stop -t 10 "$victim" >>"$LOG" 2>&1
state=$(podman inspect -f '{{.State.Status}}' "$victim")
check "replica product-1 stopped ($state)" [ "$state" = exited ]
step "stop one replica" "$t"
t=$(now_ms)
codes=
for ((i = 0; i < 10; i++)); do
	request GET "/products/$ID"
	codes+="$CODE "
done
check "10 reads with product-1 down: all 200 ($codes)" [ "$codes" = "$(printf '200 %.0s' {1..10})" ]
code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 -X POST \
	-H 'Content-Type: application/json' --data '{}' "$G/products" 2>>"$LOG")
check "POST without an API key answers 401 ($code)" [ "$code" = 401 ]
request GET /readyz
check "gateway still ready with 2 of 3 replicas ($CODE)" [ "$CODE" = 200 ]
step "reads with a replica down" "$t"
