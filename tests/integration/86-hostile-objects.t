#!/usr/bin/env bash
# Hostile objects and hostile output against the real API server: a NUL inside a command
# argument, an annotation holding a NUL, a spec.input nested past the parser's limit (and past
# the API server's), a NUL in a member name, output 2047 and 3000 levels deep. After each attack
# the controller keeps serving (a plain Task created afterwards succeeds), what it skipped is
# counted in tasked_informer_undecodable_objects_total and named once in the log, the Task says
# why in its status, /readyz stays honest, and a restart with the bad objects present becomes
# ready. Also: terminal escapes in task output reach a terminal through `kubectl tasked logs`
# only as visible text, and SSE ids like -5 are refused rather than wrapped. The objects are sent
# as raw JSON (kubectl create --raw): kubectl's own decoder stops at a depth the API server
# accepts.
. "$(dirname "$0")/lib.sh"
. "$IT_ROOT/tests/tools/apitest.sh"
test_namespace hostile
TMPD=$(mktemp -d)
trap '_cleanup_namespace; rm -rf "$TMPD"' EXIT
LOG=$STATE/controller.log

up() { "$IT_ROOT/tests/cluster/up.sh" >/dev/null 2>&1; }
readyz() { curl -s -o /dev/null -w '%{http_code}' "$API/readyz"; }
undecodable() { metric 'tasked_informer_undecodable_objects_total{resource="tasks"}'; }
# raw_task NAME SPEC_JSON [METADATA_EXTRA]: POSTs a Task as raw JSON.
raw_task() {
	printf '{"apiVersion":"tasked.dev/v1alpha1","kind":"Task","metadata":{"name":"%s"%s},"spec":%s}' \
		"$1" "${3:-}" "$2" >"$TMPD/$1.json"
	k create --raw "/apis/tasked.dev/v1alpha1/namespaces/$TEST_NS/tasks" -f "$TMPD/$1.json" >"$TMPD/$1.out" 2>&1
}
nest() { # N: N nested empty arrays
	local i
	for ((i = 0; i < $1; i++)); do printf '['; done
	for ((i = 0; i < $1; i++)); do printf ']'; done
}
# raw_status NAME: the Task's status text, read without decoding the (deep) object.
raw_status() {
	k get --raw "/apis/tasked.dev/v1alpha1/namespaces/$TEST_NS/tasks/$1" 2>/dev/null | grep -o '"status":{.*'
}
wait_raw_reason() { # NAME REASON TIMEOUT
	local end=$(($(date +%s) + $3))
	until raw_status "$1" | grep -q "\"reason\":\"$2\""; do
		[ "$(date +%s)" -lt "$end" ] || return 1
		sleep 0.3
	done
}
n_plain=0
plain_succeeds() { # DESC: a new ordinary Task still runs
	n_plain=$((n_plain + 1))
	k apply -f - >/dev/null <<EOF2
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: plain-$n_plain}
spec:
  shell: {command: ["echo", "still serving"]}
EOF2
	is "$(wait_phase "plain-$n_plain" Succeeded 60)" Succeeded "a plain Task created after $1 succeeds"
}
uid_of() { k get --raw "/apis/tasked.dev/v1alpha1/namespaces/$TEST_NS/tasks/$1" | grep -o '"uid":"[^"]*"' | head -n 1 | cut -d'"' -f4; }
log_count() { grep -c "\"msg\":\"skipping an object that cannot be decoded\".*\"uid\":\"$1\"" "$LOG"; }

is "$(readyz)" 200 "/readyz is 200 before the attacks"
base=$(undecodable)
diag "undecodable objects before: ${base:-none}"

# --- a NUL inside a command argument: refused, not cut to "a" ------------------------------------
ok "the API server stores a command argument holding a NUL" \
	raw_task nulcmd '{"shell":{"command":["echo","a\u0000b"]}}'
ok_phase nulcmd Failed
is "$(task_field nulcmd .status.reason)" InvalidSpec "the reason is InvalidSpec"
like "$(task_field nulcmd .status.message)" 'spec\.shell\.command\[1\] contains a NUL byte' "the message names the field"
plain_succeeds "a NUL in a command"

# --- an annotation holding a NUL: harmless, the task runs ------------------------------------------
ok "an annotation holding a NUL is stored" \
	raw_task nulann '{"shell":{"command":["echo","annotated"]}}' ',"annotations":{"note":"a\u0000b"}'
ok_phase nulann Succeeded
plain_succeeds "a NUL in an annotation"

# --- spec.input nested 3000 levels: past jansson's 2048 ---------------------------------------------
ok "the API server stores a spec.input nested 3000 levels" \
	raw_task deep3000 "{\"shell\":{\"command\":[\"true\"]},\"input\":{\"a\":$(nest 3000)}}"
uid=$(uid_of deep3000)
ok "the Task is marked Failed with reason Undecodable" wait_raw_reason deep3000 Undecodable 30
like "$(raw_status deep3000)" '"phase":"Failed"' "its phase is Failed"
like "$(raw_status deep3000)" 'cannot decode this Task \(maximum parsing depth' "the message says why"
ok "the metric counts it" wait_for 10 test "$(undecodable)" -ge $((${base:-0} + 1))
plain_succeeds "a 3000-deep spec.input"
is "$(log_count "$uid")" 1 "the log names it (by uid) exactly once, after its own status write came back"
like "$(grep "\"uid\":\"$uid\"" "$LOG" | grep 'cannot be decoded' | head -n 1)" \
	"\"namespace\":\"$TEST_NS\",\"name\":\"deep3000\"" "by namespace and name too"
is "$(readyz)" 200 "/readyz stays 200: the watch goes on"

# --- the API server's own limit ---------------------------------------------------------------------
ok "the API server stores 10000 levels in all (9997 inside spec.input)" \
	raw_task deep9997 "{\"shell\":{\"command\":[\"true\"]},\"input\":{\"a\":$(nest 9997)}}"
nok "and refuses one more" raw_task deep9998 "{\"shell\":{\"command\":[\"true\"]},\"input\":{\"a\":$(nest 9998)}}"
like "$(cat "$TMPD/deep9998.out")" 'exceeded max depth' "with its max-depth error"
ok "the 9997-deep Task is marked Undecodable too" wait_raw_reason deep9997 Undecodable 30

# --- a NUL inside a member name: jansson cannot represent it ----------------------------------------
ok "the API server stores a member name holding a NUL" \
	raw_task nulkey '{"shell":{"command":["true"]},"input":{"a\u0000b":1}}'
ok "that Task is marked Undecodable" wait_raw_reason nulkey Undecodable 30
plain_succeeds "a NUL in a member name"

# --- an integer past 64 bits: decoded (as a real), the task runs -------------------------------------
ok "a spec.input with 10^20 is stored" raw_task bigint '{"shell":{"command":["sh","-c","cat \"$TASKED_INPUT\""]},"input":{"n":100000000000000000000}}'
ok_phase bigint Succeeded 60

# --- output nested 2047 and 3000 levels ---------------------------------------------------------------
for n in 2047 3000; do
	k apply -f - >/dev/null <<EOF2
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: out$n}
spec:
  shell: {command: ["sh", "-c", "i=0; while [ \$i -lt $n ]; do printf '['; i=\$((i+1)); done >o; i=0; while [ \$i -lt $n ]; do printf ']'; i=\$((i+1)); done >>o; cp o \"\$TASKED_OUTPUT\"; wc -c <o"]}
EOF2
	ok_phase "out$n" Failed 60
	is "$(task_field "out$n" .status.reason)" OutputTooDeep "output $n levels deep: reason OutputTooDeep"
	like "$(task_field "out$n" .status.message)" 'nests deeper than 64 levels' "and the message says so"
	plain_succeeds "output $n levels deep"
done
like "$(task_field out2047 .status.logTail)" "^$((2 * 2047))" "the 2047-deep output was about 4 KB ($((2 * 2047)) bytes)"
k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: out64}
spec:
  shell: {command: ["sh", "-c", "i=0; while [ $i -lt 64 ]; do printf '['; i=$((i+1)); done >o; i=0; while [ $i -lt 64 ]; do printf ']'; i=$((i+1)); done >>o; cp o \"$TASKED_OUTPUT\""]}
EOF2
ok_phase out64 Succeeded 60
like "$(task_field out64 .status.output)" '^\[\[\[' "output 64 levels deep is kept"

is "$(readyz)" 200 "/readyz is still 200 after every attack"

# --- terminal escapes in task output: shown on a terminal, kept in a pipe --------------------------
k apply -f - >/dev/null <<'EOF2'
apiVersion: tasked.dev/v1alpha1
kind: Task
metadata: {name: esc}
spec:
  shell: {command: ["printf", "\\033]0;retitled\\007\\033[2Jhidden\\rshown\\n"]}
EOF2
ok_phase esc Succeeded
kt() { TASKED_API_URL=$API TASKED_API_KEY=$(key) "$IT_ROOT/bin/kubectl-tasked" -n "$TEST_NS" "$@"; }
kt logs esc >"$TMPD/esc.pipe"
ok "piped, kubectl tasked logs passes the bytes as written" grep -q $'\e\\[2Jhidden\rshown' "$TMPD/esc.pipe"
script -qec "TASKED_API_URL=$API TASKED_API_KEY=\$(cat $KEY_FILE) $IT_ROOT/bin/kubectl-tasked -n $TEST_NS logs esc" /dev/null >"$TMPD/esc.tty"
like "$(cat "$TMPD/esc.tty")" '\^\[\]0;retitled\^G\^\[\[2Jhidden\^Mshown' "on a terminal the escapes are shown (^[, ^G, ^M)"
is "$(tr -cd '\033\007' <"$TMPD/esc.tty" | wc -c)" 0 "and no ESC or BEL byte reaches the terminal"

# --- SSE ids: a negative or overflowing id is refused, not wrapped --------------------------------
for bad in -5 18446744073709551616 '%201'; do
	is "$(code "$API/api/v1/events?lastEventId=$bad")" 400 "lastEventId=$bad is refused with 400"
done
is "$(code "$API/api/v1/events" -H 'Last-Event-ID: -5')" 400 "Last-Event-ID: -5 is refused with 400"

# --- restart with the bad objects present -------------------------------------------------------------
old=$(controller_pid)
kill "$old"
while kill -0 "$old" 2>/dev/null; do sleep 0.1; done
ok "the controller restarts with undecodable Tasks in its namespace" up
ok "and becomes ready (the list skips what it cannot decode)" wait_for 60 test "$(readyz)" = 200
ok "it counts them again (three here)" wait_for 20 test "$(undecodable)" -ge 3
is "$(log_count "$uid")" 2 "the 3000-deep Task is named once per controller run"
like "$(raw_status deep3000)" '"reason":"Undecodable"' "its status still says Undecodable (not rewritten)"
plain_succeeds "a restart with undecodable Tasks present"

# --- the undecodable object deleted --------------------------------------------------------------------
ok "the 3000-deep Task can be deleted" k delete --raw "/apis/tasked.dev/v1alpha1/namespaces/$TEST_NS/tasks/deep3000"
ok "the deletion is logged" wait_for 20 grep -q "\"msg\":\"an undecodable object was deleted\".*\"uid\":\"$uid\"" "$LOG"
plain_succeeds "deleting an undecodable Task"
is "$(log_count "$uid")" 2 "its deletion did not report it again"
is "$(readyz)" 200 "/readyz is 200 at the end"

done_testing
