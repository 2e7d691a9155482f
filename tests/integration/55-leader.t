#!/usr/bin/env bash
# Leader election: two controllers with --leader-elect, each with its own runner; only the
# Lease holder dispatches, and when it dies the other takes over within 20 s.
. "$(dirname "$0")/lib.sh"
. "$IT_ROOT/tests/cluster/lib.sh"
test_namespace leader

STATE=${TASKED_STATE_DIR:-.tasked}
case "$STATE" in /*) ;; *) STATE=$IT_ROOT/$STATE ;; esac
. "$STATE/tasked-ports.env"
CTL=$IT_ROOT/bin/tasked-controller
RUN=$IT_ROOT/bin/tasked-runner
cleanup() {
	for f in le-a le-b le-runner-b; do
		[ -s "$STATE/$f.pid" ] && kill -9 "$(cat "$STATE/$f.pid")" 2>/dev/null
		rm -f "$STATE/$f.pid"
	done
	"$IT_ROOT/tests/cluster/up.sh" >/dev/null 2>&1
	_cleanup_namespace
}
trap cleanup EXIT

# The suite's controller steps aside; A takes its ports (so the suite's runner follows it).
stop_pidfile "$STATE/controller.pid" "$CTL" tasked-controller 5 >/dev/null
B_API=$(pick_port "$API_PORT" "$BROKER_PORT")
B_BROKER=$(pick_port "$API_PORT" "$BROKER_PORT" "$B_API")
le_args=(--leader-elect --leader-elect-namespace "$TEST_NS" --kubeconfig "$STATE/kubeconfig"
	--runner-token-file "$STATE/runner-token" --api-key-file "$STATE/api-key")
start_bg "$STATE/le-a.pid" "$STATE/le-a.log" "$CTL" "${le_args[@]}" \
	--listen "127.0.0.1:$API_PORT" --broker-listen "127.0.0.1:$BROKER_PORT"
sleep 1   # A usually wins; the test works either way
start_bg "$STATE/le-b.pid" "$STATE/le-b.log" "$CTL" "${le_args[@]}" \
	--listen "127.0.0.1:$B_API" --broker-listen "127.0.0.1:$B_BROKER"
start_bg "$STATE/le-runner-b.pid" "$STATE/le-runner-b.log" "$RUN" --id le-runner-b \
	--controller "ws://127.0.0.1:$B_BROKER" --token-file "$STATE/runner-token" --labels pool=default

leader=""
for _ in $(seq 1 100); do
	grep -q '"acquired leadership"' "$STATE/le-a.log" && leader=a && break
	grep -q '"acquired leadership"' "$STATE/le-b.log" && leader=b && break
	sleep 0.2
done
ok "one controller acquired the Lease" test -n "$leader"
other=$([ "$leader" = a ] && echo b || echo a)
holder=$(k get lease tasked-controller -o jsonpath='{.spec.holderIdentity}')
like "$holder" '_[0-9a-f]{16}$' "the Lease names the holder ($holder)"
nok "only one controller leads" grep -q '"acquired leadership"' "$STATE/le-$other.log"

for i in 1 2 3 4; do
	k apply -f - >/dev/null <<EOF2
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: led-$i}
spec:
  shell: {command: ["echo", "dispatched by the leader"]}
EOF2
done
for i in 1 2 3 4; do ok_phase "led-$i" Succeeded 60; done
runners=$(for i in 1 2 3 4; do task_field "led-$i" .status.runner; echo; done | sort -u)
if [ "$leader" = b ]; then
	is "$runners" "le-runner-b" "every task ran on the leader's runner"
else
	ok "every task ran on the leader's runner ($runners)" test "$(printf '%s\n' "$runners" | wc -l)" = 1 -a "$runners" != le-runner-b
fi
nok "the standby dispatched nothing" grep -q '"task dispatched"' "$STATE/le-$other.log"

# Failover: kill the leader hard; the standby takes over once the Lease expires (15 s).
t0=$(date +%s%3N)
kill -9 "$(cat "$STATE/le-$leader.pid")"
k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: after-failover}
spec:
  shell: {command: ["echo", "dispatched by the new leader"]}
EOF2
took=""
for _ in $(seq 1 150); do
	if grep -q '"acquired leadership"' "$STATE/le-$other.log"; then
		took=$(($(date +%s%3N) - t0))
		break
	fi
	sleep 0.2
done
ok "the standby took over within 20 s (${took:-never} ms)" test -n "$took" -a "${took:-99999}" -le 20000
if [ "$other" = b ]; then
	ok_phase after-failover Succeeded 60
	is "$(task_field after-failover .status.runner)" "le-runner-b" "the new leader dispatched to its runner"
else
	# A's runner is the suite's; it reconnects to A's port by itself.
	ok_phase after-failover Succeeded 60
	pass "the new leader dispatched"
fi
is "$(k get lease tasked-controller -o jsonpath='{.spec.leaseTransitions}')" "1" "the Lease records one transition"

done_testing
