/* ps_msg.c - builds and frees the protobuf messages the service answers
 * with.
 *
 * Everything here is allocated with malloc so that protobuf-c's
 * free_unpacked (default allocator) releases a message we built exactly as
 * it releases one it unpacked; the two kinds mix freely in one Response.
 */
#include <stdlib.h>
#include <string.h>

#include "cm.h"
#include "ps.h"

/* Returns a NUL-terminated copy of s[0..len), or NULL when out of memory. */
char *
ps_msg_strdup(const char *s, size_t len)
{
	char *d = malloc(len + 1);
	if (d != NULL) {
		memcpy(d, s, len);
		d[len] = '\0';
	}
	return d;
}

/* Returns a fresh Response carrying tag and a copy of replica, or NULL.
 * The caller frees it with ps_msg_response_free(). */
Catalog__Response *
ps_msg_response_new(uint32_t tag, const char *replica)
{
	Catalog__Response *r = malloc(sizeof(*r));
	if (r == NULL) {
		return NULL;
	}
	catalog__response__init(r);
	r->tag = tag;
	if ((r->replica = ps_msg_strdup(replica, strlen(replica))) == NULL) {
		free(r);
		return NULL;
	}
	return r;
}

void
ps_msg_response_free(Catalog__Response *r)
{
	if (r != NULL) {
		catalog__response__free_unpacked(r, NULL);
	}
}

/* Replaces r's detail with a copy of s. Returns CM_OK or CM_ENOMEM (the
 * detail then stays as it was). */
int
ps_msg_set_detail(Catalog__Response *r, const char *s)
{
	char *d = ps_msg_strdup(s, strlen(s));
	if (d == NULL) {
		return CM_ENOMEM;
	}
	if (r->detail != NULL && r->detail != protobuf_c_empty_string) {
		free(r->detail);
	}
	r->detail = d;
	return CM_OK;
}

/* Returns an empty Product (strings empty, numbers zero) or NULL. */
Catalog__Product *
ps_msg_product_new(void)
{
	Catalog__Product *p = malloc(sizeof(*p));
	if (p != NULL) {
		catalog__product__init(p);
	}
	return p;
}

static int
dup_field(char **dst, const char *src)
{
	if (src == NULL || src == protobuf_c_empty_string) {
		*dst = (char *) protobuf_c_empty_string;
		return CM_OK;
	}
	*dst = ps_msg_strdup(src, strlen(src));
	return *dst == NULL ? CM_ENOMEM : CM_OK;
}

/* Returns a deep copy of p, or NULL when out of memory. The caller frees it
 * with ps_msg_product_free(). */
Catalog__Product *
ps_msg_product_dup(const Catalog__Product *p)
{
	Catalog__Product *d = ps_msg_product_new();
	if (d == NULL) {
		return NULL;
	}
	d->id = p->id;
	d->price_cents = p->price_cents;
	d->stock = p->stock;
	d->version = p->version;
	d->created_at_us = p->created_at_us;
	d->updated_at_us = p->updated_at_us;
	if (dup_field(&d->sku, p->sku) != CM_OK ||
	    dup_field(&d->name, p->name) != CM_OK ||
	    dup_field(&d->description, p->description) != CM_OK ||
	    dup_field(&d->currency, p->currency) != CM_OK) {
		ps_msg_product_free(d);
		return NULL;
	}
	return d;
}

void
ps_msg_product_free(Catalog__Product *p)
{
	if (p != NULL) {
		catalog__product__free_unpacked(p, NULL);
	}
}

void
ps_msg_set_status(Catalog__Response *r, Catalog__Status st, const char *detail)
{
	r->status = st;
	if (detail != NULL) {
		(void) ps_msg_set_detail(r, detail);
	}
	if (st == CATALOG__STATUS__STATUS_UNAVAILABLE) {
		r->retry_after_s = 1;
	}
}
