#!/usr/bin/env bash
# Immutable runs: the API server itself refuses edits of what a Task or Flow runs (CEL
# transition rules in the CRDs), running or finished, with a message that says what may change;
# spec.cancel (one way) and spec.ttlSecondsAfterFinished stay writable, and cancel still works.
. "$(dirname "$0")/lib.sh"
test_namespace immutable

apply() { k apply -f - >/dev/null; }
phase_is() { [ "$(task_field "$1" .status.phase)" = "$2" ]; }
task_msg='Task spec is immutable: only spec.cancel and spec.ttlSecondsAfterFinished may change'
flow_msg='Flow spec is immutable: only spec.ttlSecondsAfterFinished may change'

# refused DESC MSG-ERE KIND NAME PATCH: a merge patch of the object is refused, saying MSG-ERE.
refused() {
	nok "$1 is refused" k patch "$3" "$4" --type merge -p "$5"
	like "$NOK_OUTPUT" "$2" "... with the message ($5)"
}

apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: long}
spec:
  shell: {command: [sleep, "600"]}
  env: [{name: A, value: "1"}]
  input: {n: 1, deep: {k: v}}
EOF2
ok "the running Task is Running" wait_for 60 phase_is long Running
gen=$(task_field long .metadata.generation)

refused "changing the command of a running Task" "spec.shell: .*$task_msg" task long '{"spec":{"shell":{"command":["echo","other"]}}}'
refused "changing an env value" "spec.env: .*$task_msg" task long '{"spec":{"env":[{"name":"A","value":"2"}]}}'
refused "changing a nested input value" "spec.input: .*$task_msg" task long '{"spec":{"input":{"deep":{"k":"w"}}}}'
refused "adding a field (priority)" "spec: .*$task_msg" task long '{"spec":{"priority":9}}'
refused "removing a field (env)" "spec: .*$task_msg" task long '{"spec":{"env":null}}'
refused "switching the executor" "$task_msg" task long '{"spec":{"shell":null,"http":{"url":"https://example.com/"}}}'
nok "a full replace with another command is refused" sh -c \
	"kubectl get task long -n $TEST_NS -o json | jq '.spec.shell.command = [\"true\"]' | kubectl replace -n $TEST_NS -f -"
like "$NOK_OUTPUT" "$task_msg" "... with the message"
is "$(task_field long .metadata.generation)" "$gen" "none of it reached the object (generation unchanged)"
is "$(task_field long '.spec.shell.command[1]')" 600 "the command is what it was"

ok "labels and annotations stay editable" k label task long team=a
ok "spec.ttlSecondsAfterFinished stays editable" k patch task long --type merge -p '{"spec":{"ttlSecondsAfterFinished":3600}}'
ok "spec.cancel can be set" k patch task long --type merge -p '{"spec":{"cancel":true}}'
ok "... and the Task is Cancelled" wait_for 60 phase_is long Cancelled
refused "un-cancelling" 'spec.cancel cannot be undone once true' task long '{"spec":{"cancel":false}}'
refused "removing cancel" 'spec.cancel cannot be undone once true' task long '{"spec":{"cancel":null}}'

# A finished Task: the same refusal.
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: finished}
spec:
  shell: {command: [echo, hi]}
EOF2
ok "a short Task succeeds" wait_for 60 phase_is finished Succeeded
refused "changing the command of a finished Task" "spec.shell: .*$task_msg" task finished '{"spec":{"shell":{"command":["echo","again"]}}}'
refused "changing timeoutSeconds of a finished Task" "$task_msg" task finished '{"spec":{"timeoutSeconds":5}}'
is "$(task_field finished .status.phase)" Succeeded "the finished Task is untouched"
# Re-applying the same manifest (what GitOps tools do on every sync) is no change and passes.
reapply() { printf '%s\n' 'apiVersion: tasked.dev/v1alpha1' 'kind: Task' 'metadata: {name: finished}' \
	'spec: {shell: {command: [echo, hi]}}' | k apply -f -; }
ok "re-applying the unchanged manifest is accepted" reapply

# --- Flows ----------------------------------------------------------------------------------------
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Flow
metadata: {name: dag}
spec:
  tasks:
    - {name: a, shell: {command: [sleep, "600"]}}
    - {name: b, dependsOn: [a], shell: {command: ["true"]}}
EOF2
ok "the Flow's first task runs" wait_for 60 phase_is dag-a Running
refused "changing a Flow task's command" "spec.tasks: .*$flow_msg" flow dag '{"spec":{"tasks":[{"name":"a","shell":{"command":["true"]}},{"name":"b","dependsOn":["a"],"shell":{"command":["true"]}}]}}'
refused "adding failFast to a Flow" "spec: .*$flow_msg" flow dag '{"spec":{"failFast":true}}'
refused "setting a Flow's queue" "$flow_msg" flow dag '{"spec":{"queue":"other"}}'
ok "a Flow's ttlSecondsAfterFinished stays editable" k patch flow dag --type merge -p '{"spec":{"ttlSecondsAfterFinished":3600}}'
refused "editing a Flow's child Task" "$task_msg" task dag-a '{"spec":{"shell":{"command":["true"]}}}'
ok "a Flow's child Task can still be cancelled" k patch task dag-a --type merge -p '{"spec":{"cancel":true}}'
ok "... and is Cancelled" wait_for 60 phase_is dag-a Cancelled

done_testing
