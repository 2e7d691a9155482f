#!/usr/bin/env bash
# The chart's monitoring and `helm test` options, on the real API server:
# - the metrics listener (--metrics-listen) behind the Service's "metrics" port, and the
#   NetworkPolicy rule that lets a Prometheus in another namespace scrape it (metricsFrom);
# - ServiceMonitor and PrometheusRule (off by default) validated by the Prometheus Operator's
#   own CRD schemas (server-side dry run), the rules by promtool, every metric they and the
#   Grafana dashboard (deploy/grafana/) use served by the running controller;
# - `helm test`'s wait for the smoke Task: the rendered kubectl command, run with a token of the
#   chart's service account, passes when the Task succeeds and fails when it fails.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/helm/lib.sh
. "$IT_ROOT/tests/helm/lib.sh"
test_namespace monitoring

STATE=${TASKED_STATE_DIR:-.tasked}
case "$STATE" in /*) ;; *) STATE=$IT_ROOT/$STATE ;; esac
TMPD=$(mktemp -d)
REL=mo$(openssl rand -hex 3)
# shellcheck disable=SC2317 # called through the EXIT trap
cleanup() {
	[ -s "$TMPD/rbac.yaml" ] && kubectl --kubeconfig "$KUBECONFIG" delete -n "$TEST_NS" -f "$TMPD/rbac.yaml" \
		--ignore-not-found --wait=false >/dev/null 2>&1
	kubectl --kubeconfig "$KUBECONFIG" delete crd servicemonitors.monitoring.coreos.com prometheusrules.monitoring.coreos.com \
		--ignore-not-found --wait=false >/dev/null 2>&1
	rm -rf "$TMPD"
	_cleanup_namespace
}
trap cleanup EXIT
PROMTOOL=$("$IT_ROOT/tests/tools/promtool.sh") || { echo "Bail out! promtool does not build"; exit 255; }
POCRDS=$("$IT_ROOT/tests/tools/prometheus-operator-crds.sh") || {
	echo "Bail out! the Prometheus Operator CRDs could not be fetched (tests/tools/prometheus-operator-crds.sh)"
	exit 255
}
mon=(--set metrics.serviceMonitor.enabled=true --set metrics.prometheusRule.enabled=true)

# The Prometheus Operator's CRDs first: the rendered objects are parsed (and later validated)
# with the API server's knowledge of their kinds.
ok "the Prometheus Operator CRDs (ServiceMonitor, PrometheusRule) install" \
	kubectl --kubeconfig "$KUBECONFIG" apply --server-side -f "$POCRDS/monitoring.coreos.com_servicemonitors.yaml" -f "$POCRDS/monitoring.coreos.com_prometheusrules.yaml"
ok "... and become Established" kubectl --kubeconfig "$KUBECONFIG" wait --for=condition=Established --timeout=60s \
	crd/servicemonitors.monitoring.coreos.com crd/prometheusrules.monitoring.coreos.com
# --- rendering -----------------------------------------------------------------------------------
ok "helm lint --strict with ServiceMonitor and PrometheusRule on (no Prometheus CRDs needed)" \
	"$HELM" lint --strict "$CHART" "${mon[@]}"
objs=$(wait_for 30 sh -c "kubectl --kubeconfig '$KUBECONFIG' api-resources --api-group=monitoring.coreos.com | grep -q servicemonitors" &&
	render default tasked "${mon[@]}" | to_json)
def=$(render default tasked | to_json)
is "$(jq '[.[] | select(.kind == "ServiceMonitor" or .kind == "PrometheusRule")] | length' <<<"$def")" 0 \
	"by default there is no ServiceMonitor or PrometheusRule"
ctl=$(jq -c '.[] | select(.kind == "Deployment" and .metadata.name == "t-tasked") | .spec.template.spec.containers[] | select(.name == "controller")' <<<"$def")
like "$(jq -r '.args | join(" ")' <<<"$ctl")" '--metrics-listen=0\.0\.0\.0:9090' "the controller serves /metrics on a listener of its own"
is "$(jq -r '.ports[] | select(.name == "metrics") | .containerPort' <<<"$ctl")" 9090 "... container port 'metrics'"
is "$(jq -r '.[] | select(.kind == "Service" and .metadata.name == "t-tasked") | .spec.ports[] | select(.name == "metrics") | "\(.port) \(.targetPort)"' <<<"$def")" \
	"9090 metrics" "the Service has a 'metrics' port"
np=$(jq -c '.[] | select(.kind == "NetworkPolicy" and .metadata.name == "t-tasked-controller") | .spec.ingress[] | select(.ports[0].port == 9090)' <<<"$def")
is "$(jq -c .from <<<"$np")" '[{"podSelector":{}}]' "NetworkPolicy: by default the metrics port is open to the release namespace only"
peer='[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}},"podSelector":{"matchLabels":{"app.kubernetes.io/name":"prometheus"}}}]'
np2=$(render default tasked --set-json "networkPolicy.metricsFrom=$peer" | to_json |
	jq -c '.[] | select(.kind == "NetworkPolicy" and .metadata.name == "t-tasked-controller") | .spec.ingress[] | select(.ports[0].port == 9090) | .from')
is "$np2" "$peer" "networkPolicy.metricsFrom lets a Prometheus in another namespace scrape it"
api_from=$(render default tasked --set-json "networkPolicy.metricsFrom=$peer" | to_json |
	jq -c '.[] | select(.kind == "NetworkPolicy" and .metadata.name == "t-tasked-controller") | .spec.ingress[] | select(.ports[0].port == 8080) | .from')
is "$api_from" '[{"podSelector":{}}]' "... without opening the API port to it"
off=$(render default tasked --set metrics.enabled=false | to_json)
is "$(jq '[.. | objects | select(.name? == "metrics" or (.args? // [] | any(startswith("--metrics-listen"))))] | length' <<<"$off")" 0 \
	"metrics.enabled=false: no listener, port or Service port"

sm=$(jq -c '.[] | select(.kind == "ServiceMonitor")' <<<"$objs")
is "$(jq -r '.spec.endpoints[0] | "\(.port) \(.path) \(.scheme) \(.honorLabels)"' <<<"$sm")" "metrics /metrics http true" \
	"the ServiceMonitor scrapes port 'metrics' at /metrics (http without TLS; honorLabels keeps the task namespace label)"
svc_labels=$(jq -c '.[] | select(.kind == "Service" and .metadata.name == "t-tasked") | .metadata.labels' <<<"$objs")
is "$(jq --argjson l "$svc_labels" '.spec.selector.matchLabels | to_entries | all(. as $e | $l[$e.key] == $e.value)' <<<"$sm")" true \
	"... and selects the controller Service"
tls_sm=$(render default tasked "${mon[@]}" --set tls.existingSecret=tls --set-json 'metrics.serviceMonitor.tlsConfig={"ca":{"secret":{"name":"tls","key":"ca.crt"}},"serverName":"localhost"}' \
	--show-only templates/servicemonitor.yaml)
like "$tls_sm" 'scheme: https' "with tls.existingSecret the ServiceMonitor scrapes https"
like "$tls_sm" 'serverName: localhost' "... verified as metrics.serviceMonitor.tlsConfig says"
like "$(render default tasked "${mon[@]}" --set-json 'metrics.serviceMonitor.labels={"release":"kps"}' --set-json 'metrics.prometheusRule.labels={"release":"kps"}' --show-only templates/servicemonitor.yaml --show-only templates/prometheusrule.yaml | grep -c 'release: kps')" \
	'^2$' "labels for the Prometheus' selectors go on both"

# --- the Prometheus Operator's schemas, on the real API server ------------------------------------
# (kubectl's discovery may lag right after; retry.)
for kind in servicemonitor prometheusrule; do
	ok "the rendered $kind passes the API server's validation (dry run)" wait_for 30 sh -c \
		"$(printf '%q ' "$HELM") template t $(printf '%q' "$CHART") --namespace $TEST_NS --set metrics.serviceMonitor.enabled=true --set metrics.prometheusRule.enabled=true \
		--show-only templates/$kind.yaml | kubectl --kubeconfig $(printf '%q' "$KUBECONFIG") apply --dry-run=server --validate=strict -f -"
done
nok "a malformed ServiceMonitor would be refused (the check can fail)" sh -c \
	"$(printf '%q ' "$HELM") template t $(printf '%q' "$CHART") --namespace $TEST_NS --set metrics.serviceMonitor.enabled=true \
	--show-only templates/servicemonitor.yaml | sed 's/scheme: http/scheme: gopher/' | kubectl --kubeconfig $(printf '%q' "$KUBECONFIG") apply --dry-run=server -f -"

# --- the rules and the dashboard use real metrics -----------------------------------------------------
jq '.[] | select(.kind == "PrometheusRule") | .spec' <<<"$objs" >"$TMPD/rules.json"
ok "promtool check rules accepts the PrometheusRule's groups" "$PROMTOOL" check rules "$TMPD/rules.json"
is "$(jq -r '[.groups[].rules[].alert] | join(",")' "$TMPD/rules.json")" \
	"TaskedControllerDown,TaskedNotSynced,TaskedNoRunners,TaskedQueueBacklog,TaskedTasksFailing,TaskedKubeAPIForbidden" "the alerts"
extra=$(render default tasked "${mon[@]}" --set-json 'metrics.prometheusRule.additionalRules=[{"alert":"Mine","expr":"vector(1)"}]' \
	--show-only templates/prometheusrule.yaml | grep -c 'alert: Mine')
is "$extra" 1 "metrics.prometheusRule.additionalRules are appended"
curl -s "$(cat "$STATE/api-url")/metrics" | awk '/^# TYPE/ {print $3}' | sort -u >"$TMPD/live"
ok "the running controller serves its metrics" test -s "$TMPD/live"
DASH=$IT_ROOT/deploy/grafana/tasked-dashboard.json
ok "the dashboard is JSON" jq -e .panels "$DASH"
used=$( { jq -r '.groups[].rules[].expr' "$TMPD/rules.json"; jq -r '.. | .expr? // empty' "$DASH"; } |
	grep -oE '\b(tasked|process)_[a-z_]+' | sed -E 's/_(bucket|sum|count)$//' | sort -u)
missing=$(comm -23 <(printf '%s\n' "$used") "$TMPD/live")
is "$missing" "" "every metric the rules and the dashboard use is served by the controller ($(grep -c . <<<"$used") names)"
is "$(jq '[.panels[] | select(.type != "row") | select(.targets | length > 0) | select(all(.targets[]; .datasource.uid == "${datasource}"))] | length' "$DASH")" \
	"$(jq '[.panels[] | select(.type != "row")] | length' "$DASH")" "every dashboard panel queries the chosen data source"
is "$(jq '[.panels[].id] | length == (unique | length)' "$DASH")" true "dashboard panel ids are unique"
is "$(jq '[.panels[] | select(.gridPos.x + .gridPos.w > 24)] | length' "$DASH")" 0 "no panel is wider than the grid"
for e in $(jq -r '.. | .expr? // empty' "$DASH" | sed 's/\$__rate_interval/5m/g; s/\$job/.+/g' | tr ' ' '\a'); do
	q=$(tr '\a' ' ' <<<"$e")
	printf 'groups: [{name: d, rules: [{record: "dash:q", expr: %s}]}]\n' "$(jq -Rn --arg q "$q" '$q')" >"$TMPD/q.yaml"
	"$PROMTOOL" check rules "$TMPD/q.yaml" >/dev/null 2>&1 || { fail "dashboard query parses: $q"; continue; }
done
pass "every dashboard query is valid PromQL (promtool)"

# --- helm test waits for the smoke Task ----------------------------------------------------------------
tests=$(render default "$TEST_NS" --show-only templates/tests/test-install.yaml --show-only templates/tests/test-smoke-wait.yaml | to_json)
task=$(jq -c '.[] | select(.kind == "Task")' <<<"$tests")
waitpod=$(jq -c '.[] | select(.kind == "Pod" and .metadata.name == "t-tasked-test-smoke")' <<<"$tests")
like "$waitpod" . "helm test has a pod that waits for the smoke Task"
is "$(render default "$TEST_NS" --set tests.smokeWait=false | to_json | jq '[.[] | select(.metadata.name == "t-tasked-test-smoke")] | length')" 0 \
	"tests.smokeWait=false leaves the wait pod out"
is "$(jq -r '.metadata.annotations["helm.sh/hook-weight"]' <<<"$task") < $(jq -r '.metadata.annotations["helm.sh/hook-weight"]' <<<"$waitpod")" "-1 < 1" \
	"... created after the smoke Task (hook weights)"
# Run exactly the pod's command, as the chart's service account (RBAC from helm template).
"$HELM" template "$REL" "$CHART" --namespace "$TEST_NS" --show-only templates/serviceaccount.yaml --show-only templates/rbac.yaml >"$TMPD/rbac.yaml"
k apply -f "$TMPD/rbac.yaml" >/dev/null
token=$(k create token "$REL-tasked" --duration 1h)
server=$(kubectl --kubeconfig "$KUBECONFIG" config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')
ca=$(kubectl --kubeconfig "$KUBECONFIG" config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
printf 'apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "%s", certificate-authority-data: "%s"}}]\nusers: [{name: sa, user: {token: "%s"}}]\ncontexts: [{name: sa, context: {cluster: c, user: sa}}]\ncurrent-context: sa\n' \
	"$server" "$ca" "$token" >"$TMPD/sa.kubeconfig"
chmod 600 "$TMPD/sa.kubeconfig"
mapfile -t cmd < <(jq -r '.spec.containers[0] | (.command + .args)[]' <<<"$waitpod")
is "${cmd[0]}" kubectl "the wait pod runs kubectl"
# The smoke Task as rendered, but for the host runner here (the image's program is not on the host).
jq '.metadata.annotations = {} | .spec.shell.command = ["true"]' <<<"$task" | k apply -f - >/dev/null
ok "the rendered wait command succeeds once the smoke Task has Succeeded (as the chart's service account)" \
	env KUBECONFIG="$TMPD/sa.kubeconfig" HOME="$TMPD" timeout 200 "${cmd[@]}"
is "$(task_field t-tasked-smoke .status.phase)" Succeeded "... the smoke Task did succeed"
# A smoke Task that fails: the wait fails (at its timeout).
k delete task t-tasked-smoke --wait=true >/dev/null
jq '.metadata.annotations = {} | .spec.shell.command = ["false"]' <<<"$task" | k apply -f - >/dev/null
mapfile -t cmd < <(render default "$TEST_NS" --set tests.smokeTimeoutSeconds=15 --show-only templates/tests/test-smoke-wait.yaml | to_json |
	jq -r '.[0].spec.containers[0] | (.command + .args)[]')
nok "the wait fails when the smoke Task fails" env KUBECONFIG="$TMPD/sa.kubeconfig" HOME="$TMPD" timeout 60 "${cmd[@]}"
is "$(task_field t-tasked-smoke .status.phase)" Failed "... (the smoke Task Failed)"

done_testing
