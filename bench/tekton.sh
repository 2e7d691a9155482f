#!/usr/bin/env bash
# A Tekton Pipelines TaskRun row beside bench/node.sh's rows, on the real node, in the same run.
#
#   bench/tekton.sh   (`make bench-tekton`) builds Tekton (tests/cluster/build-tekton.sh: from
#                     the Go module proxy, images FROM scratch), then runs bench/node.sh with
#                     TASKED_BENCH_TEKTON=1 and BENCH_NODE_ROWS [sidecar tekton], so the Tasked
#                     sidecar warm row is measured in the same run; results in
#                     build/bench/tekton-out (BENCH_NODE_OUT_DIR), docs untouched unless
#                     BENCH_NO_DOCS=0. Checks at the end that nothing of Tekton is left.
#   sourced by bench/node.sh when TASKED_BENCH_TEKTON=1: defines tekton_row, which uses
#                     node.sh's own helpers (row, clean_ns, apimetrics, ...) so the TaskRun row
#                     is measured exactly as the others and report-node.sh reads it.
#
# The row: Tekton's release manifests rendered from the module's config/ (the ko:// image
# references replaced by the local tags; not installed: the events controller, the remote
# resolvers and the webhook's HorizontalPodAutoscaler, which a TaskRun with an inline taskSpec
# does not use), installed into the node, its images imported into the node's containerd
# (tests/cluster/node.sh import); feature flags changed from the release's: set-security-context
# and set-security-context-read-only-root-filesystem (so its init container passes the
# namespace's restricted Pod Security level, as every other row's pods do), and
# running-in-environment-with-injected-sidecars false (Tekton's documented setting for a
# cluster without injected sidecars: the first step does not wait for the controller to mark
# the pod ready). Then BENCH_NODE_COUNT TaskRuns at BENCH_NODE_POD_RATE and a backlog of
# BENCH_NODE_POD_BACKLOG, as the rows that make a pod per run. Tekton is uninstalled after the
# row and the node is torn down by node.sh.
# shellcheck shell=bash

TEKTON_VERSION=${TASKED_TEKTON_VERSION:-1.6.0}
TEKTON_BINS="controller webhook entrypoint nop workingdirinit sidecarlogresults"
TEKTON_NS=tekton-pipelines

tekton_images() {
	local b
	for b in $TEKTON_BINS; do printf 'tekton-%s:v%s\n' "$b" "$TEKTON_VERSION"; done
}

# --- run directly: build, then bench/node.sh with the hook ---------------------------------------
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	set -euo pipefail
	here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
	root=$(cd "$here/.." && pwd)
	# shellcheck source=tests/cluster/lib.sh
	. "$root/tests/cluster/lib.sh"
	t0=$(date +%s)
	dir=$("$root/tests/cluster/build-tekton.sh" images) || die "building Tekton failed"
	echo "bench-tekton: Tekton v$TEKTON_VERSION in $dir, images ready ($(($(date +%s) - t0)) s)"
	export TASKED_BENCH_TEKTON=1
	export BENCH_NODE_ROWS=${BENCH_NODE_ROWS:-sidecar tekton}
	export BENCH_NO_DOCS=${BENCH_NO_DOCS:-1}
	export BENCH_NODE_OUT_DIR=${BENCH_NODE_OUT_DIR:-$root/build/bench/tekton-out}
	rc=0
	"$here/node.sh" || rc=$?
	# Nothing of Tekton may outlive the run: its processes (the binaries are /ko-app/NAME) and
	# its images in Docker (the build cache keeps the binaries).
	left=$(ps -eo pid=,args= | awk '$2 ~ /^\/ko-app\//' || true)
	if [ -n "$left" ]; then
		echo "bench-tekton: Tekton processes still running after the node went down:" >&2
		echo "$left" >&2
		[ "$rc" -ne 0 ] || rc=1
	fi
	mapfile -t imgs < <(tekton_images)
	docker image rm "${imgs[@]}" >/dev/null 2>&1 || true
	exit "$rc"
fi

# --- sourced by bench/node.sh ------------------------------------------------------------------

# tekton_manifest DIR: the release manifests of the module's config/ with local images.
tekton_manifest() {
	local c=$1/config f
	for f in "$c"/100-namespace/*.yaml "$c"/200-*.yaml "$c"/201-*.yaml "$c"/300-crds/*.yaml \
		"$c"/500-webhooks.yaml "$c"/clusterrole-aggregate-*.yaml "$c"/config-*.yaml \
		"$c"/controller.yaml "$c"/webhook.yaml; do
		[ -f "$f" ] || continue
		printf -- '---\n'
		# (and the version labels the release process sets in place of "devel")
		sed -e "s#ko://github.com/tektoncd/pipeline/cmd/\\([a-z]*\\)#tekton-\\1:v$TEKTON_VERSION#g" \
			-e "s#: \"devel\"\$#: \"v$TEKTON_VERSION\"#" "$f"
	done
}

# tekton_gone: nothing of Tekton in the cluster (its namespace, CRDs, admission webhooks,
# cluster roles) and no container of it on the node.
tekton_gone() {
	local what
	what=$(
		kubectl get namespace "$TEKTON_NS" -o name 2>/dev/null
		kubectl get crd -o name 2>/dev/null | grep 'tekton\.dev' || true
		kubectl get mutatingwebhookconfigurations,validatingwebhookconfigurations -o name 2>/dev/null |
			grep 'tekton\.dev' || true
		kubectl get clusterroles -o name 2>/dev/null | grep tekton || true
		kubectl get pods -A -l app.kubernetes.io/part-of=tekton-pipelines -o name 2>/dev/null
		kubectl -n "$NS" get pods -l tekton.dev/taskRun -o name 2>/dev/null
	)
	[ -z "$what" ] && return 0
	printf '%s\n' "$what" >&2
	return 1
}

tekton_uninstall() {
	local i
	[ -s "$OUT/tekton-manifest.yaml" ] || return 0
	kubectl -n "$NS" delete taskruns --all --wait=true --timeout=120s >/dev/null 2>&1 || true
	kubectl delete -f "$OUT/tekton-manifest.yaml" --ignore-not-found --wait=true --timeout=180s \
		>"$OUT/tekton-uninstall.log" 2>&1 || note "tekton: uninstall reported errors (see tekton-uninstall.log)"
	for ((i = 0; i < 60; i++)); do
		tekton_gone 2>/dev/null && { echo "tekton: uninstalled, nothing of it left in the cluster"; return 0; }
		sleep 1
	done
	tekton_gone 2>"$OUT/tekton-left.txt" || note "tekton: left behind after uninstall: $(tr '\n' ' ' <"$OUT/tekton-left.txt")"
}

tekton_row() {
	local dir i ok=0 tr t0
	local -a imgs
	dir=$(tasked_cache)/tekton-$TEKTON_VERSION
	if [ ! -x "$dir/controller" ] || [ ! -d "$dir/config" ]; then
		skip tekton "Tekton v$TEKTON_VERSION is not built: run tests/cluster/build-tekton.sh first (bench/tekton.sh does)"
		return 0
	fi
	step "tekton: images and install (Tekton Pipelines v$TEKTON_VERSION)"
	"$root/tests/cluster/build-tekton.sh" images >/dev/null 2>>"$OUT/tekton-install.log" ||
		{ skip tekton "the Tekton images could not be built (tekton-install.log)"; return 0; }
	# (sidecarlogresults, 51 MB, only with results-from: sidecar-logs: not imported)
	mapfile -t imgs < <(tekton_images | grep -v sidecarlogresults)
	"$root/tests/cluster/node.sh" import "$STATE" "${imgs[@]}" >>"$OUT/tekton-install.log" 2>&1 ||
		{ skip tekton "importing the Tekton images failed (tekton-install.log)"; return 0; }
	tekton_manifest "$dir" >"$OUT/tekton-manifest.yaml"
	t0=$(now_ms)
	# Server-side: the CRDs (up to 450 kB of schema) are too large for client-side apply's
	# last-applied annotation.
	kubectl apply --server-side -f "$OUT/tekton-manifest.yaml" >>"$OUT/tekton-install.log" 2>&1 ||
		{ tail -n 20 "$OUT/tekton-install.log" >&2; tekton_uninstall; skip tekton "kubectl apply of Tekton's manifests failed"; return 0; }
	kubectl -n "$TEKTON_NS" patch configmap feature-flags --type merge -p '{"data": {
		"set-security-context": "true", "set-security-context-read-only-root-filesystem": "true",
		"running-in-environment-with-injected-sidecars": "false"}}' >>"$OUT/tekton-install.log" 2>&1 ||
		{ tekton_uninstall; skip tekton "Tekton's feature flags could not be set (tekton-install.log)"; return 0; }
	kubectl -n "$TEKTON_NS" rollout status deploy/tekton-pipelines-controller deploy/tekton-pipelines-webhook \
		--timeout=180s >>"$OUT/tekton-install.log" 2>&1 || note "tekton: the deployments did not become ready"
	# Ready when the webhook admits a TaskRun (its certificate is made and patched into the
	# webhook configurations after it starts).
	tr=$(printf '{"apiVersion": "tekton.dev/v1", "kind": "TaskRun", "metadata": {"name": "probe"},
		"spec": {"taskSpec": {"steps": [{"name": "stamp", "image": "%s", "command": ["/stamp"]}]}}}' "$STAMP_IMAGE")
	for ((i = 0; i < 120; i++)); do
		if kubectl -n "$NS" create --dry-run=server -f - >/dev/null 2>>"$OUT/tekton-install.log" <<<"$tr"; then
			ok=1
			break
		fi
		sleep 1
	done
	echo "tekton: install to ready $(($(now_ms) - t0)) ms" | tee -a "$OUT/tekton-install.log"
	kubectl -n "$TEKTON_NS" get pods -o wide >>"$OUT/tekton-install.log" 2>&1 || true
	if [ "$ok" != 1 ]; then
		tail -n 20 "$OUT/tekton-install.log" >&2
		kubectl -n "$TEKTON_NS" logs deploy/tekton-pipelines-webhook --tail=50 >"$OUT/tekton-webhook.log" 2>&1 || true
		tekton_uninstall
		skip tekton "Tekton's webhook never admitted a TaskRun (tekton-install.log, tekton-webhook.log)"
		return 0
	fi
	# The TaskRuns go between runs too (their pods, labelled as the bench's, go with them).
	local kinds=$CLEAN_KINDS
	CLEAN_KINDS=$kinds,taskruns
	row tekton "$POD_RATE" "$POD_BACKLOG" --object taskrun --image "$STAMP_IMAGE" --command /stamp
	CLEAN_KINDS=$kinds
	kubectl -n "$TEKTON_NS" logs deploy/tekton-pipelines-controller --tail=200 >"$OUT/tekton-controller.log" 2>&1 || true
	step "tekton: uninstall"
	tekton_uninstall
}
