#!/usr/bin/env bash
# The CRDs as the real API server sees them: installed, structural, validating with readable
# messages, printer columns, status subresource, short names and category.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

test_namespace crd

# --- installed and served ------------------------------------------------------------------

for crd in tasks taskqueues flows runnerpools; do
	ok "CRD $crd.tasked.dev is Established" \
		k wait --for=condition=Established "crd/$crd.tasked.dev" --timeout=30s
	nonstructural=$(k get crd "$crd.tasked.dev" \
		-o 'jsonpath={.status.conditions[?(@.type=="NonStructuralSchema")].status}')
	is "$nonstructural" "" "CRD $crd.tasked.dev has a structural schema"
done

version=$(k get --raw /version)
like "$version" '"gitVersion": *"v1\.33\.4"' "the API server reports gitVersion v1.33.4"

discovery=$(k get --raw /apis/tasked.dev/v1alpha1)
for r in tasks taskqueues flows runnerpools; do
	like "$discovery" "\"name\": *\"$r/status\"" "discovery lists the $r/status subresource"
	like "$discovery" "\"name\": *\"$r\",[^}]*\"namespaced\": *true" "$r are namespaced"
done
like "$discovery" '"shortNames": *\["tk"\]' "tasks have the short name tk"
like "$discovery" '"shortNames": *\["tq"\]' "taskqueues have the short name tq"
like "$discovery" '"shortNames": *\["fl"\]' "flows have the short name fl"
like "$discovery" '"categories": *\["tasked"\]' "the kinds are in the category tasked"

# --- the examples are valid ----------------------------------------------------------------

for f in "$IT_ROOT"/examples/*.yaml; do
	# The examples name their namespace (default), so no --namespace here.
	ok "examples/$(basename "$f") passes server-side dry run" \
		kubectl --kubeconfig "$KUBECONFIG" apply --dry-run=server -f "$f"
done

# --- invalid Tasks are refused with readable messages ---------------------------------------

# apply_task NAME SPEC_YAML: kubectl apply (strict field validation, the default) of a Task.
# shellcheck disable=SC2317 # called through ok/nok
apply_task() {
	k apply -f - <<-EOF
		apiVersion: tasked.dev/v1alpha1
		kind: Task
		metadata:
		  name: $1
		spec:
		$(printf '%s\n' "$2" | sed 's/^/  /')
	EOF
}

nok "a Task without an executor is refused" apply_task no-executor 'env: [{name: A, value: b}]'
like "$NOK_OUTPUT" 'exactly one of shell, http, remote or container must be set' \
	"... with the message 'exactly one of shell, http, remote or container must be set'"

nok "a Task with shell and http is refused" apply_task two-executors \
	"$(printf 'shell: {command: [echo, hi]}\nhttp: {url: "https://example.com"}')"
like "$NOK_OUTPUT" 'exactly one of shell, http, remote or container must be set' \
	"... with the message 'exactly one of shell, http, remote or container must be set'"

nok "a Task with command: [] is refused" apply_task empty-command 'shell: {command: []}'
like "$NOK_OUTPUT" 'should have at least 1 items|shell.command must not be empty' \
	"... with a message saying the command must not be empty"
diag "$NOK_OUTPUT"

nok "a Task whose program is an empty string is refused" apply_task empty-program \
	'shell: {command: ["", "x"]}'
like "$NOK_OUTPUT" 'shell.command must not be empty' "... with the message 'shell.command must not be empty'"

nok "a Task with an unknown field spec.bogus is refused" apply_task bogus \
	"$(printf 'shell: {command: [echo, hi]}\nbogus: 1')"
like "$NOK_OUTPUT" 'unknown field "spec.bogus"' '... naming the unknown field "spec.bogus"'
diag "$NOK_OUTPUT"

nok "an unknown nested field is refused (kubectl create)" \
	k create -f - <<-'EOF'
		apiVersion: tasked.dev/v1alpha1
		kind: Task
		metadata: {name: bogus-nested}
		spec: {shell: {command: [echo], bogus: true}}
	EOF
like "$NOK_OUTPUT" 'unknown field "spec.shell.bogus"' '... naming "spec.shell.bogus"'

nok "an env entry with both value and valueFrom is refused" apply_task env-both \
	"$(printf 'shell: {command: [echo]}\nenv: [{name: A, value: x, valueFrom: {queueSecret: s}}]')"
like "$NOK_OUTPUT" 'exactly one of value or valueFrom' "... with the message 'exactly one of value or valueFrom'"

nok "an env entry with neither value nor valueFrom is refused" apply_task env-none \
	"$(printf 'shell: {command: [echo]}\nenv: [{name: A}]')"
like "$NOK_OUTPUT" 'exactly one of value or valueFrom' "... with the message 'exactly one of value or valueFrom'"

nok "an absolute workingDir is refused" apply_task abs-wd 'shell: {command: [pwd], workingDir: /etc}'
like "$NOK_OUTPUT" 'workingDir must be a relative path' "... with a readable message"

nok "a workingDir escaping with .. is refused" apply_task dotdot-wd 'shell: {command: [pwd], workingDir: a/../../x}'
like "$NOK_OUTPUT" 'workingDir must be a relative path' "... with a readable message"

nok "timeoutSeconds: 0 is refused" apply_task zero-timeout "$(printf 'shell: {command: [echo]}\ntimeoutSeconds: 0')"
like "$NOK_OUTPUT" 'timeoutSeconds' "... naming timeoutSeconds"

long_wd=$(head -c 1025 /dev/zero | tr '\0' 'x')
nok "a workingDir longer than the runner's 1024 bytes is refused" apply_task long-wd \
	"shell: {command: [pwd], workingDir: $long_wd}"
like "$NOK_OUTPUT" 'workingDir: Too long' "... with 'workingDir: Too long'"

long_when=$(head -c 4097 /dev/zero | tr '\0' 'x')
nok "a when longer than 4096 characters is refused" apply_task long-when \
	"$(printf 'shell: {command: [echo]}\nwhen: "%s"' "$long_when")"
like "$NOK_OUTPUT" 'spec.when: Too long' "... with 'spec.when: Too long'"


ok "a Task with every documented field is accepted (server dry run)" \
	k apply --dry-run=server -f - <<-'EOF'
		apiVersion: tasked.dev/v1alpha1
		kind: Task
		metadata: {name: full}
		spec:
		  queue: default
		  shell: {command: ["echo", "hello $(NAME)"], workingDir: "sub/dir"}
		  env:
		    - {name: NAME, value: world}
		    - {name: TOKEN, valueFrom: {queueSecret: api-token}}
		  input: {any: json, nested: {list: [1, 2]}}
		  dependsOn: [build]
		  when: "tasks.build.phase == 'Succeeded' && tasks.build.output.ok"
		  timeoutSeconds: 300
		  retries: {limit: 0, backoff: {initialDelaySeconds: 1, maxDelaySeconds: 300, factor: 2, jitter: true}, onExitCodes: []}
		  priority: 0
		  runnerSelector: {pool: default}
		  ttlSecondsAfterFinished: null
		  cancel: false
	EOF

ok "an http Task with every documented field is accepted (server dry run)" \
	k apply --dry-run=server -f - <<-'EOF'
		apiVersion: tasked.dev/v1alpha1
		kind: Task
		metadata: {name: full-http}
		spec:
		  http:
		    url: https://example.com/hook
		    method: POST
		    headers: [{name: X-A, value: b}, {name: Authorization, valueFrom: {queueSecret: tok}}]
		    body: '{"a":1}'
		    successCodes: [200, 201]
		    followRedirects: true
		    maxRedirects: 5
		    maxResponseBytes: 1048576
		    timeoutSeconds: 30
		    oauth2: {tokenURL: https://auth.example.com/token, clientID: me, clientSecret: {queueSecret: cs}, scopes: [a, b]}
	EOF

# --- TaskQueue and Flow -----------------------------------------------------------------------

ok "a TaskQueue with every documented field is accepted (server dry run)" \
	k apply --dry-run=server -f - <<-'EOF'
		apiVersion: tasked.dev/v1alpha1
		kind: TaskQueue
		metadata: {name: default}
		spec:
		  concurrency: 10
		  rateLimit: {perSecond: 5, burst: 10}
		  defaults: {timeoutSeconds: 300, retries: {limit: 3, backoff: {initialDelaySeconds: 1, maxDelaySeconds: 60, factor: 2, jitter: true}}}
		  secrets:
		    - {name: api-token, secretKeyRef: {name: my-secret, key: token}}
		  policy:
		    executors: [shell, http]
		    http: {allowPrivateNetworks: false, allowedCIDRs: [10.1.0.0/16, "fd00::/8"], maxResponseBytes: 16777216, maxRedirects: 5}
		    shell: {maxOutputBytes: 10485760}
		    container: {imageAllowlist: [], networkDisabled: true, volumeAllowlist: [], maxOutputBytes: 1048576, defaultResources: {cpu: "1", memory: 256Mi}}
		    conditions: {timeoutMilliseconds: 10, maxCost: 10000, maxDepth: 32}
		  runnerSelector: {pool: default}
	EOF

nok "a TaskQueue with a malformed CIDR is refused" k apply --dry-run=server -f - <<-'EOF'
	apiVersion: tasked.dev/v1alpha1
	kind: TaskQueue
	metadata: {name: bad-cidr}
	spec: {policy: {http: {allowedCIDRs: [10.0.0.0/33]}}}
EOF
like "$NOK_OUTPUT" 'allowedCIDRs entries must be CIDRs' "... with a readable message"

nok "a TaskQueue executor outside shell/http/remote/container is refused" \
	k apply --dry-run=server -f - <<-'EOF'
		apiVersion: tasked.dev/v1alpha1
		kind: TaskQueue
		metadata: {name: bad-exec}
		spec: {policy: {executors: [bash]}}
	EOF
like "$NOK_OUTPUT" 'supported values' "... listing the supported values"

ok "a Flow as documented is accepted (server dry run)" k apply --dry-run=server -f - <<-'EOF'
	apiVersion: tasked.dev/v1alpha1
	kind: Flow
	metadata: {name: build}
	spec:
	  queue: default
	  failFast: false
	  ttlSecondsAfterFinished: null
	  tasks:
	    - {name: build, shell: {command: [make]}}
	    - {name: test, dependsOn: [build], when: "tasks.build.output.changed", shell: {command: [make, check]}}
EOF

nok "a Flow task with two executors is refused" k apply --dry-run=server -f - <<-'EOF'
	apiVersion: tasked.dev/v1alpha1
	kind: Flow
	metadata: {name: two}
	spec:
	  tasks:
	    - {name: a, shell: {command: ["true"]}, remote: {url: "https://example.com"}}
EOF
like "$NOK_OUTPUT" 'exactly one of shell, http, remote or container must be set' "... with the executor message"

nok "a Flow task with an empty command is refused" k apply --dry-run=server -f - <<-'EOF'
	apiVersion: tasked.dev/v1alpha1
	kind: Flow
	metadata: {name: empty}
	spec:
	  tasks:
	    - {name: a, shell: {command: []}}
EOF

nok "a Flow with an unknown field in a task is refused" k apply -f - <<-'EOF'
	apiVersion: tasked.dev/v1alpha1
	kind: Flow
	metadata: {name: unknown}
	spec:
	  tasks:
	    - {name: a, shell: {command: ["true"]}, bogus: 1}
EOF
like "$NOK_OUTPUT" 'unknown field "spec.tasks\[0\].bogus"' '... naming "spec.tasks[0].bogus"'

nok "a Flow named longer than 63 characters is refused" k apply --dry-run=server -f - <<-EOF
	apiVersion: tasked.dev/v1alpha1
	kind: Flow
	metadata: {name: $(head -c 64 /dev/zero | tr '\0' 'f')}
	spec:
	  tasks:
	    - {name: a, shell: {command: ["true"]}}
EOF
like "$NOK_OUTPUT" 'at most 63 characters' "... with a readable message"

# --- printer columns, short names, category -------------------------------------------------

ok "a valid Task can be created" apply_task columns 'shell: {command: [echo, columns]}'
header=$(k get tasks | head -n 1)
like "$header" '^NAME +PHASE +EXIT +ATTEMPTS +RUNNER +AGE *$' "kubectl get tasks shows NAME PHASE EXIT ATTEMPTS RUNNER AGE"
header=$(k get tasks -o wide | head -n 1)
like "$header" '^NAME +PHASE +EXIT +ATTEMPTS +RUNNER +AGE +REASON +QUEUE *$' "-o wide adds REASON and QUEUE"
ok "kubectl get tk (short name) works" k get tk columns
like "$(k get tasked -o name 2>&1)" '^task\.tasked\.dev/columns$' "kubectl get tasked (the category) lists the task"

# --- the status subresource ------------------------------------------------------------------

ok "a spec update through the main resource does not touch status" \
	k patch task columns --type=merge -p '{"spec":{"ttlSecondsAfterFinished":3600},"status":{"phase":"Exploded"}}'
phase=$(k get task columns -o jsonpath='{.status.phase}')
if [ "$phase" = Exploded ]; then fail "status was written through the main resource"; else pass "status ignored on the main resource (phase '${phase}')"; fi

# A task no runner can take (no runner has pool=nowhere), so a running controller leaves it
# Queued and does not race these status writes.
ok "a Task for a pool without runners can be created" \
	apply_task status-check "$(printf 'shell: {command: [echo]}\nrunnerSelector: {pool: nowhere}')"
nok "an invalid status.phase is refused on the status subresource" \
	k patch task status-check --subresource=status --type=merge -p '{"status":{"phase":"Exploded"}}'
like "$NOK_OUTPUT" 'status.phase: Unsupported value: "Exploded"' "... with 'Unsupported value'"
ok "status.output accepts any JSON value (here an array)" \
	k patch task status-check --subresource=status --type=merge -p '{"status":{"output":[1,"two",{"three":3}]}}'
is "$(k get task status-check -o jsonpath='{.status.output}')" '[1,"two",{"three":3}]' "... and keeps it as written"


# --- RunnerPools: bounds, CEL, the scale subresource, printer columns --------------------------

like "$discovery" '"name": *"runnerpools/scale"' "discovery lists the runnerpools/scale subresource"
like "$discovery" '"shortNames": *\["rp"\]' "runnerpools have the short name rp"
rp() { # NAME SPEC
	printf 'apiVersion: tasked.dev/v1alpha1\nkind: RunnerPool\nmetadata: {name: %s}\nspec: %s\n' "$1" "$2" | k apply -f -
}
nok "maxRunners below minRunners is refused" rp bad1 '{image: x, minRunners: 3, maxRunners: 2}'
like "$NOK_OUTPUT" 'maxRunners must be at least minRunners' "... saying so"
nok "slotsPerRunner 0 is refused" rp bad2 '{image: x, slotsPerRunner: 0}'
nok "maxRunners past 1000 is refused" rp bad3 '{image: x, maxRunners: 1001}'
nok "scaleDownDelaySeconds past a day is refused" rp bad4 '{image: x, scaleDownDelaySeconds: 86401}'
nok "a pool without an image is refused" rp bad5 '{minRunners: 0}'
nok "a resource quantity longer than 64 characters is refused" rp bad6 "{image: x, resources: {limits: {memory: \"$(printf '9%.0s' $(seq 1 70))\"}}}"
nok "a name longer than 40 characters is refused" rp "$(printf 'p%.0s' $(seq 1 41))" '{image: x}'
nok "a volume with two sources is refused" rp bad7 '{image: x, volumes: [{name: v, mountPath: /v, emptyDir: {}, secret: {secretName: s}}]}'
ok "a valid RunnerPool can be created (defaults filled in)" rp cols '{image: x, labels: {pool: cols}, resources: {requests: {cpu: 1, memory: 64Mi}}}'
is "$(k get runnerpool cols -o jsonpath='{.spec.slotsPerRunner}/{.spec.minRunners}/{.spec.maxRunners}/{.spec.scaleDownDelaySeconds}')" \
	"1/0/10/300" "defaults: slotsPerRunner 1, minRunners 0, maxRunners 10, scaleDownDelaySeconds 300"
header=$(k get runnerpools | head -n 1)
like "$header" '^NAME +READY +DESIRED +MIN +MAX +QUEUED +AGE *$' "kubectl get runnerpools shows NAME READY DESIRED MIN MAX QUEUED AGE"
ok "kubectl scale sets the floor (spec.minRunners)" k scale runnerpool cols --replicas=3
is "$(k get runnerpool cols -o jsonpath='{.spec.minRunners}')" 3 "... minRunners is 3"
nok "kubectl scale past maxRunners is refused" k scale runnerpool cols --replicas=11

done_testing
