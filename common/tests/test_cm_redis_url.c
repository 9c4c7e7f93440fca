/* test_cm_redis_url.c - redis:// URL parsing (REDIS_URL,
 * GATEWAY_REDIS_URL). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cm.h"
#include "cm_redis_url.h"

static void
test_redis_url_default(void **state)
{
	cm_redis_url u;

	(void) state;
	assert_int_equal(
	    cm_redis_url_parse("redis://127.0.0.1:6379/0", &u), CM_OK);
	assert_string_equal(u.host, "127.0.0.1");
	assert_int_equal(u.port, 6379);
	assert_int_equal(u.db, 0);
	assert_string_equal(u.user, "");
	assert_string_equal(u.pass, "");
}

static void
test_redis_url_host_only(void **state)
{
	cm_redis_url u;

	(void) state;
	assert_int_equal(cm_redis_url_parse("redis://redis", &u), CM_OK);
	assert_string_equal(u.host, "redis");
	assert_int_equal(u.port, 6379);
	assert_int_equal(u.db, 0);
	assert_int_equal(cm_redis_url_parse("redis://redis/", &u), CM_OK);
	assert_int_equal(u.db, 0);
}

static void
test_redis_url_db_and_port(void **state)
{
	cm_redis_url u;

	(void) state;
	assert_int_equal(
	    cm_redis_url_parse("redis://cache.local:7000/3", &u), CM_OK);
	assert_string_equal(u.host, "cache.local");
	assert_int_equal(u.port, 7000);
	assert_int_equal(u.db, 3);
}

static void
test_redis_url_password_only(void **state)
{
	cm_redis_url u;

	(void) state;
	assert_int_equal(
	    cm_redis_url_parse("redis://:s3cret@h:6380/1", &u), CM_OK);
	assert_string_equal(u.user, "");
	assert_string_equal(u.pass, "s3cret");
	assert_string_equal(u.host, "h");
	assert_int_equal(u.port, 6380);
	assert_int_equal(u.db, 1);
}

static void
test_redis_url_user_and_password(void **state)
{
	cm_redis_url u;

	(void) state;
	/* The last '@' ends the user info, so a password may contain '@'. */
	assert_int_equal(
	    cm_redis_url_parse("redis://app:p@ss:w@h:1/2", &u), CM_OK);
	assert_string_equal(u.user, "app");
	assert_string_equal(u.pass, "p@ss:w");
	assert_string_equal(u.host, "h");
	assert_int_equal(u.port, 1);
	assert_int_equal(u.db, 2);
}

static void
test_redis_url_percent_encoded(void **state)
{
	cm_redis_url u;

	(void) state;
	/* base64 passwords carry '/' and '+'; '/' must be written %2F */
	assert_int_equal(
	    cm_redis_url_parse("redis://app%3Ax:a%2Fb%3f%23c%25+@h/3", &u),
	    CM_OK);
	assert_string_equal(u.user, "app:x");
	assert_string_equal(u.pass, "a/b?#c%+");
	assert_string_equal(u.host, "h");
	assert_int_equal(u.db, 3);
	/* bad escapes and an encoded NUL are refused */
	assert_int_equal(cm_redis_url_parse("redis://:a%2@h", &u), CM_EINVAL);
	assert_int_equal(cm_redis_url_parse("redis://:a%zz@h", &u), CM_EINVAL);
	assert_int_equal(
	    cm_redis_url_parse("redis://:a%00b@h", &u), CM_EINVAL);
	assert_int_equal(cm_redis_url_parse("redis://:%@h", &u), CM_EINVAL);
}

static void
test_redis_url_ipv6(void **state)
{
	cm_redis_url u;

	(void) state;
	assert_int_equal(
	    cm_redis_url_parse("redis://[::1]:6390/4", &u), CM_OK);
	assert_string_equal(u.host, "::1");
	assert_int_equal(u.port, 6390);
	assert_int_equal(u.db, 4);
}

static void
test_redis_url_rejects_bad(void **state)
{
	static const char *bad[] = {
	    "",
	    "http://h:6379/0",
	    "redis:/h",
	    "redis://",
	    "redis://:6379/0",
	    "redis://h:/0",
	    "redis://h:0/0",
	    "redis://h:65536/0",
	    "redis://h:12ab/0",
	    "redis://h:6379/x",
	    "redis://h:6379/-1",
	    "redis://h:6379/0?timeout=1",
	    "redis://h:6379/0/1",
	    "redis://[::1/0",
	    "rediss://h:6379/0",
	};

	(void) state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cm_redis_url u;
		if (cm_redis_url_parse(bad[i], &u) != CM_EINVAL) {
			fail_msg("accepted %s", bad[i]);
		}
	}
	assert_int_equal(cm_redis_url_parse(NULL, NULL), CM_EINVAL);
}

static void
test_redis_url_rejects_long_parts(void **state)
{
	char         url[1024];
	cm_redis_url u;

	(void) state;
	memset(url, 0, sizeof(url));
	strcpy(url, "redis://");
	memset(url + 8, 'h', 300);
	assert_int_equal(cm_redis_url_parse(url, &u), CM_EINVAL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_redis_url_default),
	    cmocka_unit_test(test_redis_url_host_only),
	    cmocka_unit_test(test_redis_url_db_and_port),
	    cmocka_unit_test(test_redis_url_password_only),
	    cmocka_unit_test(test_redis_url_user_and_password),
	    cmocka_unit_test(test_redis_url_rejects_bad),
	    cmocka_unit_test(test_redis_url_percent_encoded),
	    cmocka_unit_test(test_redis_url_ipv6),
	    cmocka_unit_test(test_redis_url_rejects_long_parts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
