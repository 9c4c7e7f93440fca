/* cm_redis_url.c - parses the redis:// URLs of REDIS_URL and
 * GATEWAY_REDIS_URL. */
#include <limits.h>
#include <string.h>

#include "cm.h"
#include "cm_redis_url.h"

static int
copy_part(char *dst, size_t cap, const char *s, size_t n)
{
	if (n >= cap) {
		return CM_EINVAL;
	}
	memcpy(dst, s, n);
	dst[n] = '\0';
	return CM_OK;
}

static int
hex_digit(char c)
{
	if (c >= '0' && c <= '9') {
		return c - '0';
	}
	if (c >= 'a' && c <= 'f') {
		return c - 'a' + 10;
	}
	if (c >= 'A' && c <= 'F') {
		return c - 'A' + 10;
	}
	return -1;
}

/* copy_part() for the user info, which may carry percent-encoded bytes
 * (RFC 3986: a password with '/', '?', '#', '@' or ':' must be written
 * as %2F, %3F, %23, %40, %3A). A bad escape or an encoded NUL is refused. */
static int
copy_decoded(char *dst, size_t cap, const char *s, size_t n)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char) s[i];
		if (c == '%') {
			int hi, lo;
			if (i + 2 >= n) {
				return CM_EINVAL;
			}
			hi = hex_digit(s[i + 1]);
			lo = hex_digit(s[i + 2]);
			if (hi < 0 || lo < 0 || (hi | lo) == 0) {
				return CM_EINVAL;
			}
			c = hi * 16 + lo;
			i += 2;
		}
		if (o + 1 >= cap) {
			return CM_EINVAL;
		}
		dst[o++] = (char) c;
	}
	dst[o] = '\0';
	return CM_OK;
}

static int
parse_uint(const char *s, size_t n, long max, long *out)
{
	long v = 0;
	if (n == 0 || n > 9) {
		return CM_EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9') {
			return CM_EINVAL;
		}
		v = v * 10 + (s[i] - '0');
	}
	if (v > max) {
		return CM_EINVAL;
	}
	*out = v;
	return CM_OK;
}

/* Parses redis://[[user]:password@]host[:port][/db] into *out (port 6379
 * and db 0 when absent; host may be a bracketed IPv6 address). Returns
 * CM_OK or CM_EINVAL. */
int
cm_redis_url_parse(const char *url, cm_redis_url *out)
{
	const char *p, *end, *at, *host, *hend;
	long        v;

	if (url == NULL || out == NULL) {
		return CM_EINVAL;
	}
	memset(out, 0, sizeof(*out));
	out->port = 6379;
	if (strncmp(url, "redis://", 8) != 0) {
		return CM_EINVAL;
	}
	p = url + 8;
	end = p + strcspn(p, "/?#");
	at = NULL;
	for (const char *q = p; q < end; q++) {
		if (*q == '@') {
			at = q; /* the last '@' ends the user info */
		}
	}
	if (at != NULL) {
		const char *colon = memchr(p, ':', (size_t) (at - p));
		if (colon != NULL) {
			if (copy_decoded(out->user, sizeof(out->user), p,
			        (size_t) (colon - p)) != CM_OK ||
			    copy_decoded(out->pass, sizeof(out->pass),
			        colon + 1,
			        (size_t) (at - colon - 1)) != CM_OK) {
				return CM_EINVAL;
			}
		} else if (copy_decoded(out->pass, sizeof(out->pass), p,
		               (size_t) (at - p)) != CM_OK) {
			return CM_EINVAL;
		}
		p = at + 1;
	}
	if (*p == '[') {
		host = p + 1;
		hend = memchr(host, ']', (size_t) (end - host));
		if (hend == NULL) {
			return CM_EINVAL;
		}
		p = hend + 1;
	} else {
		host = p;
		hend = memchr(p, ':', (size_t) (end - p));
		if (hend == NULL) {
			hend = end;
		}
		p = hend;
	}
	if (hend == host ||
	    copy_part(out->host, sizeof(out->host), host,
	        (size_t) (hend - host)) != CM_OK) {
		return CM_EINVAL;
	}
	if (p < end) {
		if (*p != ':' ||
		    parse_uint(p + 1, (size_t) (end - p - 1), 65535, &v) !=
		        CM_OK ||
		    v == 0) {
			return CM_EINVAL;
		}
		out->port = (int) v;
	}
	if (*end == '\0') {
		return CM_OK;
	}
	if (*end != '/') {
		return CM_EINVAL; /* no query strings or fragments */
	}
	if (end[1] == '\0') {
		return CM_OK;
	}
	if (parse_uint(end + 1, strlen(end + 1), INT_MAX, &v) != CM_OK) {
		return CM_EINVAL;
	}
	out->db = (int) v;
	return CM_OK;
}
