/* gw_json.c - writes products, lists and problems as JSON text. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm.h"
#include "gw.h"

void
gw_buf_init(gw_buf *b)
{
	memset(b, 0, sizeof(*b));
}

void
gw_buf_fini(gw_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

void
gw_buf_add(gw_buf *b, const void *p, size_t n)
{
	if (b->err != CM_OK || n == 0) {
		return;
	}
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char  *d;
		while (cap < b->len + n + 1) {
			cap *= 2;
		}
		if ((d = realloc(b->data, cap)) == NULL) {
			b->err = CM_ENOMEM;
			return;
		}
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0'; /* handy for tests and logs */
}

void
gw_buf_adds(gw_buf *b, const char *s)
{
	gw_buf_add(b, s, strlen(s));
}

static void
add_i64(gw_buf *b, int64_t v)
{
	char num[24];
	int  n = snprintf(num, sizeof(num), "%" PRId64, v);
	gw_buf_add(b, num, (size_t) n);
}

/* Returns the length (1 to 4) of the well-formed UTF-8 sequence at
 * s[0..len), or 0 for overlong forms, surrogates, code points above
 * U+10FFFF and cut sequences (RFC 3629), which json-c lets through. */
size_t
gw_utf8_len(const unsigned char *s, size_t len)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t        n;

	if (c < 0x80) {
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		lo = c == 0xe0 ? 0xa0 : 0x80;
		hi = c == 0xed ? 0x9f : 0xbf;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		lo = c == 0xf0 ? 0x90 : 0x80;
		hi = c == 0xf4 ? 0x8f : 0xbf;
	} else {
		return 0;
	}
	if (n > len || s[1] < lo || s[1] > hi) {
		return 0;
	}
	for (size_t i = 2; i < n; i++) {
		if (s[i] < 0x80 || s[i] > 0xbf) {
			return 0;
		}
	}
	return n;
}

void
gw_json_string(gw_buf *b, const char *s)
{
	static const char    hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *) (s ? s : "");
	const unsigned char *run = p; /* bytes copied as they are */

	gw_buf_add(b, "\"", 1);
	while (*p != '\0') {
		char   esc[8];
		size_t elen = 2;
		size_t n;

		if (*p >= 0x20 && *p != '"' && *p != '\\' && *p < 0x80) {
			p++;
			continue;
		}
		/* The string ends at its NUL, which is never a continuation
		 * byte, so no bound is needed beyond it. */
		if (*p >= 0x80 && (n = gw_utf8_len(p, SIZE_MAX)) != 0) {
			p += n;
			continue;
		}
		gw_buf_add(b, run, (size_t) (p - run));
		esc[0] = '\\';
		switch (*p) {
		case '"':
			esc[1] = '"';
			break;
		case '\\':
			esc[1] = '\\';
			break;
		case '\b':
			esc[1] = 'b';
			break;
		case '\f':
			esc[1] = 'f';
			break;
		case '\n':
			esc[1] = 'n';
			break;
		case '\r':
			esc[1] = 'r';
			break;
		case '\t':
			esc[1] = 't';
			break;
		default:
			if (*p < 0x20) {
				memcpy(esc + 1, "u00", 3);
				esc[4] = hex[*p >> 4];
				esc[5] = hex[*p & 0xf];
			} else {
				/* not UTF-8: the replacement character */
				memcpy(esc + 1, "ufffd", 5);
			}
			elen = 6;
			break;
		}
		gw_buf_add(b, esc, elen);
		run = ++p;
	}
	gw_buf_add(b, run, (size_t) (p - run));
	gw_buf_add(b, "\"", 1);
}

static void
add_time(gw_buf *b, int64_t us)
{
	char t[32];
	cm_fmt_rfc3339(us, t, sizeof(t));
	gw_json_string(b, t);
}

static void
add_product(gw_buf *b, const Catalog__Product *p)
{
	gw_buf_adds(b, "{\"id\":");
	add_i64(b, p->id);
	gw_buf_adds(b, ",\"sku\":");
	gw_json_string(b, p->sku);
	gw_buf_adds(b, ",\"name\":");
	gw_json_string(b, p->name);
	gw_buf_adds(b, ",\"description\":");
	gw_json_string(b, p->description);
	gw_buf_adds(b, ",\"price_cents\":");
	add_i64(b, p->price_cents);
	gw_buf_adds(b, ",\"currency\":");
	gw_json_string(b, p->currency);
	gw_buf_adds(b, ",\"stock\":");
	add_i64(b, p->stock);
	gw_buf_adds(b, ",\"version\":");
	add_i64(b, p->version);
	gw_buf_adds(b, ",\"created_at\":");
	add_time(b, p->created_at_us);
	gw_buf_adds(b, ",\"updated_at\":");
	add_time(b, p->updated_at_us);
	gw_buf_adds(b, "}");
}

int
gw_json_product(gw_buf *b, const Catalog__Product *p)
{
	add_product(b, p);
	return b->err;
}

int
gw_json_list(
    gw_buf *b, Catalog__Product *const *items, size_t n, int64_t next_after)
{
	gw_buf_adds(b, "{\"items\":[");
	for (size_t i = 0; i < n; i++) {
		if (i > 0) {
			gw_buf_adds(b, ",");
		}
		add_product(b, items[i]);
	}
	gw_buf_adds(b, "],\"next_after\":");
	if (next_after > 0) {
		add_i64(b, next_after);
	} else {
		gw_buf_adds(b, "null");
	}
	gw_buf_adds(b, "}");
	return b->err;
}

int
gw_json_status(gw_buf *b, const char *status)
{
	gw_buf_adds(b, "{\"status\":");
	gw_json_string(b, status);
	gw_buf_adds(b, "}");
	return b->err;
}

static const struct problem {
	int         status;
	const char *slug;
	const char *title;
} problems[] = {
    {400, "bad-request", "Bad Request"},
    {401, "unauthorized", "Unauthorized"},
    {404, "not-found", "Not Found"},
    {405, "method-not-allowed", "Method Not Allowed"},
    {408, "request-timeout", "Request Timeout"},
    {409, "conflict", "Conflict"},
    {412, "precondition-failed", "Precondition Failed"},
    {413, "payload-too-large", "Payload Too Large"},
    {414, "uri-too-long", "URI Too Long"},
    {415, "unsupported-media-type", "Unsupported Media Type"},
    {417, "expectation-failed", "Expectation Failed"},
    {422, "unprocessable", "Unprocessable Content"},
    {429, "too-many-requests", "Too Many Requests"},
    {431, "header-fields-too-large", "Request Header Fields Too Large"},
    {500, "internal", "Internal Server Error"},
    {501, "not-implemented", "Not Implemented"},
    {502, "bad-gateway", "Bad Gateway"},
    {503, "unavailable", "Service Unavailable"},
    {504, "gateway-timeout", "Gateway Timeout"},
    {505, "http-version-not-supported", "HTTP Version Not Supported"},
};

/* Returns the row for status; an unlisted status gets the row of 500 or
 * 400, whichever class it is in. */
static const struct problem *
find_problem(int status)
{
	const struct problem *fallback = NULL;
	int                   want = status >= 500 ? 500 : 400;

	for (size_t i = 0; i < sizeof(problems) / sizeof(problems[0]); i++) {
		if (problems[i].status == status) {
			return &problems[i];
		}
		if (problems[i].status == want) {
			fallback = &problems[i];
		}
	}
	return fallback;
}

const char *
gw_json_problem_slug(int status)
{
	return find_problem(status)->slug;
}

const char *
gw_json_problem_title(int status)
{
	return find_problem(status)->title;
}

/* Writes the members every problem has, without the closing brace. */
static void
add_problem(gw_buf *b, const struct problem *pr, int status,
    const char *detail, const char *request_id)
{
	gw_buf_adds(b, "{\"type\":\"/problems/");
	gw_buf_adds(b, pr->slug);
	gw_buf_adds(b, "\",\"title\":");
	gw_json_string(b, pr->title);
	gw_buf_adds(b, ",\"status\":");
	add_i64(b, status);
	gw_buf_adds(b, ",\"detail\":");
	gw_json_string(b, detail != NULL ? detail : pr->title);
	gw_buf_adds(b, ",\"request_id\":");
	gw_json_string(b, request_id);
}

int
gw_json_problem(
    gw_buf *b, int status, const char *detail, const char *request_id)
{
	add_problem(b, find_problem(status), status, detail, request_id);
	gw_buf_adds(b, "}");
	return b->err;
}

int
gw_json_problem_fields(gw_buf *b, const char *detail, const char *request_id,
    const gw_field_err *errs, size_t n)
{
	static const struct problem pr = {
	    422, "validation-failed", "Validation Failed"};

	add_problem(b, &pr, 422, detail, request_id);
	gw_buf_adds(b, ",\"errors\":[");
	for (size_t i = 0; i < n; i++) {
		gw_buf_adds(b, i > 0 ? ",{\"field\":" : "{\"field\":");
		gw_json_string(b, errs[i].field);
		gw_buf_adds(b, ",\"message\":");
		gw_json_string(b, errs[i].message);
		gw_buf_adds(b, "}");
	}
	gw_buf_adds(b, "]}");
	return b->err;
}
