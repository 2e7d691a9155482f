#!/usr/bin/env bash
# Idle memory of two builds side by side, measured as `make bench` does, alternating A and B so
# both see the same machine state. Prints one line per run and the medians.
#
#   bench/mem-idle.sh DIR_A DIR_B [ROUNDS]    (default 3 rounds)
#
# DIR_A and DIR_B hold tasked-runner and tasked-controller (e.g. a copy of build/image-bin made
# before a change, and build/image-bin). Per round and build:
#   runner:     tasked-bench-runner starts it, connected over ws:// on loopback and welcomed,
#               3 s idle, VmRSS (the bench's step 5);
#   controller: started by tests/cluster/up.sh on a control plane of its own (kept across
#               rounds), 0 Tasks, 3 s after /readyz, VmRSS (the bench's step 4); again after
#               LATE seconds (default 30: what stays resident while idle); then stopped.
# Needs `make all kube build/bench/tasked-bench-runner build/bench/stamp`.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=tests/cluster/lib.sh
. "$root/tests/cluster/lib.sh"
# Host processes only: without this, up.sh's default (TASKED_NODE=1) would start a node.
export TASKED_NODE=0
a=$(cd "$1" && pwd) b=$(cd "$2" && pwd) rounds=${3:-3}
state=$root/build/bench/memstate
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tasked-memidle.XXXXXX")
cleanup() {
	TASKED_STATE_DIR=$state "$root/tests/cluster/down.sh" >/dev/null 2>&1 || true
	rm -rf "$tmp" "$state"
}
trap cleanup EXIT
rm -rf "$state"
mkdir -p "$state"
(umask 077 && openssl rand -hex 32 >"$tmp/token")
kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
runner_idle() { # DIR -> "rss anon threads"
	"$root/build/bench/tasked-bench-runner" --runner "$1/tasked-runner" --token-file "$tmp/token" \
		--command "$root/build/bench/stamp" --latency 1 --throughput 0 --floor 0 --idle-seconds 3 \
		--json "$tmp/out.json" --timeout 60 >/dev/null
	jq -r '.idle | "\(.rssKiB) \(.rssAnonKiB) \(.threads)"' "$tmp/out.json"
}
controller_idle() { # DIR -> "rss anon threads rss-late anon-late file-late"
	local pid first
	TASKED_STATE_DIR=$state TASKED_BIN_DIR=$1 "$root/tests/cluster/up.sh" >>"$tmp/up.log" 2>&1 ||
		{ tail -n 20 "$tmp/up.log" >&2; die "the cluster did not start"; }
	sleep 3
	pid=$(cat "$state/controller.pid")
	first="$(kib "$pid" VmRSS) $(kib "$pid" RssAnon) $(kib "$pid" Threads)"
	sleep $((${LATE:-30} - 3))
	echo "$first $(kib "$pid" VmRSS) $(kib "$pid" RssAnon) $(kib "$pid" RssFile)"
	stop_pidfile "$state/runner.pid" "$1/tasked-runner" tasked-runner 10 "$state/" >/dev/null
	stop_pidfile "$state/controller.pid" "$1/tasked-controller" tasked-controller 10 "$state/" >/dev/null
}
for ((i = 1; i <= rounds; i++)); do
	for v in A B; do
		d=$a
		[ "$v" = B ] && d=$b
		echo "runner $v $(runner_idle "$d")"
		echo "controller $v $(controller_idle "$d")"
	done
done | tee "$tmp/all" | awk '{ printf "%-10s %s rss %5d KiB  anon %5d KiB  threads %d%s\n", $1, $2, $3, $4, $5,
	$6 == "" ? "" : sprintf("  later: rss %5d KiB  anon %5d KiB  file %5d KiB", $6, $7, $8) }'
# median P V COL LABEL: the median of column COL over the lines of process P, build V.
median() {
	awk -v p="$1" -v v="$2" -v c="$3" '$1 == p && $2 == v { print $c }' "$tmp/all" | sort -n |
		awk -v l="$1 $2 median RSS" -v w="$4" '{ x[NR] = $1 } END { printf "%s %.2f MiB%s (%d runs)\n", l, x[int((NR + 1) / 2)] / 1024, w, NR }'
}
for p in runner controller; do
	for v in A B; do median "$p" "$v" 3 ""; done
done
for v in A B; do median controller "$v" 6 " ${LATE:-30} s after ready"; done
