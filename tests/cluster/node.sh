#!/usr/bin/env bash
# A real Kubernetes worker node on this machine, for the control plane of controlplane.sh:
# a private containerd (Debian's, with its CRI plugin; never Docker's), the kubelet,
# kube-scheduler and kube-proxy (iptables mode), Debian's CNI plugins on a bridge of our own,
# and CoreDNS as the cluster DNS.
#
#   node.sh net   DIR   the bridge and its FORWARD rules (before the control plane, which
#                       listens on the bridge's address)
#   node.sh start DIR   everything else; idempotent (a half-running node is stopped and started)
#   node.sh stop  DIR   stop everything by pid and undo every host-global change
#   node.sh status DIR
#   node.sh import DIR IMAGE...   Docker images into the node's containerd (when changed)
#   node.sh procs DIR [NAMESPACE] every running container's main process as the kernel sees it:
#                       NAMESPACE POD CONTAINER PID UID GID CAPEFF NONEWPRIVS SECCOMP ROOT(ro|rw)
#
# DIR is the cluster's state directory (the control plane's pki/ and kubeconfig are there);
# the node keeps its own state in DIR/node. Run as root.
#
# Network safety: pods reach the node, each other and Services only. The bridge has no default
# route for pods, nothing is masqueraded, and a FORWARD rule drops whatever leaves the bridge.
# Image pulls never leave the machine: every registry resolves to a loopback port that refuses
# (containerd's hosts directory, _default included, and a proxy on the same port), so an image
# that is not in the node's store fails at once.
#
# Host-global state (one node per machine; stop undoes all of it):
#   bridge tasked0 (and its route to the Service range), /var/log/containers (the kubelet's
#   links to our pods' logs), iptables rules commented
#   "tasked-node" in FORWARD (filter and mangle), the KUBE-* chains of kube-proxy and
#   kube-router, kube-router's ipsets, the cgroup /tasked-node in every cgroup v1 hierarchy, /run/tasked-node (owner),
#   /var/lib/kubelet/device-plugins (kubelet), /var/lib/cni (CNI result cache),
#   /run/containerd (shim sockets), /run/netns/cni-* of our pods, and the kernel sysctls the
#   kubelet sets (see save_tunables).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=tests/cluster/lib.sh
. "$here/lib.sh"

usage() {
	echo "usage: $(basename "$0") net|start|stop|status DIR | import DIR IMAGE..." >&2
	exit 2
}
[ $# -ge 2 ] || usage
cmd=$1
DIR=$(abspath "$2")
DIR=${DIR%/}
shift 2
case "$cmd" in net | start | stop | status) [ $# -eq 0 ] || usage ;; import | procs) ;; *) usage ;; esac

N=$DIR/node
CTRD=$N/containerd
SOCK=$CTRD/containerd.sock
OWNER=/run/$NODE_TAG/owner
START_TIMEOUT=${TASKED_START_TIMEOUT:-90}
# A port on loopback nothing listens on: registries and the proxy point there.
REFUSE=127.0.0.1:9

[ "$(id -u)" -eq 0 ] || die "a node needs root (network, cgroups, mounts)"
[ ${#SOCK} -lt 100 ] || die "$SOCK is too long for a unix socket; use a shorter TASKED_STATE_DIR"

bindir() { "$here/build-kube.sh" node; }
CRICTL_VERSION=${TASKED_CRICTL_VERSION:-1.34.0}
COREDNS_VERSION=${TASKED_COREDNS_VERSION:-1.12.4}
KUBE_ROUTER_VERSION=${TASKED_KUBE_ROUTER_VERSION:-2.1.0}

crictl() {
	[ -s "$N/crictl.yaml" ] ||
		printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 20\n' "$SOCK" "$SOCK" >"$N/crictl.yaml"
	"$BIN/crictl-$CRICTL_VERSION" --config "$N/crictl.yaml" "$@"
}
ctr() { command ctr --address "$SOCK" --namespace k8s.io "$@"; }

# ---------------------------------------------------------------------------------------------
# Network: bridge and FORWARD rules

fwd_rules() { # TABLE RULE (after the chain) per line
	printf '%s\n' "filter -i $NODE_BRIDGE -o $NODE_BRIDGE -m comment --comment $NODE_TAG -j ACCEPT" \
		"mangle -i $NODE_BRIDGE ! -o $NODE_BRIDGE -m comment --comment $NODE_TAG -j DROP"
}

net_up() {
	local t r
	claim_owner
	if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
		ip link add "$NODE_BRIDGE" type bridge
	fi
	# (No "| grep -q" under pipefail: grep's early exit can fail the pipeline with SIGPIPE.)
	case "$(ip -4 addr show dev "$NODE_BRIDGE")" in
	*"inet $NODE_IP/"*) ;;
	*) ip addr add "$NODE_IP/${NODE_POD_CIDR#*/}" dev "$NODE_BRIDGE" ;;
	esac
	ip link set "$NODE_BRIDGE" up
	# The host reaches Services from the node's address (pods have no route back to any
	# other); the route goes away with the bridge.
	ip route replace "$NODE_SERVICE_CIDR" dev "$NODE_BRIDGE" src "$NODE_IP"
	# Pod to pod and Service traffic crosses the bridge through the FORWARD chain
	# (bridge-nf-call-iptables); Docker's policy there is DROP, so accept it. Whatever would
	# leave the bridge is dropped in the mangle table, before any filter rule (the NetworkPolicy
	# controller's chains go first in filter and accept what policies allow).
	while read -r t r; do
		# shellcheck disable=SC2086 # the rule is meant to split
		iptables -t "$t" -C FORWARD $r 2>/dev/null || iptables -t "$t" -I FORWARD 1 $r
	done < <(fwd_rules)
	[ "$(cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null)" = 1 ] ||
		die "net.bridge.bridge-nf-call-iptables is not 1 (modprobe br_netfilter; sysctl -w" \
			"net.bridge.bridge-nf-call-iptables=1): Services and NetworkPolicies need it"
	echo "bridge $NODE_BRIDGE $NODE_IP/${NODE_POD_CIDR#*/} up, FORWARD rules in place"
}

net_down() {
	local t r
	while read -r t r; do
		# shellcheck disable=SC2086
		while iptables -t "$t" -C FORWARD $r 2>/dev/null; do iptables -t "$t" -D FORWARD $r; done
	done < <(fwd_rules)
	if ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
		ip link del "$NODE_BRIDGE"
	fi
}

# One node per machine: the first state directory to start one owns it until it stops.
claim_owner() {
	local other
	mkdir -p "/run/$NODE_TAG"
	if [ -s "$OWNER" ]; then
		other=$(cat "$OWNER")
		if [ "$other" != "$DIR" ] && [ -d "$other/node" ]; then
			die "the node of $other is running on this machine (one node per machine):" \
				"stop it first with 'TASKED_STATE_DIR=$other make down'"
		fi
	fi
	printf '%s\n' "$DIR" >"$OWNER"
}

# ---------------------------------------------------------------------------------------------
# Configuration

load_node_ports() {
	local f=$N/ports.env
	if [ -s "$f" ]; then
		# shellcheck disable=SC1090
		. "$f"
	fi
	if [ -z "${KUBELET_PORT:-}" ]; then
		KUBELET_PORT=$(pick_port)
		KUBELET_HEALTHZ_PORT=$(pick_port "$KUBELET_PORT")
		SCHED_PORT=$(pick_port "$KUBELET_PORT" "$KUBELET_HEALTHZ_PORT")
		PROXY_HEALTHZ_PORT=$(pick_port "$KUBELET_PORT" "$KUBELET_HEALTHZ_PORT" "$SCHED_PORT")
		PROXY_METRICS_PORT=$(pick_port "$KUBELET_PORT" "$KUBELET_HEALTHZ_PORT" "$SCHED_PORT" "$PROXY_HEALTHZ_PORT")
		printf 'KUBELET_PORT=%s\nKUBELET_HEALTHZ_PORT=%s\nSCHED_PORT=%s\nPROXY_HEALTHZ_PORT=%s\nPROXY_METRICS_PORT=%s\n' \
			"$KUBELET_PORT" "$KUBELET_HEALTHZ_PORT" "$SCHED_PORT" "$PROXY_HEALTHZ_PORT" "$PROXY_METRICS_PORT" >"$f.tmp"
		mv "$f.tmp" "$f"
	fi
}

write_containerd_config() {
	mkdir -p "$CTRD/certs.d/_default" "$CTRD/certs.d/docker.io"
	# Every registry, Docker Hub's included, resolves to a port that refuses: nothing is pulled.
	printf 'server = "http://%s"\n\n[host."http://%s"]\n  capabilities = ["pull", "resolve"]\n' \
		"$REFUSE" "$REFUSE" | tee "$CTRD/certs.d/_default/hosts.toml" >"$CTRD/certs.d/docker.io/hosts.toml"
	cat >"$CTRD/config.toml" <<-EOF
		version = 2
		root = "$CTRD/root"
		state = "$CTRD/state"
		oom_score = 0
		[grpc]
		  address = "$SOCK"
		[ttrpc]
		  address = ""
		[debug]
		  address = ""
		  level = "info"
		[metrics]
		  address = ""
		[plugins]
		  [plugins."io.containerd.internal.v1.opt"]
		    path = "$CTRD/opt"
		  [plugins."io.containerd.grpc.v1.cri"]
		    sandbox_image = "$PAUSE_IMAGE"
		    disable_apparmor = $(apparmor_enabled && echo false || echo true)
		    enable_selinux = false
		    stream_server_address = "127.0.0.1"
		    stream_server_port = "0"
		    # Without CAP_SYS_RESOURCE in the bounding set (containers, some VMs) no process may
		    # lower oom_score_adj, and the kubelet asks -998 for sandboxes: clamp instead of fail.
		    restrict_oom_score_adj = $(restrict_oom && echo true || echo false)
		    enable_unprivileged_ports = false
		    enable_unprivileged_icmp = false
		    [plugins."io.containerd.grpc.v1.cri".registry]
		      config_path = "$CTRD/certs.d"
		    [plugins."io.containerd.grpc.v1.cri".containerd]
		      snapshotter = "overlayfs"
		      default_runtime_name = "runc"
		      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
		        runtime_type = "io.containerd.runc.v2"
		        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
		          SystemdCgroup = false
		          Root = "$CTRD/runc-root"
		          BinaryName = "$(command -v runc)"
		    [plugins."io.containerd.grpc.v1.cri".cni]
		      bin_dir = "/usr/lib/cni"
		      conf_dir = "$N/cni/net.d"
		      max_conf_num = 1
	EOF
}

apparmor_enabled() { [ "$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null)" = Y ]; }

# CAP_SYS_RESOURCE is bit 24 of the bounding set.
restrict_oom() {
	local bnd
	bnd=$(awk '/^CapBnd:/ { print $2 }' /proc/self/status)
	[ $((0x$bnd >> 24 & 1)) -eq 0 ]
}

write_cni_config() {
	mkdir -p "$N/cni/net.d" "$N/cni/ipam"
	cat >"$N/cni/net.d/10-tasked.conflist" <<-EOF
		{
		  "cniVersion": "1.0.0",
		  "name": "$NODE_TAG",
		  "plugins": [
		    {
		      "type": "bridge", "bridge": "$NODE_BRIDGE", "isGateway": true, "ipMasq": false,
		      "hairpinMode": true,
		      "ipam": {
		        "type": "host-local", "dataDir": "$N/cni/ipam",
		        "ranges": [[{"subnet": "$NODE_POD_CIDR", "gateway": "$NODE_IP"}]],
		        "routes": [{"dst": "$NODE_SERVICE_CIDR"}]
		      }
		    },
		    {"type": "portmap", "capabilities": {"portMappings": true}}
		  ]
		}
	EOF
}

# The node's identity: a client certificate system:node:NAME in system:nodes, signed by the
# cluster CA (the Node authorizer and NodeRestriction then limit the kubelet to its own pods).
write_kubelet_identity() {
	local pki=$DIR/pki
	mkdir -p "$N/kubelet/pki"
	(
		umask 077
		cd "$N/kubelet/pki"
		if [ ! -s node.crt ] || [ ! -s node.key ] || ! openssl verify -CAfile "$pki/ca.crt" node.crt >/dev/null 2>&1; then
			openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out node.key 2>/dev/null
			openssl req -new -key node.key -subj "/O=system:nodes/CN=system:node:$NODE_NAME" -out node.csr
			openssl x509 -req -in node.csr -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
				-set_serial "0x$(openssl rand -hex 16)" -days 3650 -sha256 \
				-extfile "$pki/openssl.cnf" -extensions v3_client -out node.crt 2>/dev/null
			rm -f node.csr
		fi
	)
	sed -e '/^users:/,$d' "$DIR/kubeconfig" >"$N/kubelet/kubeconfig.tmp"
	cat >>"$N/kubelet/kubeconfig.tmp" <<-EOF
		users:
		- name: tasked-admin
		  user:
		    client-certificate: $N/kubelet/pki/node.crt
		    client-key: $N/kubelet/pki/node.key
		contexts:
		- name: tasked
		  context:
		    cluster: tasked
		    user: tasked-admin
		current-context: tasked
	EOF
	mv "$N/kubelet/kubeconfig.tmp" "$N/kubelet/kubeconfig"
	chmod 600 "$N/kubelet/kubeconfig"
}

write_kubelet_config() {
	mkdir -p "$N/kubelet/root" "$N/kubelet/pod-logs"
	: >"$N/kubelet/resolv.conf" # pods get the cluster DNS and nothing of the host's
	cat >"$N/kubelet/config.yaml" <<-EOF
		apiVersion: kubelet.config.k8s.io/v1beta1
		kind: KubeletConfiguration
		address: $NODE_IP
		port: $KUBELET_PORT
		readOnlyPort: 0
		healthzBindAddress: 127.0.0.1
		healthzPort: $KUBELET_HEALTHZ_PORT
		authentication:
		  anonymous: {enabled: false}
		  webhook: {enabled: true}
		  x509: {clientCAFile: $DIR/pki/ca.crt}
		authorization: {mode: Webhook}
		containerRuntimeEndpoint: unix://$SOCK
		imageServiceEndpoint: unix://$SOCK
		cgroupDriver: cgroupfs
		cgroupRoot: /$NODE_TAG
		cgroupsPerQOS: true
		failCgroupV1: false
		failSwapOn: false
		makeIPTablesUtilChains: false
		podLogsDir: $N/kubelet/pod-logs
		resolvConf: $N/kubelet/resolv.conf
		clusterDomain: cluster.local
		clusterDNS: [$NODE_DNS_IP]
		serializeImagePulls: false
		maxPods: 110
		podPidsLimit: 4096
		evictionHard: {memory.available: 100Mi, nodefs.available: 2%, imagefs.available: 2%, nodefs.inodesFree: 2%}
		imageGCHighThresholdPercent: 100
		imageGCLowThresholdPercent: 99
		fileCheckFrequency: 0s
		syncFrequency: 10s
		nodeStatusUpdateFrequency: 10s
		shutdownGracePeriod: 0s
		allowedUnsafeSysctls: []
	EOF
}

# Pods live under /tasked-node in every cgroup v1 hierarchy (cgroupRoot); cpuset needs its
# cpus and mems filled in before anything can join.
cgroups_up() {
	local h
	for h in /sys/fs/cgroup/*/; do
		[ -e "$h/cgroup.procs" ] || continue
		mkdir -p "$h$NODE_TAG"
		if [ -e "$h/cpuset.cpus" ]; then
			cat "$h/cpuset.cpus" >"$h$NODE_TAG/cpuset.cpus"
			cat "$h/cpuset.mems" >"$h$NODE_TAG/cpuset.mems"
		fi
	done
}

cgroups_down() {
	local h d
	for h in /sys/fs/cgroup/*/; do
		[ -d "$h$NODE_TAG" ] || continue
		# Deepest first; a cgroup with a process left in it stays (and is reported).
		while read -r d; do
			rmdir "$d" 2>/dev/null || note "cgroup $d is still in use"
		done < <(find "$h$NODE_TAG" -depth -type d)
	done
}

# The kubelet sets these host sysctls to its liking at every start (vm.overcommit_memory=1,
# kernel.panic=10, kernel.panic_on_oops=1, ...) unless protectKernelDefaults makes it refuse to
# start instead. Record them before the first start; stop puts them back.
KERNEL_TUNABLES=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops
	kernel/keys/root_maxkeys kernel/keys/root_maxbytes)
save_tunables() {
	local t
	[ -s "$N/sysctl.saved" ] && return 0
	for t in "${KERNEL_TUNABLES[@]}"; do
		printf '%s %s\n' "$t" "$(cat "/proc/sys/$t")"
	done >"$N/sysctl.saved.tmp"
	mv "$N/sysctl.saved.tmp" "$N/sysctl.saved"
}
restore_tunables() {
	local t v
	[ -s "$N/sysctl.saved" ] || return 0
	while read -r t v; do
		[ "$(cat "/proc/sys/$t")" = "$v" ] || echo "$v" >"/proc/sys/$t"
	done <"$N/sysctl.saved"
	rm -f "$N/sysctl.saved"
}

# ---------------------------------------------------------------------------------------------
# Images: built FROM scratch with the local Docker engine, imported into the node's containerd.

IMG_TAG=$(cat "$root/VERSION" 2>/dev/null || echo 0.0.0)
PAUSE_IMAGE=docker.io/library/tasked-pause:$IMG_TAG
COREDNS_IMAGE=docker.io/library/tasked-coredns:$COREDNS_VERSION

# import_image NAME: docker save NAME | ctr import, unless the node has that very image.
import_image() {
	local name=$1 id have
	id=$(docker image inspect -f '{{.Id}}' "$name") || die "no Docker image $name"
	have=$(ctr images ls "name==docker.io/library/$name" 2>/dev/null | awk 'NR == 2 { print $3 }')
	if [ -n "$have" ] && [ "$(cat "$N/images/$name.id" 2>/dev/null)" = "$id" ]; then
		return 0
	fi
	docker save "$name" | ctr images import - >/dev/null ||
		die "importing $name into the node's containerd failed"
	mkdir -p "$N/images"
	printf '%s\n' "$id" >"$N/images/$name.id"
	echo "imported $name"
}

docker_build() { # NAME DOCKERFILE CONTEXT
	# (The engine's notes about its legacy builder are noise; the log is shown on failure.)
	docker build -q -f "$2" -t "$1" "$3" >"$N/docker-build.log" 2>&1 || {
		cat "$N/docker-build.log" >&2
		die "docker build of $1 failed"
	}
}

build_node_images() {
	local ctx=$root/build/node-images
	if ! command -v docker >/dev/null || ! docker info >/dev/null 2>&1; then
		die "building the node's images needs the Docker engine (docker build)"
	fi
	mkdir -p "$ctx/pause" "$ctx/coredns"
	if [ ! -x "$ctx/pause/pause" ] || [ "$here/images/pause.c" -nt "$ctx/pause/pause" ]; then
		cc -static -Os -s -o "$ctx/pause/pause" "$here/images/pause.c" || die "building pause failed"
	fi
	docker_build "tasked-pause:$IMG_TAG" "$here/images/pause.Dockerfile" "$ctx/pause"
	cp "$BIN/coredns-$COREDNS_VERSION" "$ctx/coredns/coredns"
	docker_build "tasked-coredns:$COREDNS_VERSION" "$here/images/coredns.Dockerfile" "$ctx/coredns"
	import_image "tasked-pause:$IMG_TAG"
	import_image "tasked-coredns:$COREDNS_VERSION"
}

# ---------------------------------------------------------------------------------------------
# Processes

ctrd_ready() { command ctr --address "$SOCK" version >/dev/null 2>&1; }

start_containerd() {
	write_containerd_config
	# A proxy that refuses, so not even a name lookup of a registry leaves the machine.
	(
		export HTTP_PROXY="http://$REFUSE" HTTPS_PROXY="http://$REFUSE" http_proxy="http://$REFUSE" \
			https_proxy="http://$REFUSE" NO_PROXY='' no_proxy=''
		start_bg "$N/containerd.pid" "$N/containerd.log" /usr/bin/containerd --config "$CTRD/config.toml"
	)
	wait_until "$START_TIMEOUT" "$N/containerd.pid" /usr/bin/containerd containerd "$N/containerd.log" ctrd_ready
}

kubelet_healthy() { curl -fsS --max-time 2 "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz" | grep -qx ok; }
sched_healthy() { curl -fsSk --max-time 2 "https://127.0.0.1:$SCHED_PORT/healthz" | grep -qx ok; }
proxy_healthy() { curl -fsS --max-time 2 "http://127.0.0.1:$PROXY_HEALTHZ_PORT/healthz" >/dev/null; }
node_ready() {
	[ "$(kubectl get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

start_kubelet() {
	write_kubelet_identity
	write_kubelet_config
	start_bg "$N/kubelet.pid" "$N/kubelet.log" "$BIN/kubelet" \
		--config="$N/kubelet/config.yaml" \
		--kubeconfig="$N/kubelet/kubeconfig" \
		--root-dir="$N/kubelet/root" \
		--cert-dir="$N/kubelet/pki" \
		--hostname-override="$NODE_NAME" \
		--node-ip="$NODE_IP" \
		--pod-infra-container-image="$PAUSE_IMAGE" \
		--v=1
	wait_until "$START_TIMEOUT" "$N/kubelet.pid" "$BIN/kubelet" kubelet "$N/kubelet.log" kubelet_healthy
}

start_scheduler() {
	start_bg "$N/kube-scheduler.pid" "$N/kube-scheduler.log" "$BIN/kube-scheduler" \
		--kubeconfig="$DIR/kubeconfig" \
		--authentication-kubeconfig="$DIR/kubeconfig" \
		--authorization-kubeconfig="$DIR/kubeconfig" \
		--authentication-skip-lookup=true \
		--leader-elect=false \
		--bind-address=127.0.0.1 \
		--secure-port="$SCHED_PORT" \
		--cert-dir="$N/scheduler-pki"
	wait_until "$START_TIMEOUT" "$N/kube-scheduler.pid" "$BIN/kube-scheduler" kube-scheduler \
		"$N/kube-scheduler.log" sched_healthy
}

# The conntrack and localnet flags keep kube-proxy from changing host sysctls.
PROXY_FLAGS=(--proxy-mode=iptables --cluster-cidr="$NODE_POD_CIDR"
	--conntrack-max-per-core=0 --conntrack-tcp-timeout-established=0
	--conntrack-tcp-timeout-close-wait=0 --iptables-localhost-nodeports=false
	--nodeport-addresses="$NODE_IP/32")

start_proxy() {
	start_bg "$N/kube-proxy.pid" "$N/kube-proxy.log" "$BIN/kube-proxy" \
		--kubeconfig="$DIR/kubeconfig" \
		--hostname-override="$NODE_NAME" \
		--healthz-bind-address="127.0.0.1:$PROXY_HEALTHZ_PORT" \
		--metrics-bind-address="127.0.0.1:$PROXY_METRICS_PORT" \
		"${PROXY_FLAGS[@]}"
	wait_until "$START_TIMEOUT" "$N/kube-proxy.pid" "$BIN/kube-proxy" kube-proxy "$N/kube-proxy.log" proxy_healthy
}

# NetworkPolicy: kube-router's firewall alone (build-kube.sh says why not kube-network-policies),
# iptables and ipset. Its chains (KUBE-ROUTER-*, KUBE-POD-FW-*, KUBE-NWPLCY-*) go first in
# FORWARD, INPUT and OUTPUT, so policies apply before our bridge ACCEPT rule.
netpol_ready() { iptables -S KUBE-ROUTER-FORWARD >/dev/null 2>&1; }
start_netpol() {
	start_bg "$N/netpol.pid" "$N/netpol.log" "$BIN/netpol-kube-router-$KUBE_ROUTER_VERSION" \
		--kubeconfig="$DIR/kubeconfig" \
		--hostname-override="$NODE_NAME" \
		--service-cluster-ip-range="$NODE_SERVICE_CIDR" \
		--enable-ipv4=true --enable-ipv6=false \
		--health-port=0 --metrics-port=0 \
		--iptables-sync-period=1m
	wait_until "$START_TIMEOUT" "$N/netpol.pid" "$BIN/netpol-kube-router-$KUBE_ROUTER_VERSION" \
		"NetworkPolicy controller" "$N/netpol.log" netpol_ready
}

# The cluster DNS the way kubeadm deploys it: Deployment + Service kube-dns at a fixed
# ClusterIP; the kubelet's clusterDNS points there. It answers for the cluster zone only.
deploy_dns() {
	sed -e "s|@IMAGE@|$COREDNS_IMAGE|" -e "s|@DNS_IP@|$NODE_DNS_IP|" "$here/manifests/coredns.yaml" |
		kubectl apply --server-side --force-conflicts --field-manager=tasked-node -f - >/dev/null ||
		die "deploying CoreDNS failed"
}

dns_ready() {
	[ "$(kubectl -n kube-system get deploy coredns -o jsonpath='{.status.readyReplicas}' 2>/dev/null)" = 1 ]
}

all_alive() {
	pidfile_alive "$N/containerd.pid" /usr/bin/containerd "$CTRD/" &&
		pidfile_alive "$N/kubelet.pid" "$BIN/kubelet" "$N/" &&
		pidfile_alive "$N/kube-scheduler.pid" "$BIN/kube-scheduler" "$N/" &&
		pidfile_alive "$N/kube-proxy.pid" "$BIN/kube-proxy" "$DIR/" &&
		pidfile_alive "$N/netpol.pid" "$BIN/netpol-kube-router-$KUBE_ROUTER_VERSION" "$DIR/"
}

do_start() {
	local t0 t1
	[ -s "$DIR/kubeconfig" ] || die "no control plane in $DIR (controlplane.sh start first)"
	export KUBECONFIG=$DIR/kubeconfig
	BIN=$(bindir) || die "building the node's binaries failed (tests/cluster/build-kube.sh node)"
	t0=$(now_ms)
	mkdir -p "$N"
	chmod 700 "$N"
	net_up
	load_node_ports
	if all_alive; then
		echo "node already running (kubelet pid $(cat "$N/kubelet.pid"))"
	else
		# Whatever is left of an earlier run (a crash, a kill) goes first.
		stop_node
		cgroups_up
		record_fixed_dirs
		write_cni_config
		start_containerd
		build_node_images
		save_tunables
		start_kubelet
		start_scheduler
		start_proxy
		start_netpol
	fi
	wait_until "$START_TIMEOUT" "$N/kubelet.pid" "$BIN/kubelet" "node $NODE_NAME Ready" "$N/kubelet.log" node_ready
	deploy_dns
	wait_until "$START_TIMEOUT" "$N/kubelet.pid" "$BIN/kubelet" "CoreDNS" "$N/kubelet.log" dns_ready
	t1=$(now_ms)
	printf 'node %s Ready with cluster DNS in %d.%03ds (containerd, kubelet, kube-scheduler, kube-proxy; logs in %s)\n' \
		"$NODE_NAME" $(((t1 - t0) / 1000)) $(((t1 - t0) % 1000)) "$N"
}

# ---------------------------------------------------------------------------------------------
# Stop: every process by pid, then every host-global change.

# kill_ours PIDS...: TERM, then KILL, processes found by their command line naming our state.
kill_ours() {
	local p i alive
	[ $# -gt 0 ] || return 0
	kill -TERM "$@" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		alive=0
		for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
		[ "$alive" -eq 1 ] || return 0
		sleep 0.1
	done
	kill -KILL "$@" 2>/dev/null || true
}

# pids_with ARGV0_SUFFIX NEEDLE: live processes whose argv[0] ends in ARGV0_SUFFIX and whose
# command line contains NEEDLE (our socket or state path): shims, pods' processes never match
# anyone else's.
pids_with() {
	local f pid argv0 cl
	for f in /proc/[0-9]*/cmdline; do
		pid=${f#/proc/}
		pid=${pid%/cmdline}
		cl=$({ tr '\0' ' ' <"$f"; } 2>/dev/null) || continue
		argv0=${cl%% *}
		case "$argv0" in *"$1") ;; *) continue ;; esac
		case "$cl" in *"$2"*) echo "$pid" ;; esac
	done
}

# shim_sockets: our shims' sockets. containerd 1.6 names each one
# /run/containerd/s/sha256(<containerd address>/<namespace>/<id>) and writes it into the bundle's
# address file; the live shims' command lines cover a bundle already gone.
shim_sockets() {
	local f pid ns id
	for f in "$CTRD"/state/io.containerd.runtime.v2.task/*/*/address; do
		[ -s "$f" ] && sed -n 's|^unix://\(/run/containerd/s/[0-9a-f]\{64\}\)$|\1|p' "$f"
	done
	for pid in $(pids_with containerd-shim-runc-v2 "$SOCK"); do
		ns=$({ tr '\0' '\n' <"/proc/$pid/cmdline"; } 2>/dev/null | sed -n '/^-namespace$/{n;p;q}')
		id=$({ tr '\0' '\n' <"/proc/$pid/cmdline"; } 2>/dev/null | sed -n '/^-id$/{n;p;q}')
		if [ -z "$ns" ] || [ -z "$id" ]; then continue; fi
		printf '/run/containerd/s/%s\n' "$(printf '%s' "$SOCK/$ns/$id" | sha256sum | cut -d' ' -f1)"
	done
}

# remove_dead_sockets PATH...: the sockets among PATHs that nothing listens on any more.
remove_dead_sockets() {
	local live s
	[ $# -gt 0 ] || return 0
	live=$(ss -xlnH 2>/dev/null | awk '{print $5}')
	for s in "$@"; do
		[ -S "$s" ] || continue
		grep -qxF -- "$s" <<<"$live" || rm -f -- "$s"
	done
}

# remove_netns PATH...: network namespace files of our pods the CRI left behind, unmounted
# (a mount can be stacked) and removed.
remove_netns() {
	local m i
	for m in "$@"; do
		[ -e "$m" ] || continue
		for ((i = 0; i < 4; i++)); do
			mountpoint -q "$m" || break
			umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || break
		done
		rm -f -- "$m" 2>/dev/null || note "$m could not be removed"
	done
}

stop_node() {
	local b=${BIN:-} started_ctrd=0 m
	[ -n "$b" ] || b=$("$here/build-kube.sh" 2>/dev/null || true)
	stop_pidfile "$N/kubelet.pid" "$b/kubelet" kubelet 10 "$N/"
	restore_tunables
	stop_pidfile "$N/kube-proxy.pid" "$b/kube-proxy" kube-proxy 5 "$DIR/"
	stop_pidfile "$N/kube-scheduler.pid" "$b/kube-scheduler" kube-scheduler 5 "$N/"
	stop_pidfile "$N/netpol.pid" "$b/netpol-kube-router-$KUBE_ROUTER_VERSION" netpol 5 "$DIR/"
	# Pods go through the CRI (network teardown, shims, mounts): containerd must run for that,
	# so after a crash it is started once more on its old state.
	# (A clean stop removed the pid file; one left behind means pods may be left behind too.)
	if [ -s "$N/containerd.pid" ] && [ -d "$CTRD/root" ] && [ -s "$CTRD/config.toml" ] &&
		[ -x "$b/crictl-$CRICTL_VERSION" ]; then
		if ! pidfile_alive "$N/containerd.pid" /usr/bin/containerd "$CTRD/"; then
			start_containerd && started_ctrd=1
		fi
		BIN=$b
		crictl rmp -af >/dev/null 2>&1 || crictl rmp -af >&2 || note "crictl rmp -af failed"
	fi
	stop_pidfile "$N/containerd.pid" /usr/bin/containerd containerd 10 "$CTRD/"
	: "$started_ctrd"
	# Shims outlive containerd by design; ours name our socket. A killed shim leaves its socket
	# in the host-wide /run/containerd/s, so ours are named before and removed after.
	local socks
	socks=$(shim_sockets | sort -u)
	# shellcheck disable=SC2046
	kill_ours $(pids_with containerd-shim-runc-v2 "$SOCK")
	# shellcheck disable=SC2086
	remove_dead_sockets $socks
	# Mounts under our state (kubelet volumes, its self bind mount, overlay rootfs), deepest first.
	while read -r m; do
		umount -l "$m" 2>/dev/null || true
	done < <(awk -v n="$N/" 'index($5, n) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
	# The CRI removed its pods' network namespaces (/run/netns/cni-*) with the pods, except
	# those it failed to unlink (EBUSY); its log names them.
	# shellcheck disable=SC2046
	remove_netns $(grep -o '/run/netns/cni-[0-9a-f-]\{36\}' "$N/containerd.log" 2>/dev/null | sort -u)
	proxy_cleanup "$b"
	# kube-router's ipsets (after the rules that used them are gone).
	if command -v ipset >/dev/null; then
		for m in $(ipset list -n 2>/dev/null | grep -E '^(KUBE-|kube-router)' || true); do
			ipset destroy "$m" 2>/dev/null || note "ipset $m is still in use"
		done
	fi
	cgroups_down
	# Fixed paths: what is ours inside them, then the directories we created, if empty.
	rm -f /var/lib/kubelet/device-plugins/kubelet.sock
	rmdir /var/lib/kubelet/device-plugins /var/lib/kubelet/plugins_registry /var/lib/kubelet/plugins \
		/var/lib/kubelet/pod-resources 2>/dev/null || true
	rm -rf "/var/lib/cni/results/$NODE_TAG-"* /var/lib/cni/networks/"$NODE_TAG"
	for m in /var/log/containers/*.log; do
		[ -L "$m" ] || continue
		case "$(readlink "$m")" in "$N/"*) rm -f "$m" ;; esac
	done
	if [ -s "$N/created-paths" ]; then
		while read -r m; do
			[ -d "$m" ] && find "$m" -depth -type d -empty -delete 2>/dev/null
		done <"$N/created-paths"
		rm -f "$N/created-paths"
	fi
}

# Host directories the kubelet, containerd and the CNI plugins create at fixed paths: those
# missing now are ours to remove (when empty) on stop.
FIXED_DIRS=(/var/lib/kubelet /var/lib/cni /run/containerd /var/log/containers /run/netns)
record_fixed_dirs() {
	local d
	for d in "${FIXED_DIRS[@]}"; do
		[ -e "$d" ] || grep -qsx -- "$d" "$N/created-paths" || echo "$d" >>"$N/created-paths"
	done
}

# The KUBE-* chains of kube-proxy and kube-router (iptables and ip6tables, every table) and the
# jumps into them: kube-proxy --cleanup first, then whatever is left.
proxy_cleanup() {
	local b=$1 t c ipt
	if [ -x "$b/kube-proxy" ]; then
		"$b/kube-proxy" --cleanup --proxy-mode=iptables >>"$N/kube-proxy.log" 2>&1 || true
	fi
	for ipt in iptables ip6tables; do
		for t in filter nat mangle; do
			# Jumps into KUBE-* chains from the built-in chains, then the chains themselves.
			{ $ipt -t "$t" -S 2>/dev/null || true; } | awk '$1 == "-A" && $2 !~ /^KUBE-/ && / -j KUBE-/' |
				while read -r _ rule; do
					# shellcheck disable=SC2086
					eval "$ipt -t $t -D $rule" 2>/dev/null || true
				done
			for c in $($ipt -t "$t" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ { print $2 }'); do
				$ipt -t "$t" -F "$c" 2>/dev/null || true
			done
			for c in $($ipt -t "$t" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ { print $2 }'); do
				$ipt -t "$t" -X "$c" 2>/dev/null || true
			done
		done
	done
}

do_stop() {
	local other
	other=$(cat "$OWNER" 2>/dev/null || true)
	if [ -n "$other" ] && [ "$other" != "$DIR" ]; then
		note "the node on this machine belongs to $other, not $DIR: left alone"
		return 0
	fi
	[ -d "$N" ] || {
		net_down
		return 0
	}
	stop_node
	net_down
	if [ "$(cat "$OWNER" 2>/dev/null)" = "$DIR" ]; then
		rm -f "$OWNER"
		rmdir "/run/$NODE_TAG" 2>/dev/null || true
	fi
	echo "node stopped; host changes undone"
}

do_status() {
	local b c rc=0
	b=$("$here/build-kube.sh" 2>/dev/null || true)
	for c in containerd kubelet kube-scheduler kube-proxy netpol; do
		local bin=$b/$c
		[ "$c" = containerd ] && bin=/usr/bin/containerd
		[ "$c" = netpol ] && bin=$b/netpol-kube-router-$KUBE_ROUTER_VERSION
		if pidfile_alive "$N/$c.pid" "$bin"; then
			printf '%-24s running (pid %s)\n' "$c" "$(cat "$N/$c.pid")"
		else
			printf '%-24s not running\n' "$c"
			rc=1
		fi
	done
	return "$rc"
}

case "$cmd" in
net) mkdir -p "$N" && net_up ;;
start) do_start ;;
stop) do_stop ;;
status) do_status ;;
procs)
	BIN=$("$here/build-kube.sh" node)
	crictl ps -o json | jq -r --arg ns "${1:-}" '.containers[] |
		select($ns == "" or .labels["io.kubernetes.pod.namespace"] == $ns) |
		[.id, .labels["io.kubernetes.pod.namespace"], .labels["io.kubernetes.pod.name"],
		 .labels["io.kubernetes.container.name"]] | @tsv' |
		while IFS=$'\t' read -r id ns pod name; do
			pid=$(crictl inspect -o json "$id" | jq -r '.info.pid')
			st=/proc/$pid/status
			[ -r "$st" ] || continue
			rootmode=$(awk '$5 == "/" { split($6, o, ","); print o[1] }' "/proc/$pid/mountinfo")
			printf '%s %s %s %s %s %s %s %s %s %s\n' "$ns" "$pod" "$name" "$pid" \
				"$(awk '/^Uid:/ { print $2 }' "$st")" "$(awk '/^Gid:/ { print $2 }' "$st")" \
				"$(awk '/^CapEff:/ { print $2 }' "$st")" "$(awk '/^NoNewPrivs:/ { print $2 }' "$st")" \
				"$(awk '/^Seccomp:/ { print $2 }' "$st")" "$rootmode"
		done
	;;
import)
	pidfile_alive "$N/containerd.pid" /usr/bin/containerd "$CTRD/" || die "the node's containerd is not running"
	for i in "$@"; do import_image "$i"; done
	;;
esac
