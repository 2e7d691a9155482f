#pragma once
/* Read access to a Task object as the API server sends it (borrowed json, never copied): one
 * place that knows where each field lives, so callers do not walk json_object_get chains. Every
 * accessor takes NULL (a task not in the cache) and answers as for a field that is absent. Also
 * used for Flow children, which are Tasks. */
#include <jansson.h>
#include <stdint.h>

#include "phase.h"

/* The phases after which nothing runs again: common/phase.h is the one definition of "finished". */
#define TASK_TERMINAL_PHASES PHASE_TERMINAL_NAMES
int task_phase_terminal(const char *phase);

json_t *task_metadata(json_t *task);
json_t *task_spec(json_t *task);
json_t *task_status(json_t *task);

const char *task_namespace(json_t *task);
const char *task_name(json_t *task);
const char *task_uid(json_t *task);
int64_t task_generation(json_t *task);
const char *task_creation_timestamp(json_t *task);
int task_deleting(json_t *task); /* metadata.deletionTimestamp is set */

const char *task_phase(json_t *task); /* status.phase; NULL before the first write */
int task_terminal(json_t *task);
const char *task_reason(json_t *task);
const char *task_message(json_t *task);
int64_t task_attempts(json_t *task); /* status.attempts; 0 when absent */
const char *task_runner(json_t *task);
json_t *task_history(json_t *task);    /* status.attemptHistory */
json_t *task_conditions(json_t *task); /* status.conditions */
const char *task_completion_time(json_t *task);
const char *task_next_retry_time(json_t *task);

/* The executor spec.* names: "shell", "http", "remote", "container", or "none". */
const char *task_executor(json_t *task);
int task_cancel_requested(json_t *task); /* spec.cancel is true */
