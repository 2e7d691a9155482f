#!/usr/bin/env bash
# Builds promtool (Prometheus' own checker for the text exposition format) once, through the
# Go module proxy, into the Tasked cache, and prints its path. Idempotent and safe to run from
# parallel suites (flock). The metrics integration test calls it.
#
#   tests/tools/promtool.sh            -> prints .../tasked/bin/promtool
#
# Environment: TASKED_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/tasked),
# TASKED_PROMTOOL (use this binary instead of building one).
#
# Why a wrapper module instead of `go install .../promtool@VERSION`: tags before v0.316.0 carry
# `replace` directives (go install refuses them), and v0.316.0 requires a pseudo-version of
# github.com/hashicorp/nomad/api that the module proxy refuses (403). The wrapper requires
# Prometheus v0.316.0 (= Prometheus 3.16.0) and pins nomad/api to the one v0.315.0 used, which
# only the Nomad service discovery code (unused by `promtool check metrics`) touches.
set -euo pipefail

PROM_VERSION=v0.316.0
NOMAD_API=v0.0.0-20260907080526-08ef8f3d26da
STAMP="prometheus $PROM_VERSION nomad/api $NOMAD_API"
CACHE=${TASKED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tasked}
BIN=$CACHE/bin

if [ -n "${TASKED_PROMTOOL:-}" ]; then
	[ -x "$TASKED_PROMTOOL" ] || { echo "promtool.sh: TASKED_PROMTOOL=$TASKED_PROMTOOL is not executable" >&2; exit 1; }
	printf '%s\n' "$TASKED_PROMTOOL"
	exit 0
fi

have() { [ -x "$BIN/promtool" ] && [ "$(cat "$BIN/promtool.version" 2>/dev/null)" = "$STAMP" ]; }
if have; then
	printf '%s\n' "$BIN/promtool"
	exit 0
fi

mkdir -p "$BIN"
exec 9>"$BIN/.promtool.lock"
flock 9
if ! have; then
	PATH=$PATH:/usr/local/go/bin
	command -v go >/dev/null || { echo "promtool.sh: Go is required to build promtool" >&2; exit 1; }
	tmp=$(mktemp -d "$BIN/.promtool-build.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	t0=$(date +%s)
	echo "promtool.sh: building promtool ($STAMP) once into $BIN" >&2
	mkdir -p "$tmp/mod"
	cat >"$tmp/mod/go.mod" <<MOD
module tasked.local/promtool

go 1.24

require github.com/prometheus/prometheus $PROM_VERSION

replace github.com/hashicorp/nomad/api => github.com/hashicorp/nomad/api $NOMAD_API
MOD
	(
		cd "$tmp/mod"
		export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
		# Resolve the graph (writes go.sum), then build without debug info.
		go get "github.com/prometheus/prometheus/cmd/promtool@$PROM_VERSION" >&2
		go build -trimpath -ldflags='-s -w' -o "$tmp/promtool" github.com/prometheus/prometheus/cmd/promtool >&2
	)
	"$tmp/promtool" --version >/dev/null
	mv -f "$tmp/promtool" "$BIN/promtool"
	printf '%s\n' "$STAMP" >"$BIN/promtool.version"
	echo "promtool.sh: built in $(($(date +%s) - t0))s" >&2
fi
printf '%s\n' "$BIN/promtool"
