#pragma once
/* The Flow reconciler: a Flow is a DAG of tasks applied as one object. It validates the graph
 * (duplicate names, unknown dependencies, cycles) before creating anything, creates one child
 * Task per entry named "<flow>-<task>", labelled tasked.dev/flow=<flow> and owned by the Flow,
 * aggregates the children's phases into the Flow's status, cancels unfinished children after the
 * first failure when failFast is set, and deletes the children when the Flow is deleted (even
 * without kube-controller-manager's garbage collector). Children are the Tasks whose controller
 * ownerReference carries the Flow's UID: a Task that merely has a child's name or label is never
 * adopted (the Flow fails ChildNameConflict) and never deleted. */
#include "informer.h"
#include "kube.h"
#include "workqueue.h"

#include <jansson.h>

struct flowctl;

struct flowctl_cfg {
	struct kube_client *kc;
	struct informer *tasks;   /* the Task cache */
	struct informer *flows;   /* the Flow cache */
	int (*may_act)(void *ud); /* leader election; NULL = always */
	void *may_act_ud;
};

struct flowctl *flowctl_new(const struct flowctl_cfg *cfg);
void flowctl_free(struct flowctl *f);
/* Flow informer handler. */
void flowctl_on_event(enum informer_event ev, const char *key, json_t *obj, void *ud);
/* To be called for Task events: a child's change wakes its Flow. */
void flowctl_on_task(struct flowctl *f, json_t *task);
/* The same as a Task informer handler (ud is the struct flowctl *). */
void flowctl_on_task_event(enum informer_event ev, const char *key, json_t *obj, void *ud);
int flowctl_start(struct flowctl *f); /* worker thread */
void flowctl_stop(struct flowctl *f);
/* Re-queues every Flow (after becoming leader). */
void flowctl_resume(struct flowctl *f);

/* Whether task's controller ownerReference is the Flow with UID flow_uid: what makes a Task a
 * Flow's child (a label alone does not; anyone may set it). */
int flowctl_owned_by(json_t *task, const char *flow_uid);

/* Graph validation, exposed for unit tests: 0, or -EINVAL with reason (DuplicateName,
 * UnknownDependency, Cycle, Empty) and a message naming the problem. */
int flowctl_validate(json_t *tasks, const char **reason, char *msg, size_t msgsz);
