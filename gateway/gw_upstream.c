/* gw_upstream.c - the endpoint set of a gw_rpc: one NNG req0 socket and
 * dialer per replica address, kept in step with the resolution, judged by
 * its replies (passive ejection, back-off, probes) and chosen per try.
 *
 * Endpoints. Each GATEWAY_UPSTREAMS entry (a "group", the label of the
 * metrics) stands for one or more endpoints: itself when it is an IP
 * literal or an inproc/ipc URL, or every address its DNS name resolves to
 * (gw_discovery.c). An endpoint is one req0 socket with one dialer. When a
 * resolution drops an address its endpoint is closed; the flights on it
 * fail over like those of a lost pipe, and the struct is freed when the
 * last of them is done.
 *
 * Choice and health. A call goes to the less busy of two random healthy
 * endpoints (connected, not ejected), avoiding those it already tried.
 * GATEWAY_EJECT_AFTER consecutive failures (transport error, per-try
 * timeout, a reply UNAVAILABLE or INTERNAL) eject an endpoint for a
 * back-off of 1 s doubling to 30 s, unless no other healthy endpoint would
 * be left. After the back-off one PING probes it: an answer brings it back,
 * a failure doubles the back-off. With no healthy endpoint, the
 * least-recently ejected connected one is used.
 *
 * gw_rpc.c owns the calls and flights that use these endpoints; the two
 * share gw_rpc_int.h.
 */
#include <pthread.h>
#include <time.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "cm.h"
#include "cm_log.h"
#include "cm_tls.h"
#include "gw_rpc_int.h"

#define MAX_REPLY_BYTES (16 << 20)
#define EJECT_MIN_MS    1000
#define EJECT_MAX_MS    30000
#define HEALTH_TICK_MS  100 /* how often ejected endpoints are looked at */

/* ---- endpoint state ---- */

int
gw_upstream_ready(endpoint *ep)
{
	if (ep->removed) {
		return 0;
	}
	for (int i = 0; i < PIPE_SLOTS; i++) {
		if (atomic_load(&ep->pipes[i]) != 0) {
			return 1;
		}
	}
	return 0;
}

static int
ep_healthy(endpoint *ep)
{
	return !ep->ejected && gw_upstream_ready(ep);
}

int
gw_upstream_any_ready(gw_rpc *rpc)
{
	for (endpoint *ep = rpc->eps; ep != NULL; ep = ep->next) {
		if (gw_upstream_ready(ep)) {
			return 1;
		}
	}
	return 0;
}

/* Brings this loop's share of the endpoint gauges up to date. */
void
gw_upstream_recount(gw_rpc *rpc)
{
	long n = 0, h = 0;

	for (endpoint *ep = rpc->eps; ep != NULL; ep = ep->next) {
		if (!ep->removed) {
			n++;
			h += ep_healthy(ep);
		}
	}
	atomic_fetch_add(&gw_rpc_g_endpoints, n - rpc->n_eps);
	atomic_fetch_add(&gw_rpc_g_healthy, h - rpc->n_healthy);
	rpc->n_eps = n;
	rpc->n_healthy = h;
}

static void
arm_health_timer(gw_rpc *rpc)
{
	struct timeval tv = {0, HEALTH_TICK_MS * 1000};
	if (!evtimer_pending(rpc->health_timer, NULL)) {
		evtimer_add(rpc->health_timer, &tv);
	}
}

static int
healthy_others(gw_rpc *rpc, const endpoint *ep)
{
	int n = 0;
	for (endpoint *o = rpc->eps; o != NULL; o = o->next) {
		n += o != ep && ep_healthy(o);
	}
	return n;
}

/* Takes ep out of rotation for its back-off, unless it is the last
 * healthy endpoint. */
void
gw_upstream_eject(endpoint *ep, const char *why)
{
	gw_rpc *rpc = ep->rpc;
	int64_t now = cm_mono_us();

	if (healthy_others(rpc, ep) == 0) {
		CM_DEBUG("GW-ENDPOINT-KEEP", NULL,
		    "endpoint=%s %s but is the last healthy one", ep->url,
		    why);
		return;
	}
	if (ep->backoff_ms < EJECT_MIN_MS) {
		ep->backoff_ms = EJECT_MIN_MS;
	}
	ep->ejected = 1;
	ep->ejected_at_us = now;
	ep->eject_until_us = now + (int64_t) ep->backoff_ms * 1000;
	EP_LOG(rpc, CM_LOG_WARN, "GW-ENDPOINT-EJECT",
	    "upstream=%s endpoint=%s %s: ejected for %d ms",
	    rpc->groups[ep->group], ep->url, why, ep->backoff_ms);
	count(rpc, gw_rpc_m_ejections, ep);
	gw_upstream_recount(rpc);
	arm_health_timer(rpc);
}

/* A try sent at sent_us to the ejected ep failed. When it was sent after
 * the ejection (the probe, or a try made for want of others), the back-off
 * doubles and starts again. */
void
gw_upstream_backoff(endpoint *ep, int64_t sent_us)
{
	if (sent_us < ep->ejected_at_us) {
		return;
	}
	ep->backoff_ms = ep->backoff_ms * 2 > EJECT_MAX_MS
	    ? EJECT_MAX_MS
	    : ep->backoff_ms * 2;
	ep->ejected_at_us = cm_mono_us();
	ep->eject_until_us =
	    ep->ejected_at_us + (int64_t) ep->backoff_ms * 1000;
	CM_DEBUG("GW-ENDPOINT-PROBEFAIL", NULL,
	    "endpoint=%s still failing: ejected for %d ms", ep->url,
	    ep->backoff_ms);
	arm_health_timer(ep->rpc);
}

/* A flight sent at sent_us failed on ep, ntries of its tries with it: one
 * failure towards ejection, however many calls it carried. A failure of a
 * flight sent before the ejection (still in flight then) says nothing
 * new. */
void
gw_upstream_failed(endpoint *ep, int64_t sent_us, int ntries)
{
	gw_rpc *rpc = ep->rpc;

	count_n(rpc, gw_rpc_m_failures, ep, ntries);
	if (ep->ejected) {
		gw_upstream_backoff(ep, sent_us);
		return;
	}
	if (++ep->fails >= rpc->eject_after) {
		char why[64];
		snprintf(
		    why, sizeof(why), "failed %d times in a row", ep->fails);
		gw_upstream_eject(ep, why);
	}
}

void
gw_upstream_succeeded(endpoint *ep, int64_t sent_us)
{
	gw_rpc *rpc = ep->rpc;

	ep->fails = 0;
	if (ep->ejected && sent_us >= ep->ejected_at_us) {
		ep->ejected = 0;
		ep->backoff_ms = EJECT_MIN_MS;
		EP_LOG(rpc, CM_LOG_INFO, "GW-ENDPOINT-BACK",
		    "upstream=%s endpoint=%s answers again: back in rotation",
		    rpc->groups[ep->group], ep->url);
		gw_upstream_recount(rpc);
	}
}

/* ---- choosing an endpoint ---- */

static uint64_t
next_rand(gw_rpc *rpc)
{
	/* xorshift64: the choice needs spread, not secrecy */
	uint64_t x = rpc->rand;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	rpc->rand = x;
	return x;
}

static int
tried(const call *c, const endpoint *ep)
{
	for (int i = 0; i < c->tries && i < MAX_TRIES; i++) {
		if (c->tried[i] == ep->id) {
			return 1;
		}
	}
	return 0;
}

static endpoint *
nth_candidate(gw_rpc *rpc, const call *c, int fresh, size_t k)
{
	for (endpoint *ep = rpc->eps; ep != NULL; ep = ep->next) {
		if (ep_healthy(ep) && (!fresh || !tried(c, ep)) && k-- == 0) {
			return ep;
		}
	}
	return NULL;
}

/* Power of two choices among healthy endpoints not yet tried by c (or,
 * when there are none and c may go back, the tried ones): the one with
 * fewer flights of two picked at random. With no healthy endpoint, the
 * least-recently ejected connected one. NULL when none is connected (or
 * none but tried ones and c->other). */
endpoint *
gw_upstream_pick(gw_rpc *rpc, const call *c)
{
	size_t    n = 0;
	int       fresh = 1;
	endpoint *a, *b, *best = NULL;

	for (int pass = 0; pass < 2 && n == 0; pass++) {
		fresh = pass == 0;
		if (!fresh && c->other) {
			break;
		}
		for (endpoint *ep = rpc->eps; ep != NULL; ep = ep->next) {
			n += ep_healthy(ep) && (!fresh || !tried(c, ep));
		}
	}
	if (n > 0) {
		size_t i = (size_t) (next_rand(rpc) % n);
		a = nth_candidate(rpc, c, fresh, i);
		if (n == 1) {
			return a;
		}
		size_t j = (size_t) (next_rand(rpc) % (n - 1));
		b = nth_candidate(rpc, c, fresh, j >= i ? j + 1 : j);
		return b->ncalls + b->nwaiting < a->ncalls + a->nwaiting ? b
		                                                         : a;
	}
	for (endpoint *ep = rpc->eps; ep != NULL; ep = ep->next) {
		if (!gw_upstream_ready(ep) || (c->other && tried(c, ep))) {
			continue;
		}
		if (best == NULL || ep->ejected_at_us < best->ejected_at_us) {
			best = ep;
		}
	}
	return best;
}

endpoint *
gw_upstream_find(gw_rpc *rpc, uint64_t id)
{
	for (endpoint *ep = rpc->eps; ep != NULL; ep = ep->next) {
		if (ep->id == id) {
			return ep;
		}
	}
	return NULL;
}

/* ---- pipes ---- */

/* Runs on an NNG thread: atomics and event_active() only. */
static void
pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	endpoint *ep = arg;
	uint32_t  id = (uint32_t) nng_pipe_id(p);
	int       i;

	if (ev == NNG_PIPE_EV_ADD_POST) {
		for (i = 0; i < PIPE_SLOTS; i++) {
			uint32_t free_slot = 0;
			if (atomic_compare_exchange_strong(
			        &ep->pipes[i], &free_slot, id)) {
				break;
			}
		}
	} else if (ev == NNG_PIPE_EV_REM_POST) {
		for (i = 0; i < PIPE_SLOTS; i++) {
			uint32_t want = id;
			if (atomic_compare_exchange_strong(
			        &ep->pipes[i], &want, 0)) {
				break;
			}
		}
		if (i == PIPE_SLOTS) {
			return; /* never usable, nothing was sent on it */
		}
		atomic_fetch_add(&ep->gen, 1);
	} else {
		return;
	}
	atomic_store(&ep->rpc->pipes_changed, 1);
	event_active(ep->rpc->wake, EV_READ, 0);
}

/* ---- endpoints: open, close ---- */

static int
ep_open(gw_rpc *rpc, size_t group, const char *url, char *err, size_t errlen)
{
	endpoint  *ep;
	nng_dialer d;
	int        rv;

	if ((ep = calloc(1, sizeof(*ep))) == NULL ||
	    (ep->url = strdup(url)) == NULL) {
		free(ep);
		snprintf(err, errlen, "%s", cm_strerror(CM_ENOMEM));
		return CM_ENOMEM;
	}
	ep->rpc = rpc;
	ep->group = group;
	ep->id = ++rpc->next_ep_id;
	ep->backoff_ms = EJECT_MIN_MS;
	ep->waiting_tail = &ep->waiting;
	if ((rv = nng_req0_open(&ep->sock)) != 0) {
		goto fail;
	}
	ep->open = 1;
	/* The gateway owns retries: never let req0 resend by itself. */
	if ((rv = nng_socket_set_ms(ep->sock, NNG_OPT_REQ_RESENDTIME,
	         NNG_DURATION_INFINITE)) != 0 ||
	    (rv = nng_socket_set_size(
	         ep->sock, NNG_OPT_RECVMAXSZ, MAX_REPLY_BYTES)) != 0 ||
	    (rv = nng_pipe_notify(
	         ep->sock, NNG_PIPE_EV_ADD_POST, pipe_cb, ep)) != 0 ||
	    (rv = nng_pipe_notify(
	         ep->sock, NNG_PIPE_EV_REM_POST, pipe_cb, ep)) != 0 ||
	    (rv = nng_dialer_create(&d, ep->sock, url)) != 0 ||
	    (rv = cm_tls_dialer_apply(d, rpc->groups[group])) != 0 ||
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
	ep->next = rpc->eps;
	rpc->eps = ep;
	return CM_OK;
fail:
	snprintf(err, errlen, "%s: %s", url, nng_strerror(rv));
	if (ep->open) {
		nng_close(ep->sock);
	}
	free(ep->url);
	free(ep);
	return rv == NNG_ENOMEM ? CM_ENOMEM : CM_EINVAL;
}

void
gw_upstream_free(endpoint *ep)
{
	gw_rpc    *rpc = ep->rpc;
	endpoint **pp = &rpc->eps;

	while (*pp != NULL && *pp != ep) {
		pp = &(*pp)->next;
	}
	if (*pp == ep) {
		*pp = ep->next;
	}
	if (ep->open) {
		/* Returns after the pipes' REM_POST callbacks ran. */
		nng_close(ep->sock);
	}
	free(ep->url);
	free(ep);
}

/* Sockets being closed by closer threads, across all loops. */
static atomic_int closers_running;

static void *
closer_main(void *arg)
{
	endpoint     *ep = arg;
	struct event *wake = ep->rpc->wake;

	nng_close(ep->sock);
	/* ep may be freed by its loop from here on; rpc and its wake event
	 * live until gw_rpc_free() has waited for closers_running. */
	atomic_store(&ep->closed, 1);
	event_active(wake, EV_READ, 0);
	atomic_fetch_sub(&closers_running, 1);
	return NULL;
}

/* Closes ep's socket on a thread of its own. NNG 1.5.2's nng_close()
 * waits until the socket's contexts and pipe callbacks are done, and with
 * flights in flight that wait can depend on this loop: called on the loop
 * it hung the loop for good (seen when DNS dropped a replica under load).
 * Off the loop, the aborted flights come back through flight_cb and are
 * retried, and gw_upstream_free_if_done() frees ep once all is over. */
static void
close_async(endpoint *ep)
{
	pthread_attr_t attr;
	pthread_t      t;

	atomic_fetch_add(&closers_running, 1);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &attr, closer_main, ep) != 0) {
		atomic_fetch_sub(&closers_running, 1);
		nng_close(ep->sock); /* no thread: better late than never */
		atomic_store(&ep->closed, 1);
	}
	pthread_attr_destroy(&attr);
}

/* Frees a removed endpoint once its socket is closed and no flight
 * refers to it. */
void
gw_upstream_free_if_done(endpoint *ep)
{
	if (ep->removed && ep->inflight == 0 && atomic_load(&ep->closed)) {
		gw_upstream_free(ep);
	}
}

/* Waits up to limit_ms for the closer threads to finish. */
void
gw_upstream_wait_closers(int limit_ms)
{
	for (int i = 0; i < limit_ms && atomic_load(&closers_running) > 0;
	     i++) {
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
}

/* Takes ep out for good: closing its socket fails its flights (they are
 * retried like those of a lost pipe); the struct goes with the last. */
static void
ep_remove(endpoint *ep)
{
	gw_rpc *rpc = ep->rpc;

	EP_LOG(rpc, CM_LOG_INFO, "GW-ENDPOINT-DEL",
	    "upstream=%s endpoint=%s is gone from the resolution",
	    rpc->groups[ep->group], ep->url);
	ep->removed = 1;
	if (ep->open) {
		ep->open = 0;
		close_async(ep);
	} else {
		atomic_store(&ep->closed, 1);
	}
	/* Its queued calls have not been tried on it: choose again. */
	gw_rpc_fail_waiting(ep, 1);
	gw_upstream_free_if_done(ep);
}

/* gw_disc's report: the group's endpoints become exactly urls. */
void
gw_upstream_sync(void *arg, size_t group, char *const *urls, size_t n)
{
	gw_rpc *rpc = arg;
	char    err[256];

	if (rpc->closing) {
		return;
	}
	for (endpoint *ep = rpc->eps; ep != NULL; ep = ep->next) {
		ep->seen = 0;
	}
	for (size_t i = 0; i < n; i++) {
		endpoint *ep;
		for (ep = rpc->eps; ep != NULL; ep = ep->next) {
			if (!ep->removed && ep->group == group &&
			    strcmp(ep->url, urls[i]) == 0) {
				break;
			}
		}
		if (ep != NULL) {
			ep->seen = 1;
			continue;
		}
		if (ep_open(rpc, group, urls[i], err, sizeof(err)) != CM_OK) {
			if (rpc->open_rv == CM_OK) {
				rpc->open_rv = CM_EINVAL;
				snprintf(rpc->open_err, sizeof(rpc->open_err),
				    "%s", err);
			}
			CM_ERROR("GW-ENDPOINT-OPEN", NULL, "upstream=%s %s",
			    rpc->groups[group], err);
			continue;
		}
		rpc->eps->seen = 1;
		if (gw_disc_is_name(rpc->disc, group)) {
			EP_LOG(rpc, CM_LOG_INFO, "GW-ENDPOINT-ADD",
			    "upstream=%s endpoint=%s", rpc->groups[group],
			    urls[i]);
		}
	}
	for (endpoint *ep = rpc->eps, *next; ep != NULL; ep = next) {
		next = ep->next;
		if (ep->group == group && !ep->seen && !ep->removed) {
			ep_remove(ep);
		}
	}
	gw_upstream_recount(rpc);
}

/* ---- probes ---- */

static void
probe_done(const gw_rpc_res *res, void *arg)
{
	(void) res;
	(void) arg; /* the endpoint was judged by the try itself */
}

/* Sends one PING to ep, whose back-off is over. */
static void
probe(gw_rpc *rpc, endpoint *ep)
{
	call *c;

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		return;
	}
	catalog__request__init(&c->pb);
	snprintf(c->reqid, sizeof(c->reqid), "probe");
	if (++rpc->next_tag == 0) {
		rpc->next_tag = 1;
	}
	c->rpc = rpc;
	c->cb = probe_done;
	c->pin = ep->id;
	c->pb.tag = rpc->next_tag;
	c->pb.method = CATALOG__METHOD__METHOD_PING;
	c->pb.request_id = c->reqid;
	c->pb.deadline_unix_ms = cm_now_ms() + rpc->try_timeout_ms;
	c->deadline_us = cm_mono_us() + rpc->try_timeout_ms * 1000LL;
	CM_DEBUG("GW-ENDPOINT-PROBE", NULL, "endpoint=%s", ep->url);
	if (gw_rpc_dispatch(c) != CM_OK) {
		free(c);
	}
}

void
gw_upstream_health_cb(evutil_socket_t fd, short what, void *arg)
{
	gw_rpc *rpc = arg;
	int64_t now = cm_mono_us();
	int     any = 0;

	(void) fd;
	(void) what;
	enter(rpc);
	if (rpc->closing) {
		return;
	}
	for (endpoint *ep = rpc->eps; ep != NULL; ep = ep->next) {
		if (!ep->ejected || ep->removed) {
			continue;
		}
		any = 1;
		if (!ep->probing && now >= ep->eject_until_us &&
		    gw_upstream_ready(ep)) {
			probe(rpc, ep);
		}
	}
	if (any) {
		arm_health_timer(rpc);
	}
}

/* ---- public calls: endpoint state (declared in gw.h) ---- */

gw_ep_state
gw_rpc_endpoint_state(gw_rpc *rpc, const char *url)
{
	for (endpoint *ep = rpc->eps; ep != NULL; ep = ep->next) {
		if (ep->removed || strcmp(ep->url, url) != 0) {
			continue;
		}
		if (!gw_upstream_ready(ep)) {
			return GW_EP_DOWN;
		}
		return ep->ejected ? GW_EP_EJECTED : GW_EP_HEALTHY;
	}
	return GW_EP_NONE;
}

size_t
gw_rpc_endpoint_count(gw_rpc *rpc, size_t *healthy)
{
	size_t n = 0, h = 0;
	for (endpoint *ep = rpc->eps; ep != NULL; ep = ep->next) {
		if (!ep->removed) {
			n++;
			h += ep_healthy(ep);
		}
	}
	if (healthy != NULL) {
		*healthy = h;
	}
	return n;
}
