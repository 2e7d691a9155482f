#!/usr/bin/env bash
# `helm install` for real into a namespace that enforces the restricted Pod Security
# Standard, with kube-controller-manager running: the Deployments' ReplicaSets create their
# Pods (no kubelet here, so they stay Pending) and report no FailedCreate. A weakened
# Deployment in the same namespace does get FailedCreate, so the check can fail. Upgrades
# keep the generated runner token and API key (lookup).
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/helm/lib.sh
. "$IT_ROOT/tests/helm/lib.sh"

test_namespace install
NS=$TEST_NS
REL=t${NS##*-}
FULL=$REL-tasked
h() { "$HELM" --kubeconfig "$KUBECONFIG" --namespace "$NS" "$@"; }
# shellcheck disable=SC2317 # called through the EXIT trap
cleanup() {
	h uninstall "$REL" --wait=false >/dev/null 2>&1 || true
	_cleanup_namespace
}
trap cleanup EXIT

if ! kubectl --kubeconfig "$KUBECONFIG" get --raw /apis/apps/v1 >/dev/null 2>&1 ||
	[ -z "$(kubectl --kubeconfig "$KUBECONFIG" get --raw /api/v1/namespaces/kube-system/configmaps/kube-root-ca.crt 2>/dev/null)" ]; then
	echo "Bail out! kube-controller-manager does not seem to run (no kube-root-ca.crt in kube-system)"
	exit 255
fi

ok "the namespace enforces the restricted Pod Security Standard" \
	k label namespace "$NS" pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/enforce-version=latest

ok "helm install (default values)" h install "$REL" "$CHART" --wait=false
like "$(h status "$REL" 2>&1)" 'STATUS: deployed' "the release is deployed"
like "$(h get notes "$REL" 2>&1)" "kubectl -n $NS wait --for=condition=Succeeded task/hello" "NOTES.txt shows how to run a task"

# rs_of DEPLOYMENT: name of the Deployment's newest ReplicaSet (waits up to 30 s).
rs_of() {
	local rs
	for _ in $(seq 1 150); do
		rs=$(k get rs -l "$2" -o jsonpath='{range .items[?(@.metadata.ownerReferences[0].name=="'"$1"'")]}{.metadata.creationTimestamp} {.metadata.name}{"\n"}{end}' 2>/dev/null |
			sort | tail -n 1 | cut -d' ' -f2)
		if [ -n "$rs" ]; then
			printf '%s\n' "$rs"
			return 0
		fi
		sleep 0.2
	done
	return 1
}
# pods_created RS N: the ReplicaSet reports N pods created (status.replicas), up to 30 s.
# shellcheck disable=SC2317 # called through ok
pods_created() {
	for _ in $(seq 1 150); do
		[ "$(k get rs "$1" -o jsonpath='{.status.replicas}' 2>/dev/null)" = "$2" ] && return 0
		sleep 0.2
	done
	return 1
}
failed_create() { # RS -> the FailedCreate events' messages
	k get events --field-selector "involvedObject.kind=ReplicaSet,involvedObject.name=$1,reason=FailedCreate" \
		-o jsonpath='{range .items[*]}{.message}{"\n"}{end}' 2>/dev/null
}
# check_deployment DEPLOYMENT SELECTOR REPLICAS
check_deployment() {
	local rs
	if ! rs=$(rs_of "$1" "$2"); then
		fail "Deployment $1 has a ReplicaSet"
		return
	fi
	pass "Deployment $1 has a ReplicaSet ($rs)"
	ok "ReplicaSet $rs created its $3 pod(s) in the restricted namespace" pods_created "$rs" "$3"
	is "$(failed_create "$rs")" "" "ReplicaSet $rs reports no FailedCreate"
	is "$(k get rs "$rs" -o jsonpath='{.status.conditions[?(@.type=="ReplicaFailure")].status}')" "" \
		"ReplicaSet $rs has no ReplicaFailure condition"
}
SEL="app.kubernetes.io/instance=$REL"
check_deployment "$FULL" "$SEL,app.kubernetes.io/component=controller" 1
pod=$(k get pods -l "$SEL,app.kubernetes.io/component=controller" -o name | head -n 1)
is "$(k get "$pod" -o jsonpath='{.spec.containers[*].name}')" "controller runner-0" "the controller pod runs the controller and a runner sidecar"
is "$(k get "$pod" -o jsonpath='{.spec.containers[1].securityContext.appArmorProfile.localhostProfile}')" tasked-runner \
	"the runner sidecar carries the tasked-runner AppArmor profile"

for s in runner-token api-key; do
	ok "Secret $FULL-$s was generated" k get secret "$FULL-$s"
done
token1=$(k get secret "$FULL-runner-token" -o jsonpath='{.data.runner-token}')
key1=$(k get secret "$FULL-api-key" -o jsonpath='{.data.api-key}')
like "$(printf '%s' "$token1" | base64 -d)" '^[A-Za-z0-9]{64}$' "the runner token is 64 random characters"

# --- upgrade: Secrets kept, pools added -----------------------------------------------------------

ok "helm upgrade adding a runner pool (pools-only values)" \
	h upgrade "$REL" "$CHART" -f "$IT_ROOT/tests/helm/values/pools-only.yaml" --wait=false
is "$(k get secret "$FULL-runner-token" -o jsonpath='{.data.runner-token}')" "$token1" "the runner token survives the upgrade (lookup)"
is "$(k get secret "$FULL-api-key" -o jsonpath='{.data.api-key}')" "$key1" "the API key survives the upgrade"
check_deployment "$FULL-pool-workers" "$SEL,app.kubernetes.io/component=pool-workers" 3
is "$(k get deploy "$FULL" -o jsonpath='{.spec.template.spec.containers[*].name}')" "controller" \
	"with runner.sidecars=0 the controller pod has no runner"
check_deployment "$FULL" "$SEL,app.kubernetes.io/component=controller" 1
ok "the broker Service exists for the pool" k get service "$FULL-broker"

# --- the check can fail: a weakened Deployment in the same namespace --------------------------------

# shellcheck disable=SC2016 # expanded by the inner bash
ok "a Deployment whose runner may escalate privileges can be created" \
	bash -c 'kubectl --kubeconfig "$KUBECONFIG" -n "$1" get deploy "$2" -o json |
		jq ".metadata = {name: \"weakened\", namespace: \"$1\"} | .spec.selector.matchLabels = {app: \"weakened\"}
			| .spec.template.metadata.labels = {app: \"weakened\"}
			| .spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation = true | del(.status)" |
		kubectl --kubeconfig "$KUBECONFIG" -n "$1" create -f -' _ "$NS" "$FULL"
rs=$(rs_of weakened app=weakened)
msg=
for _ in $(seq 1 150); do
	msg=$(failed_create "$rs")
	[ -n "$msg" ] && break
	sleep 0.2
done
like "$msg" 'violates PodSecurity "restricted:latest": allowPrivilegeEscalation' \
	"its ReplicaSet reports FailedCreate: violates PodSecurity"

ok "helm uninstall" h uninstall "$REL" --wait=false
nok "the release's ClusterRole is gone" kubectl --kubeconfig "$KUBECONFIG" get clusterrole "$FULL-controller"

done_testing
