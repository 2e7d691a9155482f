#include "taskctl.h"
#include "log.h"
#include "proto.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TASKCTL_HISTORY_MAX 10
#define TASKCTL_OUTPUT_MAX (32 * 1024)

enum att_state { ATT_DISPATCHED, ATT_STARTED, ATT_DONE, ATT_LOST };
enum att_written { W_NONE, W_RUNNING, W_TERMINAL };

/* What the controller knows about a task's current attempt, keyed by task UID. */
struct attempt {
	struct attempt *next;
	char uid[PROTO_MAX_ID + 1];
	char key[512];
	char runner[64];
	int64_t attempt;
	enum att_state state;
	enum att_written written;
	int64_t start_ms;
	json_t *result;         /* the runner's result message, once done */
	json_t *history;        /* attemptHistory before this attempt, when the controller changed it */
};

struct taskctl {
	struct taskctl_cfg cfg;
	struct informer *inf;
	struct broker *broker;
	pthread_mutex_t lock;   /* guards attempts and waiting */
	struct attempt *attempts;
	json_t *waiting;        /* keys queued for a free runner slot */
	int64_t started_ms;
};

static const char *const terminal_phases[] = { "Succeeded", "Failed", "Skipped", "Cancelled" };

static int is_terminal(const char *phase)
{
	for (size_t i = 0; phase && i < UTIL_ARRAY_SIZE(terminal_phases); i++)
		if (strcmp(phase, terminal_phases[i]) == 0)
			return 1;
	return 0;
}

struct taskctl *taskctl_new(const struct taskctl_cfg *cfg)
{
	struct taskctl *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->cfg = *cfg;
	if (t->cfg.log_tail_max <= 0 || t->cfg.log_tail_max > 4096)
		t->cfg.log_tail_max = 4096;
	pthread_mutex_init(&t->lock, NULL);
	t->waiting = json_object();
	t->started_ms = util_mono_ms();
	return t;
}

void taskctl_free(struct taskctl *t)
{
	if (!t)
		return;
	while (t->attempts) {
		struct attempt *a = t->attempts;
		t->attempts = a->next;
		json_decref(a->result);
		json_decref(a->history);
		free(a);
	}
	json_decref(t->waiting);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

void taskctl_set_informer(struct taskctl *t, struct informer *inf) { t->inf = inf; }
void taskctl_set_broker(struct taskctl *t, struct broker *b) { t->broker = b; }

/* Caller holds lock. */
static struct attempt *att_find(struct taskctl *t, const char *uid)
{
	for (struct attempt *a = t->attempts; a; a = a->next)
		if (strcmp(a->uid, uid) == 0)
			return a;
	return NULL;
}

static struct attempt *att_new(struct taskctl *t, const char *uid, const char *key, int64_t attempt,
			       const char *runner)
{
	struct attempt *a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	snprintf(a->uid, sizeof(a->uid), "%s", uid);
	snprintf(a->key, sizeof(a->key), "%s", key);
	snprintf(a->runner, sizeof(a->runner), "%s", runner ? runner : "");
	a->attempt = attempt;
	a->next = t->attempts;
	t->attempts = a;
	return a;
}

static void att_drop(struct taskctl *t, const char *uid)
{
	for (struct attempt **pp = &t->attempts; *pp; pp = &(*pp)->next) {
		if (strcmp((*pp)->uid, uid) == 0) {
			struct attempt *a = *pp;
			*pp = a->next;
			json_decref(a->result);
			json_decref(a->history);
			free(a);
			return;
		}
	}
}

/* --- informer and broker callbacks (other threads; record and queue only) ----------------- */

void taskctl_on_event(enum informer_event ev, const char *key, json_t *obj, void *ud)
{
	struct taskctl *t = ud;
	wq_add(t->cfg.queue, key);
}

static char *taskctl_key_for(struct taskctl *t, const char *uid)
{
	return t->inf ? informer_key_by_uid(t->inf, uid) : NULL;
}

static void cb_started(void *ud, const char *uid, int64_t attempt, int64_t start_ms, const char *runner)
{
	struct taskctl *t = ud;
	struct attempt *a;
	char key[512] = "";

	pthread_mutex_lock(&t->lock);
	a = att_find(t, uid);
	if (a && a->attempt == attempt && a->state == ATT_DISPATCHED) {
		a->state = ATT_STARTED;
		a->start_ms = start_ms ? start_ms : util_now_ms();
		snprintf(key, sizeof(key), "%s", a->key);
	}
	pthread_mutex_unlock(&t->lock);
	if (key[0])
		wq_add(t->cfg.queue, key);
}

static void cb_result(void *ud, const char *uid, int64_t attempt, const char *runner, json_t *msg)
{
	struct taskctl *t = ud;
	struct attempt *a;
	char key[512] = "";
	char *k = NULL;
	int stale = 0;

	pthread_mutex_lock(&t->lock);
	a = att_find(t, uid);
	if (!a) {
		/* A result from before a controller restart: find the task by UID. */
		pthread_mutex_unlock(&t->lock);
		k = taskctl_key_for(t, uid);
		pthread_mutex_lock(&t->lock);
		a = att_find(t, uid);
		if (!a && k)
			a = att_new(t, uid, k, attempt, runner);
	}
	if (a && a->attempt == attempt && a->state != ATT_DONE) {
		a->state = ATT_DONE;
		snprintf(a->runner, sizeof(a->runner), "%s", runner);
		json_decref(a->result);
		a->result = json_incref(msg);
		snprintf(key, sizeof(key), "%s", a->key);
	} else if (!a || a->attempt != attempt) {
		stale = 1;
	}
	pthread_mutex_unlock(&t->lock);
	free(k);
	if (key[0])
		wq_add(t->cfg.queue, key);
	else if (stale)
		/* Nobody waits for this attempt any more (task deleted or superseded): let the
		 * runner forget it. */
		broker_ack(t->broker, runner, uid, attempt);
}

static void cb_held(void *ud, const char *uid, int64_t attempt, const char *runner)
{
	struct taskctl *t = ud;
	struct attempt *a;
	char *k = taskctl_key_for(t, uid);

	pthread_mutex_lock(&t->lock);
	a = att_find(t, uid);
	if (!a && k) {
		a = att_new(t, uid, k, attempt, runner);
		if (a)
			a->state = ATT_STARTED;
	}
	pthread_mutex_unlock(&t->lock);
	if (k)
		wq_add(t->cfg.queue, k);
	free(k);
}

static void cb_lost(void *ud, const char *uid, int64_t attempt, const char *runner)
{
	struct taskctl *t = ud;
	struct attempt *a;
	char key[512] = "";

	pthread_mutex_lock(&t->lock);
	a = att_find(t, uid);
	if (a && a->attempt == attempt && a->state != ATT_DONE) {
		a->state = ATT_LOST;
		snprintf(key, sizeof(key), "%s", a->key);
	}
	pthread_mutex_unlock(&t->lock);
	if (key[0]) {
		log_warn("runner lost an attempt", "runner", runner, "uid", uid);
		wq_add(t->cfg.queue, key);
	}
}

static void cb_capacity(void *ud)
{
	struct taskctl *t = ud;
	json_t *w;
	const char *key;
	json_t *v;

	pthread_mutex_lock(&t->lock);
	w = t->waiting;
	t->waiting = json_object();
	pthread_mutex_unlock(&t->lock);
	json_object_foreach(w, key, v)
		wq_add(t->cfg.queue, key);
	json_decref(w);
}

static void cb_log(void *ud, const char *uid, int64_t attempt, int64_t seq, const char *stream,
		   const char *data, const char *runner)
{
	struct taskctl *t = ud;
	char key[512] = "";
	struct attempt *a;

	if (!t->cfg.on_log)
		return;
	pthread_mutex_lock(&t->lock);
	a = att_find(t, uid);
	if (a)
		snprintf(key, sizeof(key), "%s", a->key);
	pthread_mutex_unlock(&t->lock);
	t->cfg.on_log(t->cfg.observer_ud, key[0] ? key : NULL, uid, attempt, seq, stream, data);
}

const struct broker_ops taskctl_broker_ops = {
	.log = cb_log,
	.started = cb_started,
	.result = cb_result,
	.held = cb_held,
	.capacity = cb_capacity,
	.lost = cb_lost,
};

/* --- pure helpers ---------------------------------------------------------------------- */

const char *taskctl_utf8_tail(const char *s, size_t max)
{
	size_t n = strlen(s);
	const char *p;
	if (n <= max)
		return s;
	p = s + (n - max);
	while (*p && ((unsigned char)*p & 0xC0) == 0x80)
		p++;
	return p;
}

static json_t *spec_of(json_t *task) { return json_object_get(task, "spec"); }

json_t *taskctl_build_dispatch(json_t *task, int64_t attempt, int64_t now_ms, char *err, size_t errsz)
{
	json_t *md = json_object_get(task, "metadata"), *spec = spec_of(task), *shell, *env, *e;
	json_t *msg, *outenv;
	const char *unsupported[] = { "http", "remote", "container" };
	json_int_t timeout;
	size_t i;

	for (i = 0; i < UTIL_ARRAY_SIZE(unsupported); i++) {
		if (json_object_get(spec, unsupported[i])) {
			snprintf(err, errsz, "the %s executor is not supported by this controller version", unsupported[i]);
			return NULL;
		}
	}
	if (json_array_size(json_object_get(spec, "dependsOn")) > 0 || json_object_get(spec, "when")) {
		snprintf(err, errsz, "dependsOn and when are not supported by this controller version");
		return NULL;
	}
	shell = json_object_get(spec, "shell");
	if (!json_is_object(shell) || !json_is_array(json_object_get(shell, "command")) ||
	    json_array_size(json_object_get(shell, "command")) == 0) {
		snprintf(err, errsz, "spec.shell.command must be a non-empty list");
		return NULL;
	}
	outenv = json_array();
	env = json_object_get(spec, "env");
	json_array_foreach(env, i, e) {
		const char *name = json_string_value(json_object_get(e, "name"));
		json_t *val = json_object_get(e, "value");
		if (!name) {
			snprintf(err, errsz, "spec.env[%zu].name is required", i);
			json_decref(outenv);
			return NULL;
		}
		if (json_object_get(e, "valueFrom")) {
			snprintf(err, errsz, "spec.env[%zu] (%s): valueFrom.queueSecret needs a TaskQueue with secrets, which this controller version does not support", i, name);
			json_decref(outenv);
			return NULL;
		}
		json_array_append_new(outenv, json_pack("{ssss}", "name", name, "value",
							json_is_string(val) ? json_string_value(val) : ""));
	}
	timeout = json_integer_value(json_object_get(spec, "timeoutSeconds"));
	msg = json_pack("{sssssIssss sI sO so}",
			"type", "dispatch",
			"taskUid", json_string_value(json_object_get(md, "uid")),
			"attempt", (json_int_t)attempt,
			"namespace", json_string_value(json_object_get(md, "namespace")),
			"name", json_string_value(json_object_get(md, "name")),
			"deadline", (json_int_t)(timeout > 0 ? now_ms + timeout * 1000 : 0),
			"shell", shell,
			"env", outenv);
	if (!msg) {
		snprintf(err, errsz, "task metadata incomplete");
		return NULL;
	}
	if (json_object_get(spec, "input"))
		json_object_set(msg, "input", json_object_get(spec, "input"));
	json_object_set_new(msg, "limits", json_pack("{sIsi}", "maxOutputBytes", (json_int_t)10 * 1024 * 1024,
						    "logTailBytes", 4096));
	return msg;
}

static json_int_t generation_of(json_t *task)
{
	return json_integer_value(json_object_get(json_object_get(task, "metadata"), "generation"));
}

/* The Succeeded condition, keeping lastTransitionTime when the status did not change. */
static json_t *succeeded_condition(json_t *task, const char *status, const char *reason,
				   const char *message, int64_t now_ms)
{
	json_t *conds = json_object_get(json_object_get(task, "status"), "conditions"), *c;
	char ts[40];
	const char *ltt = NULL;
	size_t i;

	json_array_foreach(conds, i, c) {
		const char *type = json_string_value(json_object_get(c, "type"));
		const char *st = json_string_value(json_object_get(c, "status"));
		if (type && strcmp(type, "Succeeded") == 0 && st && strcmp(st, status) == 0)
			ltt = json_string_value(json_object_get(c, "lastTransitionTime"));
	}
	util_rfc3339(now_ms, ts, sizeof(ts));
	return json_pack("[{sssssssssssI}]", "type", "Succeeded", "status", status, "reason", reason,
			 "message", message, "lastTransitionTime", ltt ? ltt : ts,
			 "observedGeneration", generation_of(task));
}

/* Returns a new history: old (may be NULL) with entry added or replacing the same attempt. */
static json_t *history_with(json_t *old, json_t *entry)
{
	json_t *h = json_array(), *e;
	size_t i, n = json_array_size(old), skip;
	int64_t at = json_integer_value(json_object_get(entry, "attempt"));

	/* Replace an entry for the same attempt; keep the newest TASKCTL_HISTORY_MAX. */
	json_array_foreach(old, i, e)
		if (json_integer_value(json_object_get(e, "attempt")) != at)
			json_array_append(h, e);
	json_array_append(h, entry);
	n = json_array_size(h);
	skip = n > TASKCTL_HISTORY_MAX ? n - TASKCTL_HISTORY_MAX : 0;
	while (skip--)
		json_array_remove(h, 0);
	return h;
}

json_t *taskctl_terminal_status(json_t *task, json_t *result, int64_t attempt, const char *runner,
				json_t *history, int64_t now_ms, int log_tail_max)
{
	const char *phase = json_string_value(json_object_get(result, "phase"));
	const char *reason = json_string_value(json_object_get(result, "reason"));
	const char *message = json_string_value(json_object_get(result, "message"));
	const char *tail = json_string_value(json_object_get(result, "logTail"));
	json_t *exit_code = json_object_get(result, "exitCode"), *output = json_object_get(result, "output");
	int64_t start = json_integer_value(json_object_get(result, "startTime"));
	int64_t end = json_integer_value(json_object_get(result, "completionTime"));
	char st[40], et[40], msgbuf[512];
	json_t *status, *entry;
	int ok;

	if (!phase)
		phase = "Failed";
	ok = strcmp(phase, "Succeeded") == 0;
	if (!reason || !*reason)
		reason = ok ? "Succeeded" : "Failed";
	if (!message || !*message) {
		if (ok)
			snprintf(msgbuf, sizeof(msgbuf), "completed");
		else if (json_is_integer(exit_code))
			snprintf(msgbuf, sizeof(msgbuf), "exited with code %lld", (long long)json_integer_value(exit_code));
		else
			snprintf(msgbuf, sizeof(msgbuf), "%s", reason);
		message = msgbuf;
	}
	util_rfc3339(start ? start : now_ms, st, sizeof(st));
	util_rfc3339(end ? end : now_ms, et, sizeof(et));
	status = json_pack("{ss ss ss ss ss sI ss sI so}",
			   "phase", phase, "reason", reason, "message", message,
			   "startTime", st, "completionTime", et,
			   "attempts", (json_int_t)attempt, "runner", runner,
			   "observedGeneration", generation_of(task),
			   "conditions", succeeded_condition(task, ok ? "True" : "False", reason, message, now_ms));
	if (!status)
		return NULL;
	json_object_set_new(status, "logTail", json_string(taskctl_utf8_tail(tail ? tail : "", (size_t)log_tail_max)));
	json_object_set_new(status, "outputTruncated", json_boolean(json_is_true(json_object_get(result, "truncated"))));
	if (json_is_integer(exit_code) && json_integer_value(exit_code) >= 0)
		json_object_set(status, "exitCode", exit_code);
	if (output) {
		char *s = json_dumps(output, JSON_COMPACT | JSON_ENCODE_ANY);
		if (s && strlen(s) <= TASKCTL_OUTPUT_MAX)
			json_object_set(status, "output", output);
		free(s);
	}
	json_object_set_new(status, "nextRetryTime", json_null());
	entry = json_pack("{sIssssss}", "attempt", (json_int_t)attempt, "runner", runner,
			  "startTime", st, "completionTime", et, "reason", reason);
	if (json_is_integer(exit_code) && json_integer_value(exit_code) >= 0)
		json_object_set(entry, "exitCode", exit_code);
	json_object_set_new(status, "attemptHistory",
			    history_with(history ? history : json_object_get(json_object_get(task, "status"), "attemptHistory"), entry));
	json_decref(entry);
	return json_pack("{so}", "status", status);
}

/* --- status writes ---------------------------------------------------------------------- */

/* Merge-patches the status subresource. Returns 0, -ENOENT when the task is gone, -EAGAIN to
 * retry (conflict, throttling, server errors). */
static int taskctl_patch_status(struct taskctl *t, json_t *task, json_t *patch)
{
	json_t *md = json_object_get(task, "metadata");
	char path[1024], ns[256], name[512];
	struct kube_resp resp;
	int r;

	if (kube_escape(json_string_value(json_object_get(md, "namespace")), ns, sizeof(ns)) < 0 ||
	    kube_escape(json_string_value(json_object_get(md, "name")), name, sizeof(name)) < 0)
		return -EINVAL;
	/* The UID precondition makes sure a re-created task of the same name is not touched. */
	json_object_set_new(patch, "metadata", json_pack("{sO}", "uid", json_object_get(md, "uid")));
	snprintf(path, sizeof(path), "/apis/tasked.dev/v1alpha1/namespaces/%s/tasks/%s/status", ns, name);
	r = kube_request(t->cfg.kc, "PATCH", path, "application/merge-patch+json", patch, &resp);
	if (r < 0) {
		log_warn("status write failed", "task", name, "error", resp.message);
		kube_resp_free(&resp);
		return -EAGAIN;
	}
	if (resp.status == 404 || (resp.status == 409 && strstr(resp.message, "UID"))) {
		kube_resp_free(&resp);
		return -ENOENT;
	}
	if (resp.status < 300 && t->cfg.on_status)
		t->cfg.on_status(t->cfg.observer_ud, task, json_object_get(patch, "status"));
	if (resp.status >= 300) {
		log_warn("status write refused", "namespace", json_string_value(json_object_get(md, "namespace")),
			 "task", json_string_value(json_object_get(md, "name")), "reason", resp.reason, "error", resp.message);
		kube_resp_free(&resp);
		return resp.status == 422 || resp.status == 400 ? -EINVAL : -EAGAIN;
	}
	kube_resp_free(&resp);
	return 0;
}

static int taskctl_write_simple(struct taskctl *t, json_t *task, const char *phase, const char *reason,
				const char *message, const char *cond_status, json_t *extra)
{
	int64_t now = util_now_ms();
	json_t *status = json_pack("{ssssss sI so}", "phase", phase, "reason", reason, "message", message,
				   "observedGeneration", generation_of(task),
				   "conditions", succeeded_condition(task, cond_status, reason, message, now));
	json_t *patch;
	int r;

	if (!status)
		return -ENOMEM;
	if (extra)
		json_object_update(status, extra);
	if (strcmp(cond_status, "Unknown") != 0) {
		char ts[40];
		util_rfc3339(now, ts, sizeof(ts));
		json_object_set_new(status, "completionTime", json_string(ts));
	}
	patch = json_pack("{so}", "status", status);
	r = taskctl_patch_status(t, task, patch);
	json_decref(patch);
	return r;
}

/* --- reconcile --------------------------------------------------------------------------- */

static void log_task(const char *msg, json_t *task, const char *k1, const char *v1)
{
	json_t *md = json_object_get(task, "metadata");
	log_info(msg, "namespace", json_string_value(json_object_get(md, "namespace")),
		 "task", json_string_value(json_object_get(md, "name")),
		 "uid", json_string_value(json_object_get(md, "uid")), k1, v1);
}

static int reconcile_attempt(struct taskctl *t, json_t *task, const char *uid, struct attempt *snap)
{
	json_t *status = json_object_get(task, "status");
	const char *phase = json_string_value(json_object_get(status, "phase"));
	int r;

	if (snap->state == ATT_DONE && snap->written != W_TERMINAL) {
		json_t *patch = taskctl_terminal_status(task, snap->result, snap->attempt, snap->runner,
							snap->history, util_now_ms(), t->cfg.log_tail_max);
		if (!patch)
			return -ENOMEM;
		r = taskctl_patch_status(t, task, patch);
		if (r == 0) {
			log_task("task finished", task, "phase",
				 json_string_value(json_object_get(json_object_get(patch, "status"), "phase")));
			pthread_mutex_lock(&t->lock);
			struct attempt *a = att_find(t, uid);
			if (a && a->attempt == snap->attempt)
				a->written = W_TERMINAL;
			pthread_mutex_unlock(&t->lock);
			broker_ack(t->broker, snap->runner, uid, snap->attempt);
		}
		json_decref(patch);
		return r;
	}
	if (snap->state == ATT_STARTED && snap->written == W_NONE &&
	    !(phase && strcmp(phase, "Running") == 0 &&
	      json_integer_value(json_object_get(status, "attempts")) == snap->attempt)) {
		char ts[40], msg[160];
		json_t *extra;
		util_rfc3339(snap->start_ms ? snap->start_ms : util_now_ms(), ts, sizeof(ts));
		snprintf(msg, sizeof(msg), "running on %s", snap->runner);
		extra = json_pack("{sssssI}", "startTime", ts, "runner", snap->runner, "attempts", (json_int_t)snap->attempt);
		if (snap->history)
			json_object_set(extra, "attemptHistory", snap->history);
		r = taskctl_write_simple(t, task, "Running", "Running", msg, "Unknown", extra);
		json_decref(extra);
		if (r == 0) {
			pthread_mutex_lock(&t->lock);
			struct attempt *a = att_find(t, uid);
			if (a && a->attempt == snap->attempt && a->written == W_NONE)
				a->written = W_RUNNING;
			pthread_mutex_unlock(&t->lock);
		}
		return r;
	}
	return 0;
}

static int reconcile_dispatch(struct taskctl *t, json_t *task, const char *key, const char *uid,
			      int64_t attempt, json_t *history)
{
	json_t *status = json_object_get(task, "status");
	const char *phase = json_string_value(json_object_get(status, "phase"));
	json_t *msg, *selector = json_object_get(spec_of(task), "runnerSelector");
	char err[512], runner[64];
	int r;

	msg = taskctl_build_dispatch(task, attempt, util_now_ms(), err, sizeof(err));
	if (!msg) {
		log_task("task refused", task, "reason", err);
		return taskctl_write_simple(t, task, "Failed", "InvalidSpec", err, "False", NULL);
	}
	/* Record first, so a result racing the dispatch finds its attempt. */
	pthread_mutex_lock(&t->lock);
	att_drop(t, uid);
	struct attempt *a = att_new(t, uid, key, attempt, NULL);
	if (a && json_array_size(history) > 0)
		a->history = json_incref(history);
	pthread_mutex_unlock(&t->lock);
	if (!a) {
		json_decref(msg);
		return -ENOMEM;
	}
	r = broker_dispatch(t->broker, uid, attempt, selector, msg, runner, sizeof(runner));
	json_decref(msg);
	if (r == 0) {
		pthread_mutex_lock(&t->lock);
		a = att_find(t, uid);
		if (a)
			snprintf(a->runner, sizeof(a->runner), "%s", runner);
		pthread_mutex_unlock(&t->lock);
		log_task("task dispatched", task, "runner", runner);
		return 0;
	}
	pthread_mutex_lock(&t->lock);
	att_drop(t, uid);
	json_object_set_new(t->waiting, key, json_true());
	pthread_mutex_unlock(&t->lock);
	if (r != -EAGAIN && r != -ENODEV)
		return r;
	if (phase && strcmp(phase, "Queued") == 0 &&
	    json_integer_value(json_object_get(status, "attempts")) == attempt - 1)
		return 0;
	/* Queued carries the attempt count and history, so an attempt lost before it was ever
	 * reported still advances the (task UID, attempt) key. */
	{
		json_t *extra = json_pack("{sI}", "attempts", (json_int_t)(attempt - 1));
		if (json_array_size(history) > 0)
			json_object_set(extra, "attemptHistory", history);
		r = taskctl_write_simple(t, task, "Queued", "Queued",
					 r == -ENODEV ? "waiting for a runner that matches runnerSelector"
						      : "waiting for a free runner slot",
					 "Unknown", extra);
		json_decref(extra);
		return r;
	}
}

int taskctl_reconcile(struct taskctl *t, const char *key)
{
	json_t *task = informer_get(t->inf, key), *status;
	const char *uid, *phase;
	struct attempt snap, *a;
	int have = 0, r = 0;
	int64_t attempts;

	if (!task) {
		/* Deleted: stop whatever still runs for it. */
		pthread_mutex_lock(&t->lock);
		for (a = t->attempts; a; a = a->next) {
			if (strcmp(a->key, key) == 0) {
				if (a->state != ATT_DONE && a->runner[0])
					broker_cancel(t->broker, a->runner, a->uid, a->attempt);
				else if (a->state == ATT_DONE)
					broker_ack(t->broker, a->runner, a->uid, a->attempt);
				att_drop(t, a->uid);
				break;
			}
		}
		json_object_del(t->waiting, key);
		pthread_mutex_unlock(&t->lock);
		return 0;
	}
	uid = json_string_value(json_object_get(json_object_get(task, "metadata"), "uid"));
	status = json_object_get(task, "status");
	phase = json_string_value(json_object_get(status, "phase"));
	attempts = json_integer_value(json_object_get(status, "attempts"));
	if (!uid)
		goto out;
	pthread_mutex_lock(&t->lock);
	a = att_find(t, uid);
	if (a) {
		snap = *a;
		snap.result = json_incref(a->result);
		snap.history = json_incref(a->history);
		have = 1;
	}
	if (is_terminal(phase) && (!a || a->written == W_TERMINAL || a->state != ATT_DONE)) {
		/* The API server has the final word; nothing more to do for this task. */
		if (a && a->state == ATT_DONE && a->written != W_TERMINAL)
			broker_ack(t->broker, a->runner, a->uid, a->attempt);
		att_drop(t, uid);
		json_object_del(t->waiting, key);
		pthread_mutex_unlock(&t->lock);
		goto out;
	}
	pthread_mutex_unlock(&t->lock);

	if (have && snap.state != ATT_LOST) {
		r = reconcile_attempt(t, task, uid, &snap);
		goto out;
	}
	if (!have && phase && strcmp(phase, "Running") == 0) {
		/* Running before a controller restart: give its runner time to reconnect and
		 * report what it holds before declaring the attempt lost. */
		int64_t left = t->cfg.lost_grace_ms - (util_mono_ms() - t->started_ms);
		if (left > 0) {
			wq_add_after(t->cfg.queue, key, left);
			goto out;
		}
		log_task("running attempt has no runner; starting a new attempt", task, "reason", "RunnerLost");
	}
	if (have && snap.state == ATT_LOST)
		log_task("attempt lost with its runner; starting a new attempt", task, "runner", snap.runner);
	{
		json_t *base = json_incref(json_object_get(status, "attemptHistory"));
		int64_t next = attempts;
		if (have && snap.attempt > next)
			next = snap.attempt;
		if ((phase && strcmp(phase, "Running") == 0) || (have && snap.state == ATT_LOST)) {
			/* Disruptions do not count against retries; they show in the history. */
			json_t *lost = json_pack("{sIssss}", "attempt", (json_int_t)next, "runner",
						 have ? snap.runner : json_string_value(json_object_get(status, "runner")) ?: "",
						 "reason", "RunnerLost", "message", "the runner holding this attempt went away");
			json_t *nb = history_with(base, lost);
			json_decref(base);
			json_decref(lost);
			base = nb;
		}
		r = reconcile_dispatch(t, task, key, uid, next + 1, base);
		json_decref(base);
	}
out:
	if (have) {
		json_decref(snap.result);
		json_decref(snap.history);
	}
	json_decref(task);
	return r;
}

void *taskctl_worker(void *arg)
{
	struct taskctl *t = arg;
	char *key;

	while ((key = wq_get(t->cfg.queue))) {
		int r = taskctl_reconcile(t, key);
		if (r == -EAGAIN || r == -ENOMEM || r == -EIO)
			wq_add_rate_limited(t->cfg.queue, key);
		else
			wq_forget(t->cfg.queue, key);
		wq_done(t->cfg.queue, key);
		free(key);
	}
	return NULL;
}
