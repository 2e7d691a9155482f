#!/usr/bin/env bash
# Broker: token → single-use grant, refusals, and malformed messages that close one connection
# without harming the controller or the connected runner.
. "$(dirname "$0")/lib.sh"
test_namespace broker

STATE=${TASKED_STATE_DIR:-.tasked}
case "$STATE" in /*) ;; *) STATE=$IT_ROOT/$STATE ;; esac
. "$STATE/tasked-ports.env"
PROBE=$IT_ROOT/build/tools/wsprobe
TOKEN=$(cat "$STATE/runner-token")
API=$(cat "$STATE/api-url")
hello='{"type":"hello","runnerId":"probe-runner","version":"test","capacity":1,"labels":{"pool":"probe-only"}}'

code=$(curl -s -o /dev/null -w '%{http_code}' -XPOST "http://127.0.0.1:$BROKER_PORT/runners/auth" -d '{"token":"wrong"}')
is "$code" "403" "a wrong runner token gets 403"
body=$(curl -s -XPOST "http://127.0.0.1:$BROKER_PORT/runners/auth" -d '{"token":"wrong"}')
like "$body" '"error":"Forbidden"' "the refusal is a JSON error"

out=$("$PROBE" 127.0.0.1 "$BROKER_PORT" --token "$TOKEN" --print-grant --send "$hello" --wait-ms 500)
like "$out" "upgrade 101" "the right token's grant opens a WebSocket"
like "$out" '"type":"welcome"' "hello is answered with welcome"
grant=$(printf '%s\n' "$out" | sed -n 's/^grant //p')
out=$("$PROBE" 127.0.0.1 "$BROKER_PORT" --grant "$grant" --send "$hello")
unlike=$(printf '%s' "$out" | grep -c "upgrade 101")
is "$unlike" "0" "a replayed grant is refused"
out=$("$PROBE" 127.0.0.1 "$BROKER_PORT" --proto "" --token "$TOKEN")
ok "an upgrade without the subprotocol is refused" test "$(printf '%s' "$out" | grep -c 'upgrade 101')" = 0

out=$("$PROBE" 127.0.0.1 "$BROKER_PORT" --token "$TOKEN" --send 'this is not json')
like "$out" "close 4400 invalid JSON" "invalid JSON closes the connection with 4400 and a reason"
out=$("$PROBE" 127.0.0.1 "$BROKER_PORT" --token "$TOKEN" --send '{"type":"dispatch","taskUid":"x","attempt":1}')
like "$out" "close 4400 .*direction" "a controller-only message from a runner is refused"
out=$("$PROBE" 127.0.0.1 "$BROKER_PORT" --token "$TOKEN" --send '{"type":"started","taskUid":"x","attempt":1}')
like "$out" "close 4400 hello expected first" "messages before hello are refused"
out=$("$PROBE" 127.0.0.1 "$BROKER_PORT" --token "$TOKEN" --send-size 2097152)
like "$out" "close 1009" "a 2 MiB message closes the connection with 1009"

is "$(curl -s -o /dev/null -w '%{http_code}' "$API/healthz")" "200" "the controller is still healthy"
grep -q '"msg":"closing runner connection: malformed message"' "$STATE/controller.log"
is "$?" "0" "the controller logged the malformed message"

# The real runner was not disturbed: a task still runs.
k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: after-probes}
spec:
  shell: {command: ["echo", "still fine"]}
EOF2
ok_phase after-probes Succeeded
is "$(task_field after-probes .status.logTail)" "still fine" "tasks still run after the bad connections"

# A task whose runnerSelector matches no connected runner waits in Queued and says why.
k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: no-runner}
spec:
  runnerSelector: {pool: nowhere}
  shell: {command: ["true"]}
EOF2
ok_phase no-runner Queued 20
like "$(task_field no-runner .status.message)" "runnerSelector" "the Queued message says no runner matches"

done_testing
