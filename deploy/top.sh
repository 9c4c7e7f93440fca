#!/usr/bin/env bash
# top.sh - a terminal view of the local gateway (make top): scrapes its
# admin /metrics every second while `make run` is up and prints request
# rate, 5xx share, p99 latency (from the histogram buckets' deltas, as
# PromQL's histogram_quantile does) and the cache hit ratio.
#
#   TOP_URL         what to scrape (default
#                   http://127.0.0.1:$GATEWAY_ADMIN_PORT/metrics)
#   GATEWAY_ADMIN_PORT  9090, the gateway's default admin port
#   TOP_INTERVAL_S  seconds between scrapes (1)
#   TOP_ITERATIONS  stop after this many lines; 0 (default) runs until
#                   Ctrl-C
set -uo pipefail

URL=${TOP_URL:-http://127.0.0.1:${GATEWAY_ADMIN_PORT:-9090}/metrics}
INTERVAL=${TOP_INTERVAL_S:-1}
ITERATIONS=${TOP_ITERATIONS:-0}

case "$ITERATIONS" in '' | *[!0-9]*)
	echo "top: TOP_ITERATIONS=$ITERATIONS: want a whole number" >&2
	exit 2
	;;
esac
command -v curl >/dev/null || {
	echo "top: curl is missing (make deps installs it)" >&2
	exit 1
}

# One scrape as one line: requests 5xx hits cache_all in_flight
# healthy endpoints le=count... (buckets summed over routes).
scrape() {
	curl -fsS --max-time 2 "$URL" 2>/dev/null | awk '
	/^gateway_http_requests_total[{]/ {
		req += $NF
		if ($0 ~ /code="5[0-9][0-9]"/) err += $NF
	}
	/^gateway_http_request_duration_seconds_bucket[{]/ {
		if (match($0, /le="[^"]*"/)) {
			le = substr($0, RSTART + 4, RLENGTH - 5)
			b[le] += $NF
		}
	}
	/^gateway_cache_results_total[{]/ {
		all += $NF
		if ($0 ~ /result="hit"/) hit += $NF
	}
	/^gateway_http_requests_in_flight / { inflight = $NF }
	/^gateway_upstream_endpoints_healthy / { healthy = $NF }
	/^gateway_upstream_endpoints / { eps = $NF }
	/^gateway_build_info/ { seen = 1 }
	END {
		if (!seen) exit 1
		printf "%d %d %d %d %d %s %s", req, err, hit, all, inflight,
		    healthy == "" ? "-" : healthy, eps == "" ? "-" : eps
		for (le in b) printf " %s=%d", le, b[le]
		printf "\n"
	}'
}

# Prints one row from two scrapes dt seconds apart.
row() {
	awk -v prev="$1" -v cur="$2" -v dt="$3" -v now="$(date +%T)" '
	function pct(x) { return x < 0 ? "     -" : sprintf("%5.1f%%", 100 * x) }
	function dur(s) {
		if (s < 0) return "      -"
		if (s < 1) return sprintf("%5.1fms", s * 1000)
		return sprintf("%6.2fs", s)
	}
	BEGIN {
		np = split(prev, p, " "); nc = split(cur, c, " ")
		dreq = c[1] - p[1]; derr = c[2] - p[2]
		dhit = c[3] - p[3]; dall = c[4] - p[4]
		# bucket deltas, sorted by bound (+Inf last)
		for (i = 8; i <= np; i++) { split(p[i], kv, "="); old[kv[1]] = kv[2] }
		n = 0
		for (i = 8; i <= nc; i++) {
			split(c[i], kv, "=")
			n++; le[n] = kv[1]; d[n] = kv[2] - old[kv[1]]
			bound[n] = kv[1] == "+Inf" ? 1e300 : kv[1] + 0
		}
		for (i = 2; i <= n; i++)
			for (j = i; j > 1 && bound[j] < bound[j - 1]; j--) {
				t = bound[j]; bound[j] = bound[j - 1]; bound[j - 1] = t
				t = d[j]; d[j] = d[j - 1]; d[j - 1] = t
			}
		p99 = -1
		total = n > 0 ? d[n] : 0
		if (total > 0) {
			rank = 0.99 * total; lo = 0; below = 0
			for (i = 1; i <= n; i++) {
				if (d[i] >= rank) {
					if (bound[i] >= 1e300) { p99 = lo; break }
					p99 = lo + (bound[i] - lo) * (rank - below) / \
					    (d[i] - below > 0 ? d[i] - below : 1)
					break
				}
				lo = bound[i]; below = d[i]
			}
		}
		rate = dt > 0 ? dreq / dt : 0
		errs = dreq > 0 ? pct(derr / dreq) : pct(-1)
		hits = dall > 0 ? pct(dhit / dall) : pct(-1)
		eps = c[6] == "-" ? "-" : c[6] "/" c[7]
		printf "%s %9.1f %7s %8s %7s %9d %9s\n", now, rate, errs,
		    dur(p99), hits, c[5], eps
	}'
}

header() {
	printf '%-8s %9s %7s %8s %7s %9s %9s\n' time 'req/s' 5xx p99 hit \
		in-flight endpoints
}

trap 'echo; exit 0' INT TERM
echo "top: $URL every ${INTERVAL}s$([ "$ITERATIONS" -gt 0 ] && echo ", $ITERATIONS rows"); Ctrl-C stops"
prev=
prev_t=
rows=0
while :; do
	if cur=$(scrape); then
		now=$(date +%s.%N)
		if [ -n "$prev" ]; then
			[ $((rows % 20)) -eq 0 ] && header
			row "$prev" "$cur" "$(awk -v a="$prev_t" -v b="$now" \
				'BEGIN { print b - a }')"
			rows=$((rows + 1))
			if [ "$ITERATIONS" -gt 0 ] && [ "$rows" -ge "$ITERATIONS" ]; then
				exit 0
			fi
		fi
		prev=$cur
		prev_t=$now
	else
		echo "top: no gateway metrics at $URL (is make run up?)" >&2
		prev=
		rows=$((rows + 1))
		if [ "$ITERATIONS" -gt 0 ] && [ "$rows" -ge "$ITERATIONS" ]; then
			exit 1
		fi
	fi
	sleep "$INTERVAL"
done
