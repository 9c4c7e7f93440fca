/* test_cm_log.c - text and JSON lines, escaping, level filtering. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cm.h"
#include "cm_log.h"

/* Runs fn with stdout sent into a pipe and returns what it wrote. */
static void
capture(void (*fn)(void), char *out, size_t len)
{
	int     p[2], saved;
	ssize_t n;

	assert_int_equal(pipe(p), 0);
	saved = dup(STDOUT_FILENO);
	dup2(p[1], STDOUT_FILENO);
	fn();
	dup2(saved, STDOUT_FILENO);
	close(saved);
	close(p[1]);
	n = read(p[0], out, len - 1);
	close(p[0]);
	out[n > 0 ? n : 0] = '\0';
}

static void
write_access(void)
{
	cm_log_field f[] = {
	    CM_LF_STR("method", "GET"),
	    CM_LF_STR("path", "/a b\"\n"),
	    CM_LF_NUM("status", 200),
	    CM_LF_NUM("duration_ms", 1.5),
	};
	cm_log_fields(CM_LOG_INFO, "GW-ACCESS", "r1", f, 4);
}

static void
write_debug_and_warn(void)
{
	CM_DEBUG("T-DEBUG", NULL, "hidden %d", 1);
	CM_WARN("T-WARN", "r2", "shown %s", "x\ny");
}

static void
test_log_json_fields(void **state)
{
	char out[1024];
	(void) state;
	assert_int_equal(cm_log_init("gateway", "info"), CM_OK);
	assert_int_equal(cm_log_set_format("json"), CM_OK);
	capture(write_access, out, sizeof(out));
	assert_non_null(strstr(out,
	    "\"level\":\"info\",\"process\":\"gateway\","
	    "\"event\":\"GW-ACCESS\",\"request_id\":\"r1\""));
	assert_non_null(strstr(out, "\"path\":\"/a b\\\"\\u000a\""));
	assert_non_null(strstr(out, "\"status\":200,\"duration_ms\":1.5}\n"));
	assert_int_equal(strchr(out, '\n') - out + 1, (long) strlen(out));
}

static void
test_log_text_fields_are_quoted_and_one_line(void **state)
{
	char out[1024];
	(void) state;
	assert_int_equal(cm_log_set_format("text"), CM_OK);
	capture(write_access, out, sizeof(out));
	assert_non_null(strstr(out,
	    " info gateway GW-ACCESS req=r1 method=GET "
	    "path=\"/a b\\\"?\" status=200 "
	    "duration_ms=1.5\n"));
	assert_int_equal(strchr(out, '\n') - out + 1, (long) strlen(out));
}

static void
test_log_level_filters_and_message_escaped(void **state)
{
	char out[1024];
	(void) state;
	assert_int_equal(cm_log_set_format("json"), CM_OK);
	capture(write_debug_and_warn, out, sizeof(out));
	assert_null(strstr(out, "hidden"));
	assert_non_null(strstr(out, "\"msg\":\"shown x\\u000ay\"}\n"));
}

static void
test_log_rejects_unknown_settings(void **state)
{
	(void) state;
	assert_int_equal(cm_log_set_format("xml"), CM_EINVAL);
	assert_int_equal(cm_log_init("p", "loud"), CM_EINVAL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_log_json_fields),
	    cmocka_unit_test(test_log_text_fields_are_quoted_and_one_line),
	    cmocka_unit_test(test_log_level_filters_and_message_escaped),
	    cmocka_unit_test(test_log_rejects_unknown_settings),
	};
	return cmocka_run_group_tests_name("cm_log", tests, NULL, NULL);
}
