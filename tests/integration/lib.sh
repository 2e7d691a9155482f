# TAP helpers for the integration tests (sourced by tests/integration/*.t).
# The tests run against the cluster started by tests/integration/run.sh (or `make up`):
# KUBECONFIG must point at its kubeconfig; TASKED_STATE_DIR at its state directory.
# shellcheck shell=bash
set -uo pipefail

IT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
_tap_n=0
_tap_failed=0

# TASKED_TAP_ONLY=1: only the TAP functions, for tests without a cluster (tests/vm/).
if [ -z "${KUBECONFIG:-}" ] && [ -z "${TASKED_TAP_ONLY:-}" ]; then
	_sd=${TASKED_STATE_DIR:-.tasked}
	case "$_sd" in /*) ;; *) _sd=$IT_ROOT/$_sd ;; esac
	export KUBECONFIG=$_sd/kubeconfig
fi
if [ -z "${TASKED_TAP_ONLY:-}" ] && [ ! -r "$KUBECONFIG" ]; then
	echo "Bail out! no kubeconfig at $KUBECONFIG (start the cluster with 'make up' or run tests/integration/run.sh)"
	exit 255
fi

# diag MSG...: a TAP comment (shown by prove -v).
diag() {
	local line
	printf '%s\n' "$*" | while IFS= read -r line; do printf '# %s\n' "$line"; done
}

_tap_result() { # STATUS(0/1) DESC
	_tap_n=$((_tap_n + 1))
	if [ "$1" -eq 0 ]; then
		printf 'ok %d - %s\n' "$_tap_n" "$2"
	else
		printf 'not ok %d - %s\n' "$_tap_n" "$2"
		_tap_failed=$((_tap_failed + 1))
	fi
	return "$1"
}

# ok DESC CMD ARGS...: passes when CMD succeeds; CMD's output is shown as diagnostics on failure.
ok() {
	local desc=$1 out rc
	shift
	out=$("$@" 2>&1)
	rc=$?
	if [ "$rc" -ne 0 ]; then
		_tap_result 1 "$desc"
		diag "command: $*" "exit status: $rc" "$out"
		return 1
	fi
	_tap_result 0 "$desc"
}

# nok DESC CMD ARGS...: passes when CMD fails; the output is kept in $NOK_OUTPUT for like().
NOK_OUTPUT=
nok() {
	local desc=$1 rc
	shift
	NOK_OUTPUT=$("$@" 2>&1)
	rc=$?
	if [ "$rc" -eq 0 ]; then
		_tap_result 1 "$desc"
		diag "command unexpectedly succeeded: $*" "$NOK_OUTPUT"
		return 1
	fi
	_tap_result 0 "$desc"
}

# is GOT EXPECTED DESC
is() {
	if [ "$1" = "$2" ]; then
		_tap_result 0 "$3"
	else
		_tap_result 1 "$3"
		diag "     got: '$1'" "expected: '$2'"
		return 1
	fi
}

# like GOT ERE DESC: GOT matches the extended regular expression ERE. A here-string, not a
# pipe: bash writes a line at a time, and under pipefail grep -q leaving at the first match
# would fail the check with the writer's SIGPIPE.
like() {
	if grep -Eq -- "$2" <<<"$1"; then
		_tap_result 0 "$3"
	else
		_tap_result 1 "$3"
		diag "     got: '$1'" "expected to match: /$2/"
		return 1
	fi
}

# pass DESC / fail DESC
pass() { _tap_result 0 "$1"; }
fail() {
	_tap_result 1 "$1"
	return 1
}

# done_testing: print the plan and exit non-zero when a test failed.
done_testing() {
	printf '1..%d\n' "$_tap_n"
	[ "$_tap_failed" -eq 0 ] || diag "failed $_tap_failed of $_tap_n"
	exit $((_tap_failed > 254 ? 254 : _tap_failed))
}

# wait_for SECONDS CMD...: retry CMD every 0.2 s until it succeeds.
wait_for() {
	local deadline=$(($(date +%s) + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		[ "$(date +%s)" -lt "$deadline" ] || return 1
		sleep 0.2
	done
}

# tree_pids ROOT [REGEX]: live processes below ROOT (ROOT itself excluded) whose command line,
# arguments joined by spaces, matches the extended REGEX. Tests find the processes of their own
# runner this way, never by a machine-wide pattern: other runs may share the machine.
tree_pids() {
	local root=$1 re=${2:-}
	local -A kids=()
	local d line cmd
	for d in /proc/[0-9]*; do
		{ line=$(<"$d/stat"); } 2>/dev/null || continue
		# The comm field may hold spaces and parentheses; the fields after its last ')' are fixed.
		[[ ${line##*)} =~ ^\ ([A-Za-z])\ ([0-9]+) ]] || continue
		[ "${BASH_REMATCH[1]}" = Z ] && continue
		kids[${BASH_REMATCH[2]}]+=" ${d#/proc/}"
	done
	local queue=("$root") p c
	while [ ${#queue[@]} -gt 0 ]; do
		p=${queue[0]}
		queue=("${queue[@]:1}")
		for c in ${kids[$p]:-}; do
			queue+=("$c")
			if [ -n "$re" ]; then
				cmd=$(tr '\0' ' ' <"/proc/$c/cmdline" 2>/dev/null) || continue
				[[ ${cmd% } =~ $re ]] || continue
			fi
			echo "$c"
		done
	done
}

# alive_count PID...: how many of these processes still run (zombies count as gone).
alive_count() {
	local n=0 p line
	for p in "$@"; do
		{ line=$(<"/proc/$p/stat"); } 2>/dev/null || continue
		[[ ${line##*)} =~ ^\ [A-Za-z] ]] && [[ ${line##*)} != " Z "* ]] && n=$((n + 1))
	done
	echo "$n"
}

# k ARGS...: kubectl against the test cluster (and the test's namespace once test_namespace ran).
k() {
	if [ -n "${TEST_NS:-}" ]; then
		kubectl --kubeconfig "$KUBECONFIG" --namespace "$TEST_NS" "$@"
	else
		kubectl --kubeconfig "$KUBECONFIG" "$@"
	fi
}

# test_namespace [PREFIX]: create a fresh namespace for this test, set TEST_NS, delete it at exit.
TEST_NS=
test_namespace() {
	local prefix=${1:-$(basename "$0" .t)} ns
	prefix=$(printf '%s' "$prefix" | tr -c 'a-z0-9-' '-' | cut -c1-40)
	ns="it-${prefix}-$(openssl rand -hex 3)"
	kubectl --kubeconfig "$KUBECONFIG" create namespace "$ns" >/dev/null ||
		{
			echo "Bail out! cannot create namespace $ns"
			exit 255
		}
	TEST_NS=$ns
	trap '_cleanup_namespace' EXIT
}
_cleanup_namespace() {
	[ -n "$TEST_NS" ] || return 0
	if [ -n "${KEEP_NAMESPACE:-}" ]; then
		diag "keeping namespace $TEST_NS (KEEP_NAMESPACE set)"
		return 0
	fi
	kubectl --kubeconfig "$KUBECONFIG" delete namespace "$TEST_NS" --wait=false >/dev/null 2>&1 || true
}

# task_field NAME JSONPATH: a field of a Task in the test namespace (empty when unset).
task_field() {
	k get task "$1" -o "jsonpath={$2}" 2>/dev/null
}

# wait_phase NAME PHASE [TIMEOUT_SECONDS=60]: wait until Task NAME's .status.phase is PHASE.
# Fails early when the task reaches a different terminal phase. Prints the final phase.
wait_phase() {
	local name=$1 want=$2 timeout=${3:-60} phase deadline
	deadline=$(($(date +%s) + timeout))
	while :; do
		phase=$(task_field "$name" .status.phase)
		if [ "$phase" = "$want" ]; then
			printf '%s\n' "$phase"
			return 0
		fi
		case "$phase" in
		Succeeded | Failed | Skipped | Cancelled)
			printf '%s\n' "$phase"
			return 1
			;;
		esac
		if [ "$(date +%s)" -ge "$deadline" ]; then
			printf '%s\n' "${phase:-<none>}"
			return 1
		fi
		sleep 0.2
	done
}

# ok_phase NAME PHASE [TIMEOUT]: a test that Task NAME reaches PHASE; shows the task on failure.
ok_phase() {
	local got
	got=$(wait_phase "$1" "$2" "${3:-60}")
	if is "$got" "$2" "task $1 reaches phase $2"; then
		return 0
	fi
	diag "$(k get task "$1" -o yaml 2>&1)"
	return 1
}
