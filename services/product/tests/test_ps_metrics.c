/* test_ps_metrics.c - the service's metric families, what each request
 * records, and the trace id of per-request log lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cm.h"
#include "cm_metrics.h"
#include "ps.h"

static int
setup(void **state)
{
	(void) state;
	if (cm_metrics_init(2) != CM_OK || ps_metrics_init(2) != CM_OK) {
		return -1;
	}
	return 0;
}

static int
teardown(void **state)
{
	(void) state;
	cm_metrics_fini();
	return 0;
}

static char *
render(void)
{
	char  *text = NULL;
	size_t len;

	assert_int_equal(cm_metrics_render(&text, &len), CM_OK);
	assert_int_equal(strlen(text), len);
	return text;
}

static void
test_metrics_families(void **state)
{
	static const char *const names[] = {"product_rpc_requests_total",
	    "product_rpc_duration_seconds", "product_rpc_in_flight",
	    "product_cache_results_total", "product_singleflight_joins_total",
	    "product_cache_leases_total",
	    "product_redis_command_duration_seconds",
	    "product_redis_errors_total", "product_redis_circuit_state",
	    "product_pg_query_duration_seconds", "product_pg_errors_total",
	    "product_pg_connections", "product_pg_queue_waits_total",
	    "product_pg_queue_wait_seconds", "product_build_info",
	    "product_draining"};
	char                    *text = render();

	(void) state;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char want[128];
		snprintf(want, sizeof(want), "# TYPE %s ", names[i]);
		if (strstr(text, want) == NULL) {
			fail_msg("no family %s", names[i]);
		}
	}
	assert_non_null(strstr(text, "product_build_info{version=\""));
	free(text);
}

static void
test_metrics_rpc_and_cache(void **state)
{
	Catalog__Request  rq = CATALOG__REQUEST__INIT;
	Catalog__Response rsp = CATALOG__RESPONSE__INIT;
	char             *text;

	(void) state;
	rq.method = CATALOG__METHOD__METHOD_GET_PRODUCT;
	rsp.status = CATALOG__STATUS__STATUS_NOT_FOUND;
	rsp.cache = CATALOG__CACHE_OUTCOME__CACHE_HIT;
	ps_metrics_rpc_done(&rq, &rsp, 1500);
	rsp.status = CATALOG__STATUS__STATUS_OK;
	rsp.cache = CATALOG__CACHE_OUTCOME__CACHE_STALE;
	ps_metrics_rpc_done(&rq, &rsp, 1500);
	rq.method = CATALOG__METHOD__METHOD_PING;
	rsp.status = CATALOG__STATUS__STATUS_DRAINING;
	rsp.cache = CATALOG__CACHE_OUTCOME__CACHE_NONE;
	ps_metrics_rpc_done(&rq, &rsp, 10);
	text = render();
	assert_non_null(strstr(text,
	    "product_rpc_requests_total{method=\""
	    "get_product\",status=\"not_found\"} 1"));
	assert_non_null(strstr(text,
	    "product_rpc_requests_total{method=\""
	    "ping\",status=\"draining\"} 1"));
	assert_non_null(strstr(
	    text, "product_cache_results_total{result=\"negative_hit\"} 1"));
	assert_non_null(
	    strstr(text, "product_cache_results_total{result=\"stale\"} 1"));
	assert_null(
	    strstr(text, "product_cache_results_total{result=\"hit\"} 1"));
	free(text);
}

static void
test_metrics_pg_connections_gauge(void **state)
{
	(void) state;
	assert_false(ps_metrics_pg_up());
	ps_metrics_pg_conn(0, 2); /* two connections, down */
	ps_metrics_pg_conn(1, 1); /* one comes up */
	ps_metrics_pg_conn(0, -1);
	assert_true(ps_metrics_pg_up());
	ps_metrics_pg_conn(1, -1);
	ps_metrics_pg_conn(0, 1);
	assert_false(ps_metrics_pg_up());
}

static void
test_metrics_breaker_gauge(void **state)
{
	char *text;

	(void) state;
	ps_metrics_breaker_state(0, PS_BREAKER_HALF_OPEN);
	ps_metrics_breaker_state(1, PS_BREAKER_OPEN);
	text = render();
	assert_non_null(strstr(text, "product_redis_circuit_state 1\n"));
	free(text);
	ps_metrics_breaker_state(1, PS_BREAKER_CLOSED);
	text = render();
	assert_non_null(strstr(text, "product_redis_circuit_state 2\n"));
	free(text);
	ps_metrics_breaker_state(0, PS_BREAKER_CLOSED);
}

static void
test_metrics_trace_id(void **state)
{
	Catalog__Request rq = CATALOG__REQUEST__INIT;
	char             buf[33];

	(void) state;
	assert_string_equal(ps_trace_id(&rq, buf, sizeof(buf)), "-");
	rq.traceparent =
	    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
	assert_string_equal(ps_trace_id(&rq, buf, sizeof(buf)),
	    "4bf92f3577b34da6a3ce929d0e0e4736");
	rq.traceparent = "00-not-a-trace";
	assert_string_equal(ps_trace_id(&rq, buf, sizeof(buf)), "-");
	assert_string_equal(ps_trace_id(NULL, buf, sizeof(buf)), "-");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_metrics_families),
	    cmocka_unit_test(test_metrics_rpc_and_cache),
	    cmocka_unit_test(test_metrics_pg_connections_gauge),
	    cmocka_unit_test(test_metrics_breaker_gauge),
	    cmocka_unit_test(test_metrics_trace_id),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
