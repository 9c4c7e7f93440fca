/* ps_breaker.c - a circuit breaker for one Redis connection: a pure state
 * machine that the caller feeds with the time and with each command's
 * outcome, so it can be tested without Redis.
 *
 * closed: every command goes; failures in a row count, and the threshold
 * opens the breaker. open: no command goes until the cooldown has passed.
 * half-open: exactly one command (the probe) goes; its success closes the
 * breaker, its failure opens it for another cooldown. Outcomes of commands
 * sent before the breaker opened, which arrive while it is open or
 * half-open, are ignored: only the probe decides.
 */
#include "cm.h"
#include "ps.h"

void
ps_breaker_init(ps_breaker *b, int threshold, int64_t cooldown_us)
{
	b->state = PS_BREAKER_CLOSED;
	b->failures = 0;
	b->threshold = threshold > 0 ? threshold : 1;
	b->cooldown_us = cooldown_us > 0 ? cooldown_us : 0;
	b->open_until_us = 0;
	b->probing = 0;
}

static void
trip(ps_breaker *b, int64_t now_us)
{
	b->state = PS_BREAKER_OPEN;
	b->open_until_us = now_us + b->cooldown_us;
	b->probing = 0;
}

/* Asks whether a command may go now. Returns PS_BREAKER_DENY (fail it at
 * once), PS_BREAKER_ALLOW, or PS_BREAKER_PROBE: it may go as the one probe
 * of the half-open state, and the caller must report its outcome with
 * probe set (or the breaker stays half-open with nothing let through). */
int
ps_breaker_allow(ps_breaker *b, int64_t now_us)
{
	switch (b->state) {
	case PS_BREAKER_CLOSED:
		return PS_BREAKER_ALLOW;
	case PS_BREAKER_OPEN:
		if (now_us < b->open_until_us) {
			return PS_BREAKER_DENY;
		}
		b->state = PS_BREAKER_HALF_OPEN;
		b->probing = 1;
		return PS_BREAKER_PROBE;
	default: /* half-open */
		if (b->probing) {
			return PS_BREAKER_DENY;
		}
		b->probing = 1;
		return PS_BREAKER_PROBE;
	}
}

/* Reports a command's outcome: ok 1 for a reply, 0 for a timeout, an error
 * reply or a lost connection; probe as ps_breaker_allow() answered. */
void
ps_breaker_done(ps_breaker *b, int probe, int ok, int64_t now_us)
{
	switch (b->state) {
	case PS_BREAKER_CLOSED:
		if (ok) {
			b->failures = 0;
		} else if (++b->failures >= b->threshold) {
			trip(b, now_us);
		}
		break;
	case PS_BREAKER_HALF_OPEN:
		if (!probe) {
			break; /* sent before the breaker opened */
		}
		if (ok) {
			b->state = PS_BREAKER_CLOSED;
			b->failures = 0;
			b->probing = 0;
		} else {
			trip(b, now_us);
		}
		break;
	default: /* open: only the probe decides, later */
		break;
	}
}

/* The state callers see: PS_BREAKER_OPEN until the cooldown has passed and
 * a probe was let through, which ps_breaker_allow() decides. */
int
ps_breaker_state(const ps_breaker *b)
{
	return b->state;
}
