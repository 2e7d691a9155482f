#!/usr/bin/env bash
# `make up` with a node (the default; TASKED_NODE=0 runs up.sh's host processes instead):
# the control plane on the node's address, the node (node.sh), then Tasked installed the way
# users install it: its images imported into the node's containerd and `helm upgrade --install`
# of charts/tasked with the hardened defaults. The controller runs in a pod with its runner
# sidecars; the runners use the runner-with-tools image (docs/images.md) so the examples'
# programs exist. Writes the same contract as up.sh into the state directory: kubeconfig,
# api-url (the controller Service, reachable from the host), api-key, runner-token.
#
# Environment: TASKED_STATE_DIR, TASKED_NAMESPACE (default tasked-system), TASKED_RELEASE
# (default tasked), TASKED_HELM_ARGS (extra helm flags, split on spaces), TASKED_READY_TIMEOUT,
# TASKED_NODE_IMAGES (more local Docker images to import into the node).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=tests/cluster/lib.sh
. "$here/lib.sh"

STATE=${TASKED_STATE_DIR:-.tasked}
case "$STATE" in /*) ;; *) STATE=$root/${STATE#./} ;; esac
STATE=${STATE%/}
NS=${TASKED_NAMESPACE:-tasked-system}
REL=${TASKED_RELEASE:-tasked}
READY_TIMEOUT=${TASKED_READY_TIMEOUT:-180}
TAG=$(cat "$root/VERSION" 2>/dev/null || echo 0.0.0)

command -v kubectl >/dev/null || die "kubectl is required (Debian: kubernetes-client)"
HELM=$("$here/../helm/build-helm.sh") || die "building Helm failed (tests/helm/build-helm.sh)"
for i in "tasked-controller:$TAG" "tasked-runner:$TAG"; do
	docker image inspect "$i" >/dev/null 2>&1 || die "no image $i: build it with 'make images' (or use 'make up')"
done

t0=$(now_ms)
mkdir -p "$STATE"
"$here/node.sh" net "$STATE"
TASKED_CP_ADDRESS=$NODE_IP "$here/controlplane.sh" start "$STATE"
export KUBECONFIG=$STATE/kubeconfig
"$here/node.sh" start "$STATE"

# --- images: the runner with tools (docs/images.md) ---------------------------------------------
# Debian's static busybox (its applets as links), getent and prlimit with the libraries they
# need beyond the runner image's glibc: enough for examples/.
ctx=$root/build/node-images/runner-tools
rm -rf "$ctx"
mkdir -p "$ctx/tools" "$ctx/libs"
[ -x /bin/busybox ] || die "/bin/busybox is missing (Debian: busybox-static)"
readelf -l /bin/busybox 2>/dev/null | grep INTERP >/dev/null &&
	die "/bin/busybox is not static (Debian: busybox-static, not busybox)"
install -m 0755 /bin/busybox "$ctx/tools/busybox"
for t in getent prlimit; do
	p=$(command -v "$t") || die "$t is missing (Debian: libc-bin, util-linux)"
	install -m 0755 "$p" "$ctx/tools/$t"
	while read -r lib; do
		case "$lib" in */libc.so.* | */ld-linux*) continue ;; esac # in the runner image
		mkdir -p "$ctx/libs$(dirname "$lib")"
		cp -L "$lib" "$ctx/libs$lib"
		chmod 0755 "$ctx/libs$lib"
	done < <(ldd "$p" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }')
done
for a in $(/bin/busybox --list); do
	[ -e "$ctx/tools/$a" ] || ln -s busybox "$ctx/tools/$a"
done
find "$ctx/libs" -type d -exec chmod 0755 {} +
docker build -q -f "$here/images/runner-tools.Dockerfile" \
	--build-arg "RUNNER_IMAGE=tasked-runner:$TAG" -t "tasked-runner-tools:$TAG" "$ctx" >"$ctx.log" 2>&1 || {
	cat "$ctx.log" >&2
	die "building tasked-runner-tools:$TAG failed"
}
# kubectl for `helm test`'s wait pod (the chart's default is registry.k8s.io/kubectl, which
# the node cannot pull): the kubectl the cluster scripts use, when static.
kctx=$root/build/node-images/kubectl
rm -rf "$kctx"
mkdir -p "$kctx"
kbin=$(command -v kubectl)
readelf -l "$kbin" 2>/dev/null | grep INTERP >/dev/null &&
	die "$kbin is not static: the helm test image needs a static kubectl"
install -m 0755 "$kbin" "$kctx/kubectl"
docker build -q -f "$here/images/kubectl.Dockerfile" -t tasked-kubectl:local "$kctx" >"$kctx.log" 2>&1 || {
	cat "$kctx.log" >&2
	die "building tasked-kubectl:local failed"
}
# TASKED_NODE_IMAGES: more Docker images to import (space-separated; make bench-node's).
# shellcheck disable=SC2086 # a list of image names
imported=$("$here/node.sh" import "$STATE" "tasked-controller:$TAG" "tasked-runner:$TAG" \
	"tasked-runner-tools:$TAG" tasked-kubectl:local ${TASKED_NODE_IMAGES:-})
[ -z "$imported" ] || printf '%s\n' "$imported"

# --- helm install ------------------------------------------------------------------------------
helm_args=(--set "runner.image.repository=tasked-runner-tools"
	--set tests.kubectl.image.repository=tasked-kubectl --set tests.kubectl.image.tag=local)
if [ "$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null)" != Y ]; then
	echo "AppArmor is not enabled on this node: installing with appArmor.type=None (the kubelet rejects pods that ask for a profile)"
	helm_args+=(--set appArmor.type=None)
fi
# Helm installs the chart's CRDs on first install and never upgrades them; docs/install.md tells
# users to apply them after an upgrade, so do that (a state directory outlives CRD changes).
kubectl apply --server-side --force-conflicts --field-manager=tasked-up -f "$root/charts/tasked/crds/" >/dev/null ||
	die "applying charts/tasked/crds failed"
# As docs/install.md says: a namespace that enforces the restricted Pod Security Standard.
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl label --overwrite namespace "$NS" pod-security.kubernetes.io/enforce=restricted >/dev/null
# shellcheck disable=SC2086 # extra flags are meant to split on spaces
"$HELM" upgrade --install "$REL" "$root/charts/tasked" --namespace "$NS" \
	--wait --timeout "${READY_TIMEOUT}s" "${helm_args[@]}" ${TASKED_HELM_ARGS:-} >"$STATE/helm.log" 2>&1 || {
	cat "$STATE/helm.log" >&2
	kubectl -n "$NS" get pods -o wide >&2 || true
	kubectl -n "$NS" describe pods >&2 || true
	die "helm install of charts/tasked failed"
}

# Same tags, new images (a rebuild): the running pods still have the old ones.
if [ -n "$imported" ] && [ -n "$(kubectl -n "$NS" get pods -l "app.kubernetes.io/instance=$REL" -o name)" ]; then
	kubectl -n "$NS" rollout restart deployment -l "app.kubernetes.io/instance=$REL" >/dev/null
	kubectl -n "$NS" rollout status deployment -l "app.kubernetes.io/instance=$REL" --timeout="${READY_TIMEOUT}s" >/dev/null ||
		die "the release's pods did not roll out with the new images (kubectl -n $NS get pods)"
	echo "restarted the release's pods on the new images"
fi

# --- the contract for clients on the host --------------------------------------------------------
fullname=$REL
case "$REL" in *tasked*) ;; *) fullname=$REL-tasked ;; esac
secret() { # NAME KEY FILE
	(
		umask 077
		kubectl -n "$NS" get secret "$1" -o "jsonpath={.data.$2}" | base64 -d >"$STATE/$3.tmp"
	)
	[ -s "$STATE/$3.tmp" ] || die "no $2 in Secret $NS/$1"
	mv "$STATE/$3.tmp" "$STATE/$3"
}
secret "$fullname-api-key" api-key api-key
secret "$fullname-runner-token" runner-token runner-token
ip=$(kubectl -n "$NS" get svc "$fullname" -o jsonpath='{.spec.clusterIP}')
port=$(kubectl -n "$NS" get svc "$fullname" -o jsonpath='{.spec.ports[0].port}')
API_URL=http://$ip:$port
printf '%s\n' "$API_URL" >"$STATE/api-url"
printf 'NAMESPACE=%s\nRELEASE=%s\nFULLNAME=%s\n' "$NS" "$REL" "$fullname" >"$STATE/release.env"

controller_ready() {
	printf 'X-API-Key: %s\n' "$(cat "$STATE/api-key")" |
		curl -fsS --max-time 2 -o /dev/null -H @- "$API_URL/readyz" 2>/dev/null
}
deadline=$(($(now_ms) + READY_TIMEOUT * 1000))
until controller_ready; do
	[ "$(now_ms)" -lt "$deadline" ] || die "the controller's API at $API_URL does not answer /readyz"
	sleep 0.5
done

t1=$(now_ms)
rel=${STATE#"$root"/}
down="make down"
[ "$STATE" = "$root/.tasked" ] || down="TASKED_STATE_DIR=$STATE make down"
cat <<EOF
Tasked is up on node $NODE_NAME ($(((t1 - t0) / 1000)).$(printf '%03d' $(((t1 - t0) % 1000)))s).
  export KUBECONFIG=$STATE/kubeconfig
  pods:    kubectl -n $NS get pods -o wide
  API:     $API_URL   (key in $rel/api-key; curl -H "X-API-Key: \$(cat $rel/api-key)" $API_URL/api/v1/tasks)
  logs:    kubectl -n $NS logs deploy/$fullname -c controller (or -c runner-0); node: $rel/node/*.log
  try:     kubectl apply -f examples/ && kubectl get tasks -w
  stop:    $down
EOF
