/* test_ps_entry.c - cache entry format (fresh and stale), TTL jitter,
 * message copies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cm.h"
#include "ps.h"

static Catalog__Product *
sample(int64_t id, int32_t version)
{
	Catalog__Product p = CATALOG__PRODUCT__INIT;
	p.id = id;
	p.sku = "SKU-42";
	p.name = "Widget";
	p.description = "a widget";
	p.price_cents = 1999;
	p.currency = "USD";
	p.stock = 10;
	p.version = version;
	p.created_at_us = 1795847420832547LL;
	p.updated_at_us = 1795847420832548LL;
	return ps_msg_product_dup(&p);
}

#define FRESH_UNTIL 1795847480LL /* a Unix second */

static void
test_entry_roundtrip(void **state)
{
	Catalog__Product *p = sample(42, 3), *q = NULL;
	uint8_t          *buf;
	size_t            len;
	int               version = 0;
	int64_t           fu = 0;

	(void) state;
	assert_int_equal(ps_entry_encode(p, FRESH_UNTIL, &buf, &len), CM_OK);
	assert_true(len > 14);
	assert_memory_equal(buf, "P3:1795847480:", 14);
	assert_int_equal(ps_entry_decode(buf, len, &q, &version, &fu), CM_OK);
	assert_int_equal(version, 3);
	assert_int_equal(fu, FRESH_UNTIL);
	assert_int_equal(q->id, 42);
	assert_string_equal(q->sku, "SKU-42");
	assert_string_equal(q->description, "a widget");
	assert_string_equal(q->currency, "USD");
	assert_int_equal(q->price_cents, 1999);
	assert_int_equal(q->stock, 10);
	assert_int_equal(q->created_at_us, 1795847420832547LL);
	assert_int_equal(q->updated_at_us, 1795847420832548LL);
	free(buf);
	ps_msg_product_free(p);
	ps_msg_product_free(q);
}

static void
test_entry_multidigit_version(void **state)
{
	Catalog__Product *p = sample(7, 123456), *q = NULL;
	uint8_t          *buf;
	size_t            len;
	int               version = 0;
	int64_t           fu;

	(void) state;
	assert_int_equal(ps_entry_encode(p, 7, &buf, &len), CM_OK);
	assert_memory_equal(buf, "P123456:7:", 10);
	assert_int_equal(ps_entry_decode(buf, len, &q, &version, &fu), CM_OK);
	assert_int_equal(fu, 7);
	assert_int_equal(version, 123456);
	free(buf);
	ps_msg_product_free(p);
	ps_msg_product_free(q);
}

static void
test_entry_negative(void **state)
{
	uint8_t          *buf;
	size_t            len;
	Catalog__Product *q = NULL;
	int               version;
	int64_t           fu;

	(void) state;
	/* A negative entry carries no freshness: it lives for its TTL. */
	assert_int_equal(
	    ps_entry_encode(NULL, FRESH_UNTIL, &buf, &len), CM_OK);
	assert_int_equal(len, 1);
	assert_memory_equal(buf, "N", 1);
	assert_int_equal(
	    ps_entry_decode(buf, len, &q, &version, &fu), CM_ENOTFOUND);
	assert_null(q);
	free(buf);
}

static void
test_entry_rejects_version_zero(void **state)
{
	Catalog__Product *p = sample(1, 0);
	uint8_t          *buf = NULL;
	size_t            len;

	(void) state;
	assert_int_equal(
	    ps_entry_encode(p, FRESH_UNTIL, &buf, &len), CM_EINVAL);
	assert_null(buf);
	ps_msg_product_free(p);
	p = sample(1, 1);
	assert_int_equal(ps_entry_encode(p, 0, &buf, &len), CM_EINVAL);
	assert_int_equal(ps_entry_encode(p, -5, &buf, &len), CM_EINVAL);
	assert_null(buf);
	ps_msg_product_free(p);
}

static void
expect_malformed(const void *data, size_t len)
{
	Catalog__Product *q = NULL;
	int               version;
	int64_t           fu;

	assert_int_equal(
	    ps_entry_decode(data, len, &q, &version, &fu), CM_EPROTO);
	assert_null(q);
}

static void
test_entry_malformed(void **state)
{
	(void) state;
	expect_malformed("", 0);
	expect_malformed("X", 1);
	expect_malformed("NN", 2);
	expect_malformed("P", 1);
	expect_malformed("P:", 2);
	expect_malformed("P1", 2);
	expect_malformed("P1x", 3);
	expect_malformed("Px:\x08\x01", 5);
	expect_malformed("P01:\x08\x01", 6);
	expect_malformed("P-1:\x08\x01", 6);
	expect_malformed("P99999999999:\x08\x01", 15);
	/* A truncated varint is not a protobuf. */
	expect_malformed("P1:\x08", 4);
	/* Empty body: a product with id 0 cannot be an entry. */
	expect_malformed("P1:", 3);
	expect_malformed("P1:12:", 6);
	/* Freshness: digits then ':', positive, no leading zero. */
	expect_malformed("P1:12", 5);
	expect_malformed("P1:12x\x08\x01", 8);
	expect_malformed("P1:0:\x08\x01", 7);
	expect_malformed("P1:012:\x08\x01", 9);
	expect_malformed("P1:99999999999999999999:\x08\x01", 26);
}

/* The first format ("P<version>:" + protobuf, before stale-if-error)
 * still decodes, as fresh until Redis expires it: replicas of both
 * formats may share one Redis during a rolling upgrade. */
static void
test_entry_first_format(void **state)
{
	Catalog__Product *p = sample(42, 3), *q = NULL;
	size_t            body = catalog__product__get_packed_size(p);
	uint8_t          *buf = malloc(3 + body);
	int               version = 0;
	int64_t           fu = -1;

	(void) state;
	memcpy(buf, "P3:", 3);
	catalog__product__pack(p, buf + 3);
	assert_int_equal(buf[3], 0x08); /* the id's tag: never a digit */
	assert_int_equal(
	    ps_entry_decode(buf, 3 + body, &q, &version, &fu), CM_OK);
	assert_int_equal(version, 3);
	assert_int_equal(fu, 0);
	assert_int_equal(q->id, 42);
	assert_true(ps_entry_fresh(fu, 4102444800000LL)); /* year 2100 */
	free(buf);
	ps_msg_product_free(p);
	ps_msg_product_free(q);
}

/* Fresh before its second, stale from it on: the lease script compares
 * the same way (fresh while fresh_until > the replica's Unix second). */
static void
test_entry_fresh_and_stale(void **state)
{
	Catalog__Product *p = sample(9, 2), *q = NULL;
	uint8_t          *buf;
	size_t            len;
	int               version;
	int64_t           fu;

	(void) state;
	assert_int_equal(ps_entry_encode(p, FRESH_UNTIL, &buf, &len), CM_OK);
	assert_int_equal(ps_entry_decode(buf, len, &q, &version, &fu), CM_OK);
	assert_true(ps_entry_fresh(fu, (FRESH_UNTIL - 1) * 1000));
	assert_true(ps_entry_fresh(fu, FRESH_UNTIL * 1000 - 1));
	assert_false(ps_entry_fresh(fu, FRESH_UNTIL * 1000));
	assert_false(ps_entry_fresh(fu, (FRESH_UNTIL + 300) * 1000));
	/* A stale entry still holds the whole product, for stale-if-error. */
	assert_int_equal(q->id, 9);
	assert_int_equal(q->version, 2);
	assert_string_equal(q->name, "Widget");
	free(buf);
	ps_msg_product_free(p);
	ps_msg_product_free(q);
}

/* The scripts read the version with ^P(%d+): and the freshness with
 * ^P%d+:(%d+):; the lease script treats a stale entry as none. */
static void
test_entry_scripts_read_v2(void **state)
{
	(void) state;
	assert_non_null(strstr(ps_cache_fill_lua, "'^P(%d+):'"));
	assert_non_null(strstr(ps_cache_lease_lua, "'^P%d+:(%d+):'"));
	assert_non_null(
	    strstr(ps_cache_lease_lua, "tonumber(fu) > tonumber(ARGV[3])"));
}

static void
test_entry_version_mismatch(void **state)
{
	Catalog__Product *p = sample(5, 2);
	uint8_t          *buf;
	size_t            len;

	(void) state;
	assert_int_equal(ps_entry_encode(p, FRESH_UNTIL, &buf, &len), CM_OK);
	buf[1] = '9'; /* prefix says 9, protobuf says 2 */
	expect_malformed(buf, len);
	free(buf);
	ps_msg_product_free(p);
}

/* fuzz_entry found that protobuf-c accepts a field numbered 0 when its tag
 * takes two bytes (0x80 0x00), keeps it as an unknown field, and packs it
 * again as 0x00, which no decoder takes: a Response carrying such a
 * product would fail the gateway's whole BatchReply. The decoder keeps
 * only known fields (fuzz/regressions/entry/ holds the input found). */
static void
test_entry_drops_unknown_fields(void **state)
{
	/* "P3:", id 42, an unknown field 0 (varint 5), field 99 (varint 1),
	 * version 3. */
	static const uint8_t e[] = {'P', '3', ':', 0x08, 0x2a, 0x80, 0x00,
	    0x05, 0x98, 0x06, 0x01, 0x40, 0x03};
	Catalog__Product    *p = NULL, *q;
	Catalog__Response   *r;
	uint8_t              buf[64];
	size_t               n;
	int                  version = 0;
	int64_t              fresh = -1;

	(void) state;
	assert_int_equal(
	    ps_entry_decode(e, sizeof(e), &p, &version, &fresh), CM_OK);
	assert_int_equal(p->id, 42);
	assert_int_equal(version, 3);
	assert_int_equal(p->base.n_unknown_fields, 0);
	/* What the replica answers with decodes again. */
	r = ps_msg_response_new(1, "r1");
	assert_non_null(r);
	r->product = p;
	n = catalog__response__get_packed_size(r);
	assert_true(n <= sizeof(buf));
	catalog__response__pack(r, buf);
	ps_msg_response_free(r);
	q = NULL;
	{
		Catalog__Response *back =
		    catalog__response__unpack(NULL, n, buf);
		assert_non_null(back);
		q = back->product;
		assert_non_null(q);
		assert_int_equal(q->id, 42);
		assert_int_equal(q->version, 3);
		catalog__response__free_unpacked(back, NULL);
	}
}

static void
test_entry_ttl_jitter_bounds(void **state)
{
	uint64_t  s = 12345;
	long long lo = 3600000LL * 9 / 10, hi = 3600000LL * 11 / 10;
	long long min = hi, max = lo;
	double    sum = 0;
	int       n = 200000;

	(void) state;
	for (int i = 0; i < n; i++) {
		long long ms = ps_entry_ttl_ms(3600, ps_rand_next(&s));
		assert_true(ms >= lo && ms <= hi);
		min = ms < min ? ms : min;
		max = ms > max ? ms : max;
		sum += (double) ms;
	}
	/* Uniform over the whole range: both ends reached, mean centred. */
	assert_true(min < lo + 1000);
	assert_true(max > hi - 1000);
	assert_true(sum / n > 3600000 * 0.99 && sum / n < 3600000 * 1.01);
	/* The extremes of rnd map to the extremes of the range. */
	assert_int_equal(ps_entry_ttl_ms(3600, 0), lo);
	assert_int_equal(ps_entry_ttl_ms(3600, 720000), hi);
}

static void
test_entry_ttl_small(void **state)
{
	(void) state;
	for (uint64_t r = 0; r < 1000; r++) {
		long long ms = ps_entry_ttl_ms(1, r);
		assert_true(ms >= 900 && ms <= 1100);
	}
}

static void
test_entry_rand_nonzero(void **state)
{
	uint64_t s = 0;
	(void) state;
	for (int i = 0; i < 1000; i++) {
		assert_true(ps_rand_next(&s) != 0);
	}
}

static void
test_entry_response_owns_products(void **state)
{
	Catalog__Response *r = ps_msg_response_new(7, "host:1");
	Catalog__Product  *p = sample(9, 1);

	(void) state;
	assert_non_null(r);
	assert_int_equal(r->tag, 7);
	assert_string_equal(r->replica, "host:1");
	assert_int_equal(ps_msg_set_detail(r, "first"), CM_OK);
	assert_int_equal(ps_msg_set_detail(r, "second"), CM_OK);
	assert_string_equal(r->detail, "second");
	r->product = p;
	r->items = calloc(2, sizeof(*r->items));
	r->items[0] = sample(1, 1);
	r->items[1] = sample(2, 1);
	r->n_items = 2;
	/* ASan/LSan check that this releases everything exactly once. */
	ps_msg_response_free(r);
	ps_msg_response_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_entry_roundtrip),
	    cmocka_unit_test(test_entry_multidigit_version),
	    cmocka_unit_test(test_entry_negative),
	    cmocka_unit_test(test_entry_rejects_version_zero),
	    cmocka_unit_test(test_entry_malformed),
	    cmocka_unit_test(test_entry_version_mismatch),
	    cmocka_unit_test(test_entry_first_format),
	    cmocka_unit_test(test_entry_fresh_and_stale),
	    cmocka_unit_test(test_entry_scripts_read_v2),
	    cmocka_unit_test(test_entry_drops_unknown_fields),
	    cmocka_unit_test(test_entry_ttl_jitter_bounds),
	    cmocka_unit_test(test_entry_ttl_small),
	    cmocka_unit_test(test_entry_rand_nonzero),
	    cmocka_unit_test(test_entry_response_owns_products),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
