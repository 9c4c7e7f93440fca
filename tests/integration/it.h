/* it.h - integration test harness: processes, ports, HTTP, PostgreSQL, Redis.
 *
 * The suite runs under tests/run-integration.sh, which starts one Redis and
 * one PostgreSQL on free loopback ports, migrates the schema, and exports:
 *
 *   IT_BIN           folder with gateway and product-service
 *   IT_TMPDIR        scratch folder for this run (child logs go there)
 *   IT_REDIS_PORT    the shared Redis
 *   IT_REDIS_URL     redis://127.0.0.1:PORT/0
 *   IT_DATABASE_URL  postgresql://postgres@127.0.0.1:PORT/catalog
 *   IT_PG_STOP       shell command that stops that PostgreSQL
 *   IT_PG_START      shell command that starts it again (same port, data)
 *   IT_API_KEY       the API key the harness's gateways accept
 *
 * Tests that need to stop and restart Redis do not touch the shared one:
 * they start their own redis-server child with it_redis_server_start() and
 * point their replicas at it (see test_faults.c).
 *
 * Every wait in here is bounded; a child process gets SIGKILL when the test
 * binary dies (PR_SET_PDEATHSIG), so a crashed test leaves nothing behind.
 */
#ifndef IT_H
#define IT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define IT_MAX_REPLICAS    8
#define IT_MAX_HEADERS     64
#define IT_MAX_BODY        (8 * 1024 * 1024)
#define IT_HTTP_TIMEOUT_MS 5000

/* ---- environment ------------------------------------------------------ */

/* Returns getenv(name), or NULL after printing which variable is missing
 * and that the binary runs under tests/run-integration.sh. */
const char *it_env(const char *name);

/* Returns the scratch folder (IT_TMPDIR, or a fresh /tmp/it.XXXXXX when the
 * binary runs on its own). The string is static. */
const char *it_tmpdir(void);

/* Milliseconds on a monotonic clock. */
int64_t it_now_ms(void);

/* Sleeps ms milliseconds. */
void it_sleep_ms(int ms);

/* ---- API keys (it_auth.c) --------------------------------------------- */

/* The key when IT_API_KEY is not set (a binary run on its own). */
#define IT_API_KEY_DEFAULT "it-test-key-5b0e2f8c41d97a36"

/* The suite's API key: IT_API_KEY, or IT_API_KEY_DEFAULT. Every gateway
 * the harness starts accepts it (GATEWAY_API_KEYS_FILE is set to
 * it_api_keys_file() unless the test sets it), and it_http() sends it
 * with every POST, PUT, PATCH and DELETE whose headers have no
 * Authorization and no IT_NO_AUTH. */
const char *it_api_key(void);

/* A header line that it_http() does not send but reads as "send no
 * Authorization": for tests of requests without a key. */
#define IT_NO_AUTH "X-It-No-Auth: 1"

/* Lowercase hex SHA-256 of s into out (64 characters and a NUL). */
void it_sha256_hex(const char *s, char out[65]);

/* Writes the digests of keys (NULL-terminated) to path, as a gateway's
 * keys file, replacing it at once (rename). Returns 0 or -1. */
int it_write_keys_file(const char *path, const char *const keys[]);

/* The keys file holding it_api_key()'s digest (made once per process in
 * it_tmpdir()), or NULL when it could not be written. */
const char *it_api_keys_file(void);

/* Writes "Authorization: Bearer <key>" into buf. */
void it_auth_header(char *buf, size_t len, const char *key);

/* ---- processes --------------------------------------------------------- */

typedef struct it_proc {
	pid_t pid;      /* 0 when not running */
	char  name[64]; /* for messages and the log file name */
	char  log[512]; /* stdout and stderr of the child */
	int   status;   /* waitpid status once reaped */
} it_proc;

/* Starts argv[0] (a path) with the current environment plus env, a
 * NULL-terminated list of "NAME=value" strings that add to or replace
 * variables. stdout and stderr go to <tmpdir>/<name>.log (appended).
 * Returns 0 and fills *p, or -1. */
int it_proc_spawn(
    it_proc *p, const char *name, char *const argv[], const char *const env[]);

/* Sends sig to the child and reaps it; after timeout_ms it sends SIGKILL
 * and reaps that. Returns 0 when the child is gone (p->pid is then 0). A
 * p with pid 0 is left alone. */
int it_proc_stop(it_proc *p, int sig, int timeout_ms);

/* Returns 1 when the child still runs (reaping it when it has exited). */
int it_proc_alive(it_proc *p);

/* Returns the number of sanitizer reports (AddressSanitizer,
 * LeakSanitizer, UBSan "runtime error:") in the child's log, printing
 * each such line to stderr. */
int it_proc_sanitizer_reports(const it_proc *p);

/* Prints the last lines of the child's log to stderr (for failures). */
void it_proc_dump_log(const it_proc *p, int lines);

/* ---- ports ------------------------------------------------------------- */

/* Returns a loopback TCP port that was free a moment ago (bind to port 0),
 * never one returned before by this process; -1 on error. */
int it_free_port(void);

/* Waits until 127.0.0.1:port accepts a connection. Returns 0, or -1 after
 * timeout_ms. */
int it_wait_port(int port, int timeout_ms);

/* ---- the system under test -------------------------------------------- */

typedef struct it_stack {
	int                nrep;
	it_proc            rep[IT_MAX_REPLICAS];
	int                rep_port[IT_MAX_REPLICAS];
	it_proc            gw;
	int                gw_port;
	char               redis_url[128];
	char               upstreams[IT_MAX_REPLICAS * 40];
	const char *const *extra_env;
} it_stack;

/* Starts nrep product-service replicas (PRODUCT_NAME=it-replica-<i>) on
 * free ports and one gateway in front of them, waits until every one
 * accepts and /readyz answers 200. redis_url NULL means IT_REDIS_URL.
 * extra_env (NULL-terminated "NAME=value" list, may be NULL) goes to every
 * child and must outlive the stack. Returns 0, or -1 after stopping
 * whatever started and printing the children's logs. */
int it_stack_start(it_stack *s, int nrep, const char *redis_url,
    const char *const *extra_env);

/* Starts one gateway on a free port in front of upstreams (the
 * comma-separated NNG URLs of GATEWAY_UPSTREAMS, e.g. another stack's
 * upstreams, to put two gateways in front of the same replicas), with
 * extra_env added (may be NULL; must outlive the call). Waits until it
 * accepts and /readyz answers 200. Returns 0 with *gw and *port filled, or
 * -1 after printing its log and stopping it. Stop it with it_proc_stop(). */
int it_gateway_start(it_proc *gw, int *port, const char *upstreams,
    const char *const *extra_env);

/* Returns how many it_stack_stop() calls found sanitizer reports. cmocka
 * does not count a failed group teardown as a failure, so main() adds
 * this to its result. */
int it_stack_failures(void);

/* Starts replica i again on its old port (after it_proc_stop). */
int it_stack_start_replica(it_stack *s, int i);

/* Stops the gateway and every replica (SIGTERM, then SIGKILL after 5 s).
 * Returns 0, or -1 when a child's log holds a sanitizer report (so that a
 * group teardown fails under make SANITIZE=1 test). */
int it_stack_stop(it_stack *s);

/* ---- HTTP/1.1 client --------------------------------------------------- */

typedef struct it_http_resp {
	int    status;
	int    nheaders;
	char  *hname[IT_MAX_HEADERS];
	char  *hval[IT_MAX_HEADERS];
	char  *body; /* NUL-terminated for convenience */
	size_t body_len;
} it_http_resp;

/* Sends one request on a new connection to 127.0.0.1:port and reads the
 * answer. headers: NULL-terminated "Name: value" strings (may be NULL);
 * Host, Connection: close and Content-Length (when body) are added. The
 * body is read by Content-Length, chunked encoding or until close; none
 * for HEAD, 1xx, 204 and 304. Returns 0 and fills *r (free it with
 * it_http_resp_free), or -1 on a connect, I/O, parse or timeout error. */
int it_http(it_http_resp *r, int port, const char *method, const char *path,
    const char *const headers[], const char *body, size_t body_len,
    int timeout_ms);

/* Connects to 127.0.0.1:port within timeout_ms. Returns the socket, or
 * -1. Pass it to it_http_on(), which closes it. */
int it_http_connect(int port, int timeout_ms);

/* it_http() on a socket from it_http_connect() (port only names the Host
 * header), so that a test can open many connections first and send on
 * all of them at once. Closes fd in every case. */
int it_http_on(it_http_resp *r, int fd, int port, const char *method,
    const char *path, const char *const headers[], const char *body,
    size_t body_len, int timeout_ms);

/* GET path with optional headers, IT_HTTP_TIMEOUT_MS. */
int it_http_get(
    it_http_resp *r, int port, const char *path, const char *const headers[]);

/* Returns the first header value named name (any case), or NULL. */
const char *it_http_header(const it_http_resp *r, const char *name);

/* Releases what *r holds; safe on a zeroed or already freed response. */
void it_http_resp_free(it_http_resp *r);

/* ---- PostgreSQL (libpq, IT_DATABASE_URL) ------------------------------ */

/* Runs sql (one or more statements, no result wanted). Returns 0 or -1
 * (the error is printed). */
int it_pg_exec(const char *sql);

/* Runs sql and returns a copy of row 0 column 0 (NULL value: NULL, and
 * *ok 1); free() it. On error returns NULL with *ok 0. ok may be NULL. */
char *it_pg_scalar(const char *sql, int *ok);

/* Runs sql and returns row 0 column 0 as an integer, or def on error,
 * NULL or no row. */
long long it_pg_scalar_ll(const char *sql, long long def);

/* Empties products and inserts n rows with ids 1..n: sku IT-0001..,
 * name "Product <id>", price_cents 100 * id + 99, currency USD, stock id,
 * version 1, created_at 2026-01-02T03:04:05Z, updated_at
 * 2026-01-02T03:04:06Z. Row 1's description holds quotes, a backslash,
 * a tab, a newline and non-ASCII text (JSON escaping); row 3 has version 7.
 * Returns 0 or -1. */
int it_seed_products(int n);

/* Row 1's description as it_seed_products() writes it. */
#define IT_DESC1 "Say \"hi\" \\ tab\there\nline 2 \u00fcml\u00e4ut \u20ac"

/* Stop and start the suite's PostgreSQL (IT_PG_STOP / IT_PG_START). */
int it_pg_stop(void);
int it_pg_start(void);

/* ---- Redis (hiredis, sync) --------------------------------------------- */

/* GET key from the Redis on port. Returns a malloc'd copy (NUL added, the
 * length in *len) or NULL when the key is missing or on error; *found says
 * which (1 found, 0 missing, -1 error). */
char *it_redis_get(int port, const char *key, size_t *len, int *found);

/* DEL key / FLUSHALL on the Redis on port. Return 0 or -1. */
int it_redis_del(int port, const char *key);
int it_redis_flushall(int port);

/* Returns how many keys match pattern (KEYS; small test data sets only),
 * or -1 on error. */
long long it_redis_count_keys(int port, const char *pattern);

/* Returns 1 when the Redis on port answers PING. */
int it_redis_ping(int port);

/* Starts a private redis-server child on port (no persistence, data in
 * <tmpdir>/redis-<port>) and waits until it answers. Stop it with
 * it_proc_stop(p, SIGTERM, ...) or SIGKILL. Returns 0 or -1. */
int it_redis_server_start(it_proc *p, int port);

/* Port of the suite's shared Redis (IT_REDIS_PORT), or -1. */
int it_redis_port(void);

#endif /* IT_H */
