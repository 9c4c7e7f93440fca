/* test_gw_rpc.c - RPC round trip, failover, deadlines against in-process
 * NNG replicas (inproc transport). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>

#include "cm.h"
#include "cm_log.h"
#include "gw.h"

/* What a fake replica does with each request it receives. */
enum mode { ANSWER, SILENT, CLOSE };

typedef struct replica {
	nng_socket  sock;
	const char *name;
	enum mode   mode;
	int         received;
	int32_t     last_inm;
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
		assert_non_null(b);
		assert_int_equal(b->n_requests, 1);
		r->received++;
		r->last_inm = b->requests[0]->if_none_match_version;
		resp.tag = b->requests[0]->tag;
		resp.status = CATALOG__STATUS__STATUS_OK;
		resp.replica = (char *) r->name;
		catalog__batch__free_unpacked(b, NULL);
		if (r->mode == CLOSE) {
			nng_close(r->sock); /* the pipe goes away */
			break;
		}
		if (r->mode == SILENT) {
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

static void
replica_start(replica *r, const char *url, const char *name, enum mode m)
{
	memset(r, 0, sizeof(*r));
	r->name = name;
	r->mode = m;
	assert_int_equal(nng_rep0_open(&r->sock), 0);
	assert_int_equal(nng_listen(r->sock, url, NULL, 0), 0);
	assert_int_equal(pthread_create(&r->tid, NULL, replica_main, r), 0);
}

static void
replica_stop(replica *r)
{
	nng_close(r->sock); /* also wakes nng_recvmsg */
	pthread_join(r->tid, NULL);
}

/* Outcome recorded by the callback. */
typedef struct outcome {
	int                done;
	int                err;
	int                retries;
	char               replica[32];
	struct event_base *base;
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
	if (o->base != NULL) {
		event_base_loopbreak(o->base);
	}
}

/* Runs the loop until the callback ran or 5 s passed. */
static void
run_until_done(struct event_base *base, outcome *o)
{
	struct timeval tv = {5, 0};
	o->base = base;
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
	assert_int_equal(o->done, 1);
}

/* Lets the dialers connect (pipe events are handled by the loop). */
static void
settle(struct event_base *base, int ms)
{
	struct timeval tv = {0, ms * 1000};
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

static gw_rpc_req
get_req(int timeout_ms)
{
	gw_rpc_req r = {0};
	r.method = CATALOG__METHOD__METHOD_GET_PRODUCT;
	r.request_id = "test-req";
	r.timeout_ms = timeout_ms;
	r.id = 42;
	r.if_none_match_version = 7;
	return r;
}

static void
test_rpc_urls_parse(void **state)
{
	char **u;
	size_t n;
	(void) state;
	assert_int_equal(gw_rpc_urls_parse(" tcp://a:1 ,ipc:///x", &u, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(u[0], "tcp://a:1");
	assert_string_equal(u[1], "ipc:///x");
	gw_rpc_urls_free(u, n);
	assert_int_equal(gw_rpc_urls_parse("", &u, &n), CM_EINVAL);
	assert_int_equal(gw_rpc_urls_parse("a,", &u, &n), CM_EINVAL);
	assert_int_equal(gw_rpc_urls_parse("a, ,b", &u, &n), CM_EINVAL);
}

static void
test_rpc_bad_url_refused(void **state)
{
	struct event_base *base = event_base_new();
	gw_rpc            *rpc = NULL;
	char               err[128];
	(void) state;
	assert_int_equal(
	    gw_rpc_new(&rpc, base, "nosuch://x", err, sizeof(err)), CM_EINVAL);
	assert_non_null(strstr(err, "nosuch://x"));
	event_base_free(base);
}

static void
test_rpc_round_trip(void **state)
{
	struct event_base *base = event_base_new();
	gw_rpc            *rpc;
	replica            r;
	outcome            o = {0};
	gw_rpc_req         q = get_req(2000);
	char               err[128];
	(void) state;
	replica_start(&r, "inproc://rt", "r1", ANSWER);
	assert_int_equal(
	    gw_rpc_new(&rpc, base, "inproc://rt", err, sizeof(err)), 0);
	/* sent at once: a call waits for the dialer to connect */
	assert_int_equal(gw_rpc_call(rpc, &q, on_done, &o), 0);
	run_until_done(base, &o);
	assert_int_equal(o.err, CM_OK);
	assert_string_equal(o.replica, "r1");
	assert_int_equal(o.retries, 0);
	assert_int_equal(r.last_inm, 7);
	gw_rpc_free(rpc);
	replica_stop(&r);
	event_base_free(base);
}

static void
test_rpc_no_replica_fails_fast(void **state)
{
	struct event_base *base = event_base_new();
	gw_rpc            *rpc;
	outcome            o = {0};
	gw_rpc_req         q = get_req(5000);
	int64_t            t0 = cm_mono_us();
	char               err[128];
	(void) state;
	assert_int_equal(
	    gw_rpc_new(&rpc, base, "inproc://nobody", err, sizeof(err)), 0);
	assert_int_equal(gw_rpc_call(rpc, &q, on_done, &o), 0);
	run_until_done(base, &o);
	assert_int_equal(o.err, CM_EUNAVAIL);
	assert_true(cm_mono_us() - t0 < 2000000); /* one dial retry, not 5 s */
	gw_rpc_free(rpc);
	event_base_free(base);
}

static void
test_rpc_deadline_is_timeout(void **state)
{
	struct event_base *base = event_base_new();
	gw_rpc            *rpc;
	replica            r;
	outcome            o = {0};
	gw_rpc_req         q = get_req(300);
	int64_t            t0;
	char               err[128];
	(void) state;
	replica_start(&r, "inproc://silent", "r1", SILENT);
	assert_int_equal(
	    gw_rpc_new(&rpc, base, "inproc://silent", err, sizeof(err)), 0);
	settle(base, 50);
	t0 = cm_mono_us();
	assert_int_equal(gw_rpc_call(rpc, &q, on_done, &o), 0);
	run_until_done(base, &o);
	assert_int_equal(o.err, CM_ETIMEDOUT);
	assert_true(cm_mono_us() - t0 >= 290000);
	assert_true(cm_mono_us() - t0 < 1000000);
	assert_int_equal(r.received, 1); /* no resend by req0 */
	gw_rpc_free(rpc);
	replica_stop(&r);
	event_base_free(base);
}

static void
test_rpc_failover_on_pipe_loss(void **state)
{
	struct event_base *base = event_base_new();
	gw_rpc            *rpc;
	replica            bad, good;
	outcome            o[2] = {{0}, {0}};
	gw_rpc_req         q = get_req(3000);
	int64_t            t0;
	char               err[128];
	(void) state;
	replica_start(&bad, "inproc://bad", "bad", CLOSE);
	replica_start(&good, "inproc://good", "good", ANSWER);
	assert_int_equal(gw_rpc_new(&rpc, base, "inproc://bad,inproc://good",
	                     err, sizeof(err)),
	    0);
	settle(base, 50);
	t0 = cm_mono_us();
	/* round-robin: one of the two goes to "bad", which drops it */
	assert_int_equal(gw_rpc_call(rpc, &q, on_done, &o[0]), 0);
	assert_int_equal(gw_rpc_call(rpc, &q, on_done, &o[1]), 0);
	while (o[0].done + o[1].done < 2 && cm_mono_us() - t0 < 5000000) {
		event_base_loop(base, EVLOOP_ONCE);
	}
	for (int i = 0; i < 2; i++) {
		assert_int_equal(o[i].done, 1);
		assert_int_equal(o[i].err, CM_OK);
		assert_string_equal(o[i].replica, "good");
	}
	assert_int_equal(o[0].retries + o[1].retries, 1);
	/* promptly, not at the 3 s deadline */
	assert_true(cm_mono_us() - t0 < 1000000);
	replica_stop(&bad);
	gw_rpc_free(rpc);
	replica_stop(&good);
	event_base_free(base);
}

static void
test_rpc_shutdown_fails_pending(void **state)
{
	struct event_base *base = event_base_new();
	gw_rpc            *rpc;
	replica            r;
	outcome            o = {0};
	gw_rpc_req         q = get_req(5000);
	char               err[128];
	(void) state;
	replica_start(&r, "inproc://sd", "r1", SILENT);
	assert_int_equal(
	    gw_rpc_new(&rpc, base, "inproc://sd", err, sizeof(err)), 0);
	settle(base, 50);
	assert_int_equal(gw_rpc_call(rpc, &q, on_done, &o), 0);
	settle(base, 50);
	assert_int_equal(o.done, 0);
	gw_rpc_shutdown(rpc);
	assert_int_equal(o.done, 1);
	assert_int_equal(o.err, CM_EUNAVAIL);
	assert_int_equal(gw_rpc_call(rpc, &q, on_done, &o), CM_EUNAVAIL);
	gw_rpc_free(rpc);
	replica_stop(&r);
	event_base_free(base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rpc_urls_parse),
	    cmocka_unit_test(test_rpc_bad_url_refused),
	    cmocka_unit_test(test_rpc_round_trip),
	    cmocka_unit_test(test_rpc_no_replica_fails_fast),
	    cmocka_unit_test(test_rpc_deadline_is_timeout),
	    cmocka_unit_test(test_rpc_failover_on_pipe_loss),
	    cmocka_unit_test(test_rpc_shutdown_fails_pending),
	};
	int rv;
	evthread_use_pthreads();
	cm_log_init("test", "error");
	rv = cmocka_run_group_tests(tests, NULL, NULL);
	nng_fini();
	libevent_global_shutdown();
	return rv;
}
