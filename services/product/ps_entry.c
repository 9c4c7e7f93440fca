/* ps_entry.c - the cache entry format ("P<version>:" + protobuf, or "N")
 * and the jittered TTLs, kept apart from Redis so they can be tested. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm.h"
#include "ps.h"

/* Encodes p as a positive entry, or a negative entry ("N") when p is NULL.
 * Returns CM_OK with a malloc'd *out of *len bytes (the caller frees it), or
 * CM_ENOMEM / CM_EINVAL (version not positive). */
int
ps_entry_encode(const Catalog__Product *p, uint8_t **out, size_t *len)
{
	char     prefix[16];
	int      n;
	size_t   body;
	uint8_t *buf;

	if (p == NULL) {
		if ((buf = malloc(PS_ENTRY_NEGATIVE_LEN)) == NULL) {
			return CM_ENOMEM;
		}
		memcpy(buf, PS_ENTRY_NEGATIVE, PS_ENTRY_NEGATIVE_LEN);
		*out = buf;
		*len = PS_ENTRY_NEGATIVE_LEN;
		return CM_OK;
	}
	if (p->version <= 0) {
		return CM_EINVAL;
	}
	n = snprintf(prefix, sizeof(prefix), "P%d:", (int) p->version);
	body = catalog__product__get_packed_size(p);
	if ((buf = malloc((size_t) n + body)) == NULL) {
		return CM_ENOMEM;
	}
	memcpy(buf, prefix, (size_t) n);
	catalog__product__pack(p, buf + n);
	*out = buf;
	*len = (size_t) n + body;
	return CM_OK;
}

/* Decodes a cache entry. Returns CM_OK with *out (the caller frees it with
 * ps_msg_product_free()) and *version for a positive entry, CM_ENOTFOUND for
 * a negative one, or CM_EPROTO when the bytes are not a well-formed entry:
 * bad prefix, bad version, a protobuf that does not decode or whose version
 * differs from the prefix. */
int
ps_entry_decode(
    const uint8_t *data, size_t len, Catalog__Product **out, int *version)
{
	size_t            i;
	long long         v = 0;
	Catalog__Product *p;

	if (len == PS_ENTRY_NEGATIVE_LEN && data[0] == PS_ENTRY_NEGATIVE[0]) {
		return CM_ENOTFOUND;
	}
	if (len < 3 || data[0] != 'P' || data[1] == '0') {
		return CM_EPROTO;
	}
	for (i = 1; i < len && data[i] >= '0' && data[i] <= '9'; i++) {
		v = v * 10 + (data[i] - '0');
		if (v > INT32_MAX) {
			return CM_EPROTO;
		}
	}
	if (i == 1 || i >= len || data[i] != ':') {
		return CM_EPROTO;
	}
	i++;
	p = catalog__product__unpack(NULL, len - i, data + i);
	if (p == NULL) {
		return CM_EPROTO;
	}
	if (p->version != (int32_t) v || p->id <= 0) {
		catalog__product__free_unpacked(p, NULL);
		return CM_EPROTO;
	}
	*out = p;
	*version = (int) v;
	return CM_OK;
}

/* Returns ttl_s seconds in milliseconds with uniform jitter of +-10%, drawn
 * from rnd, so entries filled together do not all expire together. Never
 * less than 1 ms. */
long long
ps_entry_ttl_ms(long long ttl_s, uint64_t rnd)
{
	long long base = ttl_s * 1000;
	long long low = base - base / 10;
	long long span = base / 10 * 2; /* low + span = base + base / 10 */
	long long ms = low + (long long) (rnd % (uint64_t) (span + 1));
	return ms < 1 ? 1 : ms;
}

/* xorshift64: cheap, per-thread, and good enough for TTL jitter. A zero
 * state is replaced by a fixed odd constant. */
uint64_t
ps_rand_next(uint64_t *state)
{
	uint64_t s = *state;
	if (s == 0) {
		s = 0x9e3779b97f4a7c15ULL;
	}
	s ^= s << 13;
	s ^= s >> 7;
	s ^= s << 17;
	*state = s;
	return s;
}
