#!/usr/bin/env bash
# RBAC as the chart grants it, on the real API server:
# - the controller runs under exactly the chart's service account rights (the ServiceAccount,
#   ClusterRole, bindings and leader-election Role from `helm template`, a token from
#   `kubectl create token`): a failFast Flow, a TaskQueue with a Secret, events and
#   ttlSecondsAfterFinished all work and nothing is Forbidden;
# - people: the built-in view / edit / admin roles get Tasked's kinds through aggregation.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/helm/lib.sh
. "$IT_ROOT/tests/helm/lib.sh"
. "$IT_ROOT/tests/cluster/lib.sh"
test_namespace rbac

STATE=${TASKED_STATE_DIR:-.tasked}
case "$STATE" in /*) ;; *) STATE=$IT_ROOT/$STATE ;; esac
. "$STATE/tasked-ports.env"
CTL=$IT_ROOT/bin/tasked-controller
# Cluster-scoped names (ClusterRoles, bindings) must not collide with another run.
REL=rb$(openssl rand -hex 3)
SA_KC=$STATE/rbac-$REL.kubeconfig
LOG=$STATE/rbac-controller.log
rendered=$(mktemp)
# shellcheck disable=SC2317 # called through the EXIT trap
cleanup() {
	if [ -s "$STATE/rbac-controller.pid" ]; then
		stop_pidfile "$STATE/rbac-controller.pid" "$CTL" tasked-controller 5 >/dev/null 2>&1
	fi
	# The suite's controller comes back with its own (admin) kubeconfig.
	"$IT_ROOT/tests/cluster/up.sh" >/dev/null 2>&1
	[ -s "$rendered" ] && kubectl --kubeconfig "$KUBECONFIG" delete -n "$TEST_NS" -f "$rendered" \
		--ignore-not-found --wait=false >/dev/null 2>&1
	kubectl --kubeconfig "$KUBECONFIG" delete validatingwebhookconfiguration "$REL-tasked-$TEST_NS" \
		--ignore-not-found --wait=false >/dev/null 2>&1
	rm -f "$STATE/rbac-controller.pid" "$SA_KC" "$rendered"
	_cleanup_namespace
}
trap cleanup EXIT
apply() { k apply -f - >/dev/null; }

# --- the chart's own service account --------------------------------------------------------------

ok "the chart's ServiceAccount, RBAC and user roles render" sh -c \
	"$(printf '%q ' "$HELM") template $REL $(printf '%q' "$CHART") --namespace $TEST_NS --set 'rbac.secretNamespaces={$TEST_NS}' \
	--show-only templates/serviceaccount.yaml --show-only templates/rbac.yaml --show-only templates/roles.yaml \
	--show-only templates/webhook.yaml >$rendered"
# The webhook's Service and ValidatingWebhookConfiguration stay out: this cluster has no pod to
# serve it. A configuration of the same name that matches no namespace stands in for it, so the
# controller's caBundle update is made under the chart's rights.
VWC=$REL-tasked-$TEST_NS
json=$(kubectl --kubeconfig "$KUBECONFIG" create --dry-run=client -o json -f "$rendered")
is "$(jq -rs '[.[] | select(.kind == "ValidatingWebhookConfiguration") | .metadata.name] | join(",")' <<<"$json")" "$VWC" \
	"the chart names its ValidatingWebhookConfiguration after the release and namespace"
jq -s '{apiVersion: "v1", kind: "List", items: [.[] | select(.kind != "ValidatingWebhookConfiguration" and .kind != "Service")]}' \
	<<<"$json" >"$rendered"
ok "... and apply to the real API server" kubectl --kubeconfig "$KUBECONFIG" apply -n "$TEST_NS" -f "$rendered"
kinds=$(jq -r '[.items[].kind] | sort | join(",")' "$rendered")
is "$kinds" "ClusterRole,ClusterRole,ClusterRole,ClusterRole,ClusterRole,ClusterRole,ClusterRoleBinding,ClusterRoleBinding,Role,Role,RoleBinding,RoleBinding,RoleBinding,ServiceAccount" \
	"that is the ServiceAccount, controller ClusterRole + binding, lease Role + binding, queue-secrets ClusterRole + RoleBinding, 3 user roles, webhook configuration ClusterRole + binding, webhook Secret Role + binding"
kubectl --kubeconfig "$KUBECONFIG" apply -f - >/dev/null <<EOF2
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: $VWC}
webhooks:
  - name: validate.tasked.dev
    clientConfig: {url: "https://127.0.0.1:1/validate"}
    failurePolicy: Ignore
    sideEffects: None
    admissionReviewVersions: [v1]
    namespaceSelector: {matchLabels: {tasked.dev/none: none}}
    rules: [{apiGroups: [tasked.dev], apiVersions: [v1alpha1], resources: [tasks], operations: [CREATE]}]
EOF2

token=$(kubectl --kubeconfig "$KUBECONFIG" create token "$REL-tasked" -n "$TEST_NS" --duration 1h)
like "$token" '^eyJ' "kubectl create token gives the service account a token"
server=$(kubectl --kubeconfig "$KUBECONFIG" config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')
ca=$(kubectl --kubeconfig "$KUBECONFIG" config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
(
	umask 077
	cat >"$SA_KC" <<EOF2
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "$server", certificate-authority-data: "$ca"}}]
users: [{name: sa, user: {token: "$token"}}]
contexts: [{name: sa, context: {cluster: c, user: sa, namespace: $TEST_NS}}]
current-context: sa
EOF2
)
sak() { kubectl --kubeconfig "$SA_KC" "$@"; }
is "$(sak auth whoami -o jsonpath='{.status.userInfo.username}')" "system:serviceaccount:$TEST_NS:$REL-tasked" \
	"the kubeconfig authenticates as the chart's service account"
is "$(sak auth can-i patch tasks.tasked.dev -n default)" yes "it may patch Tasks (failFast cancels)"
is "$(sak auth can-i update tasks.tasked.dev -n default)" no "... but not replace them"
is "$(sak auth can-i list secrets -n "$TEST_NS")" no "it may not list Secrets"
is "$(sak auth can-i get secrets -n default)" no "it may not read Secrets outside rbac.secretNamespaces"
is "$(sak auth can-i get "secrets/$REL-tasked-webhook-tls" -n "$TEST_NS")" yes "it may read its webhook certificate Secret"
is "$(sak auth can-i update "secrets/$REL-tasked-webhook-tls" -n "$TEST_NS")" yes "... and renew it"
is "$(sak auth can-i update secrets/vault -n "$TEST_NS")" no "... but update no other Secret"
is "$(sak auth can-i update "validatingwebhookconfigurations/$VWC" 2>/dev/null)" yes "it may update its ValidatingWebhookConfiguration"
is "$(sak auth can-i update validatingwebhookconfigurations/other 2>/dev/null)" no "... and no other"
is "$(sak auth can-i patch "validatingwebhookconfigurations/$VWC" 2>/dev/null)" no "... by update only"
# The container executor: exactly these rights on pods and NetworkPolicies, nothing more.
for v in get list watch create delete; do
	is "$(sak auth can-i "$v" pods -n default)" yes "container executor: it may $v pods"
done
is "$(sak auth can-i update pods -n default)" no "... but not update them"
is "$(sak auth can-i patch pods -n default)" yes "... patch them only for a drained pool runner's deletion cost"
is "$(sak auth can-i create pods --subresource=exec -n default)" no "... or exec into them"
is "$(sak auth can-i get pods --subresource=log -n default)" yes "it may read pod logs"
is "$(sak auth can-i get networkpolicies.networking.k8s.io -n default)" yes "it may read NetworkPolicies"
is "$(sak auth can-i create networkpolicies.networking.k8s.io -n default)" yes "... and create them"
is "$(sak auth can-i delete networkpolicies.networking.k8s.io -n default)" no "... but not delete them"
is "$(sak auth can-i update networkpolicies.networking.k8s.io -n default)" no "... or change them"
# RunnerPools: exactly what pools.c uses.
is "$(sak auth can-i create secrets -n default)" yes "it may create Secrets (a pool's runner token)"
is "$(sak auth can-i update secrets -n default)" no "... but not change them"
is "$(sak auth can-i create deployments.apps -n default)" yes "it may create Deployments (a pool's runners)"
is "$(sak auth can-i update deployments.apps -n default)" yes "... and replace them (template, replicas)"
is "$(sak auth can-i delete deployments.apps -n default)" no "... but not delete them (garbage collection does)"
is "$(sak auth can-i patch deployments.apps -n default)" no "... nor patch them"
is "$(sak auth can-i patch runnerpools.tasked.dev -n default)" no "it may not change RunnerPools"
is "$(sak auth can-i patch runnerpools.tasked.dev --subresource=status -n default)" yes "... only their status"

# The suite's controller steps aside; this one takes its ports (so the suite's runner follows it),
# with the chart's flags (leader election on a Lease named after the release).
stop_pidfile "$STATE/controller.pid" "$CTL" tasked-controller 5 >/dev/null
: >"$LOG"
start_bg "$STATE/rbac-controller.pid" "$LOG" "$CTL" --kubeconfig "$SA_KC" \
	--listen "127.0.0.1:$API_PORT" --broker-listen "127.0.0.1:$BROKER_PORT" \
	--runner-token-file "$STATE/runner-token" --api-key-file "$STATE/api-key" \
	--leader-elect --leader-elect-namespace "$TEST_NS" --leader-elect-name "$REL-tasked" \
	--webhook-listen "127.0.0.1:$(pick_port "$API_PORT" "$BROKER_PORT")" --webhook-secret "$REL-tasked-webhook-tls" \
	--webhook-config "$VWC" --webhook-cert-names "$REL-tasked-webhook.$TEST_NS.svc" \
	--pool-runner-image tasked-runner:rbac --pool-broker-url "ws://127.0.0.1:$BROKER_PORT"
ok "the controller under the chart's rights acquires its Lease" wait_for 60 grep -q '"acquired leadership"' "$LOG"
ok "it creates its webhook certificate Secret" wait_for 30 k get secret "$REL-tasked-webhook-tls"
ok "... and writes the CA into its ValidatingWebhookConfiguration" wait_for 30 sh -c \
	"[ \"\$(kubectl get validatingwebhookconfiguration $VWC -o jsonpath='{.webhooks[0].clientConfig.caBundle}')\" = \"\$(kubectl get secret $REL-tasked-webhook-tls -n $TEST_NS -o jsonpath='{.data.ca\\.crt}')\" ]"
ok "... and becomes ready" wait_for 60 sh -c "printf 'X-API-Key: %s\n' \"\$(cat '$STATE/api-key')\" | curl -fsS --max-time 2 -o /dev/null -H @- http://127.0.0.1:$API_PORT/readyz"

# A failFast Flow: the controller creates the children, patches spec.cancel on the running one,
# writes Flow and Task status, records events.
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Flow
metadata: {name: fragile}
spec:
  failFast: true
  ttlSecondsAfterFinished: 3
  tasks:
    - {name: breaks, dependsOn: [warm], shell: {command: ["false"]}}
    - {name: warm, shell: {command: ["true"]}}
    - {name: long, shell: {command: ["sleep", "600"]}}
EOF2
ok "the failFast Flow fails" wait_for 90 sh -c "[ \"\$(kubectl get flow fragile -n $TEST_NS -o jsonpath={.status.phase})\" = Failed ]"
is "$(task_field fragile-long .status.phase)" Cancelled "its running sibling was cancelled (spec.cancel patched)"
is "$(task_field fragile-long .spec.cancel)" true "... through spec.cancel"
ok "the finished Flow is deleted after its ttlSecondsAfterFinished" wait_for 60 sh -c "! kubectl get flow fragile -n $TEST_NS >/dev/null 2>&1"

# A TaskQueue with a Secret (rbac.secretNamespaces), its status, a Task's ttl.
canary="canary-$(openssl rand -hex 8)"
k create secret generic vault --from-literal=token="$canary" >/dev/null
k label secret vault tasked.dev/queue-secret=true >/dev/null
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: secretive}
spec:
  secrets: [{name: api-token, secretKeyRef: {name: vault, key: token}}]
EOF2
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: uses-secret}
spec:
  queue: secretive
  ttlSecondsAfterFinished: 5
  env: [{name: TOKEN, valueFrom: {queueSecret: api-token}}]
  shell: {command: ["sh", "-c", "printf %s \"$TOKEN\" | wc -c"]}
EOF2
ok "a Task using a queue Secret succeeds" wait_for 60 sh -c "[ \"\$(kubectl get task uses-secret -n $TEST_NS -o jsonpath={.status.phase})\" = Succeeded ]"
like "$(task_field uses-secret .status.logTail)" "^ *${#canary}" "... with the Secret's value (its length in the log)"
ok "the TaskQueue's status is written" wait_for 30 sh -c "[ -n \"\$(kubectl get taskqueue secretive -n $TEST_NS -o jsonpath={.status})\" ]"
ok "events were recorded for the Task" wait_for 30 sh -c "kubectl get events.events.k8s.io -n $TEST_NS --field-selector regarding.name=uses-secret -o name | grep -q ."
ok "the finished Task is deleted after its ttlSecondsAfterFinished" wait_for 60 sh -c "! kubectl get task uses-secret -n $TEST_NS >/dev/null 2>&1"

# A RunnerPool: its token Secret and Deployment are created, its status written.
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: RunnerPool
metadata: {name: rbac-pool}
spec: {image: "busybox-static:test", minRunners: 1, maxRunners: 2}
EOF2
ok "the RunnerPool's Deployment is created" wait_for 30 sh -c "kubectl get deployment rbac-pool-pool -n $TEST_NS >/dev/null 2>&1"
ok "... and its token Secret" wait_for 30 sh -c "kubectl get secret -n $TEST_NS -l tasked.dev/runner-pool=rbac-pool -o name | grep -q ."
ok "... and its status" wait_for 30 sh -c "[ \"\$(kubectl get runnerpool rbac-pool -n $TEST_NS -o jsonpath={.status.desiredRunners})\" = 1 ]"

# The controller counts every answer of the API server by verb and code (kube.c); a refused
# request (a failFast cancel without patch, say) shows up there even when nothing logs it.
answers=$(curl -s "http://127.0.0.1:$API_PORT/metrics" | grep '^tasked_kube_responses_total{')
like "$answers" 'verb="patch",code="200"' "the controller's API answers are counted (patches among them)"
is "$(grep -c 'code="403"' <<<"$answers")" 0 "the API server refused none of its requests (no 403 in tasked_kube_responses_total)" ||
	diag "$(grep 'code="403"' <<<"$answers")"
forbidden=$(grep -ciE 'forbidden|" 403|status.:403' "$LOG")
is "$forbidden" 0 "the controller's log has no Forbidden (403) answer" || diag "$(grep -iE 'forbidden|403' "$LOG" | head -5)"
like "$(grep -c . "$LOG")" '^[1-9]' "(the log is not empty)"

# --- controller.watchNamespace: a RoleBinding in that namespace only ---------------------------------
stop_pidfile "$STATE/rbac-controller.pid" "$CTL" tasked-controller 5 >/dev/null
REL2=${REL}n
"$HELM" template "$REL2" "$CHART" --namespace "$TEST_NS" --set controller.watchNamespace="$TEST_NS" \
	--set rbac.userRoles=false --show-only templates/serviceaccount.yaml --show-only templates/rbac.yaml >>"$rendered"
ok "the watchNamespace RBAC applies" kubectl --kubeconfig "$KUBECONFIG" apply -n "$TEST_NS" -f "$rendered"
is "$(kubectl --kubeconfig "$KUBECONFIG" get clusterrolebinding "$REL2-tasked-controller" -o name 2>&1 | grep -c '^clusterrolebinding')" 0 \
	"... with no ClusterRoleBinding"
token2=$(kubectl --kubeconfig "$KUBECONFIG" create token "$REL2-tasked" -n "$TEST_NS" --duration 1h)
sed "s|token: \"$token\"|token: \"$token2\"|" "$SA_KC" >"$SA_KC.2" && mv "$SA_KC.2" "$SA_KC"
chmod 600 "$SA_KC"
is "$(sak auth whoami -o jsonpath='{.status.userInfo.username}')" "system:serviceaccount:$TEST_NS:$REL2-tasked" \
	"the kubeconfig now is the namespaced install's service account"
is "$(sak auth can-i list tasks.tasked.dev --all-namespaces)" no "it may not list Tasks cluster-wide"
: >"$LOG"
start_bg "$STATE/rbac-controller.pid" "$LOG" "$CTL" --kubeconfig "$SA_KC" --namespace "$TEST_NS" \
	--listen "127.0.0.1:$API_PORT" --broker-listen "127.0.0.1:$BROKER_PORT" \
	--runner-token-file "$STATE/runner-token" --api-key-file "$STATE/api-key" \
	--leader-elect --leader-elect-namespace "$TEST_NS" --leader-elect-name "$REL2-tasked"
ok "the namespaced controller acquires its Lease" wait_for 60 grep -q '"acquired leadership"' "$LOG"
apply <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Flow
metadata: {name: fragile-ns}
spec:
  failFast: true
  tasks:
    - {name: breaks, dependsOn: [warm], shell: {command: ["false"]}}
    - {name: warm, shell: {command: ["true"]}}
    - {name: long, shell: {command: ["sleep", "600"]}}
EOF2
ok "a failFast Flow fails under the namespaced rights" wait_for 90 sh -c "[ \"\$(kubectl get flow fragile-ns -n $TEST_NS -o jsonpath={.status.phase})\" = Failed ]"
is "$(task_field fragile-ns-long .status.phase)" Cancelled "... and its running sibling was cancelled"
answers=$(curl -s "http://127.0.0.1:$API_PORT/metrics" | grep '^tasked_kube_responses_total{')
is "$(grep -c 'code="403"' <<<"$answers")" 0 "the namespaced controller got no 403" || diag "$(grep 'code="403"' <<<"$answers")"

# --- people: the built-in roles, through aggregation ----------------------------------------------

k create rolebinding viewer --clusterrole=view --user=vera >/dev/null
k create rolebinding editor --clusterrole=edit --user=ed >/dev/null
k create rolebinding administrator --clusterrole=admin --user=ada >/dev/null
can() { k auth can-i "${@:2}" --as "$1"; }
for u in vera ed ada; do
	for r in tasks flows taskqueues; do
		ok "$u ($(case $u in vera) echo view ;; ed) echo edit ;; ada) echo admin ;; esac)) may list $r" wait_for 30 sh -c "[ \"\$(kubectl auth can-i list $r.tasked.dev -n $TEST_NS --as $u)\" = yes ]"
	done
done
mk() { # USER KIND NAME
	case $2 in
	Task) spec='{"shell": {"command": ["true"]}}' ;;
	Flow) spec='{"tasks": [{"name": "a", "shell": {"command": ["true"]}}]}' ;;
	TaskQueue) spec='{"concurrency": 1}' ;;
	esac
	printf '{"apiVersion": "tasked.dev/v1alpha1", "kind": "%s", "metadata": {"name": "%s"}, "spec": %s}' "$2" "$3" "$spec" |
		k create --as "$1" -f -
}
nok "view cannot create a Task" mk vera Task by-vera
like "$NOK_OUTPUT" 'forbidden' "... Forbidden"
nok "view cannot create a Flow" mk vera Flow by-vera
is "$(can vera patch tasks.tasked.dev)" no "view cannot cancel a Task"
ok "edit can create a Task" mk ed Task by-ed
ok "edit can create a Flow" mk ed Flow by-ed
ok "edit can cancel a Task" k patch task by-ed --as ed --type merge -p '{"spec":{"cancel":true}}'
ok "edit can delete a Flow" k delete flow by-ed --as ed
nok "edit cannot create a TaskQueue (queue policy is admin's)" mk ed TaskQueue by-ed
like "$NOK_OUTPUT" 'forbidden' "... Forbidden"
is "$(can ed patch tasks.tasked.dev --subresource=status)" no "edit cannot write a Task's status"
ok "admin can create a TaskQueue" mk ada TaskQueue by-ada
ok "admin can create a Task" mk ada Task by-ada

done_testing
