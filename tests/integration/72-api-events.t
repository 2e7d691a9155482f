#!/usr/bin/env bash
# GET /api/v1/events: an SSE stream of task changes with increasing ids, filters by namespace
# and queue, Last-Event-ID resume (only newer events), a gap event when the ring no longer
# holds the id, deletions, and keep-alive comments.
. "$(dirname "$0")/lib.sh"
. "$IT_ROOT/tests/tools/apitest.sh"
test_namespace api-events
TMPD=$(mktemp -d)
trap '_cleanup_namespace; bg_stop; rm -rf "$TMPD"' EXIT

EV=$API/api/v1/events
# A stream on a namespace with no tasks: nothing but keep-alives (every 15 s).
sse_bg "$TMPD/ka.out" 19 "$EV?namespace=no-such-namespace-$$"
KA=$BG_PID
sse_bg "$TMPD/live.out" 40 "$EV?namespace=$TEST_NS"
sse_bg "$TMPD/q2.out" 40 "$EV?namespace=$TEST_NS&queue=q2"
sleep 1

k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: q2}
spec: {concurrency: 10}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: e1}
spec:
  shell: {command: ["echo", "one"]}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: e2}
spec:
  queue: q2
  shell: {command: ["echo", "two"]}
EOF2
ok_phase e1 Succeeded
ok_phase e2 Succeeded
sleep 1

# data lines of the task events in a capture, one JSON object per line, each with its id.
events_of() {
	awk '/^id: / { id = $2 } /^data: / { sub(/^data: /, ""); print id " " $0 }' "$1"
}
live=$(events_of "$TMPD/live.out")
like "$(head -c 200 "$TMPD/live.out")" '^retry: 3000' "the stream starts with a retry hint"
like "$live" '"type":"created","namespace":"'"$TEST_NS"'","name":"e1"' "a created event for e1"
like "$live" '"type":"status".*"name":"e1".*"phase":"Succeeded"' "a status event with e1's final phase"
like "$live" '"type":"status".*"name":"e2".*"phase":"Succeeded"' "and e2's"
like "$live" '"name":"e1".*"queue":"default"' "events name the queue"
ids=$(awk '{print $1}' <<<"$live")
is "$(sort -n <<<"$ids" | uniq | tr '\n' ' ')" "$(tr '\n' ' ' <<<"$ids")" "ids increase strictly"
is "$(grep -c '"name":"e1"' <<<"$(events_of "$TMPD/q2.out")")" "0" "the queue filter leaves out other queues"
like "$(events_of "$TMPD/q2.out")" '"name":"e2"' "... and keeps its own"
if grep -q '"namespace":"' <<<"$live" && grep -v "\"namespace\":\"$TEST_NS\"" <<<"$live" | grep -q .; then
	fail "the namespace filter leaves out other namespaces"
else
	pass "the namespace filter leaves out other namespaces"
fi

# Resume: Last-Event-ID delivers only newer events.
n=$(wc -l <<<"$ids")
mid=$(sed -n "$(((n + 1) / 2))p" <<<"$ids")
newer=$(awk -v m="$mid" '$1 > m' <<<"$ids" | tr '\n' ' ')
resumed=$(events_of <(sse_capture 2 "$EV?namespace=$TEST_NS" -H "Last-Event-ID: $mid") | awk '{print $1}' | tr '\n' ' ')
is "$resumed" "$newer" "Last-Event-ID $mid resumes with exactly the newer events"
resumed=$(events_of <(sse_capture 2 "$EV?namespace=$TEST_NS&lastEventId=$mid") | awk '{print $1}' | tr '\n' ' ')
is "$resumed" "$newer" "... also as ?lastEventId= (for clients that cannot set headers)"
last=$(tail -n 1 <<<"$ids")
is "$(events_of <(sse_capture 2 "$EV?namespace=$TEST_NS" -H "Last-Event-ID: $last") | wc -l)" "0" \
	"resuming from the newest id delivers nothing old"
gap=$(sse_capture 2 "$EV?namespace=$TEST_NS" -H "Last-Event-ID: 1")
like "$gap" $'event: gap\ndata: \\{"lastEventId":"1","oldestEventId":"[0-9]+"' \
	"an id the ring no longer holds is reported as a gap event"
like "$(events_of <(printf '%s\n' "$gap") | tail -n +2)" '"name":"e1"' "... followed by the events it still holds"
is "$(code "$EV" -H "Last-Event-ID: abc")" 400 "a malformed Last-Event-ID: 400"
is "$(code "$EV?namespace=BAD_ns")" 400 "an invalid namespace filter: 400"

# Deletion is an event too.
k delete task e1 >/dev/null
sleep 1
like "$(events_of "$TMPD/live.out")" '"type":"deleted","namespace":"'"$TEST_NS"'","name":"e1"' "deleting a task is an event"

wait "$KA" 2>/dev/null
like "$(cat "$TMPD/ka.out")" $'\n: keep-alive\n' "an idle stream gets keep-alive comments"
is "$(events_of "$TMPD/ka.out" | wc -l)" "0" "... and no events of other namespaces"

done_testing
