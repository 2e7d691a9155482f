#!/usr/bin/env bash
# Logs that survive a controller restart (--log-dir): a 13,900-byte log comes back whole after
# kill -9 and a new start, with truncated false; a log over the per-task bound says it was
# truncated and by how many bytes; a task's file goes with the task (deleted while the
# controller runs, or while it is down: the sweep at start). Without --log-dir the answer after a
# restart is status.logTail, and it says that bytes may be missing.
. "$(dirname "$0")/lib.sh"
. "$IT_ROOT/tests/cluster/lib.sh"
. "$IT_ROOT/tests/tools/apitest.sh"
test_namespace logs-restart
CTL=${TASKED_BIN_DIR:-$IT_ROOT/bin}/tasked-controller
LOGDIR=$STATE/it-logdir
rm -rf "$LOGDIR"
mkdir -p "$LOGDIR"
cleanup() {
	stop_pidfile "$STATE/controller.pid" "$CTL" tasked-controller 5 >/dev/null 2>&1
	TASKED_CONTROLLER_ARGS= "$IT_ROOT/tests/cluster/up.sh" >/dev/null 2>&1
	rm -rf "$LOGDIR"
	_cleanup_namespace
}
trap cleanup EXIT
L=$API/api/v1/namespaces/$TEST_NS/tasks
ARGS="--log-dir $LOGDIR --log-store-task-kib 64"
restart() { # [ARGS]: kill -9 the controller and start it again (as make up does)
	local old
	old=$(controller_pid)
	kill -9 "$old"
	while kill -0 "$old" 2>/dev/null; do sleep 0.1; done
	TASKED_CONTROLLER_ARGS=$1 "$IT_ROOT/tests/cluster/up.sh" >/dev/null 2>&1 && test "$(controller_pid)" != "$old"
}
ok "the controller runs with --log-dir" restart "$ARGS"

# 139 lines of 100 bytes: 13,900 bytes, more than status.logTail's 4 KiB.
k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: big}
spec:
  shell: {command: ["sh", "-c", "i=0; while [ $i -lt 139 ]; do printf '%099d\\n' $i; i=$((i+1)); done"]}
EOF2
# 100 KB, over the 64 KiB bound.
k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: huge}
spec:
  shell: {command: ["sh", "-c", "i=0; while [ $i -lt 1000 ]; do printf '%099d\\n' $i; i=$((i+1)); done"]}
EOF2
ok_phase big Succeeded 60
ok_phase huge Succeeded 60
expect=$(i=0; while [ $i -lt 139 ]; do printf '%099d\n' $i; i=$((i+1)); done)
uid=$(task_field big .metadata.uid)
huid=$(task_field huge .metadata.uid)
ok "the big task's log is in a file named by its UID" test -s "$LOGDIR/$uid.log"
is "$(stat -c %a "$LOGDIR/$uid.log")" 600 "... readable by the controller alone"

ok "kill -9 and a new start" restart "$ARGS"
j=$(acurl "$L/big/logs?format=json")
is "$(jq -r '[.source, (.truncated|tostring), (.droppedBytes|tostring), (.complete|tostring)] | join(" ")' <<<"$j")" \
	"store false 0 true" "after the restart: from the store, not truncated, complete"
is "$(jq -r '.log | length' <<<"$j")" 13900 "all 13900 bytes come back"
ok "... byte for byte" test "$(jq -r .log <<<"$j")" = "$expect"
is "$(acurl -D "$STATE/it-h" "$L/big/logs" | wc -c)" 13900 "the text answer has them too"
like "$(tr -d '\r' <"$STATE/it-h")" 'x-tasked-log-truncated: false' "... with X-Tasked-Log-Truncated: false"

j=$(acurl "$L/huge/logs?format=json")
got=$(jq -r '.log | length' <<<"$j")
dropped=$(jq -r .droppedBytes <<<"$j")
is "$(jq -r '.truncated' <<<"$j")" true "a log over the 64 KiB bound is truncated: true"
# The bound counts whole chunks (as the runner sent them) with their overhead: what is kept is the
# newest chunks that fit.
ok "it keeps the end, within the bound ($got bytes)" test "$got" -le 65536 -a "$got" -gt 0
is "$((got + dropped))" 100000 "droppedBytes says how many are missing ($dropped + $got = 100000)"
like "$(jq -j .log <<<"$j" | tail -1)" '^0+999$' "... the last line is there"
like "$(jq -j .log <<<"$j" | head -1)" '^[0-9]+$' "... and nothing else"
acurl -D "$STATE/it-h" -o /dev/null "$L/huge/logs"
like "$(tr -d '\r' <"$STATE/it-h")" "x-tasked-log-dropped-bytes: $dropped" "the text answer says the count in X-Tasked-Log-Dropped-Bytes"
ok "the file stays bounded ($(stat -c %s "$LOGDIR/$huid.log") bytes)" test "$(stat -c %s "$LOGDIR/$huid.log")" -le $((65536 * 3 / 2 + 4096))

# --- secrets stay masked on disk -----------------------------------------------------------------
canary="canary-$(openssl rand -hex 12)"
k create secret generic vault --from-literal=token="$canary" >/dev/null
k label secret vault tasked.dev/queue-secret=true >/dev/null
k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: secretive}
spec:
  secrets: [{name: api-token, secretKeyRef: {name: vault, key: token}}]
EOF2
k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: leaky}
spec:
  queue: secretive
  env: [{name: TOKEN, valueFrom: {queueSecret: api-token}}]
  shell: {command: ["sh", "-c", "echo \"leak:$TOKEN\"; echo \"leak again:$TOKEN\" >&2"]}
EOF2
ok_phase leaky Succeeded 30
luid=$(task_field leaky .metadata.uid)
ok "restart" restart "$ARGS"
is "$(acurl "$L/leaky/logs" | sort | tr '\n' ' ')" "leak again:*** leak:*** " "a printed queue secret comes back masked after the restart"
ok "the log file has the masked line" grep -q 'leak:\*\*\*' "$LOGDIR/$luid.log"
nok "... and never the secret" grep -rq "$canary" "$LOGDIR"

# --- retention follows the Task -------------------------------------------------------------------
k delete task huge >/dev/null
gone() { ! test -e "$1"; }
ok "deleting a Task deletes its log file" wait_for 20 gone "$LOGDIR/$huid.log"
kill -9 "$(controller_pid)"
k delete task big >/dev/null
ok "a Task deleted while the controller was down..." test -e "$LOGDIR/$uid.log"
TASKED_CONTROLLER_ARGS=$ARGS "$IT_ROOT/tests/cluster/up.sh" >/dev/null 2>&1
ok "... has its file swept at the next start" wait_for 20 gone "$LOGDIR/$uid.log"
like "$(cat "$STATE/controller.log")" '"msg":"dropped the stored logs of tasks deleted while the controller was away"' \
	"the sweep is logged"

# --- without --log-dir: the answer after a restart is the status's tail, and says so -------------
k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: big2}
spec:
  shell: {command: ["sh", "-c", "i=0; while [ $i -lt 139 ]; do printf '%099d\\n' $i; i=$((i+1)); done"]}
EOF2
ok_phase big2 Succeeded 60
ok "restart without --log-dir" restart ""
j=$(acurl "$L/big2/logs?format=json")
is "$(jq -r '[.source, (.truncated|tostring), (.droppedBytes|tostring)] | join(" ")' <<<"$j")" "logTail true null" \
	"memory only: the 4 KiB tail, truncated true, droppedBytes null (unknown)"
done_testing
