/* ps_rpc.c - the replica's NNG rep0 socket: contexts owned by worker
 * loops, Batch decoding and BatchReply encoding.
 *
 * Each worker owns PS_CTX_PER_THREAD slots; a slot is one nng_ctx and one
 * nng_aio used for its receive and then its send. Completions run on NNG's
 * threads and touch nothing of the worker but its inbox: a receive hands
 * the message over with ps_worker_post(); a send completion posts the next
 * receive. Decoding, the requests and the reply all run on the worker's
 * loop. A slot is owned by whichever side holds it: NNG while an operation
 * is pending, the worker from the post until it calls nng_ctx_send().
 *
 * Each request is admitted first (ps_drain_admit): while the replica
 * drains, or past PRODUCT_MAX_INFLIGHT, it is answered STATUS_DRAINING at
 * once without being started, so the gateway may send it to another
 * replica. Every answered request is counted and timed here.
 */
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <stdlib.h>
#include <string.h>

#include "cm.h"
#include "cm_log.h"
#include "cm_tls.h"
#include "ps.h"

typedef struct slot {
	ps_post    post; /* first: the worker hands it back to us */
	ps_worker *w;
	nng_ctx    ctx;
	nng_aio   *aio;
	int        sending;
	nng_msg   *msg; /* received, waiting in the worker's inbox */
} slot;

struct ps_rpc {
	nng_socket sock;
	int        open;
	slot     **slots;
	size_t     nslots;
	size_t     cap;
};

struct batch;

/* One request of a batch, from its admission to its answer. */
typedef struct rpc_req {
	struct batch *b;
	size_t        i;
	int64_t       start_us;
	int           admitted; /* counts in ps_drain_inflight() */
} rpc_req;

/* One received Batch whose answers are being gathered. */
typedef struct batch {
	slot               *s;
	Catalog__Batch     *in;
	Catalog__Response **results;
	rpc_req            *reqs;
	size_t              n;
	size_t              pending;
} batch;

/* Runs on an NNG thread. */
static void
aio_cb(void *arg)
{
	slot *s = arg;
	int   rv = nng_aio_result(s->aio);

	if (s->sending) {
		s->sending = 0;
		if (rv != 0) {
			/* After a failed send the message is still ours. */
			nng_msg_free(nng_aio_get_msg(s->aio));
			nng_aio_set_msg(s->aio, NULL);
			if (rv == NNG_ECLOSED) {
				return;
			}
			CM_WARN(
			    "PS-RPC-SEND", NULL, "send: %s", nng_strerror(rv));
		}
		nng_ctx_recv(s->ctx, s->aio);
		return;
	}
	if (rv != 0) {
		if (rv != NNG_ECLOSED && rv != NNG_ECANCELED) {
			CM_WARN("PS-RPC-RECV", NULL, "receive: %s",
			    nng_strerror(rv));
			nng_ctx_recv(s->ctx, s->aio);
		}
		return;
	}
	s->msg = nng_aio_get_msg(s->aio);
	nng_aio_set_msg(s->aio, NULL);
	ps_worker_post(s->w, &s->post);
}

static void
batch_free(batch *b)
{
	for (size_t i = 0; i < b->n; i++) {
		ps_msg_response_free(b->results[i]);
	}
	free(b->results);
	free(b->reqs);
	catalog__batch__free_unpacked(b->in, NULL);
	free(b);
}

/* Every request of the batch is answered: pack the reply and send it.
 * Once the worker is stopping the reply is dropped (the socket is closed)
 * and the slot stays idle. */
static void
batch_done(void *arg)
{
	batch              *b = arg;
	slot               *s = b->s;
	Catalog__BatchReply reply;
	nng_msg            *m;
	int                 rv;

	if (--b->pending > 0) {
		return;
	}
	if (s->w->stopping) {
		batch_free(b);
		return;
	}
	catalog__batch_reply__init(&reply);
	reply.n_results = b->n;
	reply.results = b->results;
	rv = nng_msg_alloc(&m, catalog__batch_reply__get_packed_size(&reply));
	if (rv != 0) {
		CM_ERROR("PS-RPC-NOMEM", NULL, "reply of %zu: %s", b->n,
		    nng_strerror(rv));
		batch_free(b);
		nng_ctx_recv(s->ctx, s->aio);
		return;
	}
	catalog__batch_reply__pack(&reply, nng_msg_body(m));
	batch_free(b);
	nng_aio_set_msg(s->aio, m);
	s->sending = 1;
	nng_ctx_send(s->ctx, s->aio);
}

/* One request of a batch is answered: count it, release its admission,
 * and send the reply when it was the last. */
static void
req_done(void *arg)
{
	rpc_req *r = arg;
	batch   *b = r->b;

	ps_metrics_rpc_done(b->in->requests[r->i], b->results[r->i],
	    cm_mono_us() - r->start_us);
	if (r->admitted) {
		ps_drain_leave();
	}
	batch_done(b);
}

/* Admits request i of b and starts it, or answers it DRAINING at once. */
static void
req_start(ps_worker *w, batch *b, size_t i)
{
	rpc_req *r = &b->reqs[i];
	int      a;

	r->b = b;
	r->i = i;
	r->start_us = cm_mono_us();
	if ((a = ps_drain_admit()) != PS_ADMIT_OK) {
		b->results[i]->status = CATALOG__STATUS__STATUS_DRAINING;
		(void) ps_msg_set_detail(b->results[i],
		    a == PS_ADMIT_OVERLOADED ? "overloaded" : "draining");
		req_done(r);
		return;
	}
	r->admitted = 1;
	ps_product_handle(w, b->in->requests[i], b->results[i], req_done, r);
}

/* Runs on the worker's loop: decode, answer each request. A message that
 * does not decode is dropped with a warning and the slot receives again. */
static void
slot_recv(ps_post *p)
{
	slot      *s = (slot *) p;
	nng_msg   *m = s->msg;
	batch     *b;
	ps_worker *w = s->w;

	s->msg = NULL;
	b = calloc(1, sizeof(*b));
	if (b == NULL) {
		goto drop;
	}
	b->s = s;
	b->in = catalog__batch__unpack(NULL, nng_msg_len(m), nng_msg_body(m));
	if (b->in == NULL || b->in->n_requests > PS_MAX_BATCH) {
		CM_WARN("PS-RPC-BADMSG", NULL,
		    "dropped a message of %zu bytes: %s", nng_msg_len(m),
		    b->in == NULL ? "not a catalog.Batch" : "batch too large");
		goto drop;
	}
	nng_msg_free(m);
	m = NULL;
	b->results = calloc(b->in->n_requests + 1, sizeof(*b->results));
	b->reqs = calloc(b->in->n_requests + 1, sizeof(*b->reqs));
	if (b->results == NULL || b->reqs == NULL) {
		goto drop;
	}
	for (; b->n < b->in->n_requests; b->n++) {
		b->results[b->n] = ps_msg_response_new(
		    b->in->requests[b->n]->tag, w->cfg->name);
		if (b->results[b->n] == NULL) {
			goto drop;
		}
	}
	/* One extra count so that answers given synchronously cannot send
	 * the reply before every request has been started. */
	b->pending = b->n + 1;
	for (size_t i = 0; i < b->n; i++) {
		req_start(w, b, i);
	}
	batch_done(b);
	return;
drop:
	if (m != NULL) {
		nng_msg_free(m);
	}
	if (b != NULL) {
		batch_free(b);
	}
	nng_ctx_recv(s->ctx, s->aio);
}

/* Opens the rep0 socket and listens on url, with TLS when url is
 * tls+tcp:// (cm_tls_setup() checked the settings). Returns CM_OK with *out,
 * or CM_EINVAL (logged, naming PRODUCT_LISTEN) / CM_ENOMEM. */
int
ps_rpc_open(const char *url, ps_rpc **out)
{
	ps_rpc      *rpc = calloc(1, sizeof(*rpc));
	nng_listener l;
	int          rv;

	if (rpc == NULL) {
		return CM_ENOMEM;
	}
	if ((rv = nng_rep0_open(&rpc->sock)) != 0) {
		CM_ERROR(
		    "PS-RPC-OPEN", NULL, "rep0 socket: %s", nng_strerror(rv));
		free(rpc);
		return CM_EINTERNAL;
	}
	rpc->open = 1;
	/* Created, then given its TLS configuration (tls+tcp:// only: the
	 * gateways' certificates are required), then started. */
	if ((rv = nng_listener_create(&l, rpc->sock, url)) != 0 ||
	    (rv = cm_tls_listener_apply(l, url)) != 0 ||
	    (rv = nng_listener_start(l, 0)) != 0) {
		CM_ERROR("PS-RPC-LISTEN", NULL, "PRODUCT_LISTEN=%s: %s", url,
		    nng_strerror(rv));
		ps_rpc_free(rpc);
		return CM_EINVAL;
	}
	ps_drain_set_listening(1);
	*out = rpc;
	return CM_OK;
}

/* Gives worker w nctx contexts and starts receiving on them. Runs on the
 * main thread before the workers start. */
int
ps_rpc_attach(ps_rpc *rpc, ps_worker *w, int nctx)
{
	for (int i = 0; i < nctx; i++) {
		slot *s;
		int   rv;

		if (rpc->nslots == rpc->cap) {
			size_t cap = rpc->cap ? rpc->cap * 2 : 64;
			slot **n = realloc(rpc->slots, cap * sizeof(*n));
			if (n == NULL) {
				return CM_ENOMEM;
			}
			rpc->slots = n;
			rpc->cap = cap;
		}
		if ((s = calloc(1, sizeof(*s))) == NULL) {
			return CM_ENOMEM;
		}
		s->w = w;
		s->post.fn = slot_recv;
		if ((rv = nng_aio_alloc(&s->aio, aio_cb, s)) != 0) {
			free(s);
			return CM_ENOMEM;
		}
		if ((rv = nng_ctx_open(&s->ctx, rpc->sock)) != 0) {
			CM_ERROR("PS-RPC-CTX", NULL, "context: %s",
			    nng_strerror(rv));
			nng_aio_free(s->aio);
			free(s);
			return CM_EINTERNAL;
		}
		rpc->slots[rpc->nslots++] = s;
		nng_ctx_recv(s->ctx, s->aio);
	}
	return CM_OK;
}

/* Closes the socket: no new requests; pending receives end with
 * NNG_ECLOSED, and later sends fail. */
void
ps_rpc_close(ps_rpc *rpc)
{
	if (rpc != NULL && rpc->open) {
		ps_drain_set_listening(0);
		nng_close(rpc->sock);
		rpc->open = 0;
	}
}

/* Frees everything, after ps_rpc_close() and after every worker has been
 * joined: nng_aio_free() waits for callbacks still running, then messages
 * left in the inboxes are freed. This is the process's last use of NNG, so
 * it also releases NNG's global state. */
void
ps_rpc_free(ps_rpc *rpc)
{
	if (rpc == NULL) {
		return;
	}
	ps_rpc_close(rpc);
	for (size_t i = 0; i < rpc->nslots; i++) {
		slot *s = rpc->slots[i];
		nng_aio_free(s->aio);
		if (s->msg != NULL) {
			nng_msg_free(s->msg);
		}
		free(s);
	}
	free(rpc->slots);
	free(rpc);
	nng_fini();
}
