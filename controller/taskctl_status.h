#pragma once
/* Task status and conditions: the status written when an attempt finishes, the Succeeded
 * condition, attemptHistory, queue-secret masking and the retry policy. Pure; any thread. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Builds {"status": {...}} for a finished attempt from the runner's result message; history is
 * the attemptHistory to extend (NULL: the task's own). */
json_t *taskctl_terminal_status(json_t *task, json_t *result, int64_t attempt, const char *runner,
				json_t *history, int64_t now_ms, int log_tail_max);
/* The conditions array of a task in phase (Succeeded, Ready, Reconciling, Stalled, Completed:
 * conditions.h), keeping lastTransitionTime where a status did not change. New reference. */
json_t *taskctl_conditions(json_t *task, const char *phase, const char *reason, const char *message,
			   int64_t now_ms);
/* A new history: old (may be NULL) with entry added or replacing the same attempt, newest ten. */
json_t *taskctl_history_with(json_t *old, json_t *entry);
/* Failures that count against retries.limit (every entry but runner losses and successes), and
 * runner losses. */
int taskctl_count_failures(json_t *history);
int taskctl_count_lost(json_t *history);
/* Retry policy: whether a failed result is retried given the failures so far (this one
 * included), and the backoff delay for the next attempt (rnd: random bits for jitter). */
int taskctl_should_retry(json_t *spec, json_t *result, int failures);
int64_t taskctl_retry_delay_ms(json_t *retries, int failures, unsigned rnd);
/* Turns st, a finished attempt's status (taskctl_terminal_status), into a Retrying one: phase
 * Queued, reason Retrying, nextRetryTime retry_at_ms; the attempt's facts stay visible. */
void taskctl_status_retrying(json_t *task, json_t *st, int64_t attempt, int failures, int64_t limit,
			     int64_t retry_at_ms, int64_t now_ms);
/* After the last allowed retry failed: reason RetriesExhausted with a message counting them.
 * 1 when st changed. */
int taskctl_status_exhausted(json_t *task, json_t *st, int failures, int64_t limit, int64_t now_ms);
/* Replaces known secret values (array of strings) in status.logTail and .message with "***",
 * and withholds an output that contains one. */
void taskctl_mask(json_t *status, json_t *secrets);
/* Cuts s to at most max bytes at a UTF-8 character boundary, keeping the end. */
const char *taskctl_utf8_tail(const char *s, size_t max);
