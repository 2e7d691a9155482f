#!/usr/bin/env bash
# `make up`: a local Tasked cluster in a box. With a node (the default) this is up-node.sh:
# Tasked installed by Helm into real pods. With TASKED_NODE=0, what follows: starts the control plane (etcd, kube-apiserver,
# kube-controller-manager on loopback), installs the CRDs, then runs tasked-controller and one
# tasked-runner as local processes. State, pids and logs go to ${TASKED_STATE_DIR:-.tasked}
# (relative to the repository root).
#
# Idempotent: whatever is running is left alone, whatever is not is (re)started on the ports
# chosen the first time (remembered in the state directory).
#
# Environment: TASKED_STATE_DIR, TASKED_READY_TIMEOUT (seconds to wait for the controller's
# /readyz, default 30), TASKED_CONTROLLER_ARGS / TASKED_RUNNER_ARGS (extra flags, split on
# spaces), TASKED_BIN_DIR (where tasked-controller and tasked-runner are, default bin/; the
# benchmarks point it at build/image-bin), plus those of controlplane.sh (TASKED_KUBE_BIN,
# TASKED_KCM, ...).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=tests/cluster/lib.sh
. "$here/lib.sh"

# Unless TASKED_NODE says otherwise, a cluster keeps the mode it runs in: a suite or script that
# calls up.sh to restart what it stopped on a host-process cluster gets that again.
STATE_GUESS=${TASKED_STATE_DIR:-.tasked}
case "$STATE_GUESS" in /*) ;; *) STATE_GUESS=$root/${STATE_GUESS#./} ;; esac
if [ -z "${TASKED_NODE:-}" ] && [ -s "$STATE_GUESS/kube-apiserver.pid" ] &&
	tr '\0' '\n' <"/proc/$(cat "$STATE_GUESS/kube-apiserver.pid")/cmdline" 2>/dev/null |
	grep -x -- --bind-address=127.0.0.1 >/dev/null; then
	export TASKED_NODE=0
fi
if node_wanted; then
	exec "$here/up-node.sh"
fi

STATE=${TASKED_STATE_DIR:-.tasked}
case "$STATE" in /*) ;; *) STATE=$root/${STATE#./} ;; esac
STATE=${STATE%/}
READY_TIMEOUT=${TASKED_READY_TIMEOUT:-30}
BINDIR=${TASKED_BIN_DIR:-$root/bin}
CONTROLLER=$BINDIR/tasked-controller
RUNNER=$BINDIR/tasked-runner

command -v kubectl >/dev/null || die "kubectl is required (Debian: kubernetes-client)"
for b in "$CONTROLLER" "$RUNNER"; do
	[ -x "$b" ] || die "${b#"$root"/} is missing; build it first with 'make' (or use 'make up')"
done

t0=$(now_ms)
rm -f "$STATE/release.env" # written by up-node.sh: no Helm release runs in this mode

# --- control plane and CRDs ---------------------------------------------------------------------
"$here/controlplane.sh" start "$STATE"
export KUBECONFIG=$STATE/kubeconfig

kubectl apply --server-side --force-conflicts --field-manager=tasked-up -k "$root/deploy/crds" >/dev/null ||
	die "installing the CRDs from deploy/crds failed (see the kubectl error above)"
# (kubectl wait errors out instead of waiting while a new CRD has no conditions yet, so poll.)
crds_established() {
	local crd
	for crd in tasks taskqueues flows runnerpools; do
		[ "$(kubectl get crd "$crd.tasked.dev" \
			-o 'jsonpath={.status.conditions[?(@.type=="Established")].status}' 2>/dev/null)" = True ] ||
			return 1
	done
}
deadline=$(($(now_ms) + 60000))
until crds_established; do
	[ "$(now_ms)" -lt "$deadline" ] ||
		die "the CRDs did not become Established within 60s (kubectl get crd -o yaml); read $STATE/kube-apiserver.log"
	sleep 0.2
done
echo "CRDs installed (tasks, taskqueues, flows, runnerpools .tasked.dev)"

# --- secrets (made once, mode 0600) -----------------------------------------------------------
for f in runner-token api-key; do
	if [ ! -s "$STATE/$f" ]; then
		(
			umask 077
			openssl rand -hex 32 >"$STATE/$f.tmp"
		)
		mv "$STATE/$f.tmp" "$STATE/$f"
	fi
	chmod 600 "$STATE/$f"
done

# --- ports (chosen once) ----------------------------------------------------------------------
if [ -s "$STATE/tasked-ports.env" ]; then
	# shellcheck disable=SC1091
	. "$STATE/tasked-ports.env"
fi
# Ports are only ours while the controller runs: if it does not and another process took one,
# choose again (the runner is restarted below to follow the new broker port).
if [ -n "${API_PORT:-}" ] && ! pidfile_alive "$STATE/controller.pid" "$CONTROLLER" "$STATE/" &&
	{ port_in_use "$API_PORT" || port_in_use "${BROKER_PORT:-0}"; }; then
	note "ports remembered in $STATE/tasked-ports.env are in use by other processes; choosing new ones"
	API_PORT=
	if pidfile_alive "$STATE/runner.pid" "$RUNNER" "$STATE/"; then
		stop_pidfile "$STATE/runner.pid" "$RUNNER" tasked-runner 40 "$STATE/"
	fi
fi
if [ -z "${API_PORT:-}" ] || [ -z "${BROKER_PORT:-}" ]; then
	# Keep clear of the control plane's ports.
	# shellcheck disable=SC1091
	. "$STATE/ports.env"
	API_PORT=$(pick_port "$ETCD_PORT" "$ETCD_PEER_PORT" "$APISERVER_PORT" "$KCM_PORT")
	BROKER_PORT=$(pick_port "$ETCD_PORT" "$ETCD_PEER_PORT" "$APISERVER_PORT" "$KCM_PORT" "$API_PORT")
	printf 'API_PORT=%s\nBROKER_PORT=%s\n' "$API_PORT" "$BROKER_PORT" >"$STATE/tasked-ports.env.tmp"
	mv "$STATE/tasked-ports.env.tmp" "$STATE/tasked-ports.env"
fi
API_URL=http://127.0.0.1:$API_PORT
printf '%s\n' "$API_URL" >"$STATE/api-url"

# rebuilt_note PIDFILE BINARY NAME: the process runs a binary that has since been rebuilt.
rebuilt_note() {
	local exe
	exe=$(readlink "/proc/$(cat "$1")/exe" 2>/dev/null || true)
	case "$exe" in *" (deleted)")
		note "$3 (pid $(cat "$1")) runs an older build of ${2#"$root"/}; 'make down up' restarts it"
		;;
	esac
}

controller_ready() {
	printf 'X-API-Key: %s\n' "$(cat "$STATE/api-key")" |
		curl -fsS --max-time 2 -o /dev/null -H @- "$API_URL/readyz"
}

# --- controller ---------------------------------------------------------------------------------
if pidfile_alive "$STATE/controller.pid" "$CONTROLLER" "$STATE/"; then
	echo "tasked-controller already running (pid $(cat "$STATE/controller.pid"))"
	rebuilt_note "$STATE/controller.pid" "$CONTROLLER" tasked-controller
else
	for p in "$API_PORT" "$BROKER_PORT"; do
		port_in_use "$p" && die "port $p (tasked-controller) is in use by another process;" \
			"stop it, or remove $STATE/tasked-ports.env to pick new ports"
	done
	# shellcheck disable=SC2086 # extra flags are meant to split on spaces
	start_bg "$STATE/controller.pid" "$STATE/controller.log" "$CONTROLLER" \
		--kubeconfig "$STATE/kubeconfig" \
		--listen "127.0.0.1:$API_PORT" \
		--broker-listen "127.0.0.1:$BROKER_PORT" \
		--runner-token-file "$STATE/runner-token" \
		--api-key-file "$STATE/api-key" \
		--pool-runner-image tasked-runner:host-process \
		--pod-network-gate-image tasked-runner:host-process \
		--pool-broker-url "ws://127.0.0.1:$BROKER_PORT" \
		${TASKED_CONTROLLER_ARGS:-}
	echo "started tasked-controller (pid $(cat "$STATE/controller.pid"), API $API_URL, broker port $BROKER_PORT)"
fi
wait_until "$READY_TIMEOUT" "$STATE/controller.pid" "$CONTROLLER" tasked-controller \
	"$STATE/controller.log" controller_ready

# --- runner -------------------------------------------------------------------------------------
if pidfile_alive "$STATE/runner.pid" "$RUNNER" "$STATE/"; then
	echo "tasked-runner already running (pid $(cat "$STATE/runner.pid"))"
	rebuilt_note "$STATE/runner.pid" "$RUNNER" tasked-runner
else
	# shellcheck disable=SC2086 # extra flags are meant to split on spaces
	start_bg "$STATE/runner.pid" "$STATE/runner.log" "$RUNNER" \
		--controller "ws://127.0.0.1:$BROKER_PORT" \
		--token-file "$STATE/runner-token" \
		--concurrency 8 \
		--labels pool=default \
		${TASKED_RUNNER_ARGS:-}
	echo "started tasked-runner (pid $(cat "$STATE/runner.pid"))"
	# TODO: wait for the controller to report the runner connected once it exposes that.
	sleep 1
	if ! pidfile_alive "$STATE/runner.pid" "$RUNNER" "$STATE/"; then
		log_tail "$STATE/runner.log"
		die "tasked-runner exited right after starting; read $STATE/runner.log"
	fi
fi
controller_ready || {
	log_tail "$STATE/controller.log"
	die "tasked-controller stopped answering /readyz; read $STATE/controller.log"
}

t1=$(now_ms)
rel=${STATE#"$root"/}
down="make down"
[ "$STATE" = "$root/.tasked" ] || down="TASKED_STATE_DIR=$STATE make down"
cat <<EOF
Tasked is up ($(((t1 - t0) / 1000)).$(printf '%03d' $(((t1 - t0) % 1000)))s).
  export KUBECONFIG=$STATE/kubeconfig
  API:     $API_URL   (key in $rel/api-key; curl -H "X-API-Key: \$(cat $rel/api-key)" $API_URL/api/v1/tasks)
  logs:    $rel/{etcd,kube-apiserver,kube-controller-manager,controller,runner}.log
  try:     kubectl apply -f examples/ && kubectl get tasks -w
  stop:    $down
EOF
