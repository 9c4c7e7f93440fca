/* gw_auth.c - API keys: the keys file, constant-time matching, and the
 * key set that SIGHUP replaces while the loops read it.
 *
 * The gateway never holds a key, only SHA-256 digests of the valid ones
 * (GATEWAY_API_KEYS_FILE). A presented key is hashed and its digest
 * compared with every stored digest in full, so that neither the position
 * of a match nor how many bytes of a near miss agree shows in the time.
 *
 * Reload without a lock on the request path: the current set is an atomic
 * pointer, and each loop announces the set it is reading in a hazard slot
 * of its own (read the pointer, publish it, read again until both agree).
 * The reloading thread swaps the pointer, then waits until no slot still
 * names the old set before freeing it. A loop holds its slot only for one
 * match (microseconds), so that wait is short; with sequentially
 * consistent atomics a loop either sees the new set or is seen using the
 * old one.
 */
#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <mbedtls/sha256.h>

#include "cm.h"
#include "cm_log.h"
#include "gw.h"

struct gw_keyset {
	size_t n;
	uint8_t (*digests)[GW_AUTH_DIGEST_LEN];
};

/* One reader's hazard slot, on a cache line of its own. */
typedef struct hazard {
	_Atomic(gw_keyset *) p;
	char                 pad[64 - sizeof(void *)];
} hazard;

struct gw_auth {
	char                *path; /* NULL: no keys file */
	int                  auth_reads;
	int                  nslots;
	_Atomic(gw_keyset *) cur;
	hazard              *slots;
};

/* ---- the key set ---- */

static int
hexval(char c)
{
	if (c >= '0' && c <= '9') {
		return c - '0';
	}
	if (c >= 'a' && c <= 'f') {
		return c - 'a' + 10;
	}
	return -1;
}

static int
is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

void
gw_keyset_free(gw_keyset *ks)
{
	if (ks == NULL) {
		return;
	}
	free(ks->digests);
	free(ks);
}

/* Adds the digest in hex[0..64) to ks, growing its array. */
static int
add_digest(gw_keyset *ks, size_t *cap, const char *hex)
{
	if (ks->n == *cap) {
		size_t ncap = *cap == 0 ? 16 : *cap * 2;
		void  *p = realloc(ks->digests, ncap * GW_AUTH_DIGEST_LEN);
		if (p == NULL) {
			return CM_ENOMEM;
		}
		ks->digests = p;
		*cap = ncap;
	}
	for (int i = 0; i < GW_AUTH_DIGEST_LEN; i++) {
		ks->digests[ks->n][i] = (uint8_t) (hexval(hex[2 * i]) << 4 |
		    hexval(hex[2 * i + 1]));
	}
	ks->n++;
	return CM_OK;
}

int
gw_keyset_parse(
    const char *text, size_t len, gw_keyset **out, char *err, size_t errlen)
{
	gw_keyset  *ks = calloc(1, sizeof(*ks));
	size_t      cap = 0, lineno = 0;
	const char *p = text, *end = text + len;

	if (ks == NULL) {
		return CM_ENOMEM;
	}
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t) (end - p));
		const char *b = p, *e = nl != NULL ? nl : end;
		size_t      n, i;

		p = nl != NULL ? nl + 1 : end;
		lineno++;
		while (b < e && is_blank(*b)) {
			b++;
		}
		while (e > b && is_blank(e[-1])) {
			e--;
		}
		if (b == e || *b == '#') {
			continue;
		}
		n = (size_t) (e - b);
		for (i = 0; i < n && hexval(b[i]) >= 0; i++) { }
		if (n != 2 * GW_AUTH_DIGEST_LEN || i != n) {
			snprintf(err, errlen,
			    "line %zu: want a SHA-256 digest (64 lowercase "
			    "hex characters), a blank line or a # comment",
			    lineno);
			gw_keyset_free(ks);
			return CM_EINVAL;
		}
		if (ks->n >= GW_AUTH_KEYS_MAX) {
			snprintf(err, errlen, "more than %d keys",
			    GW_AUTH_KEYS_MAX);
			gw_keyset_free(ks);
			return CM_EINVAL;
		}
		if (add_digest(ks, &cap, b) != CM_OK) {
			gw_keyset_free(ks);
			return CM_ENOMEM;
		}
	}
	*out = ks;
	return CM_OK;
}

int
gw_keyset_load(const char *path, gw_keyset **out, char *err, size_t errlen)
{
	FILE  *f = fopen(path, "r");
	char  *text = NULL;
	size_t len = 0;
	int    rv;

	if (f == NULL) {
		snprintf(
		    err, errlen, "cannot open %s: %s", path, strerror(errno));
		return CM_EINVAL;
	}
	/* One byte more than the limit tells a file that is too large. */
	if ((text = malloc(GW_AUTH_FILE_MAX + 1)) == NULL) {
		fclose(f);
		return CM_ENOMEM;
	}
	len = fread(text, 1, GW_AUTH_FILE_MAX + 1, f);
	if (ferror(f)) {
		snprintf(
		    err, errlen, "cannot read %s: %s", path, strerror(errno));
		rv = CM_EINVAL;
	} else if (len > GW_AUTH_FILE_MAX) {
		snprintf(err, errlen, "%s is larger than %d bytes", path,
		    GW_AUTH_FILE_MAX);
		rv = CM_EINVAL;
	} else {
		char msg[160];
		rv = gw_keyset_parse(text, len, out, msg, sizeof(msg));
		if (rv == CM_EINVAL) {
			snprintf(err, errlen, "%s: %s", path, msg);
		}
	}
	fclose(f);
	free(text);
	return rv;
}

size_t
gw_keyset_count(const gw_keyset *ks)
{
	return ks->n;
}

int
gw_keyset_match(const gw_keyset *ks, const uint8_t digest[GW_AUTH_DIGEST_LEN])
{
	unsigned found = 0;

	for (size_t k = 0; k < ks->n; k++) {
		unsigned diff = 0;
		for (int i = 0; i < GW_AUTH_DIGEST_LEN; i++) {
			diff |= (unsigned) (ks->digests[k][i] ^ digest[i]);
		}
		/* 1 when diff is 0, without a branch: diff - 1 wraps
		 * and sets bit 8 only for 0. */
		found |= ((diff - 1) >> 8) & 1;
	}
	return (int) found;
}

/* ---- keys in requests ---- */

void
gw_auth_digest(const char *key, size_t len, uint8_t out[GW_AUTH_DIGEST_LEN])
{
	/* mbedTLS 2.28; the _ret form cannot fail for SHA-256 in
	 * software, but a failure must not leave out half written. */
	if (mbedtls_sha256_ret((const unsigned char *) key, len, out, 0) !=
	    0) {
		memset(out, 0, GW_AUTH_DIGEST_LEN);
	}
}

static int
token68_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
	    c == '~' || c == '+' || c == '/';
}

int
gw_auth_bearer(const char *value, const char **key, size_t *len)
{
	const char *t;
	size_t      n = 0;

	if (value == NULL || strncasecmp(value, "Bearer", 6) != 0 ||
	    (value[6] != ' ' && value[6] != '\0')) {
		return 0;
	}
	for (t = value + 6; *t == ' '; t++) { }
	while (token68_char((unsigned char) t[n])) {
		n++;
	}
	while (t[n] == '=') { /* token68 may end in padding */
		n++;
	}
	if (n == 0 || n > GW_AUTH_KEY_MAX) {
		return -1;
	}
	/* Trailing spaces are allowed (evhttp keeps them), nothing else. */
	for (size_t i = n; t[i] != '\0'; i++) {
		if (t[i] != ' ' && t[i] != '\t') {
			return -1;
		}
	}
	*key = t;
	*len = n;
	return 1;
}

/* ---- the shared, reloadable set ---- */

int
gw_auth_new(gw_auth **out, const char *path, int auth_reads, int nslots,
    char *err, size_t errlen)
{
	gw_auth   *a;
	gw_keyset *ks = NULL;
	int        rv;

	if (nslots < 1) {
		nslots = 1;
	}
	if ((a = calloc(1, sizeof(*a))) == NULL ||
	    (a->slots = calloc((size_t) nslots, sizeof(*a->slots))) == NULL) {
		free(a);
		return CM_ENOMEM;
	}
	a->auth_reads = auth_reads;
	a->nslots = nslots;
	if (path != NULL && path[0] != '\0') {
		if ((a->path = strdup(path)) == NULL) {
			rv = CM_ENOMEM;
			goto fail;
		}
		rv = gw_keyset_load(path, &ks, err, errlen);
	} else {
		rv = gw_keyset_parse("", 0, &ks, err, errlen);
	}
	if (rv != CM_OK) {
		goto fail;
	}
	atomic_store(&a->cur, ks);
	for (int i = 0; i < nslots; i++) {
		atomic_store(&a->slots[i].p, NULL);
	}
	*out = a;
	return CM_OK;
fail:
	free(a->path);
	free(a->slots);
	free(a);
	return rv;
}

int
gw_auth_reload(gw_auth *a, char *err, size_t errlen)
{
	gw_keyset *ks, *old;
	int        rv;

	if (a->path == NULL) {
		return CM_OK; /* nothing to read: no keys, as at start */
	}
	if ((rv = gw_keyset_load(a->path, &ks, err, errlen)) != CM_OK) {
		return rv;
	}
	old = atomic_exchange(&a->cur, ks);
	/* A loop that still reads old named it in its slot before it read
	 * the pointer a second time; wait for it to finish its match. */
	for (int i = 0; i < a->nslots; i++) {
		while (atomic_load(&a->slots[i].p) == old) {
			sched_yield();
		}
	}
	gw_keyset_free(old);
	return CM_OK;
}

size_t
gw_auth_keys(gw_auth *a)
{
	/* Only the reloading thread frees sets, and this runs on it. */
	return gw_keyset_count(atomic_load(&a->cur));
}

/* Matches digest against the current set from reader slot. */
static int
match_current(gw_auth *a, int slot, const uint8_t *digest)
{
	_Atomic(gw_keyset *) *hp = &a->slots[slot].p;
	gw_keyset            *ks;
	int                   found;

	do {
		ks = atomic_load(&a->cur);
		atomic_store(hp, ks);
	} while (ks != atomic_load(&a->cur));
	found = gw_keyset_match(ks, digest);
	atomic_store(hp, NULL);
	return found;
}

gw_auth_result
gw_auth_check(gw_auth *a, int slot, int write, const char *authz, int nauthz,
    char client[GW_CLIENT_MAX])
{
	int            need = write || a->auth_reads;
	const char    *key;
	size_t         len;
	uint8_t        digest[GW_AUTH_DIGEST_LEN];
	int            b;
	gw_auth_result r;

	if (slot < 0 || slot >= a->nslots) {
		slot = 0;
	}
	b = nauthz == 1 ? gw_auth_bearer(authz, &key, &len)
	                : (nauthz > 1 ? -1 : 0);
	if (b == 0) {
		r = need ? GW_AUTH_MISSING : GW_AUTH_ANON;
	} else if (b < 0) {
		/* A public read with a broken header is still public. */
		r = need ? GW_AUTH_INVALID : GW_AUTH_ANON;
	} else {
		gw_auth_digest(key, len, digest);
		if (match_current(a, slot, digest)) {
			/* The id is a prefix of the digest: logs and Redis
			 * keys never see the key itself. */
			memcpy(client, "k:", 2);
			for (int i = 0; i < 8; i++) {
				snprintf(
				    client + 2 + 2 * i, 3, "%02x", digest[i]);
			}
			return GW_AUTH_KEY;
		}
		r = need ? GW_AUTH_INVALID : GW_AUTH_ANON;
	}
	if (r != GW_AUTH_ANON) {
		gw_metrics_auth_failure(r);
	}
	return r;
}

void
gw_auth_free(gw_auth *a)
{
	if (a == NULL) {
		return;
	}
	gw_keyset_free(atomic_load(&a->cur));
	free(a->slots);
	free(a->path);
	free(a);
}
