/* it_check.h - cmocka assertions on HTTP answers: products, problems, ids.
 *
 * Include after <cmocka.h>'s prerequisites (stdarg, stddef, stdint,
 * setjmp). Each helper fails the running test with a message that shows
 * the response when a check does not hold.
 */
#ifndef IT_CHECK_H
#define IT_CHECK_H

#include <json-c/json.h>
#include <stdint.h>

#include "it.h"

/* GET path (with optional headers) on port; fails the test when the
 * request itself fails. The caller frees *r. */
void it_must_get(
    it_http_resp *r, int port, const char *path, const char *const hdrs[]);

/* Any method; body may be NULL. */
void it_must_http(it_http_resp *r, int port, const char *method,
    const char *path, const char *const hdrs[], const char *body);

/* Fails unless r->status == status (prints the response otherwise). */
void it_expect_status(const it_http_resp *r, int status);

/* Fails unless header name is present and equals value exactly. */
void it_expect_header(
    const it_http_resp *r, const char *name, const char *value);

/* Parses r's body as JSON; fails on bad JSON. json_object_put() it. */
json_object *it_json(const it_http_resp *r);

/* Checks that o is a product object: exactly the design's keys in the
 * design's order with the right JSON types, id == id, RFC 3339 UTC
 * timestamps. Values other than id are checked by the caller. */
void it_expect_product_shape(json_object *o, int64_t id);

/* Checks a seeded product (see it_seed_products) field by field. */
void it_expect_seeded_product(json_object *o, int64_t id);

/* Checks an error answer: status, Content-Type application/problem+json,
 * X-Request-Id, and body {type "/problems/<slug>", title, status, detail,
 * request_id equal to the X-Request-Id header}. */
void it_expect_problem(const it_http_resp *r, int status, const char *slug);

/* Returns the string member key of o, failing when it is missing or not a
 * string. The pointer lives as long as o. */
const char *it_json_str(json_object *o, const char *key);

/* Returns the integer member key of o, failing when missing or not an
 * integer. */
int64_t it_json_int(json_object *o, const char *key);

/* Prints a response (status, headers, first bytes of the body). */
void it_print_resp(const it_http_resp *r);

#endif /* IT_CHECK_H */
