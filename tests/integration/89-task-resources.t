#!/usr/bin/env bash
# Task resources and per-task isolation, end to end with build/tools/probe as the task:
#  - resources.memory: a task allocating past it fails with a reason naming the limit
#    (OOMKilled from the task's memory cgroup where the runner has one, as here; ENOMEM from
#    RLIMIT_DATA otherwise);
#  - resources.cpu: a CPU-burning task is killed at cpu × timeout CPU seconds (CPULimitExceeded);
#  - a TaskQueue's policy.maxResources: a task over it fails PolicyDenied naming the limit, and
#    built-in defaults above it are lowered to it;
#  - defaults (the queue's, the built-in ones) as the task observes them;
#  - the CRD bounds quantities;
#  - /dev/shm, /tmp and System V IPC: what a task leaves is not visible to a concurrent task nor
#    to the runner's host while it runs (private namespaces), and gone after it ends;
#  - the same under a runner as uid 65532 without capabilities (a restricted pod's runner: no
#    namespaces, no writable cgroup): RLIMIT_DATA, TMPDIR in the work dir, and what tasks left
#    removed once the runner is idle.
. "$(dirname "$0")/lib.sh"
test_namespace resources

STATE=${TASKED_STATE_DIR:-.tasked}
case "$STATE" in /*) ;; *) STATE=$IT_ROOT/$STATE ;; esac
. "$STATE/tasked-ports.env"
TMPD=$(mktemp -d /tmp/tasked-it-resources-XXXXXX)
chmod 0755 "$TMPD"
NR_PID=
cleanup() {
	[ -n "$NR_PID" ] && kill -9 "$NR_PID" 2>/dev/null
	rm -rf "$TMPD"
	_cleanup_namespace
}
trap cleanup EXIT

PROBE=$IT_ROOT/build/tools/probe
[ -x "$PROBE" ] || { echo "Bail out! $PROBE missing (make build/tools/probe)"; exit 255; }
NAME=it89-$(openssl rand -hex 3)   # SysV key and file names of this run

# task NAME QUEUE-OR-EMPTY RESOURCES-YAML-OR-EMPTY TIMEOUT-OR-EMPTY ARGS...: a probe task
# (on the runner of pool $POOL, default the suite's).
POOL=default
task() {
	local name=$1 queue=$2 res=$3 to=$4 args='' a
	shift 4
	for a in "$@"; do args="$args, \"$a\""; done
	k apply -f - >/dev/null <<EOF
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: $name}
spec:
${queue:+  queue: $queue}
${res:+  resources: $res}
${to:+  timeoutSeconds: $to}
  runnerSelector: {pool: $POOL}
  shell: {command: ["$PROBE"$args]}
EOF
}
output() { k get task "$1" -o json | jq -cS '.status.output'; }
reason() { task_field "$1" .status.reason; }
message() { task_field "$1" .status.message; }

# --- the CRD bounds quantities; the controller checks the exact range -------------------------
nok "the API server refuses resources.memory that is not a quantity" task bad-qty '' '{memory: lots}' ''
like "$NOK_OUTPUT" 'spec.resources.memory' "… naming the field"
nok "… and one of more than about 10 TB (99999Gi)" task big-qty '' '{memory: 99999Gi}' ''
nok "… and an integer cpu above 1000" task big-cpu '' '{cpu: 5000}' ''
ok "an integer cpu is a quantity too" task int-cpu '' '{cpu: 2, memory: 64Mi}' '' limits
ok_phase int-cpu Succeeded 60
task over-ceiling '' '{memory: 2Ti}' '' limits
ok_phase over-ceiling Failed 60
is "$(reason over-ceiling): $(message over-ceiling)" \
	"PolicyDenied: spec.resources.memory exceeds the maximum 1Ti a task may have" \
	"2Ti passes the schema; the controller's ceiling is 1Ti (PolicyDenied)"
task zero-cpu '' '{cpu: "0"}' '' limits
ok_phase zero-cpu Failed 60
is "$(reason zero-cpu): $(message zero-cpu)" "InvalidSpec: spec.resources.cpu must be at least 1m" \
	"cpu 0: InvalidSpec"

# --- memory ------------------------------------------------------------------------------------
task mem-over '' '{memory: 64Mi}' '' alloc 512
ok_phase mem-over Failed 90
case "$(reason mem-over)" in
OOMKilled)
	like "$(message mem-over)" 'memory limit 64Mi \(resources.memory\) reached: the kernel.s OOM killer' \
		"allocating 512 MiB under 64Mi: OOMKilled, the message names the limit"
	is "$(task_field mem-over .status.exitCode)" 137 "… and the exit code is SIGKILL's"
	;;
*)
	is "$(reason mem-over)" ExitCode "without a memory cgroup the allocation fails (RLIMIT_DATA)"
	like "$(task_field mem-over .status.logTail)" 'allocation failed after [0-9]+ MiB: Cannot allocate memory' \
		"… and the task says so"
	;;
esac
task mem-under '' '{memory: 64Mi}' '' alloc 16
ok_phase mem-under Succeeded 60

# --- CPU -----------------------------------------------------------------------------------------
# 100m over 20 s: 2 CPU seconds, reached long before the deadline even on a busy machine.
task cpu-burn '' '{cpu: 100m}' 20 burn
ok_phase cpu-burn Failed 90
is "$(reason cpu-burn)" CPULimitExceeded "a CPU-burning task is killed at its CPU limit"
like "$(message cpu-burn)" 'CPU time limit reached: 2 CPU seconds' "… after 2 CPU seconds (100m × 20 s)"
# Three burning processes: with a cpuacct cgroup (this suite's runner is root on a cgroup v1
# host) the 2 seconds count all of them; with rlimits alone each may use 2.
task cpu-tree '' '{cpu: 100m}' 20 burn 3
ok_phase cpu-tree Failed 90
if grep -q 'each task gets a cpuacct cgroup' "$STATE/runner.log"; then
	like "$(reason cpu-tree): $(message cpu-tree)" \
		'^CPULimitExceeded: CPU time limit reached: 2 CPU seconds .* used by the task.s processes together' \
		"three burning processes are stopped when they used 2 CPU seconds together (cpuacct cgroup)"
else
	like "$(reason cpu-tree): $(message cpu-tree)" \
		'^CPULimitExceeded: CPU time limit reached: 2 CPU seconds .* used by one process' \
		"three burning processes: the first to use 2 CPU seconds is stopped (RLIMIT_CPU, no cgroup)"
fi

# --- queue maximum and defaults ------------------------------------------------------------------
k apply -f - >/dev/null <<EOF
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: small}
spec:
  defaults: {timeoutSeconds: 40, resources: {memory: 96Mi, cpu: 250m}}
  policy: {maxResources: {memory: 128Mi, cpu: 500m}}
---
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: capped}
spec:
  defaults: {timeoutSeconds: 10}
  policy: {maxResources: {memory: 200Mi, cpu: 300m}}
EOF
task too-big small '{memory: 1Gi}' '' limits
ok_phase too-big Failed 60
is "$(reason too-big)" PolicyDenied "a task over the queue's maximum fails PolicyDenied"
is "$(message too-big)" \
	"spec.resources.memory 1Gi exceeds the maximum 128Mi of TaskQueue small (policy.maxResources.memory)" \
	"… and the message names the field, both values and the limit"
task too-fast small '{cpu: "2"}' '' limits
ok_phase too-fast Failed 60
like "$(reason too-fast): $(message too-fast)" '^PolicyDenied: spec.resources.cpu 2 exceeds the maximum 500m' \
	"cpu over the maximum too"

# limits as the task sees them: memory from its cgroup, else RLIMIT_DATA
mem_of() { printf '%s' "$1" | jq -r 'if .cgroupMemoryBytes > 0 and .cgroupMemoryBytes < 1099511627776 then .cgroupMemoryBytes else .dataBytes end'; }
task q-defaults small '' '' limits
ok_phase q-defaults Succeeded 60
out=$(output q-defaults)
is "$(mem_of "$out")" $((96 << 20)) "the queue's default memory (96Mi) applies"
is "$(printf '%s' "$out" | jq -r .cpuSeconds)" 10 "the queue's default cpu over its default timeout: 250m × 40 s = 10 CPU seconds"
is "$(printf '%s' "$out" | jq -r .devShmBytes)" $((96 << 20)) "/dev/shm is a private tmpfs of the memory limit's size"
task own-values small '{memory: 100Mi, cpu: 500m}' 8 limits
ok_phase own-values Succeeded 60
out=$(output own-values)
is "$(mem_of "$out")/$(printf '%s' "$out" | jq -r .cpuSeconds)" "$((100 << 20))/4" \
	"the task's own values win (100Mi; 500m × 8 s = 4 CPU seconds)"
task builtin '' '' 30 limits
ok_phase builtin Succeeded 60
out=$(output builtin)
is "$(mem_of "$out")/$(printf '%s' "$out" | jq -r .cpuSeconds)" "$((1 << 30))/30" \
	"without a queue: the built-in 1Gi and 1 CPU (× 30 s)"
task lowered capped '' '' limits
ok_phase lowered Succeeded 60
out=$(output lowered)
is "$(mem_of "$out")/$(printf '%s' "$out" | jq -r .cpuSeconds)" "$((200 << 20))/3" \
	"built-in defaults above the queue's maximum are lowered to it (200Mi; 300m × 10 s)"

# --- /dev/shm, /tmp, System V IPC ------------------------------------------------------------------
host_look() { "$PROBE" look "$NAME" 2>/dev/null | tail -1 | jq -cS .; }
NONE=$(jq -cSn '{shm: "ENOENT", sem: "ENOENT", msg: "ENOENT", devshm: "ENOENT", tmp: "ENOENT"}')
is "$(host_look)" "$NONE" "before: nothing of $NAME exists"
task leaver '' '' '' leave "$NAME" 8
wait_for 60 test "$(task_field leaver .status.phase)" = Running
sleep 1
task looker '' '' '' look "$NAME"
ok_phase looker Succeeded 60
is "$(output looker)" "$NONE" "a concurrent task sees none of its SysV shm, semaphores, message queues, /dev/shm or /tmp files"
is "$(host_look)" "$NONE" "… nor does the runner's host while it runs"
is "$(task_field leaver .status.phase)" Running "(the leaving task was still running then)"
ok_phase leaver Succeeded 60
out=$(output leaver)
ok "the leaving task made all five" test "$(printf '%s' "$out" | jq -r '.files')" = 2 -a \
	"$(printf '%s' "$out" | jq -r '.shmid >= 0 and .semid >= 0 and .msgid >= 0')" = true
is "$(host_look)" "$NONE" "after it ended nothing of it is left"
task looker2 '' '' '' look "$NAME"
ok_phase looker2 Succeeded 60
is "$(output looker2)" "$NONE" "… and the next task finds nothing either"

# --- a runner without namespaces or a writable cgroup ----------------------------------------------
install -d -o 65532 -g 65532 -m 0700 "$TMPD/nr" "$TMPD/nr/wd"
install -o 65532 -g 65532 -m 0600 "$STATE/runner-token" "$TMPD/nr/token"
setsid setpriv --reuid=65532 --regid=65532 --clear-groups --inh-caps=-all -- \
	"$IT_ROOT/bin/tasked-runner" --id it89-restricted --controller "ws://127.0.0.1:$BROKER_PORT" \
	--token-file "$TMPD/nr/token" --work-dir "$TMPD/nr/wd" --labels pool=it89-restricted --concurrency 2 \
	>"$STATE/runner-it89.log" 2>&1 </dev/null &
NR_PID=$!
disown "$NR_PID" 2>/dev/null
wait_for 20 grep -q '"runner connected","runner":"it89-restricted"' "$STATE/controller.log"
ok "a runner as 65532 without capabilities connected" grep -q '"runner connected","runner":"it89-restricted"' "$STATE/controller.log"
like "$(grep 'no mount/IPC namespaces' "$STATE/runner-it89.log")" '"cleanup":"on"' \
	"it has no namespaces for tasks, and cleans up after them (its tasks run as 65532)"
ok "… and no writable memory cgroup" grep -q 'no writable memory cgroup' "$STATE/runner-it89.log"
ok "… nor cpuacct cgroup" grep -q 'no writable cpuacct cgroup' "$STATE/runner-it89.log"
POOL=it89-restricted
task r-limits '' '{memory: 80Mi}' 6 limits
ok_phase r-limits Succeeded 60
out=$(output r-limits)
is "$(printf '%s' "$out" | jq -r '.dataBytes')/$(printf '%s' "$out" | jq -r '.cpuSeconds')" "$((80 << 20))/6" \
	"RLIMIT_DATA 80Mi and RLIMIT_CPU 6 (1 CPU × 6 s)"
like "$(printf '%s' "$out" | jq -r .tmpdir)" '^'"$TMPD"'/nr/wd/tasked-runner-[^/]+/tasked-[^/]+/\.tmp$' \
	"TMPDIR is the task's own directory"
task r-mem '' '{memory: 64Mi}' '' alloc 512
ok_phase r-mem Failed 60
is "$(reason r-mem)/$(task_field r-mem .status.exitCode)" ExitCode/3 "allocating past RLIMIT_DATA fails the task"
like "$(task_field r-mem .status.logTail)" 'allocation failed after [0-9]+ MiB: Cannot allocate memory' \
	"… with ENOMEM, as the task reports"
NAME2=$NAME-r
task r-leaver '' '' '' leave "$NAME2" 6
wait_for 60 test "$(task_field r-leaver .status.phase)" = Running
sleep 1
task r-looker '' '' '' look "$NAME2"
ok_phase r-looker Succeeded 60
is "$(output r-looker | jq -r '[.shm, .sem, .msg, .devshm, .tmp] | join(",")')" found,found,found,found,found \
	"without namespaces a concurrent task does see them (documented)"
ok_phase r-leaver Succeeded 60
r_gone() { [ "$("$PROBE" look "$NAME2" 2>/dev/null | tail -1 | jq -cS .)" = "$NONE" ]; }
wait_for 20 r_gone
is "$("$PROBE" look "$NAME2" 2>/dev/null | tail -1 | jq -cS .)" "$NONE" \
	"once the runner is idle, its SysV objects and /dev/shm and /tmp files are gone"

done_testing
