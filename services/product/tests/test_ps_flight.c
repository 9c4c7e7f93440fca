/* test_ps_flight.c - the single-flight table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "cm.h"
#include "ps.h"

static int
setup(void **state)
{
	ps_flights *t = calloc(1, sizeof(*t));
	if (t == NULL || ps_flights_init(t) != CM_OK) {
		free(t);
		return -1;
	}
	*state = t;
	return 0;
}

static int
teardown(void **state)
{
	ps_flights_fini(*state);
	free(*state);
	return 0;
}

static void
test_flight_first_joiner_leads(void **state)
{
	ps_flights *t = *state;
	ps_waiter   a, b, c;
	int         leader = -1;

	assert_int_equal(ps_flights_join(t, 42, &a, &leader), CM_OK);
	assert_int_equal(leader, 1);
	assert_int_equal(ps_flights_join(t, 42, &b, &leader), CM_OK);
	assert_int_equal(leader, 0);
	assert_int_equal(ps_flights_join(t, 42, &c, &leader), CM_OK);
	assert_int_equal(leader, 0);
	assert_int_equal(ps_flights_count(t), 1);
}

static void
test_flight_take_returns_all_in_order(void **state)
{
	ps_flights *t = *state;
	ps_waiter   w[5];
	int         leader;
	ps_waiter  *p;
	int         i = 0;

	for (int k = 0; k < 5; k++) {
		assert_int_equal(ps_flights_join(t, 7, &w[k], &leader), CM_OK);
	}
	for (p = ps_flights_take(t, 7); p != NULL; p = p->next) {
		assert_ptr_equal(p, &w[i]);
		i++;
	}
	assert_int_equal(i, 5);
	assert_int_equal(ps_flights_count(t), 0);
	assert_null(ps_flights_take(t, 7));
}

static void
test_flight_ids_are_independent(void **state)
{
	ps_flights *t = *state;
	ps_waiter   a, b, c;
	int         leader;

	assert_int_equal(ps_flights_join(t, 1, &a, &leader), CM_OK);
	assert_int_equal(leader, 1);
	assert_int_equal(ps_flights_join(t, 2, &b, &leader), CM_OK);
	assert_int_equal(leader, 1);
	assert_int_equal(ps_flights_join(t, 1, &c, &leader), CM_OK);
	assert_int_equal(leader, 0);
	assert_int_equal(ps_flights_count(t), 2);

	assert_ptr_equal(ps_flights_take(t, 2), &b);
	assert_null(b.next);
	{
		ps_waiter *p = ps_flights_take(t, 1);
		assert_ptr_equal(p, &a);
		assert_ptr_equal(p->next, &c);
		assert_null(c.next);
	}
}

static void
test_flight_take_missing(void **state)
{
	ps_flights *t = *state;
	assert_null(ps_flights_take(t, 99));
	assert_int_equal(ps_flights_count(t), 0);
}

static void
test_flight_rejoin_after_take_leads_again(void **state)
{
	ps_flights *t = *state;
	ps_waiter   a, b;
	int         leader;

	assert_int_equal(ps_flights_join(t, 5, &a, &leader), CM_OK);
	assert_ptr_equal(ps_flights_take(t, 5), &a);
	assert_int_equal(ps_flights_join(t, 5, &b, &leader), CM_OK);
	assert_int_equal(leader, 1);
	assert_ptr_equal(ps_flights_take(t, 5), &b);
}

static void
test_flight_many_ids_grow(void **state)
{
	ps_flights *t = *state;
	int         n = 5000;
	ps_waiter  *w = calloc((size_t) n * 2, sizeof(*w));
	int         leader;

	assert_non_null(w);
	for (int i = 0; i < n; i++) {
		/* Ids that would collide under a naive modulo. */
		int64_t id = (int64_t) i * 1024 + 1;
		assert_int_equal(
		    ps_flights_join(t, id, &w[i], &leader), CM_OK);
		assert_int_equal(leader, 1);
		assert_int_equal(
		    ps_flights_join(t, id, &w[n + i], &leader), CM_OK);
		assert_int_equal(leader, 0);
	}
	assert_int_equal(ps_flights_count(t), (size_t) n);
	for (int i = n - 1; i >= 0; i--) {
		ps_waiter *p = ps_flights_take(t, (int64_t) i * 1024 + 1);
		assert_ptr_equal(p, &w[i]);
		assert_ptr_equal(p->next, &w[n + i]);
		assert_null(p->next->next);
	}
	assert_int_equal(ps_flights_count(t), 0);
	free(w);
}

static void
test_flight_fini_with_pending(void **state)
{
	ps_flights *t = *state;
	ps_waiter   a;
	int         leader;

	/* teardown() frees a table that still holds a flight: no leak. */
	assert_int_equal(ps_flights_join(t, 3, &a, &leader), CM_OK);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(
	        test_flight_first_joiner_leads, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_flight_take_returns_all_in_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_flight_ids_are_independent, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_flight_take_missing, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_flight_rejoin_after_take_leads_again, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_flight_many_ids_grow, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_flight_fini_with_pending, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
