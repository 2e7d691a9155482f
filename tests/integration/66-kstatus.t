#!/usr/bin/env bash
# GitOps health by the kstatus library itself (sigs.k8s.io/cli-utils pkg/kstatus/status, what
# Flux, kpt and Config Sync wait with): each Task, Flow and TaskQueue is brought to each phase on
# the cluster, read back with kubectl get -o json and judged by tests/tools/kstatus (Running ->
# InProgress, Failed -> Failed, Succeeded -> Current, ...). Also: the conditions behind the
# verdicts, kubectl wait on Completed and Succeeded (a Skipped task satisfies both), and a
# finished Task whose spec changed is observed (not InProgress forever). The table is in
# docs/install.md, the conditions in docs/api.md.
. "$(dirname "$0")/lib.sh"
test_namespace kstatus

KSTATUS=$("$IT_ROOT/tests/tools/kstatus.sh") || { echo "Bail out! the kstatus checker does not build"; exit 255; }
apply() { k apply -f - >/dev/null; }
# verdict KIND NAME: kstatus' STATUS for the live object.
verdict() { k get "$1" "$2" -o json | "$KSTATUS" | cut -f3; }
verdict_is() { [ "$(verdict "$1" "$2")" = "$3" ]; }
phase_is() { [ "$(k get "$1" "$2" -o jsonpath='{.status.phase}')" = "$3" ]; }
# cond KIND NAME TYPE: "STATUS/REASON" of a condition.
cond() {
	k get "$1" "$2" -o jsonpath="{.status.conditions[?(@.type==\"$3\")].status}/{.status.conditions[?(@.type==\"$3\")].reason}"
}
# check KIND NAME PHASE VERDICT: wait for PHASE, then kstatus says VERDICT.
check() {
	ok "$1 $2 reaches $3" wait_for 90 phase_is "$1" "$2" "$3"
	if ! ok "$1 $3 -> kstatus $4" wait_for 10 verdict_is "$1" "$2" "$4"; then
		diag "kstatus: $(k get "$1" "$2" -o json | "$KSTATUS")" "$(k get "$1" "$2" -o jsonpath='{.status}')"
	fi
}
# observed KIND NAME: status.observedGeneration is metadata.generation, and so is every condition's.
observed() {
	local g
	g=$(k get "$1" "$2" -o jsonpath='{.metadata.generation}')
	[ "$(k get "$1" "$2" -o jsonpath='{.status.observedGeneration}')" = "$g" ] &&
		[ -z "$(k get "$1" "$2" -o json | jq -r --argjson g "$g" '.status.conditions[] | select(.observedGeneration != $g) | .type')" ]
}

# The checker itself tells the verdicts apart (a checker that says Current for all would pass
# nothing below; this is what the issue saw before the conditions).
is "$(printf '{"apiVersion":"tasked.dev/v1alpha1","kind":"Task","metadata":{"name":"x","generation":1},"status":{"phase":"Failed","observedGeneration":1}}' |
	"$KSTATUS" | cut -f3)" Current "a phase alone: kstatus says Current (why the conditions are needed)"

# --- the conditions cost no API write: status writes of these tasks, seen by a watch ---------------
# Every status PATCH that changes an object is one MODIFIED event of it; the API server's own
# counter (cluster-wide, so other suites' leftovers in their namespaces add to it) is shown too.
status_patches() {
	k get --raw /metrics | awk '/^apiserver_request_total\{/ && /resource="tasks"/ && /subresource="status"/ &&
		/verb="PATCH"/ { s += $NF } END { print s + 0 }'
}
n=8
wlog=$(mktemp)
kubectl --kubeconfig "$KUBECONFIG" --namespace "$TEST_NS" get tasks --watch --output-watch-events \
	-o json >"$wlog" 2>/dev/null &
wpid=$!
sleep 1
before=$(status_patches)
for i in $(seq 1 $n); do
	printf 'apiVersion: tasked.dev/v1alpha1\nkind: Task\nmetadata: {name: w%s}\nspec: {shell: {command: ["true"]}}\n' "$i" | apply
	wait_phase "w$i" Succeeded 60 >/dev/null
done
ok "the $n tasks have their conditions" test "$(k get tasks -o json | jq '[.items[] | select(.metadata.name | startswith("w")) |
	select([.status.conditions[] | select(.type == "Completed" and .status == "True")] | length == 1)] | length')" = "$n"
sleep 1
kill "$wpid" 2>/dev/null
wait "$wpid" 2>/dev/null
writes=$(jq -r 'select(.type == "MODIFIED") | .object.metadata.name' "$wlog" | grep -c '^w[0-9]*$')
diag "status writes for $n tasks run one after the other: $writes (API server counter, cluster-wide: $(($(status_patches) - before)))"
ok "1 to 2 status writes per task (Running, then the end): $writes for $n" test "$writes" -ge "$n" -a "$writes" -le $((2 * n))
rm -f "$wlog"
k delete tasks $(seq -f 'w%g' 1 $n) --wait=false >/dev/null

# --- Task ------------------------------------------------------------------------------------------
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: long}
spec: {shell: {command: [sleep, "600"]}}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: after-long}
spec: {dependsOn: [long], shell: {command: ["true"]}}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: nowhere}
spec: {runnerSelector: {pool: nowhere}, shell: {command: ["true"]}}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: good}
spec: {shell: {command: ["true"]}}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: bad}
spec: {shell: {command: ["false"]}}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: skipped}
spec: {dependsOn: [good], when: "tasks.good.phase == 'Failed'", shell: {command: ["true"]}}
EOF2
check Task long Running InProgress
is "$(cond task long Reconciling)" "True/Running" "Running: Reconciling True, reason Running"
check Task after-long Pending InProgress
is "$(cond task after-long Reconciling)" "True/WaitingForDependencies" "Pending: Reconciling True, reason WaitingForDependencies"
is "$(task_field after-long .status.message)" "waiting for task long to finish" \
	"the waiting message names no dependency phase that would go stale"
check Task nowhere Queued InProgress
is "$(cond task nowhere Reconciling)" "True/Queued" "Queued: Reconciling True, reason Queued"
check Task good Succeeded Current
is "$(cond task good Ready)/$(cond task good Completed)/$(cond task good Stalled)" "True/Succeeded/True/Succeeded/False/Succeeded" \
	"Succeeded: Ready True, Completed True, Stalled False"
check Task bad Failed Failed
is "$(cond task bad Ready)/$(cond task bad Stalled)/$(cond task bad Completed)" "False/ExitCode/True/ExitCode/True/Failed" \
	"Failed: Ready False and Stalled True with the reason (ExitCode), Completed True"
check Task skipped Skipped Current
is "$(cond task skipped Succeeded)/$(cond task skipped Ready)" "True/ConditionFalse/True/ConditionFalse" \
	"Skipped: Succeeded and Ready True (reason ConditionFalse)"
ok "kubectl wait --for=condition=Succeeded ends for a Skipped task" k wait --for=condition=Succeeded task/skipped --timeout=20s
ok "kubectl wait --for=condition=Completed ends for a Skipped task" k wait --for=condition=Completed task/skipped --timeout=20s
ok "kubectl tasked wait agrees (exit 0)" env KUBECONFIG="$KUBECONFIG" "$IT_ROOT/bin/kubectl-tasked" -n "$TEST_NS" wait skipped --timeout 20
ok "kubectl wait --for=condition=Completed ends for a Failed task" k wait --for=condition=Completed task/bad --timeout=20s
nok "kubectl wait --for=condition=Completed waits while a task runs" k wait --for=condition=Completed task/long --timeout=2s
k patch task long --type merge -p '{"spec":{"cancel":true}}' >/dev/null
check Task long Cancelled Failed
is "$(cond task long Stalled)/$(cond task long Completed)" "True/Cancelled/True/Cancelled" "Cancelled: Stalled True, Completed True"
ok "kubectl wait --for=condition=Completed ends for a Cancelled task" k wait --for=condition=Completed task/long --timeout=20s
ok "the dependent of the cancelled task fails" wait_for 60 phase_is task after-long Failed

# A spec edit a finished run still allows: observed, so kstatus does not read InProgress forever.
for t in good bad; do
	gen=$(task_field "$t" .metadata.generation)
	k patch task "$t" --type merge -p '{"spec":{"ttlSecondsAfterFinished":3600}}' >/dev/null
	ok "ttlSecondsAfterFinished set on the finished Task $t: a new generation" \
		test "$(task_field "$t" .metadata.generation)" -gt "$gen"
	ok "... observed: status.observedGeneration and every condition's follow it" wait_for 30 observed task "$t"
done
is "$(verdict task good)" Current "... and kstatus still says Current for the Succeeded one"
is "$(verdict task bad)" Failed "... and Failed for the Failed one"
k patch task bad --type merge -p '{"spec":{"cancel":true}}' >/dev/null
ok "spec.cancel on a finished Task is observed too" wait_for 30 observed task bad
is "$(task_field bad .status.phase)" Failed "... and changes nothing else (still Failed)"

# --- Flow ------------------------------------------------------------------------------------------
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Flow
metadata: {name: running}
spec:
  tasks:
    - {name: a, shell: {command: [sleep, "600"]}}
---
apiVersion: tasked.dev/v1alpha1
kind: Flow
metadata: {name: stopped}
spec:
  tasks:
    - {name: a, shell: {command: [sleep, "600"]}}
    - {name: b, dependsOn: [a], shell: {command: ["true"]}}
---
apiVersion: tasked.dev/v1alpha1
kind: Flow
metadata: {name: fine}
spec:
  tasks:
    - {name: a, shell: {command: ["true"]}}
    - {name: b, dependsOn: [a], shell: {command: ["true"]}}
---
apiVersion: tasked.dev/v1alpha1
kind: Flow
metadata: {name: broken}
spec:
  tasks:
    - {name: a, shell: {command: ["false"]}}
---
apiVersion: tasked.dev/v1alpha1
kind: Flow
metadata: {name: cyclic}
spec:
  tasks:
    - {name: a, dependsOn: [b], shell: {command: ["true"]}}
    - {name: b, dependsOn: [a], shell: {command: ["true"]}}
EOF2
check Flow running Running InProgress
is "$(cond flow running Reconciling)" "True/Running" "Flow Running: Reconciling True"
check Flow fine Succeeded Current
is "$(cond flow fine Ready)/$(cond flow fine Completed)" "True/Succeeded/True/Succeeded" "Flow Succeeded: Ready and Completed True"
ok "kubectl wait --for=condition=Completed ends for a finished Flow" k wait --for=condition=Completed flow/fine --timeout=20s
check Flow broken Failed Failed
is "$(cond flow broken Stalled)" "True/TaskFailed" "Flow Failed: Stalled True, reason TaskFailed"
check Flow cyclic Failed Failed
ok "Flow stopped starts its first task" wait_for 60 phase_is task stopped-a Running
k patch task stopped-a --type merge -p '{"spec":{"cancel":true}}' >/dev/null
check Flow stopped Cancelled Failed
is "$(cond flow stopped Stalled)/$(cond flow stopped Completed)" "True/TaskCancelled/True/Cancelled" \
	"Flow Cancelled (its task cancelled, its dependent failed for it): Stalled True, Completed True"
gen=$(k get flow fine -o jsonpath='{.metadata.generation}')
k patch flow fine --type merge -p '{"spec":{"ttlSecondsAfterFinished":3600}}' >/dev/null
ok "ttlSecondsAfterFinished on a finished Flow is observed" wait_for 30 observed flow fine
is "$(verdict flow fine)" Current "... and kstatus still says Current"

# --- RunnerPool ------------------------------------------------------------------------------------
# No kubelet here: a pool's pods never run. A pool that needs none is ready; one that must keep a
# runner stays starting; a spec the controller cannot run is Stalled.
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: RunnerPool
metadata: {name: idle}
spec: {image: "debian-python:test", labels: {pool: idle}, minRunners: 0, maxRunners: 2}
---
apiVersion: tasked.dev/v1alpha1
kind: RunnerPool
metadata: {name: starting}
spec: {image: "debian-python:test", labels: {pool: starting}, minRunners: 1, maxRunners: 2}
---
apiVersion: tasked.dev/v1alpha1
kind: RunnerPool
metadata: {name: invalid}
spec:
  image: "debian-python:test"
  volumes: [{name: scratch, mountPath: /tmp, emptyDir: {}}]
EOF2
# A pool without status reads Current to kstatus (nothing to judge yet): wait for the controller.
ok "a RunnerPool's status: this generation observed, on each condition" wait_for 60 observed runnerpool idle
ok "a RunnerPool scaled to zero, nothing queued -> kstatus Current" wait_for 10 verdict_is runnerpool idle Current
is "$(cond runnerpool idle Ready)/$(cond runnerpool idle Reconciling)/$(cond runnerpool idle Stalled)" \
	"True/RunnersReady/False/Stable/False/Running" "ready pool: Ready True, Reconciling and Stalled False"
ok "a RunnerPool starting its runner -> kstatus InProgress" wait_for 60 sh -c \
	"[ \"\$(kubectl get runnerpool starting -n $TEST_NS -o jsonpath='{.status.observedGeneration}')\" = 1 ] &&
	 [ \"\$(kubectl get runnerpool starting -n $TEST_NS -o json | '$KSTATUS' | cut -f3)\" = InProgress ]"
is "$(cond runnerpool starting Reconciling)/$(cond runnerpool starting Ready)" "True/Scaling/False/RunnersStarting" \
	"starting pool: Reconciling True (Scaling), Ready False"
ok "a RunnerPool with an invalid spec -> kstatus Failed" wait_for 60 verdict_is runnerpool invalid Failed
is "$(cond runnerpool invalid Stalled)/$(cond runnerpool invalid Ready)" "True/InvalidSpec/False/InvalidSpec" \
	"invalid pool: Stalled True, Ready False (InvalidSpec)"
nok "kubectl wait --for=condition=Completed waits on a pool (it runs until deleted)" k wait --for=condition=Completed runnerpool/idle --timeout=2s
gen=$(k get runnerpool idle -o jsonpath='{.metadata.generation}')
k patch runnerpool idle --type merge -p '{"spec":{"maxRunners":3}}' >/dev/null
ok "an edit of the ready pool is a new generation" test "$(k get runnerpool idle -o jsonpath='{.metadata.generation}')" -gt "$gen"
ok "... observed: status.observedGeneration and every condition's follow it" wait_for 30 observed runnerpool idle
is "$(verdict runnerpool idle)" Current "... and kstatus says Current again"

# --- TaskQueue -------------------------------------------------------------------------------------
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: open}
spec: {concurrency: 4}
---
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: frozen}
spec: {policy: {executors: []}}
EOF2
ok "a valid TaskQueue -> kstatus Current" wait_for 60 sh -c \
	"[ \"\$(kubectl get taskqueue open -n $TEST_NS -o jsonpath='{.status.observedGeneration}')\" = 1 ] &&
	 [ \"\$(kubectl get taskqueue open -n $TEST_NS -o json | '$KSTATUS' | cut -f3)\" = Current ]"
is "$(cond taskqueue open Ready)/$(cond taskqueue open Stalled)" "True/Valid/False/Valid" "valid: Ready True, Stalled False"
ok "a TaskQueue that lets no task run -> kstatus Failed" wait_for 60 verdict_is taskqueue frozen Failed
is "$(cond taskqueue frozen Ready)/$(cond taskqueue frozen Stalled)" "False/InvalidSpec/True/InvalidSpec" "invalid: Ready False, Stalled True"
like "$(k get taskqueue frozen -o jsonpath='{.status.conditions[?(@.type=="Stalled")].message}')" "executors is empty" \
	"... the message says why"
k patch taskqueue frozen --type merge -p '{"spec":{"policy":{"executors":["shell"]}}}' >/dev/null
ok "fixed: kstatus Current" wait_for 60 verdict_is taskqueue frozen Current
ok "... with the new generation observed" wait_for 30 observed taskqueue frozen

done_testing
