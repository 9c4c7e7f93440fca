/* gw_guard.c - an incremental HTTP/1.1 request-framing scanner (pure).
 *
 * The gateway's connections pass every byte a client sends through this
 * scanner (gw_conn.c) before evhttp sees it. It follows request
 * boundaries across keep-alive and pipelined requests and refuses, with
 * the status RFC 9110/9112 give, what is too large or framed in a way that
 * two parsers could read differently (request smuggling): several or
 * malformed Content-Length values, Content-Length with Transfer-Encoding,
 * codings other than chunked, obs-fold, bare CR or LF, control bytes.
 *
 * It is deliberately at least as strict as libevent 2.1's own parser on
 * everything that parser would refuse, so that evhttp never answers a
 * client itself (with text/html): evhttp only ever sees requests this
 * scanner accepted. Where the two would read a request differently, the
 * request is refused: a field value starting with HTAB (evhttp skips only
 * spaces), HEAD with a body (evhttp reads none), a method outside the set
 * gw_http.c allows, a request-target evhttp_uri_parse() could refuse.
 *
 * Nothing here allocates or knows libevent; the fuzz target drives it
 * directly (fuzz/fuzz_http_guard.c).
 */
#include <string.h>

#include "gw_guard.h"

enum {
	S_START,    /* before a request line (an empty line may come first) */
	S_START_LF, /* CR of an empty line before the request line */
	S_METHOD,
	S_TARGET0, /* first byte of the request-target */
	S_ORIGIN1, /* after the leading '/' */
	S_PATH,
	S_PCT1,
	S_PCT2,
	S_ASTERISK,
	S_SCHEME, /* absolute-form: scheme */
	S_SLASH1,
	S_SLASH2,
	S_HOST,
	S_PORT,
	S_VERSION,
	S_RL_LF,  /* CR ending the request line seen */
	S_LINE,   /* start of a field line (header or trailer) */
	S_END_LF, /* CR of the empty line ending the section */
	S_NAME,
	S_OWS, /* after the colon */
	S_VALUE,
	S_VAL_LF, /* CR ending a field line seen */
	S_BODY,   /* Content-Length payload */
	S_CSIZE,  /* chunk size digits */
	S_CBWS,   /* whitespace after the size */
	S_CEXT,   /* chunk extension */
	S_CSIZE_LF,
	S_CDATA,
	S_CDATA_CR,
	S_CDATA_LF,
	S_FAILED,
};

/* Fields whose values matter to framing. */
enum { F_OTHER, F_CL, F_TE, F_EXPECT, F_HOST };

/* Bits of gw_guard_scan.fields. */
#define SEEN_CL         1u
#define SEEN_TE         2u
#define SEEN_TE_BAD     4u
#define SEEN_EXPECT_BAD 8u
#define SEEN_EXPECT_OK  16u

/* Value parsing states (vstate). */
enum { V_MAIN, V_TRAIL_WS, V_BAD };

static const struct {
	int         status;
	const char *reason;
	const char *detail;
} errs[GW_GUARD_NERR] = {
    [GW_GUARD_OK] = {200, "none", "accepted"},
    [GW_GUARD_URI_TOO_LONG] = {414, "uri_too_long",
        "the request-target is longer than GATEWAY_MAX_URI_BYTES"},
    [GW_GUARD_HEAD_TOO_LARGE] = {431, "headers_too_large",
        "the header section is larger than GATEWAY_MAX_HEADER_BYTES"},
    [GW_GUARD_TRAILER_TOO_LARGE] = {431, "headers_too_large",
        "the trailer section is larger than GATEWAY_MAX_HEADER_BYTES"},
    [GW_GUARD_BODY_TOO_LARGE] = {413, "body_too_large",
        "the request body is larger than GATEWAY_MAX_BODY_BYTES"},
    [GW_GUARD_BAD_LINE] = {400, "bad_request",
        "the request line must be: method SP request-target SP "
        "HTTP-version CRLF"},
    [GW_GUARD_BAD_TARGET] = {400, "bad_request",
        "the request-target must be an origin-form path (or absolute "
        "http URI) of RFC 3986 characters"},
    [GW_GUARD_METHOD] = {501, "method",
        "the method is not one the gateway implements"},
    [GW_GUARD_VERSION] = {505, "version",
        "only HTTP/1.1 and HTTP/1.0 are supported"},
    [GW_GUARD_BAD_FIELD] = {400, "bad_request",
        "a header line is malformed (want name \":\" value CRLF, no "
        "whitespace before the colon, lines ending in CRLF)"},
    [GW_GUARD_CTL] = {400, "bad_request",
        "the request head contains a NUL or control byte"},
    [GW_GUARD_OBS_FOLD] = {400, "bad_framing",
        "folded header lines (obs-fold) are not accepted"},
    [GW_GUARD_HOST] = {400, "bad_request",
        "an HTTP/1.1 request needs exactly one Host header"},
    [GW_GUARD_BAD_CL] = {400, "bad_framing",
        "Content-Length must be one decimal number of at most 19 digits"},
    [GW_GUARD_CL_MISMATCH] = {400, "bad_framing",
        "Content-Length headers with different values"},
    [GW_GUARD_CL_TE] = {400, "bad_framing",
        "Content-Length and Transfer-Encoding cannot be sent together"},
    [GW_GUARD_BAD_TE] = {400, "bad_framing",
        "Transfer-Encoding must be one \"chunked\" (HTTP/1.1 only)"},
    [GW_GUARD_HEAD_BODY] = {400, "bad_framing",
        "a HEAD request cannot have a body"},
    [GW_GUARD_BAD_CHUNK] = {400, "bad_framing",
        "malformed chunked body (chunk size, CRLF or extension)"},
    [GW_GUARD_EXPECT] = {417, "expectation",
        "the only expectation supported is 100-continue"},
    [GW_GUARD_HEADER_TIMEOUT] = {408, "header_timeout",
        "the request head did not arrive within GATEWAY_HEADER_TIMEOUT_MS"},
    [GW_GUARD_BODY_TIMEOUT] = {408, "body_timeout",
        "the request body did not arrive within GATEWAY_BODY_TIMEOUT_MS"},
};

int
gw_guard_err_status(gw_guard_err e)
{
	return e > GW_GUARD_OK && e < GW_GUARD_NERR ? errs[e].status : 400;
}

const char *
gw_guard_err_reason(gw_guard_err e)
{
	return e > GW_GUARD_OK && e < GW_GUARD_NERR ? errs[e].reason
	                                            : "bad_request";
}

const char *
gw_guard_err_detail(gw_guard_err e)
{
	return e > GW_GUARD_OK && e < GW_GUARD_NERR ? errs[e].detail
	                                            : "bad request";
}

/* ---- character classes ---- */

static int
is_tchar(uint8_t c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	    (c >= 'A' && c <= 'Z') ||
	    (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int
is_hex(uint8_t c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
	    (c >= 'A' && c <= 'F');
}

static int
hex_val(uint8_t c)
{
	if (c <= '9') {
		return c - '0';
	}
	return (c | 0x20) - 'a' + 10;
}

/* pchar of RFC 3986 other than pct-encoded, plus '/' and '?' */
static int
is_uri_char(uint8_t c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	    (c >= 'A' && c <= 'Z') ||
	    (c != '\0' && strchr("-._~!$&'()*+,;=:@/?", c) != NULL);
}

static int
is_ctl(uint8_t c)
{
	return (c < 0x20 && c != '\t') || c == 0x7f;
}

static int
is_ws(uint8_t c)
{
	return c == ' ' || c == '\t';
}

static uint8_t
lower(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') ? (uint8_t) (c | 0x20) : c;
}

/* ---- scanner ---- */

void
gw_guard_scan_init(gw_guard_scan *s, const gw_guard_limits *lim)
{
	memset(s, 0, sizeof(*s));
	s->lim = *lim;
	s->st = S_START;
}

int
gw_guard_scan_in_head(const gw_guard_scan *s)
{
	return s->started && !s->in_body && s->st != S_FAILED;
}

/* Forgets the request that ended; the next byte starts another. */
static void
msg_reset(gw_guard_scan *s)
{
	gw_guard_limits lim = s->lim;
	gw_guard_scan_init(s, &lim);
}

static unsigned
fail(gw_guard_scan *s, gw_guard_err e)
{
	s->err = e;
	s->st = S_FAILED;
	return GW_GUARD_EV_ERROR;
}

static unsigned
method_of(const char *m)
{
	static const struct {
		const char *name;
		unsigned    bit;
	} ms[] = {{"GET", GW_GUARD_M_GET}, {"HEAD", GW_GUARD_M_HEAD},
	    {"POST", GW_GUARD_M_POST}, {"PUT", GW_GUARD_M_PUT},
	    {"PATCH", GW_GUARD_M_PATCH}, {"DELETE", GW_GUARD_M_DELETE},
	    {"OPTIONS", GW_GUARD_M_OPTIONS}};

	for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++) {
		if (strcmp(m, ms[i].name) == 0) {
			return ms[i].bit;
		}
	}
	return 0;
}

/* The colon ended a field name: decide which field it is. Trailers are
 * never interpreted (the guard drops them). */
static void
field_start(gw_guard_scan *s)
{
	s->field = F_OTHER;
	if (!s->in_body && s->nlen < sizeof(s->name)) {
		s->name[s->nlen] = '\0';
		if (strcmp(s->name, "content-length") == 0) {
			s->field = F_CL;
		} else if (strcmp(s->name, "transfer-encoding") == 0) {
			s->field = F_TE;
		} else if (strcmp(s->name, "expect") == 0) {
			s->field = F_EXPECT;
		} else if (strcmp(s->name, "host") == 0) {
			s->field = F_HOST;
		}
	}
	s->vstate = V_MAIN;
	s->vmatch = 0;
	s->num = 0;
	s->ndigits = 0;
}

/* Compares a value case-insensitively with want, byte by byte. */
static void
value_match(gw_guard_scan *s, uint8_t c, const char *want)
{
	size_t len = strlen(want);

	if (s->vstate == V_MAIN && s->vmatch < len &&
	    lower(c) == (uint8_t) want[s->vmatch]) {
		s->vmatch++;
	} else if (s->vstate != V_BAD && s->vmatch == len && is_ws(c)) {
		s->vstate = V_TRAIL_WS;
	} else {
		s->vstate = V_BAD;
	}
}

/* One byte of a field value (never CR, LF or a control byte). */
static void
value_byte(gw_guard_scan *s, uint8_t c)
{
	switch (s->field) {
	case F_CL:
		if (s->vstate == V_MAIN && c >= '0' && c <= '9') {
			if (s->ndigits >= 19) {
				s->vstate = V_BAD;
				break;
			}
			s->num = s->num * 10 + (uint64_t) (c - '0');
			s->ndigits++;
		} else if (s->vstate != V_BAD && s->ndigits > 0 && is_ws(c)) {
			s->vstate = V_TRAIL_WS;
		} else {
			s->vstate = V_BAD;
		}
		break;
	case F_TE:
		value_match(s, c, "chunked");
		break;
	case F_EXPECT:
		value_match(s, c, "100-continue");
		break;
	default:
		break;
	}
}

/* A field line ended (its CRLF was read). */
static unsigned
field_end(gw_guard_scan *s)
{
	switch (s->field) {
	case F_CL:
		if (s->vstate == V_BAD || s->ndigits == 0 ||
		    s->num > (uint64_t) INT64_MAX) {
			return fail(s, GW_GUARD_BAD_CL);
		}
		if ((s->fields & SEEN_CL) && s->clen != s->num) {
			return fail(s, GW_GUARD_CL_MISMATCH);
		}
		s->clen = s->num;
		s->fields |= SEEN_CL;
		break;
	case F_TE:
		s->te_count++;
		s->fields |= SEEN_TE;
		if (s->vstate == V_BAD || s->vmatch != strlen("chunked")) {
			s->fields |= SEEN_TE_BAD;
		}
		break;
	case F_EXPECT:
		if (s->vstate == V_BAD ||
		    s->vmatch != strlen("100-continue")) {
			s->fields |= SEEN_EXPECT_BAD;
		} else {
			s->fields |= SEEN_EXPECT_OK;
		}
		break;
	case F_HOST:
		s->hosts++;
		break;
	default:
		break;
	}
	return 0;
}

/* The empty line ending the header section was read: check the framing
 * as a whole and set up the body. */
static unsigned
head_end(gw_guard_scan *s)
{
	if (s->http10 ? s->hosts > 1 : s->hosts != 1) {
		return fail(s, GW_GUARD_HOST);
	}
	if (s->fields & SEEN_TE) {
		/* RFC 9112 6.1: T-E in HTTP/1.0 is faulty framing. */
		if (s->http10) {
			return fail(s, GW_GUARD_BAD_TE);
		}
		if (s->fields & SEEN_CL) {
			return fail(s, GW_GUARD_CL_TE);
		}
		if ((s->fields & SEEN_TE_BAD) || s->te_count > 1) {
			return fail(s, GW_GUARD_BAD_TE);
		}
	}
	/* evhttp ignores Expect in HTTP/1.0 */
	if ((s->fields & SEEN_EXPECT_BAD) && !s->http10) {
		return fail(s, GW_GUARD_EXPECT);
	}
	/* evhttp reads no body after HEAD: the body would be read as the
	 * next request. */
	if (s->method == GW_GUARD_M_HEAD &&
	    ((s->fields & SEEN_TE) || s->clen > 0)) {
		return fail(s, GW_GUARD_HEAD_BODY);
	}
	if (s->clen > s->lim.max_body) {
		return fail(s, GW_GUARD_BODY_TOO_LARGE);
	}
	s->expect_continue = !s->http10 && (s->fields & SEEN_EXPECT_OK);
	if (s->fields & SEEN_TE) {
		s->chunked = 1;
		s->in_body = 1;
		s->body = 0;
		s->n = 0;
		s->num = 0;
		s->ndigits = 0;
		s->st = S_CSIZE;
		return GW_GUARD_EV_HEAD_END;
	}
	if (s->clen > 0) {
		s->in_body = 1;
		s->remain = s->clen;
		s->st = S_BODY;
		return GW_GUARD_EV_HEAD_END;
	}
	msg_reset(s);
	return GW_GUARD_EV_HEAD_END | GW_GUARD_EV_MSG_END;
}

/* The request-target ended (the SP after it was read). */
static void
target_end(gw_guard_scan *s)
{
	s->st = S_VERSION;
	s->n = 0;
}

static unsigned
target_byte(gw_guard_scan *s, uint8_t c)
{
	if (c == ' ') {
		switch (s->st) {
		case S_ORIGIN1:
		case S_PATH:
		case S_ASTERISK:
		case S_PORT:
			target_end(s);
			return 0;
		case S_HOST:
			if (s->vmatch == 0) {
				return fail(s, GW_GUARD_BAD_TARGET);
			}
			target_end(s);
			return 0;
		case S_TARGET0:
			return fail(s, GW_GUARD_BAD_LINE);
		default:
			return fail(s, GW_GUARD_BAD_TARGET);
		}
	}
	if (++s->n > s->lim.max_uri) {
		return fail(s, GW_GUARD_URI_TOO_LONG);
	}
	if (c == '\r' || c == '\n') {
		return fail(s, GW_GUARD_BAD_LINE);
	}
	switch (s->st) {
	case S_TARGET0:
		if (c == '/') {
			s->st = S_ORIGIN1;
		} else if (c == '*' && s->method == GW_GUARD_M_OPTIONS) {
			s->st = S_ASTERISK;
		} else if (lower(c) == 'h') {
			s->name[0] = 'h';
			s->nlen = 1;
			s->st = S_SCHEME;
		} else {
			return fail(s, GW_GUARD_BAD_TARGET);
		}
		return 0;
	case S_ORIGIN1:
		/* "//x" would be read by evhttp as an authority */
		if (c == '/') {
			return fail(s, GW_GUARD_BAD_TARGET);
		}
		s->st = S_PATH;
		/* fall through */
	case S_PATH:
		if (c == '%') {
			s->st = S_PCT1;
		} else if (!is_uri_char(c)) {
			return fail(s, GW_GUARD_BAD_TARGET);
		}
		return 0;
	case S_PCT1:
	case S_PCT2:
		if (!is_hex(c)) {
			return fail(s, GW_GUARD_BAD_TARGET);
		}
		s->st = s->st == S_PCT1 ? S_PCT2 : S_PATH;
		return 0;
	case S_SCHEME:
		if (c == ':') {
			s->name[s->nlen] = '\0';
			if (strcmp(s->name, "http") != 0 &&
			    strcmp(s->name, "https") != 0) {
				return fail(s, GW_GUARD_BAD_TARGET);
			}
			s->st = S_SLASH1;
		} else if (s->nlen >= 5 ||
		    !((c | 0x20) >= 'a' && (c | 0x20) <= 'z')) {
			return fail(s, GW_GUARD_BAD_TARGET);
		} else {
			s->name[s->nlen++] = (char) lower(c);
		}
		return 0;
	case S_SLASH1:
	case S_SLASH2:
		if (c != '/') {
			return fail(s, GW_GUARD_BAD_TARGET);
		}
		if (s->st == S_SLASH2) {
			s->vmatch = 0; /* host length */
		}
		s->st = s->st == S_SLASH1 ? S_SLASH2 : S_HOST;
		return 0;
	case S_HOST:
		/* a subset of reg-name and IPv4: no userinfo, no IP-literal */
		if ((c >= '0' && c <= '9') ||
		    ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || c == '.' ||
		    c == '-') {
			s->vmatch++;
			return 0;
		}
		if (s->vmatch == 0) {
			return fail(s, GW_GUARD_BAD_TARGET);
		}
		if (c == ':') {
			s->port = 0;
			s->ndigits = 0;
			s->st = S_PORT;
		} else if (c == '/' || c == '?') {
			s->st = S_PATH;
		} else {
			return fail(s, GW_GUARD_BAD_TARGET);
		}
		return 0;
	case S_PORT:
		if (c >= '0' && c <= '9') {
			s->port = s->port * 10 + (c - '0');
			if (++s->ndigits > 5 || s->port > 65535) {
				return fail(s, GW_GUARD_BAD_TARGET);
			}
		} else if (c == '/' || c == '?') {
			s->st = S_PATH;
		} else {
			return fail(s, GW_GUARD_BAD_TARGET);
		}
		return 0;
	case S_ASTERISK:
	default:
		return fail(s, GW_GUARD_BAD_TARGET);
	}
}

/* "HTTP/" DIGIT "." DIGIT, then CR. */
static unsigned
version_byte(gw_guard_scan *s, uint8_t c)
{
	static const char name[] = "HTTP/";
	size_t            i = s->n++;

	if (i < 5) {
		return (uint8_t) name[i] == c ? 0 : fail(s, GW_GUARD_BAD_LINE);
	}
	if (i == 5 || i == 7) {
		if (c < '0' || c > '9') {
			return fail(s, GW_GUARD_BAD_LINE);
		}
		if (i == 5) {
			s->major = c - '0';
		} else {
			s->minor = c - '0';
		}
		return 0;
	}
	if (i == 6) {
		return c == '.' ? 0 : fail(s, GW_GUARD_BAD_LINE);
	}
	if (c != '\r') {
		return fail(s, GW_GUARD_BAD_LINE);
	}
	if (s->major != 1 || s->minor > 1) {
		return fail(s, GW_GUARD_VERSION);
	}
	s->http10 = s->minor == 0;
	s->st = S_RL_LF;
	return 0;
}

/* One byte of a header or trailer section. */
static unsigned
field_byte(gw_guard_scan *s, uint8_t c)
{
	if (++s->head > s->lim.max_header) {
		return fail(s,
		    s->in_body ? GW_GUARD_TRAILER_TOO_LARGE
		               : GW_GUARD_HEAD_TOO_LARGE);
	}
	switch (s->st) {
	case S_LINE:
		if (c == '\r') {
			s->st = S_END_LF;
		} else if (is_ws(c)) {
			return fail(s, GW_GUARD_OBS_FOLD);
		} else if (is_tchar(c)) {
			s->name[0] = (char) lower(c);
			s->nlen = 1;
			s->st = S_NAME;
		} else if (is_ctl(c)) {
			return fail(s, GW_GUARD_CTL);
		} else {
			return fail(s, GW_GUARD_BAD_FIELD);
		}
		return 0;
	case S_END_LF:
		if (c != '\n') {
			return fail(s, GW_GUARD_BAD_FIELD);
		}
		if (s->in_body) { /* end of the trailers */
			msg_reset(s);
			return GW_GUARD_EV_MSG_END;
		}
		return head_end(s);
	case S_NAME:
		if (is_tchar(c)) {
			if (s->nlen < sizeof(s->name)) {
				s->name[s->nlen] = (char) lower(c);
			}
			if (s->nlen < sizeof(s->name)) {
				s->nlen++;
			}
		} else if (c == ':') {
			field_start(s);
			s->st = S_OWS;
		} else if (is_ctl(c) && c != '\r' && c != '\n') {
			return fail(s, GW_GUARD_CTL);
		} else {
			return fail(s, GW_GUARD_BAD_FIELD);
		}
		return 0;
	case S_OWS:
		if (c == ' ') {
			return 0;
		}
		if (c == '\r') {
			s->st = S_VAL_LF;
			return 0;
		}
		/* evhttp skips only spaces: a leading HTAB would stay in
		 * the value it reads ("\tchunked" is not "chunked") */
		if (c == '\t' || c == '\n') {
			return fail(s, GW_GUARD_BAD_FIELD);
		}
		if (is_ctl(c)) {
			return fail(s, GW_GUARD_CTL);
		}
		s->st = S_VALUE;
		value_byte(s, c);
		return 0;
	case S_VALUE:
		if (c == '\r') {
			s->st = S_VAL_LF;
		} else if (c == '\n') {
			return fail(s, GW_GUARD_BAD_FIELD);
		} else if (is_ctl(c)) {
			return fail(s, GW_GUARD_CTL);
		} else {
			value_byte(s, c);
		}
		return 0;
	case S_VAL_LF:
		if (c != '\n') {
			return fail(s, GW_GUARD_BAD_FIELD);
		}
		s->st = S_LINE;
		return field_end(s);
	default:
		return fail(s, GW_GUARD_BAD_FIELD);
	}
}

/* One byte of chunked framing (not chunk data). */
static unsigned
chunk_byte(gw_guard_scan *s, uint8_t c)
{
	if (s->st == S_CSIZE || s->st == S_CBWS || s->st == S_CEXT) {
		if (++s->n > GW_GUARD_CHUNK_LINE_MAX) {
			return fail(s, GW_GUARD_BAD_CHUNK);
		}
	}
	switch (s->st) {
	case S_CSIZE:
		if (is_hex(c)) {
			if (s->ndigits >= 16) {
				return fail(s, GW_GUARD_BAD_CHUNK);
			}
			s->num = (s->num << 4) | (uint64_t) hex_val(c);
			s->ndigits++;
			return 0;
		}
		if (s->ndigits == 0) {
			return fail(s, GW_GUARD_BAD_CHUNK);
		}
		if (c == ';') {
			s->st = S_CEXT;
		} else if (is_ws(c)) {
			s->st = S_CBWS;
		} else if (c == '\r') {
			s->st = S_CSIZE_LF;
		} else {
			return fail(s, GW_GUARD_BAD_CHUNK);
		}
		return 0;
	case S_CBWS:
		if (c == ';') {
			s->st = S_CEXT;
		} else if (c == '\r') {
			s->st = S_CSIZE_LF;
		} else if (!is_ws(c)) {
			return fail(s, GW_GUARD_BAD_CHUNK);
		}
		return 0;
	case S_CEXT:
		if (c == '\r') {
			s->st = S_CSIZE_LF;
		} else if (is_ctl(c)) {
			return fail(s, GW_GUARD_BAD_CHUNK);
		}
		return 0;
	case S_CSIZE_LF:
		if (c != '\n') {
			return fail(s, GW_GUARD_BAD_CHUNK);
		}
		if (s->num == 0) { /* last-chunk: trailers follow */
			s->head = 0;
			s->st = S_LINE;
			return 0;
		}
		if (s->num > s->lim.max_body - s->body) {
			return fail(s, GW_GUARD_BODY_TOO_LARGE);
		}
		s->body += s->num;
		s->remain = s->num;
		s->st = S_CDATA;
		return 0;
	case S_CDATA_CR:
		if (c != '\r') {
			return fail(s, GW_GUARD_BAD_CHUNK);
		}
		s->st = S_CDATA_LF;
		return 0;
	case S_CDATA_LF:
		if (c != '\n') {
			return fail(s, GW_GUARD_BAD_CHUNK);
		}
		s->st = S_CSIZE;
		s->n = 0;
		s->num = 0;
		s->ndigits = 0;
		return 0;
	default:
		return fail(s, GW_GUARD_BAD_CHUNK);
	}
}

/* Consumes one byte outside payload data; returns GW_GUARD_EV_* bits. */
static unsigned
scan_byte(gw_guard_scan *s, uint8_t c)
{
	switch (s->st) {
	case S_START:
		if (c == '\r') {
			/* RFC 9112 2.2: one empty line before a request
			 * line is tolerated (and dropped: evhttp would not
			 * tolerate it) */
			if (s->crlf > 0) {
				return fail(s, GW_GUARD_BAD_LINE);
			}
			s->st = S_START_LF;
			return 0;
		}
		s->started = 1;
		if (!is_tchar(c)) {
			return GW_GUARD_EV_START | fail(s, GW_GUARD_BAD_LINE);
		}
		s->meth[0] = (char) c;
		s->n = 1;
		s->st = S_METHOD;
		return GW_GUARD_EV_START;
	case S_START_LF:
		if (c != '\n') {
			return fail(s, GW_GUARD_BAD_LINE);
		}
		s->crlf++;
		s->st = S_START;
		return 0;
	case S_METHOD:
		if (is_tchar(c)) {
			if (s->n >= GW_GUARD_METHOD_MAX) {
				return fail(s, GW_GUARD_METHOD);
			}
			s->meth[s->n++] = (char) c;
			return 0;
		}
		if (c != ' ') {
			return fail(s, GW_GUARD_BAD_LINE);
		}
		s->meth[s->n] = '\0';
		if ((s->method = method_of(s->meth)) == 0) {
			return fail(s, GW_GUARD_METHOD);
		}
		s->st = S_TARGET0;
		s->n = 0;
		return 0;
	case S_TARGET0:
	case S_ORIGIN1:
	case S_PATH:
	case S_PCT1:
	case S_PCT2:
	case S_ASTERISK:
	case S_SCHEME:
	case S_SLASH1:
	case S_SLASH2:
	case S_HOST:
	case S_PORT:
		return target_byte(s, c);
	case S_VERSION:
		return version_byte(s, c);
	case S_RL_LF:
		if (c != '\n') {
			return fail(s, GW_GUARD_BAD_LINE);
		}
		s->st = S_LINE;
		s->head = 0;
		return 0;
	case S_LINE:
	case S_END_LF:
	case S_NAME:
	case S_OWS:
	case S_VALUE:
	case S_VAL_LF:
		return field_byte(s, c);
	case S_CSIZE:
	case S_CBWS:
	case S_CEXT:
	case S_CSIZE_LF:
	case S_CDATA_CR:
	case S_CDATA_LF:
		return chunk_byte(s, c);
	default:
		return fail(
		    s, s->err != GW_GUARD_OK ? s->err : GW_GUARD_BAD_LINE);
	}
}

/* The kind the next byte c will have. */
static gw_guard_kind
kind_of(const gw_guard_scan *s, uint8_t c)
{
	switch (s->st) {
	case S_START:
		return c == '\r' ? GW_GUARD_FRAME : GW_GUARD_HEAD;
	case S_START_LF:
		return GW_GUARD_FRAME;
	case S_BODY:
	case S_CDATA:
		return GW_GUARD_DATA;
	case S_CSIZE:
	case S_CBWS:
	case S_CEXT:
	case S_CSIZE_LF:
	case S_CDATA_CR:
	case S_CDATA_LF:
		return GW_GUARD_FRAME;
	default:
		return s->in_body ? GW_GUARD_FRAME : GW_GUARD_HEAD;
	}
}

size_t
gw_guard_scan_step(
    gw_guard_scan *s, const uint8_t *p, size_t n, gw_guard_run *run)
{
	size_t i = 0;

	run->len = 0;
	run->events = 0;
	run->kind = GW_GUARD_FRAME;
	if (s->st == S_FAILED) {
		run->events = GW_GUARD_EV_ERROR;
		return 0;
	}
	if (n == 0) {
		return 0;
	}
	run->kind = kind_of(s, p[0]);
	while (i < n) {
		unsigned ev;

		if (i > 0 && kind_of(s, p[i]) != run->kind) {
			break;
		}
		if (s->st == S_BODY || s->st == S_CDATA) {
			uint64_t take = n - i < s->remain ? n - i : s->remain;
			i += (size_t) take;
			s->remain -= take;
			if (s->remain > 0) {
				continue;
			}
			if (s->st == S_CDATA) {
				s->st = S_CDATA_CR;
				continue;
			}
			msg_reset(s);
			run->events |= GW_GUARD_EV_MSG_END;
			break;
		}
		ev = scan_byte(s, p[i]);
		if (ev & GW_GUARD_EV_ERROR) {
			run->events |= ev;
			break;
		}
		i++;
		run->events |= ev;
		if (ev & (GW_GUARD_EV_HEAD_END | GW_GUARD_EV_MSG_END)) {
			break;
		}
	}
	run->len = i;
	return i;
}
