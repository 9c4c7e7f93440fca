#!/bin/sh
# postgres-entrypoint.sh - first start: initdb with POSTGRES_USER and
# POSTGRES_PASSWORD, create POSTGRES_DB; then runs postgres listening on
# every address, with password (scram) authentication over TCP.
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
if [ -z "${POSTGRES_PASSWORD:-}" ]; then
	echo "postgres-entrypoint: POSTGRES_PASSWORD must be set" >&2
	exit 1
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
	pw=$(mktemp)
	printf '%s\n' "$POSTGRES_PASSWORD" >"$pw"
	initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pw" -E UTF8 \
		--no-locale --auth-local=trust --auth-host=scram-sha-256 >/dev/null
	rm -f "$pw"
	echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
	pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
	if [ "$POSTGRES_DB" != postgres ]; then
		psql -v ON_ERROR_STOP=1 -qX -U "$POSTGRES_USER" -d postgres \
			-c "CREATE DATABASE \"$POSTGRES_DB\""
	fi
	pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
	echo "postgres-entrypoint: initialised $PGDATA with database $POSTGRES_DB"
fi
if [ "${1:-postgres}" = postgres ]; then
	[ $# -gt 0 ] && shift
	exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
fi
exec "$@"
