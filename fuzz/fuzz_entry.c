/* fuzz_entry.c - libFuzzer target: the replica's cache entry decoder
 * (ps_entry.c). Redis content is input the replica did not write itself
 * when Redis is shared or restored, so any bytes must decode to a product,
 * "no such product" or CM_EPROTO, never worse.
 *
 * A decoded product must obey what ps_entry_decode() promises (a positive
 * id, the prefix's version) and encode again to an entry that decodes to
 * the same product and freshness. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cm.h"
#include "fuzz_check.h"
#include "ps.h"

/* Packs p (the caller frees the result). */
static uint8_t *
packed(const Catalog__Product *p, size_t *len)
{
	uint8_t *b;

	*len = catalog__product__get_packed_size(p);
	FZ_CHECK((b = malloc(*len + 1)) != NULL);
	catalog__product__pack(p, b);
	return b;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	Catalog__Product *p = NULL, *q = NULL, *d;
	int               version = -1, v2 = -1;
	int64_t           fresh = -1, f2 = -1;
	uint8_t          *enc, *a, *b;
	size_t            elen, alen, blen;
	int               rv;

	rv = ps_entry_decode(data, size, &p, &version, &fresh);
	if (rv == CM_ENOTFOUND) {
		FZ_CHECK(size == 1 && data[0] == 'N');
		return 0;
	}
	if (rv != CM_OK) {
		FZ_CHECK(rv == CM_EPROTO);
		return 0;
	}
	FZ_CHECK(p != NULL && p->id > 0 && version > 0);
	FZ_CHECK(p->version == version && fresh >= 0);

	/* Encode again (an entry of the first format gets a freshness of
	 * its own) and decode: the same product. */
	FZ_CHECK(
	    ps_entry_encode(p, fresh > 0 ? fresh : 1, &enc, &elen) == CM_OK);
	FZ_CHECK(ps_entry_decode(enc, elen, &q, &v2, &f2) == CM_OK);
	FZ_CHECK(v2 == version && f2 == (fresh > 0 ? fresh : 1));
	a = packed(p, &alen);
	b = packed(q, &blen);
	FZ_CHECK(alen == blen && memcmp(a, b, alen) == 0);

	/* The copy the replica makes of a product is the same product
	 * (field by field: the copy drops unknown fields). */
	FZ_CHECK((d = ps_msg_product_dup(p)) != NULL);
	FZ_CHECK(d->id == p->id && d->price_cents == p->price_cents &&
	    d->stock == p->stock && d->version == p->version &&
	    d->created_at_us == p->created_at_us &&
	    d->updated_at_us == p->updated_at_us);
	FZ_CHECK(strcmp(d->sku, p->sku) == 0 && strcmp(d->name, p->name) == 0);
	FZ_CHECK(strcmp(d->description, p->description) == 0 &&
	    strcmp(d->currency, p->currency) == 0);

	ps_msg_product_free(d);
	free(a);
	free(b);
	free(enc);
	ps_msg_product_free(q);
	ps_msg_product_free(p);
	return 0;
}
