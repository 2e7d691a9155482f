#!/usr/bin/env bash
# Lifecycle controls: cancel, delete and timeout kill the whole process tree; retries with
# backoff, onExitCodes and RetriesExhausted; ttlSecondsAfterFinished; Events.
# (The tasks below run /bin/sh explicitly as their program to make grandchildren; Tasked itself
# never wraps argv in a shell.)
. "$(dirname "$0")/lib.sh"
test_namespace lifecycle

apply() { k apply -f - >/dev/null; }
# A distinctive sleep duration per test identifies its processes below the suite's runner.
STATE=${TASKED_STATE_DIR:-.tasked}
case "$STATE" in /*) ;; *) STATE=$IT_ROOT/$STATE ;; esac
procs() { tree_pids "$(cat "$STATE/runner.pid")" "sleep $1[0-9]" | wc -l; }
wait_procs_gone() { # PATTERN TIMEOUT
	local end=$(($(date +%s) + $2))
	while [ "$(procs "$1")" -ne 0 ]; do
		if [ "$(date +%s)" -ge "$end" ]; then
			ps -eo pid,ppid,pgid,sid,user,stat,etime,cmd | grep -E "sleep $1[0-9]" | grep -v grep
			return 1
		fi
		sleep 0.1
	done
}
wait_procs_up() { # PATTERN COUNT TIMEOUT
	local end=$(($(date +%s) + $3))
	while [ "$(procs "$1")" -lt "$2" ]; do
		[ "$(date +%s)" -lt "$end" ] || return 1
		sleep 0.1
	done
}
now_ms() { date +%s%3N; }

# --- cancel -------------------------------------------------------------------------------------
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: cancel-me}
spec:
  shell: {command: ["sh", "-c", "sleep 4101 & sleep 4102; wait"]}
EOF2
ok_phase cancel-me Running 30
ok "child and grandchild are running" wait_procs_up 410 2 10
t0=$(now_ms)
k patch task cancel-me --type merge -p '{"spec":{"cancel":true}}' >/dev/null
ok_phase cancel-me Cancelled 10
elapsed=$(($(now_ms) - t0))
ok "cancelled within 2 s (${elapsed} ms)" test "$elapsed" -le 2000
is "$(task_field cancel-me .status.reason)" "Cancelled" "reason Cancelled"
ok "cancel leaves no process behind, grandchildren included" wait_procs_gone 410 5

apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: cancel-early}
spec:
  cancel: true
  shell: {command: ["echo", "never runs"]}
EOF2
ok_phase cancel-early Cancelled 10
like "$(task_field cancel-early .status.message)" "before it started" "a task cancelled before dispatch never runs"

# --- delete -------------------------------------------------------------------------------------
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: delete-me}
spec:
  shell: {command: ["sh", "-c", "sleep 4201 & sleep 4202; wait"]}
EOF2
ok_phase delete-me Running 30
ok "delete-me's processes are running" wait_procs_up 420 2 10
k delete task delete-me --wait=true >/dev/null
ok "deleting a running task kills its process tree" wait_procs_gone 420 5

# --- timeout ------------------------------------------------------------------------------------
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: too-slow}
spec:
  timeoutSeconds: 2
  shell: {command: ["sh", "-c", "sleep 4301 & sleep 4302; wait"]}
EOF2
ok_phase too-slow Failed 30
is "$(task_field too-slow .status.reason)" "TimedOut" "timeout gives reason TimedOut"
ok "timeout leaves no process behind" wait_procs_gone 430 5

# --- retries ------------------------------------------------------------------------------------
mark=$(mktemp -d /var/tmp/tasked-it-mark.XXXXXX) # not /tmp: each task has a private one
chmod 0777 "$mark"
apply <<EOF2
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: flaky}
spec:
  env: [{name: MARK, value: "$mark/flaky"}]
  retries: {limit: 3, backoff: {initialDelaySeconds: 1, factor: 2, jitter: false}}
  shell:
    command: ["sh", "-c", "echo run >> \"\$MARK\"; [ \$(wc -l < \"\$MARK\") -ge 3 ]"]
EOF2
ok_phase flaky Succeeded 60
is "$(task_field flaky .status.attempts)" "3" "failing twice then succeeding ends with attempts 3"
is "$(wc -l <"$mark/flaky" | tr -d ' ')" "3" "the program ran exactly three times"
hist=$(k get task flaky -o json | jq -c '.status.attemptHistory')
is "$(jq length <<<"$hist")" "3" "attemptHistory has the three attempts"
is "$(jq -r '[.[].reason] | join(",")' <<<"$hist")" "ExitCode,ExitCode,Succeeded" "history reasons"
# Backoff: 1 s then 2 s between an attempt's completion and the next start (timestamps, not sleeps).
gap() { # I: seconds between attempt I's completion and attempt I+1's start
	local c s
	c=$(jq -r ".[$1].completionTime" <<<"$hist")
	s=$(jq -r ".[$(($1 + 1))].startTime" <<<"$hist")
	echo $(($(date -d "$s" +%s) - $(date -d "$c" +%s)))
}
g1=$(gap 0)
g2=$(gap 1)
ok "first retry waited at least initialDelaySeconds=1 (${g1}s)" test "$g1" -ge 1
ok "second retry waited at least 2 s (factor 2) (${g2}s)" test "$g2" -ge 2

apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: hopeless}
spec:
  retries: {limit: 1, backoff: {initialDelaySeconds: 1, jitter: false}}
  shell: {command: ["getent", "initgroups"]}
EOF2
ok_phase hopeless Failed 60
is "$(task_field hopeless .status.reason)" "RetriesExhausted" "a spent budget ends with RetriesExhausted"
is "$(task_field hopeless .status.attempts)" "2" "limit 1 means two attempts"
is "$(task_field hopeless .status.exitCode)" "3" "the last exit code is kept"

apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: not-retried}
spec:
  retries: {limit: 3, onExitCodes: [7], backoff: {initialDelaySeconds: 1}}
  shell: {command: ["getent", "initgroups"]}
EOF2
ok_phase not-retried Failed 30
is "$(task_field not-retried .status.attempts)" "1" "exit code 3 is not in onExitCodes [7]: no retry"
is "$(task_field not-retried .status.reason)" "ExitCode" "reason stays ExitCode"

# --- ttlSecondsAfterFinished ---------------------------------------------------------------------
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: short-lived}
spec:
  ttlSecondsAfterFinished: 2
  shell: {command: ["true"]}
EOF2
ok_phase short-lived Succeeded 30
done_at=$(date +%s)
end=$((done_at + 20))
while k get task short-lived >/dev/null 2>&1 && [ "$(date +%s)" -lt "$end" ]; do sleep 0.2; done
gone_after=$(($(date +%s) - done_at))
nok "the task is deleted after ttlSecondsAfterFinished" k get task short-lived
ok "deleted on time (~2 s, took ${gone_after}s)" test "$gone_after" -ge 1 -a "$gone_after" -le 6

# --- Events -------------------------------------------------------------------------------------
evs=$(k get events --field-selector involvedObject.name=flaky -o jsonpath='{range .items[*]}{.reason}{"\n"}{end}' | sort | uniq | tr '\n' ' ')
like "$evs" "Started" "a Started event was recorded"
like "$evs" "Retrying" "Retrying events were recorded"
like "$evs" "Succeeded" "a Succeeded event was recorded"
evs=$(k get events --field-selector involvedObject.name=cancel-me -o jsonpath='{range .items[*]}{.reason}{" "}{end}')
like "$evs" "Cancelled" "a Cancelled event was recorded"

rm -rf "$mark"
done_testing
