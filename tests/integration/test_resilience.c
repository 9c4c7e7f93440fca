/* test_resilience.c - no single point of failure: the stack under a bounded
 * client load while replicas die, restart, freeze, Redis or PostgreSQL
 * stop, DNS changes the replica set, and a network link goes down.
 *
 * Each scenario starts its own processes (stopped by pid in its teardown),
 * runs a load of a few seconds through the gateway with it_load_start()
 * and prints one summary line:
 *
 *   <scenario>: requests=N failures=F p99_ms=X
 *
 * Discovery needs dnsmasq (Debian dnsmasq-base) and the network cut needs
 * permission to create network namespaces (root, iproute2); each is
 * skipped with the reason printed when it is missing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "it.h"
#include "it_check.h"
#include "it_fault.h"
#include "it_write.h"

#define NREAD       100 /* GETs pick ids 1..NREAD */
#define WRITE_FIRST 101 /* writes own ids WRITE_FIRST.. */
#define WRITE_PER   8   /* ids per load thread */
#define NPRODUCTS   160
#define THREADS     4

static it_stack stack;
static int      have_stack;
static it_proc  redis;
static int      redis_port;

/* Seeds the products and empties the shared Redis. */
static int
seed(void)
{
	int rp = it_redis_port();
	return it_seed_products(NPRODUCTS) != 0 || rp < 0 ||
	        it_redis_flushall(rp) != 0
	    ? -1
	    : 0;
}

/* A load config with this file's defaults. */
static it_load_cfg
load_cfg(const char *name, int duration_ms)
{
	it_load_cfg c = {0};
	c.name = name;
	c.port = stack.gw_port;
	c.threads = THREADS;
	c.duration_ms = duration_ms;
	c.max_requests = 40000;
	c.timeout_ms = 5000;
	c.pace_us = 1000;
	c.read_first = 1;
	c.read_n = NREAD;
	c.write_first = WRITE_FIRST;
	c.write_per_thread = WRITE_PER;
	return c;
}

/* GETs ids 1..NREAD twice so that the cache holds them; returns how many
 * of the second round were HITs. */
static int
warm_cache(int port)
{
	int hits = 0;
	for (int round = 0; round < 2; round++) {
		if (round == 1) {
			it_sleep_ms(200); /* fills trail the answers */
		}
		for (int id = 1; id <= NREAD; id++) {
			it_http_resp r;
			char         path[32];
			const char  *xc;
			snprintf(path, sizeof(path), "/products/%d", id);
			it_must_get(&r, port, path, NULL);
			it_expect_status(&r, 200);
			xc = it_http_header(&r, "X-Cache");
			hits += round == 1 && xc && strcmp(xc, "HIT") == 0;
			it_http_resp_free(&r);
		}
	}
	return hits;
}

/* Starts nrep replicas and a gateway with extra_env. */
static int
start_stack(int nrep, const char *redis_url, const char *const *extra_env)
{
	if (seed() != 0 ||
	    it_stack_start(&stack, nrep, redis_url, extra_env) != 0) {
		return -1;
	}
	have_stack = 1;
	return 0;
}

static int
stop_stack(void **state)
{
	int rv = 0;

	(void) state;
	for (int i = 0; have_stack && i < stack.nrep; i++) {
		if (stack.rep[i].pid > 0) {
			kill(stack.rep[i].pid, SIGCONT); /* if left stopped */
		}
	}
	if (have_stack) {
		rv = it_stack_stop(&stack);
		have_stack = 0;
	}
	if (redis.pid > 0) {
		it_proc_stop(&redis, SIGTERM, 5000);
	}
	return rv;
}

/* ---- 1. a replica killed mid-load --------------------------------------- */

static int
kill_setup(void **state)
{
	(void) state;
	return start_stack(3, NULL, NULL);
}

static void
test_resilience_replica_killed(void **state)
{
	it_load_cfg    c = load_cfg("replica_sigkill", 7000);
	it_load_result res;
	it_load       *l;
	long           before;

	(void) state;
	assert_non_null(l = it_load_start(&c));
	it_sleep_ms(2500);
	before = it_load_count(l);
	printf("  replica_sigkill: SIGKILL %s (pid %d) at t=%dms\n",
	    stack.rep[1].name, (int) stack.rep[1].pid, it_load_elapsed_ms(l));
	assert_int_equal(it_proc_stop(&stack.rep[1], SIGKILL, 5000), 0);
	it_load_wait(l, 10000);
	it_load_finish(l, &res);
	assert_true(res.requests - before > 100);
	if (res.failures != 0) {
		fail_msg("%ld of %ld GETs failed after one of 3 replicas "
		         "was killed",
		    res.failures, res.requests);
	}
}

/* ---- 2. rolling restart under reads and writes ------------------------- */

static const char *const drain_env[] = {"PRODUCT_DRAIN_DELAY_S=1", NULL};

static int
rolling_setup(void **state)
{
	(void) state;
	return start_stack(3, NULL, drain_env);
}

static void
test_resilience_rolling_restart(void **state)
{
	it_load_cfg    c = load_cfg("rolling_restart", 30000);
	it_load_result res;
	it_load       *l;

	(void) state;
	c.write_pct = 20;
	c.if_match = 1;
	c.idem_key = 1;
	assert_non_null(l = it_load_start(&c));
	it_sleep_ms(1500);
	for (int i = 0; i < stack.nrep; i++) {
		int64_t t0 = it_now_ms();
		int     st;
		pid_t   old = stack.rep[i].pid;

		/* SIGTERM and wait for the exit: the drain delay (1 s)
		 * answers DRAINING, then in-flight work finishes. */
		st = it_proc_stop(&stack.rep[i], SIGTERM, 20000);
		printf("  rolling_restart: %s (pid %d) exited %d ms after "
		       "SIGTERM (status %d) at t=%dms\n",
		    stack.rep[i].name, (int) old, (int) (it_now_ms() - t0),
		    stack.rep[i].status, it_load_elapsed_ms(l));
		assert_int_equal(st, 0);
		assert_true(WIFEXITED(stack.rep[i].status) &&
		    WEXITSTATUS(stack.rep[i].status) == 0);
		assert_int_equal(it_stack_start_replica(&stack, i), 0);
		/* Let the gateway dial it again (back-off at most 1 s). */
		it_sleep_ms(1500);
	}
	it_sleep_ms(1000);
	it_load_finish(l, &res);
	assert_true(res.writes > 20);
	if (res.failures != 0) {
		fail_msg("%ld of %ld requests failed during a rolling "
		         "restart (see the failure lines above)",
		    res.failures, res.requests);
	}
	/* Every acknowledged write is in PostgreSQL. */
	for (int i = 0; i < res.nacks; i++) {
		long long v = it_row_version(res.acks[i].id);
		if (v < res.acks[i].version) {
			fail_msg("product %lld: acknowledged version %lld, "
			         "PostgreSQL has %lld",
			    (long long) res.acks[i].id, res.acks[i].version,
			    v);
		}
	}
}

/* ---- 3. a replica frozen with SIGSTOP ---------------------------------- */

static int
stop_setup(void **state)
{
	(void) state;
	return start_stack(3, NULL, NULL);
}

static void
test_resilience_replica_sigstop(void **state)
{
	it_load_cfg    c = load_cfg("replica_sigstop", 10000);
	it_load_result res;
	it_load       *l;
	pid_t          pid = stack.rep[0].pid;

	(void) state;
	assert_non_null(l = it_load_start(&c));
	it_sleep_ms(2000);
	printf("  replica_sigstop: SIGSTOP %s (pid %d) at t=%dms for 5 s\n",
	    stack.rep[0].name, (int) pid, it_load_elapsed_ms(l));
	kill(pid, SIGSTOP);
	it_sleep_ms(5000);
	kill(pid, SIGCONT);
	printf(
	    "  replica_sigstop: SIGCONT at t=%dms\n", it_load_elapsed_ms(l));
	it_load_wait(l, 10000);
	it_load_finish(l, &res);
	assert_true(it_proc_alive(&stack.rep[0]));
	if (res.failures != 0) {
		fail_msg("%ld of %ld GETs failed while one replica was "
		         "stopped",
		    res.failures, res.requests);
	}
	/* Within the deadline (GATEWAY_TIMEOUT_MS 2000) with room. */
	assert_true(res.max_ms < 2500);
}

/* ---- 4. Redis stopped for 5 s ------------------------------------------ */

static int
redis_setup(void **state)
{
	char url[64];

	(void) state;
	if ((redis_port = it_free_port()) < 0 ||
	    it_redis_server_start(&redis, redis_port) != 0) {
		return -1;
	}
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", redis_port);
	return start_stack(3, url, NULL);
}

/* GETs path until X-Cache is HIT; returns ms it took, or -1 after
 * timeout_ms. */
static int
wait_hit(int port, int timeout_ms)
{
	int64_t t0 = it_now_ms();
	while (it_now_ms() - t0 < timeout_ms) {
		it_http_resp r;
		if (it_http(&r, port, "GET", "/products/7", NULL, NULL, 0,
		        5000) == 0) {
			const char *xc = it_http_header(&r, "X-Cache");
			int         hit =
			    r.status == 200 && xc && strcmp(xc, "HIT") == 0;
			it_http_resp_free(&r);
			if (hit) {
				return (int) (it_now_ms() - t0);
			}
		}
		it_sleep_ms(100);
	}
	return -1;
}

static void
test_resilience_redis_down(void **state)
{
	it_load_cfg    c = load_cfg("redis_down", 30000);
	it_load_result res;
	it_load       *l;
	int            hits, ms;

	(void) state;
	hits = warm_cache(stack.gw_port);
	printf("  redis_down: %d of %d warm GETs were HITs\n", hits, NREAD);
	assert_non_null(l = it_load_start(&c));
	it_sleep_ms(2000);
	printf(
	    "  redis_down: Redis stopped at t=%dms\n", it_load_elapsed_ms(l));
	assert_int_equal(it_proc_stop(&redis, SIGKILL, 5000), 0);
	it_sleep_ms(5000);
	assert_int_equal(it_redis_server_start(&redis, redis_port), 0);
	printf("  redis_down: Redis back (empty) at t=%dms\n",
	    it_load_elapsed_ms(l));
	ms = wait_hit(stack.gw_port, 10000);
	printf("  redis_down: first HIT %d ms after the restart\n", ms);
	it_sleep_ms(1000);
	it_load_finish(l, &res);
	if (res.failures != 0) {
		fail_msg("%ld of %ld GETs failed with Redis down",
		    res.failures, res.requests);
	}
	assert_true(res.bypass + res.stale > 0); /* the outage was seen */
	if (ms < 0) {
		fail_msg("no X-Cache: HIT within 10 s of Redis coming back");
	}
}

/* ---- 5. PostgreSQL stopped --------------------------------------------- */

static int pg_stopped;

static int
pg_setup(void **state)
{
	(void) state;
	pg_stopped = 0;
	return start_stack(3, NULL, NULL);
}

static int
pg_teardown(void **state)
{
	if (pg_stopped) {
		it_pg_start();
		pg_stopped = 0;
	}
	return stop_stack(state);
}

static void
test_resilience_postgres_down(void **state)
{
	static const int also_ok[] = {503, 0};
	it_load_cfg      c = load_cfg("postgres_down", 30000);
	it_load_result  *res = calloc(1, sizeof(*res));
	it_load         *l;
	int              hits, lost = 0;
	int64_t          end;
	long             later_ok = 0;

	(void) state;
	assert_non_null(res);
	hits = warm_cache(stack.gw_port);
	printf("  postgres_down: %d of %d warm GETs were HITs\n", hits, NREAD);
	assert_true(hits >= NREAD * 9 / 10);
	c.write_pct = 25;
	c.idem_key = 1;
	c.write_ok_extra = also_ok;
	assert_non_null(l = it_load_start(&c));
	it_sleep_ms(2500);
	printf("  postgres_down: stopping PostgreSQL at t=%dms\n",
	    it_load_elapsed_ms(l));
	pg_stopped = 1;
	assert_int_equal(it_pg_stop(), 0);
	printf("  postgres_down: PostgreSQL stopped at t=%dms\n",
	    it_load_elapsed_ms(l));
	it_sleep_ms(4000);
	assert_int_equal(it_pg_start(), 0);
	pg_stopped = 0;
	printf("  postgres_down: PostgreSQL started at t=%dms\n",
	    it_load_elapsed_ms(l));
	it_sleep_ms(3000);
	it_load_finish(l, res);

	/* Writes work again within 10 s. */
	end = it_now_ms() + 10000;
	while (it_now_ms() < end) {
		it_http_resp r;
		char         body[256], key[96], kh[128];
		const char  *hd[] = {kh, NULL};
		it_unique(key, sizeof(key), "pg-after");
		snprintf(kh, sizeof(kh), "Idempotency-Key: %s", key);
		it_product_body(
		    body, sizeof(body), "LD-AFTER", "after", "", 1, "USD", 1);
		if (it_http_json(&r, stack.gw_port, "PUT", "/products/150",
		        IT_JSON, hd, body) == 0) {
			later_ok = r.status == 200;
			it_http_resp_free(&r);
		}
		if (later_ok) {
			break;
		}
		it_sleep_ms(200);
	}

	for (int i = 0; i < res->nacks; i++) {
		long long v = it_row_version(res->acks[i].id);
		if (v < res->acks[i].version) {
			printf("  postgres_down: LOST product %lld acked "
			       "version %lld, PostgreSQL has %lld\n",
			    (long long) res->acks[i].id, res->acks[i].version,
			    v);
			lost++;
		}
	}
	printf("  postgres_down: %d ids with acknowledged writes checked "
	       "in PostgreSQL, %d lost; writes refused with 503: %ld\n",
	    res->nacks, lost, res->write_extra);
	if (res->get_failures != 0) {
		fail_msg("%ld of %ld cached GETs failed with PostgreSQL down",
		    res->get_failures, res->gets);
	}
	if (res->write_failures != 0) {
		fail_msg("%ld of %ld writes answered neither 200 nor 503",
		    res->write_failures, res->writes);
	}
	assert_int_equal(lost, 0);
	assert_true(res->write_extra > 0); /* the outage reached writes */
	assert_true(res->nacks > 0);
	if (!later_ok) {
		fail_msg("no write succeeded within 10 s of PostgreSQL's "
		         "restart");
	}
	free(res);
}

/* ---- 6. DNS discovery ----------------------------------------------------
 */

static it_dns  dns;
static it_proc drep[3]; /* on 127.0.0.2, .3, .4 */
static int     dadmin[3];
static it_proc dgw;
static int     dgw_port, dport;

static int
dns_teardown(void **state)
{
	int reports = 0;
	(void) state;
	it_proc_stop(&dgw, SIGTERM, 5000);
	reports += it_proc_sanitizer_reports(&dgw);
	for (int i = 0; i < 3; i++) {
		it_proc_stop(&drep[i], SIGTERM, 5000);
		reports += it_proc_sanitizer_reports(&drep[i]);
	}
	it_dns_stop(&dns);
	return reports ? -1 : 0;
}

/* product_rpc_requests_total{method="get_product"} of replica i. */
static double
dns_gets(int i)
{
	static const char *const f[] = {"method=\"get_product\"", NULL};
	return it_scrape_sum(dadmin[i], "product_rpc_requests_total", f);
}

static void
test_resilience_dns_discovery(void **state)
{
	const char *const two[] = {
	    "127.0.0.2 product.test", "127.0.0.3 product.test", NULL};
	const char *const three[] = {"127.0.0.2 product.test",
	    "127.0.0.3 product.test", "127.0.0.4 product.test", NULL};
	const char *const moved[] = {
	    "127.0.0.3 product.test", "127.0.0.4 product.test", NULL};
	char        ups[96], dnsenv[64], adm[64], url[64], name[32];
	const char *genv[] = {
	    dnsenv, "GATEWAY_RESOLVE_INTERVAL_S=1", adm, NULL};
	it_load_cfg    c;
	it_load_result res;
	it_load       *l;
	int64_t        t0;
	int            took_add = -1, stop_ms = -1;
	double         c2a, c2b, c4;

	(void) state;
	if (it_dnsmasq_path() == NULL) {
		printf("  dns_discovery: SKIPPED: dnsmasq is not installed "
		       "(Debian package dnsmasq-base)\n");
		skip();
	}
	assert_int_equal(seed(), 0);
	assert_true((dport = it_free_port()) > 0);
	assert_int_equal(it_dns_start(&dns, two), 0);
	for (int i = 0; i < 3; i++) {
		assert_true((dadmin[i] = it_free_port()) > 0);
		snprintf(
		    url, sizeof(url), "tcp://127.0.0.%d:%d", i + 2, dport);
		snprintf(name, sizeof(name), "dns-replica-%d", i + 2);
		assert_int_equal(
		    it_replica_spawn(&drep[i], name, url,
		        it_env("IT_REDIS_URL"), NULL, dadmin[i], NULL, NULL),
		    0);
	}
	for (int i = 0; i < 3; i++) {
		char ip[32];
		snprintf(ip, sizeof(ip), "127.0.0.%d", i + 2);
		if (it_wait_tcp(ip, dport, 10000) != 0) {
			it_proc_dump_log(&drep[i], 20);
			fail_msg("replica on %s:%d did not listen", ip, dport);
		}
	}
	snprintf(ups, sizeof(ups), "tcp://product.test:%d", dport);
	snprintf(dnsenv, sizeof(dnsenv), "GATEWAY_DNS_SERVERS=127.0.0.1:%d",
	    dns.port);
	snprintf(adm, sizeof(adm), "GATEWAY_ADMIN_LISTEN=127.0.0.1:%d",
	    it_free_port());
	assert_int_equal(it_gateway_start(&dgw, &dgw_port, ups, genv), 0);

	c = load_cfg("dns_discovery", 30000);
	c.port = dgw_port;
	assert_non_null(l = it_load_start(&c));
	it_sleep_ms(1500);
	c4 = dns_gets(2);
	assert_true(c4 == 0); /* not in DNS yet: no traffic */
	assert_true(dns_gets(0) > 0 && dns_gets(1) > 0);

	/* Add 127.0.0.4: it takes requests within two intervals. */
	assert_int_equal(it_dns_set(&dns, three), 0);
	t0 = it_now_ms();
	printf("  dns_discovery: 127.0.0.4 added at t=%dms\n",
	    it_load_elapsed_ms(l));
	while (it_now_ms() - t0 < 6000) {
		if (dns_gets(2) > 0) {
			took_add = (int) (it_now_ms() - t0);
			break;
		}
		it_sleep_ms(50);
	}
	printf("  dns_discovery: new replica took its first GET %d ms after "
	       "the DNS change\n",
	    took_add);

	/* Remove 127.0.0.2: it stops getting requests. */
	assert_int_equal(it_dns_set(&dns, moved), 0);
	t0 = it_now_ms();
	printf("  dns_discovery: 127.0.0.2 removed at t=%dms\n",
	    it_load_elapsed_ms(l));
	c2a = dns_gets(0);
	while (it_now_ms() - t0 < 6000) {
		it_sleep_ms(500);
		c2b = dns_gets(0);
		if (c2b == c2a && stop_ms < 0) {
			stop_ms = (int) (it_now_ms() - t0) - 500;
		} else if (c2b != c2a) {
			stop_ms = -1;
		}
		c2a = c2b;
		if (stop_ms >= 0 && it_now_ms() - t0 >= 4000) {
			break;
		}
	}
	/* Steady: no GET for 2 s more while the load runs. */
	c2a = dns_gets(0);
	it_sleep_ms(2000);
	c2b = dns_gets(0);
	printf("  dns_discovery: removed replica's last GET about %d ms after "
	       "the DNS change; %.0f then %.0f GETs 2 s apart\n",
	    stop_ms, c2a, c2b);
	it_load_finish(l, &res);
	if (res.transport_errors > 0 && it_proc_alive(&dgw)) {
		it_proc_stacks(&dgw); /* the gateway stopped answering */
	}
	if (took_add < 0 || took_add > 3000) {
		fail_msg("the replica added to DNS took its first request "
		         "after %d ms (resolve interval 1 s; want within "
		         "2 intervals + 1 s to dial)",
		    took_add);
	}
	if (c2b != c2a) {
		fail_msg("the replica removed from DNS still gets requests "
		         "(%.0f -> %.0f)",
		    c2a, c2b);
	}
	if (res.failures != 0) {
		fail_msg("%ld of %ld GETs failed while DNS changed",
		    res.failures, res.requests);
	}
}

/* ---- 7. a network link cut ---------------------------------------------- */

#define NNS 3

static char    ns_name[NNS][32], ns_veth[NNS][32];
static int     ns_made[NNS], ns_route;
static it_fwd *ns_fwd[NNS][2];
static it_proc nrep[NNS];
static it_proc ngw;
/* The cut replica's requests in progress hang on its unreachable
 * PostgreSQL: a short drain keeps the teardown quick. */
static const char *const netns_env[] = {"PRODUCT_DRAIN_TIMEOUT_S=2", NULL};
static int               ngw_port, net_a = 213;

static int
netns_teardown(void **state)
{
	const char *ip = it_ip_path();
	int         reports = 0;

	(void) state;
	it_proc_stop(&ngw, SIGTERM, 5000);
	reports += it_proc_sanitizer_reports(&ngw);
	for (int i = 0; i < NNS; i++) {
		it_proc_stop(&nrep[i], SIGTERM, 8000);
		reports += it_proc_sanitizer_reports(&nrep[i]);
		it_fwd_stop(ns_fwd[i][0]);
		it_fwd_stop(ns_fwd[i][1]);
		ns_fwd[i][0] = ns_fwd[i][1] = NULL;
		if (ns_made[i] && ip != NULL) {
			/* Deleting the namespace deletes its veth pair. */
			it_sh("%s netns del %s", ip, ns_name[i]);
			it_sh("%s link del %s 2>/dev/null || true", ip,
			    ns_veth[i]);
			ns_made[i] = 0;
		}
	}
	if (ns_route && ip != NULL) {
		it_sh("%s route del unreachable 10.%d.0.0/16", ip, net_a);
		ns_route = 0;
	}
	return reports ? -1 : 0;
}

static void
test_resilience_network_cut(void **state)
{
	const char *ip = it_ip_path();
	char why[600], ups[256], listen[64], db[160], rurl[96], addr[32],
	    name[32], out[256], adm[64];
	const char    *genv[] = {adm, NULL};
	int            rport = it_redis_port(), pgport, port, pfwd, rfwd;
	size_t         off = 0;
	it_load_cfg    c;
	it_load_result res;
	it_load       *l;

	(void) state;
	if (!it_netns_usable(why, sizeof(why))) {
		printf("  network_cut: SKIPPED: %s\n", why);
		skip();
	}
	/* Our 10.<a>.<i>.0/30 subnets must be unused on this host. */
	it_sh_out(out, sizeof(out), "%s -4 -o addr show | grep ' 10\\.%d\\.' ",
	    ip, net_a);
	if (out[0] != '\0') {
		printf("  network_cut: SKIPPED: 10.%d.0.0/16 is in use here: "
		       "%s\n",
		    net_a, out);
		skip();
	}
	assert_int_equal(seed(), 0);
	assert_true(rport > 0);
	assert_non_null(it_env("IT_PG_PORT"));
	pgport = atoi(it_env("IT_PG_PORT"));
	assert_true((port = it_free_port()) > 0);
	assert_true((pfwd = it_free_port()) > 0);
	assert_true((rfwd = it_free_port()) > 0);

	/* Nothing for these subnets may leave through a real interface,
	 * whatever state the veth links are in. */
	assert_int_equal(
	    it_sh("%s route add unreachable 10.%d.0.0/16", ip, net_a), 0);
	ns_route = 1;
	for (int i = 0; i < NNS; i++) {
		snprintf(ns_name[i], sizeof(ns_name[i]), "itf-%d-%d",
		    (int) getpid(), i);
		snprintf(ns_veth[i], sizeof(ns_veth[i]), "itf%da%d",
		    (int) getpid() % 1000000, i);
		assert_int_equal(it_sh("%s netns add %s", ip, ns_name[i]), 0);
		ns_made[i] = 1;
		assert_int_equal(it_sh("%s link add %s type veth peer name "
		                       "ve0 netns %s",
		                     ip, ns_veth[i], ns_name[i]),
		    0);
		assert_int_equal(
		    it_sh("%s addr add 10.%d.%d.1/30 dev %s && "
		          "%s link set %s up && "
		          "%s -n %s addr add 10.%d.%d.2/30 dev ve0 && "
		          "%s -n %s link set ve0 up && "
		          "%s -n %s link set lo up",
		        ip, net_a, i, ns_veth[i], ip, ns_veth[i], ip,
		        ns_name[i], net_a, i, ip, ns_name[i], ip, ns_name[i]),
		    0);
		/* Redis and PostgreSQL of the suite, reachable from the
		 * namespace at the root side of its veth. */
		snprintf(addr, sizeof(addr), "10.%d.%d.1", net_a, i);
		assert_non_null(
		    ns_fwd[i][0] = it_fwd_start(addr, rfwd, rport));
		assert_non_null(
		    ns_fwd[i][1] = it_fwd_start(addr, pfwd, pgport));
	}
	for (int i = 0; i < NNS; i++) {
		snprintf(listen, sizeof(listen), "tcp://10.%d.%d.2:%d", net_a,
		    i, port);
		snprintf(rurl, sizeof(rurl), "redis://10.%d.%d.1:%d/0", net_a,
		    i, rfwd);
		snprintf(db, sizeof(db),
		    "postgresql://postgres@10.%d.%d.1:%d/catalog", net_a, i,
		    pfwd);
		snprintf(name, sizeof(name), "netns-replica-%d", i + 1);
		assert_int_equal(it_replica_spawn(&nrep[i], name, listen, rurl,
		                     db, 0, ns_name[i], netns_env),
		    0);
		off += (size_t) snprintf(ups + off, sizeof(ups) - off,
		    "%stcp://10.%d.%d.2:%d", i ? "," : "", net_a, i, port);
	}
	for (int i = 0; i < NNS; i++) {
		snprintf(addr, sizeof(addr), "10.%d.%d.2", net_a, i);
		if (it_wait_tcp(addr, port, 10000) != 0) {
			it_proc_dump_log(&nrep[i], 30);
			fail_msg("replica in %s did not listen on %s:%d",
			    ns_name[i], addr, port);
		}
	}
	snprintf(adm, sizeof(adm), "GATEWAY_ADMIN_LISTEN=127.0.0.1:%d",
	    it_free_port());
	assert_int_equal(it_gateway_start(&ngw, &ngw_port, ups, genv), 0);

	c = load_cfg("network_cut", 9000);
	c.port = ngw_port;
	assert_non_null(l = it_load_start(&c));
	it_sleep_ms(2500);
	printf("  network_cut: link of %s down at t=%dms\n", ns_name[1],
	    it_load_elapsed_ms(l));
	assert_int_equal(
	    it_sh("%s -n %s link set ve0 down", ip, ns_name[1]), 0);
	it_load_wait(l, 15000);
	it_load_finish(l, &res);
	assert_true(it_proc_alive(&nrep[1])); /* cut off, not dead */
	if (res.failures != 0) {
		fail_msg("%ld of %ld GETs failed after a replica's link went "
		         "down",
		    res.failures, res.requests);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(
	        test_resilience_replica_killed, kill_setup, stop_stack),
	    cmocka_unit_test_setup_teardown(
	        test_resilience_rolling_restart, rolling_setup, stop_stack),
	    cmocka_unit_test_setup_teardown(
	        test_resilience_replica_sigstop, stop_setup, stop_stack),
	    cmocka_unit_test_setup_teardown(
	        test_resilience_redis_down, redis_setup, stop_stack),
	    cmocka_unit_test_setup_teardown(
	        test_resilience_postgres_down, pg_setup, pg_teardown),
	    cmocka_unit_test_teardown(
	        test_resilience_dns_discovery, dns_teardown),
	    cmocka_unit_test_teardown(
	        test_resilience_network_cut, netns_teardown),
	};
	int failed;

	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	/* IT_FILTER=test_resilience_dns* runs only the matching tests. */
	if (getenv("IT_FILTER") != NULL && *getenv("IT_FILTER") != '\0') {
		cmocka_set_test_filter(getenv("IT_FILTER"));
	}
	failed = cmocka_run_group_tests_name("resilience", tests, NULL, NULL);
	return failed != 0 || it_stack_failures() != 0;
}
