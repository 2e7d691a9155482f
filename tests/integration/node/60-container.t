#!/usr/bin/env bash
# The container executor on a real node: a hardened Pod per attempt. Success with output and
# input, a non-zero exit, OOMKilled, timeout, cancel, policy refusals (image, volume), networking
# disabled (no connection to a pod or a Service) and enabled (the same connection works), output
# over the cap truncated and flagged, queue secrets masked and only referenced by the pod, a pod
# deleted by someone else (a lost attempt, retried), a controller killed while 10 container
# tasks run (each runs exactly once), a Flow passing output from a shell task to a container
# task, and the API writes one container task costs (apiserver_request_total).
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/lib-node.sh"
test_namespace ctr

IMG=$TOOLS_IMAGE
SH=/usr/local/bin/sh
API=$(cat "$STATE/api-url")
api_logs() { printf 'X-API-Key: %s\n' "$(cat "$STATE/api-key")" | curl -fsS --max-time 10 -H @- "$API/api/v1/namespaces/$TEST_NS/tasks/$1/logs"; }
task_pods() { k get pods -l "tasked.dev/task-uid=$(task_field "$1" .metadata.uid)" -o name 2>/dev/null | grep -c . || true; }

k apply -f - >/dev/null <<EOF2
apiVersion: v1
kind: Secret
metadata: {name: creds, labels: {tasked.dev/queue-secret: "true"}}
stringData: {token: s3cr3t-Value-42}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings-ok}
data: {mode: fast}
---
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: default}
spec:
  concurrency: 20
  secrets: [{name: tok, secretKeyRef: {name: creds, key: token}}]
  policy:
    executors: [shell, container]
    container:
      imageAllowlist: ["${IMG%%:*}:*"]
      volumeAllowlist: [{configMap: settings-ok, mountPath: /etc/ok}]
      maxOutputBytes: 2000
      defaultResources: {cpu: 100m, memory: 32Mi}
      maxResources: {cpu: "1", memory: 256Mi}
---
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: net}
spec:
  policy:
    executors: [container]
    container: {imageAllowlist: ["$IMG"], networkDisabled: false}
EOF2
# (A 20 s bound for the network gate, so the task whose egress another policy allows fails
# within the test; kube-router enforces a new pod's deny-all within a few seconds.)
ok "the queue secret's RBAC lets the controller read Secrets here" "$HELM" upgrade "$RELEASE" \
	"$IT_ROOT/charts/tasked" --namespace "$NAMESPACE" --reuse-values --wait --timeout 3m \
	--set "rbac.secretNamespaces={$TEST_NS}" --set "controller.extraArgs={--pod-network-gate-seconds=20}"
# The new flag rolls the controller out: wait until the old pod is gone (object and all), so its
# deletion is not counted as a write of the first container task below.
ok "the controller's rollout is complete (one pod left)" wait_for 120 sh -c \
	"[ \$(kubectl --kubeconfig $KUBECONFIG -n $NAMESPACE get pods -l app.kubernetes.io/component=controller -o name | grep -c .) = 1 ]"

ctask() { # NAME QUEUE SCRIPT [EXTRA_SPEC_YAML]
	k apply -f - >/dev/null <<EOF2
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: $1}
spec:
  queue: $2
  container: {image: $IMG, command: [$SH, -c, '$3']}
${4:-}
EOF2
}

# --- success, input, output, the pod ---------------------------------------------------------------
w0=$(k get --raw /metrics 2>/dev/null | grep '^apiserver_request_total' || true)
ctask hello default 'cat $TASKED_INPUT; echo; echo "{\"sum\": 3, \"user\": \"$(id -u)\"}" > $TASKED_OUTPUT' \
	'  input: {a: 1, b: 2}'
ok_phase hello Succeeded 180
is "$(task_field hello .status.output.sum)" 3 "the output is the JSON the task wrote to \$TASKED_OUTPUT"
is "$(task_field hello .status.output.user)" 65532 "the task ran as uid 65532"
like "$(task_field hello .status.logTail)" '\{"a":1,"b":2\}' "the input reached the task as the file \$TASKED_INPUT"
like "$(api_logs hello)" '\{"a":1,"b":2\}' "the full log is served by the controller API"
like "$(task_field hello .status.runner)" '^pod/hello-1-' "the runner is the attempt's pod"
ok "the pod is deleted after the result" wait_for 30 sh -c "[ \$(kubectl --kubeconfig $KUBECONFIG -n $TEST_NS get pods -o name | grep -c hello-1-) = 0 ]"
ok "the namespace got the deny-all NetworkPolicy" k get networkpolicy tasked-deny-all
is "$(k get networkpolicy tasked-deny-all -o jsonpath='{.spec.policyTypes}')" '["Ingress","Egress"]' "... denying ingress and egress"
w1=$(k get --raw /metrics 2>/dev/null | grep '^apiserver_request_total' || true)
# writes BEFORE AFTER: the increase of apiserver_request_total per group/resource/subresource/
# verb, for the writes the controller makes (Task status, Events, pods, NetworkPolicies).
writes() {
	awk '
		function key(l,  g, r, s, v) {
			match(l, /group="[^"]*"/); g = substr(l, RSTART + 7, RLENGTH - 8)
			match(l, /resource="[^"]*"/); r = substr(l, RSTART + 10, RLENGTH - 11)
			match(l, /subresource="[^"]*"/); s = RLENGTH > 0 ? substr(l, RSTART + 13, RLENGTH - 14) : ""
			match(l, /verb="[^"]*"/); v = substr(l, RSTART + 6, RLENGTH - 7)
			return v " " (g == "" ? "core" : g) "/" r (s == "" ? "" : "/" s)
		}
		/verb="(POST|PATCH|PUT|DELETE)"/ && (/group="tasked.dev"/ || /group="events.k8s.io"/ || /resource="networkpolicies"/ ||
			(/resource="pods"/ && /subresource=""/)) { d[key($0)] += (FILENAME == ARGV[2] ? $NF : -$NF) }
		END { for (k in d) if (d[k] > 0) printf "%s %d\n", k, d[k] }' <(printf '%s\n' "$1") <(printf '%s\n' "$2") | sort
}
wr=$(writes "$w0" "$w1")
diag "API writes while the first container task ran (verb group/resource[/subresource] count; the"
diag "events include the scheduler's Scheduled, the NetworkPolicy is once per namespace):"
diag "$wr"
n=$(awk '$1 == "PATCH" && $2 == "tasked.dev/tasks/status" { print $3 }' <<<"$wr")
ok "one container task: ${n:-0} status writes (Running, then the result; at most 2)" test "${n:-0}" -ge 1 -a "${n:-0}" -le 2
is "$(awk '$1 == "POST" && $2 == "core/pods" { print $3 }' <<<"$wr")" 1 "... one pod create"
is "$(awk '$1 == "DELETE" && $2 == "core/pods" { print $3 }' <<<"$wr")" 1 "... one pod delete (grace 0: no final DELETE from the kubelet)"

# A policy of the namespace that allows one task's egress: the deny-all cannot take effect for
# it, so its network gate never passes and the task fails without running (checked below; made after the write count above, which counts the whole namespace).
k apply -f - >/dev/null <<EOF2
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-leaky-egress}
spec:
  podSelector: {matchLabels: {tasked.dev/task: leaky}}
  policyTypes: [Egress]
  egress: [{}]
EOF2
ctask leaky default 'echo the task ran'

# --- the hardened pod, cancel ------------------------------------------------------------------------
ctask sleeper default 'sleep 300'
ok_phase sleeper Running 120
pod=$(k get pods -l "tasked.dev/task=sleeper" -o jsonpath='{.items[0].metadata.name}')
ok "the running attempt has its pod ($pod)" test -n "$pod"
spec=$(k get pod "$pod" -o json)
is "$(jq -r '.spec.securityContext | "\(.runAsNonRoot) \(.runAsUser):\(.runAsGroup) \(.seccompProfile.type)"' <<<"$spec")" \
	"true 65532:65532 RuntimeDefault" "pod: non-root 65532:65532, seccomp RuntimeDefault"
is "$(jq -r '.spec.containers[0].securityContext | "\(.readOnlyRootFilesystem) \(.allowPrivilegeEscalation) \(.capabilities.drop|join(","))"' <<<"$spec")" \
	"true false ALL" "container: read-only root, no privilege escalation, all capabilities dropped"
is "$(jq -r '"\(.spec.automountServiceAccountToken) \(.spec.enableServiceLinks) \(.spec.restartPolicy)"' <<<"$spec")" \
	"false false Never" "no service account token, no service links, restartPolicy Never"
is "$(jq -r '.spec.containers[0].resources | "\(.requests.memory)=\(.limits.memory) \(.requests.cpu)=\(.limits.cpu)"' <<<"$spec")" \
	"32Mi=32Mi 100m=100m" "requests = limits from the queue's defaultResources"
is "$(jq -r '.metadata.ownerReferences[0] | "\(.kind) \(.controller)"' <<<"$spec")" "Task true" "owned by the Task"
is "$(jq -r '.metadata.labels["tasked.dev/network"]' <<<"$spec")" disabled "labelled network=disabled"
is "$(jq -r '[.spec.volumes[] | select(.name=="tmp") | .emptyDir.sizeLimit][0]' <<<"$spec")" 64Mi "/tmp is an emptyDir with a size limit"
is "$(jq -r '.spec.initContainers | map(.name) | join(",")' <<<"$spec")" tasked-network-gate "without network, the network gate runs first (init container)"
is "$(jq -r '.spec.initContainers[0] | "\(.securityContext.readOnlyRootFilesystem) \(.securityContext.allowPrivilegeEscalation) \(.securityContext.capabilities.drop|join(",")) \(.resources.limits.cpu)=\(.resources.requests.cpu) \(.resources.limits.memory)=\(.resources.requests.memory)"' <<<"$spec")" \
	"true false ALL 50m=50m 16Mi=16Mi" "... hardened like the task's container, with tiny requests = limits"
is "$(jq -r '.status.initContainerStatuses[0].state.terminated | "\(.exitCode) \(.message)"' <<<"$spec" | sed 's/ after [0-9]* ms.*//')" "0 network blocked" "... and passed: connections were blocked before the task started"
diag "the network gate of $pod: $(jq -r '.status.initContainerStatuses[0].state.terminated.message' <<<"$spec")"
k patch task sleeper --type merge -p '{"spec":{"cancel":true}}' >/dev/null
ok_phase sleeper Cancelled 30
ok "cancel deleted the pod at once" wait_for 15 sh -c "! kubectl --kubeconfig $KUBECONFIG -n $TEST_NS get pod $pod >/dev/null 2>&1"

# --- failures --------------------------------------------------------------------------------------
ctask exit3 default 'echo failing; exit 3'
ok_phase exit3 Failed 120
is "$(task_field exit3 .status.exitCode) $(task_field exit3 .status.reason)" "3 ExitCode" "a non-zero exit: exitCode 3, reason ExitCode"

ctask oom default 'tail /dev/zero'
ok_phase oom Failed 120
is "$(task_field oom .status.reason)" OOMKilled "a memory limit hit (32Mi): OOMKilled"

ctask slow default 'sleep 120' '  timeoutSeconds: 5'
ok_phase slow Failed 90
is "$(task_field slow .status.reason)" TimedOut "past timeoutSeconds: TimedOut"

k apply -f - >/dev/null <<EOF2
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: badimage}
spec: {container: {image: "registry.example/evil:1", command: [sh]}}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: badvolume}
spec:
  container:
    image: $IMG
    command: [$SH, -c, "true"]
    volumes: [{name: cfg, configMap: {name: settings}, mountPath: /etc/settings}]
EOF2
ok_phase badimage Failed 60
is "$(task_field badimage .status.reason)" PolicyDenied "an image outside the allowlist: PolicyDenied"
like "$(task_field badimage .status.message)" "imageAllowlist" "... the message names the rule"
ok_phase badvolume Failed 60
is "$(task_field badvolume .status.reason)" PolicyDenied "a volume outside the allowlist: PolicyDenied"
like "$(task_field badvolume .status.message)" "volumeAllowlist" "... the message names the rule"
is "$(k get pods -l tasked.dev/task=badimage -o name | wc -l)" 0 "no pod was made for a refused task"

# An allowed image the node does not have (pulls never leave the machine): a clear failure, soon.
t0=$(date +%s)
k apply -f - >/dev/null <<EOF2
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: noimage}
spec: {container: {image: "${IMG%%:*}:not-on-this-node", command: [$SH, -c, "true"]}}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: cfgvol}
spec:
  container:
    image: $IMG
    command: [$SH, -c, 'cat /etc/ok/mode; echo; touch /etc/ok/new 2>/dev/null && echo "write: allowed" || echo "write: refused"']
    volumes: [{name: cfg, configMap: {name: settings-ok}, mountPath: /etc/ok}]
EOF2
ok_phase noimage Failed 120
is "$(task_field noimage .status.reason)" ImagePullFailed "an image not on the node: ImagePullFailed"
like "$(task_field noimage .status.message)" "ErrImage|ImagePull" "... the message says the pull failed"
ok "... within 60 s, not a wait for the start timeout ($(($(date +%s) - t0)) s)" test $(($(date +%s) - t0)) -lt 60

# A ConfigMap the queue allows, mounted read-only.
ok_phase cfgvol Succeeded 120
like "$(task_field cfgvol .status.logTail)" "fast" "an allowed ConfigMap volume is mounted: the task reads its key"
like "$(task_field cfgvol .status.logTail)" "write: refused" "... read-only"

# --- network ----------------------------------------------------------------------------------------
ok "a target pod is Running" probe_pod target '{app: target}'
k exec target -c probe -- /usr/local/bin/httpd -p 8080 -h / >/dev/null 2>&1
k expose pod target --name target --port 8080 >/dev/null
tip=$(k get pod target -o jsonpath='{.status.podIP}')
sip=$(k get svc target -o jsonpath='{.spec.clusterIP}')
# The first connection goes out at once, the others after 5 s: a NetworkPolicy implementation
# needs a moment to program the rules for a new pod, and the network gate holds the task back
# until it has (docs/security.md), so even the first one must fail.
probe='printf "GET / HTTP/1.0\r\n\r\n" | nc -w 3 '"$tip"' 8080 | grep -q "^HTTP/" && echo "early: reached" || echo "early: blocked"; sleep 5; for a in '"$tip $sip"'; do printf "GET / HTTP/1.0\r\n\r\n" | nc -w 5 $a 8080 | grep -q "^HTTP/" && echo "reached $a" || echo "blocked $a"; done'
ctask netoff default "$probe"
ctask neton net "$probe"
ok_phase netoff Succeeded 120
ok_phase neton Succeeded 120
like "$(task_field neton .status.logTail)" "reached $tip" "network enabled: the task reaches another pod (control)"
like "$(task_field neton .status.logTail)" "reached $sip" "network enabled: ... and a Service (control)"
like "$(task_field netoff .status.logTail)" "blocked $tip" "network disabled: no connection to another pod"
like "$(task_field netoff .status.logTail)" "blocked $sip" "network disabled: no connection to a Service"
like "$(task_field netoff .status.logTail)" "early: blocked" "network disabled: even a connection at the container's first instant is blocked"
like "$(task_field neton .status.logTail)" "early: reached" "network enabled: the same first-instant connection works (control)"
ok_phase leaky Failed 120
is "$(task_field leaky .status.reason)" NetworkPolicyNotEnforced "another policy allows the task's egress: the gate never passes, NetworkPolicyNotEnforced"
like "$(task_field leaky .status.message)" "still reachable" "... the message says what was reachable"
nok "... and the task's code never ran" grep -q "the task ran" <<<"$(task_field leaky .status.logTail) $(api_logs leaky 2>/dev/null)"
k delete networkpolicy allow-leaky-egress >/dev/null

# What the gate adds to a container task: wall time from create to Succeeded of a task that
# exits at once, without network (gate) and with (none), interleaved, 4 each.
now_ms() { date +%s%3N; }
phase_is() { [ "$(task_field "$1" .status.phase)" = "$2" ]; }
gate_ms=() plain_ms=()
for i in 1 2 3 4; do
	for q in default net; do
		t0=$(now_ms)
		ctask "bench-$q-$i" "$q" 'true'
		wait_for 120 phase_is "bench-$q-$i" Succeeded
		if [ "$q" = default ]; then gate_ms+=($(($(now_ms) - t0))); else plain_ms+=($(($(now_ms) - t0))); fi
	done
done
med() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print (a[int((NR + 1) / 2)] + a[int(NR / 2) + 1]) / 2 }'; }
diag "create to Succeeded, ms: with the network gate ${gate_ms[*]} (median $(med "${gate_ms[@]}")); without network gate ${plain_ms[*]} (median $(med "${plain_ms[@]}"))"
ok "the gate's cost is measured (4 tasks each)" test "${#gate_ms[@]}" = 4 -a "${#plain_ms[@]}" = 4

# --- output cap, secrets ------------------------------------------------------------------------------
ctask flood default 'i=0; while [ $i -lt 500 ]; do echo "line $i of the flood output"; i=$((i+1)); done'
ok_phase flood Succeeded 120
is "$(task_field flood .status.outputTruncated)" true "output over maxOutputBytes (2000) is flagged truncated"
n=$(api_logs flood | wc -c)
ok "the stored log is cut at the cap ($n bytes)" test "$n" -le 2000 -a "$n" -gt 1000

ctask secret default 'echo "token=$TOKEN"; sleep 8' '  env: [{name: TOKEN, valueFrom: {queueSecret: tok}}]'
ok_phase secret Running 120
spec=$(k get pods -l tasked.dev/task=secret -o json)
nok "the secret value is nowhere in the pod object" grep -q s3cr3t-Value-42 <<<"$spec"
is "$(jq -r '.items[0].spec.containers[0].env[] | select(.name=="TOKEN") | .valueFrom.secretKeyRef.name' <<<"$spec")" creds \
	"the pod references the queue's Secret"
ok_phase secret Succeeded 60
is "$(task_field secret .status.logTail)" "token=***" "the value is masked in logTail"
logs=$(api_logs secret)
like "$logs" 'token=\*\*\*' "... and in the log the API serves"
nok "... which never holds it" grep -q s3cr3t-Value-42 <<<"$logs"

# --- a pod deleted by someone else ---------------------------------------------------------------------
ctask victim default 'sleep 8' '  retries: {limit: 0}'
ok_phase victim Running 120
vpod=$(k get pods -l tasked.dev/task=victim -o jsonpath='{.items[0].metadata.name}')
k delete pod "$vpod" --wait=false >/dev/null
ok_phase victim Succeeded 120
is "$(task_field victim .status.attempts)" 2 "the lost attempt is retried as attempt 2"
like "$(task_field victim '.status.attemptHistory[0].message')" "pod was deleted" "... the history says the pod was deleted"

# --- a controller kill with 10 running container tasks -------------------------------------------------
for i in $(seq 1 10); do ctask "many-$i" default 'echo start; sleep 25; echo "{\"host\":\"$HOSTNAME\"}" > $TASKED_OUTPUT'; done
ok "all 10 are Running" wait_for 180 sh -c "[ \$(kubectl --kubeconfig $KUBECONFIG -n $TEST_NS get tasks -o json | jq '[.items[] | select(.metadata.name|startswith(\"many-\")) | select(.status.phase==\"Running\")] | length') = 10 ]"
cpod=$(controller_pod)
ok "the controller pod ($cpod) is killed" kr delete pod "$cpod" --grace-period=0 --force
for i in $(seq 1 10); do wait_phase "many-$i" Succeeded 240 >/dev/null; done
bad=0
for i in $(seq 1 10); do
	a=$(task_field "many-$i" .status.attempts)
	h=$(task_field "many-$i" .status.attemptHistory)
	p=$(task_field "many-$i" .status.phase)
	n=$(jq -r 'length' <<<"${h:-[]}")
	r=$(jq -r '[.[].reason] | join(",")' <<<"${h:-[]}")
	[ "$p" = Succeeded ] && [ "$a" = 1 ] && [ "$n" = 1 ] && [ "$r" = Succeeded ] ||
		{ bad=$((bad + 1)); diag "many-$i: $p attempts=$a history=$h"; }
done
is "$bad" 0 "after the controller kill each of the 10 tasks ran exactly once (Succeeded, attempt 1, one history entry, no loss)"
hosts=$(for i in $(seq 1 10); do task_field "many-$i" .status.output.host; echo; done | sort -u | grep -c .)
is "$hosts" 10 "... each in one pod of its own (10 distinct pod names in the outputs)"

# --- a Flow: shell output into a container task -----------------------------------------------------------
k apply -f - >/dev/null <<EOF2
apiVersion: tasked.dev/v1alpha1
kind: Flow
metadata: {name: mix}
spec:
  tasks:
    - name: count
      shell: {command: [sh, -c, 'echo "{\"n\": 41}" > \$TASKED_OUTPUT']}
    - name: add
      dependsOn: [count]
      container:
        image: $IMG
        command: [$SH, -c, 'echo "{\"n\": \$((\$(tasks.count.output.n) + 1))}" > \$TASKED_OUTPUT']
EOF2
ok_phase mix-add Succeeded 180
is "$(task_field mix-add .status.output.n)" 42 "a Flow passes a shell task's output into a container task"

done_testing
