#!/usr/bin/env bash
# Task logs: .../logs returns what the runner streamed (text or JSON, per attempt), ?follow=true
# streams lines as SSE while the task runs and ends when it finishes, the store keeps a bounded
# tail, and a follower that never reads is dropped without the controller's memory growing.
. "$(dirname "$0")/lib.sh"
. "$IT_ROOT/tests/tools/apitest.sh"
test_namespace api-logs
TMPD=$(mktemp -d)
GO=$(mktemp -d /var/tmp/tasked-go.XXXXXX)   # the slow-follower task waits for GO/go (below); not /tmp: each task has a private one
chmod 755 "$GO"
HOLD=
trap '_cleanup_namespace; bg_stop; [ -n "$HOLD" ] && kill "$HOLD" 2>/dev/null; rm -rf "$TMPD" "$GO"' EXIT
L=$API/api/v1/namespaces/$TEST_NS/tasks

k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: ticker}
spec:
  shell: {command: ["sh", "-c", "echo first; echo oops >&2; sleep 4; echo second"]}
EOF2
wait_phase ticker Running 30 >/dev/null
sse_bg "$TMPD/follow.out" 60 "$L/ticker/logs?follow=true"
FOLLOW=$BG_PID
saw_first() { grep -q '"data":"first\\n"' "$TMPD/follow.out"; }
ok "logs?follow=true delivers a line while the task runs" wait_for 10 saw_first
is "$(task_field ticker .status.phase)" "Running" "... (the task is still Running)"
ok_phase ticker Succeeded
ok "the follow ends by itself when the task finishes" wait_for 10 sh -c "! kill -0 $FOLLOW 2>/dev/null"
f=$(cat "$TMPD/follow.out")
like "$f" $'^retry: 3000\n' "it is an SSE stream"
like "$f" $'id: [0-9]+\nevent: log\ndata: \\{"attempt":1,"seq":[0-9]+,"stream":"stdout","data":"second\\\\n"\\}' \
	"log events carry attempt, seq, stream and data, with the byte offset as id"
like "$f" '"stream":"stderr","data":"oops\\n"' "stderr is streamed and labelled"
like "$f" $'event: end\ndata: \\{"complete":true,"phase":"Succeeded"' "an end event gives the final phase"

hdrs=$TMPD/h
is "$(acurl -D "$hdrs" "$L/ticker/logs" | sort | tr '\n' ' ')" "first oops second " "GET .../logs returns the whole output"
like "$(tr -d '\r' <"$hdrs")" 'content-type: text/plain; charset=utf-8' "... as text/plain"
like "$(tr -d '\r' <"$hdrs")" 'x-tasked-log-source: store' "... from the log store"
like "$(tr -d '\r' <"$hdrs")" 'x-tasked-log-complete: true' "... complete"
j=$(acurl -H 'Accept: application/json' "$L/ticker/logs")
is "$(jq -r '[.name, .source, (.complete|tostring), (.truncated|tostring)] | join(" ")' <<<"$j")" \
	"ticker store true false" "Accept: application/json gives a JSON document"
like "$(jq -r .log <<<"$j")" 'first' "... with the log"
is "$(acurl "$L/ticker/logs?format=json" | jq -r .source)" "store" "?format=json too"
# Resume a follow from an offset (EventSource reconnect).
off=$(awk '/^id: /{print $2; exit}' "$TMPD/follow.out")
resumed=$(sse_capture 5 "$L/ticker/logs?follow=true" -H "Last-Event-ID: $off")
if grep -q '"data":"first\\n"' <<<"$resumed"; then
	fail "Last-Event-ID resumes a follow after that offset"
else
	pass "Last-Event-ID resumes a follow after that offset"
fi
like "$resumed" '"data":"second\\n"' "... with what came after"
like "$(sse_capture 5 "$L/ticker/logs?follow=true")" $'event: end' "following a finished task replays it and ends"

# Attempts.
k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: twice}
spec:
  retries: {limit: 1, backoff: {initialDelaySeconds: 1, jitter: false}}
  shell: {command: ["sh", "-c", "echo run; exit 3"]}
EOF2
ok_phase twice Failed 60
is "$(acurl "$L/twice/logs" | tr '\n' ' ')" "run run " "the log keeps every attempt"
is "$(acurl "$L/twice/logs?attempt=2" | tr '\n' ' ')" "run " "?attempt=2 selects one"
is "$(code "$L/twice/logs?attempt=x")" 400 "a bad attempt: 400"
is "$(code "$L/nope/logs")" 404 "logs of a missing task: 404"
is "$(code "$L/nope/logs?follow=true" --max-time 3)" 404 "following a missing task: 404"
is "$(code "$L/ticker/logs?follow=maybe")" 400 "a bad follow value: 400"

# A slow follower: a task prints megabytes, the client never reads. The stream may owe its
# client at most --sse-max-lag-kib (1 MiB) - counting what the socket holds - so the controller
# resets the connection once the task has printed that much past what the client took, and
# its memory stays flat. The task starts printing only when the follower is connected (it
# waits for a file the test creates): output stored before a follow began does not count
# against it, and the runner streams at most 10 MiB per task, so without the handshake the
# outcome would depend on when the client joined. The client watches for the reset without
# reading (up to 60 s).
PID=$(controller_pid)
rss0=$(rss_kib "$PID")
slow0=$(metric 'tasked_sse_connections_closed_total{kind="logs",reason="slow"}')
k apply -f - >/dev/null <<EOF2
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: chatty}
spec:
  timeoutSeconds: 120
  shell:
    command: ["sh", "-c", "while [ ! -e $GO/go ]; do sleep 0.1; done; exec yes 'a line of output that the slow client will never read'"]
EOF2
wait_phase chatty Running 30 >/dev/null
"$SSEHOLD" 127.0.0.1 "$API_PORT" "/api/v1/namespaces/$TEST_NS/tasks/chatty/logs?follow=true" --key-file "$KEY_FILE" \
	--rcvbuf 4096 --no-read --until-closed --hold-ms 60000 --drain-ms 2000 >"$TMPD/slow.out" &
HOLD=$!
ok "the slow follower is connected" wait_for 30 grep -q '^ready' "$TMPD/slow.out"
touch "$GO/go"
wait "$HOLD"
HOLD=
diag "slow follower: $(tr '\n' ' ' <"$TMPD/slow.out")"
is "$(grep '^status' "$TMPD/slow.out")" "status 200 1" "the slow follower was accepted"
is "$(grep '^closed-by-server' "$TMPD/slow.out")" "closed-by-server 1" "the controller dropped it"
slow_counted() { [ "$(($(metric 'tasked_sse_connections_closed_total{kind="logs",reason="slow"}') - slow0))" = 1 ]; }
ok "... counted as a slow drop" wait_for 10 slow_counted
like "$(grep '"msg":"dropping a slow SSE client"' "$STATE/controller.log" | grep '"task":"'"$TEST_NS"'/chatty"' | tail -1)" \
	'"reason":"(owes its client more than the lag bound|fell behind the stored output)","lagBytes":"[0-9]+"' \
	"... and logged with the reason and how far behind it was"
# The task has served its purpose; cancel it rather than wait for its timeout.
k patch task chatty --type merge -p '{"spec":{"cancel":true}}' >/dev/null
ok_phase chatty Cancelled 30
rss1=$(rss_kib "$PID")
diag "controller RSS ${rss0} KiB -> ${rss1} KiB"
ok "the controller's RSS grew by less than 24 MiB ($(((rss1 - rss0) / 1024)) MiB)" test $((rss1 - rss0)) -lt $((24 * 1024))
size=$(acurl -D "$hdrs" "$L/chatty/logs" | wc -c)
ok "the store kept a bounded tail of the 10 MiB output ($size bytes)" test "$size" -le 1048576 -a "$size" -gt 100000
like "$(tr -d '\r' <"$hdrs")" 'x-tasked-log-truncated: true' "... and says it is truncated"

done_testing
