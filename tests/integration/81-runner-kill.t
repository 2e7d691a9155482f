#!/usr/bin/env bash
# Runner killed with SIGKILL → no task process survives. PR_SET_PDEATHSIG alone would only reach
# the runner's direct child; the per-task init (child subreaper, catchable parent-death signal)
# kills the task's whole tree, including processes that left its process group. The tasks' work
# dirs it leaves behind are removed by the next runner that starts on the same --work-dir.
. "$(dirname "$0")/lib.sh"
. "$IT_ROOT/tests/cluster/lib.sh"
test_namespace runnerkill

STATE=${TASKED_STATE_DIR:-.tasked}
case "$STATE" in /*) ;; *) STATE=$IT_ROOT/$STATE ;; esac
. "$STATE/tasked-ports.env"
RUN=$IT_ROOT/bin/tasked-runner
cleanup() {
	[ -s "$STATE/runner-sec-kill.pid" ] && kill -9 "$(cat "$STATE/runner-sec-kill.pid")" 2>/dev/null
	rm -f "$STATE/runner-sec-kill.pid"
	[ -s "$STATE/runner-sec-lonely.pid" ] && kill -9 "$(cat "$STATE/runner-sec-lonely.pid")" 2>/dev/null
	rm -f "$STATE/runner-sec-lonely.pid"
	[ -n "${WORK:-}" ] && rm -rf "$WORK"
	[ -n "${SLEEPS:-}" ] && kill -9 $SLEEPS 2>/dev/null
	_cleanup_namespace
}
trap cleanup EXIT
# The dedicated runner's sleeps, found below its pid; once it is killed, the pids seen before.
count() { tree_pids "$(cat "$STATE/runner-sec-kill.pid")" "^sleep $1\$" | wc -l; }
wait_count() { # PATTERN WANT SECONDS
	local n end=$(($(date +%s) + $3))
	while :; do
		n=$(count "$1")
		[ "$n" -eq "$2" ] && break
		[ "$(date +%s)" -lt "$end" ] || break
		sleep 0.1
	done
	printf '%s\n' "$n"
}
wait_gone() { # SECONDS PID...
	local n end=$(($(date +%s) + $1))
	shift
	while :; do
		n=$(alive_count "$@")
		[ "$n" -eq 0 ] && break
		[ "$(date +%s)" -lt "$end" ] || break
		sleep 0.1
	done
	printf '%s\n' "$n"
}

WORK=$(mktemp -d /tmp/tasked-it-kill-XXXXXX)
chmod 0755 "$WORK"
start_bg "$STATE/runner-sec-kill.pid" "$STATE/runner-sec-kill.log" "$RUN" --id it-sec-kill \
	--controller "ws://127.0.0.1:$BROKER_PORT" --token-file "$STATE/runner-token" \
	--labels pool=sec-kill --concurrency 4 --work-dir "$WORK"
disown -a 2>/dev/null
for _ in $(seq 1 100); do grep -q '"runner connected","runner":"it-sec-kill"' "$STATE/controller.log" && break; sleep 0.1; done
ok "a dedicated runner connected" grep -q '"runner connected","runner":"it-sec-kill"' "$STATE/controller.log"

k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: two-sleeps}
spec:
  runnerSelector: {pool: sec-kill}
  shell: {command: ["sh", "-c", "sleep 4401 & sleep 4402"]}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: escapees}
spec:
  runnerSelector: {pool: sec-kill}
  shell: {command: ["sh", "-c", "setsid sleep 4403 & (setsid sh -c 'sleep 4404 & sleep 4405' &) ; sleep 4406"]}
EOF2
ok_phase two-sleeps Running 30
ok_phase escapees Running 30
is "$(wait_count '440[12]' 2 10)" 2 "sleep 4401 (background) and sleep 4402 run"
is "$(wait_count '440[3-6]' 4 10)" 4 "the escapees run: setsid'd, double-forked into a new session"

RPID=$(cat "$STATE/runner-sec-kill.pid")
TWO=$(tree_pids "$RPID" '^sleep 440[12]$')
ESC=$(tree_pids "$RPID" '^sleep 440[3-6]$')
SLEEPS="$TWO $ESC"
kill -9 "$RPID"
# shellcheck disable=SC2086 # pid lists
is "$(wait_gone 5 $TWO)" 0 "runner killed with SIGKILL: no sleep 440x of sh -c 'sleep 4401 & sleep 4402' survives"
# shellcheck disable=SC2086
is "$(wait_gone 5 $ESC)" 0 "... nor any process that left the task's group or session"
ok "the runner is gone" sh -c "! kill -0 $RPID 2>/dev/null"

# What it leaves on disk: its own directory with the two tasks' work dirs.
left=$(find "$WORK" -mindepth 2 -maxdepth 2 -type d -name 'tasked-*' | wc -l)
is "$left" 2 "the killed runner left its two tasks' work dirs in $WORK/tasked-runner-*"
# A new runner on the same --work-dir finds the lock free and removes them.
start_bg "$STATE/runner-sec-kill.pid" "$STATE/runner-sec-kill2.log" "$RUN" --id it-sec-kill2 \
	--controller "ws://127.0.0.1:$BROKER_PORT" --token-file "$STATE/runner-token" \
	--labels pool=sec-kill --concurrency 1 --work-dir "$WORK" --health-file "$WORK/health"
disown -a 2>/dev/null
for _ in $(seq 1 100); do grep -q '"runner connected","runner":"it-sec-kill2"' "$STATE/controller.log" && break; sleep 0.1; done
like "$(grep '"msg":"removed work dirs of runners that are gone"' "$STATE/runner-sec-kill2.log")" '"count":"1"' \
	"the next runner on that --work-dir removed the dead runner's directory"
is "$(find "$WORK" -mindepth 2 -maxdepth 2 -type d -name 'tasked-*' | wc -l)" 0 "... with the tasks' work dirs"
is "$(find "$WORK" -mindepth 1 -maxdepth 1 -name 'tasked-runner-*' | wc -l)" 1 "... leaving only its own, live one"

# The exec probes: --health-file is rewritten by the runner's loop every 5 s.
health() { "$RUN" --check-health "$WORK/health" "$@" 2>&1; }
ready_now() { health --ready >/dev/null; }
ok "the connected runner becomes ready (--check-health --ready)" wait_for 10 ready_now
like "$(health)" '^ok: connected' "... and is live (--check-health)"
R2=$(cat "$STATE/runner-sec-kill.pid")
kill -STOP "$R2"
sleep 7
out=$(health --max-age-seconds 5)
is "$?" 1 "a stopped (hung) runner fails liveness once the file is older than --max-age-seconds"
like "$out" 'stuck' "... saying its loop is stuck"
kill -CONT "$R2"
live_now() { health --max-age-seconds 5 >/dev/null; }
ok "... and passes again once it runs" wait_for 10 live_now

# A runner that cannot reach its controller keeps retrying: live, not ready.
start_bg "$STATE/runner-sec-lonely.pid" "$STATE/runner-sec-lonely.log" "$RUN" --id it-sec-lonely \
	--controller "ws://127.0.0.1:1" --token-file "$STATE/runner-token" --work-dir "$WORK" \
	--health-file "$WORK/lonely"
disown -a 2>/dev/null
lonely_live() { "$RUN" --check-health "$WORK/lonely" >/dev/null 2>&1; }
ok "a runner without its controller is live" wait_for 10 lonely_live
like "$("$RUN" --check-health "$WORK/lonely" --ready 2>&1)" '^unhealthy: the runner is not connected' \
	"... but not ready"
kill "$(cat "$STATE/runner-sec-lonely.pid")" 2>/dev/null

done_testing
