#!/usr/bin/env bash
# bench/runner-spawn.sh RUNNER... : the runner bench's dispatch → exec part only, for several
# runner binaries side by side. ROUNDS rounds (default 3), interleaved so that the machine's load
# falls on every binary alike; each round runs LAT sequential dispatches (default 300) and THR
# at CONC slots (default 600 at 4), plus the host's fork + exec floor in the same run. Prints
# a Markdown table, one row per binary, of the medians over the rounds (ms), and the gap
# (dispatch → exec p50 minus the same round's fork + exec + wait p50) of every round. Needs build/bench/tasked-bench-runner
# and build/bench/stamp (make build/bench/tasked-bench-runner build/bench/stamp).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-3} LAT=${LAT:-300} THR=${THR:-600} CONC=${CONC:-4}
[ $# -gt 0 ] || { echo "usage: $0 RUNNER..." >&2; exit 2; }
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(umask 077 && openssl rand -hex 32 >"$tmp/token")
for r in $(seq "$ROUNDS"); do
	i=0
	for bin in "$@"; do
		i=$((i + 1))
		"$root/build/bench/tasked-bench-runner" --runner "$bin" --token-file "$tmp/token" \
			--command "$root/build/bench/stamp" --concurrency "$CONC" --latency "$LAT" \
			--throughput "$THR" --idle-seconds 1 --floor 200 --log "$tmp/runner.log" \
			--json "$tmp/$i-$r.json" --timeout 300 >/dev/null
	done
done
med() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
echo "| runner | dispatch → exec p50 | p99 | at $CONC slots p50 | tasks/s | host fork+exec+wait /bin/true p50 | posix_spawn+wait p50 | fork → stamp p50 | gap p50 | gap per round |"
echo "|---|---|---|---|---|---|---|---|---|---|"
i=0
for bin in "$@"; do
	i=$((i + 1))
	col() { for r in $(seq "$ROUNDS"); do jq -r "$1" "$tmp/$i-$r.json"; done | med; }
	# The gap: dispatch → exec p50 minus the same round's fork + exec + wait p50.
	gap='.latency.dispatchToStampMs.p50 - .floor.forkExecWaitTrueMs.p50 | . * 1000 | round / 1000'
	printf '| %s | %s | %s | %s | %.0f | %s | %s | %s | %s | %s |\n' "$(basename "$bin")" \
		"$(col .latency.dispatchToStampMs.p50)" "$(col .latency.dispatchToStampMs.p99)" \
		"$(col .throughput.dispatchToStampMs.p50)" "$(col .throughput.perSecond)" \
		"$(col .floor.forkExecWaitTrueMs.p50)" "$(col .floor.posixSpawnWaitTrueMs.p50)" \
		"$(col .floor.forkToStampMs.p50)" "$(col "$gap")" \
		"$(for r in $(seq "$ROUNDS"); do jq -r "$gap" "$tmp/$i-$r.json"; done | paste -sd' ')"
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
