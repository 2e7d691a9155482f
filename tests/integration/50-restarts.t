#!/usr/bin/env bash
# Survival: the controller killed with SIGKILL mid-flight (no task lost, none run twice), the
# API server restarted under a watch, and a forced 410 Gone that makes the informer relist.
. "$(dirname "$0")/lib.sh"
test_namespace restarts

STATE=${TASKED_STATE_DIR:-.tasked}
case "$STATE" in /*) ;; *) STATE=$IT_ROOT/$STATE ;; esac
. "$STATE/ports.env"
up() { "$IT_ROOT/tests/cluster/up.sh" >/dev/null 2>&1; }
all_phase() { # PHASE COUNT TIMEOUT: wait until COUNT tasks in the namespace have PHASE
	local end=$(($(date +%s) + $3)) n
	while :; do
		n=$(k get tasks -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}' | grep -c "^$1\$")
		[ "$n" -ge "$2" ] && return 0
		[ "$(date +%s)" -lt "$end" ] || { diag "only $n of $2 tasks are $1"; return 1; }
		sleep 0.5
	done
}

# --- kill -9 the controller with 40 tasks in flight ----------------------------------------------
mark=$(mktemp -d /var/tmp/tasked-it-restart.XXXXXX) # not /tmp: each task has a private one
chmod 0777 "$mark"
for i in $(seq 1 40); do
	cat <<EOF2
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: t$i}
spec:
  env: [{name: MARK, value: "$mark"}]
  shell: {command: ["sh", "-c", "echo ran >> \"\$MARK/\$TASKED_TASK_NAME\"; sleep 2"]}
EOF2
done | k apply -f - >/dev/null
ok "some tasks are running" all_phase Running 1 30
old_pid=$(cat "$STATE/controller.pid")
kill -9 "$old_pid"
running=$(k get tasks -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}' | grep -c Running)
diag "controller killed with $running tasks Running"
sleep 1
ok "make up restarts the controller" up
ok "a new controller process runs" test "$(cat "$STATE/controller.pid")" != "$old_pid"
ok "all 40 tasks end Succeeded" all_phase Succeeded 40 120
runs=$(cat "$mark"/t* | wc -l)
files=$(find "$mark" -type f -name 't*' | wc -l)
is "$files" "40" "every task ran"
is "$runs" "40" "no task ran twice (40 runs for 40 tasks)"
twice=$(grep -lc . "$mark"/t* | xargs -r wc -l | awk '$1 > 1 && $2 != "total"' | wc -l)
is "$twice" "0" "no marker file has two lines"
rm -rf "$mark"

# --- kube-apiserver restarted under the watch ------------------------------------------------------
kill "$(cat "$STATE/kube-apiserver.pid")"
while kill -0 "$(cat "$STATE/kube-apiserver.pid")" 2>/dev/null; do sleep 0.1; done
ok "kube-apiserver restarted" "$IT_ROOT/tests/cluster/controlplane.sh" start "$STATE"
# /readyz can pass a moment before the CRD handlers serve again.
crd_served() { local end=$(($(date +%s) + 60)); until k get tasks >/dev/null 2>&1; do [ "$(date +%s)" -lt "$end" ] || return 1; sleep 0.2; done; }
ok "Tasks are served again" crd_served
for i in 1 2 3; do
	k apply -f - >/dev/null <<EOF2
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: during-outage-$i}
spec:
  shell: {command: ["echo", "created right after the API server came back"]}
EOF2
done
for i in 1 2 3; do ok_phase "during-outage-$i" Succeeded 90; done

# --- 410 Gone: compact etcd past the controller's resourceVersion --------------------------------
cpid=$(cat "$STATE/controller.pid")
kill -STOP "$cpid"
k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: after-compaction}
spec:
  shell: {command: ["echo", "seen after a relist"]}
EOF2
# The stopped controller may still receive that task's event from its socket buffer; changes to
# other kinds move etcd's revision past anything the controller can have seen.
k create configmap "bump-$RANDOM" >/dev/null
k create configmap "bump-$RANDOM" >/dev/null
rev=$(curl -s -XPOST "http://127.0.0.1:$ETCD_PORT/v3/kv/range" -d '{"key":"AA=="}' | jq -r '.header.revision')
compacted=$(curl -s -XPOST "http://127.0.0.1:$ETCD_PORT/v3/kv/compaction" -d "{\"revision\":\"$rev\",\"physical\":true}")
like "$compacted" '"header"' "etcd compacted at revision $rev"
# A fresh API server has a watch cache that starts now, so the stopped controller's old
# resourceVersion is too old to resume from.
kill "$(cat "$STATE/kube-apiserver.pid")"
while kill -0 "$(cat "$STATE/kube-apiserver.pid")" 2>/dev/null; do sleep 0.1; done
"$IT_ROOT/tests/cluster/controlplane.sh" start "$STATE" >/dev/null
crd_served
before=$(grep -c '"msg":"relist after 410 Gone"' "$STATE/controller.log")
kill -CONT "$cpid"
ok_phase after-compaction Succeeded 90
# The re-watch from the old resourceVersion must now be refused with 410 and answered by a relist.
relisted() { test "$(grep -c '"msg":"relist after 410 Gone"' "$STATE/controller.log")" -gt "$before"; }
end=$(($(date +%s) + 60))
until relisted || [ "$(date +%s)" -ge "$end" ]; do sleep 0.2; done
after=$(grep -c '"msg":"relist after 410 Gone"' "$STATE/controller.log")
ok "the informer relisted after 410 Gone (log lines $before -> $after)" test "$after" -gt "$before"

done_testing
