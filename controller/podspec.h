#pragma once
/* The Pod of one container task attempt, and the hardening every Tasked-made pod gets. Pure
 * functions on jansson objects; any thread. RunnerPools reuse podspec_harden_pod and
 * podspec_harden_container for their runner pods.
 *
 * The pod (docs/api.md, "Container tasks"): name podspec_name(), owned by the Task
 * (controller=true), labels PODSPEC_LABEL_*, the restricted Pod Security profile, no service
 * account token, no service links, an emptyDir /tmp with a size limit, requests = limits,
 * activeDeadlineSeconds from the timeout, restartPolicy Never. The task's input is the pod
 * annotation PODSPEC_ANN_INPUT projected to a file by a downwardAPI volume ($TASKED_INPUT); its
 * output is the container's termination message ($TASKED_OUTPUT = /dev/termination-log).
 * Without network, and with a gate image, the init container PODSPEC_GATE_CONTAINER runs first
 * (same hardening, requests = limits PODSPEC_GATE_CPU/MEMORY). */
#include "podpolicy.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define PODSPEC_LABEL_EXECUTOR "tasked.dev/executor" /* = "container" */
#define PODSPEC_LABEL_TASK "tasked.dev/task"
#define PODSPEC_LABEL_TASK_UID "tasked.dev/task-uid"
#define PODSPEC_LABEL_ATTEMPT "tasked.dev/attempt"
#define PODSPEC_LABEL_QUEUE "tasked.dev/queue"
#define PODSPEC_LABEL_NETWORK "tasked.dev/network" /* = "disabled" when networking is off */
#define PODSPEC_SELECTOR "tasked.dev/executor=container"
#define PODSPEC_ANN_INPUT "tasked.dev/input"
#define PODSPEC_ANN_MAX_OUTPUT "tasked.dev/max-output-bytes"
#define PODSPEC_CONTAINER "task"
/* The init container that holds the task back until its deny-all is enforced
 * (images/network-gate.c, in the runner image). */
#define PODSPEC_GATE_CONTAINER "tasked-network-gate"
#define PODSPEC_GATE_COMMAND "/usr/local/bin/tasked-network-gate"
#define PODSPEC_GATE_CPU "50m"
#define PODSPEC_GATE_MEMORY "16Mi"
#define PODSPEC_INPUT_DIR "/var/run/tasked"
#define PODSPEC_INPUT_FILE "/var/run/tasked/input.json"
#define PODSPEC_OUTPUT_FILE "/dev/termination-log"
#define PODSPEC_OUTPUT_MAX 4096        /* what the kubelet keeps of a termination message */
#define PODSPEC_MAX_INPUT (200 * 1024) /* annotations of a pod total at most 256 KiB */
#define PODSPEC_UID 65532
#define PODSPEC_TMP_SIZE "64Mi"
#define PODSPEC_GRACE_SECONDS 1
#define PODSPEC_NAME_MAX 63 /* a DNS label; buffers hold this + 1 */
/* Names stay shorter, so "pod/<name>" fits the attempt table's runner field (64 bytes). */
#define PODSPEC_NAME_LEN 58

/* Node-level choices, from controller flags. */
struct podspec_opts {
	/* "RuntimeDefault", "Localhost/<profile>", or NULL/"None": no AppArmor field (nodes
	 * without AppArmor refuse pods that ask for any profile). */
	const char *apparmor;
	/* The image holding PODSPEC_GATE_COMMAND (the runner image). Set: a pod without network
	 * first runs it as an init container, so no task code runs before the deny-all
	 * NetworkPolicy is in force; it fails after gate_timeout_s. NULL: no gate. */
	const char *gate_image;
	int64_t gate_timeout_s;
};

/* One attempt's pod, from what the dispatch decided. */
struct podspec_task {
	const char *ns, *name, *uid, *queue;
	int64_t attempt;
	json_t *container; /* the Task's spec.container, checked by podpolicy_check */
	/* [{name, value}] and [{name, secretKeyRef: {name, key}}] (queue secrets by reference) */
	json_t *env;
	json_t *input; /* spec.input or NULL */
	/* queue secret name -> {name, key} of the Secret it names, for secret volumes */
	json_t *secret_refs;
	int64_t timeout_s;        /* 0: none */
	int64_t max_output_bytes; /* log bytes read back (annotation PODSPEC_ANN_MAX_OUTPUT) */
	struct podres res;
	int network_disabled;
};

/* "<task name, cut>-<attempt>-<5 hex digits of a hash of the uid>", at most 58 bytes, a valid
 * DNS label: the same for the same (uid, attempt), so a create repeated after a restart finds
 * the existing pod. 0 or -ENAMETOOLONG. */
int podspec_name(const char *task, const char *uid, int64_t attempt, char *out, size_t outsz);

/* The Pod object (new reference), or NULL with a reason in err (InvalidSpec: input too large
 * for an annotation, a secret volume naming no declared secret). */
json_t *podspec_build(const struct podspec_task *t, const struct podspec_opts *o, char *err,
		      size_t errsz);

/* Sets the pod-level hardening on a PodSpec object: runAsNonRoot with 65532:65532 (also
 * fsGroup), seccomp RuntimeDefault, AppArmor per o, automountServiceAccountToken false,
 * enableServiceLinks false, hostNetwork/hostPID/hostIPC false, restartPolicy Never (callers of
 * Deployments override it), small terminationGracePeriodSeconds. Then hardens each container.
 * 0 or -ENOMEM. */
int podspec_harden_pod(json_t *pod_spec, const struct podspec_opts *o);
/* The appArmorProfile object for o->apparmor ("RuntimeDefault", "Localhost/<profile>"), or NULL
 * for NULL/""/"None" (or out of memory). New reference. */
json_t *podspec_apparmor(const char *apparmor);
/* The container-level part: readOnlyRootFilesystem, allowPrivilegeEscalation false, privileged
 * false, capabilities drop ALL (nothing added), runAsNonRoot with 65532:65532, seccomp
 * RuntimeDefault (as the pod's: the same on every container, as the chart's sidecars have it),
 * imagePullPolicy IfNotPresent.
 * Replaces whatever securityContext the container had. 0 or -ENOMEM. */
int podspec_harden_container(json_t *c);

/* A pod as the controller made it for this task uid and attempt: labels, and an ownerReference
 * with controller=true to that uid. 1 or 0; a foreign pod with the same name is never adopted. */
int podspec_is_ours(json_t *pod, const char *uid, int64_t attempt);
