#!/usr/bin/env bash
# The images: built FROM scratch with nothing but the binary, its libraries, a CA bundle and
# passwd/group; small; started under the restrictions the chart gives the pods
# (`docker run --read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges
# --user 65532:65532`). Then the controller image and a runner image (the shipped one plus a
# static probe, built with images/examples/Dockerfile.runner-with-tools) run against a real
# API server of their own, and a task looks around from inside the runner container.
#
# Needs the Docker engine. TASKED_IMAGES_SKIP=1 skips this file (e.g. on a machine without
# Docker); it is never skipped silently.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/cluster/lib.sh
. "$IT_ROOT/tests/cluster/lib.sh"

if [ -n "${TASKED_IMAGES_SKIP:-}" ]; then
	echo "1..0 # SKIP TASKED_IMAGES_SKIP is set"
	exit 0
fi
if ! { command -v docker >/dev/null && docker info >/dev/null 2>&1; }; then
	echo "Bail out! the Docker engine is needed (or set TASKED_IMAGES_SKIP=1)"
	exit 255
fi

TAG=${TASKED_IMAGE_TAG:-$(cat "$IT_ROOT/VERSION")}
RUNNER=tasked-runner:$TAG
CONTROLLER=tasked-controller:$TAG
# The chart's container restrictions, as docker run flags.
RESTRICT=(--read-only --tmpfs "/tmp:rw,nosuid,nodev,size=64m" --cap-drop ALL
	--security-opt no-new-privileges --user 65532:65532)
MAX_RUNNER_BYTES=${TASKED_RUNNER_IMAGE_MAX_BYTES:-10000000}

# --- build ------------------------------------------------------------------------------------

ok "make images builds both images" make -C "$IT_ROOT" --no-print-directory images

sizes=$IT_ROOT/build/images/sizes.txt
read -r _ runner_raw runner_gz < <(grep "^$RUNNER " "$sizes")
read -r _ ctl_raw ctl_gz < <(grep "^$CONTROLLER " "$sizes")
diag "$RUNNER: $runner_raw bytes uncompressed, $runner_gz compressed (gzip)"
diag "$CONTROLLER: $ctl_raw bytes uncompressed, $ctl_gz compressed (gzip)"
ok "the runner image is at most $MAX_RUNNER_BYTES bytes uncompressed ($runner_raw)" \
	test "$runner_raw" -le "$MAX_RUNNER_BYTES"

# --- what is inside -----------------------------------------------------------------------------

# image_files IMAGE: every regular file and symlink in the image's filesystem, one per line.
image_files() {
	local id
	id=$(docker create "$1") || return 1
	docker export "$id" | tar -t | grep -v '/$'
	docker rm "$id" >/dev/null
}
for name in runner controller; do
	image=tasked-$name:$TAG
	files=$(image_files "$image")
	# docker export adds the runtime's own mount points and .dockerenv.
	files=$(printf '%s\n' "$files" | grep -Ev '^(\.dockerenv|etc/(hosts|hostname|resolv\.conf|mtab)|dev/.*|proc/.*|sys/.*)$')
	# The runner image keeps those files once, in the RunnerPool bundle (docs/pools.md), with
	# symlinks at their usual paths, plus the bundle's static installer and the network gate.
	bundle='usr/lib/tasked-bundle/(tasked-runner|ld-linux[-_a-z0-9.]*\.so\.[0-9]+|lib[A-Za-z0-9_.+-]*\.so[.0-9]*|ca-certificates\.crt)|usr/local/bin/tasked-install|usr/local/bin/tasked-network-gate'
	[ "$name" = runner ] || bundle='no-bundle'
	unexpected=$(printf '%s\n' "$files" | grep -Ev "^(usr/local/bin/tasked-$name|etc/passwd|etc/group|etc/ssl/certs/ca-certificates\.crt|lib64/ld-linux[-_a-z0-9.]*\.so\.[0-9]+|(usr/)?lib/[a-z0-9_-]+-linux-gnu/lib[A-Za-z0-9_.+-]*\.so[.0-9]*|$bundle)$" || true)
	is "$unexpected" "" "$image holds only the binary, its libraries, the loader, the CA bundle, passwd and group"
	like "$files" "^usr/local/bin/tasked-$name\$" "... including usr/local/bin/tasked-$name"
	for bad in bin/sh usr/bin/sh bin/busybox usr/bin/apt usr/bin/dpkg; do
		if grep -qx -- "$bad" <<<"$files"; then fail "$image contains $bad"; else pass "$image has no $bad"; fi
	done
	cid=$(docker create "$image")
	passwd=$(docker cp "$cid:/etc/passwd" - | tar -xO)
	docker rm "$cid" >/dev/null
	like "$passwd" '^nobody:x:65532:65532:' "$image's /etc/passwd has nobody as 65532"
	is "$(docker image inspect -f '{{.Config.User}}' "$image")" "65532:65532" "$image runs as USER 65532:65532"
	labels=$(docker image inspect -f '{{json .Config.Labels}}' "$image")
	like "$labels" "\"org.opencontainers.image.title\":\"tasked-$name\"" "$image has OCI labels (title)"
	like "$labels" "\"org.opencontainers.image.version\":\"$TAG\"" "... and version $TAG"
	like "$labels" '"org.opencontainers.image.revision":"[0-9a-f]{40}|unknown"' "... and revision"
	out=$(docker run --rm "${RESTRICT[@]}" "$image" --version 2>&1)
	is "$out" "tasked-$name $TAG" "$image starts under --read-only --tmpfs /tmp --cap-drop ALL no-new-privileges --user 65532:65532"
done


# --- the RunnerPool bundle runs in an image it was not built for ---------------------------------
bdir=$(mktemp -d /tmp/tasked-it-bundle-XXXXXX)
bctx=$(mktemp -d /tmp/tasked-it-bbctx-XXXXXX)
chmod 0777 "$bdir"
ok "tasked-install copies the bundle into a volume (as the pool's init container does)" \
	docker run --rm "${RESTRICT[@]}" -v "$bdir:/opt/tasked-runner" --entrypoint /usr/local/bin/tasked-install \
	"$RUNNER" /usr/lib/tasked-bundle /opt/tasked-runner
install -m 0755 /bin/busybox "$bctx/busybox"
printf 'FROM scratch\nCOPY busybox /bin/busybox\n' >"$bctx/Dockerfile"
docker build -q -t tasked-it-busybox:scratch "$bctx" >/dev/null
is "$(docker run --rm "${RESTRICT[@]}" -v "$bdir:/opt/tasked-runner:ro" tasked-it-busybox:scratch \
	/opt/tasked-runner/ld-linux-x86-64.so.2 --library-path /opt/tasked-runner /opt/tasked-runner/tasked-runner --version)" \
	"tasked-runner $TAG" "the bundled runner runs in a FROM scratch image with only a static busybox"
docker image rm tasked-it-busybox:scratch >/dev/null 2>&1
rm -rf "$bdir" "$bctx"

# --- the network gate (the init container of container-task pods without network) --------------
# Without a network every probe fails: the gate passes. With a listener it can reach, it never
# passes (tests/build/network-gate.t).
out=$(docker run --rm "${RESTRICT[@]}" --network none --entrypoint /usr/local/bin/tasked-network-gate \
	"$RUNNER" 10.0.0.1:443 2>&1) && rc=0 || rc=$?
is "$rc" 0 "tasked-network-gate passes where nothing is reachable ($out)"
out=$(docker run --rm "${RESTRICT[@]}" --network none --entrypoint /usr/local/bin/tasked-network-gate \
	"$RUNNER" --timeout-ms 1500 127.0.0.1:1 2>&1) && rc=0 || rc=$?
is "$rc" 0 "... and where a connection is refused (loopback port 1)"

# --- a real run: API server, controller container, runner container -------------------------------

PROBE_IMAGE=tasked-runner-probe:$TAG
work=${TASKED_STATE_DIR:-$IT_ROOT/build/it}/images-$$
mkdir -p "$work"
CTL_NAME=tasked-it-controller-$$
RUN_NAME=tasked-it-runner-$$
# shellcheck disable=SC2317 # called through the EXIT trap
cleanup() {
	if [ -n "${KEEP_IMAGES_CLUSTER:-}" ]; then
		diag "kept: containers $CTL_NAME $RUN_NAME, control plane in $work"
		return 0
	fi
	docker rm -f "$CTL_NAME" "$RUN_NAME" >/dev/null 2>&1 || true
	docker image rm "$PROBE_IMAGE" >/dev/null 2>&1 || true
	TASKED_STOP_TIMEOUT=5 "$IT_ROOT/tests/cluster/controlplane.sh" stop "$work/cp" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

# The probe, static, layered on the shipped runner image with the example Dockerfile: the
# shipped image itself stays as it is.
probe_ctx=$IT_ROOT/build/images/probe
rm -rf "$probe_ctx" && mkdir -p "$probe_ctx/tools"
ok "the static probe (tests/tools/imgprobe.c) builds" \
	"${CC:-cc}" -std=gnu17 -O2 -Wall -Wextra -Werror -static -o "$probe_ctx/tools/imgprobe" \
	"$IT_ROOT/tests/tools/imgprobe.c"
ok "images/examples/Dockerfile.runner-with-tools builds a runner image with the probe" \
	docker build -q -f "$IT_ROOT/images/examples/Dockerfile.runner-with-tools" \
	--build-arg "RUNNER_IMAGE=$RUNNER" -t "$PROBE_IMAGE" "$probe_ctx"
is "$(docker image inspect -f '{{.Config.User}}' "$PROBE_IMAGE")" "65532:65532" "the derived image still runs as 65532"

# A control plane of our own (no kube-controller-manager needed): the suite's cluster already
# has a controller watching every namespace, which would race ours.
if ! TASKED_KCM=0 "$IT_ROOT/tests/cluster/controlplane.sh" start "$work/cp" >"$work/cp.log" 2>&1; then
	diag "$(tail -n 30 "$work/cp.log")"
	echo "Bail out! could not start the control plane for the image test"
	exit 255
fi
KC=$work/cp/kubeconfig
kc() { kubectl --kubeconfig "$KC" "$@"; }
ok "the CRDs install on the image test's API server" kc apply --server-side -k "$IT_ROOT/deploy/crds"
for crd in tasks taskqueues flows runnerpools; do
	for _ in $(seq 1 100); do
		[ "$(kc get crd "$crd.tasked.dev" -o 'jsonpath={.status.conditions[?(@.type=="Established")].status}' 2>/dev/null)" = True ] && break
		sleep 0.1
	done
done

# Secrets as files readable by 65532 (the pods get them from projected Secret volumes with
# fsGroup; here a directory per container, so each sees only its own).
ctl_secrets=$work/controller-secrets
run_secrets=$work/runner-secrets
mkdir -p "$ctl_secrets" "$run_secrets"
openssl rand -hex 32 >"$ctl_secrets/runner-token"
openssl rand -hex 32 >"$ctl_secrets/api-key"
cp "$KC" "$ctl_secrets/kubeconfig"
cp "$ctl_secrets/runner-token" "$run_secrets/runner-token"
chmod 0755 "$work" "$ctl_secrets" "$run_secrets"
chmod 0444 "$ctl_secrets"/* "$run_secrets"/*

# shellcheck disable=SC1091
. "$work/cp/ports.env"
API_PORT=$(pick_port "$ETCD_PORT" "$ETCD_PEER_PORT" "$APISERVER_PORT" "$KCM_PORT")
BROKER_PORT=$(pick_port "$ETCD_PORT" "$ETCD_PEER_PORT" "$APISERVER_PORT" "$KCM_PORT" "$API_PORT")
CANARY=canary-$(openssl rand -hex 8)

ok "the controller image runs with the pod's restrictions (--network host to reach the API server)" \
	docker run -d --name "$CTL_NAME" "${RESTRICT[@]}" --network host \
	-e "TASKED_CANARY=$CANARY" \
	-v "$ctl_secrets:/var/run/secrets/tasked:ro" \
	"$CONTROLLER" \
	--kubeconfig /var/run/secrets/tasked/kubeconfig \
	--listen "127.0.0.1:$API_PORT" --broker-listen "127.0.0.1:$BROKER_PORT" \
	--runner-token-file /var/run/secrets/tasked/runner-token \
	--api-key-file /var/run/secrets/tasked/api-key

ready=0
for _ in $(seq 1 150); do
	if curl -fsS --max-time 1 -o /dev/null "http://127.0.0.1:$API_PORT/readyz" 2>/dev/null; then
		ready=1
		break
	fi
	[ "$(docker inspect -f '{{.State.Running}}' "$CTL_NAME" 2>/dev/null)" = true ] || break
	sleep 0.2
done
if ! is "$ready" 1 "the controller container answers /readyz (informer synced, broker listening)"; then
	diag "$(docker logs --tail 30 "$CTL_NAME" 2>&1)"
fi

ok "the runner image (with the probe) runs with the pod's restrictions" \
	docker run -d --name "$RUN_NAME" "${RESTRICT[@]}" --network host \
	-e "TASKED_CANARY=$CANARY" \
	-v "$run_secrets:/var/run/secrets/tasked:ro" \
	"$PROBE_IMAGE" \
	--controller "ws://127.0.0.1:$BROKER_PORT" \
	--token-file /var/run/secrets/tasked/runner-token \
	--labels pool=imgtest --concurrency 2 --work-dir /tmp --health-file /tmp/tasked-runner.health
cfg=$(docker inspect -f '{{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}} {{.HostConfig.SecurityOpt}} {{.Config.User}}' "$RUN_NAME")
is "$cfg" "true [ALL] [no-new-privileges] 65532:65532" "the runner container is read-only, drops ALL, no-new-privileges, 65532"

# task NAME JSON_ARGV: a Task for the imgtest pool in namespace default.
# shellcheck disable=SC2317 # called through ok
task() {
	kc apply -f - >/dev/null <<-EOF
		apiVersion: tasked.dev/v1alpha1
		kind: Task
		metadata: {name: $1, namespace: default}
		spec:
		  shell: {command: $2}
		  env: [{name: TASK_VAR, value: visible}]
		  timeoutSeconds: 60
		  runnerSelector: {pool: imgtest}
	EOF
}
# phase_of NAME: wait up to 60 s for a terminal phase, print it.
phase_of() {
	local p
	for _ in $(seq 1 300); do
		p=$(kc -n default get task "$1" -o jsonpath='{.status.phase}' 2>/dev/null)
		case "$p" in Succeeded | Failed | Skipped | Cancelled) break ;; esac
		sleep 0.2
	done
	printf '%s\n' "${p:-<none>}"
}

# The chart's exec probes, inside the container: the runner judges its own health file.
probe_ready() { docker exec "$RUN_NAME" /usr/local/bin/tasked-runner --check-health /tmp/tasked-runner.health --ready; }
ok "the readiness probe passes in the container once the runner is connected" wait_for 15 probe_ready
like "$(docker exec "$RUN_NAME" /usr/local/bin/tasked-runner --check-health /tmp/tasked-runner.health --max-age-seconds 30 2>&1)" \
	'^ok: connected' "... and so does the liveness probe"

ok "a probe Task can be created" task probe \
	"[\"/usr/local/bin/imgprobe\", \"--canary\", \"$CANARY\", \"--read\", \"/var/run/secrets/tasked/runner-token\", \"--read\", \"/var/run/secrets/tasked/api-key\", \"--read\", \"/var/run/secrets/tasked/kubeconfig\", \"--read\", \"/var/run/secrets/kubernetes.io/serviceaccount/token\"]"
if ! is "$(phase_of probe)" Succeeded "the probe task runs in the runner container and succeeds"; then
	diag "$(kc -n default get task probe -o yaml 2>&1)"
	diag "---- runner log" "$(docker logs --tail 30 "$RUN_NAME" 2>&1)"
	diag "---- controller log" "$(docker logs --tail 30 "$CTL_NAME" 2>&1)"
fi
report=$(kc -n default get task probe -o jsonpath='{.status.logTail}')
diag "probe report:" "$report"
val() { printf '%s\n' "$report" | sed -n "s|^$1=||p" | head -n 1; }

is "$(val uid)" 65532 "the task runs as uid 65532"
is "$(val gid)" 65532 "... and gid 65532"
is "$(val capeff)" 0000000000000000 "CapEff is 0"
is "$(val capbnd)" 0000000000000000 "the capability bounding set is empty"
is "$(val nonewprivs)" 1 "no_new_privs is set"
is "$(val seccomp)" 2 "a seccomp filter is in force"
like "$(val write_root)" '^(EROFS|EACCES)$' "writing to / fails ($(val write_root))"
like "$(val write_usr)" '^(EROFS|EACCES)$' "writing to /usr/local/bin fails ($(val write_usr))"
is "$(val write_tmp)" ok "writing to /tmp works"
like "$(val read_pid1_environ)" '^(EACCES|EPERM)$' "the runner's /proc/1/environ is out of reach ($(val read_pid1_environ))"
like "$(val ptrace_pid1)" '^(EPERM|EACCES)$' "the runner cannot be ptraced ($(val ptrace_pid1))"
like "$(val setuid0)" '^(EPERM|EACCES)$' "setuid(0) fails"
is "$(val environ_readable)" 0 "no other process's environ is readable"
is "$(val canary_seen)" no "the runner container's environment (a canary) is nowhere to be seen"
is "$(val 'read:/var/run/secrets/tasked/api-key')" ENOENT "the controller's API key is not in the runner container"
is "$(val 'read:/var/run/secrets/tasked/kubeconfig')" ENOENT "the controller's API credentials are not in the runner container"
is "$(val 'read:/var/run/secrets/kubernetes.io/serviceaccount/token')" ENOENT "no service account token in the runner container"
is "$(val has_shell)" no "there is no /bin/sh"
# Known gaps, reported rather than hidden. /proc/1/mounts is readable without AppArmor (the
# tasked-runner profile denies it; this kernel cannot load profiles).
if [ "$(val read_pid1_mounts)" = ok ]; then
	if [ -d /sys/kernel/security/apparmor ]; then
		fail "the runner's /proc/1/mounts is readable although AppArmor is enabled"
	else
		echo "ok $((_tap_n + 1)) # SKIP /proc/1/mounts: denied only by the AppArmor profile, and this kernel has no AppArmor (tests/vm/apparmor.t proves that denial)"
		_tap_n=$((_tap_n + 1))
	fi
else
	pass "the runner's /proc/1/mounts is out of reach ($(val read_pid1_mounts))"
fi
# The token is the runner's (same uid as the task, mode 0444 here): Landlock hides it.
is "$(val 'read:/var/run/secrets/tasked/runner-token')" EACCES "the runner token is out of reach of tasks (Landlock)"
like "$(docker logs "$RUN_NAME" 2>&1 | grep '"msg":"tasks run in Landlock domains"')" '"tokenHidden":"true"' \
	"... the runner in its container says so"

ok "a Task running sh can be created" task no-shell '["sh", "-c", "id"]'
is "$(phase_of no-shell)" Failed "a task asking for sh fails: the image has no shell"
like "$(kc -n default get task no-shell -o jsonpath='{.status.message}')" '[Nn]o such file|not found' \
	"... with a not-found message"

done_testing
