#!/usr/bin/env bash
# /metrics: Prometheus' own promtool accepts the exposition (also on --metrics-listen), and the
# families the product promises are there with values that move when a task runs.
. "$(dirname "$0")/lib.sh"
. "$IT_ROOT/tests/tools/apitest.sh"
test_namespace metrics
TMPD=$(mktemp -d)
trap '_cleanup_namespace; extra_controllers_stop; rm -rf "$TMPD"' EXIT

# Built once into the cache (about 5 minutes the first time on 2 CPUs; see docs/api.md).
if ! PROMTOOL=$("$IT_ROOT/tests/tools/promtool.sh" 2>"$TMPD/promtool-build.log"); then
	fail "promtool builds"
	diag "$(tail -n 20 "$TMPD/promtool-build.log")"
	done_testing
fi
pass "promtool is available ($PROMTOOL)"

lat0=$(metric tasked_task_dispatch_latency_seconds_count)
run0=$(metric tasked_task_run_duration_seconds_count)
k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: batch}
spec: {concurrency: 10}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: m1}
spec:
  shell: {command: ["sleep", "1"]}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: m2}
spec:
  queue: batch
  shell: {command: ["false"]}
EOF2
ok_phase m1 Succeeded
ok_phase m2 Failed

curl -s -D "$TMPD/h" "$API/metrics" >"$TMPD/metrics.txt"
like "$(tr -d '\r' <"$TMPD/h")" 'content-type: text/plain; version=0.0.4; charset=utf-8' "the text exposition content type"
ok "promtool check metrics accepts /metrics" sh -c "'$PROMTOOL' check metrics <'$TMPD/metrics.txt'"

has() { grep -qE "^$1" "$TMPD/metrics.txt"; }
for fam in \
	"tasked_tasks\\{namespace=\"$TEST_NS\",queue=\"default\",phase=\"Succeeded\"\\} 1" \
	"tasked_tasks\\{namespace=\"$TEST_NS\",queue=\"batch\",phase=\"Failed\"\\} 1" \
	'tasked_queue_depth\{' \
	'tasked_task_dispatch_latency_seconds_bucket\{le="0.1"\}' \
	'tasked_task_run_duration_seconds_bucket\{le="\+Inf"\}' \
	'tasked_tasks_finished_total\{phase="Failed"\}' \
	'tasked_runners_connected [1-9]' \
	'tasked_runner_slots_free [0-9]' \
	'tasked_kube_requests_total\{verb="patch"\} [1-9]' \
	'tasked_kube_requests_total\{verb="watch"\} [1-9]' \
	'tasked_informer_watch_restarts_total ' \
	'tasked_informer_relists_total ' \
	'tasked_informer_synced 1' \
	'tasked_workqueue_depth ' \
	'tasked_workqueue_delayed_keys ' \
	'tasked_sse_connections\{kind="events"\} ' \
	'tasked_sse_rejected_total ' \
	'tasked_api_auth_failures_total ' \
	'tasked_api_requests_total\{code="200"\} ' \
	'tasked_logstore_bytes ' \
	'tasked_events_published_total [1-9]' \
	'process_resident_memory_bytes ' \
	'process_open_fds '; do
	if has "$fam"; then pass "has ${fam//\\/}"; else fail "has ${fam//\\/}"; fi
done
ok "the dispatch latency histogram counted the new tasks" \
	test "$(metric tasked_task_dispatch_latency_seconds_count)" -ge $((lat0 + 2))
ok "the run time histogram too" test "$(metric tasked_task_run_duration_seconds_count)" -ge $((run0 + 2))
sum=$(awk '/^tasked_task_run_duration_seconds_bucket\{le="0.5"\}/ {a=$2} /^tasked_task_run_duration_seconds_bucket\{le="5"\}/ {b=$2} END {print b - a}' "$TMPD/metrics.txt")
ok "the 1 s task falls between the 0.5 s and 5 s buckets" test "$sum" -ge 1

# /metrics on a listener of its own (plain http here; TLS is covered in 71-api-rest.t).
MPORT=$(free_port)
extra_controller metrics "$TEST_NS" --api-key k --metrics-listen "127.0.0.1:$MPORT"
ok "--metrics-listen serves /metrics" wait_for 20 curl -sf "http://127.0.0.1:$MPORT/metrics"
curl -s "http://127.0.0.1:$MPORT/metrics" >"$TMPD/m2.txt"
ok "promtool accepts it too" sh -c "'$PROMTOOL' check metrics <'$TMPD/m2.txt'"
is "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$MPORT/api/v1/tasks")" 404 \
	"the metrics listener serves no API"
extra_controllers_stop

done_testing
