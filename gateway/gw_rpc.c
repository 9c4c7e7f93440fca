/* gw_rpc.c - product RPCs to the replicas over NNG req/rep, with deadlines,
 * failover and retries; the only file that speaks NNG.
 *
 * Threads. Each gateway loop owns one gw_rpc. NNG completes aios and
 * reports pipe events on its own threads, so those callbacks do almost
 * nothing: an aio callback appends its flight to rpc->done under rpc->mu, a
 * pipe callback flips atomics of its upstream, and both then event_active()
 * rpc->wake. Everything else - starting receives, decoding, cancelling,
 * retrying, and calling the caller back - runs on the loop thread in
 * wake_cb(), so the HTTP layer only ever sees its own thread.
 *
 * Calls and flights. A call is one logical request with one deadline and
 * possibly several tries. A flight is one try: one NNG message (a
 * catalog.Batch) on one context of one upstream's socket, carrying a list of
 * calls. Today send_calls() is always handed a list of one call; batching
 * only has to gather the calls bound for one upstream and hand them to
 * send_calls() together - replies are already matched by tag.
 *
 * Failover. The gateway owns deadlines and retries (req0 resending is off).
 * When an upstream loses a pipe, its generation counter moves; the loop then
 * cancels every flight sent at an older generation and retries the
 * idempotent calls (GET, LIST, PING) on another connected upstream while
 * the deadline allows. A call that finds no connected upstream waits up to
 * CONNECT_WAIT_MS for one (a dial in progress) before failing.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "cm.h"
#include "cm_log.h"
#include "gw.h"

#define RECONN_MIN_MS   100
#define RECONN_MAX_MS   1000
#define CONNECT_WAIT_MS (RECONN_MAX_MS + 100) /* one dial retry */
#define MAX_REPLY_BYTES (16 << 20)
#define PIPE_SLOTS      4
#define REQID_MAX       64
#define MIN_RETRY_US    1000 /* don't start a try with less time left */

typedef struct call   call;
typedef struct flight flight;

typedef struct upstream {
	gw_rpc    *rpc;
	char      *url;
	nng_socket sock;
	int        open;
	/* Ids of the pipes that completed ADD_POST and have not been
	 * removed: the upstream is usable when one is set. Written by NNG
	 * threads, read by the loop. */
	_Atomic uint32_t pipes[PIPE_SLOTS];
	atomic_uint      gen;    /* bumped when a usable pipe goes away */
	int              was_up; /* loop thread: last state logged */
} upstream;

struct call {
	gw_rpc          *rpc;
	Catalog__Request pb;
	char             reqid[REQID_MAX + 1];
	int64_t          deadline_us;   /* monotonic */
	int64_t          park_until_us; /* while waiting for an upstream */
	int              tries;
	upstream        *last; /* upstream of the latest try */
	gw_rpc_cb        cb;
	void            *arg;
	call            *next; /* in a flight or in rpc->parked */
};

struct flight {
	gw_rpc   *rpc;
	upstream *up;
	unsigned  gen; /* up->gen when sent */
	nng_ctx   ctx;
	int       ctx_open;
	nng_aio  *aio;
	int       receiving;
	call     *calls;
	flight   *done_next;   /* rpc->done queue, under rpc->mu */
	flight   *prev, *next; /* rpc->flights, loop thread */
};

struct gw_rpc {
	struct event_base *base;
	struct event      *wake;
	struct event      *park_timer;
	pthread_mutex_t    mu;
	flight            *done_head; /* under mu */
	flight            *done_tail; /* under mu */
	atomic_int         pipes_changed;
	upstream          *ups;
	size_t             nups;
	size_t             rr;      /* round-robin cursor */
	flight            *flights; /* in flight, loop thread */
	call              *parked;  /* waiting for an upstream, loop thread */
	uint32_t           next_tag;
	int                closing;
};

static int  dispatch(call *c);
static void wake_cb(evutil_socket_t fd, short what, void *arg);
static void park_cb(evutil_socket_t fd, short what, void *arg);

/* ---- URL list ---- */

void
gw_rpc_urls_free(char **urls, size_t n)
{
	if (urls == NULL) {
		return;
	}
	for (size_t i = 0; i < n; i++) {
		free(urls[i]);
	}
	free(urls);
}

int
gw_rpc_urls_parse(const char *s, char ***urls, size_t *n)
{
	size_t cnt = 1, i = 0;
	char **out;

	for (const char *p = s; *p != '\0'; p++) {
		cnt += *p == ',';
	}
	if ((out = calloc(cnt, sizeof(*out))) == NULL) {
		return CM_ENOMEM;
	}
	for (;;) {
		size_t len = strcspn(s, ",");
		size_t b = 0, e = len;
		while (b < e && (s[b] == ' ' || s[b] == '\t')) {
			b++;
		}
		while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t')) {
			e--;
		}
		if (e == b) {
			gw_rpc_urls_free(out, i);
			return CM_EINVAL;
		}
		if ((out[i] = strndup(s + b, e - b)) == NULL) {
			gw_rpc_urls_free(out, i);
			return CM_ENOMEM;
		}
		i++;
		if (s[len] == '\0') {
			break;
		}
		s += len + 1;
	}
	*urls = out;
	*n = i;
	return CM_OK;
}

/* ---- upstreams ---- */

static int
up_ready(upstream *up)
{
	for (int i = 0; i < PIPE_SLOTS; i++) {
		if (atomic_load(&up->pipes[i]) != 0) {
			return 1;
		}
	}
	return 0;
}

static int
any_ready(gw_rpc *rpc)
{
	for (size_t i = 0; i < rpc->nups; i++) {
		if (up_ready(&rpc->ups[i])) {
			return 1;
		}
	}
	return 0;
}

/* Runs on an NNG thread: atomics and event_active() only. */
static void
pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	upstream *up = arg;
	uint32_t  id = (uint32_t) nng_pipe_id(p);
	int       i;

	if (ev == NNG_PIPE_EV_ADD_POST) {
		for (i = 0; i < PIPE_SLOTS; i++) {
			uint32_t free_slot = 0;
			if (atomic_compare_exchange_strong(
			        &up->pipes[i], &free_slot, id)) {
				break;
			}
		}
	} else if (ev == NNG_PIPE_EV_REM_POST) {
		for (i = 0; i < PIPE_SLOTS; i++) {
			uint32_t want = id;
			if (atomic_compare_exchange_strong(
			        &up->pipes[i], &want, 0)) {
				break;
			}
		}
		if (i == PIPE_SLOTS) {
			return; /* never usable, nothing was sent on it */
		}
		atomic_fetch_add(&up->gen, 1);
	} else {
		return;
	}
	atomic_store(&up->rpc->pipes_changed, 1);
	event_active(up->rpc->wake, EV_READ, 0);
}

/* Picks a connected upstream round-robin, avoiding `avoid` (the one that
 * just failed) when another is connected. The generation is read before
 * the readiness check, so a pipe lost right after is still noticed. */
static upstream *
pick(gw_rpc *rpc, const upstream *avoid, unsigned *gen)
{
	upstream *fallback = NULL;
	unsigned  fgen = 0;

	for (size_t i = 0; i < rpc->nups; i++) {
		size_t    k = (rpc->rr + i) % rpc->nups;
		upstream *up = &rpc->ups[k];
		unsigned  g = atomic_load(&up->gen);
		if (!up_ready(up)) {
			continue;
		}
		if (up == avoid) {
			fallback = up;
			fgen = g;
			continue;
		}
		rpc->rr = k + 1;
		*gen = g;
		return up;
	}
	*gen = fgen;
	return fallback;
}

static int
open_upstream(gw_rpc *rpc, upstream *up, char *url, char *err, size_t errlen)
{
	nng_dialer d;
	int        rv;

	up->rpc = rpc;
	up->url = url;
	if ((rv = nng_req0_open(&up->sock)) != 0) {
		goto fail;
	}
	up->open = 1;
	if ((rv = nng_socket_set_ms(up->sock, NNG_OPT_REQ_RESENDTIME,
	         NNG_DURATION_INFINITE)) != 0 ||
	    (rv = nng_socket_set_size(
	         up->sock, NNG_OPT_RECVMAXSZ, MAX_REPLY_BYTES)) != 0 ||
	    (rv = nng_pipe_notify(
	         up->sock, NNG_PIPE_EV_ADD_POST, pipe_cb, up)) != 0 ||
	    (rv = nng_pipe_notify(
	         up->sock, NNG_PIPE_EV_REM_POST, pipe_cb, up)) != 0 ||
	    (rv = nng_dialer_create(&d, up->sock, url)) != 0 ||
	    (rv = nng_dialer_set_ms(d, NNG_OPT_RECONNMINT, RECONN_MIN_MS)) !=
	        0 ||
	    (rv = nng_dialer_set_ms(d, NNG_OPT_RECONNMAXT, RECONN_MAX_MS)) !=
	        0) {
		goto fail;
	}
	/* Only TCP has keep-alive; other transports refuse the option. */
	(void) nng_dialer_set_bool(d, NNG_OPT_TCP_KEEPALIVE, true);
	/* Non-blocking: a replica that is down now must not stop startup;
	 * the dialer keeps retrying in the background. */
	if ((rv = nng_dialer_start(d, NNG_FLAG_NONBLOCK)) != 0) {
		goto fail;
	}
	return CM_OK;
fail:
	snprintf(err, errlen, "%s: %s", url, nng_strerror(rv));
	return rv == NNG_ENOMEM ? CM_ENOMEM : CM_EINVAL;
}

/* ---- lifecycle ---- */

int
gw_rpc_new(gw_rpc **out, struct event_base *base, const char *upstreams,
    char *err, size_t errlen)
{
	gw_rpc *rpc;
	char  **urls;
	size_t  n;
	int     rv;

	if ((rv = gw_rpc_urls_parse(upstreams, &urls, &n)) != CM_OK) {
		snprintf(err, errlen, "%s",
		    rv == CM_EINVAL
		        ? "want comma-separated NNG URLs, none empty"
		        : cm_strerror(rv));
		return rv;
	}
	if ((rpc = calloc(1, sizeof(*rpc))) == NULL) {
		gw_rpc_urls_free(urls, n);
		snprintf(err, errlen, "%s", cm_strerror(CM_ENOMEM));
		return CM_ENOMEM;
	}
	pthread_mutex_init(&rpc->mu, NULL);
	rpc->base = base;
	/* The wake event must exist before any pipe callback can fire. */
	if ((rpc->ups = calloc(n, sizeof(*rpc->ups))) == NULL ||
	    (rpc->wake = event_new(base, -1, 0, wake_cb, rpc)) == NULL ||
	    (rpc->park_timer = evtimer_new(base, park_cb, rpc)) == NULL) {
		rv = CM_ENOMEM;
		snprintf(err, errlen, "%s", cm_strerror(rv));
		goto fail;
	}
	for (size_t i = 0; i < n; i++) {
		char *url = urls[i];
		urls[i] = NULL; /* rpc->ups[i] owns it now */
		rpc->nups = i + 1;
		if ((rv = open_upstream(
		         rpc, &rpc->ups[i], url, err, errlen)) != CM_OK) {
			goto fail;
		}
	}
	gw_rpc_urls_free(urls, n);
	*out = rpc;
	return CM_OK;
fail:
	gw_rpc_urls_free(urls, n);
	gw_rpc_free(rpc);
	return rv;
}

/* ---- completing calls ---- */

/* Only reads may be tried on a second replica: a write whose reply was
 * lost may have been applied, so it is sent exactly once and the client
 * learns its fate is unknown (502/504) and may retry with an
 * Idempotency-Key. */
static int
idempotent(Catalog__Method m)
{
	return m == CATALOG__METHOD__METHOD_PING ||
	    m == CATALOG__METHOD__METHOD_GET_PRODUCT ||
	    m == CATALOG__METHOD__METHOD_LIST_PRODUCTS;
}

/* Hands the outcome to the caller and frees c. */
static void
call_done(call *c, int err, const Catalog__Response *resp)
{
	gw_rpc_res res = {0};
	res.err = err;
	res.resp = resp;
	res.upstream = c->last != NULL ? c->last->url : NULL;
	res.retries = c->tries > 1 ? c->tries - 1 : 0;
	c->cb(&res, c->arg);
	free(c);
}

static void
arm_park_timer(gw_rpc *rpc)
{
	int64_t        first = INT64_MAX, now;
	struct timeval tv;

	if (rpc->parked == NULL) {
		evtimer_del(rpc->park_timer);
		return;
	}
	for (call *c = rpc->parked; c != NULL; c = c->next) {
		if (c->park_until_us < first) {
			first = c->park_until_us;
		}
	}
	now = cm_mono_us();
	first = first > now ? first - now : 0;
	tv.tv_sec = (time_t) (first / 1000000);
	tv.tv_usec = (suseconds_t) (first % 1000000);
	evtimer_add(rpc->park_timer, &tv);
}

/* Queues c until an upstream connects or its wait ends (park_cb). */
static void
park(call *c)
{
	gw_rpc *rpc = c->rpc;
	call  **pp = &rpc->parked;

	if (c->park_until_us == 0) {
		int64_t until = cm_mono_us() + CONNECT_WAIT_MS * 1000;
		c->park_until_us =
		    until < c->deadline_us ? until : c->deadline_us;
	}
	while (*pp != NULL) {
		pp = &(*pp)->next;
	}
	c->next = NULL;
	*pp = c;
	arm_park_timer(rpc);
}

/* Dispatches the parked calls again when an upstream is ready, and fails
 * those whose wait is over. */
static void
run_parked(gw_rpc *rpc)
{
	call   *list = rpc->parked;
	int     ready = any_ready(rpc);
	int64_t now = cm_mono_us();

	rpc->parked = NULL;
	while (list != NULL) {
		call *c = list;
		list = c->next;
		c->next = NULL;
		if (ready) {
			if (dispatch(c) != CM_OK) {
				call_done(c, CM_EUNAVAIL, NULL);
			}
		} else if (now >= c->park_until_us) {
			CM_WARN("GW-RPC-NOUPSTREAM", c->reqid,
			    "no replica connected within %d ms",
			    CONNECT_WAIT_MS);
			call_done(c,
			    now >= c->deadline_us ? CM_ETIMEDOUT : CM_EUNAVAIL,
			    NULL);
		} else {
			park(c);
		}
	}
	arm_park_timer(rpc);
}

static void
park_cb(evutil_socket_t fd, short what, void *arg)
{
	(void) fd;
	(void) what;
	run_parked(arg);
}

/* A try of c failed with NNG error rv: retry it elsewhere when it is safe
 * and time is left, else report the failure. */
static void
retry_or_fail(call *c, int rv)
{
	gw_rpc *rpc = c->rpc;
	int64_t left = c->deadline_us - cm_mono_us();
	int     err =
            (rv == NNG_ETIMEDOUT || left <= 0) ? CM_ETIMEDOUT : CM_EUNAVAIL;
	int retry = !rpc->closing && err == CM_EUNAVAIL &&
	    idempotent(c->pb.method) && left > MIN_RETRY_US &&
	    (size_t) c->tries < rpc->nups + 2;

	if (!rpc->closing) {
		CM_WARN("GW-RPC-TRYFAIL", c->reqid,
		    "upstream=%s try=%d error=%s %s",
		    c->last != NULL ? c->last->url : "-", c->tries,
		    nng_strerror(rv), retry ? "retrying" : "giving up");
	}
	if (retry && dispatch(c) == CM_OK) {
		return;
	}
	call_done(c, err, NULL);
}

/* ---- flights ---- */

static int64_t
flight_deadline(const flight *f)
{
	int64_t d = INT64_MAX;
	for (const call *c = f->calls; c != NULL; c = c->next) {
		if (c->deadline_us < d) {
			d = c->deadline_us;
		}
	}
	return d;
}

static nng_duration
ms_until(int64_t deadline_us)
{
	int64_t left = deadline_us - cm_mono_us();
	if (left <= 0) {
		return 1;
	}
	return (nng_duration) ((left + 999) / 1000);
}

/* Runs on an NNG thread: queue the flight for the loop, and wake it. */
static void
flight_cb(void *arg)
{
	flight *f = arg;
	gw_rpc *rpc = f->rpc;

	pthread_mutex_lock(&rpc->mu);
	f->done_next = NULL;
	if (rpc->done_tail != NULL) {
		rpc->done_tail->done_next = f;
	} else {
		rpc->done_head = f;
	}
	rpc->done_tail = f;
	pthread_mutex_unlock(&rpc->mu);
	/* f may be gone now; rpc outlives every flight. */
	event_active(rpc->wake, EV_READ, 0);
}

/* Unlinks and frees f (its aio must be idle) and returns its calls. */
static call *
flight_free(flight *f)
{
	gw_rpc *rpc = f->rpc;
	call   *calls = f->calls;

	if (f->prev != NULL) {
		f->prev->next = f->next;
	} else if (rpc->flights == f) {
		rpc->flights = f->next;
	}
	if (f->next != NULL) {
		f->next->prev = f->prev;
	}
	if (f->ctx_open) {
		nng_ctx_close(f->ctx);
	}
	nng_aio_free(f->aio);
	free(f);
	return calls;
}

/* Sends the calls (a list linked by next) as one Batch on a new context of
 * up, whose generation was gen when it was picked. This is the seam for
 * batching: today the list holds one call. Returns CM_OK, or an error with
 * the calls left to the caller. */
static int
send_calls(gw_rpc *rpc, upstream *up, unsigned gen, call *calls)
{
	Catalog__Batch     batch = CATALOG__BATCH__INIT;
	Catalog__Request  *one[1];
	Catalog__Request **reqs = one;
	size_t             n = 0, i = 0;
	flight            *f = NULL;
	nng_msg           *msg = NULL;
	int                rv = CM_ENOMEM;

	for (call *c = calls; c != NULL; c = c->next) {
		n++;
	}
	if (n > 1 && (reqs = calloc(n, sizeof(*reqs))) == NULL) {
		return CM_ENOMEM;
	}
	for (call *c = calls; c != NULL; c = c->next) {
		reqs[i++] = &c->pb;
	}
	batch.n_requests = n;
	batch.requests = reqs;
	if ((f = calloc(1, sizeof(*f))) == NULL ||
	    nng_msg_alloc(&msg, catalog__batch__get_packed_size(&batch)) !=
	        0) {
		goto fail;
	}
	catalog__batch__pack(&batch, nng_msg_body(msg));
	f->rpc = rpc;
	f->up = up;
	f->gen = gen;
	f->calls = calls;
	if (nng_aio_alloc(&f->aio, flight_cb, f) != 0) {
		goto fail;
	}
	if (nng_ctx_open(&f->ctx, up->sock) != 0) {
		rv = CM_EUNAVAIL;
		goto fail;
	}
	f->ctx_open = 1;
	for (call *c = calls; c != NULL; c = c->next) {
		c->tries++;
		c->last = up;
		c->park_until_us = 0;
	}
	f->next = rpc->flights;
	if (rpc->flights != NULL) {
		rpc->flights->prev = f;
	}
	rpc->flights = f;
	if (reqs != one) {
		free(reqs);
	}
	/* The per-try timeout is what is left of the deadline. */
	nng_aio_set_msg(f->aio, msg);
	nng_aio_set_timeout(f->aio, ms_until(flight_deadline(f)));
	nng_ctx_send(f->ctx, f->aio);
	return CM_OK;
fail:
	if (reqs != one) {
		free(reqs);
	}
	nng_msg_free(msg);
	if (f != NULL) {
		if (f->ctx_open) {
			nng_ctx_close(f->ctx);
		}
		nng_aio_free(f->aio);
		free(f);
	}
	return rv;
}

/* Sends c to a connected upstream, or parks it until one connects.
 * Returns CM_OK, or an error with c left to the caller. */
static int
dispatch(call *c)
{
	gw_rpc   *rpc = c->rpc;
	upstream *up;
	unsigned  gen;

	if (rpc->closing) {
		return CM_EUNAVAIL;
	}
	if ((up = pick(rpc, c->last, &gen)) == NULL) {
		park(c);
		return CM_OK;
	}
	c->next = NULL;
	return send_calls(rpc, up, gen, c);
}

static const Catalog__Response *
find_result(const Catalog__BatchReply *rep, size_t i, uint32_t tag)
{
	if (i < rep->n_results && rep->results[i]->tag == tag) {
		return rep->results[i];
	}
	for (size_t k = 0; k < rep->n_results; k++) {
		if (rep->results[k]->tag == tag) {
			return rep->results[k];
		}
	}
	return NULL;
}

/* A reply arrived for f: decode it and complete each call. Takes msg. */
static void
deliver(flight *f, nng_msg *msg)
{
	Catalog__BatchReply *rep;
	call                *c;
	size_t               i = 0;
	const char          *url = f->up->url;

	rep = catalog__batch_reply__unpack(
	    NULL, nng_msg_len(msg), nng_msg_body(msg));
	nng_msg_free(msg);
	c = flight_free(f);
	while (c != NULL) {
		call                    *next = c->next;
		const Catalog__Response *r = NULL;
		if (rep != NULL) {
			r = find_result(rep, i, c->pb.tag);
		}
		if (r == NULL) {
			CM_ERROR("GW-RPC-BADREPLY", c->reqid,
			    "upstream=%s sent a reply that does not decode or "
			    "lacks tag %u",
			    url, c->pb.tag);
			call_done(c, CM_EPROTO, NULL);
		} else {
			call_done(c, CM_OK, r);
		}
		c = next;
		i++;
	}
	if (rep != NULL) {
		catalog__batch_reply__free_unpacked(rep, NULL);
	}
}

/* Moves f on after its aio completed: from send to receive, or to the
 * calls' completion or retry. */
static void
flight_step(flight *f)
{
	gw_rpc *rpc = f->rpc;
	int     real = nng_aio_result(f->aio);
	int     rv = real;
	call   *c;

	if (rv == 0 && !f->receiving) {
		if (rpc->closing) {
			rv = NNG_ECLOSED;
		} else if (f->gen != atomic_load(&f->up->gen)) {
			rv = NNG_ECONNRESET; /* sent on a pipe now gone */
		} else if (flight_deadline(f) <= cm_mono_us()) {
			rv = NNG_ETIMEDOUT;
		} else {
			f->receiving = 1;
			nng_aio_set_timeout(
			    f->aio, ms_until(flight_deadline(f)));
			nng_ctx_recv(f->ctx, f->aio);
			return;
		}
	}
	if (rv == 0) {
		deliver(f, nng_aio_get_msg(f->aio));
		return;
	}
	if (real != 0 && !f->receiving) {
		/* A failed send leaves the message with us. */
		nng_msg_free(nng_aio_get_msg(f->aio));
	}
	c = flight_free(f);
	while (c != NULL) {
		call *next = c->next;
		c->next = NULL;
		retry_or_fail(c, rv);
		c = next;
	}
}

/* Logs upstream state changes, cancels the flights whose pipe went away,
 * and lets parked calls go when an upstream came up. */
static void
pipes_changed(gw_rpc *rpc)
{
	for (size_t i = 0; i < rpc->nups; i++) {
		upstream *up = &rpc->ups[i];
		int       ready = up_ready(up);
		if (ready != up->was_up) {
			up->was_up = ready;
			CM_INFO(ready ? "GW-UPSTREAM-UP" : "GW-UPSTREAM-DOWN",
			    NULL, "upstream=%s", up->url);
		}
	}
	for (flight *f = rpc->flights; f != NULL; f = f->next) {
		if (f->gen != atomic_load(&f->up->gen)) {
			/* Completes through flight_cb with NNG_ECANCELED; a
			 * flight already completed is not affected. */
			CM_DEBUG("GW-RPC-CANCEL", f->calls->reqid,
			    "upstream=%s lost its pipe while %s", f->up->url,
			    f->receiving ? "receiving" : "sending");
			nng_aio_cancel(f->aio);
		}
	}
	if (rpc->parked != NULL && any_ready(rpc)) {
		run_parked(rpc);
	}
}

static void
wake_cb(evutil_socket_t fd, short what, void *arg)
{
	gw_rpc *rpc = arg;
	flight *done;

	(void) fd;
	(void) what;
	pthread_mutex_lock(&rpc->mu);
	done = rpc->done_head;
	rpc->done_head = NULL;
	rpc->done_tail = NULL;
	pthread_mutex_unlock(&rpc->mu);
	if (atomic_exchange(&rpc->pipes_changed, 0)) {
		pipes_changed(rpc);
	}
	while (done != NULL) {
		flight *next = done->done_next;
		flight_step(done);
		done = next;
	}
}

/* ---- public calls ---- */

int
gw_rpc_call(gw_rpc *rpc, const gw_rpc_req *req, gw_rpc_cb cb, void *arg)
{
	call *c;
	int   rv;

	if (rpc->closing) {
		return CM_EUNAVAIL;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		return CM_ENOMEM;
	}
	catalog__request__init(&c->pb);
	snprintf(c->reqid, sizeof(c->reqid), "%s",
	    req->request_id != NULL ? req->request_id : "");
	if (++rpc->next_tag == 0) {
		rpc->next_tag = 1;
	}
	c->rpc = rpc;
	c->cb = cb;
	c->arg = arg;
	c->pb.tag = rpc->next_tag;
	c->pb.method = req->method;
	c->pb.request_id = c->reqid;
	c->pb.deadline_unix_ms = cm_now_ms() + req->timeout_ms;
	c->pb.id = req->id;
	c->pb.limit = req->limit;
	c->pb.after = req->after;
	c->pb.if_none_match_version = req->if_none_match_version;
	/* protobuf-c only reads through these pointers while packing. */
	c->pb.input = (Catalog__ProductInput *) req->input;
	c->pb.if_match_version = req->if_match_version;
	c->pb.idempotency_key =
	    (char *) (req->idempotency_key != NULL ? req->idempotency_key
	                                           : protobuf_c_empty_string);
	c->deadline_us = cm_mono_us() + (int64_t) req->timeout_ms * 1000;
	if ((rv = dispatch(c)) != CM_OK) {
		free(c);
		return rv;
	}
	return CM_OK;
}

void
gw_rpc_shutdown(gw_rpc *rpc)
{
	call *c;

	if (rpc == NULL) {
		return;
	}
	rpc->closing = 1;
	/* Every flight completes (cancelled, or already done) and lands on
	 * the done queue; nng_aio_wait() also waits for flight_cb. */
	for (flight *f = rpc->flights; f != NULL; f = f->next) {
		nng_aio_cancel(f->aio);
	}
	for (flight *f = rpc->flights; f != NULL; f = f->next) {
		nng_aio_wait(f->aio);
	}
	wake_cb(-1, 0, rpc);
	while ((c = rpc->parked) != NULL) {
		rpc->parked = c->next;
		call_done(c, CM_EUNAVAIL, NULL);
	}
	if (rpc->park_timer != NULL) {
		evtimer_del(rpc->park_timer);
	}
}

void
gw_rpc_free(gw_rpc *rpc)
{
	if (rpc == NULL) {
		return;
	}
	gw_rpc_shutdown(rpc);
	/* nng_close() returns after the pipes' REM_POST callbacks ran, and
	 * those still use rpc->wake, so the events go last. */
	for (size_t i = 0; i < rpc->nups; i++) {
		if (rpc->ups[i].open) {
			nng_close(rpc->ups[i].sock);
		}
		free(rpc->ups[i].url);
	}
	free(rpc->ups);
	if (rpc->park_timer != NULL) {
		event_free(rpc->park_timer);
	}
	if (rpc->wake != NULL) {
		event_free(rpc->wake);
	}
	pthread_mutex_destroy(&rpc->mu);
	free(rpc);
}
