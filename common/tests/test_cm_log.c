/* test_cm_log.c - text and JSON lines, escaping, level filtering. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

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

/* ---- JSON lines stay valid JSON ---- */

static char big[6000];  /* a value under test */
static int  big_fields; /* 0: one message; n: n fields holding big */

static void
write_big(void)
{
	cm_log_field f[40];

	if (big_fields == 0) {
		CM_WARN("T-BIG", "r3", "%s", big);
		return;
	}
	for (int i = 0; i < big_fields; i++) {
		f[i] = CM_LF_STR("k", big);
	}
	f[big_fields] = CM_LF_NUM("n", 12345);
	cm_log_fields(CM_LOG_WARN, "T-BIG", "r3", f, (size_t) big_fields + 1);
}

/* Logs big, checks that one line came out, that json-c parses it, and
 * returns the parsed object (NULL-checked) for more checks. */
static json_object *
big_line(char *out, size_t len)
{
	json_object *o;
	size_t       n;

	capture(write_big, out, len);
	n = strlen(out);
	assert_true(n > 0 && n <= 4096);
	assert_int_equal(strchr(out, '\n') - out + 1, (long) n);
	o = json_tokener_parse(out);
	if (o == NULL) {
		fail_msg("not JSON: %.300s", out);
	}
	assert_true(json_object_is_type(o, json_type_object));
	return o;
}

static json_object *
member(json_object *o, const char *key)
{
	json_object *v = NULL;
	return json_object_object_get_ex(o, key, &v) ? v : NULL;
}

/* Messages of every length up to past the line's size, made of the
 * characters that need escaping and of invalid UTF-8, are cut into valid
 * JSON: a prefix of the message, then "truncated":true. */
static void
test_log_json_long_values_stay_valid(void **state)
{
	static const char unit[] = "a\"\\\x01\xc3\xa9\xff\xe2\x82"; /* 10 */
	char              out[8192];

	(void) state;
	assert_int_equal(cm_log_set_format("json"), CM_OK);
	for (size_t len = 0; len < sizeof(big) - 1; len += 37) {
		json_object *o, *msg;

		for (size_t i = 0; i < len; i++) {
			big[i] = unit[i % (sizeof(unit) - 1)];
		}
		big[len] = '\0';
		big_fields = 0;
		o = big_line(out, sizeof(out));
		msg = member(o, "msg");
		assert_non_null(msg);
		assert_non_null(member(o, "event"));
		if (len < 300) {
			assert_null(member(o, "truncated"));
		}
		if (len > 4096) {
			assert_non_null(member(o, "truncated"));
		}
		/* invalid bytes came out as U+FFFD, the others as they were */
		if (len >= 10) {
			assert_non_null(strstr(json_object_get_string(msg),
			    "a\"\\\x01\xc3\xa9\xef\xbf\xbd\xef\xbf\xbd"));
		}
		json_object_put(o);
	}
}

/* Many long fields: the ones that fit are whole, a cut value is closed,
 * the rest are left out, and the line says so. */
static void
test_log_json_many_fields_stay_valid(void **state)
{
	char out[8192];

	(void) state;
	assert_int_equal(cm_log_set_format("json"), CM_OK);
	memset(big, 'x', 900);
	big[900] = '\0';
	for (big_fields = 1; big_fields < 39; big_fields++) {
		json_object *o = big_line(out, sizeof(out));
		json_object *n = member(o, "n");

		/* a field is 907 bytes: four fit in 4 KiB, five do not */
		if (big_fields <= 4) {
			assert_null(member(o, "truncated"));
			assert_non_null(n);
			assert_int_equal(json_object_get_int(n), 12345);
		} else {
			assert_non_null(member(o, "truncated"));
		}
		json_object_put(o);
	}
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
	    cmocka_unit_test(test_log_json_long_values_stay_valid),
	    cmocka_unit_test(test_log_json_many_fields_stay_valid),
	    cmocka_unit_test(test_log_rejects_unknown_settings),
	};
	return cmocka_run_group_tests_name("cm_log", tests, NULL, NULL);
}
