#!/usr/bin/env bash
# Last of the node suites: `make down` stops everything and undoes every host-global change; a
# second `make up` works; and so does `make up` after a crash that left processes' state behind
# (containerd, the kubelet and the rest killed with SIGKILL, shims and pods still there).
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/lib-node.sh"

ours() { # processes whose command line names our state directory
	local f
	for f in /proc/[0-9]*/cmdline; do
		{ tr '\0' ' ' <"$f"; } 2>/dev/null | grep -F -- "$STATE/" >/dev/null && echo "${f#/proc/}"
	done
}
host_changes() { # prints every host-global change of the node that is still there
	ip link show "$NODE_BRIDGE" >/dev/null 2>&1 && echo "link $NODE_BRIDGE"
	for t in filter nat mangle; do
		iptables -t "$t" -S 2>/dev/null | grep -E -- "$NODE_TAG|KUBE-" | sed "s/^/iptables $t: /"
		ip6tables -t "$t" -S 2>/dev/null | grep -E -- "KUBE-" | sed "s/^/ip6tables $t: /"
	done
	ipset list -n 2>/dev/null | grep -E '^(KUBE-|kube-router)' | sed 's/^/ipset /'
	ls -d /sys/fs/cgroup/*/"$NODE_TAG" 2>/dev/null | sed 's/^/cgroup /'
	awk -v n="$STATE/node/" 'index($5, n) == 1 { print "mount " $5 }' /proc/self/mountinfo
	ls -d "/run/$NODE_TAG" /var/lib/kubelet/device-plugins/kubelet.sock /var/lib/cni/results/"$NODE_TAG"-* \
		2>/dev/null | sed 's/^/path /'
	# Shim sockets: /run/containerd/s is every containerd's (Docker's too); ours are the ones
	# named after our containerd's ids (see shim_socket).
	local id
	for id in $ctrd_ids; do
		[ -e "$(shim_socket "$id")" ] && echo "path $(shim_socket "$id") (the shim socket of $id)"
	done
	# Network namespaces made since this node started: what an earlier node on this machine
	# may have left is not this one's.
	find /run/netns -maxdepth 1 -name 'cni-*' -newer "$node_start" 2>/dev/null | sed 's/^/netns /'
	find /var/log/containers -maxdepth 1 -lname "$STATE/node/*" 2>/dev/null | sed 's/^/log link /'
	[ -s "$STATE/node/created-paths" ] && sed 's/^/created path still recorded /' "$STATE/node/created-paths"
	true
}
# shim_socket ID: containerd 1.6 names a shim's socket sha256(<its address>/<namespace>/<id>).
shim_socket() {
	printf '/run/containerd/s/%s\n' \
		"$(printf '%s' "$STATE/node/containerd/containerd.sock/k8s.io/$1" | sha256sum | cut -d' ' -f1)"
}
api_ready() {
	printf 'X-API-Key: %s\n' "$(cat "$STATE/api-key")" |
		curl -fsS --max-time 2 -o /dev/null -H @- "$(cat "$STATE/api-url")/readyz"
}
run_task() { # NAME: a Task in default that must succeed in a sidecar
	kubectl delete task "$1" --ignore-not-found >/dev/null
	kubectl apply -f - >/dev/null <<-EOF2
		apiVersion: tasked.dev/v1alpha1
		kind: Task
		metadata: {name: $1, namespace: default}
		spec: {shell: {command: ["echo", "$1"]}}
	EOF2
	wait_for 120 sh -c "[ \"\$(kubectl get task $1 -o jsonpath='{.status.phase}')\" = Succeeded ]"
}

# Every sandbox and container id our containerd ever named; one of them is a live shim's socket,
# or the socket check below could not find ours.
ctrd_ids=$(grep -ohE '\b[0-9a-f]{64}\b' "$STATE/node/containerd.log" 2>/dev/null | sort -u)
live=$(ss -xlnH 2>/dev/null | awk '{print $5}')
named=0
for id in $ctrd_ids; do
	grep -qxF -- "$(shim_socket "$id")" <<<"$live" && named=$((named + 1))
done
ok "our shims' sockets are named as the check below expects ($named live)" test "$named" -gt 0
saved=$(cat "$STATE/node/sysctl.saved" 2>/dev/null)
ok "the sysctls the kubelet changes were recorded before it started" test -n "$saved"
# The node's start: sysctl.saved is written then (and removed by make down).
node_start=$(mktemp)
trap 'rm -f "$node_start"' EXIT
ok "the node's start time is known" touch -r "$STATE/node/sysctl.saved" "$node_start"
ok "make down" "$IT_ROOT/tests/cluster/down.sh"
now=$(printf '%s\n' "$saved" | while read -r t _; do printf '%s %s\n' "$t" "$(cat "/proc/sys/$t")"; done)
is "$now" "$saved" "make down put the kernel sysctls back (overcommit, panic, panic_on_oops, keys)"
left=$(ours)
is "$left" "" "no process of the cluster is left"
[ -z "$left" ] || diag "$(ps -o pid,args -p "$(echo $left | tr ' ' ,)")"
changes=$(host_changes)
is "$changes" "" "no host-global change of the node is left"

ok "make up after make down" "$IT_ROOT/tests/cluster/up.sh"
ok "the controller's API answers" api_ready
ok "a task runs" run_task after-down

# A crash: every process of the node and the API server killed, nothing cleaned up.
for p in node/containerd node/kubelet node/kube-proxy node/kube-scheduler node/netpol kube-apiserver; do
	kill -KILL "$(cat "$STATE/$p.pid")" 2>/dev/null
done
shims=$(for f in /proc/[0-9]*/cmdline; do { tr '\0' ' ' <"$f"; } 2>/dev/null | grep -F "$STATE/node/containerd/containerd.sock" >/dev/null && echo x; done | wc -l)
ok "pods' shims outlived the crash ($shims)" test "$shims" -gt 0
ok "make up after the crash" "$IT_ROOT/tests/cluster/up.sh"
ok "the controller's API answers" api_ready
ok "a task runs" run_task after-crash

done_testing
