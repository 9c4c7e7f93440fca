/* test_gw_admin.c - the drain state machine, and the admin listener on its
 * own thread: /metrics, /healthz, /readyz (probed through a loop's RPC
 * client against a fake replica), 404 and 405. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/thread.h>

#include "cm.h"
#include "cm_net.h"
#include "cm_log.h"
#include "cm_metrics.h"
#include "gw.h"
#include "gw_live.h"

/* ---- drain state machine ---- */

static void
test_drain_sigterm_waits_then_closes(void **state)
{
	gw_drain d;
	(void) state;
	gw_drain_init(&d, 5, 10);
	assert_int_equal(d.phase, GW_DRAIN_RUNNING);
	assert_int_equal(gw_drain_unready(), 0);
	assert_int_equal(gw_drain_wait_ms(&d, 0), -1);
	assert_int_equal(gw_drain_tick(&d, 100000), GW_DRAIN_RUNNING);

	assert_int_equal(gw_drain_signal(&d, SIGTERM, 1000), GW_DRAIN_DELAY);
	assert_int_equal(gw_drain_unready(), 1);
	assert_int_equal(gw_drain_wait_ms(&d, 1000), 5000);
	assert_int_equal(gw_drain_tick(&d, 5999), GW_DRAIN_DELAY);
	assert_int_equal(gw_drain_wait_ms(&d, 5999), 1);
	/* the delay is over: listeners close, the timeout starts */
	assert_int_equal(gw_drain_tick(&d, 6000), GW_DRAIN_CLOSE);
	assert_int_equal(gw_drain_wait_ms(&d, 6000), 10000);
	assert_int_equal(gw_drain_tick(&d, 15999), GW_DRAIN_CLOSE);
	assert_int_equal(gw_drain_tick(&d, 16000), GW_DRAIN_FORCE);
	assert_int_equal(gw_drain_wait_ms(&d, 16000), -1);
	assert_int_equal(gw_drain_unready(), 1);
	gw_drain_init(&d, 5, 10);
	assert_int_equal(gw_drain_unready(), 0);
}

static void
test_drain_sigint_skips_the_delay(void **state)
{
	gw_drain d;
	(void) state;
	gw_drain_init(&d, 5, 10);
	assert_int_equal(gw_drain_signal(&d, SIGINT, 0), GW_DRAIN_CLOSE);
	assert_int_equal(gw_drain_unready(), 1);
	assert_int_equal(gw_drain_wait_ms(&d, 0), 10000);
	/* a zero delay skips it for SIGTERM too */
	gw_drain_init(&d, 0, 10);
	assert_int_equal(gw_drain_signal(&d, SIGTERM, 0), GW_DRAIN_CLOSE);
	gw_drain_init(&d, 5, 10);
}

static void
test_drain_second_signal_hurries(void **state)
{
	gw_drain d;
	(void) state;
	gw_drain_init(&d, 300, 10);
	assert_int_equal(gw_drain_signal(&d, SIGTERM, 0), GW_DRAIN_DELAY);
	/* a second signal ends the delay at once ... */
	assert_int_equal(gw_drain_signal(&d, SIGTERM, 50), GW_DRAIN_CLOSE);
	assert_int_equal(gw_drain_wait_ms(&d, 50), 10000);
	/* ... and a third stops without waiting for requests */
	assert_int_equal(gw_drain_signal(&d, SIGINT, 60), GW_DRAIN_FORCE);
	assert_int_equal(gw_drain_signal(&d, SIGINT, 70), GW_DRAIN_FORCE);
	/* a zero timeout forces at the first tick */
	gw_drain_init(&d, 0, 0);
	assert_int_equal(gw_drain_signal(&d, SIGTERM, 0), GW_DRAIN_CLOSE);
	assert_int_equal(gw_drain_tick(&d, 0), GW_DRAIN_FORCE);
	gw_drain_init(&d, 5, 10);
}

/* ---- the admin listener ---- */

#define FAKE_URL "inproc://test-gw-admin"

typedef struct admin_fixture {
	fake      f;
	loop      l;
	gw_admin *adm;
	int       port;
} admin_fixture;

static void
admin_up(admin_fixture *a, int with_replica)
{
	char err[128];
	int  fd;

	memset(a, 0, sizeof(*a));
	if (with_replica) {
		fake_start(&a->f, FAKE_URL);
	}
	loop_open(&a->l, FAKE_URL);
	loop_run(&a->l);
	assert_int_equal(cm_net_listen("127.0.0.1", 0, GW_LISTEN_BACKLOG, &fd,
	                     &a->port, err, sizeof(err)),
	    CM_OK);
	assert_int_equal(
	    gw_admin_new(&a->adm, fd, &a->l.base, &a->l.rpc, 1), CM_OK);
	assert_int_equal(gw_admin_start(a->adm), CM_OK);
}

/* The order gw_main.c keeps: detach, stop the loop, shut its RPC client
 * down (answering probes still in it), then free the admin. */
static void
admin_down(admin_fixture *a, int with_replica)
{
	gw_admin_detach_loops(a->adm);
	loop_stop(&a->l);
	gw_rpc_shutdown(a->l.rpc);
	gw_admin_free(a->adm);
	gw_rpc_free(a->l.rpc);
	event_base_free(a->l.base);
	if (with_replica) {
		fake_stop(&a->f);
	}
}

static void
test_admin_endpoints(void **state)
{
	admin_fixture a;
	gw_drain      d;
	char         *r;
	(void) state;
	assert_int_equal(cm_metrics_init(1), CM_OK);
	assert_int_equal(gw_metrics_init(), CM_OK);
	gw_drain_init(&d, 5, 10);
	admin_up(&a, 1);

	r = http_get(a.port, "/metrics", NULL);
	assert_int_equal(status_of(r), 200);
	assert_string_equal(header_of(r, "Content-Type"),
	    "text/plain; version=0.0.4; charset=utf-8");
	assert_non_null(strstr(r, "\r\n\r\n# HELP gateway_"));
	assert_non_null(strstr(r, "\ngateway_build_info{version=\""));
	free(r);

	r = http_raw(a.port,
	    "HEAD /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
	assert_int_equal(status_of(r), 200);
	assert_true(atoi(header_of(r, "Content-Length")) > 100);
	assert_null(strstr(r, "# HELP"));
	free(r);

	r = http_get(a.port, "/healthz", NULL);
	assert_int_equal(status_of(r), 200);
	assert_non_null(strstr(r, "{\"status\":\"ok\"}"));
	free(r);

	r = http_get(a.port, "/readyz", NULL);
	assert_int_equal(status_of(r), 200);
	assert_non_null(strstr(r, "{\"status\":\"ready\"}"));
	free(r);

	r = http_get(a.port, "/nope", NULL);
	assert_int_equal(status_of(r), 404);
	assert_string_equal(
	    header_of(r, "Content-Type"), "application/problem+json");
	free(r);

	r = http_raw(a.port,
	    "POST /metrics HTTP/1.1\r\nHost: t\r\n"
	    "Content-Length: 0\r\nConnection: close\r\n\r\n");
	assert_int_equal(status_of(r), 405);
	assert_string_equal(header_of(r, "Allow"), "GET, HEAD");
	free(r);

	/* a stop signal: not ready at once, without asking a replica */
	gw_drain_signal(&d, SIGTERM, 0);
	r = http_get(a.port, "/readyz", NULL);
	assert_int_equal(status_of(r), 503);
	free(r);
	/* the metrics stay up during the drain */
	r = http_get(a.port, "/metrics", NULL);
	assert_int_equal(status_of(r), 200);
	free(r);
	gw_drain_init(&d, 5, 10);

	admin_down(&a, 1);
	cm_metrics_fini();
}

/* No replica: the probe's ping fails and /readyz says 503. */
static void
test_admin_readyz_without_replica(void **state)
{
	admin_fixture a;
	gw_drain      d;
	char         *r;
	(void) state;
	gw_drain_init(&d, 5, 10);
	admin_up(&a, 0);
	r = http_get(a.port, "/readyz", NULL);
	assert_int_equal(status_of(r), 503);
	assert_non_null(strstr(r, "no product replica answered"));
	free(r);
	/* after detaching, probes are answered by the admin loop itself */
	gw_admin_detach_loops(a.adm);
	r = http_get(a.port, "/readyz", NULL);
	assert_int_equal(status_of(r), 503);
	free(r);
	admin_down(&a, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_drain_sigterm_waits_then_closes),
	    cmocka_unit_test(test_drain_sigint_skips_the_delay),
	    cmocka_unit_test(test_drain_second_signal_hurries),
	    cmocka_unit_test(test_admin_endpoints),
	    cmocka_unit_test(test_admin_readyz_without_replica),
	};
	int rv;
	signal(SIGPIPE, SIG_IGN);
	evthread_use_pthreads();
	cm_log_init("test", "error");
	rv = cmocka_run_group_tests(tests, NULL, NULL);
	nng_fini();
	libevent_global_shutdown();
	return rv;
}
