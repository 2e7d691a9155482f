#!/usr/bin/env bash
# The chart's NetworkPolicy, enforced (kube-router's firewall on the node): the broker takes
# connections from the release's runner pool pods only, the API from the release's namespace
# only. Each refusal has a positive control from an allowed pod to the same port, so a closed
# port cannot pass for a policy.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/lib-node.sh"
test_namespace netpol

ok "the release has a runner pool (the broker listens on the pod network)" "$HELM" upgrade "$RELEASE" \
	"$IT_ROOT/charts/tasked" --namespace "$NAMESPACE" --reuse-values --wait --timeout 3m \
	--set 'pools[0].name=p1' --set 'pools[0].replicas=1' --set 'pools[0].labels.pool=p1'
ok "the NetworkPolicies are installed" kr get networkpolicy "$FULLNAME-controller" "$FULLNAME-pools"
pod=$(controller_pod)
ip=$(kr get pod "$pod" -o jsonpath='{.status.podIP}')
ok "controller pod $pod has an address ($ip)" test -n "$ip"

# connects NS POD PORT: an HTTP request from the probe pod reaches PORT on the controller pod.
connects() {
	printf 'GET /healthz HTTP/1.0\r\n\r\n' |
		kubectl --namespace "$1" exec -i "$2" -c probe -- nc -w 5 "$ip" "$3" 2>&1
}

# Probe pods in the release's namespace: one like any other pod there, one labelled as a runner
# pool pod of the release.
cleanup_probes() {
	kr delete pod it-np-plain it-np-pool --wait=false --ignore-not-found >/dev/null 2>&1
	_cleanup_namespace
}
trap cleanup_probes EXIT
TEST_NS_SAVED=$TEST_NS
TEST_NS=$NAMESPACE
ok "a plain pod in $NAMESPACE is Running" probe_pod it-np-plain
ok "a pod labelled as a pool pod of the release is Running" probe_pod it-np-pool \
	"{app.kubernetes.io/instance: $RELEASE, tasked.dev/runner-pool: probe}"
TEST_NS=$TEST_NS_SAVED
ok "a pod in another namespace is Running" probe_pod outsider

# --- the broker ----------------------------------------------------------------------------------
out=$(connects "$NAMESPACE" it-np-pool 8081)
like "$out" "^HTTP/1\\.[01] " "a pool pod of the release reaches the broker (control)"
out=$(connects "$NAMESPACE" it-np-plain 8081)
nok "a pod outside the allowed set does not reach the broker" sh -c 'printf "%s" "$1" | grep -q "^HTTP/"' _ "$out"
like "$out" "(refused|timed out)" "... the connection is refused by the policy"
out=$(connects "$TEST_NS" outsider 8081)
nok "a pod in another namespace does not reach the broker" sh -c 'printf "%s" "$1" | grep -q "^HTTP/"' _ "$out"
# RunnerPool pods live in their users' namespaces (docs/pools.md): labelled as such they reach the
# broker from any namespace, where each still needs its pool's token.
ok "a pod in another namespace labelled as a RunnerPool pod is Running" probe_pod rp-pod \
	"{app.kubernetes.io/managed-by: tasked, tasked.dev/runner-pool: probe}"
out=$(connects "$TEST_NS" rp-pod 8081)
like "$out" "^HTTP/1\\.[01] " "... and reaches the broker"

# --- the API -------------------------------------------------------------------------------------
out=$(connects "$NAMESPACE" it-np-plain 8080)
like "$out" "^HTTP/1\\.[01] 200" "a pod in the release namespace reaches the API (control)"
out=$(connects "$TEST_NS" outsider 8080)
nok "a pod in another namespace does not reach the API" sh -c 'printf "%s" "$1" | grep -q "^HTTP/"' _ "$out"
like "$out" "(refused|timed out)" "... the connection is refused by the policy"

# --- what the controller needs still works -------------------------------------------------------
ok "the controller pod stays Ready (egress to the API server and DNS allowed)" \
	kr wait --for=condition=Ready pod "$pod" --timeout=60s
k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: viapool}
spec:
  runnerSelector: {pool: p1}
  shell: {command: ["echo", "pool ok"]}
EOF2
ok_phase viapool Succeeded 120

done_testing
