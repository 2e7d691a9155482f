#!/usr/bin/env bash
# `make integration`: the suites under prove, each set against a fresh local cluster that is
# always stopped at the end; on failure the last 50 lines of every log are shown.
#   tests/integration/*.t       host-process cluster (TASKED_NODE=0: control plane, CRDs,
#                               controller and runner as local processes) in build/it
#   tests/integration/node/*.t  a real node with Tasked installed by Helm into pods
#                               (tests/cluster/up-node.sh) in build/it-node; skipped only
#                               when TASKED_NODE=0 is set
#
#   tests/integration/run.sh [TEST.t ...]     (default: all of both sets)
#
# KEEP_CLUSTER=1 leaves the (last) cluster running afterwards (stop it with
# TASKED_STATE_DIR=build/it[-node] tests/cluster/down.sh).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

command -v prove >/dev/null || { echo "run.sh: prove (perl) is required" >&2; exit 1; }

host_tests=()
node_tests=()
if [ $# -gt 0 ]; then
	for t in "$@"; do
		case "$t" in */node/*) node_tests+=("$t") ;; *) host_tests+=("$t") ;; esac
	done
else
	host_tests=(tests/integration/*.t)
	if [ "${TASKED_NODE:-1}" != 0 ]; then node_tests=(tests/integration/node/*.t); fi
fi

# One node per machine: say so now, not after the host-process suites.
node_dir=${TASKED_IT_NODE_DIR:-$root/build/it-node}
if [ ${#node_tests[@]} -gt 0 ] && [ -s /run/tasked-node/owner ] &&
	[ "$(cat /run/tasked-node/owner)" != "$node_dir" ]; then
	owner=$(cat /run/tasked-node/owner)
	echo "run.sh: the node suites need this machine's node, which $owner runs;" \
		"stop it first (TASKED_STATE_DIR=$owner make down) or run with TASKED_NODE=0" >&2
	exit 1
fi

status=0
cluster_up=0
# shellcheck disable=SC2317 # called through the EXIT trap and below
finish_group() {
	local rc=$1 f
	[ "$cluster_up" -eq 1 ] || return 0
	if [ "$rc" -ne 0 ]; then
		for f in "$TASKED_STATE_DIR"/*.log "$TASKED_STATE_DIR"/node/*.log; do
			[ -f "$f" ] || continue
			echo "==== last 50 lines of ${f#"$root"/}"
			tail -n 50 "$f"
		done
		if [ -r "$TASKED_STATE_DIR/release.env" ]; then
			KUBECONFIG=$TASKED_STATE_DIR/kubeconfig kubectl get pods -A -o wide || true
		fi
	fi
	if [ -z "${KEEP_CLUSTER:-}" ]; then
		tests/cluster/down.sh || true
	else
		echo "KEEP_CLUSTER set: cluster left running; export KUBECONFIG=$TASKED_STATE_DIR/kubeconfig"
	fi
	cluster_up=0
}
trap 'rc=$?; [ "$status" -eq 0 ] && status=$rc; finish_group "$status"; exit "$status"' EXIT
trap 'exit 130' INT TERM

# run_group NODE(0|1) STATE_DIR TESTS...
run_group() {
	local node=$1 rc
	export TASKED_NODE=$node TASKED_STATE_DIR=$2
	shift 2
	# A previous run may have left processes behind (e.g. killed with KEEP_CLUSTER): stop
	# them before removing their state.
	if [ -d "$TASKED_STATE_DIR" ]; then
		tests/cluster/down.sh >/dev/null 2>&1 || true
		rm -rf "$TASKED_STATE_DIR"
	fi
	mkdir -p "$TASKED_STATE_DIR"
	cluster_up=1
	tests/cluster/up.sh
	export KUBECONFIG=$TASKED_STATE_DIR/kubeconfig
	set +e
	prove -v "$@"
	rc=$?
	set -e
	[ "$rc" -eq 0 ] || status=$rc
	finish_group "$rc"
	unset KUBECONFIG
}

# TASKED_IT_DIR picks another state directory, so several suites can run side by side.
if [ ${#host_tests[@]} -gt 0 ]; then
	run_group 0 "${TASKED_IT_DIR:-$root/build/it}" "${host_tests[@]}"
fi
if [ ${#node_tests[@]} -gt 0 ]; then
	run_group 1 "$node_dir" "${node_tests[@]}"
fi
exit "$status"
