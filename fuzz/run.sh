#!/usr/bin/env bash
# fuzz/run.sh - runs libFuzzer targets built by `make fuzz-build`.
#
#   fuzz/run.sh NAME...           each target for FUZZ_SECONDS (default 60)
#                                 on a scratch copy of fuzz/corpus/NAME and
#                                 fuzz/regressions/NAME; fails on any crash,
#                                 leak or timeout and prints the reproducer
#   fuzz/run.sh --merge NAME...   adds the inputs of the last run's scratch
#                                 corpus that reach new code to
#                                 fuzz/corpus/NAME (libFuzzer -merge=1)
#
# Scratch: $FUZZ_BUILD/run/NAME/{corpus,artifacts,log}; nothing there is
# committed. FUZZ_JOBS (default 1) runs that many targets at a time.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
B=${FUZZ_BUILD:-build-fuzz}
SECS=${FUZZ_SECONDS:-60}
JOBS=${FUZZ_JOBS:-1}
MERGE=0
if [ "${1:-}" = --merge ]; then
	MERGE=1
	shift
fi
[ $# -gt 0 ] || { echo "usage: $0 [--merge] NAME..." >&2; exit 2; }

# Leaks fail a run too; UBSan findings stop it (the build does not
# recover) and print a stack.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

if [ "$MERGE" = 1 ]; then
	for t in "$@"; do
		grown=$B/run/$t/corpus
		[ -d "$grown" ] || { echo "fuzz-merge: $t: no run yet" >&2; continue; }
		mkdir -p "fuzz/corpus/$t"
		before=$(ls "fuzz/corpus/$t" | wc -l)
		"$B/fuzz_$t" -merge=1 "fuzz/corpus/$t" "$grown" \
			>"$B/run/$t/merge.log" 2>&1 ||
			{ tail -n 20 "$B/run/$t/merge.log"; exit 1; }
		echo "fuzz-merge: $t: $before -> $(ls "fuzz/corpus/$t" | wc -l) seeds"
	done
	exit 0
fi

# Runs one target; its summary line goes to $B/run/NAME/result.
run_one() {
	local t=$1 d=$B/run/$1 rc execs
	rm -rf "$d"
	mkdir -p "$d/corpus" "$d/artifacts"
	for src in "fuzz/corpus/$t" "fuzz/regressions/$t"; do
		[ -d "$src" ] && cp -p "$src"/* "$d/corpus/" 2>/dev/null
	done
	# -timeout: one input taking 10 s is a hang; -rss_limit_mb bounds
	# memory; -jobs is not used, so one process per target.
	"$B/fuzz_$t" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
		-max_len=65536 -print_final_stats=1 \
		-artifact_prefix="$d/artifacts/" "$d/corpus" >"$d/log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$d/log" |
		tail -n 1)
	printf '%-12s %-6s %12s execs %6s s  corpus %s\n' "$t" \
		"$([ $rc -eq 0 ] && echo ok || echo FAIL)" "${execs:-?}" \
		"$SECS" "$(ls "$d/corpus" | wc -l)" >"$d/result"
	return $rc
}

fail=0
pids=()
names=()
for t in "$@"; do
	[ -x "$B/fuzz_$t" ] || { echo "fuzz: $B/fuzz_$t is not built" >&2; exit 1; }
	echo "fuzz: $t for ${SECS}s"
	run_one "$t" &
	pids+=($!)
	names+=("$t")
	if [ ${#pids[@]} -ge "$JOBS" ]; then
		wait "${pids[0]}" || fail=1
		pids=("${pids[@]:1}")
	fi
done
for p in "${pids[@]}"; do
	wait "$p" || fail=1
done

echo
echo "fuzz: target       result    executions   time  corpus"
for t in "${names[@]}"; do
	cat "$B/run/$t/result"
done
for t in "${names[@]}"; do
	d=$B/run/$t
	if ! grep -q ' ok ' "$d/result"; then
		echo
		echo "==== $t failed; the end of $d/log:"
		tail -n 60 "$d/log"
		for a in "$d"/artifacts/*; do
			[ -e "$a" ] || continue
			echo "reproducer: $a"
			echo "  replay it: $B/fuzz_$t $a"
			echo "  keep it:   cp $a fuzz/regressions/$t/ (after the fix)"
		done
	fi
done
exit $fail
