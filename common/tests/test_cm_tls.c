/* test_cm_tls.c - the TLS settings rules, the files' checks, server names.
 *
 * Certificates are made with the openssl command in a fresh folder; without
 * it the tests that need files are skipped (with a line that says so).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm.h"
#include "cm_tls.h"

static char dir[64];
static int  have_openssl;
static char ca[128], cert[128], key[128], other_key[128];

static int
setup(void **state)
{
	char cmd[2048];

	(void) state;
	snprintf(dir, sizeof(dir), "/tmp/test_cm_tls.XXXXXX");
	if (mkdtemp(dir) == NULL) {
		return -1;
	}
	snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
	snprintf(cert, sizeof(cert), "%s/a.pem", dir);
	snprintf(key, sizeof(key), "%s/a.key", dir);
	snprintf(other_key, sizeof(other_key), "%s/b.key", dir);
	snprintf(cmd, sizeof(cmd),
	    "cd %s && P='-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes' "
	    "&& openssl req -x509 $P -keyout ca.key -out ca.pem -days 1 "
	    "-subj /CN=ca && openssl req $P -keyout a.key -out a.csr "
	    "-subj /CN=a && openssl x509 -req -in a.csr -CA ca.pem -CAkey "
	    "ca.key -CAcreateserial -out a.pem -days 1 && openssl req $P "
	    "-keyout b.key -out b.csr -subj /CN=b",
	    dir);
	if (system("command -v openssl >/dev/null 2>&1") == 0) {
		strncat(
		    cmd, " >/dev/null 2>&1", sizeof(cmd) - strlen(cmd) - 1);
		have_openssl = system(cmd) == 0;
	}
	if (!have_openssl) {
		fprintf(stderr,
		    "test_cm_tls: no openssl: tests that need "
		    "certificate files are skipped\n");
	}
	return 0;
}

static int
teardown(void **state)
{
	char cmd[128];

	(void) state;
	cm_tls_fini();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static int
try_setup(const char *c, const char *crt, const char *k, const char *name,
    int server, char *url, char *err, size_t errlen)
{
	cm_tls_opts o = {.var = "X_TLS",
	    .ca = c,
	    .cert = crt,
	    .key = k,
	    .server_name = name,
	    .event = "X-TLS",
	    .server = server};
	char       *urls[] = {url};

	err[0] = '\0';
	return cm_tls_setup(&o, urls, 1, err, errlen);
}

static void
test_tls_server_name(void **state)
{
	char buf[64];

	(void) state;
	assert_int_equal(
	    cm_tls_server_name("tls+tcp://svc.ns:7000", "", buf, sizeof(buf)),
	    CM_OK);
	assert_string_equal(buf, "svc.ns");
	assert_int_equal(cm_tls_server_name("tls+tcp://10.0.0.1:7000",
	                     "replica.example", buf, sizeof(buf)),
	    CM_OK);
	assert_string_equal(buf, "replica.example");
	assert_int_equal(
	    cm_tls_server_name("tls+tcp://svc.ns:7000", NULL, buf, 4),
	    CM_EINVAL);
	assert_int_equal(
	    cm_tls_server_name("not a url", NULL, buf, sizeof(buf)),
	    CM_EINVAL);
}

/* No files, no TLS URL: plaintext as before, TLS stays off. */
static void
test_tls_off_without_settings(void **state)
{
	char err[512];
	(void) state;
	assert_int_equal(try_setup("", "", "", "", 1, "tcp://0.0.0.0:7000",
	                     err, sizeof(err)),
	    CM_OK);
	assert_int_equal(cm_tls_enabled(), 0);
	/* Plain dialers and listeners are left alone. */
	assert_int_equal(
	    cm_tls_dialer_apply((nng_dialer) {0}, "tcp://a:1"), 0);
	cm_tls_watch(); /* nothing to look at */
}

static void
test_tls_half_config_refused(void **state)
{
	char err[512];
	(void) state;
	assert_int_equal(try_setup("/x/ca.pem", "", "", "", 1,
	                     "tls+tcp://0.0.0.0:7000", err, sizeof(err)),
	    CM_EINVAL);
	assert_non_null(strstr(err, "X_TLS_CERT"));
	assert_int_equal(try_setup("", "", "", "", 1, "tls+tcp://0.0.0.0:7000",
	                     err, sizeof(err)),
	    CM_EINVAL);
	assert_non_null(strstr(err, "needs X_TLS_CA"));
	assert_int_equal(cm_tls_enabled(), 0);
}

static void
test_tls_plaintext_with_files_refused(void **state)
{
	char err[512];
	(void) state;
	assert_int_equal(try_setup("/x/ca.pem", "/x/a.pem", "/x/a.key", "", 1,
	                     "tcp://0.0.0.0:7000", err, sizeof(err)),
	    CM_EINVAL);
	assert_non_null(strstr(err, "no silent plaintext"));
}

static void
test_tls_ip_upstream_needs_a_name(void **state)
{
	char err[512];
	(void) state;
	assert_int_equal(try_setup("/x/ca.pem", "/x/a.pem", "/x/a.key", "", 0,
	                     "tls+tcp://127.0.0.1:7000", err, sizeof(err)),
	    CM_EINVAL);
	assert_non_null(strstr(err, "X_TLS_SERVER_NAME"));
}

static void
test_tls_files_checked(void **state)
{
	char err[512];
	(void) state;
	if (!have_openssl) {
		skip();
	}
	assert_int_equal(try_setup("/nonexistent.pem", cert, key, "", 1,
	                     "tls+tcp://0.0.0.0:7000", err, sizeof(err)),
	    CM_EINVAL);
	assert_non_null(strstr(err, "X_TLS_CA=/nonexistent.pem"));
	/* a key where a certificate should be */
	assert_int_equal(try_setup(key, cert, key, "", 1,
	                     "tls+tcp://0.0.0.0:7000", err, sizeof(err)),
	    CM_EINVAL);
	assert_non_null(strstr(err, "not a PEM certificate"));
	/* another certificate's key */
	assert_int_equal(try_setup(ca, cert, other_key, "", 1,
	                     "tls+tcp://0.0.0.0:7000", err, sizeof(err)),
	    CM_EINVAL);
	assert_non_null(strstr(err, "is not the key of the certificate"));
	assert_int_equal(cm_tls_enabled(), 0);
}

/* A good client configuration: dialers of one name share it. */
static void
test_tls_client_applies(void **state)
{
	char       err[512];
	nng_socket s;
	nng_dialer d1, d2;
	(void) state;
	if (!have_openssl) {
		skip();
	}
	assert_int_equal(
	    try_setup(ca, cert, key, "", 0, "tls+tcp://replica.example:7000",
	        err, sizeof(err)),
	    CM_OK);
	assert_int_equal(cm_tls_enabled(), 1);
	assert_int_equal(nng_req0_open(&s), 0);
	assert_int_equal(
	    nng_dialer_create(&d1, s, "tls+tcp://10.0.0.1:7000"), 0);
	assert_int_equal(
	    nng_dialer_create(&d2, s, "tls+tcp://10.0.0.2:7000"), 0);
	assert_int_equal(
	    cm_tls_dialer_apply(d1, "tls+tcp://replica.example:7000"), 0);
	assert_int_equal(
	    cm_tls_dialer_apply(d2, "tls+tcp://replica.example:7000"), 0);
	cm_tls_watch();
	nng_close(s);
	cm_tls_fini();
	assert_int_equal(cm_tls_enabled(), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_tls_server_name),
	    cmocka_unit_test(test_tls_off_without_settings),
	    cmocka_unit_test(test_tls_half_config_refused),
	    cmocka_unit_test(test_tls_plaintext_with_files_refused),
	    cmocka_unit_test(test_tls_ip_upstream_needs_a_name),
	    cmocka_unit_test(test_tls_files_checked),
	    cmocka_unit_test(test_tls_client_applies),
	};
	int rv = cmocka_run_group_tests(tests, setup, teardown);
	nng_fini();
	return rv;
}
