#!/usr/bin/env bash
# Builds Tekton Pipelines from the Go module proxy at a pinned version into the cache outside
# the repository (as build-kube.sh does for Kubernetes), for bench/tekton.sh. Idempotent: a
# complete cache is left alone. Prints the directory on stdout.
#
#   build-tekton.sh          the static binaries (CGO_ENABLED=0) and the release's config/
#   build-tekton.sh images   also a Docker image FROM scratch for each, tagged locally
#                            tekton-NAME:vVERSION (Docker tags are shared machine-wide: run
#                            this inside the node lock, as `make images`)
#
# What a TaskRun needs: the controller and the webhook (defaulting, validation, CRD conversion),
# and the images the controller puts into a TaskRun's pod, which it is given by flags
# (config/controller.yaml): entrypoint (the "prepare" init container copies it into the pod;
# every step runs under it), nop (stops sidecars), workingdirinit (only for a step with a
# workingDir), sidecarlogresults (only with results-from: sidecar-logs). The flags are
# required, so all four are built. Not built: cmd/events (CloudEvents) and cmd/resolvers
# (remote Tasks from git, bundles, hub): a TaskRun with an inline taskSpec uses neither. The
# -shell-image flag (busybox, for script steps) names a registry image that is never pulled here:
# steps with a command do not use it.
#
# Upstream builds the images with ko onto a distroless static base: the binary at
# /ko-app/NAME (the controller's pod specs name that path), user 65532. The images here have
# the binary alone at the same path.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/cluster/lib.sh
. "$here/lib.sh"

WANT_IMAGES=0
case "${1:-}" in
'') ;;
images) WANT_IMAGES=1 ;;
*) echo "usage: build-tekton.sh [images]" >&2; exit 2 ;;
esac
TV=${TASKED_TEKTON_VERSION:-1.6.0}
MOD=github.com/tektoncd/pipeline
BINS="controller webhook entrypoint nop workingdirinit sidecarlogresults"
out=$(tasked_cache)/tekton-$TV
log() { echo "build-tekton: $*" >&2; }

complete() {
	local b
	[ -d "$out/config" ] || return 1
	for b in $BINS; do [ -x "$out/$b" ] || return 1; done
}

if ! complete; then
	command -v go >/dev/null || die "go is required"
	mkdir -p "$out"
	work=$(mktemp -d "$(tasked_cache)/build.XXXXXX")
	trap 'rm -rf "$work"' EXIT
	t0=$(date +%s)
	log "building Tekton Pipelines v$TV (first time only; a cold build is several minutes)"
	# The module's own go.mod (its replace directives apply only to the main module), so the
	# build runs in a copy of its source.
	info=$(go mod download -json "$MOD@v$TV") || die "the Go module proxy did not serve $MOD@v$TV"
	src=$(jq -r .Dir <<<"$info")
	rev=$(jq -r '.Origin.Hash // empty' <<<"$info")
	cp -r "$src" "$work/src"
	chmod -R u+w "$work/src"
	cd "$work/src"
	# changeset.rev is what Tekton writes into each pod's pipeline.tekton.dev/release annotation
	# (ko's builds take it from the VCS stamp, which a module zip has not).
	pkgs=()
	for b in $BINS; do pkgs+=("./cmd/$b"); done
	mkdir -p "$work/bin"
	CGO_ENABLED=0 nice -n 10 go build -trimpath \
		-ldflags "-s -w -X knative.dev/pkg/changeset.rev=${rev:0:12}" \
		-o "$work/bin/" "${pkgs[@]}" >&2
	rm -rf "$out/config"
	cp -r "$work/src/config" "$out/config"
	chmod -R u+w "$out/config"
	for b in $BINS; do mv "$work/bin/$b" "$out/$b"; done
	printf '%s\n' "${rev:-unknown}" >"$out/revision"
	log "built in $(($(date +%s) - t0)) s: $BINS"
fi

if [ "$WANT_IMAGES" = 1 ]; then
	command -v docker >/dev/null || die "docker is required for the images"
	ctx=$(mktemp -d)
	trap 'rm -rf "$ctx"' EXIT
	for b in $BINS; do
		cp "$out/$b" "$ctx/$b"
		printf 'FROM scratch\nCOPY %s /ko-app/%s\nUSER 65532:65532\nENTRYPOINT ["/ko-app/%s"]\n' \
			"$b" "$b" "$b" >"$ctx/Dockerfile"
		docker build -q -t "tekton-$b:v$TV" "$ctx" >/dev/null || die "docker build of tekton-$b failed"
		rm -f "$ctx/$b"
	done
	log "images: $(for b in $BINS; do printf 'tekton-%s:v%s ' "$b" "$TV"; done)"
fi
echo "$out"
