#!/usr/bin/env bash
# TaskQueues (concurrency, rate limit, priority, policy, missing queue, status), Flows (diamond
# with outputs, skipped branch, failFast, cycles, deletion), `when` limits, and queue secrets.
. "$(dirname "$0")/lib.sh"
test_namespace orchestration

STATE=${TASKED_STATE_DIR:-.tasked}
case "$STATE" in /*) ;; *) STATE=$IT_ROOT/$STATE ;; esac
apply() { k apply -f - >/dev/null; }
phases_of() { k get tasks -l "$1" -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}'; }
wait_all() { # SELECTOR COUNT TIMEOUT: every selected task terminal
	local end=$(($(date +%s) + $3)) n
	while :; do
		n=$(phases_of "$1" | grep -cE '^(Succeeded|Failed|Skipped|Cancelled)$')
		[ "$n" -ge "$2" ] && return 0
		[ "$(date +%s)" -lt "$end" ] || return 1
		sleep 0.2
	done
}
stamp='["sh", "-c", "date +%s%N; sleep ${SLEEP:-0}"]'

# --- concurrency ----------------------------------------------------------------------------------
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: two}
spec: {concurrency: 2}
EOF2
for i in 1 2 3 4 5 6; do
	apply <<EOF2
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: c$i, labels: {suite: conc}}
spec:
  queue: two
  env: [{name: SLEEP, value: "2"}]
  shell: {command: $stamp}
EOF2
done
max=0
end=$(($(date +%s) + 60))
while [ "$(date +%s)" -lt "$end" ]; do
	ph=$(phases_of suite=conc)
	n=$(printf '%s\n' "$ph" | grep -c '^Running$')
	[ "$n" -gt "$max" ] && max=$n
	[ "$(printf '%s\n' "$ph" | grep -c '^Succeeded$')" -ge 6 ] && break
	sleep 0.1
done
is "$(phases_of suite=conc | grep -c '^Succeeded$')" "6" "six tasks in a concurrency-2 queue all succeed"
ok "sampled status never showed more than 2 Running (max $max)" test "$max" -le 2 -a "$max" -ge 1
# Start stamps: at most two tasks overlap at any moment.
starts=$(for i in 1 2 3 4 5 6; do task_field "c$i" .status.logTail; echo; done | grep . | sort -n)
s1=$(sed -n 1p <<<"$starts"); s3=$(sed -n 3p <<<"$starts")
ok "the third task started only after a slot freed (~2 s later)" test $(((s3 - s1) / 1000000)) -ge 1500
running=$(k get taskqueue two -o jsonpath='{.status.running}')
like "$running" '^[0-9]+$' "TaskQueue status reports running ($running)"

# --- rate limit -----------------------------------------------------------------------------------
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: slow}
spec: {rateLimit: {perSecond: 5, burst: 1}}
EOF2
for i in $(seq 1 10); do
	apply <<EOF2
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: r$i, labels: {suite: rate}}
spec:
  queue: slow
  shell: {command: $stamp}
EOF2
done
ok "ten rate-limited tasks finish" wait_all suite=rate 10 60
starts=$(for i in $(seq 1 10); do task_field "r$i" .status.logTail; echo; done | grep . | sort -n)
span=$((($(tail -1 <<<"$starts") - $(head -1 <<<"$starts")) / 1000000))
ok "5/s with burst 1 spreads ten starts over at least 1.5 s (${span} ms)" test "$span" -ge 1500

# --- priority -------------------------------------------------------------------------------------
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: one}
spec: {concurrency: 1}
EOF2
apply <<EOF2
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: blocker, labels: {suite: prio}}
spec:
  queue: one
  env: [{name: SLEEP, value: "300"}]
  shell: {command: $stamp}
EOF2
ok_phase blocker Running 30
for p in low:0 mid:5 high:10; do
	apply <<EOF2
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: ${p%%:*}, labels: {suite: prio}}
spec:
  queue: one
  priority: ${p##*:}
  shell: {command: $stamp}
EOF2
	sleep 0.3
done
# The slot is freed only once the whole backlog is there, however slow this machine is.
k patch task blocker --type merge -p '{"spec":{"cancel":true}}' >/dev/null
ok "the backlog drains" wait_all suite=prio 4 60
order=$(for t in low mid high; do echo "$(task_field $t .status.logTail) $t"; done | sort -n | awk '{print $2}' | tr '\n' ' ')
is "$order" "high mid low " "priority reorders the backlog (higher first, though created last)"

# --- queue policy and missing queues ---------------------------------------------------------------
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: http-only}
spec: {policy: {executors: [http]}}
EOF2
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: denied}
spec:
  queue: http-only
  shell: {command: ["true"]}
EOF2
ok_phase denied Failed 30
is "$(task_field denied .status.reason)" "PolicyDenied" "an executor the queue does not allow: PolicyDenied"

apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: early}
spec:
  queue: later
  shell: {command: ["echo", "queue arrived"]}
EOF2
ok_phase early Pending 30
like "$(task_field early .status.message)" "TaskQueue later does not exist" "a missing queue is explained"
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: later}
spec: {concurrency: 1}
EOF2
ok_phase early Succeeded 30

apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: nowhere}
spec: {runnerSelector: {pool: nonexistent}}
EOF2
end=$(($(date +%s) + 15))
until [ "$(k get taskqueue nowhere -o jsonpath='{.status.conditions[?(@.type=="RunnersAvailable")].status}')" = False ] ||
	[ "$(date +%s)" -ge "$end" ]; do sleep 0.3; done
is "$(k get taskqueue nowhere -o jsonpath='{.status.conditions[?(@.type=="RunnersAvailable")].status}')" "False" \
	"a queue whose selector matches no runner says so in a condition"

# --- dependsOn between standalone tasks -------------------------------------------------------------
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: second}
spec:
  dependsOn: [first]
  shell: {command: ["echo", "got $(tasks.first.output.word) after $(tasks.first.phase)"]}
EOF2
ok_phase second Pending 30
like "$(task_field second .status.message)" "first" "a missing dependency is named"
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: first}
spec:
  shell: {command: ["sh", "-c", "echo '{\"word\":\"hello\"}' > \"$TASKED_OUTPUT\""]}
EOF2
ok_phase second Succeeded 30
is "$(task_field second .status.logTail)" "got hello after Succeeded" "outputs and phases of a dependency reach the command"

# --- Flow: a diamond with an output, a skipped branch and a join -------------------------------------
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Flow
metadata: {name: diamond}
spec:
  tasks:
    - name: a
      shell: {command: ["sh", "-c", "echo '{\"v\": 42}' > \"$TASKED_OUTPUT\""]}
    - name: b
      dependsOn: [a]
      shell: {command: ["echo", "b saw $(tasks.a.output.v)"]}
    - name: c
      dependsOn: [a]
      when: "tasks.a.output.v > 100"
      shell: {command: ["echo", "never"]}
    - name: d
      dependsOn: [b, c]
      env: [{name: B, value: "$(tasks.b.phase)/$(tasks.c.phase)"}]
      shell: {command: ["echo", "join $(B)"]}
EOF2
end=$(($(date +%s) + 60))
until [ "$(k get flow diamond -o jsonpath='{.status.phase}')" = Succeeded ] || [ "$(date +%s)" -ge "$end" ]; do sleep 0.3; done
is "$(k get flow diamond -o jsonpath='{.status.phase}')" "Succeeded" "the diamond Flow succeeds"
is "$(task_field diamond-b .status.logTail)" "b saw 42" "an output value flows downstream"
is "$(task_field diamond-c .status.phase)" "Skipped" "a false when skips the branch"
is "$(task_field diamond-d .status.logTail)" "join Succeeded/Skipped" "the join still runs after a skipped branch"
is "$(k get tasks -l tasked.dev/flow=diamond -o name | wc -l | tr -d ' ')" "4" "children are labelled tasked.dev/flow"
is "$(k get task diamond-a -o jsonpath='{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}')" "Flow/diamond" "children are owned by the Flow"
is "$(k get flow diamond -o jsonpath='{.status.counts.Succeeded}/{.status.counts.Skipped}')" "3/1" "Flow status counts phases"
is "$(k get flow diamond -o json | jq -cS '.status.counts')" '{"Skipped":1,"Succeeded":3}' \
	"... and only the phases its tasks are in now (no stale Pending or Running)"

# --- failFast ----------------------------------------------------------------------------------------
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Flow
metadata: {name: fragile}
spec:
  failFast: true
  tasks:
    - {name: breaks, shell: {command: ["false"]}}
    - {name: long, shell: {command: ["sleep", "4601"]}}
    - {name: after, dependsOn: [long], shell: {command: ["true"]}}
EOF2
end=$(($(date +%s) + 60))
until [ "$(k get flow fragile -o jsonpath='{.status.phase}')" = Failed ] || [ "$(date +%s)" -ge "$end" ]; do sleep 0.3; done
is "$(k get flow fragile -o jsonpath='{.status.phase}')" "Failed" "a failFast Flow fails"
is "$(task_field fragile-long .status.phase)" "Cancelled" "the running sibling was cancelled"
gone() { local end=$(($(date +%s) + 5)); while [ -n "$(tree_pids "$(cat "$STATE/runner.pid")" 'sleep 4601')" ]; do [ "$(date +%s)" -lt "$end" ] || return 1; sleep 0.1; done; }
ok "its process is gone" gone
like "$(task_field fragile-after .status.phase)" "Cancelled|Failed" "the task not yet started ended too"

# --- invalid graphs create nothing ---------------------------------------------------------------------
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Flow
metadata: {name: loop}
spec:
  tasks:
    - {name: p, dependsOn: [q], shell: {command: ["true"]}}
    - {name: q, dependsOn: [p], shell: {command: ["true"]}}
EOF2
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Flow
metadata: {name: typo}
spec:
  tasks:
    - {name: p, dependsOn: [nope], shell: {command: ["true"]}}
EOF2
end=$(($(date +%s) + 20))
until [ -n "$(k get flow loop -o jsonpath='{.status.reason}')" ] || [ "$(date +%s)" -ge "$end" ]; do sleep 0.3; done
is "$(k get flow loop -o jsonpath='{.status.reason}')" "Cycle" "a cycle is reported"
like "$(k get flow loop -o jsonpath='{.status.conditions[0].message}')" "cycle through task" "the condition names the cycle"
is "$(k get tasks -l tasked.dev/flow=loop -o name | wc -l | tr -d ' ')" "0" "a cyclic Flow creates nothing"
end=$(($(date +%s) + 20))
until [ -n "$(k get flow typo -o jsonpath='{.status.reason}')" ] || [ "$(date +%s)" -ge "$end" ]; do sleep 0.3; done
is "$(k get flow typo -o jsonpath='{.status.reason}')" "UnknownDependency" "an unknown dependency is reported"
like "$(k get flow typo -o jsonpath='{.status.message}')" "nope" "and named"

# --- deleting a Flow removes its children (also where the garbage collector does not run) ----------
k delete flow diamond >/dev/null
end=$(($(date +%s) + 20))
until [ "$(k get tasks -l tasked.dev/flow=diamond -o name | wc -l)" -eq 0 ] || [ "$(date +%s)" -ge "$end" ]; do sleep 0.3; done
is "$(k get tasks -l tasked.dev/flow=diamond -o name | wc -l | tr -d ' ')" "0" "the controller deleted the Flow's children"

# --- when: sandbox limits ------------------------------------------------------------------------------
deep=$(printf '(%.0s' $(seq 1 500))true$(printf ')%.0s' $(seq 1 500))
apply <<EOF2
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: too-deep}
spec:
  when: "$deep"
  shell: {command: ["true"]}
EOF2
ok_phase too-deep Failed 30
is "$(task_field too-deep .status.reason)" "ConditionError" "500 nested parentheses: ConditionError"
like "$(task_field too-deep .status.message)" "nesting" "the message says why, with a position"
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: frugal}
spec: {policy: {conditions: {maxCost: 50}}}
EOF2
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: too-costly}
spec:
  queue: frugal
  when: "[1,2,3,4,5,6,7,8,9,10] + [1,2,3,4,5,6,7,8,9,10] + [1,2,3,4,5,6,7,8,9,10] == [1] || 1 in [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30]"
  shell: {command: ["true"]}
EOF2
ok_phase too-costly Failed 30
like "$(task_field too-costly .status.message)" "cost" "an over-budget expression is refused by cost"
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: not-bool}
spec:
  when: "1 + 1"
  shell: {command: ["true"]}
EOF2
ok_phase not-bool Failed 30
like "$(task_field not-bool .status.message)" "bool" "a non-bool condition is a ConditionError"
is "$(curl -s -o /dev/null -w '%{http_code}' "$(cat "$STATE/api-url")/healthz")" "200" "the controller is unharmed"

# --- queue secrets -------------------------------------------------------------------------------------
canary="canary-$(openssl rand -hex 12)"
k create secret generic vault --from-literal=token="$canary" >/dev/null
k label secret vault tasked.dev/queue-secret=true >/dev/null
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: secretive}
spec:
  secrets: [{name: api-token, secretKeyRef: {name: vault, key: token}}]
EOF2
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: uses-secret}
spec:
  queue: secretive
  env: [{name: TOKEN, valueFrom: {queueSecret: api-token}}]
  shell: {command: ["sh", "-c", "printf %s \"$TOKEN\" | wc -c; echo \"leak:$TOKEN\""]}
EOF2
ok_phase uses-secret Succeeded 30
tail=$(task_field uses-secret .status.logTail)
is "$(head -1 <<<"$tail" | tr -d ' ')" "${#canary}" "the secret reaches the task (length ${#canary})"
is "$(sed -n 2p <<<"$tail")" "leak:***" "a secret the task prints is masked in logTail"
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: secret-in-argv}
spec:
  queue: secretive
  env: [{name: TOKEN, valueFrom: {queueSecret: api-token}}]
  shell: {command: ["echo", "token=$(TOKEN)"]}
EOF2
ok_phase secret-in-argv Failed 30
is "$(task_field secret-in-argv .status.reason)" InvalidSpec "\$(SECRET) in a command argument (public in /proc/PID/cmdline): InvalidSpec"
like "$(task_field secret-in-argv .status.message)" 'command\[1\] uses the secret \$\(TOKEN\)' "... the message names the argument and the variable"
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: undeclared}
spec:
  queue: secretive
  env: [{name: TOKEN, valueFrom: {queueSecret: not-declared}}]
  shell: {command: ["true"]}
EOF2
ok_phase undeclared Failed 30
is "$(task_field undeclared .status.reason)" "SecretNotFound" "an undeclared queue secret: SecretNotFound"
sleep 1
nok "the canary is not in the Task as stored" grep -q "$canary" <(k get tasks -o yaml)
nok "nor in any event" grep -q "$canary" <(k get events -A -o yaml)
nok "nor in the controller's log" grep -q "$canary" "$STATE/controller.log"
nok "nor in the runner's log" grep -q "$canary" "$STATE/runner.log"

done_testing
