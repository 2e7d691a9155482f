#!/usr/bin/env bash
# Instance ids (--instance-id, label tasked.dev/instance): two more installs, "blue" and "green",
# each a controller with leader election and a runner of its own, share the API server with the
# suite's unlabelled one. Each runs only its own Tasks and Flows, none takes over another's
# running task when it (re)starts, and each elects its leader on its own Lease.
. "$(dirname "$0")/lib.sh"
. "$IT_ROOT/tests/cluster/lib.sh"
test_namespace instance

STATE=${TASKED_STATE_DIR:-.tasked}
case "$STATE" in /*) ;; *) STATE=$IT_ROOT/$STATE ;; esac
. "$STATE/tasked-ports.env"
CTL=${TASKED_BIN_DIR:-$IT_ROOT/bin}/tasked-controller
RUN=${TASKED_BIN_DIR:-$IT_ROOT/bin}/tasked-runner
KEYH="X-API-Key: $(cat "$STATE/api-key")"
MARK=$(mktemp -d /var/tmp/tasked-it-instance.XXXXXX) # not /tmp: each task has a private one
chmod 0777 "$MARK"
cleanup() {
	for f in in-blue in-green in-runner-blue in-runner-green; do
		[ -s "$STATE/$f.pid" ] && kill -9 "$(cat "$STATE/$f.pid")" 2>/dev/null
		rm -f "$STATE/$f.pid"
	done
	# The suite's controller gets its usual flags back.
	stop_pidfile "$STATE/controller.pid" "$CTL" tasked-controller 5 >/dev/null 2>&1
	TASKED_CONTROLLER_ARGS= "$IT_ROOT/tests/cluster/up.sh" >/dev/null 2>&1
	rm -rf "$MARK"
	_cleanup_namespace
}
trap cleanup EXIT

declare -A APIP BRK
used=("$API_PORT" "$BROKER_PORT")
start_install() { # ID
	local id=$1 api broker
	api=$(pick_port "${used[@]}")
	used+=("$api")
	broker=$(pick_port "${used[@]}")
	used+=("$broker")
	APIP[$id]=$api
	BRK[$id]=$broker
	start_bg "$STATE/in-$id.pid" "$STATE/in-$id.log" "$CTL" --instance-id "$id" \
		--leader-elect --leader-elect-namespace "$TEST_NS" --lost-grace-seconds 1 \
		--kubeconfig "$STATE/kubeconfig" --runner-token-file "$STATE/runner-token" \
		--api-key-file "$STATE/api-key" --listen "127.0.0.1:$api" --broker-listen "127.0.0.1:$broker"
	start_bg "$STATE/in-runner-$id.pid" "$STATE/in-runner-$id.log" "$RUN" --id "runner-$id" \
		--controller "ws://127.0.0.1:$broker" --token-file "$STATE/runner-token" --labels pool=default
}
leads() { grep -q '"acquired leadership"' "$STATE/in-$1.log"; }
task() { # NAME INSTANCE(or -) COMMAND
	local labels=""
	[ "$2" = - ] || labels="labels: {tasked.dev/instance: $2}"
	k apply -f - >/dev/null <<EOF2
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata:
  name: $1
  $labels
spec:
  env: [{name: MARK, value: "$MARK"}]
  shell: {command: ["sh", "-c", "echo ran >> \"\$MARK/\$TASKED_TASK_NAME\"; $3"]}
EOF2
}
runs() { [ -f "$MARK/$1" ] && wc -l <"$MARK/$1" || echo 0; }

ok "an invalid id is refused at start" sh -c "! '$CTL' --instance-id Blue_1 --runner-token-file '$STATE/runner-token' 2>/dev/null"

start_install blue
start_install green
ok "blue's controller leads" wait_for 30 leads blue
ok "green's controller leads too: each has its own Lease" wait_for 30 leads green
is "$(k get lease tasked-controller-blue -o jsonpath='{.spec.holderIdentity}' | grep -c _)" 1 \
	"Lease tasked-controller-blue has a holder"
is "$(k get lease tasked-controller-green -o jsonpath='{.spec.holderIdentity}' | grep -c _)" 1 \
	"Lease tasked-controller-green has a holder"
ok "the two Leases have different holders" test "$(k get lease tasked-controller-blue -o jsonpath='{.spec.holderIdentity}')" != \
	"$(k get lease tasked-controller-green -o jsonpath='{.spec.holderIdentity}')"
like "$(grep '"msg":"starting"' "$STATE/in-blue.log" | tail -1)" '"instance":"blue"' "the controller logs its instance id"
like "$(curl -s -H "$KEYH" "http://127.0.0.1:${APIP[blue]}/metrics")" 'tasked_build_info\{version="[^"]*",instance="blue"\} 1' \
	"tasked_build_info carries the instance id"

# --- each install runs only its own tasks ----------------------------------------------------------
task t-none - true
task t-blue blue true
task t-green green true
ok_phase t-none Succeeded 60
ok_phase t-blue Succeeded 60
ok_phase t-green Succeeded 60
is "$(task_field t-blue .status.runner)" runner-blue "the blue task ran on blue's runner"
is "$(task_field t-green .status.runner)" runner-green "the green task ran on green's runner"
r=$(task_field t-none .status.runner)
ok "the unlabelled task ran on the suite's runner ($r)" test -n "$r" -a "$r" != runner-blue -a "$r" != runner-green
is "$(runs t-none)/$(runs t-blue)/$(runs t-green)" "1/1/1" "each task ran once"
nok "blue's controller never saw the unlabelled or the green task" grep -Eq '"task":"t-(none|green)"' "$STATE/in-blue.log"
nok "green's controller never saw the unlabelled or the blue task" grep -Eq '"task":"t-(none|blue)"' "$STATE/in-green.log"
nok "the suite's controller never saw a labelled task" grep -Eq "\"namespace\":\"$TEST_NS\",\"task\":\"t-(blue|green)\"" "$STATE/controller.log"
names=$(curl -s -H "$KEYH" "http://127.0.0.1:${APIP[blue]}/api/v1/namespaces/$TEST_NS/tasks" | jq -r '[.items[].metadata.name] | sort | join(",")')
is "$names" "t-blue" "blue's API lists only blue's tasks"
is "$(curl -s -o /dev/null -w '%{http_code}' -H "$KEYH" "$(cat "$STATE/api-url")/api/v1/namespaces/$TEST_NS/tasks/t-blue")" 404 \
	"the suite's API does not know the blue task"

# --- a Flow's children carry its install's label -------------------------------------------------
k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Flow
metadata:
  name: fl
  labels: {tasked.dev/instance: green}
spec:
  tasks:
    - {name: a, shell: {command: ["echo", "a"]}}
    - {name: b, dependsOn: [a], shell: {command: ["echo", "b"]}}
EOF2
end=$(($(date +%s) + 60))
until [ "$(k get flow fl -o jsonpath='{.status.phase}')" = Succeeded ] || [ "$(date +%s)" -ge "$end" ]; do sleep 0.3; done
is "$(k get flow fl -o jsonpath='{.status.phase}')" Succeeded "green's controller runs a green Flow"
is "$(k get tasks -l tasked.dev/flow=fl -o jsonpath='{range .items[*]}{.metadata.labels.tasked\.dev/instance}{" "}{end}')" "green green " \
	"its children carry the Flow's instance label"
is "$(k get tasks -l tasked.dev/flow=fl -o jsonpath='{range .items[*]}{.status.runner}{" "}{end}')" "runner-green runner-green " \
	"... and ran on green's runner"
k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Flow
metadata: {name: fl-none}
spec:
  tasks:
    - {name: a, shell: {command: ["echo", "a"]}}
EOF2
end=$(($(date +%s) + 60))
until [ "$(k get flow fl-none -o jsonpath='{.status.phase}')" = Succeeded ] || [ "$(date +%s)" -ge "$end" ]; do sleep 0.3; done
is "$(k get flow fl-none -o jsonpath='{.status.phase}')" Succeeded "the suite's controller runs an unlabelled Flow"
is "$(k get task fl-none-a -o jsonpath='{.metadata.labels.tasked\.dev/instance}')" "" "... whose child has no instance label"
nok "blue and green never saw it" grep -q '"flow":"fl-none"\|"task":"fl-none-a"' "$STATE/in-blue.log" "$STATE/in-green.log"

# --- no takeover: other installs (re)starting leave a running task alone ------------------------
task long-blue blue "sleep 8"
wait_phase long-blue Running 30 >/dev/null
# Green restarts (kill -9) and the suite's controller too, both with a 1 s lost-runner grace:
# had they seen the task, it would have been declared lost and run again within seconds.
kill -9 "$(cat "$STATE/in-green.pid")"
start_bg "$STATE/in-green.pid" "$STATE/in-green.log" "$CTL" --instance-id green \
	--leader-elect --leader-elect-namespace "$TEST_NS" --lost-grace-seconds 1 \
	--kubeconfig "$STATE/kubeconfig" --runner-token-file "$STATE/runner-token" \
	--api-key-file "$STATE/api-key" --listen "127.0.0.1:${APIP[green]}" --broker-listen "127.0.0.1:${BRK[green]}"
kill -9 "$(cat "$STATE/controller.pid")"
sleep 0.5
ok "the suite's controller restarts (lost-runner grace 1 s)" env TASKED_CONTROLLER_ARGS="--lost-grace-seconds 1" \
	"$IT_ROOT/tests/cluster/up.sh"
ok_phase long-blue Succeeded 60
is "$(runs long-blue)" 1 "the blue task ran once: nobody else took it over"
is "$(task_field long-blue .status.attempts)" 1 "... in one attempt"
is "$(task_field long-blue .status.runner)" runner-blue "... on blue's runner"
nok "the restarted green controller never saw it" grep -q '"task":"long-blue"' "$STATE/in-green.log"

# --- leader election is independent -------------------------------------------------------------
# Blue's controller dies; green keeps leading and running green tasks meanwhile.
kill -9 "$(cat "$STATE/in-blue.pid")"
task t-green-2 green true
ok_phase t-green-2 Succeeded 60
is "$(task_field t-green-2 .status.runner)" runner-green "with blue's controller gone green still runs its tasks"
task t-blue-2 blue true
sleep 3
is "$(task_field t-blue-2 .status.phase)" "" "a blue task waits for a blue controller; no other install takes it"
done_testing
