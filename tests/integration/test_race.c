/* test_race.c - the cache-aside race of docs/consistency.md, made
 * deterministic with the PS_TEST_FILL_DELAY_MS test hook.
 *
 * Topology: replica A (PS_TEST_FILL_DELAY_MS=1500: A holds each cache fill
 * that long after its PostgreSQL read) behind gateway GA, and replica B
 * (no delay) behind gateway GB; both replicas share the suite's Redis and
 * PostgreSQL. A reader misses through GA and reads version v; while A
 * holds its fill, a writer changes the product through GB. Once A's fill
 * has had its chance, every read through either gateway must show the
 * write, and Redis must not hold version v.
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

#define NPRODUCTS 45
#define HOLD_MS   1500
/* A's delayed fill has run (or been refused) by then. */
#define SETTLE_MS (HOLD_MS + 1000)
#define WRITE_AT  300

static it_stack stack_a, stack_b;
static int      ga, gb; /* gateway ports */
static int      redis_port;

static const char *const env_a[] = {"PS_TEST_FILL_DELAY_MS=1500", NULL};

static int
group_setup(void **state)
{
	(void) state;
	if ((redis_port = it_redis_port()) < 0 ||
	    it_seed_products(NPRODUCTS) != 0 ||
	    it_redis_flushall(redis_port) != 0) {
		return -1;
	}
	if (it_stack_start(&stack_a, 1, NULL, env_a) != 0) {
		return -1;
	}
	if (it_stack_start(&stack_b, 1, NULL, NULL) != 0) {
		it_stack_stop(&stack_a);
		return -1;
	}
	ga = stack_a.gw_port;
	gb = stack_b.gw_port;
	return 0;
}

static int
group_teardown(void **state)
{
	int rv = 0;

	(void) state;
	rv |= it_stack_stop(&stack_b);
	rv |= it_stack_stop(&stack_a);
	return rv;
}

/* ---- the held reader --------------------------------------------------- */

typedef struct reader {
	pthread_t t;
	int       port;
	int64_t   id;
	int       status;  /* -1: no answer */
	long long version; /* ETag, -1 when none */
	char      xcache[16];
	int64_t   done_ms;
} reader;

static void *
reader_main(void *arg)
{
	reader      *rd = arg;
	it_http_resp r;
	char         path[64];

	snprintf(path, sizeof(path), "/products/%" PRId64, rd->id);
	rd->status = -1;
	rd->version = -1;
	if (it_http(&r, rd->port, "GET", path, NULL, NULL, 0,
	        2 * HOLD_MS + IT_HTTP_TIMEOUT_MS) == 0) {
		const char *xc = it_http_header(&r, "X-Cache");
		rd->status = r.status;
		rd->version = it_etag_version(&r);
		snprintf(rd->xcache, sizeof(rd->xcache), "%s", xc ? xc : "");
		it_http_resp_free(&r);
	}
	rd->done_ms = it_now_ms();
	return NULL;
}

/* Starts a GET of id through port on its own thread. */
static void
reader_start(reader *rd, int port, int64_t id)
{
	memset(rd, 0, sizeof(*rd));
	rd->port = port;
	rd->id = id;
	assert_int_equal(pthread_create(&rd->t, NULL, reader_main, rd), 0);
}

static void
reader_join(reader *rd)
{
	pthread_join(rd->t, NULL);
	if (rd->status < 0) {
		fail_msg("the held GET of %" PRId64 " got no answer", rd->id);
	}
}

/* Empties every key of id in Redis (entry, lease, fence). */
static void
forget(int64_t id)
{
	char key[64];

	snprintf(key, sizeof(key), "product:%" PRId64, id);
	assert_int_equal(it_redis_del(redis_port, key), 0);
	snprintf(key, sizeof(key), "product:%" PRId64 ":lease", id);
	assert_int_equal(it_redis_del(redis_port, key), 0);
	snprintf(key, sizeof(key), "product:%" PRId64 ":fence", id);
	assert_int_equal(it_redis_del(redis_port, key), 0);
}

/* Returns product:{id} from Redis (free it), NULL when missing. */
static char *
entry(int64_t id, size_t *len)
{
	char  key[64];
	int   found;
	char *v;

	snprintf(key, sizeof(key), "product:%" PRId64, id);
	v = it_redis_get(redis_port, key, len, &found);
	if (found < 0) {
		fail_msg("Redis GET %s failed", key);
	}
	return v;
}

/* Fails when product:{id} holds the stale entry: version v ("P<v>:")
 * when v > 0, the negative entry "N" when v is 0, any positive entry when
 * v is -1. */
static void
expect_entry_not(int64_t id, long long v, const char *when)
{
	size_t len;
	char  *e = entry(id, &len);
	char   stale[32];
	int    bad;

	if (e == NULL) {
		return;
	}
	if (v > 0) {
		snprintf(stale, sizeof(stale), "P%lld:", v);
		bad = len >= strlen(stale) &&
		    memcmp(e, stale, strlen(stale)) == 0;
	} else if (v == 0) {
		snprintf(stale, sizeof(stale), "N");
		bad = len == 1 && e[0] == 'N';
	} else {
		snprintf(stale, sizeof(stale), "P");
		bad = len >= 1 && e[0] == 'P';
	}
	if (bad) {
		/* Print the clear-text prefix only: the rest is protobuf. */
		size_t shown = 0;
		while (shown < len && shown < 12 && e[shown] != ':') {
			shown++;
		}
		fail_msg("%s: product:%" PRId64 " holds the stale entry "
		         "\"%.*s\" (%zu bytes)",
		    when, id, (int) (shown < len ? shown + 1 : shown), e, len);
	}
	free(e);
}

/* GETs id through both gateways, rounds times each, and expects status
 * (and version when status is 200). */
static void
expect_reads(int64_t id, int status, long long version, int rounds)
{
	const int ports[2] = {ga, gb};
	char      path[64];

	snprintf(path, sizeof(path), "/products/%" PRId64, id);
	for (int i = 0; i < rounds; i++) {
		for (int g = 0; g < 2; g++) {
			it_http_resp r;
			it_must_get(&r, ports[g], path, NULL);
			if (r.status != status ||
			    (status == 200 &&
			        it_etag_version(&r) != version)) {
				it_print_resp(&r);
				fail_msg("read %d through %s after the write: "
				         "status %d ETag %lld, want %d %lld",
				    i + 1, g ? "GB" : "GA", r.status,
				    it_etag_version(&r), status,
				    status == 200 ? version : -1);
			}
			it_http_resp_free(&r);
		}
	}
}

/* Sleeps until t0 + ms. */
static void
sleep_until(int64_t t0, int ms)
{
	int64_t left = t0 + ms - it_now_ms();
	if (left > 0) {
		it_sleep_ms((int) left);
	}
}

/* ---- tests ------------------------------------------------------------- */

/* The precondition of the other tests: A really holds its fill. */
static void
test_race_hook_holds_fill(void **state)
{
	reader  rd;
	int64_t t0;
	size_t  len;
	char   *e;

	(void) state;
	forget(20);
	t0 = it_now_ms();
	reader_start(&rd, ga, 20);
	sleep_until(t0, WRITE_AT);
	e = entry(20, &len);
	if (e != NULL) {
		fail_msg("product:20 was filled within %d ms although A holds "
		         "fills %d ms: is PS_TEST_FILL_DELAY_MS compiled in "
		         "(CM_TEST_HOOKS)?",
		    WRITE_AT, HOLD_MS);
	}
	reader_join(&rd);
	assert_int_equal(rd.status, 200);
	assert_string_equal(rd.xcache, "MISS");
	sleep_until(t0, SETTLE_MS);
	e = entry(20, &len);
	if (e == NULL || len < 3 || memcmp(e, "P1:", 3) != 0) {
		fail_msg("product:20 not filled with P1: %d ms after A's miss",
		    SETTLE_MS);
	}
	free(e);
	print_message("  A's fill was held %d ms as configured\n", HOLD_MS);
}

/* Held read through GA, then method (PUT or PATCH) through GB. */
static void
race_update(int64_t id, const char *method)
{
	char         path[64], body[512];
	it_http_resp r;
	reader       rd;
	int64_t      t0;
	long long    v = it_row_version(id), nv;

	assert_true(v > 0);
	forget(id);
	snprintf(path, sizeof(path), "/products/%" PRId64, id);
	t0 = it_now_ms();
	reader_start(&rd, ga, id);
	sleep_until(t0, WRITE_AT);
	if (strcmp(method, "PUT") == 0) {
		char sku[32], name[64];
		snprintf(sku, sizeof(sku), "IT-%04" PRId64, id);
		snprintf(name, sizeof(name), "Raced %" PRId64, id);
		it_product_body(
		    body, sizeof(body), sku, name, "", 12345, "USD", 1);
		it_must_json(&r, gb, "PUT", path, IT_JSON, NULL, body);
	} else {
		it_must_json(&r, gb, "PATCH", path, IT_MERGE_PATCH, NULL,
		    "{\"price_cents\":54321}");
	}
	if (r.status != 200) {
		it_print_resp(&r);
		fail_msg("%s through GB during A's held read: %d", method,
		    r.status);
	}
	nv = it_etag_version(&r);
	it_http_resp_free(&r);
	assert_int_equal(nv, v + 1);
	reader_join(&rd);
	assert_int_equal(rd.status, 200);
	if (rd.version != v && rd.version != v + 1) {
		fail_msg("held read returned version %lld, want %lld or %lld",
		    rd.version, v, v + 1);
	}
	print_message("  %s: held read through GA got v%lld (%s), write "
	              "through GB acked v%lld at +%d ms\n",
	    method, rd.version, rd.xcache, nv, WRITE_AT);
	sleep_until(t0, SETTLE_MS);
	expect_entry_not(id, v, "after A's held fill");
	expect_reads(id, 200, nv, 4);
	expect_entry_not(id, v, "after the reads");
	if (strcmp(method, "PUT") == 0) {
		/* And the cache works again: GA's delayed fills of the new
		 * version land and are still current. */
		sleep_until(it_now_ms(), SETTLE_MS);
		expect_reads(id, 200, nv, 2);
	}
}

static void
test_race_put_during_held_read(void **state)
{
	(void) state;
	race_update(10, "PUT");
}

static void
test_race_patch_during_held_read(void **state)
{
	(void) state;
	race_update(12, "PATCH");
}

static void
test_race_delete_during_held_read(void **state)
{
	char         path[64];
	it_http_resp r;
	reader       rd;
	int64_t      t0, id = 11;

	(void) state;
	forget(id);
	snprintf(path, sizeof(path), "/products/%" PRId64, id);
	t0 = it_now_ms();
	reader_start(&rd, ga, id);
	sleep_until(t0, WRITE_AT);
	it_must_json(&r, gb, "DELETE", path, NULL, NULL, NULL);
	it_expect_status(&r, 204);
	it_http_resp_free(&r);
	reader_join(&rd);
	if (rd.status != 200 && rd.status != 404) {
		fail_msg("held read returned %d", rd.status);
	}
	print_message("  DELETE: held read through GA got %d (%s)\n",
	    rd.status, rd.xcache);
	sleep_until(t0, SETTLE_MS);
	expect_entry_not(id, -1, "after A's held fill");
	expect_reads(id, 404, 0, 4);
	expect_entry_not(id, -1, "after the reads");
}

static void
test_race_create_during_held_negative_read(void **state)
{
	char         sku[64], body[512];
	it_http_resp r;
	json_object *o;
	reader       rd;
	int64_t      t0, x, y;

	(void) state;
	it_unique(sku, sizeof(sku), "RC");
	it_product_body(body, sizeof(body), sku, "first", "", 1, "USD", 1);
	it_must_json(&r, gb, "POST", "/products", IT_JSON, NULL, body);
	it_expect_status(&r, 201);
	o = it_json(&r);
	x = it_json_int(o, "id");
	json_object_put(o);
	it_http_resp_free(&r);
	forget(x + 1);

	/* A misses x+1 (no such product yet) and holds its negative fill;
	 * meanwhile GB creates x+1. */
	t0 = it_now_ms();
	reader_start(&rd, ga, x + 1);
	sleep_until(t0, WRITE_AT);
	it_unique(sku, sizeof(sku), "RC");
	it_product_body(body, sizeof(body), sku, "second", "", 1, "USD", 1);
	it_must_json(&r, gb, "POST", "/products", IT_JSON, NULL, body);
	it_expect_status(&r, 201);
	o = it_json(&r);
	y = it_json_int(o, "id");
	json_object_put(o);
	it_http_resp_free(&r);
	if (y != x + 1) {
		fail_msg(
		    "second POST got id %" PRId64 ", want %" PRId64, y, x + 1);
	}
	reader_join(&rd);
	print_message("  POST: held read of the future id got %d (%s)\n",
	    rd.status, rd.xcache);
	sleep_until(t0, SETTLE_MS);
	expect_entry_not(y, 0, "after A's held negative fill");
	expect_reads(y, 200, 1, 4);
	expect_entry_not(y, 0, "after the reads");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_race_hook_holds_fill),
	    cmocka_unit_test(test_race_put_during_held_read),
	    cmocka_unit_test(test_race_patch_during_held_read),
	    cmocka_unit_test(test_race_delete_during_held_read),
	    cmocka_unit_test(test_race_create_during_held_negative_read),
	};

	int failed;

	signal(SIGPIPE, SIG_IGN);
	failed = cmocka_run_group_tests_name(
	    "race", tests, group_setup, group_teardown);
	return failed != 0 || it_stack_failures() != 0;
}
