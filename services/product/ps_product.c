/* ps_product.c - answers one product request: the cache-aside read path
 * with leases, single-flight database reads, listing, and the status of
 * each outcome; writes go to ps_write.c.
 *
 * The read path follows docs/consistency.md, "Order of operations": GET the
 * entry; on a miss join the id's flight, whose leader asks for a lease.
 * granted: read PostgreSQL, answer, fill with the token. fenced: read and
 * answer, no fill. busy: poll the entry every PS_POLL_MS for up to
 * PS_POLL_MAX_MS, then read without a fill. Redis unusable: read, BYPASS.
 *
 * stale-if-error (RFC 5861): an entry past its freshness is a miss, but
 * the request keeps its own copy; when the read of PostgreSQL fails (down,
 * an error, no connection) it answers from that copy with CACHE_STALE. Only
 * a request that saw the stale entry itself answers from it: its GET ran
 * before any later write deleted the entry, so the answer cannot be older
 * than a write that returned before the request began.
 *
 * This file calls only the ps_ interfaces (ps_cache_*, ps_db_*, ps_worker_*,
 * ps_flights_*), never hiredis, libpq, NNG or libevent themselves. Every
 * function here runs on the worker's loop thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm.h"
#include "cm_log.h"
#include "ps.h"

/* One request in progress. The waiter comes first so that a ps_waiter
 * taken from the flight table is the call itself. */
typedef struct call {
	ps_waiter               wait;
	ps_worker              *w;
	const Catalog__Request *rq;
	Catalog__Response      *rsp;
	ps_done_fn              done;
	void                   *arg;
	int                     limit; /* LIST */
	int64_t                 start_us;
	Catalog__Product       *stale; /* its own stale entry, or NULL */
	/* The leader of a flight only: */
	int     may_fill; /* holds the lease: fill after the read */
	int64_t poll_until_us;
	char    token[PS_CACHE_TOKEN_LEN + 1];
} call;

#define PS_POLL_MS     10  /* busy: poll the entry this often ... */
#define PS_POLL_MAX_MS 200 /* ... for this long, then read PostgreSQL */

/* A cache fill waiting for the test hook's delay. */
typedef struct fill {
	ps_worker *w;
	int64_t    id;
	int        version;
	uint8_t   *val;
	size_t     len;
	long long  ttl_ms;
	char       token[PS_CACHE_TOKEN_LEN + 1];
} fill;

const char *
ps_method_name(Catalog__Method m)
{
	switch (m) {
	case CATALOG__METHOD__METHOD_PING:
		return "PING";
	case CATALOG__METHOD__METHOD_GET_PRODUCT:
		return "GET";
	case CATALOG__METHOD__METHOD_LIST_PRODUCTS:
		return "LIST";
	case CATALOG__METHOD__METHOD_CREATE_PRODUCT:
		return "CREATE";
	case CATALOG__METHOD__METHOD_REPLACE_PRODUCT:
		return "REPLACE";
	case CATALOG__METHOD__METHOD_PATCH_PRODUCT:
		return "PATCH";
	case CATALOG__METHOD__METHOD_DELETE_PRODUCT:
		return "DELETE";
	default:
		return "UNKNOWN";
	}
}

static const char *
cache_name(Catalog__CacheOutcome c)
{
	switch (c) {
	case CATALOG__CACHE_OUTCOME__CACHE_HIT:
		return "HIT";
	case CATALOG__CACHE_OUTCOME__CACHE_MISS:
		return "MISS";
	case CATALOG__CACHE_OUTCOME__CACHE_BYPASS:
		return "BYPASS";
	case CATALOG__CACHE_OUTCOME__CACHE_STALE:
		return "STALE";
	default:
		return "-";
	}
}

/* Logs the outcome and hands the response back; frees k. The request may
 * be freed by done(), so nothing reads k->rq afterwards. */
static void
finish(call *k)
{
	const Catalog__Request *rq = k->rq;
	Catalog__Response      *rsp = k->rsp;

	PS_RLOG(CM_LOG_DEBUG, "PS-REQ", rq,
	    "%s id=%lld status=%d cache=%s version=%d %lldus",
	    ps_method_name(rq->method), (long long) rq->id, (int) rsp->status,
	    cache_name(rsp->cache),
	    rsp->product != NULL ? (int) rsp->product->version : 0,
	    (long long) (cm_mono_us() - k->start_us));
	ps_msg_product_free(k->stale);
	k->done(k->arg);
	free(k);
}

/* Puts product p (taken) into the response: OK, or NOT_MODIFIED when the
 * client already holds this version. */
static void
answer_product(call *k, Catalog__Product *p)
{
	int32_t inm = k->rq->if_none_match_version;

	k->rsp->product = p;
	k->rsp->status = inm != 0 && inm == p->version
	    ? CATALOG__STATUS__STATUS_NOT_MODIFIED
	    : CATALOG__STATUS__STATUS_OK;
}

static void
answer_error(call *k, int rv)
{
	if (rv == CM_EUNAVAIL) {
		ps_msg_set_status(k->rsp, CATALOG__STATUS__STATUS_UNAVAILABLE,
		    "database unavailable");
	} else {
		ps_msg_set_status(
		    k->rsp, CATALOG__STATUS__STATUS_INTERNAL, cm_strerror(rv));
	}
}

/* ---- cache fill ---- */

static void
fill_send(ps_worker *w, int64_t id, const char *token, int version,
    const uint8_t *val, size_t len, long long ttl_ms)
{
	int rv;

	if (w->stopping) {
		return;
	}
	rv = ps_cache_fill(
	    w->cache, id, token, version, val, len, ttl_ms, NULL, NULL);
	if (rv != CM_OK) {
		CM_DEBUG("PS-FILL-SKIP", NULL, "product:%lld: %s",
		    (long long) id, cm_strerror(rv));
	}
}

#ifdef CM_TEST_HOOKS
static void
fill_later(void *arg)
{
	fill *f = arg;
	fill_send(
	    f->w, f->id, f->token, f->version, f->val, f->len, f->ttl_ms);
	free(f->val);
	free(f);
}
#endif

/* Fills product:{id} with p, or with a negative entry when p is NULL,
 * under the lease token. */
static void
start_fill(
    ps_worker *w, int64_t id, const char *token, const Catalog__Product *p)
{
	uint8_t  *val;
	size_t    len;
	long long ttl_ms;
	int       version = p != NULL ? (int) p->version : 0;

	/* A product is fresh for its jittered TTL and then kept in Redis
	 * for the stale-if-error window; a negative entry only for its own
	 * TTL. */
	if (p != NULL) {
		long long fresh_ms =
		    ps_entry_ttl_ms(w->cfg->cache_ttl, ps_worker_rand(w));
		int64_t fresh_until_s = (cm_now_ms() + fresh_ms) / 1000;
		ttl_ms = fresh_ms + w->cfg->stale_if_error_s * 1000;
		if (ps_entry_encode(p, fresh_until_s, &val, &len) != CM_OK) {
			return;
		}
	} else {
		ttl_ms = w->cfg->negative_ttl * 1000;
		if (ps_entry_encode(NULL, 0, &val, &len) != CM_OK) {
			return;
		}
	}
#ifdef CM_TEST_HOOKS
	if (w->cfg->fill_delay_ms > 0) {
		fill *f = malloc(sizeof(*f));
		if (f != NULL) {
			*f = (fill) {w, id, version, val, len, ttl_ms, ""};
			snprintf(f->token, sizeof(f->token), "%s", token);
			if (ps_worker_after(w, w->cfg->fill_delay_ms,
			        fill_later, f) == CM_OK) {
				return;
			}
			free(f);
		}
	}
#endif
	fill_send(w, id, token, version, val, len, ttl_ms);
	free(val);
}

/* ---- GET ---- */

static void get_product(call *k);

/* Answers k from a cache entry it owns nothing of: a positive entry, a
 * negative one, or (malformed) nothing. With stale_miss set, a positive
 * entry past its freshness is not answered: k keeps it (for stale-if-error
 * when that is on) and CM_ETIMEDOUT is returned. Returns CM_OK when k was
 * answered and finished, CM_EPROTO when the entry is malformed (k
 * untouched). */
static int
answer_entry(call *k, const uint8_t *data, size_t len, int stale_miss)
{
	Catalog__Product *p = NULL;
	int               version;
	int64_t           fresh_until;
	int rv = ps_entry_decode(data, len, &p, &version, &fresh_until);

	if (rv == CM_ENOTFOUND) {
		k->rsp->cache = CATALOG__CACHE_OUTCOME__CACHE_HIT;
		ps_msg_set_status(k->rsp, CATALOG__STATUS__STATUS_NOT_FOUND,
		    "no such product");
		finish(k);
		return CM_OK;
	}
	if (rv != CM_OK || p->id != k->rq->id) {
		PS_RLOG(CM_LOG_WARN, "PS-CACHE-BAD", k->rq,
		    "product:%lld holds a malformed entry (%zu bytes)",
		    (long long) k->rq->id, len);
		ps_msg_product_free(p);
		return CM_EPROTO;
	}
	if (stale_miss && !ps_entry_fresh(fresh_until, cm_now_ms())) {
		ps_msg_product_free(k->stale);
		k->stale = NULL;
		if (k->w->cfg->stale_if_error_s > 0) {
			k->stale = p;
		} else {
			ps_msg_product_free(p);
		}
		return CM_ETIMEDOUT;
	}
	k->rsp->cache = CATALOG__CACHE_OUTCOME__CACHE_HIT;
	answer_product(k, p);
	finish(k);
	return CM_OK;
}

/* Ends the flight that lead leads. With data (an entry the flight read from
 * Redis) every waiter is answered from it; otherwise from the database
 * result rv / p (taken), and the cache is filled when the leader holds the
 * lease. Waiters that arrived after the query was sent look again. */
static void
flight_end(
    call *lead, const uint8_t *data, size_t len, int rv, Catalog__Product *p)
{
	ps_worker *w = lead->w;
	int64_t    id = lead->rq->id;
	int        lead_held_lease = lead->may_fill && data == NULL;
	int        may_fill = lead_held_lease && rv == CM_OK;
	char       token[PS_CACHE_TOKEN_LEN + 1];
	ps_waiter *later;
	ps_waiter *wt = ps_flights_take(&w->flights, id, &later);
	int        n = 0;

	memcpy(token, lead->token, sizeof(token));
	while (wt != NULL) {
		call *k = (call *) wt;
		wt = wt->next;
		n++;
		if (data != NULL) {
			if (k->rsp->cache ==
			    CATALOG__CACHE_OUTCOME__CACHE_BYPASS) {
				/* Its own GET failed, so it may have begun
				 * after the flight's read: look again. */
				k->wait.next = later;
				later = &k->wait;
			} else if (answer_entry(k, data, len, 0) != CM_OK) {
				answer_error(k, CM_EPROTO);
				finish(k);
			}
			continue;
		}
		if (rv != CM_OK && k->stale != NULL) {
			/* stale-if-error: its own copy, read before the
			 * failure (see the file comment). */
			Catalog__Product *st = k->stale;
			k->stale = NULL;
			k->rsp->cache = CATALOG__CACHE_OUTCOME__CACHE_STALE;
			answer_product(k, st);
			PS_RLOG(CM_LOG_DEBUG, "PS-STALE", k->rq,
			    "product:%lld: database %s, answered version %d "
			    "from a stale entry",
			    (long long) id, cm_strerror(rv),
			    (int) st->version);
		} else if (rv != CM_OK) {
			answer_error(k, rv);
		} else if (p == NULL) {
			ps_msg_set_status(k->rsp,
			    CATALOG__STATUS__STATUS_NOT_FOUND,
			    "no such product");
		} else {
			Catalog__Product *d = ps_msg_product_dup(p);
			if (d != NULL) {
				answer_product(k, d);
			} else {
				answer_error(k, CM_ENOMEM);
			}
		}
		finish(k);
	}
	if (n > 1) {
		CM_DEBUG("PS-FLIGHT", NULL, "product %lld: one read for %d",
		    (long long) id, n);
	}
	if (lead_held_lease && rv != CM_OK && !w->stopping) {
		/* The read failed: let the next reader have the lease now
		 * rather than wait PRODUCT_LEASE_MS for it to expire. */
		(void) ps_cache_release(w->cache, id, token);
	}
	if (may_fill) {
		start_fill(w, id, token, p);
	}
	ps_msg_product_free(p);
	while (later != NULL) {
		call *k = (call *) later;
		later = later->next;
		get_product(k);
	}
}

static void
on_flight_sent(void *arg)
{
	call *lead = arg;

	(void) ps_flights_sent(&lead->w->flights, lead->rq->id);
}

static void
on_flight_db(void *arg, int rv, Catalog__Product *p)
{
	flight_end(arg, NULL, 0, rv, p);
}

/* The leader reads PostgreSQL for its flight; it fills afterwards only when
 * lead->may_fill is set. */
static void
flight_select(call *lead)
{
	ps_worker *w = lead->w;
	int        rv;

	if (w->stopping) {
		flight_end(lead, NULL, 0, CM_EUNAVAIL, NULL);
		return;
	}
	rv = ps_db_get_product(
	    w->db, lead->rq->id, on_flight_sent, on_flight_db, lead);
	if (rv != CM_OK) {
		flight_end(lead, NULL, 0, rv, NULL);
	}
}

static void poll_later(call *lead);

/* An entry read by the flight (lease hit, or a poll): answer everyone from
 * it, or read PostgreSQL when it is malformed. */
static void
flight_entry(call *lead, const uint8_t *data, size_t len)
{
	Catalog__Product *p = NULL;
	int               version;
	int64_t           fresh_until;
	int rv = ps_entry_decode(data, len, &p, &version, &fresh_until);
	int ok = rv == CM_ENOTFOUND || (rv == CM_OK && p->id == lead->rq->id);

	ps_msg_product_free(p);
	if (ok) {
		flight_end(lead, data, len, CM_OK, NULL);
		return;
	}
	PS_RLOG(CM_LOG_WARN, "PS-CACHE-BAD", lead->rq,
	    "product:%lld holds a malformed entry (%zu bytes)",
	    (long long) lead->rq->id, len);
	flight_select(lead);
}

/* 1 when data is a positive entry past its freshness: for a reader that
 * waits for another's fill, the same as no entry. */
static int
entry_stale(const uint8_t *data, size_t len)
{
	Catalog__Product *p = NULL;
	int               version, stale = 0;
	int64_t           fresh_until;

	if (ps_entry_decode(data, len, &p, &version, &fresh_until) == CM_OK) {
		stale = !ps_entry_fresh(fresh_until, cm_now_ms());
	}
	ps_msg_product_free(p);
	return stale;
}

static void
on_poll(void *arg, int rv, const uint8_t *data, size_t len)
{
	call *lead = arg;

	if (rv != CM_OK) {
		flight_select(lead);
	} else if (data != NULL && !entry_stale(data, len)) {
		flight_entry(lead, data, len);
	} else if (cm_mono_us() >= lead->poll_until_us) {
		/* The other reader is slow: read without filling. */
		flight_select(lead);
	} else {
		poll_later(lead);
	}
}

static void
poll_cb(void *arg)
{
	call *lead = arg;

	if (lead->w->stopping ||
	    ps_cache_get(lead->w->cache, lead->rq->id, on_poll, lead) !=
	        CM_OK) {
		flight_select(lead);
	}
}

static void
poll_later(call *lead)
{
	if (ps_worker_after(lead->w, PS_POLL_MS, poll_cb, lead) != CM_OK) {
		flight_select(lead);
	}
}

static void
on_lease(void *arg, int rv, int outcome, const uint8_t *data, size_t len)
{
	call *lead = arg;

	if (rv != CM_OK) {
		flight_select(lead); /* Redis unusable: no fill */
		return;
	}
	switch (outcome) {
	case PS_LEASE_HIT:
		flight_entry(lead, data, len);
		break;
	case PS_LEASE_GRANTED:
		ps_metrics_lease(PS_LEASE_M_GRANTED);
		lead->may_fill = 1;
		flight_select(lead);
		break;
	case PS_LEASE_FENCED:
		ps_metrics_lease(PS_LEASE_M_FENCED);
		flight_select(lead);
		break;
	default: /* busy: another reader, on any replica, is filling */
		ps_metrics_lease(PS_LEASE_M_BUSY);
		lead->poll_until_us = cm_mono_us() + PS_POLL_MAX_MS * 1000;
		poll_later(lead);
		break;
	}
}

/* Reads the product for k, sharing the work with every request for the
 * same id on this thread whose flight has not sent its query yet. The
 * leader of a flight asks for a lease first, unless Redis already failed
 * (outcome BYPASS). */
static void
join_flight(call *k, Catalog__CacheOutcome outcome)
{
	ps_worker *w = k->w;
	int        role, rv;

	k->rsp->cache = outcome;
	if (w->stopping) {
		answer_error(k, CM_EUNAVAIL);
		finish(k);
		return;
	}
	if (ps_flights_join(&w->flights, k->rq->id, &k->wait, &role) !=
	    CM_OK) {
		answer_error(k, CM_ENOMEM);
		finish(k);
		return;
	}
	if (role != PS_FLIGHT_LEADER) {
		if (role == PS_FLIGHT_JOINED) {
			ps_metrics_flight_join();
		}
		return; /* answered, or sent to look again, by the leader */
	}
	k->may_fill = 0;
	if (outcome == CATALOG__CACHE_OUTCOME__CACHE_BYPASS) {
		flight_select(k);
		return;
	}
	snprintf(k->token, sizeof(k->token), "%016llx%016llx",
	    (unsigned long long) ps_worker_rand(w),
	    (unsigned long long) ps_worker_rand(w));
	rv = ps_cache_lease(w->cache, k->rq->id, k->token, w->cfg->lease_ms,
	    cm_now_ms() / 1000, on_lease, k);
	if (rv != CM_OK) {
		flight_select(k);
	}
}

static void
on_cache_get(void *arg, int rv, const uint8_t *data, size_t len)
{
	call *k = arg;

	if (rv != CM_OK) {
		join_flight(k, CATALOG__CACHE_OUTCOME__CACHE_BYPASS);
		return;
	}
	if (data == NULL) {
		join_flight(k, CATALOG__CACHE_OUTCOME__CACHE_MISS);
		return;
	}
	/* Malformed, or stale (k keeps a copy): a miss. */
	if (answer_entry(k, data, len, 1) != CM_OK) {
		join_flight(k, CATALOG__CACHE_OUTCOME__CACHE_MISS);
	}
}

static void
get_product(call *k)
{
	if (k->rq->id <= 0) {
		ps_msg_set_status(k->rsp, CATALOG__STATUS__STATUS_INVALID,
		    "id must be a positive integer");
		finish(k);
		return;
	}
	if (k->w->stopping ||
	    ps_cache_get(k->w->cache, k->rq->id, on_cache_get, k) != CM_OK) {
		join_flight(k, CATALOG__CACHE_OUTCOME__CACHE_BYPASS);
	}
}

/* ---- LIST ---- */

/* Keeps the first limit rows; one row more means another page exists.
 * Takes ownership of items. */
static void
on_db_list(void *arg, int rv, Catalog__Product **items, size_t n)
{
	call  *k = arg;
	size_t limit = (size_t) k->limit;

	if (rv != CM_OK) {
		answer_error(k, rv);
		finish(k);
		return;
	}
	if (n > limit) {
		for (size_t i = limit; i < n; i++) {
			ps_msg_product_free(items[i]);
		}
		n = limit;
		k->rsp->next_after = items[limit - 1]->id;
	}
	if (n == 0) {
		free(items);
		items = NULL;
	}
	k->rsp->items = items;
	k->rsp->n_items = n;
	k->rsp->status = CATALOG__STATUS__STATUS_OK;
	finish(k);
}

static void
list_products(call *k)
{
	int limit = k->rq->limit == 0 ? PS_LIST_DEFAULT : k->rq->limit;
	int rv;

	if (limit < 1 || limit > PS_LIST_MAX) {
		ps_msg_set_status(k->rsp, CATALOG__STATUS__STATUS_INVALID,
		    "limit must be from 1 to 100");
		finish(k);
		return;
	}
	if (k->rq->after < 0) {
		ps_msg_set_status(k->rsp, CATALOG__STATUS__STATUS_INVALID,
		    "after must not be negative");
		finish(k);
		return;
	}
	k->limit = limit;
	rv = ps_db_list_products(
	    k->w->db, k->rq->after, limit + 1, on_db_list, k);
	if (rv != CM_OK) {
		answer_error(k, rv);
		finish(k);
	}
}

/* ---- entry point ---- */

/* Answers rq into rsp (which already carries tag and replica) and then
 * calls done(arg) exactly once, possibly before returning. rq and rsp
 * must stay valid until then. */
void
ps_product_handle(ps_worker *w, const Catalog__Request *rq,
    Catalog__Response *rsp, ps_done_fn done, void *arg)
{
	call *k = calloc(1, sizeof(*k));

	if (k == NULL) {
		ps_msg_set_status(
		    rsp, CATALOG__STATUS__STATUS_INTERNAL, "out of memory");
		done(arg);
		return;
	}
	k->w = w;
	k->rq = rq;
	k->rsp = rsp;
	k->done = done;
	k->arg = arg;
	k->start_us = cm_mono_us();

	if (rq->deadline_unix_ms != 0 && cm_now_ms() > rq->deadline_unix_ms) {
		ps_msg_set_status(rsp,
		    CATALOG__STATUS__STATUS_DEADLINE_EXCEEDED,
		    "deadline passed before the replica started");
		finish(k);
		return;
	}
	switch (rq->method) {
	case CATALOG__METHOD__METHOD_PING:
		rsp->status = CATALOG__STATUS__STATUS_OK;
		finish(k);
		break;
	case CATALOG__METHOD__METHOD_GET_PRODUCT:
		get_product(k);
		break;
	case CATALOG__METHOD__METHOD_LIST_PRODUCTS:
		list_products(k);
		break;
	case CATALOG__METHOD__METHOD_CREATE_PRODUCT:
	case CATALOG__METHOD__METHOD_REPLACE_PRODUCT:
	case CATALOG__METHOD__METHOD_PATCH_PRODUCT:
	case CATALOG__METHOD__METHOD_DELETE_PRODUCT:
		free(k);
		ps_write_handle(w, rq, rsp, done, arg);
		break;
	default:
		ps_msg_set_status(
		    rsp, CATALOG__STATUS__STATUS_INVALID, "unknown method");
		finish(k);
		break;
	}
}
