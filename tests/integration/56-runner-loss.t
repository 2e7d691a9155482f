#!/usr/bin/env bash
# Runner loss: with two runners up, kill -9 the one running a task. The task is re-dispatched
# to the other runner without using its retry budget.
. "$(dirname "$0")/lib.sh"
. "$IT_ROOT/tests/cluster/lib.sh"
test_namespace runnerloss

STATE=${TASKED_STATE_DIR:-.tasked}
case "$STATE" in /*) ;; *) STATE=$IT_ROOT/$STATE ;; esac
. "$STATE/tasked-ports.env"
RUN=$IT_ROOT/bin/tasked-runner
cleanup() {
	[ -s "$STATE/runner-2.pid" ] && kill -9 "$(cat "$STATE/runner-2.pid")" 2>/dev/null
	rm -f "$STATE/runner-2.pid"
	"$IT_ROOT/tests/cluster/up.sh" >/dev/null 2>&1   # restarts the suite's runner if it was the one killed
	_cleanup_namespace
}
trap cleanup EXIT

start_bg "$STATE/runner-2.pid" "$STATE/runner-2.log" "$RUN" --id it-runner-2 \
	--controller "ws://127.0.0.1:$BROKER_PORT" --token-file "$STATE/runner-token" --labels pool=default
for _ in $(seq 1 50); do grep -q '"runner connected","runner":"it-runner-2"' "$STATE/controller.log" && break; sleep 0.1; done
ok "a second runner connected" grep -q '"runner connected","runner":"it-runner-2"' "$STATE/controller.log"

k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: survivor}
spec:
  retries: {limit: 0}
  shell: {command: ["sh", "-c", "sleep 4; echo finished"]}
EOF2
ok_phase survivor Running 30
first=$(task_field survivor .status.runner)
if [ "$first" = it-runner-2 ]; then victim=$(cat "$STATE/runner-2.pid"); else victim=$(cat "$STATE/runner.pid"); fi
diag "killing runner $first (pid $victim)"
kill -9 "$victim"

ok_phase survivor Succeeded 90
second=$(task_field survivor .status.runner)
ok "it finished on the other runner ($first -> $second)" test -n "$second" -a "$second" != "$first"
is "$(task_field survivor .status.attempts)" "2" "two attempts"
reasons=$(k get task survivor -o json | jq -r '[.status.attemptHistory[].reason] | join(",")')
is "$reasons" "RunnerLost,Succeeded" "attemptHistory shows RunnerLost, then Succeeded"
is "$(task_field survivor .status.logTail)" "finished" "the second attempt's output"

done_testing
