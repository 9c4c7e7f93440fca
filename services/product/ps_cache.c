/* ps_cache.c - the worker's Redis connection: hiredis async on the
 * worker's libevent loop, with per-command timeouts and reconnects.
 *
 * hiredis 0.14 async has no command timeout, so every GET carries a
 * libevent timer. The per-command state is on the heap and lives until
 * hiredis calls back (a reply, or NULL when the connection goes away or is
 * freed); when the timer fires first, the caller is answered CM_EUNAVAIL and
 * the late reply is just dropped. hiredis frees each reply itself after our
 * callback returns.
 */
#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm.h"
#include "cm_log.h"
#include "ps.h"

#define CONNECT_TIMEOUT_MS 1000

/* The fill script. KEYS: entry, fence. ARGV: value, version (0 for a
 * negative entry), ttl in ms. Returns 1 when it stored the value, 0 when
 * the fence or the entry already there forbids it (design.md, "Cache
 * entries"). A negative entry counts as version 0 on both sides, so it
 * never replaces an entry and any positive entry replaces it. */
const char ps_cache_fill_lua[] =
    "local ver = tonumber(ARGV[2])\n"
    "local fence = redis.call('GET', KEYS[2])\n"
    "if fence then\n"
    "  local deleted = string.sub(fence, 1, 1) == 'D'\n"
    "  local fv = tonumber(deleted and string.sub(fence, 2) or fence) or 0\n"
    "  if ver == 0 then\n"
    "    if not deleted then return 0 end\n"
    "  elseif fv > ver or (deleted and fv >= ver) then\n"
    "    return 0\n"
    "  end\n"
    "end\n"
    "local cur = redis.call('GET', KEYS[1])\n"
    "if cur then\n"
    "  local cv = tonumber(string.match(cur, '^P(%d+):')) or 0\n"
    "  if cv >= ver then return 0 end\n"
    "end\n"
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])\n"
    "return 1\n";

struct ps_cache {
	struct event_base *base;
	ps_redis_url       url;
	int                timeout_ms;
	redisAsyncContext *ac;        /* NULL while down */
	int                connected; /* TCP connect done */
	int                down;      /* for logging transitions only */
	int                closing;
	int                backoff_ms;
	struct event      *retry;      /* reconnect back-off */
	struct event      *conn_timer; /* connect timeout */
	char               sha[41]; /* of the fill script, "" until loaded */
};

typedef struct cmd {
	ps_cache        *cache;
	struct event    *timer; /* GET only */
	int              answered;
	ps_cache_get_fn  get_cb;
	ps_cache_fill_fn fill_cb;
	void            *arg;
	/* fill: kept for the EVAL retry after NOSCRIPT */
	char     key[40];
	char     fence[48];
	char     ver[16];
	char     ttl[24];
	uint8_t *val;
	size_t   len;
	int      retried;
} cmd;

static void start_connect(ps_cache *c);

/* ---- REDIS_URL ---- */

static int
copy_part(char *dst, size_t cap, const char *s, size_t n)
{
	if (n >= cap) {
		return CM_EINVAL;
	}
	memcpy(dst, s, n);
	dst[n] = '\0';
	return CM_OK;
}

static int
parse_uint(const char *s, size_t n, long max, long *out)
{
	long v = 0;
	if (n == 0 || n > 9) {
		return CM_EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9') {
			return CM_EINVAL;
		}
		v = v * 10 + (s[i] - '0');
	}
	if (v > max) {
		return CM_EINVAL;
	}
	*out = v;
	return CM_OK;
}

/* Parses redis://[[user]:password@]host[:port][/db] into *out (port 6379
 * and db 0 when absent; host may be a bracketed IPv6 address). Returns
 * CM_OK or CM_EINVAL. */
int
ps_cache_url_parse(const char *url, ps_redis_url *out)
{
	const char *p, *end, *at, *host, *hend;
	long        v;

	if (url == NULL || out == NULL) {
		return CM_EINVAL;
	}
	memset(out, 0, sizeof(*out));
	out->port = 6379;
	if (strncmp(url, "redis://", 8) != 0) {
		return CM_EINVAL;
	}
	p = url + 8;
	end = p + strcspn(p, "/?#");
	at = NULL;
	for (const char *q = p; q < end; q++) {
		if (*q == '@') {
			at = q; /* the last '@' ends the user info */
		}
	}
	if (at != NULL) {
		const char *colon = memchr(p, ':', (size_t) (at - p));
		if (colon != NULL) {
			if (copy_part(out->user, sizeof(out->user), p,
			        (size_t) (colon - p)) != CM_OK ||
			    copy_part(out->pass, sizeof(out->pass), colon + 1,
			        (size_t) (at - colon - 1)) != CM_OK) {
				return CM_EINVAL;
			}
		} else if (copy_part(out->pass, sizeof(out->pass), p,
		               (size_t) (at - p)) != CM_OK) {
			return CM_EINVAL;
		}
		p = at + 1;
	}
	if (*p == '[') {
		host = p + 1;
		hend = memchr(host, ']', (size_t) (end - host));
		if (hend == NULL) {
			return CM_EINVAL;
		}
		p = hend + 1;
	} else {
		host = p;
		hend = memchr(p, ':', (size_t) (end - p));
		if (hend == NULL) {
			hend = end;
		}
		p = hend;
	}
	if (hend == host ||
	    copy_part(out->host, sizeof(out->host), host,
	        (size_t) (hend - host)) != CM_OK) {
		return CM_EINVAL;
	}
	if (p < end) {
		if (*p != ':' ||
		    parse_uint(p + 1, (size_t) (end - p - 1), 65535, &v) !=
		        CM_OK ||
		    v == 0) {
			return CM_EINVAL;
		}
		out->port = (int) v;
	}
	if (*end == '\0') {
		return CM_OK;
	}
	if (*end != '/') {
		return CM_EINVAL; /* no query strings or fragments */
	}
	if (end[1] == '\0') {
		return CM_OK;
	}
	if (parse_uint(end + 1, strlen(end + 1), INT_MAX, &v) != CM_OK) {
		return CM_EINVAL;
	}
	out->db = (int) v;
	return CM_OK;
}

/* ---- connection ---- */

static void
add_ms(struct event *ev, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(ev, &tv);
}

static void
mark_down(ps_cache *c, const char *why)
{
	if (!c->down) {
		CM_WARN("PS-REDIS-DOWN", NULL, "redis %s:%d: %s", c->url.host,
		    c->url.port, why);
		c->down = 1;
	} else {
		CM_DEBUG("PS-REDIS-RETRY", NULL, "redis %s:%d: %s",
		    c->url.host, c->url.port, why);
	}
}

static void
schedule_retry(ps_cache *c)
{
	if (c->closing) {
		return;
	}
	add_ms(c->retry, c->backoff_ms);
	c->backoff_ms *= 2;
	if (c->backoff_ms > PS_BACKOFF_MAX_MS) {
		c->backoff_ms = PS_BACKOFF_MAX_MS;
	}
}

static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void) fd;
	(void) what;
	start_connect(arg);
}

/* The connect did not finish in time (a host that drops SYNs): give the
 * context up. hiredis answers its queued commands with NULL. */
static void
conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	ps_cache          *c = arg;
	redisAsyncContext *ac = c->ac;

	(void) fd;
	(void) what;
	if (ac == NULL || c->connected) {
		return;
	}
	c->ac = NULL;
	redisAsyncFree(ac);
	mark_down(c, "connect timed out");
	schedule_retry(c);
}

static void
on_connect(const redisAsyncContext *ac, int status)
{
	ps_cache *c = ac->data;

	evtimer_del(c->conn_timer);
	if (status != REDIS_OK) {
		/* hiredis frees ac after we return. */
		c->ac = NULL;
		mark_down(c, ac->errstr);
		schedule_retry(c);
		return;
	}
	c->connected = 1;
}

static void
on_disconnect(const redisAsyncContext *ac, int status)
{
	ps_cache *c = ac->data;

	(void) status;
	c->ac = NULL;
	c->connected = 0;
	if (c->closing) {
		return;
	}
	mark_down(c, ac->err ? ac->errstr : "disconnected");
	schedule_retry(c);
}

/* AUTH and SELECT: an error reply means this connection cannot serve; drop
 * it (the disconnect callback schedules a retry). */
static void
handshake_cb(redisAsyncContext *ac, void *r, void *priv)
{
	redisReply *reply = r;

	if (reply != NULL && reply->type == REDIS_REPLY_ERROR) {
		CM_ERROR("PS-REDIS-AUTH", NULL, "redis %s: %s",
		    (const char *) priv, reply->str);
		redisAsyncDisconnect(ac);
	}
}

static void
script_cb(redisAsyncContext *ac, void *r, void *priv)
{
	ps_cache   *c = ac->data;
	redisReply *reply = r;

	(void) priv;
	if (reply == NULL) {
		return;
	}
	if (reply->type == REDIS_REPLY_STRING && reply->len == 40) {
		memcpy(c->sha, reply->str, 40);
		c->sha[40] = '\0';
		c->backoff_ms = PS_BACKOFF_MIN_MS;
		if (c->down) {
			CM_INFO("PS-REDIS-UP", NULL, "redis %s:%d connected",
			    c->url.host, c->url.port);
			c->down = 0;
		}
	} else {
		CM_WARN("PS-REDIS-SCRIPT", NULL, "SCRIPT LOAD failed: %s",
		    reply->type == REDIS_REPLY_ERROR ? reply->str : "?");
	}
}

/* Starts a non-blocking connect. Commands issued before it completes are
 * queued by hiredis behind AUTH, SELECT and SCRIPT LOAD, so they run in
 * order once the socket is up. */
static void
start_connect(ps_cache *c)
{
	redisAsyncContext *ac;
	char               db[16];

	ac = redisAsyncConnect(c->url.host, c->url.port);
	if (ac == NULL || ac->err) {
		mark_down(c, ac != NULL ? ac->errstr : "out of memory");
		if (ac != NULL) {
			redisAsyncFree(ac);
		}
		schedule_retry(c);
		return;
	}
	ac->data = c;
	if (redisLibeventAttach(ac, c->base) != REDIS_OK) {
		redisAsyncFree(ac);
		schedule_retry(c);
		return;
	}
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	c->ac = ac;
	c->connected = 0;
	c->sha[0] = '\0';
	if (c->url.pass[0] != '\0') {
		if (c->url.user[0] != '\0') {
			const char *argv[] = {
			    "AUTH", c->url.user, c->url.pass};
			redisAsyncCommandArgv(
			    ac, handshake_cb, "AUTH", 3, argv, NULL);
		} else {
			const char *argv[] = {"AUTH", c->url.pass};
			redisAsyncCommandArgv(
			    ac, handshake_cb, "AUTH", 2, argv, NULL);
		}
	}
	if (c->url.db != 0) {
		const char *argv[] = {"SELECT", db};
		snprintf(db, sizeof(db), "%d", c->url.db);
		redisAsyncCommandArgv(
		    ac, handshake_cb, "SELECT", 2, argv, NULL);
	}
	{
		const char *argv[] = {"SCRIPT", "LOAD", ps_cache_fill_lua};
		redisAsyncCommandArgv(ac, script_cb, NULL, 3, argv, NULL);
	}
	add_ms(c->conn_timer, CONNECT_TIMEOUT_MS);
}

/* Creates the cache of one worker loop and starts connecting to url.
 * Returns CM_OK with *out (freed with ps_cache_free()) or CM_ENOMEM. */
int
ps_cache_new(struct event_base *base, const ps_redis_url *url, int timeout_ms,
    ps_cache **out)
{
	ps_cache *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		return CM_ENOMEM;
	}
	c->base = base;
	c->url = *url;
	c->timeout_ms = timeout_ms;
	c->backoff_ms = PS_BACKOFF_MIN_MS;
	c->retry = evtimer_new(base, retry_cb, c);
	c->conn_timer = evtimer_new(base, conn_timer_cb, c);
	if (c->retry == NULL || c->conn_timer == NULL) {
		ps_cache_free(c);
		return CM_ENOMEM;
	}
	start_connect(c);
	*out = c;
	return CM_OK;
}

/* Closes the connection; every command still waiting is answered
 * CM_EUNAVAIL before this returns. Must run on the cache's loop thread,
 * outside any hiredis callback. */
void
ps_cache_free(ps_cache *c)
{
	if (c == NULL) {
		return;
	}
	c->closing = 1;
	if (c->ac != NULL) {
		redisAsyncContext *ac = c->ac;
		c->ac = NULL;
		redisAsyncFree(ac);
	}
	if (c->retry != NULL) {
		event_free(c->retry);
	}
	if (c->conn_timer != NULL) {
		event_free(c->conn_timer);
	}
	free(c);
}

/* ---- commands ---- */

static void
cmd_free(cmd *k)
{
	if (k->timer != NULL) {
		event_free(k->timer);
	}
	free(k->val);
	free(k);
}

static void
get_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	cmd *k = arg;

	(void) fd;
	(void) what;
	/* The command stays queued in hiredis; its reply will free k. */
	k->answered = 1;
	k->get_cb(k->arg, CM_EUNAVAIL, NULL, 0);
}

static void
get_reply_cb(redisAsyncContext *ac, void *r, void *priv)
{
	cmd        *k = priv;
	redisReply *reply = r;

	(void) ac;
	if (!k->answered) {
		k->answered = 1;
		evtimer_del(k->timer);
		if (reply == NULL) {
			k->get_cb(k->arg, CM_EUNAVAIL, NULL, 0);
		} else if (reply->type == REDIS_REPLY_STRING) {
			k->get_cb(k->arg, CM_OK, (const uint8_t *) reply->str,
			    reply->len);
		} else if (reply->type == REDIS_REPLY_NIL) {
			k->get_cb(k->arg, CM_OK, NULL, 0);
		} else {
			CM_WARN("PS-REDIS-ERR", NULL, "GET: %s",
			    reply->type == REDIS_REPLY_ERROR
			        ? reply->str
			        : "unexpected reply type");
			k->get_cb(k->arg, CM_EUNAVAIL, NULL, 0);
		}
	}
	cmd_free(k);
}

/* Reads product:{id}. Returns CM_OK and later calls cb exactly once, never
 * before returning; or returns CM_EUNAVAIL (Redis is down) or CM_ENOMEM and
 * never calls cb. cb gets CM_EUNAVAIL when no reply came within the
 * timeout. */
int
ps_cache_get(ps_cache *c, int64_t id, ps_cache_get_fn cb, void *arg)
{
	cmd *k;

	if (c == NULL || c->ac == NULL || c->closing) {
		return CM_EUNAVAIL;
	}
	if ((k = calloc(1, sizeof(*k))) == NULL) {
		return CM_ENOMEM;
	}
	k->cache = c;
	k->get_cb = cb;
	k->arg = arg;
	if ((k->timer = evtimer_new(c->base, get_timeout_cb, k)) == NULL) {
		cmd_free(k);
		return CM_ENOMEM;
	}
	snprintf(k->key, sizeof(k->key), "product:%lld", (long long) id);
	{
		const char *argv[] = {"GET", k->key};
		if (redisAsyncCommandArgv(
		        c->ac, get_reply_cb, k, 2, argv, NULL) != REDIS_OK) {
			cmd_free(k);
			return CM_EUNAVAIL;
		}
	}
	add_ms(k->timer, c->timeout_ms);
	return CM_OK;
}

static int send_fill(redisAsyncContext *ac, cmd *k);

static void
fill_reply_cb(redisAsyncContext *ac, void *r, void *priv)
{
	cmd        *k = priv;
	redisReply *reply = r;
	int         rv = CM_EUNAVAIL, stored = 0;

	if (reply != NULL && reply->type == REDIS_REPLY_ERROR &&
	    strncmp(reply->str, "NOSCRIPT", 8) == 0 && !k->retried) {
		k->retried = 1;
		if (send_fill(ac, k) == REDIS_OK) {
			return; /* k lives on until the EVAL reply */
		}
	}
	if (reply != NULL && reply->type == REDIS_REPLY_INTEGER) {
		rv = CM_OK;
		stored = reply->integer == 1;
	} else if (reply != NULL) {
		CM_WARN("PS-REDIS-ERR", NULL, "fill %s: %s", k->key,
		    reply->type == REDIS_REPLY_ERROR ? reply->str
		                                     : "unexpected reply");
	}
	CM_DEBUG("PS-FILL", NULL, "%s version %s: %s", k->key, k->ver,
	    rv != CM_OK  ? "failed"
	        : stored ? "stored"
	                 : "refused");
	if (k->fill_cb != NULL) {
		k->fill_cb(k->arg, rv, stored);
	}
	cmd_free(k);
}

/* EVALSHA when the script's sha is known and this is not the retry after
 * NOSCRIPT; EVAL with the script text otherwise. */
static int
send_fill(redisAsyncContext *ac, cmd *k)
{
	ps_cache   *c = k->cache;
	int         use_sha = c->sha[0] != '\0' && !k->retried;
	const char *argv[] = {use_sha ? "EVALSHA" : "EVAL",
	    use_sha ? c->sha : ps_cache_fill_lua, "2", k->key, k->fence,
	    (const char *) k->val, k->ver, k->ttl};
	size_t lens[8];

	for (int i = 0; i < 8; i++) {
		lens[i] = i == 5 ? k->len : strlen(argv[i]); /* val: binary */
	}
	return redisAsyncCommandArgv(ac, fill_reply_cb, k, 8, argv, lens);
}

/* Stores val (len bytes, an entry as ps_entry_encode() makes it) at
 * product:{id} for ttl_ms, through the fill script, which refuses values
 * older than the fence or the entry already there; version is 0 for a
 * negative entry. Copies val. Returns CM_OK and later calls cb (may be
 * NULL) once, or CM_EUNAVAIL / CM_ENOMEM without calling it. */
int
ps_cache_fill(ps_cache *c, int64_t id, int version, const uint8_t *val,
    size_t len, long long ttl_ms, ps_cache_fill_fn cb, void *arg)
{
	cmd *k;

	if (c == NULL || c->ac == NULL || c->closing) {
		return CM_EUNAVAIL;
	}
	if ((k = calloc(1, sizeof(*k))) == NULL ||
	    (k->val = malloc(len > 0 ? len : 1)) == NULL) {
		free(k);
		return CM_ENOMEM;
	}
	memcpy(k->val, val, len);
	k->len = len;
	k->cache = c;
	k->fill_cb = cb;
	k->arg = arg;
	snprintf(k->key, sizeof(k->key), "product:%lld", (long long) id);
	snprintf(
	    k->fence, sizeof(k->fence), "product:%lld:fence", (long long) id);
	snprintf(k->ver, sizeof(k->ver), "%d", version);
	snprintf(k->ttl, sizeof(k->ttl), "%lld", ttl_ms);
	if (send_fill(c->ac, k) != REDIS_OK) {
		cmd_free(k);
		return CM_EUNAVAIL;
	}
	return CM_OK;
}
