/* gw_admin.c - operability: the admin listener (/metrics, /healthz,
 * /readyz on its own thread and event base) and the drain state machine
 * that readiness follows.
 *
 * The admin loop records no metrics and owns no RPC client. A /readyz
 * probe is handed to one of the serving loops (event_base_once, the one
 * cross-thread libevent call), which pings a replica through its own
 * gw_rpc and hands the outcome back the same way; the evhttp request is
 * touched by the admin thread only. Probes still out when the process
 * stops are kept in a list under a mutex and freed by gw_admin_free().
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "cm.h"
#include "cm_log.h"
#include "cm_loop.h"
#include "cm_metrics.h"
#include "gw.h"

#define ADMIN_IDLE_TIMEOUT 30 /* seconds an admin connection idles */

/* ---- drain state machine ---- */

static atomic_int unready;

void
gw_drain_init(gw_drain *d, int delay_s, int timeout_s)
{
	memset(d, 0, sizeof(*d));
	d->phase = GW_DRAIN_RUNNING;
	d->delay_ms = (int64_t) delay_s * 1000;
	d->timeout_ms = (int64_t) timeout_s * 1000;
	atomic_store(&unready, 0);
}

static gw_drain_phase
enter(gw_drain *d, gw_drain_phase p, int64_t now_ms)
{
	d->phase = p;
	if (p == GW_DRAIN_DELAY) {
		d->deadline_ms = now_ms + d->delay_ms;
	} else if (p == GW_DRAIN_CLOSE) {
		d->deadline_ms = now_ms + d->timeout_ms;
	}
	return p;
}

gw_drain_phase
gw_drain_signal(gw_drain *d, int sig, int64_t now_ms)
{
	atomic_store(&unready, 1);
	switch (d->phase) {
	case GW_DRAIN_RUNNING:
		/* SIGINT is someone at a terminal: no load balancer to
		 * wait for. A zero delay skips the phase as well. */
		if (sig == SIGINT || d->delay_ms <= 0) {
			return enter(d, GW_DRAIN_CLOSE, now_ms);
		}
		return enter(d, GW_DRAIN_DELAY, now_ms);
	case GW_DRAIN_DELAY:
		return enter(d, GW_DRAIN_CLOSE, now_ms);
	case GW_DRAIN_CLOSE:
	case GW_DRAIN_FORCE:
		return enter(d, GW_DRAIN_FORCE, now_ms);
	}
	return d->phase;
}

gw_drain_phase
gw_drain_tick(gw_drain *d, int64_t now_ms)
{
	if (d->phase == GW_DRAIN_DELAY && now_ms >= d->deadline_ms) {
		return enter(d, GW_DRAIN_CLOSE, now_ms);
	}
	if (d->phase == GW_DRAIN_CLOSE && now_ms >= d->deadline_ms) {
		return enter(d, GW_DRAIN_FORCE, now_ms);
	}
	return d->phase;
}

int64_t
gw_drain_wait_ms(const gw_drain *d, int64_t now_ms)
{
	if (d->phase != GW_DRAIN_DELAY && d->phase != GW_DRAIN_CLOSE) {
		return -1;
	}
	return d->deadline_ms > now_ms ? d->deadline_ms - now_ms : 0;
}

int
gw_drain_unready(void)
{
	return atomic_load_explicit(&unready, memory_order_relaxed);
}

/* ---- admin listener ---- */

typedef struct probe probe;

struct gw_admin {
	struct event_base  *base;
	struct evhttp      *http;
	cm_loop_thread      thread;
	pthread_mutex_t     mu;
	struct event_base **bases; /* under mu: NULL once detached */
	gw_rpc            **rpcs;
	int                 nloops;
	unsigned            rr;
	probe              *probes; /* under mu */
};

/* One /readyz waiting for a loop's ping. */
struct probe {
	gw_admin              *adm;
	struct evhttp_request *req;
	gw_rpc                *rpc;
	int                    status; /* 200 or 503 */
	char                   detail[160];
	char                   reqid[CM_REQID_LEN + 1];
	probe                 *prev, *next;
};

static void
reply(struct evhttp_request *req, int status, const char *ctype,
    const char *body, size_t len)
{
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);

	evhttp_add_header(out, "Content-Type", ctype);
	if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
		char n[24];
		snprintf(n, sizeof(n), "%zu", len);
		evhttp_add_header(out, "Content-Length", n);
	} else if (evbuffer_add(evhttp_request_get_output_buffer(req), body,
	               len) != 0) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	evhttp_send_reply(req, status, NULL, NULL);
}

static void
reply_json(struct evhttp_request *req, int status, const char *detail,
    const char *status_word)
{
	gw_buf b;
	char   rid[CM_REQID_LEN + 1];

	gw_buf_init(&b);
	if (status >= 400) {
		cm_reqid_new(rid);
		gw_json_problem(&b, status, detail, rid);
	} else {
		gw_json_status(&b, status_word);
	}
	if (b.err != CM_OK) {
		evhttp_send_error(req, 500, NULL);
	} else {
		if (status == 503) {
			evhttp_add_header(
			    evhttp_request_get_output_headers(req),
			    "Retry-After", "1");
		}
		reply(req, status,
		    status >= 400 ? "application/problem+json"
		                  : "application/json",
		    b.data, b.len);
	}
	gw_buf_fini(&b);
}

static void
serve_metrics(struct evhttp_request *req)
{
	char  *text;
	size_t len;

	if (cm_metrics_render(&text, &len) != CM_OK) {
		CM_ERROR("GW-ADMIN-NOMEM", NULL, "cannot render the metrics");
		reply_json(req, 500, "out of memory", NULL);
		return;
	}
	reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
	free(text);
}

/* Unlinks p; returns 1 when it was still listed. Under a->mu. */
static int
probe_unlink(gw_admin *a, probe *p)
{
	int listed = p->prev != NULL || a->probes == p;
	if (!listed) {
		return 0;
	}
	if (p->prev != NULL) {
		p->prev->next = p->next;
	} else {
		a->probes = p->next;
	}
	if (p->next != NULL) {
		p->next->prev = p->prev;
	}
	p->prev = p->next = NULL;
	return 1;
}

/* Admin thread: answers the probe's request and frees it. */
static void
probe_reply(evutil_socket_t fd, short what, void *arg)
{
	probe    *p = arg;
	gw_admin *a = p->adm;

	(void) fd;
	(void) what;
	pthread_mutex_lock(&a->mu);
	probe_unlink(a, p);
	pthread_mutex_unlock(&a->mu);
	reply_json(p->req, p->status, p->detail, "ready");
	free(p);
}

/* Any thread: hands the probe back to the admin loop. When that fails
 * (out of memory) the probe stays listed and gw_admin_free() frees it. */
static void
probe_post(probe *p)
{
	if (event_base_once(
	        p->adm->base, -1, EV_TIMEOUT, probe_reply, p, NULL) != 0) {
		CM_ERROR("GW-ADMIN-PROBE", p->reqid, "cannot answer a probe");
	}
}

/* A loop thread (or the main thread while it shuts a loop's RPC client
 * down): the ping's outcome. */
static void
probe_done(const gw_rpc_res *res, void *arg)
{
	probe *p = arg;

	if (res->err == CM_OK && res->resp != NULL &&
	    res->resp->status == CATALOG__STATUS__STATUS_OK) {
		p->status = 200;
	} else {
		p->status = 503;
		snprintf(p->detail, sizeof(p->detail), "%s",
		    "no product replica answered");
	}
	probe_post(p);
}

/* A loop thread: pings a replica with that loop's RPC client. */
static void
probe_start(evutil_socket_t fd, short what, void *arg)
{
	probe     *p = arg;
	gw_rpc_req r = {0};

	(void) fd;
	(void) what;
	r.method = CATALOG__METHOD__METHOD_PING;
	r.request_id = p->reqid;
	r.timeout_ms = GW_READY_TIMEOUT_MS;
	if (gw_rpc_call(p->rpc, &r, probe_done, p) != CM_OK) {
		p->status = 503;
		snprintf(p->detail, sizeof(p->detail), "%s",
		    "the gateway cannot send requests now");
		probe_post(p);
	}
}

static void
serve_ready(gw_admin *a, struct evhttp_request *req)
{
	probe *p;
	int    posted = 0;

	if (gw_drain_unready()) {
		reply_json(req, 503, "the gateway is shutting down", NULL);
		return;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL) {
		reply_json(req, 500, "out of memory", NULL);
		return;
	}
	p->adm = a;
	p->req = req;
	cm_reqid_new(p->reqid);
	pthread_mutex_lock(&a->mu);
	if (a->nloops > 0) {
		int i = (int) (a->rr++ % (unsigned) a->nloops);
		p->rpc = a->rpcs[i];
		p->next = a->probes;
		if (a->probes != NULL) {
			a->probes->prev = p;
		}
		a->probes = p;
		if (event_base_once(a->bases[i], -1, EV_TIMEOUT, probe_start,
		        p, NULL) == 0) {
			posted = 1;
		} else {
			probe_unlink(a, p);
		}
	}
	pthread_mutex_unlock(&a->mu);
	if (!posted) {
		free(p);
		reply_json(req, 503, "the gateway is shutting down", NULL);
	}
}

static void
on_admin_request(struct evhttp_request *req, void *arg)
{
	gw_admin                *a = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);

	if (path == NULL) {
		path = "/";
	}
	if (strcmp(path, "/metrics") != 0 && strcmp(path, "/healthz") != 0 &&
	    strcmp(path, "/readyz") != 0) {
		reply_json(req, 404, "no such admin route", NULL);
		return;
	}
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Allow", "GET, HEAD");
		reply_json(req, 405, "use GET or HEAD", NULL);
		return;
	}
	if (strcmp(path, "/metrics") == 0) {
		serve_metrics(req);
	} else if (strcmp(path, "/healthz") == 0) {
		reply_json(req, 200, NULL, "ok");
	} else {
		serve_ready(a, req);
	}
}

int
gw_admin_new(gw_admin **out, int fd, struct event_base *const *bases,
    gw_rpc *const *rpcs, int nloops)
{
	gw_admin *a;

	if ((a = calloc(1, sizeof(*a))) == NULL) {
		close(fd);
		return CM_ENOMEM;
	}
	pthread_mutex_init(&a->mu, NULL);
	if (nloops > 0) {
		a->bases = calloc((size_t) nloops, sizeof(*a->bases));
		a->rpcs = calloc((size_t) nloops, sizeof(*a->rpcs));
		if (a->bases == NULL || a->rpcs == NULL) {
			goto fail;
		}
		memcpy(a->bases, bases, (size_t) nloops * sizeof(*bases));
		memcpy(a->rpcs, rpcs, (size_t) nloops * sizeof(*rpcs));
		a->nloops = nloops;
	}
	if ((a->base = event_base_new()) == NULL ||
	    (a->http = evhttp_new(a->base)) == NULL) {
		goto fail;
	}
	evhttp_set_allowed_methods(a->http,
	    EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
	        EVHTTP_REQ_PUT | EVHTTP_REQ_PATCH | EVHTTP_REQ_DELETE |
	        EVHTTP_REQ_OPTIONS);
	evhttp_set_max_headers_size(a->http, GW_HTTP_MAX_HEADERS);
	evhttp_set_max_body_size(a->http, 0);
	evhttp_set_timeout(a->http, ADMIN_IDLE_TIMEOUT);
	evhttp_set_gencb(a->http, on_admin_request, a);
	if (evhttp_accept_socket_with_handle(a->http, fd) == NULL) {
		goto fail;
	}
	*out = a;
	return CM_OK;

fail:
	close(fd);
	gw_admin_free(a);
	return CM_ENOMEM;
}

int
gw_admin_start(gw_admin *a)
{
	return cm_loop_thread_start(&a->thread, a->base, "GW-ADMIN-FAIL");
}

void
gw_admin_detach_loops(gw_admin *a)
{
	if (a == NULL) {
		return;
	}
	pthread_mutex_lock(&a->mu);
	a->nloops = 0;
	pthread_mutex_unlock(&a->mu);
}

void
gw_admin_free(gw_admin *a)
{
	if (a == NULL) {
		return;
	}
	cm_loop_thread_stop(&a->thread);
	/* Probes that never came back: their requests go with the evhttp,
	 * their pending events with the bases. */
	while (a->probes != NULL) {
		probe *p = a->probes;
		a->probes = p->next;
		free(p);
	}
	if (a->http != NULL) {
		evhttp_free(a->http);
	}
	if (a->base != NULL) {
		event_base_free(a->base);
	}
	free(a->bases);
	free(a->rpcs);
	pthread_mutex_destroy(&a->mu);
	free(a);
}
