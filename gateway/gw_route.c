/* gw_route.c - maps an HTTP method, path and query to a product RPC. */
#include <stdio.h>
#include <string.h>

#include "cm.h"
#include "gw.h"

/* Which query parameters a route takes. */
#define Q_IGNORE 0 /* the query string is not looked at */
#define Q_LIST   1 /* limit and after, nothing else */

/* One row per (path template, methods). A path may have several rows, one
 * per RPC; the Allow header of a 405 is the union of a path's rows. This
 * table is the truth that `gateway --list-routes` prints and the OpenAPI
 * check (tools/openapi) compares with gateway/openapi.yaml. */
typedef struct route_row {
	const char *tmpl; /* literal path; "{id}" matches one segment */
	unsigned    methods;
	gw_route_id id;
	int         query;
} route_row;

static const route_row routes[] = {
    {"/healthz", GW_M_GET | GW_M_HEAD, GW_ROUTE_HEALTHZ, Q_IGNORE},
    {"/readyz", GW_M_GET | GW_M_HEAD, GW_ROUTE_READYZ, Q_IGNORE},
    {"/products", GW_M_GET | GW_M_HEAD, GW_ROUTE_PRODUCT_LIST, Q_LIST},
    {"/products", GW_M_POST, GW_ROUTE_PRODUCT_CREATE, Q_IGNORE},
    {"/products/{id}", GW_M_GET | GW_M_HEAD, GW_ROUTE_PRODUCT_GET, Q_IGNORE},
    {"/products/{id}", GW_M_PUT, GW_ROUTE_PRODUCT_REPLACE, Q_IGNORE},
    {"/products/{id}", GW_M_PATCH, GW_ROUTE_PRODUCT_PATCH, Q_IGNORE},
    {"/products/{id}", GW_M_DELETE, GW_ROUTE_PRODUCT_DELETE, Q_IGNORE},
};

#define NROUTES (sizeof(routes) / sizeof(routes[0]))

/* In the order an Allow header lists them. */
static const unsigned method_order[] = {GW_M_GET, GW_M_HEAD, GW_M_POST,
    GW_M_PUT, GW_M_PATCH, GW_M_DELETE, GW_M_OPTIONS};

const char *
gw_method_name(unsigned m)
{
	switch (m) {
	case GW_M_GET:
		return "GET";
	case GW_M_HEAD:
		return "HEAD";
	case GW_M_POST:
		return "POST";
	case GW_M_PUT:
		return "PUT";
	case GW_M_PATCH:
		return "PATCH";
	case GW_M_DELETE:
		return "DELETE";
	case GW_M_OPTIONS:
		return "OPTIONS";
	}
	return "-";
}

/* Returns 1 when path matches tmpl segment for segment, capturing the text
 * that "{id}" matched (possibly empty) in *cap / *caplen. */
static int
match_tmpl(
    const char *tmpl, const char *path, const char **cap, size_t *caplen)
{
	*cap = NULL;
	*caplen = 0;
	while (*tmpl != '\0') {
		if (strncmp(tmpl, "{id}", 4) == 0) {
			size_t n = strcspn(path, "/");
			*cap = path;
			*caplen = n;
			path += n;
			tmpl += 4;
			continue;
		}
		if (*tmpl != *path) {
			return 0;
		}
		tmpl++;
		path++;
	}
	return *path == '\0';
}

static void
fail(gw_route *out, int status, const char *detail)
{
	out->id = GW_ROUTE_NONE;
	out->status = status;
	snprintf(out->detail, sizeof(out->detail), "%s", detail);
}

/* Parses a non-negative int64 ("0" or a strict positive id). */
static int
parse_nonneg(const char *s, size_t len, int64_t *out)
{
	if (len == 1 && s[0] == '0') {
		*out = 0;
		return CM_OK;
	}
	return cm_parse_id(s, len, out);
}

/* Parses the query of GET /products: limit=1..100, after>=0, each at most
 * once, nothing else. Values are taken literally (no percent-decoding):
 * they must be plain digits anyway. Returns 0 or fills the 400 in out. */
static int
parse_list_query(const char *q, gw_route *out)
{
	int seen_limit = 0, seen_after = 0;

	out->limit = GW_LIST_LIMIT_DEFAULT;
	out->after = 0;
	if (q == NULL || q[0] == '\0') {
		return 0;
	}
	for (;;) {
		size_t      seglen = strcspn(q, "&");
		const char *eq = memchr(q, '=', seglen);
		size_t      klen, vlen;
		const char *v;
		int64_t     n;

		if (eq == NULL) {
			fail(out, 400,
			    seglen == 0 ? "empty query parameter"
			                : "query parameter without a value");
			return -1;
		}
		klen = (size_t) (eq - q);
		v = eq + 1;
		vlen = seglen - klen - 1;
		if (klen == 5 && memcmp(q, "limit", 5) == 0) {
			if (seen_limit++ ||
			    cm_parse_id(v, vlen, &n) != CM_OK ||
			    n > GW_LIST_LIMIT_MAX) {
				fail(out, 400,
				    "limit must be given once, as an integer "
				    "from 1 to 100");
				return -1;
			}
			out->limit = (int32_t) n;
		} else if (klen == 5 && memcmp(q, "after", 5) == 0) {
			if (seen_after++ ||
			    parse_nonneg(v, vlen, &n) != CM_OK) {
				fail(out, 400,
				    "after must be given once, as a "
				    "non-negative 64-bit integer");
				return -1;
			}
			out->after = n;
		} else {
			out->id = GW_ROUTE_NONE;
			out->status = 400;
			snprintf(out->detail, sizeof(out->detail),
			    "unknown query parameter '%.*s'",
			    (int) (klen > 32 ? 32 : klen), q);
			return -1;
		}
		if (q[seglen] == '\0') {
			return 0;
		}
		q += seglen + 1;
	}
}

static void
build_allow(unsigned methods, char *buf, size_t len)
{
	size_t off = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(method_order) / sizeof(method_order[0]);
	     i++) {
		if ((methods & method_order[i]) == 0) {
			continue;
		}
		int n = snprintf(buf + off, len - off, "%s%s",
		    off > 0 ? ", " : "", gw_method_name(method_order[i]));
		if (n < 0 || (size_t) n >= len - off) {
			return;
		}
		off += (size_t) n;
	}
}

void
gw_route_print(FILE *f)
{
	for (size_t i = 0; i < NROUTES; i++) {
		for (size_t j = 0;
		     j < sizeof(method_order) / sizeof(method_order[0]); j++) {
			if ((routes[i].methods & method_order[j]) != 0) {
				fprintf(f, "%s %s\n",
				    gw_method_name(method_order[j]),
				    routes[i].tmpl);
			}
		}
	}
}

void
gw_route_match(
    unsigned method, const char *path, const char *query, gw_route *out)
{
	unsigned         allowed = 0;
	const route_row *hit = NULL;
	const char      *cap = NULL;
	size_t           caplen = 0;

	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < NROUTES; i++) {
		const char *c;
		size_t      cl;
		if (!match_tmpl(routes[i].tmpl, path, &c, &cl)) {
			continue;
		}
		allowed |= routes[i].methods;
		if (hit == NULL && (routes[i].methods & method) != 0) {
			hit = &routes[i];
			cap = c;
			caplen = cl;
		}
	}
	if (allowed == 0) {
		fail(out, 404, "no such resource");
		return;
	}
	if (hit == NULL) {
		fail(out, 405, "method not allowed on this resource");
		build_allow(allowed, out->allow, sizeof(out->allow));
		return;
	}
	out->id = hit->id;
	if (cap != NULL &&
	    cm_parse_id(cap, caplen, &out->product_id) != CM_OK) {
		fail(out, 400,
		    "product id must be a positive 64-bit integer without "
		    "sign or leading zeros");
		return;
	}
	if (hit->query == Q_LIST && parse_list_query(query, out) != 0) {
		return;
	}
}

/* ---- If-None-Match ---- */

static int
is_ows(char c)
{
	return c == ' ' || c == '\t';
}

/* etagc = %x21 / %x23-7E / obs-text (RFC 9110). */
static int
is_etagc(unsigned char c)
{
	return c == 0x21 || (c >= 0x23 && c <= 0x7e) || c >= 0x80;
}

static void
inm_add(gw_inm *inm, const char *tag, size_t len)
{
	int64_t v;
	if (cm_parse_id(tag, len, &v) != CM_OK || v > INT32_MAX) {
		return; /* a valid tag, but not one of ours */
	}
	if (inm->n < GW_INM_MAX) {
		inm->versions[inm->n++] = (int32_t) v;
	}
}

void
gw_inm_parse(const char *value, gw_inm *inm)
{
	const char *p = value;
	int         nitems = 0;

	if (value == NULL) {
		return;
	}
	for (;;) {
		while (is_ows(*p) || *p == ',') {
			p++;
		}
		if (*p == '\0') {
			break;
		}
		if (*p == '*') {
			inm->any = 1;
			p++;
		} else {
			const char *tag;
			if (p[0] == 'W' && p[1] == '/') {
				p += 2;
			}
			if (*p != '"') {
				goto bad;
			}
			tag = ++p;
			while (is_etagc((unsigned char) *p)) {
				p++;
			}
			if (*p != '"') {
				goto bad;
			}
			inm_add(inm, tag, (size_t) (p - tag));
			p++;
		}
		nitems++;
		while (is_ows(*p)) {
			p++;
		}
		if (*p != ',' && *p != '\0') {
			goto bad;
		}
	}
	if (nitems > 0) {
		inm->present = 1;
	}
	return;
bad:
	inm->malformed = 1;
}

int
gw_inm_match(const gw_inm *inm, int32_t version)
{
	if (!inm->present || inm->malformed) {
		return 0;
	}
	if (inm->any) {
		return 1;
	}
	for (size_t i = 0; i < inm->n; i++) {
		if (inm->versions[i] == version) {
			return 1;
		}
	}
	return 0;
}

int32_t
gw_inm_hint(const gw_inm *inm)
{
	int32_t best = 0;
	if (!inm->present || inm->malformed || inm->any) {
		return 0;
	}
	for (size_t i = 0; i < inm->n; i++) {
		if (inm->versions[i] > best) {
			best = inm->versions[i];
		}
	}
	return best;
}
