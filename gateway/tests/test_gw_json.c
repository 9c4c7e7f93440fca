/* test_gw_json.c - exact JSON text of products, lists, problems. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cm.h"
#include "gw.h"

/* 2026-11-28T05:00:00Z */
#define T0 1795842000000000LL

static void
product(Catalog__Product *p, int64_t id)
{
	catalog__product__init(p);
	p->id = id;
	p->sku = "SKU-42";
	p->name = "Widget";
	p->description = "A widget.";
	p->price_cents = 1999;
	p->currency = "USD";
	p->stock = 10;
	p->version = 1;
	p->created_at_us = T0;
	p->updated_at_us = T0 + 1500000; /* sub-second part is dropped */
}

static void
assert_json(gw_buf *b, const char *want)
{
	assert_int_equal(b->err, 0);
	assert_int_equal(b->len, strlen(want));
	assert_string_equal(b->data, want);
	gw_buf_fini(b);
}

static gw_buf strbuf;

/* Returns s as JSON text; valid until the next call. */
static const char *
str(const char *s)
{
	gw_buf_fini(&strbuf);
	gw_json_string(&strbuf, s);
	return strbuf.data;
}

static void
test_json_product_exact_text(void **state)
{
	Catalog__Product p;
	gw_buf           b;
	(void) state;
	product(&p, 42);
	gw_buf_init(&b);
	assert_int_equal(gw_json_product(&b, &p), 0);
	assert_json(&b,
	    "{\"id\":42,\"sku\":\"SKU-42\",\"name\":\"Widget\","
	    "\"description\":\"A widget.\",\"price_cents\":1999,"
	    "\"currency\":\"USD\",\"stock\":10,\"version\":1,"
	    "\"created_at\":\"2026-11-28T05:00:00Z\","
	    "\"updated_at\":\"2026-11-28T05:00:01Z\"}");
}

static void
test_json_product_extremes(void **state)
{
	Catalog__Product p;
	gw_buf           b;
	(void) state;
	product(&p, INT64_MAX);
	p.price_cents = INT64_MIN;
	p.stock = -5;
	p.sku = NULL; /* treated as "" */
	gw_buf_init(&b);
	gw_json_product(&b, &p);
	assert_non_null(strstr(b.data, "\"id\":9223372036854775807,"));
	assert_non_null(strstr(b.data, "\"sku\":\"\","));
	assert_non_null(
	    strstr(b.data, "\"price_cents\":-9223372036854775808,"));
	assert_non_null(strstr(b.data, "\"stock\":-5,"));
	gw_buf_fini(&b);
}

static void
test_json_string_escapes(void **state)
{
	(void) state;
	assert_string_equal(str("plain"), "\"plain\"");
	assert_string_equal(str(""), "\"\"");
	assert_string_equal(str(NULL), "\"\"");
	assert_string_equal(str("a\"b\\c/d"), "\"a\\\"b\\\\c/d\"");
	assert_string_equal(str("\b\f\n\r\t"), "\"\\b\\f\\n\\r\\t\"");
	assert_string_equal(str("\x01\x1f\x7f"), "\"\\u0001\\u001f\x7f\"");
}

static void
test_json_string_utf8_passthrough(void **state)
{
	(void) state;
	/* é, €, 𝄞 (4 bytes) stay as they are */
	assert_string_equal(str("caf\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e"),
	    "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e\"");
}

static void
test_json_string_invalid_utf8_replaced(void **state)
{
	(void) state;
	assert_string_equal(str("a\xff"
	                        "b"),
	    "\"a\\ufffdb\"");
	/* truncated sequence at the end */
	assert_string_equal(str("x\xe2\x82"), "\"x\\ufffd\\ufffd\"");
	/* overlong "/" and a UTF-16 surrogate */
	assert_string_equal(str("\xc0\xaf"), "\"\\ufffd\\ufffd\"");
	assert_string_equal(str("\xed\xa0\x80"), "\"\\ufffd\\ufffd\\ufffd\"");
	/* above U+10FFFF */
	assert_string_equal(
	    str("\xf4\x90\x80\x80"), "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");
	/* lone continuation byte */
	assert_string_equal(str("\x80"), "\"\\ufffd\"");
}

static void
test_json_list_with_next(void **state)
{
	Catalog__Product  p[2];
	Catalog__Product *items[2] = {&p[0], &p[1]};
	gw_buf            b;
	(void) state;
	product(&p[0], 1);
	product(&p[1], 2);
	p[1].name = "Two";
	gw_buf_init(&b);
	gw_json_list(&b, items, 2, 2);
	assert_non_null(strstr(b.data, "{\"items\":[{\"id\":1,"));
	assert_non_null(strstr(b.data,
	    "},{\"id\":2,\"sku\":\"SKU-42\","
	    "\"name\":\"Two\","));
	assert_non_null(strstr(b.data, "\"}],\"next_after\":2}"));
	assert_int_equal(b.data[b.len - 1], '}');
	gw_buf_fini(&b);
}

static void
test_json_list_empty_next_null(void **state)
{
	gw_buf b;
	(void) state;
	gw_buf_init(&b);
	gw_json_list(&b, NULL, 0, 0);
	assert_json(&b, "{\"items\":[],\"next_after\":null}");
}

static void
test_json_status(void **state)
{
	gw_buf b;
	(void) state;
	gw_buf_init(&b);
	gw_json_status(&b, "ok");
	assert_json(&b, "{\"status\":\"ok\"}");
}

static void
test_json_problem_exact_text(void **state)
{
	gw_buf b;
	(void) state;
	gw_buf_init(&b);
	assert_int_equal(
	    gw_json_problem(&b, 404, "no such product", "abc-1"), 0);
	assert_json(&b,
	    "{\"type\":\"/problems/not-found\",\"title\":\"Not Found\","
	    "\"status\":404,\"detail\":\"no such product\","
	    "\"request_id\":\"abc-1\"}");
	gw_buf_init(&b);
	gw_json_problem(&b, 400, "bad \"x\"\n", "r");
	assert_json(&b,
	    "{\"type\":\"/problems/bad-request\",\"title\":\"Bad Request\","
	    "\"status\":400,\"detail\":\"bad \\\"x\\\"\\n\","
	    "\"request_id\":\"r\"}");
}

static void
test_json_problem_slugs(void **state)
{
	static const struct {
		int         status;
		const char *slug;
	} want[] = {
	    {400, "bad-request"}, {404, "not-found"},
	    {405, "method-not-allowed"}, {413, "payload-too-large"},
	    {409, "conflict"}, {412, "precondition-failed"},
	    {415, "unsupported-media-type"}, {422, "unprocessable"},
	    {503, "unavailable"}, {504, "gateway-timeout"},
	    {502, "bad-gateway"}, {500, "internal"},
	    {418, "bad-request"}, /* unlisted 4xx */
	    {599, "internal"},    /* unlisted 5xx */
	};
	(void) state;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		assert_string_equal(
		    gw_json_problem_slug(want[i].status), want[i].slug);
	}
	assert_string_equal(gw_json_problem_title(504), "Gateway Timeout");
}

static void
test_json_problem_default_detail(void **state)
{
	gw_buf b;
	(void) state;
	gw_buf_init(&b);
	gw_json_problem(&b, 502, NULL, "r");
	assert_non_null(strstr(b.data, "\"detail\":\"Bad Gateway\""));
	gw_buf_fini(&b);
}

static void
test_json_problem_fields_lists_errors(void **state)
{
	gw_buf       b;
	gw_field_err errs[2] = {
	    {"price_cents", "must be an integer"}, {"x\"y", "unknown"}};
	(void) state;
	gw_buf_init(&b);
	assert_int_equal(
	    gw_json_problem_fields(&b, "2 fields failed", "r", errs, 2), 0);
	assert_json(&b,
	    "{\"type\":\"/problems/validation-failed\","
	    "\"title\":\"Validation Failed\",\"status\":422,"
	    "\"detail\":\"2 fields failed\",\"request_id\":\"r\","
	    "\"errors\":[{\"field\":\"price_cents\","
	    "\"message\":\"must be an integer\"},"
	    "{\"field\":\"x\\\"y\",\"message\":\"unknown\"}]}");
}

static void
test_json_buf_grows(void **state)
{
	gw_buf b;
	char   chunk[100];
	(void) state;
	memset(chunk, 'x', sizeof(chunk));
	gw_buf_init(&b);
	for (int i = 0; i < 1000; i++) {
		gw_buf_add(&b, chunk, sizeof(chunk));
	}
	assert_int_equal(b.err, 0);
	assert_int_equal(b.len, 100000);
	assert_int_equal(b.data[b.len], '\0');
	gw_buf_fini(&b);
	gw_buf_fini(&b); /* twice is harmless */
}

/* gw_json_time() must write what gmtime_r() and strftime() write, over
 * leap years, century rules and every time of day; outside 1970..9999 it
 * declines and the caller falls back to them. */
static void
test_json_time_matches_strftime(void **state)
{
	static const int64_t S = 1000000;
	static const int64_t edges[] = {0, 951782400, 951868800, 4107542400,
	    4107456000, 253402300799, 1795842000, 68256000, 2147483647,
	    2147483648};
	char                 got[32], want[32];
	(void) state;
	/* every day of 1970..2100 at a moving time of day, and each edge */
	for (int64_t t = 0; t < 4133980800; t += 86400 + 3607) {
		assert_int_equal(gw_json_time(t * S + 999999, got), 20);
		cm_fmt_rfc3339(t * S + 999999, want, sizeof(want));
		assert_string_equal(got, want);
	}
	for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
		assert_int_equal(gw_json_time(edges[i] * S, got), 20);
		cm_fmt_rfc3339(edges[i] * S, want, sizeof(want));
		assert_string_equal(got, want);
	}
	assert_int_equal(gw_json_time(-1 * S, got), 0);
	assert_int_equal(gw_json_time(253402300800 * S, got), 0);
	assert_int_equal(gw_json_time(INT64_MIN, got), 0);
	assert_int_equal(gw_json_time(INT64_MAX, got), 0);
}

static void
test_json_integers_exact(void **state)
{
	Catalog__Product p;
	gw_buf           b;
	(void) state;
	product(&p, 0);
	p.price_cents = INT64_MIN;
	p.stock = -1;
	p.version = 2147483647;
	gw_buf_init(&b);
	gw_json_product(&b, &p);
	assert_non_null(strstr(b.data, "{\"id\":0,"));
	assert_non_null(
	    strstr(b.data, "\"price_cents\":-9223372036854775808,"));
	assert_non_null(strstr(b.data, "\"stock\":-1,"));
	assert_non_null(strstr(b.data, "\"version\":2147483647,"));
	gw_buf_fini(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_json_product_exact_text),
	    cmocka_unit_test(test_json_product_extremes),
	    cmocka_unit_test(test_json_string_escapes),
	    cmocka_unit_test(test_json_string_utf8_passthrough),
	    cmocka_unit_test(test_json_string_invalid_utf8_replaced),
	    cmocka_unit_test(test_json_list_with_next),
	    cmocka_unit_test(test_json_list_empty_next_null),
	    cmocka_unit_test(test_json_status),
	    cmocka_unit_test(test_json_problem_exact_text),
	    cmocka_unit_test(test_json_problem_slugs),
	    cmocka_unit_test(test_json_problem_default_detail),
	    cmocka_unit_test(test_json_problem_fields_lists_errors),
	    cmocka_unit_test(test_json_buf_grows),
	    cmocka_unit_test(test_json_time_matches_strftime),
	    cmocka_unit_test(test_json_integers_exact),
	};
	int rv = cmocka_run_group_tests(tests, NULL, NULL);
	gw_buf_fini(&strbuf);
	return rv;
}
