/* The Task reconciler's state machine, driven through its effects interface: no API server, no
 * runners. The informer is a real cache fed by hand; the fake status write merges the patch into
 * the cached task as the API server would, so each pass sees what the previous one wrote. */
#include "informer.h"
#include "tap.h"
#include "task.h"
#include "taskctl.h"

#include <errno.h>

struct world {
	struct informer *inf;
	struct taskctl *tc;
	int64_t now;
	int rv;
	int dispatch_rc; /* what the next dispatch returns */
	int writes, dispatches, cancels, acks;
	int64_t last_attempt; /* of the last dispatch */
	int64_t last_requeue; /* after_ms of the last requeue of the task key; -1 none */
	char last_event[64];
	json_t *last_msg; /* the last dispatch message */
};

static void on_event(enum informer_event ev, const char *key, json_t *obj, void *ud) {}

static void feed(struct world *w, const char *type, json_t *obj)
{
	char rv[32];
	json_t *ev;
	char *line;

	snprintf(rv, sizeof(rv), "%d", ++w->rv);
	json_object_set_new(json_object_get(obj, "metadata"), "resourceVersion", json_string(rv));
	ev = json_pack("{sssO}", "type", type, "object", obj);
	line = json_dumps(ev, JSON_COMPACT);
	informer_feed_watch_line(w->inf, line, strlen(line));
	free(line);
	json_decref(ev);
}

/* RFC 7386 merge patch. */
static void merge(json_t *dst, json_t *patch)
{
	const char *k;
	json_t *v;
	json_object_foreach(patch, k, v) {
		if (json_is_null(v))
			json_object_del(dst, k);
		else if (json_is_object(v) && json_is_object(json_object_get(dst, k)))
			merge(json_object_get(dst, k), v);
		else
			json_object_set(dst, k, v);
	}
}

static int fx_write_status(void *ud, json_t *task, json_t *patch)
{
	struct world *w = ud;
	json_t *cur = informer_get(w->inf, "ns/t"), *copy;
	if (!cur)
		return -ENOENT;
	copy = json_deep_copy(cur);
	json_decref(cur);
	if (!json_object_get(copy, "status"))
		json_object_set_new(copy, "status", json_object());
	merge(json_object_get(copy, "status"), json_object_get(patch, "status"));
	feed(w, "MODIFIED", copy);
	json_decref(copy);
	w->writes++;
	return 0;
}

static int fx_dispatch(void *ud, const char *uid, int64_t attempt, const char *pool,
		       json_t *selector, json_t *msg, char *runner, size_t runnersz)
{
	struct world *w = ud;
	if (w->dispatch_rc)
		return w->dispatch_rc;
	snprintf(runner, runnersz, "r1");
	w->dispatches++;
	w->last_attempt = attempt;
	json_decref(w->last_msg);
	w->last_msg = json_incref(msg);
	return 0;
}

static void fx_cancel(void *ud, const char *runner, const char *uid, int64_t attempt)
{
	((struct world *)ud)->cancels++;
}
static void fx_ack(void *ud, const char *runner, const char *uid, int64_t attempt)
{
	((struct world *)ud)->acks++;
}

static void fx_emit(void *ud, json_t *task, const char *type, const char *reason, const char *note)
{
	struct world *w = ud;
	snprintf(w->last_event, sizeof(w->last_event), "%s", reason);
}

static void fx_requeue(void *ud, const char *key, int64_t after_ms)
{
	struct world *w = ud;
	if (strcmp(key, "ns/t") == 0)
		w->last_requeue = after_ms;
}

static int fx_delete_task(void *ud, json_t *task) { return 0; }
static int fx_read_secret(void *ud, const char *ns, const char *name, const char *k, char **ret,
			  size_t *len)
{
	return -ENOENT;
}
static int64_t fx_now(void *ud) { return ((struct world *)ud)->now; }

static const struct taskctl_effects effects = {
	.write_status = fx_write_status,
	.dispatch = fx_dispatch,
	.cancel = fx_cancel,
	.ack = fx_ack,
	.emit = fx_emit,
	.requeue = fx_requeue,
	.delete_task = fx_delete_task,
	.read_secret = fx_read_secret,
	.now_ms = fx_now,
};

static void world_init(struct world *w, const char *spec)
{
	struct taskctl_effects fx = effects;
	json_error_t e;
	json_t *task;

	memset(w, 0, sizeof(*w));
	w->now = INT64_C(1700000000000);
	w->last_requeue = -1;
	fx.ud = w;
	w->inf = informer_new(NULL, "/apis/tasked.dev/v1alpha1/tasks", 0, on_event, NULL);
	w->tc = taskctl_new(&(struct taskctl_cfg){ .inf = w->inf, .effects = &fx });
	task = json_loads(spec, 0, &e);
	if (!task)
		diag("bad test JSON: %s", e.text);
	json_object_set_new(task, "metadata",
			    json_pack("{sssssssI}", "namespace", "ns", "name", "t", "uid", "u1",
				      "generation", (json_int_t)1));
	json_object_set_new(task, "apiVersion", json_string("tasked.dev/v1alpha1"));
	json_object_set_new(task, "kind", json_string("Task"));
	feed(w, "ADDED", task);
	json_decref(task);
}

static void world_free(struct world *w)
{
	taskctl_free(w->tc);
	informer_free(w->inf);
	json_decref(w->last_msg);
}

static int reconcile(struct world *w) { return taskctl_reconcile(w->tc, "ns/t"); }

static const char *phase(struct world *w, char *buf, size_t n)
{
	json_t *t = informer_get(w->inf, "ns/t");
	snprintf(buf, n, "%s/%s", task_phase(t) ? task_phase(t) : "-",
		 task_reason(t) ? task_reason(t) : "-");
	json_decref(t);
	return buf;
}

static int64_t attempts(struct world *w)
{
	json_t *t = informer_get(w->inf, "ns/t");
	int64_t n = task_attempts(t);
	json_decref(t);
	return n;
}

static void result(struct world *w, int64_t attempt, const char *json)
{
	json_t *m = json_loads(json, 0, NULL);
	taskctl_broker_ops.result(w->tc, "u1", attempt, "r1", m);
	json_decref(m);
}

#define SHELL "\"shell\": {\"command\": [\"true\"]}"

static void test_success(void)
{
	struct world w;
	char b[64];

	world_init(&w, "{\"spec\": {" SHELL "}}");
	is_int(reconcile(&w), 0, "pending: reconcile succeeds");
	is_int(w.dispatches, 1, "pending -> dispatched: one dispatch");
	is_int(w.last_attempt, 1, "as attempt 1");
	is_int(w.writes, 0, "no status write until the runner starts it");
	is_int(reconcile(&w), 0, "a second pass");
	is_int(w.dispatches, 1, "does not dispatch again");
	taskctl_broker_ops.started(w.tc, "u1", 1, w.now, "r1");
	reconcile(&w);
	is_str(phase(&w, b, sizeof(b)), "Running/Running", "started -> Running written");
	is_int(attempts(&w), 1, "with attempts 1");
	result(&w, 1, "{\"phase\": \"Succeeded\", \"exitCode\": 0}");
	reconcile(&w);
	is_str(phase(&w, b, sizeof(b)), "Succeeded/Succeeded", "result success -> Succeeded");
	is_int(w.writes, 2, "two status writes in all: Running and Succeeded");
	is_int(w.acks, 1, "the result is acknowledged");
	is_str(w.last_event, "Succeeded", "an event says so");
	w.writes = 0;
	reconcile(&w);
	is_int(w.acks, 2, "terminal in the cache: the record is dropped with a final ack");
	reconcile(&w);
	is_int(w.acks, 2, "then nothing more is sent");
	is_int(w.writes, 0, "and nothing more is written");
	is_int(w.dispatches, 1, "and nothing more is dispatched");
	world_free(&w);
}

static void test_failure_retry(void)
{
	struct world w;
	char b[64];
	json_t *t;

	world_init(&w, "{\"spec\": {" SHELL
		       ", \"retries\": {\"limit\": 1, \"backoff\": {\"initialDelaySeconds\": 10,"
		       " \"jitter\": false}}}}");
	reconcile(&w);
	result(&w, 1, "{\"phase\": \"Failed\", \"exitCode\": 3}");
	reconcile(&w);
	is_str(phase(&w, b, sizeof(b)), "Queued/Retrying",
	       "a failure with retries left -> Queued, Retrying");
	is_int(w.last_requeue, 10000, "requeued after the backoff (10 s, no jitter)");
	t = informer_get(w.inf, "ns/t");
	ok(json_is_string(json_object_get(task_status(t), "nextRetryTime")),
	   "nextRetryTime is set");
	is_int((long long)json_array_size(task_history(t)), 1,
	       "the failed attempt is in the history");
	json_decref(t);
	is_int(w.acks, 1, "the failed attempt is acknowledged");
	w.last_requeue = -1;
	w.now += 5000;
	reconcile(&w);
	is_int(w.dispatches, 1, "before the retry time: no new attempt");
	ok(w.last_requeue > 0 && w.last_requeue <= 5000, "but a timer for the rest (%lld ms)",
	   (long long)w.last_requeue);
	w.now += 5001;
	reconcile(&w);
	is_int(w.dispatches, 2, "after it: a new dispatch");
	is_int(w.last_attempt, 2, "as attempt 2");
	result(&w, 2, "{\"phase\": \"Failed\", \"exitCode\": 3}");
	reconcile(&w);
	is_str(phase(&w, b, sizeof(b)), "Failed/RetriesExhausted",
	       "the last retry failing -> Failed, RetriesExhausted");
	world_free(&w);

	world_init(&w, "{\"spec\": {" SHELL "}}");
	reconcile(&w);
	result(&w, 1, "{\"phase\": \"Failed\", \"exitCode\": 1}");
	reconcile(&w);
	is_str(phase(&w, b, sizeof(b)), "Failed/Failed",
	       "result failure without retries -> Failed");
	t = informer_get(w.inf, "ns/t");
	is_int(json_integer_value(json_object_get(task_status(t), "exitCode")), 1,
	       "with the exit code");
	json_decref(t);
	world_free(&w);
}

static void test_cancel(void)
{
	struct world w;
	char b[64];
	json_t *t, *h;

	world_init(&w, "{\"spec\": {" SHELL ", \"cancel\": true}}");
	reconcile(&w);
	is_str(phase(&w, b, sizeof(b)), "Cancelled/Cancelled",
	       "cancel before any attempt -> Cancelled");
	is_int(w.dispatches + w.cancels, 0, "nothing dispatched or cancelled");
	world_free(&w);

	world_init(&w, "{\"spec\": {" SHELL "}}");
	reconcile(&w);
	taskctl_broker_ops.started(w.tc, "u1", 1, w.now, "r1");
	reconcile(&w);
	h = informer_get(w.inf, "ns/t");
	t = json_deep_copy(h);
	json_decref(h);
	json_object_set_new(task_spec(t), "cancel", json_true());
	feed(&w, "MODIFIED", t);
	json_decref(t);
	reconcile(&w);
	is_int(w.cancels, 1, "cancel while running: the runner is told");
	ok(w.last_requeue > 0, "and the task is looked at again after the grace period");
	reconcile(&w);
	is_int(w.cancels, 1, "the cancel goes out once");
	result(&w, 1, "{\"phase\": \"Cancelled\", \"reason\": \"Cancelled\", \"exitCode\": -1}");
	reconcile(&w);
	is_str(phase(&w, b, sizeof(b)), "Cancelled/Cancelled",
	       "the runner's confirmation -> Cancelled");
	world_free(&w);
}

static void test_timeout(void)
{
	struct world w;
	char b[64];

	world_init(&w, "{\"spec\": {" SHELL ", \"timeoutSeconds\": 1}}");
	reconcile(&w);
	ok(json_integer_value(json_object_get(w.last_msg, "deadline")) == w.now + 1000,
	   "the dispatch carries the deadline");
	ok(w.last_requeue > 1000, "and a timer past it (%lld ms)", (long long)w.last_requeue);
	taskctl_broker_ops.started(w.tc, "u1", 1, w.now, "r1");
	reconcile(&w);
	w.now += 5000;
	reconcile(&w);
	is_int(w.cancels, 0, "within the grace period the runner's own timeout is awaited");
	w.now += 10000;
	reconcile(&w);
	is_int(w.cancels, 1, "past it: the attempt is stopped");
	is_str(phase(&w, b, sizeof(b)), "Failed/TimedOut", "and the task fails with TimedOut");
	world_free(&w);
}

static void test_runner_lost(void)
{
	struct world w;
	char b[64];
	json_t *t, *h;

	world_init(&w, "{\"spec\": {" SHELL "}}");
	reconcile(&w);
	taskctl_broker_ops.started(w.tc, "u1", 1, w.now, "r1");
	reconcile(&w);
	taskctl_broker_ops.lost(w.tc, "u1", 1, "r1");
	reconcile(&w);
	is_str(w.last_event, "RunnerLost", "runner lost: an event says so");
	is_int(w.dispatches, 2, "and a new attempt goes out");
	is_int(w.last_attempt, 2, "as attempt 2");
	taskctl_broker_ops.started(w.tc, "u1", 2, w.now, "r1");
	reconcile(&w);
	is_str(phase(&w, b, sizeof(b)), "Running/Running", "which runs");
	t = informer_get(w.inf, "ns/t");
	h = json_array_get(task_history(t), 0);
	is_str(json_string_value(json_object_get(h, "reason")), "RunnerLost",
	       "the history records the loss");
	json_decref(t);
	result(&w, 2, "{\"phase\": \"Succeeded\", \"exitCode\": 0}");
	reconcile(&w);
	is_str(phase(&w, b, sizeof(b)), "Succeeded/Succeeded",
	       "and a loss does not count as a failure");
	world_free(&w);
}

static void test_waiting_and_refused(void)
{
	struct world w;
	char b[64];

	world_init(&w, "{\"spec\": {" SHELL "}}");
	w.dispatch_rc = -ENODEV;
	reconcile(&w);
	is_str(phase(&w, b, sizeof(b)), "Queued/Queued", "no matching runner -> Queued");
	w.writes = 0;
	reconcile(&w);
	is_int(w.writes, 0, "written once, not on every pass");
	w.dispatch_rc = 0;
	taskctl_broker_ops.capacity(w.tc);
	is_int(w.last_requeue, 0, "capacity wakes the waiting task");
	reconcile(&w);
	is_int(w.dispatches, 1, "which is dispatched");
	world_free(&w);

	world_init(&w, "{\"spec\": {\"shell\": {\"command\": []}}}");
	reconcile(&w);
	is_str(phase(&w, b, sizeof(b)), "Failed/InvalidSpec",
	       "an invalid spec -> Failed, InvalidSpec");
	is_int(w.dispatches, 0, "never dispatched");
	world_free(&w);
}

static void test_deleted(void)
{
	struct world w;
	json_t *t;

	world_init(&w, "{\"spec\": {" SHELL "}}");
	reconcile(&w);
	t = informer_get(w.inf, "ns/t");
	feed(&w, "DELETED", t);
	json_decref(t);
	is_int(reconcile(&w), 0, "a deleted task reconciles");
	is_int(w.cancels, 1, "its running attempt is cancelled");
	result(&w, 1, "{\"phase\": \"Failed\", \"exitCode\": -1}");
	is_int(w.acks, 1, "a late result for it is acknowledged so the runner forgets it");
	world_free(&w);
}

/* "STATUS/REASON/observedGeneration" of the task's condition of this type; "-" when absent. */
static const char *cond(struct world *w, const char *type, char *buf, size_t n)
{
	json_t *t = informer_get(w->inf, "ns/t"), *c;
	size_t i;
	snprintf(buf, n, "-");
	json_array_foreach(task_conditions(t), i, c)
		if (strcmp(json_string_value(json_object_get(c, "type")), type) == 0)
			snprintf(buf, n, "%s/%s/%lld",
				 json_string_value(json_object_get(c, "status")),
				 json_string_value(json_object_get(c, "reason")),
				 (long long)json_integer_value(
					 json_object_get(c, "observedGeneration")));
	json_decref(t);
	return buf;
}

static const char *cond_ltt(struct world *w, const char *type, char *buf, size_t n)
{
	json_t *t = informer_get(w->inf, "ns/t"), *c;
	size_t i;
	snprintf(buf, n, "-");
	json_array_foreach(task_conditions(t), i, c)
		if (strcmp(json_string_value(json_object_get(c, "type")), type) == 0)
			snprintf(buf, n, "%s",
				 json_string_value(json_object_get(c, "lastTransitionTime")));
	json_decref(t);
	return buf;
}

static void test_conditions(void)
{
	struct world w;
	char b[96], ltt[64];

	world_init(&w, "{\"spec\": {" SHELL "}}");
	w.dispatch_rc = -ENODEV;
	reconcile(&w);
	is_str(cond(&w, "Reconciling", b, sizeof(b)), "True/Queued/1",
	       "Queued: Reconciling True, reason Queued");
	is_str(cond(&w, "Ready", b, sizeof(b)), "False/Queued/1", "Queued: Ready False");
	is_str(cond(&w, "Stalled", b, sizeof(b)), "False/Queued/1", "Queued: Stalled False");
	is_str(cond(&w, "Completed", b, sizeof(b)), "False/Queued/1", "Queued: Completed False");
	is_str(cond(&w, "Succeeded", b, sizeof(b)), "Unknown/Queued/1",
	       "Queued: Succeeded Unknown");
	cond_ltt(&w, "Completed", ltt, sizeof(ltt));
	w.dispatch_rc = 0;
	w.now += 60000;
	reconcile(&w);
	taskctl_broker_ops.started(w.tc, "u1", 1, w.now, "r1");
	reconcile(&w);
	is_str(cond(&w, "Reconciling", b, sizeof(b)), "True/Running/1",
	       "Running: Reconciling True, reason Running");
	is_str(cond_ltt(&w, "Completed", b, sizeof(b)), ltt,
	       "a condition that stays False keeps its lastTransitionTime");
	w.writes = 0;
	w.now += 60000;
	result(&w, 1, "{\"phase\": \"Succeeded\", \"exitCode\": 0}");
	reconcile(&w);
	is_int(w.writes, 1, "Succeeded: the conditions come with the one terminal write");
	is_str(cond(&w, "Ready", b, sizeof(b)), "True/Succeeded/1", "Succeeded: Ready True");
	is_str(cond(&w, "Reconciling", b, sizeof(b)), "False/Succeeded/1",
	       "Succeeded: Reconciling False");
	is_str(cond(&w, "Stalled", b, sizeof(b)), "False/Succeeded/1", "Succeeded: Stalled False");
	is_str(cond(&w, "Completed", b, sizeof(b)), "True/Succeeded/1",
	       "Succeeded: Completed True");
	ok(strcmp(cond_ltt(&w, "Completed", b, sizeof(b)), ltt) != 0,
	   "Completed turning True moves its lastTransitionTime");
	world_free(&w);

	world_init(&w, "{\"spec\": {" SHELL "}}");
	reconcile(&w);
	result(&w, 1, "{\"phase\": \"Failed\", \"exitCode\": 2}");
	reconcile(&w);
	is_str(cond(&w, "Ready", b, sizeof(b)), "False/Failed/1",
	       "Failed: Ready False with the reason");
	is_str(cond(&w, "Stalled", b, sizeof(b)), "True/Failed/1", "Failed: Stalled True");
	is_str(cond(&w, "Reconciling", b, sizeof(b)), "False/Failed/1",
	       "Failed: Reconciling False");
	is_str(cond(&w, "Completed", b, sizeof(b)), "True/Failed/1", "Failed: Completed True");
	is_str(cond(&w, "Succeeded", b, sizeof(b)), "False/Failed/1", "Failed: Succeeded False");
	world_free(&w);

	world_init(&w, "{\"spec\": {" SHELL ", \"cancel\": true}}");
	reconcile(&w);
	is_str(cond(&w, "Stalled", b, sizeof(b)), "True/Cancelled/1", "Cancelled: Stalled True");
	is_str(cond(&w, "Ready", b, sizeof(b)), "False/Cancelled/1", "Cancelled: Ready False");
	is_str(cond(&w, "Completed", b, sizeof(b)), "True/Cancelled/1",
	       "Cancelled: Completed True");
	world_free(&w);

	/* Skipped did what was asked: everything that waits for success is satisfied. */
	world_init(&w, "{\"spec\": {" SHELL ", \"when\": \"1 > 2\"}}");
	reconcile(&w);
	is_str(phase(&w, b, sizeof(b)), "Skipped/ConditionFalse", "a false when -> Skipped");
	is_str(cond(&w, "Succeeded", b, sizeof(b)), "True/ConditionFalse/1",
	       "Skipped: Succeeded True (kubectl wait ends)");
	is_str(cond(&w, "Ready", b, sizeof(b)), "True/ConditionFalse/1", "Skipped: Ready True");
	is_str(cond(&w, "Stalled", b, sizeof(b)), "False/Skipped/1", "Skipped: Stalled False");
	is_str(cond(&w, "Completed", b, sizeof(b)), "True/Skipped/1", "Skipped: Completed True");
	world_free(&w);
}

/* A spec edit after the end (cancel, ttlSecondsAfterFinished) is observed: one write. */
static void test_observed_generation(void)
{
	struct world w;
	char b[96];
	json_t *t, *h;

	world_init(&w, "{\"spec\": {" SHELL "}}");
	reconcile(&w);
	result(&w, 1, "{\"phase\": \"Failed\", \"exitCode\": 2}");
	reconcile(&w);
	reconcile(&w);
	h = informer_get(w.inf, "ns/t");
	t = json_deep_copy(h);
	json_decref(h);
	json_object_set_new(task_spec(t), "ttlSecondsAfterFinished", json_integer(3600));
	json_object_set_new(task_metadata(t), "generation", json_integer(2));
	feed(&w, "MODIFIED", t);
	json_decref(t);
	w.writes = 0;
	reconcile(&w);
	is_int(w.writes, 1, "a finished task's new generation: one write");
	t = informer_get(w.inf, "ns/t");
	is_int(json_integer_value(json_object_get(task_status(t), "observedGeneration")), 2,
	       "status.observedGeneration 2");
	json_decref(t);
	is_str(cond(&w, "Stalled", b, sizeof(b)), "True/Failed/2",
	       "the conditions say generation 2, statuses unchanged");
	is_str(phase(&w, b, sizeof(b)), "Failed/Failed", "the phase stays");
	reconcile(&w);
	is_int(w.writes, 1, "and no more writes after it");
	world_free(&w);
}

/* A Queued task's message follows what it waits for: a stale one would name a wait that is over. */
static void test_waiting_message(void)
{
	struct world w;
	json_t *t;

	world_init(&w, "{\"spec\": {" SHELL "}}");
	w.dispatch_rc = -ENODEV;
	reconcile(&w);
	t = informer_get(w.inf, "ns/t");
	is_str(task_message(t), "waiting for a runner that matches runnerSelector",
	       "no matching runner: says so");
	json_decref(t);
	w.dispatch_rc = -EAGAIN;
	w.writes = 0;
	reconcile(&w);
	t = informer_get(w.inf, "ns/t");
	is_str(task_message(t), "waiting for a free runner slot",
	       "a matching runner, busy: the message follows");
	json_decref(t);
	is_int(w.writes, 1, "with one write");
	reconcile(&w);
	is_int(w.writes, 1, "and none while the wait stays the same");
	world_free(&w);
}

int main(void)
{
	test_success();
	test_failure_retry();
	test_cancel();
	test_timeout();
	test_runner_lost();
	test_waiting_and_refused();
	test_deleted();
	test_conditions();
	test_observed_generation();
	test_waiting_message();
	return done_testing();
}
