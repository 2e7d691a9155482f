#!/usr/bin/env bash
# `make bench`: every measurement of issue 8, on a cluster of its own, then the report.
#
#   1. machine facts                      5. runner on its own (stand-in broker)
#   2. images (a private build context)    6. start latency (steady rate) + API writes per task
#   3. cluster: control plane, controller, 7. throughput (4 runners) + the API server's ceiling
#      4 runners, in build/bench/state     8. controller memory with 0 / 10k / 100k Tasks
#   4. idle RSS with 0 tasks               9. docs/benchmarks.{md,json}, docs/bench-*.png
#
# The cluster is always torn down (trap), whatever fails. Raw results stay in build/bench/out.
# Nothing here is a timed test: figures are reported next to their targets, never asserted.
#
# Environment (defaults in brackets):
#   BENCH_LATENCY_COUNT [1000]  BENCH_LATENCY_RATE [20/s]     BENCH_THROUGHPUT_COUNT [5000]
#   BENCH_CEILING_COUNT [5000]  BENCH_RUNNERS [4]             BENCH_RUNNER_CONCURRENCY [8]
#   BENCH_MEMORY_COUNTS ["10000 100000"]  (Task objects present when the controller is measured)
#   BENCH_RUNNER_LATENCY [1000] BENCH_RUNNER_THROUGHPUT [3000]
#   BENCH_THREADS [8]           client connections creating Tasks in the throughput run
#   BENCH_CEILING_THREADS ["8 16 32"]  connection counts the ceiling is measured at (best counts)
#   BENCH_FILL_THREADS [16]     connections writing Tasks for the memory step
#   BENCH_BUDGET_SECONDS [870]  the memory step measures fewer Tasks rather than run past this
#   BENCH_SKIP_IMAGES=1         no Docker step        BENCH_NO_DOCS=1  report to build/bench/out only
#   BENCH_STATE_DIR [build/bench/state]  BENCH_OUT_DIR [build/bench/out]
#   BENCH_BINARIES [image-bin]  measure build/image-bin (what the images ship); "bin" for bin/
#   BENCH_QUICK=1               a few dozen tasks per step, 300 Tasks for memory, no Docker, report
#                               to build/bench/out only: checks the script, not the figures
#
# Every process the bench starts is recorded (pid and start time, build/bench/out/pids.txt) and
# stopped by pid at the end; the end check names any that is still running and fails the run.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=tests/cluster/lib.sh
. "$root/tests/cluster/lib.sh"

if [ "${BENCH_QUICK:-0}" = 1 ]; then
	: "${BENCH_LATENCY_COUNT:=30}" "${BENCH_LATENCY_RATE:=10}" "${BENCH_THROUGHPUT_COUNT:=100}"
	: "${BENCH_CEILING_COUNT:=100}" "${BENCH_CEILING_THREADS:=8}" "${BENCH_MEMORY_COUNTS:=300}"
	: "${BENCH_RUNNER_LATENCY:=50}" "${BENCH_RUNNER_THROUGHPUT:=100}" "${BENCH_FILL_THREADS:=4}"
	: "${BENCH_SKIP_IMAGES:=1}" "${BENCH_NO_DOCS:=1}"
fi
LAT_COUNT=${BENCH_LATENCY_COUNT:-1000}
LAT_RATE=${BENCH_LATENCY_RATE:-20}
THR_COUNT=${BENCH_THROUGHPUT_COUNT:-5000}
CEIL_COUNT=${BENCH_CEILING_COUNT:-5000}
NRUNNERS=${BENCH_RUNNERS:-4}
RCONC=${BENCH_RUNNER_CONCURRENCY:-8}
MEM_COUNTS=${BENCH_MEMORY_COUNTS:-10000 100000}
RB_LAT=${BENCH_RUNNER_LATENCY:-1000}
RB_THR=${BENCH_RUNNER_THROUGHPUT:-3000}
THREADS=${BENCH_THREADS:-8}
CEIL_THREADS=${BENCH_CEILING_THREADS:-8 16 32}
FILL_THREADS=${BENCH_FILL_THREADS:-16}
BUDGET=${BENCH_BUDGET_SECONDS:-870}
STATE=${BENCH_STATE_DIR:-$root/build/bench/state}
OUT=${BENCH_OUT_DIR:-$root/build/bench/out}
BIN=$root/build/bench
LOAD=$BIN/tasked-bench-load
STAMP=$BIN/stamp
CONTROLLER=$root/bin/tasked-controller
RUNNER=$root/bin/tasked-runner
NS=bench
FILL_NS=bench-fill
HZ=$(getconf CLK_TCK)
T_START=$(date +%s)

for b in "$LOAD" "$BIN/tasked-bench-runner" "$STAMP" "$CONTROLLER" "$RUNNER"; do
	[ -x "$b" ] || die "${b#"$root"/} is missing: run 'make bench' (it builds everything first)"
done
for t in jq kubectl curl awk; do
	command -v "$t" >/dev/null || die "$t is required (make deps installs it)"
done
if ! command -v gnuplot >/dev/null; then
	echo "bench: installing gnuplot-nox for the plots" >&2
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO=sudo
	{ $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
		--no-install-recommends gnuplot-nox; } >&2 || note "gnuplot could not be installed: no plots"
fi

step() { printf '\n== %s  (+%ds)\n' "$*" $(($(date +%s) - T_START)); }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
threads_of() { awk '/^Threads:/ { print $2 }' "/proc/$1/status"; }
cpu_s() { awk -v hz="$HZ" '{ printf "%.2f\n", ($14 + $15) / hz }' "/proc/$1/stat"; }
pid_of() { cat "$STATE/$1.pid"; }

# --- the processes we start, and teardown, always ------------------------------------------------
# Each process started is recorded by pid and start time (field 22 of /proc/PID/stat, so a reused
# pid is not taken for ours) in $OUT/pids.txt; the end check reads that list, not process names.
EXTRA_RUNNERS=()
rb_pid=
PIDS=$OUT/pids.txt
start_time() { # PID -> its start time in clock ticks since boot, or nothing
	awk '{ sub(/.*\) /, ""); print $20 }' "/proc/$1/stat" 2>/dev/null || true
}
remember() { # PID NAME: record a process we started
	local st
	[ -d "$OUT" ] || return 0
	case "$1" in '' | *[!0-9]*) return 0 ;; esac
	st=$(start_time "$1")
	[ -n "$st" ] || return 0
	grep -q "^$1 $st " "$PIDS" 2>/dev/null || printf '%s %s %s\n' "$1" "$st" "$2" >>"$PIDS"
}
remember_state() { # every pid file in the state directory (control plane, controller, runners)
	local f
	for f in "$STATE"/*.pid; do
		[ -s "$f" ] && remember "$(cat "$f")" "$(basename "$f" .pid)"
	done
	return 0
}
# leftovers: the recorded processes still running, one "PID NAME: COMMAND" line each.
leftovers() {
	local pid st name
	[ -s "$PIDS" ] || return 0
	while read -r pid st name; do
		[ "$(start_time "$pid")" = "$st" ] || continue
		[ "$(awk '{ sub(/.*\) /, ""); print $1 }' "/proc/$pid/stat" 2>/dev/null)" != Z ] || continue
		printf '%s %s: %s\n' "$pid" "$name" "$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | cut -c1-160)"
	done <"$PIDS"
	in_state
}
# in_state: processes not in the list whose command line names the state directory (children the
# recorded ones made, e.g. a runner's spawner and warm init, or one started and not yet recorded),
# "PID state: COMMAND" each. The state directory is this run's own, so they are ours.
in_state() {
	local d pid cmd
	for d in /proc/[0-9]*; do
		pid=${d#/proc/}
		case "$pid" in "$$" | "$BASHPID") continue ;; esac
		cmd=$(tr '\0' ' ' 2>/dev/null <"$d/cmdline") || continue
		case "$cmd" in *"$STATE/"*) ;; *) continue ;; esac
		[ "$(awk '{ sub(/.*\) /, ""); print $1 }' "$d/stat" 2>/dev/null)" != Z ] || continue
		grep -q "^$pid " "$PIDS" 2>/dev/null && continue
		printf '%s state: %s\n' "$pid" "$(cut -c1-160 <<<"$cmd")"
	done
}
cleanup() {
	local rc=$? i left pid
	set +e
	trap - EXIT INT TERM
	remember_state
	# Interrupted in step 5: the bench broker (its runner dies with it) and its runner.
	if [ -n "$rb_pid" ] && kill -0 "$rb_pid" 2>/dev/null; then
		kill -TERM "$rb_pid" 2>/dev/null
		wait "$rb_pid" 2>/dev/null
	fi
	stop_pidfile "$STATE/runnerbench-runner.pid" "$RUNNER" runnerbench-runner 10 "$STATE/" >/dev/null
	for i in "${EXTRA_RUNNERS[@]}"; do
		stop_pidfile "$STATE/runner-$i.pid" "$RUNNER" "tasked-runner $i" 10 "$STATE/" >/dev/null
	done
	if [ -d "$STATE" ]; then
		TASKED_STATE_DIR=$STATE TASKED_RUNNER_STOP_TIMEOUT=10 "$root/tests/cluster/down.sh" >"$OUT/down.log" 2>&1
		# 100k objects are a few hundred MB of etcd data; the logs stay.
		rm -rf "$STATE/etcd"
	fi
	# The end check: nothing this run started may outlive it. Anything left is named, stopped by
	# its pid, and fails the run.
	left=$(leftovers)
	if [ -n "$left" ]; then
		printf 'bench: still running after the teardown (stopping them now):\n%s\n' "$left" >&2
		while read -r pid _; do kill -TERM "$pid" 2>/dev/null; done <<<"$left"
		sleep 2
		while read -r pid _; do
			[ -n "$(leftovers | awk -v p="$pid" '$1 == p')" ] && kill -KILL "$pid" 2>/dev/null
		done <<<"$left"
		[ "$rc" -ne 0 ] || rc=1
	elif [ -s "$PIDS" ]; then
		echo "bench: all $(wc -l <"$PIDS") processes it started have exited"
	fi
	[ "$rc" -eq 0 ] || echo "bench: failed (exit $rc); logs in ${STATE#"$root"/} and ${OUT#"$root"/}" >&2
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A leftover cluster from an interrupted run is stopped first; then everything starts fresh.
if [ -d "$STATE" ]; then
	TASKED_STATE_DIR=$STATE "$root/tests/cluster/down.sh" >/dev/null 2>&1 || true
fi
rm -rf "$STATE" "$OUT"
mkdir -p "$STATE" "$OUT"

# --- 1. machine facts -----------------------------------------------------------------------------
step "machine"
jq -n --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
	--arg cpu "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)" \
	--argjson nproc "$(nproc)" \
	--argjson memkib "$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)" \
	--arg kernel "$(uname -sr)" \
	--arg os "$(. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-}")" \
	--arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
	--arg cc "$(${CC:-cc} --version | head -n 1)" \
	--arg rev "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
	--arg dirty "$(git -C "$root" status --porcelain 2>/dev/null | grep -c . || true)" \
	--arg version "$(cat "$root/VERSION" 2>/dev/null || echo 0.0.0)" \
	--arg kube "$("$root/tests/cluster/build-kube.sh" 2>/dev/null | xargs -r basename 2>/dev/null || echo unknown)" \
	'{date: $date, cpu: $cpu, nproc: $nproc, memoryGiB: (($memkib / 1048576 * 10 | round) / 10),
	  kernel: $kernel, os: $os, loadAverageAtStart: $load, compiler: $cc,
	  revision: $rev, uncommittedFiles: ($dirty | tonumber), version: $version, controlPlane: $kube}' \
	>"$OUT/machine.json"
cat "$OUT/machine.json"

# --- 2. images --------------------------------------------------------------------------------------
# images/build.sh works in build/images of the tree it lives in; a private copy of images/ and
# bin/ keeps a concurrent `make images` (or the images test) from tripping over this one.
step "images"
images_json='{"skipped": "BENCH_SKIP_IMAGES=1"}'
if [ "${BENCH_SKIP_IMAGES:-0}" != 1 ]; then
	ctx=$root/build/bench/imgctx
	rm -rf "$ctx"
	mkdir -p "$ctx/bin"
	cp -r "$root/images" "$ctx/"
	cp "$root/VERSION" "$ctx/" 2>/dev/null || true
	# The binaries `make images` packages: linked against the minimal static libcurl.
	make -C "$root" --no-print-directory build/image-bin/tasked-runner build/image-bin/tasked-controller >"$OUT/image-bin.log" 2>&1
	cp "$root/build/image-bin/tasked-controller" "$root/build/image-bin/tasked-runner" "$ctx/bin/"
	if TASKED_IMAGE_PREFIX=tasked-bench- TASKED_IMAGE_TAG=bench "$ctx/images/build.sh" >"$OUT/images.log" 2>&1; then
		images_json=$(
			awk '{ printf "%s %s %s\n", $1, $2, $3 }' "$ctx/build/images/sizes.txt" |
				while read -r img raw gz; do
					name=${img%%:*}
					name=${name#tasked-bench-}
					files=$(cd "$ctx/build/images/$name/rootfs" && find . -type f -printf '%s %p\n' |
						sort -rn | head -n 8 | jq -R 'split(" ") | {bytes: (.[0] | tonumber), path: .[1][1:]}' | jq -s .)
					jq -n --arg n "$name" --argjson raw "$raw" --argjson gz "$gz" --argjson files "$files" \
						'{($n): {bytes: $raw, gzipBytes: $gz, largestFiles: $files}}'
				done | jq -s 'add'
		)
		docker image rm tasked-bench-runner:bench tasked-bench-controller:bench >/dev/null 2>&1 || true
	else
		note "image build failed (see ${OUT#"$root"/}/images.log); continuing without image sizes"
		images_json='{"skipped": "images/build.sh failed; see build/bench/out/images.log"}'
	fi
fi
printf '%s\n' "$images_json" >"$OUT/images.json"
# Measure what the images ship (every library but glibc static) when it was built; bin/ links
# Debian's shared libraries, whose resident pages inflate the memory figures.
BINARIES=bin
if [ -x "$root/build/image-bin/tasked-controller" ] && [ -x "$root/build/image-bin/tasked-runner" ] &&
	[ "${BENCH_BINARIES:-image-bin}" = image-bin ]; then
	BINARIES=build/image-bin
	CONTROLLER=$root/build/image-bin/tasked-controller
	RUNNER=$root/build/image-bin/tasked-runner
fi
export TASKED_BIN_DIR=$root/$BINARIES
# The benchmarks measure the controller and runners as host processes, not in pods.
export TASKED_NODE=0
printf '{"binaries": "%s"}\n' "$BINARIES" >"$OUT/binaries.json"
note "measuring the binaries in $BINARIES"
jq -c 'map_values(if type == "object" then {bytes, gzipBytes} else . end)' "$OUT/images.json" 2>/dev/null || cat "$OUT/images.json"

# --- 5 (first, while nothing else of ours runs). the runner on its own ---------------------------
step "runner on its own: idle RSS, dispatch → exec, tasks/s ($RB_LAT sequential, $RB_THR at $RCONC slots)"
(umask 077 && openssl rand -hex 32 >"$STATE/rb-token")
# In the background so its pid (and the runner's, from --pid-file) are recorded; the runner it
# starts dies with it (PR_SET_PDEATHSIG) and is otherwise stopped by it.
"$BIN/tasked-bench-runner" --runner "$RUNNER" --token-file "$STATE/rb-token" --command "$STAMP" \
	--concurrency "$RCONC" --latency "$RB_LAT" --throughput "$RB_THR" --idle-seconds 3 \
	--log "$STATE/runnerbench-runner.log" --csv "$OUT/runner.csv" --json "$OUT/runner.json" \
	--pid-file "$STATE/runnerbench-runner.pid" --timeout 300 >/dev/null &
rb_pid=$!
remember "$rb_pid" tasked-bench-runner
for ((i = 0; i < 50; i++)); do
	[ -s "$STATE/runnerbench-runner.pid" ] && break
	kill -0 "$rb_pid" 2>/dev/null || break
	sleep 0.1
done
[ -s "$STATE/runnerbench-runner.pid" ] && remember "$(cat "$STATE/runnerbench-runner.pid")" runnerbench-runner
wait "$rb_pid"
rb_pid=
rm -f "$STATE/runnerbench-runner.pid"
jq -c '{idleRssKiB: .idle.rssKiB, p50: .latency.dispatchToStampMs.p50, p99: .latency.dispatchToStampMs.p99,
	perSecond: .throughput.perSecond, hostForkExecWaitP50: .floor.forkExecWaitTrueMs.p50,
	hostForkToStampP50: .floor.forkToStampMs.p50}' "$OUT/runner.json"

# --- 3. cluster ---------------------------------------------------------------------------------------
step "cluster"
export KUBECONFIG=$STATE/kubeconfig
TASKED_STATE_DIR=$STATE \
	TASKED_CONTROLLER_ARGS="--lost-grace-seconds 2 ${BENCH_CONTROLLER_ARGS:-}" \
	TASKED_RUNNER_ARGS="--id bench-r1 --concurrency $RCONC ${BENCH_RUNNER_ARGS:-}" \
	"$root/tests/cluster/up.sh" >"$OUT/up.log" 2>&1 || {
	cat "$OUT/up.log" >&2
	die "the cluster did not start"
}
remember_state
API_URL=$(cat "$STATE/api-url")
# shellcheck disable=SC1091
. "$STATE/tasked-ports.env"
for ((i = 2; i <= NRUNNERS; i++)); do
	# shellcheck disable=SC2086 # extra flags are meant to split on spaces
	start_bg "$STATE/runner-$i.pid" "$STATE/runner-$i.log" "$RUNNER" \
		--controller "ws://127.0.0.1:$BROKER_PORT" --token-file "$STATE/runner-token" \
		--concurrency "$RCONC" --labels pool=default --id "bench-r$i" ${BENCH_RUNNER_ARGS:-}
	EXTRA_RUNNERS+=("$i")
	remember "$(cat "$STATE/runner-$i.pid")" "runner-$i"
done

ctl_metrics() { # the controller's own /metrics (best effort: empty when it has none)
	printf 'X-API-Key: %s\n' "$(cat "$STATE/api-key")" |
		curl -fsS --max-time 5 -H @- "$API_URL/metrics" 2>/dev/null || true
}
ctl_metric() { # NAME{labels} -> value or empty
	ctl_metrics | awk -v m="$1" '$1 == m { print $2; exit }'
}
# Wait for every runner to be connected (when the controller exports the gauge), else 3 s.
for ((i = 0; i < 50; i++)); do
	n=$(ctl_metric tasked_runners_connected)
	[ -z "$n" ] && { sleep 3; break; }
	[ "$n" -ge "$NRUNNERS" ] && break
	sleep 0.2
done
kubectl create namespace "$NS" >/dev/null
kubectl create namespace "$FILL_NS" >/dev/null
# The ceiling's dummy: the Task CRD itself (same structural schema, same validation and pruning
# cost per write) under another group and kind.
kubectl create --dry-run=client --validate=false -o json -f "$root/deploy/crds/tasked.dev_tasks.yaml" |
	jq '.metadata = {name: "benchdummies.bench.tasked.dev"} | .spec.group = "bench.tasked.dev"
	    | .spec.names = {plural: "benchdummies", singular: "benchdummy", kind: "BenchDummy", listKind: "BenchDummyList"}
	    | .spec.versions |= map(.name = "v1")' | kubectl apply -f - >/dev/null
for ((i = 0; i < 100; i++)); do
	[ "$(kubectl get crd benchdummies.bench.tasked.dev \
		-o 'jsonpath={.status.conditions[?(@.type=="Established")].status}')" = True ] && break
	sleep 0.2
done
CTL=$(pid_of controller)
APISERVER=$(pid_of kube-apiserver)
ETCD=$(pid_of etcd)
runner_pids() {
	pid_of runner
	for i in "${EXTRA_RUNNERS[@]}"; do pid_of "runner-$i"; done
}
sum_cpu() { local t=0 p; for p in "$@"; do t=$(awk -v a="$t" -v b="$(cpu_s "$p")" 'BEGIN { print a + b }'); done; echo "$t"; }

# --- 4. memory with 0 tasks -------------------------------------------------------------------------
step "idle: controller and runner RSS with 0 tasks"
sleep 3
# mem_json PID: RSS, what of it is the process's own (private) and its fair share of shared
# pages (PSS), threads, and the mappings holding the most resident memory.
mem_json() {
	local top
	top=$(awk '/^[0-9a-f]+-[0-9a-f]+ / { n = $6; if (n == "") n = "[anon]"; sub(/.*\//, "", n) }
		/^Rss:/ { r[n] += $2 } END { for (n in r) printf "%d %s\n", r[n], n }' "/proc/$1/smaps" |
		sort -rn | head -n 8 | jq -R 'split(" ") | {kib: (.[0] | tonumber), mapping: .[1]}' | jq -s .)
	jq -n --argjson rss "$(rss_kib "$1")" --argjson th "$(threads_of "$1")" \
		--argjson anon "$(awk '/^RssAnon:/ { print $2 }' "/proc/$1/status")" \
		--argjson pss "$(awk '/^Pss:/ { print $2 }' "/proc/$1/smaps_rollup")" \
		--argjson priv "$(awk '/^Private_(Clean|Dirty):/ { s += $2 } END { print s }' "/proc/$1/smaps_rollup")" \
		--argjson top "$top" \
		'{rssKiB: $rss, rssAnonKiB: $anon, pssKiB: $pss, privateKiB: $priv, threads: $th, largestMappings: $top}'
}
jq -n --argjson c "$(mem_json "$CTL")" --argjson r "$(mem_json "$(pid_of runner)")" \
	'{controllerRssKiB: $c.rssKiB, controllerThreads: $c.threads, runnerRssKiB: $r.rssKiB, runnerThreads: $r.threads,
	  controller: $c, runner: $r}' >"$OUT/idle.json"
jq -c 'del(.controller.largestMappings, .runner.largestMappings)' "$OUT/idle.json"

# snapshot NAME: API server request counters, the controller's own, CPU seconds of every process.
snapshot() {
	"$LOAD" apimetrics --kubeconfig "$KUBECONFIG" --json "$OUT/$1-api.json"
	ctl_metrics | awk '/^tasked_kube_requests_total\{/ { sub(/.*verb="/, "", $1); sub(/".*/, "", $1); print $1, $2 }' |
		jq -R 'split(" ") | {(.[0]): (.[1] | tonumber)}' | jq -s 'add // {}' >"$OUT/$1-ctl.json"
	# shellcheck disable=SC2046
	jq -n --argjson c "$(cpu_s "$CTL")" --argjson r "$(sum_cpu $(runner_pids))" \
		--argjson a "$(cpu_s "$APISERVER")" --argjson e "$(cpu_s "$ETCD")" \
		--argjson t "$(date +%s.%N)" \
		'{controller: $c, runners: $r, apiserver: $a, etcd: $e, time: $t}' >"$OUT/$1-cpu.json"
}

# writes NAME CREATED: the API writes between NAME-before and NAME-after, attributed.
writes() {
	jq -n --slurpfile b "$OUT/$1-before-api.json" --slurpfile a "$OUT/$1-after-api.json" \
		--slurpfile cb "$OUT/$1-before-ctl.json" --slurpfile ca "$OUT/$1-after-ctl.json" \
		--slurpfile pb "$OUT/$1-before-cpu.json" --slurpfile pa "$OUT/$1-after-cpu.json" \
		--argjson n "$2" '
		def w: test("^(POST|PUT|PATCH|DELETE|DELETECOLLECTION|APPLY) ");
		($b[0].requests) as $B | ($a[0].requests) as $A
		| ([$A | to_entries[] | select(.key | w) | {key, value: (.value - ($B[.key] // 0))} | select(.value > 0)]
		   | from_entries) as $d
		| ($d["POST tasked.dev/tasks"] // 0) as $creates
		| ([$d | to_entries[] | select(.key | test("^[A-Z]+ tasked.dev/tasks/status$")) | .value] | add // 0) as $status
		| ([$d | to_entries[] | select(.key | test("^(PUT|PATCH|DELETE|APPLY) tasked.dev/tasks$")) | .value] | add // 0) as $spec
		| ([$d | to_entries[] | select(.key | test("tasked.dev/taskqueues")) | .value] | add // 0) as $queues
		| ([$d | to_entries[] | select(.key | test("/events$")) | .value] | add // 0) as $events
		| ([$d | to_entries[] | select(.key | test("coordination.k8s.io/leases")) | .value] | add // 0) as $leases
		| ($ca[0] // {}) as $CA | ($cb[0] // {}) as $CB
		| {tasks: $n, byVerbAndResource: $d, generatorCreates: $creates,
		   statusWrites: $status, specWrites: $spec, taskQueueWrites: $queues, events: $events,
		   leasesOther: $leases,
		   perTask: (($status + $spec + $queues) / $n), eventsPerTask: ($events / $n),
		   perTaskWithEvents: (($status + $spec + $queues + $events) / $n),
		   controllerCounted: (if ($CA | length) > 0 then
			{create: (($CA.create // 0) - ($CB.create // 0)), patch: (($CA.patch // 0) - ($CB.patch // 0)),
			 update: (($CA.update // 0) - ($CB.update // 0)), delete: (($CA.delete // 0) - ($CB.delete // 0))}
			else null end),
		   cpuSeconds: {controller: ($pa[0].controller - $pb[0].controller), runners: ($pa[0].runners - $pb[0].runners),
			apiserver: ($pa[0].apiserver - $pb[0].apiserver), etcd: ($pa[0].etcd - $pb[0].etcd),
			wall: ($pa[0].time - $pb[0].time)}}'
}

# settle_writes: wait until the Events queue has drained (best effort, async by design).
settle_writes() {
	local prev="" cur i
	for ((i = 0; i < 20; i++)); do
		sleep 1
		cur=$("$LOAD" apimetrics --kubeconfig "$KUBECONFIG" | jq -c '[.requests | to_entries[]
			| select(.key | test("^(POST|PATCH|PUT) "))] | map(.value) | add')
		[ "$cur" = "$prev" ] && return 0
		prev=$cur
	done
}

# --- 6. start latency and API writes per task ---------------------------------------------------------
step "latency: $LAT_COUNT tasks at $LAT_RATE/s"
snapshot lat-before
"$LOAD" tasks --kubeconfig "$KUBECONFIG" --namespace "$NS" --run lat --count "$LAT_COUNT" \
	--rate "$LAT_RATE" --threads 4 --command "$STAMP" --timeout 600 \
	--csv "$OUT/latency.csv" --json "$OUT/latency.json" >/dev/null
settle_writes
snapshot lat-after
writes lat "$(jq .created "$OUT/latency.json")" >"$OUT/writes-latency.json"
jq -c '{p50: .createToStartMs.p50, p99: .createToStartMs.p99, runningP99: .createToRunningSeenMs.p99,
	skipped: .runningSkipped}' "$OUT/latency.json"
jq -c '{perTask, eventsPerTask, byVerbAndResource}' "$OUT/writes-latency.json"

# --- 7. throughput and the ceiling ----------------------------------------------------------------------
step "throughput: $THR_COUNT tasks through $NRUNNERS runners ($THREADS client connections)"
snapshot thr-before
"$LOAD" tasks --kubeconfig "$KUBECONFIG" --namespace "$NS" --run thr --count "$THR_COUNT" \
	--threads "$THREADS" --command "$STAMP" --timeout 900 \
	--csv "$OUT/throughput.csv" --json "$OUT/throughput.json" >/dev/null
snapshot thr-done
settle_writes
snapshot thr-after
writes thr "$(jq .created "$OUT/throughput.json")" >"$OUT/writes-throughput.json"
# CPU over the run itself (to the last task seen terminal), not the Events drain after it.
jq -n --slurpfile b "$OUT/thr-before-cpu.json" --slurpfile a "$OUT/thr-done-cpu.json" \
	--argjson n "$(jq .created "$OUT/throughput.json")" \
	'{tasks: $n} + ($a[0] | with_entries(.value -= $b[0][.key]))' >"$OUT/cpu-throughput.json"
jq -c '{perSecond, wallSeconds, queuedSeen, skipped: .runningSkipped}' "$OUT/throughput.json"

kubectl get task -n "$NS" thr-0 -o json | jq .status >"$OUT/status-template.json"
# The ceiling at a few connection counts (the best one counts): with a handful the client is
# bound by round trips, not by the API server.
nceil=$(wc -w <<<"$CEIL_THREADS")
for t in $CEIL_THREADS; do
	step "ceiling: $((CEIL_COUNT / nceil)) × (create + 2 status patches) on benchdummies, $t connections"
	"$LOAD" ceiling --kubeconfig "$KUBECONFIG" --namespace "$NS" --run "ceil$t" --count "$((CEIL_COUNT / nceil))" \
		--threads "$t" --extra-watches 1 --template "$OUT/status-template.json" --timeout 900 \
		--json "$OUT/ceiling-$t.json" >/dev/null
	jq -c '{threads, perSecond, wallSeconds}' "$OUT/ceiling-$t.json"
done
jq -s 'sort_by(.perSecond) | last + {runs: map({threads, perSecond, wallSeconds, count})}' \
	"$OUT"/ceiling-*.json >"$OUT/ceiling.json"

# The controller after processing every task live.
jq -n --argjson rss "$(rss_kib "$CTL")" --argjson hwm "$(hwm_kib "$CTL")" \
	--argjson n "$((LAT_COUNT + THR_COUNT))" \
	'{tasks: $n, rssKiB: $rss, peakRssKiB: $hwm}' >"$OUT/memory-live.json"

# --- 8. controller memory with many Tasks ------------------------------------------------------------------
# The controller is stopped while finished Tasks are written (create + a status patch with the
# template, the status a real finished task got), then started again: its RSS after the initial
# list has settled is the figure. It would run the filled tasks if it were up.
present() {
	kubectl get --raw "/apis/tasked.dev/v1alpha1/tasks?limit=1" | jq '(.metadata.remainingItemCount // 0) + (.items | length)'
}
stop_controller() {
	stop_pidfile "$STATE/controller.pid" "$CONTROLLER" tasked-controller 10 "$STATE/" >/dev/null
}
SYNC_S=0
start_controller() { # sets CTL and SYNC_S, the seconds until /readyz (the caches have synced)
	local t0 t1
	t0=$(now_ms)
	TASKED_STATE_DIR=$STATE TASKED_READY_TIMEOUT=600 \
		TASKED_CONTROLLER_ARGS="--lost-grace-seconds 2 ${BENCH_CONTROLLER_ARGS:-}" \
		"$root/tests/cluster/up.sh" >>"$OUT/up.log" 2>&1 || {
		tail -n 20 "$OUT/up.log" >&2
		remember_state
		die "the controller did not come back"
	}
	t1=$(now_ms)
	remember_state
	CTL=$(pid_of controller)
	SYNC_S=$(awk -v ms="$((t1 - t0))" 'BEGIN { printf "%.2f\n", ms / 1000 }')
}
settle_rss() { # PID -> VmRSS once it has not moved by more than 1 % for 3 s (at most 60 s)
	local prev=0 cur stable=0 i
	for ((i = 0; i < 60; i++)); do
		cur=$(rss_kib "$1")
		if [ $((cur - prev)) -le $((prev / 100)) ] && [ $((prev - cur)) -le $((prev / 100)) ]; then
			stable=$((stable + 1))
		else
			stable=0
		fi
		[ "$stable" -ge 3 ] && break
		prev=$cur
		sleep 1
	done
	echo "$cur"
}
mem_rows=()
next_fill=0
fill_rate=0     # objects/s of the previous fill
sync_per_task=0 # seconds of controller start per Task present, from the previous measurement
for target in $MEM_COUNTS; do
	requested=$target
	stop_controller
	have=$(present)
	# Keep within the time budget: if the previous fill says this one (plus the controller's
	# initial list) would not fit, measure the largest round count that does; the report
	# extrapolates and says so.
	if awk -v r="$fill_rate" 'BEGIN { exit !(r > 0) }'; then
		left=$((BUDGET - ($(date +%s) - T_START) - 60))
		fits=$(awk -v r="$fill_rate" -v s="$sync_per_task" -v have="$have" -v left="$left" -v t="$target" \
			'BEGIN { n = t; while (n > have && (n - have) / r + n * s + 15 > left) n -= 10000; print (n > have ? n : 0) }')
		if [ "$fits" -lt "$target" ]; then
			note "memory: $target Tasks would not fit in the ${BUDGET}s budget; measuring ${fits/#0/none} instead"
			target=$fits
		fi
		[ "$target" -gt 0 ] || { start_controller; continue; }
	fi
	step "memory: controller with $target Task objects"
	if [ "$target" -gt "$have" ]; then
		add=$((target - have))
		"$LOAD" fill --kubeconfig "$KUBECONFIG" --namespace "$FILL_NS" --run fill --start "$next_fill" \
			--count "$add" --threads "$FILL_THREADS" --template "$OUT/status-template.json" --command "$STAMP" \
			--timeout 1800 --json "$OUT/fill-$target.json" >/dev/null
		next_fill=$((next_fill + add))
		fill_rate=$(jq '.count / .elapsedSeconds' "$OUT/fill-$target.json")
	fi
	have=$(present)
	start_controller
	sync_per_task=$(awk -v s="$SYNC_S" -v n="$have" 'BEGIN { print (n > 0 ? s / n : 0) }')
	sleep 3 # --lost-grace-seconds 2: the startup hold has passed, every key was reconciled once
	rss=$(settle_rss "$CTL")
	mem_rows+=("$(jq -n --argjson n "$have" --argjson rss "$rss" --argjson hwm "$(hwm_kib "$CTL")" \
		--argjson sync "$SYNC_S" --argjson cpu "$(cpu_s "$CTL")" \
		--argjson fill "$(cat "$OUT/fill-$target.json" 2>/dev/null || echo null)" \
		--argjson req "$requested" \
		'{tasks: $n, requested: $req, rssKiB: $rss, peakRssKiB: $hwm, startToReadySeconds: $sync, cpuSecondsToSettle: $cpu,
		  fill: (if $fill then {count: $fill.count, seconds: $fill.elapsedSeconds} else null end)}')")
	printf '%s\n' "${mem_rows[-1]}" | jq -c .
done
printf '%s\n' "${mem_rows[@]}" | jq -s . >"$OUT/memory.json"

# --- 9. report -------------------------------------------------------------------------------------------
step "report"
jq -n --argjson s "$(($(date +%s) - T_START))" --arg lat "$LAT_COUNT" --arg rate "$LAT_RATE" \
	--arg thr "$THR_COUNT" --arg ceil "$CEIL_COUNT" --arg runners "$NRUNNERS" --arg conc "$RCONC" \
	--arg threads "$THREADS" --arg mem "$MEM_COUNTS" --arg budget "$BUDGET" \
	--arg loadend "$(cut -d' ' -f1-3 /proc/loadavg)" --arg rbl "$RB_LAT" --arg rbt "$RB_THR" \
	'{elapsedSeconds: $s, latencyCount: ($lat | tonumber), latencyRate: ($rate | tonumber),
	  throughputCount: ($thr | tonumber), ceilingCount: ($ceil | tonumber), runners: ($runners | tonumber),
	  runnerConcurrency: ($conc | tonumber), clientThreads: ($threads | tonumber),
	  memoryCounts: ($mem | split(" ") | map(select(length > 0) | tonumber)),
	  runnerLatencyCount: ($rbl | tonumber), runnerThroughputCount: ($rbt | tonumber),
	  budgetSeconds: ($budget | tonumber), loadAverageAtEnd: $loadend}' >"$OUT/params.json"
if [ "${BENCH_NO_DOCS:-0}" = 1 ]; then
	"$here/report.sh" "$OUT" "$OUT"
else
	"$here/report.sh" "$OUT" "$root/docs"
fi
echo "bench: done in $(($(date +%s) - T_START))s"
