/* test_gw_body.c - JSON write bodies: syntax, every rule, merge patch. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cm.h"
#include "gw.h"

static gw_body body;

static int
teardown(void **state)
{
	(void) state;
	gw_body_fini(&body);
	return 0;
}

static int
parse(const char *text, gw_body_mode mode)
{
	gw_body_fini(&body);
	return gw_body_parse(&body, text, strlen(text), mode);
}

/* Returns the message recorded for field, or NULL. */
static const char *
err_of(const char *field)
{
	for (size_t i = 0; i < body.nerrs; i++) {
		if (strcmp(body.errs[i].field, field) == 0) {
			return body.errs[i].message;
		}
	}
	return NULL;
}

/* Asserts that text is a 422 naming exactly the one field. */
static void
bad_field(const char *text, gw_body_mode mode, const char *field)
{
	assert_int_equal(parse(text, mode), CM_EINVAL);
	assert_int_equal(body.status, 422);
	if (body.nerrs != 1 || strcmp(body.errs[0].field, field) != 0) {
		fail_msg("%s: want one error on '%s', got %zu (first '%s')",
		    text, field, body.nerrs,
		    body.nerrs > 0 ? body.errs[0].field : "");
	}
}

static void
bad_json(const char *text, size_t len)
{
	gw_body_fini(&body);
	if (gw_body_parse(&body, text, len, GW_BODY_FULL) != CM_EINVAL ||
	    body.status != 400) {
		fail_msg("%.*s: want 400, got status %d", (int) len, text,
		    body.status);
	}
	assert_true(strlen(body.detail) > 0);
}

#define BAD_JSON(s) bad_json(s, sizeof(s) - 1)

static void
test_body_full_with_defaults(void **state)
{
	(void) state;
	assert_int_equal(parse("{\"sku\":\"SKU-1\",\"name\":\"Lamp\","
	                       "\"price_cents\":1999}",
	                     GW_BODY_FULL),
	    CM_OK);
	assert_int_equal(body.status, 0);
	assert_string_equal(body.input.sku, "SKU-1");
	assert_string_equal(body.input.name, "Lamp");
	assert_string_equal(body.input.description, "");
	assert_string_equal(body.input.currency, "USD");
	assert_true(body.input.price_cents == 1999);
	assert_int_equal(body.input.stock, 0);
	assert_int_equal(body.input.mask, 0);
}

static void
test_body_full_every_field(void **state)
{
	(void) state;
	assert_int_equal(parse(" {\"stock\":2147483647,\"currency\":\"EUR\","
	                       "\"description\":\"caf\\u00e9 \xe2\x82\xac\","
	                       "\"price_cents\":1000000000000,\"name\":\"N\","
	                       "\"sku\":\"a.B_9-z\"}\r\n",
	                     GW_BODY_FULL),
	    CM_OK);
	assert_string_equal(body.input.sku, "a.B_9-z");
	assert_string_equal(
	    body.input.description, "caf\xc3\xa9 \xe2\x82\xac");
	assert_string_equal(body.input.currency, "EUR");
	assert_true(body.input.price_cents == 1000000000000LL);
	assert_int_equal(body.input.stock, INT32_MAX);
	/* zero is a valid price and stock */
	assert_int_equal(parse("{\"sku\":\"s\",\"name\":\"n\","
	                       "\"price_cents\":0,\"stock\":0}",
	                     GW_BODY_FULL),
	    CM_OK);
}

static void
test_body_missing_required_fields(void **state)
{
	(void) state;
	assert_int_equal(parse("{}", GW_BODY_FULL), CM_EINVAL);
	assert_int_equal(body.status, 422);
	assert_int_equal(body.nerrs, 3);
	assert_string_equal(err_of("sku"), "is required");
	assert_string_equal(err_of("name"), "is required");
	assert_string_equal(err_of("price_cents"), "is required");
	assert_string_equal(body.detail, "3 fields failed validation");
}

static void
test_body_every_error_at_once(void **state)
{
	(void) state;
	assert_int_equal(
	    parse("{\"sku\":\"has space\",\"name\":\"\",\"description\":7,"
	          "\"price_cents\":\"12\",\"currency\":\"usd\","
	          "\"stock\":-1,\"colour\":\"red\",\"id\":4}",
	        GW_BODY_FULL),
	    CM_EINVAL);
	assert_int_equal(body.status, 422);
	assert_int_equal(body.nerrs, 8);
	assert_non_null(err_of("sku"));
	assert_non_null(err_of("name"));
	assert_non_null(err_of("description"));
	assert_non_null(err_of("price_cents"));
	assert_non_null(err_of("currency"));
	assert_non_null(err_of("stock"));
	assert_string_equal(err_of("colour"), "is not a field of a product");
	assert_string_equal(err_of("id"), "is read-only");
}

static void
test_body_sku_rule(void **state)
{
	char text[256];
	char sku[80];
	(void) state;
	memset(sku, 'S', 64);
	sku[64] = '\0';
	snprintf(text, sizeof(text),
	    "{\"sku\":\"%s\",\"name\":\"n\",\"price_cents\":1}", sku);
	assert_int_equal(parse(text, GW_BODY_FULL), CM_OK);
	strcat(sku, "S");
	snprintf(text, sizeof(text),
	    "{\"sku\":\"%s\",\"name\":\"n\",\"price_cents\":1}", sku);
	bad_field(text, GW_BODY_FULL, "sku");
	bad_field("{\"sku\":\"\",\"name\":\"n\",\"price_cents\":1}",
	    GW_BODY_FULL, "sku");
	bad_field("{\"sku\":\"a/b\",\"name\":\"n\",\"price_cents\":1}",
	    GW_BODY_FULL, "sku");
	bad_field("{\"sku\":\"\xc3\xa9\",\"name\":\"n\",\"price_cents\":1}",
	    GW_BODY_FULL, "sku");
	bad_field("{\"sku\":1,\"name\":\"n\",\"price_cents\":1}", GW_BODY_FULL,
	    "sku");
}

static void
test_body_name_counts_code_points(void **state)
{
	char  *text = malloc(2048);
	char   name[1024];
	size_t o = 0;
	(void) state;
	/* 200 two-byte characters: 400 bytes, 200 code points */
	for (int i = 0; i < 200; i++) {
		name[o++] = '\xc3';
		name[o++] = '\xa9';
	}
	name[o] = '\0';
	snprintf(text, 2048,
	    "{\"sku\":\"s\",\"name\":\"%s\",\"price_cents\":1}", name);
	assert_int_equal(parse(text, GW_BODY_FULL), CM_OK);
	snprintf(text, 2048,
	    "{\"sku\":\"s\",\"name\":\"%sx\",\"price_cents\":1}", name);
	bad_field(text, GW_BODY_FULL, "name");
	bad_field("{\"sku\":\"s\",\"name\":null,\"price_cents\":1}",
	    GW_BODY_FULL, "name");
	free(text);
}

static void
test_body_description_limit(void **state)
{
	size_t n = 4000 * 3 + 128;
	char  *text = malloc(n);
	size_t o;
	(void) state;
	o = (size_t) snprintf(text, n,
	    "{\"sku\":\"s\",\"name\":\"n\",\"price_cents\":1,"
	    "\"description\":\"");
	for (int i = 0; i < 4000; i++) {
		memcpy(text + o, "\xe2\x82\xac", 3); /* the euro sign */
		o += 3;
	}
	strcpy(text + o, "\"}");
	assert_int_equal(parse(text, GW_BODY_FULL), CM_OK);
	strcpy(text + o, "x\"}");
	bad_field(text, GW_BODY_FULL, "description");
	free(text);
}

static void
test_body_integer_rules(void **state)
{
	static const char *bad_price[] = {"-1", "1000000000001", "1.5", "1.0",
	    "1e3", "\"12\"", "true", "null", "[1]", "{}",
	    "9223372036854775808", "-9223372036854775809",
	    "99999999999999999999999"};
	char               text[160];
	(void) state;
	for (size_t i = 0; i < sizeof(bad_price) / sizeof(bad_price[0]); i++) {
		snprintf(text, sizeof(text),
		    "{\"sku\":\"s\",\"name\":\"n\",\"price_cents\":%s}",
		    bad_price[i]);
		bad_field(text, GW_BODY_FULL, "price_cents");
	}
	bad_field("{\"sku\":\"s\",\"name\":\"n\",\"price_cents\":1,"
	          "\"stock\":2147483648}",
	    GW_BODY_FULL, "stock");
	bad_field("{\"sku\":\"s\",\"name\":\"n\",\"price_cents\":1,"
	          "\"stock\":false}",
	    GW_BODY_FULL, "stock");
}

static void
test_body_currency_rule(void **state)
{
	static const char *bad[] = {
	    "\"usd\"", "\"US\"", "\"USDX\"", "\"U$D\"", "\"\"", "1"};
	char text[160];
	(void) state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text),
		    "{\"sku\":\"s\",\"name\":\"n\",\"price_cents\":1,"
		    "\"currency\":%s}",
		    bad[i]);
		bad_field(text, GW_BODY_FULL, "currency");
	}
}

static void
test_body_nul_in_string(void **state)
{
	(void) state;
	bad_field("{\"sku\":\"s\",\"name\":\"a\\u0000b\",\"price_cents\":1}",
	    GW_BODY_FULL, "name");
	assert_string_equal(err_of("name"), "must not contain NUL characters");
}

static void
test_body_not_an_object(void **state)
{
	static const char *bad[] = {"[]", "\"x\"", "1", "null", "true"};
	(void) state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		bad_field(bad[i], GW_BODY_FULL, "");
		bad_field(bad[i], GW_BODY_PATCH, "");
	}
}

static void
test_body_malformed_json_is_400(void **state)
{
	char deep[64];
	(void) state;
	bad_json("", 0);
	BAD_JSON("{");
	BAD_JSON("{\"sku\":}");
	BAD_JSON("{\"a\":1,}");
	BAD_JSON("{\"a\":1} x");
	BAD_JSON("{\"a\":1}{}");
	BAD_JSON("{\"a\":1}\0");
	BAD_JSON("{'a':1}");
	BAD_JSON("{\"a\":'x'}");
	BAD_JSON("{\"a\":01}");
	BAD_JSON("{\"a\":NaN}");
	BAD_JSON("{\"a\":-Infinity}");
	BAD_JSON("{\"a\":TRUE}");
	BAD_JSON("{\"a\":\"\x01\"}");
	BAD_JSON("{\"a\":\"\xff\"}");
	BAD_JSON("{\"a\":\"\xc0\xaf\"}");
	BAD_JSON("{\"a\":\"\xed\xa0\x80\"}");
	BAD_JSON("{\"a\":\"\\ud800\"}");
	BAD_JSON("{\"a\":\"\\udc00\\ud800\"}");
	BAD_JSON("{\"a\":\"\\x\"}");
	/* duplicate member names, even escaped */
	BAD_JSON("{\"sku\":\"a\",\"sku\":\"b\"}");
	BAD_JSON("{\"sku\":\"a\",\"\\u0073ku\":\"b\"}");
	/* 17 levels are too deep; 16 parse (and fail the rules) */
	memset(deep, 0, sizeof(deep));
	strcpy(deep, "{\"a\":");
	memset(deep + 5, '[', 16);
	memset(deep + 21, ']', 16);
	strcat(deep, "}");
	bad_json(deep, strlen(deep));
	deep[5] = ' ';
	deep[21 + 15] = ' ';
	assert_int_equal(parse(deep, GW_BODY_FULL), CM_EINVAL);
	assert_int_equal(body.status, 422);
	/* a good surrogate pair and nested duplicates are fine for JSON */
	assert_int_equal(parse("{\"sku\":\"s\",\"name\":\"\\ud83d\\ude00\","
	                       "\"price_cents\":1}",
	                     GW_BODY_FULL),
	    CM_OK);
	assert_string_equal(body.input.name, "\xf0\x9f\x98\x80");
}

static void
test_body_patch_sets_mask(void **state)
{
	(void) state;
	assert_int_equal(
	    parse("{\"price_cents\":5,\"name\":\"New\"}", GW_BODY_PATCH),
	    CM_OK);
	assert_int_equal(
	    body.input.mask, GW_MASK(GW_F_PRICE_CENTS) | GW_MASK(GW_F_NAME));
	assert_true(body.input.price_cents == 5);
	assert_string_equal(body.input.name, "New");
	assert_string_equal(body.input.sku, "");
}

static void
test_body_patch_null_resets_optional(void **state)
{
	(void) state;
	assert_int_equal(parse("{\"description\":null,\"currency\":null,"
	                       "\"stock\":null}",
	                     GW_BODY_PATCH),
	    CM_OK);
	assert_int_equal(body.input.mask,
	    GW_MASK(GW_F_DESCRIPTION) | GW_MASK(GW_F_CURRENCY) |
	        GW_MASK(GW_F_STOCK));
	assert_string_equal(body.input.description, "");
	assert_string_equal(body.input.currency, "USD");
	assert_int_equal(body.input.stock, 0);
}

static void
test_body_patch_null_on_required_is_422(void **state)
{
	(void) state;
	assert_int_equal(
	    parse("{\"sku\":null,\"name\":null,\"price_cents\":null,"
	          "\"stock\":-5}",
	        GW_BODY_PATCH),
	    CM_EINVAL);
	assert_int_equal(body.status, 422);
	assert_int_equal(body.nerrs, 4);
	assert_string_equal(err_of("sku"), "cannot be null");
	assert_string_equal(err_of("name"), "cannot be null");
	assert_string_equal(err_of("price_cents"), "cannot be null");
	assert_non_null(err_of("stock"));
}

static void
test_body_patch_rules_and_unknown_fields(void **state)
{
	(void) state;
	bad_field("{\"currency\":\"eur\"}", GW_BODY_PATCH, "currency");
	bad_field("{\"version\":3}", GW_BODY_PATCH, "version");
	bad_field("{\"nope\":null}", GW_BODY_PATCH, "nope");
}

static void
test_body_empty_patch_is_422(void **state)
{
	(void) state;
	bad_field("{}", GW_BODY_PATCH, "");
	assert_string_equal(body.errs[0].message,
	    "the patch changes nothing: name at least one field");
}

static void
test_body_full_null_is_wrong_type(void **state)
{
	(void) state;
	bad_field("{\"sku\":\"s\",\"name\":\"n\",\"price_cents\":1,"
	          "\"description\":null}",
	    GW_BODY_FULL, "description");
}

static void
test_body_long_unknown_name_is_cut(void **state)
{
	char text[300];
	(void) state;
	strcpy(text, "{\"");
	memset(text + 2, 'k', 200);
	strcpy(text + 202, "\":1}");
	assert_int_equal(parse(text, GW_BODY_PATCH), CM_EINVAL);
	assert_int_equal(strlen(body.errs[0].field), GW_FIELD_NAME_MAX);
}

static void
test_body_errors_are_capped(void **state)
{
	char   text[2048];
	size_t o = 0;
	(void) state;
	text[o++] = '{';
	for (int i = 0; i < 50; i++) {
		o += (size_t) snprintf(text + o, sizeof(text) - o,
		    "%s\"f%d\":1", i > 0 ? "," : "", i);
	}
	strcpy(text + o, "}");
	assert_int_equal(parse(text, GW_BODY_PATCH), CM_EINVAL);
	assert_int_equal(body.nerrs, GW_BODY_ERRS_MAX);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_body_full_with_defaults, teardown),
	    cmocka_unit_test_teardown(test_body_full_every_field, teardown),
	    cmocka_unit_test_teardown(
	        test_body_missing_required_fields, teardown),
	    cmocka_unit_test_teardown(test_body_every_error_at_once, teardown),
	    cmocka_unit_test_teardown(test_body_sku_rule, teardown),
	    cmocka_unit_test_teardown(
	        test_body_name_counts_code_points, teardown),
	    cmocka_unit_test_teardown(test_body_description_limit, teardown),
	    cmocka_unit_test_teardown(test_body_integer_rules, teardown),
	    cmocka_unit_test_teardown(test_body_currency_rule, teardown),
	    cmocka_unit_test_teardown(test_body_nul_in_string, teardown),
	    cmocka_unit_test_teardown(test_body_not_an_object, teardown),
	    cmocka_unit_test_teardown(
	        test_body_malformed_json_is_400, teardown),
	    cmocka_unit_test_teardown(test_body_patch_sets_mask, teardown),
	    cmocka_unit_test_teardown(
	        test_body_patch_null_resets_optional, teardown),
	    cmocka_unit_test_teardown(
	        test_body_patch_null_on_required_is_422, teardown),
	    cmocka_unit_test_teardown(
	        test_body_patch_rules_and_unknown_fields, teardown),
	    cmocka_unit_test_teardown(test_body_empty_patch_is_422, teardown),
	    cmocka_unit_test_teardown(
	        test_body_full_null_is_wrong_type, teardown),
	    cmocka_unit_test_teardown(
	        test_body_long_unknown_name_is_cut, teardown),
	    cmocka_unit_test_teardown(test_body_errors_are_capped, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
