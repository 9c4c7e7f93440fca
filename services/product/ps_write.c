/* ps_write.c - the write path: create, replace, patch and delete behind a
 * cache fence (docs/consistency.md, "Order of operations").
 *
 * A write runs: (create: reserve the id) -> begin-write on the id in Redis
 * -> catalog_write() in PostgreSQL -> end-write -> answer. A write that
 * cannot fence the cache is refused with STATUS_UNAVAILABLE before
 * PostgreSQL is touched; once fenced, end-write always follows, whatever
 * PostgreSQL answered, and a failed end-write is retried by ps_cache on
 * reconnect while the answer goes out.
 *
 * Like ps_product.c this file calls only the ps_ interfaces, and every
 * function here runs on the worker's loop thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm.h"
#include "cm_log.h"
#include "ps.h"

/* One write in progress. */
typedef struct wcall {
	ps_worker              *w;
	const Catalog__Request *rq;
	Catalog__Response      *rsp;
	ps_done_fn              done;
	void                   *arg;
	int64_t                 start_us;
	int64_t                 id; /* the product, reserved for a create */
	uint8_t                *fp; /* fingerprint, with an idempotency key */
	size_t                  fplen;
} wcall;

static const char *
idem_key(const Catalog__Request *rq)
{
	return rq->idempotency_key != NULL && rq->idempotency_key[0] != '\0'
	    ? rq->idempotency_key
	    : NULL;
}

/* ---- pure parts (unit tested) ---- */

/* Checks what the gateway should already have checked and what the SQL
 * needs: an id for all but a create, an input for all but a delete, PATCH
 * mask bits only for known fields, a sane idempotency key. Returns CM_OK,
 * or CM_EINVAL with *why (static text). */
int
ps_write_check(const Catalog__Request *rq, const char **why)
{
	Catalog__Method m = rq->method;

	if (m != CATALOG__METHOD__METHOD_CREATE_PRODUCT &&
	    m != CATALOG__METHOD__METHOD_REPLACE_PRODUCT &&
	    m != CATALOG__METHOD__METHOD_PATCH_PRODUCT &&
	    m != CATALOG__METHOD__METHOD_DELETE_PRODUCT) {
		*why = "not a write method";
		return CM_EINVAL;
	}
	if (m != CATALOG__METHOD__METHOD_CREATE_PRODUCT && rq->id <= 0) {
		*why = "id must be a positive integer";
		return CM_EINVAL;
	}
	if (m == CATALOG__METHOD__METHOD_CREATE_PRODUCT && rq->id != 0) {
		*why = "a create carries no id";
		return CM_EINVAL;
	}
	if (m != CATALOG__METHOD__METHOD_DELETE_PRODUCT && rq->input == NULL) {
		*why = "input is missing";
		return CM_EINVAL;
	}
	if (m == CATALOG__METHOD__METHOD_PATCH_PRODUCT &&
	    (rq->input->mask & ~PS_MASK_ALL) != 0) {
		*why = "input mask has unknown fields";
		return CM_EINVAL;
	}
	if (rq->if_match_version < 0 ||
	    (m == CATALOG__METHOD__METHOD_CREATE_PRODUCT &&
	        rq->if_match_version != 0)) {
		*why = "bad if_match_version";
		return CM_EINVAL;
	}
	if (idem_key(rq) != NULL &&
	    strlen(rq->idempotency_key) > PS_IDEMPOTENCY_KEY_MAX) {
		*why = "idempotency key too long";
		return CM_EINVAL;
	}
	return CM_OK;
}

/* Fingerprints rq (docs/consistency.md, "The write RPCs"): the packed
 * Catalog.Request holding only method, id, input and if_match_version, so
 * tag, request id, deadline, trace context and the key itself do not
 * count. The input is normalised first: a PATCH keeps only the fields its
 * mask names, the others have no mask at all (it means nothing there) and a
 * delete has no input. protobuf-c packs fields in number order, so equal
 * requests give equal bytes. Returns CM_OK with a malloc'd *out of *len
 * bytes (the caller frees it), or CM_ENOMEM. */
int
ps_write_fingerprint(const Catalog__Request *rq, uint8_t **out, size_t *len)
{
	Catalog__Request      r = CATALOG__REQUEST__INIT;
	Catalog__ProductInput in = CATALOG__PRODUCT_INPUT__INIT;
	uint8_t              *buf;
	size_t                n;

	r.method = rq->method;
	r.id = rq->id;
	r.if_match_version = rq->if_match_version;
	if (rq->input != NULL &&
	    rq->method != CATALOG__METHOD__METHOD_DELETE_PRODUCT) {
		const Catalog__ProductInput *src = rq->input;
		int                          patch =
		    rq->method == CATALOG__METHOD__METHOD_PATCH_PRODUCT;
		uint32_t mask = patch ? src->mask & PS_MASK_ALL : PS_MASK_ALL;

		if (mask & PS_MASK_SKU) {
			in.sku = src->sku;
		}
		if (mask & PS_MASK_NAME) {
			in.name = src->name;
		}
		if (mask & PS_MASK_DESCRIPTION) {
			in.description = src->description;
		}
		if (mask & PS_MASK_PRICE_CENTS) {
			in.price_cents = src->price_cents;
		}
		if (mask & PS_MASK_CURRENCY) {
			in.currency = src->currency;
		}
		if (mask & PS_MASK_STOCK) {
			in.stock = src->stock;
		}
		in.mask = patch ? mask : 0;
		r.input = &in;
	}
	n = catalog__request__get_packed_size(&r);
	if ((buf = malloc(n > 0 ? n : 1)) == NULL) {
		return CM_ENOMEM;
	}
	catalog__request__pack(&r, buf);
	*out = buf;
	*len = n;
	return CM_OK;
}

/* Maps catalog_write()'s status (migrations/0002_writes.sql) to the wire.
 * Sets *detail to a static text for errors (NULL for successes; a 409 for
 * a taken sku gets its detail from the caller, which knows the sku). */
Catalog__Status
ps_write_status(int sql_status, const char **detail)
{
	*detail = NULL;
	switch (sql_status) {
	case 200:
		return CATALOG__STATUS__STATUS_OK;
	case 201:
		return CATALOG__STATUS__STATUS_CREATED;
	case 204:
		return CATALOG__STATUS__STATUS_NO_CONTENT;
	case 400:
		*detail = "a value breaks the product's rules";
		return CATALOG__STATUS__STATUS_INVALID;
	case 404:
		*detail = "no such product";
		return CATALOG__STATUS__STATUS_NOT_FOUND;
	case 409:
		*detail = "the idempotency key is in use by a request still "
		          "running";
		return CATALOG__STATUS__STATUS_CONFLICT;
	case 412:
		*detail = "If-Match does not name the current version";
		return CATALOG__STATUS__STATUS_PRECONDITION_FAILED;
	case 422:
		*detail = "the idempotency key was used with another request";
		return CATALOG__STATUS__STATUS_UNPROCESSABLE;
	default:
		*detail = "unexpected answer from the database";
		return CATALOG__STATUS__STATUS_INTERNAL;
	}
}

/* ---- the path ---- */

static void
set_error(wcall *k, int rv, const char *what)
{
	if (rv == CM_EUNAVAIL) {
		ps_msg_set_status(
		    k->rsp, CATALOG__STATUS__STATUS_UNAVAILABLE, what);
	} else {
		ps_msg_set_status(
		    k->rsp, CATALOG__STATUS__STATUS_INTERNAL, cm_strerror(rv));
	}
}

/* Logs the outcome and hands the response back; frees k. */
static void
finish(wcall *k)
{
	const Catalog__Request *rq = k->rq;
	Catalog__Response      *rsp = k->rsp;

	PS_RLOG(CM_LOG_DEBUG, "PS-REQ", rq,
	    "%s id=%lld status=%d version=%d replayed=%d %lldus",
	    ps_method_name(rq->method), (long long) k->id, (int) rsp->status,
	    rsp->product != NULL ? (int) rsp->product->version : 0,
	    (int) rsp->replayed, (long long) (cm_mono_us() - k->start_us));
	free(k->fp);
	k->done(k->arg);
	free(k);
}

static void
on_end_write(void *arg, int rv)
{
	wcall *k = arg;

	if (rv != CM_OK) {
		PS_RLOG(CM_LOG_WARN, "PS-END-WRITE", k->rq,
		    "product:%lld: end-write failed or late (%s); sent "
		    "again if it did not run",
		    (long long) k->id, cm_strerror(rv));
	}
	finish(k);
}

/* The write is over in PostgreSQL (or never ran): lift the fence, then
 * answer. */
static void
end_write(wcall *k)
{
	int rv = ps_cache_end_write(k->w->cache, k->id, on_end_write, k);

	if (rv != CM_OK) {
		on_end_write(k, rv);
	}
}

static void
on_written(void *arg, int rv, ps_db_written *res)
{
	wcall      *k = arg;
	const char *detail;
	char        buf[160];

	if (rv != CM_OK) {
		set_error(k, rv, "database unavailable");
		end_write(k);
		return;
	}
	k->rsp->status = ps_write_status(res->status, &detail);
	k->rsp->replayed = res->replayed;
	if (res->status == 409 && res->sku != NULL) {
		snprintf(buf, sizeof(buf), "sku '%.64s' is already taken",
		    res->sku);
		detail = buf;
	}
	if (detail != NULL) {
		(void) ps_msg_set_detail(k->rsp, detail);
	}
	if (res->status == 200 || res->status == 201) {
		if (res->product == NULL) {
			ps_msg_set_status(k->rsp,
			    CATALOG__STATUS__STATUS_INTERNAL,
			    "catalog_write answered no product");
		} else {
			k->rsp->product = res->product;
			res->product = NULL;
		}
	}
	ps_msg_product_free(res->product);
	end_write(k);
}

static void
on_begin_write(void *arg, int rv)
{
	wcall                  *k = arg;
	const Catalog__Request *rq = k->rq;
	ps_db_write_args        a;

	if (rv != CM_OK) {
		/* Not fenced: refuse rather than risk a stale entry. */
		PS_RLOG(CM_LOG_WARN, "PS-WRITE-UNFENCED", rq,
		    "product:%lld: begin-write failed (%s): write refused",
		    (long long) k->id, cm_strerror(rv));
		ps_msg_set_status(k->rsp, CATALOG__STATUS__STATUS_UNAVAILABLE,
		    "cache unavailable: write not attempted");
		finish(k);
		return;
	}
	if (k->w->stopping) {
		set_error(k, CM_EUNAVAIL, "replica stopping");
		end_write(k);
		return;
	}
	if (rq->deadline_unix_ms != 0 && cm_now_ms() > rq->deadline_unix_ms) {
		ps_msg_set_status(k->rsp,
		    CATALOG__STATUS__STATUS_DEADLINE_EXCEEDED,
		    "deadline passed before the write started");
		end_write(k);
		return;
	}
	a = (ps_db_write_args) {
	    .method = rq->method,
	    .id = k->id,
	    .if_match = rq->if_match_version,
	    .idem_key = idem_key(rq),
	    .fingerprint = k->fp,
	    .fingerprint_len = k->fplen,
	    .input = rq->method == CATALOG__METHOD__METHOD_DELETE_PRODUCT
	        ? NULL
	        : rq->input,
	    .idem_ttl_s = k->w->cfg->idempotency_ttl_s,
	};
	if ((rv = ps_db_write(k->w->db, &a, on_written, k)) != CM_OK) {
		on_written(k, rv, NULL);
	}
}

static void
begin_write(wcall *k)
{
	int rv;

	if (k->w->stopping) {
		set_error(k, CM_EUNAVAIL, "replica stopping");
		finish(k);
		return;
	}
	rv = ps_cache_begin_write(
	    k->w->cache, k->id, k->w->cfg->fence_ms, on_begin_write, k);
	if (rv != CM_OK) {
		on_begin_write(k, rv);
	}
}

static void
on_reserved(void *arg, int rv, int64_t id)
{
	wcall *k = arg;

	if (rv != CM_OK) {
		set_error(k, rv, "database unavailable");
		finish(k);
		return;
	}
	k->id = id;
	begin_write(k);
}

/* Answers the write rq into rsp, then calls done(arg) exactly once,
 * possibly before returning. rq and rsp must stay valid until then. The
 * caller has checked the deadline. */
void
ps_write_handle(ps_worker *w, const Catalog__Request *rq,
    Catalog__Response *rsp, ps_done_fn done, void *arg)
{
	wcall      *k = calloc(1, sizeof(*k));
	const char *why;
	int         rv;

	if (k == NULL) {
		ps_msg_set_status(
		    rsp, CATALOG__STATUS__STATUS_INTERNAL, "out of memory");
		done(arg);
		return;
	}
	k->w = w;
	k->rq = rq;
	k->rsp = rsp;
	k->done = done;
	k->arg = arg;
	k->start_us = cm_mono_us();
	k->id = rq->id;
	if (ps_write_check(rq, &why) != CM_OK) {
		ps_msg_set_status(rsp, CATALOG__STATUS__STATUS_INVALID, why);
		finish(k);
		return;
	}
	if (idem_key(rq) != NULL &&
	    ps_write_fingerprint(rq, &k->fp, &k->fplen) != CM_OK) {
		set_error(k, CM_ENOMEM, NULL);
		finish(k);
		return;
	}
	if (rq->method != CATALOG__METHOD__METHOD_CREATE_PRODUCT) {
		begin_write(k);
		return;
	}
	if (w->stopping) {
		set_error(k, CM_EUNAVAIL, "replica stopping");
		finish(k);
		return;
	}
	if ((rv = ps_db_reserve_id(w->db, on_reserved, k)) != CM_OK) {
		on_reserved(k, rv, 0);
	}
}
