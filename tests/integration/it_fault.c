/* it_fault.c - fault-injection helpers: load generator, replicas on chosen
 * addresses, metrics scraping, dnsmasq, network namespaces, TCP forwarder.
 */
#include "it_fault.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- load generator ---------------------------------------------------- */

typedef struct load_thread {
	struct it_load *l;
	int             t;
	pthread_t       tid;
	unsigned        seed;
	long long       version[IT_LOAD_MAX_WRITE_ID]; /* known ETag */
	long long       acked[IT_LOAD_MAX_WRITE_ID];   /* highest 200 */
	long            seq;
} load_thread;

struct it_load {
	it_load_cfg     cfg;
	char            name[64];
	int64_t         t0;
	atomic_int      stop;
	atomic_long     next; /* slots handed out */
	atomic_long     done; /* requests answered (any outcome) */
	atomic_long     fails;
	float          *lat_ms; /* one slot per request, -1 unused */
	int             nthreads;
	load_thread     th[IT_LOAD_MAX_THREADS];
	int             running; /* threads started */
	pthread_mutex_t mu;      /* guards the counters below */
	it_load_result  res;
};

/* Notes one failure (under mu). */
static void
load_fail(it_load *l, const char *fmt, ...)
{
	va_list ap;

	atomic_fetch_add(&l->fails, 1);
	pthread_mutex_lock(&l->mu);
	l->res.failures++;
	if (l->res.nfail_log < IT_LOAD_MAX_FAILLOG) {
		char *s = l->res.fail_log[l->res.nfail_log++];
		int   n = snprintf(s, 200, "t=%dms ", it_load_elapsed_ms(l));
		va_start(ap, fmt);
		vsnprintf(s + n, (size_t) (200 - n), fmt, ap);
		va_end(ap);
		for (char *c = s; *c; c++) {
			if (*c == '\n' || *c == '\r') {
				*c = ' ';
			}
		}
	}
	pthread_mutex_unlock(&l->mu);
}

/* Returns 1 when status is listed in the 0-terminated list. */
static int
status_in(const int *list, int status)
{
	for (int i = 0; list != NULL && list[i] != 0; i++) {
		if (list[i] == status) {
			return 1;
		}
	}
	return 0;
}

/* Reads N from the ETag "N" of r, or -1. */
static long long
etag_of(const it_http_resp *r)
{
	const char *e = it_http_header(r, "ETag");
	if (e == NULL || e[0] != '"') {
		return -1;
	}
	return strtoll(e + 1, NULL, 10);
}

/* GETs product id through the gateway and returns its ETag version, or -1.
 */
static long long
fetch_version(int port, int64_t id)
{
	it_http_resp r;
	char         path[64];
	long long    v = -1;

	snprintf(path, sizeof(path), "/products/%lld", (long long) id);
	if (it_http(&r, port, "GET", path, NULL, NULL, 0, 5000) == 0) {
		if (r.status == 200) {
			v = etag_of(&r);
		}
		it_http_resp_free(&r);
	}
	return v;
}

static void
do_get(load_thread *th, long slot_seq)
{
	it_load     *l = th->l;
	it_http_resp r;
	char         path[64], rid[96], rh[128];
	const char  *hd[2];
	int64_t id = l->cfg.read_first + rand_r(&th->seed) % l->cfg.read_n;
	int     rv;

	snprintf(path, sizeof(path), "/products/%lld", (long long) id);
	snprintf(rid, sizeof(rid), "%s-%d-%ld", l->name, th->t, slot_seq);
	snprintf(rh, sizeof(rh), "X-Request-Id: %s", rid);
	hd[0] = rh;
	hd[1] = NULL;
	rv = it_http(
	    &r, l->cfg.port, "GET", path, hd, NULL, 0, l->cfg.timeout_ms);
	pthread_mutex_lock(&l->mu);
	l->res.gets++;
	if (rv != 0) {
		l->res.transport_errors++;
	}
	pthread_mutex_unlock(&l->mu);
	if (rv != 0) {
		pthread_mutex_lock(&l->mu);
		l->res.get_failures++;
		pthread_mutex_unlock(&l->mu);
		load_fail(l, "GET %s req=%s: no HTTP answer", path, rid);
		return;
	}
	if (r.status != 200) {
		pthread_mutex_lock(&l->mu);
		l->res.get_failures++;
		pthread_mutex_unlock(&l->mu);
		load_fail(l, "GET %s req=%s: %d %.100s", path, rid, r.status,
		    r.body ? r.body : "");
	} else {
		const char *xc = it_http_header(&r, "X-Cache");
		pthread_mutex_lock(&l->mu);
		if (xc == NULL) {
			/* counted nowhere */
		} else if (strcmp(xc, "HIT") == 0) {
			l->res.hit++;
		} else if (strcmp(xc, "MISS") == 0) {
			l->res.miss++;
		} else if (strcmp(xc, "BYPASS") == 0) {
			l->res.bypass++;
		} else if (strcmp(xc, "STALE") == 0) {
			l->res.stale++;
		}
		pthread_mutex_unlock(&l->mu);
	}
	it_http_resp_free(&r);
}

static void
do_put(load_thread *th, long slot_seq)
{
	it_load     *l = th->l;
	it_http_resp r;
	int          k = (int) (th->seq % l->cfg.write_per_thread);
	int64_t      id =
	    l->cfg.write_first + (int64_t) th->t * l->cfg.write_per_thread + k;
	char        path[64], rid[96], rh[128], im[64], ik[160], body[512];
	const char *hd[5];
	int         n = 0, rv;

	th->seq++;
	snprintf(path, sizeof(path), "/products/%lld", (long long) id);
	snprintf(rid, sizeof(rid), "%s-%d-%ld", l->name, th->t, slot_seq);
	snprintf(rh, sizeof(rh), "X-Request-Id: %s", rid);
	hd[n++] = "Content-Type: application/json";
	hd[n++] = rh;
	if (l->cfg.if_match && th->version[k] > 0) {
		snprintf(im, sizeof(im), "If-Match: \"%lld\"", th->version[k]);
		hd[n++] = im;
	}
	if (l->cfg.idem_key) {
		snprintf(ik, sizeof(ik), "Idempotency-Key: %s-%d-%d-%ld",
		    l->name, (int) getpid(), th->t, th->seq);
		hd[n++] = ik;
	}
	hd[n] = NULL;
	snprintf(body, sizeof(body),
	    "{\"sku\":\"LD-%lld\",\"name\":\"%s t%d s%ld\","
	    "\"description\":\"written by the load\",\"price_cents\":%ld,"
	    "\"currency\":\"USD\",\"stock\":%ld}",
	    (long long) id, l->name, th->t, th->seq, 100 + th->seq,
	    th->seq % 1000);
	rv = it_http(&r, l->cfg.port, "PUT", path, hd, body, strlen(body),
	    l->cfg.timeout_ms);
	pthread_mutex_lock(&l->mu);
	l->res.writes++;
	if (rv != 0) {
		l->res.transport_errors++;
	}
	pthread_mutex_unlock(&l->mu);
	if (rv == 0 && r.status == 200) {
		long long v = etag_of(&r);
		if (v > 0) {
			th->version[k] = v;
			if (v > th->acked[k]) {
				th->acked[k] = v;
			}
		}
		pthread_mutex_lock(&l->mu);
		l->res.write_acks++;
		pthread_mutex_unlock(&l->mu);
	} else if (rv == 0 && status_in(l->cfg.write_ok_extra, r.status)) {
		pthread_mutex_lock(&l->mu);
		l->res.write_extra++;
		pthread_mutex_unlock(&l->mu);
	} else {
		long long v;
		pthread_mutex_lock(&l->mu);
		l->res.write_failures++;
		pthread_mutex_unlock(&l->mu);
		if (rv != 0) {
			load_fail(
			    l, "PUT %s req=%s: no HTTP answer", path, rid);
		} else {
			load_fail(l, "PUT %s req=%s: %d %.100s", path, rid,
			    r.status, r.body ? r.body : "");
		}
		/* The outcome is unknown: learn the version again so that
		 * one failure does not turn every later If-Match into 412. */
		if ((v = fetch_version(l->cfg.port, id)) > 0) {
			th->version[k] = v;
		}
	}
	if (rv == 0) {
		it_http_resp_free(&r);
	}
}

static void *
load_main(void *arg)
{
	load_thread *th = arg;
	it_load     *l = th->l;

	for (;;) {
		long    slot;
		int64_t t0;

		if (atomic_load(&l->stop) ||
		    it_now_ms() - l->t0 >= l->cfg.duration_ms) {
			break;
		}
		slot = atomic_fetch_add(&l->next, 1);
		if (slot >= l->cfg.max_requests) {
			break;
		}
		t0 = it_now_ms();
		if (l->cfg.write_pct > 0 &&
		    rand_r(&th->seed) % 100 < l->cfg.write_pct) {
			do_put(th, slot);
		} else {
			do_get(th, slot);
		}
		l->lat_ms[slot] = (float) (it_now_ms() - t0);
		atomic_fetch_add(&l->done, 1);
		if (l->cfg.pace_us > 0) {
			usleep((useconds_t) l->cfg.pace_us);
		}
	}
	return NULL;
}

int
it_load_elapsed_ms(const it_load *l)
{
	return (int) (it_now_ms() - l->t0);
}

long
it_load_count(const it_load *l)
{
	return atomic_load(&((it_load *) l)->done);
}

long
it_load_failures(const it_load *l)
{
	return atomic_load(&((it_load *) l)->fails);
}

it_load *
it_load_start(const it_load_cfg *cfg)
{
	it_load *l = calloc(1, sizeof(*l));

	if (l == NULL) {
		return NULL;
	}
	l->cfg = *cfg;
	snprintf(
	    l->name, sizeof(l->name), "%s", cfg->name ? cfg->name : "load");
	l->cfg.name = l->name;
	if (l->cfg.threads <= 0) {
		l->cfg.threads = 4;
	}
	if (l->cfg.threads > IT_LOAD_MAX_THREADS) {
		l->cfg.threads = IT_LOAD_MAX_THREADS;
	}
	if (l->cfg.duration_ms <= 0) {
		l->cfg.duration_ms = 8000;
	}
	if (l->cfg.max_requests <= 0) {
		l->cfg.max_requests = 20000;
	}
	if (l->cfg.timeout_ms <= 0) {
		l->cfg.timeout_ms = 5000;
	}
	if (l->cfg.read_n <= 0) {
		l->cfg.read_n = 1;
	}
	if (l->cfg.read_first <= 0) {
		l->cfg.read_first = 1;
	}
	if (l->cfg.write_per_thread <= 0) {
		l->cfg.write_per_thread = 1;
	}
	if (l->cfg.write_per_thread > IT_LOAD_MAX_WRITE_ID) {
		l->cfg.write_per_thread = IT_LOAD_MAX_WRITE_ID;
	}
	pthread_mutex_init(&l->mu, NULL);
	l->lat_ms = malloc(sizeof(float) * (size_t) l->cfg.max_requests);
	if (l->lat_ms == NULL) {
		free(l);
		return NULL;
	}
	for (long i = 0; i < l->cfg.max_requests; i++) {
		l->lat_ms[i] = -1;
	}
	l->nthreads = l->cfg.threads;
	for (int t = 0; t < l->nthreads; t++) {
		load_thread *th = &l->th[t];
		th->l = l;
		th->t = t;
		th->seed = (unsigned) (getpid() * 31 + t * 7919 + 1);
		if (l->cfg.write_pct <= 0) {
			continue;
		}
		for (int k = 0; k < l->cfg.write_per_thread; k++) {
			int64_t id = l->cfg.write_first +
			    (int64_t) t * l->cfg.write_per_thread + k;
			if ((th->version[k] =
			            fetch_version(l->cfg.port, id)) <= 0) {
				fprintf(stderr,
				    "it_load: %s: cannot read product %lld "
				    "before the load\n",
				    l->name, (long long) id);
				free(l->lat_ms);
				free(l);
				return NULL;
			}
		}
	}
	l->t0 = it_now_ms();
	for (int t = 0; t < l->nthreads; t++) {
		if (pthread_create(
		        &l->th[t].tid, NULL, load_main, &l->th[t]) != 0) {
			atomic_store(&l->stop, 1);
			break;
		}
		l->running++;
	}
	return l;
}

void
it_load_wait(it_load *l, int timeout_ms)
{
	int64_t end = it_now_ms() + timeout_ms;

	/* Each thread takes one slot past the cap when it stops. */
	while (it_now_ms() < end &&
	    it_load_elapsed_ms(l) < l->cfg.duration_ms &&
	    atomic_load(&l->next) < l->cfg.max_requests + l->running) {
		it_sleep_ms(20);
	}
}

static int
cmp_float(const void *a, const void *b)
{
	float x = *(const float *) a, y = *(const float *) b;
	return x < y ? -1 : x > y;
}

long
it_load_finish(it_load *l, it_load_result *res)
{
	it_load_result *r = &l->res;
	long            n = 0, lim, failures;

	atomic_store(&l->stop, 1);
	for (int t = 0; t < l->running; t++) {
		pthread_join(l->th[t].tid, NULL);
	}
	r->elapsed_ms = it_load_elapsed_ms(l);
	lim = atomic_load(&l->next);
	if (lim > l->cfg.max_requests) {
		lim = l->cfg.max_requests;
	}
	for (long i = 0; i < lim; i++) {
		if (l->lat_ms[i] >= 0) {
			l->lat_ms[n++] = l->lat_ms[i];
		}
	}
	r->requests = n;
	if (n > 0) {
		qsort(l->lat_ms, (size_t) n, sizeof(float), cmp_float);
		r->p50_ms = l->lat_ms[(n - 1) * 50 / 100];
		r->p99_ms = l->lat_ms[(n - 1) * 99 / 100];
		r->max_ms = l->lat_ms[n - 1];
	}
	for (int t = 0; t < l->nthreads && l->cfg.write_pct > 0; t++) {
		for (int k = 0; k < l->cfg.write_per_thread; k++) {
			if (l->th[t].acked[k] > 0) {
				it_load_ack *a = &r->acks[r->nacks++];
				a->id = l->cfg.write_first +
				    (int64_t) t * l->cfg.write_per_thread + k;
				a->version = l->th[t].acked[k];
			}
		}
	}
	printf("%s: requests=%ld failures=%ld p99_ms=%.1f\n", l->name,
	    r->requests, r->failures, r->p99_ms);
	printf("  %s detail: gets=%ld (failed %ld) writes=%ld (acked %ld, "
	       "expected-refusals %ld, failed %ld) X-Cache hit=%ld miss=%ld "
	       "bypass=%ld stale=%ld no-answer=%ld p50_ms=%.1f max_ms=%.1f "
	       "elapsed_ms=%d threads=%d\n",
	    l->name, r->gets, r->get_failures, r->writes, r->write_acks,
	    r->write_extra, r->write_failures, r->hit, r->miss, r->bypass,
	    r->stale, r->transport_errors, r->p50_ms, r->max_ms, r->elapsed_ms,
	    l->nthreads);
	for (int i = 0; i < r->nfail_log; i++) {
		printf("  %s failure: %s\n", l->name, r->fail_log[i]);
	}
	fflush(stdout);
	failures = r->failures;
	if (res != NULL) {
		*res = *r;
	}
	pthread_mutex_destroy(&l->mu);
	free(l->lat_ms);
	free(l);
	return failures;
}

/* ---- processes on chosen addresses ------------------------------------ */

/* Returns 1 when list holds an entry for the variable of kv. */
static int
env_listed(const char *const *list, int n, const char *kv)
{
	size_t klen = strcspn(kv, "=");
	for (int i = 0; i < n && list[i] != NULL; i++) {
		if (strncmp(list[i], kv, klen) == 0 && list[i][klen] == '=') {
			return 1;
		}
	}
	return 0;
}

const char *
it_ip_path(void)
{
	static const char *const c[] = {
	    "/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip", NULL};
	for (int i = 0; c[i]; i++) {
		if (access(c[i], X_OK) == 0) {
			return c[i];
		}
	}
	return NULL;
}

int
it_replica_spawn(it_proc *p, const char *name, const char *listen_url,
    const char *redis_url, const char *db_url, int admin_port,
    const char *netns, const char *const *extra_env)
{
	char bin[512], listen[160], pname[96], db[512], redis[200], admin[64],
	    lname[96];
	const char *env[48];
	const char *defs[8];
	char       *argv[8];
	const char *ibin = it_env("IT_BIN");
	int         n = 0, a = 0;

	if (ibin == NULL ||
	    (db_url == NULL && (db_url = it_env("IT_DATABASE_URL")) == NULL)) {
		return -1;
	}
	snprintf(bin, sizeof(bin), "%s/product-service", ibin);
	snprintf(listen, sizeof(listen), "PRODUCT_LISTEN=%s", listen_url);
	snprintf(pname, sizeof(pname), "PRODUCT_NAME=%s", name);
	snprintf(db, sizeof(db), "DATABASE_URL=%s", db_url);
	snprintf(redis, sizeof(redis), "REDIS_URL=%s", redis_url);
	snprintf(admin, sizeof(admin), "PRODUCT_ADMIN_LISTEN=127.0.0.1:%d",
	    admin_port);
	snprintf(lname, sizeof(lname), "%s", name);
	defs[0] = listen;
	defs[1] = pname;
	defs[2] = db;
	defs[3] = redis;
	defs[4] = admin;
	defs[5] = "PRODUCT_THREADS=2";
	defs[6] = "PRODUCT_DRAIN_DELAY_S=0";
	defs[7] = NULL;
	/* The caller's entries first, then the defaults they leave unset: a
	 * variable appears once (getenv would take the first of two). */
	for (int i = 0; extra_env != NULL && extra_env[i] != NULL && n < 38;
	     i++) {
		env[n++] = extra_env[i];
	}
	for (int i = 0, nx = n; defs[i] != NULL; i++) {
		if (!env_listed(env, nx, defs[i])) {
			env[n++] = defs[i];
		}
	}
	env[n] = NULL;
	if (netns != NULL) {
		const char *ip = it_ip_path();
		if (ip == NULL) {
			fprintf(stderr, "it: no ip binary for netns exec\n");
			return -1;
		}
		argv[a++] = (char *) ip;
		argv[a++] = "netns";
		argv[a++] = "exec";
		argv[a++] = (char *) netns;
	}
	argv[a++] = bin;
	argv[a] = NULL;
	return it_proc_spawn(p, lname, argv, env);
}

int
it_wait_tcp(const char *ip, int port, int timeout_ms)
{
	int64_t            end = it_now_ms() + timeout_ms;
	struct sockaddr_in sa = {0};

	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t) port);
	if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1) {
		return -1;
	}
	for (;;) {
		int fd = socket(
		    AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		int ok = 0;
		if (fd >= 0) {
			if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) ==
			    0) {
				ok = 1;
			} else if (errno == EINPROGRESS) {
				struct pollfd pfd = {fd, POLLOUT, 0};
				int           err = 0;
				socklen_t     el = sizeof(err);
				if (poll(&pfd, 1, 200) == 1 &&
				    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err,
				        &el) == 0 &&
				    err == 0) {
					ok = 1;
				}
			}
			close(fd);
		}
		if (ok) {
			return 0;
		}
		if (it_now_ms() >= end) {
			return -1;
		}
		it_sleep_ms(50);
	}
}

int
it_sh(const char *fmt, ...)
{
	char    cmd[2048], wrapped[2100];
	va_list ap;
	int     st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	snprintf(wrapped, sizeof(wrapped), "{ %s ; } 1>&2", cmd);
	fflush(NULL);
	st = system(wrapped);
	if (st == -1) {
		return -1;
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

int
it_sh_out(char *out, size_t len, const char *fmt, ...)
{
	char    cmd[2048], wrapped[2100];
	va_list ap;
	FILE   *f;
	size_t  n = 0;
	int     st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	snprintf(wrapped, sizeof(wrapped), "{ %s ; } 2>&1", cmd);
	fflush(NULL);
	if ((f = popen(wrapped, "r")) == NULL) {
		return -1;
	}
	if (len > 0) {
		n = fread(out, 1, len - 1, f);
		out[n] = '\0';
	}
	/* Drain whatever did not fit so the command can finish. */
	{
		char sink[4096];
		while (fread(sink, 1, sizeof(sink), f) > 0) { }
	}
	st = pclose(f);
	if (st == -1) {
		return -1;
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

void
it_proc_stacks(const it_proc *p)
{
	if (p->pid <= 0) {
		return;
	}
	if (access("/usr/bin/gdb", X_OK) != 0) {
		fprintf(
		    stderr, "it: no gdb: cannot show %s's threads\n", p->name);
		return;
	}
	fprintf(stderr, "---- threads of %s (pid %d) ----\n", p->name,
	    (int) p->pid);
	it_sh("timeout 30 /usr/bin/gdb -p %d -batch -nx -q "
	      "-ex 'thread apply all bt' 2>&1 | grep -v '^\\[New LWP' "
	      "| head -300",
	    (int) p->pid);
	fprintf(stderr, "---- end of threads of %s ----\n", p->name);
}

/* ---- Prometheus text --------------------------------------------------- */

char *
it_scrape(int port)
{
	it_http_resp r;
	char        *body = NULL;

	if (it_http(&r, port, "GET", "/metrics", NULL, NULL, 0, 5000) != 0) {
		return NULL;
	}
	if (r.status == 200) {
		body = r.body;
		r.body = NULL;
	} else {
		fprintf(stderr, "it: /metrics on %d answered %d\n", port,
		    r.status);
	}
	it_http_resp_free(&r);
	return body;
}

/* Returns 1 when the label set labels (between the braces, length n)
 * holds filter (`key="value"`) as a whole label. */
static int
has_label(const char *labels, size_t n, const char *filter)
{
	size_t fl = strlen(filter);
	for (size_t i = 0; i + fl <= n; i++) {
		if ((i == 0 || labels[i - 1] == ',') &&
		    strncmp(labels + i, filter, fl) == 0 &&
		    (i + fl == n || labels[i + fl] == ',')) {
			return 1;
		}
	}
	return 0;
}

double
it_metric_sum(
    const char *text, const char *name, const char *const *filters, int *found)
{
	const char *p = text;
	size_t      nl = strlen(name);
	double      sum = 0;
	int         hits = 0;

	while (p != NULL && *p != '\0') {
		const char *eol = strchr(p, '\n');
		const char *line = p;
		const char *q, *labels = NULL;
		size_t      llen = 0;
		int         ok = 1;

		p = eol ? eol + 1 : NULL;
		if (*line == '#' || strncmp(line, name, nl) != 0 ||
		    (line[nl] != '{' && line[nl] != ' ')) {
			continue;
		}
		q = line + nl;
		if (*q == '{') {
			int in = 0;
			labels = ++q;
			while (*q != '\0' && *q != '\n' && (in || *q != '}')) {
				if (in && *q == '\\' && q[1] != '\0') {
					q++;
				} else if (*q == '"') {
					in = !in;
				}
				q++;
			}
			if (*q != '}') {
				continue;
			}
			llen = (size_t) (q - labels);
			q++;
		}
		for (int i = 0; filters != NULL && filters[i] != NULL; i++) {
			ok &= labels != NULL &&
			    has_label(labels, llen, filters[i]);
		}
		if (!ok) {
			continue;
		}
		sum += strtod(q, NULL);
		hits++;
	}
	if (found != NULL) {
		*found = hits;
	}
	return sum;
}

double
it_scrape_sum(int port, const char *name, const char *const *filters)
{
	char  *t = it_scrape(port);
	double v;

	if (t == NULL) {
		return -1;
	}
	v = it_metric_sum(t, name, filters, NULL);
	free(t);
	return v;
}

/* ---- dnsmasq ----------------------------------------------------------- */

const char *
it_dnsmasq_path(void)
{
	static const char *const c[] = {
	    "/usr/sbin/dnsmasq", "/sbin/dnsmasq", "/usr/bin/dnsmasq", NULL};
	for (int i = 0; c[i]; i++) {
		if (access(c[i], X_OK) == 0) {
			return c[i];
		}
	}
	return NULL;
}

/* Writes lines to path through a temporary file and rename. */
static int
write_hosts(const char *path, const char *const *lines)
{
	char  tmp[600];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if ((f = fopen(tmp, "w")) == NULL) {
		fprintf(stderr, "it: %s: %s\n", tmp, strerror(errno));
		return -1;
	}
	for (int i = 0; lines != NULL && lines[i] != NULL; i++) {
		fprintf(f, "%s\n", lines[i]);
	}
	if (fclose(f) != 0) {
		return -1;
	}
	/* dnsmasq reads it again after dropping privileges. */
	chmod(tmp, 0644);
	return rename(tmp, path);
}

int
it_dns_start(it_dns *d, const char *const *lines)
{
	const char *bin = it_dnsmasq_path();
	char        hosts_opt[600], port_opt[32], name[64];
	char       *argv[18];
	int         a = 0;

	memset(d, 0, sizeof(*d));
	if (bin == NULL || (d->port = it_free_port()) < 0) {
		return -1;
	}
	snprintf(d->hosts, sizeof(d->hosts), "%s/dns-%d.hosts", it_tmpdir(),
	    d->port);
	if (write_hosts(d->hosts, lines) != 0) {
		return -1;
	}
	snprintf(hosts_opt, sizeof(hosts_opt), "--addn-hosts=%s", d->hosts);
	snprintf(port_opt, sizeof(port_opt), "--port=%d", d->port);
	snprintf(name, sizeof(name), "dnsmasq-%d", d->port);
	argv[a++] = (char *) bin;
	argv[a++] = "--keep-in-foreground";
	argv[a++] = "--no-resolv";
	argv[a++] = "--no-hosts";
	/* Answer every name from here: NODATA for AAAA (as a cluster DNS
	 * does) rather than REFUSED for want of an upstream. */
	argv[a++] = "--local=/#/";
	argv[a++] = hosts_opt;
	argv[a++] = port_opt;
	argv[a++] = "--listen-address=127.0.0.1";
	argv[a++] = "--bind-interfaces";
	argv[a++] = "--pid-file=";
	argv[a++] = "--log-facility=-";
	argv[a++] = "--log-queries";
	argv[a] = NULL;
	if (it_proc_spawn(&d->proc, name, argv, NULL) != 0) {
		return -1;
	}
	if (it_wait_port(d->port, 5000) != 0) {
		fprintf(stderr, "it: dnsmasq did not listen on %d\n", d->port);
		it_proc_dump_log(&d->proc, 20);
		it_proc_stop(&d->proc, SIGKILL, 2000);
		return -1;
	}
	return 0;
}

int
it_dns_set(it_dns *d, const char *const *lines)
{
	if (write_hosts(d->hosts, lines) != 0 || d->proc.pid <= 0) {
		return -1;
	}
	return kill(d->proc.pid, SIGHUP);
}

void
it_dns_stop(it_dns *d)
{
	it_proc_stop(&d->proc, SIGTERM, 3000);
}

/* ---- TCP forwarder ----------------------------------------------------- */

struct it_fwd {
	int        lfd;
	int        to_port;
	pthread_t  acc;
	atomic_int stop;
	atomic_int live; /* connection threads running */
};

typedef struct pump {
	it_fwd *f;
	int     a, b;
} pump;

/* Copies bytes both ways between p->a and p->b until either side ends or
 * the forwarder stops. */
static void *
pump_main(void *arg)
{
	pump   *p = arg;
	it_fwd *f = p->f;
	char    buf[16384];

	while (!atomic_load(&f->stop)) {
		struct pollfd pf[2] = {{p->a, POLLIN, 0}, {p->b, POLLIN, 0}};
		int           rv = poll(pf, 2, 100);
		int           end = 0;
		if (rv < 0 && errno != EINTR) {
			break;
		}
		for (int i = 0; i < 2 && rv > 0; i++) {
			int     from = i ? p->b : p->a, to = i ? p->a : p->b;
			ssize_t n, off = 0;
			if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR))) {
				continue;
			}
			n = recv(from, buf, sizeof(buf), 0);
			if (n <= 0) {
				end = 1;
				break;
			}
			while (off < n) {
				ssize_t w = send(to, buf + off,
				    (size_t) (n - off), MSG_NOSIGNAL);
				if (w <= 0) {
					end = 1;
					break;
				}
				off += w;
			}
		}
		if (end) {
			break;
		}
	}
	close(p->a);
	close(p->b);
	free(p);
	atomic_fetch_sub(&f->live, 1);
	return NULL;
}

static void *
accept_main(void *arg)
{
	it_fwd *f = arg;

	while (!atomic_load(&f->stop)) {
		struct pollfd      pf = {f->lfd, POLLIN, 0};
		struct sockaddr_in to = {0};
		pump              *p;
		pthread_t          tid;
		int                c, u;

		if (poll(&pf, 1, 100) != 1) {
			continue;
		}
		if ((c = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC)) < 0) {
			continue;
		}
		to.sin_family = AF_INET;
		to.sin_port = htons((uint16_t) f->to_port);
		to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		u = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (u < 0 ||
		    connect(u, (struct sockaddr *) &to, sizeof(to)) != 0 ||
		    (p = malloc(sizeof(*p))) == NULL) {
			if (u >= 0) {
				close(u);
			}
			close(c);
			continue;
		}
		p->f = f;
		p->a = c;
		p->b = u;
		atomic_fetch_add(&f->live, 1);
		if (pthread_create(&tid, NULL, pump_main, p) != 0) {
			atomic_fetch_sub(&f->live, 1);
			close(c);
			close(u);
			free(p);
			continue;
		}
		pthread_detach(tid);
	}
	return NULL;
}

it_fwd *
it_fwd_start(const char *bind_ip, int bind_port, int to_port)
{
	struct sockaddr_in sa = {0};
	it_fwd            *f = calloc(1, sizeof(*f));
	int                one = 1;

	if (f == NULL) {
		return NULL;
	}
	f->to_port = to_port;
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t) bind_port);
	if (inet_pton(AF_INET, bind_ip, &sa.sin_addr) != 1 ||
	    (f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
		free(f);
		return NULL;
	}
	setsockopt(f->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(f->lfd, (struct sockaddr *) &sa, sizeof(sa)) != 0 ||
	    listen(f->lfd, 64) != 0) {
		fprintf(stderr, "it: forwarder bind %s:%d: %s\n", bind_ip,
		    bind_port, strerror(errno));
		close(f->lfd);
		free(f);
		return NULL;
	}
	if (pthread_create(&f->acc, NULL, accept_main, f) != 0) {
		close(f->lfd);
		free(f);
		return NULL;
	}
	return f;
}

void
it_fwd_stop(it_fwd *f)
{
	int64_t end;

	if (f == NULL) {
		return;
	}
	atomic_store(&f->stop, 1);
	pthread_join(f->acc, NULL);
	close(f->lfd);
	end = it_now_ms() + 3000;
	while (atomic_load(&f->live) > 0 && it_now_ms() < end) {
		it_sleep_ms(20);
	}
	if (atomic_load(&f->live) > 0) {
		/* A pump still holds f: leak it rather than free it under
		 * a running thread. */
		fprintf(stderr, "it: forwarder threads did not stop\n");
		return;
	}
	free(f);
}

/* ---- network namespaces ------------------------------------------------ */

int
it_netns_usable(char *why, size_t len)
{
	const char *ip = it_ip_path();
	char        out[512];
	int         rv;

	if (ip == NULL) {
		snprintf(why, len, "no ip binary (Debian package iproute2)");
		return 0;
	}
	rv = it_sh_out(
	    out, sizeof(out), "%s netns add itf-probe-%d", ip, (int) getpid());
	if (rv != 0) {
		size_t n = strlen(out);
		while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r')) {
			out[--n] = '\0';
		}
		snprintf(
		    why, len, "`ip netns add` failed (exit %d): %s", rv, out);
		return 0;
	}
	it_sh("%s netns del itf-probe-%d", ip, (int) getpid());
	return 1;
}
