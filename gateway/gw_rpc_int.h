/* gw_rpc_int.h - what gw_rpc.c (calls, flights, batching, retries) and
 * gw_upstream.c (the endpoint set: sockets, dialers, health, choice) share.
 *
 * Private to those two files, the way hiredis keeps async_private.h: the
 * rest of the gateway sees gw_rpc through gw.h alone, and only these two
 * files include NNG. Everything here runs on the gw_rpc's loop thread
 * unless a comment says otherwise; gw_rpc.c's top comment tells the whole
 * story.
 */
#ifndef GW_RPC_INT_H
#define GW_RPC_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <event2/event.h>
#include <nng/nng.h>

#include "cm_log.h"
#include "cm_metrics.h"
#include "gw.h"

#define RECONN_MIN_MS   100
#define RECONN_MAX_MS   1000
#define CONNECT_WAIT_MS (RECONN_MAX_MS + 100) /* one dial retry */
#define PIPE_SLOTS      4
#define REQID_MAX       64
#define MAX_TRIES       4 /* the first try and up to three retries */

typedef struct call     call;
typedef struct flight   flight;
typedef struct endpoint endpoint;

struct endpoint {
	gw_rpc    *rpc;
	size_t     group; /* index of its GATEWAY_UPSTREAMS entry */
	uint64_t   id;    /* unique in rpc, never reused */
	char      *url;
	nng_socket sock;
	int        open;
	/* Ids of the pipes that completed ADD_POST and have not been
	 * removed: the endpoint is usable when one is set. Written by NNG
	 * threads, read by the loop. */
	_Atomic uint32_t pipes[PIPE_SLOTS];
	atomic_uint      gen; /* bumped when a usable pipe goes away */
	/* Loop thread only. */
	int        was_up;   /* last state logged */
	int        removed;  /* gone from the resolution; freed when idle */
	atomic_int closed;   /* its socket is closed (closer thread) */
	int        seen;     /* scratch of gw_upstream_sync() */
	int        inflight; /* flights on it */
	int        ncalls;   /* calls in those flights */
	call      *waiting;  /* queued for the next batch, in order */
	call     **waiting_tail;
	int        nwaiting;
	int        fails; /* consecutive failures */
	int        ejected;
	int        probing; /* a probe PING is in flight */
	int        backoff_ms;
	int64_t    ejected_at_us;
	int64_t    eject_until_us;
	endpoint  *next; /* rpc->eps */
};

struct call {
	gw_rpc          *rpc;
	Catalog__Request pb;
	char             reqid[REQID_MAX + 1];
	int64_t          deadline_us;   /* monotonic */
	int64_t          park_until_us; /* while waiting for an endpoint */
	int              tries;
	int              retryable; /* a lost try may be sent again */
	int              other;     /* the next try must avoid tried ones */
	uint64_t         tried[MAX_TRIES]; /* endpoint ids, in order */
	uint64_t         pin;              /* probes: this endpoint only */
	char             last_url[GW_URL_MAX];
	gw_rpc_cb        cb;
	void            *arg;
	call            *next; /* in a flight or in rpc->parked */
};

struct gw_rpc {
	struct event_base *base;
	struct event      *wake;
	struct event      *park_timer;
	struct event      *health_timer;
	struct event      *flush; /* sends the queues at the loop turn's end */
	int                flush_armed;
	pthread_mutex_t    mu;
	flight            *done_head; /* under mu */
	flight            *done_tail; /* under mu */
	atomic_int         pipes_changed;
	gw_disc           *disc;
	char             **groups; /* the GATEWAY_UPSTREAMS entries */
	size_t             ngroups;
	size_t            *series; /* metrics series of each group */
	endpoint          *eps;
	uint64_t           next_ep_id;
	flight            *flights; /* in flight, loop thread */
	call              *parked;  /* waiting for an endpoint, loop thread */
	uint32_t           next_tag;
	uint64_t           rand;
	int                closing;
	int                loop;
	int                try_timeout_ms;
	int                eject_after;
	int                batch_inflight;
	int                batch_max;
	int64_t            budget; /* thousandths of a retry */
	int64_t            budget_at_us;
	long               n_eps, n_healthy; /* this loop's share of gauges */
	int                open_rv; /* first endpoint open error, at start */
	char               open_err[256];
	struct arena      *arena; /* deliver()'s decoding, NULL until used */
};

/* Endpoint state changes are logged at info by the first loop only (every
 * loop keeps its own endpoints and would repeat them). */
#define EP_LOG(rpc, lvl, id, ...) \
	CM_LOG((rpc)->loop <= 1 ? (lvl) : CM_LOG_DEBUG, id, NULL, __VA_ARGS__)

/* ---- gw_rpc.c ---- */

/* The upstream metrics that gw_upstream.c counts (NULL until
 * gw_rpc_metrics_init()), and the endpoint gauges, summed over loops. */
extern cm_metric  *gw_rpc_m_failures, *gw_rpc_m_ejections;
extern atomic_long gw_rpc_g_endpoints, gw_rpc_g_healthy;

static inline void
count_n(gw_rpc *rpc, cm_metric *m, const endpoint *ep, int n)
{
	if (m != NULL && rpc->series != NULL) {
		cm_metric_add(m, rpc->series[ep->group], n);
	}
}

static inline void
count(gw_rpc *rpc, cm_metric *m, const endpoint *ep)
{
	count_n(rpc, m, ep, 1);
}

/* Binds the calling (loop) thread to this loop's metrics shard. */
static inline void
enter(gw_rpc *rpc)
{
	if (rpc->loop > 0) {
		cm_metrics_thread_set(rpc->loop);
	}
}

/* Sends c to an endpoint, or parks it until one connects. Returns CM_OK,
 * or an error with c left to the caller. */
int gw_rpc_dispatch(call *c);

/* Empties ep's queue: with redispatch, each call chooses an endpoint
 * again (ep is gone or down); without, each fails (shutting down). */
void gw_rpc_fail_waiting(endpoint *ep, int redispatch);

/* ---- gw_upstream.c ---- */

/* ep has a connected pipe and is not removed. */
int gw_upstream_ready(endpoint *ep);

/* Some endpoint of rpc is ready. */
int gw_upstream_any_ready(gw_rpc *rpc);

/* Brings this loop's share of the endpoint gauges up to date. */
void gw_upstream_recount(gw_rpc *rpc);

/* Takes ep out of rotation for its back-off, unless it is the last
 * healthy endpoint. */
void gw_upstream_eject(endpoint *ep, const char *why);

/* A try sent at sent_us to the ejected ep failed: the back-off may
 * double. */
void gw_upstream_backoff(endpoint *ep, int64_t sent_us);

/* A flight sent at sent_us failed on ep, ntries of its tries with it:
 * one failure towards ejection. */
void gw_upstream_failed(endpoint *ep, int64_t sent_us, int ntries);

/* A flight sent at sent_us was answered well by ep. */
void gw_upstream_succeeded(endpoint *ep, int64_t sent_us);

/* The endpoint for c's next try (power of two choices), or NULL. */
endpoint *gw_upstream_pick(gw_rpc *rpc, const call *c);

/* The endpoint of rpc with this id, or NULL. */
endpoint *gw_upstream_find(gw_rpc *rpc, uint64_t id);

/* Frees a removed endpoint once its socket is closed and no flight
 * refers to it. */
void gw_upstream_free_if_done(endpoint *ep);

/* Unlinks ep from rpc->eps, closes its socket and frees it. */
void gw_upstream_free(endpoint *ep);

/* Waits up to limit_ms for the closer threads to finish. */
void gw_upstream_wait_closers(int limit_ms);

/* gw_disc's report (arg is the gw_rpc): the group's endpoints become
 * exactly urls. */
void gw_upstream_sync(void *arg, size_t group, char *const *urls, size_t n);

/* rpc->health_timer: probes ejected endpoints whose back-off is over. */
void gw_upstream_health_cb(evutil_socket_t fd, short what, void *arg);

#endif /* GW_RPC_INT_H */
