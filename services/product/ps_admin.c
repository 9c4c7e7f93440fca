/* ps_admin.c - the replica's admin HTTP listener: GET /healthz, /readyz
 * and /metrics on PRODUCT_ADMIN_LISTEN, served by its own thread and
 * event base so that a busy or stuck worker loop never delays a probe.
 *
 * The admin thread reads only process-wide atomics (ps_drain.c, the
 * metrics shards); it touches no worker, no connection and no NNG object.
 * /readyz is 200 while at least one PostgreSQL connection is up, the NNG
 * socket listens and no stop signal has arrived; Redis is not part of it,
 * since reads keep working without Redis (BYPASS).
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "cm.h"
#include "cm_net.h"
#include "cm_log.h"
#include "cm_loop.h"
#include "cm_metrics.h"
#include "ps.h"

#define ADMIN_IDLE_TIMEOUT 30   /* seconds an admin connection idles */
#define ADMIN_MAX_HEADERS  8192 /* bytes of request headers */
#define ADMIN_BACKLOG      64

struct ps_admin {
	struct event_base *base;
	struct evhttp     *http;
	int                port; /* bound */
	cm_loop_thread     thread;
};

static void
reply(struct evhttp_request *req, int status, const char *ctype,
    const char *body, size_t len)
{
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);

	evhttp_add_header(out, "Content-Type", ctype);
	evhttp_add_header(out, "Cache-Control", "no-store");
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
reply_json(struct evhttp_request *req, int status, const char *body)
{
	reply(req, status, "application/json", body, strlen(body));
}

static void
serve_metrics(struct evhttp_request *req)
{
	char  *text;
	size_t len;

	if (cm_metrics_render(&text, &len) != CM_OK) {
		CM_ERROR("PS-ADMIN-NOMEM", NULL, "cannot render the metrics");
		reply_json(req, 500, "{\"status\":\"error\"}");
		return;
	}
	reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
	free(text);
}

/* Why the replica is not ready, or NULL when it is. */
static const char *
unready_reason(void)
{
	if (ps_drain_draining()) {
		return "draining";
	}
	if (!ps_drain_listening()) {
		return "the NNG socket is not listening";
	}
	if (!ps_metrics_pg_up()) {
		return "no PostgreSQL connection is up";
	}
	return NULL;
}

static void
serve_ready(struct evhttp_request *req)
{
	const char *why = unready_reason();
	char        body[160];

	if (why == NULL) {
		reply_json(req, 200, "{\"status\":\"ready\"}");
		return;
	}
	snprintf(body, sizeof(body),
	    "{\"status\":\"unready\",\"reason\":\"%s\"}", why);
	evhttp_add_header(
	    evhttp_request_get_output_headers(req), "Retry-After", "1");
	reply_json(req, 503, body);
}

static void
on_request(struct evhttp_request *req, void *arg)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);

	(void) arg;
	if (path == NULL) {
		path = "/";
	}
	if (strcmp(path, "/metrics") != 0 && strcmp(path, "/healthz") != 0 &&
	    strcmp(path, "/readyz") != 0) {
		reply_json(req, 404, "{\"status\":\"no such admin route\"}");
		return;
	}
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Allow", "GET, HEAD");
		reply_json(req, 405, "{\"status\":\"use GET or HEAD\"}");
		return;
	}
	if (strcmp(path, "/metrics") == 0) {
		serve_metrics(req);
	} else if (strcmp(path, "/healthz") == 0) {
		reply_json(req, 200, "{\"status\":\"ok\"}");
	} else {
		serve_ready(req);
	}
}

/* Binds a listening socket on host:port. SO_REUSEPORT as the gateway's
 * admin port does, so that replicas started side by side on one host with
 * the default address still start (give each its own address to scrape
 * each). Returns CM_OK with *fdp and the bound port, or CM_EINVAL after
 * logging why. */
static int
bind_listen(const char *listen_addr, int *fdp, int *bound)
{
	char host[256], err[256];
	int  port;

	if (cm_net_parse_listen(listen_addr, host, sizeof(host), &port) !=
	    CM_OK) {
		CM_ERROR("PS-ADMIN-LISTEN", NULL,
		    "PRODUCT_ADMIN_LISTEN=%s: want host:port or [v6]:port",
		    listen_addr);
		return CM_EINVAL;
	}
	if (cm_net_listen(host, port, ADMIN_BACKLOG, fdp, bound, err,
	        sizeof(err)) != CM_OK) {
		CM_ERROR("PS-ADMIN-LISTEN", NULL,
		    "PRODUCT_ADMIN_LISTEN=%s: %s", listen_addr, err);
		return CM_EINVAL;
	}
	return CM_OK;
}

/* Binds PRODUCT_ADMIN_LISTEN and prepares its evhttp; the thread starts
 * with ps_admin_start(). Returns CM_OK with *out (freed with
 * ps_admin_free()), CM_EINVAL (logged) or CM_ENOMEM. */
int
ps_admin_open(const char *listen_addr, ps_admin **out)
{
	ps_admin *a;
	int       fd, rv, port = 0;

	if ((rv = bind_listen(listen_addr, &fd, &port)) != CM_OK) {
		return rv;
	}
	if ((a = calloc(1, sizeof(*a))) == NULL) {
		close(fd);
		return CM_ENOMEM;
	}
	a->port = port;
	if ((a->base = event_base_new()) == NULL ||
	    (a->http = evhttp_new(a->base)) == NULL) {
		close(fd);
		ps_admin_free(a);
		return CM_ENOMEM;
	}
	evhttp_set_allowed_methods(a->http,
	    EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
	        EVHTTP_REQ_PUT | EVHTTP_REQ_PATCH | EVHTTP_REQ_DELETE |
	        EVHTTP_REQ_OPTIONS);
	evhttp_set_max_headers_size(a->http, ADMIN_MAX_HEADERS);
	evhttp_set_max_body_size(a->http, 0);
	evhttp_set_timeout(a->http, ADMIN_IDLE_TIMEOUT);
	evhttp_set_gencb(a->http, on_request, a);
	if (evhttp_accept_socket_with_handle(a->http, fd) == NULL) {
		close(fd);
		ps_admin_free(a);
		return CM_ENOMEM;
	}
	*out = a;
	return CM_OK;
}

int
ps_admin_port(const ps_admin *a)
{
	return a != NULL ? a->port : 0;
}

/* Starts the admin thread. Returns CM_OK or CM_EINTERNAL. */
int
ps_admin_start(ps_admin *a)
{
	return cm_loop_thread_start(&a->thread, a->base, "PS-ADMIN-FAIL");
}

/* Stops the admin thread (evthread_use_pthreads() must have been called,
 * which makes event_base_loopbreak safe from here), joins it and frees
 * everything. a may be NULL. */
void
ps_admin_free(ps_admin *a)
{
	if (a == NULL) {
		return;
	}
	cm_loop_thread_stop(&a->thread);
	if (a->http != NULL) {
		evhttp_free(a->http);
	}
	if (a->base != NULL) {
		event_base_free(a->base);
	}
	free(a);
}
