/* fuzz_http_guard.c - libFuzzer target for the request-framing scanner.
 *
 * Feeds the input to gw_guard_scan_step() twice: whole, and cut at a point
 * taken from the input's first byte. Both must give the same verdict, the
 * same number of requests, heads and requests ending at the same offsets, runs
 * that never pass the end of the input. Limits are small so that the size
 * rules are reached quickly.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gw_guard.h"

typedef struct outcome {
	gw_guard_err err;
	size_t       consumed; /* bytes scanned before the end or the error */
	unsigned     nmsg, nhead, nstart;
	uint64_t     data;   /* payload bytes */
	uint64_t     digest; /* hash of (offset, events) */
} outcome;

static void
run(const uint8_t *p, size_t n, size_t cut, outcome *o)
{
	static const gw_guard_limits lim = {64, 512, 1000};
	gw_guard_scan                s;
	size_t                       off = 0;

	memset(o, 0, sizeof(*o));
	o->digest = 1469598103934665603ULL;
	gw_guard_scan_init(&s, &lim);
	while (off < n) {
		size_t       end = off < cut ? cut : n;
		gw_guard_run r;
		size_t len = gw_guard_scan_step(&s, p + off, end - off, &r);

		if (len > end - off) {
			abort(); /* a run past the input */
		}
		if (r.kind == GW_GUARD_DATA) {
			o->data += len;
		}
		off += len;
		/* a request's first byte is in the run that reports it,
		 * wherever the reads were cut */
		if (r.events & GW_GUARD_EV_START) {
			o->nstart++;
		}
		if (r.events & GW_GUARD_EV_ERROR) {
			o->err = s.err;
			if (s.err == GW_GUARD_OK) {
				abort(); /* an error without a reason */
			}
			break;
		}
		if (len == 0) {
			abort(); /* no progress without an error */
		}
		if (r.events & GW_GUARD_EV_HEAD_END) {
			o->nhead++;
		}
		if (r.events & GW_GUARD_EV_MSG_END) {
			o->nmsg++;
		}
		/* a head or request ends at the same offset however the
		 * input was cut */
		if (r.events & (GW_GUARD_EV_HEAD_END | GW_GUARD_EV_MSG_END)) {
			o->digest =
			    (o->digest ^ (off * 31 + (r.events & 6u))) *
			    1099511628211ULL;
		}
	}
	o->consumed = off;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	outcome whole, split;
	size_t  cut;

	if (size == 0) {
		return 0;
	}
	cut = 1 + (size_t) data[0] * size / 256;
	run(data, size, size, &whole);
	run(data, size, cut, &split);
	if (whole.err != split.err || whole.consumed != split.consumed ||
	    whole.nmsg != split.nmsg || whole.nhead != split.nhead ||
	    whole.nstart != split.nstart || whole.data != split.data ||
	    whole.digest != split.digest) {
		abort(); /* the verdict depends on how reads were cut */
	}
	if (whole.nmsg > whole.nhead || whole.nhead > whole.nstart) {
		abort();
	}
	return 0;
}
