/* cm_net.c - listen addresses and listening sockets. */
#include "cm_net.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "cm.h"

int
cm_net_parse_listen(const char *s, char *host, size_t hostlen, int *port)
{
	const char *h, *p;
	size_t      hl;
	long        v = 0;

	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		if (rb == NULL || rb[1] != ':') {
			return CM_EINVAL;
		}
		h = s + 1;
		hl = (size_t) (rb - h);
		p = rb + 2;
	} else {
		const char *colon = strrchr(s, ':');
		if (colon == NULL) {
			return CM_EINVAL;
		}
		h = s;
		hl = (size_t) (colon - s);
		p = colon + 1;
		if (memchr(h, ':', hl) != NULL) {
			return CM_EINVAL; /* IPv6 needs brackets */
		}
	}
	if (hl == 0 || hl >= hostlen || p[0] == '\0' || strlen(p) > 5) {
		return CM_EINVAL;
	}
	for (const char *q = p; *q != '\0'; q++) {
		if (*q < '0' || *q > '9') {
			return CM_EINVAL;
		}
		v = v * 10 + (*q - '0');
	}
	if (v > 65535) {
		return CM_EINVAL;
	}
	memcpy(host, h, hl);
	host[hl] = '\0';
	*port = (int) v;
	return CM_OK;
}

int
cm_net_listen(const char *host, int port, int backlog, int *fdp, int *bound,
    char *err, size_t errlen)
{
	struct addrinfo         hints = {0}, *res = NULL;
	struct sockaddr_storage ss;
	socklen_t               sl = sizeof(ss);
	char                    svc[8];
	int                     fd = -1, one = 1, rv;

	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(svc, sizeof(svc), "%d", port);
	if ((rv = getaddrinfo(host, svc, &hints, &res)) != 0) {
		snprintf(err, errlen, "%s: %s", host, gai_strerror(rv));
		return CM_EINVAL;
	}
	fd = socket(
	    res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
	    bind(fd, res->ai_addr, res->ai_addrlen) != 0 ||
	    listen(fd, backlog) != 0 ||
	    getsockname(fd, (struct sockaddr *) &ss, &sl) != 0) {
		snprintf(
		    err, errlen, "%s:%d: %s", host, port, strerror(errno));
		if (fd >= 0) {
			close(fd);
		}
		freeaddrinfo(res);
		return CM_EINVAL;
	}
	freeaddrinfo(res);
	*bound = ss.ss_family == AF_INET6
	    ? ntohs(((struct sockaddr_in6 *) &ss)->sin6_port)
	    : ntohs(((struct sockaddr_in *) &ss)->sin_port);
	*fdp = fd;
	return CM_OK;
}

struct evdns_base *
cm_evdns_new(struct event_base *base, const char *resolv_conf)
{
	struct evdns_base      *dns = evdns_base_new(base, 0);
	struct sockaddr_storage ss;
	int                     len;

	if (dns == NULL) {
		return NULL;
	}
	/* A file that cannot be read leaves libevent's defaults (127.0.0.1),
	 * as glibc does. */
	(void) evdns_base_resolv_conf_parse(dns, DNS_OPTIONS_ALL,
	    resolv_conf != NULL ? resolv_conf : "/etc/resolv.conf");
	if (evdns_base_count_nameservers(dns) > 1 &&
	    (len = evdns_base_get_nameserver_addr(
	         dns, 0, (struct sockaddr *) &ss, sizeof(ss))) > 0 &&
	    evdns_base_clear_nameservers_and_suspend(dns) == 0) {
		(void) evdns_base_nameserver_sockaddr_add(
		    dns, (struct sockaddr *) &ss, (ev_socklen_t) len, 0);
		evdns_base_resume(dns);
	}
	return dns;
}
