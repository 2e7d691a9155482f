#!/usr/bin/env bash
# The SSE connection cap (--max-sse-connections, default 100): 100 open streams are served,
# the 101st (events or a log follow) gets 503 with a JSON error; once the clients leave their
# slots come back, a new client gets 200, and the controller's fd count is what it was.
. "$(dirname "$0")/lib.sh"
. "$IT_ROOT/tests/tools/apitest.sh"
test_namespace api-sse-cap
TMPD=$(mktemp -d)
HOLD=
trap '_cleanup_namespace; [ -n "$HOLD" ] && kill "$HOLD" 2>/dev/null; bg_stop; rm -rf "$TMPD"' EXIT

k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: c1}
spec:
  shell: {command: ["echo", "c1"]}
EOF2
ok_phase c1 Succeeded

PID=$(controller_pid)
open_streams() { metric 'tasked_sse_connections{kind="events"}'; }
at_zero() { [ "$(open_streams)" = 0 ] && [ "$(metric 'tasked_sse_connections{kind="logs"}')" = 0 ]; }
ok "no streams are open before the test" wait_for 30 at_zero
fd0=$(fd_count "$PID")
rej0=$(metric tasked_sse_rejected_total)
closed0=$(metric 'tasked_sse_connections_closed_total{kind="events",reason="client"}')

"$SSEHOLD" 127.0.0.1 "$API_PORT" /api/v1/events --key-file "$KEY_FILE" --count 100 >"$TMPD/hold.out" &
HOLD=$!
ok "ssehold opened its streams" wait_for 30 grep -q '^ready' "$TMPD/hold.out"
is "$(grep '^status' "$TMPD/hold.out")" "status 200 100" "100 event streams are accepted"
is "$(open_streams)" "100" "the controller counts 100 open streams"

hdrs=$TMPD/h
body=$(acurl -D "$hdrs" --max-time 5 "$API/api/v1/events")
like "$(head -n 1 "$hdrs")" '^HTTP/1.1 503' "the 101st stream gets 503"
like "$body" '^\{"error":"ServiceUnavailable","message":"too many open event streams \(--max-sse-connections=100\); retry later"\}$' \
	"... with a JSON error"
like "$(tr -d '\r' <"$hdrs")" $'retry-after: 5' "... and Retry-After"
is "$(code "$API/api/v1/namespaces/$TEST_NS/tasks/c1/logs?follow=true" --max-time 5)" 503 \
	"a log follow counts against the same cap"
is "$(code "$API/api/v1/namespaces/$TEST_NS/tasks/c1/logs")" 200 "plain requests are still served"
is "$(($(metric tasked_sse_rejected_total) - rej0))" 2 "refusals are counted in tasked_sse_rejected_total"
fd1=$(fd_count "$PID")
ok "the open streams hold fds ($fd0 -> $fd1)" test "$fd1" -ge $((fd0 + 100))

kill "$HOLD"
wait "$HOLD" 2>/dev/null
HOLD=
ok "the slots come back when the clients leave" wait_for 15 at_zero
is "$(($(metric 'tasked_sse_connections_closed_total{kind="events",reason="client"}') - closed0))" 100 \
	"100 client-closed streams are counted"
is "$(code "$API/api/v1/events" --max-time 1)" 200 "a new client gets 200"
fd_back() { [ "$(fd_count "$PID")" -le "$fd0" ]; }
if wait_for 15 fd_back; then
	pass "the controller's fd count is back to $fd0"
else
	fail "the controller's fd count is back to $fd0"
	diag "now $(fd_count "$PID")"
	ls -l "/proc/$PID/fd" 2>/dev/null | tail -n 20 | while read -r l; do diag "$l"; done
fi

done_testing
