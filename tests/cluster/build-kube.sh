#!/usr/bin/env bash
# Builds etcd, kube-apiserver and kube-controller-manager from the Go module proxy at pinned
# versions into a cache outside the repository. Idempotent: a complete cache is left alone.
# Prints the directory holding the binaries on stdout.
#
#   build-kube.sh          the control plane (and kubectl when the machine has none)
#   build-kube.sh node     also what a node needs (tests/cluster/node.sh): kubelet,
#                          kube-scheduler and kube-proxy at the same version, crictl, and
#                          CoreDNS with only the plugins the cluster DNS uses, and
#                          kube-router's NetworkPolicy controller alone (see below)
set -euo pipefail
# shellcheck source=tests/cluster/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

WANT_NODE=0
case "${1:-}" in
'') ;;
node) WANT_NODE=1 ;;
*) echo "usage: build-kube.sh [node]" >&2; exit 2 ;;
esac
CRICTL_VERSION=${TASKED_CRICTL_VERSION:-1.34.0}
COREDNS_VERSION=${TASKED_COREDNS_VERSION:-1.12.4}
KUBE_ROUTER_VERSION=${TASKED_KUBE_ROUTER_VERSION:-2.1.0}

KV=${TASKED_KUBE_VERSION:-1.33.4}
EV=${TASKED_ETCD_VERSION:-3.5.21}
SV=0.${KV#1.}
MINOR=$(echo "$KV" | cut -d. -f2)

if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ] &&
   [ -x "$KUBEBUILDER_ASSETS/etcd" ]; then
	echo "$KUBEBUILDER_ASSETS"
	exit 0
fi

cache=$(tasked_cache)
out="$cache/kube-$KV-etcd-$EV"
node_complete() {
	local b
	for b in kubelet kube-scheduler kube-proxy "crictl-$CRICTL_VERSION" "coredns-$COREDNS_VERSION" \
		"netpol-kube-router-$KUBE_ROUTER_VERSION"; do
		[ -x "$out/$b" ] || return 1
	done
}
# One build at a time per cache: concurrent callers (parallel make targets, several checkouts)
# wait here and then find the cache complete instead of compiling it again into the same files.
mkdir -p "$cache"
exec 9>>"$cache/build-kube.lock"
flock 9
if [ -x "$out/kube-apiserver" ] && [ -x "$out/etcd" ] && [ -x "$out/kube-controller-manager" ] &&
   { command -v kubectl >/dev/null || [ -x "$out/kubectl" ]; } &&
   { [ "$WANT_NODE" = 0 ] || node_complete; }; then
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

# The node: kubelet, kube-scheduler, kube-proxy from the same wrapper module (the Go build
# cache is shared with the control plane's build, so this is mostly linking).
if [ "$WANT_NODE" = 1 ]; then
	if [ ! -x "$out/kubelet" ] || [ ! -x "$out/kube-scheduler" ] || [ ! -x "$out/kube-proxy" ]; then
		log "building kubelet, kube-scheduler and kube-proxy v$KV (first time only, several minutes)"
		kube_module "$work/node"
		printf '//go:build tools\n\npackage tools\n\nimport (\n\t_ "k8s.io/kubernetes/cmd/kubelet"\n\t_ "k8s.io/kubernetes/cmd/kube-scheduler"\n\t_ "k8s.io/kubernetes/cmd/kube-proxy"\n)\n' >tools.go
		go mod tidy >&2
		V=k8s.io/component-base/version
		LDF="-s -w -X $V.gitVersion=v$KV -X $V.gitMajor=1 -X $V.gitMinor=$MINOR -X $V.gitTreeState=clean -X $V.buildDate=1970-01-01T00:00:00Z"
		for c in kubelet kube-scheduler kube-proxy; do
			[ -x "$out/$c" ] && continue
			CGO_ENABLED=0 go build -trimpath -ldflags "$LDF" -o "$out/$c.tmp" "k8s.io/kubernetes/cmd/$c" >&2
			mv "$out/$c.tmp" "$out/$c"
		done
		cd "$work" && rm -rf "$work/node"
	fi
	# crictl: stopping the node removes every pod sandbox through the CRI first (network
	# teardown, shims, mounts), which containerd's own ctr does not do.
	if [ ! -x "$out/crictl-$CRICTL_VERSION" ]; then
		log "building crictl v$CRICTL_VERSION (first time only)"
		mkdir "$work/crictl" && cd "$work/crictl"
		go mod init crictlbin.invalid >/dev/null 2>&1
		printf '//go:build tools\n\npackage tools\n\nimport _ "sigs.k8s.io/cri-tools/cmd/crictl"\n' >tools.go
		go get "sigs.k8s.io/cri-tools@v$CRICTL_VERSION" >&2
		go mod tidy >&2
		CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=v$CRICTL_VERSION" \
			-o "$out/crictl.tmp" sigs.k8s.io/cri-tools/cmd/crictl >&2
		mv "$out/crictl.tmp" "$out/crictl-$CRICTL_VERSION"
		cd "$work" && rm -rf "$work/crictl"
	fi
	# CoreDNS with the plugins the cluster zone needs and nothing that talks to the outside
	# (no forward, no cloud back ends): a small main package of our own, as CoreDNS documents
	# for custom builds.
	if [ ! -x "$out/coredns-$COREDNS_VERSION" ]; then
		log "building CoreDNS v$COREDNS_VERSION (first time only)"
		mkdir "$work/coredns" && cd "$work/coredns"
		go mod init corednsbin.invalid >/dev/null 2>&1
		cat >main.go <<-'EOF'
			package main

			import (
				"github.com/coredns/coredns/core/dnsserver"
				"github.com/coredns/coredns/coremain"

				_ "github.com/coredns/coredns/plugin/cache"
				_ "github.com/coredns/coredns/plugin/errors"
				_ "github.com/coredns/coredns/plugin/health"
				_ "github.com/coredns/coredns/plugin/kubernetes"
				_ "github.com/coredns/coredns/plugin/loadbalance"
				_ "github.com/coredns/coredns/plugin/log"
				_ "github.com/coredns/coredns/plugin/ready"
			)

			// The order in which the plugins handle a query (CoreDNS's plugin.cfg order).
			func init() {
				dnsserver.Directives = []string{"log", "health", "ready", "errors", "loadbalance", "cache", "kubernetes"}
			}

			func main() { coremain.Run() }
		EOF
		go get "github.com/coredns/coredns@v$COREDNS_VERSION" >&2
		go mod tidy >&2
		CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/coredns.tmp" . >&2
		mv "$out/coredns.tmp" "$out/coredns-$COREDNS_VERSION"
		cd "$work" && rm -rf "$work/coredns"
	fi
	# NetworkPolicy: SIG Network's kube-network-policies (v0.6.1 to v0.8.0, all the proxy
	# serves) sends packets to user space with the nftables "queue" statement, which needs
	# CONFIG_NFT_QUEUE; kernels without it (the iptables NFQUEUE target is a different option)
	# refuse its rules. kube-router's firewall needs only iptables and ipset. Its other parts
	# (BGP routing, IPVS service proxy) are not wanted here, so a small main package of our own
	# runs its NetworkPolicy controller alone, on kube-router's own flags.
	if [ ! -x "$out/netpol-kube-router-$KUBE_ROUTER_VERSION" ]; then
		log "building kube-router's NetworkPolicy controller v$KUBE_ROUTER_VERSION (first time only)"
		mkdir "$work/netpol" && cd "$work/netpol"
		go mod init netpolbin.invalid >/dev/null 2>&1
		cat >main.go <<-'EOF'
			package main

			import (
				"os"
				"os/signal"
				"sync"
				"syscall"

				"github.com/cloudnativelabs/kube-router/v2/pkg/controllers/netpol"
				"github.com/cloudnativelabs/kube-router/v2/pkg/healthcheck"
				"github.com/cloudnativelabs/kube-router/v2/pkg/options"
				"github.com/spf13/pflag"
				"k8s.io/client-go/informers"
				"k8s.io/client-go/kubernetes"
				"k8s.io/client-go/tools/clientcmd"
				"k8s.io/klog/v2"
			)

			func main() {
				config := options.NewKubeRouterConfig()
				config.AddFlags(pflag.CommandLine)
				pflag.Parse()
				config.RunFirewall = true
				rest, err := clientcmd.BuildConfigFromFlags("", config.Kubeconfig)
				if err != nil {
					klog.Fatalf("kubeconfig: %v", err)
				}
				client := kubernetes.NewForConfigOrDie(rest)
				factory := informers.NewSharedInformerFactory(client, 0)
				pods := factory.Core().V1().Pods().Informer()
				namespaces := factory.Core().V1().Namespaces().Informer()
				policies := factory.Networking().V1().NetworkPolicies().Informer()
				stop := make(chan struct{})
				factory.Start(stop)
				factory.WaitForCacheSync(stop)

				ipt, ips, err := netpol.NewIPTablesHandlers(config)
				if err != nil {
					klog.Fatalf("iptables handlers: %v", err)
				}
				var ipsetMutex sync.Mutex
				npc, err := netpol.NewNetworkPolicyController(client, config, pods, policies, namespaces, &ipsetMutex, ipt, ips)
				if err != nil {
					klog.Fatalf("network policy controller: %v", err)
				}
				if _, err := pods.AddEventHandler(npc.PodEventHandler); err != nil {
					klog.Fatal(err)
				}
				if _, err := namespaces.AddEventHandler(npc.NamespaceEventHandler); err != nil {
					klog.Fatal(err)
				}
				if _, err := policies.AddEventHandler(npc.NetworkPolicyEventHandler); err != nil {
					klog.Fatal(err)
				}
				health := make(chan *healthcheck.ControllerHeartbeat, 10)
				go func() {
					for range health {
					}
				}()
				var wg sync.WaitGroup
				wg.Add(1)
				go npc.Run(health, stop, &wg)

				sig := make(chan os.Signal, 1)
				signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
				<-sig
				close(stop)
				wg.Wait()
			}
		EOF
		go get "github.com/cloudnativelabs/kube-router/v2@v$KUBE_ROUTER_VERSION" >&2
		go mod tidy >&2
		CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/netpol.tmp" . >&2
		mv "$out/netpol.tmp" "$out/netpol-kube-router-$KUBE_ROUTER_VERSION"
		cd "$work" && rm -rf "$work/netpol"
	fi
fi
echo "$out"
