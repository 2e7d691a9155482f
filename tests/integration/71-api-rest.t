#!/usr/bin/env bash
# Controller API REST: list tasks with filters (namespace, phase, queue) and paging, get one
# task, JSON errors; TLS with --tls-cert/--tls-key; /metrics on a listener of its own.
. "$(dirname "$0")/lib.sh"
. "$IT_ROOT/tests/tools/apitest.sh"
test_namespace api-rest
trap '_cleanup_namespace; extra_controllers_stop; rm -rf "$TMPD"' EXIT
TMPD=$(mktemp -d)

for n in a1 a2 a3; do
	printf 'apiVersion: tasked.dev/v1alpha1\nkind: Task\nmetadata: {name: %s}\nspec:\n  shell: {command: ["echo", "%s"]}\n---\n' "$n" "$n"
done >"$TMPD/tasks.yaml"
cat >>"$TMPD/tasks.yaml" <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: other}
spec: {concurrency: 10}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: b1}
spec:
  queue: other
  shell: {command: ["echo", "b1"]}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: f1}
spec:
  shell: {command: ["false"]}
EOF2
k apply -f "$TMPD/tasks.yaml" >/dev/null
ok_phase a1 Succeeded
ok_phase a2 Succeeded
ok_phase a3 Succeeded
ok_phase b1 Succeeded
ok_phase f1 Failed

names() { jq -r '[.items[].metadata.name] | join(",")'; }
list=$(acurl "$API/api/v1/tasks?namespace=$TEST_NS")
is "$(jq -r '.kind + " " + .apiVersion' <<<"$list")" "TaskList tasked.dev/v1alpha1" "GET /api/v1/tasks is a TaskList"
is "$(names <<<"$list")" "a1,a2,a3,b1,f1" "filtered by namespace, sorted by name"
is "$(jq -r '.items[0].status.phase' <<<"$list")" "Succeeded" "items carry their status"
is "$(acurl "$API/api/v1/namespaces/$TEST_NS/tasks" | names)" "a1,a2,a3,b1,f1" \
	"GET /api/v1/namespaces/NS/tasks lists the same"
is "$(acurl "$API/api/v1/tasks?namespace=$TEST_NS&phase=Failed" | names)" "f1" "filter by phase"
is "$(acurl "$API/api/v1/tasks?namespace=$TEST_NS&queue=other" | names)" "b1" "filter by queue"
is "$(acurl "$API/api/v1/tasks?namespace=$TEST_NS&queue=default&phase=Succeeded" | names)" "a1,a2,a3" \
	"filters combine"
is "$(acurl "$API/api/v1/tasks?namespace=$TEST_NS&phase=Running" | jq '.items | length')" "0" \
	"no match: an empty list"
all=$(acurl "$API/api/v1/tasks" | jq -r --arg ns "$TEST_NS" '[.items[] | select(.metadata.namespace == $ns)] | length')
is "$all" "5" "without a namespace every namespace is listed"

# Paging: limit + continue.
p1=$(acurl "$API/api/v1/tasks?namespace=$TEST_NS&limit=2")
is "$(names <<<"$p1")" "a1,a2" "limit=2: the first page"
is "$(jq -r '.metadata.remainingItemCount' <<<"$p1")" "3" "remainingItemCount"
c1=$(jq -r '.metadata.continue' <<<"$p1")
like "$c1" '.+' "a continue token"
p2=$(acurl -G "$API/api/v1/tasks" --data-urlencode "namespace=$TEST_NS" --data-urlencode "limit=2" \
	--data-urlencode "continue=$c1")
is "$(names <<<"$p2")" "a3,b1" "the second page"
c2=$(jq -r '.metadata.continue' <<<"$p2")
p3=$(acurl -G "$API/api/v1/tasks" --data-urlencode "namespace=$TEST_NS" --data-urlencode "limit=2" \
	--data-urlencode "continue=$c2")
is "$(names <<<"$p3")" "f1" "the last page"
is "$(jq -r '.metadata.continue // "none"' <<<"$p3")" "none" "... without a continue token"

# One task.
t=$(acurl "$API/api/v1/namespaces/$TEST_NS/tasks/a2")
is "$(jq -r '.metadata.name + " " + .status.phase + " " + (.status.exitCode|tostring)' <<<"$t")" "a2 Succeeded 0" \
	"GET /api/v1/namespaces/NS/tasks/NAME"
is "$(jq -r '.metadata.uid' <<<"$t")" "$(k get task a2 -o jsonpath='{.metadata.uid}')" "it is the cluster's object"
is "$(code "$API/api/v1/namespaces/$TEST_NS/tasks/nope")" 404 "a missing task: 404"
is "$(acurl "$API/api/v1/namespaces/$TEST_NS/tasks/nope")" \
	"{\"error\":\"NotFound\",\"message\":\"task $TEST_NS/nope not found\"}" "... with a JSON error"
is "$(code "$API/api/v1/namespaces/$TEST_NS/tasks/a2/nope")" 404 "an unknown sub-resource: 404"

# TLS, and /metrics on its own listener: a second controller (watching this namespace only).
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=127.0.0.1" \
	-addext "subjectAltName=IP:127.0.0.1" -keyout "$TMPD/tls.key" -out "$TMPD/tls.crt" >/dev/null 2>&1
MPORT=$(free_port)
extra_controller tls "$TEST_NS" --api-key tls-key --tls-cert "$TMPD/tls.crt" --tls-key "$TMPD/tls.key" \
	--metrics-listen "127.0.0.1:$MPORT"
ok "the TLS controller answers /healthz over https" \
	wait_for 20 curl -sf --cacert "$TMPD/tls.crt" "https://127.0.0.1:$EXTRA_API_PORT/healthz"
TURL=https://127.0.0.1:$EXTRA_API_PORT
ok "it serves the API over TLS (the certificate verifies)" \
	wait_for 20 curl -sf --cacert "$TMPD/tls.crt" -H "X-API-Key: tls-key" "$TURL/api/v1/tasks?namespace=$TEST_NS"
is "$(curl -s --cacert "$TMPD/tls.crt" -H "X-API-Key: tls-key" "$TURL/api/v1/namespaces/$TEST_NS/tasks/a1" |
	jq -r .metadata.name)" "a1" "a task over TLS"
is "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$EXTRA_API_PORT/healthz")" "000" \
	"plain http to the TLS listener gets no HTTP answer"
ok "/metrics on --metrics-listen (TLS too)" \
	wait_for 20 curl -sf --cacert "$TMPD/tls.crt" "https://127.0.0.1:$MPORT/metrics"
like "$(curl -s --cacert "$TMPD/tls.crt" "https://127.0.0.1:$MPORT/metrics")" 'tasked_build_info\{version=' \
	"... serves the metrics without a key"
is "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$TMPD/tls.crt" -H "X-API-Key: tls-key" \
	"https://127.0.0.1:$MPORT/api/v1/tasks")" 404 "the metrics listener serves no API"
is "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$TMPD/tls.crt" "https://127.0.0.1:$MPORT/healthz")" 200 \
	"... but answers /healthz"
extra_controllers_stop

done_testing
