/* it_check.c - cmocka assertions on HTTP answers: products, problems, ids. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cm.h"
#include "it_check.h"

void
it_print_resp(const it_http_resp *r)
{
	fprintf(stderr, "  HTTP %d\n", r->status);
	for (int i = 0; i < r->nheaders; i++) {
		fprintf(stderr, "  %s: %s\n", r->hname[i], r->hval[i]);
	}
	fprintf(stderr, "  body (%zu bytes): %.*s\n", r->body_len,
	    (int) (r->body_len > 600 ? 600 : r->body_len),
	    r->body ? r->body : "");
}

void
it_must_http(it_http_resp *r, int port, const char *method, const char *path,
    const char *const hdrs[], const char *body)
{
	if (it_http(r, port, method, path, hdrs, body, body ? strlen(body) : 0,
	        IT_HTTP_TIMEOUT_MS) != 0) {
		fail_msg("%s %s on port %d: no valid HTTP answer in %d ms",
		    method, path, port, IT_HTTP_TIMEOUT_MS);
	}
}

void
it_must_get(
    it_http_resp *r, int port, const char *path, const char *const hdrs[])
{
	it_must_http(r, port, "GET", path, hdrs, NULL);
}

void
it_expect_status(const it_http_resp *r, int status)
{
	if (r->status != status) {
		it_print_resp(r);
		fail_msg("status %d, want %d", r->status, status);
	}
}

void
it_expect_header(const it_http_resp *r, const char *name, const char *value)
{
	const char *v = it_http_header(r, name);
	if (v == NULL || strcmp(v, value) != 0) {
		it_print_resp(r);
		fail_msg("header %s is %s%s%s, want \"%s\"", name,
		    v ? "\"" : "", v ? v : "missing", v ? "\"" : "", value);
	}
}

json_object *
it_json(const it_http_resp *r)
{
	json_tokener *tok = json_tokener_new();
	json_object  *o;

	assert_non_null(tok);
	o = json_tokener_parse_ex(tok, r->body, (int) r->body_len);
	if (o == NULL || json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != r->body_len) {
		json_tokener_free(tok);
		json_object_put(o);
		it_print_resp(r);
		fail_msg("body is not one JSON value");
	}
	json_tokener_free(tok);
	return o;
}

const char *
it_json_str(json_object *o, const char *key)
{
	json_object *v;
	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string)) {
		fail_msg("member \"%s\" missing or not a string in %s", key,
		    json_object_to_json_string(o));
	}
	return json_object_get_string(v);
}

int64_t
it_json_int(json_object *o, const char *key)
{
	json_object *v;
	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_int)) {
		fail_msg("member \"%s\" missing or not an integer in %s", key,
		    json_object_to_json_string(o));
	}
	return json_object_get_int64(v);
}

/* Returns 1 when s is "YYYY-MM-DDTHH:MM:SSZ". */
static int
is_rfc3339_utc(const char *s)
{
	static const char pat[] = "dddd-dd-ddTdd:dd:ddZ";
	if (strlen(s) != sizeof(pat) - 1) {
		return 0;
	}
	for (size_t i = 0; pat[i]; i++) {
		if (pat[i] == 'd' ? (s[i] < '0' || s[i] > '9')
		                  : s[i] != pat[i]) {
			return 0;
		}
	}
	return 1;
}

void
it_expect_product_shape(json_object *o, int64_t id)
{
	static const char *const keys[] = {"id", "sku", "name", "description",
	    "price_cents", "currency", "stock", "version", "created_at",
	    "updated_at"};
	static const json_type   types[] = {json_type_int, json_type_string,
	      json_type_string, json_type_string, json_type_int,
	      json_type_string, json_type_int, json_type_int, json_type_string,
	      json_type_string};
	size_t                   i = 0;

	if (!json_object_is_type(o, json_type_object)) {
		fail_msg("product is not an object: %s",
		    json_object_to_json_string(o));
	}
	json_object_object_foreach(o, key, val)
	{
		if (i >= sizeof(keys) / sizeof(keys[0]) ||
		    strcmp(key, keys[i]) != 0) {
			fail_msg("product key %zu is \"%s\", want \"%s\": %s",
			    i, key, i < 10 ? keys[i] : "(none)",
			    json_object_to_json_string(o));
		}
		if (!json_object_is_type(val, types[i])) {
			fail_msg(
			    "product \"%s\" has JSON type %s, want %s: %s",
			    key, json_type_to_name(json_object_get_type(val)),
			    json_type_to_name(types[i]),
			    json_object_to_json_string(o));
		}
		i++;
	}
	if (i != sizeof(keys) / sizeof(keys[0])) {
		fail_msg("product has %zu keys, want 10: %s", i,
		    json_object_to_json_string(o));
	}
	assert_int_equal(it_json_int(o, "id"), id);
	if (!is_rfc3339_utc(it_json_str(o, "created_at")) ||
	    !is_rfc3339_utc(it_json_str(o, "updated_at"))) {
		fail_msg("timestamps not YYYY-MM-DDTHH:MM:SSZ: %s",
		    json_object_to_json_string(o));
	}
}

void
it_expect_seeded_product(json_object *o, int64_t id)
{
	char want[64];

	it_expect_product_shape(o, id);
	snprintf(want, sizeof(want), "IT-%04" PRId64, id);
	assert_string_equal(it_json_str(o, "sku"), want);
	snprintf(want, sizeof(want), "Product %" PRId64, id);
	assert_string_equal(it_json_str(o, "name"), want);
	if (id == 1) {
		assert_string_equal(it_json_str(o, "description"), IT_DESC1);
	} else {
		snprintf(
		    want, sizeof(want), "Description of product %" PRId64, id);
		assert_string_equal(it_json_str(o, "description"), want);
	}
	assert_int_equal(it_json_int(o, "price_cents"), 100 * id + 99);
	assert_string_equal(it_json_str(o, "currency"), "USD");
	assert_int_equal(it_json_int(o, "stock"), id);
	assert_int_equal(it_json_int(o, "version"), id == 3 ? 7 : 1);
	assert_string_equal(
	    it_json_str(o, "created_at"), "2026-01-02T03:04:05Z");
	assert_string_equal(
	    it_json_str(o, "updated_at"), "2026-01-02T03:04:06Z");
}

void
it_expect_problem(const it_http_resp *r, int status, const char *slug)
{
	const char  *ct = it_http_header(r, "Content-Type");
	const char  *rid = it_http_header(r, "X-Request-Id");
	char         type[128];
	json_object *o;

	it_expect_status(r, status);
	if (ct == NULL || strncmp(ct, "application/problem+json", 24) != 0) {
		it_print_resp(r);
		fail_msg("Content-Type %s, want application/problem+json",
		    ct ? ct : "missing");
	}
	if (rid == NULL || !cm_reqid_ok(rid)) {
		it_print_resp(r);
		fail_msg("X-Request-Id missing or not sane");
	}
	o = it_json(r);
	snprintf(type, sizeof(type), "/problems/%s", slug);
	if (strcmp(it_json_str(o, "type"), type) != 0 ||
	    it_json_int(o, "status") != status ||
	    it_json_str(o, "title")[0] == '\0' ||
	    strcmp(it_json_str(o, "request_id"), rid) != 0) {
		it_print_resp(r);
		json_object_put(o);
		fail_msg(
		    "problem body does not match: want type %s, status %d, "
		    "a title, request_id %s",
		    type, status, rid);
	}
	(void) it_json_str(o, "detail");
	json_object_put(o);
}
