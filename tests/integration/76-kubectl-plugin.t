#!/usr/bin/env bash
# The kubectl plugin against the local cluster: `make install` puts kubectl-tasked on PATH, and
# `kubectl tasked get|logs [-f]|wait|cancel|events` work, finding the API through the
# kubeconfig's directory (the local cluster writes api-url and api-key there), --api-url, or
# TASKED_API_URL/TASKED_API_KEY.
. "$(dirname "$0")/lib.sh"
. "$IT_ROOT/tests/tools/apitest.sh"
test_namespace plugin
TMPD=$(mktemp -d)
trap '_cleanup_namespace; bg_stop; extra_controllers_stop; rm -rf "$TMPD"' EXIT

ok "make install DESTDIR=... installs the plugin" make -s -C "$IT_ROOT" install DESTDIR="$TMPD/dest" PREFIX=/usr/local
ok "kubectl-tasked is installed" test -x "$TMPD/dest/usr/local/bin/kubectl-tasked"
export PATH="$TMPD/dest/usr/local/bin:$PATH"
like "$(kubectl plugin list 2>&1)" 'kubectl-tasked' "kubectl plugin list finds it"
kt() { kubectl tasked -n "$TEST_NS" "$@"; }

k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: p1}
spec:
  shell: {command: ["echo", "hello from p1"]}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: p3}
spec:
  shell: {command: ["false"]}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: p4}
spec:
  shell: {command: ["sleep", "60"]}
EOF2
ok_phase p1 Succeeded

out=$(kt get)
like "$out" '^NAME +PHASE +EXIT +ATTEMPTS +RUNNER +AGE' "get prints a table"
like "$out" $'\np1 +Succeeded +0 +1 ' "... with p1's phase, exit code and attempts"
is "$(kt get p1 -o json | jq -r .metadata.name)" "p1" "get TASK -o json"
like "$(kubectl tasked get -A -o name)" 'task/p1' "get -A -o name"
like "$(kt get --phase Succeeded -o name)" '^task/p1$' "get --phase filters"
is "$(kt logs p1)" "hello from p1" "logs TASK prints the output"
nok "get of a missing task fails" kt get nope
like "$NOK_OUTPUT" 'task .*/nope not found \(HTTP 404\)' "... with the API's message"

# logs -f while the task runs, wait with a progress line.
k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: p2}
spec:
  shell: {command: ["sh", "-c", "echo start; sleep 4; echo done"]}
EOF2
wait_phase p2 Running 30 >/dev/null
kt logs -f p2 >"$TMPD/follow.out" 2>&1 &
F=$!
saw_start() { grep -q '^start$' "$TMPD/follow.out"; }
ok "logs -f streams a line while the task runs" wait_for 10 saw_start
is "$(task_field p2 .status.phase)" "Running" "... (still Running then)"
kt wait p2 >"$TMPD/wait.out" 2>&1
is "$?" 0 "wait exits 0 when the task succeeds"
like "$(cat "$TMPD/wait.out")" "task $TEST_NS/p2: Running.*attempt 1 on " "wait shows a progress line (phase, attempt, runner)"
like "$(cat "$TMPD/wait.out")" "task $TEST_NS/p2: Succeeded" "... up to the final phase"
wait "$F"
is "$?" 0 "logs -f exits 0 once the task finished"
is "$(tr '\n' ' ' <"$TMPD/follow.out")" "start done " "logs -f printed the whole output"

ok_phase p3 Failed
nok "wait exits non-zero when the task failed" kt wait p3
like "$NOK_OUTPUT" "p3: Failed" "... and says so"
kt wait p4 --timeout 2 >/dev/null 2>&1
is "$?" 2 "wait --timeout exits 2 when time runs out"

# cancel patches spec.cancel through the Kubernetes API.
ok "cancel TASK" kt cancel p4
is "$(k get task p4 -o jsonpath='{.spec.cancel}')" "true" "... set spec.cancel=true"
kt wait p4 --timeout 30 >"$TMPD/cancel.out" 2>&1
is "$?" 1 "wait then reports the cancelled task as not succeeded"
like "$(cat "$TMPD/cancel.out")" "p4: Cancelled" "... Cancelled"

# events streams task changes.
kt events >"$TMPD/events.out" 2>&1 &
E=$!
BG_PIDS+=("$E")
sleep 1
k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: p5}
spec:
  shell: {command: ["echo", "five"]}
EOF2
ok_phase p5 Succeeded
saw_p5() { grep -q "status +$TEST_NS/p5 +Succeeded" "$TMPD/events.out"; }
wait_for 5 saw_p5
like "$(cat "$TMPD/events.out")" "created +$TEST_NS/p5" "events shows the creation"
like "$(cat "$TMPD/events.out")" "status +$TEST_NS/p5 +Succeeded" "... and the final status"
kill "$E" 2>/dev/null
timeout 3 kubectl tasked events -n "$TEST_NS" -o json --since 1 >"$TMPD/ev.json" 2>/dev/null
like "$(head -n 1 "$TMPD/ev.json")" '^\{"event":"gap"' "events --since an old id starts with the gap"
like "$(grep '"name":"p5"' "$TMPD/ev.json" | head -n 1)" '^\{"id":"[0-9]+","event":"task","data":\{"type":"created"' \
	"events -o json prints one JSON object per event, with its id"
ok "... which jq reads" jq -e . "$TMPD/ev.json"

# Finding the API without the local cluster's files: --api-url / TASKED_API_URL + TASKED_API_KEY.
mkdir -p "$TMPD/elsewhere"
cp "$KUBECONFIG" "$TMPD/elsewhere/kubeconfig"
nok "without api-url next to the kubeconfig it tries a port-forward to the Service" \
	env KUBECONFIG="$TMPD/elsewhere/kubeconfig" TASKED_STATE_DIR= timeout 60 kubectl tasked -n "$TEST_NS" get
like "$NOK_OUTPUT" 'could not port-forward to service tasked/tasked:8080' "... and says what it tried"
is "$(KUBECONFIG="$TMPD/elsewhere/kubeconfig" TASKED_API_KEY=$(key) kubectl tasked -n "$TEST_NS" --api-url "$API" get p1 -o name)" \
	"task/p1" "--api-url with TASKED_API_KEY"
is "$(KUBECONFIG="$TMPD/elsewhere/kubeconfig" TASKED_API_URL=$API kubectl tasked -n "$TEST_NS" --api-key-file "$KEY_FILE" logs p1)" \
	"hello from p1" "TASKED_API_URL with --api-key-file"
nok "a wrong key is refused" env KUBECONFIG="$TMPD/elsewhere/kubeconfig" TASKED_API_KEY=wrong \
	kubectl tasked -n "$TEST_NS" --api-url "$API" get
like "$NOK_OUTPUT" 'the API refused the key \(401\)' "... with a hint"
# An https API: --cacert verifies it.
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=127.0.0.1" \
	-addext "subjectAltName=IP:127.0.0.1" -keyout "$TMPD/tls.key" -out "$TMPD/tls.crt" >/dev/null 2>&1
extra_controller plugin-tls "$TEST_NS" --api-key plugin-tls-key --tls-cert "$TMPD/tls.crt" --tls-key "$TMPD/tls.key"
wait_for 20 curl -sf --cacert "$TMPD/tls.crt" "https://127.0.0.1:$EXTRA_API_PORT/readyz"
is "$(KUBECONFIG="$TMPD/elsewhere/kubeconfig" TASKED_API_KEY=plugin-tls-key kubectl tasked -n "$TEST_NS" \
	--api-url "https://127.0.0.1:$EXTRA_API_PORT" --cacert "$TMPD/tls.crt" get p1 -o name)" "task/p1" \
	"an https API with --cacert"
nok "an https API with an unknown CA is refused" env KUBECONFIG="$TMPD/elsewhere/kubeconfig" TASKED_API_KEY=plugin-tls-key \
	kubectl tasked -n "$TEST_NS" --api-url "https://127.0.0.1:$EXTRA_API_PORT" get p1
extra_controllers_stop

nok "no command: usage" kubectl tasked
like "$NOK_OUTPUT" 'Usage: kubectl tasked COMMAND' "... printed"

done_testing
