# Helpers for the node suites (sourced after ../lib.sh): the release up-node.sh installed, a
# probe pod with busybox in a test namespace, and exec into containers.
# shellcheck shell=bash
. "$IT_ROOT/tests/cluster/lib.sh"

STATE=${TASKED_STATE_DIR:-.tasked}
case "$STATE" in /*) ;; *) STATE=$IT_ROOT/$STATE ;; esac
if [ ! -r "$STATE/release.env" ]; then
	echo "Bail out! no Tasked release on a node in $STATE (run with tests/integration/run.sh)"
	exit 255
fi
# shellcheck disable=SC1091
. "$STATE/release.env" # NAMESPACE RELEASE FULLNAME
TAG=$(cat "$IT_ROOT/VERSION")
TOOLS_IMAGE=tasked-runner-tools:$TAG
# shellcheck disable=SC2034 # used by the suites that source this
HELM=$("$IT_ROOT/tests/helm/build-helm.sh")

# kr ARGS...: kubectl in the release's namespace.
kr() { kubectl --kubeconfig "$KUBECONFIG" --namespace "$NAMESPACE" "$@"; }

# running_pod SELECTOR: the name of a Running pod matching SELECTOR in the release namespace
# that is not being deleted (a terminating pod stays phase Running for its grace period).
running_pod() {
	kr get pods -l "$1" -o json | jq -r '[.items[] | select(.metadata.deletionTimestamp == null
		and .status.phase == "Running")][0].metadata.name // empty'
}
# controller_pod: the name of the running controller pod.
controller_pod() { running_pod app.kubernetes.io/component=controller; }

# probe_pod NAME [LABELS_JSON]: a restricted busybox pod (the runner-with-tools image) in the
# test namespace, waited for until Ready.
probe_pod() {
	local name=$1 labels=${2:-'{}'}
	k apply -f - >/dev/null <<-EOF
		apiVersion: v1
		kind: Pod
		metadata: {name: $name, labels: $labels}
		spec:
		  automountServiceAccountToken: false
		  terminationGracePeriodSeconds: 1
		  securityContext:
		    runAsNonRoot: true
		    runAsUser: 65532
		    runAsGroup: 65532
		    seccompProfile: {type: RuntimeDefault}
		  containers:
		    - name: probe
		      image: $TOOLS_IMAGE
		      imagePullPolicy: Never
		      command: [/usr/local/bin/sleep, "3600"]
		      securityContext:
		        allowPrivilegeEscalation: false
		        readOnlyRootFilesystem: true
		        capabilities: {drop: [ALL]}
	EOF
	k wait --for=condition=Ready "pod/$name" --timeout=120s >/dev/null
}

# in_probe NAME CMD...: run CMD in the probe pod.
in_probe() {
	local name=$1
	shift
	k exec "$name" -c probe -- "$@"
}
