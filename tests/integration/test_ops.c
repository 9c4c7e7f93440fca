/* test_ops.c - operable in production: metrics, health, readiness, the
 * JSON access log, trace context and request ids, end to end.
 *
 * Group setup seeds 45 products, empties Redis and starts two replicas
 * (LOG_FORMAT=json, LOG_LEVEL=debug for their per-request PS-RPC lines) and
 * one gateway (LOG_FORMAT=json), each with an admin listener on a known
 * free loopback port. Teardown stops them by pid. `promtool check metrics`
 * runs when promtool (Debian package prometheus) is installed; without it
 * that test is skipped with the reason printed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "it.h"
#include "it_check.h"
#include "it_fault.h"

#define NPRODUCTS 45
#define NREP      2

static it_proc rep[NREP];
static int     rep_admin[NREP], rep_port[NREP];
static it_proc gw;
static int     gw_port, gw_admin;
static int     pg_stopped;
static char    ups[NREP * 40];
static char    gw_admin_env[64];

static const char *const rep_env[] = {
    "LOG_FORMAT=json", "LOG_LEVEL=debug", NULL};
static const char *const gw_env[] = {gw_admin_env, "LOG_FORMAT=json", NULL};

/* Starts replica i on its ports (does not wait). Returns 0 or -1. */
static int
spawn_replica(int i)
{
	char url[64], name[32];

	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", rep_port[i]);
	snprintf(name, sizeof(name), "ops-replica-%d", i + 1);
	return it_replica_spawn(&rep[i], name, url, it_env("IT_REDIS_URL"),
	    NULL, rep_admin[i], NULL, rep_env);
}

static int
group_setup(void **state)
{
	int    rp = it_redis_port();
	size_t off = 0;

	(void) state;
	if (rp < 0 || it_seed_products(NPRODUCTS) != 0 ||
	    it_redis_flushall(rp) != 0) {
		return -1;
	}
	for (int i = 0; i < NREP; i++) {
		if ((rep_port[i] = it_free_port()) < 0 ||
		    (rep_admin[i] = it_free_port()) < 0 ||
		    spawn_replica(i) != 0) {
			return -1;
		}
		off += (size_t) snprintf(ups + off, sizeof(ups) - off,
		    "%stcp://127.0.0.1:%d", i ? "," : "", rep_port[i]);
	}
	for (int i = 0; i < NREP; i++) {
		if (it_wait_port(rep_port[i], 10000) != 0 ||
		    it_wait_port(rep_admin[i], 10000) != 0) {
			it_proc_dump_log(&rep[i], 30);
			return -1;
		}
	}
	if ((gw_admin = it_free_port()) < 0) {
		return -1;
	}
	snprintf(gw_admin_env, sizeof(gw_admin_env),
	    "GATEWAY_ADMIN_LISTEN=127.0.0.1:%d", gw_admin);
	if (it_gateway_start(&gw, &gw_port, ups, gw_env) != 0) {
		return -1;
	}
	return it_wait_port(gw_admin, 5000);
}

static int
group_teardown(void **state)
{
	int reports = 0;

	(void) state;
	if (pg_stopped) {
		it_pg_start();
		pg_stopped = 0;
	}
	it_proc_stop(&gw, SIGTERM, 5000);
	reports += it_proc_sanitizer_reports(&gw);
	for (int i = 0; i < NREP; i++) {
		it_proc_stop(&rep[i], SIGTERM, 5000);
		reports += it_proc_sanitizer_reports(&rep[i]);
	}
	return reports ? -1 : 0;
}

/* ---- helpers ------------------------------------------------------------ */

/* GET path on port with headers; returns the status (-1: no answer). */
static int
get_status(int port, const char *path, const char *const hd[])
{
	it_http_resp r;
	int          st = -1;
	if (it_http(&r, port, "GET", path, hd, NULL, 0, 5000) == 0) {
		st = r.status;
		it_http_resp_free(&r);
	}
	return st;
}

/* A request id unique to this run: "<prefix>-<pid>-<n>". */
static void
new_rid(char *buf, size_t len, const char *prefix)
{
	static int n;
	snprintf(buf, len, "%s-%d-%d", prefix, (int) getpid(), ++n);
}

/* Returns the first line of the log at path that holds every string of
 * needles (NULL-terminated) parsed as JSON (json_object_put it), waiting
 * up to timeout_ms for it to be written; NULL when none. */
static json_object *
find_log_line(const char *path, const char *const needles[], int timeout_ms)
{
	int64_t end = it_now_ms() + timeout_ms;

	for (;;) {
		FILE  *f = fopen(path, "r");
		char  *line = NULL;
		size_t cap = 0;

		while (f != NULL && getline(&line, &cap, f) > 0) {
			int all = 1;
			for (int i = 0; needles[i] != NULL && all; i++) {
				all = strstr(line, needles[i]) != NULL;
			}
			if (all) {
				json_object *o = json_tokener_parse(line);
				if (o == NULL) {
					fail_msg(
					    "log line is not JSON: %s", line);
				}
				free(line);
				fclose(f);
				return o;
			}
		}
		free(line);
		if (f != NULL) {
			fclose(f);
		}
		if (it_now_ms() >= end) {
			return NULL;
		}
		it_sleep_ms(50);
	}
}

/* The GW-ACCESS line of request id rid (fails the test when missing). */
static json_object *
access_line(const char *rid)
{
	char         want[160];
	const char  *needles[] = {"\"GW-ACCESS\"", want, NULL};
	json_object *o;

	snprintf(want, sizeof(want), "\"request_id\":\"%s\"", rid);
	if ((o = find_log_line(gw.log, needles, 3000)) == NULL) {
		it_proc_dump_log(&gw, 10);
		fail_msg(
		    "no GW-ACCESS line with request_id %s in %s", rid, gw.log);
	}
	return o;
}

/* Returns 1 when s is n lower-case hex digits, not all zero. */
static int
is_hex_id(const char *s, size_t n)
{
	int nonzero = 0;
	if (s == NULL || strlen(s) != n) {
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		if (!isxdigit((unsigned char) s[i]) ||
		    isupper((unsigned char) s[i])) {
			return 0;
		}
		nonzero |= s[i] != '0';
	}
	return nonzero;
}

/* Checks a traceparent header value "00-<32 hex>-<16 hex>-<2 hex>" and
 * copies its trace id to trace (33 bytes). */
static void
expect_traceparent(const char *tp, char *trace)
{
	char span[17];

	if (tp == NULL || strlen(tp) != 55 || strncmp(tp, "00-", 3) != 0 ||
	    tp[35] != '-' || tp[52] != '-') {
		fail_msg(
		    "bad traceparent in the answer: %s", tp ? tp : "(none)");
	}
	memcpy(trace, tp + 3, 32);
	trace[32] = '\0';
	memcpy(span, tp + 36, 16);
	span[16] = '\0';
	if (!is_hex_id(trace, 32) || !is_hex_id(span, 16)) {
		fail_msg("traceparent ids are not lower-case hex: %s", tp);
	}
}

/* Request ids the gateway keeps: 1..64 of [A-Za-z0-9._:-]. */
static int
reqid_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n < 1 || n > 64) {
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		if (!isalnum((unsigned char) s[i]) && !strchr("._:-", s[i])) {
			return 0;
		}
	}
	return 1;
}

/* Sum of a metric over both replicas' admin ports. */
static double
rep_sum(const char *name, const char *const *filters)
{
	double s = 0;
	for (int i = 0; i < NREP; i++) {
		double v = it_scrape_sum(rep_admin[i], name, filters);
		assert_true(v >= 0);
		s += v;
	}
	return s;
}

/* ---- health and readiness ---------------------------------------------- */

static void
test_ops_health_and_ready(void **state)
{
	(void) state;
	assert_int_equal(get_status(gw_admin, "/healthz", NULL), 200);
	assert_int_equal(get_status(gw_admin, "/readyz", NULL), 200);
	assert_int_equal(get_status(gw_port, "/healthz", NULL), 200);
	assert_int_equal(get_status(gw_port, "/readyz", NULL), 200);
	for (int i = 0; i < NREP; i++) {
		assert_int_equal(
		    get_status(rep_admin[i], "/healthz", NULL), 200);
		/* A replica is ready once a PostgreSQL connection is up,
		 * which may trail its first answers a little at start. */
		int     st = 0;
		int64_t end = it_now_ms() + 10000;
		while (
		    (st = get_status(rep_admin[i], "/readyz", NULL)) != 200 &&
		    it_now_ms() < end) {
			it_sleep_ms(100);
		}
		assert_int_equal(st, 200);
		assert_int_equal(get_status(rep_admin[i], "/nope", NULL), 404);
	}
}

/* ---- metrics ------------------------------------------------------------ */

/* Scrapes port, checks the exposition content type, saves the text to
 * <tmpdir>/<file> and returns it (free it). */
static char *
scrape_to_file(int port, const char *file, char *path, size_t plen)
{
	it_http_resp r;
	const char  *ct;
	char        *text;
	FILE        *f;

	it_must_get(&r, port, "/metrics", NULL);
	it_expect_status(&r, 200);
	ct = it_http_header(&r, "Content-Type");
	if (ct == NULL || strncmp(ct, "text/plain", 10) != 0 ||
	    strstr(ct, "version=0.0.4") == NULL) {
		fail_msg("/metrics on %d: Content-Type %s, want text/plain; "
		         "version=0.0.4",
		    port, ct ? ct : "(none)");
	}
	text = r.body;
	r.body = NULL;
	it_http_resp_free(&r);
	snprintf(path, plen, "%s/%s", it_tmpdir(), file);
	assert_non_null(f = fopen(path, "w"));
	fputs(text, f);
	fclose(f);
	return text;
}

/* Fails unless text declares family name with type. */
static void
expect_family(const char *text, const char *name, const char *type)
{
	char want[160];
	snprintf(want, sizeof(want), "# TYPE %s %s\n", name, type);
	if (strstr(text, want) == NULL) {
		fail_msg("/metrics lacks \"# TYPE %s %s\"", name, type);
	}
}

static void
test_ops_metrics_exposition(void **state)
{
	static const char *const gw_fams[][2] = {
	    {"gateway_http_requests_total", "counter"},
	    {"gateway_http_request_duration_seconds", "histogram"},
	    {"gateway_http_requests_in_flight", "gauge"},
	    {"gateway_cache_results_total", "counter"},
	    {"gateway_rejected_total", "counter"},
	    {"gateway_build_info", "gauge"},
	    {"process_resident_memory_bytes", "gauge"},
	    {"process_virtual_memory_bytes", "gauge"},
	    {"process_open_fds", "gauge"},
	    {"process_start_time_seconds", "gauge"},
	};
	static const char *const rep_fams[][2] = {
	    {"product_rpc_requests_total", "counter"},
	    {"product_rpc_duration_seconds", "histogram"},
	    {"product_cache_results_total", "counter"},
	    {"product_build_info", "gauge"},
	};
	char  gpath[600], rpath[600], out[8192];
	char *gtext, *rtext;
	int   rv;

	(void) state;
	/* Some traffic first, so that labelled series exist. */
	assert_int_equal(get_status(gw_port, "/products/1", NULL), 200);
	assert_int_equal(get_status(gw_port, "/products/1", NULL), 200);
	assert_int_equal(get_status(gw_port, "/products/99999", NULL), 404);

	gtext =
	    scrape_to_file(gw_admin, "ops-gateway.prom", gpath, sizeof(gpath));
	rtext = scrape_to_file(
	    rep_admin[0], "ops-replica.prom", rpath, sizeof(rpath));
	for (size_t i = 0; i < sizeof(gw_fams) / sizeof(gw_fams[0]); i++) {
		expect_family(gtext, gw_fams[i][0], gw_fams[i][1]);
	}
	for (size_t i = 0; i < sizeof(rep_fams) / sizeof(rep_fams[0]); i++) {
		expect_family(rtext, rep_fams[i][0], rep_fams[i][1]);
	}
	/* Labels never carry ids. */
	if (strstr(gtext, "/products/1\"") != NULL ||
	    strstr(gtext, "99999") != NULL) {
		fail_msg("a gateway metric label carries a product id");
	}
	free(gtext);
	free(rtext);

	if (access("/usr/bin/promtool", X_OK) != 0 &&
	    it_sh("command -v promtool >/dev/null 2>&1") != 0) {
		printf("  ops: promtool check SKIPPED: promtool is not "
		       "installed (Debian package prometheus)\n");
		skip();
	}
	rv = it_sh_out(
	    out, sizeof(out), "promtool check metrics < '%s'", gpath);
	printf(
	    "  ops: promtool check metrics (gateway): exit %d %s\n", rv, out);
	if (rv != 0) {
		fail_msg("promtool check metrics failed on the gateway's "
		         "/metrics (%s): %s",
		    gpath, out);
	}
	rv = it_sh_out(
	    out, sizeof(out), "promtool check metrics < '%s'", rpath);
	printf(
	    "  ops: promtool check metrics (replica): exit %d %s\n", rv, out);
	if (rv != 0) {
		fail_msg("promtool check metrics failed on the replica's "
		         "/metrics (%s): %s",
		    rpath, out);
	}
}

/* Counters a read of one product moves. */
typedef struct snap {
	double gw_200, gw_404, gw_hit, gw_miss;
	double ps_ok, ps_nf, ps_hit, ps_miss;
} snap;

static void
take_snap(snap *s)
{
	static const char *const g200[] = {"route=\"/products/{id}\"",
	    "method=\"GET\"", "code=\"200\"", NULL};
	static const char *const g404[] = {"route=\"/products/{id}\"",
	    "method=\"GET\"", "code=\"404\"", NULL};
	static const char *const hit[] = {"result=\"hit\"", NULL};
	static const char *const miss[] = {"result=\"miss\"", NULL};
	static const char *const pok[] = {
	    "method=\"get_product\"", "status=\"ok\"", NULL};
	static const char *const pnf[] = {
	    "method=\"get_product\"", "status=\"not_found\"", NULL};
	char *g = it_scrape(gw_admin);

	assert_non_null(g);
	s->gw_200 =
	    it_metric_sum(g, "gateway_http_requests_total", g200, NULL);
	s->gw_404 =
	    it_metric_sum(g, "gateway_http_requests_total", g404, NULL);
	s->gw_hit = it_metric_sum(g, "gateway_cache_results_total", hit, NULL);
	s->gw_miss =
	    it_metric_sum(g, "gateway_cache_results_total", miss, NULL);
	free(g);
	s->ps_ok = rep_sum("product_rpc_requests_total", pok);
	s->ps_nf = rep_sum("product_rpc_requests_total", pnf);
	s->ps_hit = rep_sum("product_cache_results_total", hit);
	s->ps_miss = rep_sum("product_cache_results_total", miss);
}

static void
test_ops_counters_move(void **state)
{
	snap    a, b;
	int64_t end;
	int     ok = 0;

	(void) state;
	assert_int_equal(it_redis_del(it_redis_port(), "product:9"), 0);
	take_snap(&a);
	assert_int_equal(get_status(gw_port, "/products/9", NULL), 200);
	it_sleep_ms(300); /* let the fill land: the next reads are hits */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(
		    get_status(gw_port, "/products/9", NULL), 200);
	}
	for (int i = 0; i < 2; i++) {
		assert_int_equal(
		    get_status(gw_port, "/products/888888", NULL), 404);
	}
	/* Counters are recorded as the reply goes out: allow a moment. */
	end = it_now_ms() + 3000;
	while (!ok && it_now_ms() < end) {
		take_snap(&b);
		ok = b.gw_200 - a.gw_200 == 4 && b.gw_404 - a.gw_404 == 2 &&
		    b.gw_hit - a.gw_hit >= 2 && b.gw_miss - a.gw_miss >= 1 &&
		    b.ps_ok - a.ps_ok == 4 && b.ps_nf - a.ps_nf == 2 &&
		    b.ps_hit - a.ps_hit >= 2 && b.ps_miss - a.ps_miss >= 1;
		if (!ok) {
			it_sleep_ms(100);
		}
	}
	printf("  ops: deltas gateway 200=%.0f 404=%.0f hit=%.0f miss=%.0f; "
	       "replicas ok=%.0f not_found=%.0f hit=%.0f miss=%.0f\n",
	    b.gw_200 - a.gw_200, b.gw_404 - a.gw_404, b.gw_hit - a.gw_hit,
	    b.gw_miss - a.gw_miss, b.ps_ok - a.ps_ok, b.ps_nf - a.ps_nf,
	    b.ps_hit - a.ps_hit, b.ps_miss - a.ps_miss);
	if (!ok) {
		fail_msg("counters did not move as expected for 4 GETs (200) "
		         "and 2 GETs (404); see the deltas above");
	}
}

/* ---- the access log -------------------------------------------------------
 */

static void
test_ops_access_log_json(void **state)
{
	char         rid[64], rh[96];
	const char  *hd[] = {rh, NULL};
	it_http_resp r;
	json_object *o, *v;
	const char  *s;

	(void) state;
	new_rid(rid, sizeof(rid), "ops-access");
	snprintf(rh, sizeof(rh), "X-Request-Id: %s", rid);
	it_must_get(&r, gw_port, "/products/2", hd);
	it_expect_status(&r, 200);
	it_expect_header(&r, "X-Request-Id", rid);

	o = access_line(rid);
	assert_string_equal(it_json_str(o, "event"), "GW-ACCESS");
	assert_string_equal(it_json_str(o, "process"), "gateway");
	assert_string_equal(it_json_str(o, "level"), "info");
	assert_non_null(it_json_str(o, "time"));
	assert_string_equal(it_json_str(o, "request_id"), rid);
	assert_true(is_hex_id(it_json_str(o, "trace_id"), 32));
	assert_string_equal(it_json_str(o, "method"), "GET");
	assert_string_equal(it_json_str(o, "route"), "/products/{id}");
	assert_int_equal(it_json_int(o, "status"), 200);
	assert_true(json_object_object_get_ex(o, "duration_ms", &v));
	assert_true(json_object_is_type(v, json_type_double) ||
	    json_object_is_type(v, json_type_int));
	assert_true(json_object_get_double(v) >= 0 &&
	    json_object_get_double(v) < 5000);
	s = it_json_str(o, "cache");
	assert_true(strcmp(s, "HIT") == 0 || strcmp(s, "MISS") == 0);
	s = it_json_str(o, "replica");
	assert_true(strncmp(s, "ops-replica-", 12) == 0);
	assert_int_equal(it_json_int(o, "retries"), 0);
	assert_int_equal(it_json_int(o, "bytes"), (int64_t) r.body_len);
	/* The trace id logged is the one the client got back. */
	{
		char trace[33];
		expect_traceparent(it_http_header(&r, "traceparent"), trace);
		assert_string_equal(it_json_str(o, "trace_id"), trace);
	}
	json_object_put(o);
	it_http_resp_free(&r);
}

/* ---- trace context ---------------------------------------------------- */

static void
test_ops_traceparent_propagates(void **state)
{
	char rid[64], rh[96], tp[64], th[96], trace[40], got[33], want[160],
	    tw[80];
	const char  *hd[] = {rh, th, NULL};
	it_http_resp r;
	json_object *o = NULL;

	(void) state;
	new_rid(rid, sizeof(rid), "ops-trace");
	snprintf(trace, sizeof(trace), "4bf92f3577b34da6a3ce9%05x%06x",
	    (unsigned) getpid() & 0xfffff, (unsigned) it_now_ms() & 0xffffff);
	snprintf(tp, sizeof(tp), "00-%s-00f067aa0ba902b7-01", trace);
	snprintf(rh, sizeof(rh), "X-Request-Id: %s", rid);
	snprintf(th, sizeof(th), "traceparent: %s", tp);
	it_must_get(&r, gw_port, "/products/4", hd);
	it_expect_status(&r, 200);
	expect_traceparent(it_http_header(&r, "traceparent"), got);
	assert_string_equal(got, trace);
	if (strstr(it_http_header(&r, "traceparent"), "00f067aa0ba902b7")) {
		fail_msg(
		    "the gateway returned the client's span id as its own");
	}
	it_http_resp_free(&r);

	o = access_line(rid);
	assert_string_equal(it_json_str(o, "trace_id"), trace);
	json_object_put(o);

	/* The replica that answered logs the same trace id (PS-RPC, debug). */
	snprintf(want, sizeof(want), "\"request_id\":\"%s\"", rid);
	snprintf(tw, sizeof(tw), "\"trace_id\":\"%s\"", trace);
	{
		const char *needles[] = {want, "\"PS-RPC\"", NULL};
		int         found = 0;
		for (int i = 0; i < NREP && !found; i++) {
			o = find_log_line(
			    rep[i].log, needles, i ? 3000 : 1500);
			if (o != NULL) {
				found = 1;
				assert_string_equal(
				    it_json_str(o, "trace_id"), trace);
				json_object_put(o);
			}
		}
		if (!found) {
			fail_msg("no replica logged a PS-RPC line for request "
			         "%s (trace %s)",
			    rid, trace);
		}
	}
}

static void
test_ops_traceparent_invalid_replaced(void **state)
{
	static const char *const bad[] = {
	    "garbage",
	    /* all-zero trace id */
	    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
	    /* all-zero span id */
	    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
	    /* upper-case hex */
	    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
	    /* version ff is forbidden */
	    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	    /* version 00 with trailing data */
	    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
	    NULL,
	};

	(void) state;
	for (int i = 0; bad[i] != NULL; i++) {
		char         rid[64], rh[96], th[160], got[33];
		const char  *hd[] = {rh, th, NULL};
		it_http_resp r;
		json_object *o;

		new_rid(rid, sizeof(rid), "ops-badtrace");
		snprintf(rh, sizeof(rh), "X-Request-Id: %s", rid);
		snprintf(th, sizeof(th), "traceparent: %s", bad[i]);
		it_must_get(&r, gw_port, "/products/5", hd);
		it_expect_status(&r, 200);
		expect_traceparent(it_http_header(&r, "traceparent"), got);
		if (strcasestr(bad[i], got) != NULL) {
			fail_msg(
			    "invalid traceparent %s was continued (answer "
			    "%s)",
			    bad[i], it_http_header(&r, "traceparent"));
		}
		it_http_resp_free(&r);
		o = access_line(rid);
		assert_string_equal(it_json_str(o, "trace_id"), got);
		json_object_put(o);
	}
	/* No traceparent at all: a fresh trace as well. */
	{
		it_http_resp r;
		char         got[33];
		it_must_get(&r, gw_port, "/products/5", NULL);
		expect_traceparent(it_http_header(&r, "traceparent"), got);
		it_http_resp_free(&r);
	}
}

/* ---- request ids -----------------------------------------------------------
 */

static void
test_ops_request_id_replaced(void **state)
{
	char long65[80], long64[80];
	/* Raw header texts: an encoded CRLF, a space, a quote and a brace,
	 * 65 characters. A folded line (obs-fold) is refused outright. */
	const char *fold[] = {
	    "X-Request-Id: ops-fold\r\n injected-line", NULL};
	const char *bad[] = {
	    "X-Request-Id: ops%0D%0Ainjected",
	    "X-Request-Id: ops id with spaces",
	    "X-Request-Id: ops\"},\"event\":\"FORGED",
	    long65,
	    NULL,
	};
	it_http_resp r;
	FILE        *f;
	char        *line = NULL;
	size_t       cap = 0;
	int          nline = 0;

	(void) state;
	memset(long65, 0, sizeof(long65));
	snprintf(long65, sizeof(long65), "X-Request-Id: ");
	memset(long65 + strlen(long65), 'a', 65);
	snprintf(long64, sizeof(long64), "X-Request-Id: ");
	memset(long64 + strlen(long64), 'b', 64);
	long64[14 + 64] = '\0';

	it_must_get(&r, gw_port, "/products/6", fold);
	it_expect_problem(&r, 400, "bad-request");
	it_http_resp_free(&r);
	for (int i = 0; bad[i] != NULL; i++) {
		const char  *hd[] = {bad[i], NULL};
		const char  *got;
		json_object *o;

		it_must_get(&r, gw_port, "/products/6", hd);
		it_expect_status(&r, 200);
		got = it_http_header(&r, "X-Request-Id");
		if (!reqid_ok(got) || strstr(bad[i], got) != NULL) {
			fail_msg(
			    "request id header \"%s\" came back as \"%s\", "
			    "want a fresh id",
			    bad[i], got ? got : "(none)");
		}
		o = access_line(got);
		json_object_put(o);
		it_http_resp_free(&r);
	}
	/* 64 characters is the limit and is kept. */
	{
		const char *hd[] = {long64, NULL};
		it_must_get(&r, gw_port, "/products/6", hd);
		it_expect_header(&r, "X-Request-Id", long64 + 14);
		it_http_resp_free(&r);
	}
	/* Nothing the clients sent split or forged a log line: every line of
	 * the gateway's log is one JSON object, and no FORGED event. */
	assert_non_null(f = fopen(gw.log, "r"));
	while (getline(&line, &cap, f) > 0) {
		json_object *o = json_tokener_parse(line);
		nline++;
		if (o == NULL) {
			fail_msg("gateway log line %d is not JSON: %s", nline,
			    line);
		}
		if (strstr(line, "injected-line") &&
		    strstr(line, "\"request_id\":\"ops")) {
			fail_msg(
			    "a client's folded header reached the log as a "
			    "request id: %s",
			    line);
		}
		{
			json_object *ev;
			if (json_object_object_get_ex(o, "event", &ev) &&
			    strcmp(json_object_get_string(ev), "FORGED") ==
			        0) {
				fail_msg("forged log event: %s", line);
			}
		}
		json_object_put(o);
	}
	free(line);
	fclose(f);
	printf("  ops: %d gateway log lines, all JSON\n", nline);
}

/* ---- readiness follows PostgreSQL --------------------------------------- */

/* Polls port's /readyz until it answers want; returns ms or -1. */
static int
wait_ready(int port, int want, int timeout_ms)
{
	int64_t t0 = it_now_ms();
	while (it_now_ms() - t0 < timeout_ms) {
		if (get_status(port, "/readyz", NULL) == want) {
			return (int) (it_now_ms() - t0);
		}
		it_sleep_ms(100);
	}
	return -1;
}

static void
test_ops_replica_unready_without_postgres(void **state)
{
	it_http_resp r;
	int          down_ms, up_ms;

	(void) state;
	assert_int_equal(wait_ready(rep_admin[0], 200, 2000) >= 0, 1);
	pg_stopped = 1;
	assert_int_equal(it_pg_stop(), 0);
	down_ms = wait_ready(rep_admin[0], 503, 15000);
	it_must_get(&r, rep_admin[0], "/readyz", NULL);
	printf("  ops: replica /readyz %d after PostgreSQL stopped (%d ms): "
	       "%s\n",
	    r.status, down_ms, r.body ? r.body : "");
	it_http_resp_free(&r);
	/* Liveness does not follow PostgreSQL. */
	assert_int_equal(get_status(rep_admin[0], "/healthz", NULL), 200);
	assert_int_equal(it_pg_start(), 0);
	pg_stopped = 0;
	up_ms = wait_ready(rep_admin[0], 200, 20000);
	printf("  ops: replica /readyz 200 again %d ms after PostgreSQL "
	       "started\n",
	    up_ms);
	if (down_ms < 0) {
		fail_msg("replica /readyz stayed 200 for 15 s with PostgreSQL "
		         "down");
	}
	if (up_ms < 0) {
		fail_msg("replica /readyz not 200 within 20 s of PostgreSQL's "
		         "restart");
	}
}

/* GET path through the gateway until it answers want with X-Cache
 * cache (NULL: any), for up to timeout_ms. Returns the last status. */
static int
get_until(const char *path, int want, const char *cache, int timeout_ms)
{
	int64_t end = it_now_ms() + timeout_ms;
	int     last;

	for (;;) {
		it_http_resp r;
		const char  *xc;
		int          ok;

		it_must_get(&r, gw_port, path, NULL);
		last = r.status;
		xc = it_http_header(&r, "X-Cache");
		ok = last == want &&
		    (cache == NULL || (xc != NULL && strcmp(xc, cache) == 0));
		it_http_resp_free(&r);
		if (ok || it_now_ms() >= end) {
			return ok ? want : (last == want ? -1 : last);
		}
		it_sleep_ms(100);
	}
}

/* A replica that starts while PostgreSQL is down starts anyway and serves
 * what Redis holds; misses get 503; once PostgreSQL is back it is ready. */
static void
test_ops_replica_starts_without_postgres(void **state)
{
	(void) state;
	assert_int_equal(get_until("/products/7", 200, "HIT", 10000), 200);
	pg_stopped = 1;
	assert_int_equal(it_pg_stop(), 0);
	/* replica 1 restarts without a database; replica 2 goes away, so
	 * the gateway has only the new one */
	assert_int_equal(it_proc_stop(&rep[0], SIGTERM, 5000), 0);
	assert_int_equal(spawn_replica(0), 0);
	assert_int_equal(it_wait_port(rep_admin[0], 15000), 0);
	assert_int_equal(it_proc_stop(&rep[1], SIGTERM, 5000), 0);
	assert_true(wait_ready(rep_admin[0], 503, 5000) >= 0);
	assert_int_equal(get_status(rep_admin[0], "/healthz", NULL), 200);
	{
		const char *const unchecked[] = {"PS-SCHEMA-UNCHECKED", NULL};
		json_object      *o = find_log_line(rep[0].log, unchecked, 0);

		assert_non_null(o);
		json_object_put(o);
	}
	if (get_until("/products/7", 200, "HIT", 15000) != 200) {
		it_proc_dump_log(&rep[0], 20);
		fail_msg("the replica started without PostgreSQL did not "
		         "serve a cached product");
	}
	/* product 8 was never read: a miss, and the database is down */
	assert_int_equal(get_until("/products/8", 503, NULL, 5000), 503);
	assert_true(it_proc_alive(&rep[0]));
	printf("  ops: a replica started with PostgreSQL down served the "
	       "cache (HIT) and answered a miss 503\n");

	assert_int_equal(spawn_replica(1), 0);
	assert_int_equal(it_pg_start(), 0);
	pg_stopped = 0;
	assert_true(wait_ready(rep_admin[0], 200, 20000) >= 0);
	assert_true(wait_ready(rep_admin[1], 200, 20000) >= 0);
	assert_int_equal(get_until("/products/8", 200, NULL, 10000), 200);
}

/* Every connection checks the schema version when it connects: with the
 * newest migration's row gone, reconnected connections refuse to serve
 * (the replicas turn unready and say why); with it back they serve. */
static void
test_ops_replica_checks_schema_on_connect(void **state)
{
	long long ver =
	    it_pg_scalar_ll("SELECT max(version) FROM schema_migrations", -1);
	char *name;
	char  sql[512];
	int   ok = 0;

	(void) state;
	assert_true(ver > 0);
	snprintf(sql, sizeof(sql),
	    "SELECT name FROM schema_migrations WHERE version = %lld", ver);
	name = it_pg_scalar(sql, &ok);
	assert_non_null(name);
	for (const char *p = name; *p != '\0'; p++) {
		assert_true(*p != '\'' && *p != '\\');
	}
	snprintf(sql, sizeof(sql),
	    "DELETE FROM schema_migrations WHERE version = %lld", ver);
	assert_int_equal(it_pg_exec(sql), 0);
	/* end the replicas' connections: they reconnect and check */
	assert_int_equal(
	    it_pg_exec("SELECT pg_terminate_backend(pid) FROM "
	               "pg_stat_activity WHERE datname = current_database() "
	               "AND pid <> pg_backend_pid() AND backend_type = "
	               "'client backend'"),
	    0);
	int               down = wait_ready(rep_admin[0], 503, 15000);
	const char *const old_schema[] = {"PS-SCHEMA-OLD", NULL};
	/* the first failure may be the terminated connection itself */
	json_object *line = find_log_line(rep[0].log, old_schema, 10000);
	int          logged = line != NULL;

	json_object_put(line);
	/* A replica that starts now stays up and unready rather than exit
	 * (and wait out a restart back-off once the migration has run). */
	assert_int_equal(it_proc_stop(&rep[1], SIGTERM, 5000), 0);
	assert_int_equal(spawn_replica(1), 0);
	assert_int_equal(it_wait_port(rep_admin[1], 15000), 0);
	int started_unready = wait_ready(rep_admin[1], 503, 5000) >= 0;
	it_sleep_ms(500);
	int started_alive = it_proc_alive(&rep[1]);

	snprintf(sql, sizeof(sql),
	    "INSERT INTO schema_migrations (version, name, applied_at) "
	    "VALUES (%lld, '%s', now())",
	    ver, name);
	free(name);
	assert_int_equal(it_pg_exec(sql), 0);
	if (down < 0) {
		fail_msg("replica stayed ready with the schema one version "
		         "behind");
	}
	if (!logged) {
		it_proc_dump_log(&rep[0], 20);
		fail_msg("the replica did not log why it refused");
	}
	if (!started_alive || !started_unready) {
		it_proc_dump_log(&rep[1], 20);
		fail_msg("a replica started on the old schema: %s",
		    started_alive ? "not unready" : "exited");
	}
	assert_true(wait_ready(rep_admin[0], 200, 20000) >= 0);
	/* the one started on the old schema, without a restart */
	assert_true(wait_ready(rep_admin[1], 200, 20000) >= 0);
	assert_true(it_proc_alive(&rep[1]));
	printf("  ops: with the schema one version behind, reconnected "
	       "replicas were unready in %d ms, one started then stayed up "
	       "unready, and all were ready again once it was back\n",
	    down);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ops_health_and_ready),
	    cmocka_unit_test(test_ops_metrics_exposition),
	    cmocka_unit_test(test_ops_counters_move),
	    cmocka_unit_test(test_ops_access_log_json),
	    cmocka_unit_test(test_ops_traceparent_propagates),
	    cmocka_unit_test(test_ops_traceparent_invalid_replaced),
	    cmocka_unit_test(test_ops_request_id_replaced),
	    cmocka_unit_test(test_ops_replica_unready_without_postgres),
	    cmocka_unit_test(test_ops_replica_starts_without_postgres),
	    cmocka_unit_test(test_ops_replica_checks_schema_on_connect),
	};
	int failed;

	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	failed = cmocka_run_group_tests_name(
	    "ops", tests, group_setup, group_teardown);
	return failed != 0 || it_stack_failures() != 0;
}
