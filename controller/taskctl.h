#pragma once
/* The Task reconciler. Level-based: each pass compares what the cache says with what the
 * controller knows about the task's current attempt (dispatched, started, finished) and makes
 * at most one status write. The common path costs two writes per attempt (Running, then the
 * terminal phase), one when the result arrives before Running was written. */
#include "broker.h"
#include "informer.h"
#include "kube.h"
#include "deps.h"
#include "queues.h"
#include "recorder.h"
#include "workqueue.h"

struct taskctl;

struct taskctl_cfg {
	struct kube_client *kc;
	struct wq *queue;
	int64_t lost_grace_ms;     /* after a restart, how long Running tasks wait for their runner */
	int64_t startup_hold_ms;   /* after a restart, how long older unstarted tasks wait likewise */
	struct recorder *recorder; /* Events; may be NULL */
	struct queues *queues;     /* TaskQueues; NULL = built-in defaults only */
	struct deps_index *deps;   /* who depends on whom; may be NULL */
	/* Leader election: workers act only while this returns nonzero (NULL = always). */
	int (*may_act)(void *ud);
	void *may_act_ud;
	int log_tail_max;          /* bytes of logTail kept in status (≤ 4096) */
	/* Observers (optional; called on worker or broker threads, must not block):
	 * on_status after every successful status write, with the task as cached before the write
	 * (borrowed) and the status that was written (borrowed); on_log for each output chunk,
	 * with the task's key when known. */
	void (*on_status)(void *ud, json_t *task, json_t *status);
	void (*on_log)(void *ud, const char *key, const char *uid, int64_t attempt, int64_t seq,
		       const char *stream, const char *data);
	void *observer_ud;
};

struct taskctl *taskctl_new(const struct taskctl_cfg *cfg);
void taskctl_free(struct taskctl *t);
/* Wiring: the informer and broker are created after the reconciler. */
void taskctl_set_informer(struct taskctl *t, struct informer *inf);
void taskctl_set_broker(struct taskctl *t, struct broker *b);
/* Informer handler and broker callbacks. */
void taskctl_on_event(enum informer_event ev, const char *key, json_t *obj, void *ud);
extern const struct broker_ops taskctl_broker_ops;
/* Informer callback for a Task that does not decode: unless it already finished (or says so),
 * the leader marks it Failed with reason Undecodable and a message saying why. */
void taskctl_on_undecodable(const struct informer_bad *b, void *ud);
/* Reconciles one key; returns 0, or a negative errno to retry with backoff. */
int taskctl_reconcile(struct taskctl *t, const char *key);
/* Runs a worker loop on the calling thread until the queue shuts down. */
void *taskctl_worker(void *t);
/* Called when this controller becomes the leader: re-queues keys seen while standing by and
 * restarts the grace periods (runners need time to reconnect to the new leader). */
void taskctl_resume(struct taskctl *t);

/* Pure helpers, exposed for unit tests. */
/* 0, or -EINVAL with the first string of spec (outside spec.input, which reaches the task as
 * JSON) that holds a NUL byte named in err: such a string would end early as a C string on the
 * runner, so the task would run something other than what its spec says. */
int taskctl_check_nul(json_t *spec, char *err, size_t errsz);
/* Builds the dispatch message for an attempt, or returns NULL with a reason in err (InvalidSpec). */
json_t *taskctl_build_dispatch(json_t *task, int64_t attempt, int64_t now_ms, char *err, size_t errsz);
/* Builds {"status": {...}} for a finished attempt from the runner's result message; history is
 * the attemptHistory to extend (NULL: the task's own). */
json_t *taskctl_terminal_status(json_t *task, json_t *result, int64_t attempt, const char *runner,
				json_t *history, int64_t now_ms, int log_tail_max);
/* Retry policy: whether a failed result is retried given the failures so far (this one
 * included), and the backoff delay for the next attempt (rnd: random bits for jitter). */
int taskctl_should_retry(json_t *spec, json_t *result, int failures);
int64_t taskctl_retry_delay_ms(json_t *retries, int failures, unsigned rnd);
/* Replaces known secret values (array of strings) in status.logTail and .message with "***",
 * and withholds an output that contains one. */
void taskctl_mask(json_t *status, json_t *secrets);
/* Cuts s to at most max bytes at a UTF-8 character boundary, keeping the end. */
const char *taskctl_utf8_tail(const char *s, size_t max);
