/* test_ps_cache.c - the scripts' text (REDIS_URL parsing is tested in
 * common/tests/test_cm_redis_url.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cm.h"
#include "ps.h"

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
	    cmocka_unit_test(test_cache_scripts_shape),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
