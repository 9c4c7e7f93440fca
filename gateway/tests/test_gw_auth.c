/* test_gw_auth.c - the keys file, digests, Bearer parsing, the decision
 * per request, and SIGHUP reloads (a bad file keeps the old set). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cm.h"
#include "gw.h"

/* SHA-256("abc") and SHA-256("") (FIPS 180-2 test vectors). */
#define ABC "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define EMPTY \
	"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static void
hex(const uint8_t *d, char out[65])
{
	for (int i = 0; i < 32; i++) {
		snprintf(out + 2 * i, 3, "%02x", d[i]);
	}
}

static void
digest_of(const char *key, uint8_t d[GW_AUTH_DIGEST_LEN])
{
	gw_auth_digest(key, strlen(key), d);
}

static void
test_auth_digest_vectors(void **state)
{
	uint8_t d[32];
	char    h[65];

	(void) state;
	digest_of("abc", d);
	hex(d, h);
	assert_string_equal(h, ABC);
	digest_of("", d);
	hex(d, h);
	assert_string_equal(h, EMPTY);
}

static void
test_auth_parse_good_file(void **state)
{
	const char text[] = "# API keys of the catalog\n"
	                    "\n" ABC "\n"
	                    "   " EMPTY "  \r\n"
	                    "\t# indented comment\n"
	                    "   \n" ABC; /* no final newline, duplicate */
	gw_keyset *ks;
	char       err[160];
	uint8_t    d[32];

	(void) state;
	assert_int_equal(
	    gw_keyset_parse(text, strlen(text), &ks, err, sizeof(err)), CM_OK);
	assert_int_equal(gw_keyset_count(ks), 3);
	digest_of("abc", d);
	assert_int_equal(gw_keyset_match(ks, d), 1);
	digest_of("", d);
	assert_int_equal(gw_keyset_match(ks, d), 1);
	digest_of("abd", d);
	assert_int_equal(gw_keyset_match(ks, d), 0);
	gw_keyset_free(ks);

	assert_int_equal(gw_keyset_parse("", 0, &ks, err, sizeof(err)), CM_OK);
	assert_int_equal(gw_keyset_count(ks), 0);
	digest_of("abc", d);
	assert_int_equal(gw_keyset_match(ks, d), 0);
	gw_keyset_free(ks);
}

static void
test_auth_parse_bad_lines(void **state)
{
	static const char *bad[] = {
	    /* upper case */
	    "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
	    /* 63 and 65 characters */
	    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a",
	    ABC "0",
	    /* sha256sum's own output, not cut */
	    ABC "  -",
	    /* a key instead of its digest */
	    "my-secret-key",
	    /* a comment after the digest */
	    ABC " # ci",
	    "g" ABC,
	};
	char       text[300], err[160];
	gw_keyset *ks = NULL;

	(void) state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "# ok\n" EMPTY "\n%s\n", bad[i]);
		err[0] = '\0';
		if (gw_keyset_parse(text, strlen(text), &ks, err,
		        sizeof(err)) != CM_EINVAL) {
			fail_msg("accepted %s", bad[i]);
		}
		assert_non_null(strstr(err, "line 3"));
	}
}

static void
test_auth_match_every_position(void **state)
{
	char       text[64 * 70 + 1] = "";
	gw_keyset *ks;
	char       err[160], h[65];
	uint8_t    d[32];

	(void) state;
	/* 64 keys "key-0".."key-63": each one matches wherever it sits; a
	 * digest one bit away from any does not. */
	for (int i = 0; i < 64; i++) {
		char k[16];
		snprintf(k, sizeof(k), "key-%d", i);
		digest_of(k, d);
		hex(d, h);
		strcat(text, h);
		strcat(text, "\n");
	}
	assert_int_equal(
	    gw_keyset_parse(text, strlen(text), &ks, err, sizeof(err)), CM_OK);
	for (int i = 0; i < 64; i++) {
		char k[16];
		snprintf(k, sizeof(k), "key-%d", i);
		digest_of(k, d);
		assert_int_equal(gw_keyset_match(ks, d), 1);
		d[31] ^= 1;
		assert_int_equal(gw_keyset_match(ks, d), 0);
		d[31] ^= 1;
		d[0] ^= 0x80;
		assert_int_equal(gw_keyset_match(ks, d), 0);
	}
	gw_keyset_free(ks);
}

static void
test_auth_bearer_parsing(void **state)
{
	const char *k;
	size_t      n;

	(void) state;
	assert_int_equal(gw_auth_bearer("Bearer abc", &k, &n), 1);
	assert_int_equal(n, 3);
	assert_memory_equal(k, "abc", 3);
	assert_int_equal(
	    gw_auth_bearer("bearer   a.b-c_d~e+f/g==", &k, &n), 1);
	assert_int_equal(n, strlen("a.b-c_d~e+f/g=="));
	assert_int_equal(gw_auth_bearer("BEARER xyz  ", &k, &n), 1);
	assert_int_equal(n, 3);
	/* not a Bearer credential at all: "missing" */
	assert_int_equal(gw_auth_bearer("Basic dXNlcjpwYXNz", &k, &n), 0);
	assert_int_equal(gw_auth_bearer("Bearerabc", &k, &n), 0);
	assert_int_equal(gw_auth_bearer("", &k, &n), 0);
	assert_int_equal(gw_auth_bearer(NULL, &k, &n), 0);
	/* a Bearer credential that is malformed: "invalid" */
	assert_int_equal(gw_auth_bearer("Bearer", &k, &n), -1);
	assert_int_equal(gw_auth_bearer("Bearer ", &k, &n), -1);
	assert_int_equal(gw_auth_bearer("Bearer a b", &k, &n), -1);
	assert_int_equal(gw_auth_bearer("Bearer a=b", &k, &n), -1);
	assert_int_equal(gw_auth_bearer("Bearer k\"ey", &k, &n), -1);
	{
		char long_key[GW_AUTH_KEY_MAX + 16];
		memcpy(long_key, "Bearer ", 7);
		memset(long_key + 7, 'a', GW_AUTH_KEY_MAX + 1);
		long_key[7 + GW_AUTH_KEY_MAX + 1] = '\0';
		assert_int_equal(gw_auth_bearer(long_key, &k, &n), -1);
		long_key[7 + GW_AUTH_KEY_MAX] = '\0';
		assert_int_equal(gw_auth_bearer(long_key, &k, &n), 1);
	}
}

/* Writes the digests of keys (NULL-terminated) to path, or raw text
 * when raw is not NULL. */
static void
write_keys(const char *path, const char *const *keys, const char *raw)
{
	FILE   *f = fopen(path, "w");
	uint8_t d[32];
	char    h[65];

	assert_non_null(f);
	if (raw != NULL) {
		fputs(raw, f);
	}
	for (int i = 0; keys != NULL && keys[i] != NULL; i++) {
		digest_of(keys[i], d);
		hex(d, h);
		fprintf(f, "%s\n", h);
	}
	assert_int_equal(fclose(f), 0);
}

static char tmpdir[] = "/tmp/test_gw_auth.XXXXXX";

static gw_auth_result
check(gw_auth *a, int write, const char *authz, char *client)
{
	return gw_auth_check(a, 0, write, authz, authz != NULL, client);
}

static void
test_auth_check_requests(void **state)
{
	char                     path[128], client[GW_CLIENT_MAX], err[256];
	char                     want[GW_CLIENT_MAX], h[65];
	uint8_t                  d[32];
	gw_auth                 *a;
	static const char *const keys[] = {"good-key", NULL};

	(void) state;
	snprintf(path, sizeof(path), "%s/keys", tmpdir);
	write_keys(path, keys, "# test\n");
	assert_int_equal(gw_auth_new(&a, path, 0, 2, err, sizeof(err)), CM_OK);
	assert_int_equal(gw_auth_keys(a), 1);

	/* writes */
	assert_int_equal(check(a, 1, NULL, client), GW_AUTH_MISSING);
	assert_int_equal(
	    check(a, 1, "Basic Zm9vOmJhcg==", client), GW_AUTH_MISSING);
	assert_int_equal(
	    check(a, 1, "Bearer bad-key", client), GW_AUTH_INVALID);
	assert_int_equal(check(a, 1, "Bearer ", client), GW_AUTH_INVALID);
	assert_int_equal(check(a, 1, "Bearer good-key", client), GW_AUTH_KEY);
	/* the client id is a prefix of the digest, never the key */
	digest_of("good-key", d);
	hex(d, h);
	snprintf(want, sizeof(want), "k:%.16s", h);
	assert_string_equal(client, want);
	assert_null(strstr(client, "good"));
	/* two Authorization headers: refused even when one is good */
	assert_int_equal(gw_auth_check(a, 1, 1, "Bearer good-key", 2, client),
	    GW_AUTH_INVALID);
	/* reads are public; a good key still names the client */
	assert_int_equal(check(a, 0, NULL, client), GW_AUTH_ANON);
	assert_int_equal(check(a, 0, "Bearer bad-key", client), GW_AUTH_ANON);
	assert_int_equal(check(a, 0, "Bearer good-key", client), GW_AUTH_KEY);
	gw_auth_free(a);

	/* GATEWAY_AUTH_READS=1 */
	assert_int_equal(gw_auth_new(&a, path, 1, 1, err, sizeof(err)), CM_OK);
	assert_int_equal(check(a, 0, NULL, client), GW_AUTH_MISSING);
	assert_int_equal(
	    check(a, 0, "Bearer bad-key", client), GW_AUTH_INVALID);
	assert_int_equal(check(a, 0, "Bearer good-key", client), GW_AUTH_KEY);
	gw_auth_free(a);

	/* no keys file: secure by default, every write refused */
	assert_int_equal(gw_auth_new(&a, "", 0, 1, err, sizeof(err)), CM_OK);
	assert_int_equal(gw_auth_keys(a), 0);
	assert_int_equal(check(a, 1, NULL, client), GW_AUTH_MISSING);
	assert_int_equal(
	    check(a, 1, "Bearer good-key", client), GW_AUTH_INVALID);
	assert_int_equal(check(a, 0, NULL, client), GW_AUTH_ANON);
	assert_int_equal(gw_auth_reload(a, err, sizeof(err)), CM_OK);
	gw_auth_free(a);
	unlink(path);
}

static void
test_auth_start_fails_on_bad_file(void **state)
{
	char     path[128], err[256];
	gw_auth *a = NULL;

	(void) state;
	snprintf(path, sizeof(path), "%s/bad", tmpdir);
	write_keys(path, NULL, EMPTY "\nnot-a-digest\n");
	assert_int_equal(
	    gw_auth_new(&a, path, 0, 1, err, sizeof(err)), CM_EINVAL);
	assert_null(a);
	assert_non_null(strstr(err, "line 2"));
	unlink(path);
	snprintf(path, sizeof(path), "%s/absent", tmpdir);
	assert_int_equal(
	    gw_auth_new(&a, path, 0, 1, err, sizeof(err)), CM_EINVAL);
	assert_non_null(strstr(err, "cannot open"));
}

static void
test_auth_reload_keeps_old_set_on_bad_file(void **state)
{
	char                     path[128], client[GW_CLIENT_MAX], err[256];
	gw_auth                 *a;
	static const char *const one[] = {"key-one", NULL};
	static const char *const two[] = {"key-two", "key-three", NULL};

	(void) state;
	snprintf(path, sizeof(path), "%s/reload", tmpdir);
	write_keys(path, one, NULL);
	assert_int_equal(gw_auth_new(&a, path, 0, 1, err, sizeof(err)), CM_OK);
	assert_int_equal(check(a, 1, "Bearer key-one", client), GW_AUTH_KEY);

	/* a new set: the new keys work, the removed one does not */
	write_keys(path, two, NULL);
	assert_int_equal(gw_auth_reload(a, err, sizeof(err)), CM_OK);
	assert_int_equal(gw_auth_keys(a), 2);
	assert_int_equal(check(a, 1, "Bearer key-two", client), GW_AUTH_KEY);
	assert_int_equal(check(a, 1, "Bearer key-three", client), GW_AUTH_KEY);
	assert_int_equal(
	    check(a, 1, "Bearer key-one", client), GW_AUTH_INVALID);

	/* a broken file, then a missing one: the last good set stays */
	write_keys(path, one, "oops\n");
	assert_int_equal(gw_auth_reload(a, err, sizeof(err)), CM_EINVAL);
	assert_non_null(strstr(err, "line 1"));
	assert_int_equal(gw_auth_keys(a), 2);
	assert_int_equal(check(a, 1, "Bearer key-two", client), GW_AUTH_KEY);
	assert_int_equal(
	    check(a, 1, "Bearer key-one", client), GW_AUTH_INVALID);
	unlink(path);
	assert_int_equal(gw_auth_reload(a, err, sizeof(err)), CM_EINVAL);
	assert_int_equal(check(a, 1, "Bearer key-two", client), GW_AUTH_KEY);
	gw_auth_free(a);
}

/* Readers on their own slots check keys while the main thread reloads
 * over and over: under ASan a set freed while read would be reported. */
typedef struct race {
	gw_auth   *a;
	int        slot;
	atomic_int stop;
	long       checks, bad;
} race;

static void *
reader(void *arg)
{
	race *r = arg;
	char  client[GW_CLIENT_MAX];

	while (!atomic_load(&r->stop)) {
		/* key-a is in every set; key-b only in some */
		if (gw_auth_check(r->a, r->slot, 1, "Bearer key-a", 1,
		        client) != GW_AUTH_KEY) {
			r->bad++;
		}
		(void) gw_auth_check(
		    r->a, r->slot, 1, "Bearer key-b", 1, client);
		r->checks++;
	}
	return NULL;
}

static void
test_auth_reload_while_loops_read(void **state)
{
	char                     path[128], err[256];
	gw_auth                 *a;
	race                     r[2];
	pthread_t                t[2];
	static const char *const s1[] = {"key-a", NULL};
	static const char *const s2[] = {"key-b", "key-a", NULL};

	(void) state;
	snprintf(path, sizeof(path), "%s/race", tmpdir);
	write_keys(path, s1, NULL);
	assert_int_equal(gw_auth_new(&a, path, 0, 2, err, sizeof(err)), CM_OK);
	for (int i = 0; i < 2; i++) {
		memset(&r[i], 0, sizeof(r[i]));
		r[i].a = a;
		r[i].slot = i;
		assert_int_equal(
		    pthread_create(&t[i], NULL, reader, &r[i]), 0);
	}
	for (int i = 0; i < 300; i++) {
		write_keys(path, i % 2 ? s1 : s2, NULL);
		assert_int_equal(gw_auth_reload(a, err, sizeof(err)), CM_OK);
	}
	for (int i = 0; i < 2; i++) {
		atomic_store(&r[i].stop, 1);
		pthread_join(t[i], NULL);
		assert_int_equal(r[i].bad, 0);
		assert_true(r[i].checks > 0);
	}
	gw_auth_free(a);
	unlink(path);
}

static int
setup(void **state)
{
	(void) state;
	return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int
teardown(void **state)
{
	(void) state;
	return rmdir(tmpdir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_auth_digest_vectors),
	    cmocka_unit_test(test_auth_parse_good_file),
	    cmocka_unit_test(test_auth_parse_bad_lines),
	    cmocka_unit_test(test_auth_match_every_position),
	    cmocka_unit_test(test_auth_bearer_parsing),
	    cmocka_unit_test(test_auth_check_requests),
	    cmocka_unit_test(test_auth_start_fails_on_bad_file),
	    cmocka_unit_test(test_auth_reload_keeps_old_set_on_bad_file),
	    cmocka_unit_test(test_auth_reload_while_loops_read),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
