#pragma once
/* Validating admission (admission.k8s.io/v1 AdmissionReview) for Tasks and Flows: the checks
 * that need more than the CRD schema and its CEL rules can say, made when the object is applied
 * instead of when it runs. The controller re-checks all of it at run time (taskctl, flowctl), so
 * a review that cannot be made (an object nested too deep to decode, say) is allowed with a
 * warning rather than refused: this module narrows what gets in, it is not the last line.
 *
 * Pure: no I/O. TaskQueues come from a lookup the caller provides (the controller's cache); a
 * queue that does not exist yet is no reason to refuse (the task waits for it).
 *
 * Checks, each refusal naming the field:
 *   Flow  spec.tasks: empty, duplicate names, unknown dependsOn, dependency cycles
 *   both  when: syntax, length and nesting, and its cost evaluated with every dependency
 *         Succeeded (limits from the queue's policy.conditions or the defaults)
 *         $(tasks.NAME.FIELD) in command, env values, http/remote url, body and header values:
 *         NAME must be a dependency (a sibling inside a Flow), FIELD output[.PATH], exitCode or
 *         phase
 *         the executor must be in the queue's policy.executors (default shell, http), and every
 *         env valueFrom.queueSecret must be one the queue declares */
#include <jansson.h>
#include <stddef.h>

#define WEBHOOK_MAX_BODY (4 * 1024 * 1024) /* two objects of the API server's 1.5 MiB, and more */
#define WEBHOOK_MAX_DEPTH 1024             /* nesting decoded; deeper reviews are not validated */
#define WEBHOOK_MAX_UID 128
#define WEBHOOK_MSG_MAX 1024

/* New reference to TaskQueue ns/name, or NULL when there is none (or it is not known yet). */
typedef json_t *(*webhook_queue_fn)(const char *ns, const char *name, void *ud);

struct webhook_verdict {
	int allowed;
	int error;                     /* no verdict could be reached (out of memory) */
	int code;                      /* HTTP code for the status of a refusal (403) */
	char message[WEBHOOK_MSG_MAX]; /* why it was refused */
	char warning[256];             /* a note for an allowed review ("" = none) */
};

/* What the review asks, decoded from the request (borrowed from the decoded document). */
struct webhook_request {
	char uid[WEBHOOK_MAX_UID + 1];
	const char *kind;       /* request.kind.kind: "Task", "Flow", … */
	const char *group;      /* request.kind.group */
	const char *operation;  /* CREATE, UPDATE, DELETE, CONNECT */
	const char *namespace_; /* request.namespace, else object.metadata.namespace */
	json_t *object, *old_object;
};

/* Decodes an AdmissionReview v1 body of len bytes (hostile: size, nesting, NUL in strings).
 * Returns a new reference to the document with *req filled (borrowing from it), or NULL:
 * then req->uid is the request's uid when it could still be found (a review that decodes only
 * in part), else "", and err says why. */
json_t *webhook_decode(const char *body, size_t len, struct webhook_request *req, char *err,
		       size_t errsz);

/* Reviews a decoded request. */
void webhook_review(const struct webhook_request *req, webhook_queue_fn queue, void *ud,
		    struct webhook_verdict *v);

/* The AdmissionReview v1 answer for uid as compact JSON (caller frees), or NULL (no memory). */
char *webhook_encode(const char *uid, const struct webhook_verdict *v, size_t *len);

/* Decode, review, encode: the whole HTTP body in and out. *status is the HTTP status (200 with
 * a review; 400 when no uid could be found, 500 when no verdict could be reached, with a plain
 * message as body: the API server then applies the webhook's failurePolicy). */
char *webhook_handle(const char *body, size_t len, webhook_queue_fn queue, void *ud, int *status,
		     size_t *outlen);

/* The checks, for tests: spec of a Task (flow_tasks: the Flow's spec.tasks when the spec is one
 * of its entries, else NULL), its queue (may be NULL) and the field prefix for messages
 * ("spec", "spec.tasks[2]"). 0 or -EINVAL with msg. */
int webhook_check_task(json_t *spec, json_t *flow_tasks, json_t *queue, const char *field,
		       char *msg, size_t msgsz);
int webhook_check_flow(json_t *flow, webhook_queue_fn queue, void *ud, const char *ns, char *msg,
		       size_t msgsz);
