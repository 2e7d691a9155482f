#!/usr/bin/env bash
# `make down`: stops the runner, the controller, the node (tests/cluster/node.sh: its pods,
# containerd, kubelet, kube-scheduler, kube-proxy, and every host-global change it made), then
# the control plane of the local cluster started by up.sh. Data, certificates, tokens and logs
# stay in ${TASKED_STATE_DIR:-.tasked} for the next `make up`.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=tests/cluster/lib.sh
. "$here/lib.sh"

STATE=${TASKED_STATE_DIR:-.tasked}
case "$STATE" in /*) ;; *) STATE=$root/${STATE#./} ;; esac
STATE=${STATE%/}

if [ ! -d "$STATE" ]; then
	echo "nothing to stop: $STATE does not exist"
	exit 0
fi

# The runner drains on SIGTERM (waits up to its --grace-seconds, 30 by default, for running
# attempts), so it gets more time before KILL, which would orphan the tasks it runs.
# The binaries may come from TASKED_BIN_DIR (up.sh) rather than bin/: each pid file's process is
# recognised by its own argv[0] when that names the right program, so none is left running.
BINDIR=${TASKED_BIN_DIR:-$root/bin}
stop_ours() { # PIDNAME PROGRAM GRACE
	local bin
	bin=$(recorded_bin "$STATE/$1.pid")
	case "$bin" in */"$2") ;; *) bin=$BINDIR/$2 ;; esac
	stop_pidfile "$STATE/$1.pid" "$bin" "$2" "$3" "$STATE/"
}
stop_ours runner tasked-runner "${TASKED_RUNNER_STOP_TIMEOUT:-40}"
# More runners started on the same state directory (the benchmarks start runner-2.pid, ...).
for f in "$STATE"/runner-*.pid; do
	[ -e "$f" ] || continue
	f=${f##*/}
	stop_ours "${f%.pid}" tasked-runner "${TASKED_RUNNER_STOP_TIMEOUT:-40}"
done
stop_ours controller tasked-controller "${TASKED_STOP_TIMEOUT:-10}"
if [ -d "$STATE/node" ]; then
	"$here/node.sh" stop "$STATE"
fi
"$here/controlplane.sh" stop "$STATE"
