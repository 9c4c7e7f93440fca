/* test_checker.c - a concurrent read-your-acknowledged-writes checker.
 *
 * Three replicas, two gateways in front of all three, 20 products. For
 * CHECKER_SECONDS (default 20) writer threads PUT and PATCH the products
 * through both gateways while reader threads GET them through both; in the
 * middle third of the run Redis is FLUSHALL'd every 500 ms so that reads
 * miss and race with writes. Checked:
 *
 *  - a read that starts after a write of version k was acknowledged
 *    returns version >= k (any thread, either gateway);
 *  - a write that starts after version k was acknowledged produces a
 *    version > k;
 *  - the versions one thread sees for one product never go backwards;
 *  - a writer reads its own write back through the other gateway;
 *  - at the end every row's version is its start version plus the number
 *    of acknowledged writes (nothing applied twice or lost), the gateways
 *    agree with PostgreSQL, no fence key is left and the cache fills again.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "it.h"
#include "it_check.h"
#include "it_write.h"

#define NPROD       20
#define NWRITERS    4
#define NREADERS    8
#define MIN_OPS     1000
#define MAX_REPORTS 10

static it_stack stack;
static it_proc  gw2;
static int      gw_port[2];
static int      redis_port;

static int
group_setup(void **state)
{
	(void) state;
	if ((redis_port = it_redis_port()) < 0 ||
	    it_seed_products(NPROD) != 0 ||
	    it_redis_flushall(redis_port) != 0) {
		return -1;
	}
	if (it_stack_start(&stack, 3, NULL, NULL) != 0) {
		return -1;
	}
	if (it_gateway_start(&gw2, &gw_port[1], stack.upstreams, NULL) != 0) {
		it_stack_stop(&stack);
		return -1;
	}
	gw_port[0] = stack.gw_port;
	return 0;
}

static int
group_teardown(void **state)
{
	int rv;

	(void) state;
	it_proc_stop(&gw2, SIGTERM, 5000);
	rv = it_proc_sanitizer_reports(&gw2) ? -1 : 0;
	return it_stack_stop(&stack) | rv;
}

/* ---- shared state ------------------------------------------------------ */

typedef struct checker {
	int64_t         end_ms;
	long long       start_version[NPROD + 1];
	long long       acked[NPROD + 1];  /* highest acknowledged version */
	long long       nacked[NPROD + 1]; /* acknowledged writes */
	long long       reads, writes, violations, errors, misses, flushes;
	pthread_mutex_t mu; /* reports */
	int             nreports;
	char            reports[MAX_REPORTS][256];
} checker;

static checker ck = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void report(const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Counts a violation (kind "violation") or an error and keeps the first
 * few descriptions. */
static void
report(const char *kind, const char *fmt, ...)
{
	va_list ap;

	__atomic_add_fetch(
	    strcmp(kind, "violation") == 0 ? &ck.violations : &ck.errors, 1,
	    __ATOMIC_RELAXED);
	pthread_mutex_lock(&ck.mu);
	if (ck.nreports < MAX_REPORTS) {
		int n = snprintf(ck.reports[ck.nreports], 256, "%s: ", kind);
		va_start(ap, fmt);
		vsnprintf(
		    ck.reports[ck.nreports] + n, (size_t) (256 - n), fmt, ap);
		va_end(ap);
		ck.nreports++;
	}
	pthread_mutex_unlock(&ck.mu);
}

static long long
acked_load(int p)
{
	return __atomic_load_n(&ck.acked[p], __ATOMIC_SEQ_CST);
}

/* Raises acked[p] to at least v. */
static void
acked_raise(int p, long long v)
{
	long long cur = acked_load(p);
	while (cur < v &&
	    !__atomic_compare_exchange_n(&ck.acked[p], &cur, v, 0,
	        __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) { }
}

/* One client thread's view. */
typedef struct client {
	unsigned  seed;
	int       idx;
	long long seen[NPROD + 1]; /* highest version this thread saw */
} client;

/* GETs product p through gateway g; checks it against what was acked
 * before it started and what this thread saw before. Returns the version
 * or -1. */
static long long
check_read(client *c, int p, int g, const char *who)
{
	char         path[32];
	it_http_resp r;
	long long    floor = acked_load(p), v;
	const char  *xc;

	snprintf(path, sizeof(path), "/products/%d", p);
	if (it_http(&r, gw_port[g], "GET", path, NULL, NULL, 0,
	        IT_HTTP_TIMEOUT_MS) != 0) {
		report("error", "%s GET %s via gw%d: no answer", who, path, g);
		return -1;
	}
	__atomic_add_fetch(&ck.reads, 1, __ATOMIC_RELAXED);
	if (r.status != 200 || (v = it_etag_version(&r)) < 0) {
		report("error", "%s GET %s via gw%d: status %d ETag %s", who,
		    path, g, r.status,
		    it_http_header(&r, "ETag") ? it_http_header(&r, "ETag")
		                               : "none");
		it_http_resp_free(&r);
		return -1;
	}
	xc = it_http_header(&r, "X-Cache");
	if (xc != NULL && strcmp(xc, "HIT") != 0) {
		__atomic_add_fetch(&ck.misses, 1, __ATOMIC_RELAXED);
	}
	if (v < floor) {
		report("violation",
		    "%s GET %s via gw%d returned v%lld (X-Cache %s) but v%lld "
		    "was acknowledged before the read started",
		    who, path, g, v, xc ? xc : "-", floor);
	} else if (v < c->seen[p]) {
		report("violation",
		    "%s GET %s via gw%d returned v%lld (X-Cache %s) after "
		    "this thread had seen v%lld",
		    who, path, g, v, xc ? xc : "-", c->seen[p]);
	}
	if (v > c->seen[p]) {
		c->seen[p] = v;
	}
	it_http_resp_free(&r);
	return v;
}

static void *
writer_main(void *arg)
{
	client *c = arg;
	char    who[32];

	snprintf(who, sizeof(who), "writer %d", c->idx);
	while (it_now_ms() < ck.end_ms) {
		int          p = 1 + (int) (rand_r(&c->seed) % NPROD);
		int          g = (int) (rand_r(&c->seed) % 2);
		int          patch = rand_r(&c->seed) % 5 == 0;
		long long    floor = acked_load(p), v;
		char         path[32], body[256];
		it_http_resp r;
		int          rv;

		snprintf(path, sizeof(path), "/products/%d", p);
		if (patch) {
			snprintf(body, sizeof(body), "{\"stock\":%d}",
			    (int) (rand_r(&c->seed) % 1000));
			rv = it_http_json(&r, gw_port[g], "PATCH", path,
			    IT_MERGE_PATCH, NULL, body);
		} else {
			char sku[16], name[32];
			snprintf(sku, sizeof(sku), "IT-%04d", p);
			snprintf(name, sizeof(name), "Product %d", p);
			it_product_body(body, sizeof(body), sku, name, "",
			    (long long) (rand_r(&c->seed) % 100000), "USD", p);
			rv = it_http_json(
			    &r, gw_port[g], "PUT", path, IT_JSON, NULL, body);
		}
		if (rv != 0) {
			report("error", "%s %s %s via gw%d: no answer", who,
			    patch ? "PATCH" : "PUT", path, g);
			continue;
		}
		__atomic_add_fetch(&ck.writes, 1, __ATOMIC_RELAXED);
		if (r.status != 200 || (v = it_etag_version(&r)) < 0) {
			report("error", "%s %s %s via gw%d: status %d", who,
			    patch ? "PATCH" : "PUT", path, g, r.status);
			it_http_resp_free(&r);
			continue;
		}
		it_http_resp_free(&r);
		__atomic_add_fetch(&ck.nacked[p], 1, __ATOMIC_SEQ_CST);
		if (v <= floor || v <= c->seen[p]) {
			report("violation",
			    "%s %s %s acked v%lld, not above v%lld acked "
			    "before it started / v%lld seen by this thread",
			    who, patch ? "PATCH" : "PUT", path, v, floor,
			    c->seen[p]);
		}
		acked_raise(p, v);
		if (v > c->seen[p]) {
			c->seen[p] = v;
		}
		/* Read it back through the other gateway. */
		check_read(c, p, 1 - g, who);
	}
	return NULL;
}

static void *
reader_main(void *arg)
{
	client *c = arg;
	char    who[32];

	snprintf(who, sizeof(who), "reader %d", c->idx);
	while (it_now_ms() < ck.end_ms) {
		int p = 1 + (int) (rand_r(&c->seed) % NPROD);
		int g = (int) (rand_r(&c->seed) % 2);
		check_read(c, p, g, who);
	}
	return NULL;
}

/* FLUSHALLs Redis every 500 ms in the middle third of the run. */
static void *
flusher_main(void *arg)
{
	int64_t start = *(int64_t *) arg, len = ck.end_ms - start;

	while (it_now_ms() < start + len / 3) {
		it_sleep_ms(20);
	}
	while (it_now_ms() < start + 2 * len / 3) {
		if (it_redis_flushall(redis_port) == 0) {
			ck.flushes++;
		}
		it_sleep_ms(500);
	}
	return NULL;
}

/* ---- tests ------------------------------------------------------------- */

static void
test_checker_acknowledged_writes_visible(void **state)
{
	const char *env = getenv("CHECKER_SECONDS");
	int         seconds = env && atoi(env) > 0 ? atoi(env) : 20;
	pthread_t   wt[NWRITERS], rt[NREADERS], ft;
	client     *wc = calloc(NWRITERS, sizeof(*wc));
	client     *rc = calloc(NREADERS, sizeof(*rc));
	int64_t     start;
	long long   ops;

	(void) state;
	assert_non_null(wc);
	assert_non_null(rc);
	for (int p = 1; p <= NPROD; p++) {
		ck.start_version[p] = it_row_version(p);
		ck.acked[p] = ck.start_version[p];
		assert_true(ck.start_version[p] > 0);
	}
	start = it_now_ms();
	ck.end_ms = start + seconds * 1000;
	for (int i = 0; i < NWRITERS; i++) {
		wc[i] = (client) {.seed = 1000u + (unsigned) i, .idx = i};
		assert_int_equal(
		    pthread_create(&wt[i], NULL, writer_main, &wc[i]), 0);
	}
	for (int i = 0; i < NREADERS; i++) {
		rc[i] = (client) {.seed = 2000u + (unsigned) i, .idx = i};
		assert_int_equal(
		    pthread_create(&rt[i], NULL, reader_main, &rc[i]), 0);
	}
	assert_int_equal(pthread_create(&ft, NULL, flusher_main, &start), 0);
	for (int i = 0; i < NWRITERS; i++) {
		pthread_join(wt[i], NULL);
	}
	for (int i = 0; i < NREADERS; i++) {
		pthread_join(rt[i], NULL);
	}
	pthread_join(ft, NULL);

	ops = ck.reads + ck.writes;
	print_message("  checker: %d s, %lld operations checked (%lld "
	              "writes, %lld reads, %lld of them not HIT), %lld "
	              "FLUSHALLs, %lld violations, %lld errors\n",
	    seconds, ops, ck.writes, ck.reads, ck.misses, ck.flushes,
	    ck.violations, ck.errors);
	for (int i = 0; i < ck.nreports; i++) {
		print_message("    %s\n", ck.reports[i]);
	}
	free(wc);
	free(rc);
	if (ck.violations != 0) {
		fail_msg("%lld consistency violations (first ones above)",
		    ck.violations);
	}
	if (ck.errors != 0) {
		fail_msg("%lld requests failed (first ones above)", ck.errors);
	}
	if (ops < MIN_OPS) {
		fail_msg("only %lld operations in %d s, want >= %d", ops,
		    seconds, MIN_OPS);
	}
}

static void
test_checker_final_state(void **state)
{
	int64_t end;

	(void) state;
	/* Every acknowledged write applied exactly once, and the gateways
	 * agree with PostgreSQL. */
	for (int p = 1; p <= NPROD; p++) {
		long long row = it_row_version(p);
		long long want = ck.start_version[p] + ck.nacked[p];
		if (ck.errors == 0 && row != want) {
			fail_msg(
			    "product %d: row version %lld, want %lld (start "
			    "%lld + %lld acknowledged writes)",
			    p, row, want, ck.start_version[p], ck.nacked[p]);
		}
		for (int g = 0; g < 2; g++) {
			char         path[32];
			it_http_resp r;
			snprintf(path, sizeof(path), "/products/%d", p);
			it_must_get(&r, gw_port[g], path, NULL);
			it_expect_status(&r, 200);
			if (it_etag_version(&r) != row) {
				it_print_resp(&r);
				fail_msg(
				    "product %d via gw%d: ETag v%lld, row "
				    "v%lld",
				    p, g, it_etag_version(&r), row);
			}
			it_http_resp_free(&r);
		}
	}

	/* No write left a fence behind (e.g. one that a FLUSHALL emptied
	 * before its end-write), and the cache fills again. */
	{
		long long fences =
		    it_redis_count_keys(redis_port, "product:*:fence");
		if (fences != 0) {
			fail_msg("%lld product:*:fence keys left after every "
			         "write finished",
			    fences);
		}
	}
	end = it_now_ms() + 3000;
	for (int p = 1; p <= NPROD; p++) {
		char xc[16] = "";
		while (strcmp(xc, "HIT") != 0) {
			char         path[32];
			it_http_resp r;
			const char  *h;
			if (it_now_ms() >= end) {
				fail_msg(
				    "product %d: no X-Cache HIT 3 s after the "
				    "run (last %s)",
				    p, xc);
			}
			snprintf(path, sizeof(path), "/products/%d", p);
			it_must_get(&r, gw_port[p % 2], path, NULL);
			it_expect_status(&r, 200);
			h = it_http_header(&r, "X-Cache");
			snprintf(xc, sizeof(xc), "%s", h ? h : "");
			it_http_resp_free(&r);
			if (strcmp(xc, "HIT") != 0) {
				it_sleep_ms(20);
			}
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_checker_acknowledged_writes_visible),
	    cmocka_unit_test(test_checker_final_state),
	};

	int failed;

	signal(SIGPIPE, SIG_IGN);
	failed = cmocka_run_group_tests_name(
	    "checker", tests, group_setup, group_teardown);
	return failed != 0 || it_stack_failures() != 0;
}
