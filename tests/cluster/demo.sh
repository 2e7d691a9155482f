#!/usr/bin/env bash
# `make demo` (after `make up`): applies examples/, waits until every example Task finished,
# shows them, and checks the outcome: hello and env Succeeded, fail Failed with exit code 3.
# On a node (up-node.sh) it also shows where they ran: the pods, and every container's process
# as the kernel sees it (the security context the kubelet applied), and checks that the tasks
# ran in the controller pod's runner sidecars.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=tests/cluster/lib.sh
. "$here/lib.sh"

STATE=${TASKED_STATE_DIR:-.tasked}
case "$STATE" in /*) ;; *) STATE=$root/${STATE#./} ;; esac
STATE=${STATE%/}
TIMEOUT=${TASKED_DEMO_TIMEOUT:-60}
EXAMPLES=$root/examples

[ -r "$STATE/kubeconfig" ] || die "no cluster at $STATE: run 'make up' first"
export KUBECONFIG=$STATE/kubeconfig

# Start from scratch so the demo shows this run, not the last one.
kubectl delete -f "$EXAMPLES" --ignore-not-found --wait=true --timeout=60s >/dev/null
kubectl apply -f "$EXAMPLES"

# NAMESPACE NAME of every Task in examples/.
mapfile -t tasks < <(kubectl get -f "$EXAMPLES" --no-headers \
	-o custom-columns='KIND:.kind,NS:.metadata.namespace,NAME:.metadata.name' |
	awk '$1 == "Task" { print $2, $3 }')
[ "${#tasks[@]}" -gt 0 ] || die "no Tasks found in examples/"

echo "waiting up to ${TIMEOUT}s for ${#tasks[@]} tasks to finish..."
deadline=$(($(date +%s) + TIMEOUT))
while :; do
	pending=()
	for t in "${tasks[@]}"; do
		read -r ns name <<<"$t"
		phase=$(kubectl -n "$ns" get task "$name" -o jsonpath='{.status.phase}')
		case "$phase" in Succeeded | Failed | Skipped | Cancelled) ;; *) pending+=("$name(${phase:-no status})") ;; esac
	done
	[ "${#pending[@]}" -eq 0 ] && break
	if [ "$(date +%s)" -ge "$deadline" ]; then
		kubectl get -f "$EXAMPLES" -o wide || true
		die "not finished after ${TIMEOUT}s: ${pending[*]}; read $STATE/controller.log and $STATE/runner.log"
	fi
	sleep 0.5
done

echo
kubectl get -f "$EXAMPLES" -o wide
if [ -r "$STATE/release.env" ]; then
	# shellcheck disable=SC1091
	. "$STATE/release.env"
	echo
	echo "--- where they ran:"
	kubectl get -f "$EXAMPLES" -o custom-columns='TASK:.metadata.name,PHASE:.status.phase,EXIT:.status.exitCode,RUNNER:.status.runner'
	echo
	echo "--- pods in $NAMESPACE:"
	kubectl -n "$NAMESPACE" get pods -o wide
	echo
	echo "--- their containers as the kubelet started them (read from /proc on the node):"
	{
		echo "POD CONTAINER PID UID GID CAPEFF NONEWPRIVS SECCOMP ROOTFS"
		"$here/node.sh" procs "$STATE" "$NAMESPACE" | cut -d' ' -f2-
	} | column -t
	echo
	echo "--- the securityContext they asked for (runner-0):"
	kubectl -n "$NAMESPACE" get pods -l app.kubernetes.io/component=controller -o json |
		jq -c '.items[0].spec.containers[] | select(.name == "runner-0") | .securityContext'
fi
for t in "${tasks[@]}"; do
	read -r ns name <<<"$t"
	echo
	echo "--- $ns/$name logTail:"
	printf '%s\n' "$(kubectl -n "$ns" get task "$name" -o jsonpath='{.status.logTail}')"
done
echo

# --- checks ---------------------------------------------------------------------------------
failures=0
check() { # DESCRIPTION GOT EXPECTED
	if [ "$2" = "$3" ]; then
		echo "ok   $1"
	else
		echo "FAIL $1: got '$2', expected '$3'"
		failures=$((failures + 1))
	fi
}
check_contains() { # DESCRIPTION HAYSTACK NEEDLE
	case "$2" in
	*"$3"*) echo "ok   $1" ;;
	*)
		echo "FAIL $1: '$3' not found in '$2'"
		failures=$((failures + 1))
		;;
	esac
}
field() { kubectl -n default get task "$1" -o jsonpath="{$2}"; }

check "hello Succeeded" "$(field hello .status.phase)" Succeeded
check "hello exit code 0" "$(field hello .status.exitCode)" 0
check_contains "hello printed its greeting" "$(field hello .status.logTail)" "hello from Tasked"
check "env Succeeded" "$(field env .status.phase)" Succeeded
# shellcheck disable=SC2016 # the $(...) are meant literally
check_contains "env expanded \$(GREETING) and \$(NAME), kept \$\$(...) literal" \
	"$(field env .status.logTail)" 'Hello, world! (written as $(GREETING), $(NAME))'
check "fail Failed" "$(field fail .status.phase)" Failed
check "fail exit code 3" "$(field fail .status.exitCode)" 3
check "limits Succeeded" "$(field limits .status.phase)" Succeeded
check_contains "limits: 250m over 20 s is RLIMIT_CPU 5 (hard 6)" "$(field limits .status.logTail)" "CPU 5 6"
if [ -r "$STATE/release.env" ]; then
	# (Not one being deleted: a terminating pod stays Running for its grace period.)
	pod=$(kubectl -n "$NAMESPACE" get pods -l app.kubernetes.io/component=controller -o json |
		jq -r '[.items[] | select(.metadata.deletionTimestamp == null and .status.phase == "Running")][0].metadata.name // empty')
	for t in hello env fail limits; do
		check_contains "$t ran in a runner sidecar of $pod" "$(field "$t" .status.runner)" "$pod"
	done
	while read -r _ pod c _ uid gid capeff nnp seccomp rootfs; do
		case "$c" in runner-*) ;; *) continue ;; esac
		check "$c: uid/gid 65532, no capabilities, no_new_privs, seccomp filter, read-only /" \
			"$uid $gid $capeff $nnp $seccomp $rootfs" "65532 65532 0000000000000000 1 2 ro"
	done < <("$here/node.sh" procs "$STATE" "$NAMESPACE")
fi

if [ "$failures" -ne 0 ]; then
	die "$failures demo check(s) failed; read $STATE/controller.log and $STATE/runner.log"
fi
echo "demo passed"
