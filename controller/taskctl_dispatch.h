#pragma once
/* Dispatch building: the runner message for one attempt of a Task, with the spec validated on
 * the way (what the runner's decoder would refuse is refused here, as InvalidSpec), then the
 * TaskQueue applied (defaults, policy, resources, queue secrets) and $(tasks.…) resolved.
 * Pure apart from the secret reader; any thread. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Secrets a TaskQueue may name must carry this label set to "true". */
#define TASKCTL_QUEUE_SECRET_LABEL "tasked.dev/queue-secret"

/* Reads one key of a Secret: 0 with *ret (new buffer, NUL-terminated) and *len (its bytes, which
 * may hold a NUL), -EAGAIN when the API server could not be asked, -EPERM when the Secret lacks
 * TASKCTL_QUEUE_SECRET_LABEL, another negative errno when the Secret or key does not exist. */
struct taskctl_secret_reader {
	int (*read)(void *ud, const char *ns, const char *name, const char *key, char **ret,
		    size_t *len);
	void *ud;
};

/* 0, or -EINVAL with the first string of spec (outside spec.input, which reaches the task as
 * JSON) that holds a NUL byte named in err: such a string would end early as a C string on the
 * runner, so the task would run something other than what its spec says. */
int taskctl_check_nul(json_t *spec, char *err, size_t errsz);
/* Builds the dispatch message for an attempt, or returns NULL with a reason in err (InvalidSpec). */
json_t *taskctl_build_dispatch(json_t *task, int64_t attempt, int64_t now_ms, char *err,
			       size_t errsz);
/* Applies the queue (defaults, policy, selector) and queue secrets to a dispatch msg, and
 * resolves $(tasks.…) references (vars: the dependencies' facts). On a task error writes the
 * reason into reason/err and returns -EINVAL; -EAGAIN when a secret could not be read now. */
int taskctl_apply_queue(const struct taskctl_secret_reader *rd, json_t *task, json_t *msg,
			json_t *queue, json_t *vars, int64_t now_ms, const char **reason, char *err,
			size_t errsz);
