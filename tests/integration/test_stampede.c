/* test_stampede.c - 200 concurrent GETs of one uncached product reach
 * PostgreSQL at most once per replica (single-flight on each replica,
 * leases across them; docs/consistency.md).
 *
 * Three replicas and one gateway; each GET runs on its own thread and
 * connection, all released together.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "it.h"
#include "it_check.h"
#include "it_write.h"

#define NPRODUCTS 45
#define NREPLICAS 3
#define NGETS     200

static it_stack stack;
static int      redis_port;

static const char calls_sql[] =
    "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements"
    " WHERE query LIKE '%FROM products WHERE id = $1%'"
    " AND query NOT LIKE '%pg_stat_statements%'";

static int
group_setup(void **state)
{
	(void) state;
	if ((redis_port = it_redis_port()) < 0 ||
	    it_seed_products(NPRODUCTS) != 0 ||
	    it_redis_flushall(redis_port) != 0) {
		return -1;
	}
	return it_stack_start(&stack, NREPLICAS, NULL, NULL);
}

static int
group_teardown(void **state)
{
	(void) state;
	return it_stack_stop(&stack);
}

typedef struct stampede {
	const char *path;
	int         status[NGETS];
	char       *body[NGETS];
	int         fd[NGETS];
	char        xcache[NGETS][12];
	int64_t     ms[NGETS];
} stampede;

/* Before the barrier: open this thread's connection. */
static void
connect_one(int i, void *arg)
{
	stampede *s = arg;

	s->fd[i] = it_http_connect(stack.gw_port, 5000);
}

static void
get_one(int i, void *arg)
{
	stampede    *s = arg;
	it_http_resp r;
	int64_t      t0 = it_now_ms();

	s->status[i] = -1;
	if (s->fd[i] >= 0 &&
	    it_http_on(&r, s->fd[i], stack.gw_port, "GET", s->path, NULL, NULL,
	        0, 10000) == 0) {
		const char *xc = it_http_header(&r, "X-Cache");
		s->status[i] = r.status;
		snprintf(
		    s->xcache[i], sizeof(s->xcache[i]), "%s", xc ? xc : "");
		s->body[i] = r.body;
		r.body = NULL;
		it_http_resp_free(&r);
	}
	s->ms[i] = it_now_ms() - t0;
}

/* Runs the stampede on a product that exists (id, seeded) and checks
 * every answer; returns PostgreSQL's count of get_product calls. */
static long long
stampede_on(int64_t id, int want_status)
{
	stampede *s = calloc(1, sizeof(*s));
	char      path[64], key[64];
	int       hit = 0, miss = 0, other = 0;
	int64_t   worst = 0;
	long long calls;

	assert_non_null(s);
	snprintf(path, sizeof(path), "/products/%" PRId64, id);
	snprintf(key, sizeof(key), "product:%" PRId64, id);
	s->path = path;
	assert_int_equal(it_redis_del(redis_port, key), 0);
	assert_int_equal(it_pg_exec("SELECT pg_stat_statements_reset()"), 0);

	assert_int_equal(it_parallel_prep(NGETS, connect_one, get_one, s), 0);
	calls = it_pg_scalar_ll(calls_sql, -1);

	for (int i = 0; i < NGETS; i++) {
		if (s->status[i] != want_status) {
			fail_msg("GET %d of %d: status %d, want %d (%s)", i,
			    NGETS, s->status[i], want_status,
			    s->body[i] ? s->body[i] : "no answer");
		}
		if (want_status == 200) {
			it_http_resp r = {0};
			json_object *o;
			r.status = 200;
			r.body = s->body[i];
			r.body_len = strlen(s->body[i]);
			o = it_json(&r);
			it_expect_seeded_product(o, id);
			json_object_put(o);
		}
		hit += strcmp(s->xcache[i], "HIT") == 0;
		miss += strcmp(s->xcache[i], "MISS") == 0;
		other += strcmp(s->xcache[i], "HIT") != 0 &&
		    strcmp(s->xcache[i], "MISS") != 0;
		worst = s->ms[i] > worst ? s->ms[i] : worst;
		free(s->body[i]);
	}
	print_message("  %d concurrent GETs of %s: all %d; X-Cache HIT %d, "
	              "MISS %d, other %d; slowest %" PRId64 " ms; "
	              "PostgreSQL get_product calls: %lld\n",
	    NGETS, path, want_status, hit, miss, other, worst, calls);
	free(s);
	return calls;
}

static void
test_stampede_one_query_per_replica(void **state)
{
	long long calls;

	(void) state;
	calls = stampede_on(9, 200);
	if (calls < 1 || calls > NREPLICAS) {
		fail_msg("%d concurrent GETs of one uncached product made "
		         "%lld PostgreSQL queries, want 1..%d",
		    NGETS, calls, NREPLICAS);
	}
}

static void
test_stampede_unknown_id(void **state)
{
	long long calls;

	(void) state;
	calls = stampede_on(888888, 404);
	if (calls < 1 || calls > NREPLICAS) {
		fail_msg("%d concurrent GETs of an unknown id made %lld "
		         "PostgreSQL queries, want 1..%d",
		    NGETS, calls, NREPLICAS);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_stampede_one_query_per_replica),
	    cmocka_unit_test(test_stampede_unknown_id),
	};

	int failed;

	signal(SIGPIPE, SIG_IGN);
	failed = cmocka_run_group_tests_name(
	    "stampede", tests, group_setup, group_teardown);
	return failed != 0 || it_stack_failures() != 0;
}
