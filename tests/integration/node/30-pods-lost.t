#!/usr/bin/env bash
# Runners and controllers in pods that go away: a runner pool Deployment (another pod) reaches
# the controller through the broker Service's name; deleting the pool pod that runs a task gives
# RunnerLost and a retry on its replacement; deleting the controller pod loses no task.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/lib-node.sh"
test_namespace podslost

ok "helm upgrade adds a runner pool" "$HELM" upgrade "$RELEASE" "$IT_ROOT/charts/tasked" \
	--namespace "$NAMESPACE" --reuse-values --wait --timeout 3m \
	--set 'pools[0].name=p1' --set 'pools[0].replicas=1' --set 'pools[0].labels.pool=p1'
pool_pod() { running_pod tasked.dev/runner-pool=p1; }
ok "the pool pod is Ready" kr wait --for=condition=Ready pod -l tasked.dev/runner-pool=p1 --timeout=120s
args=$(kr get pods -l tasked.dev/runner-pool=p1 -o jsonpath='{.items[0].spec.containers[0].args}')
like "$args" "ws://$FULLNAME-broker\\.$NAMESPACE\\.svc[.:]" "the pool runner connects to the broker Service by name"

k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: onpool}
spec:
  runnerSelector: {pool: p1}
  shell: {command: ["echo", "from the pool"]}
EOF2
ok_phase onpool Succeeded 120
p1=$(pool_pod)
like "$(task_field onpool .status.runner)" "^$p1-" "it ran in the pool pod $p1"

# --- a runner pod is deleted while it runs a task --------------------------------------------------
k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: lost}
spec:
  runnerSelector: {pool: p1}
  retries: {limit: 0}
  shell: {command: ["sh", "-c", "sleep 15; echo finished"]}
EOF2
ok_phase lost Running 60
first=$(task_field lost .status.runner)
diag "deleting pool pod $p1 (task on $first)"
kr delete pod "$p1" --grace-period=1 --wait=false >/dev/null
ok_phase lost Succeeded 180
second=$(task_field lost .status.runner)
ok "it finished on the replacement pod ($first -> $second)" test -n "$second" -a "$second" != "$first"
reasons=$(k get task lost -o json | jq -r '[.status.attemptHistory[].reason] | join(",")')
is "$reasons" "RunnerLost,Succeeded" "attemptHistory shows RunnerLost, then Succeeded"

# --- the controller pod is deleted while a task runs in its sidecar ------------------------------
k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: survives}
spec:
  runnerSelector: {pool: default}
  shell: {command: ["sh", "-c", "sleep 5; echo done"]}
EOF2
ok_phase survives Running 60
old=$(controller_pod)
diag "deleting controller pod $old"
kr delete pod "$old" --wait=false >/dev/null
ok_phase survives Succeeded 240
attempts=$(task_field survives .status.attempts)
ok "it finished or was retried once (attempts: $attempts)" test "${attempts:-0}" -ge 1 -a "${attempts:-0}" -le 2
new=$(controller_pod)
ok "a new controller pod took over ($old -> $new)" test -n "$new" -a "$new" != "$old"

done_testing
