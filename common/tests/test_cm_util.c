/* test_cm_util.c - strict id parsing, request ids, time formatting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cm.h"

static int
parse(const char *s, int64_t *out)
{
	return cm_parse_id(s, strlen(s), out);
}

static void
test_util_parse_id_accepts_positive(void **state)
{
	int64_t v;
	(void) state;
	assert_int_equal(parse("1", &v), CM_OK);
	assert_int_equal(v, 1);
	assert_int_equal(parse("9223372036854775807", &v), CM_OK);
	assert_true(v == INT64_MAX);
}

static void
test_util_parse_id_rejects_junk(void **state)
{
	int64_t     v;
	const char *bad[] = {"", "0", "-1", "+1", "01", "1a", "a1", " 1", "1 ",
	    "9223372036854775808", "99999999999999999999", "1.0", "0x10"};
	(void) state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(parse(bad[i], &v), CM_EINVAL);
	}
}

/* The gateway parses path ids with it: every way an id can be smuggled
 * past a naive strtoll() must be refused, and only len bytes are read. */
static void
test_util_parse_id_strict_edges(void **state)
{
	int64_t           v = 0;
	static const char nul[] = "12\0"
	                          "3";
	(void) state;
	/* sign, whitespace, leading junk and trailing junk */
	assert_int_equal(cm_parse_id("\t1", 2, &v), CM_EINVAL);
	assert_int_equal(cm_parse_id("1\n", 2, &v), CM_EINVAL);
	assert_int_equal(cm_parse_id("1%00", 4, &v), CM_EINVAL);
	assert_int_equal(cm_parse_id(nul, sizeof(nul) - 1, &v), CM_EINVAL);
	assert_int_equal(cm_parse_id("00", 2, &v), CM_EINVAL);
	assert_int_equal(cm_parse_id("1e3", 3, &v), CM_EINVAL);
	/* overflow: one past INT64_MAX, 19 nines, 20 digits */
	assert_int_equal(parse("9223372036854775808", &v), CM_EINVAL);
	assert_int_equal(parse("9999999999999999999", &v), CM_EINVAL);
	assert_int_equal(parse("10000000000000000000", &v), CM_EINVAL);
	assert_int_equal(parse("18446744073709551617", &v), CM_EINVAL);
	/* a refused parse leaves *out alone */
	v = 42;
	assert_int_equal(parse("-0", &v), CM_EINVAL);
	assert_int_equal(v, 42);
	/* only s[0..len) is read: "12" out of "123" */
	assert_int_equal(cm_parse_id("123", 2, &v), CM_OK);
	assert_int_equal(v, 12);
	assert_int_equal(parse("9223372036854775806", &v), CM_OK);
	assert_true(v == INT64_MAX - 1);
}

static void
test_util_reqid_new_is_sane_and_unique(void **state)
{
	char a[CM_REQID_LEN + 1], b[CM_REQID_LEN + 1];
	(void) state;
	cm_reqid_new(a);
	cm_reqid_new(b);
	assert_int_equal(strlen(a), CM_REQID_LEN);
	assert_true(cm_reqid_ok(a));
	assert_string_not_equal(a, b);
}

static void
test_util_reqid_ok_rejects_injection(void **state)
{
	char longid[80];
	(void) state;
	memset(longid, 'a', sizeof(longid) - 1);
	longid[sizeof(longid) - 1] = '\0';
	assert_true(cm_reqid_ok("abc-123_x.y:z"));
	assert_false(cm_reqid_ok(""));
	assert_false(cm_reqid_ok(NULL));
	assert_false(cm_reqid_ok("a b"));
	assert_false(cm_reqid_ok("a\r\nx: y"));
	assert_false(cm_reqid_ok("\"quoted\""));
	assert_false(cm_reqid_ok(longid));
}

static void
test_util_fmt_rfc3339_utc(void **state)
{
	char buf[32];
	(void) state;
	cm_fmt_rfc3339(0, buf, sizeof(buf));
	assert_string_equal(buf, "1970-01-01T00:00:00Z");
	cm_fmt_rfc3339(1795842000LL * 1000000 + 999999, buf, sizeof(buf));
	assert_string_equal(buf, "2026-11-28T05:00:00Z");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_util_parse_id_accepts_positive),
	    cmocka_unit_test(test_util_parse_id_rejects_junk),
	    cmocka_unit_test(test_util_parse_id_strict_edges),
	    cmocka_unit_test(test_util_reqid_new_is_sane_and_unique),
	    cmocka_unit_test(test_util_reqid_ok_rejects_injection),
	    cmocka_unit_test(test_util_fmt_rfc3339_utc),
	};
	return cmocka_run_group_tests_name("cm_util", tests, NULL, NULL);
}
