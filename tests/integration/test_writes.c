/* test_writes.c - POST, PUT, PATCH and DELETE of docs/consistency.md over
 * real HTTP: every status code, If-Match, Idempotency-Key, and the cache
 * entries that a write must remove.
 *
 * Group setup seeds 45 products, empties Redis and starts two replicas
 * and one gateway (GATEWAY_MAX_BODY_BYTES=8192); teardown stops them by
 * pid. Products created here use skus unique to this process.
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
#define MAX_BODY  8192

static it_stack stack;
static int      gw; /* the gateway's port */
static int      redis_port;

static const char *const gw_env[] = {"GATEWAY_MAX_BODY_BYTES=8192", NULL};

static int
group_setup(void **state)
{
	(void) state;
	if ((redis_port = it_redis_port()) < 0 ||
	    it_seed_products(NPRODUCTS) != 0 ||
	    it_redis_flushall(redis_port) != 0) {
		return -1;
	}
	if (it_stack_start(&stack, 2, NULL, gw_env) != 0) {
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

/* ---- helpers ----------------------------------------------------------- */

/* POSTs body (application/json) with optional extra headers, expects 201
 * and returns the new id, checking Location, ETag "1" and version 1. */
static int64_t
create(const char *body, const char *const extra[], json_object **out)
{
	it_http_resp r;
	json_object *o;
	int64_t      id;
	char         loc[64];

	it_must_json(&r, gw, "POST", "/products", IT_JSON, extra, body);
	it_expect_status(&r, 201);
	o = it_json(&r);
	id = it_json_int(o, "id");
	it_expect_product_shape(o, id);
	assert_int_equal(it_json_int(o, "version"), 1);
	snprintf(loc, sizeof(loc), "/products/%" PRId64, id);
	it_expect_header(&r, "Location", loc);
	it_expect_header(&r, "ETag", "\"1\"");
	it_http_resp_free(&r);
	if (out != NULL) {
		*out = o;
	} else {
		json_object_put(o);
	}
	return id;
}

/* Creates a product with a fresh sku and returns its id. */
static int64_t
create_fresh(char *sku, size_t len)
{
	char body[512];

	it_unique(sku, len, "W");
	it_product_body(
	    body, sizeof(body), sku, "Fresh", "a fresh one", 1000, "EUR", 5);
	return create(body, NULL, NULL);
}

/* GETs /products/id through the gateway, expects 200 and returns the
 * version (ETag and body must agree). X-Cache goes to xc when not NULL. */
static long long
get_version(int port, int64_t id, char *xc, size_t xclen)
{
	it_http_resp r;
	json_object *o;
	char         path[64];
	long long    v;

	snprintf(path, sizeof(path), "/products/%" PRId64, id);
	it_must_get(&r, port, path, NULL);
	it_expect_status(&r, 200);
	o = it_json(&r);
	it_expect_product_shape(o, id);
	v = it_json_int(o, "version");
	if (it_etag_version(&r) != v) {
		it_print_resp(&r);
		fail_msg("ETag does not match body version %lld", v);
	}
	if (xc != NULL) {
		const char *h = it_http_header(&r, "X-Cache");
		snprintf(xc, xclen, "%s", h ? h : "");
	}
	json_object_put(o);
	it_http_resp_free(&r);
	return v;
}

/* GETs /products/id and expects status. */
static void
expect_get_status(int64_t id, int status)
{
	it_http_resp r;
	char         path[64];

	snprintf(path, sizeof(path), "/products/%" PRId64, id);
	it_must_get(&r, gw, path, NULL);
	if (r.status != status) {
		it_print_resp(&r);
		fail_msg("GET %s: status %d, want %d", path, r.status, status);
	}
	it_http_resp_free(&r);
}

/* GETs id until the gateway answers X-Cache: HIT with version (the fill
 * trails the first MISS); fails after 3 s. */
static void
make_cached(int64_t id, long long version)
{
	int64_t end = it_now_ms() + 3000;
	char    xc[32] = "";

	while (it_now_ms() < end) {
		assert_int_equal(get_version(gw, id, xc, sizeof(xc)), version);
		if (strcmp(xc, "HIT") == 0) {
			return;
		}
		it_sleep_ms(30);
	}
	fail_msg("product %" PRId64 " never answered X-Cache: HIT (last %s)",
	    id, xc);
}

/* Sends method on /products/id with body (Content-Type ctype when body is
 * not NULL) and extra headers; returns the answer (free it). */
static void
send_id(it_http_resp *r, const char *method, int64_t id, const char *ctype,
    const char *const extra[], const char *body)
{
	char path[64];

	snprintf(path, sizeof(path), "/products/%" PRId64, id);
	it_must_json(r, gw, method, path, body ? ctype : NULL, extra, body);
}

/* Waits up to timeout_ms for product:{id} to hold exactly want. */
static int
wait_entry(int64_t id, const char *want, size_t wlen, int timeout_ms)
{
	int64_t end = it_now_ms() + timeout_ms;
	char    key[64];

	snprintf(key, sizeof(key), "product:%" PRId64, id);
	for (;;) {
		size_t len;
		int    found, ok;
		char  *v = it_redis_get(redis_port, key, &len, &found);
		ok = found == 1 && len == wlen && memcmp(v, want, wlen) == 0;
		free(v);
		if (ok) {
			return 0;
		}
		if (it_now_ms() >= end) {
			return -1;
		}
		it_sleep_ms(20);
	}
}

/* ---- POST -------------------------------------------------------------- */

static void
test_writes_create_201(void **state)
{
	char         sku[64], body[512];
	json_object *o, *g;
	it_http_resp r;
	int64_t      id;

	(void) state;
	it_unique(sku, sizeof(sku), "C");
	it_product_body(body, sizeof(body), sku, "Desk lamp",
	    "Bright \\\"and\\\" warm \\u00fc", 1999, "EUR", 10);
	id = create(body, NULL, &o);
	assert_true(id > NPRODUCTS);
	assert_string_equal(it_json_str(o, "sku"), sku);
	assert_string_equal(it_json_str(o, "name"), "Desk lamp");
	assert_string_equal(
	    it_json_str(o, "description"), "Bright \"and\" warm \u00fc");
	assert_int_equal(it_json_int(o, "price_cents"), 1999);
	assert_string_equal(it_json_str(o, "currency"), "EUR");
	assert_int_equal(it_json_int(o, "stock"), 10);
	assert_int_equal(it_rows_with_sku(sku), 1);
	assert_int_equal(it_row_version(id), 1);

	/* GET shows the same product. */
	send_id(&r, "GET", id, NULL, NULL, NULL);
	it_expect_status(&r, 200);
	it_expect_header(&r, "ETag", "\"1\"");
	g = it_json(&r);
	if (!json_object_equal(o, g)) {
		fail_msg("GET after POST differs:\n  POST %s\n  GET  %s",
		    json_object_to_json_string(o),
		    json_object_to_json_string(g));
	}
	json_object_put(g);
	json_object_put(o);
	it_http_resp_free(&r);
}

static void
test_writes_create_defaults(void **state)
{
	char         sku[64], body[256];
	json_object *o;

	(void) state;
	it_unique(sku, sizeof(sku), "D");
	snprintf(body, sizeof(body),
	    "{\"sku\":\"%s\",\"name\":\"Only required\",\"price_cents\":0}",
	    sku);
	create(body, NULL, &o);
	assert_string_equal(it_json_str(o, "description"), "");
	assert_string_equal(it_json_str(o, "currency"), "USD");
	assert_int_equal(it_json_int(o, "stock"), 0);
	assert_int_equal(it_json_int(o, "price_cents"), 0);
	json_object_put(o);
}

static void
test_writes_create_json_charset_ok(void **state)
{
	char         sku[64], body[512];
	it_http_resp r;

	(void) state;
	it_unique(sku, sizeof(sku), "J");
	it_product_body(body, sizeof(body), sku, "n", "", 1, "USD", 1);
	it_must_json(&r, gw, "POST", "/products",
	    "application/json; charset=utf-8", NULL, body);
	it_expect_status(&r, 201);
	it_http_resp_free(&r);
}

static void
test_writes_create_boundaries_ok(void **state)
{
	char   sku[80], *body, *name, *desc, *longsku, *uname;
	size_t blen = 16384;

	(void) state;
	body = malloc(blen);
	assert_non_null(body);
	name = it_repeat("n", 200);
	desc = it_repeat("d", 4000);
	uname = it_repeat("\\u00fc", 200); /* 200 characters, 400 bytes */

	/* sku of 64 characters from the whole alphabet. */
	it_unique(sku, sizeof(sku), "B._-z9");
	longsku = it_repeat("x", 64 - strlen(sku));
	snprintf(body, blen,
	    "{\"sku\":\"%s%s\",\"name\":\"%s\",\"description\":\"%s\","
	    "\"price_cents\":1000000000000,\"currency\":\"ZZZ\","
	    "\"stock\":2147483647}",
	    sku, longsku, name, desc);
	create(body, NULL, NULL);

	it_unique(sku, sizeof(sku), "B");
	snprintf(body, blen,
	    "{\"sku\":\"%s\",\"name\":\"%s\",\"price_cents\":0,\"stock\":0}",
	    sku, uname);
	create(body, NULL, NULL);

	free(longsku);
	free(uname);
	free(name);
	free(desc);
	free(body);
}

/* ---- PUT, PATCH, DELETE ------------------------------------------------ */

static void
test_writes_replace_200(void **state)
{
	char         sku[64], sku2[64], body[512];
	it_http_resp r;
	json_object *o;
	int64_t      id;

	(void) state;
	id = create_fresh(sku, sizeof(sku));
	it_unique(sku2, sizeof(sku2), "R");
	it_product_body(
	    body, sizeof(body), sku2, "Replaced", "new text", 42, "GBP", 77);
	send_id(&r, "PUT", id, IT_JSON, NULL, body);
	it_expect_status(&r, 200);
	it_expect_header(&r, "ETag", "\"2\"");
	o = it_json(&r);
	it_expect_product_shape(o, id);
	assert_string_equal(it_json_str(o, "sku"), sku2);
	assert_string_equal(it_json_str(o, "name"), "Replaced");
	assert_string_equal(it_json_str(o, "description"), "new text");
	assert_int_equal(it_json_int(o, "price_cents"), 42);
	assert_string_equal(it_json_str(o, "currency"), "GBP");
	assert_int_equal(it_json_int(o, "stock"), 77);
	assert_int_equal(it_json_int(o, "version"), 2);
	json_object_put(o);
	it_http_resp_free(&r);
	assert_int_equal(it_row_version(id), 2);

	/* PUT replaces every mutable field: left out means the default. */
	snprintf(body, sizeof(body),
	    "{\"sku\":\"%s\",\"name\":\"Bare\",\"price_cents\":7}", sku2);
	send_id(&r, "PUT", id, IT_JSON, NULL, body);
	it_expect_status(&r, 200);
	it_expect_header(&r, "ETag", "\"3\"");
	o = it_json(&r);
	assert_string_equal(it_json_str(o, "description"), "");
	assert_string_equal(it_json_str(o, "currency"), "USD");
	assert_int_equal(it_json_int(o, "stock"), 0);
	assert_int_equal(it_json_int(o, "price_cents"), 7);
	assert_int_equal(it_json_int(o, "version"), 3);
	json_object_put(o);
	it_http_resp_free(&r);
	assert_int_equal(get_version(gw, id, NULL, 0), 3);
}

static void
test_writes_patch_200(void **state)
{
	char         sku[64];
	it_http_resp r;
	json_object *o;
	int64_t      id;

	(void) state;
	id = create_fresh(sku, sizeof(sku));
	send_id(&r, "PATCH", id, IT_MERGE_PATCH, NULL, "{\"price_cents\":5}");
	it_expect_status(&r, 200);
	it_expect_header(&r, "ETag", "\"2\"");
	o = it_json(&r);
	it_expect_product_shape(o, id);
	assert_int_equal(it_json_int(o, "price_cents"), 5);
	assert_string_equal(it_json_str(o, "sku"), sku);
	assert_string_equal(it_json_str(o, "name"), "Fresh");
	assert_string_equal(it_json_str(o, "description"), "a fresh one");
	assert_string_equal(it_json_str(o, "currency"), "EUR");
	assert_int_equal(it_json_int(o, "stock"), 5);
	assert_int_equal(it_json_int(o, "version"), 2);
	json_object_put(o);
	it_http_resp_free(&r);

	send_id(&r, "PATCH", id, IT_MERGE_PATCH, NULL,
	    "{\"stock\":9,\"description\":\"\",\"name\":\"Patched\"}");
	it_expect_status(&r, 200);
	o = it_json(&r);
	assert_int_equal(it_json_int(o, "price_cents"), 5);
	assert_int_equal(it_json_int(o, "stock"), 9);
	assert_string_equal(it_json_str(o, "description"), "");
	assert_string_equal(it_json_str(o, "name"), "Patched");
	assert_string_equal(it_json_str(o, "currency"), "EUR");
	assert_int_equal(it_json_int(o, "version"), 3);
	json_object_put(o);
	it_http_resp_free(&r);
	assert_int_equal(get_version(gw, id, NULL, 0), 3);
}

static void
test_writes_delete_204(void **state)
{
	char         sku[64];
	it_http_resp r;
	int64_t      id;

	(void) state;
	id = create_fresh(sku, sizeof(sku));
	send_id(&r, "DELETE", id, NULL, NULL, NULL);
	it_expect_status(&r, 204);
	assert_int_equal(r.body_len, 0);
	it_http_resp_free(&r);
	assert_int_equal(it_rows_with_sku(sku), 0);
	expect_get_status(id, 404);

	/* Gone: every write on it is 404 now. */
	send_id(&r, "DELETE", id, NULL, NULL, NULL);
	it_expect_problem(&r, 404, "not-found");
	it_http_resp_free(&r);
	send_id(&r, "PATCH", id, IT_MERGE_PATCH, NULL, "{\"stock\":1}");
	it_expect_problem(&r, 404, "not-found");
	it_http_resp_free(&r);
}

static void
test_writes_unknown_id_404(void **state)
{
	char         body[512];
	it_http_resp r;

	(void) state;
	it_product_body(body, sizeof(body), "NOPE-1", "n", "", 1, "USD", 1);
	send_id(&r, "PUT", 999999, IT_JSON, NULL, body);
	it_expect_problem(&r, 404, "not-found");
	it_http_resp_free(&r);
	send_id(&r, "PATCH", 999999, IT_MERGE_PATCH, NULL, "{\"stock\":1}");
	it_expect_problem(&r, 404, "not-found");
	it_http_resp_free(&r);
	send_id(&r, "DELETE", 999999, NULL, NULL, NULL);
	it_expect_problem(&r, 404, "not-found");
	it_http_resp_free(&r);
	assert_int_equal(it_rows_with_sku("NOPE-1"), 0);
}

/* ---- 400, 422, 413, 415 ------------------------------------------------ */

static void
test_writes_malformed_json_400(void **state)
{
	static const char *const bad[] = {"{", "{\"sku\":}", "not json",
	    "{\"sku\":\"A\",\"name\":\"n\",\"price_cents\":1,}", "",
	    "{\"sku\":\"A\"} trailing"};
	it_http_resp             r;

	(void) state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		it_must_json(
		    &r, gw, "POST", "/products", IT_JSON, NULL, bad[i]);
		if (r.status != 400) {
			it_print_resp(&r);
			fail_msg("POST body '%s': status %d, want 400", bad[i],
			    r.status);
		}
		it_expect_problem(&r, 400, "bad-request");
		it_http_resp_free(&r);
	}
	send_id(&r, "PUT", 2, IT_JSON, NULL, "{\"sku\":");
	it_expect_problem(&r, 400, "bad-request");
	it_http_resp_free(&r);
	send_id(&r, "PATCH", 2, IT_MERGE_PATCH, NULL, "{]");
	it_expect_problem(&r, 400, "bad-request");
	it_http_resp_free(&r);
	assert_int_equal(it_row_version(2), 1);
}

typedef struct bad_case {
	const char *body; /* printf format with one %s: a fresh sku */
	const char *fields[7];
} bad_case;

static void
test_writes_validation_422(void **state)
{
	char *sku65 = it_repeat("s", 65), *name201 = it_repeat("n", 201),
	     *desc4001 = it_repeat("d", 4001);
	char  *bodies[3];
	size_t blen = 16384;
	/* %s is a valid sku unless the case says otherwise. */
	const bad_case cases[] = {
	    {"{\"name\":\"n\",\"price_cents\":1}", {"sku"}},
	    {"{\"sku\":\"%s\",\"price_cents\":1}", {"name"}},
	    {"{\"sku\":\"%s\",\"name\":\"n\"}", {"price_cents"}},
	    {"{}", {"sku", "name", "price_cents"}},
	    {"{\"sku\":\"\",\"name\":\"n\",\"price_cents\":1}", {"sku"}},
	    {"{\"sku\":\"a b\",\"name\":\"n\",\"price_cents\":1}", {"sku"}},
	    {"{\"sku\":\"a/b\",\"name\":\"n\",\"price_cents\":1}", {"sku"}},
	    {"{\"sku\":\"caf\\u00e9\",\"name\":\"n\",\"price_cents\":1}",
	        {"sku"}},
	    {"{\"sku\":\"%s\",\"name\":\"\",\"price_cents\":1}", {"name"}},
	    {"{\"sku\":\"%s\",\"name\":\"n\",\"price_cents\":-1}",
	        {"price_cents"}},
	    {"{\"sku\":\"%s\",\"name\":\"n\",\"price_cents\":1000000000001}",
	        {"price_cents"}},
	    {"{\"sku\":\"%s\",\"name\":\"n\",\"price_cents\":1.5}",
	        {"price_cents"}},
	    {"{\"sku\":\"%s\",\"name\":\"n\",\"price_cents\":\"100\"}",
	        {"price_cents"}},
	    {"{\"sku\":\"%s\",\"name\":\"n\",\"price_cents\":1,"
	     "\"currency\":\"usd\"}",
	        {"currency"}},
	    {"{\"sku\":\"%s\",\"name\":\"n\",\"price_cents\":1,"
	     "\"currency\":\"US\"}",
	        {"currency"}},
	    {"{\"sku\":\"%s\",\"name\":\"n\",\"price_cents\":1,"
	     "\"currency\":\"USDX\"}",
	        {"currency"}},
	    {"{\"sku\":\"%s\",\"name\":\"n\",\"price_cents\":1,"
	     "\"currency\":\"U1D\"}",
	        {"currency"}},
	    {"{\"sku\":\"%s\",\"name\":\"n\",\"price_cents\":1,\"stock\":-1}",
	        {"stock"}},
	    {"{\"sku\":\"%s\",\"name\":\"n\",\"price_cents\":1,"
	     "\"stock\":2147483648}",
	        {"stock"}},
	    {"{\"sku\":\"%s\",\"name\":\"n\",\"price_cents\":1,"
	     "\"stock\":true}",
	        {"stock"}},
	    {"{\"sku\":\"%s\",\"name\":5,\"price_cents\":1}", {"name"}},
	    {"{\"sku\":\"%s\",\"name\":null,\"price_cents\":1}", {"name"}},
	    {"{\"sku\":\"%s\",\"name\":\"n\",\"price_cents\":1,"
	     "\"description\":7}",
	        {"description"}},
	    {"{\"sku\":\"%s\",\"name\":\"n\",\"price_cents\":1,"
	     "\"color\":\"red\"}",
	        {"color"}},
	    {"{\"sku\":\"%s\",\"name\":\"n\",\"price_cents\":1,\"id\":5}",
	        {"id"}},
	    {"{\"sku\":\"%s\",\"name\":\"n\",\"price_cents\":1,"
	     "\"version\":3}",
	        {"version"}},
	    {"{\"sku\":\"\",\"name\":\"\",\"price_cents\":-5,"
	     "\"currency\":\"x\",\"stock\":-1,\"color\":1}",
	        {"sku", "name", "price_cents", "currency", "stock", "color"}},
	};
	char         sku[64], *buf;
	it_http_resp r;

	(void) state;
	buf = malloc(blen);
	assert_non_null(buf);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		it_unique(sku, sizeof(sku), "V");
		snprintf(buf, blen, cases[i].body, sku);
		it_must_json(&r, gw, "POST", "/products", IT_JSON, NULL, buf);
		if (r.status != 422) {
			it_print_resp(&r);
			fail_msg("case %zu POST %s: status %d, want 422", i,
			    buf, r.status);
		}
		it_expect_field_errors(&r, cases[i].fields);
		it_http_resp_free(&r);
		if (strstr(cases[i].body, "%s") != NULL) {
			assert_int_equal(it_rows_with_sku(sku), 0);
		}
	}

	/* Length limits, on every write method. */
	it_unique(sku, sizeof(sku), "L");
	for (int k = 0; k < 3; k++) {
		bodies[k] = malloc(blen);
		assert_non_null(bodies[k]);
	}
	snprintf(bodies[0], blen,
	    "{\"sku\":\"%s\",\"name\":\"n\",\"price_cents\":1}", sku65);
	snprintf(bodies[1], blen,
	    "{\"sku\":\"%s\",\"name\":\"%s\",\"price_cents\":1}", sku,
	    name201);
	snprintf(bodies[2], blen,
	    "{\"sku\":\"%s\",\"name\":\"n\",\"price_cents\":1,"
	    "\"description\":\"%s\"}",
	    sku, desc4001);
	{
		const char *const        f0[] = {"sku", NULL},
		                  *const f1[] = {"name", NULL},
		                  *const f2[] = {"description", NULL};
		const char *const       *fs[] = {f0, f1, f2};
		for (int k = 0; k < 3; k++) {
			it_must_json(&r, gw, "POST", "/products", IT_JSON,
			    NULL, bodies[k]);
			it_expect_field_errors(&r, fs[k]);
			it_http_resp_free(&r);
			send_id(&r, "PUT", 4, IT_JSON, NULL, bodies[k]);
			it_expect_field_errors(&r, fs[k]);
			it_http_resp_free(&r);
		}
	}

	/* PUT needs the required fields; PATCH checks what it is given. */
	{
		const char *const fname[] = {"name", NULL};
		const char *const fprice[] = {"price_cents", NULL};
		const char *const fcolor[] = {"color", NULL};
		const char *const fcur[] = {"currency", NULL};
		send_id(&r, "PUT", 4, IT_JSON, NULL,
		    "{\"sku\":\"IT-0004\",\"price_cents\":1}");
		it_expect_field_errors(&r, fname);
		it_http_resp_free(&r);
		send_id(&r, "PATCH", 4, IT_MERGE_PATCH, NULL,
		    "{\"price_cents\":-1}");
		it_expect_field_errors(&r, fprice);
		it_http_resp_free(&r);
		send_id(&r, "PATCH", 4, IT_MERGE_PATCH, NULL,
		    "{\"color\":\"red\"}");
		it_expect_field_errors(&r, fcolor);
		it_http_resp_free(&r);
		send_id(&r, "PATCH", 4, IT_MERGE_PATCH, NULL,
		    "{\"currency\":\"eur\"}");
		it_expect_field_errors(&r, fcur);
		it_http_resp_free(&r);
	}
	assert_int_equal(it_row_version(4), 1);
	assert_int_equal(it_rows_with_sku(sku), 0);

	/* A body that is JSON but not an object is refused either way. */
	it_must_json(&r, gw, "POST", "/products", IT_JSON, NULL, "[1,2]");
	if (r.status != 400 && r.status != 422) {
		it_print_resp(&r);
		fail_msg("POST [1,2]: status %d, want 400 or 422", r.status);
	}
	it_expect_problem_status(&r, r.status);
	it_http_resp_free(&r);

	for (int k = 0; k < 3; k++) {
		free(bodies[k]);
	}
	free(buf);
	free(sku65);
	free(name201);
	free(desc4001);
}

/* A body over the limit gets 413 and changes nothing. When the body's size
 * is announced by Content-Length, libevent 2.1 refuses it before our
 * handler runs and answers with its own text/html page (README, "Known
 * limit"); any answer of ours must be the payload-too-large problem. */
static void
expect_413(const it_http_resp *r)
{
	const char *ct = it_http_header(r, "Content-Type");
	assert_int_equal(r->status, 413);
	if (ct != NULL && strncmp(ct, "text/html", 9) == 0) {
		print_message(
		    "413 came from libevent's own page (known limit)\n");
		return;
	}
	it_expect_problem(r, 413, "payload-too-large");
}

static void
test_writes_body_too_large_413(void **state)
{
	char        *desc = it_repeat("d", MAX_BODY + 100), *body;
	size_t       blen = MAX_BODY + 512;
	char         sku[64];
	it_http_resp r;

	(void) state;
	body = malloc(blen);
	assert_non_null(body);
	it_unique(sku, sizeof(sku), "BIG");
	snprintf(body, blen,
	    "{\"sku\":\"%s\",\"name\":\"n\",\"price_cents\":1,"
	    "\"description\":\"%s\"}",
	    sku, desc);
	it_must_json(&r, gw, "POST", "/products", IT_JSON, NULL, body);
	expect_413(&r);
	it_http_resp_free(&r);
	send_id(&r, "PUT", 5, IT_JSON, NULL, body);
	expect_413(&r);
	it_http_resp_free(&r);
	assert_int_equal(it_rows_with_sku(sku), 0);
	assert_int_equal(it_row_version(5), 1);
	free(body);
	free(desc);
}

static void
test_writes_not_json_415(void **state)
{
	static const char *const types[] = {
	    "text/plain", "application/x-www-form-urlencoded", "text/json5"};
	char         sku[64], body[512];
	it_http_resp r;

	(void) state;
	it_unique(sku, sizeof(sku), "T");
	it_product_body(body, sizeof(body), sku, "n", "", 1, "USD", 1);
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		it_must_json(
		    &r, gw, "POST", "/products", types[i], NULL, body);
		if (r.status != 415) {
			it_print_resp(&r);
			fail_msg("POST with Content-Type %s: status %d, want "
			         "415",
			    types[i], r.status);
		}
		it_expect_problem_status(&r, 415);
		it_http_resp_free(&r);
	}
	send_id(&r, "PUT", 6, "text/plain", NULL, body);
	it_expect_problem_status(&r, 415);
	it_http_resp_free(&r);
	send_id(&r, "PATCH", 6, "text/plain", NULL, "{\"stock\":1}");
	it_expect_problem_status(&r, 415);
	it_http_resp_free(&r);
	assert_int_equal(it_rows_with_sku(sku), 0);
	assert_int_equal(it_row_version(6), 1);
}

static void
test_writes_duplicate_sku_409(void **state)
{
	char         sku[64], body[512], detail_sku[64];
	it_http_resp r;
	json_object *o;
	int64_t      id;

	(void) state;
	/* A seeded sku. */
	it_product_body(body, sizeof(body), "IT-0001", "dup", "", 1, "USD", 1);
	it_must_json(&r, gw, "POST", "/products", IT_JSON, NULL, body);
	it_expect_problem_status(&r, 409);
	o = it_json(&r);
	snprintf(detail_sku, sizeof(detail_sku), "IT-0001");
	if (strstr(it_json_str(o, "detail"), detail_sku) == NULL) {
		it_print_resp(&r);
		fail_msg("409 detail does not name the sku");
	}
	json_object_put(o);
	it_http_resp_free(&r);
	assert_int_equal(it_rows_with_sku("IT-0001"), 1);

	/* PUT and PATCH onto another product's sku. */
	id = create_fresh(sku, sizeof(sku));
	it_product_body(body, sizeof(body), "IT-0002", "dup", "", 1, "USD", 1);
	send_id(&r, "PUT", id, IT_JSON, NULL, body);
	it_expect_problem_status(&r, 409);
	it_http_resp_free(&r);
	send_id(
	    &r, "PATCH", id, IT_MERGE_PATCH, NULL, "{\"sku\":\"IT-0002\"}");
	it_expect_problem_status(&r, 409);
	it_http_resp_free(&r);
	assert_int_equal(it_row_version(id), 1);
	assert_int_equal(it_rows_with_sku("IT-0002"), 1);
	assert_int_equal(it_rows_with_sku(sku), 1);
}

/* ---- If-Match ---------------------------------------------------------- */

static void
test_writes_if_match_412(void **state)
{
	char              sku[64], body[512];
	const char *const stale[] = {"If-Match: \"1\"", NULL};
	const char *const good[] = {"If-Match: \"2\"", NULL};
	it_http_resp      r;
	json_object      *before, *after;
	int64_t           id;

	(void) state;
	id = create_fresh(sku, sizeof(sku));
	send_id(&r, "PATCH", id, IT_MERGE_PATCH, NULL, "{\"stock\":6}");
	it_expect_status(&r, 200);
	before = it_json(&r);
	it_http_resp_free(&r);

	it_product_body(body, sizeof(body), sku, "Stale", "", 1, "USD", 1);
	send_id(&r, "PUT", id, IT_JSON, stale, body);
	it_expect_problem_status(&r, 412);
	it_http_resp_free(&r);
	send_id(&r, "PATCH", id, IT_MERGE_PATCH, stale, "{\"stock\":1}");
	it_expect_problem_status(&r, 412);
	it_http_resp_free(&r);
	send_id(&r, "DELETE", id, NULL, stale, NULL);
	it_expect_problem_status(&r, 412);
	it_http_resp_free(&r);

	/* Nothing changed. */
	assert_int_equal(it_row_version(id), 2);
	send_id(&r, "GET", id, NULL, NULL, NULL);
	it_expect_status(&r, 200);
	after = it_json(&r);
	if (!json_object_equal(before, after)) {
		fail_msg(
		    "a 412 changed the product:\n  before %s\n  after  %s",
		    json_object_to_json_string(before),
		    json_object_to_json_string(after));
	}
	json_object_put(before);
	json_object_put(after);
	it_http_resp_free(&r);

	/* The current version goes through, each time once. */
	send_id(&r, "PUT", id, IT_JSON, good, body);
	it_expect_status(&r, 200);
	it_expect_header(&r, "ETag", "\"3\"");
	it_http_resp_free(&r);
	send_id(&r, "PATCH", id, IT_MERGE_PATCH, good, "{\"stock\":2}");
	it_expect_problem_status(&r, 412);
	it_http_resp_free(&r);
	{
		const char *const v3[] = {"If-Match: \"3\"", NULL};
		send_id(&r, "PATCH", id, IT_MERGE_PATCH, v3, "{\"stock\":2}");
		it_expect_status(&r, 200);
		it_expect_header(&r, "ETag", "\"4\"");
		it_http_resp_free(&r);
		send_id(&r, "DELETE", id, NULL, v3, NULL);
		it_expect_problem_status(&r, 412);
		it_http_resp_free(&r);
	}
	{
		const char *const v4[] = {"If-Match: \"4\"", NULL};
		send_id(&r, "DELETE", id, NULL, v4, NULL);
		it_expect_status(&r, 204);
		it_http_resp_free(&r);
	}
	assert_int_equal(it_row_version(id), 0);
}

typedef struct put_race {
	int64_t id;
	int     version;
	int     status[2];
	char    body[2][512];
} put_race;

static void
put_race_one(int i, void *arg)
{
	put_race    *pr = arg;
	char         ifm[64], path[64];
	const char  *extra[] = {ifm, NULL};
	it_http_resp r;

	snprintf(ifm, sizeof(ifm), "If-Match: \"%d\"", pr->version);
	snprintf(path, sizeof(path), "/products/%" PRId64, pr->id);
	pr->status[i] = -1;
	if (it_http_json(&r, gw, "PUT", path, IT_JSON, extra, pr->body[i]) ==
	    0) {
		pr->status[i] = r.status;
		it_http_resp_free(&r);
	}
}

static void
test_writes_if_match_concurrent(void **state)
{
	char     sku[64];
	put_race pr;
	int      rounds = 15;

	(void) state;
	memset(&pr, 0, sizeof(pr));
	pr.id = create_fresh(sku, sizeof(sku));
	for (int round = 0; round < rounds; round++) {
		pr.version = round + 1;
		for (int i = 0; i < 2; i++) {
			it_product_body(pr.body[i], sizeof(pr.body[i]), sku,
			    i ? "Writer B" : "Writer A", "", 100 + round,
			    "USD", i);
		}
		assert_int_equal(it_parallel(2, put_race_one, &pr), 0);
		if (!((pr.status[0] == 200 && pr.status[1] == 412) ||
		        (pr.status[0] == 412 && pr.status[1] == 200))) {
			fail_msg("round %d: two PUTs with If-Match \"%d\" got "
			         "%d and %d, want one 200 and one 412",
			    round, pr.version, pr.status[0], pr.status[1]);
		}
		assert_int_equal(it_row_version(pr.id), round + 2);
	}
	print_message("  %d rounds of two concurrent PUTs with one ETag: "
	              "exactly one 200 each time\n",
	    rounds);
}

/* ---- cache invalidation ------------------------------------------------ */

static void
test_writes_put_invalidates_cached(void **state)
{
	char         body[512];
	it_http_resp r;

	(void) state;
	make_cached(7, 1);
	it_product_body(
	    body, sizeof(body), "IT-0007", "Product 7 v2", "", 799, "USD", 7);
	send_id(&r, "PUT", 7, IT_JSON, NULL, body);
	it_expect_status(&r, 200);
	it_expect_header(&r, "ETag", "\"2\"");
	it_http_resp_free(&r);
	/* Immediately and on every later read: version 2 (both replicas). */
	for (int i = 0; i < 10; i++) {
		long long v = get_version(gw, 7, NULL, 0);
		if (v != 2) {
			fail_msg("GET %d after the PUT: version %lld, want 2",
			    i + 1, v);
		}
	}
	make_cached(7, 2);

	/* PATCH as well. */
	send_id(&r, "PATCH", 7, IT_MERGE_PATCH, NULL, "{\"stock\":70}");
	it_expect_status(&r, 200);
	it_http_resp_free(&r);
	for (int i = 0; i < 10; i++) {
		long long v = get_version(gw, 7, NULL, 0);
		if (v != 3) {
			fail_msg(
			    "GET %d after the PATCH: version %lld, want 3",
			    i + 1, v);
		}
	}
}

static void
test_writes_delete_invalidates_cached(void **state)
{
	it_http_resp r;

	(void) state;
	make_cached(8, 1);
	send_id(&r, "DELETE", 8, NULL, NULL, NULL);
	it_expect_status(&r, 204);
	it_http_resp_free(&r);
	for (int i = 0; i < 10; i++) {
		expect_get_status(8, 404);
	}
}

static void
test_writes_create_clears_negative(void **state)
{
	char    sku[64];
	int64_t x, y;

	(void) state;
	x = create_fresh(sku, sizeof(sku));
	expect_get_status(x + 1, 404);
	if (wait_entry(x + 1, "N", 1, 2000) != 0) {
		fail_msg(
		    "no negative entry for %" PRId64 " after a 404", x + 1);
	}
	expect_get_status(x + 1, 404); /* served from the entry */
	y = create_fresh(sku, sizeof(sku));
	if (y != x + 1) {
		fail_msg("the next POST got id %" PRId64 ", want %" PRId64
		         " (no other writer runs)",
		    y, x + 1);
	}
	for (int i = 0; i < 10; i++) {
		if (get_version(gw, y, NULL, 0) != 1) {
			fail_msg(
			    "GET new product %" PRId64 ": wrong version", y);
		}
	}
}

/* ---- Idempotency-Key --------------------------------------------------- */

static void
test_writes_idem_replay(void **state)
{
	char         sku[64], key[96], hdr[128], body[512];
	const char  *extra[] = {hdr, NULL};
	it_http_resp r1, r2;
	json_object *o1, *o2;

	(void) state;
	it_unique(sku, sizeof(sku), "I");
	it_unique(key, sizeof(key), "key");
	snprintf(hdr, sizeof(hdr), "Idempotency-Key: %s", key);
	it_product_body(body, sizeof(body), sku, "Once", "", 500, "USD", 1);

	it_must_json(&r1, gw, "POST", "/products", IT_JSON, extra, body);
	it_expect_status(&r1, 201);
	if (it_http_header(&r1, "Idempotent-Replayed") != NULL &&
	    strcmp(it_http_header(&r1, "Idempotent-Replayed"), "true") == 0) {
		it_print_resp(&r1);
		fail_msg("the first POST says it was replayed");
	}
	it_must_json(&r2, gw, "POST", "/products", IT_JSON, extra, body);
	it_expect_status(&r2, 201);
	it_expect_header(&r2, "Idempotent-Replayed", "true");
	it_expect_header(&r2, "Location", it_http_header(&r1, "Location"));
	it_expect_header(&r2, "ETag", it_http_header(&r1, "ETag"));
	o1 = it_json(&r1);
	o2 = it_json(&r2);
	if (!json_object_equal(o1, o2)) {
		fail_msg("replayed body differs:\n  first  %s\n  replay %s",
		    json_object_to_json_string(o1),
		    json_object_to_json_string(o2));
	}
	assert_int_equal(it_rows_with_sku(sku), 1);

	/* Still a replay after the product changed. */
	{
		char         path[64];
		it_http_resp r3;
		json_object *o3;
		snprintf(path, sizeof(path), "/products/%" PRId64,
		    it_json_int(o1, "id"));
		it_must_json(&r3, gw, "PATCH", path, IT_MERGE_PATCH, NULL,
		    "{\"stock\":2}");
		it_expect_status(&r3, 200);
		it_http_resp_free(&r3);
		it_must_json(
		    &r3, gw, "POST", "/products", IT_JSON, extra, body);
		it_expect_status(&r3, 201);
		it_expect_header(&r3, "Idempotent-Replayed", "true");
		o3 = it_json(&r3);
		assert_true(json_object_equal(o1, o3));
		json_object_put(o3);
		it_http_resp_free(&r3);
	}
	assert_int_equal(it_rows_with_sku(sku), 1);
	json_object_put(o1);
	json_object_put(o2);
	it_http_resp_free(&r1);
	it_http_resp_free(&r2);
}

static void
test_writes_idem_other_body_422(void **state)
{
	char         sku[64], key[96], hdr[128], body[512];
	const char  *extra[] = {hdr, NULL};
	it_http_resp r;

	(void) state;
	it_unique(sku, sizeof(sku), "I");
	it_unique(key, sizeof(key), "key");
	snprintf(hdr, sizeof(hdr), "Idempotency-Key: %s", key);
	it_product_body(body, sizeof(body), sku, "First", "", 500, "USD", 1);
	it_must_json(&r, gw, "POST", "/products", IT_JSON, extra, body);
	it_expect_status(&r, 201);
	it_http_resp_free(&r);

	it_product_body(body, sizeof(body), sku, "Second", "", 501, "USD", 1);
	it_must_json(&r, gw, "POST", "/products", IT_JSON, extra, body);
	it_expect_problem_status(&r, 422);
	it_http_resp_free(&r);
	assert_int_equal(it_rows_with_sku(sku), 1);
	assert_int_equal(
	    it_pg_scalar_ll("SELECT count(*) FROM products WHERE name = "
	                    "'Second'",
	        -1),
	    0);
}

#define IDEM_THREADS 20

typedef struct idem_race {
	char  method[8];
	char  path[64];
	char  hdr[128];
	char  body[512];
	int   status[IDEM_THREADS];
	int   replayed[IDEM_THREADS];
	char *resp[IDEM_THREADS];
} idem_race;

static void
idem_race_one(int i, void *arg)
{
	idem_race   *ir = arg;
	const char  *extra[] = {ir->hdr, NULL};
	it_http_resp r;
	const char  *rp;

	ir->status[i] = -1;
	if (it_http_json(
	        &r, gw, ir->method, ir->path, IT_JSON, extra, ir->body) != 0) {
		return;
	}
	ir->status[i] = r.status;
	rp = it_http_header(&r, "Idempotent-Replayed");
	ir->replayed[i] = rp != NULL && strcmp(rp, "true") == 0;
	ir->resp[i] = r.body;
	r.body = NULL;
	it_http_resp_free(&r);
}

/* Runs IDEM_THREADS copies of one request together and checks: each is
 * ok_status (exactly one not replayed, the others replayed with the same
 * body) or 409. */
static void
idem_race_check(idem_race *ir, int ok_status)
{
	int          plain = 0, replays = 0, conflicts = 0, first = -1;
	json_object *o0 = NULL;

	assert_int_equal(it_parallel(IDEM_THREADS, idem_race_one, ir), 0);
	for (int i = 0; i < IDEM_THREADS; i++) {
		if (ir->status[i] == ok_status && !ir->replayed[i]) {
			plain++;
			first = i;
		} else if (ir->status[i] == ok_status) {
			replays++;
		} else if (ir->status[i] == 409) {
			conflicts++;
		} else {
			fail_msg("%s %s with one Idempotency-Key from %d "
			         "threads: thread %d got %d (body %s)",
			    ir->method, ir->path, IDEM_THREADS, i,
			    ir->status[i], ir->resp[i] ? ir->resp[i] : "");
		}
	}
	print_message("  %d concurrent %s with one key: %d applied, %d "
	              "replayed, %d conflict (409)\n",
	    IDEM_THREADS, ir->method, plain, replays, conflicts);
	if (plain != 1) {
		fail_msg("%d answers were %d without Idempotent-Replayed, "
		         "want exactly 1",
		    plain, ok_status);
	}
	if (ok_status != 204) {
		o0 = json_tokener_parse(ir->resp[first]);
		assert_non_null(o0);
		for (int i = 0; i < IDEM_THREADS; i++) {
			json_object *o;
			if (i == first || ir->status[i] != ok_status) {
				continue;
			}
			o = json_tokener_parse(ir->resp[i]);
			if (o == NULL || !json_object_equal(o0, o)) {
				fail_msg("replay %d differs: %s vs %s", i,
				    ir->resp[i], ir->resp[first]);
			}
			json_object_put(o);
		}
		json_object_put(o0);
	}
	for (int i = 0; i < IDEM_THREADS; i++) {
		free(ir->resp[i]);
		ir->resp[i] = NULL;
	}
}

static void
test_writes_idem_concurrent_post(void **state)
{
	char       sku[64], key[96];
	idem_race *ir = calloc(1, sizeof(*ir));

	(void) state;
	assert_non_null(ir);
	it_unique(sku, sizeof(sku), "IC");
	it_unique(key, sizeof(key), "key");
	snprintf(ir->method, sizeof(ir->method), "POST");
	snprintf(ir->path, sizeof(ir->path), "/products");
	snprintf(ir->hdr, sizeof(ir->hdr), "Idempotency-Key: %s", key);
	it_product_body(
	    ir->body, sizeof(ir->body), sku, "Concurrent", "", 900, "USD", 3);
	idem_race_check(ir, 201);
	assert_int_equal(it_rows_with_sku(sku), 1);
	free(ir);
}

static void
test_writes_idem_concurrent_put(void **state)
{
	char       sku[64], key[96];
	idem_race *ir = calloc(1, sizeof(*ir));
	int64_t    id;

	(void) state;
	assert_non_null(ir);
	id = create_fresh(sku, sizeof(sku));
	it_unique(key, sizeof(key), "key");
	snprintf(ir->method, sizeof(ir->method), "PUT");
	snprintf(ir->path, sizeof(ir->path), "/products/%" PRId64, id);
	snprintf(ir->hdr, sizeof(ir->hdr), "Idempotency-Key: %s", key);
	it_product_body(
	    ir->body, sizeof(ir->body), sku, "Put once", "", 901, "USD", 3);
	idem_race_check(ir, 200);
	/* Applied once: version 1 -> 2, never more. */
	assert_int_equal(it_row_version(id), 2);
	free(ir);
}

static void
test_writes_idem_put_delete(void **state)
{
	char         sku[64], key[96], hdr[128], body[512], path[64];
	const char  *extra[] = {hdr, NULL};
	it_http_resp r;
	int64_t      id;

	(void) state;
	id = create_fresh(sku, sizeof(sku));
	snprintf(path, sizeof(path), "/products/%" PRId64, id);

	/* PUT with a key: applied once, replayed after. */
	it_unique(key, sizeof(key), "key");
	snprintf(hdr, sizeof(hdr), "Idempotency-Key: %s", key);
	it_product_body(body, sizeof(body), sku, "Keyed", "", 5, "USD", 1);
	it_must_json(&r, gw, "PUT", path, IT_JSON, extra, body);
	it_expect_status(&r, 200);
	it_expect_header(&r, "ETag", "\"2\"");
	it_http_resp_free(&r);
	it_must_json(&r, gw, "PUT", path, IT_JSON, extra, body);
	it_expect_status(&r, 200);
	it_expect_header(&r, "Idempotent-Replayed", "true");
	it_expect_header(&r, "ETag", "\"2\"");
	it_http_resp_free(&r);
	assert_int_equal(it_row_version(id), 2);

	/* PATCH with a key. */
	it_unique(key, sizeof(key), "key");
	snprintf(hdr, sizeof(hdr), "Idempotency-Key: %s", key);
	it_must_json(
	    &r, gw, "PATCH", path, IT_MERGE_PATCH, extra, "{\"stock\":11}");
	it_expect_status(&r, 200);
	it_expect_header(&r, "ETag", "\"3\"");
	it_http_resp_free(&r);
	it_must_json(
	    &r, gw, "PATCH", path, IT_MERGE_PATCH, extra, "{\"stock\":11}");
	it_expect_status(&r, 200);
	it_expect_header(&r, "Idempotent-Replayed", "true");
	it_http_resp_free(&r);
	assert_int_equal(it_row_version(id), 3);

	/* DELETE with a key: 204, and 204 replayed (not 404) again. */
	it_unique(key, sizeof(key), "key");
	snprintf(hdr, sizeof(hdr), "Idempotency-Key: %s", key);
	it_must_json(&r, gw, "DELETE", path, NULL, extra, NULL);
	it_expect_status(&r, 204);
	it_http_resp_free(&r);
	it_must_json(&r, gw, "DELETE", path, NULL, extra, NULL);
	it_expect_status(&r, 204);
	it_expect_header(&r, "Idempotent-Replayed", "true");
	it_http_resp_free(&r);
	assert_int_equal(it_rows_with_sku(sku), 0);
	expect_get_status(id, 404);
}

/* ---- group "redis-down": a write that cannot fence the cache ---------- */

static it_proc own_redis;
static int     own_redis_port;

static int
redis_down_setup(void **state)
{
	char url[64];

	(void) state;
	if (it_seed_products(NPRODUCTS) != 0 ||
	    (own_redis_port = it_free_port()) < 0 ||
	    it_redis_server_start(&own_redis, own_redis_port) != 0) {
		return -1;
	}
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", own_redis_port);
	if (it_stack_start(&stack, 2, url, gw_env) != 0) {
		it_proc_stop(&own_redis, SIGKILL, 2000);
		return -1;
	}
	gw = stack.gw_port;
	return 0;
}

static int
redis_down_teardown(void **state)
{
	int rv;

	(void) state;
	rv = it_stack_stop(&stack);
	it_proc_stop(&own_redis, SIGTERM, 5000);
	return rv;
}

static void
test_writes_redis_down_503(void **state)
{
	char         sku[64], body[512];
	it_http_resp r;
	const char  *ra;

	(void) state;
	assert_int_equal(it_proc_stop(&own_redis, SIGTERM, 5000), 0);
	it_unique(sku, sizeof(sku), "RD");
	it_product_body(body, sizeof(body), sku, "n", "", 1, "USD", 1);
	it_must_json(&r, gw, "POST", "/products", IT_JSON, NULL, body);
	it_expect_problem(&r, 503, "unavailable");
	ra = it_http_header(&r, "Retry-After");
	if (ra == NULL || atoi(ra) < 1) {
		it_print_resp(&r);
		fail_msg("503 without a Retry-After of at least 1 s");
	}
	it_http_resp_free(&r);
	it_product_body(body, sizeof(body), "IT-0009", "n", "", 1, "USD", 1);
	send_id(&r, "PUT", 9, IT_JSON, NULL, body);
	it_expect_problem(&r, 503, "unavailable");
	it_http_resp_free(&r);
	send_id(&r, "PATCH", 9, IT_MERGE_PATCH, NULL, "{\"stock\":1}");
	it_expect_problem(&r, 503, "unavailable");
	it_http_resp_free(&r);
	send_id(&r, "DELETE", 9, NULL, NULL, NULL);
	it_expect_problem(&r, 503, "unavailable");
	it_http_resp_free(&r);

	/* PostgreSQL was not touched; reads still work (BYPASS). */
	assert_int_equal(it_rows_with_sku(sku), 0);
	assert_int_equal(it_row_version(9), 1);
	send_id(&r, "GET", 9, NULL, NULL, NULL);
	it_expect_status(&r, 200);
	it_expect_header(&r, "X-Cache", "BYPASS");
	it_expect_header(&r, "ETag", "\"1\"");
	it_http_resp_free(&r);
}

static void
test_writes_redis_back_writes_work(void **state)
{
	char         body[512];
	it_http_resp r;
	int64_t      end;
	int          st = 0;

	(void) state;
	assert_int_equal(it_redis_server_start(&own_redis, own_redis_port), 0);
	it_product_body(
	    body, sizeof(body), "IT-0009", "back", "", 1, "USD", 1);
	/* The replicas reconnect with back-off: retry a few seconds. */
	end = it_now_ms() + 10000;
	while (it_now_ms() < end) {
		send_id(&r, "PUT", 9, IT_JSON, NULL, body);
		st = r.status;
		it_http_resp_free(&r);
		if (st != 503) {
			break;
		}
		it_sleep_ms(200);
	}
	assert_int_equal(st, 200);
	assert_int_equal(it_row_version(9), 2);
	assert_int_equal(get_version(gw, 9, NULL, 0), 2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_writes_create_201),
	    cmocka_unit_test(test_writes_create_defaults),
	    cmocka_unit_test(test_writes_create_json_charset_ok),
	    cmocka_unit_test(test_writes_create_boundaries_ok),
	    cmocka_unit_test(test_writes_replace_200),
	    cmocka_unit_test(test_writes_patch_200),
	    cmocka_unit_test(test_writes_delete_204),
	    cmocka_unit_test(test_writes_unknown_id_404),
	    cmocka_unit_test(test_writes_malformed_json_400),
	    cmocka_unit_test(test_writes_validation_422),
	    cmocka_unit_test(test_writes_body_too_large_413),
	    cmocka_unit_test(test_writes_not_json_415),
	    cmocka_unit_test(test_writes_duplicate_sku_409),
	    cmocka_unit_test(test_writes_if_match_412),
	    cmocka_unit_test(test_writes_if_match_concurrent),
	    cmocka_unit_test(test_writes_put_invalidates_cached),
	    cmocka_unit_test(test_writes_delete_invalidates_cached),
	    cmocka_unit_test(test_writes_create_clears_negative),
	    cmocka_unit_test(test_writes_idem_replay),
	    cmocka_unit_test(test_writes_idem_other_body_422),
	    cmocka_unit_test(test_writes_idem_concurrent_post),
	    cmocka_unit_test(test_writes_idem_concurrent_put),
	    cmocka_unit_test(test_writes_idem_put_delete),
	};

	const struct CMUnitTest redis_tests[] = {
	    cmocka_unit_test(test_writes_redis_down_503),
	    cmocka_unit_test(test_writes_redis_back_writes_work),
	};

	int failed;

	signal(SIGPIPE, SIG_IGN);
	failed = cmocka_run_group_tests_name(
	    "writes", tests, group_setup, group_teardown);
	failed += cmocka_run_group_tests_name("writes-redis-down", redis_tests,
	    redis_down_setup, redis_down_teardown);
	return failed != 0 || it_stack_failures() != 0;
}
