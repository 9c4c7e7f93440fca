/* cm_tls.c - TLS on the NNG hop: settings checked at startup, NNG TLS
 * configurations shared by the process, failed handshakes logged.
 *
 * NNG 1.5.2 does the TLS itself (its mbedTLS engine); this file reads the
 * PEM files once, checks them with mbedTLS directly (so that a wrong path,
 * a key that belongs to another certificate or an expired certificate stop
 * the process at startup with the file's name, instead of every handshake
 * failing later), and hands NNG one configuration per role and server
 * name. NNG counts a configuration's references: every listener or dialer
 * that uses one holds it.
 *
 * A failed handshake never reaches the application as an event: NNG counts
 * it in the listener's or dialer's statistics ("auth" for a certificate the
 * peer or we refused, "other" for a handshake that broke off) and tries
 * again. cm_tls_watch() turns those counters into log lines.
 */
#include "cm_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/error.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>
#include <nng/supplemental/tls/tls.h>

#include "cm.h"
#include "cm_log.h"

#define PEM_MAX        (1 << 20) /* larger than any sane chain */
#define WATCH_EVERY_MS 10000     /* one line per endpoint at most this often */
#define WATCH_MAX      1024      /* endpoints followed */

/* A client configuration for one server name. */
typedef struct named_cfg {
	char           *name;
	nng_tls_config *cfg;
} named_cfg;

/* Why NNG counted a connection as failed, from its statistics. */
enum { R_AUTH, R_OTHER, R_REFUSED, R_TIMEOUT, R_N };

static const char *const reason_text[R_N] = {
    "TLS handshake or certificate refused", /* "auth" */
    "closed during the handshake",          /* "other", "proto" */
    "connection refused",                   /* "refused" (dialers) */
    "timed out",                            /* "timeout" */
};

/* Counters of one tls+ listener or dialer, between two looks. */
typedef struct watched {
	int      listener;
	uint64_t id;
	uint64_t seen[R_N];    /* NNG's totals at the last look */
	uint64_t pending[R_N]; /* failures not logged yet */
	int64_t  logged_ms;    /* last line, 0: never */
	int      alive;        /* found in the last look */
} watched;

static struct {
	int             on;
	int             server;
	char            var[32];
	char            event[40];
	char           *server_name; /* override, NULL: the URL's host */
	char           *ca_pem, *cert_pem, *key_pem;
	pthread_mutex_t mu; /* the configurations below */
	nng_tls_config *server_cfg;
	named_cfg      *named;
	size_t          nnamed;
	watched        *w;
	size_t          nw;
} tls = {.mu = PTHREAD_MUTEX_INITIALIZER};

static int
is_tls(const char *url)
{
	return strncmp(url, "tls+", 4) == 0;
}

/* Reads the file named by var=path whole, NUL-terminated (mbedTLS wants the
 * NUL counted in a PEM buffer). Returns CM_OK with *out, or an error with
 * a message in err. */
static int
read_pem(
    const char *var, const char *path, char **out, char *err, size_t errlen)
{
	FILE  *f;
	char  *buf = NULL;
	size_t len = 0;
	int    rv = CM_EINVAL;

	if ((f = fopen(path, "rb")) == NULL) {
		snprintf(err, errlen, "%s=%s: %s", var, path, strerror(errno));
		return CM_EINVAL;
	}
	if ((buf = malloc(PEM_MAX + 1)) == NULL) {
		rv = CM_ENOMEM;
		snprintf(err, errlen, "%s=%s: %s", var, path, cm_strerror(rv));
		goto out;
	}
	len = fread(buf, 1, PEM_MAX + 1, f);
	if (ferror(f)) {
		snprintf(err, errlen, "%s=%s: %s", var, path, strerror(errno));
		goto out;
	}
	if (len > PEM_MAX) {
		snprintf(err, errlen, "%s=%s: larger than %d bytes", var, path,
		    PEM_MAX);
		goto out;
	}
	if (len == 0) {
		snprintf(err, errlen, "%s=%s: empty file", var, path);
		goto out;
	}
	buf[len] = '\0';
	*out = buf;
	buf = NULL;
	rv = CM_OK;
out:
	free(buf);
	fclose(f);
	return rv;
}

static void
mbed_text(int ret, char *buf, size_t len)
{
	mbedtls_strerror(ret, buf, len);
}

/* Parses var's PEM as certificates into crt. Returns CM_OK or CM_EINVAL
 * with a message. */
static int
parse_crt(mbedtls_x509_crt *crt, const char *var, const char *path,
    const char *pem, char *err, size_t errlen)
{
	char why[160];
	int  ret = mbedtls_x509_crt_parse(
	     crt, (const unsigned char *) pem, strlen(pem) + 1);

	if (ret != 0) {
		mbed_text(ret, why, sizeof(why));
		snprintf(err, errlen, "%s=%s: not a PEM certificate (%s)", var,
		    path, why);
		return CM_EINVAL;
	}
	return CM_OK;
}

/* Checks the three files with mbedTLS: CA and certificate parse and have
 * not expired, the key parses and belongs to the certificate. */
static int
check_files(const cm_tls_opts *o, char *err, size_t errlen)
{
	mbedtls_x509_crt   ca, crt;
	mbedtls_pk_context pk;
	char               var[64], why[160];
	int                ret, rv = CM_EINVAL;

	mbedtls_x509_crt_init(&ca);
	mbedtls_x509_crt_init(&crt);
	mbedtls_pk_init(&pk);
	snprintf(var, sizeof(var), "%s_CA", o->var);
	if (parse_crt(&ca, var, o->ca, tls.ca_pem, err, errlen) != CM_OK) {
		goto out;
	}
	snprintf(var, sizeof(var), "%s_CERT", o->var);
	if (parse_crt(&crt, var, o->cert, tls.cert_pem, err, errlen) !=
	    CM_OK) {
		goto out;
	}
	if (mbedtls_x509_time_is_past(&crt.valid_to)) {
		snprintf(err, errlen,
		    "%s=%s: the certificate expired on "
		    "%04d-%02d-%02d",
		    var, o->cert, crt.valid_to.year, crt.valid_to.mon,
		    crt.valid_to.day);
		goto out;
	}
	snprintf(var, sizeof(var), "%s_KEY", o->var);
	if ((ret = mbedtls_pk_parse_key(&pk,
	         (const unsigned char *) tls.key_pem, strlen(tls.key_pem) + 1,
	         NULL, 0)) != 0) {
		mbed_text(ret, why, sizeof(why));
		snprintf(err, errlen,
		    "%s=%s: not an unencrypted PEM private key (%s)", var,
		    o->key, why);
		goto out;
	}
	if (mbedtls_pk_check_pair(&crt.pk, &pk) != 0) {
		snprintf(err, errlen,
		    "%s=%s is not the key of the certificate in %s_CERT=%s",
		    var, o->key, o->var, o->cert);
		goto out;
	}
	rv = CM_OK;
out:
	mbedtls_pk_free(&pk);
	mbedtls_x509_crt_free(&crt);
	mbedtls_x509_crt_free(&ca);
	return rv;
}

int
cm_tls_server_name(
    const char *url, const char *override, char *buf, size_t len)
{
	nng_url *u;
	int      rv = CM_EINVAL;

	if (override != NULL && override[0] != '\0') {
		if (strlen(override) >= len) {
			return CM_EINVAL;
		}
		snprintf(buf, len, "%s", override);
		return CM_OK;
	}
	if (nng_url_parse(&u, url) != 0) {
		return CM_EINVAL;
	}
	if (u->u_hostname != NULL && u->u_hostname[0] != '\0' &&
	    strlen(u->u_hostname) < len) {
		snprintf(buf, len, "%s", u->u_hostname);
		rv = CM_OK;
	}
	nng_url_free(u);
	return rv;
}

/* Returns 1 when name is an IPv4 or IPv6 address. */
static int
is_ip(const char *name)
{
	unsigned char a[16];
	return inet_pton(AF_INET, name, a) == 1 ||
	    inet_pton(AF_INET6, name, a) == 1;
}

/* The combination rules of cm_tls_setup(). */
static int
check_urls(const cm_tls_opts *o, int files, char *const *urls, size_t n,
    char *err, size_t errlen)
{
	for (size_t i = 0; i < n; i++) {
		char name[256];

		if (!is_tls(urls[i])) {
			if (files) {
				snprintf(err, errlen,
				    "%s is not a tls+tcp:// URL, but "
				    "%s_CA/CERT/KEY are set: use tls+tcp:// "
				    "everywhere or unset them (no silent "
				    "plaintext)",
				    urls[i], o->var);
				return CM_EINVAL;
			}
			continue;
		}
		if (files != 3) {
			snprintf(err, errlen,
			    "%s needs %s_CA, %s_CERT and %s_KEY (%s%s%s "
			    "missing)",
			    urls[i], o->var, o->var, o->var,
			    o->ca[0] ? "" : "CA ", o->cert[0] ? "" : "CERT ",
			    o->key[0] ? "" : "KEY");
			return CM_EINVAL;
		}
		if (o->server) {
			continue;
		}
		if (cm_tls_server_name(urls[i], o->server_name, name,
		        sizeof(name)) != CM_OK) {
			snprintf(err, errlen, "%s: no host name to verify",
			    urls[i]);
			return CM_EINVAL;
		}
		if (is_ip(name)) {
			snprintf(err, errlen,
			    "%s: the replicas' certificates are checked "
			    "against a DNS name and this URL has an IP "
			    "address: set %s_SERVER_NAME to a DNS name in "
			    "their certificates",
			    urls[i], o->var);
			return CM_EINVAL;
		}
	}
	return CM_OK;
}

int
cm_tls_setup(const cm_tls_opts *o, char *const *urls, size_t n, char *err,
    size_t errlen)
{
	int files =
	    (o->ca[0] != '\0') + (o->cert[0] != '\0') + (o->key[0] != '\0');
	char var[64];
	int  rv;

	if (files > 0 && files < 3) {
		snprintf(err, errlen,
		    "%s_CA, %s_CERT and %s_KEY go together: only %s%s%sset",
		    o->var, o->var, o->var, o->ca[0] ? "CA " : "",
		    o->cert[0] ? "CERT " : "", o->key[0] ? "KEY " : "");
		return CM_EINVAL;
	}
	if ((rv = check_urls(o, files, urls, n, err, errlen)) != CM_OK ||
	    files == 0) {
		return rv;
	}
	snprintf(tls.var, sizeof(tls.var), "%s", o->var);
	snprintf(tls.event, sizeof(tls.event), "%s",
	    o->event != NULL ? o->event : "TLS-HANDSHAKE");
	snprintf(var, sizeof(var), "%s_CA", o->var);
	if ((rv = read_pem(var, o->ca, &tls.ca_pem, err, errlen)) != CM_OK) {
		goto fail;
	}
	snprintf(var, sizeof(var), "%s_CERT", o->var);
	if ((rv = read_pem(var, o->cert, &tls.cert_pem, err, errlen)) !=
	    CM_OK) {
		goto fail;
	}
	snprintf(var, sizeof(var), "%s_KEY", o->var);
	if ((rv = read_pem(var, o->key, &tls.key_pem, err, errlen)) != CM_OK) {
		goto fail;
	}
	if ((rv = check_files(o, err, errlen)) != CM_OK) {
		goto fail;
	}
	if (o->server_name != NULL && o->server_name[0] != '\0' &&
	    (tls.server_name = strdup(o->server_name)) == NULL) {
		rv = CM_ENOMEM;
		snprintf(err, errlen, "%s", cm_strerror(rv));
		goto fail;
	}
	tls.server = o->server;
	tls.on = 1;
	return CM_OK;
fail:
	cm_tls_fini();
	return rv;
}

int
cm_tls_enabled(void)
{
	return tls.on;
}

/* Makes a configuration from the loaded files; server_name NULL for the
 * server side. Returns 0 or an NNG error. */
static int
make_cfg(nng_tls_config **out, const char *server_name)
{
	nng_tls_config *cfg;
	int             rv;

	if ((rv = nng_tls_config_alloc(&cfg,
	         server_name == NULL ? NNG_TLS_MODE_SERVER
	                             : NNG_TLS_MODE_CLIENT)) != 0) {
		return rv;
	}
	/* REQUIRED both ways: the server refuses a client without a
	 * certificate from the CA, the client a server whose certificate
	 * is not from the CA or does not carry server_name. */
	if ((rv = nng_tls_config_ca_chain(cfg, tls.ca_pem, NULL)) != 0 ||
	    (rv = nng_tls_config_own_cert(
	         cfg, tls.cert_pem, tls.key_pem, NULL)) != 0 ||
	    (rv = nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_REQUIRED)) !=
	        0 ||
	    (server_name != NULL &&
	        (rv = nng_tls_config_server_name(cfg, server_name)) != 0)) {
		nng_tls_config_free(cfg);
		return rv;
	}
	*out = cfg;
	return 0;
}

int
cm_tls_listener_apply(nng_listener l, const char *url)
{
	int rv = 0;

	if (!is_tls(url)) {
		return 0;
	}
	if (!tls.on || !tls.server) {
		return NNG_EINVAL;
	}
	pthread_mutex_lock(&tls.mu);
	if (tls.server_cfg == NULL) {
		rv = make_cfg(&tls.server_cfg, NULL);
	}
	if (rv == 0) {
		rv = nng_listener_set_ptr(
		    l, NNG_OPT_TLS_CONFIG, tls.server_cfg);
	}
	pthread_mutex_unlock(&tls.mu);
	return rv;
}

int
cm_tls_dialer_apply(nng_dialer d, const char *entry)
{
	char            name[256];
	nng_tls_config *cfg = NULL;
	int             rv = 0;

	if (!is_tls(entry)) {
		return 0;
	}
	if (!tls.on || tls.server) {
		return NNG_EINVAL;
	}
	if (cm_tls_server_name(entry, tls.server_name, name, sizeof(name)) !=
	    CM_OK) {
		return NNG_EADDRINVAL;
	}
	pthread_mutex_lock(&tls.mu);
	for (size_t i = 0; i < tls.nnamed; i++) {
		if (strcmp(tls.named[i].name, name) == 0) {
			cfg = tls.named[i].cfg;
			break;
		}
	}
	if (cfg == NULL) {
		named_cfg *nn =
		    realloc(tls.named, (tls.nnamed + 1) * sizeof(*nn));
		char *dup = strdup(name);
		if (nn != NULL) {
			tls.named = nn;
		}
		if (nn == NULL || dup == NULL) {
			free(dup);
			rv = NNG_ENOMEM;
		} else if ((rv = make_cfg(&cfg, name)) != 0) {
			free(dup);
		} else {
			tls.named[tls.nnamed].name = dup;
			tls.named[tls.nnamed].cfg = cfg;
			tls.nnamed++;
		}
	}
	if (rv == 0) {
		rv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, cfg);
	}
	pthread_mutex_unlock(&tls.mu);
	return rv;
}

/* ---- watching the handshakes ---- */

static uint64_t
child_value(nng_stat *scope, const char *name)
{
	nng_stat *s = nng_stat_find(scope, name);
	return s != NULL ? nng_stat_value(s) : 0;
}

static watched *
find_watched(int listener, uint64_t id)
{
	watched *w;

	for (size_t i = 0; i < tls.nw; i++) {
		if (tls.w[i].listener == listener && tls.w[i].id == id) {
			return &tls.w[i];
		}
	}
	if (tls.nw == WATCH_MAX ||
	    (w = realloc(tls.w, (tls.nw + 1) * sizeof(*w))) == NULL) {
		return NULL;
	}
	tls.w = w;
	w = &tls.w[tls.nw++];
	memset(w, 0, sizeof(*w));
	w->listener = listener;
	w->id = id;
	return w;
}

/* One tls+ listener or dialer scope of the statistics. */
static void
look_at(nng_stat *scope, int listener, int64_t now_ms)
{
	nng_stat   *url = nng_stat_find(scope, "url");
	const char *u = url != NULL ? nng_stat_string(url) : NULL;
	uint64_t    now[R_N], fresh = 0, total = 0;
	watched    *w;
	char        why[256];
	size_t      off = 0;

	if (u == NULL || !is_tls(u)) {
		return;
	}
	/* A handshake the peer broke off (say it refused our certificate)
	 * counts as "other" or "proto"; so does a plain TCP connection
	 * that closes at once, such as a port probe. */
	now[R_AUTH] = child_value(scope, "auth");
	now[R_OTHER] =
	    child_value(scope, "other") + child_value(scope, "proto");
	now[R_REFUSED] = listener ? 0 : child_value(scope, "refused");
	now[R_TIMEOUT] = child_value(scope, "timeout");
	if ((w = find_watched(listener, child_value(scope, "id"))) == NULL) {
		return;
	}
	w->alive = 1;
	for (int r = 0; r < R_N; r++) {
		if (now[r] > w->seen[r]) {
			w->pending[r] += now[r] - w->seen[r];
			fresh += now[r] - w->seen[r];
			w->seen[r] = now[r];
		}
		total += w->pending[r];
	}
	if (fresh == 0 ||
	    (w->logged_ms != 0 && now_ms - w->logged_ms < WATCH_EVERY_MS)) {
		return;
	}
	/* Only the reasons seen since the last line. */
	why[0] = '\0';
	for (int r = 0; r < R_N && off < sizeof(why); r++) {
		if (w->pending[r] > 0) {
			off += (size_t) snprintf(why + off, sizeof(why) - off,
			    "%s%llu %s", off > 0 ? ", " : "",
			    (unsigned long long) w->pending[r],
			    reason_text[r]);
		}
		w->pending[r] = 0;
	}
	CM_WARN(tls.event, NULL,
	    "%s %s: %llu connection(s) failed since the last report: %s",
	    listener ? "listener" : "dialer", u, (unsigned long long) total,
	    why);
	w->logged_ms = now_ms;
}

static void
walk(nng_stat *s, int64_t now_ms)
{
	for (; s != NULL; s = nng_stat_next(s)) {
		if (nng_stat_type(s) != NNG_STAT_SCOPE) {
			continue;
		}
		if (strcmp(nng_stat_name(s), "listener") == 0) {
			look_at(s, 1, now_ms);
		} else if (strcmp(nng_stat_name(s), "dialer") == 0) {
			look_at(s, 0, now_ms);
		}
		walk(nng_stat_child(s), now_ms);
	}
}

void
cm_tls_watch(void)
{
	nng_stat *st;
	size_t    kept = 0;

	if (!tls.on || nng_stats_get(&st) != 0) {
		return;
	}
	for (size_t i = 0; i < tls.nw; i++) {
		tls.w[i].alive = 0;
	}
	walk(st, cm_mono_us() / 1000);
	nng_stats_free(st);
	/* Forget the endpoints that are gone (DNS dropped them). */
	for (size_t i = 0; i < tls.nw; i++) {
		if (tls.w[i].alive) {
			tls.w[kept++] = tls.w[i];
		}
	}
	tls.nw = kept;
}

void
cm_tls_fini(void)
{
	pthread_mutex_lock(&tls.mu);
	if (tls.server_cfg != NULL) {
		nng_tls_config_free(tls.server_cfg);
		tls.server_cfg = NULL;
	}
	for (size_t i = 0; i < tls.nnamed; i++) {
		nng_tls_config_free(tls.named[i].cfg);
		free(tls.named[i].name);
	}
	free(tls.named);
	tls.named = NULL;
	tls.nnamed = 0;
	pthread_mutex_unlock(&tls.mu);
	free(tls.w);
	tls.w = NULL;
	tls.nw = 0;
	free(tls.ca_pem);
	free(tls.cert_pem);
	free(tls.key_pem);
	free(tls.server_name);
	tls.ca_pem = tls.cert_pem = tls.key_pem = tls.server_name = NULL;
	tls.on = 0;
}
