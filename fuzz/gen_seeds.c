/* gen_seeds.c - writes the protobuf seeds of fuzz_entry and fuzz_proto
 * (fuzz/corpus/entry, fuzz/corpus/proto) from real messages, so that the
 * seeds can be made again when catalog.proto changes: `make fuzz-seeds`.
 * The text seeds of the other targets are committed as they are. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm.h"
#include "ps.h"

static void
put(const char *dir, const char *name, const void *a, size_t alen,
    const void *b, size_t blen)
{
	char  path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((f = fopen(path, "wb")) == NULL || fwrite(a, 1, alen, f) != alen ||
	    (blen > 0 && fwrite(b, 1, blen, f) != blen) || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
}

static Catalog__Product
lamp(int64_t id, int32_t version)
{
	Catalog__Product p = CATALOG__PRODUCT__INIT;

	p.id = id;
	p.sku = "LAMP-01";
	p.name = "Desk lamp \xe2\x98\x95";
	p.description = "A lamp \"quoted\"\n";
	p.price_cents = 1999;
	p.currency = "EUR";
	p.stock = 10;
	p.version = version;
	p.created_at_us = 1764300000000000LL;
	p.updated_at_us = 1764300001000000LL;
	return p;
}

/* ---- fuzz_entry ---- */

static void
entry_seeds(const char *dir)
{
	Catalog__Product p = lamp(42, 3), odd = lamp(1, 7);
	uint8_t         *e, raw[512];
	size_t           len, n;
	char             prefix[32];

	ps_entry_encode(NULL, 0, &e, &len);
	put(dir, "negative", e, len, NULL, 0);
	free(e);
	ps_entry_encode(&p, 1764303600, &e, &len);
	put(dir, "fresh", e, len, NULL, 0);
	free(e);
	odd.sku = "";
	odd.name = "";
	odd.description = "";
	odd.currency = "";
	odd.price_cents = 0;
	odd.stock = -1;
	ps_entry_encode(&odd, 1, &e, &len);
	put(dir, "stale-empty", e, len, NULL, 0);
	free(e);

	/* The first format: "P<version>:" and the protobuf. */
	n = catalog__product__pack(&p, raw);
	put(dir, "first-format", "P3:", 3, raw, n);
	/* Malformed: version mismatch, id 0, bad prefixes, cut protobuf. */
	put(dir, "version-mismatch", "P4:1764303600:", 14, raw, n);
	put(dir, "cut", "P3:1764303600:", 14, raw, n / 2);
	snprintf(prefix, sizeof(prefix), "P%d:%s:", 2147483647,
	    "999999999999999999");
	put(dir, "big-prefix", prefix, strlen(prefix), raw, n);
	put(dir, "leading-zero", "P03:1:", 6, raw, n);
	put(dir, "no-colon", "P3", 2, NULL, 0);
	put(dir, "empty-body", "P3:1:", 5, NULL, 0);
	p.id = 0;
	n = catalog__product__pack(&p, raw);
	put(dir, "id-zero", "P3:1:", 5, raw, n);
}

/* ---- fuzz_proto ---- */

/* Scripts for the fakes: the mode byte first (see fuzz_proto.c). */
static const struct {
	const char *name;
	uint8_t     bytes[40];
	size_t      len;
} scripts[] = {
    {"ok", {0, 3, 1, 3, 2, 4, 4, 2, 2, 2, 2, 2, 2, 2, 2, 2}, 16},
    {"miss", {0, 2, 3, 4, 4, 3, 2, 2, 2, 2, 2, 2}, 12},
    {"down", {2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, 12},
    {"stale", {2, 3, 2, 3, 1, 2, 5, 1, 1}, 9},
    {"busy", {4, 2, 5, 1, 2, 3, 1, 1, 4, 5, 5, 5}, 12},
    {"stopping", {1, 1, 2, 3}, 4},
    {"stop-later", {(3 << 3), 2, 3, 4, 4, 2, 2, 2, 2, 2, 2, 2}, 12},
    {"none", {0}, 0},
};

static void
proto_seed(const char *dir, const char *name, Catalog__Request **rqs, size_t n)
{
	Catalog__Batch b = CATALOG__BATCH__INIT;
	uint8_t       *msg;
	size_t         len;
	char           fname[128];

	b.n_requests = n;
	b.requests = rqs;
	len = catalog__batch__get_packed_size(&b);
	if ((msg = malloc(len + 64)) == NULL) {
		exit(1);
	}
	catalog__batch__pack(&b, msg);
	for (size_t i = 0; i < sizeof(scripts) / sizeof(scripts[0]); i++) {
		memcpy(msg + len, scripts[i].bytes, scripts[i].len);
		msg[len + scripts[i].len] = (uint8_t) scripts[i].len;
		snprintf(fname, sizeof(fname), "%s-%s", name, scripts[i].name);
		put(dir, fname, msg, len + scripts[i].len + 1, NULL, 0);
	}
	free(msg);
}

static void
proto_seeds(const char *dir)
{
	static char           key300[301];
	Catalog__Request      r[12];
	Catalog__Request     *rp[12];
	Catalog__ProductInput in = CATALOG__PRODUCT_INPUT__INIT;
	Catalog__ProductInput patch = CATALOG__PRODUCT_INPUT__INIT;

	memset(key300, 'k', 300);
	in.sku = "LAMP-01";
	in.name = "Desk lamp";
	in.description = "";
	in.price_cents = 1999;
	in.currency = "USD";
	in.stock = 10;
	patch.price_cents = 2500;
	patch.mask = 1u << 5;
	for (int i = 0; i < 12; i++) {
		catalog__request__init(&r[i]);
		r[i].tag = (uint32_t) i + 1;
		r[i].request_id = "req-1";
		rp[i] = &r[i];
	}
	r[0].method = CATALOG__METHOD__METHOD_PING;
	proto_seed(dir, "ping", rp, 1);
	r[0].method = CATALOG__METHOD__METHOD_GET_PRODUCT;
	r[0].id = 42;
	r[0].traceparent =
	    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
	proto_seed(dir, "get", rp, 1);
	r[0].if_none_match_version = 1;
	proto_seed(dir, "get-inm", rp, 1);
	r[0].if_none_match_version = 0;
	r[0].traceparent = "";

	r[0].method = CATALOG__METHOD__METHOD_LIST_PRODUCTS;
	r[0].id = 0;
	r[0].limit = 5;
	r[0].after = 10;
	proto_seed(dir, "list", rp, 1);
	r[0].limit = 101;
	r[0].after = -1;
	proto_seed(dir, "list-bad", rp, 1);
	r[0].limit = 0;
	r[0].after = 0;

	r[0].method = CATALOG__METHOD__METHOD_CREATE_PRODUCT;
	r[0].input = &in;
	r[0].idempotency_key = "idem-1";
	proto_seed(dir, "create", rp, 1);
	r[0].id = 7; /* a create carries no id */
	proto_seed(dir, "create-id", rp, 1);
	r[0].id = 0;
	r[0].idempotency_key = key300;
	proto_seed(dir, "create-longkey", rp, 1);
	r[0].idempotency_key = "";
	r[0].method = CATALOG__METHOD__METHOD_REPLACE_PRODUCT;
	r[0].id = 42;
	r[0].if_match_version = 3;
	proto_seed(dir, "replace", rp, 1);
	r[0].method = CATALOG__METHOD__METHOD_PATCH_PRODUCT;
	r[0].input = &patch;
	r[0].idempotency_key = "idem-2";
	proto_seed(dir, "patch", rp, 1);
	patch.mask = 0xffffffffu;
	proto_seed(dir, "patch-badmask", rp, 1);
	patch.mask = 1u << 5;
	r[0].method = CATALOG__METHOD__METHOD_DELETE_PRODUCT;
	r[0].input = NULL;
	proto_seed(dir, "delete", rp, 1);
	r[0].method = CATALOG__METHOD__METHOD_REPLACE_PRODUCT;
	proto_seed(dir, "replace-noinput", rp, 1);
	r[0].method = 99;
	proto_seed(dir, "unknown-method", rp, 1);
	r[0].method = CATALOG__METHOD__METHOD_GET_PRODUCT;
	r[0].deadline_unix_ms = 1;
	proto_seed(dir, "deadline", rp, 1);
	r[0].deadline_unix_ms = 0;
	r[0].idempotency_key = "";

	/* Several GETs of one id share a flight; a mixed batch. */
	for (int i = 0; i < 4; i++) {
		r[i].method = CATALOG__METHOD__METHOD_GET_PRODUCT;
		r[i].id = 42;
		r[i].input = NULL;
	}
	proto_seed(dir, "flight", rp, 4);
	r[4].method = CATALOG__METHOD__METHOD_LIST_PRODUCTS;
	r[5].method = CATALOG__METHOD__METHOD_CREATE_PRODUCT;
	r[5].input = &in;
	r[6].method = CATALOG__METHOD__METHOD_PATCH_PRODUCT;
	r[6].id = 42;
	r[6].input = &patch;
	r[7].method = CATALOG__METHOD__METHOD_DELETE_PRODUCT;
	r[7].id = 43;
	r[8].method = CATALOG__METHOD__METHOD_GET_PRODUCT;
	r[8].id = 0;
	r[9].method = CATALOG__METHOD__METHOD_PING;
	proto_seed(dir, "mixed", rp, 10);
}

int
main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s ENTRY_DIR PROTO_DIR\n", argv[0]);
		return 2;
	}
	entry_seeds(argv[1]);
	proto_seeds(argv[2]);
	return 0;
}
