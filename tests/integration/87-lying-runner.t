#!/usr/bin/env bash
# A lying runner (the real token, a raw WebSocket client) and a hostile network, against the
# real cluster:
#  - it cannot speak for attempts it was not given: forged started/log/result for another
#    pool's running task and for a never-dispatched task are dropped, counted and acknowledged,
#    and a hello claiming another runner's attempt gets that attempt cancelled, not adopted
#    (also after a controller restart, when only the Task's status can tell);
#  - a result the controller cannot decode (bad field, JSON nested deeper than the parser takes)
#    fails that attempt as InvalidResult and is acknowledged; the connection stays up and the
#    next result on it is applied;
#  - failed authentications from one address never lock out another address's valid token;
#  - the runner sends its token to no proxy named by http_proxy and friends (only to one named
#    by --broker-proxy);
#  - listeners bind exactly the address asked: from a network namespace the test creates, the
#    loopback listeners are unreachable on the host's veth address, and a listener on the veth
#    address is reachable there only.
. "$(dirname "$0")/lib.sh"
. "$IT_ROOT/tests/cluster/lib.sh"
test_namespace lying

STATE=${TASKED_STATE_DIR:-.tasked}
case "$STATE" in /*) ;; *) STATE=$IT_ROOT/$STATE ;; esac
. "$STATE/tasked-ports.env"
RUN=$IT_ROOT/bin/tasked-runner
CTL=$IT_ROOT/bin/tasked-controller
PROBE=$IT_ROOT/build/tools/wsprobe
HTTPCOUNT=$IT_ROOT/build/tools/httpcount
TOKEN=$(cat "$STATE/runner-token")
API=$(cat "$STATE/api-url")
TMPD=$(mktemp -d /tmp/tasked-it-lying-XXXXXX)
SUFFIX=$(openssl rand -hex 3)
NETNS=tasked-it-$SUFFIX
VETH_H=tkl${SUFFIX}h
VETH_N=tkl${SUFFIX}n
NET=10.$((200 + RANDOM % 50)).$((RANDOM % 250)).
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
	ip netns del "$NETNS" 2>/dev/null
	ip link del "$VETH_H" 2>/dev/null
	"$IT_ROOT/tests/cluster/up.sh" >/dev/null 2>&1   # in case the restart below was cut short
	rm -rf "$TMPD"
	_cleanup_namespace
}
trap cleanup EXIT
wait_for() { # SECONDS CMD...
	local end=$(($(date +%s) + $1))
	shift
	until "$@"; do
		[ "$(date +%s)" -lt "$end" ] || return 1
		sleep 0.2
	done
}
metric() { curl -s "$API/metrics" | awk -v m="$1" 'index($0, m " ") == 1 { print $2; exit }'; }
uid_of() { task_field "$1" .metadata.uid; }
auth_from() { # SOURCE TOKEN: the HTTP status of POST /runners/auth from that local address
	"$PROBE" 127.0.0.1 "$BROKER_PORT" --source "$1" --token "$2" --auth-only | sed -n 's/^auth //p'
}

# --- a runner cannot speak for attempts it was not given ----------------------------------------
k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: victim}
spec:
  shell: {command: ["sh", "-c", "sleep 4; echo real"]}
---
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: never}
spec:
  runnerSelector: {pool: nowhere-at-all}
  shell: {command: ["echo", "never dispatched"]}
EOF2
ok_phase victim Running 60
ok_phase never Queued 30
victim=$(uid_of victim)
never=$(uid_of never)
real_runner=$(task_field victim .status.runner)
drop0=$(metric 'tasked_broker_messages_dropped_total{type="result"}')
hello="{\"type\":\"hello\",\"runnerId\":\"forger-$SUFFIX\",\"version\":\"x\",\"capacity\":4,\"labels\":{\"pool\":\"forger-$SUFFIX\"},\"running\":[{\"taskUid\":\"$victim\",\"attempt\":1}]}"
out=$("$PROBE" 127.0.0.1 "$BROKER_PORT" --token "$TOKEN" --send "$hello" --expect welcome 1 \
	--send "{\"type\":\"started\",\"taskUid\":\"$victim\",\"attempt\":1,\"startTime\":1}" \
	--send "{\"type\":\"log\",\"taskUid\":\"$victim\",\"attempt\":1,\"seq\":0,\"stream\":\"stdout\",\"data\":\"forged line\\n\"}" \
	--send "{\"type\":\"result\",\"taskUid\":\"$victim\",\"attempt\":1,\"phase\":\"Failed\",\"exitCode\":99,\"logTail\":\"forged\"}" \
	--send "{\"type\":\"result\",\"taskUid\":\"$never\",\"attempt\":1,\"phase\":\"Succeeded\",\"exitCode\":0,\"logTail\":\"forged\"}" \
	--expect '"type":"ack"' 2 --wait-ms 500)
like "$out" "\"type\":\"cancel\",\"taskUid\":\"$victim\"" "a hello claiming another runner's attempt gets a cancel for it, not the attempt"
like "$out" "\"type\":\"ack\",\"taskUid\":\"$victim\"" "the forged result for another runner's attempt is dropped and acknowledged"
like "$out" "\"type\":\"ack\",\"taskUid\":\"$never\"" "the forged result for a never-dispatched task is dropped and acknowledged"
n=$(printf '%s\n' "$out" | grep -c '^close')
is "$n" 0 "the forger's connection is not closed (it just achieves nothing)"
ok_phase victim Succeeded 60
is "$(task_field victim .status.logTail)" "real" "the victim's result is its real runner's"
is "$(task_field victim .status.runner)" "$real_runner" "... and so is its runner"
is "$(task_field victim .status.attempts)" "1" "... in its first attempt"
logs=$(printf 'X-API-Key: %s\n' "$(cat "$STATE/api-key")" |
	curl -s -H @- "$API/api/v1/namespaces/$TEST_NS/tasks/victim/logs")
like "$logs" real "the victim's logs are there"
n=$(printf '%s' "$logs" | grep -c forged)
is "$n" 0 "the forged log line is not in the victim's logs"
is "$(task_field never .status.phase)" "Queued" "the never-dispatched task is still Queued"
is "$(task_field never .status.attempts)" "0" "... with no attempt recorded"
drop1=$(metric 'tasked_broker_messages_dropped_total{type="result"}')
ok "dropped results are counted (${drop0:-0} -> ${drop1:-none})" test "${drop1:-0}" -ge $((${drop0:-0} + 2))
ok "dropped started and log messages are counted" \
	test "$(metric 'tasked_broker_messages_dropped_total{type="started"}')" -ge 1 -a \
	"$(metric 'tasked_broker_messages_dropped_total{type="log"}')" -ge 1
ok "the controller logged the dropped messages" grep -q '"msg":"runner message dropped"' "$STATE/controller.log"

# --- after a controller restart, a claim in hello is checked against the Task's status -----------
k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: victim2}
spec:
  shell: {command: ["sh", "-c", "sleep 15; echo real2"]}
EOF2
ok_phase victim2 Running 60
victim2=$(uid_of victim2)
stop_pidfile "$STATE/controller.pid" "$CTL" tasked-controller 5 >/dev/null
ok "the controller restarts" "$IT_ROOT/tests/cluster/up.sh"
hello="{\"type\":\"hello\",\"runnerId\":\"forger2-$SUFFIX\",\"version\":\"x\",\"capacity\":4,\"labels\":{\"pool\":\"forger-$SUFFIX\"},\"running\":[{\"taskUid\":\"$victim2\",\"attempt\":1}]}"
out=$("$PROBE" 127.0.0.1 "$BROKER_PORT" --token "$TOKEN" --send "$hello" --expect '"type":"cancel"' 1 \
	--send "{\"type\":\"result\",\"taskUid\":\"$victim2\",\"attempt\":1,\"phase\":\"Failed\",\"exitCode\":98,\"logTail\":\"forged\"}" \
	--expect '"type":"ack"' 1 --wait-ms 500)
like "$out" "\"type\":\"cancel\",\"taskUid\":\"$victim2\"" "after a restart, claiming a running task of another runner gets a cancel"
like "$out" "\"type\":\"ack\",\"taskUid\":\"$victim2\"" "... and the forged result is dropped and acknowledged"
ok_phase victim2 Succeeded 90
is "$(task_field victim2 .status.logTail)" "real2" "the task's result is its real runner's, reported after the restart"

# --- a result the controller cannot decode fails its attempt, not the connection -----------------
pool=liar-$SUFFIX
for t in bad-field bad-depth good; do
	k apply -f - >/dev/null <<EOF2
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: $t}
spec:
  runnerSelector: {pool: $pool}
  shell: {command: ["true"]}
EOF2
done
for t in bad-field bad-depth good; do ok_phase "$t" Queued 30; done
u1=$(uid_of bad-field) u2=$(uid_of bad-depth) u3=$(uid_of good)
deep=$(printf '%*s' 3000 '' | tr ' ' '[')$(printf '%*s' 3000 '' | tr ' ' ']')
hello="{\"type\":\"hello\",\"runnerId\":\"$pool\",\"version\":\"x\",\"capacity\":3,\"labels\":{\"pool\":\"$pool\"}}"
out=$("$PROBE" 127.0.0.1 "$BROKER_PORT" --token "$TOKEN" --send "$hello" --expect '"type":"dispatch"' 3 \
	--send "{\"type\":\"result\",\"taskUid\":\"$u1\",\"attempt\":1,\"phase\":\"Exploded\",\"exitCode\":0}" \
	--send "{\"type\":\"result\",\"taskUid\":\"$u2\",\"attempt\":1,\"phase\":\"Succeeded\",\"exitCode\":0,\"output\":$deep}" \
	--send "{\"type\":\"result\",\"taskUid\":\"$u3\",\"attempt\":1,\"phase\":\"Succeeded\",\"exitCode\":0,\"logTail\":\"fine\"}" \
	--expect '"type":"ack"' 3 --wait-ms 500)
is "$(printf '%s\n' "$out" | grep -c '"type":"dispatch"')" 3 "the lying runner was given its three attempts"
is "$(printf '%s\n' "$out" | grep -c '^close')" 0 "undecodable results do not close the connection (no 4400)"
for u in "$u1" "$u2" "$u3"; do
	like "$out" "\"type\":\"ack\",\"taskUid\":\"$u\"" "the result for $u is acknowledged (the runner forgets it)"
done
ok_phase bad-field Failed 30
is "$(task_field bad-field .status.reason)" "InvalidResult" "a result with an invalid field fails its attempt as InvalidResult"
like "$(task_field bad-field .status.message)" "phase" "... and the message says which field"
ok_phase bad-depth Failed 30
is "$(task_field bad-depth .status.reason)" "InvalidResult" "a result nested deeper than the JSON parser takes fails as InvalidResult"
ok_phase good Succeeded 30
is "$(task_field good .status.logTail)" "fine" "the next result on the same connection is applied"

# --- failed authentications are limited per peer address ---------------------------------------
codes=""
for _ in $(seq 1 15); do codes="$codes $(auth_from 127.0.0.2 wrong-token)"; done
like "$codes" '429' "a flood of bad tokens from 127.0.0.2 is limited ($codes)"
is "$(auth_from 127.0.0.2 "$TOKEN")" 429 "... that address waits even with the right token"
is "$(auth_from 127.0.0.1 "$TOKEN")" 200 "a valid token from 127.0.0.1 is accepted meanwhile"
setsid "$RUN" --id "it-lying-auth-$SUFFIX" --token-file "$STATE/runner-token" --labels "pool=auth-$SUFFIX" \
	--controller "ws://127.0.0.1:$BROKER_PORT" >"$STATE/runner-lying-auth.log" 2>&1 </dev/null &
PIDS+=($!)
disown "${PIDS[-1]}" 2>/dev/null
ok "a real runner connects while another address is limited" \
	wait_for 20 grep -q "\"runner connected\",\"runner\":\"it-lying-auth-$SUFFIX\"" "$STATE/controller.log"
kill -9 "${PIDS[-1]}" 2>/dev/null
ok "refusals by the per-peer limit are counted" test "$(metric tasked_runner_auth_limited_total)" -ge 1

# --- no proxy for the broker connection --------------------------------------------------------
"$HTTPCOUNT" --listen 127.0.0.1 --port-file "$TMPD/proxy.port" --log "$TMPD/proxy.log" --max-seconds 120 \
	>/dev/null 2>&1 &
PIDS+=($!)
disown "${PIDS[-1]}" 2>/dev/null
wait_for 10 test -s "$TMPD/proxy.port"
PX=http://127.0.0.1:$(cat "$TMPD/proxy.port")
ppool=proxied-$SUFFIX
http_proxy=$PX HTTP_PROXY=$PX https_proxy=$PX HTTPS_PROXY=$PX all_proxy=$PX ALL_PROXY=$PX no_proxy= NO_PROXY= \
	setsid "$RUN" --id "it-lying-proxy-$SUFFIX" --token-file "$STATE/runner-token" --labels "pool=$ppool" \
	--controller "ws://127.0.0.1:$BROKER_PORT" >"$STATE/runner-lying-proxy.log" 2>&1 </dev/null &
PIDS+=($!)
disown "${PIDS[-1]}" 2>/dev/null
ok "a runner with every *_proxy variable set connects" \
	wait_for 20 grep -q "\"runner connected\",\"runner\":\"it-lying-proxy-$SUFFIX\"" "$STATE/controller.log"
k apply -f - >/dev/null <<EOF2
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: via-no-proxy}
spec:
  runnerSelector: {pool: $ppool}
  shell: {command: ["echo", "direct"]}
EOF2
ok_phase via-no-proxy Succeeded 60
n=$(cat "$TMPD/proxy.log" 2>/dev/null | grep -c .)
is "$n" 0 "the proxy saw no request: the token and grant went to the controller only"
kill -9 "${PIDS[-1]}" 2>/dev/null
# ... and --broker-proxy is the way to name one (the recording listener is no real proxy, so
# this runner never connects; the request reaching it is the point)
setsid "$RUN" --id "it-lying-proxied-$SUFFIX" --token-file "$STATE/runner-token" --labels "pool=$ppool" \
	--controller "ws://127.0.0.1:$BROKER_PORT" --broker-proxy "$PX" >"$STATE/runner-lying-proxied.log" 2>&1 </dev/null &
PIDS+=($!)
disown "${PIDS[-1]}" 2>/dev/null
ok "with --broker-proxy the auth request goes to that proxy" \
	wait_for 20 grep -q "runners/auth" "$TMPD/proxy.log"
kill -9 "${PIDS[-1]}" 2>/dev/null

# --- listeners bind exactly what was asked -------------------------------------------------------
ip netns add "$NETNS" &&
	ip link add "$VETH_H" type veth peer name "$VETH_N" &&
	ip link set "$VETH_N" netns "$NETNS" &&
	ip addr add "${NET}1/30" dev "$VETH_H" && ip link set "$VETH_H" up &&
	ip netns exec "$NETNS" ip addr add "${NET}2/30" dev "$VETH_N" &&
	ip netns exec "$NETNS" ip link set "$VETH_N" up && ip netns exec "$NETNS" ip link set lo up
ok "a network namespace with a veth pair (${NET}1 here, ${NET}2 there)" \
	sh -c "ip netns exec '$NETNS' ip -4 addr show dev '$VETH_N' | grep -q '${NET}2/30'"
from_ns() { ip netns exec "$NETNS" curl -s -o /dev/null -m 5 -w '%{http_code}' "$@"; }
is "$(from_ns -XPOST "http://${NET}1:$BROKER_PORT/runners/auth" -d '{"token":"x"}')" 000 \
	"the broker on 127.0.0.1 cannot be reached on the host's other address"
is "$(from_ns "http://${NET}1:$API_PORT/healthz")" 000 "nor can the API on 127.0.0.1"
ss -Hltn | awk '{print $4}' >"$TMPD/listen"
ok "the suite's listeners are bound to 127.0.0.1 exactly" \
	grep -qx "127.0.0.1:$BROKER_PORT" "$TMPD/listen"
nok "... not to every address" grep -qE "^(\*|0\.0\.0\.0|\[::\]):($BROKER_PORT|$API_PORT)\$" "$TMPD/listen"

EMPTY_NS=$TEST_NS-extra
kubectl --kubeconfig "$KUBECONFIG" create namespace "$EMPTY_NS" >/dev/null
XB=$(pick_port "$API_PORT" "$BROKER_PORT")
XA=$(pick_port "$API_PORT" "$BROKER_PORT" "$XB")
"$CTL" --kubeconfig "$STATE/kubeconfig" --namespace "$EMPTY_NS" --listen "${NET}1:$XA" \
	--broker-listen "${NET}1:$XB" --runner-token-file "$STATE/runner-token" \
	--api-key-file "$STATE/api-key" >"$STATE/controller-lying-veth.log" 2>&1 &
PIDS+=($!)
disown "${PIDS[-1]}" 2>/dev/null
ok "a controller listening on ${NET}1 starts" wait_for 30 grep -q '"listener":"api"' "$STATE/controller-lying-veth.log"
is "$(from_ns -XPOST "http://${NET}1:$XB/runners/auth" -d '{"token":"x"}')" 403 "its broker answers on ${NET}1"
is "$(curl -s -o /dev/null -m 5 -w '%{http_code}' -XPOST "http://127.0.0.1:$XB/runners/auth" -d '{"token":"x"}')" 000 \
	"... and not on 127.0.0.1"
is "$(curl -s -o /dev/null -m 5 -w '%{http_code}' "http://127.0.0.1:$XA/healthz")" 000 "its API is not on 127.0.0.1 either"
kill "${PIDS[-1]}" 2>/dev/null
kubectl --kubeconfig "$KUBECONFIG" delete namespace "$EMPTY_NS" --wait=false >/dev/null 2>&1
ok "an address is accepted at start (--check-config)" \
	"$CTL" --kubeconfig "$STATE/kubeconfig" --listen "127.0.0.1:$XA" --broker-listen "127.0.0.1:$XB" \
	--runner-token-file "$STATE/runner-token" --api-key-file "$STATE/api-key" --check-config
nok "a host name instead of an address is refused at start" \
	"$CTL" --kubeconfig "$STATE/kubeconfig" --listen "localhost:$XA" --broker-listen "127.0.0.1:$XB" \
	--runner-token-file "$STATE/runner-token" --api-key-file "$STATE/api-key" --check-config

done_testing
