/* test_ps_drain.c - admission (PRODUCT_MAX_INFLIGHT) and the drain
 * phases after SIGTERM and SIGINT. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cm.h"
#include "ps.h"

static void
test_drain_admits_up_to_max(void **state)
{
	ps_drain d;

	(void) state;
	ps_drain_init(&d, 3, 10, 2);
	assert_int_equal(ps_drain_admit(), PS_ADMIT_OK);
	assert_int_equal(ps_drain_admit(), PS_ADMIT_OK);
	assert_int_equal(ps_drain_inflight(), 2);
	/* Past the limit: refused, and not counted. */
	assert_int_equal(ps_drain_admit(), PS_ADMIT_OVERLOADED);
	assert_int_equal(ps_drain_inflight(), 2);
	ps_drain_leave();
	assert_int_equal(ps_drain_admit(), PS_ADMIT_OK);
	ps_drain_leave();
	ps_drain_leave();
	assert_int_equal(ps_drain_inflight(), 0);
}

static void
test_drain_sigterm_phases(void **state)
{
	ps_drain d;

	(void) state;
	ps_drain_init(&d, 3, 10, 100);
	assert_int_equal(ps_drain_admit(), PS_ADMIT_OK); /* in flight */
	assert_false(ps_drain_draining());
	assert_int_equal(ps_drain_wait_ms(&d, 0), -1);
	assert_int_equal(ps_drain_signal(&d, SIGTERM, 1000), PS_DRAIN_DELAY);
	/* From the signal on: new requests refused, readiness gone. */
	assert_true(ps_drain_draining());
	assert_int_equal(ps_drain_admit(), PS_ADMIT_DRAINING);
	assert_int_equal(ps_drain_inflight(), 1);
	assert_int_equal(ps_drain_wait_ms(&d, 1500), 2500);
	/* The delay holds even with nothing in flight. */
	assert_int_equal(ps_drain_tick(&d, 3999, 0), PS_DRAIN_DELAY);
	/* Then the wait for the request in progress. */
	assert_int_equal(ps_drain_tick(&d, 4000, 1), PS_DRAIN_WAIT);
	assert_int_equal(ps_drain_wait_ms(&d, 4000), 10000);
	assert_int_equal(ps_drain_tick(&d, 5000, 1), PS_DRAIN_WAIT);
	ps_drain_leave();
	assert_int_equal(
	    ps_drain_tick(&d, 5001, ps_drain_inflight()), PS_DRAIN_CLOSE);
	assert_int_equal(ps_drain_wait_ms(&d, 5001), -1);
}

static void
test_drain_timeout_bounds_the_wait(void **state)
{
	ps_drain d;

	(void) state;
	ps_drain_init(&d, 1, 2, 100);
	ps_drain_signal(&d, SIGTERM, 0);
	assert_int_equal(ps_drain_tick(&d, 1000, 7), PS_DRAIN_WAIT);
	assert_int_equal(ps_drain_tick(&d, 2999, 7), PS_DRAIN_WAIT);
	assert_int_equal(ps_drain_tick(&d, 3000, 7), PS_DRAIN_CLOSE);
}

static void
test_drain_sigint_skips_delay(void **state)
{
	ps_drain d;

	(void) state;
	ps_drain_init(&d, 3, 10, 100);
	assert_int_equal(ps_drain_signal(&d, SIGINT, 0), PS_DRAIN_WAIT);
	assert_true(ps_drain_draining());
	assert_int_equal(ps_drain_tick(&d, 1, 0), PS_DRAIN_CLOSE);
}

static void
test_drain_zero_delay(void **state)
{
	ps_drain d;

	(void) state;
	ps_drain_init(&d, 0, 10, 100);
	assert_int_equal(ps_drain_signal(&d, SIGTERM, 0), PS_DRAIN_WAIT);
}

static void
test_drain_second_signal_closes(void **state)
{
	ps_drain d;

	(void) state;
	ps_drain_init(&d, 3, 10, 100);
	ps_drain_signal(&d, SIGTERM, 0);
	assert_int_equal(ps_drain_signal(&d, SIGTERM, 10), PS_DRAIN_CLOSE);
	ps_drain_init(&d, 3, 10, 100);
	assert_false(ps_drain_draining()); /* init starts over */
	ps_drain_signal(&d, SIGINT, 0);
	assert_int_equal(ps_drain_signal(&d, SIGINT, 10), PS_DRAIN_CLOSE);
}

static void
test_drain_listening_flag(void **state)
{
	(void) state;
	ps_drain_set_listening(1);
	assert_true(ps_drain_listening());
	ps_drain_set_listening(0);
	assert_false(ps_drain_listening());
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_drain_admits_up_to_max),
	    cmocka_unit_test(test_drain_sigterm_phases),
	    cmocka_unit_test(test_drain_timeout_bounds_the_wait),
	    cmocka_unit_test(test_drain_sigint_skips_delay),
	    cmocka_unit_test(test_drain_zero_delay),
	    cmocka_unit_test(test_drain_second_signal_closes),
	    cmocka_unit_test(test_drain_listening_flag),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
