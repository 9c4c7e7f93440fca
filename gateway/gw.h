/* gw.h - the gateway's private interfaces: routing, JSON, RPC and HTTP.
 *
 * The gateway is N identical event loops. Each loop owns one gw_http (an
 * evhttp bound to its own SO_REUSEPORT socket) and one gw_rpc (its own NNG
 * sockets to every replica). Nothing is shared between loops except the
 * read-only configuration, so no lock is taken on the request path other
 * than the one that hands NNG completions back to the loop (gw_rpc.c).
 */
#ifndef GW_H
#define GW_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "catalog.pb-c.h"
#include "gw_guard.h"

struct event_base;
struct evhttp;
struct evconnlistener;

/* ---- gw_route.c: method, path and query to a route (pure) ---- */

/* HTTP methods as bits, so a route row can accept several. */
typedef enum gw_method {
	GW_M_GET = 1 << 0,
	GW_M_HEAD = 1 << 1,
	GW_M_POST = 1 << 2,
	GW_M_PUT = 1 << 3,
	GW_M_PATCH = 1 << 4,
	GW_M_DELETE = 1 << 5,
	GW_M_OPTIONS = 1 << 6,
} gw_method;

typedef enum gw_route_id {
	GW_ROUTE_NONE = 0,
	GW_ROUTE_HEALTHZ,
	GW_ROUTE_READYZ,
	GW_ROUTE_PRODUCT_LIST,
	GW_ROUTE_PRODUCT_GET,
	GW_ROUTE_PRODUCT_CREATE,
	GW_ROUTE_PRODUCT_REPLACE,
	GW_ROUTE_PRODUCT_PATCH,
	GW_ROUTE_PRODUCT_DELETE,
} gw_route_id;

#define GW_LIST_LIMIT_DEFAULT 20
#define GW_LIST_LIMIT_MAX     100

/* What the router decided for one request. */
typedef struct gw_route {
	gw_route_id id;         /* GW_ROUTE_NONE when status != 0 */
	int         status;     /* 0 when a route matched, else 400/404/405 */
	char        detail[96]; /* problem detail when status != 0 */
	char        allow[64];  /* Allow header value with 405 */
	int64_t     product_id; /* the routes of /products/{id} */
	int32_t     limit;      /* GW_ROUTE_PRODUCT_LIST */
	int64_t     after;      /* GW_ROUTE_PRODUCT_LIST */
} gw_route;

/* Returns "GET", "HEAD", ... for one method bit, "-" for anything else. */
const char *gw_method_name(unsigned m);

/* Matches a method and a percent-decoded path (NUL-terminated, no NUL
 * inside) plus the raw query string (NULL when absent) against the route
 * table and fills *out. Never allocates. */
void gw_route_match(
    unsigned method, const char *path, const char *query, gw_route *out);

/* Writes every route the table serves, one "METHOD /path/template" a line
 * (e.g. "GET /products/{id}"), in table order, to f: what
 * `gateway --list-routes` prints for the OpenAPI check. */
void gw_route_print(FILE *f);

/* ---- gw_route.c: If-None-Match (pure) ---- */

#define GW_INM_MAX 16

/* Parsed If-None-Match header(s). Our entity tags are "<version>"; tags that
 * are not a positive int32 are valid but can never match, so they are
 * skipped. Beyond GW_INM_MAX versions the rest are ignored. */
typedef struct gw_inm {
	int     present;   /* at least one well-formed header */
	int     malformed; /* a header did not parse: ignore them all */
	int     any;       /* "*" */
	size_t  n;
	int32_t versions[GW_INM_MAX];
} gw_inm;

/* Adds one header value to *inm (zero it before the first call). */
void gw_inm_parse(const char *value, gw_inm *inm);

/* Returns 1 when a product at version matches the condition (the request
 * should get 304), else 0. Weak comparison: W/"3" matches "3". */
int gw_inm_match(const gw_inm *inm, int32_t version);

/* Returns the version to send to the replica as if_none_match_version: the
 * largest listed version, or 0 (absent) for "*", none or malformed. */
int32_t gw_inm_hint(const gw_inm *inm);

/* ---- gw_hdr.c: request headers of the write routes (pure) ---- */

/* What a Content-Type header names. Parameters are allowed; a charset other
 * than UTF-8 makes the type unacceptable. */
typedef enum gw_ctype {
	GW_CT_OTHER = 0,   /* absent, malformed or another type */
	GW_CT_JSON,        /* application/json */
	GW_CT_MERGE_PATCH, /* application/merge-patch+json (RFC 7396) */
} gw_ctype;

gw_ctype gw_hdr_ctype(const char *value);

#define GW_IDEM_KEY_MAX 255

/* Returns 1 when s is a usable Idempotency-Key: 1 to 255 characters, each
 * printable ASCII other than space (0x21 to 0x7e), else 0. */
int gw_hdr_idem_ok(const char *s);

/* Parsed If-Match header(s). Strong comparison (RFC 9110 13.1.1): a weak
 * tag, or a tag that is not one of our versions, can never match. */
typedef struct gw_ifm {
	int     present;   /* at least one If-Match header was seen */
	int     malformed; /* a header did not parse (or was empty) */
	int     any;       /* "*" */
	int     others;    /* weak or foreign tags: they never match */
	size_t  n;         /* distinct strong tags that are our versions */
	int32_t version;   /* the first of them */
} gw_ifm;

/* Adds one If-Match header value to *ifm (zero it before the first). */
void gw_hdr_ifm_add(const char *value, gw_ifm *ifm);

/* Decides what a parsed If-Match asks for. Returns 0 with *version set to
 * the if_match_version to send (0 when there is no header, or for "*",
 * which the replica answers with 404 when the product does not exist), or
 * the HTTP status to answer at once with a problem detail in *detail: 400
 * for a malformed header, "*" mixed with tags, or several versions (the
 * wire carries one); 412 when no listed tag can match. */
int gw_hdr_ifm_eval(const gw_ifm *ifm, int32_t *version, const char **detail);

/* ---- gw_body.c: JSON bodies of the writes (the only file with json-c) ----
 */

#define GW_BODY_MAX_DEPTH 16   /* nesting levels a body may have */
#define GW_BODY_ERRS_MAX  32   /* field errors reported, at most */
#define GW_FIELD_NAME_MAX 64   /* bytes of a field name in an error */
#define GW_SKU_MAX        64   /* characters */
#define GW_NAME_MAX       200  /* code points */
#define GW_DESC_MAX       4000 /* code points */
#define GW_PRICE_MAX      1000000000000LL /* 10^12 cents */
#define GW_CURRENCY_DEF   "USD"

/* Bit of ProductInput.mask for a field number (catalog.proto). */
#define GW_MASK(field)   (1u << (field))
#define GW_F_SKU         2
#define GW_F_NAME        3
#define GW_F_DESCRIPTION 4
#define GW_F_PRICE_CENTS 5
#define GW_F_CURRENCY    6
#define GW_F_STOCK       7

/* One failed rule: the field's name (possibly cut) and a static message. */
typedef struct gw_field_err {
	char        field[GW_FIELD_NAME_MAX + 1];
	const char *message;
} gw_field_err;

typedef enum gw_body_mode {
	GW_BODY_FULL,  /* POST and PUT: the whole product */
	GW_BODY_PATCH, /* PATCH: a JSON merge patch (RFC 7396) */
} gw_body_mode;

/* A validated write body. After gw_body_parse() returns CM_OK, input holds
 * every field (defaults filled in) for GW_BODY_FULL, or the changed fields
 * with their bits in input.mask for GW_BODY_PATCH; its strings belong to
 * the gw_body. */
typedef struct gw_body {
	Catalog__ProductInput input;
	int                   status; /* 0, 400 (not JSON) or 422 (rules) */
	char                  detail[128];
	size_t                nerrs; /* with 422 */
	gw_field_err          errs[GW_BODY_ERRS_MAX];
} gw_body;

/* Parses and validates text[0..len) as a write body. Returns CM_OK, or
 * CM_EINVAL with b->status, b->detail and (422) every failing field in
 * b->errs, or CM_ENOMEM. Call gw_body_fini() in every case. */
int gw_body_parse(gw_body *b, const char *text, size_t len, gw_body_mode mode);

/* Frees the strings of b->input; b may then be parsed again. */
void gw_body_fini(gw_body *b);

/* ---- gw_json.c: JSON text ---- */

/* A growable byte buffer. After an allocation failure it stops growing and
 * remembers the failure in err; callers check once at the end. */
typedef struct gw_buf {
	char  *data;
	size_t len;
	size_t cap;
	int    err; /* CM_OK or CM_ENOMEM */
} gw_buf;

void gw_buf_init(gw_buf *b);
void gw_buf_fini(gw_buf *b);
void gw_buf_add(gw_buf *b, const void *p, size_t n);
void gw_buf_adds(gw_buf *b, const char *s);

/* Appends s as a quoted JSON string: '"', '\\' and control characters are
 * escaped, valid UTF-8 passes through, invalid bytes become \ufffd (the
 * check is cm_utf8_len()). NULL is written as "". */
void gw_json_string(gw_buf *b, const char *s);
/* Writes us as "YYYY-MM-DDTHH:MM:SSZ" into out; returns 20, or 0 (out
 * untouched) outside the years 1970 to 9999. */
size_t gw_json_time(int64_t us, char out[21]);

/* Each appends one JSON document to b and returns b->err. */
int gw_json_product(gw_buf *b, const Catalog__Product *p);
int gw_json_list(
    gw_buf *b, Catalog__Product *const *items, size_t n, int64_t next_after);
int gw_json_status(gw_buf *b, const char *status);
int gw_json_problem(
    gw_buf *b, int status, const char *detail, const char *request_id);

/* A 422 "validation-failed" problem whose "errors" member lists each
 * failing field as {"field":..., "message":...}. */
int gw_json_problem_fields(gw_buf *b, const char *detail,
    const char *request_id, const gw_field_err *errs, size_t n);

/* Problem slug ("not-found") and title ("Not Found") for an HTTP status. */
const char *gw_json_problem_slug(int status);
const char *gw_json_problem_title(int status);

/* ---- gw_discovery.c: upstream entries to endpoint URLs (evdns) ---- */

#define GW_URL_MAX 300

typedef struct gw_disc gw_disc;

/* A name lookup that tests put in place of DNS: sets *addrs to n malloc'd
 * IP address strings (freed with gw_rpc_urls_free()) for host, family
 * being AF_UNSPEC, AF_INET or AF_INET6, and returns CM_OK; or returns an
 * error, which keeps the last known addresses. */
typedef int (*gw_disc_resolve_fn)(
    void *arg, const char *host, int family, char ***addrs, size_t *n);

/* Told on the loop thread the complete, sorted URL set of entry `entry`
 * after each successful resolution (and once at start for an entry that is
 * not a name). The strings are valid during the call only. */
typedef void (*gw_disc_update_fn)(
    void *arg, size_t entry, char *const *urls, size_t n);

typedef struct gw_disc_opts {
	int         interval_s;     /* between resolutions */
	const char *dns_servers;    /* "ip[:port],...", NULL: resolv.conf */
	gw_disc_resolve_fn resolve; /* NULL: DNS */
	void              *resolve_arg;
} gw_disc_opts;

/* Returns 1 when url is tcp://, tcp4:// or tcp6:// (or one of them after
 * "tls+") with a host name (not an IP literal) and a numeric port, and
 * then fills scheme (with its "tls+"), host and port;
 * else 0 (the URL is dialed as it is). */
int gw_disc_parse(const char *url, char *scheme, size_t slen, char *host,
    size_t hlen, char *port, size_t plen);

/* Prepares discovery of entries[0..n) on base. Returns CM_OK and *out, or
 * CM_EINVAL (bad o->dns_servers) or CM_ENOMEM with a message in err. Free
 * with gw_disc_free(). */
int gw_disc_new(gw_disc **out, struct event_base *base, char *const *entries,
    size_t n, const gw_disc_opts *o, gw_disc_update_fn update, void *arg,
    char *err, size_t errlen);

/* Reports the entries that are not names at once, and schedules the first
 * resolution of the names for when the loop runs. */
void gw_disc_start(gw_disc *d);

/* Resolves every name now (a lookup still running is left to finish). */
void gw_disc_refresh(gw_disc *d);

/* Returns 1 when entry is a name to resolve. */
int gw_disc_is_name(const gw_disc *d, size_t entry);

/* Cancels lookups in progress and frees d; gw_disc_free(NULL) does
 * nothing. */
void gw_disc_free(gw_disc *d);

/* ---- gw_rpc.c, gw_upstream.c: product RPCs over NNG ---- */

typedef struct gw_rpc gw_rpc;

/* One logical request. The strings are copied; the caller keeps its own. */
typedef struct gw_rpc_req {
	Catalog__Method method;
	const char     *request_id;
	int             timeout_ms; /* deadline for all tries together */
	int64_t         id;
	int32_t         limit;
	int64_t         after;
	int32_t         if_none_match_version;
	/* Writes. input and idempotency_key are borrowed: they must stay
	 * valid until the callback has run. */
	const Catalog__ProductInput *input;
	int32_t                      if_match_version;
	const char                  *idempotency_key;
	/* W3C traceparent to send in Request.traceparent (this hop's span
	 * as parent), or NULL. Borrowed like input. */
	const char *traceparent;
} gw_rpc_req;

/* The outcome handed to a gw_rpc_cb. */
typedef struct gw_rpc_res {
	int err; /* CM_OK (resp is set), CM_ETIMEDOUT (deadline passed),
	            CM_EUNAVAIL (no replica reachable, or shutting down),
	            CM_EPROTO (a reply that does not decode) */
	const Catalog__Response *resp;     /* valid during the callback only */
	const char              *upstream; /* endpoint URL of the last try
	                                       (a resolved address), or NULL */
	int retries;                       /* tries after the first */
} gw_rpc_res;

/* Runs on the loop thread that called gw_rpc_call(), exactly once. */
typedef void (*gw_rpc_cb)(const gw_rpc_res *res, void *arg);

/* Settings of one loop's gw_rpc; gw_rpc_opts_init() fills the defaults. */
typedef struct gw_rpc_opts {
	const char *upstreams;  /* GATEWAY_UPSTREAMS (required) */
	int         loop;       /* 1-based loop number: metrics shard and
	                           logs; 0 leaves the thread's shard alone */
	int try_timeout_ms;     /* GATEWAY_TRY_TIMEOUT_MS */
	int eject_after;        /* GATEWAY_EJECT_AFTER */
	int resolve_interval_s; /* GATEWAY_RESOLVE_INTERVAL_S */
	int batch_inflight;     /* GATEWAY_BATCH_INFLIGHT */
	int batch_max;          /* GATEWAY_BATCH_MAX */
	const char
	    *dns_servers; /* GATEWAY_DNS_SERVERS; NULL or "": resolv.conf
	                   */
	/* Tests: answers name lookups instead of DNS (see gw_disc_opts). */
	gw_disc_resolve_fn resolve;
	void              *resolve_arg;
} gw_rpc_opts;

#define GW_TRY_TIMEOUT_MS_DEF   500
#define GW_EJECT_AFTER_DEF      3
#define GW_BATCH_INFLIGHT_DEF   2
#define GW_BATCH_MAX_DEF        64
#define GW_RESOLVE_INTERVAL_DEF 5

void gw_rpc_opts_init(gw_rpc_opts *o);

/* Registers the gateway_upstream_* metric families, labelled by the
 * entries of upstreams (GATEWAY_UPSTREAMS). Call once, after
 * cm_metrics_init() and before any loop runs. Without it nothing is
 * recorded. Returns CM_OK (also for a bad list, which registers nothing:
 * gw_rpc_new() reports it) or CM_ENOMEM. */
int gw_rpc_metrics_init(const char *upstreams);

/* Opens the RPC layer of the loop of base: one NNG req0 socket and dialer
 * per endpoint, an endpoint being each address that an entry of
 * o->upstreams stands for (an IP literal or inproc/ipc URL itself; a DNS
 * name every address it resolves to, resolved again every
 * o->resolve_interval_s on the loop). Dials in the background. Returns
 * CM_OK and *out, CM_EINVAL with a message in err for a bad list, URL or
 * DNS server, or CM_ENOMEM. The caller frees *out with gw_rpc_free(). */
int gw_rpc_new(gw_rpc **out, struct event_base *base, const gw_rpc_opts *o,
    char *err, size_t errlen);

/* Resolves the DNS entries now instead of at the next interval (tests). */
void gw_rpc_resolve_now(gw_rpc *rpc);

/* State of the endpoint with this URL: GW_EP_NONE when there is none. */
typedef enum gw_ep_state {
	GW_EP_NONE = 0,
	GW_EP_HEALTHY, /* connected and not ejected */
	GW_EP_EJECTED, /* an outlier, waiting for its probe */
	GW_EP_DOWN,    /* not connected */
} gw_ep_state;

gw_ep_state gw_rpc_endpoint_state(gw_rpc *rpc, const char *url);

/* Number of endpoints of rpc, and in *healthy how many are healthy. */
size_t gw_rpc_endpoint_count(gw_rpc *rpc, size_t *healthy);

/* Starts req; cb(res, arg) runs later on the loop thread. Returns CM_OK, or
 * an error without ever calling cb. */
int gw_rpc_call(gw_rpc *rpc, const gw_rpc_req *req, gw_rpc_cb cb, void *arg);

/* Fails every call still pending (their callbacks run now, with
 * CM_EUNAVAIL) and refuses new ones. Call it on the loop thread, or after
 * the loop has stopped, before freeing what the callbacks use. */
void gw_rpc_shutdown(gw_rpc *rpc);

/* Closes the sockets and frees rpc; gw_rpc_free(NULL) does nothing. */
void gw_rpc_free(gw_rpc *rpc);

/* Splits a comma-separated URL list. Returns CM_OK with *n entries in
 * (*urls)[] (free with gw_rpc_urls_free()), or CM_EINVAL for an empty
 * list or an empty entry, or CM_ENOMEM. */
int  gw_rpc_urls_parse(const char *s, char ***urls, size_t *n);
void gw_rpc_urls_free(char **urls, size_t n);

/* ---- gw_conn.c: connection guard (framing, limits, timeouts, cap) ---- */

typedef struct gw_conns gw_conns;

#define GW_HEADER_TIMEOUT_MS_DEF 10000
#define GW_BODY_TIMEOUT_MS_DEF   30000
#define GW_IDLE_TIMEOUT_S_DEF    60
#define GW_MAX_CONNECTIONS_DEF   10000

/* Settings of one loop's guard; gw_conns_opts_init() fills defaults. */
typedef struct gw_conns_opts {
	gw_guard_limits lim;
	int             header_timeout_ms; /* GATEWAY_HEADER_TIMEOUT_MS */
	int             body_timeout_ms;   /* GATEWAY_BODY_TIMEOUT_MS */
	int max_conns; /* this loop's share of GATEWAY_MAX_CONNECTIONS;
	                  0: no cap */
} gw_conns_opts;

void gw_conns_opts_init(gw_conns_opts *o);

/* Guards every connection that http (running on base) accepts from now
 * on (evhttp_set_bevcb). Returns CM_OK and *out, CM_ENOMEM, or
 * CM_EINTERNAL when no random secret could be drawn. Free with
 * gw_conns_free() before evhttp_free(http). */
int gw_conns_new(gw_conns **out, struct event_base *base, struct evhttp *http,
    const gw_conns_opts *o);

/* The listener that the cap pauses and resumes; NULL before it is
 * closed (a drain). */
void gw_conns_set_listener(gw_conns *cs, struct evconnlistener *l);

/* Connections open on this loop. */
int gw_conns_open(const gw_conns *cs);

/* Detaches the connections still open and frees cs; NULL does nothing. */
void gw_conns_free(gw_conns *cs);

/* The path of the request the guard hands evhttp in place of a refused
 * one: GW_CONN_REJECT_PREFIX, the process's secret, "/", the error. */
#define GW_CONN_REJECT_PREFIX   "/.guard/"
#define GW_CONN_SECRET_LEN      32 /* hex digits: 128 random bits */
#define GW_CONN_REJECT_PATH_MAX 64

/* Writes the reject path for e into buf. Returns CM_OK, or CM_EINTERNAL
 * before gw_conns_new() drew the secret. */
int gw_conn_reject_path(char *buf, size_t len, gw_guard_err e);

/* 1 when s[0..len) is the secret (compared in constant time), else 0. */
int gw_conn_secret_ok(const char *s, size_t len);

/* ---- gw_http.c: evhttp front end ---- */

typedef struct gw_http gw_http;

#define GW_HTTP_MAX_HEADERS  16384 /* request line and headers, bytes */
#define GW_READY_TIMEOUT_MS  500
#define GW_LISTEN_BACKLOG    1024
#define GW_HTTP_IDLE_TIMEOUT 60 /* seconds a keep-alive connection idles */

/* Serves HTTP on the listening socket fd (taking ownership of it) on base,
 * sending RPCs through rpc. Returns CM_OK and *out, or CM_ENOMEM (fd is
 * closed then too). Free with gw_http_free(). */
int gw_http_new(gw_http **out, struct event_base *base, int fd, gw_rpc *rpc,
    int timeout_ms, size_t max_body);

/* Puts the connection guard (gw_conn.c) in front of this server:
 * framing and size limits, header and body timeouts, the connection cap,
 * and idle_timeout_s for evhttp's own timeout. evhttp's header and body
 * size limits stay set, above the guard's, as a backstop. Call before the
 * loop runs. Returns CM_OK, CM_ENOMEM or CM_EINTERNAL. */
int gw_http_guard(gw_http *h, const gw_conns_opts *o, int idle_timeout_s);

/* Requests this server works on at once; past it a request gets 503 with
 * Retry-After: 1 at once (counted as rejected, reason overload). The
 * probes /healthz and /readyz are never refused. Default: unlimited. */
void gw_http_set_max_inflight(gw_http *h, int max);

/* Starts a graceful stop on the loop thread: closes the listening socket,
 * answers what is pending (with "Connection: close"), refuses requests
 * that arrive later on open connections (503, reason draining), and calls
 * idle(arg) once no request is pending - at once when none is. */
void gw_http_drain(gw_http *h, void (*idle)(void *), void *arg);

/* Frees the server, its connections and its socket. Call gw_rpc_shutdown()
 * first so that no request waits on an RPC. gw_http_free(NULL) does
 * nothing. */
void gw_http_free(gw_http *h);

/* HTTP status for a replica's Status (the table in docs/design.md). */
int gw_http_status_of(int status);

/* ---- gw_auth.c: API keys (the only file with mbedTLS) ---- */

#define GW_AUTH_DIGEST_LEN 32      /* SHA-256 */
#define GW_AUTH_KEY_MAX    512     /* bytes of a presented key */
#define GW_AUTH_KEYS_MAX   100000  /* digests in one keys file */
#define GW_AUTH_FILE_MAX   8388608 /* bytes of a keys file */
#define GW_CLIENT_MAX      64      /* client id text, NUL included */

/* An immutable set of SHA-256 digests of valid API keys. */
typedef struct gw_keyset gw_keyset;

/* Parses a keys file's text[0..len): one lowercase hex SHA-256 digest a
 * line; blank lines and lines starting with '#' are skipped, spaces and
 * tabs around a digest (and a CR before the newline) are allowed.
 * Returns CM_OK and *out (free with gw_keyset_free()), CM_EINVAL with the
 * first bad line named in err, or CM_ENOMEM. */
int gw_keyset_parse(
    const char *text, size_t len, gw_keyset **out, char *err, size_t errlen);

/* gw_keyset_parse() of the file at path (at most GW_AUTH_FILE_MAX bytes).
 * Returns what it returns, or CM_EINVAL when the file cannot be read. */
int gw_keyset_load(
    const char *path, gw_keyset **out, char *err, size_t errlen);

size_t gw_keyset_count(const gw_keyset *ks);

/* Returns 1 when digest is in ks, else 0. Compares digest with every
 * stored one, each in full, so the time taken does not depend on whether
 * or where it matches. */
int gw_keyset_match(
    const gw_keyset *ks, const uint8_t digest[GW_AUTH_DIGEST_LEN]);

void gw_keyset_free(gw_keyset *ks);

/* SHA-256 of key[0..len) into out. */
void gw_auth_digest(
    const char *key, size_t len, uint8_t out[GW_AUTH_DIGEST_LEN]);

/* Reads an Authorization value "Bearer <token>" (scheme in any case, RFC
 * 6750 token68 syntax). Returns 1 with the token in *key and *len, 0 when
 * the value is not a Bearer credential, -1 when it is one but malformed
 * (empty, bad characters, longer than GW_AUTH_KEY_MAX). */
int gw_auth_bearer(const char *value, const char **key, size_t *len);

typedef enum gw_auth_result {
	GW_AUTH_ANON = 0, /* no key, and none needed: a public read */
	GW_AUTH_KEY,      /* a valid key; client holds its id */
	GW_AUTH_MISSING,  /* a key is needed and none was sent: 401 */
	GW_AUTH_INVALID,  /* a key was sent that is not valid: 401 */
} gw_auth_result;

/* The gateway's current key set, shared by every loop and replaced as a
 * whole on reload (SIGHUP) without a lock on the request path. */
typedef struct gw_auth gw_auth;

/* Loads path (NULL or "": no keys, so every write is refused) for nslots
 * reader threads (loops), with reads protected when auth_reads is 1.
 * Returns CM_OK and *out, CM_EINVAL with the reason in err (an unreadable
 * or malformed file), or CM_ENOMEM. Free with gw_auth_free(). */
int gw_auth_new(gw_auth **out, const char *path, int auth_reads, int nslots,
    char *err, size_t errlen);

/* Reads the keys file again and, when it parses, publishes the new set;
 * the old one is freed once no loop still reads it. A bad file keeps the
 * old set. Returns CM_OK, CM_EINVAL (message in err) or CM_ENOMEM. Call
 * from one thread at a time (the main thread's signal loop). */
int gw_auth_reload(gw_auth *a, char *err, size_t errlen);

/* Keys in the current set. */
size_t gw_auth_keys(gw_auth *a);

/* Decides a request on reader slot (0 .. nslots-1, the loop): write is 1
 * for POST, PUT, PATCH and DELETE, authz the Authorization value (NULL
 * when absent) and nauthz how many Authorization headers came (more than
 * one is invalid). A valid key writes its id "k:<16 hex of its digest>"
 * (never the key) into client. Records gateway_auth_failures_total. */
gw_auth_result gw_auth_check(gw_auth *a, int slot, int write,
    const char *authz, int nauthz, char client[GW_CLIENT_MAX]);

/* gw_auth_free(NULL) does nothing. No loop may use a afterwards. */
void gw_auth_free(gw_auth *a);

/* ---- gw_ratelimit.c: token buckets in Redis, local fallback (the only
 * file with hiredis) ---- */

/* GATEWAY_RATE_LIMIT, parsed: "<n>/<s|m|h> [burst <b>]". */
typedef struct gw_rl_limit {
	double    rate;  /* tokens per second */
	long long burst; /* bucket size; default n */
} gw_rl_limit;

/* Parses s ("100/s burst 200", "600/m", "10/h burst 5"). Returns CM_OK or
 * CM_EINVAL. */
int gw_rl_parse_limit(const char *s, gw_rl_limit *out);

/* A list of CIDR blocks (GATEWAY_TRUSTED_PROXIES), IPv4 and IPv6. */
typedef struct gw_cidrs gw_cidrs;

/* Parses a comma-separated list of "addr/len" or single addresses ("" is
 * the empty list). Returns CM_OK and *out, CM_EINVAL with the bad entry
 * in err, or CM_ENOMEM. Free with gw_cidrs_free(). */
int gw_cidrs_parse(const char *s, gw_cidrs **out, char *err, size_t errlen);

/* Returns 1 when the address text ip (IPv4, IPv6, or IPv4-mapped IPv6)
 * is in one of the blocks, else 0 (also for text that is no address). */
int  gw_cidrs_match(const gw_cidrs *c, const char *ip);
void gw_cidrs_free(gw_cidrs *c);

/* Writes the id "a:<address>" of an anonymous client into out: the TCP
 * peer's address, or, when the peer is in trusted, the rightmost address
 * of X-Forwarded-For (xff: all its values joined by commas, or NULL) that
 * is not in trusted (the leftmost when all are). An entry that is no
 * address ends the walk: the hop to its right is taken. */
void gw_rl_client_addr(const gw_cidrs *trusted, const char *peer,
    const char *xff, char *out, size_t outlen);

typedef enum gw_rl_source {
	GW_RL_REDIS,
	GW_RL_LOCAL,
} gw_rl_source;

/* What the limiter decided for one request. */
typedef struct gw_rl_decision {
	int          allowed;
	long long    limit;         /* RateLimit-Limit: the burst */
	long long    remaining;     /* RateLimit-Remaining */
	int          retry_after_s; /* Retry-After when !allowed, >= 1 */
	gw_rl_source source;
} gw_rl_decision;

/* One local token bucket. */
typedef struct gw_rl_bucket {
	double  tokens;
	int64_t ts_us; /* last update; 0: never used (full) */
} gw_rl_bucket;

/* Refills b at rate tokens a second up to burst for the time since its
 * last use (now_us, any monotonic clock), then takes one token when there
 * is one. Fills *d (source GW_RL_LOCAL, limit burst). */
void gw_rl_bucket_take(gw_rl_bucket *b, double rate, double burst,
    int64_t now_us, gw_rl_decision *d);

typedef struct gw_rl gw_rl;

typedef struct gw_rl_opts {
	gw_rl_limit limit;
	const char *redis_url;  /* GATEWAY_REDIS_URL; NULL or "": local only */
	int         timeout_ms; /* GATEWAY_REDIS_TIMEOUT_MS */
	int         nloops;     /* the local buckets get 1/nloops each */
	int64_t (*now_us)(void); /* tests; NULL: cm_mono_us */
} gw_rl_opts;

/* The limiter of one loop: one hiredis async connection on base (none
 * without a Redis URL; base may then be NULL), and a table of local
 * buckets for when Redis cannot answer. Returns CM_OK and *out, CM_EINVAL
 * (bad URL, message in err) or CM_ENOMEM. */
int gw_rl_new(gw_rl **out, struct event_base *base, const gw_rl_opts *o,
    char *err, size_t errlen);

/* Runs on the loop thread with the decision for the client of arg. */
typedef void (*gw_rl_cb)(const gw_rl_decision *d, void *arg);

/* Decides for client (an id from gw_auth_check() or gw_rl_client_addr()).
 * Returns 0 with *d filled when it decided at once (Redis unavailable,
 * slow of late, or not configured: the local bucket), or 1 when the Redis
 * script was sent: cb(d, arg) then runs later on the loop thread, exactly
 * once, within GATEWAY_REDIS_TIMEOUT_MS (the local bucket decides if
 * Redis has not answered by then), or from gw_rl_free(). Never blocks. */
int gw_rl_check(
    gw_rl *rl, const char *client, gw_rl_cb cb, void *arg, gw_rl_decision *d);

/* Closes the connection; callbacks still due run first (local decisions).
 * Call on the loop thread or after the loop stopped, before what the
 * callbacks use is freed. gw_rl_free(NULL) does nothing. */
void gw_rl_free(gw_rl *rl);

/* ---- gw_http.c: authentication and rate limiting of requests ---- */

/* Makes h check every request but the probes, after routing and before
 * any other check: the key with auth (reader slot slot) and, when rl is
 * not NULL, the client's bucket, the client being the key's id or, for
 * anonymous requests, its address (X-Forwarded-For only from a peer in
 * trusted, which may be NULL). auth, rl and trusted must outlive h. */
void gw_http_set_access(
    gw_http *h, gw_auth *auth, int slot, gw_rl *rl, const gw_cidrs *trusted);

/* ---- gw_metrics.c: Prometheus families (register before threads) ---- */

/* Registers the gateway's families and process gauges. Call once after
 * cm_metrics_init() and before any loop thread starts. Returns CM_OK or
 * CM_ENOMEM. */
int gw_metrics_init(void);

/* The route template used as a label and in access logs
 * ("/products/{id}"), or "other" for GW_ROUTE_NONE. */
const char *gw_metrics_route(gw_route_id id);

/* A request arrived (in-flight + 1); and it was answered (in-flight - 1,
 * the request counter and the duration histogram). */
void gw_metrics_request_start(void);
void gw_metrics_request_end(
    gw_route_id route, unsigned method, int status, double seconds);

/* The cache outcome a replica reported; CACHE_NONE records nothing. */
void gw_metrics_cache(Catalog__CacheOutcome c);

typedef enum gw_reject {
	GW_REJECT_OVERLOAD,
	GW_REJECT_DRAINING,
} gw_reject;

void gw_metrics_rejected(gw_reject why);

/* A request refused by the connection guard, by gw_guard_err_reason()
 * (gateway_http_rejected_total{reason}). */
void gw_metrics_http_rejected(const char *reason);

/* Open client connections + delta (gateway_http_connections). */
void gw_metrics_connections(int delta);
/* gateway_auth_failures_total{reason}: GW_AUTH_MISSING or _INVALID. */
void gw_metrics_auth_failure(gw_auth_result why);

/* gateway_auth_reloads_total{result="ok|error"}, and the gateway_auth_keys
 * gauge set to keys (call both from the main thread only). */
void gw_metrics_auth_reload(int ok);
void gw_metrics_auth_keys(size_t keys);

/* gateway_ratelimit_decisions_total{result,source}. */
void gw_metrics_ratelimit(int allowed, gw_rl_source source);

/* Requests in flight over every loop (a sum of atomics: any thread). */
int64_t gw_metrics_in_flight(void);

/* ---- gw_admin.c: drain state machine (pure but for one flag) ---- */

/* SIGTERM: RUNNING -> DELAY (readyz 503, still serving) -> CLOSE
 * (listeners closed, in-flight requests finish) -> DONE, or FORCE when
 * the drain timeout passes first. SIGINT skips DELAY. Another signal
 * during DELAY ends it at once; another during CLOSE forces the stop. */
typedef enum gw_drain_phase {
	GW_DRAIN_RUNNING = 0,
	GW_DRAIN_DELAY,
	GW_DRAIN_CLOSE,
	GW_DRAIN_FORCE,
} gw_drain_phase;

typedef struct gw_drain {
	gw_drain_phase phase;
	int64_t        delay_ms;
	int64_t        timeout_ms;
	int64_t        deadline_ms; /* end of DELAY or CLOSE (monotonic) */
} gw_drain;

/* Starts in RUNNING and marks the process ready (gw_drain_unready() 0). */
void gw_drain_init(gw_drain *d, int delay_s, int timeout_s);

/* A stop signal (SIGTERM, SIGINT) at now_ms; returns the new phase. The
 * first one marks the process unready for good. */
gw_drain_phase gw_drain_signal(gw_drain *d, int sig, int64_t now_ms);

/* Time passed: DELAY or CLOSE past its deadline moves on. Returns the
 * new phase. */
gw_drain_phase gw_drain_tick(gw_drain *d, int64_t now_ms);

/* Milliseconds until the current phase's deadline (0 when past), or -1
 * when no deadline runs (RUNNING, FORCE). */
int64_t gw_drain_wait_ms(const gw_drain *d, int64_t now_ms);

/* 1 once a stop signal arrived: /readyz answers 503 on both ports and
 * replies carry Connection: close. Any thread. */
int gw_drain_unready(void);

/* ---- gw_admin.c: the admin listener (own thread and event base) ---- */

typedef struct gw_admin gw_admin;

/* Serves GET and HEAD /metrics, /healthz and /readyz on the listening
 * socket fd (taking ownership of it). /readyz borrows the loops' RPC
 * clients: rpcs[i] runs on bases[i], and a probe is handed to one of them
 * in turn. Returns CM_OK and *out, or CM_ENOMEM (fd is closed then too).
 * Free with gw_admin_free(). */
int gw_admin_new(gw_admin **out, int fd, struct event_base *const *bases,
    gw_rpc *const *rpcs, int nloops);

/* Runs the admin loop on a thread of its own. Returns CM_OK or
 * CM_EINTERNAL. */
int gw_admin_start(gw_admin *a);

/* Stops handing probes to the loops (answering 503 instead). Call before
 * the loops' bases or RPC clients are freed. */
void gw_admin_detach_loops(gw_admin *a);

/* Stops the admin loop and joins its thread, then frees everything.
 * Call after the loops' RPC clients were shut down (which answers any
 * probe still in them). gw_admin_free(NULL) does nothing. */
void gw_admin_free(gw_admin *a);

#endif /* GW_H */
