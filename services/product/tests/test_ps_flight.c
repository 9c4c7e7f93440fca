/* test_ps_flight.c - the single-flight table and its rule that a flight is
 * joinable only until its query is sent. */
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
	for (p = ps_flights_take(t, 7, NULL); p != NULL; p = p->next) {
		assert_ptr_equal(p, &w[i]);
		i++;
	}
	assert_int_equal(i, 5);
	assert_int_equal(ps_flights_count(t), 0);
	assert_null(ps_flights_take(t, 7, NULL));
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

	assert_ptr_equal(ps_flights_take(t, 2, NULL), &b);
	assert_null(b.next);
	{
		ps_waiter *p = ps_flights_take(t, 1, NULL);
		assert_ptr_equal(p, &a);
		assert_ptr_equal(p->next, &c);
		assert_null(c.next);
	}
}

static void
test_flight_take_missing(void **state)
{
	ps_flights *t = *state;
	assert_null(ps_flights_take(t, 99, NULL));
	assert_int_equal(ps_flights_count(t), 0);
}

static void
test_flight_rejoin_after_take_leads_again(void **state)
{
	ps_flights *t = *state;
	ps_waiter   a, b;
	int         leader;

	assert_int_equal(ps_flights_join(t, 5, &a, &leader), CM_OK);
	assert_ptr_equal(ps_flights_take(t, 5, NULL), &a);
	assert_int_equal(ps_flights_join(t, 5, &b, &leader), CM_OK);
	assert_int_equal(leader, 1);
	assert_ptr_equal(ps_flights_take(t, 5, NULL), &b);
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
		ps_waiter *p =
		    ps_flights_take(t, (int64_t) i * 1024 + 1, NULL);
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

static void
test_flight_no_join_after_sent(void **state)
{
	ps_flights *t = *state;
	ps_waiter   a, b, c, d, *later;
	int         role;

	assert_int_equal(ps_flights_join(t, 9, &a, &role), CM_OK);
	assert_int_equal(role, PS_FLIGHT_LEADER);
	assert_int_equal(ps_flights_join(t, 9, &b, &role), CM_OK);
	assert_int_equal(role, PS_FLIGHT_JOINED);
	assert_int_equal(ps_flights_sent(t, 9), CM_OK);
	/* The query is out: later arrivals must not share its answer. */
	assert_int_equal(ps_flights_join(t, 9, &c, &role), CM_OK);
	assert_int_equal(role, PS_FLIGHT_WAIT);
	assert_int_equal(ps_flights_join(t, 9, &d, &role), CM_OK);
	assert_int_equal(role, PS_FLIGHT_WAIT);
	assert_int_equal(ps_flights_count(t), 1);

	assert_ptr_equal(ps_flights_take(t, 9, &later), &a);
	assert_ptr_equal(a.next, &b);
	assert_null(b.next);
	assert_ptr_equal(later, &c);
	assert_ptr_equal(c.next, &d);
	assert_null(d.next);
	assert_int_equal(ps_flights_count(t), 0);

	/* Looking again starts a fresh, joinable flight. */
	assert_int_equal(ps_flights_join(t, 9, &c, &role), CM_OK);
	assert_int_equal(role, PS_FLIGHT_LEADER);
	assert_int_equal(ps_flights_join(t, 9, &d, &role), CM_OK);
	assert_int_equal(role, PS_FLIGHT_JOINED);
	assert_ptr_equal(ps_flights_take(t, 9, &later), &c);
	assert_null(later);
}

static void
test_flight_sent_is_per_id(void **state)
{
	ps_flights *t = *state;
	ps_waiter   a, b, c;
	int         role;

	assert_int_equal(ps_flights_sent(t, 4), CM_ENOTFOUND);
	assert_int_equal(ps_flights_join(t, 4, &a, &role), CM_OK);
	assert_int_equal(ps_flights_join(t, 5, &b, &role), CM_OK);
	assert_int_equal(ps_flights_sent(t, 4), CM_OK);
	assert_int_equal(ps_flights_sent(t, 4), CM_OK); /* idempotent */
	assert_int_equal(ps_flights_join(t, 5, &c, &role), CM_OK);
	assert_int_equal(role, PS_FLIGHT_JOINED);
}

static void
test_flight_take_without_later_list(void **state)
{
	ps_flights *t = *state;
	ps_waiter   a, b;
	int         role;

	/* Waiters in the later list of a flight taken with later NULL are
	 * the caller's problem; the table itself must stay sound. */
	assert_int_equal(ps_flights_join(t, 6, &a, &role), CM_OK);
	assert_int_equal(ps_flights_sent(t, 6), CM_OK);
	assert_int_equal(ps_flights_join(t, 6, &b, &role), CM_OK);
	assert_int_equal(role, PS_FLIGHT_WAIT);
	assert_ptr_equal(ps_flights_take(t, 6, NULL), &a);
	assert_null(a.next);
	assert_int_equal(ps_flights_count(t), 0);
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
	    cmocka_unit_test_setup_teardown(
	        test_flight_no_join_after_sent, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_flight_sent_is_per_id, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_flight_take_without_later_list, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
