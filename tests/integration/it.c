/* it.c - integration test harness: processes, ports, HTTP, PostgreSQL, Redis.
 */
#include "it.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <postgresql/libpq-fe.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* ---- environment ------------------------------------------------------ */

const char *
it_env(const char *name)
{
	const char *v = getenv(name);
	if (v == NULL || *v == '\0') {
		fprintf(stderr,
		    "it: %s is not set; run this binary through "
		    "tests/run-integration.sh (make test-integration)\n",
		    name);
		return NULL;
	}
	return v;
}

const char *
it_tmpdir(void)
{
	static char dir[512];
	const char *v;

	if (dir[0] != '\0') {
		return dir;
	}
	if ((v = getenv("IT_TMPDIR")) != NULL && *v != '\0') {
		snprintf(dir, sizeof(dir), "%s", v);
		return dir;
	}
	snprintf(dir, sizeof(dir), "/tmp/it.XXXXXX");
	if (mkdtemp(dir) == NULL) {
		snprintf(dir, sizeof(dir), "/tmp");
	}
	return dir;
}

int64_t
it_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
it_sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long) (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) { }
}

/* ---- processes --------------------------------------------------------- */

/* Builds the child's environment: environ with env's entries replacing
 * variables of the same name, then the new ones. The caller frees the
 * array (not the strings, which it borrows). */
static char **
merge_env(const char *const env[])
{
	size_t n = 0, extra = 0, k = 0;
	char **out;

	while (environ[n] != NULL) {
		n++;
	}
	while (env != NULL && env[extra] != NULL) {
		extra++;
	}
	if ((out = calloc(n + extra + 1, sizeof(*out))) == NULL) {
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		const char *eq = strchr(environ[i], '=');
		size_t      klen =
                    eq ? (size_t) (eq - environ[i]) : strlen(environ[i]);
		int replaced = 0;
		for (size_t j = 0; j < extra; j++) {
			if (strncmp(env[j], environ[i], klen) == 0 &&
			    env[j][klen] == '=') {
				replaced = 1;
				break;
			}
		}
		if (!replaced) {
			out[k++] = environ[i];
		}
	}
	for (size_t j = 0; j < extra; j++) {
		out[k++] = (char *) env[j];
	}
	out[k] = NULL;
	return out;
}

int
it_proc_spawn(
    it_proc *p, const char *name, char *const argv[], const char *const env[])
{
	char **envp;
	pid_t  parent = getpid();
	pid_t  pid;
	int    fd;

	memset(p, 0, sizeof(*p));
	snprintf(p->name, sizeof(p->name), "%s", name);
	snprintf(p->log, sizeof(p->log), "%s/%s.log", it_tmpdir(), name);
	if ((envp = merge_env(env)) == NULL) {
		return -1;
	}
	fd = open(p->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, "it: open %s: %s\n", p->log, strerror(errno));
		free(envp);
		return -1;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "it: fork: %s\n", strerror(errno));
		close(fd);
		free(envp);
		return -1;
	}
	if (pid == 0) {
		/* The child dies with the test binary, whatever kills it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent) {
			_exit(127);
		}
		signal(SIGPIPE, SIG_DFL);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		int nul = open("/dev/null", O_RDONLY);
		if (nul >= 0) {
			dup2(nul, STDIN_FILENO);
		}
		execve(argv[0], argv, envp);
		dprintf(STDERR_FILENO, "it: exec %s: %s\n", argv[0],
		    strerror(errno));
		_exit(127);
	}
	close(fd);
	free(envp);
	p->pid = pid;
	return 0;
}

int
it_proc_alive(it_proc *p)
{
	pid_t r;

	if (p->pid <= 0) {
		return 0;
	}
	r = waitpid(p->pid, &p->status, WNOHANG);
	if (r == p->pid || (r < 0 && errno == ECHILD)) {
		p->pid = 0;
		return 0;
	}
	return 1;
}

/* Reaps p within timeout_ms. Returns 0 when it is gone. */
static int
reap(it_proc *p, int timeout_ms)
{
	int64_t end = it_now_ms() + timeout_ms;

	for (;;) {
		if (!it_proc_alive(p)) {
			return 0;
		}
		if (it_now_ms() >= end) {
			return -1;
		}
		it_sleep_ms(10);
	}
}

int
it_proc_stop(it_proc *p, int sig, int timeout_ms)
{
	if (p->pid <= 0) {
		return 0;
	}
	kill(p->pid, sig);
	if (reap(p, timeout_ms) == 0) {
		return 0;
	}
	fprintf(stderr,
	    "it: %s (pid %d) still runs %d ms after signal %d; "
	    "sending SIGKILL\n",
	    p->name, (int) p->pid, timeout_ms, sig);
	kill(p->pid, SIGKILL);
	return reap(p, 5000);
}

int
it_proc_sanitizer_reports(const it_proc *p)
{
	char  line[1024];
	FILE *f;
	int   n = 0;

	if (p->log[0] == '\0' || (f = fopen(p->log, "r")) == NULL) {
		return 0;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strstr(line, "ERROR: AddressSanitizer") ||
		    strstr(line, "ERROR: LeakSanitizer") ||
		    strstr(line, "runtime error:")) {
			fprintf(stderr, "it: %s: %s", p->log, line);
			n++;
		}
	}
	fclose(f);
	return n;
}

void
it_proc_dump_log(const it_proc *p, int lines)
{
	char   buf[16384];
	FILE  *f;
	size_t n;
	long   size;
	int    seen = 0;
	char  *start;

	if ((f = fopen(p->log, "r")) == NULL) {
		return;
	}
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	if (size > (long) sizeof(buf) - 1) {
		fseek(f, size - (long) sizeof(buf) + 1, SEEK_SET);
	} else {
		fseek(f, 0, SEEK_SET);
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	start = buf + n;
	while (start > buf) {
		if (start[-1] == '\n' && start != buf + n && ++seen > lines) {
			break;
		}
		start--;
	}
	fprintf(stderr, "---- last lines of %s ----\n%s---- end of %s ----\n",
	    p->log, start, p->name);
}

/* ---- ports ------------------------------------------------------------- */

int
it_free_port(void)
{
	static int used[256];
	static int nused;

	for (int attempt = 0; attempt < 50; attempt++) {
		struct sockaddr_in sa = {0};
		socklen_t          len = sizeof(sa);
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int port, dup = 0;

		if (fd < 0) {
			return -1;
		}
		sa.sin_family = AF_INET;
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) != 0 ||
		    getsockname(fd, (struct sockaddr *) &sa, &len) != 0) {
			close(fd);
			return -1;
		}
		close(fd);
		port = ntohs(sa.sin_port);
		for (int i = 0; i < nused; i++) {
			dup |= used[i] == port;
		}
		if (dup) {
			continue;
		}
		if (nused < (int) (sizeof(used) / sizeof(used[0]))) {
			used[nused++] = port;
		}
		return port;
	}
	return -1;
}

/* Connects to 127.0.0.1:port within timeout_ms. Returns the socket
 * (blocking mode restored) or -1. */
static int
connect_to(int port, int timeout_ms)
{
	struct sockaddr_in sa = {0};
	struct pollfd      pfd;
	int                fd, err = 0, fl;
	socklen_t          elen = sizeof(err);

	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
		return -1;
	}
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t) port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) != 0) {
		if (errno != EINPROGRESS) {
			close(fd);
			return -1;
		}
		pfd.fd = fd;
		pfd.events = POLLOUT;
		if (poll(&pfd, 1, timeout_ms) != 1 ||
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 ||
		    err != 0) {
			close(fd);
			return -1;
		}
	}
	fcntl(fd, F_SETFL, fl);
	return fd;
}

int
it_wait_port(int port, int timeout_ms)
{
	int64_t end = it_now_ms() + timeout_ms;

	for (;;) {
		int fd = connect_to(port, 200);
		if (fd >= 0) {
			close(fd);
			return 0;
		}
		if (it_now_ms() >= end) {
			return -1;
		}
		it_sleep_ms(20);
	}
}

/* ---- the system under test -------------------------------------------- */

/* Returns 1 when list (NULL-terminated "NAME=value" strings, may be NULL)
 * sets the variable in kv ("NAME=..."). */
static int
env_has(const char *const *list, const char *kv)
{
	size_t klen = strcspn(kv, "=");
	for (int i = 0; list != NULL && list[i] != NULL; i++) {
		if (strncmp(list[i], kv, klen) == 0 && list[i][klen] == '=') {
			return 1;
		}
	}
	return 0;
}

/* Appends the caller's extra variables to env[*n..], then each default
 * that they do not set, and the final NULL. env holds 32 entries. */
static void
env_finish(const char **env, int *n, const char *const *extra,
    const char *const *defaults)
{
	for (int j = 0; extra && extra[j] && *n < 31; j++) {
		env[(*n)++] = extra[j];
	}
	for (int j = 0; defaults[j] && *n < 31; j++) {
		if (!env_has(extra, defaults[j])) {
			env[(*n)++] = defaults[j];
		}
	}
	env[*n] = NULL;
}

/* Starts replica i of s on s->rep_port[i]. */
static int
spawn_replica(it_stack *s, int i)
{
	char  bin[512], listen[64], name[64], db[512], redis[160], lname[64];
	char *argv[2];
	const char *ibin = it_env("IT_BIN"),
	           *dburl = it_env("IT_DATABASE_URL");
	const char *env[32];
	int         n = 0;

	if (ibin == NULL || dburl == NULL) {
		return -1;
	}
	snprintf(bin, sizeof(bin), "%s/product-service", ibin);
	snprintf(listen, sizeof(listen), "PRODUCT_LISTEN=tcp://127.0.0.1:%d",
	    s->rep_port[i]);
	snprintf(name, sizeof(name), "PRODUCT_NAME=it-replica-%d", i + 1);
	snprintf(db, sizeof(db), "DATABASE_URL=%s", dburl);
	snprintf(redis, sizeof(redis), "REDIS_URL=%s", s->redis_url);
	snprintf(lname, sizeof(lname), "replica-%d-%d", i + 1, s->rep_port[i]);
	static const char *const defaults[] = {"PRODUCT_THREADS=2",
	    "PRODUCT_DB_CONNS=2", "PRODUCT_DRAIN_DELAY_S=0",
	    "PRODUCT_ADMIN_LISTEN=127.0.0.1:0", NULL};
	env[n++] = listen;
	env[n++] = name;
	env[n++] = db;
	env[n++] = redis;
	env_finish(env, &n, s->extra_env, defaults);
	argv[0] = bin;
	argv[1] = NULL;
	return it_proc_spawn(&s->rep[i], lname, argv, env);
}

/* Waits for replica i's port; prints its log on failure. */
static int
wait_replica(it_stack *s, int i)
{
	if (it_wait_port(s->rep_port[i], 10000) != 0) {
		fprintf(stderr,
		    "it: replica %d did not listen on %d in 10 s\n", i + 1,
		    s->rep_port[i]);
		it_proc_dump_log(&s->rep[i], 30);
		return -1;
	}
	return 0;
}

int
it_stack_start_replica(it_stack *s, int i)
{
	if (spawn_replica(s, i) != 0) {
		return -1;
	}
	return wait_replica(s, i);
}

int
it_gateway_start(it_proc *gw, int *port, const char *upstreams,
    const char *const *extra_env)
{
	char  bin[512], listen[64], ups[IT_MAX_REPLICAS * 40 + 32], lname[64];
	char  keys[700];
	char *argv[2];
	const char *env[32];
	const char *ibin, *kf;
	int         n = 0;
	int64_t     end;

	memset(gw, 0, sizeof(*gw));
	if ((ibin = it_env("IT_BIN")) == NULL ||
	    (*port = it_free_port()) < 0) {
		return -1;
	}
	snprintf(bin, sizeof(bin), "%s/gateway", ibin);
	snprintf(listen, sizeof(listen), "GATEWAY_LISTEN=127.0.0.1:%d", *port);
	snprintf(ups, sizeof(ups), "GATEWAY_UPSTREAMS=%s", upstreams);
	snprintf(lname, sizeof(lname), "gateway-%d", *port);
	/* No drain delay (tests stop gateways often), and an admin port of
	 * its own so gateways never share one through SO_REUSEPORT. */
	/* And the suite's API key, so that writes need only the header. */
	const char *defaults[] = {"GATEWAY_THREADS=2",
	    "GATEWAY_DRAIN_DELAY_S=0", "GATEWAY_ADMIN_LISTEN=127.0.0.1:0",
	    keys, NULL};
	if ((kf = it_api_keys_file()) == NULL) {
		return -1;
	}
	snprintf(keys, sizeof(keys), "GATEWAY_API_KEYS_FILE=%s", kf);
	env[n++] = listen;
	env[n++] = ups;
	env_finish(env, &n, extra_env, defaults);
	argv[0] = bin;
	argv[1] = NULL;
	if (it_proc_spawn(gw, lname, argv, env) != 0) {
		return -1;
	}
	if (it_wait_port(*port, 10000) != 0) {
		fprintf(stderr, "it: gateway did not listen on %d in 10 s\n",
		    *port);
		goto fail;
	}
	/* The gateway dials its upstreams in the background: wait until a
	 * replica answers a ping through it. */
	end = it_now_ms() + 10000;
	for (;;) {
		it_http_resp r;
		int          st = -1;
		if (it_http(&r, *port, "GET", "/readyz", NULL, NULL, 0,
		        2000) == 0) {
			st = r.status;
			it_http_resp_free(&r);
		}
		if (st == 200) {
			break;
		}
		if (it_now_ms() >= end) {
			fprintf(stderr,
			    "it: /readyz not 200 in 10 s (last %d)\n", st);
			goto fail;
		}
		it_sleep_ms(50);
	}
	return 0;

fail:
	it_proc_dump_log(gw, 30);
	it_proc_stop(gw, SIGTERM, 5000);
	return -1;
}

int
it_stack_start(
    it_stack *s, int nrep, const char *redis_url, const char *const *extra_env)
{
	size_t off = 0;

	memset(s, 0, sizeof(*s));
	if (nrep < 1 || nrep > IT_MAX_REPLICAS) {
		return -1;
	}
	if (it_env("IT_BIN") == NULL) {
		return -1;
	}
	if (redis_url == NULL &&
	    (redis_url = it_env("IT_REDIS_URL")) == NULL) {
		return -1;
	}
	s->nrep = nrep;
	s->extra_env = extra_env;
	snprintf(s->redis_url, sizeof(s->redis_url), "%s", redis_url);
	for (int i = 0; i < nrep; i++) {
		if ((s->rep_port[i] = it_free_port()) < 0) {
			return -1;
		}
		off += (size_t) snprintf(s->upstreams + off,
		    sizeof(s->upstreams) - off, "%stcp://127.0.0.1:%d",
		    i ? "," : "", s->rep_port[i]);
		if (spawn_replica(s, i) != 0) {
			goto fail;
		}
	}
	for (int i = 0; i < nrep; i++) {
		if (wait_replica(s, i) != 0) {
			goto fail;
		}
	}
	if (it_gateway_start(&s->gw, &s->gw_port, s->upstreams, extra_env) !=
	    0) {
		goto fail;
	}
	return 0;

fail:
	for (int i = 0; i < nrep; i++) {
		if (s->rep[i].log[0] != '\0') {
			it_proc_dump_log(&s->rep[i], 30);
		}
	}
	it_stack_stop(s);
	return -1;
}

static int stack_failures;

int
it_stack_failures(void)
{
	return stack_failures;
}

int
it_stack_stop(it_stack *s)
{
	int reports = 0;

	it_proc_stop(&s->gw, SIGTERM, 5000);
	reports += it_proc_sanitizer_reports(&s->gw);
	for (int i = 0; i < s->nrep; i++) {
		it_proc_stop(&s->rep[i], SIGTERM, 5000);
		reports += it_proc_sanitizer_reports(&s->rep[i]);
	}
	if (reports) {
		fprintf(stderr,
		    "it: %d sanitizer report(s) in the logs above\n", reports);
		stack_failures++;
		return -1;
	}
	return 0;
}

/* ---- HTTP/1.1 client --------------------------------------------------- */

/* A growable byte buffer. */
typedef struct buf {
	char  *p;
	size_t len, cap;
} buf;

static int
buf_add(buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n + 1) {
			cap *= 2;
		}
		char *np = realloc(b->p, cap);
		if (np == NULL) {
			return -1;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

static int buf_printf(buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
buf_printf(buf *b, const char *fmt, ...)
{
	char    tmp[4096];
	va_list ap;
	int     n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || n >= (int) sizeof(tmp)) {
		return -1;
	}
	return buf_add(b, tmp, (size_t) n);
}

/* Writes all of s to fd before the deadline. */
static int
send_all(int fd, const char *s, size_t n, int64_t deadline)
{
	while (n > 0) {
		struct pollfd pfd = {fd, POLLOUT, 0};
		int           left = (int) (deadline - it_now_ms());
		if (left <= 0 || poll(&pfd, 1, left) != 1) {
			return -1;
		}
		ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				continue;
			}
			return -1;
		}
		s += w;
		n -= (size_t) w;
	}
	return 0;
}

/* Reads more bytes into b before the deadline. Returns the count, 0 at
 * end of stream, -1 on error or timeout. */
static ssize_t
recv_more(int fd, buf *b, int64_t deadline)
{
	char          tmp[16384];
	struct pollfd pfd = {fd, POLLIN, 0};
	int           left = (int) (deadline - it_now_ms());
	ssize_t       n;

	if (left <= 0 || poll(&pfd, 1, left) != 1) {
		return -1;
	}
	do {
		n = recv(fd, tmp, sizeof(tmp), 0);
	} while (n < 0 && errno == EINTR);
	if (n > 0 &&
	    (b->len + (size_t) n > IT_MAX_BODY ||
	        buf_add(b, tmp, (size_t) n) != 0)) {
		return -1;
	}
	return n;
}

/* Makes sure b holds at least want bytes after off. */
static int
need(int fd, buf *b, size_t off, size_t want, int64_t deadline)
{
	while (b->len < off + want) {
		if (recv_more(fd, b, deadline) <= 0) {
			return -1;
		}
	}
	return 0;
}

/* Decodes a chunked body that starts at b->p[off], reading more as needed.
 * Appends the payload to out. */
static int
read_chunked(int fd, buf *b, size_t off, buf *out, int64_t deadline)
{
	for (;;) {
		char              *eol;
		unsigned long long size;
		char              *end;

		while ((eol = memmem(b->p + off, b->len - off, "\r\n", 2)) ==
		    NULL) {
			if (recv_more(fd, b, deadline) <= 0) {
				return -1;
			}
		}
		errno = 0;
		size = strtoull(b->p + off, &end, 16);
		if (end == b->p + off || errno != 0 || size > IT_MAX_BODY) {
			return -1;
		}
		off = (size_t) (eol - b->p) + 2;
		if (size == 0) {
			/* Trailers end with an empty line; wait for it. */
			for (;;) {
				while ((eol = memmem(b->p + off, b->len - off,
				            "\r\n", 2)) == NULL) {
					if (recv_more(fd, b, deadline) <= 0) {
						return -1;
					}
				}
				if (eol == b->p + off) {
					return 0;
				}
				off = (size_t) (eol - b->p) + 2;
			}
		}
		if (need(fd, b, off, (size_t) size + 2, deadline) != 0 ||
		    buf_add(out, b->p + off, (size_t) size) != 0) {
			return -1;
		}
		off += (size_t) size + 2;
	}
}

/* Parses the status line and headers in b->p[0..hlen) into r. */
static int
parse_head(it_http_resp *r, char *head)
{
	char *save = NULL, *line;

	line = strtok_r(head, "\r\n", &save);
	if (line == NULL || strncmp(line, "HTTP/1.", 7) != 0 ||
	    strlen(line) < 12) {
		return -1;
	}
	r->status = atoi(line + 9);
	if (r->status < 100 || r->status > 599) {
		return -1;
	}
	while ((line = strtok_r(NULL, "\r\n", &save)) != NULL) {
		char  *colon = strchr(line, ':'), *v;
		size_t vl;
		if (colon == NULL || r->nheaders >= IT_MAX_HEADERS) {
			return -1;
		}
		*colon = '\0';
		v = colon + 1;
		while (*v == ' ' || *v == '\t') {
			v++;
		}
		vl = strlen(v);
		while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) {
			v[--vl] = '\0';
		}
		r->hname[r->nheaders] = strdup(line);
		r->hval[r->nheaders] = strdup(v);
		if (!r->hname[r->nheaders] || !r->hval[r->nheaders]) {
			return -1;
		}
		r->nheaders++;
	}
	return 0;
}

int
it_http_connect(int port, int timeout_ms)
{
	return connect_to(port, timeout_ms);
}

int
it_http(it_http_resp *r, int port, const char *method, const char *path,
    const char *const headers[], const char *body, size_t body_len,
    int timeout_ms)
{
	int fd = connect_to(port, timeout_ms);

	if (fd < 0) {
		memset(r, 0, sizeof(*r));
		return -1;
	}
	return it_http_on(
	    r, fd, port, method, path, headers, body, body_len, timeout_ms);
}

int
it_http_on(it_http_resp *r, int fd, int port, const char *method,
    const char *path, const char *const headers[], const char *body,
    size_t body_len, int timeout_ms)
{
	int64_t     deadline = it_now_ms() + timeout_ms;
	buf         req = {0}, in = {0}, out = {0};
	char       *hend, *head = NULL;
	const char *te, *cl;
	size_t      hlen;
	int         rv = -1, nobody;
	/* Writes carry the suite's key unless the caller says otherwise. */
	int auth = strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
	    strcmp(method, "PATCH") == 0 || strcmp(method, "DELETE") == 0;

	memset(r, 0, sizeof(*r));
	if (buf_printf(&req,
	        "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
	        "Connection: close\r\n",
	        method, path, port) != 0) {
		goto out;
	}
	for (int i = 0; headers != NULL && headers[i] != NULL; i++) {
		if (strncasecmp(headers[i], "Authorization:", 14) == 0 ||
		    strcmp(headers[i], IT_NO_AUTH) == 0) {
			auth = 0;
		}
		if (strcmp(headers[i], IT_NO_AUTH) != 0 &&
		    buf_printf(&req, "%s\r\n", headers[i]) != 0) {
			goto out;
		}
	}
	if (auth &&
	    buf_printf(&req, "Authorization: Bearer %s\r\n", it_api_key()) !=
	        0) {
		goto out;
	}
	if (body != NULL &&
	    buf_printf(&req, "Content-Length: %zu\r\n", body_len) != 0) {
		goto out;
	}
	if (buf_add(&req, "\r\n", 2) != 0 ||
	    (body != NULL && buf_add(&req, body, body_len) != 0) ||
	    send_all(fd, req.p, req.len, deadline) != 0) {
		goto out;
	}

	while ((hend = in.p ? memmem(in.p, in.len, "\r\n\r\n", 4) : NULL) ==
	    NULL) {
		if (recv_more(fd, &in, deadline) <= 0) {
			goto out;
		}
	}
	hlen = (size_t) (hend - in.p) + 4;
	if ((head = strndup(in.p, hlen - 4)) == NULL ||
	    parse_head(r, head) != 0) {
		goto out;
	}

	nobody = strcasecmp(method, "HEAD") == 0 || r->status < 200 ||
	    r->status == 204 || r->status == 304;
	te = it_http_header(r, "Transfer-Encoding");
	cl = it_http_header(r, "Content-Length");
	if (nobody) {
		/* nothing to read */
	} else if (te != NULL && strcasestr(te, "chunked") != NULL) {
		if (read_chunked(fd, &in, hlen, &out, deadline) != 0) {
			goto out;
		}
	} else if (cl != NULL) {
		char              *end;
		unsigned long long n = strtoull(cl, &end, 10);
		if (end == cl || *end != '\0' || n > IT_MAX_BODY ||
		    need(fd, &in, hlen, (size_t) n, deadline) != 0 ||
		    buf_add(&out, in.p + hlen, (size_t) n) != 0) {
			goto out;
		}
	} else {
		ssize_t got;
		while ((got = recv_more(fd, &in, deadline)) > 0) { }
		if (got < 0 ||
		    buf_add(&out, in.p + hlen, in.len - hlen) != 0) {
			goto out;
		}
	}
	if (out.p == NULL && buf_add(&out, "", 0) != 0) {
		goto out;
	}
	r->body = out.p;
	r->body_len = out.len;
	out.p = NULL;
	rv = 0;

out:
	if (fd >= 0) {
		close(fd);
	}
	free(req.p);
	free(in.p);
	free(out.p);
	free(head);
	if (rv != 0) {
		it_http_resp_free(r);
	}
	return rv;
}

int
it_http_get(
    it_http_resp *r, int port, const char *path, const char *const headers[])
{
	return it_http(
	    r, port, "GET", path, headers, NULL, 0, IT_HTTP_TIMEOUT_MS);
}

const char *
it_http_header(const it_http_resp *r, const char *name)
{
	for (int i = 0; i < r->nheaders; i++) {
		if (strcasecmp(r->hname[i], name) == 0) {
			return r->hval[i];
		}
	}
	return NULL;
}

void
it_http_resp_free(it_http_resp *r)
{
	for (int i = 0; i < r->nheaders; i++) {
		free(r->hname[i]);
		free(r->hval[i]);
	}
	free(r->body);
	memset(r, 0, sizeof(*r));
}

/* ---- PostgreSQL -------------------------------------------------------- */

/* Opens a connection to IT_DATABASE_URL; prints why not. */
static PGconn *
pg_open(void)
{
	const char *url = it_env("IT_DATABASE_URL");
	PGconn     *c;

	if (url == NULL) {
		return NULL;
	}
	c = PQconnectdb(url);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "it: connect %s: %s", url, PQerrorMessage(c));
		PQfinish(c);
		return NULL;
	}
	PQclear(PQexec(c, "SET client_min_messages = warning"));
	return c;
}

int
it_pg_exec(const char *sql)
{
	PGconn   *c = pg_open();
	PGresult *res;
	int       rv = -1;

	if (c == NULL) {
		return -1;
	}
	res = PQexec(c, sql);
	if (PQresultStatus(res) == PGRES_COMMAND_OK ||
	    PQresultStatus(res) == PGRES_TUPLES_OK) {
		rv = 0;
	} else {
		fprintf(stderr, "it: SQL failed: %s\n  %s", sql,
		    PQerrorMessage(c));
	}
	PQclear(res);
	PQfinish(c);
	return rv;
}

char *
it_pg_scalar(const char *sql, int *ok)
{
	PGconn   *c = pg_open();
	PGresult *res;
	char     *v = NULL;
	int       good = 0;

	if (c != NULL) {
		res = PQexec(c, sql);
		if (PQresultStatus(res) == PGRES_TUPLES_OK) {
			good = 1;
			if (PQntuples(res) > 0 && PQnfields(res) > 0 &&
			    !PQgetisnull(res, 0, 0)) {
				v = strdup(PQgetvalue(res, 0, 0));
			}
		} else {
			fprintf(stderr, "it: SQL failed: %s\n  %s", sql,
			    PQerrorMessage(c));
		}
		PQclear(res);
		PQfinish(c);
	}
	if (ok != NULL) {
		*ok = good;
	}
	return v;
}

long long
it_pg_scalar_ll(const char *sql, long long def)
{
	int       ok;
	char     *v = it_pg_scalar(sql, &ok);
	long long n = def;

	if (v != NULL) {
		n = strtoll(v, NULL, 10);
		free(v);
	}
	return n;
}

int
it_seed_products(int n)
{
	char sql[2048];

	snprintf(sql, sizeof(sql),
	    "TRUNCATE products RESTART IDENTITY;"
	    "INSERT INTO products (sku, name, description, price_cents,"
	    " currency, stock, version, created_at, updated_at)"
	    " SELECT 'IT-' || lpad(g::text, 4, '0'), 'Product ' || g,"
	    " 'Description of product ' || g, 100 * g + 99, 'USD', g, 1,"
	    " '2026-01-02 03:04:05+00', '2026-01-02 03:04:06+00'"
	    " FROM generate_series(1, %d) AS g;"
	    "UPDATE products SET description = E'Say \"hi\" \\\\ tab\\there"
	    "\\nline 2 \u00fcml\u00e4ut \u20ac' WHERE id = 1;"
	    "UPDATE products SET version = 7 WHERE id = 3;",
	    n);
	return it_pg_exec(sql);
}

/* Runs the shell command in env var name. */
static int
run_env_cmd(const char *name)
{
	const char *cmd = it_env(name);
	int         st;

	if (cmd == NULL) {
		return -1;
	}
	fflush(NULL);
	st = system(cmd);
	if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "it: %s failed: %s\n", name, cmd);
		return -1;
	}
	return 0;
}

int
it_pg_stop(void)
{
	return run_env_cmd("IT_PG_STOP");
}

int
it_pg_start(void)
{
	return run_env_cmd("IT_PG_START");
}

/* ---- Redis ------------------------------------------------------------- */

static redisContext *
redis_open(int port)
{
	struct timeval tv = {2, 0};
	redisContext  *c = redisConnectWithTimeout("127.0.0.1", port, tv);

	if (c == NULL) {
		return NULL;
	}
	if (c->err) {
		redisFree(c);
		return NULL;
	}
	redisSetTimeout(c, tv);
	return c;
}

char *
it_redis_get(int port, const char *key, size_t *len, int *found)
{
	redisContext *c = redis_open(port);
	redisReply   *rep;
	char         *v = NULL;

	*found = -1;
	*len = 0;
	if (c == NULL) {
		return NULL;
	}
	rep = redisCommand(c, "GET %s", key);
	if (rep != NULL && rep->type == REDIS_REPLY_STRING) {
		if ((v = malloc(rep->len + 1)) != NULL) {
			memcpy(v, rep->str, rep->len);
			v[rep->len] = '\0';
			*len = rep->len;
			*found = 1;
		}
	} else if (rep != NULL && rep->type == REDIS_REPLY_NIL) {
		*found = 0;
	}
	if (rep != NULL) {
		freeReplyObject(rep);
	}
	redisFree(c);
	return v;
}

/* Runs a command with no interesting reply. */
static int
redis_simple(int port, const char *cmd, const char *arg)
{
	redisContext *c = redis_open(port);
	redisReply   *rep;
	int           rv = -1;

	if (c == NULL) {
		return -1;
	}
	rep = arg ? redisCommand(c, "%s %s", cmd, arg)
	          : redisCommand(c, "%s", cmd);
	if (rep != NULL && rep->type != REDIS_REPLY_ERROR) {
		rv = 0;
	}
	if (rep != NULL) {
		freeReplyObject(rep);
	}
	redisFree(c);
	return rv;
}

int
it_redis_del(int port, const char *key)
{
	return redis_simple(port, "DEL", key);
}

int
it_redis_flushall(int port)
{
	return redis_simple(port, "FLUSHALL", NULL);
}

long long
it_redis_count_keys(int port, const char *pattern)
{
	redisContext *c = redis_open(port);
	redisReply   *rep;
	long long     n = -1;

	if (c == NULL) {
		return -1;
	}
	rep = redisCommand(c, "KEYS %s", pattern);
	if (rep != NULL && rep->type == REDIS_REPLY_ARRAY) {
		n = (long long) rep->elements;
	}
	if (rep != NULL) {
		freeReplyObject(rep);
	}
	redisFree(c);
	return n;
}

int
it_redis_ping(int port)
{
	return redis_simple(port, "PING", NULL) == 0;
}

int
it_redis_server_start(it_proc *p, int port)
{
	char    dir[600], ports[16], name[64];
	char   *argv[] = {"/usr/bin/redis-server", "--port", ports, "--bind",
	      "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize",
	      "no", "--dir", dir, NULL};
	int64_t end;

	if (access(argv[0], X_OK) != 0) {
		argv[0] = "/usr/local/bin/redis-server";
	}
	snprintf(ports, sizeof(ports), "%d", port);
	snprintf(dir, sizeof(dir), "%s/redis-%d", it_tmpdir(), port);
	snprintf(name, sizeof(name), "redis-%d", port);
	mkdir(dir, 0755);
	if (it_proc_spawn(p, name, argv, NULL) != 0) {
		return -1;
	}
	end = it_now_ms() + 10000;
	while (!it_redis_ping(port)) {
		if (!it_proc_alive(p) || it_now_ms() >= end) {
			fprintf(stderr,
			    "it: redis-server on %d did not start\n", port);
			it_proc_dump_log(p, 10);
			it_proc_stop(p, SIGKILL, 1000);
			return -1;
		}
		it_sleep_ms(20);
	}
	return 0;
}

int
it_redis_port(void)
{
	const char *v = it_env("IT_REDIS_PORT");
	return v ? atoi(v) : -1;
}
