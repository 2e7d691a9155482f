#!/usr/bin/env bash
# The validating admission webhook, served by the controller over TLS and called by the real
# kube-apiserver: Flow cycles, unknown dependsOn, bad `when`, unknown $(tasks.…) references and
# executors a TaskQueue does not allow are refused with a message naming the field; valid objects
# pass. Two controllers agree on one certificate Secret; the certificate (forced short with
# --webhook-cert-validity-seconds) is renewed and served without a restart; with the controller
# stopped, failurePolicy Ignore admits what the schema accepts and the controller still fails a
# bad Flow at run time.
. "$(dirname "$0")/lib.sh"
. "$IT_ROOT/tests/cluster/lib.sh"
test_namespace webhook

STATE=${TASKED_STATE_DIR:-.tasked}
case "$STATE" in /*) ;; *) STATE=$IT_ROOT/$STATE ;; esac
. "$STATE/tasked-ports.env"
CTL=${TASKED_BIN_DIR:-$IT_ROOT/bin}/tasked-controller
VWC=tasked-it-$TEST_NS
SECRET=tasked-webhook-tls
VALIDITY=45
cleanup() {
	for f in wh-a wh-b; do
		[ -s "$STATE/$f.pid" ] && kill -9 "$(cat "$STATE/$f.pid")" 2>/dev/null
		rm -f "$STATE/$f.pid"
	done
	kubectl --kubeconfig "$KUBECONFIG" delete validatingwebhookconfiguration "$VWC" --ignore-not-found >/dev/null 2>&1
	"$IT_ROOT/tests/cluster/up.sh" >/dev/null 2>&1
	_cleanup_namespace
}
trap cleanup EXIT

# The suite's controller steps aside; A takes its ports (so the suite's runner follows it), B
# gets ports of its own. Both serve the webhook and share one Secret.
stop_pidfile "$STATE/controller.pid" "$CTL" tasked-controller 5 >/dev/null
WH_A=$(pick_port "$API_PORT" "$BROKER_PORT")
WH_B=$(pick_port "$API_PORT" "$BROKER_PORT" "$WH_A")
B_API=$(pick_port "$API_PORT" "$BROKER_PORT" "$WH_A" "$WH_B")
B_BROKER=$(pick_port "$API_PORT" "$BROKER_PORT" "$WH_A" "$WH_B" "$B_API")
args=(--kubeconfig "$STATE/kubeconfig" --namespace "$TEST_NS" --runner-token-file "$STATE/runner-token"
	--api-key-file "$STATE/api-key" --leader-elect --leader-elect-namespace "$TEST_NS"
	--webhook-secret "$SECRET" --webhook-secret-namespace "$TEST_NS" --webhook-config "$VWC"
	--webhook-cert-names 127.0.0.1 --webhook-cert-validity-seconds "$VALIDITY")
: >"$STATE/wh-a.log"
: >"$STATE/wh-b.log"
start_bg "$STATE/wh-a.pid" "$STATE/wh-a.log" "$CTL" "${args[@]}" --webhook-listen "127.0.0.1:$WH_A" \
	--listen "127.0.0.1:$API_PORT" --broker-listen "127.0.0.1:$BROKER_PORT"
start_bg "$STATE/wh-b.pid" "$STATE/wh-b.log" "$CTL" "${args[@]}" --webhook-listen "127.0.0.1:$WH_B" \
	--listen "127.0.0.1:$B_API" --broker-listen "127.0.0.1:$B_BROKER"
PID_A=$(cat "$STATE/wh-a.pid")

# served_serial PORT: the serial number of the certificate a listener presents.
served_serial() {
	openssl s_client -connect "127.0.0.1:$1" </dev/null 2>/dev/null | openssl x509 -noout -serial 2>/dev/null
}
secret_field() { # KEY: data[KEY], decoded
	k get secret "$SECRET" -o "go-template={{index .data \"$1\" | base64decode}}" 2>/dev/null
}

ok "the certificate Secret is created" wait_for 30 k get secret "$SECRET"
is "$(k get secret "$SECRET" -o jsonpath='{.type}')" kubernetes.io/tls "it is a kubernetes.io/tls Secret"
secret_field ca.crt >"$STATE/wh-ca.pem"
secret_field tls.crt >"$STATE/wh-tls.pem"
ok "its certificate verifies against its CA for 127.0.0.1" \
	openssl verify -CAfile "$STATE/wh-ca.pem" -verify_ip 127.0.0.1 -purpose sslserver "$STATE/wh-tls.pem"
serves() { [ -n "$(served_serial "$1")" ]; }
ok "controller A serves it" wait_for 20 serves "$WH_A"
ok "controller B serves it" wait_for 20 serves "$WH_B"
want=$(openssl x509 -noout -serial -in "$STATE/wh-tls.pem")
is "$(served_serial "$WH_A")" "$want" "A presents the Secret's certificate"
is "$(served_serial "$WH_B")" "$want" "B presents the same one (the replicas agreed on one Secret)"
creates=$(grep -c '"webhook certificate created"' "$STATE/wh-a.log" "$STATE/wh-b.log" | awk -F: '{s += $2} END {print s}')
is "$creates" 1 "exactly one of them created it"

# The webhook registered as the chart does it, but by URL (the API server runs on this host).
k apply -f - >/dev/null <<EOF
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: $VWC}
webhooks:
  - name: validate.tasked.dev
    clientConfig: {url: "https://127.0.0.1:$WH_A/validate"}
    failurePolicy: Ignore
    sideEffects: None
    timeoutSeconds: 5
    admissionReviewVersions: [v1]
    namespaceSelector:
      matchLabels: {kubernetes.io/metadata.name: $TEST_NS}
    matchConditions:
      - name: not-the-controller
        expression: "request.userInfo.username != 'system:serviceaccount:tasked:tasked'"
    rules:
      - apiGroups: [tasked.dev]
        apiVersions: [v1alpha1]
        resources: [tasks, flows]
        operations: [CREATE, UPDATE]
EOF
ca_b64=$(k get secret "$SECRET" -o jsonpath='{.data.ca\.crt}')
bundle() { k get validatingwebhookconfiguration "$VWC" -o jsonpath='{.webhooks[0].clientConfig.caBundle}'; }
bundle_is_ca() { [ "$(bundle)" = "$ca_b64" ]; }
ok "the controller writes its CA into the caBundle" wait_for 60 bundle_is_ca

k apply -f - >/dev/null <<'EOF'
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: restricted}
spec:
  runnerSelector: {pool: nowhere}
  policy:
    executors: [shell]
    conditions: {maxCost: 50}
EOF

cycle_flow_yaml() { # NAME
	cat <<EOF
apiVersion: tasked.dev/v1alpha1
kind: Flow
metadata: {name: $1}
spec:
  tasks:
    - {name: a, dependsOn: [b], shell: {command: ["true"]}}
    - {name: b, dependsOn: [a], shell: {command: ["true"]}}
EOF
}
cycle_flow() { k apply -f - <<<"$(cycle_flow_yaml "$1")"; }
# The API server picks up a new webhook configuration within a second or two.
# A server-side dry run is reviewed too (sideEffects None) and stores nothing.
refused() { ! k apply --dry-run=server -f - >/dev/null 2>&1 <<<"$(cycle_flow_yaml probe)"; }
ok "the API server calls the webhook" wait_for 30 refused

nok "a Flow with a cycle is refused" cycle_flow cyc
like "$NOK_OUTPUT" 'denied the request: spec.tasks: the dependencies form a cycle through task [ab]' \
	"the message names the field and the cycle"

try() { # YAML on stdin
	k apply -f -
}
nok "a Flow with an unknown dependsOn is refused" try <<'EOF'
apiVersion: tasked.dev/v1alpha1
kind: Flow
metadata: {name: unknown-dep}
spec:
  tasks:
    - {name: build, shell: {command: ["true"]}}
    - {name: test, dependsOn: [biuld], shell: {command: ["true"]}}
EOF
like "$NOK_OUTPUT" 'spec.tasks: task test depends on biuld, which is not in this Flow' "names the dependency"

nok "a Flow with a bad when is refused" try <<'EOF'
apiVersion: tasked.dev/v1alpha1
kind: Flow
metadata: {name: bad-when}
spec:
  tasks:
    - {name: build, shell: {command: ["true"]}}
    - {name: test, dependsOn: [build], when: "tasks.build.phase == ", shell: {command: ["true"]}}
EOF
like "$NOK_OUTPUT" 'spec.tasks\[1\]\.when: 1:[0-9]+: ' "names the entry's when, with line and column"

nok "a Flow with an unknown \$(tasks.x) reference is refused" try <<'EOF'
apiVersion: tasked.dev/v1alpha1
kind: Flow
metadata: {name: bad-ref}
spec:
  tasks:
    - {name: build, shell: {command: ["true"]}}
    - {name: test, dependsOn: [build], shell: {command: ["echo", "$(tasks.x.output.v)"]}}
EOF
like "$NOK_OUTPUT" 'spec.tasks\[1\]\.shell\.command\[1\]: \$\(tasks\.x\.output\.v\) refers to task x, which is not in this Flow' \
	"names the command element"

nok "a Task referencing a task outside its dependsOn is refused" try <<'EOF'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: bad-ref}
spec:
  env: [{name: V, value: "$(tasks.other.exitCode)"}]
  shell: {command: ["true"]}
EOF
like "$NOK_OUTPUT" 'spec.env\[0\]\.value: \$\(tasks\.other\.exitCode\) refers to task other, which is not in dependsOn' \
	"names the env value"

# The TaskQueue comes from the controller's cache: wait until it is there.
denied_http() {
	! k apply --dry-run=server -f - >/dev/null 2>&1 <<'EOF'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: http-probe}
spec: {queue: restricted, http: {url: "https://example.com/"}}
EOF
}
ok "an executor the TaskQueue does not allow is refused (server-side dry run)" wait_for 20 denied_http
nok "also on a real apply" try <<'EOF'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: http-task}
spec: {queue: restricted, http: {url: "https://example.com/"}}
EOF
like "$NOK_OUTPUT" 'spec.http: the http executor is not allowed by TaskQueue restricted \(policy.executors\)' \
	"names the executor and the queue"
nok "a when over the queue's cost limit is refused" try <<'EOF'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: costly}
spec:
  queue: restricted
  when: "[1,2,3,4,5,6,7,8,9,10].size() + [1,2,3,4,5,6,7,8,9,10].size() + [1,2,3,4,5,6,7,8,9,10].size() + [1,2,3,4,5,6,7,8,9,10].size() > 0"
  shell: {command: ["true"]}
EOF
like "$NOK_OUTPUT" 'spec.when: cost limit 50 exceeded' "names the limit"
ok "a queue that does not exist refuses nothing" try <<'EOF'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: future-queue}
spec: {queue: not-yet, http: {url: "https://example.com/"}}
EOF

ok "a valid Flow passes" try <<'EOF'
apiVersion: tasked.dev/v1alpha1
kind: Flow
metadata: {name: good}
spec:
  queue: restricted
  tasks:
    - {name: build, shell: {command: ["echo", "{}"]}}
    - {name: test, dependsOn: [build], when: "tasks.build.phase == 'Succeeded'",
       shell: {command: ["echo", "$(tasks.build.exitCode)"]}}
EOF
ok "a valid Task passes" try <<'EOF'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: good}
spec: {queue: restricted, dependsOn: [x], when: "tasks.x.exitCode == 0", shell: {command: ["echo", "$(tasks.x.phase)"]}}
EOF
ok "setting cancel on it passes" k patch task good --type merge -p '{"spec":{"cancel":true}}'
ok "labelling a Flow passes" k label flow good reviewed=yes

# Rotation: the certificate lives 45 s and is renewed with 15 s left; A serves the new one and
# the API server still trusts it, with no restart.
s0=$(served_serial "$WH_A")
rotated() { s=$(served_serial "$WH_A"); [ -n "$s" ] && [ "$s" != "$s0" ]; }
ok "the serving certificate is renewed before it expires" wait_for 60 rotated
s1=$(served_serial "$WH_A")
secret_field tls.crt >"$STATE/wh-tls2.pem"
is "$s1" "$(openssl x509 -noout -serial -in "$STATE/wh-tls2.pem")" "A serves the renewed certificate from the Secret"
b_serves_s1() { [ "$(served_serial "$WH_B")" = "$s1" ]; }
ok "B serves it too" wait_for 20 b_serves_s1
is "$(alive_count "$PID_A")" 1 "controller A was not restarted"
is "$(bundle)" "$ca_b64" "the CA did not change, so the caBundle did not either"
nok "the webhook still refuses a cycle after the renewal" cycle_flow cyc2
like "$NOK_OUTPUT" 'denied the request: spec.tasks: the dependencies form a cycle' "with its message"
renewed=$(grep -c '"webhook certificate renewed"' "$STATE/wh-a.log" "$STATE/wh-b.log" | awk -F: '{s += $2} END {print s}')
ok "the renewal is logged ($renewed renewals)" test "$renewed" -ge 1

# Controller down: failurePolicy Ignore admits what the CRD schema accepts, and the controller
# fails the bad Flow at run time once it is back.
PID_B=$(cat "$STATE/wh-b.pid")
kill "$PID_A" "$PID_B"
both_gone() { [ "$(alive_count "$PID_A" "$PID_B")" = 0 ]; }
ok "both controllers stop" wait_for 20 both_gone
wait "$PID_A"
rc_a=$?
wait "$PID_B"
is "$rc_a $?" "0 0" "both exit with status 0 (the standby too: no crash on the way out)"
t0=$(date +%s%3N)
ok "with the webhook down, the cycle is admitted (failurePolicy Ignore)" cycle_flow admitted-while-down
took=$(($(date +%s%3N) - t0))
ok "without waiting for the timeout ($took ms: connection refused)" test "$took" -lt 5000
"$IT_ROOT/tests/cluster/up.sh" >/dev/null 2>&1
failed_cycle() { [ "$(k get flow admitted-while-down -o jsonpath='{.status.phase}/{.status.reason}')" = Failed/Cycle ]; }
ok "the controller fails it at run time" wait_for 60 failed_cycle

# The chart: what it registers, and webhook.enabled=false leaves no trace.
. "$IT_ROOT/tests/helm/lib.sh"
def=$(render default tasked | kubectl create --dry-run=client -o json -f - | jq -s '[.[] | if .kind == "List" then .items[] else . end]')
hook=$(jq -c '.[] | select(.kind == "ValidatingWebhookConfiguration") | .webhooks[0]' <<<"$def")
is "$(jq -r '[.failurePolicy, .sideEffects, .timeoutSeconds, (.admissionReviewVersions | join(",")),
	(.rules[0].resources | join(",")), (.rules[0].operations | join(",")), .clientConfig.service.name,
	.clientConfig.service.path, (.clientConfig.caBundle // "none")] | join(" ")' <<<"$hook")" \
	"Ignore None 5 v1 tasks,flows CREATE,UPDATE t-tasked-webhook /validate none" \
	"the chart registers the webhook: Ignore, no side effects, 5 s, v1, tasks and flows, no caBundle of its own"
like "$(jq -r '.matchConditions[0].expression' <<<"$hook")" "system:serviceaccount:tasked:t-tasked'\$" \
	"matchConditions skip the controller's own service account"
ctl=$(jq -c '.[] | select(.kind == "Deployment" and .metadata.name == "t-tasked") | .spec.template.spec.containers[] | select(.name == "controller")' <<<"$def")
like "$(jq -r '.args | join(" ")' <<<"$ctl")" "--webhook-listen=0\.0\.0\.0:9443 --webhook-secret=t-tasked-webhook-tls --webhook-config=t-tasked-tasked --webhook-cert-names=t-tasked-webhook\.tasked\.svc,t-tasked-webhook\.tasked\.svc\.cluster\.local" \
	"the controller gets the webhook flags"
is "$(jq -c '[.[] | select(.kind == "NetworkPolicy" and .metadata.name == "t-tasked-controller") | .spec.ingress[] | select(.ports[0].port == 9443) | .from[].ipBlock.cidr]' <<<"$def")" \
	'["0.0.0.0/0","::/0"]' "the NetworkPolicy admits the webhook port from networkPolicy.kubeAPIServer.cidrs"
off=$(render default tasked --set webhook.enabled=false)
is "$(grep -c -iE 'webhook' <<<"$off")" 0 "webhook.enabled=false renders nothing of it"
done_testing
