/* test_security.c - API keys and rate limits on real processes.
 *
 * Group "auth": one replica and a gateway with a keys file of this test's
 * own: writes need a key (401 with WWW-Authenticate otherwise, before the
 * body is looked at), reads are public, SIGHUP swaps the keys (a broken
 * file keeps the old ones), and GATEWAY_AUTH_READS=1 protects reads.
 *
 * Group "ratelimit": gateways A and B share a private redis-server for
 * their buckets ("5/h burst 5": nothing refills during the test, so the
 * counts are exact) and trust 127.0.0.1 as a proxy, so each test is its
 * own client through X-Forwarded-For. Gateway C trusts no proxy and
 * names Redis "localhost" (resolved with evdns, not getaddrinfo). The
 * replicas use the suite's Redis, so stopping the private one touches
 * only the rate limiter.
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
#include <strings.h>
#include <unistd.h>

#include "it.h"
#include "it_check.h"
#include "it_fault.h"
#include "it_write.h"

#define NPRODUCTS 10
#define LIMIT     5 /* GATEWAY_RATE_LIMIT=5/h burst 5 */

static it_stack stack;
static char     keys_path[600];
static char     keys_env[700], admin_env[64];
static int      gw_admin;

/* ---- helpers ----------------------------------------------------------- */

static void
keys(const char *const *list)
{
	assert_int_equal(it_write_keys_file(keys_path, list), 0);
}

/* A POST of a new product with the given Authorization header line (NULL:
 * none at all). Returns the status. */
static int
post_with(int port, const char *authz)
{
	char         body[256], sku[64];
	const char  *hd[] = {authz != NULL ? authz : IT_NO_AUTH, NULL};
	it_http_resp r;
	int          st;

	it_unique(sku, sizeof(sku), "SEC");
	it_product_body(
	    body, sizeof(body), sku, "Secure lamp", "", 1999, "USD", 1);
	it_must_json(&r, port, "POST", "/products", IT_JSON, hd, body);
	st = r.status;
	if (st == 201) {
		/* the product really exists */
		assert_int_equal(it_rows_with_sku(sku), 1);
	} else {
		assert_int_equal(it_rows_with_sku(sku), 0);
	}
	it_http_resp_free(&r);
	return st;
}

static int
post_key(int port, const char *key)
{
	char h[600];
	it_auth_header(h, sizeof(h), key);
	return post_with(port, h);
}

static double
metric(int admin, const char *name, const char *filter)
{
	const char *f[] = {filter, NULL};
	return it_scrape_sum(admin, name, filter != NULL ? f : NULL);
}

/* ---- group "auth" ------------------------------------------------------ */

static const char *const auth_env[] = {keys_env, admin_env, NULL};

static int
auth_setup(void **state)
{
	static const char *const k[] = {"sec-key-1", NULL};

	(void) state;
	snprintf(keys_path, sizeof(keys_path), "%s/security-keys-%d",
	    it_tmpdir(), (int) getpid());
	snprintf(
	    keys_env, sizeof(keys_env), "GATEWAY_API_KEYS_FILE=%s", keys_path);
	if (it_write_keys_file(keys_path, k) != 0 ||
	    it_seed_products(NPRODUCTS) != 0 ||
	    (gw_admin = it_free_port()) < 0) {
		return -1;
	}
	snprintf(admin_env, sizeof(admin_env),
	    "GATEWAY_ADMIN_LISTEN=127.0.0.1:%d", gw_admin);
	return it_stack_start(&stack, 1, NULL, auth_env);
}

static int
auth_teardown(void **state)
{
	(void) state;
	return it_stack_stop(&stack);
}

static void
test_security_write_needs_key(void **state)
{
	it_http_resp r;
	const char  *www;
	const char  *none[] = {IT_NO_AUTH, NULL};
	const char  *bad[] = {"Authorization: Bearer not-a-key", NULL};
	double       missing0, invalid0;

	(void) state;
	missing0 = metric(
	    gw_admin, "gateway_auth_failures_total", "reason=\"missing\"");
	invalid0 = metric(
	    gw_admin, "gateway_auth_failures_total", "reason=\"invalid\"");

	/* no key: 401, a Bearer challenge, nothing written */
	it_must_json(&r, stack.gw_port, "POST", "/products", IT_JSON, none,
	    "{\"sku\":\"SEC-NOKEY\",\"name\":\"x\",\"price_cents\":1}");
	it_expect_problem(&r, 401, "unauthorized");
	www = it_http_header(&r, "WWW-Authenticate");
	assert_non_null(www);
	assert_int_equal(strncasecmp(www, "Bearer", 6), 0);
	it_http_resp_free(&r);
	assert_int_equal(it_rows_with_sku("SEC-NOKEY"), 0);

	/* a wrong key: 401 too, saying the token is invalid */
	it_must_json(&r, stack.gw_port, "POST", "/products", IT_JSON, bad,
	    "{\"sku\":\"SEC-BADKEY\",\"name\":\"x\",\"price_cents\":1}");
	it_expect_problem(&r, 401, "unauthorized");
	www = it_http_header(&r, "WWW-Authenticate");
	assert_non_null(www);
	assert_non_null(strstr(www, "invalid_token"));
	it_http_resp_free(&r);
	assert_int_equal(it_rows_with_sku("SEC-BADKEY"), 0);

	/* the key is checked before the body: a bad body still gets 401 */
	it_must_json(&r, stack.gw_port, "POST", "/products", "text/plain",
	    none, "not json");
	it_expect_problem(&r, 401, "unauthorized");
	it_http_resp_free(&r);

	/* PUT, PATCH and DELETE without a key change nothing */
	it_must_json(&r, stack.gw_port, "PATCH", "/products/2", IT_MERGE_PATCH,
	    none, "{\"stock\":99}");
	it_expect_problem(&r, 401, "unauthorized");
	it_http_resp_free(&r);
	it_must_json(
	    &r, stack.gw_port, "DELETE", "/products/2", NULL, bad, NULL);
	it_expect_problem(&r, 401, "unauthorized");
	it_http_resp_free(&r);
	assert_int_equal(it_row_version(2), 1);

	/* the good key writes */
	assert_int_equal(post_key(stack.gw_port, "sec-key-1"), 201);

	assert_true(metric(gw_admin, "gateway_auth_failures_total",
	                "reason=\"missing\"") >= missing0 + 3);
	assert_true(metric(gw_admin, "gateway_auth_failures_total",
	                "reason=\"invalid\"") >= invalid0 + 2);
	assert_true(metric(gw_admin, "gateway_auth_keys", NULL) == 1);
}

static void
test_security_reads_public(void **state)
{
	it_http_resp r;

	(void) state;
	it_must_get(&r, stack.gw_port, "/products/1", NULL);
	it_expect_status(&r, 200);
	it_http_resp_free(&r);
	it_must_get(&r, stack.gw_port, "/products?limit=3", NULL);
	it_expect_status(&r, 200);
	it_http_resp_free(&r);
	/* a wrong key on a public read does not make it fail */
	{
		const char *bad[] = {"Authorization: Bearer nope", NULL};
		it_must_get(&r, stack.gw_port, "/products/1", bad);
		it_expect_status(&r, 200);
		it_http_resp_free(&r);
	}
}

/* Waits up to 10 s for gateway_auth_reloads_total{result} to pass
 * above; returns its value. */
static double
wait_reloads(const char *result, double above)
{
	char    f[32];
	double  v = -1;
	int64_t end = it_now_ms() + 10000;

	snprintf(f, sizeof(f), "result=\"%s\"", result);
	while (it_now_ms() < end) {
		if ((v = metric(gw_admin, "gateway_auth_reloads_total", f)) >
		    above) {
			return v;
		}
		it_sleep_ms(50);
	}
	fail_msg("no reload (%s) counted in 10 s", result);
	return v;
}

static void
test_security_sighup_reload(void **state)
{
	static const char *const k2[] = {"sec-key-2", NULL};
	double                   ok0, err0;

	(void) state;
	ok0 = metric(gw_admin, "gateway_auth_reloads_total", "result=\"ok\"");
	err0 =
	    metric(gw_admin, "gateway_auth_reloads_total", "result=\"error\"");
	assert_int_equal(post_key(stack.gw_port, "sec-key-1"), 201);
	assert_int_equal(post_key(stack.gw_port, "sec-key-2"), 401);

	/* a new file: the new key works, the removed one fails */
	keys(k2);
	assert_int_equal(kill(stack.gw.pid, SIGHUP), 0);
	wait_reloads("ok", ok0 > 0 ? ok0 : 0);
	assert_int_equal(post_key(stack.gw_port, "sec-key-2"), 201);
	assert_int_equal(post_key(stack.gw_port, "sec-key-1"), 401);

	/* a broken file: an error is counted and the keys stay */
	assert_int_equal(it_write_keys_file(keys_path, NULL), 0);
	{
		FILE *f = fopen(keys_path, "a");
		assert_non_null(f);
		fputs("this is not a digest\n", f);
		fclose(f);
	}
	assert_int_equal(kill(stack.gw.pid, SIGHUP), 0);
	wait_reloads("error", err0 > 0 ? err0 : 0);
	assert_true(it_proc_alive(&stack.gw));
	assert_int_equal(post_key(stack.gw_port, "sec-key-2"), 201);
	assert_int_equal(post_key(stack.gw_port, "sec-key-1"), 401);
	assert_true(metric(gw_admin, "gateway_auth_keys", NULL) == 1);

	/* the suite's key file again, for the later tests */
	keys(k2);
}

/* A changed keys file is read again without SIGHUP, within
 * GATEWAY_API_KEYS_CHECK_S: replaced the way Kubernetes updates a Secret
 * volume (a new file renamed over the old one). */
static void
test_security_keys_file_watched(void **state)
{
	static const char *const ka[] = {"watch-key-a", NULL};
	static const char *const kb[] = {"watch-key-b", NULL};
	char                     path[700], tmp[710], env_keys[760];
	const char *env[] = {env_keys, "GATEWAY_API_KEYS_CHECK_S=1", NULL};
	it_proc     gw;
	int         port, st = 0;
	int64_t     t0, end;

	(void) state;
	snprintf(path, sizeof(path), "%s/watched-keys-%d", it_tmpdir(),
	    (int) getpid());
	snprintf(tmp, sizeof(tmp), "%s.new", path);
	snprintf(env_keys, sizeof(env_keys), "GATEWAY_API_KEYS_FILE=%s", path);
	assert_int_equal(it_write_keys_file(path, ka), 0);
	assert_int_equal(
	    it_gateway_start(&gw, &port, stack.upstreams, env), 0);
	assert_int_equal(post_key(port, "watch-key-a"), 201);
	assert_int_equal(post_key(port, "watch-key-b"), 401);

	assert_int_equal(it_write_keys_file(tmp, kb), 0);
	assert_int_equal(rename(tmp, path), 0);
	t0 = it_now_ms();
	end = t0 + 10000;
	while (
	    it_now_ms() < end && (st = post_key(port, "watch-key-b")) != 201) {
		it_sleep_ms(200);
	}
	assert_int_equal(st, 201);
	assert_int_equal(post_key(port, "watch-key-a"), 401);
	printf("  security: the replaced keys file was in use %lld ms "
	       "later, without SIGHUP\n",
	    (long long) (it_now_ms() - t0));
	it_proc_stop(&gw, SIGTERM, 5000);
	assert_int_equal(it_proc_sanitizer_reports(&gw), 0);
	unlink(path);
}

static void
test_security_auth_reads(void **state)
{
	static const char *const env[] = {
	    keys_env, "GATEWAY_AUTH_READS=1", NULL};
	static const char *const k2[] = {"sec-key-2", NULL};
	it_proc                  gw;
	int                      port;
	it_http_resp             r;
	const char *good[] = {"Authorization: Bearer sec-key-2", NULL};

	(void) state;
	keys(k2);
	assert_int_equal(
	    it_gateway_start(&gw, &port, stack.upstreams, env), 0);
	it_must_get(&r, port, "/products/1", NULL);
	it_expect_problem(&r, 401, "unauthorized");
	assert_non_null(it_http_header(&r, "WWW-Authenticate"));
	it_http_resp_free(&r);
	it_must_get(&r, port, "/products?limit=2", NULL);
	it_expect_problem(&r, 401, "unauthorized");
	it_http_resp_free(&r);
	it_must_get(&r, port, "/products/1", good);
	it_expect_status(&r, 200);
	it_http_resp_free(&r);
	/* probes stay open for the load balancer and Kubernetes */
	it_must_get(&r, port, "/healthz", NULL);
	it_expect_status(&r, 200);
	it_http_resp_free(&r);
	it_must_get(&r, port, "/readyz", NULL);
	it_expect_status(&r, 200);
	it_http_resp_free(&r);
	it_proc_stop(&gw, SIGTERM, 5000);
	assert_int_equal(it_proc_sanitizer_reports(&gw), 0);
}

/* ---- group "ratelimit" ------------------------------------------------- */

static it_proc           rl_redis;
static int               rl_redis_port;
static it_proc           gwb, gwc;
static int               gwb_port, gwc_port;
static char              rl_url_env[128], rl_name_env[128];
static const char *const rl_env[] = {rl_url_env, admin_env,
    "GATEWAY_RATE_LIMIT=5/h burst 5", "GATEWAY_TRUSTED_PROXIES=127.0.0.1/32",
    "GATEWAY_REDIS_TIMEOUT_MS=2000", NULL};
static const char *const rl_env_b[] = {rl_url_env,
    "GATEWAY_RATE_LIMIT=5/h burst 5", "GATEWAY_TRUSTED_PROXIES=127.0.0.1/32",
    "GATEWAY_REDIS_TIMEOUT_MS=2000", NULL};
/* C names Redis by host name: the lookup goes through evdns. */
static const char *const rl_env_c[] = {rl_name_env,
    "GATEWAY_RATE_LIMIT=5/h burst 5", "GATEWAY_REDIS_TIMEOUT_MS=2000", NULL};

static int
rl_setup(void **state)
{
	(void) state;
	if ((rl_redis_port = it_free_port()) < 0 ||
	    (gw_admin = it_free_port()) < 0 ||
	    it_redis_server_start(&rl_redis, rl_redis_port) != 0) {
		return -1;
	}
	snprintf(rl_url_env, sizeof(rl_url_env),
	    "GATEWAY_REDIS_URL=redis://127.0.0.1:%d/0", rl_redis_port);
	snprintf(rl_name_env, sizeof(rl_name_env),
	    "GATEWAY_REDIS_URL=redis://localhost:%d/0", rl_redis_port);
	snprintf(admin_env, sizeof(admin_env),
	    "GATEWAY_ADMIN_LISTEN=127.0.0.1:%d", gw_admin);
	if (it_stack_start(&stack, 1, it_env("IT_REDIS_URL"), rl_env) != 0) {
		goto fail;
	}
	if (it_gateway_start(&gwb, &gwb_port, stack.upstreams, rl_env_b) !=
	    0) {
		it_stack_stop(&stack);
		goto fail;
	}
	if (it_gateway_start(&gwc, &gwc_port, stack.upstreams, rl_env_c) !=
	    0) {
		it_proc_stop(&gwb, SIGTERM, 5000);
		it_stack_stop(&stack);
		goto fail;
	}
	return 0;
fail:
	it_proc_stop(&rl_redis, SIGKILL, 2000);
	return -1;
}

static int
rl_teardown(void **state)
{
	int rv;

	(void) state;
	it_proc_stop(&gwb, SIGTERM, 5000);
	it_proc_stop(&gwc, SIGTERM, 5000);
	rv = it_stack_stop(&stack);
	if (it_proc_sanitizer_reports(&gwb) + it_proc_sanitizer_reports(&gwc) >
	    0) {
		rv = -1;
	}
	it_proc_stop(&rl_redis, SIGTERM, 5000);
	return rv;
}

/* GET /products/1 through port as the client at address xff (NULL: no
 * X-Forwarded-For) with an optional extra header. */
static void
get_as(it_http_resp *r, int port, const char *xff, const char *extra)
{
	char        h[96];
	const char *hd[3] = {NULL, NULL, NULL};
	int         n = 0;

	if (xff != NULL) {
		snprintf(h, sizeof(h), "X-Forwarded-For: %s", xff);
		hd[n++] = h;
	}
	hd[n++] = extra;
	it_must_get(r, port, "/products/1", hd);
}

static long
header_num(const it_http_resp *r, const char *name)
{
	const char *v = it_http_header(r, name);
	char       *end;
	long        n;

	if (v == NULL) {
		it_print_resp(r);
		fail_msg("no %s header", name);
	}
	n = strtol(v, &end, 10);
	if (end == v || *end != '\0') {
		fail_msg("%s: %s is not a number", name, v);
	}
	return n;
}

static void
test_security_429_with_headers(void **state)
{
	it_http_resp r;
	char         h[600];
	double lim0 = metric(gw_admin, "gateway_ratelimit_decisions_total",
	    "result=\"limited\"");

	(void) state;
	for (int i = 0; i < LIMIT; i++) {
		get_as(&r, stack.gw_port, "198.51.100.1", NULL);
		it_expect_status(&r, 200);
		assert_int_equal(header_num(&r, "RateLimit-Limit"), LIMIT);
		assert_int_equal(
		    header_num(&r, "RateLimit-Remaining"), LIMIT - 1 - i);
		it_http_resp_free(&r);
	}
	get_as(&r, stack.gw_port, "198.51.100.1", NULL);
	it_expect_problem(&r, 429, "too-many-requests");
	assert_true(header_num(&r, "Retry-After") >= 1);
	assert_int_equal(header_num(&r, "RateLimit-Limit"), LIMIT);
	assert_int_equal(header_num(&r, "RateLimit-Remaining"), 0);
	it_http_resp_free(&r);

	/* an API key is a client of its own, whatever its address */
	it_auth_header(h, sizeof(h), it_api_key());
	get_as(&r, stack.gw_port, "198.51.100.1", h);
	it_expect_status(&r, 200);
	assert_int_equal(header_num(&r, "RateLimit-Remaining"), LIMIT - 1);
	it_http_resp_free(&r);

	/* the buckets are in Redis, named by address or digest prefix */
	assert_int_equal(
	    it_redis_count_keys(rl_redis_port, "gw:rl:a:198.51.100.1"), 1);
	assert_int_equal(it_redis_count_keys(rl_redis_port, "gw:rl:k:*"), 1);
	snprintf(h, sizeof(h), "*%s*", it_api_key());
	assert_int_equal(it_redis_count_keys(rl_redis_port, h), 0);
	assert_true(metric(gw_admin, "gateway_ratelimit_decisions_total",
	                "result=\"limited\"") >= lim0 + 1);
	assert_true(metric(gw_admin, "gateway_ratelimit_decisions_total",
	                "source=\"local\"") <= 0);
}

static void
test_security_gateways_share_bucket(void **state)
{
	it_http_resp r;
	int          allowed = 0, limited = 0;

	(void) state;
	/* 3 through A and 2 through B use the client's 5: each gateway
	 * alone (2 loops of 3 local tokens) would still allow more. */
	for (int i = 0; i < LIMIT; i++) {
		get_as(&r, i < 3 ? stack.gw_port : gwb_port, "198.51.100.2",
		    NULL);
		it_expect_status(&r, 200);
		it_http_resp_free(&r);
	}
	for (int i = 0; i < 4; i++) {
		get_as(&r, i % 2 ? stack.gw_port : gwb_port, "198.51.100.2",
		    NULL);
		allowed += r.status == 200;
		limited += r.status == 429;
		it_http_resp_free(&r);
	}
	assert_int_equal(allowed, 0);
	assert_int_equal(limited, 4);
}

static void
test_security_xff_only_from_trusted(void **state)
{
	it_http_resp r;
	char         xff[32];

	(void) state;
	/* C trusts no proxy: the header is ignored and every request is
	 * 127.0.0.1's, whatever address it claims. */
	for (int i = 0; i < LIMIT; i++) {
		snprintf(xff, sizeof(xff), "203.0.113.%d", i + 1);
		get_as(&r, gwc_port, xff, NULL);
		it_expect_status(&r, 200);
		it_http_resp_free(&r);
	}
	get_as(&r, gwc_port, "203.0.113.77", NULL);
	it_expect_status(&r, 429);
	it_http_resp_free(&r);
	assert_int_equal(
	    it_redis_count_keys(rl_redis_port, "gw:rl:a:127.0.0.1"), 1);
	assert_int_equal(
	    it_redis_count_keys(rl_redis_port, "gw:rl:a:203.*"), 0);

	/* A trusts 127.0.0.1: the client it names is the client, and a
	 * forged entry to its left is not */
	get_as(&r, stack.gw_port, "203.0.113.77", NULL);
	it_expect_status(&r, 200);
	it_http_resp_free(&r);
	get_as(&r, stack.gw_port, "198.51.100.1, 203.0.113.78", NULL);
	it_expect_status(&r, 200); /* 198.51.100.1 is spent, 203... not */
	it_http_resp_free(&r);
	assert_int_equal(
	    it_redis_count_keys(rl_redis_port, "gw:rl:a:203.0.113.7*"), 2);
}

static void
test_security_redis_down_local_fallback(void **state)
{
	it_http_resp r;
	int          allowed = 0, limited = 0, other = 0;
	double       local0 = metric(
	          gw_admin, "gateway_ratelimit_decisions_total", "source=\"local\"");
	int64_t end;

	(void) state;
	assert_int_equal(it_proc_stop(&rl_redis, SIGTERM, 5000), 0);
	/* Every request is answered at once: served, or limited by the
	 * loops' own buckets (ceil(5/2) = 3 tokens each, 2 loops). */
	for (int i = 0; i < 20; i++) {
		get_as(&r, stack.gw_port, "198.51.100.3", NULL);
		if (r.status == 200) {
			allowed++;
		} else if (r.status == 429) {
			limited++;
			assert_true(header_num(&r, "Retry-After") >= 1);
		} else {
			other++;
			it_print_resp(&r);
		}
		it_http_resp_free(&r);
	}
	printf("  security: Redis down: %d allowed, %d limited\n", allowed,
	    limited);
	assert_int_equal(other, 0);
	assert_true(allowed >= 1);
	assert_true(allowed <= 6);
	assert_true(metric(gw_admin, "gateway_ratelimit_decisions_total",
	                "source=\"local\"") >= local0 + 20);
	/* writes with a key are served too */
	assert_int_equal(post_key(stack.gw_port, it_api_key()), 201);

	/* Redis back on its port: the gateways reconnect and share again */
	assert_int_equal(it_redis_server_start(&rl_redis, rl_redis_port), 0);
	end = it_now_ms() + 15000;
	while (
	    it_redis_count_keys(rl_redis_port, "gw:rl:a:198.51.100.9") != 1) {
		if (it_now_ms() > end) {
			fail_msg("no bucket in Redis 15 s after its return");
		}
		get_as(&r, stack.gw_port, "198.51.100.9", NULL);
		it_http_resp_free(&r);
		it_sleep_ms(100);
	}
}

int
main(void)
{
	const struct CMUnitTest auth[] = {
	    cmocka_unit_test(test_security_write_needs_key),
	    cmocka_unit_test(test_security_reads_public),
	    cmocka_unit_test(test_security_sighup_reload),
	    cmocka_unit_test(test_security_keys_file_watched),
	    cmocka_unit_test(test_security_auth_reads),
	};
	const struct CMUnitTest rl[] = {
	    cmocka_unit_test(test_security_429_with_headers),
	    cmocka_unit_test(test_security_gateways_share_bucket),
	    cmocka_unit_test(test_security_xff_only_from_trusted),
	    cmocka_unit_test(test_security_redis_down_local_fallback),
	};
	int failed = 0;

	failed += cmocka_run_group_tests_name(
	    "auth", auth, auth_setup, auth_teardown);
	failed += cmocka_run_group_tests_name(
	    "ratelimit", rl, rl_setup, rl_teardown);
	return failed + it_stack_failures();
}
