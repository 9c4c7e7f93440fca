/* test_faults.c - the stack when Redis stops or replicas die.
 *
 * Group "redis": the replicas use a private redis-server child of this
 * binary (the suite's shared Redis stays up), which the tests stop and
 * start again on the same port. Group "replicas": two replicas, killed with
 * SIGKILL one after the other, then one brought back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "it.h"
#include "it_check.h"

#define NPRODUCTS 45

static it_stack stack;
static it_proc  redis;
static int      redis_port;

/* ---- group "redis" ----------------------------------------------------- */

static int
redis_setup(void **state)
{
	char url[64];

	(void) state;
	if (it_seed_products(NPRODUCTS) != 0 ||
	    (redis_port = it_free_port()) < 0 ||
	    it_redis_server_start(&redis, redis_port) != 0) {
		return -1;
	}
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", redis_port);
	if (it_stack_start(&stack, 2, url, NULL) != 0) {
		it_proc_stop(&redis, SIGKILL, 2000);
		return -1;
	}
	return 0;
}

static int
redis_teardown(void **state)
{
	int rv;

	(void) state;
	rv = it_stack_stop(&stack);
	it_proc_stop(&redis, SIGTERM, 5000);
	return rv;
}

/* GET path, expect 200 and return X-Cache ("" when absent) in out. */
static void
get_cache_outcome(const char *path, char *out, size_t len)
{
	it_http_resp r;
	const char  *xc;

	it_must_get(&r, stack.gw_port, path, NULL);
	it_expect_status(&r, 200);
	xc = it_http_header(&r, "X-Cache");
	snprintf(out, len, "%s", xc ? xc : "");
	it_http_resp_free(&r);
}

static void
test_faults_redis_down_bypass(void **state)
{
	char         xc[32];
	it_http_resp r;

	(void) state;
	/* The cache works to begin with. */
	get_cache_outcome("/products/5", xc, sizeof(xc));
	/* MISS, or HIT when a slow first try was retried on the other
	 * replica after the first had filled the entry; never BYPASS. */
	if (strcmp(xc, "HIT") != 0) {
		assert_string_equal(xc, "MISS");
	}
	get_cache_outcome("/products/5", xc, sizeof(xc));
	if (strcmp(xc, "HIT") != 0) {
		/* The fill may trail the first answer by a moment. */
		it_sleep_ms(300);
		get_cache_outcome("/products/5", xc, sizeof(xc));
		assert_string_equal(xc, "HIT");
	}

	assert_int_equal(it_proc_stop(&redis, SIGTERM, 5000), 0);

	/* Every read still answers, from PostgreSQL. */
	for (int i = 0; i < 10; i++) {
		char path[32];
		snprintf(path, sizeof(path), "/products/%d", 5 + i % 2);
		get_cache_outcome(path, xc, sizeof(xc));
		if (strcmp(xc, "BYPASS") != 0) {
			fail_msg(
			    "GET %s with Redis down: X-Cache %s, want BYPASS",
			    path, xc);
		}
	}
	it_must_get(&r, stack.gw_port, "/products/424242", NULL);
	it_expect_problem(&r, 404, "not-found");
	it_http_resp_free(&r);
	it_must_get(&r, stack.gw_port, "/products?limit=5", NULL);
	it_expect_status(&r, 200);
	it_http_resp_free(&r);
	it_must_get(&r, stack.gw_port, "/readyz", NULL);
	it_expect_status(&r, 200);
	it_http_resp_free(&r);
}

static void
test_faults_redis_back_cache_used_again(void **state)
{
	char    xc[32] = "";
	int64_t end;
	int     found = 0;

	(void) state;
	if (redis.pid == 0) {
		assert_int_equal(it_redis_server_start(&redis, redis_port), 0);
	}
	/* Within a few seconds the replicas reconnect: MISS, then HIT. */
	end = it_now_ms() + 10000;
	while (it_now_ms() < end) {
		get_cache_outcome("/products/7", xc, sizeof(xc));
		if (strcmp(xc, "MISS") == 0 || strcmp(xc, "HIT") == 0) {
			found = 1;
			break;
		}
		it_sleep_ms(100);
	}
	if (!found) {
		fail_msg(
		    "10 s after Redis came back, X-Cache is still %s", xc);
	}
	end = it_now_ms() + 3000;
	while (it_now_ms() < end) {
		get_cache_outcome("/products/7", xc, sizeof(xc));
		if (strcmp(xc, "HIT") == 0) {
			return;
		}
		it_sleep_ms(100);
	}
	fail_msg("no HIT 3 s after the cache came back (last X-Cache %s)", xc);
}

/* ---- group "replicas" -------------------------------------------------- */

static int
replicas_setup(void **state)
{
	(void) state;
	if (it_seed_products(NPRODUCTS) != 0) {
		return -1;
	}
	return it_stack_start(&stack, 2, NULL, NULL);
}

static int
replicas_teardown(void **state)
{
	(void) state;
	return it_stack_stop(&stack);
}

static void
test_faults_one_replica_killed(void **state)
{
	it_http_resp r;

	(void) state;
	assert_int_equal(it_proc_stop(&stack.rep[0], SIGKILL, 5000), 0);
	for (int i = 0; i < 50; i++) {
		char path[32];
		snprintf(
		    path, sizeof(path), "/products/%d", 1 + i % NPRODUCTS);
		it_must_get(&r, stack.gw_port, path, NULL);
		if (r.status != 200) {
			it_print_resp(&r);
			fail_msg(
			    "GET %d of 50 (%s) after one replica died: %d",
			    i + 1, path, r.status);
		}
		it_http_resp_free(&r);
	}
	it_must_get(&r, stack.gw_port, "/readyz", NULL);
	it_expect_status(&r, 200);
	it_http_resp_free(&r);
}

static void
test_faults_all_replicas_killed_503(void **state)
{
	it_http_resp r;
	int64_t      end;
	int          last = 0;

	(void) state;
	it_proc_stop(&stack.rep[0], SIGKILL, 5000);
	assert_int_equal(it_proc_stop(&stack.rep[1], SIGKILL, 5000), 0);

	end = it_now_ms() + 5000;
	for (;;) {
		it_must_get(&r, stack.gw_port, "/readyz", NULL);
		last = r.status;
		if (last == 503) {
			it_expect_problem(&r, 503, "unavailable");
			it_http_resp_free(&r);
			break;
		}
		it_http_resp_free(&r);
		if (it_now_ms() >= end) {
			fail_msg(
			    "/readyz still %d 5 s after every replica died",
			    last);
		}
		it_sleep_ms(100);
	}

	/* Liveness does not depend on the replicas. */
	it_must_get(&r, stack.gw_port, "/healthz", NULL);
	it_expect_status(&r, 200);
	it_http_resp_free(&r);

	/* A read fails as a problem, within the gateway's timeout: 502 when
	 * no replica can be reached, 503 or 504 are fine too. */
	it_must_get(&r, stack.gw_port, "/products/1", NULL);
	switch (r.status) {
	case 502:
		it_expect_problem(&r, 502, "bad-gateway");
		break;
	case 503:
		it_expect_problem(&r, 503, "unavailable");
		break;
	case 504:
		it_expect_problem(&r, 504, "gateway-timeout");
		break;
	default:
		it_print_resp(&r);
		fail_msg(
		    "GET with no replica: %d, want 502, 503 or 504", r.status);
	}
	it_http_resp_free(&r);
}

static void
test_faults_replica_back_ready_again(void **state)
{
	it_http_resp r;
	int64_t      end;
	int          last = 0;

	(void) state;
	assert_int_equal(it_stack_start_replica(&stack, 0), 0);
	end = it_now_ms() + 10000;
	for (;;) {
		it_must_get(&r, stack.gw_port, "/readyz", NULL);
		last = r.status;
		it_http_resp_free(&r);
		if (last == 200) {
			break;
		}
		if (it_now_ms() >= end) {
			fail_msg(
			    "/readyz still %d 10 s after a replica came back",
			    last);
		}
		it_sleep_ms(100);
	}
	/* Each gateway loop reconnects on its own schedule, so reads right
	 * after the first 200 from /readyz may still find no replica on
	 * their loop: within 10 s, 20 reads in a row must succeed. */
	end = it_now_ms() + 10000;
	for (int ok = 0; ok < 20;) {
		it_must_get(&r, stack.gw_port, "/products/2", NULL);
		last = r.status;
		it_http_resp_free(&r);
		ok = last == 200 ? ok + 1 : 0;
		if (ok < 20 && it_now_ms() >= end) {
			fail_msg(
			    "no 20 good reads in a row 10 s after /readyz "
			    "said ready (last %d)",
			    last);
		}
	}
}

int
main(void)
{
	const struct CMUnitTest redis_tests[] = {
	    cmocka_unit_test(test_faults_redis_down_bypass),
	    cmocka_unit_test(test_faults_redis_back_cache_used_again),
	};
	const struct CMUnitTest replica_tests[] = {
	    cmocka_unit_test(test_faults_one_replica_killed),
	    cmocka_unit_test(test_faults_all_replicas_killed_503),
	    cmocka_unit_test(test_faults_replica_back_ready_again),
	};
	int failed = 0;

	signal(SIGPIPE, SIG_IGN);
	failed += cmocka_run_group_tests_name(
	    "faults_redis", redis_tests, redis_setup, redis_teardown);
	failed += cmocka_run_group_tests_name("faults_replicas", replica_tests,
	    replicas_setup, replicas_teardown);
	return failed != 0 || it_stack_failures() != 0;
}
