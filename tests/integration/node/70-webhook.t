#!/usr/bin/env bash
# The admission webhook as the chart installs it on a real node: the controller pod made its
# certificate Secret and wrote the CA into the ValidatingWebhookConfiguration, and the API server
# reaches the webhook through its Service (and the controller's NetworkPolicy): a Flow with a
# cycle is refused with the message; a valid Flow is admitted, and its children (created by the
# controller's service account, which matchConditions skips) run to the end.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/lib-node.sh"
test_namespace webhook

SECRET=$FULLNAME-webhook-tls
VWC=$FULLNAME-$NAMESPACE
SVC=$FULLNAME-webhook

ok "the chart installed the webhook Service" kr get service "$SVC"
ok "the controller created its certificate Secret" wait_for 60 kr get secret "$SECRET"
ca=$(kr get secret "$SECRET" -o jsonpath='{.data.ca\.crt}')
ok "... and wrote its CA into the ValidatingWebhookConfiguration" wait_for 60 sh -c \
	"[ \"\$(kubectl get validatingwebhookconfiguration $VWC -o jsonpath='{.webhooks[0].clientConfig.caBundle}')\" = '$ca' ]"
kr get secret "$SECRET" -o go-template='{{index .data "ca.crt" | base64decode}}' >"$STATE/node-wh-ca.pem"
kr get secret "$SECRET" -o go-template='{{index .data "tls.crt" | base64decode}}' >"$STATE/node-wh-tls.pem"
ok "its certificate names the Service" openssl verify -CAfile "$STATE/node-wh-ca.pem" \
	-verify_hostname "$SVC.$NAMESPACE.svc" -purpose sslserver "$STATE/node-wh-tls.pem"
is "$(kubectl get validatingwebhookconfiguration "$VWC" -o jsonpath='{.webhooks[0].failurePolicy}')" Ignore \
	"failurePolicy is Ignore (docs/install.md argues it)"

cycle_yaml() { # NAME
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
cycle() { k apply -f - <<<"$(cycle_yaml "$1")"; }
# Endpoints follow the pod's readiness; give the API server a moment to reach it.
# A server-side dry run is reviewed too (sideEffects None) and stores nothing.
refused() { ! k apply --dry-run=server -f - >/dev/null 2>&1 <<<"$(cycle_yaml probe)"; }
ok "the API server reaches the webhook through the Service" wait_for 60 refused
nok "a Flow with a cycle is refused" cycle loop
like "$NOK_OUTPUT" 'admission webhook "validate.tasked.dev" denied the request: spec.tasks: the dependencies form a cycle' \
	"with the webhook's message"
nok "a Task with an unknown \$(tasks.x) reference is refused" k apply -f - <<'EOF'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: bad-ref}
spec: {shell: {command: ["echo", "$(tasks.x.phase)"]}}
EOF
like "$NOK_OUTPUT" 'spec.shell.command\[1\]: \$\(tasks.x.phase\) refers to task x, which is not in dependsOn' \
	"naming the field"

ok "a valid Flow is admitted" k apply -f - <<'EOF'
apiVersion: tasked.dev/v1alpha1
kind: Flow
metadata: {name: fine}
spec:
  tasks:
    - {name: first, shell: {command: ["echo", "one"]}}
    - {name: second, dependsOn: [first], when: "tasks.first.phase == 'Succeeded'",
       shell: {command: ["echo", "$(tasks.first.exitCode)"]}}
EOF
ok "its children (created by the controller) run to the end" wait_for 120 \
	sh -c "[ \"\$(kubectl get flow fine -n $TEST_NS -o jsonpath={.status.phase})\" = Succeeded ]"
is "$(task_field fine-second .status.logTail | tr -d '\n')" 0 "the reference resolved at run time"
forbidden=$(kr logs "$(controller_pod)" -c controller | grep -ciE 'webhook.*(cannot|forbidden)' || true)
is "$forbidden" 0 "the controller logged no failure to manage the certificate"
done_testing
