#!/usr/bin/env bash
# shellcheck disable=SC2317 # the render functions are called through "$fn"
# Renders the plain manifests in deploy/ from the Helm chart, so both install paths stay the
# same install:
#   deploy/base/tasked.yaml             the controller, runner sidecars, RBAC, Service,
#                                       NetworkPolicy, PDB (release "tasked", namespace
#                                       "tasked"; Secrets are created by the user)
#   deploy/apparmor-loader/loader.yaml  the optional AppArmor loader (namespace kube-system)
# Helm's own labels (helm.sh/chart, managed-by) are left out.
#
#   tests/helm/render-deploy.sh           write the files (`make deploy-manifests`)
#   tests/helm/render-deploy.sh --check   exit 1 when they differ from what the chart renders
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
helm=$("$root/tests/helm/build-helm.sh")
check=0
[ "${1:-}" = --check ] && check=1

header() {
	printf '# GENERATED from charts/tasked by tests/helm/render-deploy.sh (make deploy-manifests).\n'
	printf '# Do not edit: change the chart and render again.\n'
}
strip_helm() {
	grep -v -e '^ *helm\.sh/chart: ' -e '^ *app\.kubernetes\.io/managed-by: Helm$'
}

render_base() {
	header
	"$helm" template tasked "$root/charts/tasked" --namespace tasked \
		--set runnerToken.existingSecret=tasked-runner-token \
		--set apiKey.existingSecret=tasked-api-key \
		--set tests.enabled=false | strip_helm
}
render_loader() {
	header
	"$helm" template tasked "$root/charts/tasked" --namespace tasked \
		--set appArmor.loader.enabled=true --set appArmor.loader.namespace=kube-system \
		--show-only templates/apparmor-loader.yaml | strip_helm
}

status=0
for pair in "base/tasked.yaml:render_base" "apparmor-loader/loader.yaml:render_loader"; do
	file=$root/deploy/${pair%%:*}
	fn=${pair#*:}
	if [ "$check" -eq 1 ]; then
		if ! diff -u "$file" <("$fn") >&2; then
			echo "render-deploy: deploy/${pair%%:*} is out of date; run 'make deploy-manifests'" >&2
			status=1
		fi
	else
		"$fn" >"$file.tmp"
		mv "$file.tmp" "$file"
		echo "wrote deploy/${pair%%:*}"
	fi
done
exit "$status"
