/* cm_tls.h - TLS on the NNG hop (tls+tcp://, NNG's mbedTLS engine) for
 * both binaries: one CA, one certificate and one key per process, checked
 * at startup, with the peer's certificate required in both directions.
 *
 * Call cm_tls_setup() once at startup with every NNG URL the process will
 * listen on or dial; then cm_tls_listener_apply() / cm_tls_dialer_apply()
 * on each listener or dialer before it starts, cm_tls_watch() now and then
 * from one thread to log failed handshakes, and cm_tls_fini() before
 * nng_fini().
 */
#ifndef CM_TLS_H
#define CM_TLS_H

#include <nng/nng.h>
#include <stddef.h>

typedef struct cm_tls_opts {
	const char *var;  /* prefix of the variables, e.g. "GATEWAY_TLS" */
	const char *ca;   /* PEM file of the CA(s) that sign peers; "" unset */
	const char *cert; /* PEM file of our certificate (chain); "" unset */
	const char *key;  /* PEM file of its private key (unencrypted) */
	/* Dialers: the name the replicas' certificates must carry instead of
	 * the host of each URL; "" or NULL to use the host. */
	const char *server_name;
	const char *event;  /* log event id of failed handshakes */
	int         server; /* 1: listens (clients must show a certificate) */
} cm_tls_opts;

/* Checks o against the NNG URLs the process uses (urls[0..n)) and loads
 * the files. Either every URL is tls+tcp (tls+tcp4, tls+tcp6) and CA,
 * certificate and key are all set, or none of the three is set and no URL
 * is TLS: half a configuration is an error, never silent plaintext. For a
 * dialer, a tls+ URL whose host is an IP address needs o->server_name
 * (mbedTLS 2.28 matches DNS names only). The files must be readable PEM,
 * the certificate unexpired and the key its own. Returns CM_OK, or
 * CM_EINVAL / CM_ENOMEM with a message naming the variable and the file in
 * err. Not thread-safe: call before any thread uses TLS. */
int cm_tls_setup(const cm_tls_opts *o, char *const *urls, size_t n, char *err,
    size_t errlen);

/* Returns 1 once cm_tls_setup() enabled TLS, else 0. */
int cm_tls_enabled(void);

/* Writes the name a replica's certificate must carry when dialed through
 * url: override when not empty, else url's host. Returns CM_OK, or
 * CM_EINVAL when url has no host or buf is too small. */
int cm_tls_server_name(
    const char *url, const char *override, char *buf, size_t len);

/* When url is a tls+ URL, gives listener l the process's server
 * configuration (client certificates required against the CA); NNG holds
 * its own reference. Other URLs: nothing. Returns 0 or an NNG error
 * (nng_strerror), as the NNG calls around it do. */
int cm_tls_listener_apply(nng_listener l, const char *url);

/* When entry (a GATEWAY_UPSTREAMS entry as configured, before DNS turned
 * it into addresses) is a tls+ URL, gives dialer d the client
 * configuration for entry's server name: our certificate, the CA, and the
 * replica's certificate checked against that name. Configurations are
 * shared by every dialer with the same name. Other URLs: nothing. Returns
 * 0 or an NNG error. Thread-safe. */
int cm_tls_dialer_apply(nng_dialer d, const char *entry);

/* Looks at NNG's statistics of every tls+ listener and dialer and logs,
 * as a warning with o->event, the connections that failed their handshake
 * or the peer check since the last call: the first at once, then at most
 * one line per endpoint every 10 s. Call from one thread, about once a
 * second. Does nothing when TLS is off. */
void cm_tls_watch(void);

/* Drops the process's references to its configurations and the loaded
 * files. Call after every socket closed and before nng_fini(). */
void cm_tls_fini(void);

#endif /* CM_TLS_H */
