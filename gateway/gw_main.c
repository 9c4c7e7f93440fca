/* gw_main.c - the gateway binary: settings, loop threads, signals. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <nng/nng.h>

#include "cm.h"
#include "cm_net.h"
#include "cm_config.h"
#include "cm_log.h"
#include "cm_metrics.h"
#include "cm_redis_url.h"
#include "cm_tls.h"
#include "gw.h"

static const char *cfg_listen;
static const char *cfg_upstreams;
static long long   cfg_timeout_ms;
static long long   cfg_threads;
static long long   cfg_max_body;
static const char *cfg_log_level;
static const char *cfg_admin_listen;
static long long   cfg_max_inflight;
static long long   cfg_drain_delay_s;
static long long   cfg_drain_timeout_s;
static const char *cfg_log_format;
static long long   cfg_try_timeout_ms;
static long long   cfg_eject_after;
static long long   cfg_batch_inflight;
static long long   cfg_batch_max;
static long long   cfg_resolve_interval_s;
static const char *cfg_dns_servers;
static long long   cfg_max_uri;
static long long   cfg_max_header;
static long long   cfg_header_timeout_ms;
static long long   cfg_body_timeout_ms;
static long long   cfg_idle_timeout_s;
static long long   cfg_max_conns;
static const char *cfg_api_keys_file;
static long long   cfg_keys_check_s;
static long long   cfg_auth_reads;
static const char *cfg_rate_limit;
static const char *cfg_redis_url;
static long long   cfg_redis_timeout_ms;
static const char *cfg_trusted_proxies;
static const char *cfg_tls_ca;
static const char *cfg_tls_cert;
static const char *cfg_tls_key;
static const char *cfg_tls_server_name;

static const cm_cfg_opt options[] = {
    {"GATEWAY_LISTEN", CM_CFG_STRING, "0.0.0.0:8080", 0, 0, &cfg_listen,
        "HTTP listen address, host:port or [v6]:port"},
    {"GATEWAY_UPSTREAMS", CM_CFG_STRING, NULL, 0, 0, &cfg_upstreams,
        "comma-separated NNG URLs of the product-service replicas"},
    {"GATEWAY_TIMEOUT_MS", CM_CFG_INT, "2000", 1, 600000, &cfg_timeout_ms,
        "deadline of one request, retries included (ms)"},
    {"GATEWAY_TRY_TIMEOUT_MS", CM_CFG_INT, "500", 1, 600000,
        &cfg_try_timeout_ms,
        "longest one try of a retryable request (read, keyed write) may "
        "take before it is abandoned and tried on another replica (ms)"},
    {"GATEWAY_EJECT_AFTER", CM_CFG_INT, "3", 1, 1000, &cfg_eject_after,
        "consecutive failures that take a replica out of rotation "
        "(1 s back-off doubling to 30 s, then one probe)"},
    {"GATEWAY_BATCH_INFLIGHT", CM_CFG_INT, "2", 1, 1024, &cfg_batch_inflight,
        "messages a replica may have in flight from one loop before new "
        "requests wait and go out together in one batch"},
    {"GATEWAY_BATCH_MAX", CM_CFG_INT, "64", 1, 1024, &cfg_batch_max,
        "requests in one batch message at most"},
    {"GATEWAY_RESOLVE_INTERVAL_S", CM_CFG_INT, "5", 1, 3600,
        &cfg_resolve_interval_s,
        "seconds between DNS resolutions of upstream host names (every "
        "address becomes a replica)"},
    {"GATEWAY_DNS_SERVERS", CM_CFG_STRING, "", 0, 0, &cfg_dns_servers,
        "comma-separated ip[:port] nameservers; default /etc/resolv.conf"},
    {"GATEWAY_THREADS", CM_CFG_INT, "0", 0, 1024, &cfg_threads,
        "event loop threads; 0 means one per CPU"},
    {"GATEWAY_MAX_BODY_BYTES", CM_CFG_INT, "1048576", 0, 1073741824,
        &cfg_max_body, "largest request body accepted (bytes)"},
    {"GATEWAY_MAX_URI_BYTES", CM_CFG_INT, "2048", 64, 65536, &cfg_max_uri,
        "longest request-target (path and query) accepted; longer gets "
        "414"},
    {"GATEWAY_MAX_HEADER_BYTES", CM_CFG_INT, "8192", 512, 1048576,
        &cfg_max_header,
        "largest header section (all header lines) accepted; larger gets "
        "431"},
    {"GATEWAY_HEADER_TIMEOUT_MS", CM_CFG_INT, "10000", 100, 600000,
        &cfg_header_timeout_ms,
        "a request's head must be complete this long after its first byte "
        "(else 408): cuts slow-loris clients"},
    {"GATEWAY_BODY_TIMEOUT_MS", CM_CFG_INT, "30000", 100, 3600000,
        &cfg_body_timeout_ms,
        "a request's body must be complete this long after its head (else "
        "408, and the connection is closed)"},
    {"GATEWAY_IDLE_TIMEOUT_S", CM_CFG_INT, "60", 1, 3600, &cfg_idle_timeout_s,
        "seconds a connection may stay silent (keep-alive idle, or a "
        "stalled request) before it is closed"},
    {"GATEWAY_MAX_CONNECTIONS", CM_CFG_INT, "10000", 1, 10000000,
        &cfg_max_conns,
        "client connections open at once per process (split evenly over "
        "the loops); at the cap a loop stops accepting until one closes"},
    {"LOG_LEVEL", CM_CFG_LEVEL, "info", 0, 0, &cfg_log_level,
        "debug, info, warn or error"},
    {"GATEWAY_ADMIN_LISTEN", CM_CFG_STRING, "0.0.0.0:9090", 0, 0,
        &cfg_admin_listen,
        "admin listen address (/metrics, /healthz, /readyz), host:port"},
    {"GATEWAY_MAX_INFLIGHT", CM_CFG_INT, "4096", 1, 10000000,
        &cfg_max_inflight,
        "requests in progress per process (split evenly over the loops); "
        "past it 503 with Retry-After: 1"},
    {"GATEWAY_DRAIN_DELAY_S", CM_CFG_INT, "5", 0, 300, &cfg_drain_delay_s,
        "after SIGTERM, seconds /readyz answers 503 while requests are "
        "still served, before the listeners close"},
    {"GATEWAY_DRAIN_TIMEOUT_S", CM_CFG_INT, "10", 0, 3600,
        &cfg_drain_timeout_s,
        "after the listeners close, seconds in-flight requests get to "
        "finish"},
    {"LOG_FORMAT", CM_CFG_STRING, "", 0, 0, &cfg_log_format,
        "json or text; default json when stdout is not a terminal"},
    {"GATEWAY_API_KEYS_FILE", CM_CFG_STRING, "", 0, 0, &cfg_api_keys_file,
        "file of SHA-256 digests (lowercase hex, one a line) of the API "
        "keys that may write; reloaded on SIGHUP and when it changes; "
        "unset: every write gets 401"},
    {"GATEWAY_API_KEYS_CHECK_S", CM_CFG_INT, "10", 0, 3600, &cfg_keys_check_s,
        "seconds between looks at GATEWAY_API_KEYS_FILE: a changed file "
        "(another inode, size or time, as when Kubernetes updates a "
        "Secret volume) is reloaded as on SIGHUP; 0: on SIGHUP only"},
    {"GATEWAY_AUTH_READS", CM_CFG_INT, "0", 0, 1, &cfg_auth_reads,
        "1: reads need an API key too"},
    {"GATEWAY_RATE_LIMIT", CM_CFG_STRING, "", 0, 0, &cfg_rate_limit,
        "per-client token bucket, \"<n>/<s|m|h> [burst <b>]\" (e.g. "
        "\"100/s burst 200\"); unset: no limit"},
    {"GATEWAY_REDIS_URL", CM_CFG_STRING, "", 0, 0, &cfg_redis_url,
        "Redis holding the buckets shared by all gateways, "
        "redis://[[user]:password@]host[:port][/db]; unset: buckets per "
        "gateway"},
    {"GATEWAY_REDIS_TIMEOUT_MS", CM_CFG_INT, "50", 1, 10000,
        &cfg_redis_timeout_ms,
        "longest a request waits for the rate limit script before the "
        "local bucket decides (ms)"},
    {"GATEWAY_TRUSTED_PROXIES", CM_CFG_STRING, "", 0, 0, &cfg_trusted_proxies,
        "comma-separated CIDR blocks of proxies whose X-Forwarded-For "
        "names the client; unset: the TCP peer is the client"},
    {"GATEWAY_TLS_CA", CM_CFG_STRING, "", 0, 0, &cfg_tls_ca,
        "PEM file of the CA that signs the replicas' certificates; with "
        "GATEWAY_TLS_CERT and GATEWAY_TLS_KEY, required by tls+tcp:// "
        "upstreams (and refused with tcp:// ones)"},
    {"GATEWAY_TLS_CERT", CM_CFG_STRING, "", 0, 0, &cfg_tls_cert,
        "PEM file of the certificate the gateway shows the replicas"},
    {"GATEWAY_TLS_KEY", CM_CFG_STRING, "", 0, 0, &cfg_tls_key,
        "PEM file of its private key, unencrypted"},
    {"GATEWAY_TLS_SERVER_NAME", CM_CFG_STRING, "", 0, 0, &cfg_tls_server_name,
        "DNS name the replicas' certificates must carry; default the "
        "host of each GATEWAY_UPSTREAMS entry (needed for IP entries)"},
};

#define NOPTIONS (sizeof(options) / sizeof(options[0]))

/* GATEWAY_MAX_INFLIGHT and GATEWAY_MAX_CONNECTIONS shared over the
 * loops, rounded up. */
static int loop_max_inflight;
static int loop_max_conns;

/* The API keys (every loop reads them, SIGHUP replaces them), the rate
 * limit (rate_on 0: none) and the trusted proxies. */
static gw_auth    *auth;
static int         rate_on;
static gw_rl_limit rate_limit;
static gw_cidrs   *trusted;

static const char summary[] =
    "HTTP/1.1 JSON front door of the product catalog; forwards requests "
    "to product-service replicas over NNG. --list-routes prints the "
    "routes it serves, one \"METHOD /path\" a line.";

/* One event loop and what it owns. */
typedef struct worker {
	int                idx;
	struct event_base *base;
	gw_rpc            *rpc;
	gw_http           *http;
	gw_rl             *rl;
	pthread_t          tid;
	int                running;
} worker;

/* Loops whose event_base_dispatch() returned, for the drain to wait on. */
static atomic_int loops_stopped;

static void *
worker_main(void *arg)
{
	worker *w = arg;
	cm_metrics_thread_set(w->idx + 1);
	if (event_base_dispatch(w->base) < 0) {
		CM_ERROR("GW-LOOP-FAIL", NULL, "loop %d stopped on an error",
		    w->idx);
	}
	atomic_fetch_add(&loops_stopped, 1);
	return NULL;
}

/* Tears a worker down after its loop stopped: pending RPCs are answered
 * (503) before evhttp frees their requests, and the NNG sockets close
 * before the base that their callbacks wake. */
static void
worker_fini(worker *w)
{
	gw_rpc_shutdown(w->rpc);
	gw_rl_free(w->rl); /* requests waiting on Redis are answered */
	gw_http_free(w->http);
	gw_rpc_free(w->rpc);
	if (w->base != NULL) {
		event_base_free(w->base);
	}
	memset(w, 0, sizeof(*w));
}

static void
stop_loop(void *arg)
{
	worker *w = arg;
	event_base_loopbreak(w->base);
}

/* Runs on the worker's loop: stop accepting, let pending requests finish,
 * then stop the loop. The main thread enforces GATEWAY_DRAIN_TIMEOUT_S. */
static void
drain(evutil_socket_t fd, short what, void *arg)
{
	worker *w = arg;

	(void) fd;
	(void) what;
	gw_http_drain(w->http, stop_loop, w);
}

static int
worker_init(worker *w, int idx, int nloops, const char *host, int *port)
{
	char          err[256];
	int           fd, bound, rv;
	gw_rpc_opts   ro;
	gw_conns_opts co;

	w->idx = idx;
	if ((rv = cm_net_listen(host, *port, GW_LISTEN_BACKLOG, &fd, &bound,
	         err, sizeof(err))) != CM_OK) {
		fprintf(stderr, "gateway: GATEWAY_LISTEN=%s: %s\n", cfg_listen,
		    err);
		return rv;
	}
	/* With port 0 the first socket picks the port and the others share
	 * it through SO_REUSEPORT. */
	*port = bound;
	if ((w->base = event_base_new()) == NULL) {
		fprintf(stderr, "gateway: cannot create an event base\n");
		close(fd);
		return CM_ENOMEM;
	}
	gw_rpc_opts_init(&ro);
	ro.upstreams = cfg_upstreams;
	ro.loop = idx + 1;
	ro.try_timeout_ms = (int) cfg_try_timeout_ms;
	ro.eject_after = (int) cfg_eject_after;
	ro.batch_inflight = (int) cfg_batch_inflight;
	ro.batch_max = (int) cfg_batch_max;
	ro.resolve_interval_s = (int) cfg_resolve_interval_s;
	ro.dns_servers = cfg_dns_servers;
	if ((rv = gw_rpc_new(&w->rpc, w->base, &ro, err, sizeof(err))) !=
	    CM_OK) {
		fprintf(stderr, "gateway: GATEWAY_UPSTREAMS=%s: %s\n",
		    cfg_upstreams, err);
		close(fd);
		return rv;
	}
	if ((rv = gw_http_new(&w->http, w->base, fd, w->rpc,
	         (int) cfg_timeout_ms, (size_t) cfg_max_body)) != CM_OK) {
		fprintf(stderr, "gateway: cannot serve HTTP: %s\n",
		    cm_strerror(rv));
		return rv;
	}
	gw_http_set_max_inflight(w->http, loop_max_inflight);
	gw_conns_opts_init(&co);
	co.lim.max_uri = (size_t) cfg_max_uri;
	co.lim.max_header = (size_t) cfg_max_header;
	co.lim.max_body = (uint64_t) cfg_max_body;
	co.header_timeout_ms = (int) cfg_header_timeout_ms;
	co.body_timeout_ms = (int) cfg_body_timeout_ms;
	co.max_conns = loop_max_conns;
	if ((rv = gw_http_guard(w->http, &co, (int) cfg_idle_timeout_s)) !=
	    CM_OK) {
		fprintf(stderr, "gateway: cannot guard HTTP connections: %s\n",
		    cm_strerror(rv));
		return rv;
	}
	if (rate_on) {
		gw_rl_opts lo = {0};
		lo.limit = rate_limit;
		lo.redis_url = cfg_redis_url;
		lo.timeout_ms = (int) cfg_redis_timeout_ms;
		lo.nloops = nloops;
		if ((rv = gw_rl_new(&w->rl, w->base, &lo, err, sizeof(err))) !=
		    CM_OK) {
			fprintf(stderr, "gateway: GATEWAY_REDIS_URL: %s\n",
			    rv == CM_EINVAL ? err : cm_strerror(rv));
			return rv;
		}
	}
	gw_http_set_access(w->http, auth, idx, w->rl, trusted);
	return CM_OK;
}

/* Opens the admin listener on GATEWAY_ADMIN_LISTEN and starts its thread.
 * Returns CM_OK with *out and *port (the bound port), or an error after
 * printing why. */
static int
admin_start(gw_admin **out, int *port, worker *workers, int n)
{
	struct event_base **bases;
	gw_rpc            **rpcs;
	char                host[256], err[256];
	int                 fd, rv;

	if (cm_net_parse_listen(cfg_admin_listen, host, sizeof(host), port) !=
	    CM_OK) {
		fprintf(stderr,
		    "gateway: GATEWAY_ADMIN_LISTEN=%s: want host:port or "
		    "[v6]:port\n",
		    cfg_admin_listen);
		return CM_EINVAL;
	}
	if ((rv = cm_net_listen(host, *port, GW_LISTEN_BACKLOG, &fd, port, err,
	         sizeof(err))) != CM_OK) {
		fprintf(stderr, "gateway: GATEWAY_ADMIN_LISTEN=%s: %s\n",
		    cfg_admin_listen, err);
		return rv;
	}
	bases = calloc((size_t) n, sizeof(*bases));
	rpcs = calloc((size_t) n, sizeof(*rpcs));
	if (bases == NULL || rpcs == NULL) {
		close(fd);
		rv = CM_ENOMEM;
		goto out;
	}
	for (int i = 0; i < n; i++) {
		bases[i] = workers[i].base;
		rpcs[i] = workers[i].rpc;
	}
	if ((rv = gw_admin_new(out, fd, bases, rpcs, n)) != CM_OK ||
	    (rv = gw_admin_start(*out)) != CM_OK) {
		fprintf(stderr, "gateway: cannot serve the admin port: %s\n",
		    cm_strerror(rv));
	}
out:
	free(bases);
	free(rpcs);
	return rv;
}

/* The keys file as it was when last read (stat before reading, so that
 * a change during the read is seen at the next look). */
static struct stat keys_seen;
static int         keys_seen_ok;

static void
keys_note(void)
{
	keys_seen_ok = stat(cfg_api_keys_file, &keys_seen) == 0;
}

/* Returns 1 when the keys file differs from what was last read. A file
 * that is gone counts once it is back: until then the keys stay. */
static int
keys_changed(void)
{
	struct stat st;

	if (stat(cfg_api_keys_file, &st) != 0) {
		return 0;
	}
	return !keys_seen_ok || st.st_dev != keys_seen.st_dev ||
	    st.st_ino != keys_seen.st_ino || st.st_size != keys_seen.st_size ||
	    st.st_mtim.tv_sec != keys_seen.st_mtim.tv_sec ||
	    st.st_mtim.tv_nsec != keys_seen.st_mtim.tv_nsec;
}

/* SIGHUP or a changed file (why): reads GATEWAY_API_KEYS_FILE again. A
 * file that does not load leaves the keys as they were. */
static void
reload_keys(const char *why)
{
	char err[256];
	int  rv;

	if (cfg_api_keys_file[0] == '\0') {
		CM_WARN("GW-AUTH-RELOAD", NULL,
		    "%s: GATEWAY_API_KEYS_FILE is not set; no keys to load",
		    why);
		return;
	}
	keys_note();
	if ((rv = gw_auth_reload(auth, err, sizeof(err))) != CM_OK) {
		gw_metrics_auth_reload(0);
		CM_ERROR("GW-AUTH-RELOAD-FAIL", NULL,
		    "%s: %s; keeping the %zu key(s) loaded before", why,
		    rv == CM_EINVAL ? err : cm_strerror(rv),
		    gw_auth_keys(auth));
		return;
	}
	gw_metrics_auth_reload(1);
	gw_metrics_auth_keys(gw_auth_keys(auth));
	CM_INFO("GW-AUTH-RELOAD", NULL, "%s: %zu API key(s) from %s", why,
	    gw_auth_keys(auth), cfg_api_keys_file);
}

/* Loads the keys and parses the rate limit settings. Returns CM_OK, or an
 * error after printing why. */
static int
guard_init(int nloops)
{
	char err[256];
	int  rv;

	if (cfg_api_keys_file[0] != '\0') {
		keys_note();
	}
	if ((rv = gw_auth_new(&auth, cfg_api_keys_file, (int) cfg_auth_reads,
	         nloops, err, sizeof(err))) != CM_OK) {
		fprintf(stderr, "gateway: GATEWAY_API_KEYS_FILE=%s: %s\n",
		    cfg_api_keys_file,
		    rv == CM_EINVAL ? err : cm_strerror(rv));
		return rv;
	}
	gw_metrics_auth_keys(gw_auth_keys(auth));
	if (cfg_api_keys_file[0] == '\0') {
		CM_WARN("GW-AUTH-NOKEYS", NULL,
		    "GATEWAY_API_KEYS_FILE is not set: every write is "
		    "answered 401");
	} else {
		CM_INFO("GW-AUTH-KEYS", NULL, "%zu API key(s) from %s%s",
		    gw_auth_keys(auth), cfg_api_keys_file,
		    cfg_auth_reads ? "; reads need a key too" : "");
	}
	if ((rv = gw_cidrs_parse(
	         cfg_trusted_proxies, &trusted, err, sizeof(err))) != CM_OK) {
		fprintf(stderr, "gateway: GATEWAY_TRUSTED_PROXIES=%s: %s\n",
		    cfg_trusted_proxies,
		    rv == CM_EINVAL ? err : cm_strerror(rv));
		return rv;
	}
	if (cfg_rate_limit[0] != '\0') {
		if (gw_rl_parse_limit(cfg_rate_limit, &rate_limit) != CM_OK) {
			fprintf(stderr,
			    "gateway: GATEWAY_RATE_LIMIT=%s: want "
			    "\"<n>/<s|m|h> [burst <b>]\", e.g. \"100/s burst "
			    "200\"\n",
			    cfg_rate_limit);
			return CM_EINVAL;
		}
		rate_on = 1;
	}
	if (cfg_redis_url[0] != '\0') {
		cm_redis_url u;
		if (cm_redis_url_parse(cfg_redis_url, &u) != CM_OK) {
			fprintf(stderr,
			    "gateway: GATEWAY_REDIS_URL: want "
			    "redis://[[user]:password@]host[:port][/db]\n");
			return CM_EINVAL;
		}
		if (rate_on) { /* never the password in a log */
			CM_INFO("GW-RATELIMIT", NULL,
			    "%s per client, buckets in redis %s:%d/%d",
			    cfg_rate_limit, u.host, u.port, u.db);
		}
	} else if (rate_on) {
		CM_WARN("GW-RATELIMIT", NULL,
		    "%s per client, buckets per loop: GATEWAY_REDIS_URL is "
		    "not set, so each gateway counts on its own",
		    cfg_rate_limit);
	}
	return CM_OK;
}

/* The main thread's life after start: waits for SIGTERM or SIGINT and
 * walks the drain (gw_drain): readiness off at once, serving on for the
 * delay, then listeners closed and in-flight requests finishing until
 * every loop stopped or the drain timeout forces them. */
static void
run_drain(const sigset_t *set, worker *workers, int n)
{
	gw_drain       d;
	gw_drain_phase was = GW_DRAIN_RUNNING, now;
	int            closing = 0;
	int64_t        keys_every = cfg_api_keys_file[0] != '\0'
	           ? (int64_t) cfg_keys_check_s * 1000
	           : 0;
	int64_t        keys_next = cm_mono_us() / 1000 + keys_every;

	gw_drain_init(&d, (int) cfg_drain_delay_s, (int) cfg_drain_timeout_s);
	for (;;) {
		int64_t wait = gw_drain_wait_ms(&d, cm_mono_us() / 1000);
		int     sig;

		/* Look at the keys file every GATEWAY_API_KEYS_CHECK_S. */
		if (keys_every > 0) {
			int64_t left = keys_next - cm_mono_us() / 1000;
			left = left > 0 ? left : 0;
			if (wait < 0 || wait > left) {
				wait = left;
			}
		}

		/* While loops finish, look every 50 ms whether all did. */
		if (closing && (wait < 0 || wait > 50)) {
			wait = 50;
		}
		/* With TLS, failed handshakes show only in NNG's
		 * statistics: look at them once a second. */
		if (cm_tls_enabled() && (wait < 0 || wait > 1000)) {
			wait = 1000;
		}
		sig = cm_wait_signal(set, wait);
		cm_tls_watch();
		if (keys_every > 0 && cm_mono_us() / 1000 >= keys_next) {
			keys_next = cm_mono_us() / 1000 + keys_every;
			if (keys_changed()) {
				reload_keys("file changed");
			}
		}
		if (sig == SIGHUP) {
			reload_keys("SIGHUP");
			continue;
		}
		now = sig != 0 ? gw_drain_signal(&d, sig, cm_mono_us() / 1000)
		               : gw_drain_tick(&d, cm_mono_us() / 1000);
		if (sig != 0) {
			CM_INFO("GW-SIGNAL", NULL, "signal %d", sig);
		}
		if (now == GW_DRAIN_DELAY && was == GW_DRAIN_RUNNING) {
			CM_INFO("GW-DRAIN-START", NULL,
			    "readyz now 503; serving for %lld s more",
			    cfg_drain_delay_s);
		}
		if (now >= GW_DRAIN_CLOSE && !closing) {
			CM_INFO("GW-DRAIN-CLOSE", NULL,
			    "listeners closed; %lld request(s) in flight, "
			    "waiting up to %lld s",
			    (long long) gw_metrics_in_flight(),
			    cfg_drain_timeout_s);
			for (int i = 0; i < n; i++) {
				/* event_base_once() is safe from this
				 * thread: the bases are lockable and woken
				 * through evthread. */
				if (event_base_once(workers[i].base, -1,
				        EV_TIMEOUT, drain, &workers[i],
				        NULL) != 0) {
					event_base_loopbreak(workers[i].base);
				}
			}
			closing = 1;
		}
		if (now == GW_DRAIN_FORCE) {
			CM_WARN("GW-DRAIN-TIMEOUT", NULL,
			    "%lld request(s) still in flight: stopping now",
			    (long long) gw_metrics_in_flight());
			for (int i = 0; i < n; i++) {
				event_base_loopbreak(workers[i].base);
			}
			return;
		}
		if (closing && atomic_load(&loops_stopped) == n) {
			return;
		}
		was = now;
	}
}

/* Checks the GATEWAY_TLS_* settings against GATEWAY_UPSTREAMS and loads
 * the files (cm_tls_setup). Returns CM_OK, or an error after printing why. */
static int
tls_setup(void)
{
	cm_tls_opts o = {.var = "GATEWAY_TLS",
	    .ca = cfg_tls_ca,
	    .cert = cfg_tls_cert,
	    .key = cfg_tls_key,
	    .server_name = cfg_tls_server_name,
	    .event = "GW-TLS-HANDSHAKE"};
	char      **urls;
	size_t      n;
	char        err[512];
	int         rv;

	if (gw_rpc_urls_parse(cfg_upstreams, &urls, &n) != CM_OK) {
		fprintf(stderr,
		    "gateway: GATEWAY_UPSTREAMS=%s: want comma-separated NNG "
		    "URLs, none empty\n",
		    cfg_upstreams);
		return CM_EINVAL;
	}
	if ((rv = cm_tls_setup(&o, urls, n, err, sizeof(err))) != CM_OK) {
		fprintf(stderr, "gateway: %s\n", err);
	}
	gw_rpc_urls_free(urls, n);
	return rv;
}

int
main(int argc, char **argv)
{
	char      err[256];
	char      host[256];
	int       port, admin_port = 0, nthreads, status = 1;
	worker   *workers = NULL;
	gw_admin *admin = NULL;
	sigset_t  set;

	if (argc == 2 && strcmp(argv[1], "--list-routes") == 0) {
		gw_route_print(stdout); /* for tools/openapi's check */
		return fflush(stdout) == 0 ? 0 : 1;
	}
	if (cm_cfg_cli(argc, argv, summary, options, NOPTIONS)) {
		return 0;
	}
	if (argc > 1) {
		fprintf(stderr, "gateway: unknown argument %s (try --help)\n",
		    argv[1]);
		return 1;
	}
	if (cm_cfg_load(options, NOPTIONS, err, sizeof(err)) != CM_OK) {
		fprintf(stderr, "gateway: %s\n", err);
		return 1;
	}
	if (cm_net_parse_listen(cfg_listen, host, sizeof(host), &port) !=
	    CM_OK) {
		fprintf(stderr,
		    "gateway: GATEWAY_LISTEN=%s: want host:port or "
		    "[v6]:port\n",
		    cfg_listen);
		return 1;
	}
	if (cm_log_set_format(cfg_log_format) != CM_OK) {
		fprintf(stderr, "gateway: LOG_FORMAT=%s: want json or text\n",
		    cfg_log_format);
		return 1;
	}
	cm_log_init("gateway", cfg_log_level);
	if (tls_setup() != CM_OK) {
		return 1;
	}
	nthreads = cfg_threads > 0 ? (int) cfg_threads : cm_ncpu();
	loop_max_inflight =
	    (int) ((cfg_max_inflight + nthreads - 1) / nthreads);
	loop_max_conns = (int) ((cfg_max_conns + nthreads - 1) / nthreads);

	/* Every metric family is registered before a thread records: one
	 * shard per loop (cm_metrics_thread_set(i + 1) in worker_main). */
	if (cm_metrics_init(nthreads) != CM_OK || gw_metrics_init() != CM_OK ||
	    gw_rpc_metrics_init(cfg_upstreams) != CM_OK) {
		fprintf(stderr, "gateway: cannot register the metrics\n");
		cm_metrics_fini();
		return 1;
	}

	/* Block the stop signals before any thread exists (NNG starts its
	 * own on first use) so that only sigwait() below sees them. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP); /* reloads the API keys */
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (guard_init(nthreads) != CM_OK) {
		gw_auth_free(auth);
		gw_cidrs_free(trusted);
		cm_metrics_fini();
		return 1;
	}
	if (evthread_use_pthreads() != 0 ||
	    (workers = calloc((size_t) nthreads, sizeof(*workers))) == NULL) {
		fprintf(stderr, "gateway: cannot initialise\n");
		return 1;
	}
	for (int i = 0; i < nthreads; i++) {
		if (worker_init(&workers[i], i, nthreads, host, &port) !=
		    CM_OK) {
			goto out;
		}
	}
	if (admin_start(&admin, &admin_port, workers, nthreads) != CM_OK) {
		goto out;
	}
	for (int i = 0; i < nthreads; i++) {
		if (pthread_create(&workers[i].tid, NULL, worker_main,
		        &workers[i]) != 0) {
			fprintf(
			    stderr, "gateway: cannot start thread %d\n", i);
			goto stop;
		}
		workers[i].running = 1;
	}
	CM_INFO("GW-START", NULL,
	    "listen=%s port=%d admin_port=%d threads=%d upstreams=%s "
	    "timeout_ms=%lld max_inflight=%d/loop drain_delay_s=%lld "
	    "drain_timeout_s=%lld version=%s revision=%s",
	    cfg_listen, port, admin_port, nthreads, cfg_upstreams,
	    cfg_timeout_ms, loop_max_inflight, cfg_drain_delay_s,
	    cfg_drain_timeout_s, CM_VERSION, CM_GIT_REV);

	run_drain(&set, workers, nthreads);
	status = 0;
stop:
	for (int i = 0; i < nthreads; i++) {
		if (workers[i].running && status != 0) {
			event_base_loopbreak(workers[i].base);
		}
	}
	for (int i = 0; i < nthreads; i++) {
		if (workers[i].running) {
			pthread_join(workers[i].tid, NULL);
		}
	}
out:
	/* The admin loop stops last, so that /metrics answers during the
	 * drain and probes still in a loop's RPC client get their reply. */
	gw_admin_detach_loops(admin);
	for (int i = 0; i < nthreads; i++) {
		worker_fini(&workers[i]);
	}
	gw_admin_free(admin);
	free(workers);
	gw_auth_free(auth);
	gw_cidrs_free(trusted);
	cm_metrics_fini();
	cm_tls_fini();
	nng_fini();
	libevent_global_shutdown();
	if (status == 0) {
		CM_INFO("GW-STOPPED", NULL, "bye");
	}
	return status;
}
