/* test_gw_discovery.c - upstream URLs that are names: parsing, and
 * endpoints that follow a changing resolution (a fake resolver in place of
 * DNS, replicas on 127.0.0.1 and 127.0.0.2 with one port). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>

#include "cm.h"
#include "cm_log.h"
#include "gw.h"

static void
test_disc_parse(void **state)
{
	char s[16], h[256], p[8];
	(void) state;
	assert_int_equal(gw_disc_parse("tcp://product.shop.svc:7000", s,
	                     sizeof(s), h, sizeof(h), p, sizeof(p)),
	    1);
	assert_string_equal(s, "tcp");
	assert_string_equal(h, "product.shop.svc");
	assert_string_equal(p, "7000");
	assert_int_equal(gw_disc_parse("tcp6://localhost:1", s, sizeof(s), h,
	                     sizeof(h), p, sizeof(p)),
	    1);
	assert_string_equal(s, "tcp6");
	/* TLS: resolved too, the scheme kept whole */
	assert_int_equal(gw_disc_parse("tls+tcp://product.shop.svc:7000", s,
	                     sizeof(s), h, sizeof(h), p, sizeof(p)),
	    1);
	assert_string_equal(s, "tls+tcp");
	assert_string_equal(h, "product.shop.svc");
	assert_int_equal(gw_disc_parse("tls+tcp4://product.shop.svc:7000", s,
	                     sizeof(s), h, sizeof(h), p, sizeof(p)),
	    1);
	assert_string_equal(s, "tls+tcp4");
	assert_int_equal(gw_disc_parse("tls+tcp://127.0.0.1:7000", s,
	                     sizeof(s), h, sizeof(h), p, sizeof(p)),
	    0);
	assert_int_equal(gw_disc_parse("tls+ws://host:80/x", s, sizeof(s), h,
	                     sizeof(h), p, sizeof(p)),
	    0);
	/* literals and other transports are dialed as they are */
	assert_int_equal(gw_disc_parse("tcp://127.0.0.1:7000", s, sizeof(s), h,
	                     sizeof(h), p, sizeof(p)),
	    0);
	assert_int_equal(gw_disc_parse("tcp://[::1]:7000", s, sizeof(s), h,
	                     sizeof(h), p, sizeof(p)),
	    0);
	assert_int_equal(gw_disc_parse("inproc://x", s, sizeof(s), h,
	                     sizeof(h), p, sizeof(p)),
	    0);
	assert_int_equal(gw_disc_parse("ipc:///tmp/x", s, sizeof(s), h,
	                     sizeof(h), p, sizeof(p)),
	    0);
	assert_int_equal(gw_disc_parse("ws://host:80/x", s, sizeof(s), h,
	                     sizeof(h), p, sizeof(p)),
	    0);
	assert_int_equal(gw_disc_parse("tcp://host", s, sizeof(s), h,
	                     sizeof(h), p, sizeof(p)),
	    0);
	assert_int_equal(gw_disc_parse("tcp://host:x1", s, sizeof(s), h,
	                     sizeof(h), p, sizeof(p)),
	    0);
}

/* The fake resolver: answers every name with addrs, or fails. */
static const char *fake_addrs[4];
static size_t      fake_n;
static int         fake_fail;
static int         fake_calls;

static int
fake_resolve(void *arg, const char *host, int family, char ***addrs, size_t *n)
{
	(void) arg;
	(void) family;
	assert_string_equal(host, "svc.test");
	fake_calls++;
	if (fake_fail) {
		return CM_EUNAVAIL;
	}
	*addrs = calloc(fake_n + 1, sizeof(**addrs));
	for (size_t i = 0; i < fake_n; i++) {
		(*addrs)[i] = strdup(fake_addrs[i]);
	}
	*n = fake_n;
	return CM_OK;
}

static void
fake_set(size_t n, const char *a, const char *b)
{
	fake_addrs[0] = a;
	fake_addrs[1] = b;
	fake_n = n;
	fake_fail = 0;
}

/* A replica that answers OK with its name, or keeps silent. */
typedef struct replica {
	nng_socket  sock;
	const char *name;
	int         silent;
	int         received;
	pthread_t   tid;
} replica;

static void *
replica_main(void *arg)
{
	replica *r = arg;
	nng_msg *m;

	while (nng_recvmsg(r->sock, &m, 0) == 0) {
		Catalog__Batch *b = catalog__batch__unpack(
		    NULL, nng_msg_len(m), nng_msg_body(m));
		Catalog__BatchReply rep = CATALOG__BATCH_REPLY__INIT;
		Catalog__Response   resp = CATALOG__RESPONSE__INIT;
		Catalog__Response  *rs[1] = {&resp};

		nng_msg_free(m);
		r->received++;
		resp.tag = b->requests[0]->tag;
		resp.status = CATALOG__STATUS__STATUS_OK;
		resp.replica = (char *) r->name;
		catalog__batch__free_unpacked(b, NULL);
		if (r->silent) {
			continue;
		}
		rep.n_results = 1;
		rep.results = rs;
		nng_msg_alloc(&m, catalog__batch_reply__get_packed_size(&rep));
		catalog__batch_reply__pack(&rep, nng_msg_body(m));
		if (nng_sendmsg(r->sock, m, 0) != 0) {
			nng_msg_free(m);
		}
	}
	return NULL;
}

static int
replica_start(replica *r, const char *ip, int port, const char *name)
{
	char url[64];
	memset(r, 0, sizeof(*r));
	r->name = name;
	snprintf(url, sizeof(url), "tcp://%s:%d", ip, port);
	assert_int_equal(nng_rep0_open(&r->sock), 0);
	if (nng_listen(r->sock, url, NULL, 0) != 0) {
		nng_close(r->sock);
		return -1;
	}
	assert_int_equal(pthread_create(&r->tid, NULL, replica_main, r), 0);
	return 0;
}

static void
replica_stop(replica *r)
{
	nng_close(r->sock);
	pthread_join(r->tid, NULL);
}

/* Two replicas on 127.0.0.1 and 127.0.0.2 with the same free port. */
static int
replicas_start(replica *a, replica *b)
{
	for (int i = 0; i < 50; i++) {
		int port = 20000 + (int) (cm_mono_us() % 40000);
		if (replica_start(a, "127.0.0.1", port, "r1") != 0) {
			continue;
		}
		if (replica_start(b, "127.0.0.2", port, "r2") == 0) {
			return port;
		}
		replica_stop(a);
	}
	fail_msg("no free port");
	return 0;
}

typedef struct outcome {
	int  done;
	int  err;
	int  retries;
	char replica[32];
} outcome;

static void
on_done(const gw_rpc_res *res, void *arg)
{
	outcome *o = arg;
	o->done++;
	o->err = res->err;
	o->retries = res->retries;
	if (res->resp != NULL) {
		snprintf(
		    o->replica, sizeof(o->replica), "%s", res->resp->replica);
	}
}

static void
settle(struct event_base *base, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

static void
wait_done(struct event_base *base, outcome *o)
{
	int64_t t0 = cm_mono_us();
	while (!o->done && cm_mono_us() - t0 < 5000000) {
		event_base_loop(base, EVLOOP_ONCE);
	}
	assert_int_equal(o->done, 1);
}

static outcome
get(struct event_base *base, gw_rpc *rpc, int timeout_ms)
{
	gw_rpc_req q = {0};
	outcome    o = {0};
	q.method = CATALOG__METHOD__METHOD_GET_PRODUCT;
	q.request_id = "disc";
	q.timeout_ms = timeout_ms;
	q.id = 1;
	assert_int_equal(gw_rpc_call(rpc, &q, on_done, &o), 0);
	wait_done(base, &o);
	return o;
}

static void
test_disc_endpoints_follow_resolution(void **state)
{
	struct event_base *base = event_base_new();
	gw_rpc            *rpc;
	gw_rpc_opts        o;
	replica            r1, r2;
	int                port, hits[2] = {0, 0};
	char               upstream[64], u1[64], u2[64], u6[64], err[128];
	size_t             healthy;
	outcome            out;
	(void) state;
	port = replicas_start(&r1, &r2);
	snprintf(upstream, sizeof(upstream), "tcp://svc.test:%d", port);
	snprintf(u1, sizeof(u1), "tcp://127.0.0.1:%d", port);
	snprintf(u2, sizeof(u2), "tcp://127.0.0.2:%d", port);
	snprintf(u6, sizeof(u6), "tcp://[::1]:%d", port);
	fake_set(1, "127.0.0.1", NULL);
	gw_rpc_opts_init(&o);
	o.upstreams = upstream;
	o.try_timeout_ms = 5000;
	o.resolve = fake_resolve;
	assert_int_equal(gw_rpc_new(&rpc, base, &o, err, sizeof(err)), 0);
	/* names are resolved on the loop, first as soon as it runs */
	assert_int_equal(gw_rpc_endpoint_count(rpc, NULL), 0);
	settle(base, 100);
	assert_int_equal(gw_rpc_endpoint_count(rpc, &healthy), 1);
	assert_int_equal(healthy, 1);
	assert_int_equal(gw_rpc_endpoint_state(rpc, u1), GW_EP_HEALTHY);
	out = get(base, rpc, 2000);
	assert_int_equal(out.err, CM_OK);
	assert_string_equal(out.replica, "r1");

	/* a second address: a second endpoint, and traffic on both */
	fake_set(2, "127.0.0.2", "127.0.0.1");
	gw_rpc_resolve_now(rpc);
	assert_int_equal(gw_rpc_endpoint_count(rpc, NULL), 2);
	settle(base, 100);
	assert_int_equal(gw_rpc_endpoint_state(rpc, u2), GW_EP_HEALTHY);
	for (int i = 0; i < 40; i++) {
		out = get(base, rpc, 2000);
		assert_int_equal(out.err, CM_OK);
		hits[strcmp(out.replica, "r1") == 0 ? 0 : 1]++;
	}
	assert_true(hits[0] > 0 && hits[1] > 0);

	/* a failed resolution keeps the last known set */
	fake_fail = 1;
	gw_rpc_resolve_now(rpc);
	assert_int_equal(gw_rpc_endpoint_count(rpc, NULL), 2);

	/* IPv6 addresses get brackets */
	fake_set(2, "::1", "127.0.0.2");
	gw_rpc_resolve_now(rpc);
	assert_int_equal(gw_rpc_endpoint_count(rpc, NULL), 2);
	assert_int_not_equal(gw_rpc_endpoint_state(rpc, u6), GW_EP_NONE);
	assert_int_equal(gw_rpc_endpoint_state(rpc, u1), GW_EP_NONE);

	/* a call in flight on an endpoint that disappears fails over */
	fake_set(1, "127.0.0.1", NULL);
	gw_rpc_resolve_now(rpc);
	settle(base, 100);
	assert_int_equal(gw_rpc_endpoint_count(rpc, NULL), 1);
	r1.silent = 1;
	{
		gw_rpc_req q = {0};
		outcome    o2 = {0};
		int64_t    t0 = cm_mono_us();
		q.method = CATALOG__METHOD__METHOD_GET_PRODUCT;
		q.request_id = "moved";
		q.timeout_ms = 3000;
		q.id = 1;
		assert_int_equal(gw_rpc_call(rpc, &q, on_done, &o2), 0);
		settle(base, 100);
		assert_int_equal(o2.done, 0); /* r1 keeps it */
		fake_set(1, "127.0.0.2", NULL);
		gw_rpc_resolve_now(rpc);
		wait_done(base, &o2);
		assert_int_equal(o2.err, CM_OK);
		assert_string_equal(o2.replica, "r2");
		assert_int_equal(o2.retries, 1);
		assert_true(
		    cm_mono_us() - t0 < 2000000); /* not the deadline */
	}
	assert_int_equal(gw_rpc_endpoint_state(rpc, u1), GW_EP_NONE);
	assert_int_equal(gw_rpc_endpoint_count(rpc, NULL), 1);
	assert_true(fake_calls >= 6);

	gw_rpc_free(rpc);
	replica_stop(&r1);
	replica_stop(&r2);
	event_base_free(base);
}

static char  *tls_urls[4];
static size_t tls_nurls;

static void
collect_urls(void *arg, size_t entry, char *const *urls, size_t n)
{
	(void) arg;
	(void) entry;
	for (size_t i = 0; i < tls_nurls; i++) {
		free(tls_urls[i]);
	}
	for (tls_nurls = 0; tls_nurls < n && tls_nurls < 4; tls_nurls++) {
		tls_urls[tls_nurls] = strdup(urls[tls_nurls]);
	}
}

/* A tls+tcp:// name becomes one tls+tcp:// URL per address: the gateway
 * dials each with TLS (and checks the name, not the address). */
static void
test_disc_tls_keeps_scheme(void **state)
{
	struct event_base *base = event_base_new();
	gw_disc           *d = NULL;
	gw_disc_opts       o = {0};
	char              *entries[] = {"tls+tcp://svc.test:7000"};
	char               err[128];
	(void) state;
	fake_set(2, "10.0.0.7", "10.0.0.8");
	o.resolve = fake_resolve;
	assert_int_equal(gw_disc_new(&d, base, entries, 1, &o, collect_urls,
	                     NULL, err, sizeof(err)),
	    CM_OK);
	assert_int_equal(gw_disc_is_name(d, 0), 1);
	gw_disc_start(d);
	settle(base, 50);
	assert_int_equal(tls_nurls, 2);
	assert_string_equal(tls_urls[0], "tls+tcp://10.0.0.7:7000");
	assert_string_equal(tls_urls[1], "tls+tcp://10.0.0.8:7000");
	gw_disc_free(d);
	event_base_free(base);
	collect_urls(NULL, 0, NULL, 0);
}

static void
test_disc_bad_dns_servers_refused(void **state)
{
	struct event_base *base = event_base_new();
	gw_rpc            *rpc = NULL;
	gw_rpc_opts        o;
	char               err[128];
	(void) state;
	gw_rpc_opts_init(&o);
	o.upstreams = "tcp://svc.test:7000";
	o.dns_servers = "127.0.0.1:53,not-an-ip";
	assert_int_equal(
	    gw_rpc_new(&rpc, base, &o, err, sizeof(err)), CM_EINVAL);
	assert_non_null(strstr(err, "GATEWAY_DNS_SERVERS"));
	/* a good list is accepted; nothing is asked before the loop runs */
	o.dns_servers = "127.0.0.1:5353,[::1]:53";
	assert_int_equal(gw_rpc_new(&rpc, base, &o, err, sizeof(err)), 0);
	gw_rpc_free(rpc);
	event_base_free(base);
}

/* A lookup still waiting for its nameserver when the gateway stops is
 * cancelled and freed (the sanitizer build checks for leaks). */
static void
test_disc_free_with_lookup_pending(void **state)
{
	struct event_base *base = event_base_new();
	gw_rpc            *rpc = NULL;
	gw_rpc_opts        o;
	struct sockaddr_in sa;
	socklen_t          len = sizeof(sa);
	int                fd;
	char               servers[64], err[128];
	(void) state;
	/* a nameserver that never answers */
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	assert_true(fd >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *) &sa, &len), 0);
	snprintf(servers, sizeof(servers), "127.0.0.1:%d", ntohs(sa.sin_port));
	gw_rpc_opts_init(&o);
	o.upstreams = "tcp://svc.test:7000";
	o.dns_servers = servers;
	assert_int_equal(gw_rpc_new(&rpc, base, &o, err, sizeof(err)), 0);
	settle(base, 100); /* the query is out, unanswered */
	assert_int_equal(gw_rpc_endpoint_count(rpc, NULL), 0);
	gw_rpc_free(rpc);
	event_base_free(base);
	close(fd);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_disc_parse),
	    cmocka_unit_test(test_disc_endpoints_follow_resolution),
	    cmocka_unit_test(test_disc_tls_keeps_scheme),
	    cmocka_unit_test(test_disc_bad_dns_servers_refused),
	    cmocka_unit_test(test_disc_free_with_lookup_pending),
	};
	int rv;
	evthread_use_pthreads();
	cm_log_init("test", "error");
	rv = cmocka_run_group_tests(tests, NULL, NULL);
	nng_fini();
	libevent_global_shutdown();
	return rv;
}
