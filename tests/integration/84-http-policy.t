#!/usr/bin/env bash
# http and remote Tasks through a TaskQueue whose policy makes the one exception a test needs:
# allowedCIDRs [127.0.0.2/32]. The "allowed host" serves on 127.0.0.2; 127.0.0.1 plays the
# internal service and must receive zero requests, also when the allowed host redirects to it.
# Bodies are capped; queue secrets are masked in logs, kept out of status and stripped from what
# a remote executor receives.
. "$(dirname "$0")/lib.sh"
test_namespace httppolicy

STATE=${TASKED_STATE_DIR:-.tasked}
case "$STATE" in /*) ;; *) STATE=$IT_ROOT/$STATE ;; esac
HC=$IT_ROOT/build/tools/httpcount
TMPD=$(mktemp -d /tmp/tasked-it-http-XXXXXX)
HC_PID=
SECRET=tok-5e3c1a9f0b7d
cleanup() {
	[ -n "$HC_PID" ] && kill "$HC_PID" 2>/dev/null
	rm -rf "$TMPD"
	_cleanup_namespace
}
trap cleanup EXIT
[ -x "$HC" ] || { echo "Bail out! $HC missing (make build/tools/httpcount)"; exit 255; }

"$HC" --listen 127.0.0.1 --listen 127.0.0.2 --listen ::1 --log "$TMPD/requests.log" --port-file "$TMPD/port" \
	--max-seconds 600 &
HC_PID=$!
disown "$HC_PID" 2>/dev/null
for _ in $(seq 1 100); do [ -s "$TMPD/port" ] && break; sleep 0.05; done
P=$(cat "$TMPD/port")
lacks() { ! grep -qF -- "$2" <<<"$1"; }
reqs() { grep -c "\"addr\":\"$1\"${2:+.*\"path\":\"$2}" "$TMPD/requests.log"; }

k create secret generic api >/dev/null --from-literal=token="$SECRET"
k label secret api tasked.dev/queue-secret=true >/dev/null
k apply -f - >/dev/null <<EOF2
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: web}
spec:
  secrets: [{name: api-token, secretKeyRef: {name: api, key: token}}]
  policy:
    executors: [http, remote]
    http: {allowedCIDRs: ["127.0.0.2/32"], maxResponseBytes: 2000000, maxRedirects: 3}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: get-json}
spec:
  queue: web
  http: {url: "http://127.0.0.2:$P/json"}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: not-found}
spec:
  queue: web
  http: {url: "http://127.0.0.2:$P/status/404"}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: redirect-inside}
spec:
  queue: web
  http: {url: "http://127.0.0.2:$P/redirect?to=http%3A%2F%2F127.0.0.1%3A$P%2Fjson"}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: redirect-v6}
spec:
  queue: web
  http: {url: "http://127.0.0.2:$P/redirect?to=http%3A%2F%2F%5B%3A%3A1%5D%3A$P%2Fjson"}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: big-declared}
spec:
  queue: web
  http: {url: "http://127.0.0.2:$P/big?n=50000000", maxResponseBytes: 1000000}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: big-chunked}
spec:
  queue: web
  http: {url: "http://127.0.0.2:$P/chunked?n=50000000"}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: echo-secret}
spec:
  queue: web
  env: [{name: API_TOKEN, valueFrom: {queueSecret: api-token}}]
  http:
    url: "http://127.0.0.2:$P/echo"
    method: GET
    headers: [{name: X-Token, value: "\$(API_TOKEN)"}]
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: remote}
spec:
  queue: web
  env:
    - {name: API_TOKEN, valueFrom: {queueSecret: api-token}}
    - {name: PLAIN, value: visible}
  input: {note: "plain input"}
  remote:
    url: "http://127.0.0.2:$P/remote"
    headers: [{name: Authorization, value: "Bearer \$(API_TOKEN)"}]
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: remote-fails}
spec:
  queue: web
  retries: {limit: 1, backoff: {initialDelaySeconds: 1, jitter: false}}
  remote: {url: "http://127.0.0.2:$P/remote-fail"}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: remote-final}
spec:
  queue: web
  retries: {limit: 2, backoff: {initialDelaySeconds: 1, jitter: false}}
  remote: {url: "http://127.0.0.2:$P/remote-final"}
EOF2

ok "kubectl wait --for=condition=Succeeded works for http tasks" k wait --for=condition=Succeeded task/get-json --timeout=60s
is "$(task_field get-json .status.httpStatus)" 200 "httpStatus 200"
is "$(k get task get-json -o json | jq -c .status.output)" '{"n":1,"ok":true}' "the JSON body is status.output"

wait_phase not-found Failed 60 >/dev/null
is "$(task_field not-found .status.reason)/$(task_field not-found .status.httpStatus)" "HTTPStatus/404" \
	"404: Failed, reason HTTPStatus, httpStatus 404"

for t in redirect-inside redirect-v6; do
	wait_phase $t Failed 60 >/dev/null
	is "$(task_field $t .status.reason)" SSRFBlocked "$t: the allowed host's redirect into loopback is refused"
done
like "$(task_field redirect-inside .status.message)" '^redirect: .*127\.0\.0\.1 is loopback' "... before the second hop"
is "$(reqs 127.0.0.2 /redirect)" 2 "the allowed host got both first hops"
is "$(reqs 127.0.0.1)" 0 "127.0.0.1 received zero requests"
is "$(reqs ::1)" 0 "::1 received zero requests"

wait_phase big-declared Failed 60 >/dev/null
is "$(task_field big-declared .status.reason)" ResponseTooLarge "a declared 50 MB body over maxResponseBytes: ResponseTooLarge"
like "$(task_field big-declared .status.message)" 'Content-Length' "... refused on Content-Length, before the body"
wait_phase big-chunked Failed 60 >/dev/null
is "$(task_field big-chunked .status.reason)" ResponseTooLarge "a chunked 50 MB body over the queue's 2 MB cap: ResponseTooLarge"
like "$(task_field big-chunked .status.message)" 'streaming' "... stopped while streaming"

ok_phase echo-secret Succeeded 60
echo_json=$(k get task echo-secret -o json)
ok "the secret is nowhere in the task's status" lacks "$echo_json" "$SECRET"
like "$(task_field echo-secret .status.message)" 'withheld' "an output that would contain it is withheld"
like "$(task_field echo-secret .status.logTail)" '"x-token":"\*\*\*"' "logTail shows *** in its place"
ok "the server did receive the header (expanded from the queue secret)" \
	grep -q "\"x-token\":\"$SECRET\"" "$TMPD/requests.log"
ok "no process log has the secret" sh -c "! grep -qF -- '$SECRET' '$STATE'/*.log"

ok_phase remote Succeeded 60
body=$(grep '"path":"/remote"' "$TMPD/requests.log" | tail -n 1 | jq -r .body)
ok "the remote executor received {task, input}" test "$(printf '%s' "$body" | jq -r '.input.note')" = "plain input"
is "$(printf '%s' "$body" | jq -c '[.task.env[].name]')" '["PLAIN"]' "only the non-secret env entry was sent"
ok "no secret value in what the remote executor received" lacks "$body" "$SECRET"
ok "neither the remote URL nor its headers are in the body" test -n "$body" -a "$(printf '%s' "$body" | grep -c -e /remote -e Authorization)" = 0
is "$(grep '"path":"/remote"' "$TMPD/requests.log" | tail -n 1 | jq -r '.headers.authorization')" "Bearer $SECRET" \
	"the remote's own header did authenticate the call"
is "$(k get task remote -o json | jq -r '.status.output.got.task.name')" remote "the service's output is status.output"

wait_phase remote-fails Failed 60 >/dev/null
like "$(task_field remote-fails .status.message)" 'boom' "remote {status: Failed}: the service's error is in the message"
is "$(task_field remote-fails .status.attempts)/$(task_field remote-fails .status.reason)" 2/RetriesExhausted \
	"retryable: true - retried up to retries.limit (2 attempts, RetriesExhausted)"
wait_phase remote-final Failed 60 >/dev/null
is "$(task_field remote-final .status.reason)" RemoteFailed "remote retryable: false: reason RemoteFailed"
like "$(task_field remote-final .status.message)" 'bad input' "... with the service's error in the message"
is "$(task_field remote-final .status.attempts)" 1 "... and not retried although retries.limit is 2"

# OAuth2 client credentials: the token URL passes the same policy; the token is cached.
oauth_task() {
	k apply -f - >/dev/null <<EOF2
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: $1}
spec:
  queue: web
  http:
    url: "http://127.0.0.2:$P/api"
    oauth2: {tokenURL: "http://127.0.0.2:$P/token?expires=3600", clientID: it-client, scopes: [read]}
EOF2
}
oauth_task oauth-1
ok_phase oauth-1 Succeeded 60
like "$(k get task oauth-1 -o json | jq -r .status.output.auth)" '^Bearer tok-' "oauth2: the API call carried the Bearer token"
oauth_task oauth-2
ok_phase oauth-2 Succeeded 60
is "$(reqs 127.0.0.2 '/token')" 1 "the second task reused the cached token (one token request)"
k apply -f - >/dev/null <<EOF2
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: oauth-blocked}
spec:
  queue: web
  http:
    url: "http://127.0.0.2:$P/api"
    oauth2: {tokenURL: "http://127.0.0.1:$P/token", clientID: it-client}
EOF2
wait_phase oauth-blocked Failed 60 >/dev/null
is "$(task_field oauth-blocked .status.reason)" SSRFBlocked "a token URL outside the policy: SSRFBlocked"
is "$(reqs 127.0.0.1)" 0 "127.0.0.1 still received zero requests"

# TLS verification is on: an https endpoint with a certificate no CA vouches for is refused.
if command -v openssl >/dev/null; then
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$TMPD/key.pem" -out "$TMPD/cert.pem" -days 1 \
		-subj /CN=127.0.0.2 -addext subjectAltName=IP:127.0.0.2 >/dev/null 2>&1
	TLSP=$((P + 1))
	sleep 60 | openssl s_server -quiet -www -accept "127.0.0.2:$TLSP" -cert "$TMPD/cert.pem" -key "$TMPD/key.pem" \
		>/dev/null 2>&1 &
	SSERVER=$!
	disown "$SSERVER" 2>/dev/null
	sleep 0.5
	k apply -f - >/dev/null <<EOF2
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: tls-self-signed}
spec:
  queue: web
  http: {url: "https://127.0.0.2:$TLSP/"}
EOF2
	wait_phase tls-self-signed Failed 60 >/dev/null
	is "$(task_field tls-self-signed .status.reason)" RequestFailed "https with a self-signed certificate: RequestFailed"
	like "$(task_field tls-self-signed .status.message)" '[Cc]ertificate|SSL' "... because the certificate was not verified"
	kill "$SSERVER" 2>/dev/null
else
	skip "openssl not installed"
fi

# A plain http:// remote endpoint that is not loopback: the runner warns.
k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: lan}
spec:
  policy: {executors: [remote], http: {allowPrivateNetworks: true}}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: remote-plain}
spec:
  queue: lan
  timeoutSeconds: 2
  remote: {url: "http://192.0.2.1:9/run"}
EOF2
wait_phase remote-plain Failed 60 >/dev/null
ok "plain http:// to a non-loopback remote endpoint logs a warning" \
	grep -q 'remote executor endpoint uses plain http:// to a non-loopback host' "$STATE/runner.log"

done_testing
