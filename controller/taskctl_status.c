#include "taskctl_status.h"
#include "conditions.h"
#include "mask.h"
#include "sat.h"
#include "task.h"
#include "utf8.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TASKCTL_HISTORY_MAX 10
#define TASKCTL_OUTPUT_MAX (32 * 1024)
#define TASKCTL_MAX_BACKOFF_MS \
	(INT64_C(86400) * 1000) /* retries wait at most a day (CRD maximum) */

const char *taskctl_utf8_tail(const char *s, size_t max) { return u8_tail(s, max); }

json_t *taskctl_conditions(json_t *task, const char *phase, const char *reason, const char *message,
			   int64_t now_ms)
{
	return cond_run_array(task_conditions(task), phase, reason, message, task_generation(task),
			      now_ms);
}

/* Returns a new history: old (may be NULL) with entry added or replacing the same attempt. */
json_t *taskctl_history_with(json_t *old, json_t *entry)
{
	json_t *h = json_array(), *e;
	size_t i, n = json_array_size(old), skip;
	int64_t at = json_integer_value(json_object_get(entry, "attempt"));

	/* Replace an entry for the same attempt; keep the newest TASKCTL_HISTORY_MAX. */
	if (!h)
		return NULL;
	json_array_foreach(old, i, e)
		if (json_integer_value(json_object_get(e, "attempt")) != at &&
		    json_array_append(h, e) < 0)
			goto fail;
	if (json_array_append(h, entry) < 0)
		goto fail;
	n = json_array_size(h);
	skip = n > TASKCTL_HISTORY_MAX ? n - TASKCTL_HISTORY_MAX : 0;
	while (skip--)
		json_array_remove(h, 0);
	return h;
fail:
	json_decref(h);
	return NULL;
}

json_t *taskctl_terminal_status(json_t *task, json_t *result, int64_t attempt, const char *runner,
				json_t *history, int64_t now_ms, int log_tail_max)
{
	const char *phase = json_string_value(json_object_get(result, "phase"));
	const char *reason = json_string_value(json_object_get(result, "reason"));
	const char *message = json_string_value(json_object_get(result, "message"));
	const char *tail = json_string_value(json_object_get(result, "logTail"));
	json_t *exit_code = json_object_get(result, "exitCode"),
	       *output = json_object_get(result, "output");
	int64_t start = json_integer_value(json_object_get(result, "startTime"));
	int64_t end = json_integer_value(json_object_get(result, "completionTime"));
	char st[40], et[40], msgbuf[512];
	json_t *status, *entry;
	int ok, bad = 0;

	if (!phase)
		phase = "Failed";
	ok = strcmp(phase, "Succeeded") == 0;
	if (!reason || !*reason)
		reason = ok ? "Succeeded" : "Failed";
	if (!message || !*message) {
		if (ok)
			snprintf(msgbuf, sizeof(msgbuf), "completed");
		else if (json_is_integer(exit_code))
			snprintf(msgbuf, sizeof(msgbuf), "exited with code %lld",
				 (long long)json_integer_value(exit_code));
		else
			snprintf(msgbuf, sizeof(msgbuf), "%s", reason);
		message = msgbuf;
	}
	util_rfc3339(start ? start : now_ms, st, sizeof(st));
	util_rfc3339(end ? end : now_ms, et, sizeof(et));
	status = json_pack("{ss ss ss ss ss sI ss sI so}", "phase", phase, "reason", reason,
			   "message", message, "startTime", st, "completionTime", et, "attempts",
			   (json_int_t)attempt, "runner", runner, "observedGeneration",
			   (json_int_t)task_generation(task), "conditions",
			   taskctl_conditions(task,
					      ok                                ? "Succeeded"
					      : strcmp(phase, "Cancelled") == 0 ? "Cancelled"
										: "Failed",
					      reason, message, now_ms));
	if (!status)
		return NULL;
	/* Every field or none: a status missing a field after an allocation failure would be
	 * written as if complete (tests/unit/test_allocfail.c). */
	bad |= json_object_set_new(
		       status, "logTail",
		       json_string(taskctl_utf8_tail(tail ? tail : "", (size_t)log_tail_max))) < 0;
	bad |= json_object_set_new(
		       status, "outputTruncated",
		       json_boolean(json_is_true(json_object_get(result, "truncated")))) < 0;
	if (json_is_integer(exit_code) && json_integer_value(exit_code) >= 0)
		bad |= json_object_set(status, "exitCode", exit_code) < 0;
	if (json_is_integer(json_object_get(result, "httpStatus")))
		bad |= json_object_set(status, "httpStatus",
				       json_object_get(result, "httpStatus")) < 0;
	if (output) {
		char *s = json_dumps(output, JSON_COMPACT | JSON_ENCODE_ANY);
		bad |= !s;
		if (s && strlen(s) <= TASKCTL_OUTPUT_MAX)
			bad |= json_object_set(status, "output", output) < 0;
		free(s);
	}
	bad |= json_object_set_new(status, "nextRetryTime", json_null()) < 0;
	entry = json_pack("{sIssssssss}", "attempt", (json_int_t)attempt, "runner", runner,
			  "startTime", st, "completionTime", et, "reason", reason);
	bad |= !entry;
	if (entry && json_is_integer(exit_code) && json_integer_value(exit_code) >= 0)
		bad |= json_object_set(entry, "exitCode", exit_code) < 0;
	if (entry && json_is_integer(json_object_get(result, "httpStatus")))
		bad |= json_object_set(entry, "httpStatus", json_object_get(result, "httpStatus")) <
		       0;
	if (entry)
		bad |= json_object_set_new(status, "attemptHistory",
					   taskctl_history_with(
						   history ? history : task_history(task), entry)) <
		       0;
	json_decref(entry);
	if (bad) {
		json_decref(status);
		return NULL;
	}
	return json_pack("{so}", "status", status);
}

/* Replaces every known secret value in s with "***": 0 with *ret a new string, or NULL when s
 * holds none; -ENOMEM when the masked copy could not be built (callers then drop the text:
 * failing open would publish the secret). */
static int taskctl_mask_string(const char *s, json_t *secrets, char **ret)
{
	size_t n = json_array_size(secrets), k = 0, i;
	_cleanup_free_ const char **v = calloc(n ? n : 1, sizeof(*v));
	json_t *e;
	int r;

	*ret = NULL;
	if (!v)
		return -ENOMEM;
	json_array_foreach(secrets, i, e)
		if (json_is_string(e))
			v[k++] = json_string_value(e);
	r = mask_string(s, v, k, ret);
	if (r == 0) { /* nothing matched: the caller keeps s */
		free(*ret);
		*ret = NULL;
	}
	return r < 0 ? r : 0;
}

void taskctl_mask(json_t *status, json_t *secrets)
{
	const char *fields[] = { "logTail", "message" };
	if (json_array_size(secrets) == 0)
		return;
	for (size_t i = 0; i < UTIL_ARRAY_SIZE(fields); i++) {
		const char *v = json_string_value(json_object_get(status, fields[i]));
		char *m = NULL;
		int r = v ? taskctl_mask_string(v, secrets, &m) : 0;
		if (r < 0 || (m && json_object_set_new(status, fields[i], json_string(m)) < 0)) {
			/* Fail closed: no text rather than unmasked text. */
			json_object_del(status, fields[i]);
			json_object_set_new(
				status, fields[i],
				json_string("[withheld: could not mask queue secrets]"));
		}
		free(m);
	}
	if (json_object_get(status, "output")) {
		char *out = json_dumps(json_object_get(status, "output"),
				       JSON_COMPACT | JSON_ENCODE_ANY);
		char *m = NULL;
		int r = out ? taskctl_mask_string(out, secrets, &m) : -ENOMEM;
		if (r < 0 ||
		    m) { /* a secret inside the output (or no way to tell): keep it out, say why */
			json_object_del(status, "output");
			json_object_set_new(
				status, "output",
				json_pack("{ss}", "masked",
					  r < 0 ? "output could not be checked for queue secrets"
						: "output contained a queue secret"));
		}
		free(m);
		free(out);
	}
}

/* Failures that count against retries.limit: every recorded attempt except runner losses. */
int taskctl_count_failures(json_t *history)
{
	json_t *e;
	size_t i;
	int n = 0;
	json_array_foreach(history, i, e) {
		const char *reason = json_string_value(json_object_get(e, "reason"));
		if (!reason ||
		    (strcmp(reason, "RunnerLost") != 0 && strcmp(reason, "Succeeded") != 0))
			n++;
	}
	return n;
}

int taskctl_count_lost(json_t *history)
{
	json_t *e;
	size_t i;
	int n = 0;
	json_array_foreach(history, i, e) {
		const char *reason = json_string_value(json_object_get(e, "reason"));
		if (reason && strcmp(reason, "RunnerLost") == 0)
			n++;
	}
	return n;
}

int64_t taskctl_retry_delay_ms(json_t *retries, int failures, unsigned rnd)
{
	json_t *b = json_object_get(retries, "backoff"), *j = json_object_get(b, "jitter");
	double initial = json_is_number(json_object_get(b, "initialDelaySeconds"))
				 ? json_number_value(json_object_get(b, "initialDelaySeconds"))
				 : 1.0;
	double maxd = json_is_number(json_object_get(b, "maxDelaySeconds"))
			      ? json_number_value(json_object_get(b, "maxDelaySeconds"))
			      : 300.0;
	double factor = json_is_number(json_object_get(b, "factor"))
				? json_number_value(json_object_get(b, "factor"))
				: 2.0;
	double d = initial;

	if (factor < 1.0)
		factor = 1.0;
	for (int i = 1; i < failures && d < maxd; i++)
		d *= factor;
	if (d > maxd)
		d = maxd;
	if (!j ||
	    json_is_true(j)) /* jitter (default on): "equal jitter", half fixed, half random */
		d = d / 2 + d / 2 * (double)(rnd % 1001) / 1000.0;
	/* The CRD caps the delays at a day; an older CRD or a huge factor must not overflow. */
	return sat_ms_of_seconds(d, TASKCTL_MAX_BACKOFF_MS);
}

int taskctl_should_retry(json_t *spec, json_t *result, int failures)
{
	json_t *retries = json_object_get(spec, "retries"),
	       *codes = json_object_get(retries, "onExitCodes"), *c;
	const char *reason = json_string_value(json_object_get(result, "reason"));
	const char *phase = json_string_value(json_object_get(result, "phase"));
	json_t *exit_code = json_object_get(result, "exitCode");
	size_t i;

	if (!phase || strcmp(phase, "Failed") != 0)
		return 0;
	if (reason && (strcmp(reason, "Cancelled") == 0 || strcmp(reason, "InvalidSpec") == 0))
		return 0;
	if (failures > json_integer_value(json_object_get(retries, "limit")))
		return 0;
	/* A remote executor that says the failure is permanent is believed: retrying would only
	 * repeat it (bad input, a refused request). */
	if (json_is_false(json_object_get(result, "retryable")))
		return 0;
	if (json_array_size(codes) == 0)
		return 1;
	json_array_foreach(codes, i, c)
		if (json_is_integer(exit_code) &&
		    json_integer_value(c) == json_integer_value(exit_code))
			return 1;
	return 0;
}

void taskctl_status_retrying(json_t *task, json_t *st, int64_t attempt, int failures, int64_t limit,
			     int64_t retry_at_ms, int64_t now_ms)
{
	char ts[40], msg[512];
	util_rfc3339(retry_at_ms, ts, sizeof(ts));
	snprintf(msg, sizeof(msg), "attempt %lld failed (%s: %s); retry %d of %lld at %s",
		 (long long)attempt, json_string_value(json_object_get(st, "reason")),
		 json_string_value(json_object_get(st, "message")), failures, (long long)limit, ts);
	/* Retrying: the attempt's facts stay visible, the phase says it will run again. */
	json_object_set_new(st, "phase", json_string("Queued"));
	json_object_set_new(st, "reason", json_string("Retrying"));
	json_object_set_new(st, "message", json_string(msg));
	json_object_set_new(st, "nextRetryTime", json_string(ts));
	json_object_set_new(st, "conditions",
			    taskctl_conditions(task, "Queued", "Retrying", msg, now_ms));
	json_object_del(st, "completionTime");
}

int taskctl_status_exhausted(json_t *task, json_t *st, int failures, int64_t limit, int64_t now_ms)
{
	const char *phase = json_string_value(json_object_get(st, "phase"));
	const char *reason = json_string_value(json_object_get(st, "reason"));
	char msg[512];

	if (limit <= 0 || !phase || strcmp(phase, "Failed") != 0 || failures <= limit || !reason ||
	    strcmp(reason, "Cancelled") == 0 || strcmp(reason, "InvalidSpec") == 0)
		return 0;
	snprintf(msg, sizeof(msg), "%lld attempts failed; the last: %s", (long long)failures,
		 json_string_value(json_object_get(st, "message")));
	json_object_set_new(st, "reason", json_string("RetriesExhausted"));
	json_object_set_new(st, "message", json_string(msg));
	json_object_set_new(st, "conditions",
			    taskctl_conditions(task, "Failed", "RetriesExhausted", msg, now_ms));
	return 1;
}
