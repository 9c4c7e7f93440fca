/* ps_metrics.c - the product service's Prometheus families, the calls that
 * record into them, and per-request log lines with the trace id.
 *
 * ps_metrics_init() registers every family once, before any worker thread
 * starts; each worker then records into its own shard (cm_metrics_thread_set
 * in ps_worker.c), so recording is a relaxed atomic add and takes no lock.
 * Label values come from the fixed lists below, never from requests. Until
 * ps_metrics_init() runs (unit tests) every recording call does nothing.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>

#include "cm.h"
#include "cm_log.h"
#include "cm_metrics.h"
#include "cm_trace.h"
#include "ps.h"

#ifndef CM_VERSION
#define CM_VERSION "unknown"
#endif
#ifndef CM_GIT_REV
#define CM_GIT_REV "unknown"
#endif

/* The last value of each list is where unknown values go. */
static const char *const method_values[] = {"ping", "get_product",
    "list_products", "create_product", "replace_product", "patch_product",
    "delete_product", "other", NULL};
static const char *const status_values[] = {"ok", "created", "no_content",
    "not_modified", "not_found", "invalid", "conflict", "precondition_failed",
    "unprocessable", "unavailable", "deadline_exceeded", "internal",
    "draining", "other", NULL};
static const char *const cache_values[] = {
    "hit", "miss", "bypass", "negative_hit", "stale", NULL};
static const char *const lease_values[] = {"granted", "busy", "fenced", NULL};
static const char *const redis_err_values[] = {
    "timeout", "error", "disconnected", NULL};
static const char *const query_values[] = {
    "get_product", "list_products", "catalog_write", "reserve_id", NULL};
static const char *const conn_values[] = {"up", "down", NULL};
static const char *const version_values[] = {CM_VERSION, NULL};
static const char *const revision_values[] = {CM_GIT_REV, NULL};

static const cm_label rpc_labels[] = {
    {"method", method_values},
    {"status", status_values},
};
static const cm_label method_label = {"method", method_values};
static const cm_label cache_label = {"result", cache_values};
static const cm_label lease_label = {"result", lease_values};
static const cm_label redis_err_label = {"kind", redis_err_values};
static const cm_label query_label = {"query", query_values};
static const cm_label conn_label = {"state", conn_values};
static const cm_label build_labels[] = {
    {"version", version_values},
    {"revision", revision_values},
};

static cm_metric *rpc_requests;
static cm_metric *rpc_duration;
static cm_metric *cache_results;
static cm_metric *flight_joins;
static cm_metric *leases;
static cm_metric *redis_duration;
static cm_metric *redis_errors;
static cm_metric *pg_duration;
static cm_metric *pg_errors;
static cm_metric *pg_conns;
static cm_metric *pg_waits;
static cm_metric *pg_wait_seconds;
static cm_metric *build_info;

/* Breaker state of each worker's Redis connection. */
static atomic_int breaker[PS_MAX_THREADS];
static int        nbreakers;

/* Index of a Method in method_values. */
static int
method_index(Catalog__Method m)
{
	switch (m) {
	case CATALOG__METHOD__METHOD_PING:
		return 0;
	case CATALOG__METHOD__METHOD_GET_PRODUCT:
		return 1;
	case CATALOG__METHOD__METHOD_LIST_PRODUCTS:
		return 2;
	case CATALOG__METHOD__METHOD_CREATE_PRODUCT:
		return 3;
	case CATALOG__METHOD__METHOD_REPLACE_PRODUCT:
		return 4;
	case CATALOG__METHOD__METHOD_PATCH_PRODUCT:
		return 5;
	case CATALOG__METHOD__METHOD_DELETE_PRODUCT:
		return 6;
	default:
		return 7;
	}
}

/* Status n (1..13) is status_values[n - 1]; anything else is "other". */
static int
status_index(Catalog__Status st)
{
	int n = (int) st;
	return n >= 1 && n <= 13 ? n - 1 : 13;
}

static double
in_flight_fn(void *arg)
{
	(void) arg;
	return (double) ps_drain_inflight();
}

static double
draining_fn(void *arg)
{
	(void) arg;
	return ps_drain_draining() ? 1 : 0;
}

/* 1 (open) when any worker's breaker is open, else 2 (half-open) when any
 * is probing, else 0 (closed). */
static double
breaker_fn(void *arg)
{
	int half = 0;

	(void) arg;
	for (int i = 0; i < nbreakers; i++) {
		int s =
		    atomic_load_explicit(&breaker[i], memory_order_relaxed);
		if (s == PS_BREAKER_OPEN) {
			return PS_BREAKER_OPEN;
		}
		half |= s == PS_BREAKER_HALF_OPEN;
	}
	return half ? PS_BREAKER_HALF_OPEN : PS_BREAKER_CLOSED;
}

/* Registers every family; call after cm_metrics_init() and before any
 * worker thread starts. Returns CM_OK or CM_ENOMEM. */
int
ps_metrics_init(int nthreads)
{
	nbreakers = nthreads < PS_MAX_THREADS ? nthreads : PS_MAX_THREADS;
	rpc_requests = cm_metric_new(CM_METRIC_COUNTER,
	    "product_rpc_requests_total",
	    "RPC requests answered, by method and status (draining includes "
	    "requests refused as overloaded).",
	    rpc_labels, 2);
	rpc_duration =
	    cm_metric_new(CM_METRIC_HISTOGRAM, "product_rpc_duration_seconds",
	        "Time from a request's decoding to its answer, by method.",
	        &method_label, 1);
	cache_results =
	    cm_metric_new(CM_METRIC_COUNTER, "product_cache_results_total",
	        "Product reads by cache outcome: hit, miss, bypass (Redis not "
	        "used), negative_hit (cached 404), stale (stale-if-error).",
	        &cache_label, 1);
	flight_joins = cm_metric_new(CM_METRIC_COUNTER,
	    "product_singleflight_joins_total",
	    "Reads that shared another read's PostgreSQL query.", NULL, 0);
	leases = cm_metric_new(CM_METRIC_COUNTER, "product_cache_leases_total",
	    "Answers of the lease script after a miss: granted (this reader "
	    "fills), busy (another reader fills), fenced (a write runs).",
	    &lease_label, 1);
	redis_duration = cm_metric_new(CM_METRIC_HISTOGRAM,
	    "product_redis_command_duration_seconds",
	    "Time from sending a Redis command to its reply.", NULL, 0);
	redis_errors =
	    cm_metric_new(CM_METRIC_COUNTER, "product_redis_errors_total",
	        "Redis failures: timeout (no reply in time), error (error "
	        "reply), disconnected (connection lost, refused or down).",
	        &redis_err_label, 1);
	pg_duration = cm_metric_new(CM_METRIC_HISTOGRAM,
	    "product_pg_query_duration_seconds",
	    "Time from sending a PostgreSQL query to its result, by "
	    "prepared statement.",
	    &query_label, 1);
	pg_errors = cm_metric_new(CM_METRIC_COUNTER, "product_pg_errors_total",
	    "PostgreSQL queries that failed: an error result, a connection "
	    "lost under them, or no connection to run them.",
	    NULL, 0);
	pg_conns = cm_metric_new(CM_METRIC_GAUGE, "product_pg_connections",
	    "PostgreSQL connections by state (up: ready for queries).",
	    &conn_label, 1);
	pg_waits =
	    cm_metric_new(CM_METRIC_COUNTER, "product_pg_queue_waits_total",
	        "PostgreSQL queries that had to wait for a free connection.",
	        NULL, 0);
	pg_wait_seconds = cm_metric_new(CM_METRIC_HISTOGRAM,
	    "product_pg_queue_wait_seconds",
	    "Time a query waited for a free PostgreSQL connection.", NULL, 0);
	build_info = cm_metric_new(CM_METRIC_GAUGE, "product_build_info",
	    "Version and git revision of this build; always 1.", build_labels,
	    2);
	if (rpc_requests == NULL || rpc_duration == NULL ||
	    cache_results == NULL || flight_joins == NULL || leases == NULL ||
	    redis_duration == NULL || redis_errors == NULL ||
	    pg_duration == NULL || pg_errors == NULL || pg_conns == NULL ||
	    pg_waits == NULL || pg_wait_seconds == NULL ||
	    build_info == NULL ||
	    cm_metric_gauge_fn("product_rpc_in_flight",
	        "RPC requests being answered now.", in_flight_fn,
	        NULL) != CM_OK ||
	    cm_metric_gauge_fn("product_redis_circuit_state",
	        "Redis circuit breaker: 0 closed, 1 open (some worker), 2 "
	        "half-open (probing).",
	        breaker_fn, NULL) != CM_OK ||
	    cm_metric_gauge_fn("product_draining",
	        "1 once a stop signal arrived: new requests are refused.",
	        draining_fn, NULL) != CM_OK) {
		return CM_ENOMEM;
	}
	cm_metric_inc(build_info, 0);
	return CM_OK;
}

/* Records an answered request. A GET adds its cache outcome; a hit that
 * found a cached 404 counts as negative_hit. Also writes the PS-RPC debug
 * line. */
void
ps_metrics_rpc_done(
    const Catalog__Request *rq, const Catalog__Response *rsp, int64_t dur_us)
{
	int m = method_index(rq->method);
	int idx[2] = {m, status_index(rsp->status)};

	cm_metric_inc(rpc_requests, cm_metric_series(rpc_requests, idx));
	cm_metric_observe(rpc_duration, (size_t) m, (double) dur_us / 1e6);
	if (rq->method == CATALOG__METHOD__METHOD_GET_PRODUCT) {
		int c = -1;
		switch (rsp->cache) {
		case CATALOG__CACHE_OUTCOME__CACHE_HIT:
			c = rsp->status == CATALOG__STATUS__STATUS_NOT_FOUND
			    ? 3
			    : 0;
			break;
		case CATALOG__CACHE_OUTCOME__CACHE_MISS:
			c = 1;
			break;
		case CATALOG__CACHE_OUTCOME__CACHE_BYPASS:
			c = 2;
			break;
		case CATALOG__CACHE_OUTCOME__CACHE_STALE:
			c = 4;
			break;
		default:
			break;
		}
		if (c >= 0) {
			cm_metric_inc(cache_results, (size_t) c);
		}
	}
	if (cm_log_min <= CM_LOG_DEBUG) {
		static const char *const cache_names[] = {
		    "-", "HIT", "MISS", "BYPASS", "STALE"};
		char               tid[33];
		unsigned           ci = (unsigned) rsp->cache;
		const cm_log_field f[] = {
		    CM_LF_STR("method", method_values[m]),
		    CM_LF_STR("status", status_values[idx[1]]),
		    CM_LF_NUM("id", rq->id),
		    CM_LF_STR("cache", ci < 5 ? cache_names[ci] : "-"),
		    CM_LF_NUM("version",
		        rsp->product != NULL ? rsp->product->version : 0),
		    CM_LF_NUM("duration_ms", (double) dur_us / 1000.0),
		    CM_LF_STR("trace_id", ps_trace_id(rq, tid, sizeof(tid))),
		};
		cm_log_fields(CM_LOG_DEBUG, "PS-RPC", rq->request_id, f,
		    sizeof(f) / sizeof(f[0]));
	}
}

void
ps_metrics_flight_join(void)
{
	cm_metric_inc(flight_joins, 0);
}

void
ps_metrics_lease(int result)
{
	cm_metric_inc(leases, (size_t) result);
}

void
ps_metrics_redis_command(int64_t dur_us)
{
	cm_metric_observe(redis_duration, 0, (double) dur_us / 1e6);
}

void
ps_metrics_redis_error(int kind)
{
	cm_metric_inc(redis_errors, (size_t) kind);
}

void
ps_metrics_breaker_state(int worker, int state)
{
	if (worker >= 0 && worker < PS_MAX_THREADS) {
		atomic_store_explicit(
		    &breaker[worker], state, memory_order_relaxed);
	}
}

void
ps_metrics_pg_query(int query, int64_t dur_us)
{
	cm_metric_observe(pg_duration, (size_t) query, (double) dur_us / 1e6);
}

void
ps_metrics_pg_error(void)
{
	cm_metric_inc(pg_errors, 0);
}

/* Moves delta connections into state up (1) or down (0). */
void
ps_metrics_pg_conn(int up, int delta)
{
	cm_metric_add(pg_conns, up ? 0 : 1, delta);
}

/* 1 when at least one PostgreSQL connection of the process is up. Any
 * thread. */
int
ps_metrics_pg_up(void)
{
	return cm_metric_value(pg_conns, 0) > 0;
}

void
ps_metrics_pg_queue_wait(void)
{
	cm_metric_inc(pg_waits, 0);
}

void
ps_metrics_pg_queue_waited(int64_t dur_us)
{
	cm_metric_observe(pg_wait_seconds, 0, (double) dur_us / 1e6);
}

/* Writes the trace id of rq's traceparent into buf (33 bytes at least) and
 * returns it, or returns "-" when the request has no valid traceparent. */
const char *
ps_trace_id(const Catalog__Request *rq, char *buf, size_t len)
{
	cm_trace t;

	if (rq == NULL || rq->traceparent == NULL ||
	    rq->traceparent[0] == '\0' ||
	    cm_trace_parse(rq->traceparent, &t) != CM_OK) {
		return "-";
	}
	snprintf(buf, len, "%s", t.trace_id);
	return buf;
}

/* Writes a log line about request rq: its request id, the message and its
 * trace id. Use PS_RLOG, which checks the level first. */
void
ps_log_req(cm_log_level lvl, const char *id, const Catalog__Request *rq,
    const char *fmt, ...)
{
	char    msg[1024], tid[33];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	const cm_log_field f[] = {
	    CM_LF_STR("msg", msg),
	    CM_LF_STR("trace_id", ps_trace_id(rq, tid, sizeof(tid))),
	};
	cm_log_fields(lvl, id, rq != NULL ? rq->request_id : NULL, f, 2);
}
