/* test_gw_ratelimit.c - GATEWAY_RATE_LIMIT parsing, trusted proxy blocks,
 * the client address behind X-Forwarded-For, and the local buckets' math
 * on an injected clock. (The Redis script runs in test_security.) */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cm.h"
#include "gw.h"

static void
test_rl_parse_limit_good(void **state)
{
	gw_rl_limit l;

	(void) state;
	assert_int_equal(gw_rl_parse_limit("100/s burst 200", &l), CM_OK);
	assert_true(l.rate == 100.0);
	assert_int_equal(l.burst, 200);
	assert_int_equal(gw_rl_parse_limit("100/s", &l), CM_OK);
	assert_true(l.rate == 100.0);
	assert_int_equal(l.burst, 100);
	assert_int_equal(gw_rl_parse_limit("600/m", &l), CM_OK);
	assert_true(l.rate == 10.0);
	assert_int_equal(l.burst, 600);
	assert_int_equal(gw_rl_parse_limit(" 36 / h  burst\t5 ", &l), CM_OK);
	assert_true(fabs(l.rate - 0.01) < 1e-12);
	assert_int_equal(l.burst, 5);
	assert_int_equal(gw_rl_parse_limit("1000000000/s", &l), CM_OK);
}

static void
test_rl_parse_limit_bad(void **state)
{
	static const char *bad[] = {"", " ", "100", "100/", "/s", "0/s",
	    "-5/s", "1.5/s", "100/x", "100/sec", "100/S", "100 s",
	    "100/s burst", "100/s burst 0", "100/s burst -1", "100/s burst x",
	    "100/s burst 5 more", "100/s 200", "100/sburst 5", "1000000001/s",
	    "99999999999999999999/s", "100/s burst 1000000001"};
	gw_rl_limit        l;

	(void) state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (gw_rl_parse_limit(bad[i], &l) != CM_EINVAL) {
			fail_msg("accepted \"%s\"", bad[i]);
		}
	}
	assert_int_equal(gw_rl_parse_limit(NULL, &l), CM_EINVAL);
}

static void
test_rl_cidrs_match(void **state)
{
	gw_cidrs *c;
	char      err[128];

	(void) state;
	assert_int_equal(gw_cidrs_parse("10.0.0.0/8, 192.168.1.1,::1, "
	                                "fd00::/8 ,172.16.0.0/12",
	                     &c, err, sizeof(err)),
	    CM_OK);
	assert_true(gw_cidrs_match(c, "10.0.0.1"));
	assert_true(gw_cidrs_match(c, "10.255.255.255"));
	assert_false(gw_cidrs_match(c, "11.0.0.1"));
	assert_true(gw_cidrs_match(c, "192.168.1.1"));
	assert_false(gw_cidrs_match(c, "192.168.1.2"));
	assert_true(gw_cidrs_match(c, "172.31.0.1"));
	assert_false(gw_cidrs_match(c, "172.32.0.1"));
	assert_true(gw_cidrs_match(c, "::1"));
	assert_false(gw_cidrs_match(c, "::2"));
	assert_true(gw_cidrs_match(c, "fd12:3456::1"));
	assert_false(gw_cidrs_match(c, "fe80::1"));
	/* an IPv4 peer seen on a dual-stack socket */
	assert_true(gw_cidrs_match(c, "::ffff:10.1.2.3"));
	assert_false(gw_cidrs_match(c, "::ffff:11.1.2.3"));
	assert_false(gw_cidrs_match(c, "not-an-ip"));
	assert_false(gw_cidrs_match(c, ""));
	assert_false(gw_cidrs_match(c, NULL));
	gw_cidrs_free(c);

	/* 0.0.0.0/0 is every IPv4 address, and no IPv6 one */
	assert_int_equal(
	    gw_cidrs_parse("0.0.0.0/0", &c, err, sizeof(err)), CM_OK);
	assert_true(gw_cidrs_match(c, "203.0.113.9"));
	assert_false(gw_cidrs_match(c, "2001:db8::1"));
	gw_cidrs_free(c);
	/* the empty list trusts no one */
	assert_int_equal(gw_cidrs_parse("", &c, err, sizeof(err)), CM_OK);
	assert_false(gw_cidrs_match(c, "127.0.0.1"));
	gw_cidrs_free(c);
}

static void
test_rl_cidrs_bad(void **state)
{
	static const char *bad[] = {"10.0.0.0/33", "::/129", "abc",
	    "10.0.0.0/", "1.2.3.4,,5.6.7.8", "1.2.3.4/8x", "1.2.3/24",
	    "10.0.0.0/-1", ",", "1.2.3.4,", "10.0.0.0/0008"};
	gw_cidrs          *c = NULL;
	char               err[128];

	(void) state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (gw_cidrs_parse(bad[i], &c, err, sizeof(err)) !=
		    CM_EINVAL) {
			fail_msg("accepted \"%s\"", bad[i]);
		}
	}
}

static void
client(const char *trusted, const char *peer, const char *xff, char *out)
{
	gw_cidrs *c;
	char      err[128];

	assert_int_equal(gw_cidrs_parse(trusted, &c, err, sizeof(err)), CM_OK);
	gw_rl_client_addr(c, peer, xff, out, GW_CLIENT_MAX);
	gw_cidrs_free(c);
}

static void
test_rl_client_behind_proxies(void **state)
{
	char        out[GW_CLIENT_MAX];
	const char *tr = "10.0.0.0/8,2001:db8:1::/48";

	(void) state;
	/* no proxy trusted: X-Forwarded-For is ignored */
	client("", "203.0.113.7", "198.51.100.1", out);
	assert_string_equal(out, "a:203.0.113.7");
	/* an untrusted peer's header is ignored too */
	client(tr, "203.0.113.7", "198.51.100.1", out);
	assert_string_equal(out, "a:203.0.113.7");
	/* a trusted peer: the rightmost address it did not append */
	client(tr, "10.0.0.1", "198.51.100.1", out);
	assert_string_equal(out, "a:198.51.100.1");
	/* the client forged entries on the left; two proxies appended */
	client(
	    tr, "10.0.0.1", "1.1.1.1, 2.2.2.2, 198.51.100.1, 10.0.0.9", out);
	assert_string_equal(out, "a:198.51.100.1");
	/* every hop trusted: the leftmost */
	client(tr, "10.0.0.1", "10.0.0.3,10.0.0.2", out);
	assert_string_equal(out, "a:10.0.0.3");
	/* garbage stops the walk at the hop to its right */
	client(tr, "10.0.0.1", "1.2.3.4, junk, 10.0.0.2", out);
	assert_string_equal(out, "a:10.0.0.2");
	client(tr, "10.0.0.1", "junk", out);
	assert_string_equal(out, "a:10.0.0.1");
	client(tr, "10.0.0.1", "", out);
	assert_string_equal(out, "a:10.0.0.1");
	/* no header */
	client(tr, "10.0.0.1", NULL, out);
	assert_string_equal(out, "a:10.0.0.1");
	/* IPv6, brackets, and one spelling per address */
	client(tr, "2001:db8:1::5", "[2001:DB8::1]", out);
	assert_string_equal(out, "a:2001:db8::1");
	client(tr, "::ffff:10.0.0.1", "198.51.100.2", out);
	assert_string_equal(out, "a:198.51.100.2");
	client("", "::ffff:203.0.113.7", NULL, out);
	assert_string_equal(out, "a:203.0.113.7");
	/* no IP peer at all */
	client(tr, NULL, "198.51.100.1", out);
	assert_string_equal(out, "a:-");
}

static void
test_rl_bucket_math(void **state)
{
	gw_rl_bucket   b = {0};
	gw_rl_decision d;
	int64_t        t = 1000000;

	(void) state;
	/* 2 a second, burst 3: three at once, then one each 500 ms */
	for (int i = 0; i < 3; i++) {
		gw_rl_bucket_take(&b, 2, 3, t, &d);
		assert_true(d.allowed);
		assert_int_equal(d.remaining, 2 - i);
		assert_int_equal(d.limit, 3);
		assert_int_equal(d.source, GW_RL_LOCAL);
	}
	gw_rl_bucket_take(&b, 2, 3, t, &d);
	assert_false(d.allowed);
	assert_int_equal(d.remaining, 0);
	assert_int_equal(d.retry_after_s, 1); /* 0.5 s, rounded up */
	gw_rl_bucket_take(&b, 2, 3, t + 499000, &d);
	assert_false(d.allowed);
	gw_rl_bucket_take(&b, 2, 3, t + 500000, &d);
	assert_true(d.allowed);
	assert_int_equal(d.remaining, 0);
	/* a long pause refills to the burst, not beyond */
	t += 60000000;
	for (int i = 0; i < 3; i++) {
		gw_rl_bucket_take(&b, 2, 3, t, &d);
		assert_true(d.allowed);
	}
	gw_rl_bucket_take(&b, 2, 3, t, &d);
	assert_false(d.allowed);
	/* a clock that steps back takes nothing away and adds nothing */
	gw_rl_bucket_take(&b, 2, 3, t - 5000000, &d);
	assert_false(d.allowed);

	/* 6 a minute: Retry-After counts whole seconds, rounded up */
	memset(&b, 0, sizeof(b));
	gw_rl_bucket_take(&b, 0.1, 1, t, &d);
	assert_true(d.allowed);
	gw_rl_bucket_take(&b, 0.1, 1, t, &d);
	assert_false(d.allowed);
	assert_int_equal(d.retry_after_s, 10);
	gw_rl_bucket_take(&b, 0.1, 1, t + 2500000, &d);
	assert_int_equal(d.retry_after_s, 8); /* 7.5 s left */
}

static int64_t fake_now;

static int64_t
fake_clock(void)
{
	return fake_now;
}

static void
test_rl_local_limiter_per_loop_share(void **state)
{
	gw_rl         *rl;
	gw_rl_opts     o = {0};
	gw_rl_decision d;
	char           err[128];
	int            allowed = 0;

	(void) state;
	/* 4 a second, burst 4, over 2 loops: this loop holds 2 a second,
	 * burst 2, per client; headers name the whole limit. */
	assert_int_equal(gw_rl_parse_limit("4/s burst 4", &o.limit), CM_OK);
	o.nloops = 2;
	o.now_us = fake_clock;
	fake_now = 5000000;
	assert_int_equal(gw_rl_new(&rl, NULL, &o, err, sizeof(err)), CM_OK);
	for (int i = 0; i < 10; i++) {
		assert_int_equal(
		    gw_rl_check(rl, "a:192.0.2.1", NULL, NULL, &d), 0);
		assert_int_equal(d.limit, 4);
		assert_int_equal(d.source, GW_RL_LOCAL);
		allowed += d.allowed;
	}
	assert_int_equal(allowed, 2);
	/* another client has its own bucket */
	assert_int_equal(
	    gw_rl_check(rl, "k:0123456789abcdef", NULL, NULL, &d), 0);
	assert_true(d.allowed);
	/* a second later the first client has 2 again */
	fake_now += 1000000;
	allowed = 0;
	for (int i = 0; i < 10; i++) {
		gw_rl_check(rl, "a:192.0.2.1", NULL, NULL, &d);
		allowed += d.allowed;
	}
	assert_int_equal(allowed, 2);
	/* many clients: the table recycles slots and keeps deciding */
	for (int i = 0; i < 20000; i++) {
		char id[32];
		snprintf(id, sizeof(id), "a:10.%d.%d.%d", i >> 16,
		    (i >> 8) & 255, i & 255);
		gw_rl_check(rl, id, NULL, NULL, &d);
		assert_true(d.allowed);
	}
	gw_rl_free(rl);
}

static void
test_rl_new_rejects_bad_redis_url(void **state)
{
	gw_rl     *rl = NULL;
	gw_rl_opts o = {0};
	char       err[128];

	(void) state;
	assert_int_equal(gw_rl_parse_limit("1/s", &o.limit), CM_OK);
	o.redis_url = "http://127.0.0.1:6379";
	assert_int_equal(
	    gw_rl_new(&rl, NULL, &o, err, sizeof(err)), CM_EINVAL);
	assert_null(rl);
	gw_rl_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rl_parse_limit_good),
	    cmocka_unit_test(test_rl_parse_limit_bad),
	    cmocka_unit_test(test_rl_cidrs_match),
	    cmocka_unit_test(test_rl_cidrs_bad),
	    cmocka_unit_test(test_rl_client_behind_proxies),
	    cmocka_unit_test(test_rl_bucket_math),
	    cmocka_unit_test(test_rl_local_limiter_per_loop_share),
	    cmocka_unit_test(test_rl_new_rejects_bad_redis_url),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
