/* gw_metrics.c - the gateway's Prometheus families and the calls that
 * record into them.
 *
 * Every family is registered once by gw_metrics_init(), before any loop
 * thread starts; each loop thread then records into its own shard
 * (cm_metrics_thread_set), so recording takes no lock. Label values come
 * from the fixed lists below - route templates, never ids or raw paths -
 * so the number of series is bounded whatever clients send.
 */
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cm.h"
#include "cm_metrics.h"
#include "gw.h"

#ifndef CM_VERSION
#define CM_VERSION "unknown"
#endif
#ifndef CM_GIT_REV
#define CM_GIT_REV "unknown"
#endif

/* The last value of each list is where unknown values go. */
static const char *const route_values[] = {
    "/healthz", "/readyz", "/products", "/products/{id}", "other", NULL};
static const char *const method_values[] = {
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other", NULL};
static const char *const code_values[] = {"200", "201", "204", "304", "400",
    "401", "404", "405", "408", "409", "412", "413", "414", "415", "417",
    "422", "429", "431", "500", "501", "502", "503", "504", "505", "other",
    NULL};
static const char *const cache_values[] = {
    "hit", "miss", "bypass", "stale", NULL};
static const char *const reason_values[] = {"overload", "draining", NULL};
/* gw_guard_err_reason() values */
static const char *const guard_values[] = {"uri_too_long", "headers_too_large",
    "body_too_large", "bad_request", "bad_framing", "method", "version",
    "expectation", "header_timeout", "body_timeout", "other", NULL};
static const char *const auth_reason_values[] = {"missing", "invalid", NULL};
static const char *const reload_values[] = {"ok", "error", NULL};
static const char *const rl_result_values[] = {"allowed", "limited", NULL};
static const char *const rl_source_values[] = {"redis", "local", NULL};
static const char *const version_values[] = {CM_VERSION, NULL};
static const char *const revision_values[] = {CM_GIT_REV, NULL};

static const cm_label route_label = {"route", route_values};
static const cm_label request_labels[] = {
    {"route", route_values},
    {"method", method_values},
    {"code", code_values},
};
static const cm_label cache_label = {"result", cache_values};
static const cm_label reason_label = {"reason", reason_values};
static const cm_label guard_label = {"reason", guard_values};
static const cm_label auth_reason_label = {"reason", auth_reason_values};
static const cm_label reload_label = {"result", reload_values};
static const cm_label rl_labels[] = {
    {"result", rl_result_values},
    {"source", rl_source_values},
};
static const cm_label build_labels[] = {
    {"version", version_values},
    {"revision", revision_values},
};

static cm_metric *requests;
static cm_metric *duration;
static cm_metric *in_flight;
static cm_metric *cache_results;
static cm_metric *rejected;
static cm_metric *http_rejected;
static cm_metric *connections;
static cm_metric *build_info;
static cm_metric *auth_failures;
static cm_metric *auth_reloads;
static cm_metric *auth_keys;
static cm_metric *rl_decisions;
static int64_t    auth_keys_now; /* the gauge's value (main thread) */
static double     start_time_s;

/* ---- process gauges, read at scrape time on the scraping thread ---- */

/* Field i (0: size, 1: resident) of /proc/self/statm, in bytes. */
static double
statm_bytes(void *arg)
{
	int   field = *(const int *) arg;
	long  v[2] = {0, 0};
	FILE *f = fopen("/proc/self/statm", "r");

	if (f == NULL) {
		return 0;
	}
	if (fscanf(f, "%ld %ld", &v[0], &v[1]) != 2) {
		v[0] = v[1] = 0;
	}
	fclose(f);
	return (double) v[field] * (double) sysconf(_SC_PAGESIZE);
}

static double
open_fds(void *arg)
{
	DIR   *d = opendir("/proc/self/fd");
	double n = 0;
	(void) arg;

	if (d == NULL) {
		return 0;
	}
	while (readdir(d) != NULL) {
		n++;
	}
	closedir(d);
	return n > 3 ? n - 3 : 0; /* ".", ".." and the DIR's own fd */
}

static double
start_time(void *arg)
{
	(void) arg;
	return start_time_s;
}

int
gw_metrics_init(void)
{
	static const int vsize = 0, rss = 1;
	struct timespec  ts;

	requests =
	    cm_metric_new(CM_METRIC_COUNTER, "gateway_http_requests_total",
	        "HTTP requests answered, by route template, method and status "
	        "code.",
	        request_labels, 3);
	duration = cm_metric_new(CM_METRIC_HISTOGRAM,
	    "gateway_http_request_duration_seconds",
	    "Time from a request's arrival to its reply, by route template.",
	    &route_label, 1);
	in_flight =
	    cm_metric_new(CM_METRIC_GAUGE, "gateway_http_requests_in_flight",
	        "HTTP requests received and not yet answered.", NULL, 0);
	cache_results =
	    cm_metric_new(CM_METRIC_COUNTER, "gateway_cache_results_total",
	        "Cache outcomes the replicas reported for the requests they "
	        "served.",
	        &cache_label, 1);
	rejected = cm_metric_new(CM_METRIC_COUNTER, "gateway_rejected_total",
	    "Requests refused with 503 before any work: over "
	    "GATEWAY_MAX_INFLIGHT, or after the listeners closed for a drain.",
	    &reason_label, 1);
	http_rejected =
	    cm_metric_new(CM_METRIC_COUNTER, "gateway_http_rejected_total",
	        "Requests the connection guard refused before evhttp parsed "
	        "them (size limits, strict framing, timeouts), by reason.",
	        &guard_label, 1);
	connections =
	    cm_metric_new(CM_METRIC_GAUGE, "gateway_http_connections",
	        "Client connections open (capped by GATEWAY_MAX_CONNECTIONS).",
	        NULL, 0);
	build_info = cm_metric_new(CM_METRIC_GAUGE, "gateway_build_info",
	    "Always 1; the labels give the gateway's version and git "
	    "revision.",
	    build_labels, 2);
	auth_failures =
	    cm_metric_new(CM_METRIC_COUNTER, "gateway_auth_failures_total",
	        "Requests answered 401: no API key where one is needed "
	        "(missing), or a key that is not valid (invalid).",
	        &auth_reason_label, 1);
	auth_reloads =
	    cm_metric_new(CM_METRIC_COUNTER, "gateway_auth_reloads_total",
	        "Reloads of GATEWAY_API_KEYS_FILE on SIGHUP; an error keeps "
	        "the keys loaded before.",
	        &reload_label, 1);
	auth_keys = cm_metric_new(CM_METRIC_GAUGE, "gateway_auth_keys",
	    "API keys (SHA-256 digests) in the set in use.", NULL, 0);
	rl_decisions = cm_metric_new(CM_METRIC_COUNTER,
	    "gateway_ratelimit_decisions_total",
	    "Rate limit decisions, by result and by who decided: the shared "
	    "bucket in Redis, or the loop's local bucket (Redis unavailable).",
	    rl_labels, 2);
	if (requests == NULL || duration == NULL || in_flight == NULL ||
	    cache_results == NULL || rejected == NULL ||
	    http_rejected == NULL || connections == NULL ||
	    build_info == NULL || auth_failures == NULL ||
	    auth_reloads == NULL || auth_keys == NULL ||
	    rl_decisions == NULL) {
		return CM_ENOMEM;
	}
	cm_metric_inc(build_info, 0);
	clock_gettime(CLOCK_REALTIME, &ts);
	start_time_s = (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
	if (cm_metric_gauge_fn("process_resident_memory_bytes",
	        "Resident memory size in bytes.", statm_bytes,
	        (void *) &rss) != CM_OK ||
	    cm_metric_gauge_fn("process_virtual_memory_bytes",
	        "Virtual memory size in bytes.", statm_bytes,
	        (void *) &vsize) != CM_OK ||
	    cm_metric_gauge_fn("process_open_fds",
	        "Number of open file descriptors.", open_fds, NULL) != CM_OK ||
	    cm_metric_gauge_fn("process_start_time_seconds",
	        "Start time of the process since the Unix epoch in seconds.",
	        start_time, NULL) != CM_OK) {
		return CM_ENOMEM;
	}
	return CM_OK;
}

const char *
gw_metrics_route(gw_route_id id)
{
	switch (id) {
	case GW_ROUTE_HEALTHZ:
		return "/healthz";
	case GW_ROUTE_READYZ:
		return "/readyz";
	case GW_ROUTE_PRODUCT_LIST:
	case GW_ROUTE_PRODUCT_CREATE:
		return "/products";
	case GW_ROUTE_PRODUCT_GET:
	case GW_ROUTE_PRODUCT_REPLACE:
	case GW_ROUTE_PRODUCT_PATCH:
	case GW_ROUTE_PRODUCT_DELETE:
		return "/products/{id}";
	default:
		return "other";
	}
}

void
gw_metrics_request_start(void)
{
	cm_metric_inc(in_flight, 0);
}

void
gw_metrics_request_end(
    gw_route_id route, unsigned method, int status, double seconds)
{
	char code[16];
	int  idx[3];

	if (requests == NULL) {
		return; /* not registered (unit tests of other parts) */
	}
	snprintf(code, sizeof(code), "%d", status);
	idx[0] = cm_label_index(&request_labels[0], gw_metrics_route(route));
	idx[1] = cm_label_index(&request_labels[1], gw_method_name(method));
	idx[2] = cm_label_index(&request_labels[2], code);
	cm_metric_dec(in_flight, 0);
	cm_metric_inc(requests, cm_metric_series(requests, idx));
	cm_metric_observe(duration, (size_t) idx[0], seconds);
}

void
gw_metrics_cache(Catalog__CacheOutcome c)
{
	switch (c) {
	case CATALOG__CACHE_OUTCOME__CACHE_HIT:
		cm_metric_inc(cache_results, 0);
		break;
	case CATALOG__CACHE_OUTCOME__CACHE_MISS:
		cm_metric_inc(cache_results, 1);
		break;
	case CATALOG__CACHE_OUTCOME__CACHE_BYPASS:
		cm_metric_inc(cache_results, 2);
		break;
	case CATALOG__CACHE_OUTCOME__CACHE_STALE:
		cm_metric_inc(cache_results, 3);
		break;
	default:
		break; /* the request did not use the cache */
	}
}

void
gw_metrics_rejected(gw_reject why)
{
	cm_metric_inc(rejected, why == GW_REJECT_DRAINING ? 1 : 0);
}

void
gw_metrics_http_rejected(const char *reason)
{
	if (http_rejected == NULL) {
		return; /* not registered (unit tests of other parts) */
	}
	cm_metric_inc(
	    http_rejected, (size_t) cm_label_index(&guard_label, reason));
}

void
gw_metrics_connections(int delta)
{
	if (connections == NULL) {
		return;
	}
	cm_metric_add(connections, 0, delta);
}

void
gw_metrics_auth_failure(gw_auth_result why)
{
	if (auth_failures != NULL) {
		cm_metric_inc(auth_failures, why == GW_AUTH_INVALID ? 1 : 0);
	}
}

void
gw_metrics_auth_reload(int ok)
{
	if (auth_reloads != NULL) {
		cm_metric_inc(auth_reloads, ok ? 0 : 1);
	}
}

void
gw_metrics_auth_keys(size_t keys)
{
	/* A gauge is a sum of adds; only the main thread sets this one. */
	if (auth_keys != NULL) {
		cm_metric_add(auth_keys, 0, (int64_t) keys - auth_keys_now);
		auth_keys_now = (int64_t) keys;
	}
}

void
gw_metrics_ratelimit(int allowed, gw_rl_source source)
{
	int idx[2] = {allowed ? 0 : 1, source == GW_RL_REDIS ? 0 : 1};

	if (rl_decisions != NULL) {
		cm_metric_inc(
		    rl_decisions, cm_metric_series(rl_decisions, idx));
	}
}

int64_t
gw_metrics_in_flight(void)
{
	return cm_metric_value(in_flight, 0);
}
