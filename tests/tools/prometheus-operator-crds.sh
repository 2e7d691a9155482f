#!/usr/bin/env bash
# Fetches the Prometheus Operator's CRDs (ServiceMonitor, PrometheusRule) once, from its Go
# module through the Go module proxy (checksummed by sum.golang.org), into the Tasked cache,
# and prints the directory holding them. The chart's monitoring test applies them to the test
# API server so the rendered ServiceMonitor and PrometheusRule are validated by their real
# schemas.
#
#   tests/tools/prometheus-operator-crds.sh   -> prints .../tasked/prometheus-operator-crds-VERSION
#
# Environment: TASKED_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/tasked).
set -euo pipefail

VERSION=v0.80.1
MODULE=github.com/prometheus-operator/prometheus-operator
CACHE=${TASKED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tasked}
OUT=$CACHE/prometheus-operator-crds-$VERSION
FILES="monitoring.coreos.com_servicemonitors.yaml monitoring.coreos.com_prometheusrules.yaml"

have() {
	local f
	for f in $FILES; do [ -s "$OUT/$f" ] || return 1; done
}
if ! have; then
	mkdir -p "$CACHE"
	exec 9>"$CACHE/.prometheus-operator-crds.lock"
	flock 9
	if ! have; then
		PATH=$PATH:/usr/local/go/bin
		command -v go >/dev/null || { echo "prometheus-operator-crds.sh: Go is required" >&2; exit 1; }
		dir=$(GOFLAGS=-mod=mod GOTOOLCHAIN=local go mod download -json "$MODULE@$VERSION" | jq -r .Dir)
		[ -d "$dir/example/prometheus-operator-crd" ] || {
			echo "prometheus-operator-crds.sh: no example/prometheus-operator-crd in $MODULE@$VERSION" >&2
			exit 1
		}
		tmp=$(mktemp -d "$CACHE/.prometheus-operator-crds.XXXXXX")
		for f in $FILES; do cp "$dir/example/prometheus-operator-crd/$f" "$tmp/$f"; done
		rm -rf "$OUT"
		mv "$tmp" "$OUT"
	fi
fi
printf '%s\n' "$OUT"
