/* test_gw_rpc.c - RPC round trip, failover, deadlines, per-try timeouts,
 * retries, ejection, the retry budget and batching against in-process NNG
 * replicas (inproc transport). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>

#include "cm.h"
#include "cm_log.h"
#include "cm_metrics.h"
#include "gw.h"

/* What a fake replica does with each request it receives. */
enum mode { ANSWER, SILENT, CLOSE, DRAINING, UNAVAIL };

typedef struct replica {
	nng_socket  sock;
	const char *name;
	atomic_int  mode;
	atomic_int  received; /* requests (tries), batched or not */
	atomic_int  msgs;     /* messages */
	atomic_int  max_batch;
	atomic_int  pings;
	int32_t     last_inm;
	int         delay_ms; /* before each answer: a busy replica */
	int         reverse;  /* answer a batch's requests last first */
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
		Catalog__Response   resp[64];
		Catalog__Response  *rs[64];
		size_t              n;

		nng_msg_free(m);
		assert_non_null(b);
		n = b->n_requests;
		assert_true(n >= 1 && n <= 64);
		r->msgs++;
		r->received += (int) n;
		if ((int) n > r->max_batch) {
			r->max_batch = (int) n;
		}
		for (size_t i = 0; i < n; i++) {
			const Catalog__Request *q = b->requests[i];
			size_t                  k = r->reverse ? n - 1 - i : i;
			catalog__response__init(&resp[k]);
			rs[k] = &resp[k];
			if (q->method == CATALOG__METHOD__METHOD_PING) {
				r->pings++;
			}
			r->last_inm = q->if_none_match_version;
			resp[k].tag = q->tag;
			resp[k].status = r->mode == DRAINING
			    ? CATALOG__STATUS__STATUS_DRAINING
			    : r->mode == UNAVAIL
			    ? CATALOG__STATUS__STATUS_UNAVAILABLE
			    : CATALOG__STATUS__STATUS_OK;
			resp[k].replica = (char *) r->name;
			resp[k].next_after = q->id; /* tells answers apart */
		}
		if (r->mode == CLOSE) {
			catalog__batch__free_unpacked(b, NULL);
			nng_close(r->sock); /* the pipe goes away */
			break;
		}
		if (r->mode == SILENT) {
			catalog__batch__free_unpacked(b, NULL);
			continue;
		}
		if (r->delay_ms > 0) {
			struct timespec ts = {0, r->delay_ms * 1000000L};
			nanosleep(&ts, NULL);
		}
		rep.n_results = n;
		rep.results = rs;
		nng_msg_alloc(&m, catalog__batch_reply__get_packed_size(&rep));
		catalog__batch_reply__pack(&rep, nng_msg_body(m));
		catalog__batch__free_unpacked(b, NULL);
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
	atomic_store(&r->mode, m);
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
	int                status;
	int64_t            next_after; /* the replica echoes the id here */
	char               replica[32];
	char               upstream[64];
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
		o->status = res->resp->status;
		o->next_after = res->resp->next_after;
		snprintf(
		    o->replica, sizeof(o->replica), "%s", res->resp->replica);
	}
	if (res->upstream != NULL) {
		snprintf(
		    o->upstream, sizeof(o->upstream), "%s", res->upstream);
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
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

/* gw_rpc_new() with default settings but try_ms and eject_after (0: the
 * defaults). */
static int
rpc_open(gw_rpc **rpc, struct event_base *base, const char *urls, int try_ms,
    int eject_after, char *err, size_t errlen)
{
	gw_rpc_opts o;
	gw_rpc_opts_init(&o);
	o.upstreams = urls;
	if (try_ms > 0) {
		o.try_timeout_ms = try_ms;
	}
	if (eject_after > 0) {
		o.eject_after = eject_after;
	}
	return gw_rpc_new(rpc, base, &o, err, errlen);
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
	    rpc_open(&rpc, base, "nosuch://x", 0, 0, err, sizeof(err)),
	    CM_EINVAL);
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
	    rpc_open(&rpc, base, "inproc://rt", 0, 0, err, sizeof(err)), 0);
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
	    rpc_open(&rpc, base, "inproc://nobody", 0, 0, err, sizeof(err)),
	    0);
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
	    rpc_open(&rpc, base, "inproc://silent", 0, 0, err, sizeof(err)),
	    0);
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
	assert_int_equal(rpc_open(&rpc, base, "inproc://bad,inproc://good", 0,
	                     0, err, sizeof(err)),
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
	    rpc_open(&rpc, base, "inproc://sd", 0, 0, err, sizeof(err)), 0);
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

static gw_rpc_req
write_req(int timeout_ms, const char *key)
{
	static Catalog__ProductInput in = CATALOG__PRODUCT_INPUT__INIT;
	gw_rpc_req                   r = {0};
	in.sku = "SKU-1";
	in.name = "lamp";
	r.method = CATALOG__METHOD__METHOD_CREATE_PRODUCT;
	r.request_id = "test-write";
	r.timeout_ms = timeout_ms;
	r.input = &in;
	r.idempotency_key = key;
	return r;
}

/* One call, run to its end. */
static outcome
call_once(struct event_base *base, gw_rpc *rpc, const gw_rpc_req *q)
{
	outcome o = {0};
	assert_int_equal(gw_rpc_call(rpc, q, on_done, &o), 0);
	run_until_done(base, &o);
	return o;
}

/* Calls call_until_hit() made, the last included. */
static int hit_calls;

/* Sends q until replica `target` has received one more request (the
 * choice is random), checking every call that went elsewhere. Returns the
 * outcome of the call that reached target. */
static outcome
call_until_hit(struct event_base *base, gw_rpc *rpc, const gw_rpc_req *q,
    replica *target, const char *other_name)
{
	for (int i = 0; i < 64; i++) {
		int     before = target->received;
		outcome o = call_once(base, rpc, q);
		hit_calls = i + 1;
		if (target->received > before) {
			return o;
		}
		assert_int_equal(o.err, CM_OK);
		assert_string_equal(o.replica, other_name);
		assert_int_equal(o.retries, 0);
	}
	fail_msg("the target replica never got a request");
	return (outcome) {0};
}

static void
test_rpc_try_timeout_fails_over(void **state)
{
	struct event_base *base = event_base_new();
	gw_rpc            *rpc;
	replica            hung, ok;
	gw_rpc_req         q = get_req(2000);
	outcome            o;
	int64_t            t0;
	char               err[128];
	(void) state;
	replica_start(&hung, "inproc://hung", "hung", SILENT);
	replica_start(&ok, "inproc://ok", "ok", ANSWER);
	assert_int_equal(rpc_open(&rpc, base, "inproc://hung,inproc://ok", 100,
	                     0, err, sizeof(err)),
	    0);
	settle(base, 50);
	t0 = cm_mono_us();
	o = call_until_hit(base, rpc, &q, &hung, "ok");
	/* the hung replica cost one try timeout, not an error */
	assert_int_equal(o.err, CM_OK);
	assert_string_equal(o.replica, "ok");
	assert_string_equal(o.upstream, "inproc://ok");
	assert_int_equal(o.retries, 1);
	assert_true(cm_mono_us() - t0 >= 95000);
	assert_true(cm_mono_us() - t0 < 1000000);
	replica_stop(&hung);
	gw_rpc_free(rpc);
	replica_stop(&ok);
	event_base_free(base);
}

static int
metric_has(const char *line)
{
	char  *text;
	size_t len;
	int    found;
	assert_int_equal(cm_metrics_render(&text, &len), CM_OK);
	found = strstr(text, line) != NULL;
	if (!found) {
		print_message("metrics lack \"%s\":\n%s", line, text);
	}
	free(text);
	return found;
}

static void
test_rpc_eject_and_probe(void **state)
{
	struct event_base *base = event_base_new();
	gw_rpc            *rpc;
	replica            flaky, ok;
	gw_rpc_req         q = get_req(2000);
	char               err[128];
	size_t             healthy;
	(void) state;
	replica_start(&flaky, "inproc://flaky", "flaky", UNAVAIL);
	replica_start(&ok, "inproc://ok", "ok", ANSWER);
	assert_int_equal(rpc_open(&rpc, base, "inproc://flaky,inproc://ok", 0,
	                     3, err, sizeof(err)),
	    0);
	settle(base, 50);
	/* Each UNAVAILABLE read is retried on "ok": clients see no error. */
	for (int i = 0; i < 3; i++) {
		outcome o = call_until_hit(base, rpc, &q, &flaky, "ok");
		assert_int_equal(o.err, CM_OK);
		assert_string_equal(o.replica, "ok");
		assert_int_equal(o.retries, 1);
	}
	assert_int_equal(
	    gw_rpc_endpoint_state(rpc, "inproc://flaky"), GW_EP_EJECTED);
	assert_int_equal(gw_rpc_endpoint_count(rpc, &healthy), 2);
	assert_int_equal(healthy, 1);
	assert_true(metric_has("gateway_upstream_ejections_total{upstream="
	                       "\"inproc://flaky\"} 1"));
	assert_true(metric_has("gateway_upstream_endpoints_healthy 1"));
	for (int i = 0; i < 10; i++) {
		outcome o = call_once(base, rpc, &q);
		assert_string_equal(o.replica, "ok");
	}
	assert_int_equal(flaky.received, 3);
	/* After 1 s one probe; it fails, so the back-off doubles to 2 s. */
	settle(base, 1300);
	assert_int_equal(flaky.pings, 1);
	assert_int_equal(
	    gw_rpc_endpoint_state(rpc, "inproc://flaky"), GW_EP_EJECTED);
	atomic_store(&flaky.mode, ANSWER);
	settle(base, 1200);
	assert_int_equal(flaky.pings, 1);
	settle(base, 1000);
	assert_int_equal(flaky.pings, 2);
	assert_int_equal(
	    gw_rpc_endpoint_state(rpc, "inproc://flaky"), GW_EP_HEALTHY);
	call_until_hit(base, rpc, &q, &flaky, "ok");
	replica_stop(&flaky);
	gw_rpc_free(rpc);
	replica_stop(&ok);
	event_base_free(base);
}

static void
test_rpc_last_healthy_never_ejected(void **state)
{
	struct event_base *base = event_base_new();
	gw_rpc            *rpc;
	replica            r;
	gw_rpc_req         q = get_req(2000);
	char               err[128];
	(void) state;
	replica_start(&r, "inproc://alone", "alone", UNAVAIL);
	assert_int_equal(
	    rpc_open(&rpc, base, "inproc://alone", 0, 1, err, sizeof(err)), 0);
	settle(base, 50);
	for (int i = 0; i < 5; i++) {
		outcome o = call_once(base, rpc, &q);
		/* the replica's own answer reaches the client (503) */
		assert_int_equal(o.err, CM_OK);
		assert_int_equal(
		    o.status, CATALOG__STATUS__STATUS_UNAVAILABLE);
		assert_int_equal(o.retries, 0);
	}
	assert_int_equal(
	    gw_rpc_endpoint_state(rpc, "inproc://alone"), GW_EP_HEALTHY);
	gw_rpc_free(rpc);
	replica_stop(&r);
	event_base_free(base);
}

static void
test_rpc_draining_write_retried(void **state)
{
	struct event_base *base = event_base_new();
	gw_rpc            *rpc;
	replica            dr, ok;
	gw_rpc_req         q = write_req(2000, NULL);
	outcome            o;
	char               err[128];
	(void) state;
	replica_start(&dr, "inproc://drain", "drain", DRAINING);
	replica_start(&ok, "inproc://ok", "ok", ANSWER);
	assert_int_equal(rpc_open(&rpc, base, "inproc://drain,inproc://ok", 0,
	                     0, err, sizeof(err)),
	    0);
	settle(base, 50);
	/* A write without a key, but the replica did nothing: retried. */
	o = call_until_hit(base, rpc, &q, &dr, "ok");
	assert_int_equal(o.err, CM_OK);
	assert_string_equal(o.replica, "ok");
	assert_int_equal(o.retries, 1);
	/* and the draining replica is out of rotation at once */
	assert_int_equal(
	    gw_rpc_endpoint_state(rpc, "inproc://drain"), GW_EP_EJECTED);
	replica_stop(&dr);
	gw_rpc_free(rpc);
	replica_stop(&ok);
	event_base_free(base);
}

static void
test_rpc_write_not_retried(void **state)
{
	struct event_base *base = event_base_new();
	gw_rpc            *rpc;
	replica            lose, ok;
	gw_rpc_req         q = write_req(2000, NULL);
	outcome            o;
	int                ok_before;
	char               err[128];
	(void) state;
	replica_start(&lose, "inproc://lose", "lose", CLOSE);
	replica_start(&ok, "inproc://ok", "ok", ANSWER);
	assert_int_equal(rpc_open(&rpc, base, "inproc://lose,inproc://ok", 0,
	                     0, err, sizeof(err)),
	    0);
	settle(base, 50);
	ok_before = ok.received;
	o = call_until_hit(base, rpc, &q, &lose, "ok");
	/* the write may have been applied: its fate is unknown (502) */
	assert_int_equal(o.err, CM_EUNAVAIL);
	assert_int_equal(o.retries, 0);
	settle(base, 50);
	/* "ok" got only the writes that went there in the first place */
	assert_int_equal(ok.received - ok_before, hit_calls - 1);
	replica_stop(&lose);
	gw_rpc_free(rpc);
	replica_stop(&ok);
	event_base_free(base);
}

static void
test_rpc_write_timeout_not_retried(void **state)
{
	struct event_base *base = event_base_new();
	gw_rpc            *rpc;
	replica            hung, ok;
	gw_rpc_req         q = write_req(600, NULL);
	outcome            o;
	int64_t            t0;
	char               err[128];
	(void) state;
	replica_start(&hung, "inproc://hung", "hung", SILENT);
	replica_start(&ok, "inproc://ok", "ok", ANSWER);
	assert_int_equal(rpc_open(&rpc, base, "inproc://hung,inproc://ok", 100,
	                     0, err, sizeof(err)),
	    0);
	settle(base, 50);
	t0 = cm_mono_us();
	o = call_until_hit(base, rpc, &q, &hung, "ok");
	/* no per-try timeout for a write sent once: the whole deadline */
	assert_int_equal(o.err, CM_ETIMEDOUT);
	assert_int_equal(o.retries, 0);
	assert_true(cm_mono_us() - t0 >= 590000);
	assert_int_equal(hung.received, 1);
	replica_stop(&hung);
	gw_rpc_free(rpc);
	replica_stop(&ok);
	event_base_free(base);
}

static void
test_rpc_keyed_write_retried(void **state)
{
	struct event_base *base = event_base_new();
	gw_rpc            *rpc;
	replica            sick, ok;
	gw_rpc_req         q = write_req(2000, "key-1");
	outcome            o;
	char               err[128];
	(void) state;
	/* A replica that answers UNAVAILABLE did not apply the write: with
	 * a key it goes to another replica. */
	replica_start(&sick, "inproc://sick", "sick", UNAVAIL);
	replica_start(&ok, "inproc://ok", "ok", ANSWER);
	assert_int_equal(rpc_open(&rpc, base, "inproc://sick,inproc://ok", 100,
	                     0, err, sizeof(err)),
	    0);
	settle(base, 50);
	o = call_until_hit(base, rpc, &q, &sick, "ok");
	assert_int_equal(o.err, CM_OK);
	assert_string_equal(o.replica, "ok");
	assert_int_equal(o.retries, 1);
	replica_stop(&sick);
	gw_rpc_free(rpc);
	replica_stop(&ok);
	event_base_free(base);
}

static void
test_rpc_keyed_write_slow_not_resent(void **state)
{
	struct event_base *base = event_base_new();
	gw_rpc            *rpc;
	replica            hung;
	gw_rpc_req         q = write_req(600, "key-2");
	outcome            o;
	char               err[128];
	(void) state;
	/* A slow write is not sent again: a second copy would find its own
	 * idempotency key in use. It gets the whole deadline, then 504. */
	replica_start(&hung, "inproc://hung2", "hung", SILENT);
	assert_int_equal(
	    rpc_open(&rpc, base, "inproc://hung2", 100, 0, err, sizeof(err)),
	    0);
	settle(base, 50);
	o = call_once(base, rpc, &q);
	assert_int_equal(o.err, CM_ETIMEDOUT);
	assert_int_equal(o.retries, 0);
	assert_int_equal(hung.received, 1);
	replica_stop(&hung);
	gw_rpc_free(rpc);
	event_base_free(base);
}

static void
test_rpc_retry_budget(void **state)
{
	struct event_base *base = event_base_new();
	gw_rpc            *rpc;
	replica            a, b;
	gw_rpc_req         q = get_req(2000);
	int                retries = 0;
	char               err[128], line[128];
	(void) state;
	replica_start(&a, "inproc://b1", "b1", UNAVAIL);
	replica_start(&b, "inproc://b2", "b2", UNAVAIL);
	assert_int_equal(rpc_open(&rpc, base, "inproc://b1,inproc://b2", 0,
	                     1000, err, sizeof(err)),
	    0);
	settle(base, 50);
	/* Every call would like one retry; the budget allows about 10 plus
	 * 0.2 a call (and 10 a second). */
	for (int i = 0; i < 100; i++) {
		outcome o = call_once(base, rpc, &q);
		assert_int_equal(o.err, CM_OK);
		assert_int_equal(
		    o.status, CATALOG__STATUS__STATUS_UNAVAILABLE);
		retries += o.retries;
	}
	assert_true(retries >= 25);
	assert_true(retries <= 45);
	assert_int_equal(a.received + b.received, 100 + retries);
	/* 100 calls and their retries, each counted where it went */
	snprintf(line, sizeof(line),
	    "gateway_upstream_requests_total{upstream=\"inproc://b1\"} %d",
	    a.received);
	assert_true(metric_has(line));
	replica_stop(&a);
	replica_stop(&b);
	gw_rpc_free(rpc);
	event_base_free(base);
}

/* The value of the series that starts with line (name and labels), 0
 * when it is not there. */
static long long
metric_get(const char *line)
{
	char     *text, *p;
	size_t    len;
	long long v = 0;
	assert_int_equal(cm_metrics_render(&text, &len), CM_OK);
	if ((p = strstr(text, line)) != NULL) {
		v = strtoll(p + strlen(line), NULL, 10);
	}
	free(text);
	return v;
}

/* Upstreams the metrics were not set up with count as "other". */
#define BATCHES_OTHER "gateway_upstream_batches_total{upstream=\"other\"} "
#define BATCHED_OTHER \
	"gateway_upstream_batched_calls_total{upstream=\"other\"} "

/* Starts n GETs (ids 1..n) at once and runs the loop until all are done
 * or 5 s passed. */
static void
call_many(struct event_base *base, gw_rpc *rpc, outcome *o, int n)
{
	int64_t t0 = cm_mono_us();
	int     done = 0;

	for (int i = 0; i < n; i++) {
		gw_rpc_req q = get_req(2000);
		q.id = i + 1;
		memset(&o[i], 0, sizeof(o[i]));
		assert_int_equal(gw_rpc_call(rpc, &q, on_done, &o[i]), 0);
	}
	while (done < n && cm_mono_us() - t0 < 5000000) {
		event_base_loop(base, EVLOOP_ONCE);
		done = 0;
		for (int i = 0; i < n; i++) {
			done += o[i].done;
		}
	}
	for (int i = 0; i < n; i++) {
		assert_int_equal(o[i].done, 1);
	}
}

static void
test_rpc_batches_when_busy(void **state)
{
	struct event_base *base = event_base_new();
	gw_rpc            *rpc;
	replica            r;
	outcome            o[10];
	char               err[128];
	long long          b0, c0;
	int                m0;
	(void) state;
	replica_start(&r, "inproc://busy", "busy", ANSWER);
	r.delay_ms = 20;
	assert_int_equal(
	    rpc_open(&rpc, base, "inproc://busy", 0, 0, err, sizeof(err)), 0);
	settle(base, 50);
	/* An idle endpoint: one call, one message of one. */
	o[0] = call_once(base, rpc,
	    &(gw_rpc_req) {.method = CATALOG__METHOD__METHOD_GET_PRODUCT,
	        .request_id = "alone",
	        .timeout_ms = 2000,
	        .id = 1});
	assert_int_equal(o[0].err, CM_OK);
	assert_int_equal(r.msgs, 1);
	assert_int_equal(r.max_batch, 1);
	/* Ten at once: two go alone, the rest wait and leave together. */
	b0 = metric_get(BATCHES_OTHER);
	c0 = metric_get(BATCHED_OTHER);
	m0 = r.msgs;
	call_many(base, rpc, o, 10);
	for (int i = 0; i < 10; i++) {
		assert_int_equal(o[i].err, CM_OK);
		assert_int_equal(o[i].retries, 0);
		assert_int_equal(o[i].next_after, i + 1);
	}
	assert_int_equal(r.received, 11);
	assert_true(r.msgs - 1 < 10);
	assert_int_equal(r.max_batch, 8);
	/* The metrics: their ratio is the mean batch size. */
	assert_int_equal(metric_get(BATCHES_OTHER) - b0, r.msgs - m0);
	assert_int_equal(metric_get(BATCHED_OTHER) - c0, 10);
	gw_rpc_free(rpc);
	replica_stop(&r);
	event_base_free(base);
}

static void
test_rpc_batch_out_of_order(void **state)
{
	struct event_base *base = event_base_new();
	gw_rpc            *rpc;
	replica            r;
	outcome            o[20];
	char               err[128];
	(void) state;
	replica_start(&r, "inproc://rev", "rev", ANSWER);
	r.delay_ms = 10;
	r.reverse = 1;
	assert_int_equal(
	    rpc_open(&rpc, base, "inproc://rev", 0, 0, err, sizeof(err)), 0);
	settle(base, 50);
	call_many(base, rpc, o, 20);
	/* each call got its own answer, matched by tag, not by position */
	for (int i = 0; i < 20; i++) {
		assert_int_equal(o[i].err, CM_OK);
		assert_int_equal(o[i].next_after, i + 1);
	}
	assert_true(r.max_batch > 1);
	assert_true(r.msgs < 20);
	gw_rpc_free(rpc);
	replica_stop(&r);
	event_base_free(base);
}

static void
test_rpc_batch_try_fails_reads_retried(void **state)
{
	struct event_base *base = event_base_new();
	gw_rpc            *rpc;
	replica            hung, ok;
	outcome            o[20];
	int                retries = 0;
	int64_t            t0;
	char               err[128];
	(void) state;
	replica_start(&hung, "inproc://hung", "hung", SILENT);
	replica_start(&ok, "inproc://ok", "ok", ANSWER);
	assert_int_equal(rpc_open(&rpc, base, "inproc://hung,inproc://ok", 100,
	                     1000, err, sizeof(err)),
	    0);
	settle(base, 50);
	t0 = cm_mono_us();
	call_many(base, rpc, o, 20);
	/* Half went to the hung replica, some of them in one batch: when
	 * its flights timed out every read in them was tried on "ok". */
	for (int i = 0; i < 20; i++) {
		assert_int_equal(o[i].err, CM_OK);
		assert_string_equal(o[i].replica, "ok");
		assert_int_equal(o[i].next_after, i + 1);
		retries += o[i].retries;
	}
	assert_true(hung.max_batch > 1);
	assert_int_equal(retries, hung.received);
	assert_int_equal(ok.received, 20);
	assert_true(cm_mono_us() - t0 < 1000000);
	replica_stop(&hung);
	gw_rpc_free(rpc);
	replica_stop(&ok);
	event_base_free(base);
}

static void
test_rpc_writes_not_batched(void **state)
{
	struct event_base *base = event_base_new();
	gw_rpc            *rpc;
	replica            r;
	outcome            o[6];
	gw_rpc_req         w = write_req(2000, NULL);
	int64_t            t0;
	int                done = 0;
	char               err[128];
	(void) state;
	replica_start(&r, "inproc://wr", "wr", ANSWER);
	r.delay_ms = 20;
	assert_int_equal(
	    rpc_open(&rpc, base, "inproc://wr", 0, 0, err, sizeof(err)), 0);
	settle(base, 50);
	memset(o, 0, sizeof(o));
	for (int i = 0; i < 6; i++) {
		assert_int_equal(gw_rpc_call(rpc, &w, on_done, &o[i]), 0);
	}
	t0 = cm_mono_us();
	while (done < 6 && cm_mono_us() - t0 < 5000000) {
		event_base_loop(base, EVLOOP_ONCE);
		done = 0;
		for (int i = 0; i < 6; i++) {
			done += o[i].done;
		}
	}
	for (int i = 0; i < 6; i++) {
		assert_int_equal(o[i].done, 1);
		assert_int_equal(o[i].err, CM_OK);
	}
	/* each keyless write had its own message and its own timeout */
	assert_int_equal(r.msgs, 6);
	assert_int_equal(r.max_batch, 1);
	/* and so does each keyed one: no per-try timeout to share */
	w = write_req(2000, "key-b");
	memset(o, 0, sizeof(o));
	for (int i = 0; i < 6; i++) {
		assert_int_equal(gw_rpc_call(rpc, &w, on_done, &o[i]), 0);
	}
	t0 = cm_mono_us();
	done = 0;
	while (done < 6 && cm_mono_us() - t0 < 5000000) {
		event_base_loop(base, EVLOOP_ONCE);
		done = 0;
		for (int i = 0; i < 6; i++) {
			done += o[i].done;
		}
	}
	for (int i = 0; i < 6; i++) {
		assert_int_equal(o[i].done, 1);
		assert_int_equal(o[i].err, CM_OK);
	}
	assert_int_equal(r.msgs, 12);
	assert_int_equal(r.max_batch, 1);
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
	    cmocka_unit_test(test_rpc_try_timeout_fails_over),
	    cmocka_unit_test(test_rpc_eject_and_probe),
	    cmocka_unit_test(test_rpc_last_healthy_never_ejected),
	    cmocka_unit_test(test_rpc_draining_write_retried),
	    cmocka_unit_test(test_rpc_write_not_retried),
	    cmocka_unit_test(test_rpc_write_timeout_not_retried),
	    cmocka_unit_test(test_rpc_keyed_write_retried),
	    cmocka_unit_test(test_rpc_keyed_write_slow_not_resent),
	    cmocka_unit_test(test_rpc_retry_budget),
	    cmocka_unit_test(test_rpc_batches_when_busy),
	    cmocka_unit_test(test_rpc_batch_out_of_order),
	    cmocka_unit_test(test_rpc_batch_try_fails_reads_retried),
	    cmocka_unit_test(test_rpc_writes_not_batched),
	};
	int rv;
	evthread_use_pthreads();
	cm_log_init("test", "error");
	assert_int_equal(cm_metrics_init(1), CM_OK);
	assert_int_equal(
	    gw_rpc_metrics_init("inproc://flaky,inproc://b1"), CM_OK);
	rv = cmocka_run_group_tests(tests, NULL, NULL);
	nng_fini();
	cm_metrics_fini();
	libevent_global_shutdown();
	return rv;
}
