#pragma once
/* Kubernetes Events (events.k8s.io/v1) about Tasks, best effort: recorder_emit() only queues
 * (bounded; drops when full) and a background thread creates the events, so reconciliation never
 * waits on them. Notes must not contain secret values. */
#include "kube.h"

#include <jansson.h>

struct recorder;

/* instance names this controller (reportingInstance, ≤128 bytes). */
struct recorder *recorder_new(struct kube_client *kc, const char *instance);
void recorder_free(struct recorder *r);
/* task is borrowed; type is "Normal" or "Warning". */
void recorder_emit(struct recorder *r, json_t *task, const char *type, const char *reason,
		   const char *action, const char *note);
/* Events created, and dropped because the queue was full or the API refused them. */
void recorder_stats(struct recorder *r, unsigned long *created, unsigned long *dropped);
