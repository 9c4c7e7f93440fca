/* ps_drain.c - the replica's admission and drain state: requests in
 * progress, PRODUCT_MAX_INFLIGHT, and the phases of a graceful stop.
 *
 * The counters are process-wide atomics: the worker loops admit and
 * release requests, the admin thread reads them for /readyz and /metrics,
 * and the main thread walks the drain phases (ps_drain_signal and
 * ps_drain_tick are pure functions of the time and the count, so tests
 * drive them with made-up clocks).
 */
#include <signal.h>
#include <stdatomic.h>
#include <string.h>

#include "cm.h"
#include "ps.h"

static atomic_long inflight;
static atomic_long max_inflight = 1;
static atomic_int  draining;
static atomic_int  listening;

void
ps_drain_init(ps_drain *d, int delay_s, int timeout_s, long max)
{
	memset(d, 0, sizeof(*d));
	d->phase = PS_DRAIN_RUNNING;
	d->delay_ms = (int64_t) delay_s * 1000;
	d->timeout_ms = (int64_t) timeout_s * 1000;
	atomic_store(&inflight, 0);
	atomic_store(&max_inflight, max > 0 ? max : 1);
	atomic_store(&draining, 0);
}

/* Admits one request. Returns PS_ADMIT_OK (the caller must call
 * ps_drain_leave() once it is answered), PS_ADMIT_DRAINING or
 * PS_ADMIT_OVERLOADED (the caller answers STATUS_DRAINING at once and does
 * nothing else). Any thread. */
int
ps_drain_admit(void)
{
	long n;

	if (atomic_load_explicit(&draining, memory_order_relaxed)) {
		return PS_ADMIT_DRAINING;
	}
	n = atomic_fetch_add_explicit(&inflight, 1, memory_order_relaxed) + 1;
	if (n > atomic_load_explicit(&max_inflight, memory_order_relaxed)) {
		atomic_fetch_sub_explicit(&inflight, 1, memory_order_relaxed);
		return PS_ADMIT_OVERLOADED;
	}
	return PS_ADMIT_OK;
}

void
ps_drain_leave(void)
{
	atomic_fetch_sub_explicit(&inflight, 1, memory_order_relaxed);
}

long
ps_drain_inflight(void)
{
	return atomic_load_explicit(&inflight, memory_order_relaxed);
}

int
ps_drain_draining(void)
{
	return atomic_load_explicit(&draining, memory_order_relaxed);
}

void
ps_drain_set_listening(int on)
{
	atomic_store(&listening, on);
}

int
ps_drain_listening(void)
{
	return atomic_load_explicit(&listening, memory_order_relaxed);
}

static ps_drain_phase
enter(ps_drain *d, ps_drain_phase p, int64_t now_ms)
{
	d->phase = p;
	if (p == PS_DRAIN_DELAY) {
		d->deadline_ms = now_ms + d->delay_ms;
	} else if (p == PS_DRAIN_WAIT) {
		d->deadline_ms = now_ms + d->timeout_ms;
	}
	return p;
}

/* A stop signal arrived at now_ms. The first one starts draining (new
 * requests are answered STATUS_DRAINING from now on): SIGTERM waits
 * PRODUCT_DRAIN_DELAY_S first, SIGINT (someone at a terminal) does not.
 * A second signal stops at once. Returns the new phase. */
ps_drain_phase
ps_drain_signal(ps_drain *d, int sig, int64_t now_ms)
{
	atomic_store(&draining, 1);
	switch (d->phase) {
	case PS_DRAIN_RUNNING:
		if (sig == SIGINT || d->delay_ms <= 0) {
			return enter(d, PS_DRAIN_WAIT, now_ms);
		}
		return enter(d, PS_DRAIN_DELAY, now_ms);
	default:
		return enter(d, PS_DRAIN_CLOSE, now_ms);
	}
}

/* Moves on when the time has come: the delay ends into the wait for the
 * requests in progress (n of them), which ends when none is left or after
 * PRODUCT_DRAIN_TIMEOUT_S. Returns the phase. */
ps_drain_phase
ps_drain_tick(ps_drain *d, int64_t now_ms, long n)
{
	if (d->phase == PS_DRAIN_DELAY && now_ms >= d->deadline_ms) {
		enter(d, PS_DRAIN_WAIT, now_ms);
	}
	if (d->phase == PS_DRAIN_WAIT &&
	    (n <= 0 || now_ms >= d->deadline_ms)) {
		enter(d, PS_DRAIN_CLOSE, now_ms);
	}
	return d->phase;
}

/* Milliseconds until the current phase's deadline (0 when it passed), or
 * -1 when the phase has none (running, or closing). */
int64_t
ps_drain_wait_ms(const ps_drain *d, int64_t now_ms)
{
	if (d->phase != PS_DRAIN_DELAY && d->phase != PS_DRAIN_WAIT) {
		return -1;
	}
	return d->deadline_ms > now_ms ? d->deadline_ms - now_ms : 0;
}
