/* ps_cache.c - the worker's Redis connection: hiredis async on the
 * worker's libevent loop, with per-command timeouts and reconnects.
 *
 * Besides GET it runs the four scripts of docs/consistency.md (lease,
 * fill, begin-write, end-write), loaded with SCRIPT LOAD on every connect
 * and called with EVALSHA, falling back to EVAL after NOSCRIPT.
 *
 * hiredis 0.14 async has no command timeout, so every command someone waits
 * for carries a libevent timer. The per-command state is on the heap and
 * lives until hiredis calls back (a reply, or NULL when the connection goes
 * away or is freed); when the timer fires first, the caller is answered
 * CM_EUNAVAIL and the late reply only repairs what it can (reply_late).
 * hiredis frees each reply itself after our callback returns.
 *
 * An end-write that fails is remembered and sent again on the next connect:
 * until it runs, its fence keeps readers from filling the id
 * (docs/consistency.md, "Failure cases").
 *
 * A circuit breaker (ps_breaker.c) watches every command's first outcome:
 * PRODUCT_REDIS_BREAKER_FAILURES failures in a row (timeouts, error
 * replies, a lost or absent connection) open it, and while it is open
 * every call fails at once with CM_EUNAVAIL, so reads bypass the cache
 * without waiting for a timeout each. After the cooldown one command goes
 * as a probe; its reply closes the breaker. A worker that gets no request
 * probes by itself (a GET of product:0, which never exists) when the
 * cooldown ends or the connection comes back, so the cache is used again
 * within seconds of Redis returning. End-writes are repairs and go
 * whenever the connection is up, breaker or not.
 */
#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm.h"
#include "cm_log.h"
#include "cm_redis.h"
#include "ps.h"

#define CONNECT_TIMEOUT_MS 1000
#define PENDING_MAX        10000 /* end-writes kept for a retry */
#define PENDING_RETRY_MS   1000  /* retry after an error reply */
/* begin-write and end-write wait this many times the read timeout: a write
 * waits for PostgreSQL anyway, and a slow Redis costs a write a 503 where
 * it costs a read only a bypass. */
#define WRITE_TIMEOUT_FACTOR 4

/* The scripts of docs/consistency.md, each run atomically by Redis. Keys:
 * product:{id} (the entry), product:{id}:lease, product:{id}:fence. */

/* lease (a reader after a GET miss, or after a stale entry). KEYS: entry,
 * lease, fence. ARGV: token, lease ms, the replica's Unix second. Returns
 * {0, entry} (hit), {1} (granted: the caller may fill with its token), {2}
 * (fenced: a write is in progress, read but do not fill) or {3} (busy:
 * another reader holds the lease). A fresh entry ('N', 'P<version>:' +
 * protobuf, or 'P<version>:<fresh until>:' with that second still ahead)
 * is a hit; a stale one or a value that is not an entry counts as none, so
 * that a fill replaces it. */
const char ps_cache_lease_lua[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if v then\n"
    "  if v == 'N' then return {0, v} end\n"
    "  local fu = string.match(v, '^P%d+:(%d+):')\n"
    "  if fu then\n"
    "    if tonumber(fu) > tonumber(ARGV[3]) then return {0, v} end\n"
    "  elseif string.match(v, '^P%d+:') then\n"
    "    return {0, v}\n"
    "  end\n"
    "end\n"
    "if redis.call('EXISTS', KEYS[3]) == 1 then return {2} end\n"
    "if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then\n"
    "  return {1}\n"
    "end\n"
    "return {3}\n";

/* fill (the reader holding a lease, after its PostgreSQL read). KEYS:
 * entry, lease. ARGV: token, value, version (0 for a negative entry), ttl
 * ms. Stores the value only while the lease is still the caller's and no
 * entry of a higher version is there, and gives the lease up. Returns 1
 * stored, 0 refused. */
const char ps_cache_fill_lua[] =
    "if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end\n"
    "redis.call('DEL', KEYS[2])\n"
    "local cur = redis.call('GET', KEYS[1])\n"
    "if cur then\n"
    "  local cv = tonumber(string.match(cur, '^P(%d+):')) or 0\n"
    "  if cv > tonumber(ARGV[3]) then return 0 end\n"
    "end\n"
    "redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[4])\n"
    "return 1\n";

/* begin-write (a writer, before its PostgreSQL transaction). KEYS: entry,
 * lease, fence. ARGV: fence ms. Returns the writes now in progress. */
const char ps_cache_begin_write_lua[] =
    "local n = redis.call('INCR', KEYS[3])\n"
    "redis.call('PEXPIRE', KEYS[3], ARGV[1])\n"
    "redis.call('DEL', KEYS[1], KEYS[2])\n"
    "return n\n";

/* end-write (a writer, after COMMIT or ROLLBACK). KEYS: entry, lease,
 * fence. Returns the writes still in progress (0 once the fence is gone;
 * a fence that expired meanwhile counts as gone). */
const char ps_cache_end_write_lua[] = "redis.call('DEL', KEYS[1], KEYS[2])\n"
                                      "local n = redis.call('DECR', KEYS[3])\n"
                                      "if n <= 0 then\n"
                                      "  redis.call('DEL', KEYS[3])\n"
                                      "  return 0\n"
                                      "end\n"
                                      "return n\n";

/* release (the reader holding a lease whose PostgreSQL read failed).
 * KEYS: entry, lease. ARGV: token. Gives the lease up if it is still the
 * caller's, so that the next reader need not wait for it to expire.
 * Returns 1 released, 0 not the caller's (any more). */
const char ps_cache_release_lua[] =
    "if redis.call('GET', KEYS[2]) == ARGV[1] then\n"
    "  return redis.call('DEL', KEYS[2])\n"
    "end\n"
    "return 0\n";

enum { S_LEASE, S_FILL, S_BEGIN, S_END, S_RELEASE, S_COUNT };

static const struct script {
	const char *name;
	const char *text;
	int         nkeys;
} scripts[S_COUNT] = {
    [S_LEASE] = {"lease", ps_cache_lease_lua, 3},
    [S_FILL] = {"fill", ps_cache_fill_lua, 2},
    [S_BEGIN] = {"begin-write", ps_cache_begin_write_lua, 3},
    [S_END] = {"end-write", ps_cache_end_write_lua, 3},
    [S_RELEASE] = {"release", ps_cache_release_lua, 2},
};

#define MAX_ARGS 4 /* ARGV of one script (lease: 3, fill: 4) */

struct ps_cache {
	struct event_base *base;
	cm_redis_url       url;
	int                timeout_ms;
	int                index; /* the worker's, for the breaker gauge */
	ps_breaker         breaker;
	cm_redis_conn     *conn;
	int                closing;
	struct event      *pending_timer; /* end-write retry on a live link */
	struct event      *probe_timer;   /* the breaker's cooldown ends */
	char               sha[S_COUNT][41]; /* "" until loaded */
	int64_t           *pending; /* ids whose end-write must be retried */
	size_t             npending;
	size_t             cap_pending;
};

/* One command: a GET (script -1) or a script. Lives on the heap until
 * hiredis calls back; a timeout answers the caller early and the late
 * reply is then only used to repair (see reply_late). */
typedef struct cmd {
	ps_cache     *cache;
	struct event *timer; /* NULL when nobody waits for the answer */
	int           answered;
	int           probe;   /* the half-open breaker's one command */
	int64_t       sent_us; /* for product_redis_command_duration */
	int           script;  /* S_*, or -1 for GET */
	int64_t       id;
	union {
		ps_cache_get_fn   get;
		ps_cache_lease_fn lease;
		ps_cache_fill_fn  fill;
		ps_cache_done_fn  done;
	} cb;
	void  *arg;
	char   keys[3][48];
	int    nargs;
	char  *args[MAX_ARGS]; /* kept for the EVAL retry after NOSCRIPT */
	size_t lens[MAX_ARGS];
	int    retried;
} cmd;

static void add_ms(struct event *ev, int ms);

/* ---- circuit breaker ---- */

static const char *const breaker_names[] = {"closed", "open", "half-open"};

/* Logs and publishes a change of the breaker's state. */
static void
breaker_moved(ps_cache *c, int was)
{
	int now = ps_breaker_state(&c->breaker);

	if (now == was) {
		return;
	}
	ps_metrics_breaker_state(c->index, now);
	if (now == PS_BREAKER_OPEN) {
		add_ms(
		    c->probe_timer, (int) (c->breaker.cooldown_us / 1000) + 1);
		CM_WARN("PS-REDIS-BREAKER", NULL,
		    "redis %s:%d: circuit %s -> open for %lld ms: reads "
		    "bypass "
		    "the cache, writes are refused",
		    c->url.host, c->url.port, breaker_names[was],
		    (long long) (c->breaker.cooldown_us / 1000));
	} else {
		CM_INFO("PS-REDIS-BREAKER", NULL,
		    "redis %s:%d: circuit %s -> %s", c->url.host, c->url.port,
		    breaker_names[was], breaker_names[now]);
	}
}

static void
probe_answered(void *arg, int rv, const uint8_t *data, size_t len)
{
	(void) arg;
	(void) rv;
	(void) data;
	(void) len;
}

/* Sends the half-open breaker's probe when nothing else did: when the
 * cooldown has ended and the connection is up. */
static void
probe_now(ps_cache *c)
{
	if (c->closing || ps_breaker_state(&c->breaker) != PS_BREAKER_OPEN ||
	    cm_mono_us() < c->breaker.open_until_us ||
	    !cm_redis_conn_connected(c->conn)) {
		return;
	}
	(void) ps_cache_get(c, 0, probe_answered, NULL);
}

static void
probe_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void) fd;
	(void) what;
	probe_now(arg);
}

/* Feeds one outcome to the breaker: ok, or a failure of kind (PS_REDIS_*,
 * also counted in product_redis_errors_total). */
static void
breaker_done(ps_cache *c, int probe, int ok, int kind)
{
	int was = ps_breaker_state(&c->breaker);

	if (c->closing) {
		return;
	}
	if (!ok) {
		ps_metrics_redis_error(kind);
	}
	ps_breaker_done(&c->breaker, probe, ok, cm_mono_us());
	breaker_moved(c, was);
}

/* May a command go now? Returns CM_OK with *probe set when it goes as the
 * half-open breaker's probe, or CM_EUNAVAIL: the breaker is open, or the
 * connection is down (which counts as a failure). */
static int
admit(ps_cache *c, int *probe)
{
	int was, r;

	*probe = 0;
	if (c == NULL || c->closing) {
		return CM_EUNAVAIL;
	}
	was = ps_breaker_state(&c->breaker);
	r = ps_breaker_allow(&c->breaker, cm_mono_us());
	breaker_moved(c, was);
	if (r == PS_BREAKER_DENY) {
		return CM_EUNAVAIL;
	}
	*probe = r == PS_BREAKER_PROBE;
	if (cm_redis_conn_ctx(c->conn) == NULL) {
		breaker_done(c, *probe, 0, PS_REDIS_DISCONNECTED);
		return CM_EUNAVAIL;
	}
	return CM_OK;
}

/* ---- connection ---- */

static void
add_ms(struct event *ev, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(ev, &tv);
}

/* The connection was lost or a connect failed: a failure for the
 * breaker. */
static void
conn_down(void *arg, const char *why)
{
	(void) why;
	breaker_done(arg, 0, 0, PS_REDIS_DISCONNECTED);
}

static void
script_cb(redisAsyncContext *ac, void *r, void *priv)
{
	ps_cache   *c = cm_redis_conn_arg(ac);
	redisReply *reply = r;
	int         idx = (int) (intptr_t) priv;

	if (reply == NULL) {
		return;
	}
	if (reply->type == REDIS_REPLY_STRING && reply->len == 40) {
		memcpy(c->sha[idx], reply->str, 40);
		c->sha[idx][40] = '\0';
		cm_redis_conn_up(c->conn);
		if (idx == S_COUNT - 1) {
			probe_now(c);
		}
	} else {
		CM_WARN("PS-REDIS-SCRIPT", NULL, "SCRIPT LOAD %s failed: %s",
		    scripts[idx].name,
		    reply->type == REDIS_REPLY_ERROR ? reply->str : "?");
	}
}

static void flush_pending(ps_cache *c);

/* A new connection: commands issued before it completes are queued by
 * hiredis behind AUTH, SELECT and SCRIPT LOAD, so they run in order once
 * the socket is up; the end-writes waiting for a retry go right behind
 * them. */
static void
conn_opened(void *arg, redisAsyncContext *ac)
{
	ps_cache *c = arg;

	for (int i = 0; i < S_COUNT; i++) {
		c->sha[i][0] = '\0';
	}
	for (int i = 0; i < S_COUNT; i++) {
		const char *argv[] = {"SCRIPT", "LOAD", scripts[i].text};
		redisAsyncCommandArgv(
		    ac, script_cb, (void *) (intptr_t) i, 3, argv, NULL);
	}
	flush_pending(c);
}

static void
pending_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	ps_cache *c = arg;

	(void) fd;
	(void) what;
	if (cm_redis_conn_connected(c->conn)) {
		flush_pending(c);
	}
}

/* Creates the cache of worker index's loop and starts connecting to
 * cfg->redis, with cfg's timeout and breaker settings. Returns CM_OK with
 * *out (freed with ps_cache_free()) or CM_ENOMEM. */
int
ps_cache_new(
    struct event_base *base, const ps_config *cfg, int index, ps_cache **out)
{
	ps_cache     *c = calloc(1, sizeof(*c));
	cm_redis_opts o = {.url = &cfg->redis,
	    .base = base,
	    .connect_timeout_ms = CONNECT_TIMEOUT_MS,
	    .backoff_min_ms = PS_BACKOFF_MIN_MS,
	    .backoff_max_ms = PS_BACKOFF_MAX_MS,
	    .log_prefix = "PS-REDIS",
	    .resolve = 1, /* a host name must not block the loop */
	    .opened = conn_opened,
	    .down = conn_down,
	    .arg = c};

	if (c == NULL) {
		return CM_ENOMEM;
	}
	c->base = base;
	c->url = cfg->redis;
	c->timeout_ms = (int) cfg->redis_timeout_ms;
	c->index = index;
	ps_breaker_init(&c->breaker, (int) cfg->breaker_failures,
	    (int64_t) cfg->breaker_cooldown_ms * 1000);
	ps_metrics_breaker_state(index, PS_BREAKER_CLOSED);
	c->pending_timer = evtimer_new(base, pending_timer_cb, c);
	c->probe_timer = evtimer_new(base, probe_timer_cb, c);
	if (c->pending_timer == NULL || c->probe_timer == NULL ||
	    cm_redis_conn_new(&c->conn, &o) != CM_OK) {
		ps_cache_free(c);
		return CM_ENOMEM;
	}
	*out = c;
	return CM_OK;
}

/* Closes the connection; every command still waiting is answered
 * CM_EUNAVAIL before this returns. End-writes still waiting for a retry
 * are dropped (their fences expire after PRODUCT_FENCE_MS). Must run on
 * the cache's loop thread, outside any hiredis callback. */
void
ps_cache_free(ps_cache *c)
{
	if (c == NULL) {
		return;
	}
	c->closing = 1;
	cm_redis_conn_free(c->conn);
	if (c->npending > 0) {
		CM_WARN("PS-END-WRITE-DROP", NULL,
		    "closing with %zu end-writes not done", c->npending);
	}
	if (c->pending_timer != NULL) {
		event_free(c->pending_timer);
	}
	if (c->probe_timer != NULL) {
		event_free(c->probe_timer);
	}
	free(c->pending);
	free(c);
}

/* ---- commands ---- */

static void
cmd_free(cmd *k)
{
	if (k->timer != NULL) {
		event_free(k->timer);
	}
	for (int i = 0; i < k->nargs; i++) {
		free(k->args[i]);
	}
	free(k);
}

/* Answers the caller of k with rv and no data. Fills, end-writes and
 * releases may have no caller waiting (a timed one is the breaker's
 * probe). */
static void
answer_fail(cmd *k, int rv)
{
	switch (k->script) {
	case -1:
		k->cb.get(k->arg, rv, NULL, 0);
		break;
	case S_LEASE:
		k->cb.lease(k->arg, rv, PS_LEASE_BUSY, NULL, 0);
		break;
	case S_FILL:
		if (k->cb.fill != NULL) {
			k->cb.fill(k->arg, rv, 0);
		}
		break;
	default:
		if (k->cb.done != NULL) {
			k->cb.done(k->arg, rv);
		}
		break;
	}
}

static void
timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	cmd *k = arg;

	(void) fd;
	(void) what;
	/* The command stays queued in hiredis; its reply will free k. */
	k->answered = 1;
	breaker_done(k->cache, k->probe, 0, PS_REDIS_TIMEOUT);
	answer_fail(k, CM_EUNAVAIL);
}

/* Remembers that id's end-write must run again; the list is flushed on
 * the next connect, or after PENDING_RETRY_MS while the link is up. */
static void
pending_add(ps_cache *c, int64_t id)
{
	if (c->closing) {
		return;
	}
	if (c->npending == c->cap_pending) {
		size_t   cap = c->cap_pending == 0 ? 16 : c->cap_pending * 2;
		int64_t *p;
		if (c->npending >= PENDING_MAX ||
		    (p = realloc(c->pending, cap * sizeof(*p))) == NULL) {
			CM_ERROR("PS-END-WRITE-DROP", NULL,
			    "product:%lld: end-write dropped (%zu waiting); "
			    "its fence expires on its own",
			    (long long) id, c->npending);
			return;
		}
		c->pending = p;
		c->cap_pending = cap;
	}
	c->pending[c->npending++] = id;
	if (cm_redis_conn_connected(c->conn)) {
		struct timeval tv = {
		    PENDING_RETRY_MS / 1000, (PENDING_RETRY_MS % 1000) * 1000};
		if (!evtimer_pending(c->pending_timer, NULL)) {
			evtimer_add(c->pending_timer, &tv);
		}
	}
}

/* The reply came after the caller was answered (timeout). It only
 * repairs: a begin-write that did run after all is undone with an
 * end-write (the writer gave up and never touched PostgreSQL), an
 * end-write that did not run is retried, a lease granted too late is
 * released. */
static void
reply_late(cmd *k, const redisReply *reply)
{
	int ok = reply != NULL && reply->type == REDIS_REPLY_INTEGER;

	if (k->script == S_BEGIN && ok) {
		CM_DEBUG("PS-BEGIN-UNDO", NULL,
		    "product:%lld: late begin-write undone",
		    (long long) k->id);
		if (ps_cache_end_write(k->cache, k->id, NULL, NULL) != CM_OK) {
			pending_add(k->cache, k->id);
		}
	} else if (k->script == S_END && !ok) {
		pending_add(k->cache, k->id);
	} else if (k->script == S_LEASE && reply != NULL &&
	    reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1 &&
	    reply->element[0]->type == REDIS_REPLY_INTEGER &&
	    reply->element[0]->integer == PS_LEASE_GRANTED) {
		/* Nobody will fill with it: give it up rather than make
		 * every reader of the id wait PRODUCT_LEASE_MS. */
		(void) ps_cache_release(k->cache, k->id, k->args[0]);
	}
}

static void
reply_get(cmd *k, const redisReply *reply)
{
	if (reply == NULL) {
		k->cb.get(k->arg, CM_EUNAVAIL, NULL, 0);
	} else if (reply->type == REDIS_REPLY_STRING) {
		k->cb.get(k->arg, CM_OK, (const uint8_t *) reply->str,
		    (size_t) reply->len);
	} else if (reply->type == REDIS_REPLY_NIL) {
		k->cb.get(k->arg, CM_OK, NULL, 0);
	} else {
		CM_WARN("PS-REDIS-ERR", NULL, "GET %s: %s", k->keys[0],
		    reply->type == REDIS_REPLY_ERROR
		        ? reply->str
		        : "unexpected reply type");
		k->cb.get(k->arg, CM_EUNAVAIL, NULL, 0);
	}
}

/* Decodes the lease script's {code} or {0, entry}. */
static void
reply_lease(cmd *k, const redisReply *reply)
{
	if (reply != NULL && reply->type == REDIS_REPLY_ARRAY &&
	    reply->elements >= 1 &&
	    reply->element[0]->type == REDIS_REPLY_INTEGER) {
		long long code = reply->element[0]->integer;
		if (code == PS_LEASE_HIT && reply->elements == 2 &&
		    reply->element[1]->type == REDIS_REPLY_STRING) {
			k->cb.lease(k->arg, CM_OK, PS_LEASE_HIT,
			    (const uint8_t *) reply->element[1]->str,
			    (size_t) reply->element[1]->len);
			return;
		}
		if (code == PS_LEASE_GRANTED || code == PS_LEASE_FENCED ||
		    code == PS_LEASE_BUSY) {
			k->cb.lease(k->arg, CM_OK, (int) code, NULL, 0);
			return;
		}
	}
	if (reply != NULL) {
		CM_WARN("PS-REDIS-ERR", NULL, "lease %s: %s", k->keys[0],
		    reply->type == REDIS_REPLY_ERROR ? reply->str
		                                     : "unexpected reply");
	}
	k->cb.lease(k->arg, CM_EUNAVAIL, PS_LEASE_BUSY, NULL, 0);
}

static int send_script(redisAsyncContext *ac, cmd *k);

static void
reply_cb(redisAsyncContext *ac, void *r, void *priv)
{
	cmd        *k = priv;
	redisReply *reply = r;

	if (k->script >= 0 && reply != NULL &&
	    reply->type == REDIS_REPLY_ERROR &&
	    strncmp(reply->str, "NOSCRIPT", 8) == 0 && !k->retried &&
	    !k->cache->closing) {
		k->retried = 1;
		if (send_script(ac, k) == REDIS_OK) {
			return; /* k lives on until the EVAL reply */
		}
	}
	if (k->answered) {
		reply_late(k, reply);
		cmd_free(k);
		return;
	}
	k->answered = 1;
	if (!k->cache->closing) {
		ps_metrics_redis_command(cm_mono_us() - k->sent_us);
		breaker_done(k->cache, k->probe,
		    reply != NULL && reply->type != REDIS_REPLY_ERROR,
		    reply == NULL ? PS_REDIS_DISCONNECTED : PS_REDIS_ERROR);
	}
	if (k->timer != NULL) {
		evtimer_del(k->timer);
	}
	if (k->script == -1) {
		reply_get(k, reply);
	} else if (k->script == S_LEASE) {
		reply_lease(k, reply);
	} else {
		int ok = reply != NULL && reply->type == REDIS_REPLY_INTEGER;
		if (reply != NULL && !ok) {
			CM_WARN("PS-REDIS-ERR", NULL, "%s %s: %s",
			    scripts[k->script].name, k->keys[0],
			    reply->type == REDIS_REPLY_ERROR
			        ? reply->str
			        : "unexpected reply");
		}
		if (k->script == S_END && !ok) {
			pending_add(k->cache, k->id);
		}
		if (k->script == S_FILL) {
			CM_DEBUG("PS-FILL", NULL, "%s: %s", k->keys[0],
			    !ok                       ? "failed"
			        : reply->integer == 1 ? "stored"
			                              : "refused");
			if (k->cb.fill != NULL) {
				k->cb.fill(k->arg, ok ? CM_OK : CM_EUNAVAIL,
				    ok && reply->integer == 1);
			}
		} else if (k->cb.done != NULL) {
			k->cb.done(k->arg, ok ? CM_OK : CM_EUNAVAIL);
		}
	}
	cmd_free(k);
}

/* EVALSHA when the script's sha is known and this is not the retry after
 * NOSCRIPT; EVAL with the script text otherwise. */
static int
send_script(redisAsyncContext *ac, cmd *k)
{
	ps_cache            *c = k->cache;
	const struct script *sc = &scripts[k->script];
	int         use_sha = c->sha[k->script][0] != '\0' && !k->retried;
	const char *argv[3 + 3 + MAX_ARGS];
	size_t      lens[3 + 3 + MAX_ARGS];
	char        nkeys[4];
	int         n = 0;

	snprintf(nkeys, sizeof(nkeys), "%d", sc->nkeys);
	argv[n++] = use_sha ? "EVALSHA" : "EVAL";
	argv[n++] = use_sha ? c->sha[k->script] : sc->text;
	argv[n++] = nkeys;
	for (int i = 0; i < 3; i++) {
		lens[i] = strlen(argv[i]);
	}
	for (int i = 0; i < sc->nkeys; i++, n++) {
		argv[n] = k->keys[i];
		lens[n] = strlen(k->keys[i]);
	}
	for (int i = 0; i < k->nargs; i++, n++) {
		argv[n] = k->args[i];
		lens[n] = k->lens[i]; /* the entry is binary */
	}
	return redisAsyncCommandArgv(ac, reply_cb, k, n, argv, lens);
}

/* Writes prefix and v's decimal digits to out (room for the prefix and
 * 20 more bytes); returns the length. */
static size_t
fmt_ll(char *out, const char *prefix, long long v)
{
	char               digits[24];
	char              *d = digits + sizeof(digits);
	unsigned long long u =
	    v < 0 ? 0 - (unsigned long long) v : (unsigned long long) v;
	size_t n = strlen(prefix), nd;

	do {
		*--d = (char) ('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (v < 0) {
		*--d = '-';
	}
	nd = (size_t) (digits + sizeof(digits) - d);
	memcpy(out, prefix, n);
	memcpy(out + n, d, nd);
	out[n + nd] = '\0';
	return n + nd;
}

/* Makes a command for id with the callback cb (a pointer to one of the
 * ps_cache_*_fn types, NULL for none). Returns NULL when out of memory. */
static cmd *
cmd_new(ps_cache *c, int script, int64_t id, void *arg)
{
	cmd   *k = calloc(1, sizeof(*k));
	size_t n;

	if (k == NULL) {
		return NULL;
	}
	k->cache = c;
	k->script = script;
	k->id = id;
	k->arg = arg;
	/* Three snprintf calls cost more than the rest of a GET here. */
	n = fmt_ll(k->keys[0], "product:", id);
	memcpy(k->keys[1], k->keys[0], n);
	memcpy(k->keys[1] + n, ":lease", sizeof(":lease"));
	memcpy(k->keys[2], k->keys[0], n);
	memcpy(k->keys[2] + n, ":fence", sizeof(":fence"));
	return k;
}

/* Appends a copy of val[0..len) to k's ARGV. Returns CM_OK or CM_ENOMEM. */
static int
cmd_arg(cmd *k, const void *val, size_t len)
{
	char *d = malloc(len + 1);

	if (d == NULL) {
		return CM_ENOMEM;
	}
	memcpy(d, val, len);
	d[len] = '\0';
	k->args[k->nargs] = d;
	k->lens[k->nargs] = len;
	k->nargs++;
	return CM_OK;
}

static int
cmd_arg_ll(cmd *k, long long v)
{
	char buf[24];
	return cmd_arg(k, buf, fmt_ll(buf, "", v));
}

/* Sends k and starts its timer when someone waits for the answer (or when
 * it is the breaker's probe, whose outcome must come). On failure frees k
 * and reports the failure to the breaker. Returns CM_OK, CM_EUNAVAIL or
 * CM_ENOMEM. */
static int
cmd_send(ps_cache *c, cmd *k, int timed)
{
	int rv;

	timed = timed || k->probe;
	k->sent_us = cm_mono_us();
	if (timed &&
	    (k->timer = evtimer_new(c->base, timeout_cb, k)) == NULL) {
		breaker_done(c, k->probe, 0, PS_REDIS_ERROR);
		cmd_free(k);
		return CM_ENOMEM;
	}
	if (k->script == -1) {
		const char *argv[] = {"GET", k->keys[0]};
		rv = redisAsyncCommandArgv(
		    cm_redis_conn_ctx(c->conn), reply_cb, k, 2, argv, NULL);
	} else {
		rv = send_script(cm_redis_conn_ctx(c->conn), k);
	}
	if (rv != REDIS_OK) {
		breaker_done(c, k->probe, 0, PS_REDIS_DISCONNECTED);
		cmd_free(k);
		return CM_EUNAVAIL;
	}
	if (k->timer != NULL) {
		/* libevent counts from the time cached when this loop turn
		 * began, which a busy turn leaves far behind: a timeout
		 * counted from there fires early. */
		event_base_update_cache_time(c->base);
		add_ms(k->timer,
		    k->script == S_BEGIN || k->script == S_END
		        ? c->timeout_ms * WRITE_TIMEOUT_FACTOR
		        : c->timeout_ms);
	}
	return CM_OK;
}

static int
usable(const ps_cache *c)
{
	return c != NULL && cm_redis_conn_ctx(c->conn) != NULL && !c->closing;
}

/* Makes a command that admit() let through; when out of memory, the
 * breaker hears of a failure (a probe must not stay out forever). */
static cmd *
cmd_admitted(ps_cache *c, int script, int64_t id, void *arg, int probe)
{
	cmd *k = cmd_new(c, script, id, arg);

	if (k == NULL) {
		breaker_done(c, probe, 0, PS_REDIS_ERROR);
		return NULL;
	}
	k->probe = probe;
	return k;
}

/* Reads product:{id}. Returns CM_OK and later calls cb exactly once, never
 * before returning; or returns CM_EUNAVAIL (Redis is down) or CM_ENOMEM and
 * never calls cb. cb gets CM_EUNAVAIL when no reply came within the
 * timeout. */
int
ps_cache_get(ps_cache *c, int64_t id, ps_cache_get_fn cb, void *arg)
{
	cmd *k;
	int  probe;

	if (admit(c, &probe) != CM_OK) {
		return CM_EUNAVAIL;
	}
	if ((k = cmd_admitted(c, -1, id, arg, probe)) == NULL) {
		return CM_ENOMEM;
	}
	k->cb.get = cb;
	return cmd_send(c, k, 1);
}

/* Runs the lease script for id with token (PS_CACHE_TOKEN_LEN characters)
 * and a lease of lease_ms; now_s (Unix seconds) tells fresh entries from
 * stale ones. Same contract as ps_cache_get(). A lease granted after the
 * timeout answered is left to expire. */
int
ps_cache_lease(ps_cache *c, int64_t id, const char *token, long long lease_ms,
    int64_t now_s, ps_cache_lease_fn cb, void *arg)
{
	cmd *k;
	int  probe;

	if (admit(c, &probe) != CM_OK) {
		return CM_EUNAVAIL;
	}
	if ((k = cmd_admitted(c, S_LEASE, id, arg, probe)) == NULL) {
		return CM_ENOMEM;
	}
	k->cb.lease = cb;
	if (cmd_arg(k, token, strlen(token)) != CM_OK ||
	    cmd_arg_ll(k, lease_ms) != CM_OK ||
	    cmd_arg_ll(k, (long long) now_s) != CM_OK) {
		breaker_done(c, probe, 0, PS_REDIS_ERROR);
		cmd_free(k);
		return CM_ENOMEM;
	}
	return cmd_send(c, k, 1);
}

/* Stores val (len bytes, an entry as ps_entry_encode() makes it) at
 * product:{id} for ttl_ms through the fill script, which stores it only
 * while the lease is still token's; version is 0 for a negative entry.
 * Copies val. Returns CM_OK and later calls cb (may be NULL) once, or
 * CM_EUNAVAIL / CM_ENOMEM without calling it. */
int
ps_cache_fill(ps_cache *c, int64_t id, const char *token, int version,
    const uint8_t *val, size_t len, long long ttl_ms, ps_cache_fill_fn cb,
    void *arg)
{
	cmd *k;
	int  probe;

	if (admit(c, &probe) != CM_OK) {
		return CM_EUNAVAIL;
	}
	if ((k = cmd_admitted(c, S_FILL, id, arg, probe)) == NULL) {
		return CM_ENOMEM;
	}
	k->cb.fill = cb;
	if (cmd_arg(k, token, strlen(token)) != CM_OK ||
	    cmd_arg(k, val, len) != CM_OK || cmd_arg_ll(k, version) != CM_OK ||
	    cmd_arg_ll(k, ttl_ms) != CM_OK) {
		breaker_done(c, probe, 0, PS_REDIS_ERROR);
		cmd_free(k);
		return CM_ENOMEM;
	}
	return cmd_send(c, k, cb != NULL);
}

/* Gives up the lease token holds on id (its read failed), fire and
 * forget. Returns CM_OK, or CM_EUNAVAIL / CM_ENOMEM (the lease then
 * expires on its own). */
int
ps_cache_release(ps_cache *c, int64_t id, const char *token)
{
	cmd *k;
	int  probe;

	if (admit(c, &probe) != CM_OK) {
		return CM_EUNAVAIL;
	}
	if ((k = cmd_admitted(c, S_RELEASE, id, NULL, probe)) == NULL) {
		return CM_ENOMEM;
	}
	if (cmd_arg(k, token, strlen(token)) != CM_OK) {
		breaker_done(c, probe, 0, PS_REDIS_ERROR);
		cmd_free(k);
		return CM_ENOMEM;
	}
	return cmd_send(c, k, 0);
}

/* Fences id for a write (begin-write, fence_ms at most). Returns CM_OK and
 * later calls cb once: CM_OK when the fence stands, CM_EUNAVAIL when Redis
 * failed or did not answer in time (a begin-write that runs after the
 * timeout is undone); or returns CM_EUNAVAIL / CM_ENOMEM without calling
 * cb. */
int
ps_cache_begin_write(ps_cache *c, int64_t id, long long fence_ms,
    ps_cache_done_fn cb, void *arg)
{
	cmd *k;
	int  probe;

	if (admit(c, &probe) != CM_OK) {
		return CM_EUNAVAIL;
	}
	if ((k = cmd_admitted(c, S_BEGIN, id, arg, probe)) == NULL) {
		return CM_ENOMEM;
	}
	k->cb.done = cb;
	if (cmd_arg_ll(k, fence_ms) != CM_OK) {
		breaker_done(c, probe, 0, PS_REDIS_ERROR);
		cmd_free(k);
		return CM_ENOMEM;
	}
	return cmd_send(c, k, 1);
}

/* Ends a write on id (end-write). Whenever it fails (Redis down, an error,
 * no reply) it is kept and sent again on the next connect, so the caller
 * only reports. Returns CM_OK and later calls cb (may be NULL) once; or
 * CM_EUNAVAIL / CM_ENOMEM without calling it (the retry is queued when it
 * could be). */
int
ps_cache_end_write(ps_cache *c, int64_t id, ps_cache_done_fn cb, void *arg)
{
	cmd *k;
	int  rv;

	if (c == NULL) {
		return CM_EUNAVAIL;
	}
	if (!usable(c)) {
		pending_add(c, id);
		return CM_EUNAVAIL;
	}
	if ((k = cmd_new(c, S_END, id, arg)) == NULL) {
		pending_add(c, id);
		return CM_ENOMEM;
	}
	k->cb.done = cb;
	if ((rv = cmd_send(c, k, cb != NULL)) != CM_OK) {
		pending_add(c, id);
	}
	return rv;
}

/* Sends every end-write waiting for a retry on the current connection
 * (still connecting is fine: hiredis queues them). Those that fail again
 * come back to the list. */
static void
flush_pending(ps_cache *c)
{
	int64_t *ids = c->pending;
	size_t   n = c->npending;

	if (n == 0 || cm_redis_conn_ctx(c->conn) == NULL) {
		return;
	}
	c->pending = NULL;
	c->npending = 0;
	c->cap_pending = 0;
	CM_DEBUG("PS-END-WRITE-RETRY", NULL, "retrying %zu end-write%s", n,
	    n == 1 ? "" : "s");
	for (size_t i = 0; i < n; i++) {
		(void) ps_cache_end_write(c, ids[i], NULL, NULL);
	}
	free(ids);
}
