#!/usr/bin/env bash
# A real Kubernetes control plane on loopback for local runs and integration tests:
# etcd + kube-apiserver (+ kube-controller-manager), the way envtest starts them.
#
#   controlplane.sh start  DIR   start what is not running (idempotent), wait until ready
#   controlplane.sh stop   DIR   stop all components (TERM, then KILL); the data stays in DIR
#   controlplane.sh status DIR   show what runs; exit 0 when every component is up
#
# DIR holds everything: kubeconfig (admin, token auth), pki/ (CA, serving cert, service-account
# keys, token file), etcd/ (data), ports.env (ports chosen on first start, reused afterwards),
# *.pid and *.log.
#
# Environment:
#   TASKED_KUBE_BIN       directory with etcd, kube-apiserver[, kube-controller-manager]
#                         (default: what tests/cluster/build-kube.sh prints; it honours
#                         KUBEBUILDER_ASSETS)
#   TASKED_KCM=0          do not run kube-controller-manager (it is also skipped, with a note,
#                         when the binary directory has none, e.g. envtest assets)
#   TASKED_START_TIMEOUT  seconds to wait for each component to become ready (default 90)
#   TASKED_STOP_TIMEOUT   seconds between TERM and KILL on stop (default 5)
#   TASKED_CP_ADDRESS     address the API server binds and advertises (default 127.0.0.1).
#                         The node's address (tests/cluster/node.sh) makes it serve pods too:
#                         the kubernetes Service gets endpoints, the ServiceAccount admission
#                         mounts tokens, nodes are authorized as nodes, and the API server
#                         reaches kubelets by their InternalIP with a client certificate.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/cluster/lib.sh
. "$here/lib.sh"

usage() {
	echo "usage: $(basename "$0") start|stop|status DIR" >&2
	exit 2
}
[ $# -eq 2 ] || usage
cmd=$1
DIR=$(abspath "$2")
DIR=${DIR%/}
case "$cmd" in start | stop | status) ;; *) usage ;; esac

START_TIMEOUT=${TASKED_START_TIMEOUT:-90}
STOP_TIMEOUT=${TASKED_STOP_TIMEOUT:-5}
PKI=$DIR/pki
ADDR=${TASKED_CP_ADDRESS:-127.0.0.1}

kube_bin() {
	if [ -n "${TASKED_KUBE_BIN:-}" ]; then
		printf '%s\n' "$TASKED_KUBE_BIN"
	else
		"$here/build-kube.sh" || die "building the control-plane binaries failed (tests/cluster/build-kube.sh)"
	fi
}

# For stop/status the binaries' paths are only needed to recognise our processes: recorded_bin
# (lib.sh) reads the pid file's process's argv[0] back.

# ---------------------------------------------------------------------------------------------
# Certificates, tokens, ports (made once; kept across restarts)

ensure_pki() {
	mkdir -p "$PKI"
	chmod 700 "$DIR" "$PKI"
	local cnf=$PKI/openssl.cnf
	if [ ! -s "$cnf" ]; then
		cat >"$cnf" <<-'EOF'
			[req]
			distinguished_name = dn
			prompt = no
			[dn]
			CN = tasked-local-ca
			[v3_ca]
			basicConstraints = critical, CA:TRUE
			keyUsage = critical, keyCertSign, cRLSign, digitalSignature
			subjectKeyIdentifier = hash
			[v3_server]
			basicConstraints = critical, CA:FALSE
			keyUsage = critical, digitalSignature, keyEncipherment
			extendedKeyUsage = serverAuth, clientAuth
			subjectKeyIdentifier = hash
			authorityKeyIdentifier = keyid
			subjectAltName = DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local, IP:127.0.0.1, IP:10.0.0.1
			[v3_client]
			basicConstraints = critical, CA:FALSE
			keyUsage = critical, digitalSignature, keyEncipherment
			extendedKeyUsage = clientAuth
		EOF
	fi
	# The serving certificate must name the address the API server listens on.
	if [ "$ADDR" != 127.0.0.1 ] && ! grep -q "IP:$ADDR\$" "$cnf"; then
		sed -i "s/^\(subjectAltName = .*\)$/\1, IP:$ADDR/" "$cnf"
		rm -f "$PKI/apiserver.crt"
	fi
	(
		umask 077
		cd "$PKI"
		if [ ! -s ca.crt ] || [ ! -s ca.key ]; then
			openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key 2>/dev/null
			openssl req -x509 -new -key ca.key -config openssl.cnf -extensions v3_ca \
				-subj /CN=tasked-local-ca -days 3650 -sha256 -out ca.crt
			rm -f apiserver.crt
		fi
		if [ ! -s apiserver.crt ] || [ ! -s apiserver.key ]; then
			openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out apiserver.key 2>/dev/null
			openssl req -new -key apiserver.key -config openssl.cnf -subj /CN=localhost -out apiserver.csr
			openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key \
				-set_serial "0x$(openssl rand -hex 16)" -days 3650 -sha256 \
				-extfile openssl.cnf -extensions v3_server -out apiserver.crt 2>/dev/null
			rm -f apiserver.csr
		fi
		if [ ! -s sa.key ] || [ ! -s sa.pub ]; then
			openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
			openssl pkey -in sa.key -pubout -out sa.pub
		fi
		# The API server's client certificate towards kubelets (system:masters may exec, read
		# logs and port-forward on every kubelet).
		if [ ! -s kubelet-client.crt ] || [ ! -s kubelet-client.key ]; then
			openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out kubelet-client.key 2>/dev/null
			openssl req -new -key kubelet-client.key -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" -out kubelet-client.csr
			openssl x509 -req -in kubelet-client.csr -CA ca.crt -CAkey ca.key \
				-set_serial "0x$(openssl rand -hex 16)" -days 3650 -sha256 \
				-extfile openssl.cnf -extensions v3_client -out kubelet-client.crt 2>/dev/null
			rm -f kubelet-client.csr
		fi
		# Token auth: "admin" is in system:masters (bypasses RBAC); "tasked-user" has no
		# groups beyond system:authenticated, for RBAC tests.
		if [ ! -s tokens.csv ] || [ ! -s admin-token ]; then
			openssl rand -hex 32 >admin-token
			openssl rand -hex 32 >user-token
			printf '%s,admin,admin-uid,"system:masters"\n%s,tasked-user,tasked-user-uid\n' \
				"$(cat admin-token)" "$(cat user-token)" >tokens.csv
		fi
		# For curl -H @file, so the token never shows up in a process list.
		printf 'Authorization: Bearer %s\n' "$(cat admin-token)" >auth-header
	) || die "creating certificates in $PKI failed (is the openssl CLI installed?)"
}

load_ports() {
	local f=$DIR/ports.env c alive=0
	if [ -s "$f" ]; then
		# shellcheck disable=SC1090
		. "$f"
		# Nothing of ours runs, but a remembered port is taken by another process (ports
		# are only reserved while we run): choose new ones rather than fail.
		for c in etcd kube-apiserver kube-controller-manager; do
			[ -s "$DIR/$c.pid" ] && kill -0 "$(cat "$DIR/$c.pid")" 2>/dev/null && alive=1
		done
		if [ "$alive" -eq 0 ] && { port_in_use "${ETCD_PORT:-0}" || port_in_use "${ETCD_PEER_PORT:-0}" ||
			port_in_use "${APISERVER_PORT:-0}" || port_in_use "${KCM_PORT:-0}"; }; then
			note "ports remembered in $f are in use by other processes; choosing new ones"
			ETCD_PORT=
		fi
	fi
	if [ -z "${ETCD_PORT:-}" ] || [ -z "${ETCD_PEER_PORT:-}" ] || [ -z "${APISERVER_PORT:-}" ] ||
		[ -z "${KCM_PORT:-}" ]; then
		ETCD_PORT=$(pick_port)
		ETCD_PEER_PORT=$(pick_port "$ETCD_PORT")
		APISERVER_PORT=$(pick_port "$ETCD_PORT" "$ETCD_PEER_PORT")
		KCM_PORT=$(pick_port "$ETCD_PORT" "$ETCD_PEER_PORT" "$APISERVER_PORT")
		write_ports=1
	fi
	# Serving pods, the API server listens on the node's address only, on the port clusters
	# usually use: NetworkPolicies see the port after the kubernetes Service's DNAT, and the
	# chart's egress rule for the API server names 443 and 6443.
	if [ "$ADDR" != 127.0.0.1 ] && [ "$APISERVER_PORT" != 6443 ]; then
		APISERVER_PORT=6443
		write_ports=1
	fi
	if [ "${write_ports:-0}" = 1 ]; then
		printf 'ETCD_PORT=%s\nETCD_PEER_PORT=%s\nAPISERVER_PORT=%s\nKCM_PORT=%s\n' \
			"$ETCD_PORT" "$ETCD_PEER_PORT" "$APISERVER_PORT" "$KCM_PORT" >"$f.tmp"
		mv "$f.tmp" "$f"
	fi
}

# require_free_port PORT COMPONENT: before (re)starting a component on its remembered port.
require_free_port() {
	if port_in_use "$1"; then
		die "port $1 for $2 is in use by another process (not the $2 recorded in $DIR);" \
			"stop that process, or run '$(basename "$0") stop $DIR' and remove $DIR/ports.env to pick new ports"
	fi
}

write_kubeconfig() {
	local ca token tmp=$DIR/kubeconfig.tmp
	ca=$(base64 -w0 <"$PKI/ca.crt")
	token=$(cat "$PKI/admin-token")
	(
		umask 077
		cat >"$tmp" <<-EOF
			apiVersion: v1
			kind: Config
			clusters:
			- name: tasked
			  cluster:
			    server: https://$ADDR:$APISERVER_PORT
			    certificate-authority-data: $ca
			users:
			- name: tasked-admin
			  user:
			    token: $token
			contexts:
			- name: tasked
			  context:
			    cluster: tasked
			    user: tasked-admin
			    namespace: default
			current-context: tasked
		EOF
	)
	mv "$tmp" "$DIR/kubeconfig"
}

# ---------------------------------------------------------------------------------------------
# Health checks

etcd_healthy() {
	curl -fsS --max-time 2 "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'
}
apiserver_ready() {
	curl -fsS --max-time 2 --cacert "$PKI/ca.crt" -H "@$PKI/auth-header" \
		"https://$ADDR:$APISERVER_PORT/readyz" | grep -qx ok
}
kcm_healthy() {
	curl -fsS --max-time 2 --cacert "$PKI/ca.crt" "https://127.0.0.1:$KCM_PORT/healthz" | grep -qx ok
}

# ---------------------------------------------------------------------------------------------

start_etcd() {
	local bin=$1/etcd
	[ -x "$bin" ] || die "no etcd binary in $1"
	if pidfile_alive "$DIR/etcd.pid" "$bin" "$DIR/"; then
		echo "etcd already running (pid $(cat "$DIR/etcd.pid"))"
	else
		require_free_port "$ETCD_PORT" etcd
		require_free_port "$ETCD_PEER_PORT" etcd
		mkdir -p "$DIR/etcd"
		chmod 700 "$DIR/etcd"
		start_bg "$DIR/etcd.pid" "$DIR/etcd.log" "$bin" \
			--name=tasked \
			--data-dir="$DIR/etcd" \
			--listen-client-urls="http://127.0.0.1:$ETCD_PORT" \
			--advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
			--listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
			--initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
			--initial-cluster="tasked=http://127.0.0.1:$ETCD_PEER_PORT" \
			--unsafe-no-fsync=true \
			--log-level=warn
		echo "started etcd (pid $(cat "$DIR/etcd.pid"), port $ETCD_PORT)"
	fi
	wait_until "$START_TIMEOUT" "$DIR/etcd.pid" "$bin" etcd "$DIR/etcd.log" etcd_healthy
}

start_apiserver() {
	local bin=$1/kube-apiserver
	[ -x "$bin" ] || die "no kube-apiserver binary in $1"
	local node_flags=(--disable-admission-plugins=ServiceAccount --endpoint-reconciler-type=none
		--authorization-mode=RBAC)
	if [ "$ADDR" != 127.0.0.1 ]; then
		# shellcheck disable=SC2054 # Node,RBAC is one flag value
		node_flags=(--enable-admission-plugins=NodeRestriction --authorization-mode=Node,RBAC
			--kubelet-preferred-address-types=InternalIP
			--kubelet-client-certificate="$PKI/kubelet-client.crt"
			--kubelet-client-key="$PKI/kubelet-client.key")
	fi
	if pidfile_alive "$DIR/kube-apiserver.pid" "$bin" "$DIR/"; then
		echo "kube-apiserver already running (pid $(cat "$DIR/kube-apiserver.pid"))"
		tr '\0' '\n' <"/proc/$(cat "$DIR/kube-apiserver.pid")/cmdline" 2>/dev/null | grep -x -- "--bind-address=$ADDR" >/dev/null ||
			die "the kube-apiserver of $DIR listens on another address than $ADDR (started with" \
				"or without a node): stop the cluster first ('make down')"
	else
		require_free_port "$APISERVER_PORT" kube-apiserver
		start_bg "$DIR/kube-apiserver.pid" "$DIR/kube-apiserver.log" "$bin" \
			--etcd-servers="http://127.0.0.1:$ETCD_PORT" \
			--bind-address="$ADDR" \
			--advertise-address="$ADDR" \
			--secure-port="$APISERVER_PORT" \
			--cert-dir="$PKI" \
			--tls-cert-file="$PKI/apiserver.crt" \
			--tls-private-key-file="$PKI/apiserver.key" \
			--client-ca-file="$PKI/ca.crt" \
			--token-auth-file="$PKI/tokens.csv" \
			"${node_flags[@]}" \
			--service-account-issuer="https://127.0.0.1:$APISERVER_PORT" \
			--service-account-key-file="$PKI/sa.pub" \
			--service-account-signing-key-file="$PKI/sa.key" \
			--service-cluster-ip-range=10.0.0.0/24 \
			--allow-privileged=true \
			--v=1
		echo "started kube-apiserver (pid $(cat "$DIR/kube-apiserver.pid"), port $APISERVER_PORT)"
	fi
	wait_until "$START_TIMEOUT" "$DIR/kube-apiserver.pid" "$bin" kube-apiserver \
		"$DIR/kube-apiserver.log" apiserver_ready
}

kcm_wanted() { # BINDIR
	[ "${TASKED_KCM:-1}" != 0 ] || return 1
	if [ ! -x "$1/kube-controller-manager" ]; then
		note "no kube-controller-manager in $1: running without it (no garbage collection," \
			"no namespace deletion, no Deployment/ReplicaSet controllers)"
		return 1
	fi
}

start_kcm() {
	local bin=$1/kube-controller-manager
	if pidfile_alive "$DIR/kube-controller-manager.pid" "$bin" "$DIR/"; then
		echo "kube-controller-manager already running (pid $(cat "$DIR/kube-controller-manager.pid"))"
	else
		require_free_port "$KCM_PORT" kube-controller-manager
		# Cloud-only controllers off; the rest (garbage collector, namespace, deployment,
		# replicaset, job, serviceaccount + token, ...) on.
		start_bg "$DIR/kube-controller-manager.pid" "$DIR/kube-controller-manager.log" "$bin" \
			--kubeconfig="$DIR/kubeconfig" \
			--authentication-kubeconfig="$DIR/kubeconfig" \
			--authorization-kubeconfig="$DIR/kubeconfig" \
			--authentication-skip-lookup=true \
			--bind-address=127.0.0.1 \
			--secure-port="$KCM_PORT" \
			--tls-cert-file="$PKI/apiserver.crt" \
			--tls-private-key-file="$PKI/apiserver.key" \
			--controllers='*,-cloud-node-lifecycle-controller,-node-route-controller,-service-lb-controller' \
			--use-service-account-credentials=false \
			--leader-elect=false \
			--service-account-private-key-file="$PKI/sa.key" \
			--root-ca-file="$PKI/ca.crt" \
			--cluster-signing-cert-file="$PKI/ca.crt" \
			--cluster-signing-key-file="$PKI/ca.key" \
			--cluster-name=tasked \
			--v=1
		echo "started kube-controller-manager (pid $(cat "$DIR/kube-controller-manager.pid"), port $KCM_PORT)"
	fi
	wait_until "$START_TIMEOUT" "$DIR/kube-controller-manager.pid" "$bin" kube-controller-manager \
		"$DIR/kube-controller-manager.log" kcm_healthy
}

do_start() {
	local bindir t0 t1 t2 t3
	for tool in openssl curl ss setsid base64; do
		command -v "$tool" >/dev/null || die "$tool is required (Debian: openssl curl iproute2 util-linux coreutils)"
	done
	bindir=$(kube_bin)
	mkdir -p "$DIR"
	t0=$(now_ms)
	ensure_pki
	load_ports
	start_etcd "$bindir"
	t1=$(now_ms)
	start_apiserver "$bindir"
	write_kubeconfig
	t2=$(now_ms)
	if kcm_wanted "$bindir"; then
		start_kcm "$bindir"
	fi
	t3=$(now_ms)
	printf 'control plane ready in %d.%03ds (etcd %d ms, kube-apiserver %d ms, kube-controller-manager %d ms)\n' \
		$(((t3 - t0) / 1000)) $(((t3 - t0) % 1000)) $((t1 - t0)) $((t2 - t1)) $((t3 - t2))
	echo "kubeconfig: $DIR/kubeconfig   (export KUBECONFIG=$DIR/kubeconfig)"
}

do_stop() {
	local c bin
	[ -d "$DIR" ] || {
		echo "nothing to stop: $DIR does not exist"
		return 0
	}
	for c in kube-controller-manager kube-apiserver etcd; do
		bin=$(recorded_bin "$DIR/$c.pid")
		case "$bin" in
		*/"$c") stop_pidfile "$DIR/$c.pid" "$bin" "$c" "$STOP_TIMEOUT" "$DIR/" ;;
		*) rm -f "$DIR/$c.pid" ;; # stale: the pid is gone or is someone else's now
		esac
	done
}

do_status() {
	local c bin rc=0 state
	[ -d "$DIR" ] || die "$DIR does not exist"
	load_ports_ro
	for c in etcd kube-apiserver kube-controller-manager; do
		bin=$(recorded_bin "$DIR/$c.pid")
		case "$bin" in
		*/"$c")
			if pidfile_alive "$DIR/$c.pid" "$bin" "$DIR/"; then
				state="running (pid $(cat "$DIR/$c.pid"))"
			else
				state="not running"
			fi
			;;
		*) state="not running" ;;
		esac
		case "$c:$state" in
		etcd:running*) etcd_healthy || state="$state, NOT healthy" ;;
		kube-apiserver:running*) apiserver_ready || state="$state, NOT ready" ;;
		kube-controller-manager:running*) kcm_healthy || state="$state, NOT healthy" ;;
		esac
		case "$state" in
		"running (pid "*")") ;;
		*)
			if [ "$c" != kube-controller-manager ] || [ "${TASKED_KCM:-1}" != 0 ]; then rc=1; fi
			;;
		esac
		printf '%-24s %s\n' "$c" "$state"
	done
	printf '%-24s %s\n' ports "etcd ${ETCD_PORT:-?}, kube-apiserver ${APISERVER_PORT:-?}, kube-controller-manager ${KCM_PORT:-?}"
	printf '%-24s %s\n' kubeconfig "$DIR/kubeconfig"
	return "$rc"
}

load_ports_ro() {
	if [ -s "$DIR/ports.env" ]; then
		# shellcheck disable=SC1091
		. "$DIR/ports.env"
	fi
}

case "$cmd" in
start) do_start ;;
stop) do_stop ;;
status) do_status ;;
esac
