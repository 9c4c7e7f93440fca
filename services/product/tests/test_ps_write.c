/* test_ps_write.c - the pure parts of the write path: the request
 * fingerprint, the PATCH mask, the checks and the status mapping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cm.h"
#include "ps.h"

typedef struct fp {
	uint8_t *data;
	size_t   len;
} fp;

static fp
fingerprint(const Catalog__Request *rq)
{
	fp f = {NULL, 0};
	assert_int_equal(ps_write_fingerprint(rq, &f.data, &f.len), CM_OK);
	return f;
}

static int
fp_equal(fp a, fp b)
{
	return a.len == b.len && memcmp(a.data, b.data, a.len) == 0;
}

static void
fp_free(fp f)
{
	free(f.data);
}

static void
make_put(Catalog__Request *rq, Catalog__ProductInput *in)
{
	catalog__request__init(rq);
	catalog__product_input__init(in);
	rq->method = CATALOG__METHOD__METHOD_REPLACE_PRODUCT;
	rq->id = 42;
	rq->if_match_version = 3;
	in->sku = "SKU-42";
	in->name = "Desk lamp";
	in->description = "";
	in->price_cents = 1999;
	in->currency = "USD";
	in->stock = 10;
	rq->input = in;
}

static void
test_write_fingerprint_deterministic(void **state)
{
	Catalog__Request      a, b;
	Catalog__ProductInput ia, ib;
	fp                    fa, fb;

	(void) state;
	make_put(&a, &ia);
	make_put(&b, &ib);
	fa = fingerprint(&a);
	fb = fingerprint(&b);
	assert_true(fa.len > 0);
	assert_true(fp_equal(fa, fb));
	fp_free(fb);
	/* Twice the same request: the same bytes. */
	fb = fingerprint(&a);
	assert_true(fp_equal(fa, fb));
	fp_free(fa);
	fp_free(fb);
}

static void
test_write_fingerprint_ignores_transport(void **state)
{
	Catalog__Request      a, b;
	Catalog__ProductInput ia, ib;
	fp                    fa, fb;

	(void) state;
	make_put(&a, &ia);
	make_put(&b, &ib);
	b.tag = 7;
	b.request_id = "another-request-id";
	b.deadline_unix_ms = 1234567;
	b.idempotency_key = "k-1";
	b.traceparent = "00-abc-def-01";
	b.if_none_match_version = 9;
	fa = fingerprint(&a);
	fb = fingerprint(&b);
	assert_true(fp_equal(fa, fb));
	fp_free(fa);
	fp_free(fb);
}

static void
test_write_fingerprint_sees_each_field(void **state)
{
	Catalog__Request      a, b;
	Catalog__ProductInput ia, ib;
	fp                    fa, fb;

	(void) state;
	make_put(&a, &ia);
	fa = fingerprint(&a);
	for (int i = 0; i < 9; i++) {
		make_put(&b, &ib);
		switch (i) {
		case 0:
			ib.sku = "SKU-43";
			break;
		case 1:
			ib.name = "Desk lamp!";
			break;
		case 2:
			ib.description = "x";
			break;
		case 3:
			ib.price_cents = 2000;
			break;
		case 4:
			ib.currency = "EUR";
			break;
		case 5:
			ib.stock = 11;
			break;
		case 6:
			b.id = 43;
			break;
		case 7:
			b.if_match_version = 0;
			break;
		default:
			b.method = CATALOG__METHOD__METHOD_PATCH_PRODUCT;
			ib.mask = PS_MASK_ALL;
			break;
		}
		fb = fingerprint(&b);
		if (fp_equal(fa, fb)) {
			fail_msg("change %d left the fingerprint alone", i);
		}
		fp_free(fb);
	}
	fp_free(fa);
}

static void
test_write_fingerprint_patch_mask(void **state)
{
	Catalog__Request      a, b;
	Catalog__ProductInput ia, ib;
	fp                    fa, fb;

	(void) state;
	make_put(&a, &ia);
	make_put(&b, &ib);
	a.method = b.method = CATALOG__METHOD__METHOD_PATCH_PRODUCT;
	ia.mask = ib.mask = PS_MASK_STOCK;
	/* Fields outside the mask do not count ... */
	ib.name = "whatever the gateway left here";
	ib.price_cents = 5;
	fa = fingerprint(&a);
	fb = fingerprint(&b);
	assert_true(fp_equal(fa, fb));
	fp_free(fb);
	/* ... the ones inside do ... */
	ib.stock = 99;
	fb = fingerprint(&b);
	assert_false(fp_equal(fa, fb));
	fp_free(fb);
	/* ... and so does the mask itself. */
	ib.stock = ia.stock;
	ib.mask = PS_MASK_STOCK | PS_MASK_NAME;
	fb = fingerprint(&b);
	assert_false(fp_equal(fa, fb));
	fp_free(fb);
	fp_free(fa);
}

static void
test_write_fingerprint_put_ignores_mask(void **state)
{
	Catalog__Request      a, b;
	Catalog__ProductInput ia, ib;
	fp                    fa, fb;

	(void) state;
	make_put(&a, &ia);
	make_put(&b, &ib);
	ib.mask = PS_MASK_ALL; /* means nothing for a PUT */
	fa = fingerprint(&a);
	fb = fingerprint(&b);
	assert_true(fp_equal(fa, fb));
	fp_free(fa);
	fp_free(fb);
}

static void
test_write_fingerprint_delete(void **state)
{
	Catalog__Request      a, b;
	Catalog__ProductInput ib;
	fp                    fa, fb;

	(void) state;
	catalog__request__init(&a);
	a.method = CATALOG__METHOD__METHOD_DELETE_PRODUCT;
	a.id = 42;
	make_put(&b, &ib);
	b.method = CATALOG__METHOD__METHOD_DELETE_PRODUCT;
	b.if_match_version = 0;
	/* A stray input on a delete is not part of it. */
	fa = fingerprint(&a);
	fb = fingerprint(&b);
	assert_true(fp_equal(fa, fb));
	fp_free(fb);
	b.if_match_version = 2;
	fb = fingerprint(&b);
	assert_false(fp_equal(fa, fb));
	fp_free(fa);
	fp_free(fb);
}

static void
test_write_fingerprint_unpacks(void **state)
{
	Catalog__Request      a, *u;
	Catalog__ProductInput ia;
	fp                    fa;

	(void) state;
	make_put(&a, &ia);
	a.request_id = "rid";
	fa = fingerprint(&a);
	u = catalog__request__unpack(NULL, fa.len, fa.data);
	assert_non_null(u);
	assert_int_equal(u->method, CATALOG__METHOD__METHOD_REPLACE_PRODUCT);
	assert_int_equal(u->id, 42);
	assert_int_equal(u->if_match_version, 3);
	assert_string_equal(u->request_id, "");
	assert_non_null(u->input);
	assert_string_equal(u->input->sku, "SKU-42");
	assert_int_equal(u->input->stock, 10);
	catalog__request__free_unpacked(u, NULL);
	fp_free(fa);
}

static void
test_write_check(void **state)
{
	Catalog__Request      rq;
	Catalog__ProductInput in;
	const char           *why = NULL;
	char                  longkey[PS_IDEMPOTENCY_KEY_MAX + 2];

	(void) state;
	make_put(&rq, &in);
	assert_int_equal(ps_write_check(&rq, &why), CM_OK);

	rq.id = 0;
	assert_int_equal(ps_write_check(&rq, &why), CM_EINVAL);
	rq.id = 42;
	rq.input = NULL;
	assert_int_equal(ps_write_check(&rq, &why), CM_EINVAL);
	rq.input = &in;
	rq.if_match_version = -1;
	assert_int_equal(ps_write_check(&rq, &why), CM_EINVAL);
	rq.if_match_version = 0;

	/* A create has no id and no If-Match. */
	rq.method = CATALOG__METHOD__METHOD_CREATE_PRODUCT;
	assert_int_equal(ps_write_check(&rq, &why), CM_EINVAL);
	rq.id = 0;
	assert_int_equal(ps_write_check(&rq, &why), CM_OK);
	rq.if_match_version = 1;
	assert_int_equal(ps_write_check(&rq, &why), CM_EINVAL);
	rq.if_match_version = 0;

	/* PATCH: known mask bits only. */
	rq.method = CATALOG__METHOD__METHOD_PATCH_PRODUCT;
	rq.id = 42;
	in.mask = PS_MASK_ALL;
	assert_int_equal(ps_write_check(&rq, &why), CM_OK);
	in.mask = PS_MASK_STOCK | (1u << 1);
	assert_int_equal(ps_write_check(&rq, &why), CM_EINVAL);
	in.mask = 1u << 15;
	assert_int_equal(ps_write_check(&rq, &why), CM_EINVAL);
	in.mask = PS_MASK_NAME;

	/* DELETE needs no input. */
	rq.method = CATALOG__METHOD__METHOD_DELETE_PRODUCT;
	rq.input = NULL;
	assert_int_equal(ps_write_check(&rq, &why), CM_OK);

	/* Keys: empty means none; too long is refused. */
	rq.idempotency_key = "";
	assert_int_equal(ps_write_check(&rq, &why), CM_OK);
	memset(longkey, 'k', sizeof(longkey) - 1);
	longkey[sizeof(longkey) - 1] = '\0';
	rq.idempotency_key = longkey;
	assert_int_equal(ps_write_check(&rq, &why), CM_EINVAL);
	longkey[PS_IDEMPOTENCY_KEY_MAX] = '\0';
	assert_int_equal(ps_write_check(&rq, &why), CM_OK);

	rq.method = CATALOG__METHOD__METHOD_GET_PRODUCT;
	assert_int_equal(ps_write_check(&rq, &why), CM_EINVAL);
	assert_non_null(why);
}

static void
test_write_status_mapping(void **state)
{
	static const struct {
		int             sql;
		Catalog__Status st;
		int             has_detail;
	} cases[] = {
	    {200, CATALOG__STATUS__STATUS_OK, 0},
	    {201, CATALOG__STATUS__STATUS_CREATED, 0},
	    {204, CATALOG__STATUS__STATUS_NO_CONTENT, 0},
	    {400, CATALOG__STATUS__STATUS_INVALID, 1},
	    {404, CATALOG__STATUS__STATUS_NOT_FOUND, 1},
	    {409, CATALOG__STATUS__STATUS_CONFLICT, 1},
	    {412, CATALOG__STATUS__STATUS_PRECONDITION_FAILED, 1},
	    {422, CATALOG__STATUS__STATUS_UNPROCESSABLE, 1},
	    {500, CATALOG__STATUS__STATUS_INTERNAL, 1},
	    {0, CATALOG__STATUS__STATUS_INTERNAL, 1},
	};

	(void) state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *detail = "x";
		assert_int_equal(
		    ps_write_status(cases[i].sql, &detail), cases[i].st);
		assert_int_equal(detail != NULL, cases[i].has_detail);
	}
}

static void
test_write_mask_bits_follow_proto(void **state)
{
	(void) state;
	/* Bit (1 << field number) of catalog.ProductInput. */
	assert_int_equal(PS_MASK_SKU,
	    1u << catalog__product_input__descriptor.fields[0].id);
	assert_int_equal(PS_MASK_ALL, 0xfcu);
	for (unsigned i = 0; i < catalog__product_input__descriptor.n_fields;
	     i++) {
		const ProtobufCFieldDescriptor *f =
		    &catalog__product_input__descriptor.fields[i];
		if (strcmp(f->name, "mask") == 0) {
			continue;
		}
		if ((PS_MASK_ALL & (1u << f->id)) == 0) {
			fail_msg(
			    "field %s (%u) has no mask bit", f->name, f->id);
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_write_fingerprint_deterministic),
	    cmocka_unit_test(test_write_fingerprint_ignores_transport),
	    cmocka_unit_test(test_write_fingerprint_sees_each_field),
	    cmocka_unit_test(test_write_fingerprint_patch_mask),
	    cmocka_unit_test(test_write_fingerprint_put_ignores_mask),
	    cmocka_unit_test(test_write_fingerprint_delete),
	    cmocka_unit_test(test_write_fingerprint_unpacks),
	    cmocka_unit_test(test_write_check),
	    cmocka_unit_test(test_write_status_mapping),
	    cmocka_unit_test(test_write_mask_bits_follow_proto),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
