/* gw_main.c - the gateway binary: settings, loop threads, signals. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <nng/nng.h>

#include "cm.h"
#include "cm_config.h"
#include "cm_log.h"
#include "gw.h"

static const char *cfg_listen;
static const char *cfg_upstreams;
static long long   cfg_timeout_ms;
static long long   cfg_threads;
static long long   cfg_max_body;
static const char *cfg_log_level;

static const cm_cfg_opt options[] = {
    {"GATEWAY_LISTEN", CM_CFG_STRING, "0.0.0.0:8080", 0, 0, &cfg_listen,
        "HTTP listen address, host:port or [v6]:port"},
    {"GATEWAY_UPSTREAMS", CM_CFG_STRING, NULL, 0, 0, &cfg_upstreams,
        "comma-separated NNG URLs of the product-service replicas"},
    {"GATEWAY_TIMEOUT_MS", CM_CFG_INT, "2000", 1, 600000, &cfg_timeout_ms,
        "deadline of one request, retries included (ms)"},
    {"GATEWAY_THREADS", CM_CFG_INT, "0", 0, 1024, &cfg_threads,
        "event loop threads; 0 means one per CPU"},
    {"GATEWAY_MAX_BODY_BYTES", CM_CFG_INT, "1048576", 0, 1073741824,
        &cfg_max_body, "largest request body accepted (bytes)"},
    {"LOG_LEVEL", CM_CFG_LEVEL, "info", 0, 0, &cfg_log_level,
        "debug, info, warn or error"},
};

#define NOPTIONS (sizeof(options) / sizeof(options[0]))

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
	pthread_t          tid;
	int                running;
} worker;

static void *
worker_main(void *arg)
{
	worker *w = arg;
	if (event_base_dispatch(w->base) < 0) {
		CM_ERROR("GW-LOOP-FAIL", NULL, "loop %d stopped on an error",
		    w->idx);
	}
	return NULL;
}

/* Tears a worker down after its loop stopped: pending RPCs are answered
 * (503) before evhttp frees their requests, and the NNG sockets close
 * before the base that their callbacks wake. */
static void
worker_fini(worker *w)
{
	gw_rpc_shutdown(w->rpc);
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

static void
force_stop(evutil_socket_t fd, short what, void *arg)
{
	worker *w = arg;
	(void) fd;
	(void) what;
	CM_WARN("GW-DRAIN-TIMEOUT", NULL, "loop %d: requests still pending",
	    w->idx);
	stop_loop(w);
}

/* Runs on the worker's loop: stop accepting, let pending requests finish
 * (their deadlines bound the wait), then stop the loop. */
static void
drain(evutil_socket_t fd, short what, void *arg)
{
	worker        *w = arg;
	struct timeval tv = {0, 0};
	int64_t        ms = cfg_timeout_ms + 500;

	(void) fd;
	(void) what;
	tv.tv_sec = (time_t) (ms / 1000);
	tv.tv_usec = (suseconds_t) (ms % 1000) * 1000;
	event_base_once(w->base, -1, EV_TIMEOUT, force_stop, w, &tv);
	gw_http_drain(w->http, stop_loop, w);
}

static int
worker_init(worker *w, int idx, const char *host, int *port)
{
	char err[256];
	int  fd, bound, rv;

	w->idx = idx;
	if ((rv = gw_http_listen(
	         host, *port, &fd, &bound, err, sizeof(err))) != CM_OK) {
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
	if ((rv = gw_rpc_new(&w->rpc, w->base, cfg_upstreams, err,
	         sizeof(err))) != CM_OK) {
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
	return CM_OK;
}

int
main(int argc, char **argv)
{
	char     err[256];
	char     host[256];
	int      port, nthreads, sig = 0, status = 1;
	worker  *workers = NULL;
	sigset_t set;

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
	if (gw_http_parse_listen(cfg_listen, host, sizeof(host), &port) !=
	    CM_OK) {
		fprintf(stderr,
		    "gateway: GATEWAY_LISTEN=%s: want host:port or "
		    "[v6]:port\n",
		    cfg_listen);
		return 1;
	}
	cm_log_init("gateway", cfg_log_level);
	nthreads = cfg_threads > 0 ? (int) cfg_threads : cm_ncpu();

	/* Block the stop signals before any thread exists (NNG starts its
	 * own on first use) so that only sigwait() below sees them. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (evthread_use_pthreads() != 0 ||
	    (workers = calloc((size_t) nthreads, sizeof(*workers))) == NULL) {
		fprintf(stderr, "gateway: cannot initialise\n");
		return 1;
	}
	for (int i = 0; i < nthreads; i++) {
		if (worker_init(&workers[i], i, host, &port) != CM_OK) {
			goto out;
		}
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
	    "listen=%s port=%d threads=%d upstreams=%s "
	    "timeout_ms=%lld",
	    cfg_listen, port, nthreads, cfg_upstreams, cfg_timeout_ms);

	if (sigwait(&set, &sig) == 0) {
		CM_INFO("GW-STOP", NULL, "signal %d: stopping", sig);
	}
	status = 0;
	for (int i = 0; i < nthreads; i++) {
		/* event_base_once() is safe from this thread: the bases
		 * are lockable and woken through evthread. */
		if (event_base_once(workers[i].base, -1, EV_TIMEOUT, drain,
		        &workers[i], NULL) != 0) {
			event_base_loopbreak(workers[i].base);
		}
	}
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
	for (int i = 0; i < nthreads; i++) {
		worker_fini(&workers[i]);
	}
	free(workers);
	nng_fini();
	libevent_global_shutdown();
	if (status == 0) {
		CM_INFO("GW-STOPPED", NULL, "bye");
	}
	return status;
}
