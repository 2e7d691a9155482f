#!/usr/bin/env bash
# The Helm chart with the real Helm (built from the Go module proxy): lint, template with
# several value sets, the schema refusing bad values, and what the rendered objects promise
# (hardening, probes, Secrets as files, RBAC), checked on the parsed objects with jq. Also
# that deploy/, the chart's CRDs and its copy of the AppArmor profile are in sync.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/helm/lib.sh
. "$IT_ROOT/tests/helm/lib.sh"

like "$("$HELM" version --short)" '^v3\.18\.' "helm v3.18.x (built by tests/helm/build-helm.sh)"

# --- lint and template -------------------------------------------------------------------------

for set in "${VALUE_SETS[@]}"; do
	mapfile -t args < <(values_args "$set")
	ok "helm lint --strict ($set values)" "$HELM" lint --strict "$CHART" "${args[@]}"
	ok "helm template renders ($set values)" render "$set" tasked
done

# --- the schema refuses what it should -------------------------------------------------------

# refuse DESC ERE HELM-ARGS...: helm template fails and the message matches ERE.
refuse() {
	local desc=$1 ere=$2
	shift 2
	nok "the schema refuses $desc" "$HELM" template t "$CHART" "$@"
	like "$NOK_OUTPUT" "$ere" "... saying so ($ere)"
}
refuse "an unknown top-level value" 'Additional property bogus is not allowed' --set bogus=1
refuse "runner.concurrency: 0" 'runner.concurrency: Must be greater than or equal to 1' --set runner.concurrency=0
refuse "appArmor.type: Unconfined" 'appArmor.type must be one of' --set appArmor.type=Unconfined
refuse "a pool without a name" 'pools.0: name is required' --set 'pools[0].replicas=1'
refuse "a malformed image digest" 'digest' --set runner.image.digest=latest
refuse "a malformed tmp size" 'sizeLimit' --set runner.tmp.sizeLimit=lots
refuse "a log level outside debug|info|warn|error" 'logLevel' --set controller.logLevel=trace
refuse "a scrape interval that is not a Prometheus duration" 'interval' --set metrics.serviceMonitor.interval=often
refuse "a failedRatio above 1" 'failedRatio' --set-json metrics.prometheusRule.failedRatio=2
refuse "an additional rule without expr" 'expr' --set-json 'metrics.prometheusRule.additionalRules=[{"alert":"X"}]'
refuse "a malformed kubectl image digest for helm test" 'digest' --set tests.kubectl.image.digest=latest

# --- what the default render promises -----------------------------------------------------------

objs=$(render default tasked | to_json)
ok "the default render parses as Kubernetes objects" test "$(jq length <<<"$objs")" -gt 0
pods=$(pod_specs <<<"$objs")
ctl=$(jq -c 'select(.metadata.name == "deployment-t-tasked")' <<<"$pods")
like "$ctl" '.' "the controller Deployment is rendered"

is "$(jq -r '[.spec.containers[].name] | join(",")' <<<"$ctl")" "controller,runner-0" \
	"the controller pod has the controller and one runner sidecar"
is "$(jq -r '.spec.automountServiceAccountToken' <<<"$ctl")" false "the controller pod does not automount a token"
is "$(jq -r '[.spec.containers[] | select(any(.volumeMounts[]; .mountPath == "/var/run/secrets/kubernetes.io/serviceaccount")) | .name] | join(",")' <<<"$ctl")" \
	controller "only the controller container gets the (projected) API token"

# Every container of every pod the chart renders, whatever the value set.
for set in "${VALUE_SETS[@]}"; do
	[ "$set" = loader ] && continue # the loader is privileged by design (62-pod-security.t)
	sp=$(render "$set" tasked | to_json | pod_specs)
	n=$(jq -s '[.[].spec.containers[]] | length' <<<"$sp")
	# The helm test pod runs to completion (restartPolicy Never): probes mean nothing there.
	nl=$(jq -s '[.[] | select(.spec.restartPolicy != "Never") | .spec.containers[]] | length' <<<"$sp")
	is "$(jq -s '[.[] | select(.spec.restartPolicy != "Never") | .spec.containers[] | select(.livenessProbe and .readinessProbe)] | length' <<<"$sp")" "$nl" \
		"$set: all $nl long-running containers have liveness and readiness probes"
	is "$(jq -s '[.[].spec.containers[] | select(.resources.requests.cpu and .resources.limits.memory)] | length' <<<"$sp")" "$n" \
		"$set: all containers have a CPU request and a memory limit"
	is "$(jq -s '[.[].spec.containers[] | .securityContext | select(.readOnlyRootFilesystem == true and .allowPrivilegeEscalation == false and .runAsNonRoot == true and .runAsUser == 65532 and .capabilities.drop == ["ALL"] and .seccompProfile.type == "RuntimeDefault")] | length' <<<"$sp")" "$n" \
		"$set: all containers: 65532, non-root, read-only root, no escalation, drop ALL, seccomp RuntimeDefault"
	is "$(jq -s '[.[] | select(.spec.automountServiceAccountToken != false)] | length' <<<"$sp")" 0 \
		"$set: no pod automounts a service account token"
	is "$(jq -s '[.[].spec.containers[] | .env // [] | .[] | select(.valueFrom.secretKeyRef)] | length' <<<"$sp")" 0 \
		"$set: no Secret reaches a container as an env var"
	runners=$(jq -c '.spec as $s | .spec.containers[] | select(.image | test("tasked-runner")) | {c: ., vols: $s.volumes}' <<<"$sp")
	nr=$(grep -c . <<<"$runners" || true)
	case "$set" in
	runtime-default) want_aa=RuntimeDefault ;;
	no-apparmor) want_aa=null ;;
	*) want_aa=Localhost ;;
	esac
	is "$(jq -s "[.[] | select(.c.securityContext.appArmorProfile.type == \"$want_aa\" or (\"$want_aa\" == \"null\" and .c.securityContext.appArmorProfile == null))] | length" <<<"$runners")" "$nr" \
		"$set: all $nr runner containers use AppArmor $want_aa"
	if [ "$want_aa" = Localhost ]; then
		is "$(jq -s '[.[] | select(.c.securityContext.appArmorProfile.localhostProfile == "tasked-runner")] | length' <<<"$runners")" "$nr" \
			"$set: ... the tasked-runner profile"
	fi
	is "$(jq -s '[.[] | (.c.volumeMounts[] | select(.mountPath == "/tmp") | .name) as $v | select(any(.vols[]; .name == $v and .emptyDir.sizeLimit))] | length' <<<"$runners")" "$nr" \
		"$set: every runner has /tmp on an emptyDir with a size limit"
	is "$(jq -s '[.[] | select(any(.c.args[]; startswith("--token-file=/var/run/secrets/tasked/")))] | length' <<<"$runners")" "$nr" \
		"$set: every runner reads its token from a mounted file"
done

if [ "$(jq -r '.[] | select(.kind == "ClusterRole") | .rules[] | select(.verbs | index("*")) | .verbs' <<<"$objs")" = "" ]; then
	pass "no RBAC rule uses a wildcard verb"
else
	fail "an RBAC rule uses a wildcard verb"
fi
is "$(jq -c '[.[] | select(.kind == "ClusterRole" or .kind == "Role") | .rules[] | select(.resources | index("secrets")) | [.resourceNames, .verbs]]' <<<"$objs")" \
	'[[null,["create"]],[["t-tasked-webhook-tls"],["get","update"]],[null,["create"]]]' \
	"by default the controller may read no Secret but its own webhook certificate (rbac.secretNamespaces is empty); it creates RunnerPool token Secrets and its certificate Secret"
is "$(jq -r '.[] | select(.kind == "Role" and .metadata.name == "t-tasked-leader-election") | .rules[0] | "\(.resources) \(.resourceNames) \(.verbs)"' <<<"$objs")" \
	'["leases"] ["t-tasked"] ["get","update"]' "the leader-election Role is limited to its one Lease"
rbac_src=$(cat "$CHART/templates/rbac.yaml")
for f in rbac.yaml roles.yaml; do
	rules=$(grep -c '^  - apiGroups:' "$CHART/templates/$f")
	commented=$(grep -B1 '^  - apiGroups:' "$CHART/templates/$f" | grep -c '^  #')
	is "$commented" "$rules" "$f: each of the $rules RBAC rules is justified by a comment just above it"
done
# The controller's verbs are the requests it makes (controller/*.c); 67-rbac.t runs it under them.
ctl_rules=$(jq -c '[.[] | select(.kind == "ClusterRole" and .metadata.name == "t-tasked-controller") | .rules[] | {k: (.resources | join(",")), v: .verbs}]' <<<"$objs")
is "$ctl_rules" '[{"k":"tasks","v":["get","list","watch","create","patch","delete"]},{"k":"tasks/status","v":["patch"]},{"k":"flows","v":["get","list","watch","delete"]},{"k":"taskqueues","v":["get","list","watch"]},{"k":"flows/status,taskqueues/status","v":["patch"]},{"k":"runnerpools","v":["get","list","watch"]},{"k":"runnerpools/status","v":["patch"]},{"k":"deployments","v":["get","create","update"]},{"k":"secrets","v":["create"]},{"k":"pods","v":["patch"]},{"k":"events","v":["create"]},{"k":"pods","v":["get","list","watch","create","delete"]},{"k":"pods/log","v":["get"]},{"k":"networkpolicies","v":["get","create"]}]' \
	"the controller's ClusterRole: patch on tasks (failFast cancels), status by merge patch only, events create only, RunnerPools' Deployments, token Secrets (create only) and pod deletion cost, container task pods, their logs and the deny-all NetworkPolicy"
# People's roles aggregate into the built-in ones; TaskQueues (policy) are admin's.
agg=$(jq -r '[.[] | select(.kind == "ClusterRole" and (.metadata.labels | has("rbac.authorization.k8s.io/aggregate-to-view") or has("rbac.authorization.k8s.io/aggregate-to-edit") or has("rbac.authorization.k8s.io/aggregate-to-admin")))
	| "\(.metadata.name):\([.metadata.labels | to_entries[] | select(.key | startswith("rbac.authorization.k8s.io/aggregate-to-")) | .key | sub(".*aggregate-to-"; "")] | join("+"))"] | join(" ")' <<<"$objs")
is "$agg" "t-tasked-view:admin+edit+view t-tasked-edit:admin+edit t-tasked-admin:admin" "tasked-view/-edit/-admin aggregate into view/edit/admin"
is "$(jq -r '[.[] | select(.kind == "ClusterRole" and .metadata.name == "t-tasked-edit") | .rules[].resources[]] | join(",")' <<<"$objs")" "tasks,flows" \
	"edit may write Tasks and Flows, not TaskQueues or any status"
is "$(render default tasked --set rbac.userRoles=false | to_json | jq '[.[] | select(.metadata.name | test("-(view|edit|admin)$"))] | length')" 0 \
	"rbac.userRoles=false renders no user roles"
like "$rbac_src" 'resources: \[secrets\]' "queue Secrets have their own rule (get only)"

# --- the log volume and the instance id -----------------------------------------------------------
is "$(jq -r '[.spec.containers[0].args[] | select(startswith("--log-dir="))] | join(" ")' <<<"$ctl")" \
	"--log-dir=/var/lib/tasked/logs" "the controller keeps its logs in /var/lib/tasked/logs"
is "$(jq -r '(.spec.containers[0].volumeMounts[] | select(.mountPath == "/var/lib/tasked/logs") | .name) as $v | .spec.volumes[] | select(.name == $v) | .emptyDir.sizeLimit' <<<"$ctl")" \
	256Mi "... on an emptyDir with a size limit by default"
is "$(jq -r '[.spec.containers[0].args[] | select(startswith("--instance-id"))] | length' <<<"$ctl")" 0 "no instance id by default"
pobjs=$(render persistence tasked | to_json)
pctl=$(pod_specs <<<"$pobjs" | jq -c 'select(.metadata.name == "deployment-t-tasked")')
is "$(jq -r '.[] | select(.kind == "PersistentVolumeClaim") | "\(.metadata.name) \(.spec.resources.requests.storage) \(.spec.storageClassName) \(.spec.accessModes | join(","))"' <<<"$pobjs")" \
	"t-tasked-logs 2Gi standard ReadWriteOnce" "persistence.enabled renders a PersistentVolumeClaim"
is "$(jq -r '(.spec.containers[0].volumeMounts[] | select(.mountPath == "/var/lib/tasked/logs") | .name) as $v | .spec.volumes[] | select(.name == $v) | .persistentVolumeClaim.claimName' <<<"$pctl")" \
	t-tasked-logs "... mounted as the log directory"
is "$(jq -r '.[] | select(.kind == "Deployment" and .metadata.name == "t-tasked") | .spec.strategy.type' <<<"$pobjs")" Recreate \
	"... and the Deployment is replaced with Recreate (one controller per log directory)"
is "$(jq -r '[.spec.containers[0].args[] | select(startswith("--instance-id="))] | join(" ")' <<<"$pctl")" "--instance-id=blue" \
	"controller.instanceID becomes --instance-id"
is "$(jq -r '.[] | select(.kind == "Role" and .metadata.name == "t-tasked-leader-election") | .rules[0].resourceNames | join(",")' <<<"$pobjs")" t-tasked-blue \
	"the leader-election Role names the instance's Lease"
refuse "an instance id that is not a DNS label" 'instanceID' --set controller.instanceID=Team_A
refuse "persistence with two controller replicas" 'one controller per log directory' --set persistence.enabled=true --set controller.replicas=2

# --- deploy/, CRDs and the profile stay the chart's ----------------------------------------------

ok "deploy/ is what the chart renders (tests/helm/render-deploy.sh --check)" "$IT_ROOT/tests/helm/render-deploy.sh" --check
for f in "$IT_ROOT"/deploy/crds/*.yaml; do
	case "$f" in */kustomization.yaml) continue ;; esac
	ok "charts/tasked/crds/$(basename "$f") is deploy/crds/$(basename "$f")" cmp "$f" "$CHART/crds/$(basename "$f")"
done
ok "charts/tasked/files/tasked-runner is apparmor/tasked-runner" cmp "$IT_ROOT/apparmor/tasked-runner" "$CHART/files/tasked-runner"

done_testing
