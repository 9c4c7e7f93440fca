/* gw_conn.c - guards the gateway's HTTP connections: strict framing and
 * size limits (gw_guard.c), header and body timeouts, and the cap on open
 * connections. The only file that puts libevent around the scanner.
 *
 * How: evhttp_set_bevcb() gives every accepted connection a filtering
 * bufferevent over the socket's, so the input filter conn_in() sees each
 * raw byte before evhttp does. It holds a request's head until the head is
 * complete and valid, then passes it on; a Content-Length body streams
 * through once its head passed (its size was checked first); a chunked
 * request is held whole and handed over re-framed as one chunk, so that
 * a bad chunk or an oversize sum is refused before evhttp reads a byte of
 * it. evhttp therefore only ever parses requests the scanner accepted,
 * and never answers with its own text/html errors.
 *
 * Refusing: libevent 2.1 has no hook to answer from here, so the filter
 * drops what it holds and passes evhttp a request of its own instead,
 *   GET /.guard/<secret>/<gw_guard_err> HTTP/1.1, Connection: close,
 * which gw_http.c answers with problem+json and the right status; then
 * evhttp closes the connection. The secret is 128 random bits drawn once
 * per process and compared in constant time, so a client cannot reach
 * that handler itself. Requests that passed before stay in front of it, so
 * replies keep their order. After it, every byte from the client is
 * dropped. (We considered writing the reply into the socket ourselves:
 * it would overtake replies evhttp still owes to pipelined requests.)
 *
 * Timeouts: evhttp's own timeout (GATEWAY_IDLE_TIMEOUT_S) closes silent
 * connections; a client that trickles a byte now and then defeats it, so
 * each request's head must be complete within GATEWAY_HEADER_TIMEOUT_MS
 * of its first byte, and its body within GATEWAY_BODY_TIMEOUT_MS of the
 * head's end. Both are checked when bytes arrive and by a timer per
 * connection. A late head or chunked body gets 408 like any refusal. A
 * late Content-Length body cannot: evhttp already has its head, so no
 * request can be slipped in front of it. evhttp 2.1 reads a request only
 * once every earlier reply is written, and conn_out() says "written" only
 * when the kernel has the bytes, so nothing is owed on the connection
 * then: timeout_reply() writes a 408 problem into the socket itself
 * (best effort: the socket's buffer holds it, or it is dropped) and shuts
 * the connection down.
 *
 * Connection cap: each loop may hold ceil(GATEWAY_MAX_CONNECTIONS/loops)
 * connections. At its share a loop stops accepting (its listener is
 * disabled) and starts again when one closes; new clients wait in the
 * kernel's backlog rather than get an error. We chose this over
 * accepting and answering 503: an answer costs a descriptor and a reply
 * at the moment descriptors are what is short, and the header timeout
 * frees slots that slow clients hold within seconds.
 *
 * Output: libevent 2.1's filter bufferevent loses replies as evhttp uses
 * it. evhttp adds a reply while writing is disabled and then enables it,
 * which a filter does not notice; and a filter tells evhttp "written" once
 * the bytes reached the socket bufferevent's buffer, after which evhttp
 * may free the connection and shut the socket down with the reply still
 * unsent. So conn_out() writes to the socket itself, only from this
 * file's own event (kick), and reports "written" only once the kernel has
 * every byte: a reply added to the filter schedules the kick; a write
 * that would block waits for the socket to become writable.
 *
 * Lifetimes: libevent frees a bufferevent (and so runs conn_free()) from
 * its loop some time after evhttp drops it, possibly during
 * event_base_free(). gw_conns_free() therefore detaches every connection
 * still known (frees its timer, forgets its owner) so that a late
 * conn_free() touches nothing else.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#include "cm.h"
#include "cm_log.h"
#include "gw.h"

typedef struct gw_conn gw_conn;

struct gw_conns {
	struct event_base     *base;
	struct evconnlistener *listener; /* NULL once closed */
	gw_conns_opts          o;
	int                    open;   /* connections on this loop */
	int                    paused; /* listener disabled at the cap */
	gw_conn               *list;   /* live connections */
};

struct gw_conn {
	gw_conns           *owner; /* NULL once detached */
	struct bufferevent *bev;   /* the filter evhttp reads from */
	struct event       *timer;
	struct event       *kick;    /* runs conn_kick() from the loop */
	struct event       *wev;     /* the socket became writable */
	int                 kicking; /* conn_out() may write now */
	gw_guard_scan       scan;
	struct evbuffer    *hold; /* head of the request being received */
	struct evbuffer    *data; /* chunk data of a chunked request */
	int64_t             deadline_us; /* 0: none */
	int64_t             timer_at;    /* deadline the timer is set for */
	int                 timer_on;    /* the timer is pending */
	int                 header_timeout_ms;
	int                 body_timeout_ms;
	int                 chunked; /* the held request is chunked */
	int                 dead;    /* refused: input is dropped */
	gw_conn            *prev, *next;
};

/* ---- the secret of the reject path ---- */

static pthread_once_t secret_once = PTHREAD_ONCE_INIT;
static char           secret[GW_CONN_SECRET_LEN + 1];
static int            secret_ready;

static void
secret_init(void)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char     r[GW_CONN_SECRET_LEN / 2];

	if (getrandom(r, sizeof(r), 0) != (ssize_t) sizeof(r)) {
		return;
	}
	for (size_t i = 0; i < sizeof(r); i++) {
		secret[2 * i] = hex[r[i] >> 4];
		secret[2 * i + 1] = hex[r[i] & 0xf];
	}
	secret[GW_CONN_SECRET_LEN] = '\0';
	secret_ready = 1;
}

int
gw_conn_secret_ok(const char *s, size_t len)
{
	unsigned char diff = 0;

	if (!secret_ready || len != GW_CONN_SECRET_LEN) {
		return 0;
	}
	/* constant time: every byte is compared whatever differs */
	for (size_t i = 0; i < GW_CONN_SECRET_LEN; i++) {
		diff |= (unsigned char) (s[i] ^ secret[i]);
	}
	return diff == 0;
}

int
gw_conn_reject_path(char *buf, size_t len, gw_guard_err e)
{
	if (!secret_ready) {
		return CM_EINTERNAL;
	}
	snprintf(buf, len, "%s%s/%d", GW_CONN_REJECT_PREFIX, secret, (int) e);
	return CM_OK;
}

/* ---- per connection ---- */

static void
unlink_conn(gw_conn *c)
{
	gw_conns *cs = c->owner;

	if (c->prev != NULL) {
		c->prev->next = c->next;
	} else {
		cs->list = c->next;
	}
	if (c->next != NULL) {
		c->next->prev = c->prev;
	}
	c->prev = c->next = NULL;
	c->owner = NULL;
	cs->open--;
	gw_metrics_connections(-1);
}

/* The filter's free_context: the bufferevent is being finalized. */
static void
conn_free(void *arg)
{
	gw_conn  *c = arg;
	gw_conns *cs = c->owner;

	if (cs != NULL) {
		unlink_conn(c);
		if (cs->paused && cs->listener != NULL &&
		    cs->open < cs->o.max_conns) {
			evconnlistener_enable(cs->listener);
			cs->paused = 0;
		}
	}
	if (c->timer != NULL) {
		event_free(c->timer);
	}
	if (c->kick != NULL) {
		event_free(c->kick);
	}
	if (c->wev != NULL) {
		event_free(c->wev);
	}
	evbuffer_free(c->hold);
	evbuffer_free(c->data);
	free(c);
}

static void conn_timeout(evutil_socket_t fd, short what, void *arg);

/* Makes the timer match deadline_us. Called once per filter call rather
 * than per request, so that a request that arrives whole in one read
 * costs a clock read and no timer. The check on arriving bytes works
 * even when no timer can be made. */
static void
sync_timer(gw_conn *c)
{
	struct timeval tv;
	int64_t        left;

	if (c->deadline_us == 0) {
		if (c->timer_on) {
			evtimer_del(c->timer);
			c->timer_on = 0;
		}
		return;
	}
	if (c->timer_on && c->timer_at == c->deadline_us) {
		return;
	}
	if (c->timer == NULL && c->owner != NULL) {
		c->timer = evtimer_new(c->owner->base, conn_timeout, c);
	}
	if (c->timer == NULL) {
		return;
	}
	left = c->deadline_us - cm_mono_us();
	left = left < 1000 ? 1000 : left;
	tv.tv_sec = (time_t) (left / 1000000);
	tv.tv_usec = (suseconds_t) (left % 1000000);
	evtimer_add(c->timer, &tv);
	c->timer_on = 1;
	c->timer_at = c->deadline_us;
}

/* Starts a deadline ms from now (0: none); sync_timer() sets the timer. */
static void
set_deadline(gw_conn *c, int ms)
{
	c->deadline_us = ms > 0 ? cm_mono_us() + (int64_t) ms * 1000 : 0;
}

static void
disarm(gw_conn *c)
{
	c->deadline_us = 0;
	sync_timer(c);
}

/* Refuses the request being received: drops what is held and what the
 * client sends from now on, and puts the reject request in dst. */
static void
reject(gw_conn *c, struct evbuffer *src, struct evbuffer *dst, gw_guard_err e)
{
	char path[GW_CONN_REJECT_PATH_MAX];

	c->dead = 1;
	disarm(c);
	evbuffer_drain(c->hold, evbuffer_get_length(c->hold));
	evbuffer_drain(c->data, evbuffer_get_length(c->data));
	if (src != NULL) {
		evbuffer_drain(src, evbuffer_get_length(src));
	}
	gw_metrics_http_rejected(gw_guard_err_reason(e));
	CM_INFO("GW-HTTP-REJECT", NULL, "status=%d reason=%s",
	    gw_guard_err_status(e), gw_guard_err_reason(e));
	if (gw_conn_reject_path(path, sizeof(path), e) != CM_OK) {
		return; /* cannot happen after gw_conns_new() */
	}
	evbuffer_add_printf(dst,
	    "GET %s HTTP/1.1\r\nHost: guard\r\nConnection: close\r\n\r\n",
	    path);
}

/* Writes a 408 problem for a late Content-Length body straight into the
 * socket, when no reply of evhttp's waits in the filter; see the comment
 * at the top. A short or failed write is left as it is: the connection
 * ends either way. */
static void
timeout_reply(gw_conn *c, evutil_socket_t fd)
{
	const gw_guard_err e = GW_GUARD_BODY_TIMEOUT;
	char               rid[CM_REQID_LEN + 1];
	char               head[256];
	gw_buf             body;
	int                n;

	if (evbuffer_get_length(bufferevent_get_output(c->bev)) > 0) {
		return;
	}
	cm_reqid_new(rid);
	gw_buf_init(&body);
	gw_json_problem(
	    &body, gw_guard_err_status(e), gw_guard_err_detail(e), rid);
	n = snprintf(head, sizeof(head),
	    "HTTP/1.1 408 Request Timeout\r\n"
	    "Content-Type: application/problem+json\r\n"
	    "Content-Length: %zu\r\nX-Request-Id: %s\r\n"
	    "Connection: close\r\n\r\n",
	    body.len, rid);
	if (body.err == CM_OK && n > 0 && (size_t) n < sizeof(head)) {
		struct iovec iov[2] = {
		    {head, (size_t) n}, {body.data, body.len}};
		struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};

		(void) sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
	}
	gw_buf_fini(&body);
}

/* A deadline passed. Returns 1 when something was put in dst (a reject
 * request), 0 when the connection was shut down instead. */
static int
expire(gw_conn *c, struct evbuffer *src, struct evbuffer *dst)
{
	if (gw_guard_scan_in_head(&c->scan)) {
		reject(c, src, dst, GW_GUARD_HEADER_TIMEOUT);
		return 1;
	}
	if (c->chunked) {
		reject(c, src, dst, GW_GUARD_BODY_TIMEOUT);
		return 1;
	}
	if (!c->scan.in_body) {
		disarm(c);
		return 0;
	}
	/* evhttp is reading this Content-Length body: nothing can be
	 * slipped in front of it, so the connection ends here. */
	c->dead = 1;
	disarm(c);
	gw_metrics_http_rejected(gw_guard_err_reason(GW_GUARD_BODY_TIMEOUT));
	CM_INFO("GW-HTTP-REJECT", NULL, "status=408 reason=%s (closed)",
	    gw_guard_err_reason(GW_GUARD_BODY_TIMEOUT));
	if (src != NULL) {
		evbuffer_drain(src, evbuffer_get_length(src));
	}
	timeout_reply(c, bufferevent_getfd(c->bev));
	shutdown(bufferevent_getfd(c->bev), SHUT_RDWR);
	return 0;
}

static void
conn_timeout(evutil_socket_t fd, short what, void *arg)
{
	gw_conn             *c = arg;
	bufferevent_data_cb  rcb = NULL;
	bufferevent_event_cb ecb = NULL;
	int64_t              left;

	(void) fd;
	(void) what;
	c->timer_on = 0;
	if (c->dead || c->owner == NULL || c->deadline_us == 0) {
		return;
	}
	/* evhttp clears the callbacks when it frees the connection; the
	 * bufferevent is finalized later, and this timer with it. */
	bufferevent_getcb(c->bev, &rcb, NULL, &ecb, NULL);
	if (ecb == NULL) {
		return;
	}
	if ((left = c->deadline_us - cm_mono_us()) > 0) {
		sync_timer(c);
		return;
	}
	if (expire(c, NULL, bufferevent_get_input(c->bev)) &&
	    (bufferevent_get_enabled(c->bev) & EV_READ) && rcb != NULL) {
		/* evhttp waits for a request line (it only ever holds
		 * complete requests): let it read the reject request now.
		 * Otherwise it is busy with an earlier request and reads
		 * its input when it is done. */
		bufferevent_trigger(
		    c->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS);
	}
}

/* A chunked request with Expect: 100-continue: evhttp would send the 100
 * once it sees the head, but it sees a chunked request's head only with
 * the whole body, so a client that waits for the 100 (curl does, for a
 * second) would stall. Sends it from here, but only while evhttp owes no
 * reply and has nothing queued (its read side is waiting for a request
 * line, the output is empty), so that it cannot land inside or before
 * another response. */
static void
send_continue(gw_conn *c, struct evbuffer *dst)
{
	static const char   cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
	bufferevent_data_cb rcb = NULL;
	evutil_socket_t     fd = bufferevent_getfd(c->bev);
	ssize_t             n;

	bufferevent_getcb(c->bev, &rcb, NULL, NULL, NULL);
	if (rcb == NULL || !(bufferevent_get_enabled(c->bev) & EV_READ) ||
	    evbuffer_get_length(dst) > 0 ||
	    evbuffer_get_length(bufferevent_get_output(c->bev)) > 0 ||
	    fd < 0) {
		return; /* the client's expect timeout will do */
	}
	n = send(fd, cont, sizeof(cont) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n > 0 && (size_t) n < sizeof(cont) - 1) {
		shutdown(fd, SHUT_RDWR); /* half an interim response */
	}
}

/* Hands a complete chunked request to evhttp as one chunk. */
static void
emit_chunked(gw_conn *c, struct evbuffer *dst)
{
	size_t len = evbuffer_get_length(c->data);

	evbuffer_add_buffer(dst, c->hold);
	if (len > 0) {
		evbuffer_add_printf(dst, "%zx\r\n", len);
		evbuffer_add_buffer(dst, c->data);
		evbuffer_add(dst, "\r\n", 2);
	}
	evbuffer_add(dst, "0\r\n\r\n", 5);
	c->chunked = 0;
}

/* The input filter: src is what the socket read, dst what evhttp reads.
 * Consumes all of src every time (libevent calls it again while src is
 * not empty and it returns BEV_OK). */
static enum bufferevent_filter_result
conn_in(struct evbuffer *src, struct evbuffer *dst, ev_ssize_t limit,
    enum bufferevent_flush_mode mode, void *arg)
{
	gw_conn *c = arg;
	int      produced = 0;

	(void) limit;
	(void) mode;
	if (c->dead) {
		evbuffer_drain(src, evbuffer_get_length(src));
		return BEV_NEED_MORE;
	}
	while (evbuffer_get_length(src) > 0) {
		struct evbuffer_iovec v;
		gw_guard_run          run;

		/* bytes of a head or body that arrive after its deadline:
		 * a trickle that keeps the idle timeout quiet ends here */
		if (c->deadline_us != 0 && cm_mono_us() >= c->deadline_us) {
			return expire(c, src, dst) || produced ? BEV_OK
			                                       : BEV_NEED_MORE;
		}

		if (evbuffer_peek(src, -1, NULL, &v, 1) < 1) {
			break;
		}
		gw_guard_scan_step(
		    &c->scan, (const uint8_t *) v.iov_base, v.iov_len, &run);
		if (run.events & GW_GUARD_EV_START) {
			set_deadline(c, c->header_timeout_ms);
		}
		switch (run.kind) {
		case GW_GUARD_HEAD:
			evbuffer_remove_buffer(src, c->hold, run.len);
			break;
		case GW_GUARD_DATA:
			evbuffer_remove_buffer(
			    src, c->chunked ? c->data : dst, run.len);
			produced |= !c->chunked;
			break;
		default:
			evbuffer_drain(src, run.len);
			break;
		}
		if (run.events & GW_GUARD_EV_ERROR) {
			reject(c, src, dst, c->scan.err);
			return BEV_OK;
		}
		if (run.events & GW_GUARD_EV_HEAD_END) {
			c->chunked = c->scan.chunked;
			if (!c->chunked) {
				evbuffer_add_buffer(dst, c->hold);
				produced = 1;
			} else if (c->scan.expect_continue &&
			    evbuffer_get_length(src) == 0) {
				/* the client waits before the body */
				send_continue(c, dst);
			}
			set_deadline(
			    c, c->scan.in_body ? c->body_timeout_ms : 0);
		}
		if (run.events & GW_GUARD_EV_MSG_END) {
			if (c->chunked) {
				emit_chunked(c, dst);
				produced = 1;
			}
			c->deadline_us = 0;
		}
	}
	sync_timer(c);
	return produced ? BEV_OK : BEV_NEED_MORE;
}

/* ---- output ---- */

static void conn_kick(evutil_socket_t fd, short what, void *arg);

/* Writes what evhttp put in the filter (src) straight to the socket, but
 * only from conn_kick(); at any other time it schedules the kick. Returns
 * BEV_OK once src is empty, which tells evhttp the reply is written. */
static enum bufferevent_filter_result
conn_out(struct evbuffer *src, struct evbuffer *dst, ev_ssize_t limit,
    enum bufferevent_flush_mode mode, void *arg)
{
	gw_conn        *c = arg;
	evutil_socket_t fd = bufferevent_getfd(c->bev);

	(void) dst;
	(void) limit;
	(void) mode;
	if (!c->kicking) {
		if (c->kick != NULL) {
			event_active(c->kick, EV_TIMEOUT, 0);
		}
		return BEV_NEED_MORE;
	}
	while (evbuffer_get_length(src) > 0) {
		if (evbuffer_write(src, fd) < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK ||
			    errno == EINTR) {
				if (c->wev == NULL) {
					c->wev = event_new(c->owner->base, fd,
					    EV_WRITE, conn_kick, c);
				}
				if (c->wev != NULL) {
					event_add(c->wev, NULL);
				}
				return BEV_NEED_MORE;
			}
			/* the client went away: end reading too, so that
			 * evhttp learns it and frees the connection */
			evbuffer_drain(src, evbuffer_get_length(src));
			shutdown(fd, SHUT_RDWR);
			return BEV_ERROR;
		}
	}
	return BEV_OK;
}

/* The loop's turn to write: hands the filter's output to conn_out(). */
static void
conn_kick(evutil_socket_t fd, short what, void *arg)
{
	gw_conn *c = arg;

	(void) fd;
	(void) what;
	if (c->owner == NULL) {
		return;
	}
	c->kicking = 1;
	bufferevent_flush(c->bev, EV_WRITE, BEV_NORMAL);
	c->kicking = 0;
}

/* Something was added to the filter's output: write it from the loop. */
static void
conn_outbuf(
    struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	gw_conn *c = arg;

	(void) buf;
	if (info->n_added > 0 && c->kick != NULL && !c->kicking) {
		event_active(c->kick, EV_TIMEOUT, 0);
	}
}

/* evhttp's bevcb: a new connection was accepted on this loop. */
static struct bufferevent *
conn_new(struct event_base *base, void *arg)
{
	gw_conns           *cs = arg;
	gw_conn            *c;
	struct bufferevent *sock;

	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->hold = evbuffer_new()) == NULL ||
	    (c->data = evbuffer_new()) == NULL) {
		goto fail;
	}
	if ((sock = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE)) ==
	    NULL) {
		goto fail;
	}
	c->bev = bufferevent_filter_new(
	    sock, conn_in, conn_out, BEV_OPT_CLOSE_ON_FREE, conn_free, c);
	if (c->bev == NULL) {
		bufferevent_free(sock);
		goto fail;
	}
	/* From here on conn_free() owns c. */
	c->kick = event_new(base, -1, 0, conn_kick, c);
	if (c->kick == NULL ||
	    evbuffer_add_cb(bufferevent_get_output(c->bev), conn_outbuf, c) ==
	        NULL) {
		CM_ERROR("GW-CONN-NOMEM", NULL, "cannot guard a connection");
	}
	gw_guard_scan_init(&c->scan, &cs->o.lim);
	c->header_timeout_ms = cs->o.header_timeout_ms;
	c->body_timeout_ms = cs->o.body_timeout_ms;
	c->owner = cs;
	c->next = cs->list;
	if (cs->list != NULL) {
		cs->list->prev = c;
	}
	cs->list = c;
	cs->open++;
	gw_metrics_connections(1);
	if (cs->o.max_conns > 0 && cs->open >= cs->o.max_conns &&
	    cs->listener != NULL && !cs->paused) {
		evconnlistener_disable(cs->listener);
		cs->paused = 1;
		CM_WARN("GW-CONN-LIMIT", NULL,
		    "%d connections open on this loop: accepting paused",
		    cs->open);
	}
	return c->bev;

fail:
	/* evhttp then makes a plain bufferevent: better served unguarded
	 * than a crash, and only when memory is gone anyway */
	CM_ERROR("GW-CONN-NOMEM", NULL, "cannot guard a new connection");
	if (c != NULL) {
		if (c->hold != NULL) {
			evbuffer_free(c->hold);
		}
		if (c->data != NULL) {
			evbuffer_free(c->data);
		}
		free(c);
	}
	return NULL;
}

/* ---- per loop ---- */

void
gw_conns_opts_init(gw_conns_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->lim.max_uri = GW_GUARD_MAX_URI_DEF;
	o->lim.max_header = GW_GUARD_MAX_HEADER_DEF;
	o->lim.max_body = 1048576;
	o->header_timeout_ms = GW_HEADER_TIMEOUT_MS_DEF;
	o->body_timeout_ms = GW_BODY_TIMEOUT_MS_DEF;
	o->max_conns = 0;
}

int
gw_conns_new(gw_conns **out, struct event_base *base, struct evhttp *http,
    const gw_conns_opts *o)
{
	gw_conns *cs;

	pthread_once(&secret_once, secret_init);
	if (!secret_ready) {
		return CM_EINTERNAL;
	}
	if ((cs = calloc(1, sizeof(*cs))) == NULL) {
		return CM_ENOMEM;
	}
	cs->base = base;
	cs->o = *o;
	evhttp_set_bevcb(http, conn_new, cs);
	*out = cs;
	return CM_OK;
}

void
gw_conns_set_listener(gw_conns *cs, struct evconnlistener *l)
{
	if (cs == NULL) {
		return;
	}
	cs->listener = l;
	cs->paused = 0;
	if (l != NULL && cs->o.max_conns > 0 && cs->open >= cs->o.max_conns) {
		evconnlistener_disable(l);
		cs->paused = 1;
	}
}

int
gw_conns_open(const gw_conns *cs)
{
	return cs != NULL ? cs->open : 0;
}

void
gw_conns_free(gw_conns *cs)
{
	if (cs == NULL) {
		return;
	}
	while (cs->list != NULL) {
		gw_conn *c = cs->list;
		if (c->timer != NULL) {
			event_free(c->timer);
			c->timer = NULL;
		}
		if (c->kick != NULL) {
			event_free(c->kick);
			c->kick = NULL;
		}
		if (c->wev != NULL) {
			event_free(c->wev);
			c->wev = NULL;
		}
		c->deadline_us = 0;
		unlink_conn(c);
	}
	free(cs);
}
