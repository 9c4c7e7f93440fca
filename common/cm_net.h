/* cm_net.h - listen addresses and listening sockets. */
#ifndef CM_NET_H
#define CM_NET_H

#include <stddef.h>

struct event_base;
struct evdns_base;

/* Splits "host:port" or "[v6]:port" into host (at most hostlen - 1 bytes)
 * and port (0 to 65535; 0 picks a free one). Returns CM_OK or CM_EINVAL. */
int cm_net_parse_listen(const char *s, char *host, size_t hostlen, int *port);

/* Creates a non-blocking listening TCP socket on host:port with
 * SO_REUSEADDR and SO_REUSEPORT, so that one process's loops (or several
 * processes) can share a port. Returns CM_OK with *fdp and *bound (the
 * actual port, useful with port 0), or CM_EINVAL with a message in err. */
int cm_net_listen(const char *host, int port, int backlog, int *fdp,
    int *bound, char *err, size_t errlen);

/* A libevent resolver for base set up from resolv_conf (NULL:
 * /etc/resolv.conf): its search domains, ndots and options, and its
 * nameservers as the C library uses them, the first one only. (libevent's
 * evdns sends each query to the next server in turn; glibc asks the first
 * and moves on only when it does not answer. In container networks the
 * second server is often an upstream resolver that does not know the
 * containers' names: podman writes its own DNS first and the host's
 * after it, and evdns then fails every other lookup of "redis".) Returns
 * NULL when out of memory. */
struct evdns_base *cm_evdns_new(
    struct event_base *base, const char *resolv_conf);

#endif /* CM_NET_H */
