#!/usr/bin/env bash
# stack.sh - starts and stops a private Redis and PostgreSQL 15 on loopback.
#
# Sourced by deploy/run-local.sh (make run) and tests/run-integration.sh
# (make test). It can also be run as a command, which the integration tests
# use to stop and start PostgreSQL under a running suite:
#
#   bash deploy/stack.sh pg-stop  PGDIR
#   bash deploy/stack.sh pg-start PGDIR PORT [test]
#   bash deploy/stack.sh free-port
#
# Functions (all return non-zero with a message on stderr when they fail;
# every wait is bounded):
#
#   stack_free_port                 prints a free loopback TCP port
#   stack_port_free PORT            0 when nothing listens on 127.0.0.1:PORT
#   stack_redis_start DIR PORT LOG  starts redis-server in the background,
#                                   sets STACK_REDIS_PID, waits for PONG
#   stack_redis_stop [PID]          TERM, bounded wait, then KILL
#   stack_pg_start DIR PORT [test]  initdb once into DIR/data, starts it,
#                                   creates database catalog and the
#                                   pg_stat_statements extension; sets
#                                   STACK_PG_DIR (DIR resolved),
#                                   STACK_PG_PID and STACK_PG_LOG
#                                   (DIR/postgres.log). "test" adds
#                                   fsync=off and friends.
#   stack_pg_stop DIR               pg_ctl stop -m fast, KILL as last resort
#
# PostgreSQL layout: DIR/data is the cluster, DIR itself holds the unix
# socket (DIR is the data directory's parent) and DIR/postgres.log. As root
# the cluster belongs to the postgres user and the server runs as postgres
# through runuser, so DIR must be reachable by that user; when it is not
# (a checkout under /root, say), DIR becomes a symlink to a folder under
# /var/tmp that postgres owns.

# The STACK_* results are read by the scripts that source this file.
# shellcheck disable=SC2034

STACK_PG_BIN=${STACK_PG_BIN:-/usr/lib/postgresql/15/bin}
STACK_WAIT_S=${STACK_WAIT_S:-30}
STACK_USED_PORTS=${STACK_USED_PORTS:-}
# STACK_DETACH=1 starts Redis in its own session, so that a Ctrl-C in the
# terminal reaches only the script, which then stops things in order.
[ "${STACK_DETACH:-0}" = 0 ] && STACK_DETACH=

stack_log() {
	echo "stack: $*" >&2
}

# stack_as_pg CMD...: runs CMD as the postgres user when we are root, as
# ourselves otherwise. Runs from / so that postgres never needs the caller's
# working directory.
stack_as_pg() {
	if [ "$(id -u)" -eq 0 ]; then
		(cd / && runuser -u postgres -- "$@")
	else
		(cd / && "$@")
	fi
}

# stack_port_free PORT: succeeds when nothing accepts on 127.0.0.1:PORT.
stack_port_free() {
	local port=$1
	if command -v ss >/dev/null 2>&1; then
		if ss -Htln "sport = :$port" 2>/dev/null | grep -q .; then
			return 1
		fi
	fi
	# A connect that succeeds means a listener is there.
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
		return 1
	fi
	return 0
}

# stack_free_port: prints a loopback port that nothing listens on. Picks
# below the kernel's ephemeral range (32768+) so outgoing connections do not
# take it before the server binds, and never the same port twice in one
# shell.
stack_free_port() {
	local i port
	for ((i = 0; i < 200; i++)); do
		port=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
		case " $STACK_USED_PORTS " in
		*" $port "*) continue ;;
		esac
		if stack_port_free "$port"; then
			STACK_USED_PORTS="$STACK_USED_PORTS $port"
			echo "$port"
			return 0
		fi
	done
	stack_log "no free loopback port found"
	return 1
}

# stack_wait_pid_gone PID SECONDS: waits until PID is gone (or a zombie,
# which it then reaps when it is our child). Returns 1 on timeout.
stack_wait_pid_gone() {
	local pid=$1 secs=$2 i state
	for ((i = 0; i < secs * 10; i++)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			wait "$pid" 2>/dev/null
			return 0
		fi
		state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)
		if [ "$state" = Z ] || [ -z "$state" ]; then
			wait "$pid" 2>/dev/null
			return 0
		fi
		sleep 0.1
	done
	return 1
}

# stack_kill_pid PID [NAME]: SIGTERM, up to 10 s, then SIGKILL.
stack_kill_pid() {
	local pid=$1 name=${2:-process}
	[ -n "$pid" ] || return 0
	kill -0 "$pid" 2>/dev/null || {
		wait "$pid" 2>/dev/null
		return 0
	}
	kill -TERM "$pid" 2>/dev/null
	if ! stack_wait_pid_gone "$pid" 10; then
		stack_log "$name (pid $pid) ignored SIGTERM for 10 s, sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null
		stack_wait_pid_gone "$pid" 5 || {
			stack_log "$name (pid $pid) does not die"
			return 1
		}
	fi
	return 0
}

# stack_redis_ping PORT: succeeds when Redis on PORT answers +PONG.
stack_redis_ping() {
	local port=$1 line
	(
		exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
		printf 'PING\r\n' >&3
		IFS= read -r -t 1 line <&3 || exit 1
		[ "${line%$'\r'}" = "+PONG" ]
	) 2>/dev/null
}

# stack_redis_start DIR PORT LOG: starts a Redis that keeps nothing on disk,
# in the background of the calling shell. Sets STACK_REDIS_PID.
stack_redis_start() {
	local dir=$1 port=$2 log=$3 i
	STACK_REDIS_PID=
	if ! stack_port_free "$port"; then
		stack_log "port $port is taken: cannot start Redis there"
		return 1
	fi
	mkdir -p "$dir" "$(dirname "$log")" || return 1
	${STACK_DETACH:+setsid} redis-server --port "$port" --bind 127.0.0.1 --save '' \
		--appendonly no --daemonize no --dir "$dir" \
		>>"$log" 2>&1 </dev/null &
	STACK_REDIS_PID=$!
	for ((i = 0; i < STACK_WAIT_S * 10; i++)); do
		if stack_redis_ping "$port"; then
			return 0
		fi
		if ! kill -0 "$STACK_REDIS_PID" 2>/dev/null; then
			wait "$STACK_REDIS_PID" 2>/dev/null
			stack_log "redis-server exited at start; see $log:"
			tail -n 5 "$log" >&2
			STACK_REDIS_PID=
			return 1
		fi
		sleep 0.1
	done
	stack_log "Redis on port $port did not answer in ${STACK_WAIT_S}s"
	stack_kill_pid "$STACK_REDIS_PID" redis-server
	STACK_REDIS_PID=
	return 1
}

# stack_redis_stop [PID]: stops the Redis we started (STACK_REDIS_PID by
# default).
stack_redis_stop() {
	local pid=${1:-${STACK_REDIS_PID:-}}
	[ -n "$pid" ] || return 0
	stack_kill_pid "$pid" redis-server || return 1
	[ "$pid" = "${STACK_REDIS_PID:-}" ] && STACK_REDIS_PID=
	return 0
}

# stack_pg_prepare_dir DIR: makes DIR (and DIR/data) usable by the server's
# user. Prints the resolved directory.
stack_pg_prepare_dir() {
	local dir=$1 real alt
	mkdir -p "$dir" || return 1
	if [ "$(id -u)" -ne 0 ]; then
		chmod 700 "$dir" 2>/dev/null
		(cd "$dir" && pwd -P)
		return 0
	fi
	if ! id postgres >/dev/null 2>&1; then
		stack_log "running as root needs a postgres user (apt install postgresql)"
		return 1
	fi
	real=$(cd "$dir" && pwd -P) || return 1
	chown postgres: "$real" || return 1
	if ! runuser -u postgres -- test -w "$real" -a -x "$real" 2>/dev/null; then
		# The path to DIR is closed to postgres: keep the cluster under
		# /var/tmp, named after DIR's path so a later run finds it again.
		alt=/var/tmp/stack-pg-$(printf '%s' "$real" | md5sum | cut -c1-12)
		mkdir -p "$alt" && chown postgres: "$alt" && chmod 700 "$alt" ||
			return 1
		rmdir "$real" 2>/dev/null || {
			stack_log "$real is not reachable by postgres and not empty"
			return 1
		}
		ln -s "$alt" "$real" || return 1
		stack_log "$real is closed to postgres; using $alt (symlinked)"
		real=$alt
	fi
	echo "$real"
}

# stack_pg_start DIR PORT [test]: see the header. The server's log is
# DIR/postgres.log, inside the folder that the server's user owns.
stack_pg_start() {
	local dir=$1 port=$2 mode=${3:-} real opts log i
	STACK_PG_PID=
	STACK_PG_DIR=
	STACK_PG_LOG=
	if ! stack_port_free "$port"; then
		stack_log "port $port is taken: cannot start PostgreSQL there"
		return 1
	fi
	real=$(stack_pg_prepare_dir "$dir") || return 1
	log=$real/postgres.log
	STACK_PG_LOG=$log
	stack_as_pg touch "$log" || return 1
	if [ ! -s "$real/data/PG_VERSION" ]; then
		rm -rf "$real/data"
		if ! stack_as_pg "$STACK_PG_BIN/initdb" -D "$real/data" -A trust \
			-U postgres -E UTF8 --no-locale >>"$log" 2>&1; then
			stack_log "initdb failed; see $log:"
			tail -n 5 "$log" >&2
			return 1
		fi
	fi
	if [ -f "$real/data/postmaster.pid" ]; then
		local old
		old=$(head -n 1 "$real/data/postmaster.pid")
		if [ -n "$old" ] && kill -0 "$old" 2>/dev/null; then
			stack_log "a PostgreSQL (pid $old) already runs on $real/data"
			return 1
		fi
	fi
	opts="-c listen_addresses=127.0.0.1 -c port=$port"
	opts+=" -c unix_socket_directories='$real'"
	opts+=" -c shared_preload_libraries=pg_stat_statements"
	if [ "$mode" = test ]; then
		opts+=" -c fsync=off -c synchronous_commit=off"
		opts+=" -c full_page_writes=off"
	fi
	if ! stack_as_pg "$STACK_PG_BIN/pg_ctl" -D "$real/data" -l "$log" \
		-o "$opts" -w -t "$STACK_WAIT_S" start >/dev/null; then
		stack_log "PostgreSQL did not start on port $port; see $log:"
		tail -n 5 "$log" >&2
		return 1
	fi
	STACK_PG_DIR=$real
	STACK_PG_PID=$(head -n 1 "$real/data/postmaster.pid")
	for ((i = 0; i < STACK_WAIT_S * 10; i++)); do
		if "$STACK_PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" \
			-U postgres -d postgres; then
			break
		fi
		sleep 0.1
	done
	if ! stack_pg_init_db "$port"; then
		stack_pg_stop "$real"
		return 1
	fi
	return 0
}

# stack_psql PORT DB SQL: runs SQL over TCP as postgres, prints tuples only.
stack_psql() {
	PGOPTIONS='-c client_min_messages=warning' "$STACK_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" \
		-U postgres -d "$2" -tA -c "$3"
}

# stack_pg_init_db PORT: database catalog and pg_stat_statements, if
# missing.
stack_pg_init_db() {
	local port=$1 have
	have=$(stack_psql "$port" postgres \
		"SELECT 1 FROM pg_database WHERE datname = 'catalog'") || return 1
	if [ "$have" != 1 ]; then
		stack_psql "$port" postgres "CREATE DATABASE catalog" || return 1
	fi
	stack_psql "$port" catalog \
		"CREATE EXTENSION IF NOT EXISTS pg_stat_statements" || return 1
}

# stack_pg_stop DIR: stops the cluster in DIR/data (fast shutdown), and
# kills the postmaster if pg_ctl gives up.
stack_pg_stop() {
	local dir=$1 real pid
	real=$(cd "$dir" 2>/dev/null && pwd -P) || return 0
	[ -f "$real/data/postmaster.pid" ] || return 0
	pid=$(head -n 1 "$real/data/postmaster.pid")
	if ! stack_as_pg "$STACK_PG_BIN/pg_ctl" -D "$real/data" -m fast -w \
		-t "$STACK_WAIT_S" stop >/dev/null 2>&1; then
		if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
			stack_log "pg_ctl stop failed; killing postmaster $pid"
			kill -QUIT "$pid" 2>/dev/null
			stack_wait_pid_gone "$pid" 5 || {
				kill -KILL "$pid" 2>/dev/null
				stack_wait_pid_gone "$pid" 5
			}
		fi
	fi
	STACK_PG_PID=
	return 0
}

# stack_pg_remove DIR: deletes a stopped cluster folder, and the /var/tmp
# folder behind it when DIR is such a symlink.
stack_pg_remove() {
	local dir=$1 real
	[ -e "$dir" ] || return 0
	real=$(cd "$dir" && pwd -P) || return 1
	if [ -f "$real/data/postmaster.pid" ]; then
		stack_log "not removing $real: its server still runs"
		return 1
	fi
	[ -L "$dir" ] && rm -f "$dir"
	rm -rf "$real" "$dir"
}

# Run as a command (not sourced): a few verbs for the integration tests.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	case "${1:-}" in
	pg-stop)
		stack_pg_stop "$2"
		;;
	pg-start)
		stack_pg_start "$2" "$3" "${4:-}"
		;;
	free-port)
		stack_free_port
		;;
	*)
		echo "usage: $0 pg-stop DIR | pg-start DIR PORT [test] | free-port" >&2
		exit 2
		;;
	esac
fi
