/* test_api.c - the HTTP API of docs/design.md over real Redis and PostgreSQL.
 *
 * Group setup seeds 45 products, empties Redis and starts two replicas and
 * one gateway on free loopback ports; teardown stops them by pid.
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

#include "cm.h"
#include "it.h"
#include "it_check.h"

#define NPRODUCTS 45

static it_stack stack;
static int      gw; /* the gateway's port */
static int      redis_port;

static int
group_setup(void **state)
{
	(void) state;
	if ((redis_port = it_redis_port()) < 0 ||
	    it_seed_products(NPRODUCTS) != 0 ||
	    it_redis_flushall(redis_port) != 0) {
		return -1;
	}
	if (it_stack_start(&stack, 2, NULL, NULL) != 0) {
		return -1;
	}
	gw = stack.gw_port;
	return 0;
}

static int
group_teardown(void **state)
{
	(void) state;
	return it_stack_stop(&stack);
}

/* Waits up to timeout_ms for key to exist in the shared Redis; returns the
 * value (free it) or NULL. */
static char *
wait_redis_key(const char *key, size_t *len, int timeout_ms)
{
	int64_t end = it_now_ms() + timeout_ms;
	for (;;) {
		int   found;
		char *v = it_redis_get(redis_port, key, len, &found);
		if (found == 1 || it_now_ms() >= end) {
			return v;
		}
		it_sleep_ms(20);
	}
}

/* ---- GET /products/{id} ------------------------------------------------ */

static void
test_api_get_product_fields(void **state)
{
	it_http_resp r;
	json_object *o;
	const char  *ct;

	(void) state;
	it_must_get(&r, gw, "/products/1", NULL);
	it_expect_status(&r, 200);
	ct = it_http_header(&r, "Content-Type");
	assert_non_null(ct);
	assert_true(strncmp(ct, "application/json", 16) == 0);
	it_expect_header(&r, "ETag", "\"1\"");
	assert_non_null(it_http_header(&r, "X-Cache"));
	o = it_json(&r);
	it_expect_seeded_product(o, 1);
	json_object_put(o);
	it_http_resp_free(&r);

	/* ETag follows the row's version. */
	it_must_get(&r, gw, "/products/3", NULL);
	it_expect_status(&r, 200);
	it_expect_header(&r, "ETag", "\"7\"");
	o = it_json(&r);
	it_expect_seeded_product(o, 3);
	json_object_put(o);
	it_http_resp_free(&r);

	/* The largest valid id is accepted (and unknown). */
	it_must_get(&r, gw, "/products/9223372036854775807", NULL);
	it_expect_problem(&r, 404, "not-found");
	it_http_resp_free(&r);
}

static void
test_api_get_miss_then_hit(void **state)
{
	it_http_resp r1, r2;
	size_t       len;
	char        *v;

	(void) state;
	assert_int_equal(it_redis_del(redis_port, "product:2"), 0);
	it_must_get(&r1, gw, "/products/2", NULL);
	it_expect_status(&r1, 200);
	it_expect_header(&r1, "X-Cache", "MISS");

	/* The fill may land just after the answer; wait for it. */
	v = wait_redis_key("product:2", &len, 2000);
	if (v == NULL) {
		fail_msg("product:2 not in Redis 2 s after a MISS");
	}
	assert_true(len > 3 && memcmp(v, "P1:", 3) == 0);
	free(v);

	it_must_get(&r2, gw, "/products/2", NULL);
	it_expect_status(&r2, 200);
	it_expect_header(&r2, "X-Cache", "HIT");
	it_expect_header(&r2, "ETag", "\"1\"");
	assert_int_equal(r1.body_len, r2.body_len);
	assert_memory_equal(r1.body, r2.body, r1.body_len);
	it_http_resp_free(&r1);
	it_http_resp_free(&r2);
}

static void
test_api_cache_entry_has_version_prefix(void **state)
{
	it_http_resp r;
	size_t       len;
	char        *v;
	json_object *o;

	(void) state;
	assert_int_equal(it_redis_del(redis_port, "product:3"), 0);
	it_must_get(&r, gw, "/products/3", NULL);
	it_expect_status(&r, 200);
	it_expect_header(&r, "X-Cache", "MISS");
	it_http_resp_free(&r);
	v = wait_redis_key("product:3", &len, 2000);
	if (v == NULL) {
		fail_msg("product:3 not in Redis 2 s after a MISS");
	}
	if (len <= 3 || memcmp(v, "P7:", 3) != 0) {
		fail_msg("product:3 entry starts with \"%.*s\", want \"P7:\"",
		    (int) (len < 8 ? len : 8), v);
	}
	free(v);

	/* A hit serves the cached bytes as the same JSON. */
	it_must_get(&r, gw, "/products/3", NULL);
	it_expect_status(&r, 200);
	it_expect_header(&r, "X-Cache", "HIT");
	o = it_json(&r);
	it_expect_seeded_product(o, 3);
	json_object_put(o);
	it_http_resp_free(&r);
}

static void
test_api_if_none_match(void **state)
{
	static const char *const cases[] = {"If-None-Match: \"7\"",
	    "If-None-Match: *", "If-None-Match: \"1\", \"7\""};
	const char              *h[2] = {NULL, NULL};
	it_http_resp             r;

	(void) state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		h[0] = cases[i];
		it_must_get(&r, gw, "/products/3", h);
		if (r.status != 304) {
			it_print_resp(&r);
			fail_msg(
			    "%s: status %d, want 304", cases[i], r.status);
		}
		it_expect_header(&r, "ETag", "\"7\"");
		assert_int_equal(r.body_len, 0);
		assert_non_null(it_http_header(&r, "X-Request-Id"));
		it_http_resp_free(&r);
	}
	h[0] = "If-None-Match: \"6\"";
	it_must_get(&r, gw, "/products/3", h);
	it_expect_status(&r, 200);
	it_expect_header(&r, "ETag", "\"7\"");
	it_http_resp_free(&r);
}

static void
test_api_head_product(void **state)
{
	it_http_resp r;

	(void) state;
	it_must_http(&r, gw, "HEAD", "/products/4", NULL, NULL);
	it_expect_status(&r, 200);
	it_expect_header(&r, "ETag", "\"1\"");
	assert_non_null(it_http_header(&r, "X-Cache"));
	assert_non_null(it_http_header(&r, "X-Request-Id"));
	assert_int_equal(r.body_len, 0);
	it_http_resp_free(&r);

	it_must_http(&r, gw, "HEAD", "/products/999999", NULL, NULL);
	it_expect_status(&r, 404);
	it_http_resp_free(&r);

	it_must_http(&r, gw, "HEAD", "/products", NULL, NULL);
	it_expect_status(&r, 200);
	it_http_resp_free(&r);
}

static void
test_api_unknown_id_404(void **state)
{
	it_http_resp r;

	(void) state;
	it_must_get(&r, gw, "/products/424242", NULL);
	it_expect_problem(&r, 404, "not-found");
	it_http_resp_free(&r);
}

static void
test_api_bad_ids_400(void **state)
{
	static const char *const bad[] = {"0", "-1", "abc", "01",
	    "9223372036854775808", "99999999999999999999", "+1", "1a", "1.0"};
	char                     path[128];
	it_http_resp             r;

	(void) state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(path, sizeof(path), "/products/%s", bad[i]);
		it_must_get(&r, gw, path, NULL);
		if (r.status != 400) {
			it_print_resp(&r);
			fail_msg(
			    "GET %s: status %d, want 400", path, r.status);
		}
		it_expect_problem(&r, 400, "bad-request");
		it_http_resp_free(&r);
	}
}

/* ---- X-Request-Id ------------------------------------------------------ */

static void
test_api_request_id_echoed(void **state)
{
	const char  *h[] = {"X-Request-Id: it-abc.123:X_y-z", NULL};
	it_http_resp r;
	json_object *o;

	(void) state;
	it_must_get(&r, gw, "/products/5", h);
	it_expect_status(&r, 200);
	it_expect_header(&r, "X-Request-Id", "it-abc.123:X_y-z");
	it_http_resp_free(&r);

	/* Errors carry it in the header and the problem body. */
	it_must_get(&r, gw, "/products/424243", h);
	it_expect_problem(&r, 404, "not-found");
	it_expect_header(&r, "X-Request-Id", "it-abc.123:X_y-z");
	o = it_json(&r);
	assert_string_equal(it_json_str(o, "request_id"), "it-abc.123:X_y-z");
	json_object_put(o);
	it_http_resp_free(&r);
}

static void
test_api_request_id_insane_replaced(void **state)
{
	static const char *const insane[] = {"X-Request-Id: has space",
	    "X-Request-Id: a\"quote",
	    "X-Request-Id: "
	    "0123456789012345678901234567890123456789012345678901234567890123"
	    "4"};
	const char              *h[2] = {NULL, NULL};
	it_http_resp             r;

	(void) state;
	for (size_t i = 0; i < sizeof(insane) / sizeof(insane[0]); i++) {
		const char *rid;
		h[0] = insane[i];
		it_must_get(&r, gw, "/products/5", h);
		it_expect_status(&r, 200);
		rid = it_http_header(&r, "X-Request-Id");
		if (rid == NULL || !cm_reqid_ok(rid) ||
		    strcmp(rid, insane[i] + 14) == 0) {
			it_print_resp(&r);
			fail_msg("\"%s\" was not replaced by a fresh id",
			    insane[i]);
		}
		it_http_resp_free(&r);
	}
}

static void
test_api_request_id_generated(void **state)
{
	it_http_resp r1, r2;
	const char  *a, *b;

	(void) state;
	it_must_get(&r1, gw, "/products/5", NULL);
	it_must_get(&r2, gw, "/healthz", NULL);
	a = it_http_header(&r1, "X-Request-Id");
	b = it_http_header(&r2, "X-Request-Id");
	assert_non_null(a);
	assert_non_null(b);
	assert_true(cm_reqid_ok(a));
	assert_true(cm_reqid_ok(b));
	assert_string_not_equal(a, b);
	it_http_resp_free(&r1);
	it_http_resp_free(&r2);
}

/* ---- GET /products ----------------------------------------------------- */

/* GETs path, expects 200 and a list with n items whose ids run from
 * first, and next_after equal to next (0: null). */
static void
expect_list(const char *path, int n, int64_t first, int64_t next)
{
	it_http_resp r;
	json_object *o, *items, *na;
	size_t       nkeys = 0;

	it_must_get(&r, gw, path, NULL);
	if (r.status != 200) {
		it_print_resp(&r);
		fail_msg("GET %s: status %d, want 200", path, r.status);
	}
	o = it_json(&r);
	json_object_object_foreach(o, key, val)
	{
		(void) val;
		if (strcmp(key, nkeys == 0 ? "items" : "next_after") != 0) {
			fail_msg("GET %s: unexpected key order %s", path,
			    json_object_to_json_string(o));
		}
		nkeys++;
	}
	assert_int_equal(nkeys, 2);
	if (!json_object_object_get_ex(o, "items", &items) ||
	    !json_object_is_type(items, json_type_array)) {
		fail_msg("GET %s: no items array", path);
	}
	if ((int) json_object_array_length(items) != n) {
		fail_msg("GET %s: %zu items, want %d", path,
		    json_object_array_length(items), n);
	}
	for (int i = 0; i < n; i++) {
		it_expect_seeded_product(
		    json_object_array_get_idx(items, (size_t) i), first + i);
	}
	if (!json_object_object_get_ex(o, "next_after", &na)) {
		fail_msg("GET %s: no next_after", path);
	}
	if (next == 0) {
		if (na != NULL) {
			fail_msg("GET %s: next_after %s, want null", path,
			    json_object_to_json_string(na));
		}
	} else {
		if (na == NULL || !json_object_is_type(na, json_type_int) ||
		    json_object_get_int64(na) != next) {
			fail_msg("GET %s: next_after %s, want %" PRId64, path,
			    na ? json_object_to_json_string(na) : "null",
			    next);
		}
	}
	json_object_put(o);
	it_http_resp_free(&r);
}

static void
test_api_list_default(void **state)
{
	(void) state;
	expect_list("/products", 20, 1, 20);
}

static void
test_api_list_limits(void **state)
{
	(void) state;
	expect_list("/products?limit=1", 1, 1, 1);
	expect_list("/products?limit=44", 44, 1, 44);
	expect_list("/products?limit=45", 45, 1, 0);
	expect_list("/products?limit=100", NPRODUCTS, 1, 0);
}

static void
test_api_list_paging(void **state)
{
	char    path[64];
	int64_t after = 0;
	int     pages = 0;

	(void) state;
	/* Walk the whole table ten at a time. */
	for (;;) {
		int n =
		    NPRODUCTS - after < 10 ? (int) (NPRODUCTS - after) : 10;
		int64_t next = after + 10 < NPRODUCTS ? after + 10 : 0;
		snprintf(path, sizeof(path),
		    "/products?limit=10&after=%" PRId64, after);
		expect_list(path, n, after + 1, next);
		pages++;
		if (next == 0) {
			break;
		}
		after = next;
	}
	assert_int_equal(pages, 5);
	expect_list("/products?after=40&limit=10", 5, 41, 0);
	expect_list("/products?after=45", 0, 46, 0);
	expect_list("/products?after=9223372036854775807", 0, 1, 0);
	expect_list("/products?after=0&limit=2", 2, 1, 2);
}

static void
test_api_list_bad_params_400(void **state)
{
	static const char *const bad[] = {"/products?limit=0",
	    "/products?limit=101", "/products?limit=abc", "/products?limit=-1",
	    "/products?limit=", "/products?after=-1", "/products?after=abc",
	    "/products?after=9223372036854775808", "/products?foo=1",
	    "/products?limit=5&foo=bar", "/products?offset=10"};
	it_http_resp             r;

	(void) state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		it_must_get(&r, gw, bad[i], NULL);
		if (r.status != 400) {
			it_print_resp(&r);
			fail_msg(
			    "GET %s: status %d, want 400", bad[i], r.status);
		}
		it_expect_problem(&r, 400, "bad-request");
		it_http_resp_free(&r);
	}
}

/* ---- health, routing --------------------------------------------------- */

static void
test_api_healthz(void **state)
{
	it_http_resp r;
	json_object *o;

	(void) state;
	it_must_get(&r, gw, "/healthz", NULL);
	it_expect_status(&r, 200);
	assert_non_null(it_http_header(&r, "X-Request-Id"));
	o = it_json(&r);
	assert_string_equal(it_json_str(o, "status"), "ok");
	json_object_put(o);
	it_http_resp_free(&r);
}

static void
test_api_readyz(void **state)
{
	it_http_resp r;
	json_object *o;

	(void) state;
	it_must_get(&r, gw, "/readyz", NULL);
	it_expect_status(&r, 200);
	o = it_json(&r);
	assert_string_equal(it_json_str(o, "status"), "ready");
	json_object_put(o);
	it_http_resp_free(&r);
}

static void
test_api_unknown_path_404(void **state)
{
	static const char *const paths[] = {
	    "/", "/nope", "/products/1/x", "/productsx", "/healthz/x"};
	it_http_resp r;

	(void) state;
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		it_must_get(&r, gw, paths[i], NULL);
		if (r.status != 404) {
			it_print_resp(&r);
			fail_msg(
			    "GET %s: status %d, want 404", paths[i], r.status);
		}
		it_expect_problem(&r, 404, "not-found");
		it_http_resp_free(&r);
	}
}

static void
test_api_wrong_method_405(void **state)
{
	static const struct {
		const char *method, *path;
	} cases[] = {{"POST", "/products/1"}, {"DELETE", "/products"}};
	it_http_resp r;

	(void) state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *allow;
		it_must_http(&r, gw, cases[i].method, cases[i].path, NULL,
		    strcmp(cases[i].method, "POST") == 0 ? "{}" : NULL);
		if (r.status != 405) {
			it_print_resp(&r);
			fail_msg("%s %s: status %d, want 405", cases[i].method,
			    cases[i].path, r.status);
		}
		it_expect_problem(&r, 405, "method-not-allowed");
		allow = it_http_header(&r, "Allow");
		if (allow == NULL || strstr(allow, "GET") == NULL ||
		    strstr(allow, "HEAD") == NULL) {
			it_print_resp(&r);
			fail_msg("%s %s: Allow must list GET and HEAD",
			    cases[i].method, cases[i].path);
		}
		it_http_resp_free(&r);
	}
}

/* ---- negative cache ---------------------------------------------------- */

static void
test_api_negative_entry_asks_db_once(void **state)
{
	static const char calls_sql[] =
	    "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements"
	    " WHERE query LIKE '%FROM products WHERE id = $1%'"
	    " AND query NOT LIKE '%pg_stat_statements%'";
	it_http_resp r;
	size_t       len;
	char        *v;
	long long    calls;

	(void) state;
	assert_int_equal(it_redis_del(redis_port, "product:777777"), 0);
	assert_int_equal(it_pg_exec("SELECT pg_stat_statements_reset()"), 0);

	it_must_get(&r, gw, "/products/777777", NULL);
	it_expect_problem(&r, 404, "not-found");
	it_http_resp_free(&r);
	/* Wait for the negative fill before asking again. */
	v = wait_redis_key("product:777777", &len, 2000);
	if (v == NULL) {
		fail_msg("no negative entry product:777777 2 s after a 404");
	}
	if (len != 1 || v[0] != 'N') {
		fail_msg("product:777777 is \"%.*s\" (%zu bytes), want \"N\"",
		    (int) (len < 16 ? len : 16), v, len);
	}
	free(v);

	it_must_get(&r, gw, "/products/777777", NULL);
	it_expect_problem(&r, 404, "not-found");
	it_http_resp_free(&r);

	calls = it_pg_scalar_ll(calls_sql, -1);
	if (calls != 1) {
		fail_msg("PostgreSQL ran get_product %lld times for two GETs "
		         "of an unknown id, want 1",
		    calls);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_api_get_product_fields),
	    cmocka_unit_test(test_api_get_miss_then_hit),
	    cmocka_unit_test(test_api_cache_entry_has_version_prefix),
	    cmocka_unit_test(test_api_if_none_match),
	    cmocka_unit_test(test_api_head_product),
	    cmocka_unit_test(test_api_unknown_id_404),
	    cmocka_unit_test(test_api_bad_ids_400),
	    cmocka_unit_test(test_api_request_id_echoed),
	    cmocka_unit_test(test_api_request_id_insane_replaced),
	    cmocka_unit_test(test_api_request_id_generated),
	    cmocka_unit_test(test_api_list_default),
	    cmocka_unit_test(test_api_list_limits),
	    cmocka_unit_test(test_api_list_paging),
	    cmocka_unit_test(test_api_list_bad_params_400),
	    cmocka_unit_test(test_api_healthz),
	    cmocka_unit_test(test_api_readyz),
	    cmocka_unit_test(test_api_unknown_path_404),
	    cmocka_unit_test(test_api_wrong_method_405),
	    cmocka_unit_test(test_api_negative_entry_asks_db_once),
	};

	int failed;

	signal(SIGPIPE, SIG_IGN);
	failed = cmocka_run_group_tests_name(
	    "api", tests, group_setup, group_teardown);
	return failed != 0 || it_stack_failures() != 0;
}
