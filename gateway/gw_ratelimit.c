/* gw_ratelimit.c - per-client token buckets shared by every gateway
 * through one Lua script in Redis, with a bucket per loop as the fallback;
 * the only gateway file that includes hiredis.
 *
 * Each loop has one hiredis async connection on its own event_base. A
 * check sends the bucket script (EVALSHA, EVAL after NOSCRIPT) and the
 * request waits for its reply; Redis's clock (TIME) drives every bucket,
 * so gateways need not agree on time. hiredis 0.14 async has no command
 * timeout: each command carries a libevent timer, and when it fires first
 * the local bucket decides and the late reply is dropped. After a timeout
 * or while the connection is down, checks go straight to the local bucket
 * (for a second after a timeout), so a slow or dead Redis costs a request
 * at most one GATEWAY_REDIS_TIMEOUT_MS and then nothing. Reconnects back
 * off from 100 ms to 2 s.
 *
 * The local buckets hold rate/nloops and burst/nloops each: a client's
 * connections spread over the loops (SO_REUSEPORT), so together the loops
 * of one gateway allow about the configured rate. With several gateways
 * and Redis down, each gateway allows that much on its own.
 */
#include <arpa/inet.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <mbedtls/sha1.h>

#include "cm.h"
#include "cm_log.h"
#include "cm_redis.h"
#include "cm_redis_url.h"
#include "gw.h"

#define KEY_PREFIX         "gw:rl:"
#define LOCAL_SLOTS        4096    /* buckets per loop, a power of two */
#define LOCAL_PROBE        8       /* slots looked at for one client */
#define XFF_HOPS_MAX       32      /* X-Forwarded-For entries looked at */
#define INFLIGHT_MAX       1000    /* commands awaiting Redis, per loop */
#define SLOW_PAUSE_US      1000000 /* local only, after a timeout */
#define CONNECT_TIMEOUT_MS 1000
#define BACKOFF_MIN_MS     100
#define BACKOFF_MAX_MS     2000

/* The bucket. KEYS[1]: the client's hash {t: tokens, ts: last update in
 * ms}. ARGV: rate (tokens a second), burst. Returns {allowed (0/1),
 * tokens left (floor), ms until a token (0 when allowed)}. The key
 * expires once the bucket would be full again, which is the same as no
 * key. */
static const char bucket_lua[] =
    "local rate = tonumber(ARGV[1])\n"
    "local burst = tonumber(ARGV[2])\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / "
    "1000)\n"
    "local b = redis.call('HMGET', KEYS[1], 't', 'ts')\n"
    "local tokens = tonumber(b[1])\n"
    "local ts = tonumber(b[2])\n"
    "if tokens == nil or ts == nil then\n"
    "  tokens = burst\n"
    "  ts = now\n"
    "end\n"
    "if now > ts then\n"
    "  tokens = math.min(burst, tokens + (now - ts) * rate / 1000)\n"
    "end\n"
    "local allowed = 0\n"
    "local wait = 0\n"
    "if tokens >= 1 then\n"
    "  tokens = tokens - 1\n"
    "  allowed = 1\n"
    "else\n"
    "  wait = math.ceil((1 - tokens) * 1000 / rate)\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 't', tostring(tokens), 'ts', "
    "tostring(now))\n"
    "redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * 1000 / "
    "rate) + 1000)\n"
    "return {allowed, math.floor(tokens), wait}\n";

/* ---- GATEWAY_RATE_LIMIT ---- */

static const char *
skip_ws(const char *s)
{
	while (*s == ' ' || *s == '\t') {
		s++;
	}
	return s;
}

/* Reads a decimal 1..1e9 at *s, moving *s past it. */
static int
read_count(const char **s, long long *out)
{
	long long v = 0;
	int       n = 0;

	while (**s >= '0' && **s <= '9') {
		v = v * 10 + (**s - '0');
		if (++n > 10 || v > 1000000000LL) {
			return CM_EINVAL;
		}
		(*s)++;
	}
	if (n == 0 || v == 0) {
		return CM_EINVAL;
	}
	*out = v;
	return CM_OK;
}

int
gw_rl_parse_limit(const char *s, gw_rl_limit *out)
{
	long long n, burst;
	double    per;

	if (s == NULL) {
		return CM_EINVAL;
	}
	s = skip_ws(s);
	if (read_count(&s, &n) != CM_OK) {
		return CM_EINVAL;
	}
	s = skip_ws(s);
	if (*s++ != '/') {
		return CM_EINVAL;
	}
	s = skip_ws(s);
	switch (*s++) {
	case 's':
		per = 1;
		break;
	case 'm':
		per = 60;
		break;
	case 'h':
		per = 3600;
		break;
	default:
		return CM_EINVAL;
	}
	burst = n;
	if (*s != '\0' && *s != ' ' && *s != '\t') {
		return CM_EINVAL; /* "100/sec" */
	}
	s = skip_ws(s);
	if (strncmp(s, "burst", 5) == 0 && (s[5] == ' ' || s[5] == '\t')) {
		s = skip_ws(s + 5);
		if (read_count(&s, &burst) != CM_OK) {
			return CM_EINVAL;
		}
		s = skip_ws(s);
	}
	if (*s != '\0') {
		return CM_EINVAL;
	}
	out->rate = (double) n / per;
	out->burst = burst;
	return CM_OK;
}

/* ---- GATEWAY_TRUSTED_PROXIES ---- */

typedef struct cidr {
	uint8_t addr[16]; /* IPv4 as IPv4-mapped IPv6 */
	int     bits;     /* prefix length over the 128 bits */
} cidr;

struct gw_cidrs {
	size_t n;
	cidr  *v;
};

/* Parses an IPv4 or IPv6 address (IPv6 possibly in brackets) into a
 * 16-byte form, IPv4 mapped. Returns 4 or 6, or 0 when s is none. */
static int
parse_ip(const char *s, size_t len, uint8_t out[16])
{
	char           buf[INET6_ADDRSTRLEN + 2];
	struct in_addr a4;

	if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
		s++;
		len -= 2;
	}
	if (len == 0 || len >= sizeof(buf)) {
		return 0;
	}
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (inet_pton(AF_INET, buf, &a4) == 1) {
		memset(out, 0, 10);
		out[10] = out[11] = 0xff;
		memcpy(out + 12, &a4, 4);
		return 4;
	}
	if (inet_pton(AF_INET6, buf, out) == 1) {
		return 6;
	}
	return 0;
}

void
gw_cidrs_free(gw_cidrs *c)
{
	if (c == NULL) {
		return;
	}
	free(c->v);
	free(c);
}

/* Parses one "addr[/len]" entry s[0..len) into *out. */
static int
parse_cidr(const char *s, size_t len, cidr *out)
{
	const char *slash = memchr(s, '/', len);
	size_t      alen = slash != NULL ? (size_t) (slash - s) : len;
	int         fam = parse_ip(s, alen, out->addr);
	int         max = fam == 4 ? 32 : 128, bits = max;

	if (fam == 0) {
		return CM_EINVAL;
	}
	if (slash != NULL) {
		const char *p = slash + 1, *end = s + len;
		if (p == end || end - p > 3) {
			return CM_EINVAL;
		}
		bits = 0;
		for (; p < end; p++) {
			if (*p < '0' || *p > '9') {
				return CM_EINVAL;
			}
			bits = bits * 10 + (*p - '0');
		}
		if (bits > max) {
			return CM_EINVAL;
		}
	}
	out->bits = fam == 4 ? bits + 96 : bits;
	return CM_OK;
}

int
gw_cidrs_parse(const char *s, gw_cidrs **out, char *err, size_t errlen)
{
	gw_cidrs *c = calloc(1, sizeof(*c));
	size_t    cap = 0;

	if (c == NULL) {
		return CM_ENOMEM;
	}
	if (s == NULL || *skip_ws(s) == '\0') {
		*out = c; /* the empty list */
		return CM_OK;
	}
	for (;;) {
		size_t      len = strcspn(s, ",");
		const char *b = skip_ws(s), *e = s + len;

		while (e > b && (e[-1] == ' ' || e[-1] == '\t')) {
			e--;
		}
		if (c->n == cap) {
			size_t ncap = cap == 0 ? 8 : cap * 2;
			cidr  *v = realloc(c->v, ncap * sizeof(*v));
			if (v == NULL) {
				gw_cidrs_free(c);
				return CM_ENOMEM;
			}
			c->v = v;
			cap = ncap;
		}
		if (b >= e ||
		    parse_cidr(b, (size_t) (e - b), &c->v[c->n]) != CM_OK) {
			snprintf(err, errlen,
			    "\"%.*s\" is not an address or address/length",
			    (int) (e - b > 64 ? 64 : (b < e ? e - b : 0)), b);
			gw_cidrs_free(c);
			return CM_EINVAL;
		}
		c->n++;
		if (s[len] == '\0') {
			break;
		}
		s += len + 1;
	}
	*out = c;
	return CM_OK;
}

static int
in_block(const cidr *b, const uint8_t a[16])
{
	int full = b->bits / 8, rest = b->bits % 8;

	if (memcmp(a, b->addr, (size_t) full) != 0) {
		return 0;
	}
	if (rest != 0) {
		uint8_t mask = (uint8_t) (0xff << (8 - rest));
		return (a[full] & mask) == (b->addr[full] & mask);
	}
	return 1;
}

/* Is the parsed address a in one of c's blocks? */
static int
match16(const gw_cidrs *c, const uint8_t a[16])
{
	for (size_t i = 0; c != NULL && i < c->n; i++) {
		if (in_block(&c->v[i], a)) {
			return 1;
		}
	}
	return 0;
}

int
gw_cidrs_match(const gw_cidrs *c, const char *ip)
{
	uint8_t a[16];

	if (ip == NULL || parse_ip(ip, strlen(ip), a) == 0) {
		return 0;
	}
	return match16(c, a);
}

/* ---- client addresses ---- */

/* Writes "a:" and the canonical text of a (IPv4 for mapped ones). */
static void
format_client(const uint8_t a[16], char *out, size_t outlen)
{
	static const uint8_t mapped[12] = {
	    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	char text[INET6_ADDRSTRLEN];

	if (memcmp(a, mapped, 12) == 0) {
		inet_ntop(AF_INET, a + 12, text, sizeof(text));
	} else {
		inet_ntop(AF_INET6, a, text, sizeof(text));
	}
	snprintf(out, outlen, "a:%s", text);
}

void
gw_rl_client_addr(const gw_cidrs *trusted, const char *peer, const char *xff,
    char *out, size_t outlen)
{
	uint8_t     pa[16], a[16];
	const char *p;

	if (peer == NULL || parse_ip(peer, strlen(peer), pa) == 0) {
		/* Not an IP peer: one bucket for all such clients. */
		snprintf(out, outlen, "a:-");
		return;
	}
	if (xff == NULL || !match16(trusted, pa)) {
		format_client(pa, out, outlen);
		return;
	}
	/* Walk the list from the right: each trusted proxy appended the
	 * address it got the request from, so the first untrusted address
	 * from the right is the client; what lies left of it the client
	 * may have written itself. */
	p = xff + strlen(xff);
	for (int hops = 0; hops < XFF_HOPS_MAX; hops++) {
		const char *b = p, *e = p;
		while (b > xff && b[-1] != ',') {
			b--;
		}
		p = b;
		while (b < e && (*b == ' ' || *b == '\t')) {
			b++;
		}
		while (e > b && (e[-1] == ' ' || e[-1] == '\t')) {
			e--;
		}
		if (parse_ip(b, (size_t) (e - b), a) == 0) {
			break; /* not an address: stop at the hop before */
		}
		memcpy(pa, a, 16);
		if (!match16(trusted, a) || p == xff) {
			break; /* the client, or the leftmost of all-trusted */
		}
		p--; /* the comma */
	}
	format_client(pa, out, outlen);
}

/* ---- local buckets ---- */

void
gw_rl_bucket_take(gw_rl_bucket *b, double rate, double burst, int64_t now_us,
    gw_rl_decision *d)
{
	if (b->ts_us == 0) {
		b->tokens = burst;
		b->ts_us = now_us;
	}
	if (now_us > b->ts_us) {
		b->tokens += (double) (now_us - b->ts_us) * rate / 1e6;
		if (b->tokens > burst) {
			b->tokens = burst;
		}
		b->ts_us = now_us;
	}
	d->source = GW_RL_LOCAL;
	d->limit = (long long) burst;
	if (b->tokens >= 1) {
		b->tokens -= 1;
		d->allowed = 1;
		d->remaining = (long long) floor(b->tokens);
		d->retry_after_s = 0;
	} else {
		d->allowed = 0;
		d->remaining = 0;
		d->retry_after_s = (int) ceil((1 - b->tokens) / rate);
		if (d->retry_after_s < 1) {
			d->retry_after_s = 1;
		}
	}
}

typedef struct lslot {
	char         client[GW_CLIENT_MAX];
	gw_rl_bucket b;
} lslot;

/* ---- the limiter of one loop ---- */

struct gw_rl {
	struct event_base *base;
	gw_rl_limit        limit;
	double             lrate, lburst; /* this loop's local share */
	int64_t (*now_us)(void);
	lslot *slots; /* LOCAL_SLOTS */
	/* Redis; all unused without a URL. */
	cm_redis_conn *redis; /* NULL without a URL */
	cm_redis_url   url;
	int            timeout_ms;
	int            closing;
	int64_t        slow_until_us; /* local only until then */
	int            inflight;
	char           sha[41];
	char           rate_arg[32], burst_arg[32];
};

/* One check waiting for Redis; freed when hiredis calls back. */
typedef struct rl_cmd {
	gw_rl        *rl;
	struct event *timer;
	gw_rl_cb      cb;
	void         *arg;
	int           answered;
	int           retried; /* EVAL after NOSCRIPT */
	char          key[sizeof(KEY_PREFIX) + GW_CLIENT_MAX];
} rl_cmd;

static uint32_t
fnv1a(const char *s)
{
	uint32_t h = 2166136261u;
	for (; *s != '\0'; s++) {
		h = (h ^ (uint8_t) *s) * 16777619u;
	}
	return h;
}

/* Finds client's local bucket, or takes a slot for it: an empty one, one
 * whose bucket has refilled by now (forgetting it changes nothing), or
 * else the one used longest ago. */
static gw_rl_bucket *
local_bucket(gw_rl *rl, const char *client, int64_t now)
{
	uint32_t h = fnv1a(client);
	lslot   *empty = NULL, *full = NULL, *oldest = NULL, *v;

	for (int i = 0; i < LOCAL_PROBE; i++) {
		lslot *s = &rl->slots[(h + (uint32_t) i) & (LOCAL_SLOTS - 1)];
		if (s->b.ts_us == 0) {
			empty = empty != NULL ? empty : s;
			continue;
		}
		if (strcmp(s->client, client) == 0) {
			return &s->b;
		}
		if (full == NULL &&
		    s->b.tokens +
		            (double) (now - s->b.ts_us) * rl->lrate / 1e6 >=
		        rl->lburst) {
			full = s;
		}
		if (oldest == NULL || s->b.ts_us < oldest->b.ts_us) {
			oldest = s;
		}
	}
	v = empty != NULL ? empty : (full != NULL ? full : oldest);
	snprintf(v->client, sizeof(v->client), "%s", client);
	v->b.ts_us = 0;
	return &v->b;
}

static void
decide_local(gw_rl *rl, const char *client, gw_rl_decision *d)
{
	int64_t now = rl->now_us();

	/* ts 0 means "never used", so a clock that starts at 0 (tests)
	 * is moved by one. */
	if (now <= 0) {
		now = 1;
	}
	gw_rl_bucket_take(
	    local_bucket(rl, client, now), rl->lrate, rl->lburst, now, d);
	d->limit = rl->limit.burst;
	gw_metrics_ratelimit(d->allowed, GW_RL_LOCAL);
}

static void
add_ms(struct event *ev, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(ev, &tv);
}

static void
rcmd_free(rl_cmd *k)
{
	if (k->timer != NULL) {
		event_free(k->timer);
	}
	k->rl->inflight--;
	free(k);
}

/* The client id is the key without its prefix. */
static const char *
client_of(const rl_cmd *k)
{
	return k->key + sizeof(KEY_PREFIX) - 1;
}

/* Redis did not answer in time: the local bucket decides, and Redis is
 * left alone for a while. The command stays queued in hiredis; its reply
 * frees k. */
static void
timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	rl_cmd        *k = arg;
	gw_rl         *rl = k->rl;
	gw_rl_decision d;

	(void) fd;
	(void) what;
	k->answered = 1;
	if (rl->slow_until_us < cm_mono_us()) {
		CM_WARN("GW-RL-REDIS-SLOW", NULL,
		    "redis %s:%d did not answer in %d ms; local buckets "
		    "for 1 s",
		    rl->url.host, rl->url.port, rl->timeout_ms);
	}
	rl->slow_until_us = cm_mono_us() + SLOW_PAUSE_US;
	decide_local(rl, client_of(k), &d);
	k->cb(&d, k->arg);
}

static int send_script(redisAsyncContext *ac, rl_cmd *k);

/* Reads {allowed, remaining, wait ms} into *d; returns 0, or -1 for any
 * other reply. */
static int
read_reply(const gw_rl *rl, const redisReply *r, gw_rl_decision *d)
{
	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 3) {
		return -1;
	}
	for (int i = 0; i < 3; i++) {
		if (r->element[i]->type != REDIS_REPLY_INTEGER) {
			return -1;
		}
	}
	d->source = GW_RL_REDIS;
	d->allowed = r->element[0]->integer == 1;
	d->limit = rl->limit.burst;
	d->remaining = r->element[1]->integer < 0 ? 0 : r->element[1]->integer;
	d->retry_after_s = 0;
	if (!d->allowed) {
		long long ms = r->element[2]->integer;
		d->remaining = 0;
		d->retry_after_s = (int) ((ms + 999) / 1000);
		if (d->retry_after_s < 1) {
			d->retry_after_s = 1;
		}
	}
	return 0;
}

static void
reply_cb(redisAsyncContext *ac, void *r, void *priv)
{
	rl_cmd        *k = priv;
	gw_rl         *rl = k->rl;
	redisReply    *reply = r;
	gw_rl_decision d;

	if (reply != NULL && reply->type == REDIS_REPLY_ERROR &&
	    strncmp(reply->str, "NOSCRIPT", 8) == 0 && !k->retried &&
	    !rl->closing) {
		k->retried = 1;
		if (send_script(ac, k) == REDIS_OK) {
			return; /* k lives on until the EVAL reply */
		}
	}
	if (!k->answered) {
		k->answered = 1;
		evtimer_del(k->timer);
		if (read_reply(rl, reply, &d) == 0) {
			gw_metrics_ratelimit(d.allowed, GW_RL_REDIS);
		} else {
			if (reply != NULL && !rl->closing) {
				CM_WARN("GW-RL-REDIS-ERR", NULL,
				    "bucket script: %s",
				    reply->type == REDIS_REPLY_ERROR
				        ? reply->str
				        : "unexpected reply");
			}
			decide_local(rl, client_of(k), &d);
		}
		k->cb(&d, k->arg);
	}
	rcmd_free(k);
}

/* EVALSHA first (the sha is computed here, so no SCRIPT LOAD is needed);
 * EVAL with the text after NOSCRIPT, which also caches it in Redis. */
static int
send_script(redisAsyncContext *ac, rl_cmd *k)
{
	gw_rl      *rl = k->rl;
	const char *argv[] = {k->retried ? "EVAL" : "EVALSHA",
	    k->retried ? bucket_lua : rl->sha, "1", k->key, rl->rate_arg,
	    rl->burst_arg};

	return redisAsyncCommandArgv(ac, reply_cb, k, 6, argv, NULL);
}

int
gw_rl_check(
    gw_rl *rl, const char *client, gw_rl_cb cb, void *arg, gw_rl_decision *d)
{
	rl_cmd *k;

	if (rl->closing || !cm_redis_conn_connected(rl->redis) ||
	    rl->inflight >= INFLIGHT_MAX || cm_mono_us() < rl->slow_until_us ||
	    (k = calloc(1, sizeof(*k))) == NULL) {
		decide_local(rl, client, d);
		return 0;
	}
	k->rl = rl;
	k->cb = cb;
	k->arg = arg;
	snprintf(k->key, sizeof(k->key), "%s%s", KEY_PREFIX, client);
	rl->inflight++;
	if ((k->timer = evtimer_new(rl->base, timeout_cb, k)) == NULL ||
	    send_script(cm_redis_conn_ctx(rl->redis), k) != REDIS_OK) {
		rcmd_free(k);
		decide_local(rl, client, d);
		return 0;
	}
	add_ms(k->timer, rl->timeout_ms);
	return 1;
}

int
gw_rl_new(gw_rl **out, struct event_base *base, const gw_rl_opts *o, char *err,
    size_t errlen)
{
	gw_rl        *rl = calloc(1, sizeof(*rl));
	int           nloops = o->nloops > 0 ? o->nloops : 1;
	unsigned char sha[20];
	int           rv;
	cm_redis_opts ro = {.base = base,
	    .connect_timeout_ms = CONNECT_TIMEOUT_MS,
	    .backoff_min_ms = BACKOFF_MIN_MS,
	    .backoff_max_ms = BACKOFF_MAX_MS,
	    .log_prefix = "GW-RL-REDIS",
	    .down_note = "; rate limits are per loop until it is back",
	    .up_note = "; rate limits are shared again",
	    .up_on_connect = 1,
	    .resolve = 1};

	if (rl == NULL ||
	    (rl->slots = calloc(LOCAL_SLOTS, sizeof(*rl->slots))) == NULL) {
		free(rl);
		return CM_ENOMEM;
	}
	rl->base = base;
	rl->limit = o->limit;
	rl->lrate = o->limit.rate / nloops;
	rl->lburst = ceil((double) o->limit.burst / nloops);
	rl->now_us = o->now_us != NULL ? o->now_us : cm_mono_us;
	rl->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 50;
	if (o->redis_url == NULL || o->redis_url[0] == '\0') {
		*out = rl;
		return CM_OK;
	}
	if (cm_redis_url_parse(o->redis_url, &rl->url) != CM_OK) {
		snprintf(err, errlen,
		    "want redis://[[user]:password@]host[:port][/db]");
		gw_rl_free(rl);
		return CM_EINVAL;
	}
	snprintf(rl->rate_arg, sizeof(rl->rate_arg), "%.17g", o->limit.rate);
	snprintf(rl->burst_arg, sizeof(rl->burst_arg), "%lld", o->limit.burst);
	mbedtls_sha1_ret(
	    (const unsigned char *) bucket_lua, strlen(bucket_lua), sha);
	for (int i = 0; i < 20; i++) {
		snprintf(rl->sha + 2 * i, 3, "%02x", sha[i]);
	}
	ro.url = &rl->url;
	if ((rv = cm_redis_conn_new(&rl->redis, &ro)) != CM_OK) {
		if (rv == CM_EINVAL) {
			snprintf(err, errlen, "cannot start the DNS resolver");
		}
		gw_rl_free(rl);
		return rv;
	}
	*out = rl;
	return CM_OK;
}

void
gw_rl_free(gw_rl *rl)
{
	if (rl == NULL) {
		return;
	}
	rl->closing = 1;
	/* Every queued command is called back with NULL first, so the
	 * requests waiting on Redis are decided locally. */
	cm_redis_conn_free(rl->redis);
	free(rl->slots);
	free(rl);
}
