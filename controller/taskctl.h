#pragma once
/* The Task reconciler. Level-based: each pass compares what the cache says with what the
 * controller knows about the task's current attempt (dispatched, started, finished) and makes
 * at most one status write. The common path costs two writes per attempt (Running, then the
 * terminal phase), one when the result arrives before Running was written. */
#include "broker.h"
#include "podexec.h"
#include "informer.h"
#include "kube.h"
#include "deps.h"
#include "queues.h"
#include "recorder.h"
#include "workqueue.h"

struct taskctl;

/* Everything the reconciler does to the world goes through these, so its decisions can be
 * tested without an API server or runners (tests/unit/test_reconcile.c). NULL in the
 * configuration: the real ones (Kubernetes, broker, work queue, recorder). Called on worker
 * threads (and requeue also on broker threads), never with a taskctl lock held. */
struct taskctl_effects {
	/* Merge-patches the Task's status with patch ({"status": …}) under a UID precondition:
	 * 0, -ENOENT (gone), -EINVAL (refused), -EAGAIN (retry); see kube_patch_status. */
	int (*write_status)(void *ud, json_t *task, json_t *patch);
	/* Sends an attempt to a runner of pool ("" = the global runners) matching selector; the
	 * runner's name into runner.
	 * 0, -EAGAIN (no free slot), -ENODEV (no matching runner), -EMSGSIZE (too big). */
	int (*dispatch)(void *ud, const char *uid, int64_t attempt, const char *pool,
			json_t *selector, json_t *msg, char *runner, size_t runnersz);
	void (*cancel)(void *ud, const char *runner, const char *uid, int64_t attempt);
	/* Tells the runner the controller has recorded the attempt's result. */
	void (*ack)(void *ud, const char *runner, const char *uid, int64_t attempt);
	void (*emit)(void *ud, json_t *task, const char *type, const char *reason,
		     const char *note);
	/* Reconcile key again after after_ms (0: now). */
	void (*requeue)(void *ud, const char *key, int64_t after_ms);
	/* Deletes the Task (ttlSecondsAfterFinished) under a UID precondition: 0 or -EAGAIN. */
	int (*delete_task)(void *ud, json_t *task);
	/* See struct taskctl_secret_reader. */
	int (*read_secret)(void *ud, const char *ns, const char *name, const char *key, char **ret,
			   size_t *len);
	/* Wall clock in ms (NULL: util_now_ms). */
	int64_t (*now_ms)(void *ud);
	void *ud;
};

struct taskctl_cfg {
	struct kube_client *kc;
	struct informer *inf;  /* the Task cache */
	struct broker *broker; /* runners; this reconciler subscribes to it (taskctl_broker_ops) */
	struct podexec *pods;  /* the container executor (same ops); NULL: container tasks fail */
	struct wq *queue;
	int64_t lost_grace_ms;   /* after a restart, how long Running tasks wait for their runner */
	int64_t startup_hold_ms; /* after a restart, how long older unstarted tasks wait likewise */
	struct recorder *recorder; /* Events; may be NULL */
	struct queues *queues;     /* TaskQueues; NULL = built-in defaults only */
	struct deps_index *deps;   /* who depends on whom; may be NULL */
	struct pools *pools;       /* RunnerPools (routing); NULL = none */
	/* Leader election: workers act only while this returns nonzero (NULL = always). */
	int (*may_act)(void *ud);
	void *may_act_ud;
	int log_tail_max; /* bytes of logTail kept in status (≤ 4096) */
	/* Observers (optional; called on worker or broker threads, must not block):
	 * on_status after every successful status write, with the task as cached before the write
	 * (borrowed) and the status that was written (borrowed); on_log for each output chunk,
	 * with the task's key when known. */
	void (*on_status)(void *ud, json_t *task, json_t *status);
	void (*on_log)(void *ud, const char *key, const char *uid, int64_t attempt, int64_t seq,
		       const char *stream, const char *data);
	void *observer_ud;
	const struct taskctl_effects *effects; /* NULL: the real ones; copied */
};

struct taskctl *taskctl_new(const struct taskctl_cfg *cfg);
void taskctl_free(struct taskctl *t);
/* Informer handler and broker callbacks (broker_subscribe(b, &taskctl_broker_ops, t)). */
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

/* The pure parts live in their own files; included here for existing callers. */
#include "taskctl_dispatch.h"
#include "taskctl_status.h"
