/* ps_fake.h - Redis, PostgreSQL and the worker loop of the product service,
 * faked for fuzz_proto: each call reads its outcome from a script (bytes of
 * the fuzz input) and answers later, from a queue the target runs, as the
 * real ones answer from the event loop. An exhausted script makes every
 * call fail at once, so that every run ends. */
#ifndef PS_FAKE_H
#define PS_FAKE_H

#include <stddef.h>
#include <stdint.h>

#include "ps.h"

/* Starts a run: the script is script[0..len), borrowed until the run
 * ends; w is the worker whose stopping flag the run may set. */
void ps_fake_reset(ps_worker *w, const uint8_t *script, size_t len);

/* Sets w->stopping once this many queued callbacks have run (0: never):
 * the shutdown of a worker with requests in flight. */
void ps_fake_stop_after(size_t n);

/* Runs queued callbacks (and those they queue) until none is left, or
 * until max have run. Returns the number run. */
size_t ps_fake_run(size_t max);

/* Number of callbacks still queued. */
size_t ps_fake_pending(void);

#endif /* PS_FAKE_H */
