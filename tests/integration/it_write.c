/* it_write.c - helpers for write-path tests: JSON requests, ETags, 422
 * bodies, row counts and threads started together. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "it_check.h"
#include "it_write.h"

int
it_http_json(it_http_resp *r, int port, const char *method, const char *path,
    const char *ctype, const char *const extra[], const char *body)
{
	const char *h[IT_MAX_EXTRA_HD + 2];
	char        ct[160];
	int         n = 0;

	if (ctype != NULL) {
		snprintf(ct, sizeof(ct), "Content-Type: %s", ctype);
		h[n++] = ct;
	}
	for (int i = 0; extra != NULL && extra[i] != NULL; i++) {
		if (i >= IT_MAX_EXTRA_HD) {
			memset(r, 0, sizeof(*r));
			return -1;
		}
		h[n++] = extra[i];
	}
	h[n] = NULL;
	return it_http(r, port, method, path, h, body, body ? strlen(body) : 0,
	    IT_HTTP_TIMEOUT_MS);
}

void
it_must_json(it_http_resp *r, int port, const char *method, const char *path,
    const char *ctype, const char *const extra[], const char *body)
{
	if (it_http_json(r, port, method, path, ctype, extra, body) != 0) {
		fail_msg("%s %s on port %d: no valid HTTP answer in %d ms",
		    method, path, port, IT_HTTP_TIMEOUT_MS);
	}
}

long long
it_etag_version(const it_http_resp *r)
{
	const char *e = it_http_header(r, "ETag");
	char       *end;
	long long   v;

	if (e == NULL || e[0] != '"' || e[1] < '0' || e[1] > '9') {
		return -1;
	}
	v = strtoll(e + 1, &end, 10);
	if (end[0] != '"' || end[1] != '\0') {
		return -1;
	}
	return v;
}

void
it_product_body(char *buf, size_t len, const char *sku, const char *name,
    const char *desc, long long price, const char *currency, long long stock)
{
	snprintf(buf, len,
	    "{\"sku\":\"%s\",\"name\":\"%s\",\"description\":\"%s\","
	    "\"price_cents\":%lld,\"currency\":\"%s\",\"stock\":%lld}",
	    sku, name, desc, price, currency, stock);
}

char *
it_repeat(const char *s, size_t n)
{
	size_t l = strlen(s);
	char  *out = malloc(l * n + 1);

	assert_non_null(out);
	for (size_t i = 0; i < n; i++) {
		memcpy(out + i * l, s, l);
	}
	out[l * n] = '\0';
	return out;
}

void
it_expect_problem_status(const it_http_resp *r, int status)
{
	const char  *ct = it_http_header(r, "Content-Type");
	json_object *o, *v;

	it_expect_status(r, status);
	if (ct == NULL || strncmp(ct, "application/problem+json", 24) != 0) {
		it_print_resp(r);
		fail_msg("Content-Type %s, want application/problem+json",
		    ct ? ct : "missing");
	}
	o = it_json(r);
	if (!json_object_object_get_ex(o, "status", &v) ||
	    json_object_get_int(v) != status ||
	    !json_object_object_get_ex(o, "type", &v) ||
	    !json_object_is_type(v, json_type_string) ||
	    strncmp(json_object_get_string(v), "/problems/", 10) != 0) {
		it_print_resp(r);
		json_object_put(o);
		fail_msg("problem body lacks status %d or a /problems/ type",
		    status);
	}
	json_object_put(o);
}

void
it_expect_field_errors(const it_http_resp *r, const char *const fields[])
{
	json_object *o, *errs;
	size_t       want = 0, n;

	it_expect_problem_status(r, 422);
	o = it_json(r);
	if (!json_object_object_get_ex(o, "errors", &errs) ||
	    !json_object_is_type(errs, json_type_array)) {
		it_print_resp(r);
		json_object_put(o);
		fail_msg("422 without an \"errors\" array");
	}
	n = json_object_array_length(errs);
	for (size_t i = 0; i < n; i++) {
		json_object *e = json_object_array_get_idx(errs, i), *f, *m;
		if (!json_object_object_get_ex(e, "field", &f) ||
		    !json_object_is_type(f, json_type_string) ||
		    !json_object_object_get_ex(e, "message", &m) ||
		    !json_object_is_type(m, json_type_string) ||
		    json_object_get_string_len(m) == 0) {
			it_print_resp(r);
			json_object_put(o);
			fail_msg("errors[%zu] is not {field, message}", i);
		}
	}
	for (; fields[want] != NULL; want++) {
		int found = 0;
		for (size_t i = 0; i < n && !found; i++) {
			json_object *f;
			json_object_object_get_ex(
			    json_object_array_get_idx(errs, i), "field", &f);
			found = strcmp(json_object_get_string(f),
			            fields[want]) == 0;
		}
		if (!found) {
			it_print_resp(r);
			json_object_put(o);
			fail_msg("422 errors do not name field \"%s\"",
			    fields[want]);
		}
	}
	if (n != want) {
		it_print_resp(r);
		json_object_put(o);
		fail_msg("422 lists %zu errors, want %zu", n, want);
	}
	json_object_put(o);
}

long long
it_rows_with_sku(const char *sku)
{
	char sql[256];

	snprintf(sql, sizeof(sql),
	    "SELECT count(*) FROM products WHERE sku = '%s'", sku);
	return it_pg_scalar_ll(sql, -1);
}

long long
it_row_version(int64_t id)
{
	char sql[256];

	snprintf(sql, sizeof(sql),
	    "SELECT coalesce((SELECT version FROM products WHERE id = "
	    "%" PRId64 "), 0)",
	    id);
	return it_pg_scalar_ll(sql, -1);
}

/* ---- threads released together ---------------------------------------- */

typedef struct par {
	pthread_mutex_t mu;
	pthread_cond_t  cv;
	int             go; /* 1: run, -1: give up */
	int             ready;
	void (*prep)(int i, void *arg);
	void (*fn)(int i, void *arg);
	void *arg;
} par;

typedef struct par_arg {
	par *p;
	int  i;
} par_arg;

static void *
par_main(void *a)
{
	par_arg *pa = a;
	par     *p = pa->p;
	int      go;

	if (p->prep != NULL) {
		p->prep(pa->i, p->arg);
	}
	pthread_mutex_lock(&p->mu);
	p->ready++;
	pthread_cond_broadcast(&p->cv);
	while (p->go == 0) {
		pthread_cond_wait(&p->cv, &p->mu);
	}
	go = p->go;
	pthread_mutex_unlock(&p->mu);
	if (go > 0) {
		p->fn(pa->i, p->arg);
	}
	return NULL;
}

int
it_parallel(int n, void (*fn)(int i, void *arg), void *arg)
{
	return it_parallel_prep(n, NULL, fn, arg);
}

int
it_parallel_prep(int n, void (*prep)(int i, void *arg),
    void (*fn)(int i, void *arg), void *arg)
{
	par            p = {.mu = PTHREAD_MUTEX_INITIALIZER,
	               .cv = PTHREAD_COND_INITIALIZER,
	               .prep = prep,
	               .fn = fn,
	               .arg = arg};
	pthread_t     *t = calloc((size_t) n, sizeof(*t));
	par_arg       *a = calloc((size_t) n, sizeof(*a));
	pthread_attr_t attr;
	int            started = 0, rv = 0;

	if (t == NULL || a == NULL) {
		free(t);
		free(a);
		return -1;
	}
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	for (; started < n; started++) {
		a[started] = (par_arg) {&p, started};
		if (pthread_create(
		        &t[started], &attr, par_main, &a[started]) != 0) {
			rv = -1;
			break;
		}
	}
	pthread_attr_destroy(&attr);
	pthread_mutex_lock(&p.mu);
	while (rv == 0 && p.ready < n) {
		pthread_cond_wait(&p.cv, &p.mu);
	}
	p.go = rv == 0 ? 1 : -1;
	pthread_cond_broadcast(&p.cv);
	pthread_mutex_unlock(&p.mu);
	for (int i = 0; i < started; i++) {
		pthread_join(t[i], NULL);
	}
	free(t);
	free(a);
	return rv;
}

void
it_unique(char *buf, size_t len, const char *prefix)
{
	static unsigned long counter;
	unsigned long c = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);

	snprintf(buf, len, "%s-%ld-%lu", prefix, (long) getpid(), c);
}
