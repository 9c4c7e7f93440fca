/* gw_discovery.c - turns GATEWAY_UPSTREAMS entries into endpoint URLs,
 * resolving DNS names on the loop with libevent's evdns; the only file that
 * speaks DNS.
 *
 * An entry whose host is a name (tcp://product.shop.svc:7000, a Kubernetes
 * headless Service) stands for every address the name resolves to, IPv4
 * and IPv6, and is resolved again every interval without blocking the loop.
 * Each successful answer is handed to the owner (gw_rpc) as the entry's
 * complete URL set, one URL per address ("tcp://10.0.0.7:7000"); a failed
 * or empty answer is logged and changes nothing, so the last known set
 * stays in use. tls+tcp entries are resolved the same way and keep their
 * scheme. An entry with an IP literal or another transport (inproc, ipc)
 * stands for itself and is reported once, at start.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "cm.h"
#include "cm_log.h"
#include "cm_net.h"
#include "gw.h"

#define DNS_TIMEOUT_S "2" /* per attempt; answers well within an interval */
#define DNS_ATTEMPTS  "2"
#define MAX_ADDRS     256 /* addresses kept per name */

typedef struct target {
	gw_disc                          *d;
	size_t                            idx;
	char                             *url;  /* as configured */
	int                               name; /* host must be resolved */
	char                              scheme[16];
	char                              host[256];
	char                              port[8];
	int                               family;  /* AF_UNSPEC, AF_INET(6) */
	struct evdns_getaddrinfo_request *req;     /* in progress */
	int                               busy;    /* a resolution runs */
	int                               failing; /* last one failed */
} target;

struct gw_disc {
	struct event_base *base;
	struct evdns_base *dns; /* NULL when no entry is a name */
	struct event      *timer;
	target            *t;
	size_t             n;
	int                interval_s;
	int                names;
	gw_disc_resolve_fn resolve; /* tests: replaces evdns */
	void              *resolve_arg;
	gw_disc_update_fn  update;
	void              *arg;
	int                closing;
};

/* ---- URLs ---- */

int
gw_disc_parse(const char *url, char *scheme, size_t slen, char *host,
    size_t hlen, char *port, size_t plen)
{
	const char   *p = strstr(url, "://"), *h, *e, *colon;
	size_t        sl, hl, tl;
	unsigned char buf[sizeof(struct in6_addr)];
	char          lit[64];

	if (p == NULL) {
		return 0;
	}
	sl = (size_t) (p - url);
	/* tls+tcp keeps its scheme: each address is dialed with TLS, and
	 * the certificate checked against the name (gw_rpc, cm_tls). */
	tl = strncmp(url, "tls+", 4) == 0 ? 4 : 0;
	if (sl >= slen || sl < tl ||
	    (strncmp(url + tl, "tcp", sl - tl) != 0 &&
	        strncmp(url + tl, "tcp4", sl - tl) != 0 &&
	        strncmp(url + tl, "tcp6", sl - tl) != 0) ||
	    (sl - tl != 3 && sl - tl != 4)) {
		return 0; /* inproc, ipc, ws...: used as they are */
	}
	h = p + 3;
	if (*h == '[') {
		return 0; /* an IPv6 literal */
	}
	if ((colon = strrchr(h, ':')) == NULL || colon == h) {
		return 0; /* NNG reports the bad URL when it dials */
	}
	e = colon + 1;
	if (strlen(e) == 0 || strlen(e) >= plen ||
	    strspn(e, "0123456789") != strlen(e)) {
		return 0;
	}
	hl = (size_t) (colon - h);
	if (hl >= hlen) {
		return 0;
	}
	if (hl < sizeof(lit)) {
		memcpy(lit, h, hl);
		lit[hl] = '\0';
		if (evutil_inet_pton(AF_INET, lit, buf) == 1) {
			return 0; /* an IPv4 literal */
		}
	}
	memcpy(scheme, url, sl);
	scheme[sl] = '\0';
	memcpy(host, h, hl);
	host[hl] = '\0';
	snprintf(port, plen, "%s", e);
	return 1;
}

/* Writes scheme://addr:port, with brackets around an IPv6 address. */
static void
format_url(const target *t, const char *addr, char *buf, size_t len)
{
	if (strchr(addr, ':') != NULL) {
		snprintf(buf, len, "%s://[%s]:%s", t->scheme, addr, t->port);
	} else {
		snprintf(buf, len, "%s://%s:%s", t->scheme, addr, t->port);
	}
}

static int
url_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Hands the entry's new address set to the owner as sorted, distinct URLs.
 * Frees nothing of addrs. */
static void
report(target *t, char *const *addrs, size_t n)
{
	char   **urls;
	size_t   k = 0;
	gw_disc *d = t->d;

	if ((urls = calloc(n, sizeof(*urls))) == NULL) {
		CM_ERROR("GW-DNS-NOMEM", NULL, "upstream=%s: %s", t->url,
		    cm_strerror(CM_ENOMEM));
		return;
	}
	for (size_t i = 0; i < n; i++) {
		char buf[GW_URL_MAX];
		format_url(t, addrs[i], buf, sizeof(buf));
		if ((urls[k] = strdup(buf)) == NULL) {
			goto out;
		}
		k++;
	}
	qsort(urls, k, sizeof(*urls), url_cmp);
	for (size_t i = 1; i < k;) {
		if (strcmp(urls[i], urls[i - 1]) == 0) {
			free(urls[i]);
			memmove(&urls[i], &urls[i + 1],
			    (k - i - 1) * sizeof(*urls));
			k--;
		} else {
			i++;
		}
	}
	d->update(d->arg, t->idx, urls, k);
out:
	for (size_t i = 0; i < k; i++) {
		free(urls[i]);
	}
	free(urls);
}

static void
resolve_failed(target *t, const char *why)
{
	if (!t->failing) {
		CM_WARN("GW-DNS-FAIL", NULL,
		    "upstream=%s host=%s: %s; keeping the last known "
		    "addresses",
		    t->url, t->host, why);
	} else {
		CM_DEBUG("GW-DNS-FAIL", NULL, "upstream=%s host=%s: %s",
		    t->url, t->host, why);
	}
	t->failing = 1;
}

static void
resolved(target *t, char *const *addrs, size_t n)
{
	if (n == 0) {
		resolve_failed(t, "no address");
		return;
	}
	if (t->failing) {
		CM_INFO("GW-DNS-OK", NULL,
		    "upstream=%s host=%s resolves again", t->url, t->host);
	}
	t->failing = 0;
	report(t, addrs, n);
}

/* ---- evdns ---- */

/* Runs on the loop: evdns answered (or was cancelled). */
static void
dns_cb(int result, struct evutil_addrinfo *res, void *arg)
{
	target *t = arg;
	char   *addrs[MAX_ADDRS];
	char    text[MAX_ADDRS][INET6_ADDRSTRLEN];
	size_t  n = 0;

	t->req = NULL;
	t->busy = 0;
	if (result == EVUTIL_EAI_CANCEL || t->d->closing) {
		if (res != NULL) {
			evutil_freeaddrinfo(res);
		}
		return;
	}
	if (result != 0) {
		resolve_failed(t, evutil_gai_strerror(result));
		if (res != NULL) {
			evutil_freeaddrinfo(res);
		}
		return;
	}
	for (struct evutil_addrinfo *ai = res; ai != NULL && n < MAX_ADDRS;
	     ai = ai->ai_next) {
		const void *a;
		if (ai->ai_family == AF_INET) {
			a = &((struct sockaddr_in *) ai->ai_addr)->sin_addr;
		} else if (ai->ai_family == AF_INET6) {
			a = &((struct sockaddr_in6 *) ai->ai_addr)->sin6_addr;
		} else {
			continue;
		}
		if (evutil_inet_ntop(
		        ai->ai_family, a, text[n], sizeof(text[n])) != NULL) {
			addrs[n] = text[n];
			n++;
		}
	}
	evutil_freeaddrinfo(res);
	resolved(t, addrs, n);
}

static void
resolve_one(target *t)
{
	gw_disc                          *d = t->d;
	struct evutil_addrinfo            hints;
	struct evdns_getaddrinfo_request *req;

	if (t->busy) {
		return; /* the previous answer is still coming */
	}
	if (d->resolve != NULL) {
		char **addrs = NULL;
		size_t n = 0;
		int    rv =
		    d->resolve(d->resolve_arg, t->host, t->family, &addrs, &n);
		if (rv != CM_OK) {
			resolve_failed(t, cm_strerror(rv));
		} else {
			resolved(t, addrs, n);
		}
		gw_rpc_urls_free(addrs, n);
		return;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = t->family;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	t->busy = 1;
	/* May call dns_cb before it returns (then it returns NULL). */
	req = evdns_getaddrinfo(d->dns, t->host, t->port, &hints, dns_cb, t);
	if (t->busy) {
		t->req = req;
	}
}

static void
resolve_all(gw_disc *d)
{
	for (size_t i = 0; i < d->n && !d->closing; i++) {
		if (d->t[i].name) {
			resolve_one(&d->t[i]);
		}
	}
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	gw_disc       *d = arg;
	struct timeval tv = {d->interval_s, 0};

	(void) fd;
	(void) what;
	resolve_all(d);
	if (!d->closing) {
		evtimer_add(d->timer, &tv);
	}
}

/* Adds each "ip[:port]" of a comma-separated list as a nameserver. */
static int
add_servers(gw_disc *d, const char *list, char *err, size_t errlen)
{
	char **s;
	size_t n;
	int    rv;

	if ((rv = gw_rpc_urls_parse(list, &s, &n)) != CM_OK) {
		snprintf(err, errlen,
		    "GATEWAY_DNS_SERVERS=%s: want comma-separated ip[:port]",
		    list);
		return rv;
	}
	for (size_t i = 0; i < n; i++) {
		if (evdns_base_nameserver_ip_add(d->dns, s[i]) != 0) {
			snprintf(err, errlen,
			    "GATEWAY_DNS_SERVERS: %s is not an ip[:port]",
			    s[i]);
			gw_rpc_urls_free(s, n);
			return CM_EINVAL;
		}
	}
	gw_rpc_urls_free(s, n);
	return CM_OK;
}

/* ---- lifecycle ---- */

int
gw_disc_new(gw_disc **out, struct event_base *base, char *const *entries,
    size_t n, const gw_disc_opts *o, gw_disc_update_fn update, void *arg,
    char *err, size_t errlen)
{
	gw_disc *d;
	int      rv = CM_ENOMEM;

	if ((d = calloc(1, sizeof(*d))) == NULL ||
	    (d->t = calloc(n, sizeof(*d->t))) == NULL) {
		free(d);
		snprintf(err, errlen, "%s", cm_strerror(CM_ENOMEM));
		return CM_ENOMEM;
	}
	d->base = base;
	d->n = n;
	d->interval_s = o->interval_s > 0 ? o->interval_s : 5;
	d->resolve = o->resolve;
	d->resolve_arg = o->resolve_arg;
	d->update = update;
	d->arg = arg;
	for (size_t i = 0; i < n; i++) {
		target *t = &d->t[i];
		t->d = d;
		t->idx = i;
		if ((t->url = strdup(entries[i])) == NULL) {
			snprintf(err, errlen, "%s", cm_strerror(rv));
			goto fail;
		}
		t->name = gw_disc_parse(t->url, t->scheme, sizeof(t->scheme),
		    t->host, sizeof(t->host), t->port, sizeof(t->port));
		{
			const char *tcp = strncmp(t->scheme, "tls+", 4) == 0
			    ? t->scheme + 4
			    : t->scheme;
			t->family = strcmp(tcp, "tcp4") == 0 ? AF_INET
			    : strcmp(tcp, "tcp6") == 0       ? AF_INET6
			                                     : AF_UNSPEC;
		}
		d->names += t->name;
	}
	if (d->names > 0 && d->resolve == NULL) {
		const char *servers = o->dns_servers;
		int         custom = servers != NULL && servers[0] != '\0';
		/* Without our own servers, resolv.conf gives the server,
		 * search domains and ndots, as a pod's resolver expects. */
		d->dns = custom ? evdns_base_new(base, 0)
		                : cm_evdns_new(base, NULL);
		if (d->dns == NULL) {
			snprintf(err, errlen, "cannot start the DNS resolver");
			goto fail;
		}
		evdns_base_set_option(d->dns, "timeout:", DNS_TIMEOUT_S);
		evdns_base_set_option(d->dns, "attempts:", DNS_ATTEMPTS);
		if (custom &&
		    (rv = add_servers(d, servers, err, errlen)) != CM_OK) {
			goto fail;
		}
	}
	if (d->names > 0 &&
	    (d->timer = evtimer_new(base, timer_cb, d)) == NULL) {
		rv = CM_ENOMEM;
		snprintf(err, errlen, "%s", cm_strerror(rv));
		goto fail;
	}
	*out = d;
	return CM_OK;
fail:
	gw_disc_free(d);
	return rv;
}

void
gw_disc_start(gw_disc *d)
{
	struct timeval now = {0, 0};

	for (size_t i = 0; i < d->n; i++) {
		target *t = &d->t[i];
		if (!t->name) {
			char *one = t->url;
			d->update(d->arg, i, &one, 1);
		}
	}
	/* Names are resolved on the loop, the first time as soon as it
	 * runs. */
	if (d->timer != NULL) {
		evtimer_add(d->timer, &now);
	}
}

void
gw_disc_refresh(gw_disc *d)
{
	resolve_all(d);
}

int
gw_disc_is_name(const gw_disc *d, size_t entry)
{
	return entry < d->n && d->t[entry].name;
}

void
gw_disc_free(gw_disc *d)
{
	int pending = 0;

	if (d == NULL) {
		return;
	}
	d->closing = 1;
	for (size_t i = 0; d->t != NULL && i < d->n; i++) {
		if (d->t[i].req != NULL) {
			evdns_getaddrinfo_cancel(d->t[i].req);
			pending = 1;
		}
	}
	/* libevent 2.1 delivers a cancellation (dns_cb with
	 * EVUTIL_EAI_CANCEL, which frees the lookup) as a deferred callback
	 * of the loop; the loop has usually stopped by now, so run it once
	 * without waiting, or the lookups leak. */
	if (pending) {
		event_base_loop(d->base, EVLOOP_NONBLOCK);
	}
	if (d->dns != NULL) {
		evdns_base_free(d->dns, 0);
	}
	if (d->timer != NULL) {
		event_free(d->timer);
	}
	for (size_t i = 0; d->t != NULL && i < d->n; i++) {
		free(d->t[i].url);
	}
	free(d->t);
	free(d);
}
