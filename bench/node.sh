#!/usr/bin/env bash
# `make bench-node`: the same trivial program, side by side on the real node, in one run.
#
#   sidecar      a Task on the chart's sidecar runners (in the controller's pod)
#   pool         a Task on a RunnerPool in a FROM-scratch user image, warm (minRunners 1)
#   container    a Task with the container executor (a pod per task, made by the controller),
#                as users get it: network disabled, so the network gate runs first
#   containernet the same with networkDisabled: false in its queue (no gate)
#   job          a Kubernetes Job: same image, command and restricted security context
#   pod          a bare Pod: the floor for anything pod-based
#   poolcold     a Task on a RunnerPool at minRunners 0, each run after the pool scaled itself
#                back to no runner and its pod was gone (as many as fit before
#                BENCH_NODE_STOP_AT)
#   tekton       a Tekton Pipelines TaskRun (bench/tekton.sh; with TASKED_BENCH_TEKTON=1, which
#                `make bench-node` sets once tests/cluster/build-tekton.sh has built Tekton)
#
# The program is bench/stamp (static, no libc): it prints the CLOCK_REALTIME at which it began.
# Pods and Jobs run it from tasked-bench-stamp:bench-PID (FROM scratch, /stamp only); the chart's
# runners from tasked-bench-runner:bench-PID (the runner image plus /usr/local/bin/stamp). Both
# are built here, tagged for this run only, and imported into the node's containerd; nothing is
# pulled.
#
# Per row: a sequential run (each run created once the previous one was seen terminal:
# create → process started, → Running seen, → terminal seen), the API server's own
# apiserver_request_total and the CPU of every component around it (writes by verb and
# resource); a steady-rate run (runs overlap as they would under a steady load); then a backlog
# run (throughput) with the CPU seconds of every component around it. The node is brought up
# with tests/cluster/up-node.sh (Helm, hardened defaults) and always torn down (trap).
#
# Environment (defaults in brackets; the defaults are the issue's numbers):
#   BENCH_NODE_SEQ [200]          runs per sequential run
#   BENCH_NODE_COUNT [200]        runs per steady-rate run
#   BENCH_NODE_RATE [2]           per second, for the rows on runners (sidecar, pool)
#   BENCH_NODE_POD_RATE [1]       per second, for the rows that make a pod per run (container,
#                                 job, pod): below what the node sustains, so the latency is not
#                                 a queue's
#   BENCH_NODE_BACKLOG [1000]     runs in the backlog run
#   BENCH_NODE_POD_BACKLOG [BENCH_NODE_BACKLOG]  the same for the rows that make a pod per run
#   BENCH_NODE_{SEQ,COUNT,BACKLOG}_<ROW>  per row (ROW in capitals: BENCH_NODE_BACKLOG_JOB=300);
#                                 0 leaves that run out
#   BENCH_NODE_COLD [200]         cold RunnerPool starts (about 10 s each: see pool_cold)
#   BENCH_NODE_STOP_AT [none]     epoch seconds: no run starts after it and the cold starts stop
#                                 there, so the whole run fits a time slot; what was left out is
#                                 said in the report
#   BENCH_NODE_ROWS [sidecar pool poolcold container job pod tekton containernet]
#                                 (tekton only with TASKED_BENCH_TEKTON=1)
#   BENCH_NO_DOCS=1               report to build/bench/node-out only
#   BENCH_QUICK=1                 a few tasks per run, report to build/bench/node-out only
# Needs root (the node), Docker, and the images of `make images` (make bench-node builds them).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=tests/cluster/lib.sh
. "$root/tests/cluster/lib.sh"

if [ "${BENCH_QUICK:-0}" = 1 ]; then
	: "${BENCH_NODE_SEQ:=3}" "${BENCH_NODE_COUNT:=3}" "${BENCH_NODE_RATE:=2}" "${BENCH_NODE_POD_RATE:=2}"
	: "${BENCH_NODE_BACKLOG:=10}" "${BENCH_NODE_COLD:=2}" "${BENCH_NO_DOCS:=1}"
fi
SEQ=${BENCH_NODE_SEQ:-200}
COUNT=${BENCH_NODE_COUNT:-200}
RATE=${BENCH_NODE_RATE:-2}
POD_RATE=${BENCH_NODE_POD_RATE:-1}
BACKLOG=${BENCH_NODE_BACKLOG:-1000}
POD_BACKLOG=${BENCH_NODE_POD_BACKLOG:-$BACKLOG}
NCOLD=${BENCH_NODE_COLD:-200}
STOP_AT=${BENCH_NODE_STOP_AT:-0}
tekton=
[ "${TASKED_BENCH_TEKTON:-0}" != 1 ] || tekton="tekton "
ROWS=${BENCH_NODE_ROWS:-sidecar pool poolcold container job pod ${tekton}containernet}
STATE=${BENCH_NODE_STATE_DIR:-$root/build/bench/node-state}
OUT=${BENCH_NODE_OUT_DIR:-$root/build/bench/node-out}
LOAD=$root/build/bench/tasked-bench-load
STAMP=$root/build/bench/stamp
TAG=$(cat "$root/VERSION" 2>/dev/null || echo 0.0.0)
STAMP_IMAGE=tasked-bench-stamp:bench-$$
RUNNER_IMAGE=tasked-bench-runner:bench-$$
NS=bench
HZ=$(getconf CLK_TCK)
T_START=$(date +%s)

for b in "$LOAD" "$STAMP"; do
	[ -x "$b" ] || die "${b#"$root"/} is missing: run 'make bench-node'"
done
for t in jq kubectl docker awk; do
	command -v "$t" >/dev/null || die "$t is required"
done
[ "$(id -u)" -eq 0 ] || die "the node needs root"
if ! command -v gnuplot >/dev/null; then
	echo "bench-node: installing gnuplot-nox for the plots" >&2
	{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends gnuplot-nox; } >&2 || note "gnuplot could not be installed: no plots"
fi
docker image inspect "tasked-runner:$TAG" >/dev/null 2>&1 || die "no image tasked-runner:$TAG: run 'make images'"

step() { printf '\n== %s  (+%ds)\n' "$*" $(($(date +%s) - T_START)); }

LOAD_SAMPLER=""
SHIM_SAMPLER=""
cleanup() {
	local rc=$?
	set +e
	trap - EXIT INT TERM
	# The samplers end themselves within a second once the stop file exists.
	touch "$OUT/samplers.stop"
	[ -z "$LOAD_SAMPLER" ] || wait "$LOAD_SAMPLER"
	[ -z "$SHIM_SAMPLER" ] || wait "$SHIM_SAMPLER"
	if [ -d "$STATE" ]; then
		step "down"
		TASKED_STATE_DIR=$STATE "$root/tests/cluster/down.sh" >"$OUT/down.log" 2>&1 ||
			{ echo "bench-node: make down failed (see ${OUT#"$root"/}/down.log)" >&2; [ "$rc" -ne 0 ] || rc=1; }
	fi
	docker image rm "$STAMP_IMAGE" "$RUNNER_IMAGE" >/dev/null 2>&1
	[ "$rc" -eq 0 ] || echo "bench-node: failed (exit $rc); logs in ${STATE#"$root"/} and ${OUT#"$root"/}" >&2
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -d "$STATE" ]; then
	TASKED_STATE_DIR=$STATE "$root/tests/cluster/down.sh" >/dev/null 2>&1 || true
fi
rm -rf "$STATE" "$OUT"
mkdir -p "$STATE" "$OUT"

# --- machine -----------------------------------------------------------------------------------
step "machine"
jq -n --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
	--arg cpu "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)" \
	--argjson nproc "$(nproc)" \
	--argjson memkib "$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)" \
	--arg kernel "$(uname -sr)" \
	--arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
	--arg rev "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
	--arg dirty "$(git -C "$root" status --porcelain 2>/dev/null | grep -c . || true)" \
	'{date: $date, cpu: $cpu, nproc: $nproc, memoryGiB: (($memkib / 1048576 * 10 | round) / 10),
	  kernel: $kernel, loadAverageAtStart: $load, revision: $rev, uncommittedFiles: ($dirty | tonumber)}' \
	>"$OUT/machine.json"
cat "$OUT/machine.json"
# The load average every 10 s for the whole run (the machine is shared).
load_sampler() {
	local i
	set +e
	while [ ! -e "$OUT/samplers.stop" ]; do
		for ((i = 0; i < 20; i++)); do
			[ -e "$OUT/samplers.stop" ] && return 0
			sleep 0.5
		done
		printf '%s %s\n' "$(date +%s)" "$(cut -d' ' -f1 /proc/loadavg)"
	done
}
load_sampler >"$OUT/load.txt" &
LOAD_SAMPLER=$!

# --- images ------------------------------------------------------------------------------------
step "images"
ctx=$root/build/bench/node-images
rm -rf "$ctx"
mkdir -p "$ctx/stamp" "$ctx/runner"
cp "$STAMP" "$ctx/stamp/stamp"
cp "$STAMP" "$ctx/runner/stamp"
printf 'FROM scratch\nCOPY stamp /stamp\nUSER 65532:65532\nENTRYPOINT ["/stamp"]\n' >"$ctx/stamp/Dockerfile"
printf 'FROM tasked-runner:%s\nCOPY stamp /usr/local/bin/stamp\nUSER 65532:65532\n' "$TAG" >"$ctx/runner/Dockerfile"
docker build -q -t "$STAMP_IMAGE" "$ctx/stamp" >"$OUT/images.log" 2>&1
docker build -q -t "$RUNNER_IMAGE" "$ctx/runner" >>"$OUT/images.log" 2>&1

# --- node and Tasked ---------------------------------------------------------------------------
step "node: tests/cluster/up-node.sh (Helm install of charts/tasked)"
export KUBECONFIG=$STATE/kubeconfig
TASKED_STATE_DIR=$STATE TASKED_NODE_IMAGES="$STAMP_IMAGE $RUNNER_IMAGE" \
	TASKED_HELM_ARGS="--set runner.image.repository=${RUNNER_IMAGE%:*} --set runner.image.tag=${RUNNER_IMAGE#*:} ${BENCH_NODE_HELM_ARGS:-}" \
	"$root/tests/cluster/up-node.sh" >"$OUT/up.log" 2>&1 || {
	tail -n 30 "$OUT/up.log" >&2
	die "the node did not come up"
}
# shellcheck disable=SC1091
. "$STATE/release.env" # NAMESPACE RELEASE FULLNAME
SOCK=$STATE/node/containerd/containerd.sock
kubectl create namespace "$NS" >/dev/null
kubectl label namespace "$NS" pod-security.kubernetes.io/enforce=restricted >/dev/null
# The default ServiceAccount appears shortly after the namespace; a pod needs it.
for ((i = 0; i < 100; i++)); do
	kubectl -n "$NS" get serviceaccount default >/dev/null 2>&1 && break
	sleep 0.2
done
CRDS=$(kubectl get crd -o name)
has_pools() { grep -q runnerpools.tasked.dev <<<"$CRDS"; }
# The Task CRD has had spec.container since before the executor existed: the tree tells.
has_container() { [ -f "$root/controller/podexec.c" ]; }

# --- measurements ------------------------------------------------------------------------------
# The shims: a pod's shim lives from its sandbox to its deletion and is reaped by init, so its
# CPU is gone when it exits. Sampled every 0.5 s for the whole run ("TIME PID START TICKS" when
# the ticks moved, for this node's shims only); cpu_delta takes each shim's last sample in the
# window, so an exited shim loses at most its last half second.
shim_sampler() {
	local t k pid start cmd
	set +e +o pipefail # a process that ends while it is read is no reason to stop
	while [ ! -e "$OUT/samplers.stop" ]; do
		t=$(date +%s.%N)
		# A shim seen for the first time is printed as "new PID START"; whether it is ours is
		# read here, not in awk (mawk reports a process gone mid-read on stderr).
		cat /proc/[0-9]*/stat 2>/dev/null | awk -v t="$t" -v seen="$OUT/shims.seen" '
			BEGIN { while ((getline l < seen) > 0) { split(l, a, " "); ours[a[1] " " a[2]] = a[3] } close(seen) }
			$2 == "(containerd-shim)" {
				k = $1 " " $22
				if (!(k in ours)) print "new", k
				else if (ours[k]) print t, $1, $22, $14 + $15 + $16 + $17
			}' | while read -r k pid start; do
			if [ "$k" = new ]; then
				cmd=$({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null) || cmd=
				case "$cmd" in *"$SOCK"*) echo "$pid $start 1" ;; *) echo "$pid $start 0" ;; esac >>"$OUT/shims.seen"
			else
				echo "$k $pid $start"
			fi
		done
		sleep 0.5
	done | awk '{ k = $2 " " $3; if (last[k] != $4) { print; fflush() } last[k] = $4 }' >>"$OUT/shims.log"
}
# cpu_snapshot FILE: "COMPONENT PID STARTTIME TICKS" per process, TICKS = utime + stime + cutime +
# cstime (its own CPU and its reaped children's: runc under the shims, task processes under the
# runners), plus "pods - - NS" lines with the node's pod cgroups' cpuacct total.
cpu_line() { # COMPONENT PID
	[ -r "/proc/$2/stat" ] || return 0
	awk -v c="$1" -v p="$2" '{ sub(/.*\) /, ""); print c, p, $20, $12 + $13 + $14 + $15 }' "/proc/$2/stat" 2>/dev/null || true
}
cpu_snapshot() {
	local f pid comm cg
	{
		for f in etcd kube-apiserver kube-controller-manager; do
			[ -s "$STATE/$f.pid" ] && cpu_line "$f" "$(cat "$STATE/$f.pid")"
		done
		for f in kube-scheduler kubelet containerd kube-proxy netpol; do
			[ -s "$STATE/node/$f.pid" ] && cpu_line "$f" "$(cat "$STATE/node/$f.pid")"
		done
		for f in /proc/[0-9]*; do
			pid=${f#/proc/}
			comm=$(cat "$f/comm" 2>/dev/null) || continue
			case "$comm" in
			tasked-controll* | tasked-runner* | ld-linux*)
				cg=$(cat "$f/cgroup" 2>/dev/null) || continue
				case "$cg" in *"/$NODE_TAG/"*) ;; *) continue ;; esac
				case "$comm" in
				tasked-controll*) cpu_line controller "$pid" ;;
				tasked-runner*) cpu_line runners "$pid" ;;
				*) # a RunnerPool's runner: started through the loader it brings along
					tr '\0' ' ' <"$f/cmdline" 2>/dev/null | grep -q 'tasked-runner' && cpu_line runners "$pid" ;;
				esac ;;
			esac
		done
		printf 'pods - - %s\n' "$(cat "/sys/fs/cgroup/cpuacct/$NODE_TAG/cpuacct.usage" 2>/dev/null || echo 0)"
		printf 'time - - %s\n' "$(date +%s.%N)"
	} >"$1"
}
# cpu_delta BEFORE AFTER TASKS -> {"component": CPU seconds per 1,000 tasks, ...}. A process that
# started in between counts whole; one that ended in between is lost (a lower bound: a shim of
# a pod deleted during the run; pods are deleted after the measurement here).
cpu_delta() {
	sleep 0.6 # the shim sampler's next round
	awk -v hz="$HZ" -v n="$3" '
		FNR == 1 { file++ }
		file <= 2 && $1 == "pods" { if (file == 1) pb = $4; else pa = $4; next }
		file <= 2 && $1 == "time" { if (file == 1) t0 = $4; else t1 = $4; next }
		file == 1 { before[$2 " " $3] = $4; next }
		file == 2 { d = $4 - before[$2 " " $3]; if (d < 0) d = 0; sum[$1] += d / hz; next }
		# shims.log: the last sample of each shim at or before t0 and at or before t1
		$1 <= t0 { s0[$2 " " $3] = $4 }
		$1 <= t1 { s1[$2 " " $3] = $4 }
		END {
			for (k in s1) { d = s1[k] - s0[k]; if (d > 0) sum["containerd-shims"] += d / hz }
			# the pod cgroups (ns) less what the controller and runners of those pods used
			p = (pa - pb) / 1e9 - sum["controller"] - sum["runners"]; if (p < 0) p = 0
			sum["containers"] = p
			printf "{"; sep = ""
			for (c in sum) { printf "%s\"%s\": %.4f", sep, c, sum[c] * 1000 / n; sep = ", " }
			printf "}\n"
		}' "$1" "$2" "$OUT/shims.log"
}
: >"$OUT/shims.log"
: >"$OUT/shims.seen"
shim_sampler &
SHIM_SAMPLER=$!
apimetrics() { "$LOAD" apimetrics --kubeconfig "$KUBECONFIG" --json "$1"; }
# writes_delta BEFORE AFTER TASKS -> writes per task by "VERB group/resource[/sub]", and totals.
writes_delta() {
	jq -n --slurpfile b "$1" --slurpfile a "$2" --argjson n "$3" '
		def w: test("^(POST|PUT|PATCH|DELETE|DELETECOLLECTION|APPLY) ");
		($b[0].requests) as $B | ($a[0].requests) as $A
		| ([$A | to_entries[] | select(.key | w) | {key, value: (.value - ($B[.key] // 0))} | select(.value > 0)]
		   | from_entries) as $d
		| def sumof(re): [$d | to_entries[] | select(.key | test(re)) | .value] | add // 0;
		{tasks: $n, byVerbAndResource: ($d | map_values(. / $n)),
		 total: (([$d[]] | add // 0) / $n),
		 leases: (sumof("coordination.k8s.io/leases") / $n),
		 events: (sumof("/events$") / $n),
		 withoutLeases: ((([$d[]] | add // 0) - sumof("coordination.k8s.io/leases")) / $n)}'
}
settle_writes() { # until no write for 2 s (Events are asynchronous), at most 20 s
	local prev="" cur i
	for ((i = 0; i < 10; i++)); do
		sleep 2
		cur=$("$LOAD" apimetrics --kubeconfig "$KUBECONFIG" | jq -c '[.requests | to_entries[]
			| select(.key | test("^(POST|PATCH|PUT|DELETE) ")) | select(.key | test("leases") | not)] | map(.value) | add')
		[ "$cur" = "$prev" ] && return 0
		prev=$cur
	done
}
# The kinds a row makes and clean_ns deletes (bench/tekton.sh adds taskruns for its row).
CLEAN_KINDS=tasks,jobs
clean_ns() { # delete what a row made and wait until it is gone (a RunnerPool's runners stay)
	local i
	kubectl -n "$NS" delete "$CLEAN_KINDS" --all --cascade=background --wait=false >/dev/null 2>&1 || true
	kubectl -n "$NS" delete pods -l bench.tasked.dev/run --wait=false >/dev/null 2>&1 || true
	for ((i = 0; i < 300; i++)); do
		[ -z "$(kubectl -n "$NS" get "$CLEAN_KINDS" -o name 2>/dev/null | head -n 1)" ] &&
			[ -z "$(kubectl -n "$NS" get pods -l '!tasked.dev/runner-pool' -o name 2>/dev/null | head -n 1)" ] && return 0
		sleep 1
	done
	note "objects of the previous row are still being deleted"
}

# count_for KIND ROW DEFAULT: BENCH_NODE_<KIND>_<ROW> when set, else DEFAULT.
count_for() {
	local v="BENCH_NODE_${1}_${2^^}"
	printf '%s\n' "${!v:-$3}"
}
# time_left: seconds until BENCH_NODE_STOP_AT (a day without one).
time_left() {
	if [ "$STOP_AT" -gt 0 ]; then echo $((STOP_AT - $(date +%s))); else echo 86400; fi
}
# lg_timeout DEFAULT: DEFAULT seconds, or fewer when BENCH_NODE_STOP_AT comes sooner.
lg_timeout() {
	local t
	t=$(time_left)
	if [ "$t" -lt "$1" ]; then echo "$((t > 1 ? t : 1))"; else echo "$1"; fi
}
LEFT_OUT='[]'
left_out() { # ROW RUN WHY
	LEFT_OUT=$(jq -c --arg r "$1" --arg p "$2" --arg w "$3" '. + [{row: $r, run: $p, why: $w}]' <<<"$LEFT_OUT")
	note "$1: $2 left out: $3"
}
# may_run ROW RUN N: whether to start a run of N (N > 0 and a minute left before STOP_AT).
may_run() {
	if [ "$3" -le 0 ]; then
		left_out "$1" "$2" "its count was set to 0"
		return 1
	fi
	[ "$(time_left)" -ge 60 ] && return 0
	left_out "$1" "$2 of $3" "no time left before BENCH_NODE_STOP_AT"
	return 1
}

# row NAME RATE BACKLOG LOADGEN-ARGS...: the sequential, steady-rate and backlog runs of a row
# (BACKLOG "-": the caller runs the backlog).
row() {
	local name=$1 rate=$2 nseq nsteady nback=- n
	nseq=$(count_for SEQ "$name" "$SEQ")
	nsteady=$(count_for COUNT "$name" "$COUNT")
	[ "$3" = - ] || nback=$(count_for BACKLOG "$name" "$3")
	shift 3
	if may_run "$name" sequential "$nseq"; then
		step "$name: $nseq sequential (each once the previous one was seen terminal)"
		apimetrics "$OUT/$name-lat-before-api.json"
		cpu_snapshot "$OUT/$name-lat-before-cpu.txt"
		"$LOAD" tasks --kubeconfig "$KUBECONFIG" --namespace "$NS" --run "$name-s" --count "$nseq" \
			--sequential --threads 1 --timeout "$(lg_timeout 3600)" --csv "$OUT/$name-latency.csv" \
			--json "$OUT/$name-latency.json" "$@" >/dev/null || note "$name: the sequential run reported errors"
		settle_writes
		apimetrics "$OUT/$name-lat-after-api.json"
		cpu_snapshot "$OUT/$name-lat-after-cpu.txt"
		n=$(jq '.created // 0' "$OUT/$name-latency.json" 2>/dev/null || echo 0)
		if [ "$n" -gt 0 ]; then
			writes_delta "$OUT/$name-lat-before-api.json" "$OUT/$name-lat-after-api.json" "$n" >"$OUT/$name-writes.json"
			cpu_delta "$OUT/$name-lat-before-cpu.txt" "$OUT/$name-lat-after-cpu.txt" "$n" >"$OUT/$name-cpu-seq.json"
			jq -c '{start: .createToStartMs.p50, terminal: .createToTerminalSeenMs.p50, elapsedSeconds, unsettled, otherTerminal, stampMissing}' "$OUT/$name-latency.json" || true
			jq -c '{total, withoutLeases}' "$OUT/$name-writes.json" || true
		fi
		clean_ns
	fi
	if may_run "$name" steady-rate "$nsteady"; then
		step "$name: $nsteady at $rate/s"
		"$LOAD" tasks --kubeconfig "$KUBECONFIG" --namespace "$NS" --run "$name-l" --count "$nsteady" \
			--rate "$rate" --threads 4 --timeout "$(lg_timeout 1800)" --csv "$OUT/$name-steady.csv" \
			--json "$OUT/$name-steady.json" "$@" >/dev/null || note "$name: the steady-rate run reported errors"
		jq -c '{start: .createToStartMs.p50, terminal: .createToTerminalSeenMs.p50, unsettled, otherTerminal, stampMissing}' "$OUT/$name-steady.json" || true
		clean_ns
	fi
	if [ "$nback" != - ] && may_run "$name" backlog "$nback"; then
		backlog "$name" "$nback" "$@"
	fi
}
# backlog NAME N LOADGEN-ARGS...: N created as fast as 8 connections can; the CPU window holds
# the run and the deletion of what it made (Tasks; Jobs and their pods; Pods), as a user's
# cleanup would.
backlog() {
	local name=$1 n=$2 t0
	shift 2
	step "$name: backlog of $n (and deleting them)"
	cpu_snapshot "$OUT/$name-thr-before-cpu.txt"
	"$LOAD" tasks --kubeconfig "$KUBECONFIG" --namespace "$NS" --run "$name-t" --count "$n" \
		--threads 8 --timeout "$(lg_timeout 3600)" --csv "$OUT/$name-throughput.csv" \
		--json "$OUT/$name-throughput.json" "$@" >/dev/null || note "$name: the backlog run reported errors"
	t0=$(now_ms)
	clean_ns
	cpu_snapshot "$OUT/$name-thr-after-cpu.txt"
	cpu_delta "$OUT/$name-thr-before-cpu.txt" "$OUT/$name-thr-after-cpu.txt" "$n" >"$OUT/$name-cpu.json"
	if [ -s "$OUT/$name-throughput.json" ]; then
		jq --argjson d "$(($(now_ms) - t0))" '. + {deleteSeconds: ($d / 1000)}' "$OUT/$name-throughput.json" >"$OUT/$name-throughput.json.tmp"
		mv "$OUT/$name-throughput.json.tmp" "$OUT/$name-throughput.json"
	fi
	jq -c '{count, perSecond, wallSeconds, deleteSeconds, unsettled, otherTerminal}' "$OUT/$name-throughput.json" || true
	jq -c . "$OUT/$name-cpu.json" || true
}

step "idle baseline: CPU of every component for 20 s"
cpu_snapshot "$OUT/idle-before-cpu.txt"
sleep 20
cpu_snapshot "$OUT/idle-after-cpu.txt"
# per 1,000 "tasks" of 20 ms each = CPU seconds per 20 s; as CPU seconds per second instead:
cpu_delta "$OUT/idle-before-cpu.txt" "$OUT/idle-after-cpu.txt" 20000 >"$OUT/idle-cpu.json"
jq -c . "$OUT/idle-cpu.json" || true

# pool_cold: single Tasks on a pool at minRunners 0 (scaleDownDelaySeconds 0), each once the
# pool has scaled itself back to 0 replicas and its runner pod is gone: create → started
# includes the scale-up, scheduling, the pod, the runner's injection and its connection. The
# pool is left to scale down as a user's would (the controller's 2 s reconcile, a drain, the
# Deployment lowered, the pod's runner stopping): each cycle's wait and run times are kept in
# poolcold-cycles.txt. As many as fit before BENCH_NODE_STOP_AT.
pool_cold() {
	local i n=0 t0 t1 t2 pods ncold
	ncold=$(count_for SEQ poolcold "$NCOLD")
	may_run poolcold "cold starts" "$ncold" || return 0
	kubectl -n "$NS" apply -f - >/dev/null <<-EOF || { skip poolcold "the RunnerPool was refused"; return 0; }
		apiVersion: tasked.dev/v1alpha1
		kind: RunnerPool
		metadata: {name: cold}
		spec: {image: $STAMP_IMAGE, labels: {pool: cold}, slotsPerRunner: 1, minRunners: 0, maxRunners: 1, scaleDownDelaySeconds: 0}
	EOF
	# A pool at 0 has its Deployment (at 0 replicas): the first start must not also create it.
	for ((i = 0; i < 60; i++)); do
		kubectl -n "$NS" get deploy cold-pool >/dev/null 2>&1 && break
		sleep 1
	done
	: >"$OUT/poolcold-cycles.txt"
	apimetrics "$OUT/poolcold-lat-before-api.json"
	cpu_snapshot "$OUT/poolcold-lat-before-cpu.txt"
	for ((i = 0; i < ncold; i++)); do
		if [ "$(time_left)" -lt 30 ]; then
			left_out poolcold "cold starts $((i + 1))–$ncold" "no time left before BENCH_NODE_STOP_AT"
			break
		fi
		t0=$(now_ms)
		kubectl -n "$NS" wait --for=jsonpath='{.spec.replicas}'=0 deploy/cold-pool --timeout=180s >/dev/null 2>&1 ||
			note "poolcold: the pool did not scale to 0 in 180 s"
		pods=$(kubectl -n "$NS" get pods -l tasked.dev/runner-pool=cold -o name 2>/dev/null || true)
		if [ -n "$pods" ]; then
			# shellcheck disable=SC2086 # one name a line
			kubectl -n "$NS" wait --for=delete $pods --timeout=180s >/dev/null 2>&1 ||
				note "poolcold: the runner pod was not gone in 180 s"
		fi
		t1=$(now_ms)
		"$LOAD" tasks --kubeconfig "$KUBECONFIG" --namespace "$NS" --run "poolcold-$i" --count 1 \
			--threads 1 --timeout 300 --csv "$OUT/poolcold-$i.csv" --json "$OUT/poolcold-$i.json" \
			--command /stamp --spec '{"runnerPool": "cold", "queue": "pools"}' >/dev/null || note "poolcold: run $i reported errors"
		t2=$(now_ms)
		n=$((n + 1))
		# run, seconds waiting for 0 runners, seconds of the run (loadgen's start and stop included)
		printf '%d %.3f %.3f\n' "$i" "$((t1 - t0))e-3" "$((t2 - t1))e-3" >>"$OUT/poolcold-cycles.txt"
		step "poolcold: $n of $ncold: $(jq -c '{start: .createToStartMs.p50, terminal: .createToTerminalSeenMs.p50}' "$OUT/poolcold-$i.json") after $(((t1 - t0) / 1000)) s waiting for 0 runners"
	done
	settle_writes
	apimetrics "$OUT/poolcold-lat-after-api.json"
	cpu_snapshot "$OUT/poolcold-lat-after-cpu.txt"
	if [ "$n" -gt 0 ]; then
		writes_delta "$OUT/poolcold-lat-before-api.json" "$OUT/poolcold-lat-after-api.json" "$n" >"$OUT/poolcold-writes.json"
		cpu_delta "$OUT/poolcold-lat-before-cpu.txt" "$OUT/poolcold-lat-after-cpu.txt" "$n" >"$OUT/poolcold-cpu-seq.json"
		# one CSV as the other rows have (header once)
		awk 'FNR > 1 || NR == 1' "$OUT"/poolcold-[0-9]*.csv >"$OUT/poolcold-latency.csv"
		rm -f "$OUT"/poolcold-[0-9]*.csv "$OUT"/poolcold-[0-9]*.json
	fi
	kubectl -n "$NS" delete runnerpool cold --wait=true >/dev/null || true
	clean_ns
}

SKIPPED='{}'
skip() { SKIPPED=$(jq -c --arg r "$1" --arg w "$2" '. + {($r): $w}' <<<"$SKIPPED"); note "$1: $2"; }
# TASKED_BENCH_TEKTON=1 (bench/tekton.sh): a Tekton TaskRun row, on this file's helpers.
if [ "${TASKED_BENCH_TEKTON:-0}" = 1 ]; then
	# shellcheck source=bench/tekton.sh
	. "$here/tekton.sh"
fi
# ctr_queue NAME NETWORK-DISABLED: a queue for container tasks of the stamp image.
ctr_queue() {
	kubectl -n "$NS" apply -f - >/dev/null <<-EOF
		apiVersion: tasked.dev/v1alpha1
		kind: TaskQueue
		metadata: {name: $1}
		spec: {policy: {executors: [container], container: {imageAllowlist: ["$STAMP_IMAGE"], networkDisabled: $2, defaultResources: {cpu: 250m, memory: 64Mi}}}}
	EOF
}
# A container task's spec; the backlog's tail waits on the node for minutes (a pod each, 250m
# of 2 cores), longer than the bench's usual timeoutSeconds (the pod's activeDeadlineSeconds).
ctr_spec() { # QUEUE TIMEOUT-SECONDS
	printf '{"queue": "%s", "timeoutSeconds": %d, "container": {"image": "%s", "command": ["/stamp"]}}' "$1" "$2" "$STAMP_IMAGE"
}
ctr_rows=$(tr ' ' '\n' <<<"$ROWS" | grep -c '^container' || true)
for r in $ROWS; do
	case "$r" in
	sidecar)
		row sidecar "$RATE" "$BACKLOG" --command /usr/local/bin/stamp ;;
	pool | poolcold)
		if ! has_pools; then
			skip "$r" "no RunnerPool CRD in this tree (RunnerPools were not merged yet)"
			continue
		fi
		# A Task may use a RunnerPool only as far as its TaskQueue's container policy allows the
		# pool's image (docs/pools.md): a queue "pools" for both pool rows.
		kubectl -n "$NS" apply -f - >/dev/null <<-EOF
			apiVersion: tasked.dev/v1alpha1
			kind: TaskQueue
			metadata: {name: pools}
			spec: {policy: {container: {imageAllowlist: ["$STAMP_IMAGE"]}}}
		EOF
		if [ "$r" = pool ]; then
			kubectl -n "$NS" apply -f - >/dev/null <<-EOF
				apiVersion: tasked.dev/v1alpha1
				kind: RunnerPool
				metadata: {name: stamp}
				spec: {image: $STAMP_IMAGE, labels: {pool: stamp}, slotsPerRunner: 4, minRunners: 1, maxRunners: 1}
			EOF
			for ((i = 0; i < 120; i++)); do
				[ "$(kubectl -n "$NS" get runnerpool stamp -o jsonpath='{.status.readyRunners}' 2>/dev/null)" = 1 ] && break
				[ "$(kubectl -n "$NS" get deploy stamp-pool -o jsonpath='{.status.readyReplicas}' 2>/dev/null)" = 1 ] && break
				sleep 1
			done
			sleep 2
			row pool "$RATE" "$BACKLOG" --command /stamp --spec '{"runnerPool": "stamp", "queue": "pools"}'
			kubectl -n "$NS" delete runnerpool stamp --wait=true >/dev/null || true
		else
			pool_cold
		fi ;;
	container | containernet)
		if ! has_container; then
			skip "$r" "no spec.container in the Task CRD (the container executor was not merged yet)"
			continue
		fi
		if [ "$r" = container ]; then q=stamp nd=true; else q=stampnet nd=false; fi
		ctr_queue "$q" "$nd"
		# The backlog's Tasks are those of the other runs with a longer timeout (see ctr_spec).
		row "$r" "$POD_RATE" - --command /stamp --spec "$(ctr_spec "$q" 60)"
		nback=$(count_for BACKLOG "$r" "$POD_BACKLOG")
		if may_run "$r" backlog "$nback"; then
			backlog "$r" "$nback" --command /stamp --spec "$(ctr_spec "$q" 3600)"
		fi
		kubectl -n "$NS" delete taskqueue "$q" >/dev/null 2>&1 || true
		# After the last container row, the deny-all NetworkPolicy the controller made (it
		# would not make it again), so that the rows after run without it.
		ctr_rows=$((ctr_rows - 1))
		[ "$ctr_rows" -gt 0 ] || kubectl -n "$NS" delete networkpolicy --all >/dev/null 2>&1 || true ;;
	job)
		row job "$POD_RATE" "$POD_BACKLOG" --object job --image "$STAMP_IMAGE" --command /stamp ;;
	pod)
		row pod "$POD_RATE" "$POD_BACKLOG" --object pod --image "$STAMP_IMAGE" --command /stamp ;;
	tekton) tekton_row ;; # bench/tekton.sh (TASKED_BENCH_TEKTON=1)
	*) die "unknown row $r (BENCH_NODE_ROWS)" ;;
	esac
done
printf '%s\n' "$SKIPPED" >"$OUT/skipped.json"
printf '%s\n' "$LEFT_OUT" >"$OUT/left-out.json"

# --- report ------------------------------------------------------------------------------------
step "report"
# The defaults (the issue's numbers), and every BENCH_NODE_* setting this run was given.
jq -n --argjson s "$(($(date +%s) - T_START))" --argjson seq "$SEQ" --argjson count "$COUNT" --argjson rate "$RATE" \
	--argjson prate "$POD_RATE" --argjson backlog "$BACKLOG" --argjson pb "$POD_BACKLOG" --argjson cold "$NCOLD" \
	--arg loadend "$(cut -d' ' -f1-3 /proc/loadavg)" \
	--argjson env "$(env | grep '^BENCH_NODE_' | jq -R -s 'split("\n") | map(select(length > 0) | split("=")
		| {key: .[0], value: (.[1:] | join("="))}) | from_entries')" \
	'{elapsedSeconds: $s, sequential: $seq, count: $count, rate: $rate, podRate: $prate, backlog: $backlog,
	  podBacklog: $pb, cold: $cold, loadAverageAtEnd: $loadend, environment: $env}' >"$OUT/params.json"
if [ "${BENCH_NO_DOCS:-0}" = 1 ]; then
	"$here/report-node.sh" "$OUT" "$OUT"
else
	"$here/report-node.sh" "$OUT" "$root/docs"
fi
echo "bench-node: done in $(($(date +%s) - T_START))s"
