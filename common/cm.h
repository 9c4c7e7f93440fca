/* cm.h - what the gateway and the product service share: errors, time. */
#ifndef CM_H
#define CM_H

#include <stddef.h>
#include <signal.h>
#include <stdint.h>

/* Result codes of every call that can fail. CM_OK is zero. */
typedef enum cm_err {
	CM_OK = 0,
	CM_ENOMEM,
	CM_EINVAL,
	CM_ENOTFOUND,
	CM_EUNAVAIL,
	CM_ETIMEDOUT,
	CM_EPROTO,
	CM_ECONFLICT,
	CM_EINTERNAL,
} cm_err;

/* Returns a static, human-readable text for rv. */
const char *cm_strerror(int rv);

/* Wall-clock milliseconds since the Unix epoch (deadlines on the wire). */
int64_t cm_now_ms(void);

/* Monotonic microseconds, for measuring durations. */
int64_t cm_mono_us(void);

/* Writes a fresh random request id (32 lowercase hex characters and a NUL)
 * into buf, which must hold CM_REQID_LEN + 1 bytes. */
#define CM_REQID_LEN 32
void cm_reqid_new(char *buf);

/* Returns 1 when s is a sane client-supplied request id: 1 to 64 characters
 * of [A-Za-z0-9._:-]. Anything else would let a client inject log lines. */
int cm_reqid_ok(const char *s);

/* Parses a strictly decimal, positive int64 (no sign, no leading zeros, no
 * junk, no overflow) from s[0..len). Returns CM_OK and sets *out, or
 * CM_EINVAL. */
int cm_parse_id(const char *s, size_t len, int64_t *out);

/* Formats microseconds since the epoch as RFC 3339 UTC with second
 * precision ("2026-11-28T05:00:00Z") into buf (at least 21 bytes). */
void cm_fmt_rfc3339(int64_t us, char *buf, size_t len);

/* Waits up to ms (-1: forever) for one of the signals in set, which the
 * caller has blocked. Returns the signal, or 0 when none came. */
int cm_wait_signal(const sigset_t *set, int64_t ms);

/* Number of online CPUs, at least 1. */
int cm_ncpu(void);

/* Returns the length (1 to 4) of the well-formed UTF-8 sequence at
 * s[0..len), or 0 for overlong forms, surrogates, code points above
 * U+10FFFF and cut sequences (RFC 3629). */
size_t cm_utf8_len(const unsigned char *s, size_t len);

#endif /* CM_H */
