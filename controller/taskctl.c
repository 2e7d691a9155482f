#include "taskctl.h"
#include "pools.h"
#include "attempts.h"
#include "cel.h"
#include "deps.h"
#include "log.h"
#include "queues.h"
#include "proto.h"
#include "sat.h"
#include "task.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TASKCTL_DEADLINE_GRACE_MS 10000 /* runner's own timeout gets this long to report */
#define TASKCTL_CANCEL_GRACE_MS 5000    /* a cancel waits this long for the runner's result */
#define TASKCTL_MAX_LOST 5              /* re-dispatches after runner loss before giving up */
#define TASKCTL_ORPHANS_KEY "!orphans"  /* not a valid namespace/name, so never a task key */
#define TASKCTL_MAX_TIMER_MS (INT64_C(3600) * 1000) /* far timers re-check hourly */

struct taskctl {
	struct taskctl_cfg cfg;
	struct taskctl_effects fx;
	struct informer *inf;
	struct broker *broker;
	struct att_table *att; /* its own lock */
	pthread_mutex_t lock;  /* guards the three key sets below and the start times */
	json_t *waiting;       /* keys queued for a free runner slot */
	json_t *standby;       /* keys seen while not leading */
	json_t *orphans;       /* uid -> {attempt, runner} held by runners, task not (yet) known */
	int64_t started_ms, started_wall_ms;
};

/* --- the real effects -------------------------------------------------------------------- */

/* The response goes into the cache at once so the next pass does not act on a stale copy. */
static int fx_write_status(void *ud, json_t *task, json_t *patch)
{
	struct taskctl *t = ud;
	struct kube_resp resp;
	int r = kube_patch_status(t->cfg.kc, KUBE_GV_TASKED, "tasks", task, patch, &resp);

	if (r == 0 && t->inf && json_is_object(resp.body))
		informer_mutate(t->inf, resp.body);
	kube_resp_free(&resp);
	/* A write of observedGeneration alone (reconcile_observed) is no news for watchers. */
	if (r == 0 && t->cfg.on_status &&
	    json_object_get(json_object_get(patch, "status"), "phase"))
		t->cfg.on_status(t->cfg.observer_ud, task, json_object_get(patch, "status"));
	return r;
}

static int fx_dispatch(void *ud, const char *uid, int64_t attempt, const char *pool,
		       json_t *selector, json_t *msg, char *runner, size_t runnersz)
{
	struct taskctl *t = ud;
	if (json_object_get(msg, "container")) {
		int r;
		if (!t->cfg.pods) {
			snprintf(runner, runnersz, "this controller runs no container executor");
			return -EPROTO;
		}
		r = podexec_dispatch(t->cfg.pods, msg, runner, runnersz);
		return r == -EAGAIN ? -EIO : r; /* -EAGAIN means "wait for a runner slot" */
	}
	return broker_dispatch(t->broker, uid, attempt, pool, selector, msg, runner, runnersz);
}

static void fx_cancel(void *ud, const char *runner, const char *uid, int64_t attempt)
{
	struct taskctl *t = ud;
	if (podexec_is_runner(runner)) {
		if (t->cfg.pods)
			podexec_cancel(t->cfg.pods, runner, uid, attempt);
		return;
	}
	broker_cancel(t->broker, runner, uid, attempt);
}

static void fx_ack(void *ud, const char *runner, const char *uid, int64_t attempt)
{
	struct taskctl *t = ud;
	if (podexec_is_runner(runner)) {
		if (t->cfg.pods)
			podexec_ack(t->cfg.pods, runner, uid, attempt);
		return;
	}
	broker_ack(t->broker, runner, uid, attempt);
}

static void fx_emit(void *ud, json_t *task, const char *type, const char *reason, const char *note)
{
	struct taskctl *t = ud;
	if (t->cfg.recorder)
		recorder_emit(t->cfg.recorder, task, type, reason, reason, note);
}

static void fx_requeue(void *ud, const char *key, int64_t after_ms)
{
	struct taskctl *t = ud;
	if (after_ms > 0)
		wq_add_after(t->cfg.queue, key, after_ms);
	else
		wq_add(t->cfg.queue, key);
}

static int fx_delete_task(void *ud, json_t *task)
{
	struct taskctl *t = ud;
	char path[1024];
	struct kube_resp resp;
	json_t *body;
	int r;

	if (kube_path(path, sizeof(path), KUBE_GV_TASKED, "tasks", task_namespace(task),
		      task_name(task), NULL) < 0)
		return 0;
	body = json_pack("{sssss{sO}ss}", "kind", "DeleteOptions", "apiVersion", "v1",
			 "preconditions", "uid", json_object_get(task_metadata(task), "uid"),
			 "propagationPolicy", "Background");
	r = kube_request(t->cfg.kc, "DELETE", path, NULL, body, &resp);
	json_decref(body);
	r = r == 0 && (resp.status < 300 || resp.status == 404 || resp.status == 409) ? 0 : -EAGAIN;
	if (r < 0)
		log_warn("ttl delete failed", "namespace", task_namespace(task), "task",
			 task_name(task), "error", resp.message);
	kube_resp_free(&resp);
	return r;
}

/* Reads one key of a Kubernetes Secret. Never logs the value. -EPERM when the Secret was not
 * opted in for TaskQueues: the controller reads with its own rights, so without the label any
 * Task author could have any Secret of the namespace read for them. */
static int fx_read_secret(void *ud, const char *ns, const char *name, const char *k, char **ret,
			  size_t *len)
{
	struct taskctl *t = ud;
	char path[1024];
	struct kube_resp resp;
	const char *b64, *label;
	int r;

	if (!ns || !*ns || !name || !*name ||
	    kube_path(path, sizeof(path), "v1", "secrets", ns, name, NULL) < 0)
		return -ENOENT;
	r = kube_request(t->cfg.kc, "GET", path, NULL, NULL, &resp);
	if (r < 0 || resp.status != 200) {
		kube_resp_free(&resp);
		return r < 0 ? -EAGAIN : -ENOENT;
	}
	label = json_string_value(
		json_object_get(json_object_get(json_object_get(resp.body, "metadata"), "labels"),
				TASKCTL_QUEUE_SECRET_LABEL));
	if (!label || strcmp(label, "true") != 0) {
		kube_resp_free(&resp);
		return -EPERM;
	}
	b64 = json_string_value(json_object_get(json_object_get(resp.body, "data"), k));
	r = b64 ? util_base64_decode(b64, ret, len) : -ENOENT;
	kube_resp_free(&resp);
	return r;
}

static int64_t fx_now_ms(void *ud) { return util_now_ms(); }

static int64_t now_ms(struct taskctl *t) { return t->fx.now_ms(t->fx.ud); }
static void requeue(struct taskctl *t, const char *key, int64_t after_ms)
{
	t->fx.requeue(t->fx.ud, key, after_ms);
}
static void emit(struct taskctl *t, json_t *task, const char *type, const char *reason,
		 const char *note)
{
	t->fx.emit(t->fx.ud, task, type, reason, note);
}

struct taskctl *taskctl_new(const struct taskctl_cfg *cfg)
{
	struct taskctl *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->cfg = *cfg;
	if (t->cfg.log_tail_max <= 0 || t->cfg.log_tail_max > 4096)
		t->cfg.log_tail_max = 4096;
	if (cfg->effects) {
		t->fx = *cfg->effects;
		if (!t->fx.now_ms)
			t->fx.now_ms = fx_now_ms;
	} else {
		t->fx = (struct taskctl_effects){ .write_status = fx_write_status,
						  .dispatch = fx_dispatch,
						  .cancel = fx_cancel,
						  .ack = fx_ack,
						  .emit = fx_emit,
						  .requeue = fx_requeue,
						  .delete_task = fx_delete_task,
						  .read_secret = fx_read_secret,
						  .now_ms = fx_now_ms,
						  .ud = t };
	}
	t->inf = cfg->inf;
	t->broker = cfg->broker;
	pthread_mutex_init(&t->lock, NULL);
	t->att = att_table_new();
	t->waiting = json_object();
	t->standby = json_object();
	t->orphans = json_object();
	t->started_ms = util_mono_ms();
	t->started_wall_ms = now_ms(t);
	if (!t->att) {
		taskctl_free(t);
		return NULL;
	}
	return t;
}

void taskctl_free(struct taskctl *t)
{
	if (!t)
		return;
	att_table_free(t->att);
	json_decref(t->waiting);
	json_decref(t->standby);
	json_decref(t->orphans);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

static void set_key(struct taskctl *t, json_t **set, const char *key, int add)
{
	pthread_mutex_lock(&t->lock);
	if (add)
		json_object_set_new(*set, key, json_true());
	else
		json_object_del(*set, key);
	pthread_mutex_unlock(&t->lock);
}

/* Takes the whole set, leaving an empty one. */
static json_t *take_set(struct taskctl *t, json_t **set)
{
	json_t *w;
	pthread_mutex_lock(&t->lock);
	w = *set;
	*set = json_object();
	pthread_mutex_unlock(&t->lock);
	return w;
}

/* --- informer and broker callbacks (other threads; record and queue only) ----------------- */

static void wake_key(const char *key, void *ud)
{
	struct taskctl *t = ud;
	requeue(t, key, 0);
}

void taskctl_on_event(enum informer_event ev, const char *key, json_t *obj, void *ud)
{
	struct taskctl *t = ud;
	const char *phase = task_phase(obj);

	requeue(t, key, 0);
	if (ev == INFORMER_RESYNC)
		return;
	if (t->cfg.deps) {
		deps_index_update(t->cfg.deps, key, ev == INFORMER_DELETED ? NULL : obj);
		/* A task that finished (or vanished) may unblock the tasks that wait for it; one
		 * that appeared changes what they wait for (and may close a cycle). */
		if (ev == INFORMER_DELETED || ev == INFORMER_ADDED || task_phase_terminal(phase))
			deps_index_dependents(t->cfg.deps, key, wake_key, t);
	}
	/* After a restart, running tasks hold their queue slots before anything is admitted. */
	if (t->cfg.queues && ev != INFORMER_DELETED && phase && strcmp(phase, "Running") == 0) {
		char qkey[512];
		queues_key_of(obj, qkey, sizeof(qkey));
		queues_set_holder(t->cfg.queues, qkey, key, 1);
	}
}

static char *taskctl_key_for(struct taskctl *t, const char *uid)
{
	return t->inf ? informer_key_by_uid(t->inf, uid) : NULL;
}

static void cb_started(void *ud, const char *uid, int64_t attempt, int64_t start_ms,
		       const char *runner)
{
	struct taskctl *t = ud;
	char key[512];

	if (att_started(t->att, uid, attempt, start_ms ? start_ms : now_ms(t), key, sizeof(key)))
		requeue(t, key, 0);
}

/* Whether the cached status shows this attempt finished (later attempt, terminal, or retrying). */
static int taskctl_attempt_settled(struct taskctl *t, const char *key, int64_t attempt)
{
	json_t *task = informer_get(t->inf, key);
	const char *phase = task_phase(task);
	int64_t n = task_attempts(task);
	int settled = n > attempt || (n == attempt && phase && strcmp(phase, "Running") != 0) ||
		      task_phase_terminal(phase);
	json_decref(task);
	return settled;
}

static void cb_result(void *ud, const char *uid, int64_t attempt, const char *runner, json_t *msg)
{
	struct taskctl *t = ud;
	char key[512];
	char *k = NULL;
	int r;

	if (!att_exists(t->att, uid)) {
		/* A result from before a controller restart: find the task by UID, unless its
		 * status already records this attempt as settled (a duplicate). */
		k = taskctl_key_for(t, uid);
		if (k && taskctl_attempt_settled(t, k, attempt)) {
			free(k);
			k = NULL;
		}
	}
	r = att_result(t->att, uid, attempt, runner, msg, k, key, sizeof(key));
	free(k);
	if (r == 1)
		requeue(t, key, 0);
	else if (r == -ESTALE)
		/* Nobody waits for this attempt any more (task deleted or superseded): let the
		 * runner forget it. */
		t->fx.ack(t->fx.ud, runner, uid, attempt);
}

/* A runner's word alone does not make an attempt its own: this controller's record, or else the
 * Task's status, must show that attempt on that runner. */
static int cb_held(void *ud, const char *uid, int64_t attempt, const char *runner)
{
	struct taskctl *t = ud;
	char *k = taskctl_key_for(t, uid);
	json_t *task = k ? informer_get(t->inf, k) : NULL;
	const char *shown_on = task_runner(task);
	int shown = shown_on && strcmp(shown_on, runner) == 0 && task_attempts(task) == attempt,
	    found, mine;

	json_decref(task);
	mine = att_held(t->att, uid, attempt, runner, k && shown ? k : NULL, &found);
	if (!found && !k) {
		/* No such task in the cache: deleted while no controller was watching, or the
		 * cache is not synced yet. Decided in reconcile_orphans. */
		pthread_mutex_lock(&t->lock);
		json_object_set_new(
			t->orphans, uid,
			json_pack("{sIss}", "attempt", (json_int_t)attempt, "runner", runner));
		pthread_mutex_unlock(&t->lock);
	}
	requeue(t, k ? k : TASKCTL_ORPHANS_KEY, 0);
	free(k);
	return mine;
}

static void cb_lost(void *ud, const char *uid, int64_t attempt, const char *runner)
{
	struct taskctl *t = ud;
	char key[512];

	if (att_lost(t->att, uid, attempt, key, sizeof(key))) {
		log_warn("runner lost an attempt", "runner", runner, "uid", uid);
		requeue(t, key, 0);
	}
}

static void cb_capacity(void *ud)
{
	struct taskctl *t = ud;
	json_t *w = take_set(t, &t->waiting), *v;
	const char *key;

	json_object_foreach(w, key, v)
		requeue(t, key, 0);
	json_decref(w);
}

static void cb_log(void *ud, const char *uid, int64_t attempt, int64_t seq, const char *stream,
		   const char *data, const char *runner)
{
	struct taskctl *t = ud;
	char key[512];

	if (!t->cfg.on_log)
		return;
	att_key(t->att, uid, key, sizeof(key));
	t->cfg.on_log(t->cfg.observer_ud, key[0] ? key : NULL, uid, attempt, seq, stream, data);
}

static int cb_in_pool(void *ud, const char *uid, const char *pool)
{
	struct taskctl *t = ud;
	return pools_task_in_pool(t->cfg.pools, uid, pool);
}

const struct broker_ops taskctl_broker_ops = {
	.in_pool = cb_in_pool,
	.log = cb_log,
	.started = cb_started,
	.result = cb_result,
	.held = cb_held,
	.capacity = cb_capacity,
	.lost = cb_lost,
};

/* --- status writes ---------------------------------------------------------------------- */

/* One status write of phase, reason and message with the conditions that follow from them
 * (conditions.h). */
static int taskctl_write_simple(struct taskctl *t, json_t *task, const char *phase,
				const char *reason, const char *message, json_t *extra)
{
	int64_t now = now_ms(t);
	json_t *status = json_pack("{ssssss sI so}", "phase", phase, "reason", reason, "message",
				   message, "observedGeneration", (json_int_t)task_generation(task),
				   "conditions",
				   taskctl_conditions(task, phase, reason, message, now));
	json_t *patch;
	int r;

	if (!status)
		return -ENOMEM;
	if (extra)
		json_object_update(status, extra);
	if (task_phase_terminal(phase) && !json_object_get(status, "completionTime")) {
		char ts[40];
		util_rfc3339(now, ts, sizeof(ts));
		json_object_set_new(status, "completionTime", json_string(ts));
	}
	patch = json_pack("{so}", "status", status);
	r = t->fx.write_status(t->fx.ud, task, patch);
	json_decref(patch);
	return r;
}

/* --- reconcile --------------------------------------------------------------------------- */

static void log_task(const char *msg, json_t *task, const char *k1, const char *v1)
{
	log_info(msg, "namespace", task_namespace(task), "task", task_name(task), "uid",
		 task_uid(task), k1, v1);
}

static int64_t json_int_at(json_t *o, const char *k1, const char *k2)
{
	json_t *v = json_object_get(o, k1);
	return json_integer_value(k2 ? json_object_get(v, k2) : v);
}

/* The attempt finished: write the terminal status, or a Retrying status and a timer. */
static int reconcile_finished(struct taskctl *t, json_t *task, const char *key, const char *uid,
			      struct attempt *snap)
{
	json_t *spec = task_spec(task), *patch, *st;
	const char *phase;
	int failures, r;
	int64_t limit = json_int_at(spec, "retries", "limit");

	patch = taskctl_terminal_status(task, snap->result, snap->attempt, snap->runner,
					snap->history, now_ms(t), t->cfg.log_tail_max);
	if (!patch)
		return -ENOMEM;
	st = json_object_get(patch, "status");
	taskctl_mask(st, snap->secrets);
	failures = taskctl_count_failures(json_object_get(st, "attemptHistory"));
	if (taskctl_should_retry(spec, snap->result, failures)) {
		unsigned rnd;
		int64_t delay;
		util_random(&rnd, sizeof(rnd));
		delay = taskctl_retry_delay_ms(json_object_get(spec, "retries"), failures, rnd);
		taskctl_status_retrying(task, st, snap->attempt, failures, limit,
					sat_add(now_ms(t), delay), now_ms(t));
		r = t->fx.write_status(t->fx.ud, task, patch);
		if (r == 0) {
			log_task("attempt failed; retrying", task, "at",
				 json_string_value(json_object_get(st, "nextRetryTime")));
			emit(t, task, "Warning", "Retrying",
			     json_string_value(json_object_get(st, "message")));
			/* The attempt is settled; the next pass (after the delay) starts a new one
			 * from the status just written. */
			att_drop_attempt(t->att, uid, snap->attempt);
			t->fx.ack(t->fx.ud, snap->runner, uid, snap->attempt);
			requeue(t, key, delay);
		}
		json_decref(patch);
		return r;
	}
	taskctl_status_exhausted(task, st, failures, limit, now_ms(t));
	r = t->fx.write_status(t->fx.ud, task, patch);
	if (r == 0) {
		phase = json_string_value(json_object_get(st, "phase"));
		log_task("task finished", task, "phase", phase);
		emit(t, task, strcmp(phase, "Succeeded") == 0 ? "Normal" : "Warning", phase,
		     json_string_value(json_object_get(st, "message")));
		att_mark_written(t->att, uid, snap->attempt, W_TERMINAL);
		t->fx.ack(t->fx.ud, snap->runner, uid, snap->attempt);
	}
	json_decref(patch);
	return r;
}

static int reconcile_attempt(struct taskctl *t, json_t *task, const char *key, const char *uid,
			     struct attempt *snap)
{
	json_t *status = task_status(task);
	const char *phase = json_string_value(json_object_get(status, "phase"));
	int64_t now = now_ms(t);
	int r;

	if (snap->state == ATT_DONE)
		return snap->written == W_TERMINAL ? 0
						   : reconcile_finished(t, task, key, uid, snap);
	/* Backstop for the runner's own timeout: if no result arrives well after the deadline,
	 * stop the attempt and fail it here. */
	if (snap->deadline_ms && now > sat_add(snap->deadline_ms, TASKCTL_DEADLINE_GRACE_MS)) {
		json_t *res = json_pack(
			"{sssssssi}", "phase", "Failed", "reason", "TimedOut", "message",
			"exceeded timeoutSeconds and the runner did not report in time", "exitCode",
			-1);
		if (snap->runner[0])
			t->fx.cancel(t->fx.ud, snap->runner, uid, snap->attempt);
		(void)att_fail(t->att, uid, snap->attempt, res);
		snap->state = ATT_DONE;
		json_decref(snap->result);
		snap->result = res;
		log_task("attempt timed out without a result from its runner", task, "runner",
			 snap->runner);
		return reconcile_finished(t, task, key, uid, snap);
	}
	if (snap->deadline_ms)
		requeue(t, key,
			sat_delay(sat_add(snap->deadline_ms, TASKCTL_DEADLINE_GRACE_MS + 10), now,
				  TASKCTL_MAX_TIMER_MS));
	if (snap->state == ATT_STARTED && snap->written == W_NONE &&
	    !(phase && strcmp(phase, "Running") == 0 &&
	      json_integer_value(json_object_get(status, "attempts")) == snap->attempt)) {
		char ts[40], msg[160];
		json_t *extra;
		util_rfc3339(snap->start_ms ? snap->start_ms : now, ts, sizeof(ts));
		snprintf(msg, sizeof(msg), "running on %s", snap->runner);
		extra = json_pack("{sssssIsn}", "startTime", ts, "runner", snap->runner, "attempts",
				  (json_int_t)snap->attempt, "nextRetryTime");
		if (snap->history)
			json_object_set(extra, "attemptHistory", snap->history);
		r = taskctl_write_simple(t, task, "Running", "Running", msg, extra);
		json_decref(extra);
		if (r == 0) {
			att_mark_written(t->att, uid, snap->attempt, W_RUNNING);
			emit(t, task, "Normal", "Started", msg);
		}
		return r;
	}
	return 0;
}

/* --- queues, dependencies, conditions ------------------------------------------------------- */

/* Writes a waiting phase (Pending or Queued) once; later passes with the same reason and message
 * cost nothing. */
static int write_waiting(struct taskctl *t, json_t *task, const char *phase, const char *reason,
			 const char *msg)
{
	json_t *st = task_status(task);
	const char *p = json_string_value(json_object_get(st, "phase"));
	const char *m = json_string_value(json_object_get(st, "message"));
	int r;
	if (p && strcmp(p, phase) == 0 && m && strcmp(m, msg) == 0 &&
	    json_integer_value(json_object_get(st, "observedGeneration")) == task_generation(task))
		return 0;
	r = taskctl_write_simple(t, task, phase, reason, msg, NULL);
	if (r == 0 && strcmp(phase, "Queued") == 0)
		emit(t, task, "Normal", "Queued", msg);
	return r;
}

static void cel_limits_of(json_t *queue, struct cel_limits *l)
{
	json_t *c = json_object_get(json_object_get(json_object_get(queue, "spec"), "policy"),
				    "conditions");
	cel_limits_default(l);
	if (json_is_integer(json_object_get(c, "timeoutMilliseconds")))
		l->timeout_ms = json_integer_value(json_object_get(c, "timeoutMilliseconds"));
	if (json_is_integer(json_object_get(c, "maxCost")))
		l->max_cost = json_integer_value(json_object_get(c, "maxCost"));
	if (json_is_integer(json_object_get(c, "maxDepth")))
		l->max_depth = (int)json_integer_value(json_object_get(c, "maxDepth"));
}

/* Everything that must hold before an attempt may start: the queue exists, its policy allows the
 * executor, dependencies are done, `when` is true, and the queue admits the task. Returns 1 to go
 * on (with *ret_queue and *ret_vars set, new references), or 0 / a negative errno after writing
 * why the task waits or fails. */
static int reconcile_gate(struct taskctl *t, json_t *task, const char *key, int64_t attempt,
			  json_t **ret_queue, json_t **ret_vars)
{
	json_t *spec = task_spec(task), *queue = NULL, *vars = NULL, *allowed, *e;
	const char *exec = task_executor(task),
		   *when = json_string_value(json_object_get(spec, "when"));
	char qkey[512], why[512], msg[768];
	enum deps_state ds;
	int64_t retry_ms, created = 0;
	int r = 0, ok;
	size_t i;

	*ret_queue = *ret_vars = NULL;
	queues_key_of(task, qkey, sizeof(qkey));
	if (t->cfg.queues) {
		queue = queues_get(t->cfg.queues, qkey);
		if (!queue && strcmp(strchr(qkey, '/') + 1, "default") != 0) {
			queues_wait_for(t->cfg.queues, qkey, key);
			snprintf(msg, sizeof(msg),
				 "TaskQueue %s does not exist; the task starts when it is created",
				 strchr(qkey, '/') + 1);
			return write_waiting(t, task, "Pending", "QueueNotFound", msg);
		}
	}
	/* Executors: the queue's allow-list, else shell and http. */
	allowed = json_object_get(json_object_get(json_object_get(queue, "spec"), "policy"),
				  "executors");
	ok = 0;
	if (json_is_array(allowed)) {
		json_array_foreach(allowed, i, e)
			ok |= json_is_string(e) && strcmp(json_string_value(e), exec) == 0;
	} else {
		ok = strcmp(exec, "shell") == 0 || strcmp(exec, "http") == 0;
	}
	if (!ok) {
		snprintf(msg, sizeof(msg),
			 "the %s executor is not allowed by TaskQueue %s (policy.executors)", exec,
			 strchr(qkey, '/') + 1);
		r = taskctl_write_simple(t, task, "Failed", "PolicyDenied", msg, NULL);
		if (r == 0)
			emit(t, task, "Warning", "Failed", msg);
		goto out;
	}
	ds = deps_check(t->inf, task, &vars, why, sizeof(why));
	if (ds == DEPS_WAIT) {
		/* Tasks outside a Flow are not validated as a graph: a cycle would wait forever
		 * without a word. */
		char cycle[400];
		if (deps_find_cycle(t->inf, task, cycle, sizeof(cycle))) {
			snprintf(msg, sizeof(msg),
				 "dependency cycle: %s; these tasks wait for each other and never "
				 "start (change a dependsOn to break it)",
				 cycle);
			r = write_waiting(t, task, "Pending", "DependencyCycle", msg);
			goto out;
		}
		r = write_waiting(t, task, "Pending", "WaitingForDependencies", why);
		goto out;
	}
	if (when && *when) {
		struct cel_limits lim;
		struct cel_program *prog = NULL;
		json_t *cvars;
		int val = 0;
		char err[512];
		cel_limits_of(queue, &lim);
		cvars = deps_condition_vars(task, json_incref(vars), attempt);
		r = cel_compile(when, &lim, &prog, err, sizeof(err));
		if (r == 0)
			r = cel_eval_bool(prog, cvars, &lim, &val, err, sizeof(err));
		cel_program_free(prog);
		json_decref(cvars);
		if (r < 0) {
			snprintf(msg, sizeof(msg), "when: %s", err);
			r = taskctl_write_simple(t, task, "Failed", "ConditionError", msg, NULL);
			if (r == 0)
				emit(t, task, "Warning", "Failed", msg);
			goto out;
		}
		if (!val) {
			r = taskctl_write_simple(t, task, "Skipped", "ConditionFalse",
						 "when evaluated to false", NULL);
			if (r == 0)
				emit(t, task, "Normal", "Skipped", "when evaluated to false");
			goto out;
		}
	} else if (ds == DEPS_FAILED) {
		r = taskctl_write_simple(t, task, "Failed", "DependencyFailed", why, NULL);
		if (r == 0)
			emit(t, task, "Warning", "Failed", why);
		goto out;
	}
	if (t->cfg.queues && queue) {
		const char *ct = task_creation_timestamp(task);
		if (ct)
			util_parse_rfc3339(ct, &created);
		switch (queues_admit(t->cfg.queues, qkey, queue, key,
				     json_integer_value(json_object_get(spec, "priority")), created,
				     &retry_ms)) {
		case QUEUE_ADMITTED:
			break;
		case QUEUE_RATE_LIMITED:
			requeue(t, key, retry_ms);
			snprintf(msg, sizeof(msg), "waiting for TaskQueue %s's rate limit",
				 strchr(qkey, '/') + 1);
			r = write_waiting(t, task, "Queued", "RateLimited", msg);
			goto out;
		case QUEUE_NO_SLOT:
			snprintf(msg, sizeof(msg), "waiting for a slot in TaskQueue %s",
				 strchr(qkey, '/') + 1);
			r = write_waiting(t, task, "Queued", "Queued", msg);
			goto out;
		}
	}
	*ret_queue = queue;
	*ret_vars = vars;
	return 1;
out:
	json_decref(queue);
	json_decref(vars);
	return r;
}

static int reconcile_dispatch(struct taskctl *t, json_t *task, const char *key, const char *uid,
			      int64_t attempt, json_t *history, json_t *queue, json_t *vars)
{
	json_t *status = task_status(task);
	const char *phase = json_string_value(json_object_get(status, "phase"));
	const char *sreason = json_string_value(json_object_get(status, "reason"));
	json_t *msg, *selector = json_object_get(task_spec(task), "runnerSelector");
	const char *reason = "InvalidSpec";
	const struct taskctl_secret_reader rd = { t->fx.read_secret, t->fx.ud };
	char err[512], runner[512], pool[512] = "", pool_why[300] = "";
	json_t *secrets = NULL, *e;
	size_t i;
	int r, routed;

	if (!json_is_object(selector) || json_object_size(selector) == 0)
		selector = json_object_get(json_object_get(queue, "spec"), "runnerSelector");
	/* A pool's tasks go to its runners (matched by the pool, not by their labels). */
	routed = pools_route(t->cfg.pools, task, selector, pool, sizeof(pool), pool_why,
			     sizeof(pool_why));
	if (routed == 1)
		selector = NULL;
	msg = taskctl_build_dispatch(task, attempt, now_ms(t), err, sizeof(err));
	if (msg && (r = taskctl_apply_queue(&rd, task, msg, queue, vars, now_ms(t), &reason, err,
					    sizeof(err))) < 0) {
		json_decref(msg);
		if (r == -EAGAIN)
			return r;
		msg = NULL;
	}
	/* The queue's container policy applies to the pool its tasks run in. */
	if (msg && routed == 1 &&
	    !pools_policy_allows(t->cfg.pools, pool, queue, &reason, err, sizeof(err))) {
		json_decref(msg);
		msg = NULL;
	}
	if (!msg) {
		log_task("task refused", task, "reason", err);
		r = taskctl_write_simple(t, task, "Failed", reason, err, NULL);
		if (r == 0)
			emit(t, task, "Warning", "Failed", err);
		return r;
	}
	/* Record first, so a result racing the dispatch finds its attempt. */
	json_array_foreach(json_object_get(msg, "env"), i, e) {
		if (!json_is_true(json_object_get(e, "secret")))
			continue;
		if (!secrets)
			secrets = json_array();
		json_array_append(secrets, json_object_get(e, "value"));
	}
	r = att_begin(t->att, uid, key, attempt, json_array_size(history) > 0 ? history : NULL,
		      json_integer_value(json_object_get(msg, "deadline")), secrets);
	json_decref(secrets);
	if (r < 0) {
		json_decref(msg);
		return r;
	}
	r = routed < 0 ? -ENODEV
		       : t->fx.dispatch(t->fx.ud, uid, attempt, pool, selector, msg, runner,
					sizeof(runner));
	if (r == 0) {
		att_set_runner(t->att, uid, runner);
		log_task("task dispatched", task, "runner", runner);
		if (json_integer_value(json_object_get(msg, "deadline")))
			requeue(t, key,
				sat_delay(sat_add(json_integer_value(
							  json_object_get(msg, "deadline")),
						  TASKCTL_DEADLINE_GRACE_MS + 10),
					  now_ms(t), TASKCTL_MAX_TIMER_MS));
		json_decref(msg);
		return 0;
	}
	if (r == -EPROTO) {
		/* The container executor cannot make this attempt's pod, ever. */
		json_decref(msg);
		att_drop(t->att, uid);
		log_task("task refused", task, "reason", runner);
		r = taskctl_write_simple(t, task, "Failed", "PodRefused", runner, NULL);
		if (r == 0)
			emit(t, task, "Warning", "Failed", runner);
		return r;
	}
	if (r == -EMSGSIZE) {
		/* Too big for the runner protocol: it can never run, so say so instead of
		 * leaving it Queued (no runner would ever get it). */
		char *text = json_dumps(msg, JSON_COMPACT);
		size_t n = text ? strlen(text) : 0;
		free(text);
		json_decref(msg);
		att_drop(t->att, uid);
		snprintf(err, sizeof(err),
			 "the task's dispatch message is %zu bytes, over the %d-byte limit of the "
			 "runner protocol (command, env, input and headers together)",
			 n, PROTO_MAX_MESSAGE_DEFAULT);
		log_task("task refused", task, "reason", err);
		r = taskctl_write_simple(t, task, "Failed", "InvalidSpec", err, NULL);
		if (r == 0)
			emit(t, task, "Warning", "Failed", err);
		return r;
	}
	json_decref(msg);
	att_drop(t->att, uid);
	set_key(t, &t->waiting, key, 1);
	if (r != -EAGAIN && r != -ENODEV)
		return r;
	/* Queued carries the attempt count and history, so an attempt lost before it was ever
	 * reported still advances the (task UID, attempt) key. Written again only when what it
	 * waits for changed (a slot in the queue, a matching runner, a free runner slot): a
	 * message that named what has since happened would stay for as long as the wait. */
	{
		char msgbuf[600];
		const char *why = r == -ENODEV ? "waiting for a runner that matches runnerSelector"
					       : "waiting for a free runner slot";
		const char *smsg = json_string_value(json_object_get(status, "message"));
		json_t *extra;
		if (routed < 0)
			why = pool_why;
		else if (routed == 1 && r == -ENODEV)
			why = (snprintf(msgbuf, sizeof(msgbuf),
					"RunnerPool %s is starting: waiting for its first runner",
					strchr(pool, '/') + 1),
			       msgbuf);
		else if (r == -ENODEV && json_object_size(selector))
			why = "no RunnerPool in the namespace has labels matching runnerSelector and no connected "
			      "runner matches it: waiting for a runner that matches runnerSelector";
		if (phase && strcmp(phase, "Queued") == 0 &&
		    !(sreason && strcmp(sreason, "Retrying") == 0) &&
		    json_integer_value(json_object_get(status, "attempts")) == attempt - 1 &&
		    smsg && strcmp(smsg, why) == 0 &&
		    json_integer_value(json_object_get(status, "observedGeneration")) ==
			    task_generation(task))
			return 0;
		extra = json_pack("{sIsn}", "attempts", (json_int_t)(attempt - 1), "nextRetryTime");
		if (json_array_size(history) > 0)
			json_object_set(extra, "attemptHistory", history);
		r = taskctl_write_simple(t, task, "Queued", "Queued", why, extra);
		json_decref(extra);
		if (r == 0)
			emit(t, task, "Normal", "Queued", why);
		return r;
	}
}

/* The task is gone: stop whatever still runs for it. */
static void reconcile_deleted(struct taskctl *t, const char *key)
{
	struct attempt snap;
	int act = 0; /* 1 cancel, 2 ack */

	if (att_take_by_key(t->att, key, &snap))
		act = snap.state != ATT_DONE && snap.runner[0] ? 1 : snap.state == ATT_DONE ? 2 : 0;
	set_key(t, &t->waiting, key, 0);
	if (act == 1) {
		log_info("task deleted; cancelling its attempt", "task", key, "runner",
			 snap.runner);
		t->fx.cancel(t->fx.ud, snap.runner, snap.uid, snap.attempt);
	} else if (act == 2) {
		t->fx.ack(t->fx.ud, snap.runner, snap.uid, snap.attempt);
	}
	att_snap_release(&snap);
}

/* A finished task whose spec changed where it still may (cancel, ttlSecondsAfterFinished): the
 * controller has seen the new generation, and says so, or kstatus reads InProgress forever. One
 * write per such edit, none otherwise. */
static int reconcile_observed(struct taskctl *t, json_t *task)
{
	json_t *st = task_status(task), *patch;
	int64_t gen = task_generation(task);
	int r;

	if (gen <= 0 || json_integer_value(json_object_get(st, "observedGeneration")) == gen)
		return 0;
	patch = json_pack("{s{sIso}}", "status", "observedGeneration", (json_int_t)gen,
			  "conditions",
			  taskctl_conditions(task, task_phase(task), task_reason(task),
					     task_message(task), now_ms(t)));
	if (!patch)
		return -ENOMEM;
	r = t->fx.write_status(t->fx.ud, task, patch);
	json_decref(patch);
	return r;
}

/* ttlSecondsAfterFinished: delete on time (with a UID precondition). */
static int reconcile_ttl(struct taskctl *t, json_t *task, const char *key)
{
	json_t *ttl = json_object_get(task_spec(task), "ttlSecondsAfterFinished");
	const char *done = task_completion_time(task);
	int64_t done_ms, due, now = now_ms(t);
	int r;

	if (!json_is_integer(ttl) || !done || util_parse_rfc3339(done, &done_ms) < 0 ||
	    task_deleting(task))
		return 0;
	due = sat_add(done_ms, sat_mul(json_integer_value(ttl), 1000));
	if (now < due) {
		requeue(t, key, sat_delay(due, now, TASKCTL_MAX_TIMER_MS));
		return 0;
	}
	r = t->fx.delete_task(t->fx.ud, task);
	if (r == 0)
		log_task("deleted after ttlSecondsAfterFinished", task, "ttl", "expired");
	return r;
}

static int reconcile_cancel(struct taskctl *t, json_t *task, const char *uid, struct attempt *snap,
			    int have)
{
	if (have && (snap->state == ATT_DISPATCHED || snap->state == ATT_STARTED)) {
		int64_t now = util_mono_ms(), sent;
		if (att_cancel_once(t->att, uid, now, &sent)) {
			log_task("cancelling", task, "runner", snap->runner);
			t->fx.cancel(t->fx.ud, snap->runner, uid, snap->attempt);
		}
		if (now - sent < TASKCTL_CANCEL_GRACE_MS) {
			requeue(t, snap->key, TASKCTL_CANCEL_GRACE_MS - (now - sent) + 10);
			return 0;
		}
		/* The runner did not confirm in time (gone, or partitioned): record the cancel
		 * ourselves; a late result is acknowledged and ignored. */
	}
	{
		json_t *extra = json_pack(
			"{sI}", "attempts",
			(json_int_t)(have ? snap->attempt
					  : json_int_at(task_status(task), "attempts", NULL)));
		int r = taskctl_write_simple(t, task, "Cancelled", "Cancelled",
					     have ? "cancelled; the runner did not confirm"
						  : "cancelled before it started",
					     extra);
		json_decref(extra);
		if (r == 0) {
			emit(t, task, "Normal", "Cancelled", "cancelled by spec.cancel");
			if (have)
				att_mark_written(t->att, uid, snap->attempt, W_TERMINAL);
		}
		return r;
	}
}

/* Attempts runners hold for tasks the cache does not know: once the cache has synced, such a
 * task was deleted while no controller was watching, so its process tree is stopped. */
static int reconcile_orphans(struct taskctl *t)
{
	json_t *o, *v;
	const char *uid;

	if (!informer_synced(t->inf)) {
		requeue(t, TASKCTL_ORPHANS_KEY, 500);
		return 0;
	}
	o = take_set(t, &t->orphans);
	json_object_foreach(o, uid, v) {
		char *k = informer_key_by_uid(t->inf, uid);
		const char *runner = json_string_value(json_object_get(v, "runner"));
		int64_t attempt = json_integer_value(json_object_get(v, "attempt"));
		if (k) {
			(void)cb_held(t, uid, attempt, runner);
		} else {
			log_info("runner holds an attempt of a deleted task; cancelling it", "uid",
				 uid, "runner", runner);
			t->fx.cancel(t->fx.ud, runner, uid, attempt);
		}
		free(k);
	}
	json_decref(o);
	return 0;
}

/* A task holds a queue slot while its attempt is dispatched or running (or, with no record yet,
 * while the cache says Running: after a restart, before its runner reported). */
static void sync_holder(struct taskctl *t, json_t *task, const char *key, const char *uid)
{
	const char *phase = task_phase(task);
	char qkey[512];
	int holds = uid ? att_holds_slot(t->att, uid) : -ENOENT;

	if (holds < 0)
		holds = phase && strcmp(phase, "Running") == 0;
	queues_key_of(task, qkey, sizeof(qkey));
	queues_set_holder(t->cfg.queues, qkey, key, holds);
}

/* No attempt in flight (or it was lost): wait for a retry or restart hold, else record a lost
 * attempt and start the next one through the gate. */
static int reconcile_next(struct taskctl *t, json_t *task, const char *key, const char *uid,
			  struct attempt *snap, int have)
{
	const char *phase = task_phase(task), *reason = task_reason(task);
	json_t *base, *queue = NULL, *vars = NULL;
	int64_t next = task_attempts(task);
	int r;

	if (!have && phase && strcmp(phase, "Queued") == 0 && reason &&
	    strcmp(reason, "Retrying") == 0) {
		int64_t at;
		const char *nrt = task_next_retry_time(task);
		if (nrt && util_parse_rfc3339(nrt, &at) == 0 && at > now_ms(t)) {
			requeue(t, key, sat_delay(at, now_ms(t), TASKCTL_MAX_TIMER_MS));
			return 0;
		}
	}
	if (!have && t->cfg.startup_hold_ms > 0) {
		/* Tasks that existed before this controller started may have been dispatched by the
		 * previous instance: give runners time to reconnect and report what they hold. */
		int64_t left = t->cfg.startup_hold_ms - (util_mono_ms() - t->started_ms), created;
		const char *ct = task_creation_timestamp(task);
		if (left > 0 && ct && util_parse_rfc3339(ct, &created) == 0 &&
		    created <= t->started_wall_ms) {
			requeue(t, key, left);
			return 0;
		}
	}
	base = json_incref(task_history(task));
	if (have && snap->attempt > next)
		next = snap->attempt;
	if ((phase && strcmp(phase, "Running") == 0) || (have && snap->state == ATT_LOST)) {
		/* Disruptions do not count against retries; they show in the history and are
		 * bounded on their own. */
		const char *rn = have ? snap->runner : task_runner(task);
		int pod = podexec_is_runner(rn);
		json_t *lost = json_pack("{sIssssss}", "attempt", (json_int_t)next, "runner",
					 rn ? rn : "", "reason", "RunnerLost", "message",
					 pod ? "the attempt's pod was deleted before it finished"
					     : "the runner holding this attempt went away");
		json_t *nb = taskctl_history_with(base, lost);
		json_decref(base);
		json_decref(lost);
		base = nb;
		log_task("attempt lost with its runner", task, "runner", rn ? rn : "");
		emit(t, task, "Warning", "RunnerLost",
		     pod ? "the attempt's pod was deleted before it finished; starting a new attempt"
			 : "the runner holding this attempt went away; starting a new attempt");
		if (taskctl_count_lost(base) > TASKCTL_MAX_LOST) {
			json_t *extra = json_pack("{sIsO}", "attempts", (json_int_t)next,
						  "attemptHistory", base);
			r = taskctl_write_simple(
				t, task, "Failed", "RunnerLost",
				"runners were lost too many times while running this task", extra);
			json_decref(extra);
			json_decref(base);
			if (r == 0)
				emit(t, task, "Warning", "Failed",
				     "runners were lost too many times");
			return r;
		}
	}
	r = reconcile_gate(t, task, key, next + 1, &queue, &vars);
	if (r == 1)
		r = reconcile_dispatch(t, task, key, uid, next + 1, base, queue, vars);
	json_decref(queue);
	json_decref(vars);
	json_decref(base);
	return r;
}

int taskctl_reconcile(struct taskctl *t, const char *key)
{
	json_t *task = informer_get(t->inf, key);
	const char *uid;
	struct attempt snap;
	int have = 0, r = 0;

	memset(&snap, 0, sizeof(snap));
	if (strcmp(key, TASKCTL_ORPHANS_KEY) == 0) {
		json_decref(task);
		return reconcile_orphans(t);
	}
	if (!task) {
		reconcile_deleted(t, key);
		if (t->cfg.queues)
			queues_forget(t->cfg.queues, key);
		return 0;
	}
	uid = task_uid(task);
	if (!uid)
		goto out;
	if (att_snapshot_settled(t->att, uid, task_terminal(task), &snap, &have)) {
		/* The API server has the final word; nothing more to do for this task but let the
		 * runner forget the attempt, or stop it. */
		int act = have && snap.state == ATT_DONE ? 2 : have && snap.runner[0] ? 1 : 0;
		set_key(t, &t->waiting, key, 0);
		if (act == 2)
			t->fx.ack(t->fx.ud, snap.runner, snap.uid, snap.attempt);
		else if (act == 1)
			t->fx.cancel(t->fx.ud, snap.runner, snap.uid, snap.attempt);
		r = reconcile_observed(t, task);
		if (r == 0)
			r = reconcile_ttl(t, task, key);
		goto out;
	}
	if (task_cancel_requested(task) && !(have && snap.state == ATT_DONE))
		r = reconcile_cancel(t, task, uid, &snap, have);
	else if (have && snap.state != ATT_LOST)
		r = reconcile_attempt(t, task, key, uid, &snap);
	else
		r = reconcile_next(t, task, key, uid, &snap, have);
out:
	if (t->cfg.queues)
		sync_holder(t, task, key, uid);
	att_snap_release(&snap);
	json_decref(task);
	return r;
}

void *taskctl_worker(void *arg)
{
	struct taskctl *t = arg;
	char *key;

	while ((key = wq_get(t->cfg.queue))) {
		int r;
		if (t->cfg.may_act && !t->cfg.may_act(t->cfg.may_act_ud)) {
			/* Standing by: leave the key for when we lead. */
			set_key(t, &t->standby, key, 1);
			wq_done(t->cfg.queue, key);
			free(key);
			continue;
		}
		r = taskctl_reconcile(t, key);
		if (r == -EAGAIN || r == -ENOMEM || r == -EIO)
			wq_add_rate_limited(t->cfg.queue, key);
		else
			wq_forget(t->cfg.queue, key);
		wq_done(t->cfg.queue, key);
		free(key);
	}
	return NULL;
}

void taskctl_resume(struct taskctl *t)
{
	json_t *w;
	const char *key;
	json_t *v;

	pthread_mutex_lock(&t->lock);
	w = t->standby;
	t->standby = json_object();
	/* Runners report what they hold again to a new leader; the old set is stale. */
	json_decref(t->orphans);
	t->orphans = json_object();
	t->started_ms = util_mono_ms();
	t->started_wall_ms = now_ms(t);
	pthread_mutex_unlock(&t->lock);
	json_object_foreach(w, key, v)
		requeue(t, key, 0);
	json_decref(w);
}

void taskctl_on_undecodable(const struct informer_bad *b, void *ud)
{
	struct taskctl *t = ud;
	char msg[512];
	json_t *task;
	int r;

	if (!b->uid[0] || !b->name[0] || !b->namespace_[0] || task_phase_terminal(b->phase) ||
	    strcmp(b->reason, "Undecodable") == 0 ||
	    (t->cfg.may_act && !t->cfg.may_act(t->cfg.may_act_ud)))
		return;
	/* The write needs only the name and the UID (its precondition): the status subresource
	 * takes a merge patch without the rest of the object. */
	task = json_pack("{s{sssssssI}}", "metadata", "namespace", b->namespace_, "name", b->name,
			 "uid", b->uid, "generation", (json_int_t)b->generation);
	if (!task)
		return;
	snprintf(msg, sizeof(msg),
		 "the controller cannot decode this Task (%.200s): objects nested deeper than "
		 "2048 levels or with a NUL byte in a member name are skipped",
		 b->error);
	r = taskctl_write_simple(t, task, "Failed", "Undecodable", msg, NULL);
	if (r == 0)
		emit(t, task, "Warning", "Undecodable", msg);
	else
		log_warn("could not mark an undecodable task Failed", "namespace", b->namespace_,
			 "task", b->name, "uid", b->uid);
	json_decref(task);
}
