/* test_gw_route.c - route table, strict ids, list params, If-None-Match. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "gw.h"

static gw_route
match(unsigned m, const char *path, const char *query)
{
	gw_route r;
	gw_route_match(m, path, query, &r);
	return r;
}

static void
test_route_healthz_and_readyz(void **state)
{
	(void) state;
	assert_int_equal(
	    match(GW_M_GET, "/healthz", NULL).id, GW_ROUTE_HEALTHZ);
	assert_int_equal(
	    match(GW_M_HEAD, "/healthz", NULL).id, GW_ROUTE_HEALTHZ);
	assert_int_equal(
	    match(GW_M_GET, "/readyz", "x=1").id, GW_ROUTE_READYZ);
	assert_int_equal(match(GW_M_GET, "/readyz", NULL).status, 0);
}

static void
test_route_unknown_path_is_404(void **state)
{
	const char *paths[] = {"/", "/nope", "/healthz/", "/products/1/",
	    "/products/1/x", "//products", "/Products", "/productsx",
	    "products"};
	(void) state;
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		gw_route r = match(GW_M_GET, paths[i], NULL);
		assert_int_equal(r.status, 404);
		assert_int_equal(r.id, GW_ROUTE_NONE);
	}
}

static void
test_route_other_method_is_405_with_allow(void **state)
{
	unsigned item_bad[] = {GW_M_POST, GW_M_OPTIONS, 0};
	unsigned coll_bad[] = {
	    GW_M_PUT, GW_M_PATCH, GW_M_DELETE, GW_M_OPTIONS, 0};
	(void) state;
	for (size_t i = 0; i < sizeof(item_bad) / sizeof(item_bad[0]); i++) {
		gw_route r = match(item_bad[i], "/products/7", NULL);
		assert_int_equal(r.status, 405);
		assert_string_equal(r.allow, "GET, HEAD, PUT, PATCH, DELETE");
		r = match(item_bad[i], "/healthz", NULL);
		assert_int_equal(r.status, 405);
		assert_string_equal(r.allow, "GET, HEAD");
	}
	for (size_t i = 0; i < sizeof(coll_bad) / sizeof(coll_bad[0]); i++) {
		gw_route r = match(coll_bad[i], "/products", NULL);
		assert_int_equal(r.status, 405);
		assert_string_equal(r.allow, "GET, HEAD, POST");
		r = match(coll_bad[i], "/readyz", NULL);
		assert_int_equal(r.status, 405);
		assert_string_equal(r.allow, "GET, HEAD");
	}
	/* the method is checked before the id */
	assert_int_equal(match(GW_M_POST, "/products/abc", NULL).status, 405);
}

static void
test_route_writes(void **state)
{
	gw_route r;
	(void) state;
	r = match(GW_M_POST, "/products", "ignored=1");
	assert_int_equal(r.status, 0);
	assert_int_equal(r.id, GW_ROUTE_PRODUCT_CREATE);
	r = match(GW_M_PUT, "/products/42", NULL);
	assert_int_equal(r.id, GW_ROUTE_PRODUCT_REPLACE);
	assert_true(r.product_id == 42);
	r = match(GW_M_PATCH, "/products/43", NULL);
	assert_int_equal(r.id, GW_ROUTE_PRODUCT_PATCH);
	assert_true(r.product_id == 43);
	r = match(GW_M_DELETE, "/products/9223372036854775807", NULL);
	assert_int_equal(r.id, GW_ROUTE_PRODUCT_DELETE);
	assert_true(r.product_id == INT64_MAX);
	/* write routes take the same strict ids as reads */
	r = match(GW_M_DELETE, "/products/01", NULL);
	assert_int_equal(r.status, 400);
	r = match(GW_M_PUT, "/products/0", NULL);
	assert_int_equal(r.status, 400);
	r = match(GW_M_POST, "/products/", NULL);
	assert_int_equal(r.status, 405);
}

static void
test_route_print_lists_every_method(void **state)
{
	char  buf[1024] = {0};
	FILE *f = fmemopen(buf, sizeof(buf) - 1, "w");
	(void) state;
	assert_non_null(f);
	gw_route_print(f);
	fclose(f);
	assert_string_equal(buf,
	    "GET /healthz\n"
	    "HEAD /healthz\n"
	    "GET /readyz\n"
	    "HEAD /readyz\n"
	    "GET /products\n"
	    "HEAD /products\n"
	    "POST /products\n"
	    "GET /products/{id}\n"
	    "HEAD /products/{id}\n"
	    "PUT /products/{id}\n"
	    "PATCH /products/{id}\n"
	    "DELETE /products/{id}\n");
}

static void
test_route_product_id_strict(void **state)
{
	static const struct {
		const char *path;
		int         status;
		int64_t     id;
	} cases[] = {
	    {"/products/1", 0, 1},
	    {"/products/42", 0, 42},
	    {"/products/9223372036854775807", 0, INT64_MAX},
	    {"/products/9223372036854775808", 400, 0},
	    {"/products/99999999999999999999", 400, 0},
	    {"/products/0", 400, 0},
	    {"/products/-1", 400, 0},
	    {"/products/+1", 400, 0},
	    {"/products/01", 400, 0},
	    {"/products/1a", 400, 0},
	    {"/products/a1", 400, 0},
	    {"/products/1.0", 400, 0},
	    {"/products/ 1", 400, 0},
	    {"/products/", 400, 0},
	};
	(void) state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		gw_route r = match(GW_M_GET, cases[i].path, NULL);
		assert_int_equal(r.status, cases[i].status);
		if (cases[i].status == 0) {
			assert_int_equal(r.id, GW_ROUTE_PRODUCT_GET);
			assert_true(r.product_id == cases[i].id);
		} else {
			assert_int_equal(r.id, GW_ROUTE_NONE);
			assert_true(strlen(r.detail) > 0);
		}
	}
}

static void
test_route_list_defaults(void **state)
{
	gw_route r;
	(void) state;
	r = match(GW_M_GET, "/products", NULL);
	assert_int_equal(r.id, GW_ROUTE_PRODUCT_LIST);
	assert_int_equal(r.limit, 20);
	assert_true(r.after == 0);
	r = match(GW_M_HEAD, "/products", "");
	assert_int_equal(r.id, GW_ROUTE_PRODUCT_LIST);
	assert_int_equal(r.limit, 20);
}

static void
test_route_list_params(void **state)
{
	gw_route r;
	(void) state;
	r = match(GW_M_GET, "/products", "limit=5&after=10");
	assert_int_equal(r.status, 0);
	assert_int_equal(r.limit, 5);
	assert_true(r.after == 10);
	r = match(GW_M_GET, "/products", "after=0&limit=100");
	assert_int_equal(r.status, 0);
	assert_int_equal(r.limit, 100);
	assert_true(r.after == 0);
	r = match(GW_M_GET, "/products", "limit=1&after=9223372036854775807");
	assert_int_equal(r.status, 0);
	assert_int_equal(r.limit, 1);
	assert_true(r.after == INT64_MAX);
}

static void
test_route_list_bad_params_are_400(void **state)
{
	const char *qs[] = {"limit=0", "limit=101", "limit=-1", "limit=05",
	    "limit=", "limit", "limit=1x", "after=-1", "after=01",
	    "after=9223372036854775808", "after=", "foo=1", "limit=5&foo",
	    "limit=5&", "&limit=5", "limit=5&limit=6", "after=1&after=2",
	    "LIMIT=5", "limit=%35"};
	(void) state;
	for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
		gw_route r = match(GW_M_GET, "/products", qs[i]);
		assert_int_equal(r.status, 400);
		assert_int_equal(r.id, GW_ROUTE_NONE);
	}
	assert_string_equal(match(GW_M_GET, "/products", "foo=1").detail,
	    "unknown query parameter 'foo'");
}

static void
test_route_method_names(void **state)
{
	(void) state;
	assert_string_equal(gw_method_name(GW_M_GET), "GET");
	assert_string_equal(gw_method_name(GW_M_PATCH), "PATCH");
	assert_string_equal(gw_method_name(0), "-");
}

static gw_inm
inm(const char *v)
{
	gw_inm x;
	memset(&x, 0, sizeof(x));
	gw_inm_parse(v, &x);
	return x;
}

static void
test_route_inm_single_tag(void **state)
{
	gw_inm x = inm("\"3\"");
	(void) state;
	assert_true(x.present);
	assert_true(gw_inm_match(&x, 3));
	assert_false(gw_inm_match(&x, 4));
	assert_int_equal(gw_inm_hint(&x), 3);
}

static void
test_route_inm_list_weak_and_spaces(void **state)
{
	gw_inm x = inm(" W/\"2\" ,\t\"7\",W/\"5\" ");
	(void) state;
	assert_true(gw_inm_match(&x, 2));
	assert_true(gw_inm_match(&x, 5));
	assert_true(gw_inm_match(&x, 7));
	assert_false(gw_inm_match(&x, 3));
	assert_int_equal(gw_inm_hint(&x), 7);
}

static void
test_route_inm_star(void **state)
{
	gw_inm x = inm("*");
	(void) state;
	assert_true(gw_inm_match(&x, 1));
	assert_true(gw_inm_match(&x, 99));
	assert_int_equal(gw_inm_hint(&x), 0);
}

static void
test_route_inm_foreign_tags_never_match(void **state)
{
	gw_inm x = inm("\"abc\", \"0\", \"01\", \"2147483648\", \"\"");
	(void) state;
	assert_true(x.present);
	assert_false(x.malformed);
	assert_int_equal(x.n, 0);
	assert_false(gw_inm_match(&x, 1));
	assert_int_equal(gw_inm_hint(&x), 0);
	x = inm("\"2147483647\"");
	assert_true(gw_inm_match(&x, INT32_MAX));
}

static void
test_route_inm_malformed_is_ignored(void **state)
{
	const char *bad[] = {
	    "3", "\"3", "\"3\" \"4\"", "W/3", "w/\"3\"", "\"3\";", "\"3\" x"};
	(void) state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		gw_inm x = inm(bad[i]);
		assert_true(x.malformed);
		assert_false(gw_inm_match(&x, 3));
		assert_int_equal(gw_inm_hint(&x), 0);
	}
}

static void
test_route_inm_absent_or_empty(void **state)
{
	gw_inm x = inm(NULL);
	(void) state;
	assert_false(x.present);
	assert_false(gw_inm_match(&x, 1));
	x = inm("  ,  ");
	assert_false(x.present);
	assert_false(gw_inm_match(&x, 1));
}

static void
test_route_inm_several_headers_add_up(void **state)
{
	gw_inm x;
	(void) state;
	memset(&x, 0, sizeof(x));
	gw_inm_parse("\"1\"", &x);
	gw_inm_parse("\"4\"", &x);
	assert_true(gw_inm_match(&x, 1));
	assert_true(gw_inm_match(&x, 4));
	assert_int_equal(gw_inm_hint(&x), 4);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_route_healthz_and_readyz),
	    cmocka_unit_test(test_route_unknown_path_is_404),
	    cmocka_unit_test(test_route_other_method_is_405_with_allow),
	    cmocka_unit_test(test_route_writes),
	    cmocka_unit_test(test_route_print_lists_every_method),
	    cmocka_unit_test(test_route_product_id_strict),
	    cmocka_unit_test(test_route_list_defaults),
	    cmocka_unit_test(test_route_list_params),
	    cmocka_unit_test(test_route_list_bad_params_are_400),
	    cmocka_unit_test(test_route_method_names),
	    cmocka_unit_test(test_route_inm_single_tag),
	    cmocka_unit_test(test_route_inm_list_weak_and_spaces),
	    cmocka_unit_test(test_route_inm_star),
	    cmocka_unit_test(test_route_inm_foreign_tags_never_match),
	    cmocka_unit_test(test_route_inm_malformed_is_ignored),
	    cmocka_unit_test(test_route_inm_absent_or_empty),
	    cmocka_unit_test(test_route_inm_several_headers_add_up),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
