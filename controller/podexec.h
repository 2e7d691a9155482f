#pragma once
/* The container executor's lifecycle: one Pod per task attempt (podspec.h), watched through a
 * Pod informer (label tasked.dev/executor=container), its state reported to the Task reconciler
 * through the same callbacks the runner broker uses (struct broker_ops): started, result, lost,
 * held, log. So retries, timeouts, cancel, dependencies and the attempt table work exactly as
 * for shell tasks; the attempt's "runner" is "pod/<pod name>".
 *
 * - dispatch creates the pod (first the namespace's deny-all NetworkPolicy when the pod has no
 *   network). The name is deterministic per (task uid, attempt): a create repeated after a
 *   restart or a leader change gets AlreadyExists and adopts the pod when its owner and labels
 *   are this attempt's; a foreign pod of that name is an error, never adopted.
 * - a pod without network runs the network gate first (podspec.h); a gate that fails is the
 *   attempt's result, NetworkPolicyNotEnforced, and the task's code never ran.
 * - results come from the container status (exit code, OOMKilled, the pod's DeadlineExceeded,
 *   image and configuration errors, a pod that never starts), the output from the termination
 *   message, the log from the pods/log endpoint capped at the queue's maxOutputBytes, masked
 *   with the values of the queue secrets the pod references.
 * - cancel deletes the pod at once (grace 0) and reports Cancelled; ack (the result is recorded)
 *   deletes it unless keep_pods; a pod deleted by anyone else before its result is a lost
 *   attempt.
 * Its lock guards the pod records only and is never held across a call out. */
#include "broker.h"
#include "kube.h"
#include "podspec.h"

#include <jansson.h>
#include <stdint.h>

struct podexec;

struct podexec_cfg {
	struct kube_client *kc;
	const char *namespace_;   /* watch one namespace (NULL: all) */
	const char *apparmor;     /* podspec_opts.apparmor */
	const char *gate_image;   /* podspec_opts.gate_image (NULL: no network gate) */
	int64_t gate_timeout_s;   /* podspec_opts.gate_timeout_s */
	int keep_pods;            /* keep finished pods (debugging) */
	int64_t start_timeout_ms; /* a pod not running after this long fails (PodNotStarted) */
	/* Whether this controller acts (leader election; NULL = always). */
	int (*may_act)(void *ud);
	void *may_act_ud;
};

#define PODEXEC_RUNNER_PREFIX "pod/"

struct podexec *podexec_new(const struct podexec_cfg *cfg);
/* The Task reconciler subscribes before podexec_start. */
void podexec_subscribe(struct podexec *px, const struct broker_ops *ops, void *ud);
int podexec_start(struct podexec *px);
void podexec_stop(struct podexec *px);
void podexec_free(struct podexec *px);
int podexec_synced(struct podexec *px);

/* Whether runner names a pod of this executor. */
int podexec_is_runner(const char *runner);
/* Creates (or adopts) the pod for a dispatch message with a "container" part (taskctl_dispatch):
 * 0 with "pod/<name>" in runner; -EAGAIN/-EIO to retry; -EPROTO when the pod can never be made
 * (refused by the API server, or a foreign pod holds the name), with why in runner. */
int podexec_dispatch(struct podexec *px, json_t *msg, char *runner, size_t runnersz);
void podexec_cancel(struct podexec *px, const char *runner, const char *uid, int64_t attempt);
void podexec_ack(struct podexec *px, const char *runner, const char *uid, int64_t attempt);

/* The result message (as a runner sends it) for a pod whose task container has finished or
 * can never start; NULL while it runs or waits. *running is set when the container runs
 * (*started_ms its start). Pure (now_ms and start_timeout_ms decide PodNotStarted). */
json_t *podexec_pod_result(json_t *pod, int64_t now_ms, int64_t start_timeout_ms, int *running,
			   int64_t *started_ms);
