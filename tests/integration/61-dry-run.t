#!/usr/bin/env bash
# The rendered chart (several value sets) and deploy/ pass `kubectl apply --dry-run=server`
# against the real API server: schemas, field names, RBAC and policy objects as the server
# validates them.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/helm/lib.sh
. "$IT_ROOT/tests/helm/lib.sh"

test_namespace dryrun
NS=$TEST_NS

# Namespaces named in value sets would not exist here: point them at the test namespace.
fix=(--set "controller.watchNamespace=" --set "appArmor.loader.namespace=$NS")
out=$IT_ROOT/build/it-dryrun-$NS
mkdir -p "$out"
# shellcheck disable=SC2317 # called through the EXIT trap
cleanup() {
	rm -rf "$out"
	_cleanup_namespace
}
trap cleanup EXIT

for set in "${VALUE_SETS[@]}"; do
	extra=("${fix[@]}")
	case "$set" in
	pools-tls) extra+=(--set "controller.watchNamespace=$NS" --set "rbac.secretNamespaces={$NS}") ;;
	no-apparmor) extra+=(--set "controller.watchNamespace=$NS") ;;
	esac
	render "$set" "$NS" "${extra[@]}" >"$out/$set.yaml"
	n=$(grep -c '^kind: ' "$out/$set.yaml")
	ok "the chart with $set values: $n objects pass server-side dry run" \
		kubectl --kubeconfig "$KUBECONFIG" apply --dry-run=server -f "$out/$set.yaml"
done

# deploy/: CRDs as they are; the rest through an overlay that moves it into the test namespace
# (the base's own namespace "tasked" does not exist here, and dry run creates nothing).
ok "kubectl kustomize deploy/ builds" kubectl kustomize "$IT_ROOT/deploy"
ok "deploy/crds passes server-side dry run" \
	kubectl --kubeconfig "$KUBECONFIG" apply --dry-run=server -k "$IT_ROOT/deploy/crds"
rel=$(realpath --relative-to="$out" "$IT_ROOT/deploy")
printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: %s\nresources:\n  - %s/base\n' \
	"$NS" "$rel" >"$out/kustomization.yaml"
ok "deploy/base (in an overlay naming the test namespace) passes server-side dry run" \
	kubectl --kubeconfig "$KUBECONFIG" apply --dry-run=server -k "$out"
like "$(kubectl kustomize "$out")" "namespace: $NS" "... and the overlay moved it into $NS"
mkdir -p "$out/loader"
printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: %s\nresources:\n  - ../%s/apparmor-loader\n' \
	"$NS" "$rel" >"$out/loader/kustomization.yaml"
ok "deploy/apparmor-loader passes server-side dry run" \
	kubectl --kubeconfig "$KUBECONFIG" apply --dry-run=server -k "$out/loader"

# The dry run really validates: a misspelt field is refused.
sed 's/^  replicas: 1$/  replicaz: 1/' "$out/default.yaml" >"$out/broken.yaml"
nok "a rendered Deployment with a misspelt field is refused" \
	kubectl --kubeconfig "$KUBECONFIG" apply --dry-run=server -f "$out/broken.yaml"
like "$NOK_OUTPUT" 'unknown field "spec.replicaz"' "... naming the field"

done_testing
