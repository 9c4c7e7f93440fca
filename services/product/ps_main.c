/* ps_main.c - product-service: settings, the migrate command, worker
 * threads, the admin listener, and signals with a graceful drain. */
#include <event2/event.h>
#include <event2/thread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cm.h"
#include "cm_config.h"
#include "cm_log.h"
#include "cm_metrics.h"
#include "cm_tls.h"
#include "ps.h"

/* After the last request in progress was answered, the socket stays open
 * this long so that NNG can write the replies it has queued: nng_close()
 * does not flush. */
#define PS_DRAIN_LINGER_MS 200
#define PS_DRAIN_POLL_MS   20 /* how often the drain looks at the count */

#define SUMMARY                                                             \
	"product-service [serve]   answer catalog RPCs on PRODUCT_LISTEN\n" \
	"product-service migrate   apply the compiled-in schema migrations"

static ps_config cfg;

static const cm_cfg_opt opts[] = {
    {"PRODUCT_LISTEN", CM_CFG_STRING, "tcp://0.0.0.0:7000", 0, 0, &cfg.listen,
        "NNG URL the replica listens on (rep0)"},
    {"DATABASE_URL", CM_CFG_STRING,
        "postgresql://postgres@127.0.0.1:5432/catalog", 0, 0,
        &cfg.database_url, "PostgreSQL connection URL"},
    {"REDIS_URL", CM_CFG_STRING, "redis://127.0.0.1:6379/0", 0, 0,
        &cfg.redis_url, "Redis URL: redis://[[user]:password@]host:port[/db]"},
    {"PRODUCT_CACHE_TTL", CM_CFG_INT, "3600", 1, 31536000, &cfg.cache_ttl,
        "seconds a cached product lives (+-10% jitter)"},
    {"PRODUCT_NEGATIVE_TTL", CM_CFG_INT, "30", 1, 86400, &cfg.negative_ttl,
        "seconds a cached \"no such product\" lives"},
    {"PRODUCT_THREADS", CM_CFG_INT, "0", 0, 256, &cfg.threads,
        "worker threads, each with its own loop (0 = CPU count)"},
    {"PRODUCT_DB_CONNS", CM_CFG_INT, "2", 1, 64, &cfg.db_conns,
        "PostgreSQL connections per worker thread"},
    {"PRODUCT_REDIS_TIMEOUT_MS", CM_CFG_INT, "50", 1, 60000,
        &cfg.redis_timeout_ms,
        "Redis command timeout; slower reads bypass the cache (writes "
        "wait 4x as long, then fail with 503)"},
    {"PRODUCT_LEASE_MS", CM_CFG_INT, "3000", 10, 600000, &cfg.lease_ms,
        "ms a reader that missed may take to fill the cache (its lease)"},
    {"PRODUCT_FENCE_MS", CM_CFG_INT, "10000", 100, 3600000, &cfg.fence_ms,
        "ms at most that a write keeps readers from filling its product"},
    {"PRODUCT_IDEMPOTENCY_TTL_S", CM_CFG_INT, "86400", 1, 2592000,
        &cfg.idempotency_ttl_s,
        "seconds an Idempotency-Key and its answer are kept"},
    {"PRODUCT_NAME", CM_CFG_STRING, "", 0, 0, &cfg.name,
        "replica name in replies and logs (default hostname:pid)"},
    {"LOG_LEVEL", CM_CFG_LEVEL, "info", 0, 0, &cfg.log_level,
        "debug, info, warn or error"},
    {"LOG_FORMAT", CM_CFG_STRING, "", 0, 0, &cfg.log_format,
        "json or text; default json when stdout is not a terminal"},
    {"PRODUCT_ADMIN_LISTEN", CM_CFG_STRING, "0.0.0.0:9100", 0, 0,
        &cfg.admin_listen,
        "admin HTTP address (/healthz, /readyz, /metrics), host:port; "
        "port 0 picks a free one"},
    {"PRODUCT_REDIS_BREAKER_FAILURES", CM_CFG_INT, "5", 1, 1000000,
        &cfg.breaker_failures,
        "Redis failures in a row (timeouts, errors, disconnects) that "
        "open the circuit breaker: cache calls then fail at once"},
    {"PRODUCT_REDIS_BREAKER_COOLDOWN_MS", CM_CFG_INT, "2000", 1, 3600000,
        &cfg.breaker_cooldown_ms,
        "ms the breaker stays open before one probe command may close it"},
    {"PRODUCT_STALE_IF_ERROR_S", CM_CFG_INT, "300", 0, 31536000,
        &cfg.stale_if_error_s,
        "seconds a product stays cached past its freshness, answered "
        "(X-Cache: STALE) only when PostgreSQL fails; 0 = never"},
    {"PRODUCT_MAX_INFLIGHT", CM_CFG_INT, "2048", 1, 10000000,
        &cfg.max_inflight,
        "requests in progress per process; past it, requests are "
        "answered DRAINING (\"overloaded\") for another replica"},
    {"PRODUCT_DRAIN_DELAY_S", CM_CFG_INT, "3", 0, 300, &cfg.drain_delay_s,
        "after SIGTERM, seconds new requests are answered DRAINING "
        "(sent elsewhere) while the socket stays open"},
    {"PRODUCT_DRAIN_TIMEOUT_S", CM_CFG_INT, "10", 0, 3600,
        &cfg.drain_timeout_s,
        "then, seconds requests in progress get to finish before the "
        "socket and connections close"},
    {"PRODUCT_TLS_CA", CM_CFG_STRING, "", 0, 0, &cfg.tls_ca,
        "PEM file of the CA that signs the gateways' certificates; with "
        "PRODUCT_TLS_CERT and PRODUCT_TLS_KEY, required by a tls+tcp:// "
        "PRODUCT_LISTEN (a gateway without such a certificate is refused)"},
    {"PRODUCT_TLS_CERT", CM_CFG_STRING, "", 0, 0, &cfg.tls_cert,
        "PEM file of this replica's certificate (chain)"},
    {"PRODUCT_TLS_KEY", CM_CFG_STRING, "", 0, 0, &cfg.tls_key,
        "PEM file of its private key, unencrypted"},
};
#define NOPTS (sizeof(opts) / sizeof(opts[0]))

static char default_name[300];

/* Runs the drain after the first stop signal sig: new requests are
 * answered DRAINING at once (and /readyz says 503) for
 * PRODUCT_DRAIN_DELAY_S, then requests in progress get up to
 * PRODUCT_DRAIN_TIMEOUT_S. A second signal cuts it short. Returns when the
 * socket may close. */
static void
drain(ps_drain *d, const sigset_t *set, int sig)
{
	ps_drain_phase was = PS_DRAIN_RUNNING, now;

	now = ps_drain_signal(d, sig, cm_mono_us() / 1000);
	for (;;) {
		int64_t t = cm_mono_us() / 1000, left;

		if (now != was) {
			if (now == PS_DRAIN_DELAY) {
				CM_INFO("PS-DRAIN-START", NULL,
				    "signal %d: answering new requests "
				    "DRAINING for %lld s",
				    sig, (long long) (d->delay_ms / 1000));
			} else if (now == PS_DRAIN_WAIT) {
				CM_INFO("PS-DRAIN-WAIT", NULL,
				    "waiting up to %lld s for %ld requests in "
				    "progress",
				    (long long) (d->timeout_ms / 1000),
				    ps_drain_inflight());
			}
			was = now;
		}
		if (now == PS_DRAIN_CLOSE) {
			break;
		}
		left = ps_drain_wait_ms(d, t);
		if (now == PS_DRAIN_WAIT && left > PS_DRAIN_POLL_MS) {
			left = PS_DRAIN_POLL_MS;
		}
		if ((sig = cm_wait_signal(set, left)) != 0) {
			CM_WARN("PS-DRAIN-CUT", NULL,
			    "signal %d again: stopping now with %ld requests "
			    "in progress",
			    sig, ps_drain_inflight());
			now = ps_drain_signal(d, sig, cm_mono_us() / 1000);
			continue;
		}
		now =
		    ps_drain_tick(d, cm_mono_us() / 1000, ps_drain_inflight());
	}
	if (ps_drain_inflight() > 0) {
		CM_WARN("PS-DRAIN-TIMEOUT", NULL,
		    "closing with %ld requests in progress",
		    ps_drain_inflight());
	} else {
		(void) cm_wait_signal(set, PS_DRAIN_LINGER_MS);
	}
}

/* Fills what the table cannot: the parsed REDIS_URL, the default name and
 * the test hook. Returns CM_OK or CM_EINVAL after printing why. */
static int
finish_config(void)
{
	if (cm_redis_url_parse(cfg.redis_url, &cfg.redis) != CM_OK) {
		fprintf(stderr,
		    "product-service: REDIS_URL=%s: want "
		    "redis://[[user]:password@]host:port[/db]\n",
		    cfg.redis_url);
		return CM_EINVAL;
	}
	{
		cm_tls_opts to = {.var = "PRODUCT_TLS",
		    .ca = cfg.tls_ca,
		    .cert = cfg.tls_cert,
		    .key = cfg.tls_key,
		    .event = "PS-TLS-HANDSHAKE",
		    .server = 1};
		char       *url = (char *) cfg.listen;
		char        err[512];
		if (cm_tls_setup(&to, &url, 1, err, sizeof(err)) != CM_OK) {
			fprintf(stderr, "product-service: %s\n", err);
			return CM_EINVAL;
		}
	}
	if (cfg.name[0] == '\0') {
		char host[256] = "localhost";
		(void) gethostname(host, sizeof(host) - 1);
		host[sizeof(host) - 1] = '\0';
		snprintf(default_name, sizeof(default_name), "%s:%ld", host,
		    (long) getpid());
		cfg.name = default_name;
	}
#ifdef CM_TEST_HOOKS
	{
		/* Test builds only: hold each cache fill this long after its
		 * database read, so a race test can write in between. */
		const char *d = getenv("PS_TEST_FILL_DELAY_MS");
		if (d != NULL && d[0] != '\0') {
			char     *end;
			long long v = strtoll(d, &end, 10);
			if (*end != '\0' || v < 0 || v > 600000) {
				fprintf(stderr,
				    "product-service: "
				    "PS_TEST_FILL_DELAY_MS=%s: "
				    "want an integer from 0 to 600000\n",
				    d);
				return CM_EINVAL;
			}
			cfg.fill_delay_ms = v;
		}
	}
#endif
	return CM_OK;
}

static int
check_schema(void)
{
	int have, need = ps_migrate_latest();

	if (ps_migrate_version(cfg.database_url, &have) != CM_OK) {
		return CM_EUNAVAIL;
	}
	if (have < need) {
		CM_ERROR("PS-SCHEMA-OLD", NULL,
		    "database schema is at version %d, this build needs %d: "
		    "run 'product-service migrate'; unready until then",
		    have, need);
		return CM_EINVAL;
	}
	return CM_OK;
}

/* Runs the replica until SIGTERM or SIGINT. Returns the exit status. */
static int
serve(void)
{
	ps_worker **workers = NULL;
	ps_rpc     *rpc = NULL;
	ps_admin   *admin = NULL;
	ps_drain    d;
	sigset_t    set;
	int         n, sig, rv, status = 1;

	/* Neither an unreachable database nor an old schema stops the
	 * start: each database connection checks the schema when it comes
	 * up (ps_db.c), so the replica serves the cache, stays unready
	 * until the schema is right and then serves without a restart (a
	 * replica that exited would wait out its orchestrator's back-off
	 * after the migration ran). This check only says so early. */
	if (check_schema() == CM_EUNAVAIL) {
		CM_WARN("PS-SCHEMA-UNCHECKED", NULL,
		    "PostgreSQL unreachable at start: serving from the cache; "
		    "each database connection checks the schema when it "
		    "connects");
	}
	n = cfg.threads > 0 ? (int) cfg.threads : cm_ncpu();
	if (evthread_use_pthreads() != 0) {
		CM_ERROR("PS-START", NULL, "evthread_use_pthreads failed");
		return 1;
	}
	/* Block the signals before any thread exists (NNG starts its own),
	 * so that only sigwait() below receives them. */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	/* Metrics before any thread that records exists: one shard per
	 * worker, shard 0 for the rest. */
	if (cm_metrics_init(n) != CM_OK || ps_metrics_init(n) != CM_OK) {
		CM_ERROR("PS-START", NULL, "cannot register the metrics");
		cm_metrics_fini();
		return 1;
	}
	ps_drain_init(&d, (int) cfg.drain_delay_s, (int) cfg.drain_timeout_s,
	    (long) cfg.max_inflight);
	if ((workers = calloc((size_t) n, sizeof(*workers))) == NULL) {
		goto out;
	}
	if (ps_admin_open(cfg.admin_listen, &admin) != CM_OK) {
		fprintf(stderr,
		    "product-service: PRODUCT_ADMIN_LISTEN=%s: cannot listen "
		    "(see the log)\n",
		    cfg.admin_listen);
		goto out;
	}
	if (ps_rpc_open(cfg.listen, &rpc) != CM_OK) {
		goto out;
	}
	for (int i = 0; i < n; i++) {
		if ((rv = ps_worker_new(&cfg, i, &workers[i])) != CM_OK ||
		    (rv = ps_rpc_attach(rpc, workers[i], PS_CTX_PER_THREAD)) !=
		        CM_OK) {
			CM_ERROR("PS-START", NULL, "worker %d: %s", i,
			    cm_strerror(rv));
			goto out;
		}
	}
	for (int i = 0; i < n; i++) {
		if (ps_worker_start(workers[i]) != CM_OK) {
			CM_ERROR("PS-START", NULL, "worker %d: no thread", i);
			goto out;
		}
	}
	if (ps_admin_start(admin) != CM_OK) {
		CM_ERROR("PS-START", NULL, "admin listener: no thread");
		goto out;
	}
	CM_INFO("PS-START", NULL,
	    "replica %s listening on %s, admin_port=%d, threads=%d, "
	    "db_conns=%lld per thread (%d contexts each), redis=%s:%d/%d, "
	    "schema=%d, version=%s (%s)",
	    cfg.name, cfg.listen, ps_admin_port(admin), n, cfg.db_conns,
	    PS_CTX_PER_THREAD, cfg.redis.host, cfg.redis.port, cfg.redis.db,
	    ps_migrate_latest(), CM_VERSION, CM_GIT_REV);
#ifdef CM_TEST_HOOKS
	if (cfg.fill_delay_ms > 0) {
		CM_WARN("PS-TEST-HOOK", NULL,
		    "PS_TEST_FILL_DELAY_MS=%lld: cache fills are delayed",
		    cfg.fill_delay_ms);
	}
#endif
	/* With TLS, failed handshakes show only in NNG's statistics: look
	 * at them once a second. */
	while (
	    (sig = cm_wait_signal(&set, cm_tls_enabled() ? 1000 : -1)) == 0) {
		cm_tls_watch();
	}
	CM_INFO("PS-STOP", NULL, "signal %d: draining", sig);
	drain(&d, &set, sig);
	CM_INFO("PS-STOP", NULL,
	    "closing the socket and the connections (%ld requests in "
	    "progress)",
	    ps_drain_inflight());
	status = 0;
out:
	/* Order matters: no new requests, loops end (failing what they had
	 * in flight), then NNG callbacks end, then nothing can touch a
	 * worker. */
	ps_rpc_close(rpc);
	for (int i = 0; workers != NULL && i < n; i++) {
		if (workers[i] != NULL) {
			ps_worker_stop(workers[i]);
		}
	}
	for (int i = 0; workers != NULL && i < n; i++) {
		if (workers[i] != NULL) {
			ps_worker_join(workers[i]);
		}
	}
	cm_tls_fini(); /* before ps_rpc_free() ends NNG */
	ps_rpc_free(rpc);
	for (int i = 0; workers != NULL && i < n; i++) {
		ps_worker_free(workers[i]);
	}
	free(workers);
	/* The admin thread last, so that /metrics answers until the end. */
	ps_admin_free(admin);
	cm_metrics_fini();
	libevent_global_shutdown();
	if (status == 0) {
		CM_INFO("PS-EXIT", NULL, "stopped");
	}
	return status;
}

int
main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : "serve";
	char        err[512];
	int         rv;

	if (cm_cfg_cli(argc, argv, SUMMARY, opts, NOPTS)) {
		return 0;
	}
	if (argc > 2 ||
	    (strcmp(cmd, "serve") != 0 && strcmp(cmd, "migrate") != 0)) {
		fprintf(stderr,
		    "usage: %s [serve|migrate|--help|--list-env]\n", argv[0]);
		return 2;
	}
	if (cm_cfg_load(opts, NOPTS, err, sizeof(err)) != CM_OK) {
		fprintf(stderr, "product-service: %s\n", err);
		return 1;
	}
	if (cm_log_set_format(cfg.log_format) != CM_OK) {
		fprintf(stderr,
		    "product-service: LOG_FORMAT=%s: want json or text\n",
		    cfg.log_format);
		return 1;
	}
	cm_log_init("product-service", cfg.log_level);
	if (finish_config() != CM_OK) {
		return 1;
	}
	if (strcmp(cmd, "migrate") == 0) {
		rv = ps_migrate_run(cfg.database_url) == CM_OK ? 0 : 1;
	} else {
		rv = serve();
	}
	cm_tls_fini(); /* the files loaded by finish_config(), on every path */
	return rv;
}
