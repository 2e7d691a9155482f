#!/usr/bin/env bash
# Broker security beyond 30-broker.t: failed authentications are rate limited (429), a grant
# expires after 30 s, the controller holds each runner to its declared concurrency, the runner
# verifies the CA of a wss:// controller before its token leaves, warns about ws:// to a
# non-loopback address, drains on SIGTERM, and unmasked client frames (RFC 6455 5.1) or frames
# sent before the 101 fail the connection with nothing of them acted upon.
. "$(dirname "$0")/lib.sh"
. "$IT_ROOT/tests/cluster/lib.sh"
test_namespace brokersec

STATE=${TASKED_STATE_DIR:-.tasked}
case "$STATE" in /*) ;; *) STATE=$IT_ROOT/$STATE ;; esac
. "$STATE/tasked-ports.env"
RUN=$IT_ROOT/bin/tasked-runner
PROBE=$IT_ROOT/build/tools/wsprobe
TOKEN=$(cat "$STATE/runner-token")
TMPD=$(mktemp -d /tmp/tasked-it-brokersec-XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
	[ -n "${SSERVER:-}" ] && kill "$SSERVER" 2>/dev/null
	[ -n "${LONG:-}" ] && kill -9 "$LONG" 2>/dev/null
	rm -rf "$TMPD"
	_cleanup_namespace
}
trap cleanup EXIT
auth() { curl -s -o /dev/null -w '%{http_code}' -XPOST "http://127.0.0.1:$BROKER_PORT/runners/auth" -d "{\"token\":\"$1\"}"; }
# runner ID POOL [ARGS...]: a runner in the background, pid appended to PIDS and echoed in RUNNER_PID.
runner() {
	local id=$1 pool=$2
	shift 2
	setsid "$RUN" --id "$id" --token-file "$STATE/runner-token" --labels "pool=$pool" "$@" \
		>"$STATE/runner-$id.log" 2>&1 </dev/null &
	RUNNER_PID=$!
	disown "$RUNNER_PID" 2>/dev/null
	PIDS+=("$RUNNER_PID")
}
connected() { grep -q "\"runner connected\",\"runner\":\"$1\"" "$STATE/controller.log"; }
wait_for() { # SECONDS CMD...
	local end=$(($(date +%s) + $1))
	shift
	until "$@"; do
		[ "$(date +%s)" -lt "$end" ] || return 1
		sleep 0.1
	done
}

# --- grant TTL ------------------------------------------------------------------------------------
grant=$(curl -s -XPOST "http://127.0.0.1:$BROKER_PORT/runners/auth" -d "{\"token\":\"$TOKEN\"}" | jq -r .grant)
grant_at=$SECONDS
ok "a grant was issued (and is left unused for now)" test -n "$grant" -a "$grant" != null

# --- rate limit on failed authentications ---------------------------------------------------------
codes=""
for _ in $(seq 1 15); do codes="$codes $(auth wrong-token)"; done
like "$codes" '403' "wrong tokens get 403"
like "$codes" '429' "after a burst of failures: 429 Too Many Requests ($codes)"
is "$(auth "$TOKEN")" 429 "while limited, even the right token waits"
wait_for 20 sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' -XPOST http://127.0.0.1:$BROKER_PORT/runners/auth -d '{\"token\":\"$TOKEN\"}')\" = 200 ]"
is "$?" 0 "the limit refills: the right token works again"

sleep_left=$((31 - (SECONDS - grant_at)))
[ "$sleep_left" -gt 0 ] && sleep "$sleep_left"
out=$("$PROBE" 127.0.0.1 "$BROKER_PORT" --grant "$grant" --wait-ms 300)
is "$(printf '%s' "$out" | grep -c 'upgrade 101')" 0 "a grant older than 30 s is refused"

# --- RFC 6455 5.1: a client frame without the mask fails the connection (1002) ----------------
API=$(cat "$STATE/api-url")
metric() { curl -s "$API/metrics" | awk -v m="$1" 'index($0, m " ") == 1 { print $2; exit }'; }
unmasked_before=$(metric tasked_broker_unmasked_frames_total)
hello() { printf '{"type":"hello","runnerId":"%s","version":"test","capacity":1,"labels":{"pool":"unmasked"}}' "$1"; }
out=$("$PROBE" 127.0.0.1 "$BROKER_PORT" --token "$TOKEN" --send-unmasked "$(hello it-unmasked-a)" --wait-ms 2000)
like "$out" 'upgrade 101' "the probe's WebSocket opened"
like "$out" 'close 1002' "an unmasked hello closes the connection with 1002 ($(printf '%s' "$out" | tail -1))"
is "$(printf '%s' "$out" | grep -c 'welcome')" 0 "... and is not answered"
out=$("$PROBE" 127.0.0.1 "$BROKER_PORT" --token "$TOKEN" --send "$(hello it-unmasked-b)" --expect welcome 1 \
	--send-unmasked '{"type":"ready"}' --send '{"type":"ready"}' --wait-ms 2000)
like "$out" 'welcome' "a masked hello on another connection is answered"
like "$out" 'close 1002' "an unmasked frame after it closes that connection with 1002"
sleep 0.5
is "$(grep -c '"runner connected","runner":"it-unmasked-a"' "$STATE/controller.log")" 0 \
	"the unmasked hello was never acted upon (no runner it-unmasked-a)"
like "$(cat "$STATE/controller.log")" 'runner connection failed \(1002\)' "the failure is logged"
is "$(( $(metric tasked_broker_unmasked_frames_total) - ${unmasked_before:-0} ))" 2 \
	"... and counted (tasked_broker_unmasked_frames_total)"
out=$("$PROBE" 127.0.0.1 "$BROKER_PORT" --token "$TOKEN" --early "$(hello it-unmasked-c)" --wait-ms 1000)
is "$(printf '%s' "$out" | grep -c 'upgrade 101')" 0 "a frame sent with the upgrade request, before the 101, gets no WebSocket"
is "$(printf '%s' "$out" | grep -c 'welcome')" 0 "... and is not acted upon"
is "$(curl -s -o /dev/null -w '%{http_code}' "$API/healthz")" 200 "the controller is still healthy"

# --- the controller enforces each runner's declared concurrency -----------------------------------
runner it-sec-one sec-one --controller "ws://127.0.0.1:$BROKER_PORT" --concurrency 1
ok "a runner with --concurrency 1 connected" wait_for 10 connected it-sec-one
k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: one-a}
spec:
  runnerSelector: {pool: sec-one}
  shell: {command: ["sleep", "2"]}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: one-b}
spec:
  runnerSelector: {pool: sec-one}
  shell: {command: ["sleep", "2"]}
EOF2
most=0 seen=0
end=$((SECONDS + 60))
while [ $SECONDS -lt $end ]; do
	phases=$(k get task one-a one-b -o jsonpath='{.items[*].status.phase}')
	n=$(printf '%s' "$phases" | tr ' ' '\n' | grep -c Running)
	[ "$n" -gt "$most" ] && most=$n
	seen=$((seen + 1))
	[ "$phases" = "Succeeded Succeeded" ] && break
	sleep 0.2
done
is "$phases" "Succeeded Succeeded" "both tasks finish"
is "$most" 1 "never more than one Running at a time on a --concurrency 1 runner ($seen samples)"

# --- wss://: the controller's certificate is verified before the token is sent --------------------
if command -v openssl >/dev/null; then
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$TMPD/key.pem" -out "$TMPD/cert.pem" -days 1 \
		-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1
	TLSP=$(pick_port "$BROKER_PORT")
	# stdin stays open (s_server hangs up at EOF on stdin); it prints what it receives
	sleep 120 | openssl s_server -quiet -accept "127.0.0.1:$TLSP" -cert "$TMPD/cert.pem" -key "$TMPD/key.pem" \
		>"$TMPD/s_server.out" 2>&1 &
	SSERVER=$!
	disown "$SSERVER" 2>/dev/null
	sleep 0.5
	runner it-sec-tls-bad sec-tls --controller "wss://127.0.0.1:$TLSP"
	sleep 2
	kill -9 "$RUNNER_PID"
	is "$(grep -c 'POST /runners/auth' "$TMPD/s_server.out")" 0 "unknown CA: the runner sends nothing (no token) to a wss:// controller"
	like "$(cat "$STATE/runner-it-sec-tls-bad.log")" 'certificate|SSL|verify' "... and logs why"
	# the same server, its CA given: the handshake passes and the auth request arrives
	runner it-sec-tls-ok sec-tls --controller "wss://127.0.0.1:$TLSP" --ca-file "$TMPD/cert.pem"
	wait_for 10 grep -q 'POST /runners/auth' "$TMPD/s_server.out"
	is "$?" 0 "with --ca-file naming its CA, the TLS handshake succeeds and the runner authenticates"
	kill -9 "$RUNNER_PID"
else
	skip "openssl not installed"
fi

# --- ws:// to a non-loopback address: a warning ----------------------------------------------------
runner it-sec-ws sec-ws --controller "ws://192.0.2.1:9"
wait_for 10 grep -q 'ws:// to a non-loopback address' "$STATE/runner-it-sec-ws.log"
is "$?" 0 "ws:// to a non-loopback address logs a warning"
kill -9 "$RUNNER_PID"

# --- SIGTERM drains: running work finishes within the grace period, the rest is killed -----------
runner it-sec-drain sec-drain --controller "ws://127.0.0.1:$BROKER_PORT" --grace-seconds 3 --concurrency 2
DRAIN_PID=$RUNNER_PID
ok "a runner with --grace-seconds 3 connected" wait_for 10 connected it-sec-drain
k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: drain-short}
spec:
  runnerSelector: {pool: sec-drain}
  shell: {command: ["sh", "-c", "sleep 1; echo finished"]}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: drain-long}
spec:
  runnerSelector: {pool: sec-drain}
  shell: {command: ["sleep", "4491"]}
EOF2
ok_phase drain-short Running 30
ok_phase drain-long Running 30
for _ in $(seq 1 50); do LONG=$(tree_pids "$DRAIN_PID" '^sleep 4491$'); [ -n "$LONG" ] && break; sleep 0.1; done
kill -TERM "$DRAIN_PID"
ok_phase drain-short Succeeded 30
ok "the runner exits after its grace period" wait_for 15 sh -c "! kill -0 $DRAIN_PID 2>/dev/null"
ok "the long task's process was killed" wait_for 5 test "$(alive_count $LONG)" -eq 0
like "$(k get task drain-long -o json | jq -r '[.status.reason, (.status.attemptHistory // [] | map(.reason) | join(","))] | join(" ")')" \
	'RunnerShutdown' "the long task's attempt ended with reason RunnerShutdown"
like "$(cat "$STATE/runner-it-sec-drain.log")" 'draining' "the runner logged the drain"

done_testing
