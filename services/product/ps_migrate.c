/* ps_migrate.c - applies the compiled-in schema migrations and reads the
 * schema version. Blocking libpq: admin command and startup check only,
 * never on a worker loop. */
#include <postgresql/libpq-fe.h> /* Makefile has no -I for libpq */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm.h"
#include "cm_log.h"
#include "ps.h"
#include "ps_migrations.h"

#define MIGRATE_LOCK "7400001"

const char ps_schema_version_sql[] =
    "SELECT coalesce(max(version), 0) FROM schema_migrations";

/* Server notices ("relation already exists, skipping") are expected on a
 * second run; keep them out of stderr. */
static void
on_notice(void *arg, const char *msg)
{
	char buf[512];
	(void) arg;
	CM_DEBUG(
	    "PS-DB-NOTICE", NULL, "%s", ps_pg_oneline(msg, buf, sizeof(buf)));
}

/* Connects with a 10 s connect timeout unless the URL sets one. Returns the
 * connection or NULL (logged). */
static PGconn *
connect_blocking(const char *url)
{
	const char *keys[] = {"connect_timeout", "dbname", NULL};
	const char *vals[] = {"10", url, NULL};
	PGconn     *pg = PQconnectdbParams(keys, vals, 1);
	char        buf[512];

	if (pg == NULL || PQstatus(pg) != CONNECTION_OK) {
		CM_ERROR("PS-DB-CONNECT", NULL, "DATABASE_URL: %s",
		    pg != NULL
		        ? ps_pg_oneline(PQerrorMessage(pg), buf, sizeof(buf))
		        : "out of memory");
		PQfinish(pg);
		return NULL;
	}
	PQsetNoticeProcessor(pg, on_notice, NULL);
	return pg;
}

/* Runs sql (no parameters, or one text parameter when param is not NULL).
 * Returns the result when it succeeded, else NULL after logging why. */
static PGresult *
run(PGconn *pg, const char *sql, const char *param)
{
	PGresult *res = PQexecParams(pg, sql, param != NULL ? 1 : 0, NULL,
	    param != NULL ? &param : NULL, NULL, NULL, 0);
	char      buf[512];

	if (res == NULL ||
	    (PQresultStatus(res) != PGRES_COMMAND_OK &&
	        PQresultStatus(res) != PGRES_TUPLES_OK)) {
		CM_ERROR("PS-MIGRATE-SQL", NULL, "%.60s: %s", sql,
		    ps_pg_oneline(PQerrorMessage(pg), buf, sizeof(buf)));
		PQclear(res);
		return NULL;
	}
	return res;
}

static int
run_ok(PGconn *pg, const char *sql, const char *param)
{
	PGresult *res = run(pg, sql, param);
	PQclear(res);
	return res != NULL;
}

/* Applies migration m in its own transaction unless it is recorded.
 * Returns 1 applied, 0 already there, -1 failed. A migration file may hold
 * several statements, so it goes through the simple query protocol. */
static int
apply(PGconn *pg, const ps_migration *m)
{
	char      ver[16];
	PGresult *res;
	int       have;
	char      buf[512];

	snprintf(ver, sizeof(ver), "%d", m->version);
	res =
	    run(pg, "SELECT 1 FROM schema_migrations WHERE version = $1", ver);
	if (res == NULL) {
		return -1;
	}
	have = PQntuples(res) > 0;
	PQclear(res);
	if (have) {
		return 0;
	}
	if (!run_ok(pg, "BEGIN", NULL)) {
		return -1;
	}
	res = PQexec(pg, m->sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK &&
	    PQresultStatus(res) != PGRES_TUPLES_OK &&
	    PQresultStatus(res) != PGRES_EMPTY_QUERY) {
		CM_ERROR("PS-MIGRATE-FAIL", NULL, "%s: %s", m->name,
		    ps_pg_oneline(PQerrorMessage(pg), buf, sizeof(buf)));
		PQclear(res);
		run_ok(pg, "ROLLBACK", NULL);
		return -1;
	}
	PQclear(res);
	{
		const char *params[] = {ver, m->name};
		res = PQexecParams(pg,
		    "INSERT INTO schema_migrations (version, name, "
		    "applied_at) "
		    "VALUES ($1, $2, now())",
		    2, NULL, params, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			CM_ERROR("PS-MIGRATE-FAIL", NULL, "record %s: %s",
			    m->name,
			    ps_pg_oneline(
			        PQerrorMessage(pg), buf, sizeof(buf)));
			PQclear(res);
			run_ok(pg, "ROLLBACK", NULL);
			return -1;
		}
		PQclear(res);
	}
	if (!run_ok(pg, "COMMIT", NULL)) {
		return -1;
	}
	CM_INFO("PS-MIGRATE-APPLY", NULL, "applied %s", m->name);
	return 1;
}

/* `product-service migrate`: under advisory lock 7400001, creates
 * schema_migrations when missing and applies every migration not yet
 * recorded, each in its own transaction. Safe to run concurrently and
 * repeatedly. Returns CM_OK or CM_EUNAVAIL / CM_EINTERNAL (logged). */
int
ps_migrate_run(const char *url)
{
	PGconn *pg = connect_blocking(url);
	int     rv = CM_EINTERNAL, applied = 0;

	if (pg == NULL) {
		return CM_EUNAVAIL;
	}
	if (!run_ok(pg, "SELECT pg_advisory_lock(" MIGRATE_LOCK ")", NULL)) {
		goto out;
	}
	if (!run_ok(pg,
	        "CREATE TABLE IF NOT EXISTS schema_migrations ("
	        "version int PRIMARY KEY, name text, applied_at timestamptz)",
	        NULL)) {
		goto unlock;
	}
	for (int i = 0; i < ps_migrations_count; i++) {
		int r = apply(pg, &ps_migrations[i]);
		if (r < 0) {
			goto unlock;
		}
		applied += r;
	}
	rv = CM_OK;
	CM_INFO("PS-MIGRATE-DONE", NULL,
	    "schema at version %d (%d migration%s applied now)",
	    ps_migrate_latest(), applied, applied == 1 ? "" : "s");
unlock:
	run_ok(pg, "SELECT pg_advisory_unlock(" MIGRATE_LOCK ")", NULL);
out:
	PQfinish(pg);
	return rv;
}

/* Reads the schema version recorded in the database into *have (0 when
 * schema_migrations does not exist). Returns CM_OK, or CM_EUNAVAIL /
 * CM_EINTERNAL (logged). */
int
ps_migrate_version(const char *url, int *have)
{
	PGconn   *pg = connect_blocking(url);
	PGresult *res;
	int       rv = CM_EINTERNAL;

	if (pg == NULL) {
		return CM_EUNAVAIL;
	}
	res = run(
	    pg, "SELECT to_regclass('schema_migrations') IS NOT NULL", NULL);
	if (res == NULL) {
		goto out;
	}
	if (PQgetvalue(res, 0, 0)[0] != 't') {
		*have = 0;
		rv = CM_OK;
		PQclear(res);
		goto out;
	}
	PQclear(res);
	res = run(pg, ps_schema_version_sql, NULL);
	if (res != NULL) {
		*have = atoi(PQgetvalue(res, 0, 0));
		rv = CM_OK;
		PQclear(res);
	}
out:
	PQfinish(pg);
	return rv;
}

/* The version this build needs: the highest compiled-in migration. */
int
ps_migrate_latest(void)
{
	int v = 0;
	for (int i = 0; i < ps_migrations_count; i++) {
		if (ps_migrations[i].version > v) {
			v = ps_migrations[i].version;
		}
	}
	return v;
}
