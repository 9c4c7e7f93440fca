/* test_gw_http.c - status mapping and listen address parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cm.h"
#include "gw.h"

static void
test_http_status_mapping(void **state)
{
	static const int want[][2] = {
	    {CATALOG__STATUS__STATUS_OK, 200},
	    {CATALOG__STATUS__STATUS_CREATED, 201},
	    {CATALOG__STATUS__STATUS_NO_CONTENT, 204},
	    {CATALOG__STATUS__STATUS_NOT_MODIFIED, 304},
	    {CATALOG__STATUS__STATUS_NOT_FOUND, 404},
	    {CATALOG__STATUS__STATUS_INVALID, 400},
	    {CATALOG__STATUS__STATUS_CONFLICT, 409},
	    {CATALOG__STATUS__STATUS_PRECONDITION_FAILED, 412},
	    {CATALOG__STATUS__STATUS_UNPROCESSABLE, 422},
	    {CATALOG__STATUS__STATUS_UNAVAILABLE, 503},
	    {CATALOG__STATUS__STATUS_DEADLINE_EXCEEDED, 504},
	    {CATALOG__STATUS__STATUS_INTERNAL, 500},
	    {CATALOG__STATUS__STATUS_UNSPECIFIED, 500},
	    {99, 500},
	};
	(void) state;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		assert_int_equal(gw_http_status_of(want[i][0]), want[i][1]);
	}
}

static void
test_http_parse_listen_good(void **state)
{
	char host[64];
	int  port;
	(void) state;
	assert_int_equal(
	    gw_http_parse_listen("0.0.0.0:8080", host, sizeof(host), &port),
	    0);
	assert_string_equal(host, "0.0.0.0");
	assert_int_equal(port, 8080);
	assert_int_equal(
	    gw_http_parse_listen("[::1]:0", host, sizeof(host), &port), 0);
	assert_string_equal(host, "::1");
	assert_int_equal(port, 0);
	assert_int_equal(
	    gw_http_parse_listen("localhost:65535", host, sizeof(host), &port),
	    0);
	assert_int_equal(port, 65535);
}

static void
test_http_parse_listen_bad(void **state)
{
	const char *bad[] = {"", "8080", ":8080", "host:", "host:65536",
	    "host:80x", "::1:80", "[::1]80", "[::1", "host:-1", "host:123456"};
	char        host[64];
	int         port;
	(void) state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(
		    gw_http_parse_listen(bad[i], host, sizeof(host), &port),
		    CM_EINVAL);
	}
	assert_int_equal(gw_http_parse_listen(
	                     "averyveryverylonghostname:1", host, 8, &port),
	    CM_EINVAL);
}

static void
test_http_listen_port_zero_shared(void **state)
{
	char err[128];
	int  fd1, fd2, p1, p2;
	(void) state;
	assert_int_equal(
	    gw_http_listen("127.0.0.1", 0, &fd1, &p1, err, sizeof(err)), 0);
	assert_true(p1 > 0);
	/* SO_REUSEPORT lets a second loop bind the same port */
	assert_int_equal(
	    gw_http_listen("127.0.0.1", p1, &fd2, &p2, err, sizeof(err)), 0);
	assert_int_equal(p1, p2);
	close(fd1);
	close(fd2);
	assert_int_equal(gw_http_listen("no.such.host.invalid", 0, &fd1, &p1,
	                     err, sizeof(err)),
	    CM_EINVAL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_http_status_mapping),
	    cmocka_unit_test(test_http_parse_listen_good),
	    cmocka_unit_test(test_http_parse_listen_bad),
	    cmocka_unit_test(test_http_listen_port_zero_shared),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
