#pragma once
/* TaskQueues: the policy a platform team sets for the tasks that name a queue. This module
 * caches TaskQueue objects (through an informer), admits tasks into a queue (concurrency, token
 * bucket rate limit, priority: higher first, then oldest) and writes each queue's status
 * (pending, queued, running, and whether any runner matches its runnerSelector).
 *
 * Concurrency is counted from slot holders: a task holds a slot from admission until its attempt
 * settles, and a task the cache shows Running holds one too — so after a controller restart the
 * running tasks are counted before anything new is admitted. */
#include "broker.h"
#include "informer.h"
#include "kube.h"
#include "workqueue.h"

#include <jansson.h>
#include <stdint.h>

struct queues;

enum queue_admit { QUEUE_ADMITTED, QUEUE_NO_SLOT, QUEUE_RATE_LIMITED };

/* queues_inf, tasks_inf: the TaskQueue and Task caches (NULL in unit tests: no status writes). */
struct queues *queues_new(struct kube_client *kc, struct wq *tasks_queue,
			  struct informer *queues_inf, struct informer *tasks_inf,
			  struct broker *broker);
void queues_free(struct queues *q);
/* TaskQueue informer handler: wakes the tasks that wait for the queue or sit in it. */
void queues_on_event(enum informer_event ev, const char *key, json_t *obj, void *ud);

/* "ns/name" of the queue a task uses (spec.queue, default "default"). */
void queues_key_of(json_t *task, char *out, size_t outsz);
/* New reference to the TaskQueue, or NULL when it does not exist. */
json_t *queues_get(struct queues *q, const char *qkey);
/* The task waits for its queue to be created. */
void queues_wait_for(struct queues *q, const char *qkey, const char *task_key);

/* Tries to take a slot and a rate token for task_key in qkey (queue may be NULL: no limits).
 * QUEUE_RATE_LIMITED sets *retry_ms. A task that is not admitted waits in the queue's ready set
 * and is woken (queued again) when it is its turn. */
enum queue_admit queues_admit(struct queues *q, const char *qkey, json_t *queue,
			      const char *task_key, int64_t priority, int64_t created_ms,
			      int64_t *retry_ms);
/* Declares whether task_key currently holds a slot in qkey; freeing one wakes the next task. */
void queues_set_holder(struct queues *q, const char *qkey, const char *task_key, int holds);
/* The task is gone or finished: drop it from every set. */
void queues_forget(struct queues *q, const char *task_key);
int queues_running(struct queues *q, const char *qkey);

/* Tagger for the task informer: "ns/queue|phase", so queue counts never scan the cache. */
int queues_task_tag(json_t *task, char *out, size_t outsz);
/* Where a queue's runnerSelector leads when it reaches a RunnerPool (pools.h, which cannot be
 * included here): -ENOENT when no pool of namespace ns matches selector (the global runners
 * decide); 1 when the pool's runners serve it (connected, or started on demand), 0 when they
 * cannot (the pool is Stalled); msg says which pool and how it stands. */
typedef int (*queues_pool_fn)(void *ud, const char *ns, json_t *selector, char *msg, size_t msgsz);
/* Set before the status thread starts. */
void queues_set_pools(struct queues *q, queues_pool_fn fn, void *ud);
/* Writes changed queue statuses; call every second or two from a timer thread. */
void queues_write_status(struct queues *q);
