/* test_cm_net.c - cm_evdns_new(): resolv.conf's first nameserver only.
 *
 * Two fake DNS servers on loopback UDP: the first knows "svc.test", the
 * second (like the host's resolver behind podman's) answers NXDOMAIN to
 * everything. glibc asks the first; libevent's evdns, left to itself,
 * takes turns and so fails every other lookup. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "cm.h"
#include "cm_net.h"

#define LOOKUPS 8

/* ---- the fake servers ---- */

typedef struct fake_dns {
	int        fd[2]; /* [0] knows svc.test, [1] answers NXDOMAIN */
	int        port[2];
	atomic_int stop;
	atomic_int asked[2];
	pthread_t  tid;
} fake_dns;

static int
udp_socket(int *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t          len = sizeof(a);
	int                fd = socket(AF_INET, SOCK_DGRAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *) &a, sizeof(a)) != 0 ||
	    getsockname(fd, (struct sockaddr *) &a, &len) != 0) {
		return -1;
	}
	*port = ntohs(a.sin_port);
	return fd;
}

/* Answers one query in q[0..n) into r; returns the reply's length or 0.
 * knows: whether this server knows svc.test (type A: 10.1.2.3). */
static size_t
answer(const unsigned char *q, size_t n, int knows, unsigned char *r)
{
	static const unsigned char name[] = "\3svc\4test";
	size_t                     i = 12;
	int                        hit, qtype;

	if (n < 12 + 5) {
		return 0;
	}
	while (i < n && q[i] != 0) { /* the question's name */
		i += (size_t) q[i] + 1;
	}
	if (i + 5 > n) {
		return 0;
	}
	hit = knows && i - 12 == sizeof(name) - 1 &&
	    strncasecmp((const char *) q + 12, (const char *) name,
	        sizeof(name) - 1) == 0;
	qtype = q[i + 1] << 8 | q[i + 2];
	i += 5; /* the end of the question */
	memcpy(r, q, i);
	r[2] = 0x80 | (q[2] & 0x01); /* QR, RD as asked */
	r[3] = 0x80 | (hit ? 0 : 3); /* RA; NOERROR or NXDOMAIN */
	r[6] = r[7] = r[8] = r[9] = r[10] = r[11] = 0;
	if (hit && qtype == 1) {
		static const unsigned char rr[] = {
		    0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 1, 2, 3};
		r[7] = 1;
		memcpy(r + i, rr, sizeof(rr));
		i += sizeof(rr);
	}
	return i;
}

static void *
fake_main(void *arg)
{
	fake_dns     *f = arg;
	int64_t       end = cm_mono_us() + 20 * 1000000LL; /* bounded */
	unsigned char q[512], r[600];

	while (!atomic_load(&f->stop) && cm_mono_us() < end) {
		struct pollfd p[2] = {
		    {f->fd[0], POLLIN, 0}, {f->fd[1], POLLIN, 0}};

		if (poll(p, 2, 50) <= 0) {
			continue;
		}
		for (int s = 0; s < 2; s++) {
			struct sockaddr_in from;
			socklen_t          flen = sizeof(from);
			ssize_t            n;
			size_t             rn;

			if (!(p[s].revents & POLLIN)) {
				continue;
			}
			n = recvfrom(f->fd[s], q, sizeof(q), 0,
			    (struct sockaddr *) &from, &flen);
			if (n <= 0) {
				continue;
			}
			atomic_fetch_add(&f->asked[s], 1);
			rn = answer(q, (size_t) n, s == 0, r);
			if (rn > 0) {
				(void) sendto(f->fd[s], r, rn, 0,
				    (struct sockaddr *) &from, flen);
			}
		}
	}
	return NULL;
}

static void
fake_start(fake_dns *f)
{
	memset(f, 0, sizeof(*f));
	for (int s = 0; s < 2; s++) {
		f->fd[s] = udp_socket(&f->port[s]);
		assert_true(f->fd[s] >= 0);
	}
	assert_int_equal(pthread_create(&f->tid, NULL, fake_main, f), 0);
}

static void
fake_stop(fake_dns *f)
{
	atomic_store(&f->stop, 1);
	pthread_join(f->tid, NULL);
	close(f->fd[0]);
	close(f->fd[1]);
}

/* Writes a resolv.conf naming both servers, the one that knows first. */
static void
write_conf(const fake_dns *f, char *path, size_t len)
{
	FILE *fp;
	int   fd;

	snprintf(path, len, "/tmp/test_cm_net_resolv.XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	fp = fdopen(fd, "w");
	assert_non_null(fp);
	fprintf(fp,
	    "search invalid.test\noptions ndots:1 timeout:1 attempts:1\n"
	    "nameserver 127.0.0.1:%d\nnameserver 127.0.0.1:%d\n",
	    f->port[0], f->port[1]);
	fclose(fp);
}

/* ---- lookups ---- */

typedef struct lookup {
	struct event_base *base;
	int                done, ok;
} lookup;

static void
looked_up(int err, struct evutil_addrinfo *res, void *arg)
{
	lookup *l = arg;
	char    ip[INET_ADDRSTRLEN] = "";

	if (err == 0 && res != NULL && res->ai_family == AF_INET) {
		inet_ntop(AF_INET,
		    &((struct sockaddr_in *) res->ai_addr)->sin_addr, ip,
		    sizeof(ip));
	}
	l->ok += strcmp(ip, "10.1.2.3") == 0;
	l->done++;
	if (res != NULL) {
		evutil_freeaddrinfo(res);
	}
	event_base_loopbreak(l->base);
}

/* Looks "svc.test" up LOOKUPS times, one after another; returns how many
 * found 10.1.2.3. */
static int
resolve_all(struct event_base *base, struct evdns_base *dns)
{
	lookup                 l = {base, 0, 0};
	struct evutil_addrinfo hints;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_INET;
	hints.ai_socktype = SOCK_STREAM;
	for (int i = 0; i < LOOKUPS; i++) {
		int want = l.done + 1;
		(void) evdns_getaddrinfo(
		    dns, "svc.test", NULL, &hints, looked_up, &l);
		while (l.done < want) {
			event_base_dispatch(base);
		}
	}
	return l.ok;
}

static void
test_evdns_keeps_the_first_nameserver(void **state)
{
	fake_dns           f;
	char               path[64];
	struct event_base *base = event_base_new();
	struct evdns_base *dns;
	struct sockaddr_in a;
	int                ok;

	(void) state;
	fake_start(&f);
	write_conf(&f, path, sizeof(path));
	dns = cm_evdns_new(base, path);
	assert_non_null(dns);
	assert_int_equal(evdns_base_count_nameservers(dns), 1);
	assert_int_equal(evdns_base_get_nameserver_addr(
	                     dns, 0, (struct sockaddr *) &a, sizeof(a)),
	    (int) sizeof(a));
	assert_int_equal(ntohs(a.sin_port), f.port[0]);

	ok = resolve_all(base, dns);
	printf("  cm_evdns_new: %d of %d lookups found svc.test; asked: "
	       "first %d, second %d\n",
	    ok, LOOKUPS, atomic_load(&f.asked[0]), atomic_load(&f.asked[1]));
	assert_int_equal(ok, LOOKUPS);
	assert_int_equal(atomic_load(&f.asked[1]), 0);
	evdns_base_free(dns, 0);

	/* The control: libevent with every server of the same file takes
	 * turns and fails some lookups. If it did not, the fake setup
	 * would prove nothing. */
	dns = evdns_base_new(base, 0);
	assert_non_null(dns);
	assert_int_equal(
	    evdns_base_resolv_conf_parse(dns, DNS_OPTIONS_ALL, path), 0);
	assert_int_equal(evdns_base_count_nameservers(dns), 2);
	ok = resolve_all(base, dns);
	printf(
	    "  plain evdns: %d of %d lookups found svc.test\n", ok, LOOKUPS);
	assert_true(ok < LOOKUPS);
	evdns_base_free(dns, 0);

	event_base_free(base);
	fake_stop(&f);
	unlink(path);
}

static void
test_evdns_one_server_or_none(void **state)
{
	struct event_base *base = event_base_new();
	struct evdns_base *dns;
	char               path[64];
	FILE              *fp;
	int                fd;

	(void) state;
	snprintf(path, sizeof(path), "/tmp/test_cm_net_resolv.XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	fp = fdopen(fd, "w");
	assert_non_null(fp);
	fputs("nameserver 127.0.0.9\n", fp);
	fclose(fp);
	dns = cm_evdns_new(base, path);
	assert_non_null(dns);
	assert_int_equal(evdns_base_count_nameservers(dns), 1);
	evdns_base_free(dns, 0);
	unlink(path);
	/* no file: libevent's default server, as glibc's */
	dns = cm_evdns_new(base, "/nonexistent/resolv.conf");
	assert_non_null(dns);
	assert_int_equal(evdns_base_count_nameservers(dns), 1);
	evdns_base_free(dns, 0);
	event_base_free(base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_evdns_keeps_the_first_nameserver),
	    cmocka_unit_test(test_evdns_one_server_or_none),
	};
	return cmocka_run_group_tests_name("cm_net", tests, NULL, NULL);
}
