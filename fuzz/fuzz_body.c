/* fuzz_body.c - libFuzzer target: a JSON write body through the gateway's
 * parsing and validation (gw_body.c) into catalog.ProductInput.
 *
 * The first byte picks the method (POST, PUT: a whole product; PATCH: a
 * merge patch), the rest is the body. Beyond "no crash, no leak, no
 * undefined behaviour" it checks what the rules promise: an accepted
 * body gives an input that obeys every rule, packs and unpacks to the same
 * message, and written back as JSON parses to the same input again; a
 * refused one gets 400 or 422 with field errors whose problem+json
 * document is valid JSON. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "cm.h"
#include "fuzz_check.h"
#include "fuzz_json.h"
#include "gw.h"

#define KNOWN_MASK                                                            \
	(GW_MASK(GW_F_SKU) | GW_MASK(GW_F_NAME) | GW_MASK(GW_F_DESCRIPTION) | \
	    GW_MASK(GW_F_PRICE_CENTS) | GW_MASK(GW_F_CURRENCY) |              \
	    GW_MASK(GW_F_STOCK))

/* Returns the number of code points of s, or -1 when s is not UTF-8. */
static long
utf8_count(const char *s)
{
	const unsigned char *p = (const unsigned char *) s;
	size_t               len = strlen(s);
	long                 n = 0;

	for (size_t i = 0; i < len; n++) {
		size_t k = cm_utf8_len(p + i, len - i);
		if (k == 0) {
			return -1;
		}
		i += k;
	}
	return n;
}

static int
sku_ok(const char *s)
{
	size_t len = strlen(s);
	if (len < 1 || len > GW_SKU_MAX) {
		return 0;
	}
	return strspn(s,
	           "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	           "0123456789._-") == len;
}

static int
currency_ok(const char *s)
{
	return strlen(s) == 3 && strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") == 3;
}

/* Every field that the body set (all of them for a whole product)
 * follows its rule; a PATCH may also have reset description, currency
 * or stock to their defaults (null), which follow the rules too. */
static void
check_input(const Catalog__ProductInput *in, gw_body_mode mode)
{
	uint32_t m = mode == GW_BODY_FULL ? KNOWN_MASK : in->mask;
	long     n;

	if (mode == GW_BODY_FULL) {
		FZ_CHECK(in->mask == 0);
	} else {
		FZ_CHECK(in->mask != 0 && (in->mask & ~KNOWN_MASK) == 0);
	}
	if (m & GW_MASK(GW_F_SKU)) {
		FZ_CHECK(sku_ok(in->sku));
	}
	if (m & GW_MASK(GW_F_NAME)) {
		n = utf8_count(in->name);
		FZ_CHECK(n >= 1 && n <= GW_NAME_MAX);
	}
	if (m & GW_MASK(GW_F_DESCRIPTION)) {
		n = utf8_count(in->description);
		FZ_CHECK(n >= 0 && n <= GW_DESC_MAX);
	}
	if (m & GW_MASK(GW_F_PRICE_CENTS)) {
		FZ_CHECK(
		    in->price_cents >= 0 && in->price_cents <= GW_PRICE_MAX);
	}
	if (m & GW_MASK(GW_F_CURRENCY)) {
		FZ_CHECK(currency_ok(in->currency));
	}
	if (m & GW_MASK(GW_F_STOCK)) {
		FZ_CHECK(in->stock >= 0);
	}
}

static int
same_input(const Catalog__ProductInput *a, const Catalog__ProductInput *b)
{
	return strcmp(a->sku, b->sku) == 0 && strcmp(a->name, b->name) == 0 &&
	    strcmp(a->description, b->description) == 0 &&
	    a->price_cents == b->price_cents &&
	    strcmp(a->currency, b->currency) == 0 && a->stock == b->stock &&
	    a->mask == b->mask;
}

/* What the gateway sends: the input packs, unpacks to the same fields,
 * and packs again to the same bytes. */
static void
check_pack(const Catalog__ProductInput *in)
{
	size_t                 n = catalog__product_input__get_packed_size(in);
	uint8_t               *a = malloc(n + 1), *b = malloc(n + 1);
	Catalog__ProductInput *u;

	FZ_CHECK(a != NULL && b != NULL);
	FZ_CHECK(catalog__product_input__pack(in, a) == n);
	u = catalog__product_input__unpack(NULL, n, a);
	FZ_CHECK(u != NULL);
	FZ_CHECK(same_input(in, u));
	FZ_CHECK(catalog__product_input__get_packed_size(u) == n);
	catalog__product_input__pack(u, b);
	FZ_CHECK(memcmp(a, b, n) == 0);
	catalog__product_input__free_unpacked(u, NULL);
	free(a);
	free(b);
}

/* Writes the input back as a JSON body (all fields, or the patch's
 * fields) and parses it again: the same input must come out. */
static void
check_rewrite(const Catalog__ProductInput *in, gw_body_mode mode)
{
	uint32_t m = mode == GW_BODY_FULL ? KNOWN_MASK : in->mask;
	gw_buf   t;
	gw_body  again;
	char     num[32];
	int      first = 1;

	gw_buf_init(&t);
	gw_buf_adds(&t, "{");
#define SEP() gw_buf_adds(&t, first ? (first = 0, "") : ",")
	if (m & GW_MASK(GW_F_SKU)) {
		SEP();
		gw_buf_adds(&t, "\"sku\":");
		gw_json_string(&t, in->sku);
	}
	if (m & GW_MASK(GW_F_NAME)) {
		SEP();
		gw_buf_adds(&t, "\"name\":");
		gw_json_string(&t, in->name);
	}
	if (m & GW_MASK(GW_F_DESCRIPTION)) {
		SEP();
		gw_buf_adds(&t, "\"description\":");
		gw_json_string(&t, in->description);
	}
	if (m & GW_MASK(GW_F_PRICE_CENTS)) {
		SEP();
		snprintf(num, sizeof(num), "\"price_cents\":%lld",
		    (long long) in->price_cents);
		gw_buf_adds(&t, num);
	}
	if (m & GW_MASK(GW_F_CURRENCY)) {
		SEP();
		gw_buf_adds(&t, "\"currency\":");
		gw_json_string(&t, in->currency);
	}
	if (m & GW_MASK(GW_F_STOCK)) {
		SEP();
		snprintf(num, sizeof(num), "\"stock\":%d", (int) in->stock);
		gw_buf_adds(&t, num);
	}
#undef SEP
	gw_buf_adds(&t, "}");
	FZ_CHECK(t.err == CM_OK);
	FZ_CHECK(gw_body_parse(&again, t.data, t.len, mode) == CM_OK);
	FZ_CHECK(same_input(in, &again.input));
	gw_body_fini(&again);
	gw_buf_fini(&t);
}

static void
check_refusal(const gw_body *b)
{
	gw_buf              out;
	struct json_object *o, *errs;

	FZ_CHECK(memchr(b->detail, '\0', sizeof(b->detail)) != NULL);
	gw_buf_init(&out);
	if (b->status == 400) {
		FZ_CHECK(b->nerrs == 0);
		gw_json_problem(&out, 400, b->detail, "fuzz");
		json_object_put(fz_parse_reply(&out));
		gw_buf_fini(&out);
		return;
	}
	FZ_CHECK(b->status == 422);
	FZ_CHECK(b->nerrs >= 1 && b->nerrs <= GW_BODY_ERRS_MAX);
	for (size_t i = 0; i < b->nerrs; i++) {
		FZ_CHECK(b->errs[i].message != NULL);
		FZ_CHECK(memchr(b->errs[i].field, '\0',
		             sizeof(b->errs[i].field)) != NULL);
	}
	gw_json_problem_fields(&out, b->detail, "fuzz", b->errs, b->nerrs);
	o = fz_parse_reply(&out);
	FZ_CHECK(json_object_object_get_ex(o, "errors", &errs));
	FZ_CHECK(json_object_array_length(errs) == b->nerrs);
	json_object_put(o);
	gw_buf_fini(&out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const gw_body_mode modes[] = {
	    GW_BODY_FULL, GW_BODY_FULL, GW_BODY_PATCH}; /* POST, PUT, PATCH */
	gw_body     *b;
	gw_body_mode mode;
	int          rv;

	if (size < 1) {
		return 0;
	}
	mode = modes[data[0] % 3];
	/* gw_body is large; the gateway mallocs it too. */
	FZ_CHECK((b = malloc(sizeof(*b))) != NULL);
	rv = gw_body_parse(b, (const char *) data + 1, size - 1, mode);
	if (rv == CM_OK) {
		FZ_CHECK(b->status == 0 && b->nerrs == 0);
		check_input(&b->input, mode);
		check_pack(&b->input);
		check_rewrite(&b->input, mode);
	} else {
		FZ_CHECK(rv == CM_EINVAL);
		check_refusal(b);
	}
	gw_body_fini(b);
	free(b);
	return 0;
}
