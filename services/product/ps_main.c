/* ps_main.c - product-service: settings, the migrate command, worker
 * threads and signals. */
#include <event2/event.h>
#include <event2/thread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cm.h"
#include "cm_config.h"
#include "cm_log.h"
#include "ps.h"

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
};
#define NOPTS (sizeof(opts) / sizeof(opts[0]))

static char default_name[300];

/* Fills what the table cannot: the parsed REDIS_URL, the default name and
 * the test hook. Returns CM_OK or CM_EINVAL after printing why. */
static int
finish_config(void)
{
	if (ps_cache_url_parse(cfg.redis_url, &cfg.redis) != CM_OK) {
		fprintf(stderr,
		    "product-service: REDIS_URL=%s: want "
		    "redis://[[user]:password@]host:port[/db]\n",
		    cfg.redis_url);
		return CM_EINVAL;
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
		char msg[200];
		snprintf(msg, sizeof(msg),
		    "database schema is at version %d, this build needs %d: "
		    "run 'product-service migrate'",
		    have, need);
		CM_ERROR("PS-SCHEMA-OLD", NULL, "%s", msg);
		fprintf(stderr, "%s\n", msg);
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
	sigset_t    set;
	int         n, sig, rv, status = 1;

	if (check_schema() != CM_OK) {
		return 1;
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

	if ((workers = calloc((size_t) n, sizeof(*workers))) == NULL) {
		return 1;
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
	CM_INFO("PS-START", NULL,
	    "replica %s listening on %s, threads=%d, db_conns=%lld per thread "
	    "(%d contexts each), redis=%s:%d/%d, schema=%d",
	    cfg.name, cfg.listen, n, cfg.db_conns, PS_CTX_PER_THREAD,
	    cfg.redis.host, cfg.redis.port, cfg.redis.db, ps_migrate_latest());
#ifdef CM_TEST_HOOKS
	if (cfg.fill_delay_ms > 0) {
		CM_WARN("PS-TEST-HOOK", NULL,
		    "PS_TEST_FILL_DELAY_MS=%lld: cache fills are delayed",
		    cfg.fill_delay_ms);
	}
#endif
	sigwait(&set, &sig);
	CM_INFO("PS-STOP", NULL, "signal %d: stopping", sig);
	status = 0;
out:
	/* Order matters: no new requests, loops end (failing what they had
	 * in flight), then NNG callbacks end, then nothing can touch a
	 * worker. */
	ps_rpc_close(rpc);
	for (int i = 0; i < n; i++) {
		if (workers[i] != NULL) {
			ps_worker_stop(workers[i]);
		}
	}
	for (int i = 0; i < n; i++) {
		if (workers[i] != NULL) {
			ps_worker_join(workers[i]);
		}
	}
	ps_rpc_free(rpc);
	for (int i = 0; i < n; i++) {
		ps_worker_free(workers[i]);
	}
	free(workers);
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
	cm_log_init("product-service", cfg.log_level);
	if (finish_config() != CM_OK) {
		return 1;
	}
	if (strcmp(cmd, "migrate") == 0) {
		return ps_migrate_run(cfg.database_url) == CM_OK ? 0 : 1;
	}
	return serve();
}
