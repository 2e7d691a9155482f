# Helpers for the controller API integration tests (tests/integration/7*.t), sourced after
# tests/integration/lib.sh. They talk to the controller the cluster scripts started, and can
# start extra controllers (watching an empty namespace, so they never act on the suite's
# tasks) for flags the shared one does not have: TLS, a metrics listener, small bounds.
# shellcheck shell=bash

STATE=${TASKED_STATE_DIR:-.tasked}
case "$STATE" in /*) ;; *) STATE=$IT_ROOT/$STATE ;; esac
API=$(cat "$STATE/api-url")
KEY_FILE=$STATE/api-key
API_PORT=${API##*:}
CONTROLLER=$IT_ROOT/bin/tasked-controller
SSEHOLD=$IT_ROOT/build/tools/ssehold

controller_pid() { cat "$STATE/controller.pid"; }
key() { cat "$KEY_FILE"; }

# acurl ARGS...: curl with the API key (from a header file, never on the command line).
acurl() {
	printf 'X-API-Key: %s\n' "$(key)" | curl -sS -H @- "$@"
}

# code URL [CURL ARGS...]: the HTTP status of an authenticated GET.
code() {
	local url=$1
	shift
	acurl -o /dev/null -w '%{http_code}' "$@" "$url" 2>/dev/null
}

# metric NAME_WITH_LABELS [BASE_URL]: one sample's value from /metrics (empty when absent).
metric() {
	curl -s "${2:-$API}/metrics" | awk -v m="$1" 'index($0, m " ") == 1 { print $2; exit }'
}

fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

free_port() {
	local p lo=32768
	# Below the ephemeral range: a client connection's local port can never collide.
	read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
	for _ in $(seq 1 100); do
		p=$((10000 + RANDOM % (lo - 10000)))
		ss -Hltn "( sport = :$p )" 2>/dev/null | grep -q . || {
			echo "$p"
			return 0
		}
	done
	return 1
}

# extra_controller NAME NAMESPACE ARGS...: starts another tasked-controller that watches only
# NAMESPACE (create it empty first), with its own API and broker ports and ARGS; sets
# EXTRA_API_PORT, EXTRA_PID, EXTRA_LOG. Stopped by extra_controllers_stop (install it in a trap).
EXTRA_PIDS=()
extra_controller() {
	local name=$1 ns=$2
	shift 2
	EXTRA_API_PORT=$(free_port)
	local bport
	bport=$(free_port)
	EXTRA_LOG=$STATE/extra-$name.log
	"$CONTROLLER" --kubeconfig "$STATE/kubeconfig" --namespace "$ns" \
		--listen "127.0.0.1:$EXTRA_API_PORT" --broker-listen "127.0.0.1:$bport" \
		--runner-token-file "$STATE/runner-token" "$@" >"$EXTRA_LOG" 2>&1 &
	EXTRA_PID=$!
	EXTRA_PIDS+=("$EXTRA_PID")
}
extra_controllers_stop() {
	local p
	for p in "${EXTRA_PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${EXTRA_PIDS[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	EXTRA_PIDS=()
}

# sse_capture SECONDS URL [CURL ARGS...]: the raw SSE stream for SECONDS (authenticated).
sse_capture() {
	local secs=$1 url=$2
	shift 2
	acurl -N --max-time "$secs" "$@" "$url" 2>/dev/null || true
}

# sse_bg OUT SECONDS URL [CURL ARGS...]: like sse_capture into OUT, in the background; the curl
# pid goes into BG_PIDS (bg_stop kills what is left).
BG_PIDS=()
sse_bg() {
	local out=$1 secs=$2 url=$3
	shift 3
	printf 'X-API-Key: %s\n' "$(key)" | curl -sS -N --max-time "$secs" -H @- "$@" "$url" >"$out" 2>/dev/null &
	BG_PIDS+=($!)
	BG_PID=$!
}
bg_stop() {
	local p
	for p in "${BG_PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	BG_PIDS=()
}
