/* gw_live.h - helpers for tests that run a real loop: a fake replica on
 * NNG inproc, a loop thread with its gw_rpc, a raw HTTP/1.1 client and a
 * capture of the log lines written to stdout. Static functions: include
 * it from one test file per binary, after cmocka.h. */
#ifndef GW_LIVE_H
#define GW_LIVE_H

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/supplemental/util/platform.h>

#include "cm.h"
#include "cm_log.h"
#include "gw.h"

/* ---- a live server: fake replica, loop thread, raw HTTP client ---- */

/* A fake replica on inproc: PING and GET_PRODUCT (id 404: not found),
 * each answered after delay_ms, reporting a cache HIT. */
typedef struct fake {
	nng_socket sock;
	pthread_t  tid;
	int        delay_ms;
	char       traceparent[64]; /* of the last request */
} fake;

static inline void *
fake_main(void *arg)
{
	fake    *f = arg;
	nng_msg *m;

	while (nng_recvmsg(f->sock, &m, 0) == 0) {
		Catalog__Batch *b = catalog__batch__unpack(
		    NULL, nng_msg_len(m), nng_msg_body(m));
		Catalog__BatchReply rep = CATALOG__BATCH_REPLY__INIT;
		Catalog__Response   resp = CATALOG__RESPONSE__INIT;
		Catalog__Response  *rs[1] = {&resp};
		Catalog__Product    p = CATALOG__PRODUCT__INIT;

		nng_msg_free(m);
		if (b == NULL || b->n_requests != 1) {
			catalog__batch__free_unpacked(b, NULL);
			continue;
		}
		if (f->delay_ms > 0) {
			nng_msleep((nng_duration) f->delay_ms);
		}
		snprintf(f->traceparent, sizeof(f->traceparent), "%s",
		    b->requests[0]->traceparent != NULL
		        ? b->requests[0]->traceparent
		        : "");
		resp.tag = b->requests[0]->tag;
		resp.replica = "fake-1";
		resp.status = CATALOG__STATUS__STATUS_OK;
		if (b->requests[0]->method ==
		    CATALOG__METHOD__METHOD_GET_PRODUCT) {
			resp.cache = CATALOG__CACHE_OUTCOME__CACHE_HIT;
			if (b->requests[0]->id == 404) {
				resp.status =
				    CATALOG__STATUS__STATUS_NOT_FOUND;
			} else {
				p.id = b->requests[0]->id;
				p.sku = "SKU-1";
				p.name = "Lamp";
				p.currency = "USD";
				p.version = 3;
				resp.product = &p;
			}
		}
		catalog__batch__free_unpacked(b, NULL);
		rep.n_results = 1;
		rep.results = rs;
		nng_msg_alloc(&m, catalog__batch_reply__get_packed_size(&rep));
		catalog__batch_reply__pack(&rep, nng_msg_body(m));
		if (nng_sendmsg(f->sock, m, 0) != 0) {
			nng_msg_free(m);
		}
	}
	return NULL;
}

static inline void
fake_start(fake *f, const char *url)
{
	memset(f, 0, sizeof(*f));
	assert_int_equal(nng_rep0_open(&f->sock), 0);
	assert_int_equal(nng_listen(f->sock, url, NULL, 0), 0);
	assert_int_equal(pthread_create(&f->tid, NULL, fake_main, f), 0);
}

static inline void
fake_stop(fake *f)
{
	nng_close(f->sock);
	pthread_join(f->tid, NULL);
}

/* One event loop with a gw_rpc to url, run on its own thread. */
typedef struct loop {
	struct event_base *base;
	gw_rpc            *rpc;
	struct event      *keep; /* keeps the loop running while idle */
	pthread_t          tid;
} loop;

static inline void *
loop_main(void *arg)
{
	loop *l = arg;
	event_base_dispatch(l->base);
	return NULL;
}

static inline void
loop_open(loop *l, const char *url)
{
	gw_rpc_opts o;
	char        err[128];

	gw_rpc_opts_init(&o);
	o.upstreams = url;
	assert_non_null(l->base = event_base_new());
	assert_int_equal(
	    gw_rpc_new(&l->rpc, l->base, &o, err, sizeof(err)), CM_OK);
}

/* Keeps the loop alive without other events while it runs. */
static inline void
keepalive(evutil_socket_t fd, short what, void *arg)
{
	(void) fd;
	(void) what;
	(void) arg;
}

static inline void
loop_run(loop *l)
{
	struct timeval tv = {3600, 0};
	assert_non_null(
	    l->keep = event_new(l->base, -1, EV_PERSIST, keepalive, NULL));
	event_add(l->keep, &tv);
	assert_int_equal(pthread_create(&l->tid, NULL, loop_main, l), 0);
}

static inline void
loop_stop(loop *l)
{
	event_base_loopbreak(l->base);
	pthread_join(l->tid, NULL);
	event_free(l->keep);
}

/* Sends raw (a whole request, "Connection: close" included) to port and
 * reads the answer until the server closes; returns it (malloc'd). */
static inline char *
http_raw(int port, const char *raw)
{
	struct sockaddr_in sa = {0};
	size_t             cap = 65536, len = 0;
	char              *out = malloc(cap);
	int                fd = socket(AF_INET, SOCK_STREAM, 0);
	ssize_t            n;

	assert_non_null(out);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t) port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
	assert_int_equal(write(fd, raw, strlen(raw)), (ssize_t) strlen(raw));
	while ((n = read(fd, out + len, cap - 1 - len)) > 0) {
		len += (size_t) n;
	}
	out[len] = '\0';
	close(fd);
	return out;
}

static inline char *
http_get(int port, const char *path, const char *headers)
{
	char req[2048];
	snprintf(req, sizeof(req),
	    "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n%s\r\n", path,
	    headers != NULL ? headers : "");
	return http_raw(port, req);
}

/* The value of header name in a raw response (static buffer), or NULL. */
static inline const char *
header_of(const char *resp, const char *name)
{
	static char v[256];
	char        key[64];
	const char *p;
	size_t      n;

	snprintf(key, sizeof(key), "\r\n%s: ", name);
	if ((p = strcasestr(resp, key)) == NULL) {
		return NULL;
	}
	p += strlen(key);
	n = strcspn(p, "\r");
	snprintf(v, sizeof(v), "%.*s", (int) n, p);
	return v;
}

static inline int
status_of(const char *resp)
{
	int st = 0;
	sscanf(resp, "HTTP/1.1 %d", &st);
	return st;
}

/* ---- stdout capture (the log lines) ---- */

static int  saved_stdout = -1;
static char capture_path[64];

static inline void
capture_start(void)
{
	int fd;

	fflush(stdout);
	snprintf(capture_path, sizeof(capture_path), "/tmp/gw-test-XXXXXX");
	assert_true((fd = mkstemp(capture_path)) >= 0);
	saved_stdout = dup(STDOUT_FILENO);
	cm_log_min = CM_LOG_INFO; /* the access lines */
	dup2(fd, STDOUT_FILENO);
	close(fd);
}

/* Waits up to 2 s for needle in the captured lines (a loop thread writes
 * its access line just after the reply); returns a malloc'd copy of the
 * whole capture. */
static inline char *
capture_wait(const char *needle)
{
	char *text = NULL;

	for (int i = 0; i < 200; i++) {
		FILE  *f = fopen(capture_path, "r");
		size_t n;
		free(text);
		assert_non_null(text = calloc(1, 65536));
		assert_non_null(f);
		n = fread(text, 1, 65535, f);
		text[n] = '\0';
		fclose(f);
		if (strstr(text, needle) != NULL) {
			break;
		}
		usleep(10000);
	}
	return text;
}

static inline void
capture_end(void)
{
	cm_log_min = CM_LOG_ERROR;
	dup2(saved_stdout, STDOUT_FILENO);
	close(saved_stdout);
	unlink(capture_path);
}

#endif /* GW_LIVE_H */
