#!/usr/bin/env bash
# Builds the kstatus checker (tests/tools/kstatus/main.go: the verdict of the kstatus library,
# the health library of Flux, kpt and Config Sync) once, against sigs.k8s.io/cli-utils from the
# Go module proxy, into the Tasked cache, and prints its path. Idempotent and safe to run from
# parallel suites (flock). tests/integration/66-kstatus.t calls it.
#
#   tests/tools/kstatus.sh            -> prints .../tasked/bin/kstatus
#
# Environment: TASKED_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/tasked), TASKED_KSTATUS (use
# this binary instead of building one).
set -euo pipefail

CLI_UTILS=v0.37.2
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# The source's hash in the stamp: an edited checker is rebuilt, never served stale.
STAMP="cli-utils $CLI_UTILS main.go $(sha256sum "$HERE/kstatus/main.go" | cut -c1-16)"
CACHE=${TASKED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tasked}
BIN=$CACHE/bin

if [ -n "${TASKED_KSTATUS:-}" ]; then
	[ -x "$TASKED_KSTATUS" ] || { echo "kstatus.sh: TASKED_KSTATUS=$TASKED_KSTATUS is not executable" >&2; exit 1; }
	printf '%s\n' "$TASKED_KSTATUS"
	exit 0
fi

have() { [ -x "$BIN/kstatus" ] && [ "$(cat "$BIN/kstatus.version" 2>/dev/null)" = "$STAMP" ]; }
if have; then
	printf '%s\n' "$BIN/kstatus"
	exit 0
fi

mkdir -p "$BIN"
exec 9>"$BIN/.kstatus.lock"
flock 9
if ! have; then
	PATH=$PATH:/usr/local/go/bin
	command -v go >/dev/null || { echo "kstatus.sh: Go is required to build the kstatus checker" >&2; exit 1; }
	tmp=$(mktemp -d "$BIN/.kstatus-build.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	t0=$(date +%s)
	echo "kstatus.sh: building the kstatus checker ($STAMP) once into $BIN" >&2
	# A module of our own outside the source tree: nothing fetched lands in it.
	mkdir -p "$tmp/mod"
	cp "$HERE/kstatus/main.go" "$tmp/mod/"
	cat >"$tmp/mod/go.mod" <<MOD
module tasked.local/kstatus

go 1.24

require sigs.k8s.io/cli-utils $CLI_UTILS
MOD
	(
		cd "$tmp/mod"
		export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
		# Resolve the graph (writes go.sum), then build without debug info.
		go mod tidy >&2
		go build -trimpath -ldflags='-s -w' -o "$tmp/kstatus" . >&2
	)
	# The library must say Failed for a Stalled object and Current for a plain one.
	[ "$(printf '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"probe"}}' | "$tmp/kstatus" | cut -f3)" = Current ] &&
		[ "$(printf '{"apiVersion":"x/v1","kind":"X","metadata":{"name":"p","generation":1},"status":{"observedGeneration":1,"conditions":[{"type":"Stalled","status":"True"}]}}' |
			"$tmp/kstatus" | cut -f3)" = Failed ] ||
		{ echo "kstatus.sh: the built checker does not give the library's verdicts" >&2; exit 1; }
	mv -f "$tmp/kstatus" "$BIN/kstatus"
	printf '%s\n' "$STAMP" >"$BIN/kstatus.version"
	echo "kstatus.sh: built in $(($(date +%s) - t0))s" >&2
fi
printf '%s\n' "$BIN/kstatus"
