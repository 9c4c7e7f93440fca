/* gw_rpc.c - product RPCs to the replicas over NNG req/rep: calls and their
 * flights, deadlines, per-try timeouts, batching and retries. With
 * gw_upstream.c (the endpoints: sockets, choice, outlier ejection) the only
 * files that speak NNG.
 *
 * Threads. Each gateway loop owns one gw_rpc. NNG completes aios and
 * reports pipe events on its own threads, so those callbacks do almost
 * nothing: an aio callback appends its flight to rpc->done under rpc->mu, a
 * pipe callback flips atomics of its endpoint, and both then event_active()
 * rpc->wake. Everything else - starting receives, decoding, cancelling,
 * retrying, ejecting, and calling the caller back - runs on the loop thread,
 * so the HTTP layer only ever sees its own thread.
 *
 * Calls and flights. A call is one logical request with one deadline and
 * possibly several tries. A flight is one try: one NNG message (a
 * catalog.Batch) on one context of one endpoint's socket, carrying a list
 * of calls.
 *
 * Batching. An endpoint with fewer than GATEWAY_BATCH_INFLIGHT flights gets a
 * new call at once, alone, so that batching adds nothing at low load. Past
 * that, calls for it wait in its queue, and the queue leaves as one
 * catalog.Batch (GATEWAY_BATCH_MAX calls at most, more flights if longer) when
 * one of its flights completes or at the end of the loop turn (rpc->flush,
 * made active when the first call waits), whichever comes first: a call waits
 * for at most the rest of the loop turn, never for a reply. Probes and
 * writes (keyed or not, they have no per-try timeout) go alone at once, so
 * that a batch never cuts their one try short. A
 * flight's timeout is the earliest of its calls' (per-try timeout or
 * deadline); when it fails, every call in it has had one failed try and is
 * retried or failed on its own. The endpoint is judged once per flight.
 *
 * Endpoints, their health and the choice among them live in
 * gw_upstream.c; the two files share gw_rpc_int.h.
 *
 * Retries. The gateway owns deadlines and retries (req0 resending is off).
 * A try of a retryable call (GET, LIST, PING, a write with an idempotency
 * key) ends after GATEWAY_TRY_TIMEOUT_MS; a retryable call whose try failed
 * is tried again on another endpoint while the deadline and the retry
 * budget allow. Any call answered STATUS_DRAINING (the replica did
 * nothing) or whose message was never sent is tried again regardless.
 * Other writes get the whole deadline for their one try.
 */
#include <pthread.h>
#include <time.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <nng/nng.h>

#include "cm.h"
#include "cm_catalog.h"
#include "cm_log.h"
#include "cm_metrics.h"
#include "gw_rpc_int.h"

#define MIN_RETRY_US 1000 /* don't start a try with less time left */

/* Retry budget, in thousandths of a retry: each call earns 0.2, a retry
 * costs 1, and time adds FLOOR_PER_S a second so that a quiet loop can
 * still fail over. */
#define BUDGET_UNIT        1000
#define BUDGET_PER_CALL    200
#define BUDGET_FLOOR_PER_S 10
#define BUDGET_CAP         (100 * BUDGET_UNIT)

struct flight {
	gw_rpc   *rpc;
	endpoint *ep;
	unsigned  gen; /* ep->gen when sent */
	nng_ctx   ctx;
	int       ctx_open;
	nng_aio  *aio;
	int       receiving;
	int       probe;
	int64_t   sent_us;
	int64_t   try_deadline_us; /* the try is abandoned then */
	call     *calls;
	int       n;           /* calls in the list */
	flight   *done_next;   /* rpc->done queue, under rpc->mu */
	flight   *prev, *next; /* rpc->flights, loop thread */
};

static void wake_cb(evutil_socket_t fd, short what, void *arg);
static void park_cb(evutil_socket_t fd, short what, void *arg);
static void flush_cb(evutil_socket_t fd, short what, void *arg);
static void flush_ep(endpoint *ep);

/* ---- metrics ---- */

static cm_metric *m_requests, *m_retries;
static cm_metric *m_batches, *m_batched;
static cm_label   up_label;
static char     **up_values; /* kept for the registry's lifetime */
/* Counted in gw_upstream.c, declared in gw_rpc_int.h. */
cm_metric  *gw_rpc_m_failures, *gw_rpc_m_ejections;
atomic_long gw_rpc_g_endpoints, gw_rpc_g_healthy;

static double
endpoints_fn(void *arg)
{
	(void) arg;
	return (double) atomic_load(&gw_rpc_g_endpoints);
}

static double
healthy_fn(void *arg)
{
	(void) arg;
	return (double) atomic_load(&gw_rpc_g_healthy);
}

int
gw_rpc_metrics_init(const char *upstreams)
{
	char **urls;
	size_t n;
	int    rv;

	if ((rv = gw_rpc_urls_parse(upstreams, &urls, &n)) != CM_OK) {
		/* gw_rpc_new() reports a bad list with its reason. */
		return rv == CM_EINVAL ? CM_OK : rv;
	}
	/* The entries as configured, then "other" (never used). */
	if ((up_values = calloc(n + 2, sizeof(*up_values))) == NULL) {
		gw_rpc_urls_free(urls, n);
		return CM_ENOMEM;
	}
	memcpy(up_values, urls, n * sizeof(*urls));
	free(urls);
	up_values[n] = "other";
	up_label.name = "upstream";
	up_label.values = (const char *const *) up_values;
	if ((m_requests = cm_metric_new(CM_METRIC_COUNTER,
	         "gateway_upstream_requests_total",
	         "Tries sent to replicas of an upstream, retries and probes "
	         "included",
	         &up_label, 1)) == NULL ||
	    (gw_rpc_m_failures = cm_metric_new(CM_METRIC_COUNTER,
	         "gateway_upstream_failures_total",
	         "Tries that failed: transport error, per-try timeout, or a "
	         "reply UNAVAILABLE or INTERNAL",
	         &up_label, 1)) == NULL ||
	    (m_retries = cm_metric_new(CM_METRIC_COUNTER,
	         "gateway_upstream_retries_total",
	         "Calls tried again elsewhere after a try on this upstream "
	         "failed or was answered DRAINING",
	         &up_label, 1)) == NULL ||
	    (gw_rpc_m_ejections = cm_metric_new(CM_METRIC_COUNTER,
	         "gateway_upstream_ejections_total",
	         "Endpoints taken out of rotation as outliers", &up_label,
	         1)) == NULL ||
	    (m_batches = cm_metric_new(CM_METRIC_COUNTER,
	         "gateway_upstream_batches_total",
	         "Messages (catalog.Batch) sent to replicas of an upstream",
	         &up_label, 1)) == NULL ||
	    (m_batched = cm_metric_new(CM_METRIC_COUNTER,
	         "gateway_upstream_batched_calls_total",
	         "Tries carried by those messages: divided by "
	         "gateway_upstream_batches_total, the mean batch size",
	         &up_label, 1)) == NULL ||
	    cm_metric_gauge_fn("gateway_upstream_endpoints",
	        "Endpoints (resolved replica addresses), summed over loops",
	        endpoints_fn, NULL) != CM_OK ||
	    cm_metric_gauge_fn("gateway_upstream_endpoints_healthy",
	        "Endpoints connected and not ejected, summed over loops",
	        healthy_fn, NULL) != CM_OK) {
		return CM_ENOMEM;
	}
	return CM_OK;
}

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

/* ---- retry budget ---- */

static void
budget_refill(gw_rpc *rpc, int64_t add)
{
	int64_t now = cm_mono_us();
	int64_t dt = now - rpc->budget_at_us;

	rpc->budget_at_us = now;
	rpc->budget += add + dt * BUDGET_FLOOR_PER_S * BUDGET_UNIT / 1000000;
	if (rpc->budget > BUDGET_CAP) {
		rpc->budget = BUDGET_CAP;
	}
}

static int
budget_take(gw_rpc *rpc)
{
	budget_refill(rpc, 0);
	if (rpc->budget < BUDGET_UNIT) {
		return 0;
	}
	rpc->budget -= BUDGET_UNIT;
	return 1;
}

/* ---- completing calls ---- */

/* A try that may have reached the replica may be sent again only when
 * doing it twice is harmless: reads, and writes whose idempotency key
 * makes the replica answer the second from the first's record. */
static int
retryable(const Catalog__Request *pb)
{
	switch (pb->method) {
	case CATALOG__METHOD__METHOD_PING:
	case CATALOG__METHOD__METHOD_GET_PRODUCT:
	case CATALOG__METHOD__METHOD_LIST_PRODUCTS:
		return 1;
	default:
		return pb->idempotency_key != NULL &&
		    pb->idempotency_key[0] != '\0';
	}
}

/* Hands the outcome to the caller and frees c. */
static void
call_done(call *c, int err, const Catalog__Response *resp)
{
	gw_rpc_res res = {0};
	res.err = err;
	res.resp = resp;
	res.upstream = c->last_url[0] != '\0' ? c->last_url : NULL;
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

/* Queues c until an endpoint connects or its wait ends (park_cb). */
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

/* Dispatches the parked calls again when an endpoint is ready, and fails
 * those whose wait is over. */
static void
run_parked(gw_rpc *rpc)
{
	call   *list = rpc->parked;
	int     ready = gw_upstream_any_ready(rpc);
	int64_t now = cm_mono_us();

	rpc->parked = NULL;
	while (list != NULL) {
		call *c = list;
		list = c->next;
		c->next = NULL;
		if (ready) {
			if (gw_rpc_dispatch(c) != CM_OK) {
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
	enter(arg);
	run_parked(arg);
}

/* How a try ended, when it did not end with a usable reply. */
typedef enum fail_kind {
	FAIL_UNSENT,    /* the message never left: any call may go again */
	FAIL_TRANSPORT, /* sent, then the pipe or endpoint went away */
	FAIL_TIMEOUT,   /* the per-try timeout or the deadline passed */
	FAIL_DRAINING,  /* answered DRAINING: did nothing, go elsewhere */
	FAIL_REPLY,     /* answered UNAVAILABLE: another replica may do */
} fail_kind;

static const char *
fail_name(fail_kind k, int rv)
{
	switch (k) {
	case FAIL_DRAINING:
		return "replica draining";
	case FAIL_REPLY:
		return "replica unavailable";
	case FAIL_TIMEOUT:
		return "try timed out";
	default:
		return nng_strerror(rv);
	}
}

/* A try of c on the endpoint of c->last_url failed: try again elsewhere
 * when it is safe, time is left and the budget allows, else report the
 * failure (or, for FAIL_REPLY, the reply resp itself). from is the group
 * of the failed endpoint, for the retry metric. */
static void
retry_or_fail(call *c, fail_kind kind, int rv, const endpoint *from,
    const Catalog__Response *resp)
{
	gw_rpc   *rpc = c->rpc;
	int64_t   left = c->deadline_us - cm_mono_us();
	int       retry, err;
	endpoint *next = NULL;

	retry = !rpc->closing && c->pin == 0 && left > MIN_RETRY_US &&
	    c->tries < MAX_TRIES;
	if (kind == FAIL_TRANSPORT || kind == FAIL_TIMEOUT ||
	    kind == FAIL_REPLY) {
		retry = retry && c->retryable;
	}
	if (kind == FAIL_DRAINING || kind == FAIL_REPLY) {
		c->other = 1; /* never the same replica again */
	}
	if (retry && (next = gw_upstream_pick(rpc, c)) == NULL && c->other) {
		retry = 0; /* no other replica to ask */
	}
	/* A retry of a message that never left, or that a draining replica
	 * turned away, adds no load: only the others spend the budget. */
	if (retry && kind != FAIL_UNSENT && kind != FAIL_DRAINING &&
	    !budget_take(rpc)) {
		CM_DEBUG("GW-RPC-NOBUDGET", c->reqid,
		    "retry budget spent: not retrying");
		retry = 0;
	}
	if (!rpc->closing && c->pin == 0) {
		CM_WARN("GW-RPC-TRYFAIL", c->reqid,
		    "endpoint=%s try=%d error=%s %s",
		    c->last_url[0] != '\0' ? c->last_url : "-", c->tries,
		    fail_name(kind, rv), retry ? "retrying" : "giving up");
	}
	if (retry) {
		if (from != NULL) {
			count(rpc, m_retries, from);
		}
		if (gw_rpc_dispatch(c) == CM_OK) {
			return;
		}
	}
	if (kind == FAIL_REPLY && resp != NULL) {
		call_done(c, CM_OK, resp);
		return;
	}
	/* A lost reply is 502, a late one (or no time left) 504. */
	err = left <= 0 || kind == FAIL_TIMEOUT ? CM_ETIMEDOUT : CM_EUNAVAIL;
	call_done(c, err, NULL);
}

/* ---- flights ---- */

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

/* Copies src into dst[cap], cut to fit: snprintf's "%s" at a tenth of
 * its cost, on every call. */
static void
copy_cut(char *dst, size_t cap, const char *src)
{
	size_t n = strnlen(src, cap - 1);

	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* Unlinks and frees f (its aio must be idle) and returns its calls. The
 * endpoint of a flight outlives it, except that a removed endpoint goes
 * with its last flight: callers read what they need first. */
static call *
flight_free(flight *f)
{
	gw_rpc   *rpc = f->rpc;
	call     *calls = f->calls;
	endpoint *ep = f->ep;

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
	if (f->probe) {
		ep->probing = 0;
	}
	ep->ncalls -= f->n;
	free(f);
	ep->inflight--;
	gw_upstream_free_if_done(ep);
	return calls;
}

/* Sends the calls (a list linked by next) as one Batch on a new context of
 * ep. Returns CM_OK, or an error with the calls left to the caller. */
static int
send_calls(gw_rpc *rpc, endpoint *ep, call *calls)
{
	Catalog__Batch     batch = CATALOG__BATCH__INIT;
	Catalog__Request  *one[1];
	Catalog__Request **reqs = one;
	size_t             n = 0, i = 0;
	flight            *f = NULL;
	nng_msg           *msg = NULL;
	int                rv = CM_ENOMEM;
	int64_t            now = cm_mono_us();
	int64_t            try_end = INT64_MAX;

	for (call *c = calls; c != NULL; c = c->next) {
		int64_t end = c->deadline_us;
		/* Only reads have a per-try timeout. Cutting the one try of
		 * a write short would only turn a late success into a 504;
		 * and a keyed write sent again while the first try still
		 * runs meets its own key "in use" (409). Keyed writes are
		 * retried when their try surely failed (lost pipe, unsent,
		 * DRAINING), never because it was slow. */
		if (c->retryable && !cm_method_is_write(c->pb.method) &&
		    now + rpc->try_timeout_ms * 1000LL < end) {
			end = now + rpc->try_timeout_ms * 1000LL;
		}
		if (end < try_end) {
			try_end = end;
		}
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
	f->ep = ep;
	/* The generation is read before the context opens, so a pipe lost
	 * right after is still noticed. */
	f->gen = atomic_load(&ep->gen);
	f->calls = calls;
	f->n = (int) n;
	f->sent_us = now;
	f->try_deadline_us = try_end;
	if (nng_aio_alloc(&f->aio, flight_cb, f) != 0) {
		goto fail;
	}
	if (nng_ctx_open(&f->ctx, ep->sock) != 0) {
		rv = CM_EUNAVAIL;
		goto fail;
	}
	f->ctx_open = 1;
	for (call *c = calls; c != NULL; c = c->next) {
		if (c->tries < MAX_TRIES) {
			c->tried[c->tries] = ep->id;
		}
		c->tries++;
		copy_cut(c->last_url, sizeof(c->last_url), ep->url);
		c->park_until_us = 0;
		if (c->pin != 0) {
			f->probe = 1;
			ep->probing = 1;
		}
		count(rpc, m_requests, ep);
	}
	ep->inflight++;
	ep->ncalls += (int) n;
	count(rpc, m_batches, ep);
	count_n(rpc, m_batched, ep, (int) n);
	f->next = rpc->flights;
	if (rpc->flights != NULL) {
		rpc->flights->prev = f;
	}
	rpc->flights = f;
	if (reqs != one) {
		free(reqs);
	}
	nng_aio_set_msg(f->aio, msg);
	nng_aio_set_timeout(f->aio, ms_until(f->try_deadline_us));
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

/* Sends c to an endpoint, or parks it until one connects. Returns CM_OK,
 * or an error with c left to the caller. */
int
gw_rpc_dispatch(call *c)
{
	gw_rpc   *rpc = c->rpc;
	endpoint *ep;

	if (rpc->closing) {
		return CM_EUNAVAIL;
	}
	if (c->pin != 0) {
		ep = gw_upstream_find(rpc, c->pin);
		if (ep == NULL || !gw_upstream_ready(ep)) {
			return CM_EUNAVAIL;
		}
	} else if ((ep = gw_upstream_pick(rpc, c)) == NULL) {
		if (c->other) {
			return CM_EUNAVAIL;
		}
		park(c);
		return CM_OK;
	}
	c->next = NULL;
	/* An idle endpoint, a probe, or a write (its one try has no per-try
	 * timeout, and must not get its batch's): at once, alone. */
	if (c->pin != 0 || !c->retryable || cm_method_is_write(c->pb.method) ||
	    (ep->waiting == NULL && ep->inflight < rpc->batch_inflight)) {
		return send_calls(rpc, ep, c);
	}
	*ep->waiting_tail = c;
	ep->waiting_tail = &c->next;
	ep->nwaiting++;
	if (!rpc->flush_armed) {
		rpc->flush_armed = 1;
		event_active(rpc->flush, EV_READ, 0);
	}
	return CM_OK;
}

/* Takes ep's queue away from it, returning the list. */
static call *
take_waiting(endpoint *ep)
{
	call *list = ep->waiting;

	ep->waiting = NULL;
	ep->waiting_tail = &ep->waiting;
	ep->nwaiting = 0;
	return list;
}

/* Empties ep's queue: with redispatch, each call chooses an endpoint
 * again (ep is gone or down); without, each fails (shutting down). */
void
gw_rpc_fail_waiting(endpoint *ep, int redispatch)
{
	call *c = take_waiting(ep);

	while (c != NULL) {
		call *next = c->next;
		c->next = NULL;
		if (!redispatch || gw_rpc_dispatch(c) != CM_OK) {
			call_done(c, CM_EUNAVAIL, NULL);
		}
		c = next;
	}
}

/* Sends ep's queue, GATEWAY_BATCH_MAX calls a flight. */
static void
flush_ep(endpoint *ep)
{
	gw_rpc *rpc = ep->rpc;
	call   *list;

	if (ep->waiting == NULL) {
		return;
	}
	if (rpc->closing || !gw_upstream_ready(ep)) {
		gw_rpc_fail_waiting(ep, !rpc->closing);
		return;
	}
	list = take_waiting(ep);
	while (list != NULL) {
		call *head = list, **pp = &list;
		int   rv;
		for (int k = 0; k < rpc->batch_max && *pp != NULL; k++) {
			pp = &(*pp)->next;
		}
		list = *pp;
		*pp = NULL;
		if ((rv = send_calls(rpc, ep, head)) != CM_OK) {
			CM_ERROR("GW-RPC-SENDFAIL", head->reqid,
			    "endpoint=%s cannot send a batch: %s", ep->url,
			    cm_strerror(rv));
			while (head != NULL) {
				call *next = head->next;
				head->next = NULL;
				call_done(head, CM_EUNAVAIL, NULL);
				head = next;
			}
		}
	}
}

/* The end of the loop turn: every queue leaves. */
static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
	gw_rpc *rpc = arg;

	(void) fd;
	(void) what;
	enter(rpc);
	rpc->flush_armed = 0;
	for (endpoint *ep = rpc->eps; ep != NULL; ep = ep->next) {
		flush_ep(ep);
	}
}

/* Decoding a reply allocates a struct or a string for nearly every field,
 * and freeing it walks them all again: about a tenth of the gateway's
 * work on a hit. A reply is used only while deliver() runs, so its
 * pieces come from the loop's arena (rpc->arena), a bump allocator emptied
 * after each reply. Pieces that do not fit are malloc'ed and freed with
 * it. Sanitizer builds use plain malloc, which ASan can watch. */
#define ARENA_BYTES (16 * 1024)
#if defined(__SANITIZE_ADDRESS__)
#define ARENA_ON 0
#else
#define ARENA_ON 1
#endif

typedef struct arena_big {
	struct arena_big *next;
	max_align_t       data[];
} arena_big;

typedef struct arena {
	size_t             used;
	int                busy;
	arena_big         *big;
	ProtobufCAllocator pb;
	max_align_t        mem[ARENA_BYTES / sizeof(max_align_t)];
} arena;

static void *
arena_alloc(void *data, size_t size)
{
	arena *a = data;
	size_t need =
	    (size + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
	arena_big *b;

	if (need <= sizeof(a->mem) - a->used) {
		void *p = (char *) a->mem + a->used;
		a->used += need;
		return p;
	}
	if ((b = malloc(sizeof(*b) + size)) == NULL) {
		return NULL;
	}
	b->next = a->big;
	a->big = b;
	return b->data;
}

static void
arena_free(void *data, void *p)
{
	(void) data;
	(void) p; /* everything goes at once, in arena_release() */
}

/* rpc's arena for one reply, or NULL (use malloc): sanitizers, no
 * memory, or the arena already holds a reply being delivered. */
static ProtobufCAllocator *
arena_take(gw_rpc *rpc)
{
	arena *a = rpc->arena;

	if (!ARENA_ON) {
		return NULL;
	}
	if (a == NULL) {
		if ((a = calloc(1, sizeof(*a))) == NULL) {
			return NULL;
		}
		a->pb.alloc = arena_alloc;
		a->pb.free = arena_free;
		a->pb.allocator_data = a;
		rpc->arena = a;
	}
	if (a->busy) {
		return NULL;
	}
	a->busy = 1;
	return &a->pb;
}

static void
arena_release(ProtobufCAllocator *pb)
{
	arena *a = pb->allocator_data;

	while (a->big != NULL) {
		arena_big *next = a->big->next;
		free(a->big);
		a->big = next;
	}
	a->used = 0;
	a->busy = 0;
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

/* How the replica answered c in rep: 0 usable, 1 a failed try (no
 * result, UNAVAILABLE, INTERNAL), 2 DRAINING. */
static int
judge(const Catalog__Response *r)
{
	if (r == NULL) {
		return 1;
	}
	if (r->status == CATALOG__STATUS__STATUS_DRAINING) {
		return 2;
	}
	return r->status == CATALOG__STATUS__STATUS_UNAVAILABLE ||
	    r->status == CATALOG__STATUS__STATUS_INTERNAL;
}

/* A reply arrived for f: decode it, judge the endpoint by it (once for
 * the whole flight), and complete or retry each call. Takes msg. */
static void
deliver(flight *f, nng_msg *msg)
{
	Catalog__BatchReply *rep;
	call                *c, *calls = f->calls;
	size_t               i = 0;
	endpoint            *ep = f->ep;
	int64_t              sent = f->sent_us;
	int                  failed = 0, draining = 0;
	ProtobufCAllocator  *pb = arena_take(f->rpc);

	rep = catalog__batch_reply__unpack(
	    pb, nng_msg_len(msg), nng_msg_body(msg));
	nng_msg_free(msg);
	for (c = calls; c != NULL; c = c->next, i++) {
		int k =
		    judge(rep != NULL ? find_result(rep, i, c->pb.tag) : NULL);
		failed += k == 1;
		draining |= k == 2;
	}
	if (draining) {
		if (ep->ejected) {
			gw_upstream_backoff(ep, sent);
		} else {
			gw_upstream_eject(ep, "is draining");
		}
	} else if (failed > 0) {
		gw_upstream_failed(ep, sent, failed);
	} else {
		gw_upstream_succeeded(ep, sent);
	}
	/* The endpoint stays while this flight holds it. */
	ep->inflight++;
	c = flight_free(f);
	i = 0;
	while (c != NULL) {
		call                    *next = c->next;
		const Catalog__Response *r = NULL;
		c->next = NULL;
		if (rep != NULL) {
			r = find_result(rep, i, c->pb.tag);
		}
		if (r == NULL) {
			CM_ERROR("GW-RPC-BADREPLY", c->reqid,
			    "endpoint=%s sent a reply that does not decode or "
			    "lacks tag %u",
			    ep->url, c->pb.tag);
			call_done(c, CM_EPROTO, NULL);
		} else if (r->status == CATALOG__STATUS__STATUS_DRAINING) {
			retry_or_fail(c, FAIL_DRAINING, 0, ep, r);
		} else if (r->status == CATALOG__STATUS__STATUS_UNAVAILABLE) {
			retry_or_fail(c, FAIL_REPLY, 0, ep, r);
		} else {
			call_done(c, CM_OK, r);
		}
		c = next;
		i++;
	}
	/* A flight is done: what waits for ep goes now. */
	flush_ep(ep);
	ep->inflight--;
	gw_upstream_free_if_done(ep);
	if (pb != NULL) {
		arena_release(pb);
	} else if (rep != NULL) {
		catalog__batch_reply__free_unpacked(rep, NULL);
	}
}

/* Moves f on after its aio completed: from send to receive, or to the
 * calls' completion or retry. */
static void
flight_step(flight *f)
{
	gw_rpc   *rpc = f->rpc;
	endpoint *ep = f->ep;
	int       real = nng_aio_result(f->aio);
	int       rv = real;
	int       sent = f->receiving || real == 0;
	int64_t   now = cm_mono_us();
	fail_kind kind;
	call     *c;

	if (rv == 0 && !f->receiving) {
		if (rpc->closing) {
			rv = NNG_ECLOSED;
		} else if (ep->removed || f->gen != atomic_load(&ep->gen)) {
			rv = NNG_ECONNRESET; /* sent on a pipe now gone */
		} else if (f->try_deadline_us <= now) {
			rv = NNG_ETIMEDOUT;
		} else {
			f->receiving = 1;
			nng_aio_set_timeout(
			    f->aio, ms_until(f->try_deadline_us));
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
	if (!sent) {
		kind = FAIL_UNSENT;
	} else if (rv == NNG_ETIMEDOUT) {
		kind = FAIL_TIMEOUT;
	} else {
		kind = FAIL_TRANSPORT;
	}
	/* A failure of ours (closing, an endpoint we removed) says nothing
	 * about the replica. */
	if (!rpc->closing && !ep->removed && kind != FAIL_UNSENT) {
		gw_upstream_failed(ep, f->sent_us, f->n);
	}
	ep->inflight++; /* keep it while its calls are retried */
	c = flight_free(f);
	while (c != NULL) {
		call *next = c->next;
		c->next = NULL;
		retry_or_fail(c, kind, rv, ep, NULL);
		c = next;
	}
	flush_ep(ep);
	ep->inflight--;
	gw_upstream_free_if_done(ep);
}

/* Logs endpoint state changes, cancels the flights whose pipe went away,
 * and lets parked calls go when an endpoint came up. */
static void
pipes_changed(gw_rpc *rpc)
{
	for (endpoint *ep = rpc->eps; ep != NULL; ep = ep->next) {
		int ready = gw_upstream_ready(ep);
		if (ready != ep->was_up) {
			ep->was_up = ready;
			EP_LOG(rpc, CM_LOG_INFO,
			    ready ? "GW-UPSTREAM-UP" : "GW-UPSTREAM-DOWN",
			    "upstream=%s endpoint=%s", rpc->groups[ep->group],
			    ep->url);
		}
	}
	for (flight *f = rpc->flights; f != NULL; f = f->next) {
		if (f->gen != atomic_load(&f->ep->gen)) {
			/* Completes through flight_cb with NNG_ECANCELED; a
			 * flight already completed is not affected. */
			CM_DEBUG("GW-RPC-CANCEL", f->calls->reqid,
			    "endpoint=%s lost its pipe while %s", f->ep->url,
			    f->receiving ? "receiving" : "sending");
			nng_aio_cancel(f->aio);
		}
	}
	gw_upstream_recount(rpc);
	if (rpc->parked != NULL && gw_upstream_any_ready(rpc)) {
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
	enter(rpc);
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
	/* Removed endpoints whose closer thread has finished. */
	for (endpoint *ep = rpc->eps, *next; ep != NULL; ep = next) {
		next = ep->next;
		gw_upstream_free_if_done(ep);
	}
}

/* ---- public calls ---- */

void
gw_rpc_opts_init(gw_rpc_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->try_timeout_ms = GW_TRY_TIMEOUT_MS_DEF;
	o->eject_after = GW_EJECT_AFTER_DEF;
	o->batch_inflight = GW_BATCH_INFLIGHT_DEF;
	o->batch_max = GW_BATCH_MAX_DEF;
	o->resolve_interval_s = GW_RESOLVE_INTERVAL_DEF;
}

int
gw_rpc_new(gw_rpc **out, struct event_base *base, const gw_rpc_opts *o,
    char *err, size_t errlen)
{
	gw_rpc      *rpc;
	gw_disc_opts dopts = {0};
	int          rv;

	if ((rpc = calloc(1, sizeof(*rpc))) == NULL) {
		snprintf(err, errlen, "%s", cm_strerror(CM_ENOMEM));
		return CM_ENOMEM;
	}
	pthread_mutex_init(&rpc->mu, NULL);
	rpc->base = base;
	rpc->loop = o->loop;
	rpc->try_timeout_ms =
	    o->try_timeout_ms > 0 ? o->try_timeout_ms : GW_TRY_TIMEOUT_MS_DEF;
	rpc->eject_after =
	    o->eject_after > 0 ? o->eject_after : GW_EJECT_AFTER_DEF;
	rpc->batch_inflight =
	    o->batch_inflight > 0 ? o->batch_inflight : GW_BATCH_INFLIGHT_DEF;
	rpc->batch_max = o->batch_max > 0 ? o->batch_max : GW_BATCH_MAX_DEF;
	rpc->budget = BUDGET_FLOOR_PER_S * BUDGET_UNIT;
	rpc->budget_at_us = cm_mono_us();
	rpc->rand = (uint64_t) cm_mono_us() ^ (uint64_t) (uintptr_t) rpc ^
	    0x9e3779b97f4a7c15ULL;
	if ((rv = gw_rpc_urls_parse(o->upstreams != NULL ? o->upstreams : "",
	         &rpc->groups, &rpc->ngroups)) != CM_OK) {
		snprintf(err, errlen, "%s",
		    rv == CM_EINVAL
		        ? "want comma-separated NNG URLs, none empty"
		        : cm_strerror(rv));
		goto fail;
	}
	/* The wake event must exist before any pipe callback can fire. */
	if ((rpc->series = calloc(rpc->ngroups, sizeof(*rpc->series))) ==
	        NULL ||
	    (rpc->wake = event_new(base, -1, 0, wake_cb, rpc)) == NULL ||
	    (rpc->park_timer = evtimer_new(base, park_cb, rpc)) == NULL ||
	    (rpc->health_timer =
	            evtimer_new(base, gw_upstream_health_cb, rpc)) == NULL ||
	    (rpc->flush = event_new(base, -1, 0, flush_cb, rpc)) == NULL) {
		rv = CM_ENOMEM;
		snprintf(err, errlen, "%s", cm_strerror(rv));
		goto fail;
	}
	if (m_requests != NULL) {
		for (size_t i = 0; i < rpc->ngroups; i++) {
			int idx = cm_label_index(&up_label, rpc->groups[i]);
			rpc->series[i] = cm_metric_series(m_requests, &idx);
		}
	}
	dopts.interval_s = o->resolve_interval_s > 0 ? o->resolve_interval_s
	                                             : GW_RESOLVE_INTERVAL_DEF;
	dopts.dns_servers = o->dns_servers;
	dopts.resolve = o->resolve;
	dopts.resolve_arg = o->resolve_arg;
	if ((rv = gw_disc_new(&rpc->disc, base, rpc->groups, rpc->ngroups,
	         &dopts, gw_upstream_sync, rpc, err, errlen)) != CM_OK) {
		goto fail;
	}
	/* Opens the endpoints of IP literals and other URLs now, so that a
	 * bad one stops startup. */
	gw_disc_start(rpc->disc);
	if ((rv = rpc->open_rv) != CM_OK) {
		snprintf(err, errlen, "%s", rpc->open_err);
		goto fail;
	}
	*out = rpc;
	return CM_OK;
fail:
	gw_rpc_free(rpc);
	return rv;
}

void
gw_rpc_resolve_now(gw_rpc *rpc)
{
	gw_disc_refresh(rpc->disc);
}

int
gw_rpc_call(gw_rpc *rpc, const gw_rpc_req *req, gw_rpc_cb cb, void *arg)
{
	call *c;
	int   rv;

	enter(rpc);
	if (rpc->closing) {
		return CM_EUNAVAIL;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		return CM_ENOMEM;
	}
	catalog__request__init(&c->pb);
	copy_cut(c->reqid, sizeof(c->reqid),
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
	c->pb.traceparent =
	    (char *) (req->traceparent != NULL ? req->traceparent
	                                       : protobuf_c_empty_string);
	c->retryable = retryable(&c->pb);
	c->deadline_us = cm_mono_us() + (int64_t) req->timeout_ms * 1000;
	budget_refill(rpc, BUDGET_PER_CALL);
	if ((rv = gw_rpc_dispatch(c)) != CM_OK) {
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
	if (rpc->wake != NULL) {
		wake_cb(-1, 0, rpc);
	}
	while ((c = rpc->parked) != NULL) {
		rpc->parked = c->next;
		call_done(c, CM_EUNAVAIL, NULL);
	}
	for (endpoint *ep = rpc->eps; ep != NULL; ep = ep->next) {
		gw_rpc_fail_waiting(ep, 0);
	}
	if (rpc->flush != NULL) {
		event_del(rpc->flush);
		rpc->flush_armed = 0;
	}
	if (rpc->park_timer != NULL) {
		evtimer_del(rpc->park_timer);
	}
	if (rpc->health_timer != NULL) {
		evtimer_del(rpc->health_timer);
	}
}

void
gw_rpc_free(gw_rpc *rpc)
{
	if (rpc == NULL) {
		return;
	}
	gw_rpc_shutdown(rpc);
	gw_disc_free(rpc->disc);
	/* Closer threads still use endpoints and rpc->wake. */
	gw_upstream_wait_closers(10000);
	/* nng_close() returns after the pipes' REM_POST callbacks ran, and
	 * those still use rpc->wake, so the events go last. */
	while (rpc->eps != NULL) {
		gw_upstream_free(rpc->eps);
	}
	atomic_fetch_sub(&gw_rpc_g_endpoints, rpc->n_eps);
	atomic_fetch_sub(&gw_rpc_g_healthy, rpc->n_healthy);
	gw_rpc_urls_free(rpc->groups, rpc->ngroups);
	free(rpc->series);
	if (rpc->health_timer != NULL) {
		event_free(rpc->health_timer);
	}
	if (rpc->park_timer != NULL) {
		event_free(rpc->park_timer);
	}
	if (rpc->flush != NULL) {
		event_free(rpc->flush);
	}
	if (rpc->wake != NULL) {
		event_free(rpc->wake);
	}
	pthread_mutex_destroy(&rpc->mu);
	free(rpc->arena); /* released after each reply: no big pieces */
	free(rpc);
}
