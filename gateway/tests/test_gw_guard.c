/* test_gw_guard.c - the request-framing scanner: every rule, and the same
 * verdict however the input is cut into reads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gw_guard.h"

#define MAX_URI    64
#define MAX_HEADER 256
#define MAX_BODY   100

static const gw_guard_limits lim = {MAX_URI, MAX_HEADER, MAX_BODY};

/* What one scan of an input produced. */
typedef struct result {
	char        *trace; /* a letter per byte and the events */
	size_t       tlen;
	gw_guard_err err;
	int          nmsg;       /* requests completed */
	char         data[4096]; /* payload bytes, in order */
	size_t       dlen;
} result;

static void
put(result *r, char c)
{
	r->trace[r->tlen++] = c;
	r->trace[r->tlen] = '\0';
}

/* Scans in[0..n) delivered as reads that end at each cut (ascending,
 * within 1..n-1), and records per byte its kind (H head, D data, F
 * framing) with '<' before a request's first byte, '|' after a head, '#'
 * after a request and "!<err>" where the scanner refused. */
static void
scan(const char *in, size_t n, const size_t *cuts, size_t ncuts, result *r)
{
	gw_guard_scan s;
	size_t        start = 0;

	memset(r, 0, sizeof(*r));
	r->trace = malloc(n * 4 + 16);
	assert_non_null(r->trace);
	r->trace[0] = '\0';
	gw_guard_scan_init(&s, &lim);
	for (size_t k = 0; k <= ncuts; k++) {
		size_t end = k < ncuts ? cuts[k] : n;
		size_t off = start;

		while (off < end) {
			gw_guard_run run;
			size_t       len = gw_guard_scan_step(
			          &s, (const uint8_t *) in + off, end - off, &run);
			if (run.events & GW_GUARD_EV_START) {
				put(r, '<');
			}
			for (size_t i = 0; i < len; i++) {
				put(r,
				    run.kind == GW_GUARD_HEAD       ? 'H'
				        : run.kind == GW_GUARD_DATA ? 'D'
				                                    : 'F');
				if (run.kind == GW_GUARD_DATA &&
				    r->dlen < sizeof(r->data)) {
					r->data[r->dlen++] = in[off + i];
				}
			}
			off += len;
			if (run.events & GW_GUARD_EV_HEAD_END) {
				put(r, '|');
			}
			if (run.events & GW_GUARD_EV_MSG_END) {
				put(r, '#');
				r->nmsg++;
			}
			if (run.events & GW_GUARD_EV_ERROR) {
				r->err = s.err;
				put(r, '!');
				put(r, (char) ('A' + s.err));
				return;
			}
			assert_true(len > 0);
		}
		start = end;
	}
}

/* Scans in whole, byte by byte, and cut in two at every point (or every
 * 7th point for long inputs); every way must give the same trace. Returns
 * the whole-input result in *r (free r->trace). */
static void
scan_all_ways(const char *in, size_t n, result *r)
{
	size_t *cuts = malloc((n + 1) * sizeof(*cuts));
	result  other;

	assert_non_null(cuts);
	scan(in, n, NULL, 0, r);
	for (size_t i = 1; i < n; i++) {
		cuts[i - 1] = i;
	}
	scan(in, n, cuts, n > 0 ? n - 1 : 0, &other);
	if (strcmp(r->trace, other.trace) != 0) {
		fail_msg(
		    "byte by byte:\n%s\nwhole:\n%s", other.trace, r->trace);
	}
	free(other.trace);
	for (size_t i = 1; i<n; i += n> 600 ? 7 : 1) {
		scan(in, n, &i, 1, &other);
		if (strcmp(r->trace, other.trace) != 0) {
			fail_msg("cut at %zu:\n%s\nwhole:\n%s", i, other.trace,
			    r->trace);
		}
		free(other.trace);
	}
	free(cuts);
}

/* Expects in (a C string) to end with err after nmsg whole requests. */
static void
expect(const char *in, gw_guard_err err, int nmsg)
{
	result r;

	scan_all_ways(in, strlen(in), &r);
	if (r.err != err || r.nmsg != nmsg) {
		fail_msg("input \"%s\": err %d after %d requests, want %d "
		         "after %d\ntrace %s",
		    in, (int) r.err, r.nmsg, (int) err, nmsg, r.trace);
	}
	free(r.trace);
}

static void
expect_n(const char *in, size_t n, gw_guard_err err, int nmsg)
{
	result r;

	scan_all_ways(in, n, &r);
	if (r.err != err || r.nmsg != nmsg) {
		fail_msg("err %d after %d requests, want %d after %d\n%s",
		    (int) r.err, r.nmsg, (int) err, nmsg, r.trace);
	}
	free(r.trace);
}

#define GET(path) "GET " path " HTTP/1.1\r\nHost: x\r\n\r\n"

/* ---- well-formed traffic ---- */

static void
test_guard_get_is_one_head(void **state)
{
	result r;
	(void) state;
	scan_all_ways(GET("/products/1"), strlen(GET("/products/1")), &r);
	assert_int_equal(r.err, GW_GUARD_OK);
	assert_int_equal(r.nmsg, 1);
	/* every byte is head, and the head ends the request */
	assert_true(r.trace[0] == '<');
	assert_string_equal(r.trace + r.tlen - 2, "|#");
	assert_null(strchr(r.trace, 'D'));
	free(r.trace);
}

static void
test_guard_pipelined_requests(void **state)
{
	static const char in[] =
	    "POST /products HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"
	    "hello" GET("/a") "PUT /p HTTP/1.1\r\nHost: x\r\n"
	                      "Transfer-Encoding: chunked\r\n\r\n"
	                      "3\r\nabc\r\n0\r\n\r\n" GET("/b?x=1&y=%20");
	result r;

	(void) state;
	scan_all_ways(in, strlen(in), &r);
	assert_int_equal(r.err, GW_GUARD_OK);
	assert_int_equal(r.nmsg, 4);
	assert_int_equal(r.dlen, 8);
	assert_memory_equal(r.data, "helloabc", 8);
	free(r.trace);
}

static void
test_guard_chunked_extensions_and_trailers(void **state)
{
	static const char in[] =
	    "POST /products HTTP/1.1\r\nHost: x\r\n"
	    "Transfer-Encoding: Chunked \r\n\r\n"
	    "5;name=value\r\nhello\r\n"
	    "1 ; a=\"b c\"\r\n \r\n"
	    "A\r\n0123456789\r\n"
	    "0\r\nTrailer-One: 1\r\nTrailer-Two: x y\r\n\r\n";
	result r;

	(void) state;
	scan_all_ways(in, strlen(in), &r);
	assert_int_equal(r.err, GW_GUARD_OK);
	assert_int_equal(r.nmsg, 1);
	assert_int_equal(r.dlen, 16);
	assert_memory_equal(r.data, "hello 0123456789", 16);
	free(r.trace);
}

static void
test_guard_accepts_forms_and_versions(void **state)
{
	(void) state;
	expect("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", GW_GUARD_OK, 1);
	expect(
	    GET("http://example.com:8080/products?limit=3"), GW_GUARD_OK, 1);
	expect(GET("HTTPS://h"), GW_GUARD_OK, 1);
	expect("GET / HTTP/1.0\r\n\r\n", GW_GUARD_OK, 1);
	expect("HEAD / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
	    GW_GUARD_OK, 1);
	expect("\r\n" GET("/"), GW_GUARD_OK, 1); /* one empty line */
	expect(GET("/a;b=c/d:e@f!$&'()*+,=~-._"), GW_GUARD_OK, 1);
	expect("GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\n\r\n",
	    GW_GUARD_OK, 1);
	/* HTTP/1.0 ignores Expect, as evhttp does */
	expect("GET / HTTP/1.0\r\nExpect: foo\r\n\r\n", GW_GUARD_OK, 1);
	/* the same length twice is one length */
	expect("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
	       "Content-Length: 02 \r\n\r\nab",
	    GW_GUARD_OK, 1);
	/* values may hold spaces, tabs and obs-text inside */
	expect("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\tb \xc3\xa9\r\n\r\n",
	    GW_GUARD_OK, 1);
}

/* ---- limits ---- */

static void
test_guard_uri_limit(void **state)
{
	char in[512];
	char path[MAX_URI + 2];

	(void) state;
	memset(path, 'a', sizeof(path));
	path[0] = '/';
	path[MAX_URI] = '\0';
	snprintf(in, sizeof(in), GET("%s"), path);
	expect(in, GW_GUARD_OK, 1);
	path[MAX_URI] = 'a';
	path[MAX_URI + 1] = '\0';
	snprintf(in, sizeof(in), GET("%s"), path);
	expect(in, GW_GUARD_URI_TOO_LONG, 0);
}

static void
test_guard_header_limit(void **state)
{
	char   in[1024];
	size_t fixed = strlen("Host: x\r\nX: \r\n\r\n");
	char   val[MAX_HEADER];

	(void) state;
	memset(val, 'v', sizeof(val));
	val[MAX_HEADER - fixed] = '\0';
	snprintf(
	    in, sizeof(in), "GET / HTTP/1.1\r\nHost: x\r\nX: %s\r\n\r\n", val);
	expect(in, GW_GUARD_OK, 1);
	val[MAX_HEADER - fixed] = 'v';
	val[MAX_HEADER - fixed + 1] = '\0';
	snprintf(
	    in, sizeof(in), "GET / HTTP/1.1\r\nHost: x\r\nX: %s\r\n\r\n", val);
	expect(in, GW_GUARD_HEAD_TOO_LARGE, 0);
	/* many small lines count too */
	in[0] = '\0';
	strcat(in, "GET / HTTP/1.1\r\nHost: x\r\n");
	for (int i = 0; i < 60; i++) {
		strcat(in, "A: b\r\n");
	}
	strcat(in, "\r\n");
	expect(in, GW_GUARD_HEAD_TOO_LARGE, 0);
}

static void
test_guard_body_limit(void **state)
{
	char in[512];
	char body[MAX_BODY + 2];

	(void) state;
	memset(body, 'b', sizeof(body));
	body[MAX_BODY] = '\0';
	snprintf(in, sizeof(in),
	    "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s",
	    MAX_BODY, body);
	expect(in, GW_GUARD_OK, 1);
	/* refused at the end of the head: no body byte is scanned */
	expect("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n",
	    GW_GUARD_BODY_TOO_LARGE, 0);
	expect("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: "
	       "9223372036854775807\r\n\r\n",
	    GW_GUARD_BODY_TOO_LARGE, 0);
	/* chunks: the sum counts, checked at each size line */
	expect("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
	       "\r\n40\r\n",
	    GW_GUARD_OK, 0);
	{
		char big[512];
		snprintf(big, sizeof(big),
		    "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
		    "chunked\r\n\r\n40\r\n%.64s\r\n25\r\n",
		    body);
		expect(big, GW_GUARD_BODY_TOO_LARGE, 0);
	}
	expect("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
	       "\r\nffffffffffffffff\r\n",
	    GW_GUARD_BODY_TOO_LARGE, 0);
}

static void
test_guard_trailer_limit(void **state)
{
	char in[1024];
	char val[MAX_HEADER + 1];

	(void) state;
	memset(val, 't', sizeof(val));
	val[MAX_HEADER] = '\0';
	snprintf(in, sizeof(in),
	    "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "0\r\nT: %s\r\n\r\n",
	    val);
	expect(in, GW_GUARD_TRAILER_TOO_LARGE, 0);
}

/* ---- request line ---- */

static void
test_guard_bad_request_lines(void **state)
{
	static const char *const bad[] = {"GET  / HTTP/1.1\r\n",
	    "GET / HTTP/1.1 \r\n", "GET / http/1.1\r\n", " GET / HTTP/1.1\r\n",
	    "GET\t/ HTTP/1.1\r\n", "GET / HTTP/1.1\n", "GET / HTTP/1.1\rX",
	    "\nGET / HTTP/1.1\r\n", "\r\n\r\nGET / HTTP/1.1\r\n",
	    "\r\rGET / HTTP/1.1\r\n", "GET /\r\n", "GET / HTTP/1.10\r\n",
	    "GET / HTTP/1.1x\r\n", "GET / HTTP/x.1\r\n", "G(T / HTTP/1.1\r\n",
	    "GET\r\n", "GET /a\nb HTTP/1.1\r\n", "\x16\x03\x01\x02\x00"};
	(void) state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		expect(bad[i], GW_GUARD_BAD_LINE, 0);
	}
}

static void
test_guard_bad_targets(void **state)
{
	static const char *const bad[] = {"//x", "x", "/a\"b", "/%zz", "/%2",
	    "/a#b", "/\x7f", "/\xc3\xa9", "*", "/a<b>", "/a\\b", "/{x}",
	    "/a|b", "/a^b", "/a`b", "ftp://h/", "http://u@h/",
	    "http://h:99999/", "http://h:123456/", "http://:80/", "http:/h/",
	    "http//h/", "httpss://h/", "http://[::1]/", "/a\x01"};
	char                     in[256];
	(void) state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(in, sizeof(in), GET("%s"), bad[i]);
		expect(in, GW_GUARD_BAD_TARGET, 0);
	}
}

static void
test_guard_methods(void **state)
{
	static const char *const ok[] = {
	    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
	static const char *const unknown[] = {
	    "FOO", "TRACE", "CONNECT", "get", "PROPFIND", "ABCDEFGHIJKLMNOPQ"};
	char in[256];

	(void) state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		snprintf(
		    in, sizeof(in), "%s / HTTP/1.1\r\nHost: x\r\n\r\n", ok[i]);
		expect(in, GW_GUARD_OK, 1);
	}
	for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
		snprintf(in, sizeof(in), "%s / HTTP/1.1\r\nHost: x\r\n\r\n",
		    unknown[i]);
		expect(in, GW_GUARD_METHOD, 0);
	}
}

static void
test_guard_versions(void **state)
{
	(void) state;
	expect("GET / HTTP/2.0\r\n", GW_GUARD_VERSION, 0);
	expect("GET / HTTP/1.2\r\n", GW_GUARD_VERSION, 0);
	expect("GET / HTTP/0.9\r\n", GW_GUARD_VERSION, 0);
	expect("GET / HTTP/3.0\r\n", GW_GUARD_VERSION, 0);
}

/* ---- header lines ---- */

static void
test_guard_bad_field_lines(void **state)
{
	static const char *const bad[] = {"Host : x\r\n", ": x\r\n",
	    "Ho st: x\r\n", "X:\tv\r\n", "X: a\rb\r\n", "X: a\nY: b\r\n",
	    "X\r\n", "X y: z\r\n", "X: v\r\r\n", "(X): v\r\n", "\xc3: v\r\n"};
	char                     in[256];
	(void) state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(in, sizeof(in), "GET / HTTP/1.1\r\nHost: x\r\n%s\r\n",
		    bad[i]);
		expect(in, GW_GUARD_BAD_FIELD, 0);
	}
	expect("GET / HTTP/1.1\r\nHost: x\r\n\r\r\n", GW_GUARD_BAD_FIELD, 0);
}

static void
test_guard_control_bytes(void **state)
{
	static const char in1[] =
	    "GET / HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n";
	static const char in2[] =
	    "GET / HTTP/1.1\r\nHost: x\r\n\0X: a\r\n\r\n";
	(void) state;
	expect_n(in1, sizeof(in1) - 1, GW_GUARD_CTL, 0);
	expect_n(in2, sizeof(in2) - 1, GW_GUARD_CTL, 0);
	expect(
	    "GET / HTTP/1.1\r\nHost: x\r\nX: \x01\r\n\r\n", GW_GUARD_CTL, 0);
	expect(
	    "GET / HTTP/1.1\r\nHost: x\r\nX: a\x7f\r\n\r\n", GW_GUARD_CTL, 0);
	expect(
	    "GET / HTTP/1.1\r\nHost: x\r\nX\x1b: a\r\n\r\n", GW_GUARD_CTL, 0);
}

static void
test_guard_obs_fold(void **state)
{
	(void) state;
	expect("GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",
	    GW_GUARD_OBS_FOLD, 0);
	expect("GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n\tb\r\n\r\n",
	    GW_GUARD_OBS_FOLD, 0);
	/* whitespace before the first field line */
	expect("GET / HTTP/1.1\r\n Host: x\r\n\r\n", GW_GUARD_OBS_FOLD, 0);
}

static void
test_guard_host(void **state)
{
	(void) state;
	expect("GET / HTTP/1.1\r\n\r\n", GW_GUARD_HOST, 0);
	expect(
	    "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", GW_GUARD_HOST, 0);
	expect(
	    "GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", GW_GUARD_HOST, 0);
}

/* ---- framing ---- */

static void
test_guard_content_length(void **state)
{
	static const char *const bad[] = {"abc", "+5", "-5", "5 5", "", "5,5",
	    "5, 5", "0x5", "5a", "00000000000000000001", "9999999999999999999",
	    "99999999999999999999999999"};
	char                     in[256];
	(void) state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(in, sizeof(in),
		    "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %s\r\n\r\n",
		    bad[i]);
		expect(in, GW_GUARD_BAD_CL, 0);
	}
	expect("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
	       "Content-Length: 6\r\n\r\n",
	    GW_GUARD_CL_MISMATCH, 0);
	expect("POST / HTTP/1.1\r\nHost: x\r\nContent-length: 3  \r\n\r\nabc",
	    GW_GUARD_OK, 1);
}

static void
test_guard_transfer_encoding(void **state)
{
	static const char te[] =
	    "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: %s\r\n\r\n";
	static const char *const bad[] = {"gzip", "chunked, chunked",
	    "gzip, chunked", "chunkedx", "chunk", ""};
	char                     in[256];

	(void) state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(in, sizeof(in), te, bad[i]);
		expect(in, GW_GUARD_BAD_TE, 0);
	}
	expect("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
	       "Transfer-Encoding: chunked\r\n\r\n",
	    GW_GUARD_BAD_TE, 0);
	expect("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
	    GW_GUARD_BAD_TE, 0);
	expect("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
	       "Transfer-Encoding: chunked\r\n\r\n",
	    GW_GUARD_CL_TE, 0);
	expect("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
	       "Content-Length: 5\r\n\r\n",
	    GW_GUARD_CL_TE, 0);
}

static void
test_guard_head_with_body(void **state)
{
	(void) state;
	expect("HEAD / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n",
	    GW_GUARD_HEAD_BODY, 0);
	expect("HEAD / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
	       "\r\n",
	    GW_GUARD_HEAD_BODY, 0);
}

static void
test_guard_bad_chunks(void **state)
{
	static const char *const bad[] = {"x\r\n", "\r\n", "5\n", "5;\x01\r\n",
	    "5\r\nhello\n", "5\r\nhelloX", "5\r\nhello\rX",
	    "10000000000000000\r\n", "-5\r\n", "0x5\r\n", "5 x\r\n", " 5\r\n",
	    "5\r\r\n"};
	static const char        head[] = "POST / HTTP/1.1\r\nHost: x\r\n"
	                                  "Transfer-Encoding: chunked\r\n\r\n";
	char                     in[512];
	char                     ext[300];

	(void) state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(in, sizeof(in), "%s%s", head, bad[i]);
		expect(in, GW_GUARD_BAD_CHUNK, 0);
	}
	/* a chunk-size line longer than GW_GUARD_CHUNK_LINE_MAX */
	memset(ext, 'e', sizeof(ext));
	ext[sizeof(ext) - 1] = '\0';
	snprintf(in, sizeof(in), "%s1;%s\r\n", head, ext);
	expect(in, GW_GUARD_BAD_CHUNK, 0);
	/* a bad trailer line is a bad field line */
	snprintf(in, sizeof(in), "%s0\r\nT : 1\r\n\r\n", head);
	expect(in, GW_GUARD_BAD_FIELD, 0);
}

static void
test_guard_expect(void **state)
{
	(void) state;
	expect("POST / HTTP/1.1\r\nHost: x\r\nExpect: foo\r\n\r\n",
	    GW_GUARD_EXPECT, 0);
	expect("POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue, foo\r\n"
	       "\r\n",
	    GW_GUARD_EXPECT, 0);
}

/* ---- after an error, and the tables ---- */

static void
test_guard_error_is_sticky(void **state)
{
	gw_guard_scan     s;
	gw_guard_run      run;
	static const char bad[] = "GET / HTTP/9.9\r\n";

	(void) state;
	gw_guard_scan_init(&s, &lim);
	gw_guard_scan_step(&s, (const uint8_t *) bad, strlen(bad), &run);
	assert_true(run.events & GW_GUARD_EV_ERROR);
	assert_int_equal(s.err, GW_GUARD_VERSION);
	/* what follows is never scanned again */
	assert_int_equal(gw_guard_scan_step(&s, (const uint8_t *) GET("/"),
	                     strlen(GET("/")), &run),
	    0);
	assert_true(run.events & GW_GUARD_EV_ERROR);
	assert_false(gw_guard_scan_in_head(&s));
}

static void
test_guard_expect_continue_flag(void **state)
{
	gw_guard_scan     s;
	gw_guard_run      run;
	static const char h11[] = "POST / HTTP/1.1\r\nHost: x\r\n"
	                          "Expect: 100-continue\r\n"
	                          "Transfer-Encoding: chunked\r\n\r\n";
	static const char h10[] = "POST / HTTP/1.0\r\n"
	                          "Expect: 100-continue\r\n"
	                          "Content-Length: 1\r\n\r\n";

	(void) state;
	gw_guard_scan_init(&s, &lim);
	gw_guard_scan_step(&s, (const uint8_t *) h11, strlen(h11), &run);
	assert_true(run.events & GW_GUARD_EV_HEAD_END);
	assert_true(s.chunked);
	assert_true(s.expect_continue);
	gw_guard_scan_init(&s, &lim);
	gw_guard_scan_step(&s, (const uint8_t *) h10, strlen(h10), &run);
	assert_true(run.events & GW_GUARD_EV_HEAD_END);
	assert_false(s.expect_continue);
}

static void
test_guard_in_head_follows_requests(void **state)
{
	gw_guard_scan     s;
	gw_guard_run      run;
	static const char part[] = "GET / HTTP/1.1\r\nHo";
	static const char rest[] = "st: x\r\n\r\n";

	(void) state;
	gw_guard_scan_init(&s, &lim);
	assert_false(gw_guard_scan_in_head(&s));
	gw_guard_scan_step(&s, (const uint8_t *) part, strlen(part), &run);
	assert_true(run.events & GW_GUARD_EV_START);
	assert_true(gw_guard_scan_in_head(&s));
	gw_guard_scan_step(&s, (const uint8_t *) rest, strlen(rest), &run);
	assert_int_equal(
	    run.events, GW_GUARD_EV_HEAD_END | GW_GUARD_EV_MSG_END);
	assert_false(gw_guard_scan_in_head(&s));
}

static void
test_guard_err_tables(void **state)
{
	static const int want[GW_GUARD_NERR] = {
	    [GW_GUARD_URI_TOO_LONG] = 414,
	    [GW_GUARD_HEAD_TOO_LARGE] = 431,
	    [GW_GUARD_TRAILER_TOO_LARGE] = 431,
	    [GW_GUARD_BODY_TOO_LARGE] = 413,
	    [GW_GUARD_BAD_LINE] = 400,
	    [GW_GUARD_BAD_TARGET] = 400,
	    [GW_GUARD_METHOD] = 501,
	    [GW_GUARD_VERSION] = 505,
	    [GW_GUARD_BAD_FIELD] = 400,
	    [GW_GUARD_CTL] = 400,
	    [GW_GUARD_OBS_FOLD] = 400,
	    [GW_GUARD_HOST] = 400,
	    [GW_GUARD_BAD_CL] = 400,
	    [GW_GUARD_CL_MISMATCH] = 400,
	    [GW_GUARD_CL_TE] = 400,
	    [GW_GUARD_BAD_TE] = 400,
	    [GW_GUARD_HEAD_BODY] = 400,
	    [GW_GUARD_BAD_CHUNK] = 400,
	    [GW_GUARD_EXPECT] = 417,
	    [GW_GUARD_HEADER_TIMEOUT] = 408,
	    [GW_GUARD_BODY_TIMEOUT] = 408,
	};
	(void) state;
	for (int e = 1; e < GW_GUARD_NERR; e++) {
		assert_int_equal(
		    gw_guard_err_status((gw_guard_err) e), want[e]);
		assert_true(
		    strlen(gw_guard_err_detail((gw_guard_err) e)) > 10);
		assert_non_null(gw_guard_err_reason((gw_guard_err) e));
	}
	assert_string_equal(
	    gw_guard_err_reason(GW_GUARD_BAD_CL), "bad_framing");
	assert_string_equal(
	    gw_guard_err_reason(GW_GUARD_URI_TOO_LONG), "uri_too_long");
	assert_int_equal(gw_guard_err_status(GW_GUARD_NERR), 400);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_guard_get_is_one_head),
	    cmocka_unit_test(test_guard_pipelined_requests),
	    cmocka_unit_test(test_guard_chunked_extensions_and_trailers),
	    cmocka_unit_test(test_guard_accepts_forms_and_versions),
	    cmocka_unit_test(test_guard_uri_limit),
	    cmocka_unit_test(test_guard_header_limit),
	    cmocka_unit_test(test_guard_body_limit),
	    cmocka_unit_test(test_guard_trailer_limit),
	    cmocka_unit_test(test_guard_bad_request_lines),
	    cmocka_unit_test(test_guard_bad_targets),
	    cmocka_unit_test(test_guard_methods),
	    cmocka_unit_test(test_guard_versions),
	    cmocka_unit_test(test_guard_bad_field_lines),
	    cmocka_unit_test(test_guard_control_bytes),
	    cmocka_unit_test(test_guard_obs_fold),
	    cmocka_unit_test(test_guard_host),
	    cmocka_unit_test(test_guard_content_length),
	    cmocka_unit_test(test_guard_transfer_encoding),
	    cmocka_unit_test(test_guard_head_with_body),
	    cmocka_unit_test(test_guard_bad_chunks),
	    cmocka_unit_test(test_guard_expect),
	    cmocka_unit_test(test_guard_error_is_sticky),
	    cmocka_unit_test(test_guard_expect_continue_flag),
	    cmocka_unit_test(test_guard_in_head_follows_requests),
	    cmocka_unit_test(test_guard_err_tables),
	};
	return cmocka_run_group_tests_name("gw_guard", tests, NULL, NULL);
}
