#!/usr/bin/env bash
# `make integration`: a fresh local cluster in build/it (control plane, CRDs, controller,
# runner), then every tests/integration/*.t (executable scripts printing TAP) under prove.
# The cluster is always stopped at the end; on failure the last 50 lines of every log are shown.
#
#   tests/integration/run.sh [TEST.t ...]     (default: all of tests/integration/*.t)
#
# KEEP_CLUSTER=1 leaves the cluster running afterwards (stop it with
# TASKED_STATE_DIR=build/it tests/cluster/down.sh).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
# TASKED_IT_DIR picks another state directory, so several suites can run side by side.
export TASKED_STATE_DIR=${TASKED_IT_DIR:-$root/build/it}

command -v prove >/dev/null || { echo "run.sh: prove (perl) is required" >&2; exit 1; }

# A previous run may have left processes behind (e.g. killed with KEEP_CLUSTER): stop them
# before removing their state.
if [ -d "$TASKED_STATE_DIR" ]; then
	tests/cluster/down.sh >/dev/null 2>&1 || true
	rm -rf "$TASKED_STATE_DIR"
fi
mkdir -p "$TASKED_STATE_DIR"

status=1
# shellcheck disable=SC2317 # called through the EXIT trap
finish() {
	local rc=$?
	[ "$status" -eq 0 ] && [ "$rc" -ne 0 ] && status=$rc
	if [ "$status" -ne 0 ]; then
		for f in "$TASKED_STATE_DIR"/*.log; do
			[ -f "$f" ] || continue
			echo "==== last 50 lines of ${f#"$root"/}"
			tail -n 50 "$f"
		done
	fi
	if [ -z "${KEEP_CLUSTER:-}" ]; then
		tests/cluster/down.sh || true
	else
		echo "KEEP_CLUSTER set: cluster left running; export KUBECONFIG=$TASKED_STATE_DIR/kubeconfig"
	fi
	exit "$status"
}
trap finish EXIT
trap 'exit 130' INT TERM

tests/cluster/up.sh
export KUBECONFIG=$TASKED_STATE_DIR/kubeconfig

if [ $# -gt 0 ]; then tests=("$@"); else tests=(tests/integration/*.t); fi
set +e
prove -v "${tests[@]}"
status=$?
set -e
exit "$status"
