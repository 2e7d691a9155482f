#!/usr/bin/env bash
# SSRF, end to end: http and remote Tasks aimed at the machine itself, in every spelling, fail
# with reason SSRFBlocked, and counting HTTP servers on 127.0.0.1 and ::1 receive zero requests.
# No TaskQueue, so the built-in policy applies: nothing but public addresses.
. "$(dirname "$0")/lib.sh"
test_namespace ssrf

HC=$IT_ROOT/build/tools/httpcount
TMPD=$(mktemp -d /tmp/tasked-it-ssrf-XXXXXX)
HC_PID=
cleanup() {
	[ -n "$HC_PID" ] && kill "$HC_PID" 2>/dev/null
	rm -rf "$TMPD"
	_cleanup_namespace
}
trap cleanup EXIT
[ -x "$HC" ] || { echo "Bail out! $HC missing (make build/tools/httpcount)"; exit 255; }

"$HC" --listen 127.0.0.1 --listen ::1 --log "$TMPD/requests.log" --port-file "$TMPD/port" --max-seconds 600 &
HC_PID=$!
disown "$HC_PID" 2>/dev/null
for _ in $(seq 1 100); do [ -s "$TMPD/port" ] && break; sleep 0.05; done
P=$(cat "$TMPD/port")
ok "counting servers listen on 127.0.0.1:$P and [::1]:$P" curl -sf "http://127.0.0.1:$P/" -o /dev/null
curl -sf "http://[::1]:$P/" -o /dev/null
: >"$TMPD/requests.log" # forget the two checks above

urls=(
	"http://127.0.0.1:$P/"
	"http://localhost:$P/"
	"http://[::1]:$P/"
	"http://127.1:$P/"
	"http://0x7f000001:$P/"
	"http://2130706433:$P/"
	"http://0177.0.0.1:$P/"
	"http://[::ffff:127.0.0.1]:$P/"
	"http://[::ffff:7f00:1]:$P/"
	"http://[64:ff9b::7f00:1]:$P/"
	"http://0.0.0.0:$P/"
	"http://0:$P/"
	"http://169.254.169.254/latest/meta-data/"
	"http://[fd00:ec2::254]/latest/meta-data/"
	"http://10.0.0.1:$P/"
	"http://192.168.0.1:$P/"
	"http://100.64.0.1:$P/"
	"https://127.0.0.1:$P/"
	"file:///etc/passwd"
	"gopher://127.0.0.1:$P/_GET%20/"
	"dict://127.0.0.1:$P/info"
	"ftp://127.0.0.1:$P/"
)
i=0
for u in "${urls[@]}"; do
	i=$((i + 1))
	k apply -f - >/dev/null <<EOF2
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: blocked-$i}
spec:
  http: {url: "$u"}
EOF2
done
k apply -f - >/dev/null <<EOF2
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: blocked-post}
spec:
  http: {url: "http://127.0.0.1:$P/post", method: POST, body: "x", headers: [{name: X-A, value: b}]}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: blocked-oauth}
spec:
  http:
    url: "https://api.example.com/"
    oauth2: {tokenURL: "http://127.0.0.1:$P/token", clientID: c}
EOF2
i=0
for u in "${urls[@]}"; do
	i=$((i + 1))
	got=$(wait_phase blocked-$i Failed 60)
	r=$(task_field blocked-$i .status.reason)
	if ! is "$got/$r" "Failed/SSRFBlocked" "$u -> Failed/SSRFBlocked"; then
		diag "message: $(task_field blocked-$i .status.message)"
	fi
done
wait_phase blocked-post Failed 60 >/dev/null
is "$(task_field blocked-post .status.reason)" SSRFBlocked "a POST with headers to 127.0.0.1: SSRFBlocked"
wait_phase blocked-oauth Failed 60 >/dev/null
is "$(task_field blocked-oauth .status.reason)" SSRFBlocked "an oauth2 token URL on 127.0.0.1: SSRFBlocked"
like "$(task_field blocked-oauth .status.message)" 'oauth2' "... and the message says it was the token URL"
like "$(task_field blocked-1 .status.message)" '127\.0\.0\.1 is loopback' "the message names the address and why"
like "$(task_field blocked-2 .status.message)" 'refused by the SSRF policy' "a name is refused at connect time, after DNS"

sleep 0.5
is "$(grep -c '"addr":"127.0.0.1"' "$TMPD/requests.log")" 0 "127.0.0.1 received zero requests"
is "$(grep -c '"addr":"::1"' "$TMPD/requests.log")" 0 "::1 received zero requests"

# Remote executors pass the same policy (the queue allow-list matters only for allowed ones).
k apply -f - >/dev/null <<EOF2
apiVersion: tasked.dev/v1alpha1
kind: TaskQueue
metadata: {name: remote-ok}
spec:
  policy: {executors: [remote]}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: remote-blocked}
spec:
  queue: remote-ok
  remote: {url: "http://[::1]:$P/remote"}
EOF2
wait_phase remote-blocked Failed 60 >/dev/null
is "$(task_field remote-blocked .status.reason)" SSRFBlocked "a remote executor URL on ::1: SSRFBlocked"
is "$(grep -c . "$TMPD/requests.log")" 0 "still zero requests on either server"

done_testing
