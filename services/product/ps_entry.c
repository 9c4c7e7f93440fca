/* ps_entry.c - the cache entry format and the jittered TTLs, kept apart
 * from Redis so they can be tested.
 *
 * A product is "P<version>:<fresh_until>:" followed by the packed
 * catalog.Product, fresh_until being the Unix second its freshness ends
 * (RFC 5861: past it, the entry may only answer when PostgreSQL fails).
 * "No such product" is "N". The Lua scripts read the version with
 * ^P(%d+): and the freshness with ^P%d+:(%d+):. The first format,
 * "P<version>:" + protobuf, still decodes (fresh until Redis expires it):
 * its protobuf starts with the id's tag byte 0x08, never a digit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm.h"
#include "ps.h"

/* Encodes p as a positive entry fresh until the Unix second fresh_until_s,
 * or a negative entry ("N") when p is NULL. Returns CM_OK with a malloc'd
 * *out of *len bytes (the caller frees it), or CM_ENOMEM / CM_EINVAL
 * (version or fresh_until_s not positive). */
int
ps_entry_encode(const Catalog__Product *p, int64_t fresh_until_s,
    uint8_t **out, size_t *len)
{
	char     prefix[48];
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
	if (p->version <= 0 || fresh_until_s <= 0) {
		return CM_EINVAL;
	}
	n = snprintf(prefix, sizeof(prefix), "P%d:%lld:", (int) p->version,
	    (long long) fresh_until_s);
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

/* Frees the fields of m that this schema does not know. protobuf-c keeps
 * them as they came and packs them again, into the Response the gateway
 * decodes; and it accepts some that do not decode again (field number 0
 * in a tag of two bytes, found by fuzz_entry), which would fail the
 * gateway's whole BatchReply. An entry from a newer schema keeps the
 * fields we know. Unpacked with the default allocator: free(). */
static void
drop_unknown(ProtobufCMessage *m)
{
	for (unsigned i = 0; i < m->n_unknown_fields; i++) {
		free(m->unknown_fields[i].data);
	}
	free(m->unknown_fields);
	m->unknown_fields = NULL;
	m->n_unknown_fields = 0;
}

/* Decodes a cache entry. Returns CM_OK with *out (the caller frees it with
 * ps_msg_product_free()), *version and *fresh_until_s (0 for an entry of
 * the first format: no freshness of its own) for a positive entry,
 * CM_ENOTFOUND for a negative one, or CM_EPROTO when the bytes are not a
 * well-formed entry: bad prefix, bad version or freshness, a protobuf that
 * does not decode or whose version differs from the prefix. */
int
ps_entry_decode(const uint8_t *data, size_t len, Catalog__Product **out,
    int *version, int64_t *fresh_until_s)
{
	size_t            i, j;
	long long         v = 0, fu = 0;
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
	for (j = i; j < len && data[j] >= '0' && data[j] <= '9'; j++) {
		if (j - i >= 18) {
			return CM_EPROTO; /* no Unix second has 19 digits */
		}
		fu = fu * 10 + (data[j] - '0');
	}
	if (j > i) {
		/* The second format: a positive number, then ':'. */
		if (j >= len || data[j] != ':' || data[i] == '0') {
			return CM_EPROTO;
		}
		i = j + 1;
	}
	p = catalog__product__unpack(NULL, len - i, data + i);
	if (p == NULL) {
		return CM_EPROTO;
	}
	drop_unknown(&p->base);
	if (p->version != (int32_t) v || p->id <= 0) {
		catalog__product__free_unpacked(p, NULL);
		return CM_EPROTO;
	}
	*out = p;
	*version = (int) v;
	*fresh_until_s = fu;
	return CM_OK;
}

/* Returns 1 when an entry fresh until fresh_until_s (0: no freshness of its
 * own) is still fresh at now_ms, 0 when it is stale. The lease script
 * decides the same way from the Unix second the replica sends it. */
int
ps_entry_fresh(int64_t fresh_until_s, int64_t now_ms)
{
	return fresh_until_s == 0 || now_ms / 1000 < fresh_until_s;
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
