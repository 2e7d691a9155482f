#!/usr/bin/env bash
# The hardened pod as the kubelet runs it: inside a runner sidecar the process is 65532:65532,
# / is read-only, /tmp is a writable emptyDir with its size limit, no capabilities,
# no_new_privs, a seccomp filter, no service-account token; the controller writes only /tmp and
# its log volume; a task cannot read another
# process's environment nor the runner token; `helm test` passes and proves a Task ran.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/lib-node.sh"
test_namespace hardened

pod=$(controller_pod)
ok "the controller pod runs ($pod)" test -n "$pod"
rx() { kr exec "$pod" -c runner-0 -- "$@"; }

is "$(rx id -u) $(rx id -g)" "65532 65532" "runner-0 runs as 65532:65532"
nok "/ is read-only" rx touch /probe
like "$NOK_OUTPUT" "Read-only file system" "... because the root file system is mounted read-only"
ok "/tmp is writable" rx sh -c 'echo x >/tmp/probe && rm /tmp/probe'
ok "/tmp is a volume of its own" sh -c "kubectl -n $NAMESPACE exec $pod -c runner-0 -- cat /proc/self/mountinfo | awk '\$5 == \"/tmp\"' | grep -q ."
is "$(kr get pod "$pod" -o jsonpath='{.spec.volumes[?(@.name=="tmp-runner-0")].emptyDir.sizeLimit}')" "1Gi" \
	"/tmp is an emptyDir with the chart's size limit"
status=$(rx cat /proc/self/status)
like "$status" $'CapEff:\t0000000000000000' "no effective capabilities"
like "$status" $'CapBnd:\t0000000000000000' "an empty bounding set"
like "$status" $'NoNewPrivs:\t1' "no_new_privs"
like "$status" $'Seccomp:\t2' "a seccomp filter"
nok "no service-account token in the runner container" rx ls /var/run/secrets/kubernetes.io/serviceaccount
ok "the controller container has its token" kr get pod "$pod" -o jsonpath='{.spec.containers[?(@.name=="controller")].volumeMounts[?(@.name=="kube-api-access")].mountPath}'

# The same, read from the node for the runner process itself (not an exec'd shell).
procs=$("$IT_ROOT/tests/cluster/node.sh" procs "$STATE" "$NAMESPACE")
diag "$procs"
line=$(printf '%s\n' "$procs" | awk -v p="$pod" '$2 == p && $3 == "runner-0"')
like "$line" " 65532 65532 0000000000000000 1 2 ro$" "the runner process: 65532:65532, CapEff 0, NoNewPrivs 1, Seccomp 2, / read-only"
line=$(printf '%s\n' "$procs" | awk -v p="$pod" '$2 == p && $3 == "controller"')
like "$line" " 65532 65532 0000000000000000 1 2 ro$" "the controller process: the same"

# --- what a task can reach -------------------------------------------------------------------------
k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: environ}
spec:
  retries: {limit: 0}
  shell: {command: ["cat", "/proc/1/environ"]}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: token}
spec:
  retries: {limit: 0}
  shell: {command: ["cat", "/var/run/secrets/tasked/runner-token"]}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: whoami}
spec:
  shell: {command: ["id"]}
EOF2
ok_phase whoami Succeeded 60
like "$(task_field whoami .status.runner)" "^$pod-" "it ran in a sidecar of $pod"
like "$(task_field whoami .status.logTail)" "uid=65532" "tasks run as 65532"
# The controller's only writable path besides /tmp: its log volume, writable under the same
# restricted context (it is a volume; the root stays read-only).
disk_bytes() {
	printf 'X-API-Key: %s\n' "$(cat "$STATE/api-key")" | curl -s -H @- "$(cat "$STATE/api-url")/metrics" |
		awk '$1 == "tasked_logstore_disk_bytes" { print $2 }'
}
ok "the controller writes task logs to its volume (tasked_logstore_disk_bytes $(disk_bytes))" test "$(disk_bytes)" -gt 0
nok "... without falling back to memory" sh -c "kubectl -n $NAMESPACE logs $pod -c controller | grep -Eq 'keeping logs in memory only|could not write a task'"
ok_phase environ Failed 60
like "$(task_field environ .status.logTail)" "Permission denied" "a task cannot read the runner's environment (/proc/1/environ)"
ok_phase token Failed 60
like "$(task_field token .status.logTail)" "(Permission denied|No such file)" "a task cannot read the runner token"
token=$(cat "$STATE/runner-token")
nok "the token appears in no task output" sh -c "kubectl -n $TEST_NS get tasks -o yaml | grep -qF -- \"\$1\"" _ "$token"

# --- helm test -----------------------------------------------------------------------------------
out=$("$HELM" test "$RELEASE" --namespace "$NAMESPACE" --timeout 4m 2>&1)
is "$?" 0 "helm test passes" || diag "$out"
like "$out" "TEST SUITE: +$FULLNAME-test-smoke" "... including the pod that waits for the smoke Task"
like "$out" "TEST SUITE: +$FULLNAME-test-config" "... and the configuration check"
is "$(kr get task "$FULLNAME-smoke" -o jsonpath='{.status.phase}')" Succeeded "helm test's smoke Task Succeeded"
like "$(kr get task "$FULLNAME-smoke" -o jsonpath='{.status.runner}')" "^$FULLNAME-" "... in a runner of the release"

done_testing
