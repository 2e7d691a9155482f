#!/usr/bin/env bash
# Container tasks on a cluster without a node (the host-process cluster): the policy is decided
# without one (no queue allowing the executor, an image or a volume outside the allowlists:
# PolicyDenied naming the rule, and no pod), and an allowed task's pod, which nothing will ever
# start, fails the task PodNotStarted after --pod-start-timeout-seconds, saying why, instead of
# leaving it waiting without a word; its pod is deleted.
. "$(dirname "$0")/lib.sh"
. "$IT_ROOT/tests/cluster/lib.sh"
test_namespace ctr

STATE=${TASKED_STATE_DIR:-.tasked}
case "$STATE" in /*) ;; *) STATE=$IT_ROOT/$STATE ;; esac
CTL=${TASKED_BIN_DIR:-$IT_ROOT/bin}/tasked-controller
restart_controller() {
	stop_pidfile "$STATE/controller.pid" "$CTL" tasked-controller 5 >/dev/null 2>&1
	TASKED_CONTROLLER_ARGS="$1" "$IT_ROOT/tests/cluster/up.sh" >/dev/null 2>&1
}
cleanup() {
	restart_controller ""
	_cleanup_namespace
}
trap cleanup EXIT
ok "the controller restarts with --pod-start-timeout-seconds=20" restart_controller "--pod-start-timeout-seconds=20"

k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: noqueue}
spec: {container: {image: "example.test/app:1"}}
EOF2
ok_phase noqueue Failed 30
is "$(task_field noqueue .status.reason)" PolicyDenied "without a TaskQueue allowing it, a container task is PolicyDenied"
like "$(task_field noqueue .status.message)" "container executor is not allowed" "... saying which rule"

k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: default}
spec:
  policy:
    executors: [container, shell]
    container:
      imageAllowlist: ["example.test/app:*"]
      volumeAllowlist: [{configMap: settings, mountPath: /etc/settings}]
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: otherimage}
spec: {container: {image: "example.test/other:1"}}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: digest}
spec: {container: {image: "example.test/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: otherpath}
spec:
  container:
    image: "example.test/app:1"
    volumes: [{name: s, configMap: {name: settings}, mountPath: /elsewhere}]
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: allowed}
spec:
  container:
    image: "example.test/app:1"
    volumes: [{name: s, configMap: {name: settings}, mountPath: /etc/settings, readOnly: true}]
EOF2
ok_phase otherimage Failed 30
is "$(task_field otherimage .status.reason)" PolicyDenied "an image outside imageAllowlist: PolicyDenied"
like "$(task_field otherimage .status.message)" "not in TaskQueue default's policy.container.imageAllowlist" "... naming the rule"
ok_phase digest Failed 30
is "$(task_field digest .status.reason)" PolicyDenied "a REPO:* pattern does not allow a digest"
ok_phase otherpath Failed 30
like "$(task_field otherpath .status.message)" "volumeAllowlist" "an allowlisted ConfigMap at another path: PolicyDenied, naming the rule"
# One snapshot: the pod lives only until the start timeout, however slow the kubectl calls are.
pods=$(k get pods -o json)
is "$(jq '.items | length' <<<"$pods")" 1 "only the allowed task got a pod"
pod=$(jq -r '.items[0].metadata.name' <<<"$pods")
like "$pod" '^allowed-1-[0-9a-f]{5}$' "the pod is named after the task, attempt and uid ($pod)"
is "$(jq -r '.items[0].spec.initContainers[0] | "\(.name) \(.image) \(.securityContext.readOnlyRootFilesystem)"' <<<"$pods")" \
	"tasked-network-gate tasked-runner:host-process true" "without network the pod runs the network gate first, as the API server accepted it"
ok_phase allowed Failed 60
is "$(task_field allowed .status.reason)" PodNotStarted "a pod no node starts fails the task: PodNotStarted"
like "$(task_field allowed .status.message)" "did not start within 20 s" "... saying why"
ok "its pod is deleted" wait_for 30 sh -c "[ -z \"\$(kubectl --kubeconfig $KUBECONFIG -n $TEST_NS get pods -o name)\" ]"
ok "the namespace has the deny-all NetworkPolicy" k get networkpolicy tasked-deny-all

# A pod squatting on the deterministic name of an attempt is never adopted: squat waits for a
# task gate that does not exist yet, the squatter is put in place, and only then is gate created,
# so squat's create finds the name taken however slow this machine is.
k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: squat}
spec: {container: {image: "example.test/app:1"}, dependsOn: [gate]}
EOF2
suid=$(task_field squat .metadata.uid)
sname=$(python3 -c 'import sys
h=2166136261
for c in sys.argv[1].encode(): h=((h^c)*16777619)&0xffffffff
print("squat-1-%05x" % (h & 0xfffff))' "$suid")
k apply -f - >/dev/null <<EOF2
apiVersion: v1
kind: Pod
metadata: {name: $sname, labels: {tasked.dev/executor: container, tasked.dev/task-uid: "$suid", tasked.dev/attempt: "1"}}
spec: {containers: [{name: task, image: "example.test/app:1"}]}
EOF2
k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: gate}
spec: {shell: {command: ["true"]}}
EOF2
ok_phase squat Failed 60
is "$(task_field squat .status.reason)" PodRefused "a foreign pod holding the attempt's name: PodRefused"
like "$(task_field squat .status.message)" "never adopted" "... it is never adopted"
ok "... and left alone" k get pod "$sname"
# The schema bounds spec.container before the controller sees it.
nok "a volume with two sources is refused by the schema" k apply -f - <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: twosources}
spec:
  container:
    image: "example.test/app:1"
    volumes: [{name: v, emptyDir: {}, configMap: {name: x}, mountPath: /v}]
EOF2
like "$NOK_OUTPUT" "exactly one of persistentVolumeClaim, configMap, secret or emptyDir" "... with a message naming the rule"
nok "a hostPath volume is refused by the schema (unknown field)" k apply --validate=strict -f - <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: hostpath}
spec:
  container:
    image: "example.test/app:1"
    volumes: [{name: v, hostPath: {path: /}, mountPath: /v}]
EOF2
nok "more than 16 volumes are refused by the schema" k apply -f - <<EOF2
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: manyvolumes}
spec:
  container:
    image: "example.test/app:1"
    volumes: [$(for i in $(seq 1 17); do printf '{name: v%d, emptyDir: {}, mountPath: /v%d},' "$i" "$i"; done)]
EOF2
nok "a TaskQueue volumeAllowlist entry naming both kinds is refused" k apply -f - <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: bad}
spec: {policy: {container: {volumeAllowlist: [{persistentVolumeClaim: a, configMap: b, mountPath: /x}]}}}
EOF2
done_testing
