#!/usr/bin/env bash
# shellcheck disable=SC2016 # jq and awk programs are single-quoted on purpose
# bench/report.sh RAW_DIR DEST_DIR: turns the raw results of bench/run.sh (RAW_DIR, normally
# build/bench/out) into DEST_DIR/benchmarks.json, DEST_DIR/benchmarks.md and DEST_DIR/bench-*.png.
# Can be run again on its own to re-render the same numbers.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd) # bench/memory.md: the idle-memory analysis
RAW=${1:?usage: report.sh RAW_DIR DEST_DIR}
DEST=${2:?usage: report.sh RAW_DIR DEST_DIR}
mkdir -p "$DEST"
J=$DEST/benchmarks.json
MD=$DEST/benchmarks.md

f() { # FILE -> its JSON, or null when the step did not run
	if [ -s "$RAW/$1" ]; then cat "$RAW/$1"; else echo null; fi
}

# --- benchmarks.json: every figure, its target, its peer ---------------------------------------
jq -n \
	--argjson machine "$(f machine.json)" --argjson params "$(f params.json)" \
	--argjson latency "$(f latency.json)" --argjson wl "$(f writes-latency.json)" \
	--argjson wt "$(f writes-throughput.json)" --argjson thr "$(f throughput.json)" \
	--argjson ceil "$(f ceiling.json)" --argjson cpu "$(f cpu-throughput.json)" \
	--argjson idle "$(f idle.json)" --argjson live "$(f memory-live.json)" \
	--argjson mem "$(f memory.json)" --argjson runner "$(f runner.json)" \
	--argjson images "$(f images.json)" --argjson binaries "$(f binaries.json)" '
	def r(n): if . == null then null else (. * pow(10; n) | round) / pow(10; n) end;
	($mem // []) as $mem
	| (($mem | map(select(.tasks > 0)) | sort_by(.tasks) | last) // null) as $big
	| ($idle.controllerRssKiB // null) as $base
	| (if $big and $base then (($big.rssKiB - $base) * 1024 / $big.tasks) else null end) as $bpt
	| (if ($mem | length) >= 2 then
		($mem | sort_by(.tasks)) as $m | (($m[-1].rssKiB - $m[0].rssKiB) * 1024 / ($m[-1].tasks - $m[0].tasks))
	   else null end) as $slope
	| (if $thr.perSecond and $ceil.perSecond then $thr.perSecond / $ceil.perSecond else null end) as $ratio
	| (if $cpu and $cpu.tasks > 0 then ($cpu | with_entries(select(.key != "tasks" and .key != "time"))
		| map_values(. * 1000 / $cpu.tasks | r(2))) else null end) as $cpu1k
	| {
	  generated: ($machine.date // null),
	  machine: $machine,
	  binaries: ($binaries.binaries // "bin"),
	  parameters: $params,
	  startLatency: $latency,
	  apiWrites: {latencyRun: $wl, throughputRun: $wt},
	  throughput: {tasks: $thr, ceiling: $ceil, ratio: ($ratio | r(3)), cpuSeconds: $cpu, cpuSecondsPer1000Tasks: $cpu1k},
	  controllerMemory: {idle: $idle, afterLiveRun: $live, withTasks: $mem,
		bytesPerTask: ($bpt | r(0)), bytesPerTaskSlope: ($slope | r(0)),
		bytesPerTaskLive: (if $live and $base and $live.tasks > 0 then (($live.rssKiB - $base) * 1024 / $live.tasks | r(0)) else null end),
		extrapolated100kMiB: (if $bpt and $base then (($base * 1024 + $bpt * 100000) / 1048576 | r(1)) else null end)},
	  runner: $runner,
	  images: $images,
	  targets: [
	    {id: "start-p50", what: "create → process started, p50", unit: "ms",
	     value: ($latency.createToStartMs.p50 | r(1)), target: 20, op: "<=",
	     peer: "Tekton ≈ 4 s per task (pod + init containers)"},
	    {id: "start-p95", what: "create → process started, p95", unit: "ms",
	     value: ($latency.createToStartMs.p95 | r(1)), target: null, op: null, peer: ""},
	    {id: "start-p99", what: "create → process started, p99", unit: "ms",
	     value: ($latency.createToStartMs.p99 | r(1)), target: 100, op: "<=",
	     peer: "pod startup SLO: p99 ≤ 5 s (without image pulls, init containers)"},
	    {id: "running-p50", what: "create → `Running` seen by a watch, p50", unit: "ms",
	     value: ($latency.createToRunningSeenMs.p50 | r(1)), target: null, op: null, peer: ""},
	    {id: "running-p99", what: "create → `Running` seen by a watch, p99", unit: "ms",
	     value: ($latency.createToRunningSeenMs.p99 | r(1)), target: null, op: null, peer: "pod startup SLO: p99 ≤ 5 s"},
	    {id: "writes", what: "controller API writes per task (status, spec, TaskQueue; user create excluded)", unit: "writes",
	     value: ($wl.perTask | r(2)), target: 2, op: "<=", peer: "Argo ≈ 40 per workflow (derived, CNOE)"},
	    {id: "events", what: "… plus Events per task (best effort, asynchronous)", unit: "writes",
	     value: ($wl.eventsPerTask | r(2)), target: null, op: null, peer: ""},
	    {id: "writes-backlog", what: "controller API writes per task with a backlog (throughput run)", unit: "writes",
	     value: ($wt.perTask | r(2)), target: 2, op: "<=", peer: ""},
	    {id: "tps", what: "tasks/s end to end (\($thr.count // "?") trivial tasks, \($params.runners // "?") runners)", unit: "tasks/s",
	     value: ($thr.perSecond | r(1)), target: null, op: null, peer: "Argo 2,100 wf/min = 35/s with 5 shards"},
	    {id: "ceiling", what: "ceiling: create + 2 status writes on a dummy CR, same API server", unit: "objects/s",
	     value: ($ceil.perSecond | r(1)), target: null, op: null, peer: ""},
	    {id: "ratio", what: "Tasked ÷ ceiling", unit: "%",
	     value: (if $ratio then ($ratio * 100 | r(1)) else null end), target: 80, op: ">=", peer: ""},
	    {id: "mem-base", what: "controller RSS with 0 tasks", unit: "MiB",
	     value: (if $base then ($base / 1024 | r(1)) else null end), target: 6, op: "<=",
	     peer: "Tekton 20–50 MiB small; Kueue ~100 MiB"},
	    {id: "mem-per-task", what: "controller memory per Task object ((RSS(N) − RSS(0)) / N, N = \($big.tasks // "?"))", unit: "bytes",
	     value: ($bpt | r(0)), target: 1024, op: "<=",
	     peer: "Argo, Tekton: linear in live runs and their pods (informer caches); research note: < 30 MiB at 10k live tasks"},
	    {id: "cpu-1k", what: "controller CPU per 1,000 tasks (throughput run)", unit: "CPU s",
	     value: ($cpu1k.controller // null), target: null, op: null, peer: ""},
	    {id: "runner-idle", what: "runner idle RSS (connected, no tasks)", unit: "MiB",
	     value: (if $runner.idle.rssKiB then ($runner.idle.rssKiB / 1024 | r(1)) else null end), target: 4, op: "<=",
	     peer: "n8n runner: a Node.js process"},
	    {id: "runner-exec-p99", what: "runner dispatch → exec, p99 (dispatch written → first instruction of the task)", unit: "ms",
	     value: ($runner.latency.dispatchToStampMs.p99 | r(2)), target: 2, op: "<=", peer: ""},
	    {id: "runner-tps", what: "trivial tasks/s through one runner (\($runner.throughput.concurrency // "?") slots)", unit: "tasks/s",
	     value: ($runner.throughput.perSecond | r(0)), target: null, op: null, peer: ""},
	    {id: "image-runner", what: "runner image (uncompressed; gzip in brackets)", unit: "MB",
	     value: (if $images.runner then ($images.runner.bytes / 1e6 | r(1)) else null end),
	     gzip: (if $images.runner then ($images.runner.gzipBytes / 1e6 | r(1)) else null end),
	     target: 10, op: "<=", peer: "n8n runners image: hundreds of MB"},
	    {id: "image-controller", what: "controller image (uncompressed; gzip in brackets)", unit: "MB",
	     value: (if $images.controller then ($images.controller.bytes / 1e6 | r(1)) else null end),
	     gzip: (if $images.controller then ($images.controller.gzipBytes / 1e6 | r(1)) else null end),
	     target: null, op: null, peer: ""}
	  ] | map(. + {met: (if .value == null or .target == null then null
			elif .op == "<=" then .value <= .target else .value >= .target end)})
	}' >"$J"

# --- plots ------------------------------------------------------------------------------------------
plots=()
if command -v gnuplot >/dev/null; then
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	# cdf COLUMN_EXPR FILE -> "ms fraction" lines (CSV with a header)
	cdf() {
		awk -F, "NR > 1 { v = $1; if (v > 0) print v / 1e6 }" "$2" | sort -g |
			awk '{ a[NR] = $1 } END { for (i = 1; i <= NR; i++) print a[i], i / NR }'
	}
	if [ -s "$RAW/latency.csv" ]; then
		cdf '($8 > 0 ? $8 - $2 : 0)' "$RAW/latency.csv" >"$tmp/start"
		cdf '($4 > 0 ? $4 - $2 : 0)' "$RAW/latency.csv" >"$tmp/running"
		cdf '($6 > 0 ? $6 - $2 : 0)' "$RAW/latency.csv" >"$tmp/done"
		gnuplot <<-EOF
			set terminal pngcairo size 900,520 font "DejaVu Sans,11"
			set output "$DEST/bench-latency.png"
			set title "Start latency: $(jq -r '.parameters | "\(.latencyCount) tasks at \(.latencyRate)/s"' "$J")"
			set xlabel "milliseconds since the create request was sent (log scale)"
			set ylabel "fraction of tasks"
			set logscale x
			set grid
			set key top left
			set yrange [0:1.05]
			set arrow from 20, graph 0 to 20, graph 1 nohead dt 2 lc rgb "#888888"
			set arrow from 100, graph 0 to 100, graph 1 nohead dt 2 lc rgb "#888888"
			set label "p50 target" at 20, 0.5 rotate by 90 offset -1,0 tc rgb "#666666"
			set label "p99 target" at 100, 0.5 rotate by 90 offset -1,0 tc rgb "#666666"
			plot "$tmp/start" using 1:2 with lines lw 2 title "process started (stamp)", \
			     "$tmp/running" using 1:2 with lines lw 2 title "Running (or done) seen by a watch", \
			     "$tmp/done" using 1:2 with lines lw 2 title "terminal phase seen by a watch"
		EOF
		plots+=(bench-latency.png)
	fi
	if [ -s "$RAW/runner.csv" ]; then
		grep -E '^(phase|latency),' "$RAW/runner.csv" >"$tmp/rl.csv"
		grep -E '^(phase|throughput),' "$RAW/runner.csv" >"$tmp/rt.csv"
		cdf '($7 > 0 ? $7 - $3 : 0)' "$tmp/rl.csv" >"$tmp/rstamp"
		cdf '($4 > 0 ? $4 - $3 : 0)' "$tmp/rl.csv" >"$tmp/rstarted"
		cdf '($7 > 0 ? $7 - $3 : 0)' "$tmp/rt.csv" >"$tmp/rload"
		gnuplot <<-EOF
			set terminal pngcairo size 900,520 font "DejaVu Sans,11"
			set output "$DEST/bench-runner.png"
			set title "One runner on its own: dispatch → task process"
			set xlabel "milliseconds since the dispatch frame was written (log scale)"
			set ylabel "fraction of dispatches"
			set logscale x
			set grid
			set key bottom right
			set yrange [0:1.05]
			set arrow from 2, graph 0 to 2, graph 1 nohead dt 2 lc rgb "#888888"
			set label "p99 target" at 2, 0.5 rotate by 90 offset -1,0 tc rgb "#666666"
			plot "$tmp/rstamp" using 1:2 with lines lw 2 title "task started (stamp), one at a time", \
			     "$tmp/rstarted" using 1:2 with lines lw 2 title "'started' received by the broker", \
			     "$tmp/rload" using 1:2 with lines lw 2 title "task started (stamp), all slots busy"
		EOF
		plots+=(bench-runner.png)
	fi
	if [ -s "$RAW/throughput.csv" ]; then
		# per 0.5 s bucket since the first create: creates sent, tasks seen terminal
		awk -F, 'NR > 1 && $2 > 0 { if (!t0 || $2 < t0) t0 = $2 } { r[NR] = $0 }
			END { for (i = 2; i <= NR; i++) { split(r[i], c, ",");
				if (c[2] > 0) cr[int((c[2] - t0) / 5e8)]++;
				if (c[6] > 0) dn[int((c[6] - t0) / 5e8)]++;
				b = int((c[6] - t0) / 5e8); if (b > max) max = b }
			  for (b = 0; b <= max; b++) printf "%.1f %d %d\n", b / 2, 2 * cr[b], 2 * dn[b] }' \
			"$RAW/throughput.csv" >"$tmp/tl"
		ceil=$(jq -r '.throughput.ceiling.perSecond // 0' "$J")
		gnuplot <<-EOF
			set terminal pngcairo size 900,520 font "DejaVu Sans,11"
			set output "$DEST/bench-throughput.png"
			set title "Throughput run: $(jq -r '.parameters | "\(.throughputCount) tasks, \(.runners) runners × \(.runnerConcurrency) slots"' "$J")"
			set xlabel "seconds since the first create"
			set ylabel "per second (0.5 s buckets)"
			set grid
			set key top right
			plot "$tmp/tl" using 1:2 with steps lw 2 title "Tasks created", \
			     "$tmp/tl" using 1:3 with steps lw 2 title "Tasks finished (seen by a watch)", \
			     $ceil with lines dt 2 lw 2 title "ceiling: create + 2 status writes"
		EOF
		plots+=(bench-throughput.png)
	fi
fi

# --- benchmarks.md ------------------------------------------------------------------------------------
# The side-by-side section on the real node (bench/report-node.sh, make bench-node) is kept.
node_section=""
if [ -f "$MD" ]; then
	node_section=$(awk '/^<!-- bench-node: generated/ { on = 1 } on { print } /^<!-- bench-node: end -->/ { on = 0 }' "$MD")
fi
q() { jq -r "$1" "$J"; }
fmt_row='.targets[] | "| \(.what) | \(if .value == null then "—" else "\(.value)\(if .gzip then " (\(.gzip))" else "" end) \(.unit)" end) | \(if .target == null then "—" else "\(.op | sub("<="; "≤") | sub(">="; "≥")) \(.target) \(.unit)" end) | \(if .met == null then "" elif .met then "yes" else "**no**" end) | \(.peer) |"'
{
	cat <<-EOF
		# Benchmarks

		Measured by \`make bench\` (\`bench/run.sh\`, about $(q '(.parameters.elapsedSeconds // 0) / 60 | floor') minutes here): a
		real etcd + kube-apiserver $(q '.machine.controlPlane // "?"' | sed 's/^kube-//; s/-etcd-/ with etcd /') on loopback, the controller and
		$(q '.parameters.runners') runners as local processes, load generators in C on the controller's own
		REST client (\`bench/\`). Nothing here is asserted by \`make test\`; the numbers are only as
		good as the machine was quiet.

		| machine | |
		|---|---|
		| date | $(q '.machine.date') |
		| CPU | $(q '.machine.cpu') × $(q '.machine.nproc') |
		| memory | $(q '.machine.memoryGiB') GiB |
		| kernel / OS | $(q '.machine.kernel') / $(q '.machine.os') |
		| load average at start / end | $(q '.machine.loadAverageAtStart') / $(q '.parameters.loadAverageAtEnd // "?"') (other work on the machine adds noise) |
		| build | Tasked $(q '.machine.version') at $(q '.machine.revision')$(q 'if .machine.uncommittedFiles > 0 then " + \(.machine.uncommittedFiles) uncommitted files" else "" end'), $(q '.machine.compiler') |
		| binaries measured | $(q 'if .binaries == "build/image-bin" then "`build/image-bin/`: what the images ship (every library but glibc linked statically)" else "`bin/` (Debian shared libraries)" end') |

		## Summary

		| what | measured | target | met | peer |
		|---|---|---|---|---|
	EOF
	q "$fmt_row"
	cat <<-EOF

		Everything, with the raw distributions, is in [benchmarks.json](benchmarks.json).

		## 1. Start latency

		$(q '.startLatency.count') Tasks created at a steady $(q '.parameters.latencyRate') per second (achieved $(q '.startLatency.rateAchieved // 0 | . * 10 | round / 10')/s)
		by 4 client threads, each running \`bench/stamp\`: a static program without a C library
		whose first system call reads \`CLOCK_REALTIME\`, printed in nanoseconds into
		\`status.logTail\` (no libc start-up runs before it; see \`bench/stamp.c\`). The
		generator notes the time just before it sends each create request (its own clock, same
		machine: \`creationTimestamp\` has only second precision), and a watch on the run's label notes
		when each task is first seen \`Running\` and when first seen terminal.

		| create → … (ms) | p50 | p95 | p99 | max |
		|---|---|---|---|---|
		$(q '.startLatency | [["process started (stamp)", .createToStartMs], ["`Running` (or already terminal) seen by a watch", .createToRunningSeenMs], ["terminal phase seen by a watch", .createToTerminalSeenMs], ["create request answered", .createRequestMs]] | .[] | "| \(.[0]) | \(.[1].p50) | \(.[1].p95) | \(.[1].p99) | \(.[1].max) |"')

		The controller writes \`Running\` only if the result has not arrived by the time its worker
		gets to it; otherwise the first status write is already the terminal one. Of these tasks
		$(q '.startLatency.runningSkipped') of $(q '.startLatency.created') ($(q '.startLatency | (.runningSkipped * 1000 / .created | round) / 10')%) went straight to the terminal phase, which is why
		"seen Running" counts the first of either. In the throughput run, with a backlog,
		$(q '.throughput.tasks | (.runningSkipped * 1000 / .created | round) / 10')% did.
	EOF
	if grep -qx bench-latency.png <<<"$(printf '%s\n' "${plots[@]:-}")"; then
		printf '\n![start latency CDF](bench-latency.png)\n'
	fi
	cat <<-EOF

		## 2. API writes per task

		\`apiserver_request_total\` from the API server's \`/metrics\` before the latency run and after
		it (once the Events queue had drained), by verb and resource, all response codes. The
		counter cannot tell clients apart, so writes are attributed by resource: the generator's are
		exactly the \`POST tasks\` (one per task), the controller's are the Task status and spec
		writes, TaskQueue status and Events; Leases come from the API server itself (the bench runs
		the controller without \`--leader-elect\`).

		| run | tasks | status writes | spec writes | TaskQueue writes | **per task** | Events | Events per task | other (not the controller) |
		|---|---|---|---|---|---|---|---|---|
		$(q '.apiWrites | to_entries[] | select(.value) | .value as $w | "| \(if .key == "latencyRun" then "latency (steady rate)" else "throughput (backlog)" end) | \($w.tasks) | \($w.statusWrites) | \($w.specWrites) | \($w.taskQueueWrites) | **\($w.perTask * 100 | round / 100)** | \($w.events) | \($w.eventsPerTask * 100 | round / 100) | \($w.leasesOther) lease writes |"')

		By verb and resource, latency run: $(q '.apiWrites.latencyRun.byVerbAndResource | to_entries | map("`\(.key)` \(.value)") | join(", ")').
		Throughput run: $(q '.apiWrites.throughputRun.byVerbAndResource | to_entries | map("`\(.key)` \(.value)") | join(", ")').
		$(q '.apiWrites.latencyRun as $w | if $w.controllerCounted then "Cross-check, the controller'"'"'s own count (`tasked_kube_requests_total`) over the same interval: \($w.controllerCounted | to_entries | map("\(.key) \(.value)") | join(", ")) — \(if ($w.controllerCounted.patch + $w.controllerCounted.update + $w.controllerCounted.delete) == ($w.statusWrites + $w.specWrites + $w.taskQueueWrites) and $w.controllerCounted.create == $w.events then "the same as the API server'"'"'s attribution above" else "not the same as the attribution above (another client wrote to these resources, or requests failed)" end)." else "" end')

		With a backlog (more tasks than the $(q '.parameters.runners * .parameters.runnerConcurrency') runner slots), tasks that find no free
		slot get a \`Queued\` status write (and a \`Queued\` Event) before they run, while most skip
		the \`Running\` write because their result is in before a worker gets to them.
		$(q '.apiWrites.throughputRun as $w | if $w and $w.events < $w.statusWrites then "In the throughput run there were fewer Events (\($w.events)) than status writes (\($w.statusWrites)): Events are best effort and the controller drops them when its queue (1,000) is full ([guarantees.md](guarantees.md))." else "" end')

		## 3. Throughput against the ceiling

		$(q '.throughput.tasks.count') trivial tasks (\`bench/stamp\`) created as fast as $(q '.parameters.clientThreads') client connections allow,
		run by $(q '.parameters.runners') runners with $(q '.parameters.runnerConcurrency') slots each; from the first create sent to the last task seen
		terminal by a watch: **$(q '.throughput.tasks.perSecond | . * 10 | round / 10') tasks/s** ($(q '.throughput.tasks.wallSeconds | . * 10 | round / 10') s).
		Right after, on the same API server, the ceiling client does what the API server must do per
		task without Tasked — create an object, then the two status merge-patches the controller
		writes (\`Running\`, then the terminal status copied from a real finished Task) — on
		\`benchdummies.bench.tasked.dev\`, a copy of the Task CRD (same schema) under another group, with
		two watches (the generator's and one standing in for the controller's informer), at
		$(q '.throughput.ceiling.runs // [] | map("\(.threads) connections: \(.perSecond * 10 | round / 10)/s") | join(", ")'); the best is the ceiling:
		**$(q '.throughput.ceiling.perSecond | . * 10 | round / 10') objects/s**. Ratio: **$(q '.throughput.ratio * 1000 | round / 10')%**.

		The ceiling does not include Events (Tasked creates one per transition), and Tasked often
		skips the \`Running\` write, so the two runs do not do identical work: see the writes table.
		CPU seconds over the throughput run, per 1,000 tasks: $(q '.throughput.cpuSecondsPer1000Tasks // {} | to_entries | map("\(.key) \(.value)") | join(", ")')
		— on $(q '.machine.nproc') cores, the API server's share is what bounds throughput here.
	EOF
	if grep -qx bench-throughput.png <<<"$(printf '%s\n' "${plots[@]:-}")"; then
		printf '\n![throughput timeline](bench-throughput.png)\n'
	fi
	cat <<-EOF

		## 4. Controller memory

		VmRSS from \`/proc\`. With 0 tasks, right after start: $(q '.controllerMemory.idle.controller // {} | if .rssKiB then "\(.rssKiB / 1024 * 10 | round / 10) MiB, of which \(.privateKiB / 1024 * 10 | round / 10) MiB private to the process (heap, stacks, relocated library data) and the rest shared library pages; PSS \(.pssKiB / 1024 * 10 | round / 10) MiB; \(.threads) threads. Largest resident mappings: \(.largestMappings | map("\(.mapping) \(.kib / 1024 * 10 | round / 10) MiB") | join(", "))" else "not measured" end').

		After the latency and throughput runs ($(q '.controllerMemory.afterLiveRun.tasks') tasks created and processed while it
		ran, all kept): $(q '.controllerMemory.afterLiveRun.rssKiB / 1024 | . * 10 | round / 10') MiB (peak $(q '.controllerMemory.afterLiveRun.peakRssKiB / 1024 | . * 10 | round / 10') MiB), $(q '.controllerMemory.bytesPerTaskLive // "?"') bytes per task above the
		0-task RSS. For N Tasks present, the controller is stopped, finished Tasks are
		written (a create and a status patch copied from a real finished Task) until N exist, and the
		controller is started again; the figure is its RSS once the initial list is done and RSS has
		been flat for 3 s. All these tasks are finished.

		| Tasks present | RSS (MiB) | peak RSS (MiB) | start → ready (s) | CPU s to settle |
		|---|---|---|---|---|
		| 0 | $(q '.controllerMemory.idle.controllerRssKiB / 1024 | . * 10 | round / 10') | | | |
		$(q '.controllerMemory.withTasks[]? | "| \(.tasks) | \(.rssKiB / 1024 * 10 | round / 10) | \(.peakRssKiB / 1024 * 10 | round / 10) | \(.startToReadySeconds) | \(.cpuSecondsToSettle) |"')

		$(q 'if .controllerMemory.bytesPerTask == null then "Not measured." else "Per task: \(.controllerMemory.bytesPerTask) bytes ((RSS(N) − RSS(0)) / N at the largest N)\(if .controllerMemory.bytesPerTaskSlope then "; \(.controllerMemory.bytesPerTaskSlope) bytes between the smallest and largest N" else "" end)." end')
		$(q '((.controllerMemory.withTasks // []) | map(.tasks) | max // 0) as $n | if $n > 0 and $n < 95000 then "The largest N measured is \($n)\(if ((.controllerMemory.withTasks // []) | map(select(.requested > .tasks)) | length) > 0 then ", fewer than asked, to stay within the \(.parameters.budgetSeconds) s time budget" else "" end); at the per-task rate above, 100,000 Tasks would take ≈ \(.controllerMemory.extrapolated100kMiB) MiB (extrapolated, linear)." else "" end')

		$(cat "$here/memory.md" 2>/dev/null)

		## 5. Runner

		\`build/bench/tasked-bench-runner\` plays the controller's broker (the protocol of
		[protocol.md](protocol.md), with the project's own codec) and drives one \`tasked-runner\`
		($(q '.runner.throughput.concurrency') slots, running as root, so tasks run as 65532) with no controller and no API server:

		- idle: $(q '.runner.idle.rssKiB / 1024 | . * 10 | round / 10') MiB RSS, connected and waiting, $(q '.runner.idle.threads') threads; $(q '.runner.idle.privateKiB // 0 | . / 1024 * 10 | round / 10') MiB of it
		  private to the process, the rest shared library pages (PSS $(q '.runner.idle.pssKiB // 0 | . / 1024 * 10 | round / 10') MiB). The runner started by the
		  cluster, connected to the real controller: $(q '.controllerMemory.idle.runnerRssKiB / 1024 | . * 10 | round / 10') MiB$(q '.controllerMemory.idle.runner // {} | if .largestMappings then "; largest resident mappings: \(.largestMappings | map("\(.mapping) \(.kib / 1024 * 10 | round / 10) MiB") | join(", "))" else "" end');
		- dispatch → exec, $(q '.runner.latency.count') dispatches one at a time ($(q '.runner.latency.gapMs') ms apart):

		| from the dispatch frame written to … (ms) | p50 | p95 | p99 | max |
		|---|---|---|---|---|
		$(q '.runner.latency | [["the task'"'"'s first system call (stamp)", .dispatchToStampMs], ["`started` received (exec succeeded)", .dispatchToStartedReceivedMs], ["`result` received", .dispatchToResultReceivedMs]] | .[] | "| \(.[0]) | \(.[1].p50) | \(.[1].p95) | \(.[1].p99) | \(.[1].max) |"')
		$(q '.runner.throughput | "| the task'"'"'s first system call, all \(.concurrency) slots busy | \(.dispatchToStampMs.p50) | \(.dispatchToStampMs.p95) | \(.dispatchToStampMs.p99) | \(.dispatchToStampMs.max) |"')

		  The stamp is the first system call of a static program without a C library, so this is
		  "dispatch received → execve" plus the loopback hop, the runner's WebSocket read and JSON
		  decode before it, and the kernel's exec work after it: an upper bound. (The runner logs
		  the dispatch only with millisecond timestamps and does not log the \`execve\`, so the
		  runner's own view cannot be used at this resolution.)
		- throughput: $(q '.runner.throughput.count') trivial tasks, all slots kept busy: **$(q '.runner.throughput.perSecond | round') tasks/s**, $(q '.runner.throughput.runnerCpuSecondsPer1000 | . * 100 | round / 100') CPU s
		  per 1,000 tasks in the runner (its children not counted), peak RSS $(q '.runner.peakRssKiB / 1024 | . * 10 | round / 10') MiB.
		- the host's own process start, measured by the same program in the same run ($(q '.runner.floor.count // 0') rounds, from a small single-threaded process): fork + exec + wait of \`/bin/true\` p50 $(q '.runner.floor.forkExecWaitTrueMs.p50 // "n/a"') ms (posix_spawn: $(q '.runner.floor.posixSpawnWaitTrueMs.p50 // "n/a"') ms), fork → the stamp's first instruction p50 $(q '.runner.floor.forkToStampMs.p50 // "n/a"') ms. Dispatch → exec above minus fork + exec + wait: $(q 'if .runner.floor.forkExecWaitTrueMs.p50 then (.runner.latency.dispatchToStampMs.p50 - .runner.floor.forkExecWaitTrueMs.p50) * 1000 | round / 1000 else "n/a" end') ms at p50. The spawn options compared side by side: \`bench/runner-spawn.sh\` (see "Spawn cost" below).
	EOF
	if grep -qx bench-runner.png <<<"$(printf '%s\n' "${plots[@]:-}")"; then
		printf '\n![runner dispatch latency CDF](bench-runner.png)\n'
	fi
	# The spawn options side by side (bench/runner-spawn.sh, a separate run): kept by hand.
	if [ -s "$(dirname "$0")/spawn-cost.md" ]; then
		printf '\n'
		cat "$(dirname "$0")/spawn-cost.md"
	fi
	cat <<-EOF

		## 6. Images

		Built by \`images/build.sh\` (FROM scratch: the stripped binary, the shared libraries \`ldd\`
		lists, the loader, the CA bundle). Size as \`docker image inspect\` reports it; gzip is what a
		registry would store.

		$(q 'if .images.runner then (.images | to_entries | map("- \(.key): \(.value.bytes / 1e6 * 10 | round / 10) MB (\(.value.gzipBytes / 1e6 * 10 | round / 10) MB gzip); largest files: \(.value.largestFiles | map("`\(.path)` \(.bytes / 1e6 * 10 | round / 10) MB") | join(", "))") | join("\n")) else "Not measured: \(.images.skipped // "no Docker")." end')

		## Peers

		From the project's reference notes on Kubernetes task operators: Tekton measured ≈ 4 s of
		pod overhead per Task (TEP-0142); the Kubernetes pod-startup SLO is p99 ≤ 5 s before image
		pulls and init containers; Argo Workflows reached 2,100 workflows/min with 5 controller shards
		at about 40 API writes per single-pod workflow (CNOE benchmark, derived); Tekton's controller
		takes 20–50 MiB at small scale and Kueue's about 100 MiB; n8n's task runner is a Node.js
		process and its runners image weighs hundreds of MB.

		## Running it

		\`make bench\` builds what it needs, starts its own cluster in \`build/bench/state\`, and
		always stops it. Raw results (CSV per task, JSON per step, logs) stay in \`build/bench/out\`;
		\`bench/report.sh build/bench/out docs\` re-renders this page from them. Knobs (environment):
		\`BENCH_LATENCY_COUNT\`, \`BENCH_LATENCY_RATE\`, \`BENCH_THROUGHPUT_COUNT\`, \`BENCH_CEILING_COUNT\`,
		\`BENCH_RUNNERS\`, \`BENCH_RUNNER_CONCURRENCY\`, \`BENCH_MEMORY_COUNTS\`, \`BENCH_THREADS\`,
		\`BENCH_SKIP_IMAGES=1\`, \`BENCH_NO_DOCS=1\` (see the top of \`bench/run.sh\`).
		\`BENCH_QUICK=1\` runs every step with a few dozen tasks (a check of the script, not a
		measurement). Every process the bench starts is recorded by pid and start time
		(\`build/bench/out/pids.txt\`); after the teardown any still running is named, stopped, and
		fails the run. With a node (the default; \`TASKED_NODE=0\` skips it) \`make bench\` then runs
		\`make bench-node\`: the side-by-side section below, from its own run.
	EOF
	if [ -n "$node_section" ]; then
		echo
		printf '%s\n' "$node_section"
	fi
} >"$MD"
echo "report: $MD, $J${plots[*]:+, }${plots[*]/#/$DEST/}"
