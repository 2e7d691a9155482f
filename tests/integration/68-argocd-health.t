#!/usr/bin/env bash
# The Argo CD health checks in deploy/argocd/ on real objects in each phase: each object is
# brought to the phase on the cluster, read back with kubectl get -o json, and the script is run
# by Debian's Lua 5.1 (the Lua of Argo CD's gopher-lua) the way Argo CD runs it
# (tests/argocd/health.lua). The table kind x phase -> health is in docs/install.md.
. "$(dirname "$0")/lib.sh"
test_namespace argocd

command -v lua5.1 >/dev/null || { echo "Bail out! lua5.1 is required (tests/deps.sh)"; exit 255; }
lua5.1 -e 'require("cjson")' || { echo "Bail out! lua-cjson is required (tests/deps.sh)"; exit 255; }
apply() { k apply -f - >/dev/null; }
# health KIND NAME: "STATUS<TAB>MESSAGE" of the live object.
health() {
	k get "$1" "$2" -o json | lua5.1 "$IT_ROOT/tests/argocd/health.lua" "$IT_ROOT/deploy/argocd/tasked.dev/$1/health.lua"
}
# phase_is KIND NAME PHASE
phase_is() { [ "$(k get "$1" "$2" -o jsonpath='{.status.phase}')" = "$3" ]; }
# check KIND NAME PHASE HEALTH MESSAGE-ERE: wait for PHASE, then the script says HEALTH.
check() {
	ok "$1 $2 reaches $3" wait_for 90 phase_is "$1" "$2" "$3"
	local h
	h=$(health "$1" "$2")
	is "${h%%$'\t'*}" "$4" "$1 $3 -> $4"
	like "${h#*$'\t'}" "$5" "... message: ${h#*$'\t'}"
}

# --- Task ------------------------------------------------------------------------------------------
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: long}
spec: {shell: {command: [sleep, "600"]}}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: after-long}
spec: {dependsOn: [long], shell: {command: ["true"]}}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: nowhere}
spec: {runnerSelector: {pool: nowhere}, shell: {command: ["true"]}}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: good}
spec: {shell: {command: ["true"]}}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: bad}
spec: {shell: {command: ["false"]}}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: skipped}
spec: {dependsOn: [good], when: "tasks.good.phase == 'Failed'", shell: {command: ["true"]}}
EOF2
# Pending is brief for a Task the controller sees at once: check the status-less object too.
is "$(printf '{"kind":"Task","metadata":{"name":"new"}}' | lua5.1 "$IT_ROOT/tests/argocd/health.lua" "$IT_ROOT/deploy/argocd/tasked.dev/Task/health.lua" | cut -f1)" \
	Progressing "Task without status -> Progressing"
check Task after-long Pending Progressing 'WaitingForDependencies|Pending'
check Task nowhere Queued Progressing '^Queued'
check Task long Running Progressing '^Running'
check Task good Succeeded Healthy '.'
check Task bad Failed Degraded '^Failed: '
check Task skipped Skipped Healthy '^Skipped: '
k patch task long --type merge -p '{"spec":{"cancel":true}}' >/dev/null
check Task long Cancelled Degraded '^Cancelled'

# --- Flow ------------------------------------------------------------------------------------------
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Flow
metadata: {name: running}
spec:
  tasks:
    - {name: a, shell: {command: [sleep, "600"]}}
---
apiVersion: tasked.dev/v1alpha1
kind: Flow
metadata: {name: fine}
spec:
  tasks:
    - {name: a, shell: {command: ["true"]}}
    - {name: b, dependsOn: [a], shell: {command: ["true"]}}
---
apiVersion: tasked.dev/v1alpha1
kind: Flow
metadata: {name: broken}
spec:
  tasks:
    - {name: a, shell: {command: ["false"]}}
---
apiVersion: tasked.dev/v1alpha1
kind: Flow
metadata: {name: cyclic}
spec:
  tasks:
    - {name: a, dependsOn: [b], shell: {command: ["true"]}}
    - {name: b, dependsOn: [a], shell: {command: ["true"]}}
---
apiVersion: tasked.dev/v1alpha1
kind: Flow
metadata: {name: stopped}
spec:
  tasks:
    - {name: a, shell: {command: [sleep, "600"]}}
---
apiVersion: tasked.dev/v1alpha1
kind: Flow
metadata: {name: waiting}
spec:
  tasks:
    - {name: a, runnerSelector: {pool: nowhere}, shell: {command: ["true"]}}
EOF2
is "$(printf '{"kind":"Flow","metadata":{"name":"new"}}' | lua5.1 "$IT_ROOT/tests/argocd/health.lua" "$IT_ROOT/deploy/argocd/tasked.dev/Flow/health.lua" | cut -f1)" \
	Progressing "Flow without status -> Progressing"
is "$(printf '{"kind":"Flow","metadata":{"name":"new"},"status":{"phase":"Pending","reason":"Pending","message":"0 of 2 tasks finished"}}' | lua5.1 "$IT_ROOT/tests/argocd/health.lua" "$IT_ROOT/deploy/argocd/tasked.dev/Flow/health.lua" | cut -f1)" \
	Progressing "Flow Pending -> Progressing"
check Flow running Running Progressing '^Running'
check Flow waiting Running Progressing '^Running'
check Flow fine Succeeded Healthy '.'
check Flow broken Failed Degraded '^Failed: TaskFailed'
check Flow cyclic Failed Degraded '^Failed: .*cycle'
ok "Flow stopped starts its task" wait_for 60 phase_is task stopped-a Running
k patch task stopped-a --type merge -p '{"spec":{"cancel":true}}' >/dev/null
check Flow stopped Cancelled Degraded '^Cancelled: TaskCancelled'

# --- TaskQueue -------------------------------------------------------------------------------------
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: default}
spec: {concurrency: 4}
---
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: idle-pool}
spec: {runnerSelector: {pool: scaled-to-zero}}
---
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: stuck}
spec: {runnerSelector: {pool: scaled-to-zero}}
---
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: frozen}
spec: {policy: {executors: []}}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: in-stuck}
spec: {queue: stuck, shell: {command: ["true"]}}
EOF2
is "$(printf '{"kind":"TaskQueue","metadata":{"name":"new","generation":1}}' | lua5.1 "$IT_ROOT/tests/argocd/health.lua" "$IT_ROOT/deploy/argocd/tasked.dev/TaskQueue/health.lua" | cut -f1)" \
	Progressing "TaskQueue without status -> Progressing"
qh() { [ "$(health TaskQueue "$1" | cut -f1)" = "$2" ]; }
ok "TaskQueue with matching runners -> Healthy" wait_for 60 qh default Healthy
like "$(health TaskQueue default | cut -f2)" 'running' "... message: $(health TaskQueue default | cut -f2)"
ok "TaskQueue without matching runners, nothing waiting -> Healthy" wait_for 60 sh -c \
	"[ \"\$(kubectl get taskqueue idle-pool -n $TEST_NS -o jsonpath='{.status.conditions[0].status}')\" = False ] && [ \"\$(kubectl get taskqueue idle-pool -n $TEST_NS -o json | lua5.1 '$IT_ROOT/tests/argocd/health.lua' '$IT_ROOT/deploy/argocd/tasked.dev/TaskQueue/health.lua' | cut -f1)\" = Healthy ]"
like "$(health TaskQueue idle-pool | cut -f2)" 'NoMatchingRunner' "... message: $(health TaskQueue idle-pool | cut -f2)"
ok "TaskQueue without matching runners and a waiting task -> Degraded" wait_for 60 qh stuck Degraded
like "$(health TaskQueue stuck | cut -f2)" 'NoMatchingRunner: .*1 queued|NoMatchingRunner: .*1 pending' "... message: $(health TaskQueue stuck | cut -f2)"
ok "TaskQueue whose configuration lets no task run (Stalled) -> Degraded" wait_for 60 qh frozen Degraded
like "$(health TaskQueue frozen | cut -f2)" '^InvalidSpec: .*executors is empty' "... message: $(health TaskQueue frozen | cut -f2)"

# --- RunnerPool ------------------------------------------------------------------------------------
# No kubelet here: a pool's pods never run, so a pool that must keep a runner stays starting.
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: RunnerPool
metadata: {name: idle}
spec: {image: "debian-python:test", labels: {pool: idle}, minRunners: 0, maxRunners: 2}
---
apiVersion: tasked.dev/v1alpha1
kind: RunnerPool
metadata: {name: starting}
spec: {image: "debian-python:test", labels: {pool: starting}, minRunners: 1, maxRunners: 2}
---
apiVersion: tasked.dev/v1alpha1
kind: RunnerPool
metadata: {name: invalid}
spec:
  image: "debian-python:test"
  volumes: [{name: scratch, mountPath: /tmp, emptyDir: {}}]
EOF2
ph() { [ "$(health RunnerPool "$1" | cut -f1)" = "$2" ]; }
is "$(printf '{"kind":"RunnerPool","metadata":{"name":"new","generation":1}}' | lua5.1 "$IT_ROOT/tests/argocd/health.lua" "$IT_ROOT/deploy/argocd/tasked.dev/RunnerPool/health.lua" | cut -f1)" \
	Progressing "RunnerPool without status -> Progressing"
ok "RunnerPool scaled to zero (minRunners 0, no work) -> Healthy" wait_for 60 ph idle Healthy
like "$(health RunnerPool idle | cut -f2)" '^0 ready, 0 desired' "... message: $(health RunnerPool idle | cut -f2)"
ok "RunnerPool starting its runners (minRunners 1, none connected) -> Progressing" wait_for 60 sh -c \
	"kubectl get runnerpool starting -n $TEST_NS -o jsonpath='{.status.observedGeneration}' | grep -q 1 && [ \"\$(kubectl get runnerpool starting -n $TEST_NS -o json | lua5.1 '$IT_ROOT/tests/argocd/health.lua' '$IT_ROOT/deploy/argocd/tasked.dev/RunnerPool/health.lua' | cut -f1)\" = Progressing ]"
like "$(health RunnerPool starting | cut -f2)" '^Scaling: 1 runners wanted, 0 connected' "... message: $(health RunnerPool starting | cut -f2)"
ok "RunnerPool with an invalid spec (Stalled) -> Degraded" wait_for 60 ph invalid Degraded
like "$(health RunnerPool invalid | cut -f2)" "^InvalidSpec: .*mountPath /tmp is the runner's own" "... message: $(health RunnerPool invalid | cut -f2)"

# --- the argocd-cm snippet in docs/install.md is the scripts -----------------------------------------
for kind in Task Flow TaskQueue RunnerPool; do
	got=$(awk -v key="  resource.customizations.health.tasked.dev_$kind: |" '
		$0 == key { on = 1; next }
		on && /^  [^ ]/ { on = 0 } on && /^```/ { on = 0 }
		on { sub(/^    /, ""); print }' "$IT_ROOT/docs/install.md")
	is "$got" "$(cat "$IT_ROOT/deploy/argocd/tasked.dev/$kind/health.lua")" "docs/install.md's argocd-cm has deploy/argocd/tasked.dev/$kind/health.lua verbatim"
done

done_testing
