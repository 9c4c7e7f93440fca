/* test_hostile.c - a hostile client against the whole stack, over raw
 * sockets: malformed and oversized requests, smuggling attempts, bad
 * bodies, injection strings, a slow-loris and a connection flood. Each
 * gets its 4xx (problem+json) or a closed connection; afterwards the
 * gateway still serves and the products table is unchanged.
 *
 * Group setup seeds 20 products and starts one replica and a gateway with
 * a short GATEWAY_HEADER_TIMEOUT_MS; the connection-cap test starts a
 * second gateway (one loop, GATEWAY_MAX_CONNECTIONS=3) in front of the
 * same replica. Requests with a body carry Authorization: Bearer
 * $IT_API_KEY when that variable is set (writes may require a key).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cm.h"
#include "it.h"
#include "it_check.h"

#define NPRODUCTS 20
#define WAIT_MS   5000

static it_stack stack;
static int      gw;
static char    *checksum_before;

static const char *const stack_env[] = {
    "GATEWAY_HEADER_TIMEOUT_MS=1000", "GATEWAY_BODY_TIMEOUT_MS=1000", NULL};

static const char checksum_sql[] =
    "SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY id), '')) "
    "FROM products t";

static int
group_setup(void **state)
{
	int ok = 0;

	(void) state;
	if (it_seed_products(NPRODUCTS) != 0 ||
	    (checksum_before = it_pg_scalar(checksum_sql, &ok)) == NULL) {
		return -1;
	}
	if (it_stack_start(&stack, 1, NULL, stack_env) != 0) {
		return -1;
	}
	gw = stack.gw_port;
	return 0;
}

static int
group_teardown(void **state)
{
	(void) state;
	free(checksum_before);
	return it_stack_stop(&stack);
}

/* ---- raw exchanges ---------------------------------------------------- */

/* What came back on one raw connection. */
typedef struct raw_resp {
	char   data[65536];
	size_t len;
	int    closed; /* the server closed the connection */
} raw_resp;

/* Reads from fd into r (not cleared first) until r holds marker (when
 * not NULL), the server closes, end (it_now_ms() time) passes or r is
 * full; r->data stays NUL-terminated. */
static void
read_into(int fd, const char *marker, int64_t end, raw_resp *r)
{
	while ((marker == NULL || strstr(r->data, marker) == NULL) &&
	    it_now_ms() < end && r->len < sizeof(r->data) - 1) {
		struct pollfd p = {fd, POLLIN, 0};
		ssize_t       n;

		if (poll(&p, 1, (int) (end - it_now_ms())) <= 0) {
			continue;
		}
		n = recv(
		    fd, r->data + r->len, sizeof(r->data) - 1 - r->len, 0);
		if (n <= 0) {
			r->closed = 1;
			break;
		}
		r->len += (size_t) n;
		r->data[r->len] = '\0';
	}
}

/* Sends req[0..len) (unless len is 0) on fd and reads until the server
 * closes or timeout_ms pass. */
static void
raw_on(int fd, const char *req, size_t len, int timeout_ms, raw_resp *r)
{
	int64_t end = it_now_ms() + timeout_ms;
	size_t  off = 0;

	memset(r, 0, sizeof(*r));
	while (off < len) {
		ssize_t n = send(fd, req + off, len - off, MSG_NOSIGNAL);
		if (n <= 0) {
			break; /* the server may refuse before all is sent */
		}
		off += (size_t) n;
	}
	read_into(fd, NULL, end, r);
}

/* Reads from fd until r holds marker, the server closes or timeout_ms
 * pass; r is not cleared first. */
static void
read_until(int fd, const char *marker, int timeout_ms, raw_resp *r)
{
	read_into(fd, marker, it_now_ms() + timeout_ms, r);
}

/* One request of raw bytes on a new connection. */
static void
raw(const char *req, size_t len, raw_resp *r)
{
	int fd = it_http_connect(gw, 2000);

	assert_true(fd >= 0);
	raw_on(fd, req, len, WAIT_MS, r);
	close(fd);
}

/* Parses the first response in r into *out (status, headers, body by
 * Content-Length) so that it_check's helpers can judge it. */
static void
parse(const raw_resp *r, it_http_resp *out)
{
	const char *hend = strstr(r->data, "\r\n\r\n");
	const char *p, *cl;
	char       *head, *save = NULL, *line;

	memset(out, 0, sizeof(*out));
	if (strncmp(r->data, "HTTP/1.1 ", 9) != 0 || hend == NULL) {
		fail_msg("not an HTTP response (%zu bytes, closed %d): %.200s",
		    r->len, r->closed, r->data);
	}
	out->status = atoi(r->data + 9);
	head = strndup(r->data, (size_t) (hend - r->data));
	assert_non_null(head);
	line = strtok_r(head, "\r\n", &save);
	while ((line = strtok_r(NULL, "\r\n", &save)) != NULL &&
	    out->nheaders < IT_MAX_HEADERS) {
		char *colon = strchr(line, ':');
		if (colon == NULL) {
			continue;
		}
		*colon = '\0';
		for (p = colon + 1; *p == ' '; p++) { }
		out->hname[out->nheaders] = strdup(line);
		out->hval[out->nheaders] = strdup(p);
		out->nheaders++;
	}
	free(head);
	cl = it_http_header(out, "Content-Length");
	out->body_len = cl != NULL ? (size_t) atol(cl) : 0;
	p = hend + 4;
	if (out->body_len > r->len - (size_t) (p - r->data)) {
		fail_msg("short body: %.300s", r->data);
	}
	out->body = strndup(p, out->body_len);
	assert_non_null(out->body);
}

/* Expects a problem+json answer with status and slug, then the
 * connection closed by the gateway. */
static void
expect_refused(const char *req, size_t len, int status, const char *slug)
{
	raw_resp    *r = malloc(sizeof(*r));
	it_http_resp h;

	assert_non_null(r);
	raw(req, len, r);
	parse(r, &h);
	it_expect_problem(&h, status, slug);
	it_expect_header(&h, "Connection", "close");
	if (!r->closed) {
		fail_msg("connection still open after %d", status);
	}
	it_http_resp_free(&h);
	free(r);
}

static void
refused(const char *req, int status, const char *slug)
{
	expect_refused(req, strlen(req), status, slug);
}

/* Sends a request with a body through the harness, with the API key when
 * IT_API_KEY is set. extra: one more header or NULL. */
static void
send_body(it_http_resp *r, const char *method, const char *path,
    const char *ctype, const char *body, size_t len, const char *extra)
{
	const char *key = getenv("IT_API_KEY");
	char        auth[300], ct[128];
	const char *h[4];
	int         n = 0;

	snprintf(ct, sizeof(ct), "Content-Type: %s", ctype);
	h[n++] = ct;
	if (key != NULL && key[0] != '\0') {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
		h[n++] = auth;
	}
	if (extra != NULL) {
		h[n++] = extra;
	}
	h[n] = NULL;
	if (it_http(r, gw, method, path, h, body, len, IT_HTTP_TIMEOUT_MS) !=
	    0) {
		fail_msg("%s %s: no answer", method, path);
	}
}

#define HOST "Host: x\r\n"

/* ---- the request line ------------------------------------------------- */

static void
test_hostile_bad_request_lines(void **state)
{
	static const char *const bad[] = {"GET  /products/1 HTTP/1.1\r\n" HOST
	                                  "\r\n",
	    "GET /products/1\r\n" HOST "\r\n",
	    "GET /products/1 HTTP/1.1 extra\r\n" HOST "\r\n",
	    "GET /products/1 HTTP/1.1\n" HOST "\n",
	    "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03 tls hello\r\n\r\n",
	    "GET /products/<script> HTTP/1.1\r\n" HOST "\r\n",
	    "GET /products/1 HTTP/1.1\r\n\r\n" /* no Host */};
	(void) state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		refused(bad[i], 400, "bad-request");
	}
	refused("GET /products/1 HTTP/2.0\r\n" HOST "\r\n", 505,
	    "http-version-not-supported");
	refused("BREW /pot HTTP/1.1\r\n" HOST "\r\n", 501, "not-implemented");
	refused("TRACE / HTTP/1.1\r\n" HOST "\r\n", 501, "not-implemented");
}

static void
test_hostile_long_uri(void **state)
{
	size_t n = 3000;
	char  *req = malloc(n + 64);
	(void) state;
	assert_non_null(req);
	memcpy(req, "GET /products/", 14);
	memset(req + 14, '1', n);
	strcpy(req + 14 + n, " HTTP/1.1\r\n" HOST "\r\n");
	refused(req, 414, "uri-too-long");
	free(req);
}

/* ---- headers ---------------------------------------------------------- */

static void
test_hostile_oversized_header(void **state)
{
	size_t n = 9000;
	char  *req = malloc(n + 128);
	(void) state;
	assert_non_null(req);
	strcpy(req, "GET /products/1 HTTP/1.1\r\n" HOST "X-Big: ");
	memset(req + strlen(req), 'a', n);
	strcpy(req + strlen("GET /products/1 HTTP/1.1\r\n" HOST "X-Big: ") + n,
	    "\r\n\r\n");
	refused(req, 431, "header-fields-too-large");
	free(req);
}

static void
test_hostile_header_syntax(void **state)
{
	static const char nul[] =
	    "GET /products/1 HTTP/1.1\r\n" HOST "X-A: a\0b\r\n\r\n";
	(void) state;
	/* folded header */
	refused("GET /products/1 HTTP/1.1\r\n" HOST "X-A: a\r\n b\r\n\r\n",
	    400, "bad-request");
	/* whitespace before the colon, a request smuggling classic */
	refused("POST /products HTTP/1.1\r\n" HOST
	        "Content-Length : 4\r\n\r\nabcd",
	    400, "bad-request");
	expect_refused(nul, sizeof(nul) - 1, 400, "bad-request");
	refused("GET /products/1 HTTP/1.1\r\n" HOST "X-A: \x01\r\n\r\n", 400,
	    "bad-request");
	refused("POST /products HTTP/1.1\r\n" HOST "Expect: teapot\r\n"
	        "Content-Length: 2\r\n\r\n{}",
	    417, "expectation-failed");
}

/* ---- framing ---------------------------------------------------------- */

static void
test_hostile_smuggling(void **state)
{
	(void) state;
	refused("POST /products HTTP/1.1\r\n" HOST "Content-Length: 4\r\n"
	        "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	    400, "bad-request");
	refused("POST /products HTTP/1.1\r\n" HOST "Content-Length: 4\r\n"
	        "Content-Length: 40\r\n\r\nabcd",
	    400, "bad-request");
	refused("POST /products HTTP/1.1\r\n" HOST
	        "Content-Length: -1\r\n\r\n",
	    400, "bad-request");
	refused("POST /products HTTP/1.1\r\n" HOST
	        "Content-Length: 99999999999999999999999\r\n\r\n",
	    400, "bad-request");
	refused("POST /products HTTP/1.1\r\n" HOST
	        "Transfer-Encoding: gzip, chunked\r\n\r\n",
	    400, "bad-request");
	refused("POST /products HTTP/1.1\r\n" HOST
	        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"
	        "\r\n0\r\n\r\n",
	    400, "bad-request");
	refused("HEAD /products/1 HTTP/1.1\r\n" HOST
	        "Content-Length: 30\r\n\r\nGET /products/2 HTTP/1.1\r\n\r\n",
	    400, "bad-request");
}

static void
test_hostile_bad_chunk_sizes(void **state)
{
	static const char *const bad[] = {"zz\r\n", "-1\r\n", "0x10\r\n",
	    "10000000000000000\r\n", "5\r\nabcdeX\r\n", "\r\n\r\n",
	    "5\nabcde\r\n"};
	char                     req[512];
	(void) state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(req, sizeof(req),
		    "POST /products HTTP/1.1\r\n" HOST
		    "Content-Type: application/json\r\n"
		    "Transfer-Encoding: chunked\r\n\r\n%s",
		    bad[i]);
		refused(req, 400, "bad-request");
	}
	/* the sum of chunks over GATEWAY_MAX_BODY_BYTES (1 MiB) */
	refused("POST /products HTTP/1.1\r\n" HOST
	        "Transfer-Encoding: chunked\r\n\r\n100001\r\n",
	    413, "payload-too-large");
}

/* The 413 comes after the head alone: the gateway does not wait for (or
 * read) a body it will refuse. */
static void
test_hostile_huge_content_length(void **state)
{
	refused("POST /products HTTP/1.1\r\n" HOST
	        "Content-Type: application/json\r\n"
	        "Content-Length: 1000000000000\r\n\r\n",
	    413, "payload-too-large");
	refused("PUT /products/1 HTTP/1.1\r\n" HOST
	        "Content-Length: 1048577\r\n\r\n",
	    413, "payload-too-large");
	(void) state;
}

/* A chunked request held whole by the guard still gets its 100 Continue
 * before the client sends the body. */
static void
test_hostile_chunked_expect_continue(void **state)
{
	static const char head[] = "POST /products HTTP/1.1\r\n" HOST
	                           "Content-Type: application/json\r\n"
	                           "Expect: 100-continue\r\n"
	                           "Transfer-Encoding: chunked\r\n"
	                           "Connection: close\r\n\r\n";
	static const char body[] = "2\r\n{}\r\n0\r\n\r\n";
	int               fd = it_http_connect(gw, 2000);
	raw_resp         *r = malloc(sizeof(*r));
	it_http_resp      h;
	char             *final;

	(void) state;
	assert_true(fd >= 0);
	assert_non_null(r);
	memset(r, 0, sizeof(*r));
	assert_int_equal(send(fd, head, sizeof(head) - 1, MSG_NOSIGNAL),
	    (ssize_t) sizeof(head) - 1);
	read_until(fd, "\r\n\r\n", WAIT_MS, r);
	if (strncmp(r->data, "HTTP/1.1 100 Continue\r\n\r\n", 25) != 0) {
		fail_msg("no 100 Continue before the body: %.100s", r->data);
	}
	raw_on(fd, body, sizeof(body) - 1, WAIT_MS, r);
	close(fd);
	/* an empty object breaks the rules: 422, and nothing is written
	 * (401 when writes need a key: this raw request sends none) */
	final = strstr(r->data, "HTTP/1.1 4");
	if (final == NULL) {
		fail_msg("no final answer: %.200s", r->data);
	}
	memmove(r->data, final, strlen(final) + 1);
	r->len = strlen(r->data);
	parse(r, &h);
	if (h.status != 422 && h.status != 401) {
		it_print_resp(&h);
		fail_msg(
		    "status %d, want 422 (or 401 without a key)", h.status);
	}
	it_http_resp_free(&h);
	free(r);
}

/* ---- bodies (gw_body validates them) --------------------------------- */

static void
test_hostile_bad_bodies(void **state)
{
	static const char utf8[] = "{\"sku\":\"A-1\",\"name\":\"\xc3\x28\","
	                           "\"price_cents\":1}";
	static const char nul[] = "{\"sku\":\"A-1\",\"name\":\"a\\u0000b\","
	                          "\"price_cents\":1}";
	static const char raw_nul[] = "{\"sku\":\"A-1\",\"name\":\"a\0b\","
	                              "\"price_cents\":1}";
	static const char huge[] = "{\"sku\":\"A-1\",\"name\":\"n\","
	                           "\"price_cents\":"
	                           "99999999999999999999999999999999}";
	char              deep[256];
	it_http_resp      r;

	(void) state;
	send_body(&r, "POST", "/products", "application/json", utf8,
	    sizeof(utf8) - 1, NULL);
	it_expect_problem(&r, 400, "bad-request");
	it_http_resp_free(&r);

	send_body(&r, "POST", "/products", "application/json", raw_nul,
	    sizeof(raw_nul) - 1, NULL);
	it_expect_problem(&r, 400, "bad-request");
	it_http_resp_free(&r);

	memset(deep, '[', 100);
	memset(deep + 100, ']', 100);
	deep[200] = '\0';
	send_body(&r, "POST", "/products", "application/json", deep,
	    strlen(deep), NULL);
	it_expect_problem(&r, 400, "bad-request");
	it_http_resp_free(&r);

	/* well-formed JSON that breaks the rules: 422 */
	send_body(&r, "POST", "/products", "application/json", huge,
	    strlen(huge), NULL);
	it_expect_problem(&r, 422, "validation-failed");
	it_http_resp_free(&r);

	send_body(&r, "POST", "/products", "application/json", nul,
	    strlen(nul), NULL);
	if (r.status != 400 && r.status != 422) {
		it_print_resp(&r);
		fail_msg("NUL in a string: %d, want 400 or 422", r.status);
	}
	it_http_resp_free(&r);
}

/* ---- injection strings ------------------------------------------------ */

static void
test_hostile_injection_strings(void **state)
{
	static const char *const paths[] = {
	    "/products/1%27%20OR%20%271%27=%271",
	    "/products/1;DROP%20TABLE%20products", "/products/1%00",
	    "/products/-1", "/products/+1", "/products/0x1", "/products/1e3",
	    "/products/99999999999999999999"};
	static const char *const notfound[] = {"/products/../../etc/passwd",
	    "/products/%2e%2e/%2e%2e/etc/passwd", "/etc/passwd",
	    "/products/1/../../admin"};
	static const char        sqli[] =
	    "{\"sku\":\"x'; DROP TABLE products;--\",\"name\":\"n\","
	    "\"price_cents\":1}";
	it_http_resp r;

	(void) state;
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		it_must_get(&r, gw, paths[i], NULL);
		it_expect_problem(&r, 400, "bad-request");
		it_http_resp_free(&r);
	}
	for (size_t i = 0; i < sizeof(notfound) / sizeof(notfound[0]); i++) {
		it_must_get(&r, gw, notfound[i], NULL);
		it_expect_problem(&r, 404, "not-found");
		it_http_resp_free(&r);
	}
	send_body(&r, "POST", "/products", "application/json", sqli,
	    strlen(sqli), NULL);
	it_expect_problem(&r, 422, "validation-failed");
	it_http_resp_free(&r);
	send_body(&r, "PUT", "/products/1%20OR%201=1", "application/json",
	    sqli, strlen(sqli), NULL);
	it_expect_problem(&r, 400, "bad-request");
	it_http_resp_free(&r);
}

/* A CR inside X-Request-Id is refused; an encoded one is not echoed. */
static void
test_hostile_crlf_in_request_id(void **state)
{
	const char  *h[] = {"X-Request-Id: abc%0d%0aSet-Cookie:%20x=1", NULL};
	const char  *rid;
	it_http_resp r;

	(void) state;
	refused("GET /products/1 HTTP/1.1\r\n" HOST
	        "X-Request-Id: abc\rSet-Cookie: x=1\r\n\r\n",
	    400, "bad-request");
	it_must_get(&r, gw, "/products/1", h);
	it_expect_status(&r, 200);
	rid = it_http_header(&r, "X-Request-Id");
	assert_non_null(rid);
	assert_true(cm_reqid_ok(rid));
	assert_null(strstr(rid, "abc"));
	assert_null(it_http_header(&r, "Set-Cookie"));
	it_http_resp_free(&r);
}

/* ---- slow clients ----------------------------------------------------- */

/* A client trickles its head a byte at a time, fast enough to keep any
 * idle timeout quiet. Another client is served meanwhile; the trickler
 * gets 408 (GATEWAY_HEADER_TIMEOUT_MS=1000) before it finishes. */
static void
test_hostile_slowloris(void **state)
{
	static const char head[] =
	    "GET /products/1 HTTP/1.1\r\n" HOST
	    "X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
	int          fd = it_http_connect(gw, 2000);
	raw_resp    *r = malloc(sizeof(*r));
	size_t       sent = 0;
	int          served = 0;
	it_http_resp h;

	(void) state;
	assert_true(fd >= 0);
	assert_non_null(r);
	memset(r, 0, sizeof(*r));
	/* 50 ms a byte: about 6 s for the whole head */
	while (sent < sizeof(head) - 1) {
		struct pollfd p = {fd, POLLIN, 0};
		if (send(fd, head + sent, 1, MSG_NOSIGNAL) != 1) {
			break; /* closed on us */
		}
		sent++;
		if (sent == 10) {
			/* meanwhile, another client */
			it_must_get(&h, gw, "/products/2", NULL);
			it_expect_status(&h, 200);
			it_http_resp_free(&h);
			served = 1;
		}
		if (poll(&p, 1, 50) > 0) {
			break; /* the gateway answered */
		}
	}
	assert_true(served);
	raw_on(fd, NULL, 0, WAIT_MS, r);
	close(fd);
	if (sent >= sizeof(head) - 1) {
		fail_msg("the whole head was trickled in without a 408");
	}
	parse(r, &h);
	it_expect_problem(&h, 408, "request-timeout");
	assert_true(r->closed);
	it_http_resp_free(&h);
	free(r);
}

/* A client sends a head with Content-Length and then only part of the
 * body. GATEWAY_BODY_TIMEOUT_MS=1000 later it gets a 408 problem and the
 * connection is closed; the write never reaches a replica. */
static void
test_hostile_slow_body(void **state)
{
	static const char req[] = "POST /products HTTP/1.1\r\n" HOST
	                          "Content-Type: application/json\r\n"
	                          "Content-Length: 200\r\n\r\n{\"sku\":";
	int          fd = it_http_connect(gw, 2000);
	raw_resp    *r = malloc(sizeof(*r));
	int64_t      t0 = it_now_ms();
	it_http_resp h;

	(void) state;
	assert_true(fd >= 0);
	assert_non_null(r);
	raw_on(fd, req, sizeof(req) - 1, WAIT_MS, r);
	close(fd);
	assert_true(r->closed);
	/* not before the deadline: the gateway waited for the body */
	assert_true(it_now_ms() - t0 >= 900);
	parse(r, &h);
	it_expect_problem(&h, 408, "request-timeout");
	assert_non_null(it_http_header(&h, "X-Request-Id"));
	it_http_resp_free(&h);
	free(r);
}

/* ---- the connection cap ----------------------------------------------- */

static void
test_hostile_connection_limit(void **state)
{
	static const char *const env[] = {"GATEWAY_THREADS=1",
	    "GATEWAY_MAX_CONNECTIONS=3", "GATEWAY_HEADER_TIMEOUT_MS=1000",
	    NULL};
	static const char        get[] =
	    "GET /healthz HTTP/1.1\r\n" HOST "Connection: close\r\n\r\n";
	it_proc   g;
	int       port, idle[3], extra;
	raw_resp *r = malloc(sizeof(*r));

	(void) state;
	assert_non_null(r);
	assert_int_equal(it_gateway_start(&g, &port, stack.upstreams, env), 0);
	/* three silent connections fill the cap; wait until the gateway
	 * holds them (each answers a request, then stays open) */
	for (int i = 0; i < 3; i++) {
		static const char ka[] =
		    "GET /healthz HTTP/1.1\r\n" HOST "\r\n";
		idle[i] = it_http_connect(port, 2000);
		assert_true(idle[i] >= 0);
		raw_on(idle[i], ka, sizeof(ka) - 1, 300, r);
		if (strncmp(r->data, "HTTP/1.1 200", 12) != 0) {
			fail_msg(
			    "connection %d not served: %.100s", i, r->data);
		}
	}
	/* a fourth waits in the backlog: connected, but not answered */
	extra = it_http_connect(port, 2000);
	assert_true(extra >= 0);
	raw_on(extra, get, sizeof(get) - 1, 1000, r);
	if (r->len != 0) {
		fail_msg(
		    "answered past GATEWAY_MAX_CONNECTIONS: %.100s", r->data);
	}
	/* one closes: the fourth is accepted and served */
	close(idle[0]);
	raw_on(extra, NULL, 0, WAIT_MS, r);
	if (strncmp(r->data, "HTTP/1.1 200", 12) != 0) {
		fail_msg("not served after a slot freed: %.100s", r->data);
	}
	close(extra);
	close(idle[1]);
	close(idle[2]);
	it_proc_stop(&g, SIGTERM, 5000);
	assert_int_equal(it_proc_sanitizer_reports(&g), 0);
	free(r);
}

/* ---- afterwards -------------------------------------------------------- */

static void
test_hostile_still_serves_and_nothing_changed(void **state)
{
	it_http_resp r;
	char        *after;
	int          ok = 0;

	(void) state;
	it_must_get(&r, gw, "/products/1", NULL);
	it_expect_status(&r, 200);
	it_http_resp_free(&r);
	/* pipelined keep-alive requests still work through the guard */
	{
		static const char two[] =
		    "GET /products/1 HTTP/1.1\r\n" HOST
		    "\r\nGET /products/2 HTTP/1.1\r\n" HOST
		    "Connection: close\r\n\r\n";
		raw_resp   *rr = malloc(sizeof(*rr));
		const char *second;
		assert_non_null(rr);
		raw(two, sizeof(two) - 1, rr);
		second = strstr(rr->data + 1, "HTTP/1.1 200");
		if (strncmp(rr->data, "HTTP/1.1 200", 12) != 0 ||
		    second == NULL || !rr->closed) {
			fail_msg("pipelined: %.300s", rr->data);
		}
		free(rr);
	}
	after = it_pg_scalar(checksum_sql, &ok);
	assert_non_null(after);
	if (strcmp(after, checksum_before) != 0) {
		fail_msg("products changed: %s before, %s after",
		    checksum_before, after);
	}
	free(after);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hostile_bad_request_lines),
	    cmocka_unit_test(test_hostile_long_uri),
	    cmocka_unit_test(test_hostile_oversized_header),
	    cmocka_unit_test(test_hostile_header_syntax),
	    cmocka_unit_test(test_hostile_smuggling),
	    cmocka_unit_test(test_hostile_bad_chunk_sizes),
	    cmocka_unit_test(test_hostile_huge_content_length),
	    cmocka_unit_test(test_hostile_chunked_expect_continue),
	    cmocka_unit_test(test_hostile_bad_bodies),
	    cmocka_unit_test(test_hostile_injection_strings),
	    cmocka_unit_test(test_hostile_crlf_in_request_id),
	    cmocka_unit_test(test_hostile_slowloris),
	    cmocka_unit_test(test_hostile_slow_body),
	    cmocka_unit_test(test_hostile_connection_limit),
	    cmocka_unit_test(test_hostile_still_serves_and_nothing_changed),
	};
	int failed;

	signal(SIGPIPE, SIG_IGN);
	failed = cmocka_run_group_tests_name(
	    "hostile", tests, group_setup, group_teardown);
	return failed != 0 || it_stack_failures() != 0;
}
