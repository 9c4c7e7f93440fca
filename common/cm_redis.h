/* cm_redis.h - one hiredis async connection on a libevent loop that keeps
 * itself up, shared by the product service's cache and the gateway's rate
 * limiter: a connect timeout, AUTH and SELECT from a redis:// URL,
 * reconnects with a doubling back-off, and the DOWN/UP log lines.
 *
 * The connection lives on one loop and is touched only from its thread.
 * Its user sends its own commands on the context cm_redis_conn_ctx()
 * returns; commands queued while the connect is in progress run once it
 * completes, behind AUTH and SELECT. This is the only common file that
 * includes hiredis.
 */
#ifndef CM_REDIS_H
#define CM_REDIS_H

#include "cm_redis_url.h"

struct event_base;
struct redisAsyncContext;

typedef struct cm_redis_conn cm_redis_conn;

typedef struct cm_redis_opts {
	const cm_redis_url *url; /* copied */
	struct event_base  *base;
	int                 connect_timeout_ms;
	int backoff_min_ms, backoff_max_ms; /* reconnect delays, doubling */
	/* Log event ids are the prefix and -DOWN (warn, the first failure),
	 * -RETRY (debug, the next ones), -UP (info) and -AUTH (error, AUTH
	 * or SELECT refused). The notes, when not NULL, end the DOWN and UP
	 * lines. */
	const char *log_prefix;
	const char *down_note, *up_note;
	/* 1: the connection is up once TCP connects. 0: once the user says
	 * so with cm_redis_conn_up(), e.g. when its setup commands answered;
	 * until then the back-off keeps growing. */
	int up_on_connect;
	/* 1: look a host name up with evdns on the loop before each connect
	 * (hiredis would call getaddrinfo(), which blocks). */
	int resolve;
	/* Called on each new context, right after AUTH and SELECT are
	 * queued: the place to queue setup commands. May be NULL. */
	void (*opened)(void *arg, struct redisAsyncContext *ac);
	/* Called when a started connect fails or times out, or a connection
	 * is lost (not on cm_redis_conn_free()); hiredis answers the queued
	 * commands with NULL replies around it. A retry follows. May be
	 * NULL. */
	void (*down)(void *arg, const char *why);
	void *arg;
} cm_redis_opts;

/* Creates the connection and starts connecting. *out is set before the
 * first connect starts, so o->opened may already use it. Returns CM_OK,
 * CM_ENOMEM, or CM_EINVAL when the DNS resolver cannot start. The caller
 * frees *out with cm_redis_conn_free(). */
int cm_redis_conn_new(cm_redis_conn **out, const cm_redis_opts *o);

/* Closes the connection: hiredis answers every queued command with a NULL
 * reply before this returns, and no callback of o runs. Must run on the
 * loop thread, outside any hiredis callback. NULL does nothing. */
void cm_redis_conn_free(cm_redis_conn *c);

/* The live context (possibly still connecting), or NULL while down. */
struct redisAsyncContext *cm_redis_conn_ctx(const cm_redis_conn *c);

/* Has the live context finished its TCP connect? */
int cm_redis_conn_connected(const cm_redis_conn *c);

/* Marks the connection up: the back-off starts over, and the UP line is
 * logged when it was down. */
void cm_redis_conn_up(cm_redis_conn *c);

/* The wait, in ms, of the next reconnect to be scheduled: inside the down
 * callback, the one about to be (for tests). */
int cm_redis_conn_backoff_ms(const cm_redis_conn *c);

/* The arg of the options of the connection that made ac, for a reply
 * callback that has no other way to find its owner. */
void *cm_redis_conn_arg(const struct redisAsyncContext *ac);

#endif /* CM_REDIS_H */
