#!/usr/bin/env bash
# The shell task sandbox from the inside, end to end: build/tools/probe runs as a Task and writes
# what it could do into status.output. Once under the suite's runner (root: the task runs as
# 65532), once under a second runner started as an unprivileged user (the task then has the
# runner's own uid). Tasks share a uid, so what keeps one task out of another's (or the runner's)
# /proc/PID/environ and mem, away from its signals, and away from a token file its uid could
# read, is the Landlock domain each task runs in; the runner's non-dumpability backs that up.
# Finally that runner is killed with SIGKILL mid-task: nothing of the task survives.
. "$(dirname "$0")/lib.sh"
. "$IT_ROOT/tests/cluster/lib.sh"
test_namespace sandbox

STATE=${TASKED_STATE_DIR:-.tasked}
case "$STATE" in /*) ;; *) STATE=$IT_ROOT/$STATE ;; esac
. "$STATE/tasked-ports.env"
RUN=$IT_ROOT/bin/tasked-runner
PROBE=$IT_ROOT/build/tools/probe
USER_UID=65533
TMPD=$(mktemp -d /tmp/tasked-it-sandbox-XXXXXX)
chmod 0755 "$TMPD"
NR_PID=
ORPHANS=
cleanup() {
	[ -n "$NR_PID" ] && kill -9 "$NR_PID" 2>/dev/null
	# shellcheck disable=SC2086 # a pid list
	[ -n "$ORPHANS" ] && kill -9 $ORPHANS 2>/dev/null
	rm -rf "$TMPD"
	_cleanup_namespace
}
trap cleanup EXIT

[ -x "$PROBE" ] || { echo "Bail out! $PROBE missing (make build/tools/probe)"; exit 255; }

# probe_task NAME POOL RUNNER_PID: runs the probe on the runner of POOL; prints its report.
probe_task() {
	k apply -f - >/dev/null <<EOF2
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: $1}
spec:
  runnerSelector: {pool: $2}
  env: [{name: TASKED_PROBE_RUNNER_PID, value: "$3"}]
  shell: {command: ["$PROBE"]}
EOF2
	wait_phase "$1" Succeeded 60 >/dev/null || {
		diag "$(k get task "$1" -o yaml)"
		return 1
	}
	k get task "$1" -o json | jq -c '.status.output'
}
field() { printf '%s' "$1" | jq -r "$2"; }
# probe_outside UID PID: the probe run as UID outside any task (no Landlock domain), aimed at PID.
probe_outside() {
	setpriv --reuid="$1" --regid="$1" --clear-groups -- "$PROBE" --runner-pid "$2" 2>/dev/null |
		jq -sc 'map({(.fact): .value}) | add'
}
err_of() { printf '%s' "$1" | jq -r "if .$2.ok then \"ok\" else .$2.error end"; }

# check_report REPORT LABEL: the facts every sandboxed task must show.
check_report() {
	local rep=$1 l=$2 k
	is "$(field "$rep" .status.NoNewPrivs)" 1 "$l: NoNewPrivs: 1"
	is "$(field "$rep" .status.Seccomp)" 2 "$l: Seccomp: 2 (the runner's filter)"
	is "$(field "$rep" .status.CapEff)" 0000000000000000 "$l: no effective capabilities"
	is "$(field "$rep" '.rlimits.core|join("/")')" "0/0" "$l: RLIMIT_CORE 0"
	is "$(field "$rep" '.rlimits.nofile|join("/")')" "1024/1024" "$l: RLIMIT_NOFILE 1024"
	is "$(field "$rep" '.fds|join(",")')" "0,1,2" "$l: no inherited fds beyond 0-2"
	for k in runnerEnviron runnerMem parentEnviron parentMem; do
		like "$(err_of "$rep" $k)" '^E(ACCES|PERM)$' "$l: $k refused"
	done
	for k in runnerPtrace runnerVmRead parentPtrace unshareUserMount unshareUser cloneNewUser mount \
		bpfInvalidCmd bpfMapCreate keyctlInvalidCmd keyctlSessionKeyring addKey perfEventOpen \
		userfaultfd ioUringSetup ioctlTiocsti ioctlTiocstiHighBits; do
		is "$(err_of "$rep" $k)" EPERM "$l: $k -> EPERM"
	done
	is "$(err_of "$rep" clone3)" ENOSYS "$l: clone3 -> ENOSYS (falls back to clone)"
	like "$(err_of "$rep" writeRoot)" '^E(ACCES|ROFS|PERM)$' "$l: cannot write to /"
}

# Outside any sandbox the kernel answers these differently: the EPERMs are the filter's.
base=$("$PROBE" --runner-pid 1 2>/dev/null | jq -sc 'map({(.fact): .value}) | add')
ok "baseline (no filter): bpf/keyctl/TIOCSTI/mount are not EPERM" test \
	"$(err_of "$base" bpfInvalidCmd)/$(err_of "$base" keyctlInvalidCmd)/$(err_of "$base" ioctlTiocsti)/$(err_of "$base" mount)" \
	= "EINVAL/EOPNOTSUPP/ENOTTY/ENOENT"

# --- under the suite's runner, which runs as root ---------------------------------------------
RPID=$(cat "$STATE/runner.pid")
rep=$(probe_task probe-root default "$RPID")
ok "the probe ran under the root runner" test -n "$rep" -a "$rep" != null
is "$(field "$rep" .ids.uid):$(field "$rep" .ids.gid)" "65532:65532" "root runner: the task runs as 65532:65532"
is "$(field "$rep" '.ids.groups|length')" 0 "root runner: no supplementary groups"
is "$(field "$rep" .pids.runner)" "$RPID" "the probe aimed at the runner's pid"
is "$(field "$rep" '.rlimits.nproc|join("/")')" "512/512" "root runner: RLIMIT_NPROC 512"
check_report "$rep" "root runner"
is "$(err_of "$rep" readOwnFile)" ok "root runner: the task reads a file it wrote in its work dir"
like "$(grep '"msg":"tasks run in Landlock domains"' "$STATE/runner.log" | tail -1)" '"signalScoped":"true"' \
	"the runner reports Landlock with signal scoping"

# Another task on the same runner has the same uid (65532) and is dumpable (it exec'd); its own
# Landlock domain is what keeps the probe out of its environment.
k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: sibling}
spec:
  env: [{name: SIBLING_SECRET, value: "s3cr3t-of-another-task"}]
  shell: {command: ["sleep", "4491"]}
EOF2
ok_phase sibling Running 30
SIB=
for _ in $(seq 1 50); do SIB=$(tree_pids "$RPID" '^sleep 4491$' | head -1); [ -n "$SIB" ] && break; sleep 0.1; done
ok "the sibling task runs (pid $SIB)" test -n "$SIB"
is "$(awk '/^Uid:/{print $2}' /proc/$SIB/status)" 65532 "... as 65532, like the probe"
rep=$(probe_task probe-sibling default "$SIB")
like "$(err_of "$rep" runnerEnviron)" '^E(ACCES|PERM)$' "a task cannot read another task's /proc/PID/environ"
like "$(err_of "$rep" runnerMem)" '^E(ACCES|PERM)$' "... nor its /proc/PID/mem"
is "$(err_of "$rep" runnerSignal0)" EPERM "... nor signal it"
base=$(probe_outside 65532 "$SIB")
is "$(err_of "$base" runnerEnviron)" ok "control: outside a task, the same uid reads that environ"
k delete task sibling --wait=false >/dev/null

# --- a runner started as an unprivileged user ---------------------------------------------------
install -d -o $USER_UID -g $USER_UID -m 0700 "$TMPD/nr" "$TMPD/nr/work"
install -o $USER_UID -g $USER_UID -m 0600 "$STATE/runner-token" "$TMPD/nr/token"
setsid setpriv --reuid=$USER_UID --regid=$USER_UID --clear-groups --inh-caps=-all -- \
	"$RUN" --id it-sec-nonroot --controller "ws://127.0.0.1:$BROKER_PORT" --token-file "$TMPD/nr/token" \
	--work-dir "$TMPD/nr/work" --labels pool=sec-nonroot --concurrency 2 \
	>"$STATE/runner-sec-nonroot.log" 2>&1 </dev/null &
NR_PID=$!
disown "$NR_PID" 2>/dev/null
for _ in $(seq 1 100); do grep -q '"runner connected","runner":"it-sec-nonroot"' "$STATE/controller.log" && break; sleep 0.1; done
ok "an unprivileged runner connected" grep -q '"runner connected","runner":"it-sec-nonroot"' "$STATE/controller.log"
is "$(awk '/^Uid:/{print $2}' /proc/$NR_PID/status)" $USER_UID "it runs as uid $USER_UID"
is "$(awk '/^CapEff:/{print $2}' /proc/$NR_PID/status)" 0000000000000000 "with no capabilities"

k apply -f - >/dev/null <<EOF2
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: probe-nonroot}
spec:
  runnerSelector: {pool: sec-nonroot}
  env:
  - {name: TASKED_PROBE_RUNNER_PID, value: "$NR_PID"}
  - {name: TASKED_PROBE_READ_FILE, value: "$TMPD/nr/token"}
  shell: {command: ["$PROBE"]}
EOF2
wait_phase probe-nonroot Succeeded 60 >/dev/null || diag "$(k get task probe-nonroot -o yaml)"
rep=$(k get task probe-nonroot -o json | jq -c '.status.output')
ok "the probe ran under the unprivileged runner" test -n "$rep" -a "$rep" != null
is "$(field "$rep" .ids.uid)" $USER_UID "the task has the runner's own uid"
check_report "$rep" "unprivileged runner"
is "$(err_of "$rep" runnerSignal0)" EPERM "same uid, but the task cannot signal the runner (Landlock scope)"
is "$(err_of "$rep" readFile)" EACCES "the runner's token file (mode 0600, the task's own uid) cannot be read"
is "$(err_of "$rep" readOwnFile)" ok "... while the task reads a file it wrote in its work dir"
like "$(grep '"msg":"tasks run in Landlock domains"' "$STATE/runner-sec-nonroot.log")" '"tokenHidden":"true"' \
	"the runner says the token is hidden"
ok "control: outside a task, the same uid reads the token" \
	setpriv --reuid=$USER_UID --regid=$USER_UID --clear-groups -- head -c1 "$TMPD/nr/token"

# A dumpable process of the same uid outside any task: the same probe is refused too, by
# Landlock (the task's domain does not contain it) - without Landlock it would be readable.
setsid setpriv --reuid=$USER_UID --regid=$USER_UID --clear-groups -- sleep 4489 </dev/null >/dev/null 2>&1 &
CTL=$!
disown "$CTL" 2>/dev/null
sleep 0.2
rep=$(probe_task probe-control sec-nonroot "$CTL")
like "$(err_of "$rep" runnerEnviron)" '^E(ACCES|PERM)$' "a dumpable same-uid process's environ is out of a task's reach"
like "$(err_of "$rep" runnerMem)" '^E(ACCES|PERM)$' "... and its mem"
base=$(probe_outside "$USER_UID" "$CTL")
is "$(err_of "$base" runnerEnviron)" ok "control: outside a task, the same uid reads it"
kill -9 "$CTL" 2>/dev/null

# --- kill -9 that runner while a task runs -------------------------------------------------------
k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: orphan-maker}
spec:
  runnerSelector: {pool: sec-nonroot}
  shell: {command: ["sh", "-c", "sleep 4481 & setsid sleep 4482 & sleep 4483"]}
EOF2
ok_phase orphan-maker Running 30
up=0
for _ in $(seq 1 50); do up=$(tree_pids "$NR_PID" '^sleep 448[123]$' | wc -l); [ "$up" -ge 3 ] && break; sleep 0.1; done
is "$up" 3 "the task's three sleeps run (one of them setsid'd)"
ORPHANS=$(tree_pids "$NR_PID" '^sleep 448[123]$')
kill -9 "$NR_PID"
NR_PID=
left=3
# shellcheck disable=SC2086 # a pid list
for _ in $(seq 1 50); do left=$(alive_count $ORPHANS); [ "$left" -eq 0 ] && break; sleep 0.1; done
is "$left" 0 "unprivileged runner killed with SIGKILL: none of the task's processes survives"

done_testing
