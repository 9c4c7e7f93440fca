/* ps_fake.c - fakes of ps_cache_*, ps_db_* and ps_worker_after/_rand for
 * fuzz_proto (see ps_fake.h). Besides answering, the fakes check what the
 * real edges would rely on: a cache fill carries a well-formed entry of the
 * product it names, and a database write carries what its method needs. */
#include <stdlib.h>
#include <string.h>

#include "cm.h"
#include "cm_catalog.h"
#include "fuzz_check.h"
#include "ps_fake.h"

/* One queued callback. */
typedef struct fev {
	struct fev *next;
	void (*run)(struct fev *e);
	void              *fn; /* the callback, cast back by run() */
	void              *fn2;
	void              *arg;
	int                rv;
	int                outcome;
	uint8_t           *data; /* owned; NULL for no data */
	size_t             len;
	int64_t            id;
	Catalog__Product  *product; /* handed to the callback */
	Catalog__Product **items;
	size_t             nitems;
	ps_db_written      written;
	char              *sku;
} fev;

static const uint8_t *script;
static size_t         script_len, script_pos;
static ps_worker     *worker;
static fev           *head, **tail = &head;
static size_t         pending, ran, stop_after;
static int64_t        next_id = 1000;

void
ps_fake_reset(ps_worker *w, const uint8_t *s, size_t len)
{
	script = s;
	script_len = len;
	script_pos = 0;
	worker = w;
	ran = 0;
	stop_after = 0;
	FZ_CHECK(head == NULL && pending == 0);
}

void
ps_fake_stop_after(size_t n)
{
	stop_after = n;
}

size_t
ps_fake_pending(void)
{
	return pending;
}

/* The next script byte, or -1 when the script is used up. */
static int
next(void)
{
	return script_pos < script_len ? script[script_pos++] : -1;
}

static fev *
queue(void (*run)(fev *), void *fn, void *arg)
{
	fev *e = calloc(1, sizeof(*e));

	FZ_CHECK(e != NULL);
	e->run = run;
	e->fn = fn;
	e->arg = arg;
	*tail = e;
	tail = &e->next;
	pending++;
	return e;
}

size_t
ps_fake_run(size_t max)
{
	size_t n = 0;

	while (head != NULL && n < max) {
		fev *e = head;
		if ((head = e->next) == NULL) {
			tail = &head;
		}
		pending--;
		e->run(e);
		free(e->data);
		free(e->sku);
		free(e);
		n++;
		if (stop_after != 0 && ++ran == stop_after) {
			worker->stopping = 1;
		}
	}
	return n;
}

/* A product with this id; version from the script. */
static Catalog__Product *
product(int64_t id)
{
	Catalog__Product *p = ps_msg_product_new();
	int               v = next();

	FZ_CHECK(p != NULL);
	p->id = id;
	p->version = v > 0 ? v : 1;
	p->price_cents = 1999;
	p->stock = v;
	p->sku = ps_msg_strdup("SKU-1", 5);
	p->name = ps_msg_strdup("Lamp", 4);
	FZ_CHECK(p->sku != NULL && p->name != NULL);
	return p;
}

/* A cache entry for id as Redis might hold it: negative, positive fresh
 * or stale, another product's, or raw bytes from the script. */
static void
entry(fev *e, int64_t id)
{
	int               k = next(), n;
	Catalog__Product *p;

	switch (k < 0 ? 0 : k % 5) {
	case 0:
		FZ_CHECK(ps_entry_encode(NULL, 0, &e->data, &e->len) == CM_OK);
		return;
	case 1:
	case 2:
	case 3:
		p = product(k % 5 == 3 ? (id > 1 ? id - 1 : id + 1) : id);
		FZ_CHECK(ps_entry_encode(p,
		             k % 5 == 2 ? 1 : cm_now_ms() / 1000 + 3600,
		             &e->data, &e->len) == CM_OK);
		ps_msg_product_free(p);
		return;
	default:
		n = next();
		n = n < 0 ? 0 : n;
		if ((size_t) n > script_len - script_pos) {
			n = (int) (script_len - script_pos);
		}
		e->data = malloc((size_t) n + 1);
		FZ_CHECK(e->data != NULL);
		memcpy(e->data, script + script_pos, (size_t) n);
		e->len = (size_t) n;
		script_pos += (size_t) n;
		return;
	}
}

/* ---- ps_cache ---- */

static void
run_get(fev *e)
{
	((ps_cache_get_fn) e->fn)(e->arg, e->rv, e->data, e->len);
}

int
ps_cache_get(ps_cache *c, int64_t id, ps_cache_get_fn cb, void *arg)
{
	int  op = next();
	fev *e;

	(void) c;
	if (op < 0 || op % 4 == 0) {
		return CM_EUNAVAIL;
	}
	e = queue(run_get, (void *) cb, arg);
	e->rv = op % 4 == 1 ? CM_EUNAVAIL : CM_OK;
	if (op % 4 == 3) {
		entry(e, id);
	}
	return CM_OK;
}

static void
run_lease(fev *e)
{
	((ps_cache_lease_fn) e->fn)(
	    e->arg, e->rv, e->outcome, e->data, e->len);
}

int
ps_cache_lease(ps_cache *c, int64_t id, const char *token, long long lease_ms,
    int64_t now_s, ps_cache_lease_fn cb, void *arg)
{
	int  op = next();
	fev *e;

	(void) c;
	(void) lease_ms;
	(void) now_s;
	FZ_CHECK(strlen(token) == PS_CACHE_TOKEN_LEN);
	if (op < 0 || op % 6 == 0) {
		return CM_EUNAVAIL;
	}
	e = queue(run_lease, (void *) cb, arg);
	e->rv = op % 6 == 1 ? CM_EUNAVAIL : CM_OK;
	e->outcome = op % 6 - 2; /* HIT, GRANTED, FENCED, BUSY */
	if (e->outcome == PS_LEASE_HIT) {
		entry(e, id);
	}
	return CM_OK;
}

static void
run_fill(fev *e)
{
	((ps_cache_fill_fn) e->fn)(e->arg, e->rv, e->outcome);
}

int
ps_cache_fill(ps_cache *c, int64_t id, const char *token, int version,
    const uint8_t *val, size_t len, long long ttl_ms, ps_cache_fill_fn cb,
    void *arg)
{
	Catalog__Product *p = NULL;
	int               v = 0, rv, op = next();
	int64_t           fresh;
	fev              *e;

	(void) c;
	/* Only well-formed entries of this id, under a lease, get in. */
	FZ_CHECK(strlen(token) == PS_CACHE_TOKEN_LEN && ttl_ms >= 1);
	rv = ps_entry_decode(val, len, &p, &v, &fresh);
	FZ_CHECK(rv == CM_OK || rv == CM_ENOTFOUND);
	if (rv == CM_OK) {
		FZ_CHECK(p->id == id && v == version && fresh > 0);
	} else {
		FZ_CHECK(version == 0);
	}
	ps_msg_product_free(p);
	if (op < 0 || op % 2 == 0 || cb == NULL) {
		return op < 0 || op % 2 == 0 ? CM_EUNAVAIL : CM_OK;
	}
	e = queue(run_fill, (void *) cb, arg);
	e->rv = CM_OK;
	e->outcome = op & 2 ? 1 : 0;
	return CM_OK;
}

static void
run_done(fev *e)
{
	((ps_cache_done_fn) e->fn)(e->arg, e->rv);
}

/* begin-write and end-write: fail at once, fail later, or succeed. */
static int
cache_done(ps_cache_done_fn cb, void *arg)
{
	int  op = next();
	fev *e;

	if (op < 0 || op % 3 == 0) {
		return CM_EUNAVAIL;
	}
	e = queue(run_done, (void *) cb, arg);
	e->rv = op % 3 == 1 ? CM_EUNAVAIL : CM_OK;
	return CM_OK;
}

int
ps_cache_begin_write(ps_cache *c, int64_t id, long long fence_ms,
    ps_cache_done_fn cb, void *arg)
{
	(void) c;
	(void) fence_ms;
	FZ_CHECK(id > 0);
	return cache_done(cb, arg);
}

int
ps_cache_end_write(ps_cache *c, int64_t id, ps_cache_done_fn cb, void *arg)
{
	(void) c;
	FZ_CHECK(id > 0);
	return cache_done(cb, arg);
}

int
ps_cache_release(ps_cache *c, int64_t id, const char *token)
{
	(void) c;
	(void) id;
	FZ_CHECK(strlen(token) == PS_CACHE_TOKEN_LEN);
	return CM_OK;
}

/* ---- ps_db ---- */

static void
run_sent(fev *e)
{
	((ps_db_sent_fn) e->fn)(e->arg);
}

static void
run_product(fev *e)
{
	Catalog__Product *p = e->product;
	e->product = NULL;
	((ps_db_product_fn) e->fn)(e->arg, e->rv, p);
}

int
ps_db_get_product(
    ps_db *db, int64_t id, ps_db_sent_fn sent, ps_db_product_fn cb, void *arg)
{
	int  op = next();
	fev *e;

	(void) db;
	FZ_CHECK(id > 0);
	if (op < 0 || op % 5 == 0) {
		return CM_EUNAVAIL;
	}
	if (sent != NULL) {
		queue(run_sent, (void *) sent, arg);
	}
	e = queue(run_product, (void *) cb, arg);
	switch (op % 5) {
	case 1:
		e->rv = CM_EUNAVAIL;
		break;
	case 2:
		e->rv = CM_EINTERNAL;
		break;
	case 3:
		e->rv = CM_OK; /* no such row */
		break;
	default:
		e->rv = CM_OK;
		e->product = product(id);
		break;
	}
	return CM_OK;
}

static void
run_list(fev *e)
{
	Catalog__Product **items = e->items;
	e->items = NULL;
	((ps_db_list_fn) e->fn)(e->arg, e->rv, items, e->nitems);
}

int
ps_db_list_products(
    ps_db *db, int64_t after, int limit, ps_db_list_fn cb, void *arg)
{
	int  op = next(), n;
	fev *e;

	(void) db;
	FZ_CHECK(after >= 0 && limit >= 2 && limit <= PS_LIST_MAX + 1);
	if (op < 0 || op % 3 == 0) {
		return CM_EUNAVAIL;
	}
	e = queue(run_list, (void *) cb, arg);
	if (op % 3 == 1) {
		e->rv = CM_EUNAVAIL;
		return CM_OK;
	}
	n = next();
	n = n < 0 ? 0 : n % (limit + 1);
	e->items = calloc((size_t) n + 1, sizeof(*e->items));
	FZ_CHECK(e->items != NULL);
	for (int i = 0; i < n; i++) {
		e->items[i] = product(i + 1);
	}
	e->nitems = (size_t) n;
	return CM_OK;
}

static void
run_id(fev *e)
{
	((ps_db_id_fn) e->fn)(e->arg, e->rv, e->id);
}

int
ps_db_reserve_id(ps_db *db, ps_db_id_fn cb, void *arg)
{
	int  op = next();
	fev *e;

	(void) db;
	if (op < 0 || op % 3 == 0) {
		return CM_EUNAVAIL;
	}
	e = queue(run_id, (void *) cb, arg);
	e->rv = op % 3 == 1 ? CM_EUNAVAIL : CM_OK;
	e->id = e->rv == CM_OK ? next_id++ : 0;
	return CM_OK;
}

static void
run_write(fev *e)
{
	ps_db_written *w = e->rv == CM_OK ? &e->written : NULL;

	/* The callback owns w->product, as with ps_db.c. */
	((ps_db_write_fn) e->fn)(e->arg, e->rv, w);
}

int
ps_db_write(ps_db *db, const ps_db_write_args *a, ps_db_write_fn cb, void *arg)
{
	static const int statuses[] = {
	    200, 201, 204, 400, 404, 409, 412, 422, 500, 0};
	int  op = next(), del;
	fev *e;

	(void) db;
	/* What catalog_write() needs: ps_write_check() let it through. */
	FZ_CHECK(cm_method_is_write(a->method));
	del = a->method == CATALOG__METHOD__METHOD_DELETE_PRODUCT;
	FZ_CHECK(a->id > 0 && a->if_match >= 0);
	FZ_CHECK((a->input == NULL) == del);
	FZ_CHECK((a->idem_key != NULL) == (a->fingerprint != NULL));
	FZ_CHECK(a->idem_key == NULL ||
	    (a->idem_key[0] != '\0' &&
	        strlen(a->idem_key) <= PS_IDEMPOTENCY_KEY_MAX));
	if (op < 0 || op % 3 == 0) {
		return CM_EUNAVAIL;
	}
	e = queue(run_write, (void *) cb, arg);
	if (op % 3 == 1) {
		e->rv = op & 4 ? CM_EINTERNAL : CM_EUNAVAIL;
		return CM_OK;
	}
	e->rv = CM_OK;
	op = next();
	e->written.status =
	    statuses[(op < 0 ? 0 : op) % (sizeof(statuses) / sizeof(int))];
	e->written.replayed = op >= 0 && (op & 0x80) != 0;
	/* A product comes with 200 and 201, and (the database is free to
	 * answer oddly) sometimes with other statuses. */
	if (((e->written.status == 200 || e->written.status == 201) &&
	        (op & 0x40) == 0) ||
	    (op & 0x20) != 0) {
		e->written.product = product(a->id);
	}
	if (e->written.status == 409 && (op & 0x40) == 0) {
		/* The taken sku, as the database has it. */
		e->sku = ps_msg_strdup("SKU-\"taken\"\n", 12);
		e->written.sku = e->sku;
	}
	return CM_OK;
}

/* ---- ps_worker ---- */

static void
run_after(fev *e)
{
	((void (*)(void *)) e->fn)(e->arg);
}

int
ps_worker_after(ps_worker *w, long long ms, void (*fn)(void *), void *arg)
{
	int op = next();

	(void) w;
	FZ_CHECK(ms >= 0);
	if (op < 0 || op % 8 == 0) {
		return CM_ENOMEM;
	}
	queue(run_after, (void *) fn, arg);
	return CM_OK;
}

uint64_t
ps_worker_rand(ps_worker *w)
{
	return ps_rand_next(&w->rng);
}
