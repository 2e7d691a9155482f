#!/usr/bin/env bash
# `make down`: stops the runner, the controller, then the control plane of the local cluster
# started by up.sh. Removes nothing else: data, certificates, tokens and logs stay in
# ${TASKED_STATE_DIR:-.tasked} for the next `make up`.
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
stop_pidfile "$STATE/runner.pid" "$root/bin/tasked-runner" tasked-runner \
	"${TASKED_RUNNER_STOP_TIMEOUT:-40}" "$STATE/"
stop_pidfile "$STATE/controller.pid" "$root/bin/tasked-controller" tasked-controller \
	"${TASKED_STOP_TIMEOUT:-10}" "$STATE/"
"$here/controlplane.sh" stop "$STATE"
