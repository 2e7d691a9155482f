#!/usr/bin/env bash
# apparmor/tasked-runner enforced by a real kernel: this machine's kernel has no AppArmor, so
# Debian's own (linux-image-amd64, tests/vm/kernel.sh) boots under qemu (software emulation,
# one CPU, 512 MiB, no network device) with an initramfs built here from this machine's
# Debian packages (busybox-static, apparmor_parser, util-linux's setpriv, with the libraries
# ldd lists) and the project's binaries. tests/vm/init runs in the VM and reports on a
# second serial port; every assertion is made here. See docs/security.md ("The AppArmor
# profile, observed") for the table this proves.
#
# The broker is bench/runnerbench.c's stand-in (--tasks mode), not the controller: the
# controller needs an API server, the stand-in speaks the same protocol with the same codec.
# shellcheck source=tests/integration/lib.sh
TASKED_TAP_ONLY=1 . "$(dirname "$0")/../integration/lib.sh"

ROOT=$IT_ROOT
RUNNER=${TASKED_VM_RUNNER:-$ROOT/bin/tasked-runner}
PROBE=$ROOT/build/tools/probe
BROKER=$ROOT/build/bench/tasked-bench-runner
VM_TIMEOUT=${TASKED_VM_TIMEOUT:-600}
for f in "$RUNNER" "$PROBE" "$BROKER"; do
	[ -x "$f" ] || { echo "Bail out! $f is missing (make vm-test builds it)"; exit 255; }
done
for c in qemu-system-x86_64 apparmor_parser setpriv cpio jq; do
	command -v "$c" >/dev/null || { echo "Bail out! $c is missing (tests/deps.sh installs it)"; exit 255; }
done
BUSYBOX=$(command -v busybox)
file -L "$BUSYBOX" 2>/dev/null | grep -q 'statically linked' || ldd "$BUSYBOX" 2>&1 | grep -q 'not a dynamic' ||
	{ echo "Bail out! $BUSYBOX is not static (Debian: busybox-static)"; exit 255; }
KERNEL=$("$ROOT/tests/vm/kernel.sh") || { echo "Bail out! no kernel (tests/vm/kernel.sh)"; exit 255; }

work=$(mktemp -d "${TMPDIR:-/tmp}/tasked-vm.XXXXXX")
qpid=
# shellcheck disable=SC2317 # called through the EXIT trap
cleanup() {
	[ -n "$qpid" ] && kill "$qpid" 2>/dev/null && wait "$qpid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
diag "kernel: $KERNEL"

# --- the initramfs -------------------------------------------------------------------------
R=$work/root
mkdir -p "$R"/{bin,proc,sys,dev,tmp,run,srv,vm,etc/apparmor,etc/apparmor.d,usr/local/bin,usr/share,var} \
	"$R"/var/run/secrets/tasked "$R"/var/run/secrets/kubernetes.io/serviceaccount
# put SRC DEST: a program and the libraries ldd lists for it, at the paths ldd shows.
put() {
	install -D -m 0755 "$1" "$R$2"
	ldd "$1" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' |
		while read -r lib; do
			[ -e "$R$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$R$lib"
		done
}
cp "$BUSYBOX" "$R/bin/busybox"
put "$(command -v apparmor_parser)" /usr/sbin/apparmor_parser
put "$(command -v setpriv)" /usr/bin/setpriv
put "$RUNNER" /usr/local/bin/tasked-runner
put "$PROBE" /usr/local/bin/tasked-probe
put "$BROKER" /usr/local/sbin/tasked-bench-runner
cp -a /etc/apparmor.d/tunables "$R/etc/apparmor.d/"
# Debian's parser.conf pins the policy features the parser was built for; the node has both.
cp /etc/apparmor/parser.conf "$R/etc/apparmor/"
[ -d /usr/share/apparmor-features ] && cp -a /usr/share/apparmor-features "$R/usr/share/"
printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65532:65532:nobody:/:/sbin/nologin\n' >"$R/etc/passwd"
printf 'root:x:0:\nnobody:x:65532:\n' >"$R/etc/group"
printf '127.0.0.1 localhost\n::1 localhost\n' >"$R/etc/hosts"
install -m 0755 "$ROOT/tests/vm/init" "$R/init"
install -m 0755 "$ROOT/tests/vm/start-runner" "$R/vm/start-runner"
cp "$ROOT/apparmor/tasked-runner" "$R/vm/tasked-runner"
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$R/var/run/secrets/tasked/runner-token"
echo "not-for-tasks" >"$R/var/run/secrets/kubernetes.io/serviceaccount/token"

# The chart's loader, as rendered into deploy/apparmor-loader (60-helm.t checks that it is
# what the chart renders): the ConfigMap's profile, the DaemonSet's script and its readiness
# command. block LINE-ERE FILE: the YAML block scalar that follows the first matching line.
block() {
	awk -v re="$1" '
		!f && $0 ~ re { f = 1; next }
		f {
			if ($0 ~ /^[[:space:]]*$/) { buf = buf "\n"; next }
			match($0, /^ */)
			if (!ind) ind = RLENGTH
			if (RLENGTH < ind) exit
			printf "%s%s\n", buf, substr($0, ind + 1); buf = ""
		}' "$2"
}
LOADER=$ROOT/deploy/apparmor-loader/loader.yaml
block '^  tasked-runner: \|-$' "$LOADER" >"$R/vm/loader-profile"
block '^            - \|$' "$LOADER" >"$R/vm/loader-script"
sed -n '/readinessProbe:/,/command:/ s/.*command: \[\/bin\/sh, -c, "\(.*\)"\]$/\1/p' "$LOADER" >"$R/vm/loader-readiness"
is "$(cat "$R/vm/loader-profile")" "$(cat "$ROOT/apparmor/tasked-runner")" \
	"the loader's ConfigMap (deploy/apparmor-loader) holds apparmor/tasked-runner"
like "$(cat "$R/vm/loader-script")" 'nsenter --target 1 --mount -- apparmor_parser --replace' \
	"the loader's script was extracted from its DaemonSet"
like "$(cat "$R/vm/loader-readiness")" "^grep -q '\^tasked-runner ' /host-securityfs/apparmor/profiles$" \
	"... and its readiness probe"

# What the probe tries, the same list outside the runner and as a task (%r: the runner or a
# same-uid neighbour, %s: the probe itself).
TRIES=(
	read:/proc/%r/environ read:/proc/self/environ read:/proc/%s/environ read:/proc/1/mounts
	read:/proc/self/mountinfo read:/proc/self/mounts read:/proc/%r/mountinfo read:/proc/self/mountstats
	read:/proc/%r/task/%r/environ read:/proc/%s/task/%s/environ read:/proc/%r/task/%r/mountinfo
	read:/proc/self/cmdline read:/proc/self/status read:/etc/passwd
	read:/var/run/secrets/kubernetes.io/serviceaccount/token read:/var/run/secrets/tasked/runner-token
	read:/proc/kallsyms read:/sys/kernel/security/lsm
	ptrace-child mount:/tmp
	socket:inet-raw socket:inet6-raw socket:packet socket:netlink-route socket:tcp socket:udp
	socket:unix socket:unixpair
	write:/srv/shared/probe-%s write:/dev/shm/probe-%s write:/tmp/probe-%s
	copyexec:/tmp/probe-exec-%s copymmap:/tmp/probe-mmap-%s
)
echo "${TRIES[*]}" >"$R/vm/probe-tries"
probe_cmd=$(printf '%s\n' /usr/local/bin/tasked-probe "${TRIES[@]}" | jq -R . | jq -s -c '[.[0]] + (.[1:] | map(["--try", .]) | add)')
{
	echo '{"name":"echo","shell":{"command":["/bin/sh","-c","echo hello from a confined task; echo kept > note.txt && cat note.txt && printf %s \"{\\\"written\\\":$(cat note.txt | wc -c)}\" > \"$TASKED_OUTPUT\""]}}'
	jq -c -n --argjson cmd "$probe_cmd" '{name: "probe", shell: {command: $cmd}}'
	echo '{"name":"http","http":{"method":"GET","url":"http://localhost:8081/ok"},"policy":{"http":{"allowedCIDRs":["127.0.0.0/8","::1/128"]}}}'
	echo '{"name":"deadline","deadlineAfterMs":3000,"shell":{"command":["/bin/sh","-c","echo started; sleep 60 & sleep 60"]}}'
	# The chart's readiness probe, retried like its startup probe: the first health file is
	# written on the runner's first tick after the welcome.
	echo '{"name":"health","shell":{"command":["/bin/sh","-c","for i in 1 2 3 4 5 6 7 8 9 10; do /usr/local/bin/tasked-runner --check-health /tmp/tasked-runner.health --ready && exit 0; sleep 1; done; exit 1"]}}'
} >"$R/vm/tasks.jsonl"
ok "the task list is valid JSON lines" jq -e . "$R/vm/tasks.jsonl"

(cd "$R" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -1 >"$work/initrd.gz"
diag "initramfs: $(du -h "$work/initrd.gz" | cut -f1)"

# --- the VM ----------------------------------------------------------------------------------
# No kernel modules: AppArmor, Landlock and the 8250 serial ports are built into Debian's
# kernel (virtio and 9p are modules, hence serial ports and no share). lsm= names the order
# explicitly (Debian's CONFIG_LSM has the same members; security= is ignored when lsm= is
# given). audit_backlog_limit: no auditd drains the queue, the kernel log does, and no record
# may be lost. panic=-1 with -no-reboot: a dead init ends qemu at once.
started=$(date +%s)
qemu-system-x86_64 -machine q35,accel=tcg -cpu max -m 512M -smp 1 -nodefaults -no-reboot \
	-display none -monitor none -nic none -kernel "$KERNEL" -initrd "$work/initrd.gz" \
	-append "console=ttyS0 quiet panic=-1 apparmor=1 lsm=landlock,lockdown,yama,apparmor audit_backlog_limit=8192" \
	-serial "file:$work/console.log" -serial "file:$work/results.log" </dev/null >"$work/qemu.log" 2>&1 &
qpid=$!
waited=0
while kill -0 "$qpid" 2>/dev/null && [ "$waited" -lt "$VM_TIMEOUT" ]; do
	sleep 1
	waited=$((waited + 1))
done
if kill -0 "$qpid" 2>/dev/null; then
	kill "$qpid"
	wait "$qpid" 2>/dev/null
	qpid=
	fail "the VM finished within ${VM_TIMEOUT}s"
	diag "$(tail -n 30 "$work/console.log")"
	diag "$(tail -n 60 "$work/results.log")"
	done_testing
	exit 1
fi
wait "$qpid"
qrc=$?
qpid=
diag "VM wall time: $(($(date +%s) - started)) s"
is "$qrc" 0 "qemu exited cleanly (the VM rebooted at the end)"
tr -d '\r' <"$work/results.log" >"$work/results"

# section NAME: the lines the VM reported under "=== NAME".
section() { awk -v s="=== $1" '$0 == s { f = 1; next } /^=== / { f = 0 } f' "$work/results"; }
ok "the VM reported to the end" grep -qx '=== end' "$work/results" ||
	{ diag "$(tail -n 40 "$work/console.log")" "$(cat "$work/results")"; done_testing; exit 1; }
if [ -n "${TASKED_VM_KEEP:-}" ]; then
	cp "$work/results" "$work/console.log" "$TASKED_VM_KEEP/"
fi

# --- the kernel ---------------------------------------------------------------------------------
diag "kernel $(section uname), LSMs $(section lsm)"
like "$(section lsm)" '(^|,)apparmor(,|$)' "AppArmor is an active LSM"
like "$(section lsm)" '(^|,)landlock(,|$)' "... and so is Landlock (the runner's per-task domains)"
is "$(section apparmor-enabled)" Y "AppArmor is enabled"
like "$(section load)" '^exit=0$' "apparmor_parser --replace --write-cache loads the profile"
like "$(section profiles)" '^tasked-runner \(enforce\)$' "the kernel lists tasked-runner in enforce mode"

# --- the probe outside the runner: the control and the profile alone ----------------------------
fact_of() { # RUN KEY: the probe's report of KEY in RUN (a section), as compact JSON
	section "$1" | grep '^{' | jq -c --arg k "$2" 'select(.fact? == $k) | .value' 2>/dev/null | head -n 1
}
outcome() { # JSON: ok | ERRNO | copy-failed
	jq -r 'if .ok then "ok" elif .copied == false then "copy-failed" else .error end' <<<"$1" 2>/dev/null
}
DMESG=$(section dmesg)
# audit OP NAME|"" [PID]: a DENIED record of the profile with that operation and name.
audit() {
	local l
	l=$(grep -F 'apparmor="DENIED"' <<<"$DMESG" | grep -F 'profile="tasked-runner"' | grep -F "operation=\"$1\"")
	[ -n "$2" ] && l=$(grep -F "name=\"$2\"" <<<"$l")
	[ -n "${3:-}" ] && l=$(grep -E "[ ]pid=$3 " <<<"$l")
	[ -n "$l" ]
}
# expand RUN KEY-PATH: the path the probe used in RUN (%r, %s and /proc/self replaced).
expand() {
	local self runner
	self=$(fact_of "$1" pids | jq -r .self)
	runner=$(fact_of "$1" pids | jq -r .runner)
	sed -e "s/%r/$runner/g" -e "s/%s/$self/g" -e "s|^/proc/self/|/proc/$self/|" <<<"$2"
}

is "$(fact_of probe-control label)" '"unconfined"' "control: the probe runs unconfined"
is "$(fact_of probe-confined label)" '"tasked-runner (enforce)"' "confined: the probe runs under tasked-runner (enforce)"
is "$(fact_of probe-confined ids | jq -c '[.uid, .gid]')" '[65532,65532]' "... as 65532"

# check KEY CONTROL PROFILE TASK AUDIT-PROFILE AUDIT-TASK: the outcomes of KEY without the
# profile (as 65532), under it alone, and as a task of the confined runner (which adds seccomp,
# Landlock and no_new_privs), and the operation of the record the profile's denial leaves in
# the kernel log in the last two ("-": no record expected, because the rule is quiet or
# because something else refused first).
check() {
	local key=$1 want_c=$2 want_p=$3 want_t=$4 op run path
	is "$(outcome "$(fact_of probe-control "$key")")" "$want_c" "$key without the profile: $want_c"
	is "$(outcome "$(fact_of probe-confined "$key")")" "$want_p" "$key under the profile: $want_p"
	is "$(outcome "$(fact_of task "$key")")" "$want_t" "$key as a task of the confined runner: $want_t"
	for run in probe-confined task; do
		if [ "$run" = task ]; then op=$6; else op=$5; fi
		[ "$op" = - ] && continue
		path=
		case "$key" in *:/*) path=$(expand "$run" "${key#*:}") ;; esac
		case "$key" in mount:*) path=$path/ ;; esac # AppArmor names a mount point as a directory
		ok "... the denial ($run) is in the kernel log: operation=\"$op\"${path:+ name=\"$path\"}" \
			audit "$op" "$path"
	done
}

# --- the runner, confined, against the broker stand-in ------------------------------------------
BROKER_OUT=$(section broker)
event() { jq -c --arg e "$1" 'select(.event == $e)' <<<"$BROKER_OUT" 2>/dev/null | head -n 1; }
result() { jq -c --arg n "$1" 'select(.event == "result" and .name == $n) | .result' <<<"$BROKER_OUT" 2>/dev/null | head -n 1; }
hello=$(event hello)
ok "the confined runner read its token, authenticated and said hello" test -n "$hello"
is "$(jq -r .runnerLabel <<<"$hello")" "tasked-runner (enforce)" "the runner runs under tasked-runner (enforce)"
RUNNER_PID=$(jq -r .runnerPid <<<"$hello")

r=$(result echo)
is "$(jq -r .phase <<<"$r")" Succeeded "a plain task (echo, a file in its work dir, its output file) succeeds"
like "$(jq -r .logTail <<<"$r")" 'hello from a confined task' "... its stdout reaches the broker"
like "$(jq -r .logTail <<<"$r")" '^kept$' "... the file it wrote in its work dir reads back"
is "$(jq -c .output <<<"$r")" '{"written":5}' "... and its output file is its result's output"
r=$(result health)
is "$(jq -r .phase <<<"$r")" Succeeded "the readiness probe (tasked-runner --check-health --ready) passes under the profile"
like "$(jq -r .logTail <<<"$r")" '^ok: connected' "... the health file is fresh and says connected"
r=$(result http)
is "$(jq -r .phase <<<"$r")" Succeeded "an http task (libcurl: DNS for localhost, TCP) succeeds under the profile"
is "$(jq -r .httpStatus <<<"$r")" 200 "... with the broker's 200"
r=$(result deadline)
is "$(jq -c '[.phase, .reason]' <<<"$r")" '["Failed","TimedOut"]' \
	"a task past its deadline is killed: the runner signals its process group under the profile"
like "$(jq -r .message <<<"$r")" 'process group killed' "... the whole group (the background sleep too)"
r=$(result probe)
is "$(jq -r .phase <<<"$r")" Succeeded "the probe task ran"
# The task's report, as a run of its own for fact_of / expand.
{
	echo "=== task"
	jq -c '.output // {} | to_entries[] | {fact: .key, value: .value}' <<<"$r"
} >>"$work/results"
is "$(fact_of task label)" '"tasked-runner (enforce)"' "the task runs under tasked-runner (enforce) too (ix)"
is "$(fact_of task ids | jq -c '[.uid, .gid]')" '[65532,65532]' "... as 65532"
is "$(fact_of task status | jq -c '[.NoNewPrivs, .Seccomp]')" '[1,2]' "... with no_new_privs and its seccomp filter"
is "$(fact_of task pids | jq -r .runner)" "$RUNNER_PID" "... and %r is the runner's pid"

summary=$(event summary)
is "$(jq -r .results <<<"$summary")" "$(wc -l <"$R/vm/tasks.jsonl")" "every task's result reached the broker"
ok "the heartbeat: the runner answered the broker's pings (at least 2 pongs)" \
	test "$(jq -r '.pongs // 0' <<<"$summary")" -ge 2
is "$(event runnerExit | jq -c '[.exited, .status]')" '[true,0]' \
	"SIGTERM from outside the profile reaches the runner, which drains and exits 0"
is "$(event brokerExit | jq -r .status)" 0 "the broker finished its script"
LOG=$(section runner-log)
like "$LOG" '"msg":"tasks run in Landlock domains".*"tokenHidden":"true"' \
	"the runner set up Landlock under the profile and hid its token from tasks"
is "$(grep -c '"level":"error"' <<<"$LOG")" 0 "the runner logged no error"
is "$(grep -F 'apparmor="DENIED"' <<<"$DMESG" | grep -cF 'comm="tasked-runner"')" 0 \
	"the kernel denied the runner itself nothing"
is "$(grep -F 'apparmor="DENIED"' <<<"$DMESG" | grep -vF 'comm="tasked-probe"')" "" \
	"... nor the shell, sleep, setpriv or the health check: every denial recorded is the probe's"
is "$(section workdir-after | grep -c '^tasked-runner-[A-Za-z0-9]\{6\}$')" 0 "the runner removed its work dir when it stopped"

# --- each rule, observed ---------------------------------------------------------------------------
#     key                                   control profile task    audit: profile task
check read:/proc/%r/environ                 ok      EACCES  EACCES  open      -
check read:/proc/self/environ               ok      EACCES  EACCES  open      open
check read:/proc/%s/environ                 ok      EACCES  EACCES  open      open
check read:/proc/1/mounts                   ok      EACCES  EACCES  open      open
check read:/proc/self/mountinfo             ok      EACCES  EACCES  open      open
check read:/proc/self/mounts                ok      EACCES  EACCES  open      open
check read:/proc/%r/mountinfo               ok      EACCES  EACCES  open      open
check read:/proc/self/mountstats            ok      EACCES  EACCES  open      open
check read:/proc/%r/task/%r/environ         ok      EACCES  EACCES  open      -
check read:/proc/%s/task/%s/environ         ok      EACCES  EACCES  open      open
check read:/proc/%r/task/%r/mountinfo       ok      EACCES  EACCES  open      open
check read:/proc/self/cmdline               ok      ok      ok      -         -
check read:/proc/self/status                ok      ok      ok      -         -
check read:/etc/passwd                      ok      ok      ok      -         -
check read:/var/run/secrets/kubernetes.io/serviceaccount/token ok EACCES EACCES open open
check read:/var/run/secrets/tasked/runner-token ok  ok      EACCES  -         -
check read:/proc/kallsyms                   ok      EACCES  EACCES  open      open
check read:/sys/kernel/security/lsm         ok      EACCES  EACCES  open      open
check ptrace-child                          ok      EACCES  EPERM   ptrace    -
check mount:/tmp                            EPERM   EACCES  EPERM   mount     -
check socket:inet-raw                       EPERM   EACCES  EACCES  -         -
check socket:inet6-raw                      EPERM   EACCES  EACCES  -         -
check socket:packet                         EPERM   EACCES  EACCES  -         -
check socket:netlink-route                  ok      ok      ok      -         -
check socket:tcp                            ok      ok      ok      -         -
check socket:udp                            ok      ok      ok      -         -
check socket:unix                           ok      ok      ok      -         -
check socket:unixpair                       ok      ok      ok      -         -
check write:/srv/shared/probe-%s            ok      EACCES  EACCES  mknod     mknod
check write:/dev/shm/probe-%s               ok      EACCES  EACCES  mknod     mknod
check write:/tmp/probe-%s                   ok      ok      ok      -         -
check copyexec:/tmp/probe-exec-%s           ok      EACCES  EACCES  exec      exec
check copymmap:/tmp/probe-mmap-%s           ok      EACCES  EACCES  file_mmap file_mmap

# Root under the profile: no capability overrides a file's mode, and the rules above hold.
is "$(outcome "$(fact_of probe-root-confined read:/srv/private)")" EACCES \
	"root under the profile cannot read another user's 0600 file (deny capability: no CAP_DAC_OVERRIDE)"
is "$(outcome "$(fact_of probe-root-confined write:/srv/shared/probe-root)")" EACCES "... nor write outside /tmp"
is "$(outcome "$(fact_of probe-root-confined socket:inet-raw)")" EACCES "... nor open a raw socket"
is "$(outcome "$(fact_of probe-root-confined mount:/tmp)")" EACCES "... nor mount"

# The same profile with every capability allowed (tasked-runner-caps), for root: each rule
# holds by itself, not only because no capability is left.
is "$(fact_of probe-root-caps label)" '"tasked-runner-caps (enforce)"' "root under tasked-runner-caps (all capabilities)"
is "$(outcome "$(fact_of probe-root-caps read:/srv/private)")" ok "... has CAP_DAC_OVERRIDE (the control)"
for k in mount:/tmp umount:/dev/shm socket:inet-raw socket:packet read:/proc/%r/environ read:/proc/1/mounts \
	write:/srv/shared/probe-%s ptrace-child; do
	is "$(outcome "$(fact_of probe-root-caps "$k")")" EACCES "... and is still denied $k"
done
ok "... the mount rule's denial is in the kernel log" \
	grep -q 'apparmor="DENIED" operation="mount" .*profile="tasked-runner-caps" name="/tmp/"' <<<"$DMESG"
ok "... and the umount rule's" \
	grep -q 'apparmor="DENIED" operation="umount" .*profile="tasked-runner-caps" name="/dev/shm/"' <<<"$DMESG"

# --- the chart's loader ------------------------------------------------------------------------------
like "$(section unload)" '^exit=0$' "the profile can be removed (apparmor_parser --remove)"
is "$(section profiles-after-unload | grep -c '^tasked-runner ')" 0 "... and is gone from the kernel"
like "$(section loader)" '^loaded the tasked-runner AppArmor profile$' "the loader DaemonSet's script loads it (nsenter into PID 1, the node's parser)"
is "$(section loader-readiness)" "exit=0" "... its readiness probe passes in its own mount namespace"
is "$(section loader-node-file | tail -n 1)" same "... the node's /etc/apparmor.d/tasked-runner is the ConfigMap's profile"
like "$(section profiles-after-loader)" '^tasked-runner \(enforce\)$' \
	"... and /sys/kernel/security/apparmor/profiles lists tasked-runner (enforce)"

done_testing
