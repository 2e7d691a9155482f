#pragma once
/* RunnerPools (docs/pools.md): per RunnerPool a Secret with the pool's runner token and a
 * Deployment (both owned by the pool) whose pods run the injected runner in the user's image;
 * tasks routed to the pool by spec.runnerPool or a runnerSelector matching its labels; the
 * runner count follows the pool's queued and running tasks; status with conditions.
 *
 * Threads: pools_on_event runs on the RunnerPool informer's thread, pools_route on workers,
 * pools_reconcile_all on the status thread. The lock guards the label cache and the per-pool
 * scale state only; it is never held across a call out. */
#include "broker.h"
#include "informer.h"
#include "kube.h"
#include "pools_spec.h"
#include "queues.h"
#include "workqueue.h"

#include <jansson.h>

struct pools;

struct pools_cfg {
	struct kube_client *kc;
	struct informer *pools_inf; /* RunnerPools */
	struct informer *tasks_inf; /* Tasks: the pools' queued tasks are counted from it */
	struct queues *queues;      /* a task without a selector uses its queue's */
	struct broker *broker;
	struct wq *tasks_queue; /* woken when a pool changes (tasks waiting for it) */
	const char *token_file; /* the controller's runner token: the key pool tokens derive from */
	struct pools_env env;   /* runner_image NULL: pools are reported, not run */
};

struct pools *pools_new(const struct pools_cfg *cfg);
void pools_free(struct pools *p);
/* Called (any thread) when a pool appears or changes, so tasks waiting for it are tried again;
 * set before the RunnerPool informer starts. */
void pools_set_wake(struct pools *p, void (*wake)(void *ud), void *ud);
/* RunnerPool informer handler. */
void pools_on_event(enum informer_event ev, const char *key, json_t *obj, void *ud);

/* Where a task runs: 1 and the pool's "ns/name" in out; 0 when no pool is meant (the global
 * runners); -ENOENT when spec.runnerPool names a pool that does not exist (why says so).
 * selector is the effective one (the task's, else its queue's). */
int pools_route(struct pools *p, json_t *task, json_t *selector, char *out, size_t outsz, char *why,
		size_t whysz);
/* Whether the task's TaskQueue's container policy (queue may be NULL: no TaskQueue, the built-in
 * policy that allows no image) lets its tasks use pool ("ns/name"): 1 yes, 0 no with *reason and
 * why saying what it refused. See pools_policy_check. */
int pools_policy_allows(struct pools *p, const char *pool, json_t *queue, const char **reason,
			char *why, size_t whysz);
/* The same for a task found by UID in the Task cache: 1 when it routes to pool. */
int pools_task_in_pool(struct pools *p, const char *uid, const char *pool);
/* queues_pool_fn (queues.h) for a TaskQueue's status: whether runnerSelector of a queue in ns
 * reaches a pool of ns (-ENOENT: none), and whether its runners serve it (1: connected, or
 * started on demand by the first queued task; 0: the pool is Stalled or has maxRunners 0). */
int pools_queue_runners(void *ud, const char *ns, json_t *selector, char *msg, size_t msgsz);
/* Creates and scales each pool's Deployment and writes its status. The leader calls it every
 * couple of seconds. */
void pools_reconcile_all(struct pools *p);
