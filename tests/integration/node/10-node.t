#!/usr/bin/env bash
# The node itself: the cluster DNS answers for the cluster zone only, pods cannot address
# anything outside the machine, an image that is not on the node fails at once without leaving
# the machine, and in-cluster API clients work (the controller pod talks to the API server).
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/lib-node.sh"
test_namespace node

ok "node $NODE_NAME is Ready" wait_for 30 sh -c \
	"[ \"\$(kubectl get node $NODE_NAME -o 'jsonpath={.status.conditions[?(@.type==\"Ready\")].status}')\" = True ]"
ok "probe pod Running" probe_pod probe

# --- DNS -----------------------------------------------------------------------------------------
out=$(in_probe probe nslookup "kubernetes.default.svc.cluster.local" 2>&1)
like "$out" "Address: 10\\.0\\.0\\.1" "kubernetes.default.svc.cluster.local resolves to the kubernetes Service"
out=$(in_probe probe nslookup "$FULLNAME.$NAMESPACE.svc.cluster.local" 2>&1)
ip=$(kr get svc "$FULLNAME" -o jsonpath='{.spec.clusterIP}')
like "$out" "Address: ${ip//./\\.}" "the controller's Service name resolves to its ClusterIP"
nok "a name outside the cluster zone does not resolve (nothing is forwarded)" \
	in_probe probe nslookup example.com
like "$(in_probe probe cat /etc/resolv.conf)" "nameserver $NODE_DNS_IP" "pods use the cluster DNS"

# --- network safety ------------------------------------------------------------------------------
routes=$(in_probe probe ip route)
diag "routes in a pod:" "$routes"
nok "a pod has no default route" sh -c "printf '%s\n' \"\$1\" | grep -q '^default'" _ "$routes"
nok "a pod cannot connect outside the machine" in_probe probe nc -w 3 192.0.2.1 80
ok "FORWARD drops what leaves the bridge (mangle, before any filter rule)" \
	iptables -t mangle -C FORWARD -i "$NODE_BRIDGE" ! -o "$NODE_BRIDGE" -m comment --comment "$NODE_TAG" -j DROP
ok "nothing is masqueraded for the pod network" \
	sh -c "! iptables -t nat -S POSTROUTING | grep -q -- '-s $NODE_POD_CIDR.*MASQUERADE'"

# --- image pulls stay on the machine ---------------------------------------------------------------
for img in docker.io/library/tasked-absent:1 registry.example/tasked/absent:1; do
	name=absent-$(printf '%s' "$img" | cksum | cut -d' ' -f1)
	k run "$name" --image="$img" --image-pull-policy=Always --restart=Never >/dev/null
	msg_of() { k get events --field-selector "involvedObject.name=$name,reason=Failed" -o jsonpath='{.items[*].message}'; }
	ok "pulling $img fails" wait_for 30 sh -c "[ -n \"\$(kubectl -n $TEST_NS get events --field-selector involvedObject.name=$name,reason=Failed -o name)\" ]"
	msg=$(msg_of)
	like "$msg" "127\\.0\\.0\\.1:9.*(connection refused|connect: connection refused)" \
		"$img: refused locally (the registry resolves to a loopback port that refuses)"
	k delete pod "$name" --wait=false >/dev/null
done

# --- in-cluster API clients ------------------------------------------------------------------------
ok "the controller pod is Ready (it lists and watches through the kubernetes Service)" \
	kr wait --for=condition=Ready pod -l app.kubernetes.io/component=controller --timeout=60s
ok "kube-root-ca.crt is published in every namespace" k get configmap kube-root-ca.crt
ok "the kubernetes Service has the API server as its endpoint" sh -c \
	"kubectl get endpointslice -n default -l kubernetes.io/service-name=kubernetes -o jsonpath='{.items[0].endpoints[0].addresses[0]}' | grep -qx $NODE_IP"

done_testing
