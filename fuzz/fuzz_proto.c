/* fuzz_proto.c - libFuzzer target: what the replica does with the bytes of
 * one NNG request message. As ps_rpc.c's slot_recv() does, it decodes a
 * catalog.Batch, refuses more than PS_MAX_BATCH requests, admits each
 * request and answers it through ps_product_handle() (reads, lists, and
 * ps_write.c's writes), then packs the BatchReply. Redis, PostgreSQL and
 * the loop's timers are fuzz/ps_fake.c, scripted by the input.
 *
 * Input: the message, then the script, then one byte giving the script's
 * length. The script's first byte sets the run: bit 0 the worker is
 * stopping, bit 1 stale-if-error on, bit 2 the fill delay hook, bits 3-7
 * (when not 0) the number of callbacks after which the worker stops.
 *
 * Checks: each request is answered exactly once and with a status; a
 * request that ps_write_check() refuses is answered INVALID; fingerprints
 * are deterministic; no flight and no admission outlives the batch; the
 * reply packs and decodes to the same tags and statuses; the fakes check
 * what reaches Redis and PostgreSQL (ps_fake.c). */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cm.h"
#include "cm_catalog.h"
#include "cm_log.h"
#include "cm_metrics.h"
#include "fuzz_check.h"
#include "ps.h"
#include "ps_fake.h"

/* Enough for any script: each callback consumes script bytes, and an
 * exhausted script fails every call at once. */
#define MAX_CALLBACKS 1000000

typedef struct req_state {
	Catalog__Request  *rq;
	Catalog__Response *rsp;
	int                answered;
	int                admitted;
} req_state;

static ps_drain drain;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	int fd;

	(void) argc;
	(void) argv;
	FZ_CHECK(cm_metrics_init(1) == CM_OK && ps_metrics_init(1) == CM_OK);
	/* Every log line is built (the request ids and trace ids in them
	 * are the client's) and thrown away. */
	FZ_CHECK(cm_log_init("product-service", "debug") == CM_OK);
	FZ_CHECK(cm_log_set_format("json") == CM_OK);
	if ((fd = open("/dev/null", O_WRONLY)) >= 0) {
		dup2(fd, STDOUT_FILENO);
		close(fd);
	}
	ps_drain_init(&drain, 0, 0, PS_MAX_BATCH);
	return 0;
}

static void
on_done(void *arg)
{
	req_state *r = arg;

	FZ_CHECK(r->answered == 0);
	r->answered = 1;
	ps_metrics_rpc_done(r->rq, r->rsp, 1);
	if (r->admitted) {
		ps_drain_leave();
	}
}

/* The pure checks of one request, before it runs. Returns 1 when the
 * write path will refuse it as INVALID. */
static int
check_request(const Catalog__Request *rq)
{
	const char *why = NULL, *tid;
	uint8_t    *a, *b;
	size_t      alen, blen;
	char        buf[33];
	int         refused = 0;

	tid = ps_trace_id(rq, buf, sizeof(buf));
	FZ_CHECK(strcmp(tid, "-") == 0 ||
	    (strlen(tid) == 32 && strspn(tid, "0123456789abcdef") == 32));
	if (!cm_method_is_write(rq->method)) {
		return 0;
	}
	if (ps_write_check(rq, &why) != CM_OK) {
		FZ_CHECK(why != NULL);
		refused = 1;
	}
	FZ_CHECK(ps_write_fingerprint(rq, &a, &alen) == CM_OK);
	FZ_CHECK(ps_write_fingerprint(rq, &b, &blen) == CM_OK);
	FZ_CHECK(alen == blen && memcmp(a, b, alen) == 0);
	free(a);
	free(b);
	return refused;
}

/* The reply as ps_rpc.c sends it, decoded as the gateway decodes it. */
static void
check_reply(Catalog__Response **results, size_t n)
{
	Catalog__BatchReply  reply = CATALOG__BATCH_REPLY__INIT;
	Catalog__BatchReply *back;
	uint8_t             *buf;
	size_t               len;

	reply.n_results = n;
	reply.results = results;
	len = catalog__batch_reply__get_packed_size(&reply);
	FZ_CHECK((buf = malloc(len + 1)) != NULL);
	FZ_CHECK(catalog__batch_reply__pack(&reply, buf) == len);
	back = catalog__batch_reply__unpack(NULL, len, buf);
	FZ_CHECK(back != NULL && back->n_results == n);
	for (size_t i = 0; i < n; i++) {
		FZ_CHECK(back->results[i]->tag == results[i]->tag);
		FZ_CHECK(back->results[i]->status == results[i]->status);
	}
	catalog__batch_reply__free_unpacked(back, NULL);
	free(buf);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static ps_config cfg;
	static ps_worker w;
	Catalog__Batch  *in;
	req_state       *st;
	size_t           slen, mlen, n;
	const uint8_t   *script;
	int              mode, *refused;

	if (size < 1) {
		return 0;
	}
	slen = data[size - 1] < size - 1 ? data[size - 1] : size - 1;
	mlen = size - 1 - slen;
	script = data + mlen;
	mode = slen > 0 ? script[0] : 0;

	in = catalog__batch__unpack(NULL, mlen, data);
	if (in == NULL) {
		return 0; /* dropped with a warning */
	}
	if (in->n_requests > PS_MAX_BATCH) {
		catalog__batch__free_unpacked(in, NULL);
		return 0;
	}
	n = in->n_requests;

	memset(&cfg, 0, sizeof(cfg));
	cfg.name = "fuzz-replica";
	cfg.cache_ttl = 300;
	cfg.negative_ttl = 30;
	cfg.lease_ms = 1000;
	cfg.fence_ms = 5000;
	cfg.idempotency_ttl_s = 86400;
	cfg.stale_if_error_s = (mode & 2) ? 60 : 0;
	cfg.fill_delay_ms = (mode & 4) ? 1 : 0;
	memset(&w, 0, sizeof(w));
	w.cfg = &cfg;
	w.stopping = mode & 1;
	FZ_CHECK(ps_flights_init(&w.flights) == CM_OK);
	ps_fake_reset(&w, script + (slen > 0), slen - (slen > 0));
	ps_fake_stop_after((size_t) (mode >> 3));

	st = calloc(n + 1, sizeof(*st));
	refused = calloc(n + 1, sizeof(*refused));
	FZ_CHECK(st != NULL && refused != NULL);
	for (size_t i = 0; i < n; i++) {
		st[i].rq = in->requests[i];
		st[i].rsp =
		    ps_msg_response_new(in->requests[i]->tag, cfg.name);
		FZ_CHECK(st[i].rsp != NULL);
		refused[i] = check_request(in->requests[i]);
	}
	for (size_t i = 0; i < n; i++) {
		int a = ps_drain_admit();
		if (a != PS_ADMIT_OK) {
			st[i].rsp->status = CATALOG__STATUS__STATUS_DRAINING;
			on_done(&st[i]);
			continue;
		}
		st[i].admitted = 1;
		ps_product_handle(&w, st[i].rq, st[i].rsp, on_done, &st[i]);
	}
	ps_fake_run(MAX_CALLBACKS);
	FZ_CHECK(ps_fake_pending() == 0);

	{
		Catalog__Response **results = calloc(n + 1, sizeof(*results));
		FZ_CHECK(results != NULL);
		for (size_t i = 0; i < n; i++) {
			FZ_CHECK(st[i].answered == 1);
			FZ_CHECK(st[i].rsp->status !=
			    CATALOG__STATUS__STATUS_UNSPECIFIED);
			if (refused[i] &&
			    st[i].rsp->status !=
			        CATALOG__STATUS__STATUS_DEADLINE_EXCEEDED &&
			    st[i].rsp->status !=
			        CATALOG__STATUS__STATUS_DRAINING) {
				FZ_CHECK(st[i].rsp->status ==
				    CATALOG__STATUS__STATUS_INVALID);
			}
			results[i] = st[i].rsp;
		}
		check_reply(results, n);
		free(results);
	}
	FZ_CHECK(ps_flights_count(&w.flights) == 0);
	FZ_CHECK(ps_drain_inflight() == 0);

	for (size_t i = 0; i < n; i++) {
		ps_msg_response_free(st[i].rsp);
	}
	ps_flights_fini(&w.flights);
	free(st);
	free(refused);
	catalog__batch__free_unpacked(in, NULL);
	return 0;
}
