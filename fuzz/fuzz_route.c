/* fuzz_route.c - libFuzzer target: the gateway's small parsers of client
 * text, and the JSON it writes back.
 *
 * The first byte picks what the rest of the input is:
 *   0  a method byte and a request URI: parsed as evhttp parses a request
 *      line, percent-decoded and routed as gw_http.c's route() does
 *   1  If-None-Match header values, one a line (gw_inm_*)
 *   2  If-Match header values, one a line (gw_hdr_ifm_*)
 *   3  a header value: Content-Type, Idempotency-Key, X-Request-Id
 *   4  a traceparent (cm_trace_parse, then format and parse again)
 *   5  a product, a list, a problem and a status rendered as JSON, which
 *      json-c must read back (strict, UTF-8 checked) to the same values
 * Each case checks what its header comment in gw.h / cm.h promises. */
#include <ctype.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/http.h>
#include <json-c/json.h>

#include "cm.h"
#include "cm_trace.h"
#include "fuzz_check.h"
#include "fuzz_json.h"
#include "gw.h"

/* ---- helpers ---- */

/* Returns a NUL-terminated copy of data[0..n) (the caller frees it). */
static char *
cstr(const uint8_t *data, size_t n)
{
	char *s = malloc(n + 1);
	FZ_CHECK(s != NULL);
	memcpy(s, data, n);
	s[n] = '\0';
	return s;
}

static void
check_problem(int status, const char *detail, const char *reqid)
{
	gw_buf              b;
	struct json_object *o, *v;

	gw_buf_init(&b);
	FZ_CHECK(gw_json_problem(&b, status, detail, reqid) == CM_OK);
	o = fz_parse_reply(&b);
	FZ_CHECK(json_object_object_get_ex(o, "status", &v));
	FZ_CHECK(json_object_get_int(v) == status);
	json_object_put(o);
	gw_buf_fini(&b);
}

/* 1 when s is valid UTF-8 without control characters: such a string must
 * come back from the JSON exactly. */
static int
plain_utf8(const char *s)
{
	size_t len = strlen(s);
	for (size_t i = 0; i < len;) {
		size_t k = cm_utf8_len((const unsigned char *) s + i, len - i);
		if (k == 0 || (unsigned char) s[i] < 0x20) {
			return 0;
		}
		i += k;
	}
	return 1;
}

/* ---- 0: routing ---- */

static void
fuzz_route(const uint8_t *data, size_t size)
{
	static const unsigned methods[] = {0, GW_M_GET, GW_M_HEAD, GW_M_POST,
	    GW_M_PUT, GW_M_PATCH, GW_M_DELETE, GW_M_OPTIONS};
	unsigned              method;
	char                 *uri_text, *dec;
	struct evhttp_uri    *uri;
	const char           *path, *query;
	size_t                dlen = 0;
	gw_route              r;
	char                  want[48];

	if (size < 1) {
		return;
	}
	method = methods[data[0] % 8];
	uri_text = cstr(data + 1, size - 1);
	/* What evhttp does with the request line's target. */
	uri = evhttp_uri_parse_with_flags(uri_text, EVHTTP_URI_NONCONFORMANT);
	free(uri_text);
	if (uri == NULL) {
		return; /* evhttp answers 400 itself */
	}
	path = evhttp_uri_get_path(uri);
	query = evhttp_uri_get_query(uri);
	if (path == NULL || path[0] == '\0') {
		path = "/";
	}
	dec = evhttp_uridecode(path, 0, &dlen);
	FZ_CHECK(dec != NULL);
	if (strlen(dec) != dlen) {
		goto out; /* gw_http.c answers 400: a NUL in the path */
	}
	gw_route_match(method, dec, query, &r);
	FZ_CHECK(memchr(r.detail, '\0', sizeof(r.detail)) != NULL);
	FZ_CHECK(memchr(r.allow, '\0', sizeof(r.allow)) != NULL);
	switch (r.status) {
	case 0:
		FZ_CHECK(r.id != GW_ROUTE_NONE);
		break;
	case 405:
		FZ_CHECK(r.allow[0] != '\0');
		FZ_CHECK(strstr(r.allow, gw_method_name(method)) == NULL ||
		    method == 0);
		/* fall through */
	case 400:
	case 404:
		FZ_CHECK(r.id == GW_ROUTE_NONE);
		check_problem(r.status, r.detail, "fuzz");
		goto out;
	default:
		FZ_CHECK(!"unexpected route status");
	}
	switch (r.id) {
	case GW_ROUTE_HEALTHZ:
		FZ_CHECK(strcmp(dec, "/healthz") == 0);
		break;
	case GW_ROUTE_READYZ:
		FZ_CHECK(strcmp(dec, "/readyz") == 0);
		break;
	case GW_ROUTE_PRODUCT_LIST:
	case GW_ROUTE_PRODUCT_CREATE:
		FZ_CHECK(strcmp(dec, "/products") == 0);
		if (r.id == GW_ROUTE_PRODUCT_LIST) {
			FZ_CHECK(r.limit >= 1 && r.limit <= GW_LIST_LIMIT_MAX);
			FZ_CHECK(r.after >= 0);
		}
		break;
	default:
		/* /products/{id}: the id is the segment, canonical. */
		FZ_CHECK(r.product_id > 0);
		snprintf(
		    want, sizeof(want), "/products/%" PRId64, r.product_id);
		FZ_CHECK(strcmp(dec, want) == 0);
		break;
	}
out:
	free(dec);
	evhttp_uri_free(uri);
}

/* ---- 1 and 2: entity tag lists ---- */

/* Calls fn on each '\n'-separated line of s (modified in place). */
static void
each_line(char *s, void (*fn)(const char *, void *), void *arg)
{
	for (;;) {
		char *nl = strchr(s, '\n');
		if (nl != NULL) {
			*nl = '\0';
		}
		fn(s, arg);
		if (nl == NULL) {
			return;
		}
		s = nl + 1;
	}
}

static void
inm_line(const char *v, void *arg)
{
	gw_inm_parse(v, arg);
}

static void
fuzz_inm(const uint8_t *data, size_t size)
{
	char   *s = cstr(data, size);
	gw_inm  inm;
	int32_t hint, max = 0;

	memset(&inm, 0, sizeof(inm));
	each_line(s, inm_line, &inm);
	free(s);
	FZ_CHECK(inm.n <= GW_INM_MAX);
	for (size_t i = 0; i < inm.n; i++) {
		FZ_CHECK(inm.versions[i] > 0);
		max = inm.versions[i] > max ? inm.versions[i] : max;
	}
	hint = gw_inm_hint(&inm);
	if (!inm.present || inm.malformed || inm.any) {
		FZ_CHECK(hint == 0);
		FZ_CHECK(gw_inm_match(&inm, 1) ==
		    (inm.present && !inm.malformed && inm.any));
	} else {
		FZ_CHECK(hint == max);
		if (hint > 0) {
			FZ_CHECK(gw_inm_match(&inm, hint) == 1);
		}
	}
}

static void
ifm_line(const char *v, void *arg)
{
	gw_hdr_ifm_add(v, arg);
}

static void
fuzz_ifm(const uint8_t *data, size_t size)
{
	char       *s = cstr(data, size);
	gw_ifm      ifm = {0};
	int32_t     version;
	const char *detail;
	int         st;

	each_line(s, ifm_line, &ifm);
	free(s);
	st = gw_hdr_ifm_eval(&ifm, &version, &detail);
	FZ_CHECK(st == 0 || st == 400 || st == 412);
	FZ_CHECK((st != 0) == (detail != NULL));
	if (st != 0) {
		FZ_CHECK(version == 0);
		check_problem(st, detail, "fuzz");
	} else {
		FZ_CHECK(version >= 0);
		FZ_CHECK(version == 0 || (ifm.n == 1 && !ifm.any));
		FZ_CHECK(!ifm.malformed);
	}
}

/* ---- 3: single header values ---- */

static void
fuzz_values(const uint8_t *data, size_t size)
{
	char    *s = cstr(data, size);
	size_t   n = strlen(s), k;
	gw_ctype ct = gw_hdr_ctype(s);
	int      ok;

	FZ_CHECK(
	    ct == GW_CT_OTHER || ct == GW_CT_JSON || ct == GW_CT_MERGE_PATCH);
	if (ct != GW_CT_OTHER) {
		const char *p = s + strspn(s, " \t");
		const char *t = ct == GW_CT_JSON
		    ? "application/json"
		    : "application/merge-patch+json";
		FZ_CHECK(strncasecmp(p, t, strlen(t)) == 0);
	}
	/* Idempotency-Key: 1 to 255 bytes of 0x21..0x7e. */
	ok = n >= 1 && n <= GW_IDEM_KEY_MAX;
	for (k = 0; ok && k < n; k++) {
		ok = s[k] >= 0x21 && s[k] <= 0x7e;
	}
	FZ_CHECK(gw_hdr_idem_ok(s) == ok);
	/* X-Request-Id: 1 to 64 of [A-Za-z0-9._:-], else a fresh id. */
	ok = n >= 1 && n <= 64 &&
	    strspn(s,
	        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	        "0123456789._:-") == n;
	FZ_CHECK(cm_reqid_ok(s) == ok);
	if (ok) {
		/* Safe in a reply header and in JSON as it is. */
		check_problem(400, "fuzz", s);
	}
	free(s);
}

/* ---- 4: traceparent ---- */

static int
lower_hex(const char *s, size_t n)
{
	return strspn(s, "0123456789abcdef") == n && s[n] == '\0';
}

static void
fuzz_trace(const uint8_t *data, size_t size)
{
	char    *s = cstr(data, size);
	cm_trace t, u;
	char     out[CM_TRACEPARENT_LEN + 1];

	if (cm_trace_parse(s, &t) == CM_OK) {
		FZ_CHECK(strlen(s) >= CM_TRACEPARENT_LEN);
		FZ_CHECK(
		    lower_hex(t.trace_id, 32) && lower_hex(t.parent_id, 16));
		FZ_CHECK(lower_hex(t.span_id, 16));
		FZ_CHECK(strspn(t.trace_id, "0") != 32);
		FZ_CHECK(strspn(t.parent_id, "0") != 16);
		FZ_CHECK(t.flags <= 0xff);
		cm_trace_format(&t, out, sizeof(out));
		FZ_CHECK(strlen(out) == CM_TRACEPARENT_LEN);
		FZ_CHECK(cm_trace_parse(out, &u) == CM_OK);
		FZ_CHECK(strcmp(u.trace_id, t.trace_id) == 0);
		FZ_CHECK(strcmp(u.parent_id, t.span_id) == 0);
		FZ_CHECK(u.flags == t.flags);
	}
	free(s);
}

/* ---- 5: rendering ---- */

/* Takes the next NUL-terminated piece of the input (or the rest). */
static char *
next_str(const uint8_t **p, const uint8_t *end)
{
	const uint8_t *nul = memchr(*p, '\0', (size_t) (end - *p));
	const uint8_t *stop = nul != NULL ? nul : end;
	char          *s = cstr(*p, (size_t) (stop - *p));

	*p = nul != NULL ? nul + 1 : end;
	return s;
}

static int64_t
next_i64(const uint8_t **p, const uint8_t *end)
{
	uint64_t v = 0;
	size_t   n = (size_t) (end - *p) < 8 ? (size_t) (end - *p) : 8;

	memcpy(&v, *p, n);
	*p += n;
	return (int64_t) v;
}

static int
rfc3339_ok(const char *t)
{
	int y, mo, d, h, mi, s, n = 0;
	return sscanf(t, "%d-%2d-%2dT%2d:%2d:%2dZ%n", &y, &mo, &d, &h, &mi, &s,
	           &n) == 6 &&
	    (size_t) n == strlen(t) && mo >= 1 && mo <= 12 && d >= 1 &&
	    d <= 31 && h <= 23 && mi <= 59 && s <= 60;
}

static void
check_str(struct json_object *o, const char *key, const char *want)
{
	struct json_object *v;

	FZ_CHECK(json_object_object_get_ex(o, key, &v));
	FZ_CHECK(json_object_is_type(v, json_type_string));
	if (plain_utf8(want)) {
		FZ_CHECK(strcmp(json_object_get_string(v), want) == 0);
	}
}

static void
check_int(struct json_object *o, const char *key, int64_t want)
{
	struct json_object *v;

	FZ_CHECK(json_object_object_get_ex(o, key, &v));
	FZ_CHECK(json_object_is_type(v, json_type_int));
	FZ_CHECK(json_object_get_int64(v) == want);
}

static void
check_product(struct json_object *o, const Catalog__Product *p)
{
	struct json_object *v;

	FZ_CHECK(json_object_is_type(o, json_type_object));
	check_int(o, "id", p->id);
	check_str(o, "sku", p->sku);
	check_str(o, "name", p->name);
	check_str(o, "description", p->description);
	check_int(o, "price_cents", p->price_cents);
	check_str(o, "currency", p->currency);
	check_int(o, "stock", p->stock);
	check_int(o, "version", p->version);
	FZ_CHECK(json_object_object_get_ex(o, "created_at", &v));
	FZ_CHECK(rfc3339_ok(json_object_get_string(v)));
	FZ_CHECK(json_object_object_get_ex(o, "updated_at", &v));
	FZ_CHECK(rfc3339_ok(json_object_get_string(v)));
}

static void
fuzz_render(const uint8_t *data, size_t size)
{
	const uint8_t      *p = data, *end = data + size;
	Catalog__Product    prod = CATALOG__PRODUCT__INIT;
	Catalog__Product   *items[2] = {&prod, &prod};
	gw_buf              b;
	struct json_object *o, *arr, *v;
	char               *detail, *reqid;
	int64_t             next_after;
	int                 status;

	prod.id = next_i64(&p, end);
	prod.price_cents = next_i64(&p, end);
	prod.stock = (int32_t) next_i64(&p, end);
	prod.version = (int32_t) next_i64(&p, end);
	prod.created_at_us = next_i64(&p, end);
	prod.updated_at_us = next_i64(&p, end);
	next_after = next_i64(&p, end);
	status = (int) (next_i64(&p, end) % 1000);
	prod.sku = next_str(&p, end);
	prod.name = next_str(&p, end);
	prod.description = next_str(&p, end);
	prod.currency = next_str(&p, end);
	detail = next_str(&p, end);
	reqid = next_str(&p, end);

	gw_buf_init(&b);
	FZ_CHECK(gw_json_product(&b, &prod) == CM_OK);
	o = fz_parse_reply(&b);
	check_product(o, &prod);
	json_object_put(o);
	gw_buf_fini(&b);

	gw_buf_init(&b);
	FZ_CHECK(gw_json_list(&b, items, 2, next_after) == CM_OK);
	o = fz_parse_reply(&b);
	FZ_CHECK(json_object_object_get_ex(o, "items", &arr));
	FZ_CHECK(json_object_array_length(arr) == 2);
	check_product(json_object_array_get_idx(arr, 1), &prod);
	FZ_CHECK(json_object_object_get_ex(o, "next_after", &v));
	if (next_after > 0) {
		FZ_CHECK(json_object_get_int64(v) == next_after);
	} else {
		FZ_CHECK(v == NULL);
	}
	json_object_put(o);
	gw_buf_fini(&b);

	gw_buf_init(&b);
	FZ_CHECK(gw_json_problem(&b, status, detail, reqid) == CM_OK);
	o = fz_parse_reply(&b);
	check_str(o, "detail", detail);
	check_str(o, "request_id", reqid);
	json_object_put(o);
	gw_buf_fini(&b);

	gw_buf_init(&b);
	FZ_CHECK(gw_json_status(&b, detail) == CM_OK);
	o = fz_parse_reply(&b);
	check_str(o, "status", detail);
	json_object_put(o);
	gw_buf_fini(&b);

	free(prod.sku);
	free(prod.name);
	free(prod.description);
	free(prod.currency);
	free(detail);
	free(reqid);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1) {
		return 0;
	}
	switch (data[0] % 6) {
	case 0:
		fuzz_route(data + 1, size - 1);
		break;
	case 1:
		fuzz_inm(data + 1, size - 1);
		break;
	case 2:
		fuzz_ifm(data + 1, size - 1);
		break;
	case 3:
		fuzz_values(data + 1, size - 1);
		break;
	case 4:
		fuzz_trace(data + 1, size - 1);
		break;
	default:
		fuzz_render(data + 1, size - 1);
		break;
	}
	return 0;
}
