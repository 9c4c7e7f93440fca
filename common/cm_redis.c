/* cm_redis.c - a hiredis async connection that reconnects by itself: the
 * connection keeping the product cache and the rate limiter share.
 *
 * hiredis 0.14 async has no connect timeout, so each connect carries a
 * libevent timer that gives the context up (a host that drops SYNs would
 * otherwise hold it for the kernel's minutes). Every failure schedules a
 * reconnect after a back-off that doubles up to a cap, and logs once per
 * outage at warn (then at debug) so that a long outage does not flood the
 * log.
 */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "cm.h"
#include "cm_log.h"
#include "cm_net.h"
#include "cm_redis.h"

struct cm_redis_conn {
	cm_redis_opts      o;
	cm_redis_url       url;
	redisAsyncContext *ac;        /* NULL while down */
	int                connected; /* TCP connect done */
	int                down;      /* for logging transitions only */
	int                closing;
	int                backoff_ms;
	struct event      *retry;      /* reconnect back-off */
	struct event      *conn_timer; /* connect timeout */
	/* NULL unless o.resolve and the host is a name. */
	struct evdns_base                *dns;
	struct evdns_getaddrinfo_request *dreq;
	int                               resolving;
	char                              event[64]; /* see event() */
};

static void start_connect(cm_redis_conn *c);

/* The log event id: the prefix and suffix. The log macros evaluate it
 * only when the line is written. */
static const char *
event(cm_redis_conn *c, const char *suffix)
{
	snprintf(c->event, sizeof(c->event), "%s-%s", c->o.log_prefix, suffix);
	return c->event;
}

static void
add_ms(struct event *ev, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(ev, &tv);
}

static void
mark_down(cm_redis_conn *c, const char *why)
{
	if (!c->down) {
		CM_WARN(event(c, "DOWN"), NULL, "redis %s:%d: %s%s",
		    c->url.host, c->url.port, why, c->o.down_note);
		c->down = 1;
	} else {
		CM_DEBUG(event(c, "RETRY"), NULL, "redis %s:%d: %s",
		    c->url.host, c->url.port, why);
	}
}

static void
schedule_retry(cm_redis_conn *c)
{
	if (c->closing) {
		return;
	}
	add_ms(c->retry, c->backoff_ms);
	c->backoff_ms *= 2;
	if (c->backoff_ms > c->o.backoff_max_ms) {
		c->backoff_ms = c->o.backoff_max_ms;
	}
}

/* A started connect failed or a connection went away: log, tell the user
 * (tell is 0 for a connect that could not even start), retry later. */
static void
lost(cm_redis_conn *c, const char *why, int tell)
{
	mark_down(c, why);
	if (tell && c->o.down != NULL) {
		c->o.down(c->o.arg, why);
	}
	schedule_retry(c);
}

static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void) fd;
	(void) what;
	start_connect(arg);
}

/* The connect did not finish in time (a host that drops SYNs): give the
 * context up. hiredis answers its queued commands with NULL. */
static void
conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	cm_redis_conn     *c = arg;
	redisAsyncContext *ac = c->ac;

	(void) fd;
	(void) what;
	if (ac == NULL || c->connected) {
		return;
	}
	c->ac = NULL;
	redisAsyncFree(ac);
	lost(c, "connect timed out", 1);
}

static void
on_connect(const redisAsyncContext *ac, int status)
{
	cm_redis_conn *c = ac->data;

	evtimer_del(c->conn_timer);
	if (status != REDIS_OK) {
		c->ac = NULL; /* hiredis frees ac after we return */
		lost(c, ac->errstr, 1);
		return;
	}
	c->connected = 1;
	if (c->o.up_on_connect) {
		cm_redis_conn_up(c);
	}
}

static void
on_disconnect(const redisAsyncContext *ac, int status)
{
	cm_redis_conn *c = ac->data;

	(void) status;
	c->ac = NULL;
	c->connected = 0;
	if (c->closing) {
		return;
	}
	lost(c, ac->err ? ac->errstr : "disconnected", 1);
}

/* AUTH and SELECT: an error reply means this connection cannot serve; drop
 * it (the disconnect callback schedules a retry). */
static void
handshake_cb(redisAsyncContext *ac, void *r, void *priv)
{
	cm_redis_conn *c = ac->data;
	redisReply    *reply = r;

	if (reply != NULL && reply->type == REDIS_REPLY_ERROR) {
		CM_ERROR(event(c, "AUTH"), NULL, "redis %s: %s",
		    (const char *) priv, reply->str);
		redisAsyncDisconnect(ac);
	}
}

/* Connects to addr (an IP address, or a name hiredis resolves) without
 * waiting for the connect. Commands the user queues meanwhile wait behind
 * AUTH and SELECT. */
static void
connect_addr(cm_redis_conn *c, const char *addr)
{
	redisAsyncContext *ac = redisAsyncConnect(addr, c->url.port);
	char               db[16];

	if (ac == NULL || ac->err) {
		mark_down(c, ac != NULL ? ac->errstr : "out of memory");
		if (ac != NULL) {
			redisAsyncFree(ac);
		}
		schedule_retry(c);
		return;
	}
	ac->data = c;
	if (redisLibeventAttach(ac, c->o.base) != REDIS_OK) {
		redisAsyncFree(ac);
		schedule_retry(c);
		return;
	}
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	c->ac = ac;
	c->connected = 0;
	if (c->url.pass[0] != '\0') { /* AUTH [user] password */
		const char *argv[] = {"AUTH", c->url.user, c->url.pass};
		int         n = c->url.user[0] != '\0' ? 3 : 2;
		argv[1] = n == 3 ? c->url.user : c->url.pass;
		redisAsyncCommandArgv(ac, handshake_cb, "AUTH", n, argv, NULL);
	}
	if (c->url.db != 0) {
		const char *argv[] = {"SELECT", db};
		snprintf(db, sizeof(db), "%d", c->url.db);
		redisAsyncCommandArgv(
		    ac, handshake_cb, "SELECT", 2, argv, NULL);
	}
	if (c->o.opened != NULL) {
		c->o.opened(c->o.arg, ac);
	}
	add_ms(c->conn_timer, c->o.connect_timeout_ms);
}

/* evdns answered (on the loop), or the lookup was cancelled. */
static void
dns_cb(int result, struct evutil_addrinfo *res, void *arg)
{
	cm_redis_conn          *c = arg;
	struct evutil_addrinfo *pick = NULL;
	char                    text[INET6_ADDRSTRLEN] = "";

	c->dreq = NULL;
	c->resolving = 0;
	/* IPv4 first, as hiredis's own getaddrinfo() order would mostly
	 * give; then IPv6. */
	for (struct evutil_addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
		if (ai->ai_family == AF_INET ||
		    (ai->ai_family == AF_INET6 && pick == NULL)) {
			pick = ai;
			if (ai->ai_family == AF_INET) {
				break;
			}
		}
	}
	if (pick != NULL) {
		const void *a = pick->ai_family == AF_INET
		    ? (const void *) &((struct sockaddr_in *) pick->ai_addr)
		          ->sin_addr
		    : (const void *) &((struct sockaddr_in6 *) pick->ai_addr)
		          ->sin6_addr;
		evutil_inet_ntop(pick->ai_family, a, text, sizeof(text));
	}
	if (res != NULL) {
		evutil_freeaddrinfo(res);
	}
	if (result == EVUTIL_EAI_CANCEL || c->closing) {
		return;
	}
	if (result != 0 || text[0] == '\0') {
		mark_down(c,
		    result != 0 ? evutil_gai_strerror(result)
		                : "the name has no address");
		schedule_retry(c);
		return;
	}
	connect_addr(c, text);
}

/* Connects, resolving a host name first when asked to. */
static void
start_connect(cm_redis_conn *c)
{
	struct evutil_addrinfo            hints;
	struct evdns_getaddrinfo_request *req;

	if (c->dns == NULL) {
		connect_addr(c, c->url.host);
		return;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	c->resolving = 1;
	/* May call dns_cb before it returns (then it returns NULL). */
	req = evdns_getaddrinfo(c->dns, c->url.host, NULL, &hints, dns_cb, c);
	if (c->resolving) {
		c->dreq = req;
	}
}

static int
is_ip(const char *host)
{
	unsigned char buf[16];

	return evutil_inet_pton(AF_INET, host, buf) == 1 ||
	    evutil_inet_pton(AF_INET6, host, buf) == 1;
}

int
cm_redis_conn_new(cm_redis_conn **out, const cm_redis_opts *o)
{
	cm_redis_conn *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		return CM_ENOMEM;
	}
	c->o = *o;
	c->o.down_note = o->down_note != NULL ? o->down_note : "";
	c->o.up_note = o->up_note != NULL ? o->up_note : "";
	c->url = *o->url;
	c->backoff_ms = o->backoff_min_ms;
	c->retry = evtimer_new(o->base, retry_cb, c);
	c->conn_timer = evtimer_new(o->base, conn_timer_cb, c);
	if (c->retry == NULL || c->conn_timer == NULL) {
		cm_redis_conn_free(c);
		return CM_ENOMEM;
	}
	if (o->resolve && !is_ip(c->url.host) &&
	    (c->dns = cm_evdns_new(o->base, NULL)) == NULL) {
		cm_redis_conn_free(c);
		return CM_EINVAL;
	}
	*out = c;
	start_connect(c);
	return CM_OK;
}

void
cm_redis_conn_free(cm_redis_conn *c)
{
	if (c == NULL) {
		return;
	}
	c->closing = 1;
	if (c->dreq != NULL) {
		/* libevent 2.1 delivers the cancellation as a deferred
		 * callback, which frees the lookup: run the loop once (as
		 * gw_disc_free() does), or it leaks. */
		evdns_getaddrinfo_cancel(c->dreq);
		event_base_loop(c->o.base, EVLOOP_NONBLOCK);
	}
	if (c->dns != NULL) {
		evdns_base_free(c->dns, 0);
	}
	if (c->ac != NULL) {
		/* Every queued command is called back with NULL first. */
		redisAsyncContext *ac = c->ac;
		c->ac = NULL;
		redisAsyncFree(ac);
	}
	if (c->retry != NULL) {
		event_free(c->retry);
	}
	if (c->conn_timer != NULL) {
		event_free(c->conn_timer);
	}
	free(c);
}

redisAsyncContext *
cm_redis_conn_ctx(const cm_redis_conn *c)
{
	return c != NULL ? c->ac : NULL;
}

int
cm_redis_conn_connected(const cm_redis_conn *c)
{
	return c != NULL && c->ac != NULL && c->connected;
}

void
cm_redis_conn_up(cm_redis_conn *c)
{
	c->backoff_ms = c->o.backoff_min_ms;
	if (c->down) {
		CM_INFO(event(c, "UP"), NULL, "redis %s:%d connected%s",
		    c->url.host, c->url.port, c->o.up_note);
		c->down = 0;
	}
}

int
cm_redis_conn_backoff_ms(const cm_redis_conn *c)
{
	return c->backoff_ms;
}

void *
cm_redis_conn_arg(const redisAsyncContext *ac)
{
	return ((const cm_redis_conn *) ac->data)->o.arg;
}
