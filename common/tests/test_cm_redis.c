/* test_cm_redis.c - the reconnecting hiredis connection, without a Redis
 * server: a refused connect, a peer that accepts and hangs up, free. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/async.h>

#include "cm.h"
#include "cm_redis.h"

#define DOWNS_MAX 8

/* What the callbacks saw. */
typedef struct seen {
	struct event_base *base;
	cm_redis_conn     *conn;
	int                opened;
	int                downs, want_downs;
	int                backoff[DOWNS_MAX]; /* at each down */
	int                ctx_at_down;        /* contexts still live */
	char               why[128];
	int                timed_out;
} seen;

static void
on_opened(void *arg, struct redisAsyncContext *ac)
{
	seen *s = arg;

	assert_non_null(ac);
	assert_ptr_equal(cm_redis_conn_arg(ac), s);
	s->opened++;
}

static void
on_down(void *arg, const char *why)
{
	seen *s = arg;

	if (s->downs < DOWNS_MAX) {
		s->backoff[s->downs] = cm_redis_conn_backoff_ms(s->conn);
	}
	s->downs++;
	s->ctx_at_down += cm_redis_conn_ctx(s->conn) != NULL;
	snprintf(s->why, sizeof(s->why), "%s", why);
	if (s->downs >= s->want_downs) {
		event_base_loopbreak(s->base);
	}
}

static void
guard_cb(evutil_socket_t fd, short what, void *arg)
{
	seen *s = arg;

	(void) fd;
	(void) what;
	s->timed_out = 1;
	event_base_loopbreak(s->base);
}

/* Runs s->base until the callbacks break the loop, or 10 s (a failure). */
static void
run_loop(seen *s)
{
	struct timeval tv = {10, 0};
	struct event  *guard = evtimer_new(s->base, guard_cb, s);

	assert_non_null(guard);
	evtimer_add(guard, &tv);
	event_base_dispatch(s->base);
	event_free(guard);
	assert_false(s->timed_out);
}

/* A loopback TCP socket bound to a free port; listening when listen_it,
 * else closed again (nothing listens on the port then). */
static int
loopback_port(int listen_it, int *fd_out)
{
	struct sockaddr_in sa;
	socklen_t          len = sizeof(sa);
	int                fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *) &sa, &len), 0);
	if (listen_it) {
		assert_int_equal(listen(fd, 4), 0);
		*fd_out = fd;
	} else {
		close(fd);
	}
	return ntohs(sa.sin_port);
}

static cm_redis_conn *
open_host(
    seen *s, const char *host, int port, int up_on_connect, const char *pass)
{
	cm_redis_url  url;
	cm_redis_opts o;

	memset(&url, 0, sizeof(url));
	snprintf(url.host, sizeof(url.host), "%s", host);
	snprintf(url.pass, sizeof(url.pass), "%s", pass);
	url.port = port;
	memset(&o, 0, sizeof(o));
	o.url = &url;
	o.base = s->base;
	o.connect_timeout_ms = 5000;
	o.backoff_min_ms = 1; /* fast: the test waits for each retry */
	o.backoff_max_ms = 8;
	o.log_prefix = "TEST-REDIS";
	o.up_on_connect = up_on_connect;
	o.resolve = 1; /* only names are looked up (with evdns) */
	o.opened = on_opened;
	o.down = on_down;
	o.arg = s;
	assert_int_equal(cm_redis_conn_new(&s->conn, &o), CM_OK);
	return s->conn;
}

static cm_redis_conn *
open_conn(seen *s, int port, int up_on_connect, const char *pass)
{
	return open_host(s, "127.0.0.1", port, up_on_connect, pass);
}

/* Nothing listens: each connect is refused, the down callback hears of
 * it with the context already gone, and the retries come after 1, 2, 4,
 * 8, 8, ... ms. */
static void
test_cm_redis_refused_backs_off(void **state)
{
	seen s = {0};
	int  port = loopback_port(0, NULL);

	(void) state;
	s.base = event_base_new();
	s.want_downs = 6;
	open_conn(&s, port, 1, "");
	run_loop(&s);
	assert_int_equal(s.downs, 6);
	assert_int_equal(s.ctx_at_down, 0);
	assert_int_equal(s.opened, 6); /* one connect a down, no more */
	assert_int_equal(s.backoff[0], 1);
	assert_int_equal(s.backoff[1], 2);
	assert_int_equal(s.backoff[2], 4);
	assert_int_equal(s.backoff[3], 8);
	assert_int_equal(s.backoff[4], 8);
	assert_int_equal(s.backoff[5], 8);
	assert_false(cm_redis_conn_connected(s.conn));
	assert_true(strlen(s.why) > 0);
	cm_redis_conn_free(s.conn);
	event_base_free(s.base);
}

typedef struct peer {
	seen *s;
	int   lfd, cfd;
} peer;

/* Once the client is connected and the peer accepted: hang up, and stop
 * listening so that the reconnect is refused. */
static void
poll_cb(evutil_socket_t fd, short what, void *arg)
{
	peer          *p = arg;
	struct timeval tv = {0, 1000};

	(void) fd;
	(void) what;
	if (p->cfd < 0) {
		p->cfd = accept(p->lfd, NULL, NULL);
	}
	if (p->cfd >= 0 && cm_redis_conn_connected(p->s->conn)) {
		close(p->cfd);
		close(p->lfd);
		p->cfd = -2; /* done */
		return;
	}
	event_base_once(p->s->base, -1, EV_TIMEOUT, poll_cb, p, &tv);
}

/* A peer that accepts and hangs up: the connection comes up, is lost,
 * and the retry (refused) follows after the shortest back-off. */
static void
test_cm_redis_hangup_retries(void **state)
{
	seen           s = {0};
	peer           p = {&s, -1, -1};
	int            port = loopback_port(1, &p.lfd);
	struct timeval tv = {0, 1000};

	(void) state;
	s.base = event_base_new();
	s.want_downs = 2;
	open_conn(&s, port, 1, "secret"); /* AUTH goes unread */
	assert_non_null(cm_redis_conn_ctx(s.conn));
	assert_false(cm_redis_conn_connected(s.conn));
	event_base_once(s.base, -1, EV_TIMEOUT, poll_cb, &p, &tv);
	run_loop(&s);
	assert_int_equal(p.cfd, -2);
	assert_int_equal(s.downs, 2);
	assert_int_equal(s.opened, 2);
	assert_int_equal(s.ctx_at_down, 0);
	assert_int_equal(s.backoff[0], 1);
	assert_int_equal(s.backoff[1], 2);
	cm_redis_conn_free(s.conn);
	event_base_free(s.base);
}

/* Without up_on_connect only cm_redis_conn_up() starts the back-off
 * over. */
static void
test_cm_redis_up_restarts_backoff(void **state)
{
	seen s = {0};
	int  port = loopback_port(0, NULL);

	(void) state;
	s.base = event_base_new();
	s.want_downs = 2;
	open_conn(&s, port, 0, "");
	run_loop(&s);
	assert_int_equal(s.backoff[1], 2);
	cm_redis_conn_up(s.conn);
	assert_int_equal(cm_redis_conn_backoff_ms(s.conn), 1);
	cm_redis_conn_free(s.conn);
	event_base_free(s.base);
}

/* A name is looked up with evdns first (the gateway's way): "localhost"
 * resolves, the connect is refused and the down callback hears of it. */
static void
test_cm_redis_resolves_names(void **state)
{
	seen s = {0};
	int  port = loopback_port(0, NULL);

	(void) state;
	s.base = event_base_new();
	s.want_downs = 2;
	open_host(&s, "localhost", port, 1, "");
	run_loop(&s);
	assert_int_equal(s.downs, 2);
	assert_int_equal(s.opened, 2);
	cm_redis_conn_free(s.conn);
	event_base_free(s.base);
}

/* Freeing while a connect is in progress calls no callback. */
static void
test_cm_redis_free_is_quiet(void **state)
{
	seen s = {0};
	int  port = loopback_port(0, NULL);

	(void) state;
	s.base = event_base_new();
	open_conn(&s, port, 1, "");
	cm_redis_conn_free(s.conn);
	assert_int_equal(event_base_loop(s.base, EVLOOP_NONBLOCK), 1);
	assert_int_equal(s.downs, 0);
	cm_redis_conn_free(NULL);
	event_base_free(s.base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cm_redis_refused_backs_off),
	    cmocka_unit_test(test_cm_redis_hangup_retries),
	    cmocka_unit_test(test_cm_redis_up_restarts_backoff),
	    cmocka_unit_test(test_cm_redis_resolves_names),
	    cmocka_unit_test(test_cm_redis_free_is_quiet),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
