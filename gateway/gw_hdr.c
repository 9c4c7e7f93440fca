/* gw_hdr.c - parses the request headers of the write routes: Content-Type,
 * If-Match and Idempotency-Key. Pure functions, no allocation. */
#include <string.h>
#include <strings.h>

#include "cm.h"
#include "gw.h"

static int
is_ows(char c)
{
	return c == ' ' || c == '\t';
}

/* tchar of RFC 9110 5.6.2. */
static int
is_tchar(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	    (c >= 'A' && c <= 'Z') ||
	    (c != '\0' && strchr("!#$%&'*+-.^_`|~", c));
}

static size_t
token_len(const char *p)
{
	size_t n = 0;
	while (is_tchar((unsigned char) p[n])) {
		n++;
	}
	return n;
}

/* Compares the token p[0..n) with s, ignoring case. */
static int
token_is(const char *p, size_t n, const char *s)
{
	return strlen(s) == n && strncasecmp(p, s, n) == 0;
}

/* Skips one parameter value: a token or a quoted string. Returns the end,
 * or NULL when it is malformed. Sets *utf8 when the value is "utf-8". */
static const char *
skip_param_value(const char *p, int *utf8)
{
	size_t n;

	if (*p != '"') {
		n = token_len(p);
		*utf8 = token_is(p, n, "utf-8");
		return n > 0 ? p + n : NULL;
	}
	for (const char *q = ++p; *q != '\0'; q++) {
		if (*q == '\\') {
			if (*++q == '\0') {
				return NULL;
			}
		} else if (*q == '"') {
			*utf8 = token_is(p, (size_t) (q - p), "utf-8");
			return q + 1;
		}
	}
	return NULL;
}

gw_ctype
gw_hdr_ctype(const char *value)
{
	const char *p = value, *type, *sub;
	size_t      tlen, slen;
	gw_ctype    ct;

	if (value == NULL) {
		return GW_CT_OTHER;
	}
	while (is_ows(*p)) {
		p++;
	}
	type = p;
	if ((tlen = token_len(p)) == 0 || p[tlen] != '/') {
		return GW_CT_OTHER;
	}
	sub = p + tlen + 1;
	if ((slen = token_len(sub)) == 0) {
		return GW_CT_OTHER;
	}
	if (!token_is(type, tlen, "application")) {
		return GW_CT_OTHER;
	}
	if (token_is(sub, slen, "json")) {
		ct = GW_CT_JSON;
	} else if (token_is(sub, slen, "merge-patch+json")) {
		ct = GW_CT_MERGE_PATCH;
	} else {
		return GW_CT_OTHER;
	}
	p = sub + slen;
	for (;;) {
		const char *name;
		size_t      nlen;
		int         utf8 = 0;

		while (is_ows(*p)) {
			p++;
		}
		if (*p == '\0') {
			return ct;
		}
		if (*p++ != ';') {
			return GW_CT_OTHER;
		}
		while (is_ows(*p)) {
			p++;
		}
		if (*p == '\0') {
			return ct; /* a trailing ";" is tolerated */
		}
		name = p;
		if ((nlen = token_len(p)) == 0 || p[nlen] != '=') {
			return GW_CT_OTHER;
		}
		if ((p = skip_param_value(p + nlen + 1, &utf8)) == NULL) {
			return GW_CT_OTHER;
		}
		/* JSON is UTF-8 (RFC 8259 8.1); any other charset is a
		 * representation we cannot read. */
		if (token_is(name, nlen, "charset") && !utf8) {
			return GW_CT_OTHER;
		}
	}
}

int
gw_hdr_idem_ok(const char *s)
{
	size_t n = 0;

	if (s == NULL) {
		return 0;
	}
	for (; s[n] != '\0'; n++) {
		unsigned char c = (unsigned char) s[n];
		if (c < 0x21 || c > 0x7e || n >= GW_IDEM_KEY_MAX) {
			return 0;
		}
	}
	return n > 0;
}

/* etagc = %x21 / %x23-7E / obs-text (RFC 9110 8.8.3). */
static int
is_etagc(unsigned char c)
{
	return c == 0x21 || (c >= 0x23 && c <= 0x7e) || c >= 0x80;
}

static void
ifm_tag(gw_ifm *ifm, int weak, const char *tag, size_t len)
{
	int64_t v;

	if (weak || cm_parse_id(tag, len, &v) != CM_OK || v > INT32_MAX) {
		ifm->others++; /* well-formed, but it can never match */
		return;
	}
	if (ifm->n == 0) {
		ifm->version = (int32_t) v;
		ifm->n = 1;
	} else if (ifm->version != (int32_t) v) {
		ifm->n++;
	}
}

void
gw_hdr_ifm_add(const char *value, gw_ifm *ifm)
{
	const char *p = value;
	int         nitems = 0;

	ifm->present = 1;
	if (value == NULL) {
		goto bad;
	}
	for (;;) {
		while (is_ows(*p) || *p == ',') {
			p++;
		}
		if (*p == '\0') {
			break;
		}
		if (*p == '*') {
			ifm->any = 1;
			p++;
		} else {
			const char *tag;
			int         weak = 0;
			if (p[0] == 'W' && p[1] == '/') {
				weak = 1;
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
			ifm_tag(ifm, weak, tag, (size_t) (p - tag));
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
		return;
	}
bad:
	ifm->malformed = 1;
}

int
gw_hdr_ifm_eval(const gw_ifm *ifm, int32_t *version, const char **detail)
{
	*version = 0;
	*detail = NULL;
	if (!ifm->present) {
		return 0;
	}
	if (ifm->malformed) {
		*detail = "If-Match must be \"*\" or a list of entity tags "
		          "such as \"3\"";
		return 400;
	}
	if (ifm->any) {
		if (ifm->n > 0 || ifm->others > 0) {
			*detail = "If-Match \"*\" cannot be combined with "
			          "entity tags";
			return 400;
		}
		return 0;
	}
	if (ifm->n > 1) {
		*detail = "If-Match may name only one version of the product";
		return 400;
	}
	if (ifm->n == 0) {
		*detail = "If-Match names no current version: weak or "
		          "unknown entity tags never match";
		return 412;
	}
	*version = ifm->version;
	return 0;
}
