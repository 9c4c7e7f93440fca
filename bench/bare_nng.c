/* bare_nng.c - the NNG ceiling: req/rep round trips over many contexts. */

/*
 * usage: bare_nng server URL CONTEXTS REPLY_BYTES
 *        bare_nng client URL CONTEXTS SOCKETS SECONDS REQUEST_BYTES
 *
 * The server opens one rep0 socket listening on URL and keeps CONTEXTS
 * contexts receiving; each answers a request with REPLY_BYTES bytes (the
 * size of a cached product) and receives again. It runs until SIGTERM or
 * SIGINT.
 *
 * The client opens SOCKETS req0 sockets dialing URL (the gateway keeps one
 * per loop) and spreads CONTEXTS contexts over them. Each context sends a
 * REQUEST_BYTES message, waits for the reply and sends the next one, so
 * CONTEXTS round trips are in flight at any time. After one second of
 * warm-up it counts for SECONDS seconds and prints one line:
 *
 *   BARE_NNG rps=<round trips/s> p50_us=<n> p99_us=<n> errors=<n>
 *            total=<round trips, warm-up included>
 *
 * and exits 1 when any send or receive failed.
 */

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>

#define BARE_MAX_CONTEXTS 4096
#define BARE_MAX_SOCKETS  64
#define BARE_MAX_BYTES    (1024 * 1024)
#define BARE_MAX_SAMPLES  (8u * 1024 * 1024)
#define BARE_TIMEOUT_MS   5000

typedef struct bare_ctx {
	nng_ctx  ctx;
	nng_aio *aio;
	int      sending;
	uint64_t sent_ns;
} bare_ctx;

static bare_ctx *ctxs;
static long      n_ctxs;
static size_t    msg_bytes;

static volatile int stopping;
static volatile int measuring;
static uint64_t     n_done;
static uint64_t     n_total; /* warm-up included (bench/callgrind.sh) */
static uint64_t     n_errors;
static uint32_t    *samples;
static uint64_t     n_samples;

static uint64_t
now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

static void
die(const char *what, int rv)
{
	fprintf(stderr, "bare_nng: %s: %s\n", what, nng_strerror(rv));
	exit(1);
}

/* Parses a decimal argument within [lo, hi]; exits on a bad one. */
static long
arg_long(const char *s, const char *name, long lo, long hi)
{
	char *end;
	long  v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
		fprintf(stderr, "bare_nng: bad %s '%s' (%ld..%ld)\n", name, s,
		    lo, hi);
		exit(2);
	}
	return v;
}

/* Server context: receive a request, answer it with msg_bytes bytes,
 * receive again. The reply reuses the request's message. */
static void
server_cb(void *arg)
{
	bare_ctx *c = arg;
	nng_msg  *msg;
	int       rv;

	if ((rv = nng_aio_result(c->aio)) != 0) {
		if (c->sending) {
			nng_msg_free(nng_aio_get_msg(c->aio));
		}
		if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
			return;
		}
		c->sending = 0;
		nng_ctx_recv(c->ctx, c->aio);
		return;
	}
	if (c->sending) {
		c->sending = 0;
		nng_ctx_recv(c->ctx, c->aio);
		return;
	}
	msg = nng_aio_get_msg(c->aio);
	if (nng_msg_realloc(msg, msg_bytes) != 0) {
		nng_msg_free(msg);
		nng_ctx_recv(c->ctx, c->aio);
		return;
	}
	c->sending = 1;
	nng_aio_set_msg(c->aio, msg);
	nng_ctx_send(c->ctx, c->aio);
}

/* Client context: send a request; when it is out, wait for the reply;
 * when that is in, count it and send the next. */
static void
client_send(bare_ctx *c)
{
	nng_msg *msg;
	int      rv;

	if ((rv = nng_msg_alloc(&msg, msg_bytes)) != 0) {
		die("nng_msg_alloc", rv);
	}
	memset(nng_msg_body(msg), 'r', msg_bytes);
	c->sending = 1;
	c->sent_ns = now_ns();
	nng_aio_set_msg(c->aio, msg);
	nng_ctx_send(c->ctx, c->aio);
}

static void
client_cb(void *arg)
{
	bare_ctx *c = arg;
	int       rv;

	if ((rv = nng_aio_result(c->aio)) != 0) {
		if (c->sending) {
			nng_msg_free(nng_aio_get_msg(c->aio));
		}
		if (stopping) {
			return;
		}
		__atomic_fetch_add(&n_errors, 1, __ATOMIC_RELAXED);
		client_send(c);
		return;
	}
	if (c->sending) {
		c->sending = 0;
		nng_ctx_recv(c->ctx, c->aio);
		return;
	}
	nng_msg_free(nng_aio_get_msg(c->aio));
	__atomic_fetch_add(&n_total, 1, __ATOMIC_RELAXED);
	if (measuring) {
		uint64_t us = (now_ns() - c->sent_ns) / 1000u;
		uint64_t i =
		    __atomic_fetch_add(&n_samples, 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&n_done, 1, __ATOMIC_RELAXED);
		if (i < BARE_MAX_SAMPLES) {
			samples[i] =
			    us > UINT32_MAX ? UINT32_MAX : (uint32_t) us;
		}
	}
	if (!stopping) {
		client_send(c);
	}
}

/* Opens n_ctxs contexts on the sockets, round robin, with callback cb. */
static void
open_contexts(nng_socket *socks, long n_socks, void (*cb)(void *))
{
	long i;
	int  rv;

	if ((ctxs = calloc((size_t) n_ctxs, sizeof(*ctxs))) == NULL) {
		die("calloc", NNG_ENOMEM);
	}
	for (i = 0; i < n_ctxs; i++) {
		if ((rv = nng_ctx_open(&ctxs[i].ctx, socks[i % n_socks])) !=
		    0) {
			die("nng_ctx_open", rv);
		}
		if ((rv = nng_aio_alloc(&ctxs[i].aio, cb, &ctxs[i])) != 0) {
			die("nng_aio_alloc", rv);
		}
		nng_aio_set_timeout(ctxs[i].aio, BARE_TIMEOUT_MS);
	}
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;
	return x < y ? -1 : x > y;
}

static int
run_server(const char *url)
{
	nng_socket sock;
	sigset_t   set;
	long       i;
	int        rv, sig;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	if ((rv = nng_rep0_open(&sock)) != 0) {
		die("nng_rep0_open", rv);
	}
	open_contexts(&sock, 1, server_cb);
	for (i = 0; i < n_ctxs; i++) {
		nng_aio_set_timeout(ctxs[i].aio, NNG_DURATION_INFINITE);
	}
	if ((rv = nng_listen(sock, url, NULL, 0)) != 0) {
		die(url, rv);
	}
	for (i = 0; i < n_ctxs; i++) {
		nng_ctx_recv(ctxs[i].ctx, ctxs[i].aio);
	}
	printf("bare_nng: server on %s, %ld contexts, %zu-byte replies\n", url,
	    n_ctxs, msg_bytes);
	fflush(stdout);
	sigwait(&set, &sig);
	/* Nothing to tidy for a benchmark, and nng 1.5's nng_close() can
	 * wait forever on a socket whose contexts are busy. */
	_exit(0);
}

static int
run_client(const char *url, long n_socks, long seconds)
{
	nng_socket socks[BARE_MAX_SOCKETS];
	uint64_t   t0, t1, n;
	double     secs;
	long       i;
	int        rv;

	signal(SIGPIPE, SIG_IGN);
	if ((samples = malloc(BARE_MAX_SAMPLES * sizeof(*samples))) == NULL) {
		die("malloc", NNG_ENOMEM);
	}
	for (i = 0; i < n_socks; i++) {
		if ((rv = nng_req0_open(&socks[i])) != 0) {
			die("nng_req0_open", rv);
		}
		/* Loopback does not lose requests: never resend. */
		nng_socket_set_ms(
		    socks[i], NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
		/* Blocking dial: the server must be up already. */
		if ((rv = nng_dial(socks[i], url, NULL, 0)) != 0) {
			die(url, rv);
		}
	}
	open_contexts(socks, n_socks, client_cb);
	for (i = 0; i < n_ctxs; i++) {
		client_send(&ctxs[i]);
	}
	sleep(1);
	t0 = now_ns();
	measuring = 1;
	sleep((unsigned) seconds);
	measuring = 0;
	t1 = now_ns();
	stopping = 1;
	for (i = 0; i < n_ctxs; i++) {
		nng_aio_stop(ctxs[i].aio);
	}

	n = __atomic_load_n(&n_samples, __ATOMIC_RELAXED);
	if (n > BARE_MAX_SAMPLES) {
		n = BARE_MAX_SAMPLES;
	}
	qsort(samples, (size_t) n, sizeof(*samples), cmp_u32);
	secs = (double) (t1 - t0) / 1e9;
	printf(
	    "BARE_NNG rps=%.0f p50_us=%u p99_us=%u errors=%llu total=%llu\n",
	    (double) n_done / secs, n > 0 ? samples[n / 2] : 0,
	    n > 0 ? samples[(n * 99) / 100] : 0, (unsigned long long) n_errors,
	    (unsigned long long) __atomic_load_n(&n_total, __ATOMIC_RELAXED));
	fflush(stdout);
	/* No nng_close(): with nng 1.5 it can hang on a req socket whose
	 * contexts were stopped mid-request (seen here about once in 20
	 * runs); the process is done anyway. */
	_exit(n_errors == 0 && n_done > 0 ? 0 : 1);
}

int
main(int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[1], "server") == 0) {
		n_ctxs = arg_long(argv[3], "CONTEXTS", 1, BARE_MAX_CONTEXTS);
		msg_bytes = (size_t) arg_long(
		    argv[4], "REPLY_BYTES", 0, BARE_MAX_BYTES);
		return run_server(argv[2]);
	}
	if (argc == 7 && strcmp(argv[1], "client") == 0) {
		long socks, secs;
		n_ctxs = arg_long(argv[3], "CONTEXTS", 1, BARE_MAX_CONTEXTS);
		socks = arg_long(argv[4], "SOCKETS", 1, BARE_MAX_SOCKETS);
		secs = arg_long(argv[5], "SECONDS", 1, 3600);
		msg_bytes = (size_t) arg_long(
		    argv[6], "REQUEST_BYTES", 0, BARE_MAX_BYTES);
		return run_client(argv[2], socks, secs);
	}
	fprintf(stderr,
	    "usage: bare_nng server URL CONTEXTS REPLY_BYTES\n"
	    "       bare_nng client URL CONTEXTS SOCKETS SECONDS "
	    "REQUEST_BYTES\n");
	return 2;
}
