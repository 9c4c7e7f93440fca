/* test_gw_http.c - status mapping, listen address parsing, and a live
 * server against a fake replica: access-log fields, traceparent, overload
 * and readiness during a drain. */
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

static void
test_http_status_mapping(void **state)
{
	static const int want[][2] = {
	    {CATALOG__STATUS__STATUS_OK, 200},
	    {CATALOG__STATUS__STATUS_CREATED, 201},
	    {CATALOG__STATUS__STATUS_NO_CONTENT, 204},
	    {CATALOG__STATUS__STATUS_NOT_MODIFIED, 304},
	    {CATALOG__STATUS__STATUS_NOT_FOUND, 404},
	    {CATALOG__STATUS__STATUS_INVALID, 400},
	    {CATALOG__STATUS__STATUS_CONFLICT, 409},
	    {CATALOG__STATUS__STATUS_PRECONDITION_FAILED, 412},
	    {CATALOG__STATUS__STATUS_UNPROCESSABLE, 422},
	    {CATALOG__STATUS__STATUS_UNAVAILABLE, 503},
	    {CATALOG__STATUS__STATUS_DEADLINE_EXCEEDED, 504},
	    {CATALOG__STATUS__STATUS_INTERNAL, 500},
	    {CATALOG__STATUS__STATUS_UNSPECIFIED, 500},
	    {99, 500},
	};
	(void) state;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		assert_int_equal(gw_http_status_of(want[i][0]), want[i][1]);
	}
}

static void
test_http_parse_listen_good(void **state)
{
	char host[64];
	int  port;
	(void) state;
	assert_int_equal(
	    cm_net_parse_listen("0.0.0.0:8080", host, sizeof(host), &port), 0);
	assert_string_equal(host, "0.0.0.0");
	assert_int_equal(port, 8080);
	assert_int_equal(
	    cm_net_parse_listen("[::1]:0", host, sizeof(host), &port), 0);
	assert_string_equal(host, "::1");
	assert_int_equal(port, 0);
	assert_int_equal(
	    cm_net_parse_listen("localhost:65535", host, sizeof(host), &port),
	    0);
	assert_int_equal(port, 65535);
}

static void
test_http_parse_listen_bad(void **state)
{
	const char *bad[] = {"", "8080", ":8080", "host:", "host:65536",
	    "host:80x", "::1:80", "[::1]80", "[::1", "host:-1", "host:123456"};
	char        host[64];
	int         port;
	(void) state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(
		    cm_net_parse_listen(bad[i], host, sizeof(host), &port),
		    CM_EINVAL);
	}
	assert_int_equal(
	    cm_net_parse_listen("averyveryverylonghostname:1", host, 8, &port),
	    CM_EINVAL);
}

static void
test_http_listen_port_zero_shared(void **state)
{
	char err[128];
	int  fd1, fd2, p1, p2;
	(void) state;
	assert_int_equal(cm_net_listen("127.0.0.1", 0, GW_LISTEN_BACKLOG, &fd1,
	                     &p1, err, sizeof(err)),
	    0);
	assert_true(p1 > 0);
	/* SO_REUSEPORT lets a second loop bind the same port */
	assert_int_equal(cm_net_listen("127.0.0.1", p1, GW_LISTEN_BACKLOG,
	                     &fd2, &p2, err, sizeof(err)),
	    0);
	assert_int_equal(p1, p2);
	close(fd1);
	close(fd2);
	assert_int_equal(cm_net_listen("no.such.host.invalid", 0,
	                     GW_LISTEN_BACKLOG, &fd1, &p1, err, sizeof(err)),
	    CM_EINVAL);
}

/* ---- a live server ---- */

#define FAKE_URL "inproc://test-gw-http"

typedef struct server {
	fake     f;
	loop     l;
	gw_http *http;
	int      port;
} server;

static void
server_start(server *s, int max_inflight, int delay_ms)
{
	char err[128];
	int  fd;

	memset(s, 0, sizeof(*s));
	fake_start(&s->f, FAKE_URL);
	s->f.delay_ms = delay_ms;
	loop_open(&s->l, FAKE_URL);
	assert_int_equal(cm_net_listen("127.0.0.1", 0, GW_LISTEN_BACKLOG, &fd,
	                     &s->port, err, sizeof(err)),
	    CM_OK);
	assert_int_equal(
	    gw_http_new(&s->http, s->l.base, fd, s->l.rpc, 2000, 1 << 20),
	    CM_OK);
	gw_http_set_max_inflight(s->http, max_inflight);
	loop_run(&s->l);
}

static void
server_stop(server *s)
{
	loop_stop(&s->l);
	gw_rpc_shutdown(s->l.rpc);
	gw_http_free(s->http);
	gw_rpc_free(s->l.rpc);
	event_base_free(s->l.base);
	fake_stop(&s->f);
}

static int
setup_metrics(void **state)
{
	(void) state;
	cm_log_set_format("json");
	gw_drain_init(&(gw_drain) {0}, 0, 0);
	if (cm_metrics_init(1) != CM_OK || gw_metrics_init() != CM_OK) {
		return -1;
	}
	return 0;
}

static int
teardown_metrics(void **state)
{
	(void) state;
	cm_metrics_fini();
	return 0;
}

/* A counter's value in the exposition, or -1 when the series is absent. */
static long long
scrape(const char *series)
{
	char     *text, *p;
	size_t    len;
	long long v = -1;

	assert_int_equal(cm_metrics_render(&text, &len), CM_OK);
	if ((p = strstr(text, series)) != NULL && p[strlen(series)] == ' ') {
		v = strtoll(p + strlen(series) + 1, NULL, 10);
	}
	free(text);
	return v;
}

static void
test_http_access_log_fields(void **state)
{
	server      s;
	char       *resp, *log;
	const char *tp;
	(void) state;
	server_start(&s, 100, 0);
	capture_start();
	resp = http_get(s.port, "/products/7",
	    "X-Request-Id: req-abc.1\r\n"
	    "traceparent: "
	    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n");
	log = capture_wait("\"event\":\"GW-ACCESS\"");
	capture_end();
	assert_int_equal(status_of(resp), 200);
	assert_string_equal(header_of(resp, "X-Request-Id"), "req-abc.1");
	/* the client's trace goes on with this hop's span as parent */
	assert_non_null(tp = header_of(resp, "traceparent"));
	assert_int_equal(strlen(tp), 55);
	assert_memory_equal(tp, "00-0af7651916cd43dd8448eb211c80319c-", 36);
	assert_string_not_equal(tp + 36, "b7ad6b7169203331-01");
	assert_string_equal(tp + 52, "-01");
	/* the replica got the same traceparent */
	assert_string_equal(s.f.traceparent, tp);
	assert_non_null(strstr(log, "\"request_id\":\"req-abc.1\""));
	assert_non_null(strstr(log,
	    "\"trace_id\":\"0af7651916cd43dd8448eb211c80319c\",\"method\":"
	    "\"GET\",\"route\":\"/products/{id}\",\"path\":\"/products/"
	    "7\",\"status\":200,\"duration_ms\":"));
	assert_non_null(strstr(log,
	    "\"cache\":\"HIT\",\"replica\":\"fake-1\",\"upstream\":"
	    "\"" FAKE_URL "\",\"retries\":0,\"bytes\":"));
	{
		char want[300];
		snprintf(want, sizeof(want), "\"bytes\":%s}",
		    header_of(resp, "Content-Length"));
		assert_non_null(strstr(log, want));
	}
	free(resp);
	free(log);
	assert_int_equal(
	    scrape("gateway_http_requests_total{route=\"/products/{id}\","
	           "method=\"GET\",code=\"200\"}"),
	    1);
	assert_int_equal(
	    scrape("gateway_cache_results_total{result=\"hit\"}"), 1);
	assert_int_equal(scrape("gateway_http_requests_in_flight"), 0);
	server_stop(&s);
}

static void
test_http_bad_traceparent_starts_a_trace(void **state)
{
	server      s;
	char       *resp, *log, want[64];
	const char *tp;
	(void) state;
	server_start(&s, 100, 0);
	capture_start();
	/* upper-case hex is invalid; so is a bad X-Request-Id */
	resp = http_get(s.port, "/nope",
	    "X-Request-Id: bad id\r\n"
	    "traceparent: "
	    "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01\r\n");
	log = capture_wait("\"event\":\"GW-ACCESS\"");
	capture_end();
	assert_int_equal(status_of(resp), 404);
	assert_non_null(tp = header_of(resp, "traceparent"));
	assert_int_equal(strlen(tp), 55);
	assert_true(strncasecmp(tp + 3, "0af7651916cd43dd", 16) != 0);
	snprintf(want, sizeof(want), "\"trace_id\":\"%.32s\"", tp + 3);
	assert_non_null(strstr(log, want));
	assert_null(strstr(log, "bad id"));
	assert_non_null(strstr(log, "\"route\":\"other\""));
	assert_non_null(strstr(log, "\"replica\":\"-\""));
	free(resp);
	free(log);
	assert_int_equal(scrape("gateway_http_requests_total{route=\"other\","
	                        "method=\"GET\",code=\"404\"}"),
	    1);
	server_stop(&s);
}

/* The first request waits on a slow replica; with room for one, the
 * second is refused at once, while the probes still pass. */
static void
test_http_overload_refused_at_once(void **state)
{
	server             s;
	char              *resp;
	int                fd;
	struct sockaddr_in sa = {0};
	const char        *slow = "GET /products/1 HTTP/1.1\r\nHost: t\r\n"
	                          "Connection: close\r\n\r\n";
	char               buf[4096];
	ssize_t            n;
	size_t             len = 0;
	int64_t            t0;
	(void) state;
	server_start(&s, 1, 400);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t) s.port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
	assert_int_equal(
	    write(fd, slow, strlen(slow)), (ssize_t) strlen(slow));
	usleep(100000); /* the slow one is in flight */
	t0 = cm_mono_us();
	resp = http_get(s.port, "/products/2", NULL);
	assert_true(cm_mono_us() - t0 < 200000);
	assert_int_equal(status_of(resp), 503);
	assert_string_equal(header_of(resp, "Retry-After"), "1");
	assert_non_null(strstr(resp, "overloaded"));
	free(resp);
	resp = http_get(s.port, "/healthz", NULL);
	assert_int_equal(status_of(resp), 200);
	free(resp);
	while ((n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0) {
		len += (size_t) n;
	}
	buf[len] = '\0';
	close(fd);
	assert_int_equal(status_of(buf), 200);
	assert_int_equal(
	    scrape("gateway_rejected_total{reason=\"overload\"}"), 1);
	server_stop(&s);
}

/* From the stop signal on, /readyz is 503 without asking a replica and
 * replies say Connection: close; other requests are still served. */
static void
test_http_readyz_503_once_draining(void **state)
{
	server   s;
	gw_drain d;
	char    *resp;
	(void) state;
	server_start(&s, 100, 0);
	resp = http_get(s.port, "/readyz", NULL);
	assert_int_equal(status_of(resp), 200);
	free(resp);
	gw_drain_init(&d, 5, 10);
	assert_int_equal(gw_drain_signal(&d, SIGTERM, 0), GW_DRAIN_DELAY);
	resp = http_get(s.port, "/readyz", NULL);
	assert_int_equal(status_of(resp), 503);
	assert_string_equal(header_of(resp, "Connection"), "close");
	free(resp);
	resp = http_get(s.port, "/products/3", NULL);
	assert_int_equal(status_of(resp), 200);
	assert_string_equal(header_of(resp, "Connection"), "close");
	free(resp);
	gw_drain_init(&d, 5, 10); /* ready again for the next test */
	server_stop(&s);
}

static void
stopped(void *arg)
{
	*(int *) arg = 1;
}

static void
drain_now(evutil_socket_t fd, short what, void *arg)
{
	server *s = arg;
	(void) fd;
	(void) what;
	gw_http_drain(s->http, stopped, &s->port);
}

/* After gw_http_drain() the listener is closed; a request that was
 * waiting on its replica still gets its reply, with Connection: close. */
static void
test_http_drain_finishes_in_flight(void **state)
{
	server             s;
	int                fd, port, c;
	struct sockaddr_in sa = {0};
	const char        *req = "GET /products/1 HTTP/1.1\r\nHost: t\r\n\r\n";
	char               buf[4096];
	ssize_t            n;
	size_t             len = 0;
	(void) state;
	server_start(&s, 100, 300);
	port = s.port;
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t) port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
	assert_int_equal(write(fd, req, strlen(req)), (ssize_t) strlen(req));
	usleep(100000);
	s.port = 0; /* becomes 1 when the server is idle */
	event_base_once(s.l.base, -1, EV_TIMEOUT, drain_now, &s, NULL);
	usleep(50000);
	c = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_not_equal(
	    connect(c, (struct sockaddr *) &sa, sizeof(sa)), 0);
	close(c);
	/* keep-alive was asked for, but the reply closes the connection */
	while ((n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0) {
		len += (size_t) n;
	}
	buf[len] = '\0';
	close(fd);
	assert_int_equal(status_of(buf), 200);
	assert_string_equal(header_of(buf, "Connection"), "close");
	for (int i = 0; i < 100 && s.port == 0; i++) {
		usleep(10000);
	}
	assert_int_equal(s.port, 1);
	server_stop(&s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_http_status_mapping),
	    cmocka_unit_test(test_http_parse_listen_good),
	    cmocka_unit_test(test_http_parse_listen_bad),
	    cmocka_unit_test(test_http_listen_port_zero_shared),
	    cmocka_unit_test_setup_teardown(
	        test_http_access_log_fields, setup_metrics, teardown_metrics),
	    cmocka_unit_test_setup_teardown(
	        test_http_bad_traceparent_starts_a_trace, setup_metrics,
	        teardown_metrics),
	    cmocka_unit_test_setup_teardown(test_http_overload_refused_at_once,
	        setup_metrics, teardown_metrics),
	    cmocka_unit_test_setup_teardown(test_http_readyz_503_once_draining,
	        setup_metrics, teardown_metrics),
	    cmocka_unit_test_setup_teardown(test_http_drain_finishes_in_flight,
	        setup_metrics, teardown_metrics),
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
