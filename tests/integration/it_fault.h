/* it_fault.h - fault-injection helpers: a bounded HTTP load generator with
 * a summary, replicas on chosen addresses, Prometheus text scraping,
 * dnsmasq control, network namespaces and a small TCP forwarder.
 *
 * Everything here is bounded in time, touches only loopback or the network
 * namespaces a test creates itself, and stops only processes it started
 * (by pid). Functions never fail a cmocka test themselves: they return -1
 * and print why, and the test decides.
 */
#ifndef IT_FAULT_H
#define IT_FAULT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "it.h"

/* ---- load generator ---------------------------------------------------- */

#define IT_LOAD_MAX_THREADS  16
#define IT_LOAD_MAX_FAILLOG  12
#define IT_LOAD_MAX_WRITE_ID 256

/* What one load run does. Zeroed fields take the defaults named below. */
typedef struct it_load_cfg {
	const char *name;         /* scenario name for the summary line */
	int         port;         /* gateway HTTP port on 127.0.0.1 */
	int         threads;      /* client threads (default 4) */
	int         duration_ms;  /* run at most this long (default 8000) */
	long        max_requests; /* and at most this many (default 20000) */
	int         timeout_ms;   /* one request's client timeout (5000) */
	int         pace_us;      /* pause after each request (default 0) */
	int64_t     read_first;   /* GETs pick ids read_first.. */
	int         read_n;       /*   ..read_first + read_n - 1 (>= 1) */
	int         write_pct;    /* share of requests that are PUTs (0) */
	int64_t     write_first;  /* thread t owns ids write_first + t * */
	int         write_per_thread; /* write_per_thread .. (+ that - 1) */
	int         if_match; /* PUTs send If-Match with the known ETag */
	int         idem_key; /* PUTs send a fresh Idempotency-Key */
	/* Which write statuses count as expected besides 200 (e.g. 503 when
	 * PostgreSQL is down); 0-terminated, may be NULL. */
	const int *write_ok_extra;
} it_load_cfg;

/* One acknowledged write: the product and the version its 200 named. */
typedef struct it_load_ack {
	int64_t   id;
	long long version;
} it_load_ack;

typedef struct it_load it_load;

/* What a finished run saw. */
typedef struct it_load_result {
	long requests, failures;
	long gets, get_failures;
	long writes, write_failures, write_acks,
	    write_extra;                 /* extra: in
	                                    write_ok_extra */
	long   hit, miss, bypass, stale; /* X-Cache of 200 GETs */
	long   transport_errors;         /* no HTTP answer at all */
	double p50_ms, p99_ms, max_ms;
	int    elapsed_ms;
	int    nfail_log;
	char   fail_log[IT_LOAD_MAX_FAILLOG][200];
	/* Highest acknowledged version per written id (nacks entries). */
	int         nacks;
	it_load_ack acks[IT_LOAD_MAX_THREADS * IT_LOAD_MAX_WRITE_ID];
} it_load_result;

/* Starts the load in the background. cfg is copied. For writes, the
 * starting versions of the owned ids are read from the gateway (GET) and
 * then tracked from each PUT's ETag. Returns the handle, or NULL. */
it_load *it_load_start(const it_load_cfg *cfg);

/* Milliseconds since the load started. */
int it_load_elapsed_ms(const it_load *l);

/* Requests answered so far (any outcome). */
long it_load_count(const it_load *l);

/* Failures so far. */
long it_load_failures(const it_load *l);

/* Stops the load (at once if it still runs), joins its threads, fills
 * *res (may be NULL), prints the summary line
 *   <name>: requests=N failures=F p99_ms=X
 * and a detail line, and frees l. Returns the number of failures. */
long it_load_finish(it_load *l, it_load_result *res);

/* Waits until the load ended by itself (its duration or request cap),
 * at most timeout_ms. */
void it_load_wait(it_load *l, int timeout_ms);

/* ---- processes on chosen addresses ------------------------------------ */

/* Starts a product-service replica: PRODUCT_LISTEN=listen_url,
 * PRODUCT_NAME=name, REDIS_URL, DATABASE_URL (db_url NULL means
 * IT_DATABASE_URL), PRODUCT_ADMIN_LISTEN=127.0.0.1:admin_port (0: port 0),
 * PRODUCT_THREADS=2, then extra_env (may be NULL; it overrides the
 * defaults). netns non-NULL runs it with `ip netns exec netns`. Does not
 * wait; see it_wait_tcp(). Returns 0 or -1. */
int it_replica_spawn(it_proc *p, const char *name, const char *listen_url,
    const char *redis_url, const char *db_url, int admin_port,
    const char *netns, const char *const *extra_env);

/* Waits until ip:port accepts a TCP connection from this namespace.
 * Returns 0, or -1 after timeout_ms. */
int it_wait_tcp(const char *ip, int port, int timeout_ms);

/* Runs a shell command (printf-style) with /bin/sh -c, output to stderr.
 * Returns its exit status (0 ok), or -1 when it could not run. */
int it_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Like it_sh but captures up to len-1 bytes of stdout and stderr. */
int it_sh_out(char *out, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prints every thread's stack of the running child p to stderr with gdb
 * (when installed; bounded to 30 s), for a process that stopped
 * answering. */
void it_proc_stacks(const it_proc *p);

/* ---- Prometheus text --------------------------------------------------- */

/* GETs /metrics from 127.0.0.1:port. Returns a malloc'd body (free it), or
 * NULL. */
char *it_scrape(int port);

/* Sums the samples of metric name (exact sample name, e.g.
 * "gateway_http_requests_total") whose label set contains every
 * `key="value"` in filters (NULL-terminated, may be NULL). Returns the
 * sum; *found (may be NULL) is set to the number of samples matched. */
double it_metric_sum(const char *text, const char *name,
    const char *const *filters, int *found);

/* Scrapes port and returns it_metric_sum(); -1 when the scrape fails. */
double it_scrape_sum(int port, const char *name, const char *const *filters);

/* ---- dnsmasq ----------------------------------------------------------- */

typedef struct it_dns {
	it_proc proc;
	int     port;
	char    hosts[512]; /* the addn-hosts file */
} it_dns;

/* Returns the dnsmasq binary's path, or NULL when none is installed. */
const char *it_dnsmasq_path(void);

/* Starts dnsmasq on 127.0.0.1:<free port> answering only from a hosts
 * file with lines (NULL-terminated "ip name" strings). Returns 0 or -1. */
int it_dns_start(it_dns *d, const char *const *lines);

/* Rewrites the hosts file with lines and sends dnsmasq SIGHUP to reload
 * it. Returns 0 or -1. */
int it_dns_set(it_dns *d, const char *const *lines);

/* Stops dnsmasq (SIGTERM, by pid). */
void it_dns_stop(it_dns *d);

/* ---- TCP forwarder ----------------------------------------------------- */

typedef struct it_fwd it_fwd;

/* Listens on bind_ip:bind_port and forwards each connection to
 * 127.0.0.1:to_port, on threads of this process. Returns NULL on error
 * (bind failed: printed). */
it_fwd *it_fwd_start(const char *bind_ip, int bind_port, int to_port);

/* Closes the listener and every forwarded connection, joins its
 * threads (bounded), frees f. NULL is fine. */
void it_fwd_stop(it_fwd *f);

/* ---- network namespaces ------------------------------------------------ */

/* Returns the path of the ip binary, or NULL. */
const char *it_ip_path(void);

/* Checks that this process may create a network namespace (creates and
 * deletes a probe). Returns 1, or 0 with the reason in why. */
int it_netns_usable(char *why, size_t len);

#endif /* IT_FAULT_H */
