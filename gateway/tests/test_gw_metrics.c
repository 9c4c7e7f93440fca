/* test_gw_metrics.c - the gateway's families: names, labels, the "other"
 * buckets, and a well-formed Prometheus text exposition (checked with
 * promtool too when it is installed). */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cm.h"
#include "cm_metrics.h"
#include "gw.h"

static int
setup(void **state)
{
	(void) state;
	if (cm_metrics_init(2) != CM_OK || gw_metrics_init() != CM_OK) {
		return -1;
	}
	cm_metrics_thread_set(1);
	return 0;
}

static int
teardown(void **state)
{
	(void) state;
	cm_metrics_thread_set(0);
	cm_metrics_fini();
	return 0;
}

static char *
render(void)
{
	char  *text;
	size_t len;
	assert_int_equal(cm_metrics_render(&text, &len), CM_OK);
	assert_int_equal(strlen(text), len);
	return text;
}

/* Asserts that the exposition holds line, whole. */
static void
assert_line(const char *text, const char *line)
{
	size_t      n = strlen(line);
	const char *p = text;

	while ((p = strstr(p, line)) != NULL) {
		if ((p == text || p[-1] == '\n') && p[n] == '\n') {
			return;
		}
		p += n;
	}
	fail_msg("no line \"%s\" in:\n%s", line, text);
}

static void
test_metrics_route_templates(void **state)
{
	(void) state;
	assert_string_equal(gw_metrics_route(GW_ROUTE_HEALTHZ), "/healthz");
	assert_string_equal(gw_metrics_route(GW_ROUTE_READYZ), "/readyz");
	assert_string_equal(
	    gw_metrics_route(GW_ROUTE_PRODUCT_LIST), "/products");
	assert_string_equal(
	    gw_metrics_route(GW_ROUTE_PRODUCT_CREATE), "/products");
	assert_string_equal(
	    gw_metrics_route(GW_ROUTE_PRODUCT_GET), "/products/{id}");
	assert_string_equal(
	    gw_metrics_route(GW_ROUTE_PRODUCT_PATCH), "/products/{id}");
	assert_string_equal(
	    gw_metrics_route(GW_ROUTE_PRODUCT_DELETE), "/products/{id}");
	assert_string_equal(gw_metrics_route(GW_ROUTE_NONE), "other");
}

static void
test_metrics_request_labels(void **state)
{
	char *text;
	(void) state;
	gw_metrics_request_start();
	gw_metrics_request_start();
	gw_metrics_request_start();
	gw_metrics_request_end(GW_ROUTE_PRODUCT_GET, GW_M_GET, 200, 0.002);
	gw_metrics_request_end(GW_ROUTE_PRODUCT_CREATE, GW_M_POST, 201, 0.3);
	/* unknown status, method and route land in "other" */
	gw_metrics_request_start();
	gw_metrics_request_end(GW_ROUTE_NONE, 0, 418, 0.0001);
	text = render();
	assert_line(text,
	    "gateway_http_requests_total{route=\"/products/{id}\","
	    "method=\"GET\",code=\"200\"} 1");
	assert_line(text,
	    "gateway_http_requests_total{route=\"/products\","
	    "method=\"POST\",code=\"201\"} 1");
	assert_line(text,
	    "gateway_http_requests_total{route=\"other\","
	    "method=\"other\",code=\"other\"} 1");
	assert_line(text,
	    "gateway_http_request_duration_seconds_bucket{route=\"/products/"
	    "{id}\",le=\"0.0025\"} 1");
	assert_line(text,
	    "gateway_http_request_duration_seconds_bucket{route=\"/products\","
	    "le=\"0.25\"} 0");
	assert_line(text,
	    "gateway_http_request_duration_seconds_bucket{route=\"/products\","
	    "le=\"0.5\"} 1");
	assert_line(text,
	    "gateway_http_request_duration_seconds_count{route=\"/products\"} "
	    "1");
	/* four started, three ended */
	assert_line(text, "gateway_http_requests_in_flight 1");
	assert_int_equal(gw_metrics_in_flight(), 1);
	assert_line(
	    text, "# TYPE gateway_http_request_duration_seconds histogram");
	assert_line(text, "# TYPE gateway_http_requests_total counter");
	assert_line(text, "# TYPE gateway_http_requests_in_flight gauge");
	free(text);
}

static void
test_metrics_cache_rejected_build(void **state)
{
	char *text, want[256];
	(void) state;
	gw_metrics_cache(CATALOG__CACHE_OUTCOME__CACHE_HIT);
	gw_metrics_cache(CATALOG__CACHE_OUTCOME__CACHE_HIT);
	gw_metrics_cache(CATALOG__CACHE_OUTCOME__CACHE_MISS);
	gw_metrics_cache(CATALOG__CACHE_OUTCOME__CACHE_BYPASS);
	gw_metrics_cache(CATALOG__CACHE_OUTCOME__CACHE_STALE);
	gw_metrics_cache(CATALOG__CACHE_OUTCOME__CACHE_NONE);
	gw_metrics_rejected(GW_REJECT_OVERLOAD);
	gw_metrics_rejected(GW_REJECT_DRAINING);
	gw_metrics_rejected(GW_REJECT_DRAINING);
	text = render();
	assert_line(text, "gateway_cache_results_total{result=\"hit\"} 2");
	assert_line(text, "gateway_cache_results_total{result=\"miss\"} 1");
	assert_line(text, "gateway_cache_results_total{result=\"bypass\"} 1");
	assert_line(text, "gateway_cache_results_total{result=\"stale\"} 1");
	assert_line(text, "gateway_rejected_total{reason=\"overload\"} 1");
	assert_line(text, "gateway_rejected_total{reason=\"draining\"} 2");
	snprintf(want, sizeof(want),
	    "gateway_build_info{version=\"%s\",revision=\"%s\"} 1", CM_VERSION,
	    CM_GIT_REV);
	assert_line(text, want);
	assert_non_null(strstr(text, "\nprocess_resident_memory_bytes "));
	assert_null(strstr(text, "\nprocess_resident_memory_bytes 0\n"));
	assert_non_null(strstr(text, "\nprocess_start_time_seconds "));
	assert_non_null(strstr(text, "\nprocess_open_fds "));
	free(text);
}

/* Every line is a comment (HELP or TYPE naming a metric) or a sample
 * "name{labels} value"; every sample's family was announced. */
static void
test_metrics_exposition_well_formed(void **state)
{
	char *text, *line, *save = NULL, family[128] = "";
	(void) state;
	gw_metrics_request_start();
	gw_metrics_request_end(GW_ROUTE_PRODUCT_LIST, GW_M_GET, 200, 0.01);
	gw_metrics_cache(CATALOG__CACHE_OUTCOME__CACHE_MISS);
	text = render();
	assert_true(text[strlen(text) - 1] == '\n');
	for (line = strtok_r(text, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		char   name[128];
		size_t n = strspn(line,
		    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		    "0123456789_:");
		if (strncmp(line, "# HELP ", 7) == 0) {
			continue;
		}
		if (strncmp(line, "# TYPE ", 7) == 0) {
			assert_int_equal(sscanf(line + 7, "%127s", family), 1);
			continue;
		}
		assert_true(n > 0 && n < sizeof(name));
		assert_false(isdigit((unsigned char) line[0]));
		memcpy(name, line, n);
		name[n] = '\0';
		/* the family, or one of a histogram's series */
		assert_int_equal(strncmp(name, family, strlen(family)), 0);
		if (line[n] == '{') {
			char *end = strchr(line + n, '}');
			assert_non_null(end);
			n = (size_t) (end - line) + 1;
		}
		assert_int_equal(line[n], ' ');
		{
			char *e;
			strtod(line + n + 1, &e);
			assert_true(e != line + n + 1 && *e == '\0');
		}
	}
	free(text);
}

/* The real check where promtool exists (apt-get install prometheus);
 * skipped otherwise: the integration tests require it. */
static void
test_metrics_promtool_lint(void **state)
{
	char  *text, path[] = "/tmp/gw-metrics-XXXXXX", cmd[256];
	FILE  *f;
	int    fd, rv;
	size_t len;
	(void) state;
	if (access("/usr/bin/promtool", X_OK) != 0) {
		skip();
	}
	gw_metrics_request_start();
	gw_metrics_request_end(GW_ROUTE_PRODUCT_GET, GW_M_GET, 200, 0.01);
	gw_metrics_rejected(GW_REJECT_OVERLOAD);
	text = render();
	len = strlen(text);
	assert_true((fd = mkstemp(path)) >= 0);
	assert_non_null(f = fdopen(fd, "w"));
	assert_int_equal(fwrite(text, 1, len, f), len);
	fclose(f);
	free(text);
	snprintf(cmd, sizeof(cmd), "/usr/bin/promtool check metrics < %s 1>&2",
	    path);
	rv = system(cmd);
	unlink(path);
	assert_int_equal(rv, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_metrics_route_templates),
	    cmocka_unit_test_setup_teardown(
	        test_metrics_request_labels, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_metrics_cache_rejected_build, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_metrics_exposition_well_formed, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_metrics_promtool_lint, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
