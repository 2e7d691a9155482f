#!/usr/bin/env bash
# An output flood does not grow the runner's memory: a task writes 200 MB to stdout while the
# test samples the runner's VmRSS from /proc; the peak (VmHWM) stays under a fixed bound. The
# result is truncated at maxOutputBytes and logTail still shows how the output ended.
. "$(dirname "$0")/lib.sh"
. "$IT_ROOT/tests/cluster/lib.sh"
test_namespace flood

STATE=${TASKED_STATE_DIR:-.tasked}
case "$STATE" in /*) ;; *) STATE=$IT_ROOT/$STATE ;; esac
. "$STATE/tasked-ports.env"
RUN=$IT_ROOT/bin/tasked-runner
# Fixed costs (libraries, lws, buffers) plus the 4 MiB outbox budget for log messages; a runner
# that kept the output would need 200 MB.
BOUND_KB=$((32 * 1024))
cleanup() {
	[ -s "$STATE/runner-sec-flood.pid" ] && kill -9 "$(cat "$STATE/runner-sec-flood.pid")" 2>/dev/null
	rm -f "$STATE/runner-sec-flood.pid"
	_cleanup_namespace
}
trap cleanup EXIT

start_bg "$STATE/runner-sec-flood.pid" "$STATE/runner-sec-flood.log" "$RUN" --id it-sec-flood \
	--controller "ws://127.0.0.1:$BROKER_PORT" --token-file "$STATE/runner-token" \
	--labels pool=sec-flood --concurrency 2
disown -a 2>/dev/null
for _ in $(seq 1 100); do grep -q '"runner connected","runner":"it-sec-flood"' "$STATE/controller.log" && break; sleep 0.1; done
ok "a dedicated runner connected" grep -q '"runner connected","runner":"it-sec-flood"' "$STATE/controller.log"
RPID=$(cat "$STATE/runner-sec-flood.pid")
rss() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$RPID/status"; }
idle=$(rss VmRSS)
diag "runner idle VmRSS: ${idle} kB"

k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: flood}
spec:
  runnerSelector: {pool: sec-flood}
  shell: {command: ["sh", "-c", "head -c 200000000 /dev/zero | tr '\\0' x; echo; echo THE-END"]}
EOF2
# Sample VmRSS every 10 ms in the background while the task runs.
(
	max=0 n=0
	while [ -r "/proc/$RPID/status" ] && [ ! -e "$STATE/.flood-stop" ]; do
		v=$(awk '$1 == "VmRSS:" {print $2}' "/proc/$RPID/status")
		[ -n "$v" ] && [ "$v" -gt "$max" ] && max=$v
		n=$((n + 1))
		echo "$n $max" >"$STATE/.flood-samples"
		sleep 0.01
	done
) &
SAMPLER=$!
wait_phase flood Succeeded 120 >/dev/null
touch "$STATE/.flood-stop"
wait "$SAMPLER" 2>/dev/null
read -r samples max <"$STATE/.flood-samples"
rm -f "$STATE/.flood-stop" "$STATE/.flood-samples"
hwm=$(rss VmHWM)
diag "samples: $samples, max VmRSS: ${max} kB, VmHWM: ${hwm} kB, bound: ${BOUND_KB} kB"
is "$(task_field flood .status.phase)" Succeeded "the 200 MB task succeeded"
ok "sampled VmRSS stayed under ${BOUND_KB} kB (max ${max} kB)" test "$max" -lt "$BOUND_KB"
ok "peak VmHWM stayed under ${BOUND_KB} kB (${hwm} kB)" test "$hwm" -lt "$BOUND_KB"
is "$(task_field flood .status.outputTruncated)" true "outputTruncated: 200 MB is over the 10 MiB maxOutputBytes"
like "$(task_field flood .status.logTail)" 'xxx
THE-END$' "logTail shows how the output ended"

done_testing
