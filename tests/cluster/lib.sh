# Shared helpers for the cluster scripts (sourced, not run). Bash only; no python.
# shellcheck shell=bash

# Absolute path of a directory that may not exist yet (relative paths are taken from $PWD).
abspath() {
	case "$1" in
	/*) printf '%s\n' "$1" ;;
	*) printf '%s/%s\n' "$PWD" "${1#./}" ;;
	esac
}

die() {
	echo "$(basename "$0"): $*" >&2
	exit 1
}

note() { echo "$(basename "$0"): $*" >&2; }

# tasked_cache: the cache of built binaries outside the repository (build-kube.sh,
# build-tekton.sh); shared by every checkout on the machine.
tasked_cache() { printf '%s\n' "${TASKED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tasked}"; }

# now_ms: milliseconds since the epoch.
now_ms() { date +%s%3N; }

# port_in_use PORT: true when something listens on 127.0.0.1:PORT or any address:PORT.
port_in_use() {
	ss -Hltn "( sport = :$1 )" 2>/dev/null | grep -q .
}

# port_range: "LOW HIGH" for listening ports, below the kernel's ephemeral range, so a port we
# pick is never also the local end of some client connection (bind would fail with EADDRINUSE).
port_range() {
	local lo=32768
	read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
	[ "$lo" -gt 12000 ] 2>/dev/null || lo=32768
	echo "10000 $((lo - 1))"
}

# pick_port [EXCLUDED...]: a free TCP port below the ephemeral range, not listed in EXCLUDED.
pick_port() {
	local p tries=0 x taken lo hi
	read -r lo hi < <(port_range)
	while [ "$tries" -lt 200 ]; do
		tries=$((tries + 1))
		p=$((lo + (RANDOM * 32768 + RANDOM) % (hi - lo + 1)))
		taken=0
		for x in "$@"; do [ "$x" = "$p" ] && taken=1; done
		[ "$taken" -eq 0 ] || continue
		port_in_use "$p" && continue
		printf '%s\n' "$p"
		return 0
	done
	die "could not find a free TCP port in $lo-$hi"
}

# proc_matches PID BINARY [NEEDLE]: PID is alive, its argv[0] is BINARY and, when given, its
# command line contains NEEDLE (e.g. the state directory), so a recycled pid is not mistaken
# for ours.
proc_matches() {
	local pid=$1 bin=$2 needle=${3:-} argv0 cmdline
	case "$pid" in '' | *[!0-9]*) return 1 ;; esac
	kill -0 "$pid" 2>/dev/null || return 1
	[ -r "/proc/$pid/cmdline" ] || return 1
	# The process may exit between the checks: reading its cmdline then fails with ESRCH, which
	# only means "not ours any more" (stderr is dropped first, so neither "tr: read error" nor
	# the shell's own "No such file" for a process already gone is printed).
	argv0=$(tr '\0' '\n' 2>/dev/null <"/proc/$pid/cmdline" | head -n 1)
	[ "$argv0" = "$bin" ] || return 1
	if [ -n "$needle" ]; then
		cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline")
		case "$cmdline" in *"$needle"*) ;; *) return 1 ;; esac
	fi
	# A zombie still answers kill -0.
	[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]
}

# recorded_bin PIDFILE: argv[0] of the pid file's live process, or nothing. Stopping by pid file
# needs the binary only to recognise our process; this reads it back, so a process started from
# another build directory (the benchmarks run build/image-bin) is still found.
recorded_bin() {
	local pid
	[ -s "$1" ] || return 0
	pid=$(cat "$1")
	case "$pid" in '' | *[!0-9]*) return 0 ;; esac
	[ -r "/proc/$pid/cmdline" ] || return 0
	tr '\0' '\n' 2>/dev/null <"/proc/$pid/cmdline" | head -n 1
}

# pidfile_alive PIDFILE BINARY [NEEDLE]: the pid in PIDFILE is a live BINARY process.
pidfile_alive() {
	[ -s "$1" ] || return 1
	proc_matches "$(cat "$1")" "$2" "${3:-}"
}

# start_bg PIDFILE LOGFILE BINARY ARGS...: start BINARY in its own session (so it outlives the
# calling shell and make), stdout+stderr appended to LOGFILE, pid written to PIDFILE.
start_bg() {
	local pidfile=$1 logfile=$2 pid
	shift 2
	{ echo "---- $(date -u +%Y-%m-%dT%H:%M:%SZ) starting: $*"; } >>"$logfile"
	# In a non-interactive shell the background child is not a process group leader, so
	# setsid(1) calls setsid() and execs without forking: $! is the daemon's own pid.
	setsid "$@" >>"$logfile" 2>&1 </dev/null &
	pid=$!
	echo "$pid" >"$pidfile"
	# Until the exec chain (bash subshell -> setsid -> BINARY) is done, the pid's argv[0] is not
	# BINARY yet; wait for that (or for its death) so later liveness checks are meaningful.
	local i
	for ((i = 0; i < 100; i++)); do
		proc_matches "$pid" "$1" && return 0
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.05
	done
}

# stop_pidfile PIDFILE BINARY NAME [GRACE_SECONDS [NEEDLE]]: TERM the process, KILL it after the
# grace period, remove the pid file. A stale pid file (process gone, or the pid now belongs to
# another program or another state directory) is just removed.
stop_pidfile() {
	local pidfile=$1 bin=$2 name=$3 grace=${4:-5} needle=${5:-} pid i
	if ! [ -s "$pidfile" ]; then
		return 0
	fi
	pid=$(cat "$pidfile")
	if ! proc_matches "$pid" "$bin" "$needle"; then
		rm -f "$pidfile"
		return 0
	fi
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < grace * 10; i++)); do
		proc_matches "$pid" "$bin" || break
		sleep 0.1
	done
	if proc_matches "$pid" "$bin"; then
		note "$name (pid $pid) did not stop within ${grace}s; sending KILL"
		kill -KILL "$pid" 2>/dev/null || true
		for ((i = 0; i < 50; i++)); do
			proc_matches "$pid" "$bin" || break
			sleep 0.1
		done
	fi
	rm -f "$pidfile"
	echo "stopped $name (pid $pid)"
}

# log_tail LOGFILE [N]: the last N lines of a log, indented, for error messages.
log_tail() {
	[ -f "$1" ] || return 0
	echo "---- last ${2:-20} lines of $1:" >&2
	tail -n "${2:-20}" "$1" | sed 's/^/    /' >&2
}

# wait_until TIMEOUT PIDFILE BINARY NAME LOGFILE CMD...: run CMD every 0.2 s until it succeeds.
# Fails early when the process dies, and on timeout; either way names the log to read.
wait_until() {
	local timeout=$1 pidfile=$2 bin=$3 name=$4 logfile=$5 deadline
	shift 5
	deadline=$(($(now_ms) + timeout * 1000))
	while ! "$@" >/dev/null 2>&1; do
		if ! pidfile_alive "$pidfile" "$bin"; then
			log_tail "$logfile"
			die "$name exited during startup; read $logfile"
		fi
		if [ "$(now_ms)" -ge "$deadline" ]; then
			log_tail "$logfile"
			die "$name did not become ready within ${timeout}s; read $logfile"
		fi
		sleep 0.2
	done
}

# --- the node (tests/cluster/node.sh) -----------------------------------------------------------
# One node per machine: the kubelet and containerd use fixed host paths (see node.sh), so these
# are constants. The bridge's subnet holds the pods; its gateway is the node's address, where the
# API server listens when a node runs. Pods get a route to the Service range only.
# shellcheck disable=SC2034 # used by the scripts that source this
{
	NODE_BRIDGE=tasked0
	NODE_IP=10.88.77.1
	NODE_POD_CIDR=10.88.77.0/24
	NODE_SERVICE_CIDR=10.0.0.0/24
	NODE_DNS_IP=10.0.0.10
	NODE_NAME=tasked-node
	NODE_TAG=tasked-node # iptables comment, cgroup root, /run/tasked-node
}

# node_wanted: TASKED_NODE (default 1) asks for a real node; 0 keeps the host-process cluster.
node_wanted() { [ "${TASKED_NODE:-1}" != 0 ]; }
