#!/usr/bin/env bash
# RunnerPools on a real node: the runner injected into images it was not built for (a Debian
# image from Debian's packages with python3; FROM scratch with only a static busybox), hardened
# like the sidecars, resolving the broker Service by name; 0 -> N runners under a burst and back
# to minRunners after the delay with no task lost or killed; a runner pod deleted mid-task gives
# RunnerLost and a retry on another runner.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/lib-node.sh"
test_namespace pools

imgs=$("$IT_ROOT/tests/cluster/pool-images.sh")
ok "the pool test images are built ($imgs)" test -n "$imgs"
# shellcheck disable=SC2086 # two image names
"$IT_ROOT/tests/cluster/node.sh" import "$STATE" $imgs >/dev/null
pass "... and imported into the node"

# The task's TaskQueue decides which images its pools may run (the container executor's policy):
# the namespace's default queue allows exactly the two test images.
k apply -f - >/dev/null <<'YAML'
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: default}
spec:
  policy:
    container: {imageAllowlist: ["tasked-pool-busybox:test", "tasked-pool-debian:test"]}
YAML

pool() { # NAME IMAGE LABEL MIN MAX DELAY
	k apply -f - >/dev/null <<YAML
apiVersion: tasked.dev/v1alpha1
kind: RunnerPool
metadata: {name: $1}
spec: {image: "$2", labels: {pool: $3}, slotsPerRunner: 1, minRunners: $4, maxRunners: $5,
       scaleDownDelaySeconds: $6, resources: {requests: {cpu: 10m, memory: 32Mi}, limits: {memory: 256Mi}}}
YAML
}
task() { # NAME POOL COMMAND (YAML flow list) [EXTRA]
	k apply -f - >/dev/null <<YAML
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: $1}
spec: {runnerPool: $2, shell: {command: $3}${4:+, $4}}
YAML
}
replicas() { k get deployment "$1-pool" -o jsonpath='{.spec.replicas}' 2>/dev/null; }
ready_runners() { k get runnerpool "$1" -o jsonpath='{.status.readyRunners}' 2>/dev/null; }

# --- busybox: FROM scratch, a static busybox alone, minRunners 1 ---------------------------------
pool bb tasked-pool-busybox:test bb 1 2 5
ok "the busybox pool's runner pod becomes Ready" wait_for 120 sh -c \
	"kubectl --kubeconfig '$KUBECONFIG' -n $TEST_NS get pods -l tasked.dev/runner-pool=bb -o jsonpath='{.items[*].status.containerStatuses[*].ready}' | grep -q true"
ok "its runner connects to the broker Service by name (readyRunners 1)" wait_for 60 sh -c \
	"[ \"\$(kubectl --kubeconfig '$KUBECONFIG' -n $TEST_NS get runnerpool bb -o jsonpath='{.status.readyRunners}')\" = 1 ]"
pod=$(k get pods -l tasked.dev/runner-pool=bb -o jsonpath='{.items[0].metadata.name}')
like "$(k get pod "$pod" -o jsonpath='{.spec.containers[0].args}')" "ws://$FULLNAME-broker\\.$NAMESPACE\\.svc:" \
	"the runner is given the broker Service's name"
task bb1 bb "[/bin/busybox, sh, -c, 'echo hello from busybox; /bin/busybox id -u; /bin/busybox ls /etc/passwd 2>&1; true']"
ok_phase bb1 Succeeded 60
like "$(task_field bb1 .status.logTail)" 'hello from busybox' "a task runs in the busybox image"
like "$(task_field bb1 .status.logTail)" $'\n65532\n' "... as 65532 (no /etc/passwd entry needed)"
like "$(task_field bb1 .status.logTail)" 'No such file' "... in an image that has no /etc/passwd at all"
line=$("$IT_ROOT/tests/cluster/node.sh" procs "$STATE" "$TEST_NS" | awk -v p="$pod" '$2 == p && $3 == "runner"')
like "$line" " 65532 65532 0000000000000000 1 2 ro$" "the pool runner: 65532:65532, CapEff 0, NoNewPrivs 1, Seccomp 2, / read-only"
sc=$(k get pod "$pod" -o json)
is "$(jq -r '.spec.automountServiceAccountToken' <<<"$sc")" false "no service account token in the pool pod"
is "$(jq -r '[.spec.containers[0].volumeMounts[] | select(.mountPath == "/var/run/secrets/kubernetes.io/serviceaccount")] | length' <<<"$sc")" 0 \
	"... nor mounted"

# --- Debian (debootstrap minbase + python3), minRunners 0 -----------------------------------------
pool deb tasked-pool-debian:test deb 0 3 10
ok "the Debian pool starts at 0 replicas" wait_for 30 sh -c "[ \"\$(kubectl --kubeconfig '$KUBECONFIG' -n $TEST_NS get deployment deb-pool -o jsonpath='{.spec.replicas}')\" = 0 ]"
# ms_until_done T0 NAME: milliseconds from T0 (date +%s%3N) until Task NAME has finished, polled
# every 0.1 s for at most 180 s.
ms_until_done() {
	local t0=$1 name=$2 phase
	while [ $(($(date +%s%3N) - t0)) -lt 180000 ]; do
		phase=$(task_field "$name" .status.phase)
		case "$phase" in Succeeded | Failed) break ;; esac
		sleep 0.1
	done
	echo $(($(date +%s%3N) - t0))
}
t0=$(date +%s%3N)
task py1 deb "[python3, -c, 'import os, platform; print(\"python\", platform.python_version(), os.getuid())']"
ok "a task for the empty pool waits Queued, saying the pool is starting" wait_for 30 sh -c \
	"kubectl --kubeconfig '$KUBECONFIG' -n $TEST_NS get task py1 -o jsonpath='{.status.message}' | grep -q 'RunnerPool deb is starting'"
cold=$(ms_until_done "$t0" py1)
ok_phase py1 Succeeded 180
like "$(task_field py1 .status.logTail)" 'python 3\.[0-9]+\.[0-9]+ 65532' "python3 runs in the Debian pool, as 65532"
is "$(task_field py1 .status.attempts)" 1 "... on its first attempt"
diag "cold start, pool at 0: Task created -> runner pod started -> python3 done: ${cold:-?} ms"
t0=$(date +%s%3N)
task py-warm deb "[python3, -c, 'print(1)']"
diag "warm start, runner connected: Task created -> python3 done: $(ms_until_done "$t0" py-warm) ms"
ok_phase py-warm Succeeded 30

# --- a burst: 0 -> N runners, then back to minRunners with nothing lost or killed -----------------
for i in 1 2 3; do task "burst$i" deb "[python3, -c, 'import time; time.sleep(12); print(\"done\")']"; done
ok "the burst scales the pool to 3 runners" wait_for 60 sh -c "[ \"\$(kubectl --kubeconfig '$KUBECONFIG' -n $TEST_NS get deployment deb-pool -o jsonpath='{.spec.replicas}')\" = 3 ]"
for i in 1 2 3; do ok_phase "burst$i" Succeeded 240; done
for i in 1 2 3; do is "$(task_field "burst$i" .status.attempts)" 1 "burst$i ran once (nothing killed or lost)"; done
ok "after scaleDownDelaySeconds with no work the pool goes back to minRunners (0)" wait_for 120 sh -c \
	"[ \"\$(kubectl --kubeconfig '$KUBECONFIG' -n $TEST_NS get deployment deb-pool -o jsonpath='{.spec.replicas}')\" = 0 ]"
ok "... and its pods go" wait_for 120 sh -c \
	"[ -z \"\$(kubectl --kubeconfig '$KUBECONFIG' -n $TEST_NS get pods -l tasked.dev/runner-pool=deb -o name)\" ]"

# --- a runner pod deleted mid-task: RunnerLost and a retry on another runner ----------------------
task lost bb "[/bin/busybox, sh, -c, 'sleep 20; echo finished']" "retries: {limit: 1}"
ok_phase lost Running 60
first=$(task_field lost .status.runner)
diag "deleting pool pod $first"
k delete pod "$first" --grace-period=1 --wait=false >/dev/null
ok_phase lost Succeeded 240
second=$(task_field lost .status.runner)
ok "it finished on another runner ($first -> $second)" test -n "$second" -a "$second" != "$first"
is "$(k get task lost -o json | jq -r '[.status.attemptHistory[].reason] | join(",")')" "RunnerLost,Succeeded" \
	"attemptHistory shows RunnerLost, then Succeeded"

done_testing
