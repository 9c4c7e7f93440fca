/* gw_http.c - the evhttp front end: requests in, RPCs out, JSON back.
 *
 * Every function here runs on the loop thread that owns the gw_http; the
 * RPC layer calls on_rpc() on that same thread. A request whose client went
 * away before the reply is still answered: evhttp has detached it from the
 * connection by then, and evhttp_send_reply() just frees it.
 */
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "cm.h"
#include "cm_log.h"
#include "cm_trace.h"
#include "gw.h"

#define LOG_PATH_MAX 160
#define LOG_NAME_MAX 64

struct gw_http {
	struct event_base          *base;
	struct evhttp              *http;
	struct evhttp_bound_socket *listener;
	gw_conns                   *conns; /* NULL: unguarded (unit tests) */
	gw_rpc                     *rpc;
	int                         timeout_ms;
	size_t                      max_body;
	int                         pending;      /* hreqs not yet answered */
	int                         max_inflight; /* pending beyond: 503 */
	int                         draining;
	void (*idle)(void *);
	void           *idle_arg;
	gw_auth        *auth; /* NULL: no guard (unit tests) */
	int             auth_slot;
	gw_rl          *rl; /* NULL: no rate limit */
	const gw_cidrs *trusted;
};

/* One HTTP request from arrival to reply. */
typedef struct hreq {
	gw_http               *srv;
	struct evhttp_request *req;
	unsigned               method;
	gw_route               route;
	gw_inm                 inm;
	int64_t                t0_us;
	const char            *cache; /* X-Cache value, or "-" */
	int                    retries;
	gw_body               *body;     /* POST, PUT, PATCH: the input */
	int32_t                if_match; /* if_match_version to send */
	const char            *idem;     /* in the input headers: no copy */
	char                   reqid[65];
	char                   path[LOG_PATH_MAX + 4];
	char                   replica[LOG_NAME_MAX + 4];
	char                   upstream[LOG_NAME_MAX + 4];
	cm_trace               trace;
	char                   traceparent[CM_TRACEPARENT_LEN + 1];
	char                   client[GW_CLIENT_MAX]; /* rate limit id */
} hreq;

/* ---- pure helpers ---- */

int
gw_http_status_of(int status)
{
	switch (status) {
	case CATALOG__STATUS__STATUS_OK:
		return 200;
	case CATALOG__STATUS__STATUS_CREATED:
		return 201;
	case CATALOG__STATUS__STATUS_NO_CONTENT:
		return 204;
	case CATALOG__STATUS__STATUS_NOT_MODIFIED:
		return 304;
	case CATALOG__STATUS__STATUS_NOT_FOUND:
		return 404;
	case CATALOG__STATUS__STATUS_INVALID:
		return 400;
	case CATALOG__STATUS__STATUS_CONFLICT:
		return 409;
	case CATALOG__STATUS__STATUS_PRECONDITION_FAILED:
		return 412;
	case CATALOG__STATUS__STATUS_UNPROCESSABLE:
		return 422;
	case CATALOG__STATUS__STATUS_UNAVAILABLE:
	case CATALOG__STATUS__STATUS_DRAINING: /* no other replica took it */
		return 503;
	case CATALOG__STATUS__STATUS_DEADLINE_EXCEEDED:
		return 504;
	}
	return 500;
}

/* Copies src for a log line: printable ASCII other than space, quote and
 * backslash as is, anything else as '?', cut at max bytes with "...". */
static void
sanitize(char *dst, size_t max, const char *src)
{
	size_t i = 0;
	if (src == NULL || src[0] == '\0') {
		src = "-";
	}
	for (; src[i] != '\0' && i < max; i++) {
		unsigned char c = (unsigned char) src[i];
		dst[i] = (c > 0x20 && c < 0x7f && c != '"' && c != '\\')
		    ? (char) c
		    : '?';
	}
	if (src[i] != '\0') {
		memcpy(dst + i, "...", 3);
		i += 3;
	}
	dst[i] = '\0';
}

static unsigned
method_of(enum evhttp_cmd_type cmd)
{
	switch (cmd) {
	case EVHTTP_REQ_GET:
		return GW_M_GET;
	case EVHTTP_REQ_HEAD:
		return GW_M_HEAD;
	case EVHTTP_REQ_POST:
		return GW_M_POST;
	case EVHTTP_REQ_PUT:
		return GW_M_PUT;
	case EVHTTP_REQ_PATCH:
		return GW_M_PATCH;
	case EVHTTP_REQ_DELETE:
		return GW_M_DELETE;
	case EVHTTP_REQ_OPTIONS:
		return GW_M_OPTIONS;
	default:
		return 0;
	}
}

/* ---- replies ---- */

static void
add_header(hreq *h, const char *key, const char *value)
{
	evhttp_add_header(
	    evhttp_request_get_output_headers(h->req), key, value);
}

/* One request less is pending; a draining server may now be idle. */
static void
request_gone(gw_http *srv)
{
	if (--srv->pending == 0 && srv->draining && srv->idle != NULL) {
		void (*idle)(void *) = srv->idle;
		srv->idle = NULL;
		idle(srv->idle_arg);
	}
}

/* The connection closed while a reply was being written to it (a client
 * that went away): that reply will never complete. */
static void
on_conn_closed(struct evhttp_connection *evcon, void *arg)
{
	(void) evcon;
	request_gone(arg);
}

/* evhttp wrote the whole reply. */
static void
on_sent(struct evhttp_request *req, void *arg)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	if (evcon != NULL) {
		evhttp_connection_set_closecb(evcon, NULL, NULL);
	}
	request_gone(arg);
}

/* Writes the access line (GW-ACCESS): one structured line a request. */
static void
log_access(const hreq *h, int status, int64_t us, size_t bytes, int gone)
{
	cm_log_field f[14];
	size_t       n = 0;

	f[n++] = CM_LF_STR("trace_id", h->trace.trace_id);
	f[n++] = CM_LF_STR("method", gw_method_name(h->method));
	f[n++] = CM_LF_STR("route", gw_metrics_route(h->route.id));
	f[n++] = CM_LF_STR("path", h->path);
	f[n++] = CM_LF_NUM("status", status);
	f[n++] = CM_LF_NUM("duration_ms", (double) us / 1000.0);
	f[n++] = CM_LF_STR("cache", h->cache);
	f[n++] = CM_LF_STR("replica", h->replica);
	f[n++] = CM_LF_STR("upstream", h->upstream);
	f[n++] = CM_LF_NUM("retries", h->retries);
	f[n++] = CM_LF_NUM("bytes", bytes);
	if (gone) {
		f[n++] = CM_LF_STR("client", "gone");
	}
	cm_log_fields(CM_LOG_INFO, "GW-ACCESS", h->reqid, f, n);
}

/* Adds Date, which evhttp would otherwise format with strftime() for
 * every reply: the text changes once a second, so each loop thread keeps
 * it (RFC 9110 IMF-fixdate, English names whatever the locale). */
static void
add_date(hreq *h)
{
	static const char days[7][4] = {
	    "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May",
	    "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	static __thread time_t sec = -1;
	static __thread char   date[40];
	time_t                 now = time(NULL);

	if (now != sec) {
		struct tm tm;
		gmtime_r(&now, &tm);
		snprintf(date, sizeof(date),
		    "%s, %02d %s %d %02d:%02d:%02d GMT", days[tm.tm_wday % 7],
		    tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900,
		    tm.tm_hour, tm.tm_min, tm.tm_sec);
		sec = now;
	}
	add_header(h, "Date", date);
}

/* Sends the reply (headers and whatever is in the output buffer), records
 * the request's metrics, writes the access line and frees h. The request
 * stops counting as pending once its reply is written out, so that a
 * drain does not cut it off. From the stop signal on, replies carry
 * Connection: close, so that keep-alive clients move to another gateway
 * while this one still serves. */
static void
finish(hreq *h, int status)
{
	gw_http *srv = h->srv;
	int      gone = evhttp_request_get_connection(h->req) == NULL;
	int64_t  us = cm_mono_us() - h->t0_us;
	size_t   bytes = h->method == GW_M_HEAD
	      ? 0
	      : evbuffer_get_length(evhttp_request_get_output_buffer(h->req));

	if (srv->draining || gw_drain_unready()) {
		add_header(h, "Connection", "close");
	}
	add_date(h);
	if (!gone) {
		/* evhttp handles one request per connection at a time, so
		 * exactly one of these two ends this request. */
		evhttp_request_set_on_complete_cb(h->req, on_sent, srv);
		evhttp_connection_set_closecb(
		    evhttp_request_get_connection(h->req), on_conn_closed,
		    srv);
	}
	/* libevent 2.1 knows no phrase for 422, 429 or 431 ("Client Error") */
	evhttp_send_reply(h->req, status,
	    status == 422 || status == 429 || status == 431
	        ? gw_json_problem_title(status)
	        : NULL,
	    NULL);
	gw_metrics_request_end(
	    h->route.id, h->method, status, (double) us / 1e6);
	log_access(h, status, us, bytes, gone);
	if (h->body != NULL) {
		gw_body_fini(h->body);
		free(h->body);
	}
	free(h);
	if (gone) {
		request_gone(srv); /* evhttp freed it without writing */
	}
}

/* Replies with body b of type ctype; HEAD gets the headers only, with the
 * Content-Length the body would have had. */
static void
reply_body(hreq *h, int status, const char *ctype, const gw_buf *b)
{
	add_header(h, "Content-Type", ctype);
	if (h->method == GW_M_HEAD) {
		char len[24];
		snprintf(len, sizeof(len), "%zu", b->len);
		add_header(h, "Content-Length", len);
	} else if (evbuffer_add(evhttp_request_get_output_buffer(h->req),
	               b->data, b->len) != 0) {
		CM_ERROR("GW-HTTP-NOMEM", h->reqid, "cannot buffer the reply");
		status = 500;
	}
	finish(h, status);
}

static void
send_problem(hreq *h, int status, const char *detail)
{
	gw_buf b;

	gw_buf_init(&b);
	if (gw_json_problem(&b, status, detail, h->reqid) != CM_OK) {
		CM_ERROR("GW-HTTP-NOMEM", h->reqid, "cannot build a problem");
		finish(h, 500);
	} else {
		reply_body(h, status, "application/problem+json", &b);
	}
	gw_buf_fini(&b);
}

/* A 422 listing every field that broke a rule. */
static void
send_fields(hreq *h, const gw_body *body)
{
	gw_buf b;

	gw_buf_init(&b);
	if (gw_json_problem_fields(&b, body->detail, h->reqid, body->errs,
	        body->nerrs) != CM_OK) {
		CM_ERROR("GW-HTTP-NOMEM", h->reqid, "cannot build a problem");
		finish(h, 500);
	} else {
		reply_body(h, 422, "application/problem+json", &b);
	}
	gw_buf_fini(&b);
}

/* Sends one JSON document built by the caller into b, or a 500. */
static void
send_json(hreq *h, int status, gw_buf *b)
{
	if (b->err != CM_OK) {
		CM_ERROR("GW-HTTP-NOMEM", h->reqid, "cannot build the reply");
		send_problem(h, 500, "out of memory");
	} else {
		reply_body(h, status, "application/json", b);
	}
	gw_buf_fini(b);
}

static void
set_etag(hreq *h, int32_t version)
{
	char etag[16];
	snprintf(etag, sizeof(etag), "\"%d\"", (int) version);
	add_header(h, "ETag", etag);
}

/* A replica answered with a status other than the route's success. */
static void
answer_status(hreq *h, const Catalog__Response *r)
{
	int         st = gw_http_status_of(r->status);
	const char *detail =
	    r->detail != NULL && r->detail[0] != '\0' ? r->detail : NULL;

	if (st < 400) {
		/* e.g. CREATED to a GET: not a reply to this request */
		CM_ERROR("GW-RPC-BADSTATUS", h->reqid,
		    "replica=%s answered status %d to route %d", h->replica,
		    (int) r->status, (int) h->route.id);
		send_problem(h, 502,
		    "the product service sent an unexpected "
		    "reply");
		return;
	}
	if (st == 503) {
		char ra[16];
		snprintf(ra, sizeof(ra), "%d",
		    r->retry_after_s > 0 ? (int) r->retry_after_s : 1);
		add_header(h, "Retry-After", ra);
	}
	if (st == 500) {
		char d[128];
		sanitize(d, sizeof(d) - 4, detail);
		CM_ERROR("GW-REPLICA-INTERNAL", h->reqid,
		    "replica=%s detail=%s", h->replica, d);
		detail = "the product service failed";
	}
	if (detail == NULL && st == 404) {
		detail = "no such product";
	}
	send_problem(h, st, detail);
}

static void
answer_product(hreq *h, const Catalog__Response *r)
{
	gw_buf  b;
	int32_t v;

	switch (r->status) {
	case CATALOG__STATUS__STATUS_OK:
		if (r->product == NULL) {
			CM_ERROR("GW-RPC-BADREPLY", h->reqid,
			    "replica=%s answered OK without a product",
			    h->replica);
			send_problem(h, 502,
			    "the product service sent a "
			    "malformed reply");
			return;
		}
		set_etag(h, r->product->version);
		if (gw_inm_match(&h->inm, r->product->version)) {
			finish(h, 304);
			return;
		}
		gw_buf_init(&b);
		gw_json_product(&b, r->product);
		send_json(h, 200, &b);
		return;
	case CATALOG__STATUS__STATUS_NOT_MODIFIED:
		v = r->product != NULL ? r->product->version
		                       : gw_inm_hint(&h->inm);
		if (v > 0) {
			set_etag(h, v);
		}
		finish(h, 304);
		return;
	default:
		answer_status(h, r);
	}
}

/* The success a replica answers to each write route. */
static Catalog__Status
write_success(gw_route_id id)
{
	switch (id) {
	case GW_ROUTE_PRODUCT_CREATE:
		return CATALOG__STATUS__STATUS_CREATED;
	case GW_ROUTE_PRODUCT_DELETE:
		return CATALOG__STATUS__STATUS_NO_CONTENT;
	default:
		return CATALOG__STATUS__STATUS_OK;
	}
}

/* 201 with Location, 200 or 204; replays are marked whatever their
 * status, so a client can tell that its retry changed nothing. */
static void
answer_write(hreq *h, const Catalog__Response *r)
{
	Catalog__Status want = write_success(h->route.id);
	gw_buf          b;
	char            loc[48];

	if (r->replayed) {
		add_header(h, "Idempotent-Replayed", "true");
	}
	if (r->status != want) {
		answer_status(h, r);
		return;
	}
	if (want == CATALOG__STATUS__STATUS_NO_CONTENT) {
		finish(h, 204);
		return;
	}
	if (r->product == NULL) {
		CM_ERROR("GW-RPC-BADREPLY", h->reqid,
		    "replica=%s answered a write without a product",
		    h->replica);
		send_problem(
		    h, 502, "the product service sent a malformed reply");
		return;
	}
	set_etag(h, r->product->version);
	if (want == CATALOG__STATUS__STATUS_CREATED) {
		snprintf(loc, sizeof(loc), "/products/%lld",
		    (long long) r->product->id);
		add_header(h, "Location", loc);
	}
	gw_buf_init(&b);
	gw_json_product(&b, r->product);
	send_json(h, want == CATALOG__STATUS__STATUS_CREATED ? 201 : 200, &b);
}

static void
answer_list(hreq *h, const Catalog__Response *r)
{
	gw_buf b;

	if (r->status != CATALOG__STATUS__STATUS_OK) {
		answer_status(h, r);
		return;
	}
	gw_buf_init(&b);
	gw_json_list(&b, r->items, r->n_items, r->next_after);
	send_json(h, 200, &b);
}

static void
answer_ready(hreq *h, const Catalog__Response *r)
{
	gw_buf b;
	char   detail[128];

	if (r->status != CATALOG__STATUS__STATUS_OK) {
		snprintf(detail, sizeof(detail), "replica %s is not ready: %s",
		    h->replica, r->detail != NULL ? r->detail : "");
		send_problem(h, 503, detail);
		return;
	}
	gw_buf_init(&b);
	gw_json_status(&b, "ready");
	send_json(h, 200, &b);
}

static const char *
cache_name(Catalog__CacheOutcome c)
{
	switch (c) {
	case CATALOG__CACHE_OUTCOME__CACHE_HIT:
		return "HIT";
	case CATALOG__CACHE_OUTCOME__CACHE_MISS:
		return "MISS";
	case CATALOG__CACHE_OUTCOME__CACHE_BYPASS:
		return "BYPASS";
	case CATALOG__CACHE_OUTCOME__CACHE_STALE:
		return "STALE";
	default:
		return NULL;
	}
}

/* The RPC layer's callback, on this loop's thread. */
static void
on_rpc(const gw_rpc_res *res, void *arg)
{
	hreq              *h = arg;
	const char        *cache;
	const char        *name;
	static const char *no_replica = "no product replica answered";

	h->retries = res->retries;
	name = res->resp != NULL && res->resp->replica != NULL &&
	        res->resp->replica[0] != '\0'
	    ? res->resp->replica
	    : res->upstream;
	sanitize(h->replica, LOG_NAME_MAX, name);
	sanitize(h->upstream, LOG_NAME_MAX, res->upstream);
	if (res->err != CM_OK) {
		if (h->route.id == GW_ROUTE_READYZ) {
			send_problem(h, 503, no_replica);
		} else if (res->err == CM_ETIMEDOUT) {
			send_problem(h, 504,
			    "the product service did not answer in time");
		} else if (res->err == CM_EPROTO) {
			send_problem(h, 502,
			    "the product service sent a malformed reply");
		} else {
			send_problem(
			    h, 502, "no product replica could be reached");
		}
		return;
	}
	gw_metrics_cache(res->resp->cache);
	if ((cache = cache_name(res->resp->cache)) != NULL) {
		h->cache = cache;
		add_header(h, "X-Cache", cache);
	}
	switch (h->route.id) {
	case GW_ROUTE_READYZ:
		answer_ready(h, res->resp);
		break;
	case GW_ROUTE_PRODUCT_GET:
		answer_product(h, res->resp);
		break;
	case GW_ROUTE_PRODUCT_LIST:
		answer_list(h, res->resp);
		break;
	case GW_ROUTE_PRODUCT_CREATE:
	case GW_ROUTE_PRODUCT_REPLACE:
	case GW_ROUTE_PRODUCT_PATCH:
	case GW_ROUTE_PRODUCT_DELETE:
		answer_write(h, res->resp);
		break;
	default:
		send_problem(h, 500, "unexpected route");
		break;
	}
}

static void
start_rpc(hreq *h, Catalog__Method m, int timeout_ms)
{
	gw_rpc_req r = {0};
	int        rv;

	r.method = m;
	r.request_id = h->reqid;
	r.timeout_ms = timeout_ms;
	r.id = h->route.product_id;
	r.limit = h->route.limit;
	r.after = h->route.after;
	r.if_none_match_version = gw_inm_hint(&h->inm);
	r.input = h->body != NULL ? &h->body->input : NULL;
	r.if_match_version = h->if_match;
	r.idempotency_key = h->idem;
	r.traceparent = h->traceparent;
	if ((rv = gw_rpc_call(h->srv->rpc, &r, on_rpc, h)) != CM_OK) {
		CM_ERROR("GW-RPC-START", h->reqid, "cannot start an RPC: %s",
		    cm_strerror(rv));
		send_problem(h, 503, "the gateway cannot send requests now");
	}
}

static void
read_inm(hreq *h)
{
	struct evkeyvalq *in = evhttp_request_get_input_headers(h->req);
	for (struct evkeyval *kv = in->tqh_first; kv != NULL;
	     kv = kv->next.tqe_next) {
		if (strcasecmp(kv->key, "If-None-Match") == 0) {
			gw_inm_parse(kv->value, &h->inm);
		}
	}
}

/* Reads Idempotency-Key: absent, or exactly one good key. Returns 0, or
 * -1 after replying 400. */
static int
read_idem(hreq *h)
{
	struct evkeyvalq *in = evhttp_request_get_input_headers(h->req);
	const char       *key = NULL;

	for (struct evkeyval *kv = in->tqh_first; kv != NULL;
	     kv = kv->next.tqe_next) {
		if (strcasecmp(kv->key, "Idempotency-Key") != 0) {
			continue;
		}
		if (key != NULL) {
			send_problem(
			    h, 400, "Idempotency-Key must be sent once");
			return -1;
		}
		key = kv->value;
	}
	if (key == NULL) {
		return 0;
	}
	if (!gw_hdr_idem_ok(key)) {
		send_problem(h, 400,
		    "Idempotency-Key must be 1 to 255 printable ASCII "
		    "characters without spaces");
		return -1;
	}
	h->idem = key;
	return 0;
}

/* Reads If-Match into h->if_match. Returns 0, or -1 after replying 400 or
 * 412. POST ignores it: a new product has no version to match. */
static int
read_if_match(hreq *h)
{
	struct evkeyvalq *in = evhttp_request_get_input_headers(h->req);
	gw_ifm            ifm = {0};
	const char       *detail;
	int               st;

	for (struct evkeyval *kv = in->tqh_first; kv != NULL;
	     kv = kv->next.tqe_next) {
		if (strcasecmp(kv->key, "If-Match") == 0) {
			gw_hdr_ifm_add(kv->value, &ifm);
		}
	}
	if ((st = gw_hdr_ifm_eval(&ifm, &h->if_match, &detail)) != 0) {
		send_problem(h, st, detail);
		return -1;
	}
	return 0;
}

/* POST and PUT take application/json; PATCH also (and foremost) takes
 * application/merge-patch+json. Returns 0, or -1 after replying 415. */
static int
check_ctype(hreq *h)
{
	int      patch = h->route.id == GW_ROUTE_PRODUCT_PATCH;
	gw_ctype ct = gw_hdr_ctype(evhttp_find_header(
	    evhttp_request_get_input_headers(h->req), "Content-Type"));

	if (ct == GW_CT_OTHER || (ct == GW_CT_MERGE_PATCH && !patch)) {
		send_problem(h, 415,
		    patch ? "PATCH takes Content-Type "
		            "application/merge-patch+json or application/json"
		          : "the body must have Content-Type "
		            "application/json");
		return -1;
	}
	return 0;
}

/* Reads and validates the JSON body of POST, PUT and PATCH into h->body.
 * Returns 0, or -1 after replying 413, 400 or 422. */
static int
read_body(hreq *h)
{
	struct evbuffer *ib = evhttp_request_get_input_buffer(h->req);
	int              patch = h->route.id == GW_ROUTE_PRODUCT_PATCH;
	size_t           len = evbuffer_get_length(ib);
	const char      *text;
	int              rv;
	/* evhttp enforces the limit while reading; this is a second
	 * guard before the body is made contiguous. */
	if (len > h->srv->max_body) {
		send_problem(h, 413, "the request body is too large");
		return -1;
	}
	/* evbuffer_pullup() gives NULL for an empty buffer */
	text = len > 0 ? (const char *) evbuffer_pullup(ib, -1) : "";
	if ((h->body = malloc(sizeof(*h->body))) == NULL || text == NULL) {
		send_problem(h, 500, "out of memory");
		return -1;
	}
	rv = gw_body_parse(
	    h->body, text, len, patch ? GW_BODY_PATCH : GW_BODY_FULL);
	if (rv == CM_ENOMEM) {
		send_problem(h, 500, "out of memory");
		return -1;
	}
	if (rv != CM_OK && h->body->status == 422) {
		send_fields(h, h->body);
		return -1;
	}
	if (rv != CM_OK) {
		send_problem(h, h->body->status, h->body->detail);
		return -1;
	}
	return 0;
}

/* Checks a write's headers and body, then sends its RPC. The order of the
 * checks is the order of the answers: 415 (Content-Type), 400
 * (Idempotency-Key), 400 or 422 (body), then If-Match: 400 when malformed,
 * 412 when it cannot match. DELETE has no body; POST ignores If-Match. */
static void
start_write(hreq *h, Catalog__Method m)
{
	int has_body = h->route.id != GW_ROUTE_PRODUCT_DELETE;

	if (has_body && check_ctype(h) != 0) {
		return;
	}
	if (read_idem(h) != 0) {
		return;
	}
	if (has_body && read_body(h) != 0) {
		return;
	}
	if (h->route.id != GW_ROUTE_PRODUCT_CREATE && read_if_match(h) != 0) {
		return;
	}
	start_rpc(h, m, h->srv->timeout_ms);
}

/* Routes the decoded path; returns 0, or -1 after replying with an error. */
static int
route(hreq *h)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(h->req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	char       *dec;
	size_t      dlen = 0;

	if (path == NULL || path[0] == '\0') {
		path = "/";
	}
	if ((dec = evhttp_uridecode(path, 0, &dlen)) == NULL) {
		send_problem(h, 500, "out of memory");
		return -1;
	}
	if (strlen(dec) != dlen) {
		free(dec);
		send_problem(h, 400, "the path contains a NUL byte");
		return -1;
	}
	gw_route_match(h->method, dec,
	    uri != NULL ? evhttp_uri_get_query(uri) : NULL, &h->route);
	free(dec);
	if (h->route.status != 0) {
		if (h->route.status == 405) {
			add_header(h, "Allow", h->route.allow);
		}
		send_problem(h, h->route.status, h->route.detail);
		return -1;
	}
	return 0;
}

/* Reads the client's traceparent: a valid one continues its trace, else
 * a new trace starts. Every reply carries this hop's traceparent. */
static void
read_trace(hreq *h)
{
	const char *tp = evhttp_find_header(
	    evhttp_request_get_input_headers(h->req), "traceparent");

	if (tp == NULL || cm_trace_parse(tp, &h->trace) != CM_OK) {
		cm_trace_new(&h->trace);
	}
	cm_trace_format(&h->trace, h->traceparent, sizeof(h->traceparent));
	add_header(h, "traceparent", h->traceparent);
}

/* Answers the request the connection guard (gw_conn.c) put in place of
 * one it refused: "/.guard/<secret>/<gw_guard_err>". Returns 1 when it
 * did; any other path under /.guard/ is routed like any path (404). The
 * path stays out of the access log: it holds the secret. */
static int
guard_reply(hreq *h)
{
	const char *uri = evhttp_request_get_uri(h->req);
	const char *p, *slash;
	char       *end;
	long        e;

	if (uri == NULL ||
	    strncmp(uri, GW_CONN_REJECT_PREFIX,
	        strlen(GW_CONN_REJECT_PREFIX)) != 0) {
		return 0;
	}
	p = uri + strlen(GW_CONN_REJECT_PREFIX);
	if ((slash = strchr(p, '/')) == NULL ||
	    !gw_conn_secret_ok(p, (size_t) (slash - p))) {
		return 0;
	}
	e = strtol(slash + 1, &end, 10);
	if (*end != '\0' || e <= GW_GUARD_OK || e >= GW_GUARD_NERR) {
		return 0;
	}
	snprintf(h->path, sizeof(h->path), "-");
	add_header(h, "Connection", "close");
	send_problem(h, gw_guard_err_status((gw_guard_err) e),
	    gw_guard_err_detail((gw_guard_err) e));
	return 1;
}

/* Refuses work the loop cannot take: after the listeners closed for a
 * drain, or past max_inflight. The probes always pass: a busy gateway is
 * alive, and its readiness is for its own handler to say. Returns 0, or
 * -1 after replying 503. */
static int
admit(hreq *h)
{
	gw_http *srv = h->srv;

	if (h->route.id == GW_ROUTE_HEALTHZ ||
	    h->route.id == GW_ROUTE_READYZ) {
		return 0;
	}
	if (srv->draining) {
		gw_metrics_rejected(GW_REJECT_DRAINING);
		add_header(h, "Retry-After", "1");
		send_problem(h, 503, "the gateway is shutting down");
		return -1;
	}
	if (srv->max_inflight > 0 && srv->pending > srv->max_inflight) {
		gw_metrics_rejected(GW_REJECT_OVERLOAD);
		add_header(h, "Retry-After", "1");
		send_problem(h, 503, "the gateway is overloaded");
		return -1;
	}
	return 0;
}

static int  authorize(hreq *h);
static void dispatch(hreq *h);

static void
on_request(struct evhttp_request *req, void *arg)
{
	gw_http    *srv = arg;
	hreq       *h;
	const char *rid;

	if ((h = calloc(1, sizeof(*h))) == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	srv->pending++;
	gw_metrics_request_start();
	h->srv = srv;
	h->req = req;
	h->t0_us = cm_mono_us();
	h->cache = "-";
	h->method = method_of(evhttp_request_get_command(req));
	strcpy(h->replica, "-");
	strcpy(h->upstream, "-");
	sanitize(h->path, LOG_PATH_MAX, evhttp_request_get_uri(req));
	rid = evhttp_find_header(
	    evhttp_request_get_input_headers(req), "X-Request-Id");
	if (cm_reqid_ok(rid)) {
		snprintf(h->reqid, sizeof(h->reqid), "%s", rid);
	} else {
		cm_reqid_new(h->reqid);
	}
	add_header(h, "X-Request-Id", h->reqid);
	read_trace(h);

	if (guard_reply(h) || route(h) != 0 || admit(h) != 0 ||
	    authorize(h) != 0) {
		return;
	}
	dispatch(h);
}

/* Starts the work of a routed, admitted and authorized request. */
static void
dispatch(hreq *h)
{
	gw_http *srv = h->srv;
	gw_buf   b;

	switch (h->route.id) {
	case GW_ROUTE_HEALTHZ:
		gw_buf_init(&b);
		gw_json_status(&b, "ok");
		send_json(h, 200, &b);
		break;
	case GW_ROUTE_READYZ:
		if (gw_drain_unready()) {
			send_problem(h, 503, "the gateway is shutting down");
			break;
		}
		start_rpc(
		    h, CATALOG__METHOD__METHOD_PING, GW_READY_TIMEOUT_MS);
		break;
	case GW_ROUTE_PRODUCT_GET:
		read_inm(h);
		start_rpc(
		    h, CATALOG__METHOD__METHOD_GET_PRODUCT, srv->timeout_ms);
		break;
	case GW_ROUTE_PRODUCT_LIST:
		start_rpc(
		    h, CATALOG__METHOD__METHOD_LIST_PRODUCTS, srv->timeout_ms);
		break;
	case GW_ROUTE_PRODUCT_CREATE:
		start_write(h, CATALOG__METHOD__METHOD_CREATE_PRODUCT);
		break;
	case GW_ROUTE_PRODUCT_REPLACE:
		start_write(h, CATALOG__METHOD__METHOD_REPLACE_PRODUCT);
		break;
	case GW_ROUTE_PRODUCT_PATCH:
		start_write(h, CATALOG__METHOD__METHOD_PATCH_PRODUCT);
		break;
	case GW_ROUTE_PRODUCT_DELETE:
		start_write(h, CATALOG__METHOD__METHOD_DELETE_PRODUCT);
		break;
	default:
		send_problem(h, 500, "unexpected route");
		break;
	}
}

/* ---- authentication and rate limiting ---- */

/* Adds the RateLimit headers; a refused request gets 429 with
 * Retry-After. Returns 0 when allowed, else -1 after replying. */
static int
apply_limit(hreq *h, const gw_rl_decision *d)
{
	char v[24];

	snprintf(v, sizeof(v), "%lld", d->limit);
	add_header(h, "RateLimit-Limit", v);
	snprintf(v, sizeof(v), "%lld", d->remaining);
	add_header(h, "RateLimit-Remaining", v);
	if (d->allowed) {
		return 0;
	}
	snprintf(v, sizeof(v), "%d", d->retry_after_s);
	add_header(h, "Retry-After", v);
	send_problem(h, 429, "too many requests: slow down and retry later");
	return -1;
}

/* The rate limiter's answer from Redis, on this loop's thread. */
static void
on_limit(const gw_rl_decision *d, void *arg)
{
	hreq *h = arg;

	if (apply_limit(h, d) == 0) {
		dispatch(h);
	}
}

/* The id of an anonymous client: its address, or X-Forwarded-For's
 * client when the peer is a trusted proxy (every header, joined). */
static void
client_addr(hreq *h)
{
	struct evhttp_connection *evcon =
	    evhttp_request_get_connection(h->req);
	struct evkeyvalq *in = evhttp_request_get_input_headers(h->req);
	char             *peer = NULL, *joined = NULL;
	const char       *xff = NULL;
	ev_uint16_t       port;
	size_t            len = 0, n = 0;

	if (evcon != NULL) {
		evhttp_connection_get_peer(evcon, &peer, &port);
	}
	for (struct evkeyval *kv = in->tqh_first; kv != NULL;
	     kv = kv->next.tqe_next) {
		if (strcasecmp(kv->key, "X-Forwarded-For") == 0) {
			xff = kv->value;
			len += strlen(kv->value) + 1;
			n++;
		}
	}
	if (n > 1 && (joined = malloc(len)) != NULL) {
		joined[0] = '\0';
		for (struct evkeyval *kv = in->tqh_first; kv != NULL;
		     kv = kv->next.tqe_next) {
			if (strcasecmp(kv->key, "X-Forwarded-For") == 0) {
				if (joined[0] != '\0') {
					strcat(joined, ",");
				}
				strcat(joined, kv->value);
			}
		}
		xff = joined;
	}
	gw_rl_client_addr(
	    h->srv->trusted, peer, xff, h->client, sizeof(h->client));
	free(joined);
}

/* Checks the API key, then the client's rate limit; the probes pass.
 * Returns 0 to go on at once, 1 when on_limit() will go on, or -1 after
 * replying 401 or 429. */
static int
authorize(hreq *h)
{
	gw_http          *srv = h->srv;
	struct evkeyvalq *in = evhttp_request_get_input_headers(h->req);
	const char       *authz = NULL;
	int               nauthz = 0;
	unsigned writes = GW_M_POST | GW_M_PUT | GW_M_PATCH | GW_M_DELETE;
	gw_auth_result ar;
	gw_rl_decision d;

	if (srv->auth == NULL || h->route.id == GW_ROUTE_HEALTHZ ||
	    h->route.id == GW_ROUTE_READYZ) {
		return 0;
	}
	for (struct evkeyval *kv = in->tqh_first; kv != NULL;
	     kv = kv->next.tqe_next) {
		if (strcasecmp(kv->key, "Authorization") == 0 &&
		    nauthz++ == 0) {
			authz = kv->value;
		}
	}
	ar = gw_auth_check(srv->auth, srv->auth_slot,
	    (h->method & writes) != 0, authz, nauthz, h->client);
	if (ar == GW_AUTH_MISSING) {
		add_header(h, "WWW-Authenticate", "Bearer realm=\"catalog\"");
		send_problem(h, 401,
		    "this request needs an API key: Authorization: Bearer "
		    "<key>");
		return -1;
	}
	if (ar == GW_AUTH_INVALID) {
		add_header(h, "WWW-Authenticate",
		    "Bearer realm=\"catalog\", error=\"invalid_token\"");
		send_problem(h, 401, "the API key is not valid");
		return -1;
	}
	if (srv->rl == NULL) {
		return 0;
	}
	if (ar == GW_AUTH_ANON) {
		client_addr(h);
	}
	if (gw_rl_check(srv->rl, h->client, on_limit, h, &d) == 1) {
		return 1;
	}
	return apply_limit(h, &d);
}

/* ---- lifecycle ---- */

int
gw_http_new(gw_http **out, struct event_base *base, int fd, gw_rpc *rpc,
    int timeout_ms, size_t max_body)
{
	gw_http *srv;

	if ((srv = calloc(1, sizeof(*srv))) == NULL) {
		close(fd);
		return CM_ENOMEM;
	}
	srv->base = base;
	srv->rpc = rpc;
	srv->timeout_ms = timeout_ms;
	srv->max_body = max_body;
	if ((srv->http = evhttp_new(base)) == NULL) {
		close(fd);
		free(srv);
		return CM_ENOMEM;
	}
	/* Accept every method we route, so that we answer 405 ourselves. */
	evhttp_set_allowed_methods(srv->http,
	    EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
	        EVHTTP_REQ_PUT | EVHTTP_REQ_PATCH | EVHTTP_REQ_DELETE |
	        EVHTTP_REQ_OPTIONS);
	evhttp_set_max_body_size(srv->http, (ev_ssize_t) max_body);
	evhttp_set_max_headers_size(srv->http, GW_HTTP_MAX_HEADERS);
	evhttp_set_timeout(srv->http, GW_HTTP_IDLE_TIMEOUT);
	evhttp_set_gencb(srv->http, on_request, srv);
	if ((srv->listener =
	            evhttp_accept_socket_with_handle(srv->http, fd)) == NULL) {
		close(fd);
		gw_http_free(srv);
		return CM_ENOMEM;
	}
	*out = srv;
	return CM_OK;
}

int
gw_http_guard(gw_http *srv, const gw_conns_opts *o, int idle_timeout_s)
{
	size_t head = o->lim.max_uri + o->lim.max_header + 64;
	int    rv;

	if ((rv = gw_conns_new(&srv->conns, srv->base, srv->http, o)) !=
	    CM_OK) {
		return rv;
	}
	/* evhttp's limits stay as a backstop, above the guard's, so that
	 * only the guard answers */
	evhttp_set_max_headers_size(srv->http,
	    (ev_ssize_t) (head > GW_HTTP_MAX_HEADERS ? head
	                                             : GW_HTTP_MAX_HEADERS));
	evhttp_set_max_body_size(srv->http, (ev_ssize_t) o->lim.max_body);
	evhttp_set_timeout(srv->http, idle_timeout_s);
	if (srv->listener != NULL) {
		gw_conns_set_listener(srv->conns,
		    evhttp_bound_socket_get_listener(srv->listener));
	}
	return CM_OK;
}

void
gw_http_set_max_inflight(gw_http *srv, int max)
{
	srv->max_inflight = max;
}

void
gw_http_set_access(
    gw_http *srv, gw_auth *auth, int slot, gw_rl *rl, const gw_cidrs *trusted)
{
	srv->auth = auth;
	srv->auth_slot = slot;
	srv->rl = rl;
	srv->trusted = trusted;
}

void
gw_http_drain(gw_http *srv, void (*idle)(void *), void *arg)
{
	if (srv->listener != NULL) {
		gw_conns_set_listener(srv->conns, NULL);
		evhttp_del_accept_socket(srv->http, srv->listener);
		srv->listener = NULL;
	}
	srv->draining = 1;
	if (srv->pending == 0) {
		idle(arg);
		return;
	}
	srv->idle = idle;
	srv->idle_arg = arg;
}

void
gw_http_free(gw_http *srv)
{
	if (srv == NULL) {
		return;
	}
	gw_conns_free(srv->conns);
	evhttp_free(srv->http);
	free(srv);
}
