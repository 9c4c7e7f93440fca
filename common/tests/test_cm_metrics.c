/* test_cm_metrics.c - sharded counters, histograms and the exposition. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cm.h"
#include "cm_metrics.h"

static const char *const routes[] = {
    "/products/{id}", "/products", "other", NULL};
static const char *const codes[] = {"200", "404", "other", NULL};

static cm_metric *requests, *latency, *inflight;

static double
answer(void *arg)
{
	return *(double *) arg;
}

static double fortytwo = 42;

static int
setup(void **state)
{
	const cm_label labels[] = {{"route", routes}, {"code", codes}};
	(void) state;
	assert_int_equal(cm_metrics_init(4), CM_OK);
	requests = cm_metric_new(CM_METRIC_COUNTER, "t_requests_total",
	    "Requests answered.", labels, 2);
	latency = cm_metric_new(CM_METRIC_HISTOGRAM,
	    "t_request_duration_seconds", "Time to answer.", labels, 1);
	inflight = cm_metric_new(
	    CM_METRIC_GAUGE, "t_inflight", "Requests in flight.", NULL, 0);
	assert_non_null(requests);
	assert_non_null(latency);
	assert_non_null(inflight);
	assert_int_equal(
	    cm_metric_gauge_fn("t_answer", "The answer.", answer, &fortytwo),
	    CM_OK);
	return 0;
}

static int
teardown(void **state)
{
	(void) state;
	cm_metrics_fini();
	return 0;
}

static void *
bump(void *arg)
{
	int idx[2] = {0, 0};
	cm_metrics_thread_set((int) (intptr_t) arg);
	for (int i = 0; i < 10000; i++) {
		cm_metric_inc(requests, cm_metric_series(requests, idx));
	}
	return NULL;
}

static void
test_metrics_shards_sum_across_threads(void **state)
{
	pthread_t t[4];
	int       idx[2] = {0, 0};
	(void) state;
	for (int i = 0; i < 4; i++) {
		pthread_create(&t[i], NULL, bump, (void *) (intptr_t) (i + 1));
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
	}
	assert_int_equal(
	    cm_metric_value(requests, cm_metric_series(requests, idx)), 40000);
}

static void
test_metrics_label_index_falls_back_to_other(void **state)
{
	const cm_label l = {"code", codes};
	(void) state;
	assert_int_equal(cm_label_index(&l, "404"), 1);
	assert_int_equal(cm_label_index(&l, "418"), 2);
	assert_int_equal(cm_label_index(&l, NULL), 2);
}

static void
test_metrics_render_exposition(void **state)
{
	char  *text;
	size_t len;
	int    idx[2] = {1, 1};
	(void) state;
	cm_metric_inc(requests, cm_metric_series(requests, idx));
	cm_metric_observe(latency, 0, 0.003);
	cm_metric_observe(latency, 0, 0.2);
	cm_metric_inc(inflight, 0);
	cm_metric_inc(inflight, 0);
	cm_metric_dec(inflight, 0);
	assert_int_equal(cm_metrics_render(&text, &len), CM_OK);
	assert_int_equal(strlen(text), len);
	assert_non_null(strstr(text, "# TYPE t_requests_total counter\n"));
	assert_non_null(strstr(
	    text, "t_requests_total{route=\"/products\",code=\"404\"} 1\n"));
	/* A series that never moved is left out. */
	assert_null(strstr(text, "code=\"other\""));
	assert_non_null(strstr(text,
	    "t_request_duration_seconds_bucket{route=\"/products/{id}\","
	    "le=\"0.0025\"} 0\n"));
	assert_non_null(strstr(text,
	    "t_request_duration_seconds_bucket{route=\"/products/{id}\","
	    "le=\"0.005\"} 1\n"));
	assert_non_null(strstr(text,
	    "t_request_duration_seconds_bucket{route=\"/products/{id}\","
	    "le=\"+Inf\"} 2\n"));
	assert_non_null(strstr(text,
	    "t_request_duration_seconds_count{route=\"/products/{id}\"} 2\n"));
	assert_non_null(strstr(text,
	    "t_request_duration_seconds_sum{route=\"/products/{id}\"} "
	    "0.203000000\n"));
	assert_non_null(strstr(text, "t_inflight 1\n"));
	assert_non_null(strstr(text, "# TYPE t_answer gauge\nt_answer 42\n"));
	free(text);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_metrics_shards_sum_across_threads),
	    cmocka_unit_test(test_metrics_label_index_falls_back_to_other),
	    cmocka_unit_test(test_metrics_render_exposition),
	};
	return cmocka_run_group_tests_name(
	    "cm_metrics", tests, setup, teardown);
}
