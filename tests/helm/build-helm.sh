#!/usr/bin/env bash
# Builds Helm from the Go module proxy at a pinned version into the same cache as the control
# plane binaries (tests/cluster/build-kube.sh). Idempotent: a cached build is reused.
# Prints the path of the helm binary on stdout.
#
# Environment:
#   TASKED_HELM_VERSION  Helm version to build (default 3.18.4; 3.18.x pairs with Kubernetes 1.33)
#   TASKED_HELM_KUBE_MINOR  Kubernetes 1.x that helm template/lint assume (default 33)
#   TASKED_CACHE         cache directory (default ${XDG_CACHE_HOME:-~/.cache}/tasked)
#   TASKED_HELM          use this helm binary instead of building one
set -euo pipefail

if [ -n "${TASKED_HELM:-}" ]; then
	[ -x "$TASKED_HELM" ] || { echo "build-helm: TASKED_HELM=$TASKED_HELM is not executable" >&2; exit 1; }
	printf '%s\n' "$TASKED_HELM"
	exit 0
fi

HV=${TASKED_HELM_VERSION:-3.18.4}
cache=${TASKED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tasked}
out="$cache/helm-$HV-k1.${TASKED_HELM_KUBE_MINOR:-33}"
if [ -x "$out/helm" ]; then
	printf '%s\n' "$out/helm"
	exit 0
fi

gobin=$(command -v go || true)
[ -n "$gobin" ] || { [ -x /usr/local/go/bin/go ] && gobin=/usr/local/go/bin/go; } ||
	{ echo "build-helm: go is required (https://go.dev/dl)" >&2; exit 1; }
mkdir -p "$out"
echo "build-helm: building helm v$HV with go install (first time only, a few minutes)" >&2
# GOBIN makes go install write the binary straight into the cache; a temporary directory
# first, so an interrupted build never leaves a half-written helm behind.
tmp=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# The ldflags Helm's own Makefile sets: without them `helm version` says nothing useful and
# `helm template`/`helm lint` assume Kubernetes 1.20 (the chart needs >= 1.30).
KM=${TASKED_HELM_KUBE_MINOR:-33}
LDF="-s -w -X helm.sh/helm/v3/internal/version.version=v$HV -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
	LDF="$LDF -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$KM"
done
GOBIN=$tmp CGO_ENABLED=0 "$gobin" install -trimpath -ldflags "$LDF" "helm.sh/helm/v3/cmd/helm@v$HV" >&2
"$tmp/helm" version --short | grep -q "^v$HV" || { echo "build-helm: the built helm does not run" >&2; exit 1; }
mv "$tmp/helm" "$out/helm"
printf '%s\n' "$out/helm"
