/* it_write.h - helpers for write-path tests: JSON requests, ETags, 422
 * bodies, row counts and threads started together.
 *
 * Functions named it_must_* / it_expect_* fail the running cmocka test and
 * must only be called from the test's own thread. The others never fail a
 * test and are safe from any thread.
 */
#ifndef IT_WRITE_H
#define IT_WRITE_H

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

#include "it.h"

#define IT_JSON         "application/json"
#define IT_MERGE_PATCH  "application/merge-patch+json"
#define IT_MAX_EXTRA_HD 8

/* Sends method path with body and "Content-Type: ctype" (no Content-Type
 * header when ctype is NULL) plus extra headers (NULL-terminated, at most
 * IT_MAX_EXTRA_HD, may be NULL). Returns it_http()'s result; thread-safe. */
int it_http_json(it_http_resp *r, int port, const char *method,
    const char *path, const char *ctype, const char *const extra[],
    const char *body);

/* The same, failing the test when no valid HTTP answer comes back. */
void it_must_json(it_http_resp *r, int port, const char *method,
    const char *path, const char *ctype, const char *const extra[],
    const char *body);

/* Returns N from an ETag header "N" (quotes required), or -1 when the
 * header is missing or not that shape. */
long long it_etag_version(const it_http_resp *r);

/* Writes into buf a product body with all six fields. */
void it_product_body(char *buf, size_t len, const char *sku, const char *name,
    const char *desc, long long price, const char *currency, long long stock);

/* Returns a malloc'd string of n copies of s (free it). */
char *it_repeat(const char *s, size_t n);

/* Checks an error answer without pinning its slug: status,
 * application/problem+json, a JSON object whose "status" is status and
 * whose "type" starts with "/problems/". */
void it_expect_problem_status(const it_http_resp *r, int status);

/* Checks a 422 answer: it_expect_problem_status(r, 422), an "errors"
 * array of {"field": string, "message": non-empty string} objects that
 * names every field in fields (NULL-terminated) and no other. */
void it_expect_field_errors(const it_http_resp *r, const char *const fields[]);

/* Returns how many products rows have this sku (-1 on error). sku must
 * not hold a quote. */
long long it_rows_with_sku(const char *sku);

/* Returns the products row's version for id, 0 when there is no such row,
 * -1 on error. */
long long it_row_version(int64_t id);

/* Runs fn(i, arg) for i in 0..n-1 on n threads that are released
 * together (a barrier), and joins them. Returns 0, or -1 when a thread
 * could not be started (none run then). */
int it_parallel(int n, void (*fn)(int i, void *arg), void *arg);

/* The same, with prep(i, arg) run on each thread before the barrier (for
 * example to open its connection); prep may be NULL. */
int it_parallel_prep(int n, void (*prep)(int i, void *arg),
    void (*fn)(int i, void *arg), void *arg);

/* A string unique to this process and call, for skus and keys:
 * "<prefix>-<pid>-<counter>". Thread-safe. */
void it_unique(char *buf, size_t len, const char *prefix);

#endif /* IT_WRITE_H */
