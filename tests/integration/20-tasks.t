#!/usr/bin/env bash
# Tasks end to end: the controller dispatches to the runner and writes status through the
# status subresource; argv reaches the program literally; failures are reported clearly.
. "$(dirname "$0")/lib.sh"
test_namespace tasks

apply() { k apply -f - >/dev/null; }

apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: hello}
spec:
  shell: {command: ["echo", "hello $(NAME)"]}
  env: [{name: NAME, value: world}]
EOF2
ok "kubectl wait --for=condition=Succeeded works" k wait --for=condition=Succeeded task/hello --timeout=60s
ok_phase hello Succeeded
is "$(task_field hello .status.logTail)" "hello world" "hello's output is in logTail, \$(NAME) expanded from env"
is "$(task_field hello .status.exitCode)" "0" "exitCode 0"
is "$(task_field hello .status.attempts)" "1" "one attempt"
like "$(task_field hello .status.runner)" '.+' "the runner is recorded"
like "$(task_field hello .status.startTime)" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T' "startTime set"
like "$(task_field hello .status.completionTime)" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T' "completionTime set"
is "$(task_field hello '.status.conditions[?(@.type=="Succeeded")].status')" "True" "Succeeded condition True"
is "$(task_field hello .status.observedGeneration)" "1" "observedGeneration"
cols=$(k get task hello --no-headers -o wide | awk '{print $2, $3, $4}')
is "$cols" "Succeeded 0 1" "kubectl get shows PHASE EXIT ATTEMPTS"

apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: exit3}
spec:
  shell: {command: ["getent", "initgroups"]}
EOF2
ok_phase exit3 Failed
is "$(task_field exit3 .status.exitCode)" "3" "exit code 3 is reported"
is "$(task_field exit3 .status.reason)" "ExitCode" "reason ExitCode"
like "$(task_field exit3 .status.message)" "code 3" "message names the exit code"
is "$(task_field exit3 '.status.conditions[?(@.type=="Succeeded")].status')" "False" "Succeeded condition False"

# Shell metacharacters are just bytes in argv: nothing is interpreted.
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: literal}
spec:
  shell: {command: ["printf", "%s|", "a;b", "`id`", "$(whoami)", "$$(NAME)", "&& rm -rf /", "*"]}
  env: [{name: NAME, value: expanded}]
EOF2
ok_phase literal Succeeded
is "$(task_field literal .status.logTail)" 'a;b|`id`|$(whoami)|$(NAME)|&& rm -rf /|*|' \
	'; ` $(...) && * reach the program literally, $$ escapes'

apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: missing}
spec:
  shell: {command: ["no-such-command-xyz", "arg"]}
EOF2
ok_phase missing Failed
msg=$(task_field missing .status.message)
like "$msg" "no-such-command-xyz" "a missing command is named in the message"
like "$msg" "[Nn]o such file|not found" "and the message says it was not found"

# The runner never runs tasks as root, and the task sees only its own environment.
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: whoami}
spec:
  shell: {command: ["id", "-u"]}
EOF2
ok_phase whoami Succeeded
isnt_root=$(task_field whoami .status.logTail)
ok "tasks do not run as root (uid $isnt_root)" test "$isnt_root" != "0"

apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: envonly}
spec:
  shell: {command: ["env"]}
  env: [{name: ONLY, value: mine}]
EOF2
ok_phase envonly Succeeded
envout=$(task_field envonly .status.logTail)
like "$envout" "ONLY=mine" "the task's env is set"
if grep -Eq '^(KUBECONFIG|TASKED_STATE_DIR|USER|SHELL)=' <<<"$envout"; then
	fail "the runner's environment leaked into the task"
	diag "$envout"
else
	pass "the runner's environment does not leak into the task"
fi

# Status is written through the subresource only: the spec is what the user applied.
is "$(k get task hello -o jsonpath='{.metadata.generation}')" "1" "the controller never changed spec (generation 1)"

done_testing
