#!/usr/bin/env bash
# Builds etcd, kube-apiserver and kube-controller-manager from the Go module proxy at pinned
# versions into a cache outside the repository. Idempotent: a complete cache is left alone.
# Prints the directory holding the binaries on stdout.
set -euo pipefail

KV=${TASKED_KUBE_VERSION:-1.33.4}
EV=${TASKED_ETCD_VERSION:-3.5.21}
SV=0.${KV#1.}
MINOR=$(echo "$KV" | cut -d. -f2)

if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ] &&
   [ -x "$KUBEBUILDER_ASSETS/etcd" ]; then
	echo "$KUBEBUILDER_ASSETS"
	exit 0
fi

cache=${TASKED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tasked}
out="$cache/kube-$KV-etcd-$EV"
if [ -x "$out/kube-apiserver" ] && [ -x "$out/etcd" ] && [ -x "$out/kube-controller-manager" ] &&
   { command -v kubectl >/dev/null || [ -x "$out/kubectl" ]; }; then
	echo "$out"
	exit 0
fi

command -v go >/dev/null || { echo "build-kube: go is required (https://go.dev/dl)" >&2; exit 1; }
mkdir -p "$out"
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
log() { echo "build-kube: $*" >&2; }

# A wrapper module requiring k8s.io/kubernetes, whose go.mod asks for its staging modules at
# v0.0.0: replace each with the published v0.Y.Z tag.
kube_module() {
	mkdir -p "$1" && cd "$1"
	go mod init kubebins.invalid >/dev/null 2>&1
	go mod edit -require="k8s.io/kubernetes@v$KV"
	for m in api apiextensions-apiserver apimachinery apiserver cli-runtime client-go \
		cloud-provider cluster-bootstrap code-generator component-base component-helpers \
		controller-manager cri-api cri-client csi-translation-lib dynamic-resource-allocation \
		endpointslice externaljwt kms kube-aggregator kube-controller-manager kube-proxy \
		kube-scheduler kubectl kubelet metrics mount-utils pod-security-admission \
		sample-apiserver sample-cli-plugin sample-controller; do
		go mod edit -replace="k8s.io/$m=k8s.io/$m@v$SV"
	done
}

# etcd: its server module carries replace directives, so wrap etcdmain in a module of our own.
if [ ! -x "$out/etcd" ]; then
	log "building etcd v$EV (first time only)"
	mkdir "$work/etcd" && cd "$work/etcd"
	go mod init etcdbin.invalid >/dev/null 2>&1
	printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' >main.go
	go get "go.etcd.io/etcd/server/v3@v$EV" >&2
	go mod tidy >&2
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/etcd.tmp" . >&2
	mv "$out/etcd.tmp" "$out/etcd"
fi

# kube-apiserver and kube-controller-manager
if [ ! -x "$out/kube-apiserver" ] || [ ! -x "$out/kube-controller-manager" ]; then
	log "building kube-apiserver and kube-controller-manager v$KV (first time only, several minutes)"
	kube_module "$work/kube"
	printf '//go:build tools\n\npackage tools\n\nimport (\n\t_ "k8s.io/kubernetes/cmd/kube-apiserver"\n\t_ "k8s.io/kubernetes/cmd/kube-controller-manager"\n)\n' >tools.go
	go mod tidy >&2
	V=k8s.io/component-base/version
	LDF="-s -w -X $V.gitVersion=v$KV -X $V.gitMajor=1 -X $V.gitMinor=$MINOR -X $V.gitTreeState=clean -X $V.buildDate=1970-01-01T00:00:00Z"
	CGO_ENABLED=0 go build -trimpath -ldflags "$LDF" -o "$out/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver >&2
	mv "$out/kube-apiserver.tmp" "$out/kube-apiserver"
	CGO_ENABLED=0 go build -trimpath -ldflags "$LDF" -o "$out/kube-controller-manager.tmp" k8s.io/kubernetes/cmd/kube-controller-manager >&2
	mv "$out/kube-controller-manager.tmp" "$out/kube-controller-manager"
	cd "$work" && rm -rf "$work/kube"
fi

# kubectl: the machine's own is used when present; otherwise build the matching one, which the
# cluster scripts put on PATH.
if ! command -v kubectl >/dev/null && [ ! -x "$out/kubectl" ]; then
	log "building kubectl v$KV (kubectl not found on PATH)"
	kube_module "$work/kubectl"
	printf '//go:build tools\n\npackage tools\n\nimport _ "k8s.io/kubernetes/cmd/kubectl"\n' >tools.go
	go mod tidy >&2
	V=k8s.io/component-base/version
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X $V.gitVersion=v$KV -X $V.gitMajor=1 -X $V.gitMinor=$MINOR" \
		-o "$out/kubectl.tmp" k8s.io/kubernetes/cmd/kubectl >&2
	mv "$out/kubectl.tmp" "$out/kubectl"
fi
echo "$out"
