/* test_cm_trace.c - traceparent validation and propagation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "cm.h"
#include "cm_trace.h"

static const char *good =
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

static void
test_trace_parse_valid(void **state)
{
	cm_trace t;
	char     out[CM_TRACEPARENT_LEN + 1];
	(void) state;
	assert_int_equal(cm_trace_parse(good, &t), CM_OK);
	assert_string_equal(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
	assert_string_equal(t.parent_id, "00f067aa0ba902b7");
	assert_int_equal(t.flags, 1);
	assert_int_equal(strlen(t.span_id), 16);
	cm_trace_format(&t, out, sizeof(out));
	assert_int_equal(strlen(out), CM_TRACEPARENT_LEN);
	/* Same trace, our own span as the next hop's parent. */
	assert_memory_equal(out, "00-4bf92f3577b34da6a3ce929d0e0e4736-", 36);
	assert_memory_not_equal(out + 36, "00f067aa0ba902b7", 16);
}

static void
test_trace_parse_rejects_invalid(void **state)
{
	cm_trace    t;
	const char *bad[] = {
	    "",
	    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
	    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
	    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
	    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
	    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
	    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	    "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	    "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
	    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nX: y",
	};
	(void) state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(cm_trace_parse(bad[i], &t), CM_EINVAL);
	}
}

static void
test_trace_future_version_may_extend(void **state)
{
	cm_trace t;
	(void) state;
	assert_int_equal(cm_trace_parse("01-4bf92f3577b34da6a3ce929d0e0e4736-"
	                                "00f067aa0ba902b7-01-future",
	                     &t),
	    CM_OK);
}

static void
test_trace_new_is_valid(void **state)
{
	cm_trace t, back;
	char     out[CM_TRACEPARENT_LEN + 1];
	(void) state;
	cm_trace_new(&t);
	cm_trace_format(&t, out, sizeof(out));
	assert_int_equal(cm_trace_parse(out, &back), CM_OK);
	assert_string_equal(back.trace_id, t.trace_id);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_trace_parse_valid),
	    cmocka_unit_test(test_trace_parse_rejects_invalid),
	    cmocka_unit_test(test_trace_future_version_may_extend),
	    cmocka_unit_test(test_trace_new_is_valid),
	};
	return cmocka_run_group_tests_name("cm_trace", tests, NULL, NULL);
}
