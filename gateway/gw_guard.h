/* gw_guard.h - the HTTP/1.1 request-framing scanner (pure, no libevent).
 *
 * Kept apart from gw.h, which pulls in the generated protobuf headers, so
 * that the fuzz target (fuzz/fuzz_http_guard.c) builds from gw_guard.c and
 * this header alone. gw.h includes it; the rest of the gateway includes
 * gw.h as usual.
 */
#ifndef GW_GUARD_H
#define GW_GUARD_H

#include <stddef.h>
#include <stdint.h>

#define GW_GUARD_MAX_URI_DEF    2048
#define GW_GUARD_MAX_HEADER_DEF 8192
#define GW_GUARD_METHOD_MAX     16  /* bytes of a method token */
#define GW_GUARD_CHUNK_LINE_MAX 256 /* bytes of a chunk-size line */

/* What the scanner enforces; every size comes from the client. */
typedef struct gw_guard_limits {
	size_t   max_uri;    /* request-target bytes (GATEWAY_MAX_URI_BYTES) */
	size_t   max_header; /* header section, and trailer section, bytes */
	uint64_t max_body;   /* Content-Length, or the chunks' sum */
} gw_guard_limits;

/* Why a request was refused. Each has an HTTP status, a metric reason
 * and a detail text (gw_guard_err_*). */
typedef enum gw_guard_err {
	GW_GUARD_OK = 0,
	GW_GUARD_URI_TOO_LONG,      /* 414 */
	GW_GUARD_HEAD_TOO_LARGE,    /* 431 */
	GW_GUARD_TRAILER_TOO_LARGE, /* 431 */
	GW_GUARD_BODY_TOO_LARGE,    /* 413 */
	GW_GUARD_BAD_LINE,          /* 400 malformed request line */
	GW_GUARD_BAD_TARGET,        /* 400 request-target not a URI we take */
	GW_GUARD_METHOD,            /* 501 method we do not implement */
	GW_GUARD_VERSION,           /* 505 HTTP version other than 1.0/1.1 */
	GW_GUARD_BAD_FIELD,         /* 400 malformed header line */
	GW_GUARD_CTL,               /* 400 NUL or control byte in the head */
	GW_GUARD_OBS_FOLD,          /* 400 folded header line */
	GW_GUARD_HOST,              /* 400 missing or repeated Host */
	GW_GUARD_BAD_CL,            /* 400 Content-Length not a number */
	GW_GUARD_CL_MISMATCH,       /* 400 differing Content-Length values */
	GW_GUARD_CL_TE,             /* 400 Content-Length and T-E together */
	GW_GUARD_BAD_TE,            /* 400 T-E other than one "chunked" */
	GW_GUARD_HEAD_BODY,         /* 400 HEAD with a body */
	GW_GUARD_BAD_CHUNK,         /* 400 malformed chunked framing */
	GW_GUARD_EXPECT,            /* 417 Expect other than 100-continue */
	GW_GUARD_HEADER_TIMEOUT,    /* 408 head not complete in time */
	GW_GUARD_BODY_TIMEOUT,      /* 408 body not complete in time */
	GW_GUARD_NERR
} gw_guard_err;

/* HTTP status of e (400 for unknown values). */
int gw_guard_err_status(gw_guard_err e);

/* Metric reason of e: "uri_too_long", "headers_too_large",
 * "body_too_large", "bad_request", "bad_framing", "method", "version",
 * "expectation", "header_timeout" or "body_timeout". */
const char *gw_guard_err_reason(gw_guard_err e);

/* A sentence for the problem detail of e (static text). */
const char *gw_guard_err_detail(gw_guard_err e);

/* What the bytes of a run are. */
typedef enum gw_guard_kind {
	GW_GUARD_HEAD,  /* request line and header section */
	GW_GUARD_DATA,  /* body payload (Content-Length bytes, chunk data) */
	GW_GUARD_FRAME, /* chunk-size lines, CRLFs, trailers, an empty line
	                   before a request: framing the guard re-creates */
} gw_guard_kind;

#define GW_GUARD_EV_START    1u /* the run holds a request's first byte */
#define GW_GUARD_EV_HEAD_END 2u /* the run ends with the head's last byte */
#define GW_GUARD_EV_MSG_END  4u /* the run ends with the request's last */
#define GW_GUARD_EV_ERROR    8u /* refused: see gw_guard_scan.err */

/* One run of bytes of a single kind. */
typedef struct gw_guard_run {
	size_t        len;
	gw_guard_kind kind;
	unsigned      events; /* GW_GUARD_EV_* */
} gw_guard_run;

/* Scanner state: one per connection, following request after request.
 * The fields are the scanner's; callers read err, chunked, clen and the
 * accessors below. */
typedef struct gw_guard_scan {
	gw_guard_limits lim;
	int             st;      /* internal state */
	gw_guard_err    err;     /* set once EV_ERROR was reported */
	int             started; /* a request's first byte has been seen */
	int             in_body; /* between EV_HEAD_END and EV_MSG_END */
	size_t          n;       /* bytes of the current element */
	size_t          head;    /* header (or trailer) section bytes */
	unsigned        method;  /* GW_GUARD_M_* of the current request */
	int             http10;
	int             crlf;   /* empty lines skipped before this request */
	unsigned        fields; /* GW_GUARD_F_* seen in this head */
	int             hosts;
	int             te_count;
	int             field;  /* which field the current line is */
	int             vstate; /* value parsing of that field */
	size_t          vmatch;
	uint64_t        num;             /* the number being parsed */
	uint64_t        clen;            /* Content-Length */
	int             chunked;         /* Transfer-Encoding: chunked */
	int             expect_continue; /* HTTP/1.1 Expect: 100-continue */
	uint64_t        remain;   /* body or chunk bytes still to come */
	uint64_t        body;     /* chunk data so far */
	int             ndigits;  /* digits of the number being parsed */
	char            name[20]; /* the field name, lower case, cut */
	size_t          nlen;
	char            meth[GW_GUARD_METHOD_MAX + 1];
	int             major, minor;
	int             port;   /* absolute-form port being parsed */
	size_t          scheme; /* absolute-form scheme match state */
} gw_guard_scan;

/* Methods the gateway serves (evhttp's allowed set); others are 501. */
#define GW_GUARD_M_GET     1u
#define GW_GUARD_M_HEAD    2u
#define GW_GUARD_M_POST    4u
#define GW_GUARD_M_PUT     8u
#define GW_GUARD_M_PATCH   16u
#define GW_GUARD_M_DELETE  32u
#define GW_GUARD_M_OPTIONS 64u

/* Starts a scanner at the beginning of a connection. */
void gw_guard_scan_init(gw_guard_scan *s, const gw_guard_limits *lim);

/* Scans p[0..n), n > 0, continuing where the last call stopped, and fills
 * *run with the longest prefix whose bytes are all of one kind, cut short
 * after a head's or a request's last byte or at an error. Returns
 * run->len: at least 1 unless an error is reported (then the rest of the
 * input is not scanned, and every later call reports the error again with
 * len 0). */
size_t gw_guard_scan_step(
    gw_guard_scan *s, const uint8_t *p, size_t n, gw_guard_run *run);

/* 1 while a request has started and its head is not complete. */
int gw_guard_scan_in_head(const gw_guard_scan *s);

#endif /* GW_GUARD_H */
