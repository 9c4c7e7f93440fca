/* test_tls.c - encrypted and authenticated internal traffic: TLS with
 * certificates both ways on the NNG hop, a Redis ACL user, PostgreSQL over
 * TLS with the server's certificate verified.
 *
 * Group "nng": throw-away CAs and certificates made with the openssl CLI
 * in the scratch folder: a CA, a second "rogue" CA, a replica certificate
 * (DNS:localhost, IP:127.0.0.1) and a gateway certificate from each. A TLS
 * stack serves reads and a write; a gateway whose certificate is from the
 * rogue CA, a TLS client with no certificate and a plaintext gateway get
 * no answer (the replica logs the refusal), and so does a gateway facing a
 * replica whose certificate is from the rogue CA or does not carry the
 * expected name; half a TLS configuration stops either binary at start.
 *
 * Group "redis": a private redis-server whose default user is off and
 * whose only user is catalog/secret: with REDIS_URL naming that user the
 * cache works (MISS then HIT); with a wrong password reads still succeed
 * (BYPASS) and the replica logs the refused AUTH.
 *
 * Group "pg": the suite's PostgreSQL gets ssl=on (ALTER SYSTEM, reload)
 * with a certificate from the CA; a replica with sslmode=verify-full
 * serves and pg_stat_ssl shows its connections encrypted; once its root
 * certificate is the rogue CA its reconnections fail verification: not
 * ready, logged, not crashed; and it refuses to start with it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/tls/tls.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "it.h"
#include "it_check.h"
#include "it_fault.h"

#define NPRODUCTS 20
#define WAIT_MS   15000 /* for a log line or a state; never a timing claim */
/* cm_tls_watch()'s words for a refused handshake (not a mere probe) */
#define REFUSED "TLS handshake or certificate refused"

static char dir[512];      /* certificates */
static int  have_certs;    /* 0: openssl missing, the groups skip */
static int  redis_shared;  /* the suite's Redis port */
static int  proc_failures; /* sanitizer reports in our own children */

/* ---- helpers ------------------------------------------------------------ */

static const char *
path(const char *name)
{
	static char buf[8][600];
	static int  i;
	char       *p = buf[i++ % 8];
	snprintf(p, 600, "%s/%s", dir, name);
	return p;
}

/* Runs a shell command quietly; returns its exit status, -1 when it could
 * not run. */
static int
sh(const char *fmt, ...)
{
	char    cmd[4096];
	va_list ap;
	int     st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	st = system(cmd);
	return st == -1 ? -1 : WEXITSTATUS(st);
}

/* A self-signed CA, then certificates signed by a CA, all P-256. */
static int
make_ca(const char *name)
{
	return sh("cd '%s' && openssl req -x509 -newkey ec -pkeyopt "
	          "ec_paramgen_curve:P-256 -nodes -keyout %s.key -out %s.pem "
	          "-days 2 -subj /CN=%s >>openssl.log 2>&1",
	    dir, name, name, name);
}

static int
make_cert(const char *name, const char *ca, const char *san)
{
	return sh(
	    "cd '%s' && openssl req -newkey ec -pkeyopt "
	    "ec_paramgen_curve:P-256 -nodes -keyout %s.key -out %s.csr "
	    "-subj /CN=%s >>openssl.log 2>&1 && printf "
	    "'subjectAltName=%s\\n' > %s.ext && openssl x509 -req -in "
	    "%s.csr -CA %s.pem -CAkey %s.key -CAcreateserial -out %s.pem "
	    "-days 2 -extfile %s.ext >>openssl.log 2>&1",
	    dir, name, name, name, san, name, name, ca, ca, name, name);
}

static int
make_certs(void)
{
	if (sh("command -v openssl >/dev/null") != 0) {
		fprintf(stderr,
		    "test_tls: SKIP: no openssl command to make "
		    "certificates\n");
		return 0;
	}
	snprintf(dir, sizeof(dir), "%s/tls", it_tmpdir());
	mkdir(dir, 0755);
	if (make_ca("ca") != 0 || make_ca("rogue") != 0 ||
	    make_cert("replica", "ca", "DNS:localhost,IP:127.0.0.1") != 0 ||
	    make_cert("gateway", "ca", "DNS:gateway") != 0 ||
	    make_cert("rogue-gateway", "rogue", "DNS:gateway") != 0 ||
	    make_cert(
	        "rogue-replica", "rogue", "DNS:localhost,IP:127.0.0.1") != 0 ||
	    make_cert("dns-replica", "ca", "DNS:product.test") != 0) {
		fprintf(stderr,
		    "test_tls: openssl failed, see %s/openssl.log\n", dir);
		return -1;
	}
	have_certs = 1;
	return 0;
}

/* Size of p's log now: later searches look only past it. */
static long
log_mark(const it_proc *p)
{
	struct stat st;
	return stat(p->log, &st) == 0 ? (long) st.st_size : 0;
}

/* Returns 1 when p's log holds every needle (NULL-terminated) in one line
 * written after offset from. */
static int
log_has(const it_proc *p, long from, const char *const needles[])
{
	FILE *f = fopen(p->log, "r");
	char  line[8192];
	int   found = 0;

	if (f == NULL) {
		return 0;
	}
	if (from > 0) {
		fseek(f, from, SEEK_SET);
	}
	while (!found && fgets(line, sizeof(line), f) != NULL) {
		found = 1;
		for (int i = 0; needles[i] != NULL; i++) {
			if (strstr(line, needles[i]) == NULL) {
				found = 0;
				break;
			}
		}
	}
	fclose(f);
	return found;
}

/* Waits up to WAIT_MS for a line with every needle; fails the test with
 * the log's tail when none comes. */
static void
expect_log(const it_proc *p, long from, const char *const needles[])
{
	int64_t end = it_now_ms() + WAIT_MS;

	while (!log_has(p, from, needles)) {
		if (it_now_ms() >= end) {
			fprintf(
			    stderr, "test_tls: no line in %s with:", p->log);
			for (int i = 0; needles[i] != NULL; i++) {
				fprintf(stderr, " \"%s\"", needles[i]);
			}
			fprintf(stderr, "\n");
			it_proc_dump_log(p, 20);
			fail();
		}
		it_sleep_ms(100);
	}
}

/* Waits for a child that should exit on its own; returns its exit code,
 * or -1 when it was killed by a signal or had to be killed. */
static int
wait_exit(it_proc *p, int ms)
{
	int64_t end = it_now_ms() + ms;

	while (it_proc_alive(p)) {
		if (it_now_ms() >= end) {
			it_proc_stop(p, SIGKILL, 2000);
			return -1;
		}
		it_sleep_ms(50);
	}
	return WIFEXITED(p->status) ? WEXITSTATUS(p->status) : -1;
}

static void
stop(it_proc *p)
{
	if (p->pid != 0 || p->log[0] != '\0') {
		it_proc_stop(p, SIGTERM, 5000);
		proc_failures += it_proc_sanitizer_reports(p);
	}
	memset(p, 0, sizeof(*p));
}

/* Starts a replica on port; tls_cert names the certificate/key pair in
 * dir ("replica", "rogue-replica"), NULL for plain tcp://. The CA that
 * checks gateways is always "ca". admin: PRODUCT_ADMIN_LISTEN port (0: any).
 */
static int
replica_start(it_proc *p, int port, const char *tls_cert, int admin,
    const char *redis_url)
{
	char bin[512], listen[96], name[64], db[600], redis[160], ca[700],
	    cert[700], key[700], adm[64], lname[64];
	char       *argv[] = {bin, NULL};
	const char *env[16];
	int         n = 0;

	snprintf(bin, sizeof(bin), "%s/product-service", it_env("IT_BIN"));
	snprintf(listen, sizeof(listen), "PRODUCT_LISTEN=%s://127.0.0.1:%d",
	    tls_cert != NULL ? "tls+tcp" : "tcp", port);
	snprintf(name, sizeof(name), "PRODUCT_NAME=tls-replica-%d", port);
	snprintf(db, sizeof(db), "DATABASE_URL=%s", it_env("IT_DATABASE_URL"));
	snprintf(redis, sizeof(redis), "REDIS_URL=%s",
	    redis_url != NULL ? redis_url : it_env("IT_REDIS_URL"));
	snprintf(adm, sizeof(adm), "PRODUCT_ADMIN_LISTEN=127.0.0.1:%d", admin);
	snprintf(lname, sizeof(lname), "tls-replica-%d", port);
	env[n++] = listen;
	env[n++] = name;
	env[n++] = db;
	env[n++] = redis;
	env[n++] = adm;
	env[n++] = "PRODUCT_THREADS=1";
	env[n++] = "PRODUCT_DRAIN_DELAY_S=0";
	if (tls_cert != NULL) {
		snprintf(ca, sizeof(ca), "PRODUCT_TLS_CA=%s", path("ca.pem"));
		snprintf(cert, sizeof(cert), "PRODUCT_TLS_CERT=%s/%s.pem", dir,
		    tls_cert);
		snprintf(key, sizeof(key), "PRODUCT_TLS_KEY=%s/%s.key", dir,
		    tls_cert);
		env[n++] = ca;
		env[n++] = cert;
		env[n++] = key;
	}
	env[n] = NULL;
	if (it_proc_spawn(p, lname, argv, env) != 0) {
		return -1;
	}
	if (it_wait_port(port, 10000) != 0) {
		fprintf(
		    stderr, "test_tls: replica did not listen on %d\n", port);
		it_proc_dump_log(p, 20);
		return -1;
	}
	return 0;
}

/* TLS settings of a gateway: cert NULL for none at all. */
typedef struct gw_tls {
	const char *cert; /* "gateway", "rogue-gateway" */
	const char *server_name;
} gw_tls;

/* Fills env (16 entries) for a gateway with t; returns the count. The
 * strings live in bufs. */
static int
gw_env(const char **env, char bufs[4][700], const gw_tls *t)
{
	int n = 0;

	if (t == NULL || t->cert == NULL) {
		env[n] = NULL;
		return n;
	}
	snprintf(bufs[0], 700, "GATEWAY_TLS_CA=%s", path("ca.pem"));
	snprintf(bufs[1], 700, "GATEWAY_TLS_CERT=%s/%s.pem", dir, t->cert);
	snprintf(bufs[2], 700, "GATEWAY_TLS_KEY=%s/%s.key", dir, t->cert);
	snprintf(bufs[3], 700, "GATEWAY_TLS_SERVER_NAME=%s",
	    t->server_name != NULL ? t->server_name : "localhost");
	for (int i = 0; i < 4; i++) {
		env[n++] = bufs[i];
	}
	env[n] = NULL;
	return n;
}

/* Starts a gateway in front of upstream without waiting for /readyz (it
 * will never be ready when the handshake fails). extra: one more
 * "NAME=value" or NULL. */
static int
gateway_spawn(it_proc *p, int *port, const char *upstream, const gw_tls *t,
    const char *extra)
{
	char        bin[512], listen[64], ups[256], lname[64], bufs[4][700];
	char       *argv[] = {bin, NULL};
	const char *env[16];
	int         n;

	*port = it_free_port();
	snprintf(bin, sizeof(bin), "%s/gateway", it_env("IT_BIN"));
	snprintf(listen, sizeof(listen), "GATEWAY_LISTEN=127.0.0.1:%d", *port);
	snprintf(ups, sizeof(ups), "GATEWAY_UPSTREAMS=%s", upstream);
	snprintf(lname, sizeof(lname), "tls-gateway-%d", *port);
	n = gw_env(env, bufs, t);
	env[n++] = listen;
	env[n++] = ups;
	env[n++] = "GATEWAY_THREADS=1";
	env[n++] = "GATEWAY_DRAIN_DELAY_S=0";
	env[n++] = "GATEWAY_ADMIN_LISTEN=127.0.0.1:0";
	if (extra != NULL) {
		env[n++] = extra;
	}
	env[n] = NULL;
	if (it_proc_spawn(p, lname, argv, env) != 0) {
		return -1;
	}
	return it_wait_port(*port, 10000);
}

/* A read through a gateway that cannot reach any replica: a problem
 * answer (503, or 502 when the try failed on a connection) before the
 * client's own timeout, which is longer than GATEWAY_TIMEOUT_MS. */
static void
expect_no_replica(int port)
{
	it_http_resp r;
	const char  *ct;

	it_must_get(&r, port, "/products/1", NULL);
	if (r.status != 503 && r.status != 502) {
		it_print_resp(&r);
		fail_msg("want 503 (or 502), got %d", r.status);
	}
	ct = it_http_header(&r, "Content-Type");
	assert_non_null(ct);
	assert_non_null(strstr(ct, "application/problem+json"));
	it_http_resp_free(&r);
}

static const char *
x_cache(const it_http_resp *r)
{
	const char *v = it_http_header(r, "X-Cache");
	return v != NULL ? v : "";
}

/* ---- group "nng" -------------------------------------------------------- */

static it_proc replica; /* the good TLS replica */
static int     replica_port;
static it_proc gateway; /* the good TLS gateway */
static int     gateway_port;
static char    tls_upstream[64];

static int
nng_setup(void **state)
{
	static char        bufs[4][700];
	static const char *env[16];
	gw_tls             t = {"gateway", "localhost"};

	(void) state;
	if (make_certs() != 0) {
		return -1;
	}
	if (!have_certs) {
		return 0;
	}
	if (it_seed_products(NPRODUCTS) != 0 ||
	    (replica_port = it_free_port()) < 0 ||
	    replica_start(&replica, replica_port, "replica", 0, NULL) != 0) {
		return -1;
	}
	snprintf(tls_upstream, sizeof(tls_upstream), "tls+tcp://127.0.0.1:%d",
	    replica_port);
	gw_env(env, bufs, &t);
	/* Waits until /readyz is 200: a ping went through TLS. */
	if (it_gateway_start(&gateway, &gateway_port, tls_upstream, env) !=
	    0) {
		it_proc_dump_log(&replica, 30);
		return -1;
	}
	return 0;
}

static int
nng_teardown(void **state)
{
	(void) state;
	stop(&gateway);
	stop(&replica);
	return 0;
}

static void
test_tls_stack_serves(void **state)
{
	it_http_resp r;
	const char  *key = getenv("IT_API_KEY");
	char         auth[300];
	const char  *hdrs[3] = {"Content-Type: application/json", NULL, NULL};
	const char  *body =
	    "{\"sku\":\"TLS-1\",\"name\":\"over TLS\",\"price_cents\":100}";

	(void) state;
	if (!have_certs) {
		skip();
	}
	assert_int_equal(it_redis_del(redis_shared, "product:1"), 0);
	it_must_get(&r, gateway_port, "/products/1", NULL);
	it_expect_status(&r, 200);
	assert_string_equal(x_cache(&r), "MISS");
	it_http_resp_free(&r);
	it_must_get(&r, gateway_port, "/products/1", NULL);
	it_expect_status(&r, 200);
	assert_string_equal(x_cache(&r), "HIT");
	it_http_resp_free(&r);
	/* Writes may need the API key of the gateway's auth. */
	if (key != NULL && key[0] != '\0') {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
		hdrs[1] = auth;
	}
	it_must_http(&r, gateway_port, "POST", "/products", hdrs, body);
	it_expect_status(&r, 201);
	it_http_resp_free(&r);
	assert_int_equal(
	    it_pg_scalar_ll(
	        "SELECT count(*) FROM products WHERE sku = 'TLS-1'", -1),
	    1);
}

/* A gateway whose certificate is from another CA: the replica refuses the
 * handshake and says so; the client gets a problem, not a hang. */
static void
test_tls_rogue_gateway_refused(void **state)
{
	it_proc     g = {0};
	int         port;
	long        mark = log_mark(&replica);
	gw_tls      t = {"rogue-gateway", "localhost"};
	const char *rep_line[] = {
	    "PS-TLS-HANDSHAKE", tls_upstream, REFUSED, NULL};
	const char *gw_line[] = {
	    "GW-TLS-HANDSHAKE", tls_upstream, REFUSED, NULL};

	(void) state;
	if (!have_certs) {
		skip();
	}
	assert_int_equal(gateway_spawn(&g, &port, tls_upstream, &t, NULL), 0);
	expect_no_replica(port);
	expect_log(&replica, mark, rep_line);
	expect_log(&g, 0, gw_line);
	stop(&g);
}

/* A TLS client with no certificate at all (NNG itself, as a gateway
 * without GATEWAY_TLS_CERT would be: the gateway refuses to start that
 * way), then a gateway speaking plaintext: neither gets an answer, and a
 * replica of its own logs each refusal. */
static void
test_tls_no_client_cert_refused(void **state)
{
	it_proc         rep = {0}, g = {0};
	int             port = it_free_port(), gport;
	char            url[64], plain[64];
	nng_socket      s;
	nng_dialer      d;
	nng_tls_config *cfg;
	long            mark;
	const char     *rep_line[] = {"PS-TLS-HANDSHAKE", url, REFUSED, NULL};

	(void) state;
	if (!have_certs) {
		skip();
	}
	assert_int_equal(replica_start(&rep, port, "replica", 0, NULL), 0);
	snprintf(url, sizeof(url), "tls+tcp://127.0.0.1:%d", port);
	snprintf(plain, sizeof(plain), "tcp://127.0.0.1:%d", port);
	assert_int_equal(nng_req0_open(&s), 0);
	assert_int_equal(nng_tls_config_alloc(&cfg, NNG_TLS_MODE_CLIENT), 0);
	assert_int_equal(nng_tls_config_ca_file(cfg, path("ca.pem")), 0);
	assert_int_equal(nng_tls_config_server_name(cfg, "localhost"), 0);
	assert_int_equal(
	    nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_REQUIRED), 0);
	assert_int_equal(nng_dialer_create(&d, s, url), 0);
	assert_int_equal(nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, cfg), 0);
	nng_tls_config_free(cfg); /* the dialer holds it */
	assert_int_equal(nng_dialer_start(d, NNG_FLAG_NONBLOCK), 0);
	assert_int_equal(nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, 2000), 0);
	assert_int_equal(nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 2000), 0);
	/* A req0 send waits for a pipe: no handshake, no pipe. */
	assert_int_equal(nng_send(s, "x", 1, 0), NNG_ETIMEDOUT);
	expect_log(&rep, 0, rep_line);
	nng_close(s);

	mark = log_mark(&rep);
	/* Past the replica's one line per 10 s for its listener. */
	it_sleep_ms(10500);
	assert_int_equal(gateway_spawn(&g, &gport, plain, NULL, NULL), 0);
	expect_no_replica(gport);
	expect_log(&rep, mark, rep_line);
	stop(&g);
	stop(&rep);
}

/* The other way round: a replica whose certificate is from the rogue CA,
 * and the good replica asked for a name its certificate lacks. */
static void
test_tls_rogue_replica_refused(void **state)
{
	it_proc     rep = {0}, g = {0}, g2 = {0};
	int         port = it_free_port(), gport, gport2;
	char        url[64];
	gw_tls      good = {"gateway", "localhost"};
	gw_tls      wrong_name = {"gateway", "not-the-replica.example"};
	const char *gw_line[] = {"GW-TLS-HANDSHAKE", url, REFUSED, NULL};
	const char *gw_line2[] = {
	    "GW-TLS-HANDSHAKE", tls_upstream, REFUSED, NULL};

	(void) state;
	if (!have_certs) {
		skip();
	}
	assert_int_equal(
	    replica_start(&rep, port, "rogue-replica", 0, NULL), 0);
	snprintf(url, sizeof(url), "tls+tcp://127.0.0.1:%d", port);
	assert_int_equal(gateway_spawn(&g, &gport, url, &good, NULL), 0);
	expect_no_replica(gport);
	expect_log(&g, 0, gw_line);
	stop(&g);
	stop(&rep);

	assert_int_equal(
	    gateway_spawn(&g2, &gport2, tls_upstream, &wrong_name, NULL), 0);
	expect_no_replica(gport2);
	expect_log(&g2, 0, gw_line2);
	stop(&g2);
}

/* An upstream given by DNS name: the gateway dials the address dnsmasq
 * gives and checks the certificate against the name (no
 * GATEWAY_TLS_SERVER_NAME): a replica whose certificate carries
 * product.test serves, the good replica (localhost only) is refused. */
static void
test_tls_dns_name_checked(void **state)
{
	it_dns       dns = {0};
	it_proc      rep = {0}, g = {0}, g2 = {0};
	int          port = it_free_port(), gport, gport2;
	char         ups[96], ups2[96], dnsenv[64], bufs[4][700];
	const char  *env[16], *lines[] = {"127.0.0.1 product.test", NULL};
	const char  *gw_line[] = {"GW-TLS-HANDSHAKE", REFUSED, NULL};
	gw_tls       t = {"gateway", ""};
	int          n;
	it_http_resp r;

	(void) state;
	if (!have_certs) {
		skip();
	}
	if (it_dnsmasq_path() == NULL) {
		fprintf(stderr,
		    "test_tls: SKIP dns case: no dnsmasq "
		    "(Debian package dnsmasq-base)\n");
		skip();
	}
	assert_int_equal(it_dns_start(&dns, lines), 0);
	assert_int_equal(replica_start(&rep, port, "dns-replica", 0, NULL), 0);
	snprintf(ups, sizeof(ups), "tls+tcp://product.test:%d", port);
	snprintf(dnsenv, sizeof(dnsenv), "GATEWAY_DNS_SERVERS=127.0.0.1:%d",
	    dns.port);
	n = gw_env(env, bufs, &t);
	env[n++] = dnsenv;
	env[n] = NULL;
	assert_int_equal(it_gateway_start(&g, &gport, ups, env), 0);
	it_must_get(&r, gport, "/products/5", NULL);
	it_expect_status(&r, 200);
	it_http_resp_free(&r);
	stop(&g);
	stop(&rep);

	snprintf(
	    ups2, sizeof(ups2), "tls+tcp://product.test:%d", replica_port);
	assert_int_equal(gateway_spawn(&g2, &gport2, ups2, &t, dnsenv), 0);
	expect_no_replica(gport2);
	expect_log(&g2, 0, gw_line);
	stop(&g2);
	it_dns_stop(&dns);
}

/* Runs bin with env; expects a non-zero exit and a message with want. */
static void
expect_refused(const char *bin, const char *const env[], const char *want)
{
	it_proc     p = {0};
	char        b[512];
	char       *argv[] = {b, NULL};
	const char *line[] = {want, NULL};
	int         rc;

	snprintf(b, sizeof(b), "%s/%s", it_env("IT_BIN"), bin);
	assert_int_equal(it_proc_spawn(&p, "tls-refused", argv, env), 0);
	rc = wait_exit(&p, 10000);
	if (rc <= 0) {
		it_proc_dump_log(&p, 10);
		fail_msg("%s: want a non-zero exit, got %d", bin, rc);
	}
	expect_log(&p, 0, line);
	proc_failures += it_proc_sanitizer_reports(&p);
	unlink(p.log); /* the next case appends to the same name */
}

static void
test_tls_half_config_refused(void **state)
{
	char ca[700], cert[700], key[700], ups[128], listen[128];

	(void) state;
	if (!have_certs) {
		skip();
	}
	snprintf(ca, sizeof(ca), "PRODUCT_TLS_CA=%s", path("ca.pem"));
	snprintf(
	    cert, sizeof(cert), "PRODUCT_TLS_CERT=%s", path("replica.pem"));
	snprintf(key, sizeof(key), "PRODUCT_TLS_KEY=%s", path("replica.key"));
	snprintf(listen, sizeof(listen),
	    "PRODUCT_LISTEN=tls+tcp://127.0.0.1:%d", it_free_port());
	{
		/* tls+tcp:// without a certificate */
		const char *env[] = {
		    listen, ca, "PRODUCT_TLS_CERT=", "PRODUCT_TLS_KEY=", NULL};
		expect_refused("product-service", env, "PRODUCT_TLS_CERT");
	}
	{
		/* certificates with a plaintext URL */
		char        plain[128];
		const char *env[] = {plain, ca, cert, key, NULL};
		snprintf(plain, sizeof(plain),
		    "PRODUCT_LISTEN=tcp://127.0.0.1:%d", it_free_port());
		expect_refused("product-service", env, "no silent plaintext");
	}
	{
		/* a key that is not the certificate's */
		char        other[700];
		const char *env[] = {listen, ca, cert, other, NULL};
		snprintf(other, sizeof(other), "PRODUCT_TLS_KEY=%s",
		    path("gateway.key"));
		expect_refused("product-service", env,
		    "is not the key of the certificate");
	}
	{
		/* a missing file is named */
		const char *env[] = {listen,
		    "PRODUCT_TLS_CA=/nonexistent/ca.pem", cert, key, NULL};
		expect_refused("product-service", env, "/nonexistent/ca.pem");
	}
	snprintf(ca, sizeof(ca), "GATEWAY_TLS_CA=%s", path("ca.pem"));
	snprintf(
	    cert, sizeof(cert), "GATEWAY_TLS_CERT=%s", path("gateway.pem"));
	snprintf(key, sizeof(key), "GATEWAY_TLS_KEY=%s", path("gateway.key"));
	{
		const char *env[] = {"GATEWAY_UPSTREAMS=tcp://127.0.0.1:1", ca,
		    cert, key, NULL};
		expect_refused("gateway", env, "no silent plaintext");
	}
	{
		snprintf(
		    ups, sizeof(ups), "GATEWAY_UPSTREAMS=%s", tls_upstream);
		const char *env[] = {ups, "GATEWAY_TLS_CA=",
		    "GATEWAY_TLS_CERT=", "GATEWAY_TLS_KEY=", NULL};
		expect_refused("gateway", env, "GATEWAY_TLS_CA");
	}
	{
		/* an IP upstream with no name to check the certificate by */
		const char *env[] = {
		    ups, ca, cert, key, "GATEWAY_TLS_SERVER_NAME=", NULL};
		expect_refused("gateway", env, "GATEWAY_TLS_SERVER_NAME");
	}
}

/* ---- group "redis": an ACL user ------------------------------------------
 */

static it_proc redis_acl;
static int     redis_acl_port;

static int
redis_setup(void **state)
{
	char  dirb[600], ports[16];
	char *argv[] = {"/usr/bin/redis-server", "--port", ports, "--bind",
	    "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dirb,
	    "--user", "default", "off", "--user", "catalog", "on", ">secret",
	    "~*", "&*", "+@all", NULL};

	(void) state;
	if (access(argv[0], X_OK) != 0) {
		argv[0] = "/usr/local/bin/redis-server";
	}
	if (it_seed_products(NPRODUCTS) != 0 ||
	    (redis_acl_port = it_free_port()) < 0) {
		return -1;
	}
	snprintf(ports, sizeof(ports), "%d", redis_acl_port);
	snprintf(dirb, sizeof(dirb), "%s/redis-acl", it_tmpdir());
	mkdir(dirb, 0755);
	if (it_proc_spawn(&redis_acl, "redis-acl", argv, NULL) != 0 ||
	    it_wait_port(redis_acl_port, 10000) != 0) {
		it_proc_dump_log(&redis_acl, 10);
		return -1;
	}
	return 0;
}

static int
redis_teardown(void **state)
{
	(void) state;
	it_proc_stop(&redis_acl, SIGTERM, 5000);
	return 0;
}

static void
test_redis_acl_user(void **state)
{
	it_stack     s;
	it_http_resp r;
	char         url[128];
	int          found;
	size_t       len;

	(void) state;
	/* Without credentials this Redis answers nothing. */
	free(it_redis_get(redis_acl_port, "product:2", &len, &found));
	assert_int_equal(found, -1);
	snprintf(url, sizeof(url), "redis://catalog:secret@127.0.0.1:%d/0",
	    redis_acl_port);
	assert_int_equal(it_stack_start(&s, 1, url, NULL), 0);
	it_must_get(&r, s.gw_port, "/products/2", NULL);
	it_expect_status(&r, 200);
	assert_string_equal(x_cache(&r), "MISS");
	it_http_resp_free(&r);
	it_must_get(&r, s.gw_port, "/products/2", NULL);
	it_expect_status(&r, 200);
	assert_string_equal(x_cache(&r), "HIT");
	it_http_resp_free(&r);
	assert_int_equal(it_stack_stop(&s), 0);
}

static void
test_redis_acl_wrong_password(void **state)
{
	it_stack     s;
	it_http_resp r;
	char         url[128];
	const char  *line[] = {"PS-REDIS-AUTH", NULL};

	(void) state;
	snprintf(url, sizeof(url), "redis://catalog:wrong@127.0.0.1:%d/0",
	    redis_acl_port);
	assert_int_equal(it_stack_start(&s, 1, url, NULL), 0);
	for (int i = 0; i < 2; i++) {
		it_must_get(&r, s.gw_port, "/products/3", NULL);
		it_expect_status(&r, 200);
		assert_string_equal(x_cache(&r), "BYPASS");
		it_http_resp_free(&r);
	}
	expect_log(&s.rep[0], 0, line);
	assert_true(it_proc_alive(&s.rep[0]));
	assert_int_equal(it_stack_stop(&s), 0);
}

/* ---- group "pg": PostgreSQL over TLS -------------------------------------
 */

static int pg_ssl; /* 1 once the suite's PostgreSQL has ssl=on */

/* Copies file from to to (mode 0644). */
static int
copy_file(const char *from, const char *to)
{
	return sh("cp '%s' '%s.tmp' && chmod 644 '%s.tmp' && mv '%s.tmp' '%s'",
	    from, to, to, to, to);
}

static int
pg_setup(void **state)
{
	char sql[2048], key[700];
	int  ok;

	(void) state;
	if (!have_certs) {
		return 0;
	}
	if (it_seed_products(NPRODUCTS) != 0) {
		return -1;
	}
	/* PostgreSQL wants its key private to the user it runs as, which
	 * is postgres when the tests run as root. */
	snprintf(key, sizeof(key), "%s", path("pg-server.key"));
	if (copy_file(path("replica.key"), key) != 0 ||
	    chmod(key, 0600) != 0) {
		return -1;
	}
	if (geteuid() == 0) {
		struct passwd *pw = getpwnam("postgres");
		if (pw == NULL || chown(key, pw->pw_uid, pw->pw_gid) != 0) {
			fprintf(stderr,
			    "test_tls: SKIP pg: cannot give the "
			    "key to postgres\n");
			return 0;
		}
	}
	snprintf(sql, sizeof(sql),
	    "ALTER SYSTEM SET ssl_cert_file = '%s'; "
	    "ALTER SYSTEM SET ssl_key_file = '%s'; "
	    "ALTER SYSTEM SET ssl = on",
	    path("replica.pem"), key);
	/* ALTER SYSTEM cannot run in a multi-statement string. */
	for (char *p = sql, *semi; p != NULL; p = semi) {
		if ((semi = strchr(p, ';')) != NULL) {
			*semi++ = '\0';
		}
		if (it_pg_exec(p) != 0) {
			return -1;
		}
	}
	if (it_pg_exec("SELECT pg_reload_conf()") != 0) {
		return -1;
	}
	for (int i = 0; i < 100; i++) {
		char *v = it_pg_scalar("SHOW ssl", &ok);
		pg_ssl = v != NULL && strcmp(v, "on") == 0;
		free(v);
		if (pg_ssl) {
			break;
		}
		it_sleep_ms(100);
	}
	if (!pg_ssl) {
		fprintf(stderr,
		    "test_tls: PostgreSQL did not turn ssl on "
		    "(see its log)\n");
		return -1;
	}
	return copy_file(path("ca.pem"), path("pg-root.pem"));
}

static int
pg_teardown(void **state)
{
	(void) state;
	if (pg_ssl) {
		it_pg_exec("ALTER SYSTEM RESET ssl");
		it_pg_exec("ALTER SYSTEM RESET ssl_cert_file");
		it_pg_exec("ALTER SYSTEM RESET ssl_key_file");
		it_pg_exec("SELECT pg_reload_conf()");
	}
	return 0;
}

/* Sets IT_DATABASE_URL (what replicas get as DATABASE_URL) to the suite's
 * URL with the TLS parameters, or back. */
static void
use_tls_url(int on, char *saved, size_t len)
{
	char url[1500];

	if (on) {
		snprintf(saved, len, "%s", it_env("IT_DATABASE_URL"));
		snprintf(url, sizeof(url),
		    "%s?sslmode=verify-full&sslrootcert=%s"
		    "&application_name=it-tls-pg",
		    saved, path("pg-root.pem"));
		setenv("IT_DATABASE_URL", url, 1);
	} else {
		setenv("IT_DATABASE_URL", saved, 1);
	}
}

static int
admin_readyz(int port)
{
	it_http_resp r;
	int          st = -1;

	if (it_http(&r, port, "GET", "/readyz", NULL, NULL, 0, 2000) == 0) {
		st = r.status;
		it_http_resp_free(&r);
	}
	return st;
}

static void
test_pg_verify_full(void **state)
{
	it_proc      rep = {0}, g = {0}, bad = {0};
	int          port = it_free_port(), admin = it_free_port(), gport;
	char         saved[1024], ups[64], tls_url[1500];
	int          rv;
	it_http_resp r;
	const char  *down[] = {
	     "PS-DB-RETRY", "certificate verify failed", NULL};
	const char *start[] = {
	    "PS-DB-CONNECT", "certificate verify failed", NULL};
	int64_t end;

	(void) state;
	if (!pg_ssl) {
		skip();
	}
	/* Only the replica gets the TLS URL; the test's own connections
	 * keep the suite's. */
	use_tls_url(1, saved, sizeof(saved));
	snprintf(tls_url, sizeof(tls_url), "%s", it_env("IT_DATABASE_URL"));
	/* ps_db warns once per outage; the reasons of the retries that
	 * follow are debug lines. */
	setenv("LOG_LEVEL", "debug", 1);
	rv = replica_start(&rep, port, NULL, admin, NULL);
	unsetenv("LOG_LEVEL");
	use_tls_url(0, saved, sizeof(saved));
	assert_int_equal(rv, 0);
	snprintf(ups, sizeof(ups), "tcp://127.0.0.1:%d", port);
	assert_int_equal(gateway_spawn(&g, &gport, ups, NULL, NULL), 0);
	assert_int_equal(it_redis_del(redis_shared, "product:4"), 0);
	end = it_now_ms() + WAIT_MS;
	while (admin_readyz(admin) != 200 && it_now_ms() < end) {
		it_sleep_ms(100);
	}
	assert_int_equal(admin_readyz(admin), 200);
	it_must_get(&r, gport, "/products/4", NULL);
	it_expect_status(&r, 200);
	assert_string_equal(x_cache(&r), "MISS"); /* read from PostgreSQL */
	it_http_resp_free(&r);
	/* Every connection of that replica is encrypted. */
	assert_true(
	    it_pg_scalar_ll(
	        "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity "
	        "USING (pid) WHERE application_name = 'it-tls-pg' AND "
	        "ssl",
	        -1) >= 1);
	assert_int_equal(
	    it_pg_scalar_ll("SELECT count(*) FROM pg_stat_ssl JOIN "
	                    "pg_stat_activity USING (pid) WHERE "
	                    "application_name = 'it-tls-pg' AND NOT ssl",
	        -1),
	    0);

	/* Now its root certificate is the rogue CA, and its connections are
	 * cut: the reconnections cannot verify the server. */
	assert_int_equal(copy_file(path("rogue.pem"), path("pg-root.pem")), 0);
	assert_int_equal(
	    it_pg_exec(
	        "SELECT pg_terminate_backend(pid) FROM "
	        "pg_stat_activity WHERE application_name = 'it-tls-pg'"),
	    0);
	end = it_now_ms() + WAIT_MS;
	while (admin_readyz(admin) != 503 && it_now_ms() < end) {
		it_sleep_ms(100);
	}
	assert_int_equal(admin_readyz(admin), 503);
	expect_log(&rep, 0, down);
	assert_true(it_proc_alive(&rep));
	/* A cached product is still served; an uncached one is not. */
	it_must_get(&r, gport, "/products/4", NULL);
	it_expect_status(&r, 200);
	it_http_resp_free(&r);

	/* And a replica that starts like this says why, and stays up
	 * unready, as with a database that is down: it never gets a
	 * connection to serve from. */
	{
		char        bin[512];
		char       *argv[] = {bin, NULL};
		char        db[1600], listen[96], adm[64];
		int         bad_admin = it_free_port();
		const char *env[] = {db, listen, adm, NULL};
		snprintf(
		    bin, sizeof(bin), "%s/product-service", it_env("IT_BIN"));
		snprintf(db, sizeof(db), "DATABASE_URL=%s", tls_url);
		snprintf(listen, sizeof(listen),
		    "PRODUCT_LISTEN=tcp://127.0.0.1:%d", it_free_port());
		snprintf(adm, sizeof(adm), "PRODUCT_ADMIN_LISTEN=127.0.0.1:%d",
		    bad_admin);
		assert_int_equal(
		    it_proc_spawn(&bad, "tls-pg-rogue", argv, env), 0);
		expect_log(&bad, 0, start);
		assert_int_equal(it_wait_port(bad_admin, WAIT_MS), 0);
		assert_int_equal(admin_readyz(bad_admin), 503);
		assert_true(it_proc_alive(&bad));
		stop(&bad);
	}
	stop(&g);
	stop(&rep);
	assert_int_equal(copy_file(path("ca.pem"), path("pg-root.pem")), 0);
}

int
main(void)
{
	const struct CMUnitTest nng_tests[] = {
	    cmocka_unit_test(test_tls_stack_serves),
	    cmocka_unit_test(test_tls_rogue_gateway_refused),
	    cmocka_unit_test(test_tls_no_client_cert_refused),
	    cmocka_unit_test(test_tls_rogue_replica_refused),
	    cmocka_unit_test(test_tls_dns_name_checked),
	    cmocka_unit_test(test_tls_half_config_refused),
	};
	const struct CMUnitTest redis_tests[] = {
	    cmocka_unit_test(test_redis_acl_user),
	    cmocka_unit_test(test_redis_acl_wrong_password),
	};
	const struct CMUnitTest pg_tests[] = {
	    cmocka_unit_test(test_pg_verify_full),
	};
	int failed = 0;

	if ((redis_shared = it_redis_port()) < 0) {
		return 1;
	}
	failed += cmocka_run_group_tests_name(
	    "tls_nng", nng_tests, nng_setup, nng_teardown);
	failed += cmocka_run_group_tests_name(
	    "tls_redis", redis_tests, redis_setup, redis_teardown);
	failed += cmocka_run_group_tests_name(
	    "tls_pg", pg_tests, pg_setup, pg_teardown);
	return failed != 0 || it_stack_failures() != 0 || proc_failures != 0;
}
