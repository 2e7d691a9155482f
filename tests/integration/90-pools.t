#!/usr/bin/env bash
# RunnerPools against the host-process cluster (no kubelet: the pool's Deployment is created and
# scaled, but its pods never run; this suite plays the pool's runners as host processes holding
# the pool's token from its Secret). Shows: the Secret and the owned Deployment, routing by
# spec.runnerPool and by pool labels, "pool is starting" while it has no runner, scale-up under
# queued work, isolation (the global runners never get a pool's task, a pool runner never gets
# another pool's or a non-pool task), and the drained scale-down back to minRunners.
. "$(dirname "$0")/lib.sh"
test_namespace pools

STATE=${TASKED_STATE_DIR:-.tasked}
case "$STATE" in /*) ;; *) STATE=$IT_ROOT/$STATE ;; esac
. "$STATE/tasked-ports.env"
RUN=$IT_ROOT/bin/tasked-runner
PROBE=$IT_ROOT/build/tools/wsprobe
TMPD=$(mktemp -d /tmp/tasked-it-pools-XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
	rm -rf "$TMPD"
	_cleanup_namespace
}
trap cleanup EXIT

pool() { # NAME LABEL MIN MAX DELAY
	k apply -f - >/dev/null <<YAML
apiVersion: tasked.dev/v1alpha1
kind: RunnerPool
metadata: {name: $1}
spec: {image: "debian-python:test", labels: {pool: $2}, slotsPerRunner: 1, minRunners: $3,
       maxRunners: $4, scaleDownDelaySeconds: $5}
YAML
}
task() { # NAME SPEC-EXTRA (YAML flow fields) [COMMAND (YAML flow list)]
	k apply -f - >/dev/null <<YAML
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: $1}
spec: {shell: {command: ${3:-[sh, -c, "echo hi"]}}, $2}
YAML
}
replicas() { k get deployment "$1-pool" -o jsonpath='{.spec.replicas}' 2>/dev/null; }
token_of() { # POOL: the token from the pool's Secret
	local s
	s=$(k get secret -l "tasked.dev/runner-pool=$1" -o jsonpath='{.items[0].metadata.name}')
	k get secret "$s" -o jsonpath='{.data.token}' | base64 -d
}
# pool_runner ID POOL-FOR-TOKEN LABEL: a host runner with that pool's token.
pool_runner() {
	token_of "$2" >"$TMPD/$2.token"
	chmod 600 "$TMPD/$2.token"
	setsid "$RUN" --controller "ws://127.0.0.1:$BROKER_PORT" --id "$1" --token-file "$TMPD/$2.token" \
		--labels "pool=$3" --concurrency 1 --work-dir "$TMPD" >"$STATE/runner-$1.log" 2>&1 </dev/null &
	RUNNER_PID=$!
	disown "$RUNNER_PID" 2>/dev/null
	PIDS+=("$RUNNER_PID")
}
connected() { grep -q "\"runner connected\",\"runner\":\"$1\"" "$STATE/controller.log"; }

# --- objects ---------------------------------------------------------------------------------
k apply -f - >/dev/null 2>"$TMPD/err" <<'YAML'
apiVersion: tasked.dev/v1alpha1
kind: RunnerPool
metadata: {name: bad}
spec: {image: x, minRunners: 5, maxRunners: 2}
YAML
like "$(cat "$TMPD/err")" 'maxRunners must be at least minRunners' "the schema refuses max < min"

pool py py 0 3 3
wait_for 30 sh -c "[ -n \"\$(kubectl --kubeconfig '$KUBECONFIG' -n $TEST_NS get deployment py-pool -o name 2>/dev/null)\" ]"
ok "the pool's Deployment is created" test -n "$(k get deployment py-pool -o name 2>/dev/null)"
is "$(k get deployment py-pool -o jsonpath='{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}')" \
	RunnerPool/py "owned by the pool"
is "$(replicas py)" 0 "minRunners 0 and no work: 0 replicas"
tpl=$(k get deployment py-pool -o json)
is "$(jq -r '.spec.template.spec.containers[0].image' <<<"$tpl")" debian-python:test "runner container: the user's image"
is "$(jq -r '.spec.template.spec.initContainers[0].command[0]' <<<"$tpl")" /usr/local/bin/tasked-install \
	"init container installs the bundle"
is "$(jq -r '.spec.template.spec.automountServiceAccountToken' <<<"$tpl")" false "no service account token"
is "$(jq -r '.spec.template.spec.containers[0].securityContext | [.runAsUser, .readOnlyRootFilesystem, .allowPrivilegeEscalation, .capabilities.drop[0], .seccompProfile.type] | join(",")' <<<"$tpl")" \
	"65532,true,false,ALL,RuntimeDefault" "hardened like the sidecars"
ok "the pool's token Secret exists" test -n "$(token_of py)"
is "$(k get secret -l tasked.dev/runner-pool=py -o jsonpath='{.items[0].metadata.ownerReferences[0].name}')" py \
	"the Secret is owned by the pool"
wait_for 20 sh -c "[ \"\$(kubectl --kubeconfig '$KUBECONFIG' -n $TEST_NS get runnerpool py -o jsonpath='{.status.selector}')\" != '' ]"
like "$(k get runnerpool py -o jsonpath='{.status.selector}')" 'tasked.dev/runner-pool=py' "status.selector (scale subresource)"

# --- the container policy of the task's TaskQueue applies to the pool -----------------------------
task t-noqueue "runnerPool: py"
ok_phase t-noqueue Failed 30
is "$(task_field t-noqueue .status.reason)" PolicyDenied "no TaskQueue: the built-in policy allows no pool image (PolicyDenied)"
like "$(task_field t-noqueue .status.message)" "RunnerPool py's image debian-python:test is not allowed: without a TaskQueue" \
	"... saying why"
# The namespace's default queue allows the pools' image (exactly this reference).
k apply -f - >/dev/null <<'YAML'
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: default}
spec:
  policy:
    container: {imageAllowlist: ["debian-python:test"]}
YAML
wait_for 20 sh -c "[ -n \"\$(kubectl --kubeconfig '$KUBECONFIG' -n $TEST_NS get taskqueue default -o jsonpath='{.status.observedGeneration}')\" ]"

# A TaskQueue whose runnerSelector reaches the pool: its RunnersAvailable is the pool's answer
# (no global runner ever serves those tasks), here: scaled to zero, starts on demand.
k apply -f - >/dev/null <<'YAML'
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: to-py}
spec: {runnerSelector: {pool: py}}
YAML
qcond() { k get taskqueue "$1" -o jsonpath='{.status.conditions[?(@.type=="RunnersAvailable")].status}/{.status.conditions[?(@.type=="RunnersAvailable")].reason}: {.status.conditions[?(@.type=="RunnersAvailable")].message}'; }
ok "a queue whose runnerSelector reaches a pool at zero: RunnersAvailable True (RunnerPool)" wait_for 30 sh -c \
	"kubectl --kubeconfig '$KUBECONFIG' -n $TEST_NS get taskqueue to-py -o jsonpath='{.status.conditions[?(@.type==\"RunnersAvailable\")].reason}' | grep -qx RunnerPool"
like "$(qcond to-py)" '^True/RunnerPool: runnerSelector reaches RunnerPool py: no runner connected now; the pool starts runners for queued tasks' \
	"... saying the pool starts on demand"

# --- a task for an empty pool: Queued, pool starting; scale-up -----------------------------------
task t1 "runnerPool: py"
wait_for 20 sh -c "[ \"\$(kubectl --kubeconfig '$KUBECONFIG' -n $TEST_NS get task t1 -o jsonpath='{.status.phase}')\" = Queued ]"
like "$(task_field t1 .status.message)" 'RunnerPool py is starting' "Queued with a reason saying the pool is starting"
wait_for 20 sh -c "[ \"\$(kubectl --kubeconfig '$KUBECONFIG' -n $TEST_NS get deployment py-pool -o jsonpath='{.spec.replicas}')\" = 1 ]"
is "$(replicas py)" 1 "queued work scales the pool 0 -> 1 at once"
sleep 2
is "$(task_field t1 .status.phase)" Queued "the global runner (free) did not take the pool's task"

# a selector that matches no pool and no runner
task t-none "runnerSelector: {pool: nowhere}"
wait_for 20 sh -c "[ \"\$(kubectl --kubeconfig '$KUBECONFIG' -n $TEST_NS get task t-none -o jsonpath='{.status.phase}')\" = Queued ]"
like "$(task_field t-none .status.message)" 'no RunnerPool in the namespace has labels matching runnerSelector' \
	"no pool and no runner: Queued with a clear reason"
task t-missing "runnerPool: nosuch"
wait_for 20 sh -c "[ \"\$(kubectl --kubeconfig '$KUBECONFIG' -n $TEST_NS get task t-missing -o jsonpath='{.status.phase}')\" = Queued ]"
like "$(task_field t-missing .status.message)" 'RunnerPool nosuch does not exist' "a missing pool is named"

# --- another pool's runner cannot take it --------------------------------------------------------
pool other other 0 2 3
wait_for 30 sh -c "[ -n \"\$(kubectl --kubeconfig '$KUBECONFIG' -n $TEST_NS get secret -l tasked.dev/runner-pool=other -o name 2>/dev/null)\" ]"
pool_runner other-pool-intruder other py
wait_for 20 connected other-pool-intruder
ok "a runner with pool other's token connects (labels claim pool=py)" connected other-pool-intruder
sleep 3
is "$(task_field t1 .status.phase)" Queued "it does not get pool py's task"

# --- the pool's runner takes it ----------------------------------------------------------------
pool_runner py-pool-r1 py py
ok_phase t1 Succeeded 30
is "$(task_field t1 .status.runner)" py-pool-r1 "pool py's task ran on pool py's runner"
task t2 "runnerSelector: {pool: py}"
ok_phase t2 Succeeded 30
is "$(task_field t2 .status.runner)" py-pool-r1 "a runnerSelector matching the pool's labels reaches the pool"
task t-plain "priority: 0"
ok_phase t-plain Succeeded 30
ok "a task for no pool runs on the global runners, never on a pool's" \
	test "$(task_field t-plain .status.runner)" != py-pool-r1 -a "$(task_field t-plain .status.runner)" != other-pool-intruder
wait_for 20 sh -c "[ \"\$(kubectl --kubeconfig '$KUBECONFIG' -n $TEST_NS get runnerpool py -o jsonpath='{.status.readyRunners}')\" = 1 ]"
is "$(k get runnerpool py -o jsonpath='{.status.readyRunners}')" 1 "status.readyRunners counts the pool's connected runner"
ok "the queue reaching pool py counts the pool's runner" wait_for 20 sh -c \
	"kubectl --kubeconfig '$KUBECONFIG' -n $TEST_NS get taskqueue to-py -o jsonpath='{.status.conditions[?(@.type==\"RunnersAvailable\")].message}' | grep -q '1 runners connected'"
like "$(qcond to-py)" '^True/RunnerPool: runnerSelector reaches RunnerPool py: 1 runners connected' "... $(qcond to-py)"

# --- a raw client with pool other's token cannot see, take or answer pool py's task ---------------
task t-long "runnerPool: py" "[sh, -c, 'sleep 6; echo real']"
ok_phase t-long Running 30
uid=$(k get task t-long -o jsonpath='{.metadata.uid}')
other_token=$(cat "$TMPD/other.token")
hello() { printf '{"type":"hello","runnerId":"%s","version":"x","capacity":4,"labels":{"pool":"py"},"running":[%s]}' "$1" "${2:-}"; }
out=$("$PROBE" 127.0.0.1 "$BROKER_PORT" --token "$other_token" --send "$(hello py-pool-r1)" --wait-ms 1000)
like "$out" 'close .*runner id already connected' "pool other's token cannot take over pool py's runner id"
out=$("$PROBE" 127.0.0.1 "$BROKER_PORT" --token "$other_token" \
	--send "$(hello intruder2 "{\"taskUid\":\"$uid\",\"attempt\":1}")" --expect '"type":"cancel"' 1 \
	--send "{\"type\":\"result\",\"taskUid\":\"$uid\",\"attempt\":1,\"phase\":\"Failed\",\"exitCode\":66,\"logTail\":\"forged\"}" \
	--expect '"type":"ack"' 1 --wait-ms 500)
like "$out" "\"type\":\"cancel\",\"taskUid\":\"$uid\"" "claiming pool py's running task with pool other's token gets a cancel"
like "$out" "\"type\":\"ack\",\"taskUid\":\"$uid\"" "... and its forged result is only acknowledged (dropped)"
ok_phase t-long Succeeded 30
like "$(task_field t-long .status.logTail)" real "the task's result is its real runner's"
is "$(task_field t-long .status.exitCode)" 0 "... not the forged exit code"

# --- the TaskQueue's container policy applies to the pool its tasks use ----------------------------
k apply -f - >/dev/null <<'YAML'
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: strict}
spec:
  policy:
    container:
      imageAllowlist: ["debian-python:*"]
      volumeAllowlist: [{configMap: settings, mountPath: /etc/other}]
---
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: prefix}
spec:
  policy:
    container: {imageAllowlist: ["debian-py:*", "registry.example/approved:*"]}
YAML
task t-prefix "runnerPool: py, queue: prefix"
ok_phase t-prefix Failed 30
is "$(task_field t-prefix .status.reason)" PolicyDenied "REPO:* is no prefix: debian-py:* does not allow debian-python:test (PolicyDenied)"
like "$(task_field t-prefix .status.message)" "RunnerPool py's image debian-python:test is not in TaskQueue prefix's policy.container.imageAllowlist" \
	"... saying why"
k apply -f - >/dev/null <<'YAML'
apiVersion: tasked.dev/v1alpha1
kind: RunnerPool
metadata: {name: vol}
spec:
  image: "debian-python:test"
  labels: {pool: vol}
  volumes: [{name: cfg, mountPath: /etc/settings, configMap: {name: settings}}]
YAML
task t-vol "runnerPool: vol, queue: strict"
ok_phase t-vol Failed 30
is "$(task_field t-vol .status.reason)" PolicyDenied "a pool volume the queue's volumeAllowlist does not list (at that path): PolicyDenied"
like "$(task_field t-vol .status.message)" "RunnerPool vol's volume cfg \\(configMap settings at /etc/settings\\) is not in TaskQueue strict's policy.container.volumeAllowlist" \
	"... saying why"

# A queue reaching a pool that cannot run (Stalled): RunnersAvailable False, the pool's reason.
k apply -f - >/dev/null <<'YAML'
apiVersion: tasked.dev/v1alpha1
kind: RunnerPool
metadata: {name: broken}
spec:
  image: "debian-python:test"
  labels: {pool: broken}
  volumes: [{name: scratch, mountPath: /tmp, emptyDir: {}}]
---
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: to-broken}
spec: {runnerSelector: {pool: broken}}
YAML
ok "a queue reaching a Stalled pool: RunnersAvailable False (RunnerPoolStalled)" wait_for 30 sh -c \
	"kubectl --kubeconfig '$KUBECONFIG' -n $TEST_NS get taskqueue to-broken -o jsonpath='{.status.conditions[?(@.type==\"RunnersAvailable\")].reason}' | grep -qx RunnerPoolStalled"
like "$(qcond to-broken)" "^False/RunnerPoolStalled: runnerSelector reaches RunnerPool broken, which cannot run: InvalidSpec: .*mountPath /tmp" \
	"... with the pool's reason"

# --- scale-down after the delay, drained first ----------------------------------------------------
# The runner's "pod" (the kubelet-less cluster never runs it) so the deletion cost can be set.
k run py-pool-r1 --image=debian-python:test --restart=Never >/dev/null 2>&1
wait_for 30 sh -c "[ \"\$(kubectl --kubeconfig '$KUBECONFIG' -n $TEST_NS get deployment py-pool -o jsonpath='{.spec.replicas}')\" = 0 ]"
is "$(replicas py)" 0 "after scaleDownDelaySeconds with no work: back to minRunners"
is "$(k get pod py-pool-r1 -o jsonpath='{.metadata.annotations.controller\.kubernetes\.io/pod-deletion-cost}')" -1000 \
	"the drained runner's pod was marked the cheapest to delete first"
like "$(cat "$STATE/controller.log")" 'drained idle runners' "the controller drained before lowering replicas"
task t3 "runnerPool: py"
sleep 3
is "$(task_field t3 .status.phase)" Queued "a drained runner gets no new work"
is "$(replicas py)" 1 "and the new task scales the pool up again"

# --- a runner id stays with its pool ---------------------------------------------------------------
kill -9 "${PIDS[@]}" 2>/dev/null
out=$("$PROBE" 127.0.0.1 "$BROKER_PORT" --token "$other_token" --send "$(hello py-pool-r1)" --wait-ms 1000)
like "$out" 'close .*runner id belongs to another runner pool' \
	"a runner of pool other cannot inherit the id (and attempts) of pool py's departed runner"

done_testing
