/* ps.h - private header of the product service: its settings, its worker
 * loops and the interfaces between its files.
 *
 * Each file keeps one outside library behind it: ps_cache.c speaks hiredis,
 * ps_db.c speaks libpq, ps_rpc.c speaks NNG, ps_worker.c owns the libevent
 * loop and its thread. ps_product.c holds the cache-aside logic and calls
 * only the ps_ interfaces below, so a test can fake any edge of it.
 */
#ifndef PS_H
#define PS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "catalog.pb-c.h"
#include "cm_log.h"
#include "cm_redis_url.h"

struct event_base;
struct event;

#define PS_CTX_PER_THREAD 32   /* NNG contexts each worker owns */
#define PS_MAX_BATCH      1024 /* requests in one Batch */
#define PS_LIST_DEFAULT   20
#define PS_LIST_MAX       100
#define PS_BACKOFF_MIN_MS 100   /* reconnect back-off, doubling ... */
#define PS_BACKOFF_MAX_MS 2000  /* ... up to this */
#define PS_DB_QUEUE_MAX   10000 /* queries waiting for a connection */

/* Settings, filled from the environment by the table in ps_main.c. */
typedef struct ps_config {
	const char  *listen;
	const char  *database_url;
	const char  *redis_url;
	long long    cache_ttl;    /* seconds, positive entries */
	long long    negative_ttl; /* seconds, negative entries */
	long long    threads;
	long long    db_conns; /* per thread */
	long long    redis_timeout_ms;
	long long    lease_ms;          /* a reader's right to fill */
	long long    fence_ms;          /* a writer's fence, at most */
	long long    idempotency_ttl_s; /* idempotency records live */
	const char  *name;              /* Response.replica */
	const char  *log_level;
	const char  *log_format;   /* json, text, or "" (json unless a tty) */
	const char  *admin_listen; /* host:port of /metrics, /healthz, ... */
	long long    breaker_failures; /* Redis failures in a row that open */
	long long    breaker_cooldown_ms; /* open this long, then one probe */
	long long    stale_if_error_s; /* stale entries kept for PG errors */
	long long    max_inflight;     /* requests in progress, per process */
	long long    drain_delay_s;    /* SIGTERM: refuse new work this long */
	long long    drain_timeout_s;  /* then wait this long for the rest */
	long long    fill_delay_ms;    /* test hook PS_TEST_FILL_DELAY_MS */
	const char  *tls_ca;   /* PRODUCT_TLS_CA: CA of the gateways' certs */
	const char  *tls_cert; /* PRODUCT_TLS_CERT: our certificate */
	const char  *tls_key;  /* PRODUCT_TLS_KEY: its key */
	cm_redis_url redis;    /* redis_url, parsed */
} ps_config;

typedef struct ps_cache ps_cache;
typedef struct ps_db    ps_db;
typedef struct ps_rpc   ps_rpc;
typedef struct ps_timer ps_timer;

/* ---- ps_flight.c: single-flight table (id -> requests waiting) ---- */

/* A waiter is embedded in the caller's request state; the table links
 * waiters through it and never allocates or frees them. */
typedef struct ps_waiter {
	struct ps_waiter *next;
} ps_waiter;

typedef struct ps_flight ps_flight;

typedef struct ps_flights {
	ps_flight **buckets;
	size_t      nbuckets; /* a power of two */
	size_t      count;
} ps_flights;

/* What ps_flights_join() made of the caller (docs/consistency.md,
 * "Single-flight without stale joins"). */
enum {
	PS_FLIGHT_JOINED = 0, /* shares the flight's answer */
	PS_FLIGHT_LEADER = 1, /* started the flight: must read, then take */
	PS_FLIGHT_WAIT = 2,   /* the query was sent: look again after it */
};

int        ps_flights_init(ps_flights *t);
void       ps_flights_fini(ps_flights *t);
int        ps_flights_join(ps_flights *t, int64_t id, ps_waiter *w, int *role);
int        ps_flights_sent(ps_flights *t, int64_t id);
ps_waiter *ps_flights_take(ps_flights *t, int64_t id, ps_waiter **later);
size_t     ps_flights_count(const ps_flights *t);

/* ---- ps_worker.c: one thread, one event loop ---- */

/* A node handed to a worker from another thread (ps_worker_post). */
typedef struct ps_post {
	struct ps_post *next;
	void (*fn)(struct ps_post *p); /* runs on the worker's loop */
} ps_post;

typedef struct ps_worker {
	int                index;
	const ps_config   *cfg;
	struct event_base *base;
	struct event      *wake; /* activated by ps_worker_post */
	pthread_mutex_t    mtx;  /* guards inbox */
	ps_post           *inbox_head;
	ps_post          **inbox_tail;
	pthread_t          thread;
	int                started;
	ps_cache          *cache;
	ps_db             *db;
	ps_flights         flights;
	ps_timer          *timers; /* pending one-shot timers */
	uint64_t           rng;
	int                stop;     /* asked to stop; guarded by mtx */
	int                stopping; /* set once the loop has ended */
} ps_worker;

int  ps_worker_new(const ps_config *cfg, int index, ps_worker **out);
int  ps_worker_start(ps_worker *w);
void ps_worker_stop(ps_worker *w);
void ps_worker_join(ps_worker *w);
void ps_worker_free(ps_worker *w);
void ps_worker_post(ps_worker *w, ps_post *p);
int ps_worker_after(ps_worker *w, long long ms, void (*fn)(void *), void *arg);
uint64_t ps_worker_rand(ps_worker *w);

/* ---- ps_rpc.c: the NNG rep0 socket and its contexts ---- */

int  ps_rpc_open(const char *url, ps_rpc **out);
int  ps_rpc_attach(ps_rpc *rpc, ps_worker *w, int nctx);
void ps_rpc_close(ps_rpc *rpc);
void ps_rpc_free(ps_rpc *rpc);

/* ---- ps_breaker.c: circuit breaker state machine (pure) ---- */

enum {
	PS_BREAKER_CLOSED = 0, /* the values of product_redis_circuit_state */
	PS_BREAKER_OPEN = 1,
	PS_BREAKER_HALF_OPEN = 2,
};
enum { PS_BREAKER_DENY = 0, PS_BREAKER_ALLOW = 1, PS_BREAKER_PROBE = 2 };

typedef struct ps_breaker {
	int     state;
	int     failures; /* in a row, while closed */
	int     threshold;
	int     probing; /* half-open: the probe is out */
	int64_t cooldown_us;
	int64_t open_until_us;
} ps_breaker;

void ps_breaker_init(ps_breaker *b, int threshold, int64_t cooldown_us);
int  ps_breaker_allow(ps_breaker *b, int64_t now_us);
void ps_breaker_done(ps_breaker *b, int probe, int ok, int64_t now_us);
int  ps_breaker_state(const ps_breaker *b);

/* ---- ps_drain.c: admission (PRODUCT_MAX_INFLIGHT) and graceful stop ---- */

enum { PS_ADMIT_OK = 0, PS_ADMIT_DRAINING = 1, PS_ADMIT_OVERLOADED = 2 };

typedef enum ps_drain_phase {
	PS_DRAIN_RUNNING, /* serving */
	PS_DRAIN_DELAY,   /* new requests answered DRAINING, socket open */
	PS_DRAIN_WAIT,    /* the same, until in-flight requests are done */
	PS_DRAIN_CLOSE,   /* close the socket and the connections, exit */
} ps_drain_phase;

typedef struct ps_drain {
	ps_drain_phase phase;
	int64_t        delay_ms;
	int64_t        timeout_ms;
	int64_t        deadline_ms; /* of the current phase */
} ps_drain;

void ps_drain_init(ps_drain *d, int delay_s, int timeout_s, long max);
int  ps_drain_admit(void);
void ps_drain_leave(void);
long ps_drain_inflight(void);
int  ps_drain_draining(void);
void ps_drain_set_listening(int on);
int  ps_drain_listening(void);
ps_drain_phase ps_drain_signal(ps_drain *d, int sig, int64_t now_ms);
ps_drain_phase ps_drain_tick(ps_drain *d, int64_t now_ms, long n);
int64_t        ps_drain_wait_ms(const ps_drain *d, int64_t now_ms);

/* ---- ps_metrics.c: the service's Prometheus families ---- */

#define PS_MAX_THREADS 256 /* PRODUCT_THREADS at most */

/* product_pg_query_duration_seconds{query}: one per prepared statement. */
enum {
	PS_Q_GET_PRODUCT,
	PS_Q_LIST_PRODUCTS,
	PS_Q_CATALOG_WRITE,
	PS_Q_RESERVE_ID,
};
/* product_redis_errors_total{kind} */
enum { PS_REDIS_TIMEOUT, PS_REDIS_ERROR, PS_REDIS_DISCONNECTED };
/* product_cache_leases_total{result} */
enum { PS_LEASE_M_GRANTED, PS_LEASE_M_BUSY, PS_LEASE_M_FENCED };

int  ps_metrics_init(int nthreads);
void ps_metrics_rpc_done(
    const Catalog__Request *rq, const Catalog__Response *rsp, int64_t dur_us);
void ps_metrics_flight_join(void);
void ps_metrics_lease(int result);
void ps_metrics_redis_command(int64_t dur_us);
void ps_metrics_redis_error(int kind);
void ps_metrics_breaker_state(int worker, int state);
void ps_metrics_pg_query(int query, int64_t dur_us);
void ps_metrics_pg_error(void);
void ps_metrics_pg_conn(int up, int delta);
int  ps_metrics_pg_up(void);
void ps_metrics_pg_queue_wait(void);
void ps_metrics_pg_queue_waited(int64_t dur_us);

/* Per-request log lines carry the request id and the trace id of the
 * request's traceparent ("-" when it has none or a bad one). */
const char *ps_trace_id(const Catalog__Request *rq, char *buf, size_t len);
void ps_log_req(cm_log_level lvl, const char *id, const Catalog__Request *rq,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
#define PS_RLOG(lvl, id, rq, ...)                             \
	do {                                                  \
		if ((lvl) >= cm_log_min) {                    \
			ps_log_req(lvl, id, rq, __VA_ARGS__); \
		}                                             \
	} while (0)

/* ---- ps_admin.c: the admin HTTP listener ---- */

typedef struct ps_admin ps_admin;
int                     ps_admin_open(const char *listen, ps_admin **out);
int                     ps_admin_port(const ps_admin *a);
int                     ps_admin_start(ps_admin *a);
void                    ps_admin_free(ps_admin *a);

/* ---- ps_product.c: answers one request ---- */

typedef void (*ps_done_fn)(void *arg);
void ps_product_handle(ps_worker *w, const Catalog__Request *rq,
    Catalog__Response *rsp, ps_done_fn done, void *arg);

/* "GET", "CREATE", ... for logs; "UNKNOWN" for anything else. */
const char *ps_method_name(Catalog__Method m);

/* ---- ps_write.c: the write path (create, replace, patch, delete) ---- */

/* ProductInput.mask bits (1 << field number) a PATCH may set. */
#define PS_MASK_SKU         (1u << 2)
#define PS_MASK_NAME        (1u << 3)
#define PS_MASK_DESCRIPTION (1u << 4)
#define PS_MASK_PRICE_CENTS (1u << 5)
#define PS_MASK_CURRENCY    (1u << 6)
#define PS_MASK_STOCK       (1u << 7)
#define PS_MASK_ALL                                         \
	(PS_MASK_SKU | PS_MASK_NAME | PS_MASK_DESCRIPTION | \
	    PS_MASK_PRICE_CENTS | PS_MASK_CURRENCY | PS_MASK_STOCK)
#define PS_IDEMPOTENCY_KEY_MAX 255 /* bytes */

void ps_write_handle(ps_worker *w, const Catalog__Request *rq,
    Catalog__Response *rsp, ps_done_fn done, void *arg);
int  ps_write_check(const Catalog__Request *rq, const char **why);
int  ps_write_fingerprint(
     const Catalog__Request *rq, uint8_t **out, size_t *len);
Catalog__Status ps_write_status(int sql_status, const char **detail);

/* ---- ps_msg.c: protobuf messages the service builds ---- */

Catalog__Response *ps_msg_response_new(uint32_t tag, const char *replica);
void               ps_msg_response_free(Catalog__Response *r);
int                ps_msg_set_detail(Catalog__Response *r, const char *s);
/* Sets r's status and, when detail is not NULL, its detail; UNAVAILABLE
 * answers carry Retry-After 1. */
void ps_msg_set_status(
    Catalog__Response *r, Catalog__Status st, const char *detail);
Catalog__Product *ps_msg_product_new(void);
Catalog__Product *ps_msg_product_dup(const Catalog__Product *p);
void              ps_msg_product_free(Catalog__Product *p);
char             *ps_msg_strdup(const char *s, size_t len);

/* ---- ps_entry.c: cache entry format and TTLs ---- */

#define PS_ENTRY_NEGATIVE     "N"
#define PS_ENTRY_NEGATIVE_LEN 1

int ps_entry_encode(const Catalog__Product *p, int64_t fresh_until_s,
    uint8_t **out, size_t *len);
int ps_entry_decode(const uint8_t *data, size_t len, Catalog__Product **out,
    int *version, int64_t *fresh_until_s);
int ps_entry_fresh(int64_t fresh_until_s, int64_t now_ms);
long long ps_entry_ttl_ms(long long ttl_s, uint64_t rnd);
uint64_t  ps_rand_next(uint64_t *state);

/* ---- ps_cache.c: Redis (hiredis async) ---- */

/* rv: CM_OK with data (a hit, valid only during the call) or data NULL
 * (no entry); CM_EUNAVAIL when Redis failed or timed out. */
typedef void (*ps_cache_get_fn)(
    void *arg, int rv, const uint8_t *data, size_t len);

/* What the lease script answered (docs/consistency.md, "Scripts"). */
enum {
	PS_LEASE_HIT = 0,     /* an entry is there: data holds it */
	PS_LEASE_GRANTED = 1, /* this reader may fill with its token */
	PS_LEASE_FENCED = 2,  /* a write is in progress: read, do not fill */
	PS_LEASE_BUSY = 3,    /* another reader is filling */
};
/* rv CM_OK with outcome (data valid only during the call, for a hit), or
 * CM_EUNAVAIL when Redis failed or timed out. */
typedef void (*ps_cache_lease_fn)(
    void *arg, int rv, int outcome, const uint8_t *data, size_t len);
/* rv: CM_OK with stored 1 (written) or 0 (refused: the lease is gone). */
typedef void (*ps_cache_fill_fn)(void *arg, int rv, int stored);
/* rv: CM_OK, or CM_EUNAVAIL when Redis failed or timed out. */
typedef void (*ps_cache_done_fn)(void *arg, int rv);

#define PS_CACHE_TOKEN_LEN 32 /* hex characters of a lease token */

int ps_cache_new(
    struct event_base *base, const ps_config *cfg, int index, ps_cache **out);
void ps_cache_free(ps_cache *c);
int  ps_cache_get(ps_cache *c, int64_t id, ps_cache_get_fn cb, void *arg);
int  ps_cache_lease(ps_cache *c, int64_t id, const char *token,
     long long lease_ms, int64_t now_s, ps_cache_lease_fn cb, void *arg);
int  ps_cache_fill(ps_cache *c, int64_t id, const char *token, int version,
     const uint8_t *val, size_t len, long long ttl_ms, ps_cache_fill_fn cb,
     void *arg);
int  ps_cache_begin_write(ps_cache *c, int64_t id, long long fence_ms,
     ps_cache_done_fn cb, void *arg);
int  ps_cache_end_write(
     ps_cache *c, int64_t id, ps_cache_done_fn cb, void *arg);
extern const char ps_cache_lease_lua[];
extern const char ps_cache_fill_lua[];
extern const char ps_cache_begin_write_lua[];
extern const char ps_cache_end_write_lua[];
extern const char ps_cache_release_lua[];
int               ps_cache_release(ps_cache *c, int64_t id, const char *token);

/* ---- ps_db.c: PostgreSQL (non-blocking libpq) ---- */

/* rv CM_OK with p (the caller takes ownership) or p NULL (no such row);
 * CM_EUNAVAIL (connection lost) or CM_EINTERNAL (query failed). */
typedef void (*ps_db_product_fn)(void *arg, int rv, Catalog__Product *p);
/* rv as above; the callee takes ownership of items and each item. */
typedef void (*ps_db_list_fn)(
    void *arg, int rv, Catalog__Product **items, size_t n);

/* Called once the query is about to be written to a connection: from then
 * on, a write that commits may or may not be in its answer. */
typedef void (*ps_db_sent_fn)(void *arg);
/* rv CM_OK with id, or CM_EUNAVAIL / CM_EINTERNAL. */
typedef void (*ps_db_id_fn)(void *arg, int rv, int64_t id);

/* One call of catalog_write(). The pointers must stay valid until
 * ps_db_write() returns (it copies what it needs). */
typedef struct ps_db_write_args {
	Catalog__Method method; /* CREATE, REPLACE, PATCH, DELETE */
	int64_t         id;
	int32_t         if_match; /* 0: none */
	const char     *idem_key; /* NULL: none */
	const uint8_t  *fingerprint;
	size_t          fingerprint_len;
	const Catalog__ProductInput *input; /* NULL for a delete */
	long long                    idem_ttl_s;
} ps_db_write_args;

/* What catalog_write() answered. status is its HTTP-like status (see
 * migrations/0002_writes.sql); product is set for 200 and 201 and belongs
 * to the callee; sku is the taken sku of a 409 (NULL when the idempotency
 * key was busy), valid only during the call. */
typedef struct ps_db_written {
	int               status;
	int               replayed;
	Catalog__Product *product;
	const char       *sku;
} ps_db_written;
/* rv CM_OK with res, or CM_EUNAVAIL / CM_EINTERNAL with res NULL. */
typedef void (*ps_db_write_fn)(void *arg, int rv, ps_db_written *res);

int ps_db_new(
    struct event_base *base, const char *conninfo, int nconns, ps_db **out);
void ps_db_free(ps_db *db);
int  ps_db_get_product(
     ps_db *db, int64_t id, ps_db_sent_fn sent, ps_db_product_fn cb, void *arg);
int ps_db_list_products(
    ps_db *db, int64_t after, int limit, ps_db_list_fn cb, void *arg);
int ps_db_reserve_id(ps_db *db, ps_db_id_fn cb, void *arg);
int ps_db_write(
    ps_db *db, const ps_db_write_args *a, ps_db_write_fn cb, void *arg);

/* Copies a libpq message into buf as one line (libpq's messages span
 * lines and end with a newline; a log line must not). NULL gives "?".
 * Returns buf. (ps_db.c) */
const char *ps_pg_oneline(const char *msg, char *buf, size_t len);

/* ---- ps_migrate.c: schema (blocking, admin and startup only) ---- */

int ps_migrate_run(const char *url);
int ps_migrate_version(const char *url, int *have);
/* The schema version query (the highest migration applied), also run by
 * every database connection when it connects (ps_db.c). */
extern const char ps_schema_version_sql[];
int               ps_migrate_latest(void);

#endif /* PS_H */
