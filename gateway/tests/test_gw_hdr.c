/* test_gw_hdr.c - Content-Type, If-Match and Idempotency-Key parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "gw.h"

static void
test_hdr_ctype_json(void **state)
{
	const char *ok[] = {"application/json", "Application/JSON",
	    "application/json; charset=utf-8",
	    "application/json;charset=UTF-8",
	    "application/json ; charset=\"utf-8\"", " application/json",
	    "application/json;", "application/json; foo=bar",
	    "application/json; foo=\"a;b\"; charset=utf-8"};
	(void) state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		assert_int_equal(gw_hdr_ctype(ok[i]), GW_CT_JSON);
	}
}

static void
test_hdr_ctype_merge_patch(void **state)
{
	(void) state;
	assert_int_equal(
	    gw_hdr_ctype("application/merge-patch+json"), GW_CT_MERGE_PATCH);
	assert_int_equal(
	    gw_hdr_ctype("application/merge-patch+json; charset=utf-8"),
	    GW_CT_MERGE_PATCH);
}

static void
test_hdr_ctype_other_is_refused(void **state)
{
	const char *bad[] = {NULL, "", "text/plain", "application/xml",
	    "application/jsonx", "application/json-patch+json",
	    "application/x-www-form-urlencoded", "application/json/x",
	    "application /json", "application/json; charset=latin1",
	    "application/json; charset=\"utf-16\"", "application/json; x",
	    "application/json; x=", "application/json; x=\"open",
	    "application/json x", "*/*", "application/*", "json"};
	(void) state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(gw_hdr_ctype(bad[i]), GW_CT_OTHER);
	}
}

static void
test_hdr_idem_key(void **state)
{
	char long_ok[256], too_long[257];
	(void) state;
	memset(long_ok, 'k', 255);
	long_ok[255] = '\0';
	memset(too_long, 'k', 256);
	too_long[256] = '\0';
	assert_true(gw_hdr_idem_ok("a"));
	assert_true(gw_hdr_idem_ok("3f6c-9a1b_ORDER:42/~!"));
	assert_true(gw_hdr_idem_ok(long_ok));
	assert_false(gw_hdr_idem_ok(too_long));
	assert_false(gw_hdr_idem_ok(NULL));
	assert_false(gw_hdr_idem_ok(""));
	assert_false(gw_hdr_idem_ok("a b"));
	assert_false(gw_hdr_idem_ok("a\tb"));
	assert_false(gw_hdr_idem_ok("caf\xc3\xa9"));
	assert_false(gw_hdr_idem_ok("a\x7f"));
}

/* Parses the header lines in vals (NULL-terminated) and evaluates them. */
static int
ifm(const char *const *vals, int32_t *version)
{
	gw_ifm      x;
	const char *detail;
	int         st;

	memset(&x, 0, sizeof(x));
	for (; *vals != NULL; vals++) {
		gw_hdr_ifm_add(*vals, &x);
	}
	st = gw_hdr_ifm_eval(&x, version, &detail);
	assert_true(st == 0 ? detail == NULL : detail != NULL);
	return st;
}

#define IFM(v, ...) ifm((const char *const[]) {__VA_ARGS__, NULL}, v)

static void
test_hdr_if_match_absent_and_star(void **state)
{
	int32_t v = -1;
	gw_ifm  x;
	(void) state;
	memset(&x, 0, sizeof(x));
	assert_int_equal(gw_hdr_ifm_eval(&x, &v, &(const char *) {NULL}), 0);
	assert_int_equal(v, 0);
	v = -1;
	assert_int_equal(IFM(&v, "*"), 0);
	assert_int_equal(v, 0);
	assert_int_equal(IFM(&v, " * "), 0);
}

static void
test_hdr_if_match_one_strong_tag(void **state)
{
	int32_t v = 0;
	(void) state;
	assert_int_equal(IFM(&v, "\"3\""), 0);
	assert_int_equal(v, 3);
	assert_int_equal(IFM(&v, "\"2147483647\""), 0);
	assert_int_equal(v, INT32_MAX);
	/* the same version twice, and weak tags beside it, are fine */
	assert_int_equal(IFM(&v, "\"5\", \"5\"", "W/\"5\""), 0);
	assert_int_equal(v, 5);
	assert_int_equal(IFM(&v, "\"x\", \"7\""), 0);
	assert_int_equal(v, 7);
}

static void
test_hdr_if_match_never_matching_is_412(void **state)
{
	int32_t v;
	(void) state;
	/* strong comparison: a weak tag never matches */
	assert_int_equal(IFM(&v, "W/\"3\""), 412);
	assert_int_equal(IFM(&v, "\"abc\""), 412);
	assert_int_equal(IFM(&v, "\"0\""), 412);
	assert_int_equal(IFM(&v, "\"03\""), 412);
	assert_int_equal(IFM(&v, "\"2147483648\""), 412);
	assert_int_equal(IFM(&v, "\"\""), 412);
	assert_int_equal(IFM(&v, "W/\"1\", W/\"2\""), 412);
}

static void
test_hdr_if_match_malformed_is_400(void **state)
{
	int32_t v;
	(void) state;
	assert_int_equal(IFM(&v, "3"), 400);
	assert_int_equal(IFM(&v, "\"3"), 400);
	assert_int_equal(IFM(&v, "\"3\" \"4\""), 400);
	assert_int_equal(IFM(&v, "w/\"3\""), 400);
	assert_int_equal(IFM(&v, ""), 400);
	assert_int_equal(IFM(&v, " , "), 400);
	assert_int_equal(IFM(&v, "\"3\";"), 400);
	/* one bad line spoils them all */
	assert_int_equal(IFM(&v, "\"3\"", "bad"), 400);
	/* "*" stands alone */
	assert_int_equal(IFM(&v, "*, \"3\""), 400);
	assert_int_equal(IFM(&v, "*", "W/\"3\""), 400);
	/* the wire carries one version */
	assert_int_equal(IFM(&v, "\"3\", \"4\""), 400);
	assert_int_equal(IFM(&v, "\"3\"", "\"4\""), 400);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hdr_ctype_json),
	    cmocka_unit_test(test_hdr_ctype_merge_patch),
	    cmocka_unit_test(test_hdr_ctype_other_is_refused),
	    cmocka_unit_test(test_hdr_idem_key),
	    cmocka_unit_test(test_hdr_if_match_absent_and_star),
	    cmocka_unit_test(test_hdr_if_match_one_strong_tag),
	    cmocka_unit_test(test_hdr_if_match_never_matching_is_412),
	    cmocka_unit_test(test_hdr_if_match_malformed_is_400),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
