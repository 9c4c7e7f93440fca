/* cm.c - errors, clocks, request ids and strict id parsing. */
#include "cm.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

const char *
cm_strerror(int rv)
{
	switch (rv) {
	case CM_OK:
		return "ok";
	case CM_ENOMEM:
		return "out of memory";
	case CM_EINVAL:
		return "invalid argument";
	case CM_ENOTFOUND:
		return "not found";
	case CM_EUNAVAIL:
		return "unavailable";
	case CM_ETIMEDOUT:
		return "timed out";
	case CM_EPROTO:
		return "protocol error";
	case CM_ECONFLICT:
		return "conflict";
	case CM_EINTERNAL:
		return "internal error";
	}
	return "unknown error";
}

int64_t
cm_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
cm_mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* A per-thread xorshift generator seeded from getrandom(): request ids need
 * to be unique, not secret, and this keeps a syscall off the hot path. */
static uint64_t
rand64(void)
{
	static __thread uint64_t s;
	if (s == 0) {
		if (getrandom(&s, sizeof(s), 0) != sizeof(s) || s == 0) {
			s = (uint64_t) cm_mono_us() ^
			    ((uint64_t) pthread_self() << 17) ^
			    0x9e3779b97f4a7c15ULL;
		}
	}
	s ^= s << 13;
	s ^= s >> 7;
	s ^= s << 17;
	return s;
}

void
cm_reqid_new(char *buf)
{
	static const char hex[] = "0123456789abcdef";
	for (int half = 0; half < 2; half++) {
		uint64_t r = rand64();
		for (int i = 0; i < 16; i++) {
			buf[half * 16 + i] = hex[r & 0xf];
			r >>= 4;
		}
	}
	buf[CM_REQID_LEN] = '\0';
}

int
cm_reqid_ok(const char *s)
{
	size_t n = 0;
	if (s == NULL) {
		return 0;
	}
	for (; s[n] != '\0'; n++) {
		char c = s[n];
		if (n >= 64) {
			return 0;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		        (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		        c == ':' || c == '-')) {
			return 0;
		}
	}
	return n > 0;
}

int
cm_parse_id(const char *s, size_t len, int64_t *out)
{
	uint64_t v = 0;
	if (len == 0 || len > 19 || s[0] == '0') {
		return CM_EINVAL;
	}
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9') {
			return CM_EINVAL;
		}
		v = v * 10 + (uint64_t) (s[i] - '0');
	}
	/* 19 digits fit in uint64_t without wrapping; reject > INT64_MAX. */
	if (v > (uint64_t) INT64_MAX) {
		return CM_EINVAL;
	}
	*out = (int64_t) v;
	return CM_OK;
}

void
cm_fmt_rfc3339(int64_t us, char *buf, size_t len)
{
	time_t    t = (time_t) (us / 1000000);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int
cm_ncpu(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : (int) n;
}

int
cm_wait_signal(const sigset_t *set, int64_t ms)
{
	struct timespec ts;
	int             sig;

	if (ms < 0) {
		return sigwait(set, &sig) == 0 ? sig : 0;
	}
	ts.tv_sec = (time_t) (ms / 1000);
	ts.tv_nsec = (long) (ms % 1000) * 1000000L;
	sig = sigtimedwait(set, NULL, &ts);
	return sig > 0 ? sig : 0;
}

/* Returns the length (1 to 4) of the well-formed UTF-8 sequence at
 * s[0..len), or 0 for overlong forms, surrogates, code points above
 * U+10FFFF and cut sequences (RFC 3629), which json-c lets through. */
size_t
cm_utf8_len(const unsigned char *s, size_t len)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t        n;

	if (c < 0x80) {
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		lo = c == 0xe0 ? 0xa0 : 0x80;
		hi = c == 0xed ? 0x9f : 0xbf;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		lo = c == 0xf0 ? 0x90 : 0x80;
		hi = c == 0xf4 ? 0x8f : 0xbf;
	} else {
		return 0;
	}
	if (n > len || s[1] < lo || s[1] > hi) {
		return 0;
	}
	for (size_t i = 2; i < n; i++) {
		if (s[i] < 0x80 || s[i] > 0xbf) {
			return 0;
		}
	}
	return n;
}
