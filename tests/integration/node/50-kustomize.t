#!/usr/bin/env bash
# The plain-manifest install (docs/install.md, "Plain manifests and GitOps") on the node:
# `kubectl apply -k` of an overlay on deploy/base, the way a user writes one. The overlay
# prefixes names (the Helm release's cluster-wide RBAC objects have the same names), brings the
# two Secrets, and, on a node without AppArmor, removes the appArmorProfile fields, as
# up-node.sh sets appArmor.type=None for the chart. The release's controller is scaled to 0
# meanwhile: two controllers would both dispatch the same Tasks.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/lib-node.sh"
test_namespace kustomize

overlay=$IT_ROOT/build/kustomize-it
rm -rf "$overlay"
mkdir -p "$overlay"
cat >"$overlay/kustomization.yaml" <<EOF2
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namePrefix: k-
resources: [../../deploy/base]
secretGenerator:
  - name: tasked-runner-token
    namespace: tasked
    literals: [runner-token=$(openssl rand -hex 32)]
    options: {disableNameSuffixHash: true}
  - name: tasked-api-key
    namespace: tasked
    literals: [api-key=$(openssl rand -hex 32)]
    options: {disableNameSuffixHash: true}
EOF2
if [ "$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null)" != Y ]; then
	diag "no AppArmor on this node: the overlay removes the appArmorProfile fields"
	cat >>"$overlay/kustomization.yaml" <<'EOF2'
patches:
  - target: {kind: Deployment}
    patch: |
      - {op: remove, path: /spec/template/spec/containers/0/securityContext/appArmorProfile}
      - {op: remove, path: /spec/template/spec/containers/1/securityContext/appArmorProfile}
EOF2
fi

restore() {
	kubectl delete -k "$overlay" --wait=true --timeout=120s >/dev/null 2>&1
	kr scale "deploy/$FULLNAME" --replicas=1 >/dev/null 2>&1
	kr rollout status "deploy/$FULLNAME" --timeout=180s >/dev/null 2>&1
	rm -rf "$overlay"
	_cleanup_namespace
}
trap restore EXIT

ok "the release's controller is scaled to 0" kr scale "deploy/$FULLNAME" --replicas=0
ok "... and its pod is gone" kr wait --for=delete pod -l app.kubernetes.io/component=controller --timeout=120s
ok "kubectl apply -k of the overlay" kubectl apply --server-side -k "$overlay"
like "$(kubectl get namespace tasked -o jsonpath='{.metadata.labels.pod-security\.kubernetes\.io/enforce}')" \
	"^restricted$" "namespace tasked enforces the restricted Pod Security Standard"
ok "the controller Deployment rolls out" kubectl -n tasked rollout status deployment/k-tasked --timeout=180s
nok "no FailedCreate on its ReplicaSet" sh -c "kubectl -n tasked get events --field-selector reason=FailedCreate -o name | grep -q ."

k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: kustomized}
spec:
  shell: {command: [/usr/local/bin/tasked-runner, --version]}
EOF2
ok_phase kustomized Succeeded 120
like "$(task_field kustomized .status.runner)" "^k-tasked-" "it ran in a runner sidecar of the kustomize install"

done_testing
