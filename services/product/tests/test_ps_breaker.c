/* test_ps_breaker.c - the Redis circuit breaker's state machine. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cm.h"
#include "ps.h"

#define MS 1000 /* microseconds */

static void
fail_n(ps_breaker *b, int n, int64_t now)
{
	for (int i = 0; i < n; i++) {
		assert_int_equal(ps_breaker_allow(b, now), PS_BREAKER_ALLOW);
		ps_breaker_done(b, 0, 0, now);
	}
}

static void
test_breaker_starts_closed(void **state)
{
	ps_breaker b;

	(void) state;
	ps_breaker_init(&b, 5, 2000 * MS);
	assert_int_equal(ps_breaker_state(&b), PS_BREAKER_CLOSED);
	assert_int_equal(ps_breaker_allow(&b, 0), PS_BREAKER_ALLOW);
}

static void
test_breaker_opens_after_threshold(void **state)
{
	ps_breaker b;

	(void) state;
	ps_breaker_init(&b, 5, 2000 * MS);
	fail_n(&b, 4, 100 * MS);
	assert_int_equal(ps_breaker_state(&b), PS_BREAKER_CLOSED);
	fail_n(&b, 1, 100 * MS);
	assert_int_equal(ps_breaker_state(&b), PS_BREAKER_OPEN);
	/* Open: every call fails at once until the cooldown has passed. */
	assert_int_equal(ps_breaker_allow(&b, 100 * MS), PS_BREAKER_DENY);
	assert_int_equal(ps_breaker_allow(&b, 2099 * MS), PS_BREAKER_DENY);
}

static void
test_breaker_success_resets_count(void **state)
{
	ps_breaker b;

	(void) state;
	ps_breaker_init(&b, 3, 1000 * MS);
	fail_n(&b, 2, 0);
	ps_breaker_done(&b, 0, 1, 0); /* not in a row any more */
	fail_n(&b, 2, 0);
	assert_int_equal(ps_breaker_state(&b), PS_BREAKER_CLOSED);
	fail_n(&b, 1, 0);
	assert_int_equal(ps_breaker_state(&b), PS_BREAKER_OPEN);
}

static void
test_breaker_half_open_one_probe(void **state)
{
	ps_breaker b;

	(void) state;
	ps_breaker_init(&b, 1, 2000 * MS);
	fail_n(&b, 1, 0);
	assert_int_equal(ps_breaker_allow(&b, 2000 * MS), PS_BREAKER_PROBE);
	assert_int_equal(ps_breaker_state(&b), PS_BREAKER_HALF_OPEN);
	/* Only one command at a time while half-open. */
	assert_int_equal(ps_breaker_allow(&b, 2001 * MS), PS_BREAKER_DENY);
	assert_int_equal(ps_breaker_allow(&b, 9000 * MS), PS_BREAKER_DENY);
	ps_breaker_done(&b, 1, 1, 2010 * MS);
	assert_int_equal(ps_breaker_state(&b), PS_BREAKER_CLOSED);
	assert_int_equal(ps_breaker_allow(&b, 2011 * MS), PS_BREAKER_ALLOW);
}

static void
test_breaker_failed_probe_reopens(void **state)
{
	ps_breaker b;

	(void) state;
	ps_breaker_init(&b, 2, 500 * MS);
	fail_n(&b, 2, 0);
	assert_int_equal(ps_breaker_allow(&b, 500 * MS), PS_BREAKER_PROBE);
	ps_breaker_done(&b, 1, 0, 550 * MS);
	assert_int_equal(ps_breaker_state(&b), PS_BREAKER_OPEN);
	/* A fresh cooldown from the failed probe. */
	assert_int_equal(ps_breaker_allow(&b, 1049 * MS), PS_BREAKER_DENY);
	assert_int_equal(ps_breaker_allow(&b, 1050 * MS), PS_BREAKER_PROBE);
	ps_breaker_done(&b, 1, 1, 1060 * MS);
	assert_int_equal(ps_breaker_state(&b), PS_BREAKER_CLOSED);
	/* Closed again: the count starts over. */
	fail_n(&b, 1, 2000 * MS);
	assert_int_equal(ps_breaker_state(&b), PS_BREAKER_CLOSED);
}

/* Commands sent before the breaker opened may answer while it is open or
 * half-open: only the probe decides. */
static void
test_breaker_ignores_old_outcomes(void **state)
{
	ps_breaker b;

	(void) state;
	ps_breaker_init(&b, 1, 100 * MS);
	fail_n(&b, 1, 0);
	ps_breaker_done(&b, 0, 1, 10 * MS); /* a late reply while open */
	assert_int_equal(ps_breaker_state(&b), PS_BREAKER_OPEN);
	assert_int_equal(ps_breaker_allow(&b, 100 * MS), PS_BREAKER_PROBE);
	ps_breaker_done(&b, 0, 0, 110 * MS); /* an old failure */
	assert_int_equal(ps_breaker_state(&b), PS_BREAKER_HALF_OPEN);
	ps_breaker_done(&b, 0, 1, 110 * MS); /* an old success */
	assert_int_equal(ps_breaker_state(&b), PS_BREAKER_HALF_OPEN);
	assert_int_equal(ps_breaker_allow(&b, 120 * MS), PS_BREAKER_DENY);
	ps_breaker_done(&b, 1, 1, 130 * MS);
	assert_int_equal(ps_breaker_state(&b), PS_BREAKER_CLOSED);
}

static void
test_breaker_bad_settings(void **state)
{
	ps_breaker b;

	(void) state;
	/* A threshold below 1 acts as 1; a negative cooldown as none. */
	ps_breaker_init(&b, 0, -5);
	fail_n(&b, 1, 0);
	assert_int_equal(ps_breaker_state(&b), PS_BREAKER_OPEN);
	assert_int_equal(ps_breaker_allow(&b, 0), PS_BREAKER_PROBE);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_breaker_starts_closed),
	    cmocka_unit_test(test_breaker_opens_after_threshold),
	    cmocka_unit_test(test_breaker_success_resets_count),
	    cmocka_unit_test(test_breaker_half_open_one_probe),
	    cmocka_unit_test(test_breaker_failed_probe_reopens),
	    cmocka_unit_test(test_breaker_ignores_old_outcomes),
	    cmocka_unit_test(test_breaker_bad_settings),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
