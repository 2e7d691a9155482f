# Helpers for the chart and manifest tests (sourced by tests/integration/6*.t after lib.sh).
# shellcheck shell=bash

HELM=$("$IT_ROOT/tests/helm/build-helm.sh") || {
	echo "Bail out! building helm failed (tests/helm/build-helm.sh)"
	exit 255
}
CHART=$IT_ROOT/charts/tasked
# The value sets every chart test renders: the defaults and each file in tests/helm/values/.
VALUE_SETS=(default)
for _f in "$IT_ROOT"/tests/helm/values/*.yaml; do
	VALUE_SETS+=("$(basename "$_f" .yaml)")
done
unset _f
command -v jq >/dev/null || {
	echo "Bail out! jq is required (Debian: jq)"
	exit 255
}

# values_args SET: the helm arguments selecting value set SET.
values_args() {
	[ "$1" = default ] || printf -- '-f\n%s\n' "$IT_ROOT/tests/helm/values/$1.yaml"
}

# render SET NAMESPACE [HELM ARGS...]: helm template of the chart (release "t") as YAML.
render() {
	local set=$1 ns=$2 args
	shift 2
	mapfile -t args < <(values_args "$set")
	"$HELM" template t "$CHART" --namespace "$ns" "${args[@]}" "$@"
}

# to_json: YAML documents on stdin to one JSON array (kubectl parses, nothing is sent).
to_json() {
	kubectl --kubeconfig "$KUBECONFIG" create --dry-run=client --validate=false -o json -f - | jq -s .
}

# pod_specs: a JSON array of objects on stdin to one Pod per pod template (Deployments,
# DaemonSets, StatefulSets, ReplicaSets, Jobs) or Pod, one compact JSON document per line.
# The Pod is named after its workload; its namespace is left to the caller.
pod_specs() {
	jq -c '.[] | select(.kind == "Deployment" or .kind == "DaemonSet" or .kind == "StatefulSet"
		or .kind == "ReplicaSet" or .kind == "Job" or .kind == "Pod")
		| if .kind == "Pod" then
			{apiVersion: "v1", kind: "Pod", metadata: {name: .metadata.name, labels: (.metadata.labels // {})}, spec: .spec}
		  else
			{apiVersion: "v1", kind: "Pod",
			 metadata: {name: ((.kind | ascii_downcase) + "-" + .metadata.name), labels: (.spec.template.metadata.labels // {})},
			 spec: .spec.template.spec}
		  end'
}
