#!/usr/bin/env bash
# Pod Security admission on the real API server: in a namespace that enforces the
# "restricted" Pod Security Standard, every pod template the chart renders (every value set)
# and every pod of deploy/ is admitted as a Pod (create --dry-run=server). Deliberately
# weakened runner pods are refused, so the check can fail. The optional AppArmor loader is
# privileged by design: refused here, admitted in a namespace labelled privileged.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/helm/lib.sh
. "$IT_ROOT/tests/helm/lib.sh"

test_namespace pss
NS=$TEST_NS
PRIV_NS=$NS-priv
ok "the test namespace enforces the restricted Pod Security Standard" \
	k label namespace "$NS" pod-security.kubernetes.io/enforce=restricted \
	pod-security.kubernetes.io/enforce-version=latest
# shellcheck disable=SC2016 # expanded by the inner bash
ok "a second namespace is labelled privileged (for the AppArmor loader)" \
	bash -c 'kubectl --kubeconfig "$KUBECONFIG" create namespace "$1" >/dev/null &&
		kubectl --kubeconfig "$KUBECONFIG" label namespace "$1" pod-security.kubernetes.io/enforce=privileged' _ "$PRIV_NS"
# shellcheck disable=SC2317 # called through the EXIT trap
cleanup() {
	kubectl --kubeconfig "$KUBECONFIG" delete namespace "$PRIV_NS" --wait=false >/dev/null 2>&1 || true
	_cleanup_namespace
}
trap cleanup EXIT

# admit NAMESPACE POD_JSON: create the Pod with a server-side dry run.
admit() {
	printf '%s\n' "$2" | kubectl --kubeconfig "$KUBECONFIG" create --dry-run=server -n "$1" -f -
}

# --- every pod the chart renders --------------------------------------------------------------

total=0
for set in "${VALUE_SETS[@]}"; do
	pods=$(render "$set" "$NS" | to_json | pod_specs)
	while IFS= read -r pod; do
		[ -n "$pod" ] || continue
		name=$(jq -r .metadata.name <<<"$pod")
		case "$name" in *apparmor-loader*) continue ;; esac
		total=$((total + 1))
		# Admitted, and without a single warning (a warning would be a second line).
		is "$(admit "$NS" "$pod" 2>&1)" "pod/$name created (server dry run)" \
			"$set: pod of $name is admitted under restricted, without warnings"
	done <<<"$pods"
done
ok "at least 12 pod templates were checked ($total)" test "$total" -ge 12

# --- deploy/ -------------------------------------------------------------------------------------

deploy_pods=$(kubectl kustomize "$IT_ROOT/deploy/base" | to_json | pod_specs)
while IFS= read -r pod; do
	[ -n "$pod" ] || continue
	name=$(jq -r .metadata.name <<<"$pod")
	is "$(admit "$NS" "$pod" 2>&1)" "pod/$name created (server dry run)" \
		"deploy/: pod of $name is admitted under restricted, without warnings"
done <<<"$deploy_pods"

# --- the check can fail: weakened pods are refused ----------------------------------------------

base=$(render default "$NS" | to_json | pod_specs | jq -c 'select(.metadata.name == "deployment-t-tasked")')
like "$base" '"runner-0"' "the controller pod with its runner sidecar is the base for the weakened pods"
# weaken DESC EXPECTED-ERE JQ-FILTER: apply the filter to the runner sidecar's pod; refused.
weaken() {
	local pod
	pod=$(jq -c "$3" <<<"$base")
	nok "refused: $1" admit "$NS" "$pod"
	like "$NOK_OUTPUT" "violates PodSecurity \"restricted:latest\": .*$2" "... naming $2"
}
R='.spec.containers[] |= (if .name == "runner-0" then '
weaken "a runner that may escalate privileges" 'allowPrivilegeEscalation != false' \
	"$R .securityContext.allowPrivilegeEscalation = true else . end)"
weaken "a runner running as root" 'runAsUser=0' \
	"$R .securityContext.runAsUser = 0 else . end)"
weaken "a runner allowed to run as root" 'runAsNonRoot != true' \
	"$R .securityContext.runAsNonRoot = false else . end) | .spec.securityContext.runAsNonRoot = false"
weaken "a runner adding NET_RAW" 'unrestricted capabilities' \
	"$R .securityContext.capabilities = {add: [\"NET_RAW\"]} else . end)"
weaken "a runner without a seccomp profile" 'seccompProfile' \
	'del(.spec.securityContext.seccompProfile) | .spec.containers[] |= del(.securityContext.seccompProfile)'
weaken "a runner with AppArmor Unconfined" 'forbidden AppArmor profile' \
	"$R .securityContext.appArmorProfile = {type: \"Unconfined\"} else . end)"
weaken "a runner that is privileged" 'privileged' \
	"$R .securityContext.privileged = true | .securityContext.allowPrivilegeEscalation = true else . end)"
weaken "a pod on the host network" 'host namespaces' '.spec.hostNetwork = true'
weaken "a runner with a hostPath /tmp" 'restricted volume type "hostPath"' \
	'.spec.volumes |= map(if .name == "tmp-runner-0" then {name: .name, hostPath: {path: "/tmp"}} else . end)'

# --- the AppArmor loader: privileged on purpose, never in the restricted namespace ----------------

loader=$(render loader "$NS" --set "appArmor.loader.namespace=$PRIV_NS" | to_json | pod_specs |
	jq -c 'select(.metadata.name | test("apparmor-loader"))')
like "$loader" '"privileged":true' "the loader DaemonSet renders (privileged)"
nok "the loader pod is refused in the restricted namespace" admit "$NS" "$loader"
like "$NOK_OUTPUT" 'violates PodSecurity' "... by Pod Security admission"
ok "the loader pod is admitted in a namespace labelled privileged" admit "$PRIV_NS" "$loader"

done_testing
