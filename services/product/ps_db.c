/* ps_db.c - the worker's PostgreSQL connections: non-blocking libpq on the
 * worker's libevent loop, prepared statements, and a FIFO of queries that
 * wait for a free connection.
 *
 * Each connection connects with PQconnectStart/PQconnectPoll driven by
 * socket events, checks that the schema is at least the version this build
 * needs (a replica may start while PostgreSQL is down, and a database may
 * be restored from an old backup: every connection checks, not only the
 * start), prepares every statement (one at a time: without pipeline mode
 * libpq runs one command per connection), then serves one query at a
 * time. A lost connection fails its query with CM_EUNAVAIL and reconnects
 * after a back-off. Callbacks never run inside the call that submitted the
 * query: the queue is served from an event.
 */
#include <event2/event.h>
#include <postgresql/libpq-fe.h> /* Makefile has no -I for libpq */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm.h"
#include "cm_log.h"
#include "ps.h"

#define CONNECT_TIMEOUT_MS 5000

#define PRODUCT_COLS                                                        \
	"SELECT id, sku, name, description, price_cents, currency, stock, " \
	"version, (extract(epoch from created_at)*1000000)::bigint, "       \
	"(extract(epoch from updated_at)*1000000)::bigint FROM products "

/* Statements prepared on every connection. */
typedef struct stmt {
	const char *name;
	const char *sql;
	int         nparams;
} stmt;

enum {
	STMT_GET_PRODUCT,
	STMT_LIST_PRODUCTS,
	STMT_RESERVE_ID,
	STMT_WRITE,
	STMT_COUNT
};

/* catalog_write (migrations/0002_writes.sql): the product columns start at
 * WRITE_PRODUCT_COL, in the order of PRODUCT_COLS. */
#define WRITE_PRODUCT_COL 2
#define WRITE_PARAMS      13
#define WRITE_FP_PARAM    4 /* the fingerprint, sent in binary */

static const stmt stmts[STMT_COUNT] = {
    [STMT_GET_PRODUCT] = {"get_product", PRODUCT_COLS "WHERE id = $1", 1},
    [STMT_LIST_PRODUCTS] = {"list_products",
        PRODUCT_COLS "WHERE id > $1 ORDER BY id LIMIT $2", 2},
    [STMT_RESERVE_ID] = {"reserve_id",
        "SELECT nextval(pg_get_serial_sequence('products', 'id'))", 0},
    [STMT_WRITE] = {"catalog_write",
        "SELECT status, replayed, id, sku, name, description, price_cents, "
        "currency, stock, version, created_us, updated_us "
        "FROM catalog_write($1::text, $2::bigint, $3::int, $4::text, "
        "$5::bytea, $6::text, $7::text, $8::text, $9::bigint, $10::text, "
        "$11::int, $12::int, $13::int)",
        WRITE_PARAMS},
};

#define MAX_PARAMS WRITE_PARAMS

/* product_pg_query_duration_seconds{query} of each statement. */
static const int stmt_metric[STMT_COUNT] = {
    [STMT_GET_PRODUCT] = PS_Q_GET_PRODUCT,
    [STMT_LIST_PRODUCTS] = PS_Q_LIST_PRODUCTS,
    [STMT_RESERVE_ID] = PS_Q_RESERVE_ID,
    [STMT_WRITE] = PS_Q_CATALOG_WRITE,
};

typedef struct query query;
struct query {
	query *next;
	int    stmt;
	int    nparams;
	char  *params[MAX_PARAMS]; /* malloc'd; NULL is SQL NULL */
	int    lens[MAX_PARAMS];
	int    binary[MAX_PARAMS];
	/* Decodes res (NULL unless rv is CM_OK) and calls the user's cb. */
	void (*finish)(query *q, int rv, const PGresult *res);
	ps_db_sent_fn sent;      /* may be NULL */
	int           waited;    /* no connection was free at submit */
	int64_t       queued_us; /* when submitted */
	int64_t       sent_us;   /* when written to a connection */
	union {
		ps_db_product_fn product;
		ps_db_list_fn    list;
		ps_db_id_fn      id;
		ps_db_write_fn   write;
	} cb;
	void *arg;
};

enum { ST_DOWN, ST_CONNECTING, ST_PREPARING, ST_IDLE, ST_BUSY };

typedef struct conn {
	ps_db        *db;
	int           idx;
	int           state;
	int           initial; /* first connect, not failed yet */
	int           warned;  /* logged as down since last up */
	int           flushing;
	int           backoff_ms;
	int           prep; /* statement being prepared; -1: schema check */
	int           up;   /* counted as up in product_pg_connections */
	PGconn       *pg;
	struct event *io;    /* socket: connect wait, then persistent read */
	struct event *wev;   /* socket write-ready while flushing */
	struct event *timer; /* back-off, or connect timeout */
	query        *q;     /* in flight */
	PGresult     *res;   /* first result of the command in flight */
} conn;

struct ps_db {
	struct event_base *base;
	char              *conninfo;
	conn              *conns;
	int                nconns;
	query             *head;
	query            **tail;
	size_t             queued;
	struct event      *pump;
	int                closing;
	int                counted; /* its connections are in the gauge */
};

static void conn_start(conn *c);
static void pump(ps_db *db);

static void
query_free(query *q)
{
	for (int i = 0; i < q->nparams; i++) {
		free(q->params[i]);
	}
	free(q);
}

/* Sets parameter i to a copy of s[0..len), or SQL NULL when s is NULL.
 * Returns CM_OK or CM_ENOMEM. */
static int
set_param(query *q, int i, const void *s, size_t len, int binary)
{
	if (s != NULL && (q->params[i] = ps_msg_strdup(s, len)) == NULL) {
		return CM_ENOMEM;
	}
	q->lens[i] = (int) len;
	q->binary[i] = binary;
	return CM_OK;
}

static int
set_text(query *q, int i, const char *s)
{
	return set_param(q, i, s, s != NULL ? strlen(s) : 0, 0);
}

static int
set_ll(query *q, int i, long long v)
{
	char buf[24];
	int  n = snprintf(buf, sizeof(buf), "%lld", v);
	return set_param(q, i, buf, (size_t) n, 0);
}

/* ---- results ---- */

/* Copies text column col of row into *dst. Returns CM_OK or CM_ENOMEM. */
static int
text_col(const PGresult *res, int row, int col, char **dst)
{
	char *v = ps_msg_strdup(
	    PQgetvalue(res, row, col), (size_t) PQgetlength(res, row, col));
	if (v == NULL) {
		return CM_ENOMEM;
	}
	*dst = v;
	return CM_OK;
}

static long long
int_col(const PGresult *res, int row, int col)
{
	return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

/* Decodes the columns of PRODUCT_COLS that start at column base of row
 * (text format). Returns a Product the caller frees with
 * ps_msg_product_free(), or NULL when out of memory. */
static Catalog__Product *
row_product(const PGresult *res, int row, int base)
{
	Catalog__Product *p = ps_msg_product_new();

	if (p == NULL) {
		return NULL;
	}
	if (text_col(res, row, base + 1, &p->sku) != CM_OK ||
	    text_col(res, row, base + 2, &p->name) != CM_OK ||
	    text_col(res, row, base + 3, &p->description) != CM_OK ||
	    text_col(res, row, base + 5, &p->currency) != CM_OK) {
		ps_msg_product_free(p);
		return NULL;
	}
	p->id = int_col(res, row, base + 0);
	p->price_cents = int_col(res, row, base + 4);
	p->stock = (int32_t) int_col(res, row, base + 6);
	p->version = (int32_t) int_col(res, row, base + 7);
	p->created_at_us = int_col(res, row, base + 8);
	p->updated_at_us = int_col(res, row, base + 9);
	return p;
}

static void
finish_product(query *q, int rv, const PGresult *res)
{
	Catalog__Product *p = NULL;

	if (rv == CM_OK && PQntuples(res) > 0 &&
	    (p = row_product(res, 0, 0)) == NULL) {
		rv = CM_EINTERNAL;
	}
	q->cb.product(q->arg, rv, p);
}

static void
finish_list(query *q, int rv, const PGresult *res)
{
	Catalog__Product **items = NULL;
	size_t             n = 0;

	if (rv == CM_OK) {
		size_t rows = (size_t) PQntuples(res);
		if ((items = calloc(rows > 0 ? rows : 1, sizeof(*items))) ==
		    NULL) {
			rv = CM_EINTERNAL;
		}
		for (; rv == CM_OK && n < rows; n++) {
			if ((items[n] = row_product(res, (int) n, 0)) ==
			    NULL) {
				rv = CM_EINTERNAL;
			}
		}
		if (rv != CM_OK) {
			for (size_t i = 0; i < n; i++) {
				ps_msg_product_free(items[i]);
			}
			free(items);
			items = NULL;
			n = 0;
		}
	}
	q->cb.list(q->arg, rv, items, n);
}

static void
finish_id(query *q, int rv, const PGresult *res)
{
	int64_t id = 0;

	if (rv == CM_OK) {
		if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)) {
			id = int_col(res, 0, 0);
		} else {
			rv = CM_EINTERNAL;
		}
	}
	q->cb.id(q->arg, rv, id);
}

/* Decodes catalog_write's one row: status, replayed, then the product
 * columns (NULL unless a product is answered; with a 409 the sku column
 * alone may name the taken sku). */
static void
finish_write(query *q, int rv, const PGresult *res)
{
	ps_db_written w = {0};

	if (rv == CM_OK) {
		if (PQntuples(res) != 1 || PQnfields(res) < 12 ||
		    PQgetisnull(res, 0, 0)) {
			CM_ERROR("PS-DB-WRITE", NULL,
			    "catalog_write answered %d rows", PQntuples(res));
			rv = CM_EINTERNAL;
		}
	}
	if (rv == CM_OK) {
		w.status = (int) int_col(res, 0, 0);
		w.replayed = PQgetvalue(res, 0, 1)[0] == 't';
		if (!PQgetisnull(res, 0, WRITE_PRODUCT_COL) &&
		    (w.product = row_product(res, 0, WRITE_PRODUCT_COL)) ==
		        NULL) {
			rv = CM_EINTERNAL;
		}
		if (!PQgetisnull(res, 0, WRITE_PRODUCT_COL + 1)) {
			w.sku = PQgetvalue(res, 0, WRITE_PRODUCT_COL + 1);
		}
	}
	q->cb.write(q->arg, rv, rv == CM_OK ? &w : NULL);
}

/* ---- connections ---- */

static int
can_serve(const conn *c)
{
	return c->state == ST_IDLE || c->state == ST_BUSY ||
	    (c->initial &&
	        (c->state == ST_CONNECTING || c->state == ST_PREPARING));
}

static int
any_can_serve(const ps_db *db)
{
	for (int i = 0; i < db->nconns; i++) {
		if (can_serve(&db->conns[i])) {
			return 1;
		}
	}
	return 0;
}

/* Moves c into or out of the "up" series of product_pg_connections. */
static void
set_up(conn *c, int up)
{
	if (c->up != up) {
		c->up = up;
		ps_metrics_pg_conn(1, up ? 1 : -1);
		ps_metrics_pg_conn(0, up ? -1 : 1);
	}
}

static void
count_error(const ps_db *db)
{
	if (!db->closing) {
		ps_metrics_pg_error();
	}
}

static void
fail_queue(ps_db *db)
{
	while (db->head != NULL) {
		query *q = db->head;
		db->head = q->next;
		if (db->head == NULL) {
			db->tail = &db->head;
		}
		db->queued--;
		count_error(db);
		q->finish(q, CM_EUNAVAIL, NULL);
		query_free(q);
	}
}

static void
add_ms(struct event *ev, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(ev, &tv);
}

static void
free_events(conn *c)
{
	if (c->io != NULL) {
		event_free(c->io);
		c->io = NULL;
	}
	if (c->wev != NULL) {
		event_free(c->wev);
		c->wev = NULL;
	}
	c->flushing = 0;
}

const char *
ps_pg_oneline(const char *msg, char *buf, size_t len)
{
	size_t n;

	snprintf(buf, len, "%s", msg != NULL ? msg : "?");
	for (n = 0; buf[n] != '\0'; n++) {
		if (buf[n] == '\n' || buf[n] == '\t') {
			buf[n] = ' ';
		}
	}
	while (n > 0 && buf[n - 1] == ' ') {
		buf[--n] = '\0';
	}
	return buf;
}

/* Closes c and fails its query; reconnects after the back-off unless the
 * pool is closing. When no connection can serve any more, every queued
 * query fails too: callers should not wait for a database that is down. */
static void
conn_down(conn *c, const char *why)
{
	ps_db *db = c->db;
	query *q = c->q;
	char   msg[256];

	ps_pg_oneline(why, msg, sizeof(msg));
	if (!db->closing) {
		if (!c->warned) {
			CM_WARN(
			    "PS-DB-DOWN", NULL, "db conn %d: %s", c->idx, msg);
			c->warned = 1;
		} else {
			CM_DEBUG("PS-DB-RETRY", NULL, "db conn %d: %s", c->idx,
			    msg);
		}
	}
	free_events(c);
	if (c->timer != NULL) {
		evtimer_del(c->timer);
	}
	if (c->res != NULL) {
		PQclear(c->res);
		c->res = NULL;
	}
	if (c->pg != NULL) {
		PQfinish(c->pg);
		c->pg = NULL;
	}
	c->q = NULL;
	c->state = ST_DOWN;
	c->initial = 0;
	set_up(c, 0);
	if (q != NULL) {
		count_error(db);
		q->finish(q, CM_EUNAVAIL, NULL);
		query_free(q);
	}
	if (db->closing) {
		return;
	}
	add_ms(c->timer, c->backoff_ms);
	c->backoff_ms *= 2;
	if (c->backoff_ms > PS_BACKOFF_MAX_MS) {
		c->backoff_ms = PS_BACKOFF_MAX_MS;
	}
	if (!any_can_serve(db)) {
		fail_queue(db);
	}
}

/* Sends what libpq has buffered. Returns CM_OK, or CM_EUNAVAIL after it
 * took the connection down. */
static int
flush(conn *c)
{
	int r = PQflush(c->pg);
	if (r < 0) {
		conn_down(c, PQerrorMessage(c->pg));
		return CM_EUNAVAIL;
	}
	c->flushing = r == 1;
	if (c->flushing) {
		event_add(c->wev, NULL);
	}
	return CM_OK;
}

static void
send_schema_check(conn *c)
{
	if (!PQsendQuery(c->pg, ps_schema_version_sql)) {
		conn_down(c, PQerrorMessage(c->pg));
		return;
	}
	flush(c);
}

/* The schema check's answer. Returns 0 when the schema is new enough;
 * else takes c down with the reason and returns -1. */
static int
schema_checked(conn *c, const PGresult *res)
{
	char msg[200];
	int  have, need = ps_migrate_latest();

	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK ||
	    PQntuples(res) != 1) {
		snprintf(msg, sizeof(msg),
		    "cannot read the schema version (run 'product-service "
		    "migrate'): %s",
		    res != NULL ? PQresultErrorMessage(res) : "no result");
		conn_down(c, msg);
		return -1;
	}
	have = atoi(PQgetvalue(res, 0, 0));
	if (have < need) {
		static _Atomic int64_t logged_ms;
		int64_t                now = cm_now_ms(), last = logged_ms;

		snprintf(msg, sizeof(msg),
		    "database schema is at version %d, this build needs %d: "
		    "run 'product-service migrate'",
		    have, need);
		/* an operator's mistake, not a passing fault: an error, at
		 * most every 30 s for all connections of the process */
		if (now - last >= 30000 &&
		    atomic_compare_exchange_strong(&logged_ms, &last, now)) {
			CM_ERROR("PS-SCHEMA-OLD", NULL, "%s", msg);
		}
		conn_down(c, msg);
		return -1;
	}
	return 0;
}

static void
send_prepare(conn *c)
{
	const stmt *s = &stmts[c->prep];
	if (!PQsendPrepare(c->pg, s->name, s->sql, s->nparams, NULL)) {
		conn_down(c, PQerrorMessage(c->pg));
		return;
	}
	flush(c);
}

/* Sends q on idle connection c. On failure q goes back to the head of the
 * queue and c goes down. */
static void
send_query(conn *c, query *q)
{
	const char *values[MAX_PARAMS];

	for (int i = 0; i < q->nparams; i++) {
		values[i] = q->params[i];
	}
	if (q->waited) {
		q->waited = 0;
		ps_metrics_pg_queue_waited(cm_mono_us() - q->queued_us);
	}
	if (q->sent != NULL) {
		/* Before the bytes leave: a caller that learns of it later
		 * could let in a request that the answer does not cover. */
		q->sent(q->arg);
	}
	q->sent_us = cm_mono_us();
	if (!PQsendQueryPrepared(c->pg, stmts[q->stmt].name, q->nparams,
	        values, q->lens, q->binary, 0)) {
		q->next = c->db->head;
		c->db->head = q;
		if (c->db->tail == &c->db->head) {
			c->db->tail = &q->next;
		}
		c->db->queued++;
		conn_down(c, PQerrorMessage(c->pg));
		return;
	}
	c->q = q;
	c->state = ST_BUSY;
	flush(c);
}

/* A command finished: every result of it has been read. */
static void
command_done(conn *c)
{
	PGresult *res = c->res;
	c->res = NULL;

	if (PQstatus(c->pg) == CONNECTION_BAD) {
		/* The error result was the connection dying: the query's
		 * caller gets CM_EUNAVAIL, not an internal error. */
		PQclear(res);
		conn_down(c, PQerrorMessage(c->pg));
		return;
	}
	if (c->state == ST_PREPARING && c->prep < 0) {
		int ok = schema_checked(c, res) == 0;

		PQclear(res);
		if (ok) {
			c->prep = 0;
			send_prepare(c);
		}
		return;
	}
	if (c->state == ST_PREPARING) {
		if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
			char buf[256];
			CM_ERROR("PS-DB-PREPARE", NULL, "prepare %s: %s",
			    stmts[c->prep].name,
			    ps_pg_oneline(
			        res != NULL ? PQresultErrorMessage(res) : NULL,
			        buf, sizeof(buf)));
			PQclear(res);
			conn_down(c, "prepare failed");
			return;
		}
		PQclear(res);
		if (++c->prep < STMT_COUNT) {
			send_prepare(c);
			return;
		}
		c->state = ST_IDLE;
		c->initial = 0;
		c->backoff_ms = PS_BACKOFF_MIN_MS;
		set_up(c, 1);
		if (c->warned) {
			CM_INFO(
			    "PS-DB-UP", NULL, "db conn %d connected", c->idx);
			c->warned = 0;
		}
		pump(c->db);
		return;
	}
	if (c->state == ST_BUSY) {
		query *q = c->q;
		int    rv;

		c->q = NULL;
		c->state = ST_IDLE;
		ps_metrics_pg_query(
		    stmt_metric[q->stmt], cm_mono_us() - q->sent_us);
		if (res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK) {
			rv = CM_OK;
		} else {
			count_error(c->db);
			char buf[256];
			CM_ERROR("PS-DB-QUERY", NULL, "%s: %s",
			    stmts[q->stmt].name,
			    ps_pg_oneline(res != NULL
			            ? PQresultErrorMessage(res)
			            : "no result",
			        buf, sizeof(buf)));
			rv = CM_EINTERNAL;
		}
		q->finish(q, rv, rv == CM_OK ? res : NULL);
		query_free(q);
		PQclear(res);
		pump(c->db);
		return;
	}
	PQclear(res);
}

static void
write_cb(evutil_socket_t fd, short what, void *arg)
{
	(void) fd;
	(void) what;
	flush(arg);
}

static void
read_cb(evutil_socket_t fd, short what, void *arg)
{
	conn *c = arg;

	(void) fd;
	(void) what;
	if (!PQconsumeInput(c->pg) || PQstatus(c->pg) == CONNECTION_BAD) {
		conn_down(c, PQerrorMessage(c->pg));
		return;
	}
	if (c->flushing && flush(c) != CM_OK) {
		return;
	}
	if (c->state != ST_PREPARING && c->state != ST_BUSY) {
		/* Idle: nothing expected; drop anything unsolicited. */
		PGnotify *n;
		while ((n = PQnotifies(c->pg)) != NULL) {
			PQfreemem(n);
		}
		return;
	}
	while (!PQisBusy(c->pg)) {
		PGresult *r = PQgetResult(c->pg);
		if (r == NULL) {
			command_done(c);
			return;
		}
		if (c->res == NULL) {
			c->res = r;
		} else {
			PQclear(r);
		}
	}
}

static void
connected(conn *c)
{
	evutil_socket_t fd = PQsocket(c->pg);

	evtimer_del(c->timer);
	free_events(c);
	if (PQsetnonblocking(c->pg, 1) != 0) {
		conn_down(c, PQerrorMessage(c->pg));
		return;
	}
	c->io = event_new(c->db->base, fd, EV_READ | EV_PERSIST, read_cb, c);
	c->wev = event_new(c->db->base, fd, EV_WRITE, write_cb, c);
	if (c->io == NULL || c->wev == NULL) {
		conn_down(c, "out of memory");
		return;
	}
	event_add(c->io, NULL);
	c->state = ST_PREPARING;
	c->prep = -1;
	send_schema_check(c);
}

static void connect_io_cb(evutil_socket_t fd, short what, void *arg);

/* Waits for the socket as PQconnectPoll asked. The socket may change
 * between steps (libpq tries each address in turn), so the event is made
 * afresh each time. */
static void
connect_wait(conn *c, PostgresPollingStatusType st)
{
	evutil_socket_t fd = PQsocket(c->pg);

	free_events(c);
	if (fd < 0) {
		conn_down(c, PQerrorMessage(c->pg));
		return;
	}
	c->io = event_new(c->db->base, fd,
	    st == PGRES_POLLING_READING ? EV_READ : EV_WRITE, connect_io_cb,
	    c);
	if (c->io == NULL) {
		conn_down(c, "out of memory");
		return;
	}
	event_add(c->io, NULL);
}

static void
connect_io_cb(evutil_socket_t fd, short what, void *arg)
{
	conn                     *c = arg;
	PostgresPollingStatusType st;

	(void) fd;
	(void) what;
	st = PQconnectPoll(c->pg);
	switch (st) {
	case PGRES_POLLING_OK:
		connected(c);
		break;
	case PGRES_POLLING_READING:
	case PGRES_POLLING_WRITING:
		connect_wait(c, st);
		break;
	default:
		conn_down(c, PQerrorMessage(c->pg));
		break;
	}
}

/* One timer per connection: in DOWN it ends the back-off, while connecting
 * it is the connect timeout. */
static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	conn *c = arg;

	(void) fd;
	(void) what;
	if (c->state == ST_DOWN) {
		conn_start(c);
	} else if (c->state == ST_CONNECTING || c->state == ST_PREPARING) {
		conn_down(c, "connect timed out");
	}
}

static void
conn_start(conn *c)
{
	c->pg = PQconnectStart(c->db->conninfo);
	if (c->pg == NULL) {
		conn_down(c, "out of memory");
		return;
	}
	if (PQstatus(c->pg) == CONNECTION_BAD) {
		conn_down(c, PQerrorMessage(c->pg));
		return;
	}
	c->state = ST_CONNECTING;
	add_ms(c->timer, CONNECT_TIMEOUT_MS);
	connect_wait(c, PGRES_POLLING_WRITING);
}

/* ---- the queue ---- */

static void
pump(ps_db *db)
{
	for (int i = 0; i < db->nconns && db->head != NULL; i++) {
		conn *c = &db->conns[i];
		if (c->state == ST_IDLE) {
			query *q = db->head;
			db->head = q->next;
			if (db->head == NULL) {
				db->tail = &db->head;
			}
			db->queued--;
			send_query(c, q);
		}
	}
}

static void
pump_cb(evutil_socket_t fd, short what, void *arg)
{
	(void) fd;
	(void) what;
	pump(arg);
}

static int
any_idle(const ps_db *db)
{
	for (int i = 0; i < db->nconns; i++) {
		if (db->conns[i].state == ST_IDLE) {
			return 1;
		}
	}
	return 0;
}

static int
submit(ps_db *db, query *q)
{
	if (db->closing || db->queued >= PS_DB_QUEUE_MAX ||
	    !any_can_serve(db)) {
		count_error(db);
		query_free(q);
		return CM_EUNAVAIL;
	}
	q->queued_us = cm_mono_us();
	if (db->head != NULL || !any_idle(db)) {
		/* Queued behind others, or every connection is busy. */
		q->waited = 1;
		ps_metrics_pg_queue_wait();
	}
	q->next = NULL;
	*db->tail = q;
	db->tail = &q->next;
	db->queued++;
	event_active(db->pump, EV_TIMEOUT, 0);
	return CM_OK;
}

/* Looks up product id. Returns CM_OK and later calls cb once, never before
 * returning; or CM_EUNAVAIL (no connection is up) / CM_ENOMEM without
 * calling it. sent (may be NULL) is called with arg just before the query
 * is written to a connection, possibly more than once when a connection
 * fails under it, and not at all when it fails before. */
int
ps_db_get_product(
    ps_db *db, int64_t id, ps_db_sent_fn sent, ps_db_product_fn cb, void *arg)
{
	query *q = calloc(1, sizeof(*q));
	if (q == NULL) {
		return CM_ENOMEM;
	}
	q->stmt = STMT_GET_PRODUCT;
	q->nparams = 1;
	q->finish = finish_product;
	q->sent = sent;
	q->cb.product = cb;
	q->arg = arg;
	if (set_ll(q, 0, id) != CM_OK) {
		query_free(q);
		return CM_ENOMEM;
	}
	return submit(db, q);
}

/* Lists up to limit products with id > after, by id. Same contract as
 * ps_db_get_product(); cb owns the items it gets. */
int
ps_db_list_products(
    ps_db *db, int64_t after, int limit, ps_db_list_fn cb, void *arg)
{
	query *q = calloc(1, sizeof(*q));
	if (q == NULL) {
		return CM_ENOMEM;
	}
	q->stmt = STMT_LIST_PRODUCTS;
	q->nparams = 2;
	q->finish = finish_list;
	q->cb.list = cb;
	q->arg = arg;
	if (set_ll(q, 0, after) != CM_OK || set_ll(q, 1, limit) != CM_OK) {
		query_free(q);
		return CM_ENOMEM;
	}
	return submit(db, q);
}

/* Reserves a product id for a create (nextval of the identity sequence).
 * Same contract as ps_db_get_product(). */
int
ps_db_reserve_id(ps_db *db, ps_db_id_fn cb, void *arg)
{
	query *q = calloc(1, sizeof(*q));
	if (q == NULL) {
		return CM_ENOMEM;
	}
	q->stmt = STMT_RESERVE_ID;
	q->nparams = 0;
	q->finish = finish_id;
	q->cb.id = cb;
	q->arg = arg;
	return submit(db, q);
}

static const char *
write_op(Catalog__Method m)
{
	switch (m) {
	case CATALOG__METHOD__METHOD_CREATE_PRODUCT:
		return "create";
	case CATALOG__METHOD__METHOD_REPLACE_PRODUCT:
		return "replace";
	case CATALOG__METHOD__METHOD_PATCH_PRODUCT:
		return "patch";
	case CATALOG__METHOD__METHOD_DELETE_PRODUCT:
		return "delete";
	default:
		return NULL;
	}
}

/* Runs one write through catalog_write() (its own transaction). Copies
 * what it needs from a. Same contract as ps_db_get_product(), plus
 * CM_EINVAL (not a write method) without calling cb. */
int
ps_db_write(ps_db *db, const ps_db_write_args *a, ps_db_write_fn cb, void *arg)
{
	const Catalog__ProductInput *in = a->input;
	const char                  *op = write_op(a->method);
	query                       *q;
	int                          rv = CM_OK;

	if (op == NULL) {
		return CM_EINVAL;
	}
	if ((q = calloc(1, sizeof(*q))) == NULL) {
		return CM_ENOMEM;
	}
	q->stmt = STMT_WRITE;
	q->nparams = WRITE_PARAMS;
	q->finish = finish_write;
	q->cb.write = cb;
	q->arg = arg;
	/* Each set_ returns CM_OK (0) or CM_ENOMEM: or-ing keeps any failure.
	 */
	rv |= set_text(q, 0, op);
	rv |= set_ll(q, 1, a->id);
	rv |= set_ll(q, 2, a->if_match);
	if (a->idem_key != NULL) {
		rv |= set_text(q, 3, a->idem_key);
		rv |= set_param(
		    q, WRITE_FP_PARAM, a->fingerprint, a->fingerprint_len, 1);
	}
	if (in != NULL) {
		rv |= set_text(q, 5, in->sku);
		rv |= set_text(q, 6, in->name);
		rv |= set_text(q, 7, in->description);
		rv |= set_ll(q, 8, in->price_cents);
		rv |= set_text(q, 9, in->currency);
		rv |= set_ll(q, 10, in->stock);
		rv |= set_ll(q, 11, (long long) in->mask);
	} else {
		rv |= set_ll(q, 11, 0);
	}
	rv |= set_ll(q, 12, a->idem_ttl_s);
	if (rv != CM_OK) {
		query_free(q);
		return CM_ENOMEM;
	}
	return submit(db, q);
}

/* Creates a pool of nconns connections to conninfo on base; they connect
 * in the background. Returns CM_OK with *out (freed with ps_db_free()). */
int
ps_db_new(
    struct event_base *base, const char *conninfo, int nconns, ps_db **out)
{
	ps_db *db = calloc(1, sizeof(*db));

	if (db == NULL) {
		return CM_ENOMEM;
	}
	db->base = base;
	db->tail = &db->head;
	db->nconns = nconns;
	db->conninfo = ps_msg_strdup(conninfo, strlen(conninfo));
	db->conns = calloc((size_t) nconns, sizeof(*db->conns));
	db->pump = event_new(base, -1, 0, pump_cb, db);
	if (db->conninfo == NULL || db->conns == NULL || db->pump == NULL) {
		goto fail;
	}
	for (int i = 0; i < nconns; i++) {
		conn *c = &db->conns[i];
		c->db = db;
		c->idx = i;
		c->initial = 1;
		c->backoff_ms = PS_BACKOFF_MIN_MS;
		if ((c->timer = evtimer_new(base, timer_cb, c)) == NULL) {
			goto fail;
		}
	}
	ps_metrics_pg_conn(0, nconns);
	db->counted = 1;
	for (int i = 0; i < nconns; i++) {
		conn_start(&db->conns[i]);
	}
	*out = db;
	return CM_OK;
fail:
	ps_db_free(db);
	return CM_ENOMEM;
}

/* Closes every connection. Queries in flight or queued complete with
 * CM_EUNAVAIL before this returns. Runs on the pool's loop thread. */
void
ps_db_free(ps_db *db)
{
	if (db == NULL) {
		return;
	}
	db->closing = 1;
	for (int i = 0; db->conns != NULL && i < db->nconns; i++) {
		conn *c = &db->conns[i];
		if (c->db != NULL) {
			conn_down(c, "closing");
		}
		if (c->timer != NULL) {
			event_free(c->timer);
		}
	}
	fail_queue(db);
	if (db->counted) {
		ps_metrics_pg_conn(0, -db->nconns);
	}
	if (db->pump != NULL) {
		event_free(db->pump);
	}
	free(db->conns);
	free(db->conninfo);
	free(db);
}
