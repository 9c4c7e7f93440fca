/* test_cm_config.c - the settings table: defaults, bounds, required. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cm.h"
#include "cm_config.h"

static const char *listen_addr;
static long long   timeout_ms;
static const char *level;

static const cm_cfg_opt opts[] = {
    {"T_LISTEN", CM_CFG_STRING, "0.0.0.0:1", 0, 0, &listen_addr, "addr"},
    {"T_TIMEOUT_MS", CM_CFG_INT, "2000", 1, 60000, &timeout_ms, "ms"},
    {"T_LEVEL", CM_CFG_LEVEL, "info", 0, 0, &level, "level"},
};
#define NOPTS (sizeof(opts) / sizeof(opts[0]))

static int
reset(void **state)
{
	(void) state;
	unsetenv("T_LISTEN");
	unsetenv("T_TIMEOUT_MS");
	unsetenv("T_LEVEL");
	return 0;
}

static void
test_config_defaults(void **state)
{
	char err[256];
	(void) state;
	assert_int_equal(cm_cfg_load(opts, NOPTS, err, sizeof(err)), CM_OK);
	assert_string_equal(listen_addr, "0.0.0.0:1");
	assert_int_equal(timeout_ms, 2000);
	assert_string_equal(level, "info");
}

static void
test_config_reads_environment(void **state)
{
	char err[256];
	(void) state;
	setenv("T_LISTEN", "127.0.0.1:9", 1);
	setenv("T_TIMEOUT_MS", "15", 1);
	setenv("T_LEVEL", "debug", 1);
	assert_int_equal(cm_cfg_load(opts, NOPTS, err, sizeof(err)), CM_OK);
	assert_string_equal(listen_addr, "127.0.0.1:9");
	assert_int_equal(timeout_ms, 15);
	assert_string_equal(level, "debug");
}

static void
test_config_rejects_bad_values_naming_variable(void **state)
{
	char        err[256];
	const char *bad[] = {"0", "60001", "12x", "-5", "abc", " 5"};
	(void) state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		setenv("T_TIMEOUT_MS", bad[i], 1);
		assert_int_equal(
		    cm_cfg_load(opts, NOPTS, err, sizeof(err)), CM_EINVAL);
		assert_non_null(strstr(err, "T_TIMEOUT_MS"));
	}
	unsetenv("T_TIMEOUT_MS");
	setenv("T_LEVEL", "loud", 1);
	assert_int_equal(
	    cm_cfg_load(opts, NOPTS, err, sizeof(err)), CM_EINVAL);
	assert_non_null(strstr(err, "T_LEVEL"));
}

static void
test_config_required_missing(void **state)
{
	char             err[256];
	const char      *up;
	const cm_cfg_opt req[] = {
	    {"T_REQUIRED", CM_CFG_STRING, NULL, 0, 0, &up, "needed"},
	};
	(void) state;
	unsetenv("T_REQUIRED");
	assert_int_equal(cm_cfg_load(req, 1, err, sizeof(err)), CM_EINVAL);
	assert_non_null(strstr(err, "T_REQUIRED is required"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_config_defaults, reset),
	    cmocka_unit_test_setup(test_config_reads_environment, reset),
	    cmocka_unit_test_setup(
	        test_config_rejects_bad_values_naming_variable, reset),
	    cmocka_unit_test_setup(test_config_required_missing, reset),
	};
	return cmocka_run_group_tests_name("cm_config", tests, NULL, NULL);
}
