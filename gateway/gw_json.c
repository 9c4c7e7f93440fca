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
		/* a product's JSON is about 500 bytes: one allocation */
		size_t cap = b->cap ? b->cap : 1024;
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

/* Writes v's decimal digits ending at end; returns where they start.
 * (snprintf costs ten times as much, and every product has four.) */
static char *
fmt_u64(char *end, uint64_t v)
{
	do {
		*--end = (char) ('0' + v % 10);
		v /= 10;
	} while (v != 0);
	return end;
}

static void
add_i64(gw_buf *b, int64_t v)
{
	char  num[24];
	char *end = num + sizeof(num);
	char *p = fmt_u64(end, v < 0 ? 0 - (uint64_t) v : (uint64_t) v);

	if (v < 0) {
		*--p = '-';
	}
	gw_buf_add(b, p, (size_t) (end - p));
}

/* Bytes gw_json_string() must look at: NUL (the end), control
 * characters, '"', '\\' and everything past ASCII. */
static const unsigned char json_special[256] = {
    [0 ... 0x1f] = 1,
    ['"'] = 1,
    ['\\'] = 1,
    [0x80 ... 0xff] = 1,
};

void
gw_json_string(gw_buf *b, const char *s)
{
	static const char    hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *) (s ? s : "");
	const unsigned char *run = p; /* bytes copied as they are */

	gw_buf_add(b, "\"", 1);
	for (;;) {
		char   esc[8];
		size_t elen = 2;
		size_t n;

		/* Plain ASCII goes by table, a few instructions a byte. */
		while (!json_special[*p]) {
			p++;
		}
		if (*p == '\0') {
			break;
		}
		/* The string ends at its NUL, which is never a continuation
		 * byte, so no bound is needed beyond it. */
		if (*p >= 0x80 && (n = cm_utf8_len(p, SIZE_MAX)) != 0) {
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
put2(char *p, unsigned v)
{
	p[0] = (char) ('0' + v / 10);
	p[1] = (char) ('0' + v % 10);
}

/* Formats us (since the epoch, UTC) as "YYYY-MM-DDTHH:MM:SSZ", as
 * cm_fmt_rfc3339() does through gmtime_r() and strftime() at ten times
 * the cost. Years 1970 to 9999 only: returns 0 for others. The date is
 * H. Hinnant's civil_from_days. */
size_t
gw_json_time(int64_t us, char out[21])
{
	int64_t  t = us / 1000000;
	int64_t  days = t / 86400, era, y;
	unsigned sec = (unsigned) (t % 86400), doe, yoe, doy, mp, d, m;

	if (t < 0 || t >= 253402300800LL) { /* 10000-01-01 */
		return 0;
	}
	days += 719468;
	era = days / 146097;
	doe = (unsigned) (days - era * 146097);
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	y = (int64_t) yoe + era * 400;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	d = doy - (153 * mp + 2) / 5 + 1;
	m = mp < 10 ? mp + 3 : mp - 9;
	y += m <= 2;
	put2(out, (unsigned) (y / 100));
	put2(out + 2, (unsigned) (y % 100));
	out[4] = '-';
	put2(out + 5, m);
	out[7] = '-';
	put2(out + 8, d);
	out[10] = 'T';
	put2(out + 11, sec / 3600);
	out[13] = ':';
	put2(out + 14, sec / 60 % 60);
	out[16] = ':';
	put2(out + 17, sec % 60);
	out[19] = 'Z';
	out[20] = '\0';
	return 20;
}

static void
add_time(gw_buf *b, int64_t us)
{
	char t[32];

	if (gw_json_time(us, t) == 0) {
		cm_fmt_rfc3339(us, t, sizeof(t));
	}
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
