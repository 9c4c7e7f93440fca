/* test_ps_cache.c - REDIS_URL parsing and the scripts' text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cm.h"
#include "ps.h"

static void
test_cache_url_default(void **state)
{
	ps_redis_url u;

	(void) state;
	assert_int_equal(
	    ps_cache_url_parse("redis://127.0.0.1:6379/0", &u), CM_OK);
	assert_string_equal(u.host, "127.0.0.1");
	assert_int_equal(u.port, 6379);
	assert_int_equal(u.db, 0);
	assert_string_equal(u.user, "");
	assert_string_equal(u.pass, "");
}

static void
test_cache_url_host_only(void **state)
{
	ps_redis_url u;

	(void) state;
	assert_int_equal(ps_cache_url_parse("redis://redis", &u), CM_OK);
	assert_string_equal(u.host, "redis");
	assert_int_equal(u.port, 6379);
	assert_int_equal(u.db, 0);
	assert_int_equal(ps_cache_url_parse("redis://redis/", &u), CM_OK);
	assert_int_equal(u.db, 0);
}

static void
test_cache_url_db_and_port(void **state)
{
	ps_redis_url u;

	(void) state;
	assert_int_equal(
	    ps_cache_url_parse("redis://cache.local:7000/3", &u), CM_OK);
	assert_string_equal(u.host, "cache.local");
	assert_int_equal(u.port, 7000);
	assert_int_equal(u.db, 3);
}

static void
test_cache_url_password_only(void **state)
{
	ps_redis_url u;

	(void) state;
	assert_int_equal(
	    ps_cache_url_parse("redis://:s3cret@h:6380/1", &u), CM_OK);
	assert_string_equal(u.user, "");
	assert_string_equal(u.pass, "s3cret");
	assert_string_equal(u.host, "h");
	assert_int_equal(u.port, 6380);
	assert_int_equal(u.db, 1);
}

static void
test_cache_url_user_and_password(void **state)
{
	ps_redis_url u;

	(void) state;
	/* The last '@' ends the user info, so a password may contain '@'. */
	assert_int_equal(
	    ps_cache_url_parse("redis://app:p@ss:w@h:1/2", &u), CM_OK);
	assert_string_equal(u.user, "app");
	assert_string_equal(u.pass, "p@ss:w");
	assert_string_equal(u.host, "h");
	assert_int_equal(u.port, 1);
	assert_int_equal(u.db, 2);
}

static void
test_cache_url_ipv6(void **state)
{
	ps_redis_url u;

	(void) state;
	assert_int_equal(
	    ps_cache_url_parse("redis://[::1]:6390/4", &u), CM_OK);
	assert_string_equal(u.host, "::1");
	assert_int_equal(u.port, 6390);
	assert_int_equal(u.db, 4);
}

static void
test_cache_url_rejects_bad(void **state)
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
		ps_redis_url u;
		if (ps_cache_url_parse(bad[i], &u) != CM_EINVAL) {
			fail_msg("accepted %s", bad[i]);
		}
	}
	assert_int_equal(ps_cache_url_parse(NULL, NULL), CM_EINVAL);
}

static void
test_cache_url_rejects_long_parts(void **state)
{
	char         url[1024];
	ps_redis_url u;

	(void) state;
	memset(url, 0, sizeof(url));
	strcpy(url, "redis://");
	memset(url + 8, 'h', 300);
	assert_int_equal(ps_cache_url_parse(url, &u), CM_EINVAL);
}

static void
test_cache_scripts_shape(void **state)
{
	(void) state;
	/* Redis runs the scripts in the integration tests and the smoke
	 * runs; here only the rules of docs/consistency.md they must keep. */
	/* lease: a hit first, then the fence, then SET NX PX. */
	assert_non_null(
	    strstr(ps_cache_lease_lua, "redis.call('GET', KEYS[1])"));
	assert_non_null(
	    strstr(ps_cache_lease_lua, "redis.call('EXISTS', KEYS[3])"));
	assert_non_null(strstr(ps_cache_lease_lua, "'NX', 'PX', ARGV[2]"));
	assert_true(strstr(ps_cache_lease_lua, "EXISTS") <
	    strstr(ps_cache_lease_lua, "'NX'"));
	/* fill: only with the caller's lease, which it then gives up. */
	assert_non_null(strstr(
	    ps_cache_fill_lua, "redis.call('GET', KEYS[2]) ~= ARGV[1]"));
	assert_non_null(
	    strstr(ps_cache_fill_lua, "redis.call('DEL', KEYS[2])"));
	assert_non_null(strstr(ps_cache_fill_lua, "'PX', ARGV[4]"));
	/* begin-write: INCR, PEXPIRE, DEL entry and lease. */
	assert_non_null(
	    strstr(ps_cache_begin_write_lua, "redis.call('INCR', KEYS[3])"));
	assert_non_null(strstr(ps_cache_begin_write_lua,
	    "redis.call('PEXPIRE', KEYS[3], ARGV[1])"));
	assert_non_null(strstr(
	    ps_cache_begin_write_lua, "redis.call('DEL', KEYS[1], KEYS[2])"));
	/* end-write: DEL entry and lease, DECR, DEL the fence at 0. */
	assert_non_null(strstr(
	    ps_cache_end_write_lua, "redis.call('DEL', KEYS[1], KEYS[2])"));
	assert_non_null(
	    strstr(ps_cache_end_write_lua, "redis.call('DECR', KEYS[3])"));
	assert_non_null(
	    strstr(ps_cache_end_write_lua, "redis.call('DEL', KEYS[3])"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cache_url_default),
	    cmocka_unit_test(test_cache_url_host_only),
	    cmocka_unit_test(test_cache_url_db_and_port),
	    cmocka_unit_test(test_cache_url_password_only),
	    cmocka_unit_test(test_cache_url_user_and_password),
	    cmocka_unit_test(test_cache_url_ipv6),
	    cmocka_unit_test(test_cache_url_rejects_bad),
	    cmocka_unit_test(test_cache_url_rejects_long_parts),
	    cmocka_unit_test(test_cache_scripts_shape),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
