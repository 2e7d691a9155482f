#include "taskctl.h"
#include "cel.h"
#include "deps.h"
#include "log.h"
#include "mask.h"
#include "queues.h"
#include "resources.h"
#include "proto.h"
#include "sat.h"
#include "util.h"
#include "utf8.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TASKCTL_HISTORY_MAX 10
#define TASKCTL_OUTPUT_MAX (32 * 1024)
#define TASKCTL_DEADLINE_GRACE_MS 10000  /* runner's own timeout gets this long to report */
#define TASKCTL_CANCEL_GRACE_MS 5000     /* a cancel waits this long for the runner's result */
#define TASKCTL_MAX_LOST 5               /* re-dispatches after runner loss before giving up */
#define TASKCTL_ORPHANS_KEY "!orphans"   /* not a valid namespace/name, so never a task key */
#define TASKCTL_QUEUE_SECRET_LABEL "tasked.dev/queue-secret"
#define TASKCTL_MAX_BACKOFF_MS (INT64_C(86400) * 1000)  /* retries wait at most a day (CRD maximum) */
#define TASKCTL_MAX_TIMER_MS (INT64_C(3600) * 1000)     /* far timers re-check hourly */

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
	int64_t deadline_ms;    /* wall clock; 0 = none */
	int64_t cancel_sent_ms; /* monotonic; 0 = not sent */
	json_t *result;         /* the runner's result message, once done */
	json_t *history;        /* attemptHistory before this attempt, when the controller changed it */
	json_t *secrets;        /* queue secret values sent with this attempt, to mask in status */
};

struct taskctl {
	struct taskctl_cfg cfg;
	struct informer *inf;
	struct broker *broker;
	pthread_mutex_t lock;   /* guards attempts and waiting */
	struct attempt *attempts;
	json_t *waiting;        /* keys queued for a free runner slot */
	json_t *standby;        /* keys seen while not leading */
	json_t *orphans;        /* uid -> {attempt, runner} held by runners, task not (yet) known */
	int64_t started_ms, started_wall_ms;
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
	t->standby = json_object();
	t->orphans = json_object();
	t->started_ms = util_mono_ms();
	t->started_wall_ms = util_now_ms();
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
		json_decref(a->secrets);
		free(a);
	}
	json_decref(t->waiting);
	json_decref(t->standby);
	json_decref(t->orphans);
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
			json_decref(a->secrets);
			free(a);
			return;
		}
	}
}

/* --- informer and broker callbacks (other threads; record and queue only) ----------------- */

static void wake_key(const char *key, void *ud)
{
	struct taskctl *t = ud;
	wq_add(t->cfg.queue, key);
}

void taskctl_on_event(enum informer_event ev, const char *key, json_t *obj, void *ud)
{
	struct taskctl *t = ud;
	const char *phase = json_string_value(json_object_get(json_object_get(obj, "status"), "phase"));

	wq_add(t->cfg.queue, key);
	if (ev == INFORMER_RESYNC)
		return;
	if (t->cfg.deps) {
		deps_index_update(t->cfg.deps, key, ev == INFORMER_DELETED ? NULL : obj);
		/* A task that finished (or vanished) may unblock the tasks that wait for it; one
		 * that appeared changes what they wait for (and may close a cycle). */
		if (ev == INFORMER_DELETED || ev == INFORMER_ADDED || is_terminal(phase))
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

/* Whether the cached status shows this attempt finished (later attempt, terminal, or retrying). */
static int taskctl_attempt_settled(struct taskctl *t, const char *key, int64_t attempt)
{
	json_t *task = informer_get(t->inf, key), *st = json_object_get(task, "status");
	const char *phase = json_string_value(json_object_get(st, "phase"));
	int64_t n = json_integer_value(json_object_get(st, "attempts"));
	int settled = n > attempt || (n == attempt && phase && strcmp(phase, "Running") != 0) ||
		      is_terminal(phase);
	json_decref(task);
	return settled;
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
		/* A result from before a controller restart: find the task by UID, unless its
		 * status already records this attempt as settled (a duplicate). */
		pthread_mutex_unlock(&t->lock);
		k = taskctl_key_for(t, uid);
		if (k && taskctl_attempt_settled(t, k, attempt)) {
			free(k);
			k = NULL;
		}
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
	} else if (!a || a->attempt != attempt || a->written == W_TERMINAL) {
		stale = 1;   /* superseded, or already settled by the controller (cancel, timeout) */
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

/* A runner's word alone does not make an attempt its own: this controller's record, or else the
 * Task's status, must show that attempt on that runner. */
static int cb_held(void *ud, const char *uid, int64_t attempt, const char *runner)
{
	struct taskctl *t = ud;
	struct attempt *a;
	char *k = taskctl_key_for(t, uid);
	json_t *task = k ? informer_get(t->inf, k) : NULL, *st = json_object_get(task, "status");
	const char *shown_on = json_string_value(json_object_get(st, "runner"));
	int shown = shown_on && strcmp(shown_on, runner) == 0 &&
		    json_integer_value(json_object_get(st, "attempts")) == attempt, mine = 0;

	json_decref(task);
	pthread_mutex_lock(&t->lock);
	a = att_find(t, uid);
	if (a) {
		mine = a->attempt == attempt && strcmp(a->runner, runner) == 0;
	} else if (k && shown) {
		a = att_new(t, uid, k, attempt, runner);
		if (a)
			a->state = ATT_STARTED;
		mine = a != NULL;
	} else if (!k) {
		/* No such task in the cache: deleted while no controller was watching, or the
		 * cache is not synced yet. Decided in reconcile_orphans. */
		json_object_set_new(t->orphans, uid, json_pack("{sIss}", "attempt", (json_int_t)attempt, "runner", runner));
	}
	pthread_mutex_unlock(&t->lock);
	wq_add(t->cfg.queue, k ? k : TASKCTL_ORPHANS_KEY);
	free(k);
	return mine;
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
	return u8_tail(s, max);
}

static json_t *spec_of(json_t *task) { return json_object_get(task, "spec"); }

/* Depth-first search for a string with a NUL; path accumulates the JSON path. The recursion is
 * bounded by the parser's depth limit (2048). */
static int nul_find(json_t *j, char *path, size_t len, size_t pathsz)
{
	const char *k;
	json_t *v;
	size_t i;

	if (json_is_string(j))
		return strlen(json_string_value(j)) != json_string_length(j);
	if (json_is_object(j)) {
		json_object_foreach(j, k, v) {
			if (len == 4 && strcmp(k, "input") == 0)   /* spec.input: passed on as JSON */
				continue;
			snprintf(path + len, pathsz - len, ".%s", k);
			if (nul_find(v, path, strnlen(path, pathsz), pathsz))
				return 1;
		}
	} else if (json_is_array(j)) {
		json_array_foreach(j, i, v) {
			snprintf(path + len, pathsz - len, "[%zu]", i);
			if (nul_find(v, path, strnlen(path, pathsz), pathsz))
				return 1;
		}
	}
	path[len] = '\0';
	return 0;
}

int taskctl_check_nul(json_t *spec, char *err, size_t errsz)
{
	char path[256] = "spec";
	if (!nul_find(spec, path, strlen(path), sizeof(path)))
		return 0;
	snprintf(err, errsz, "%s contains a NUL byte (\\u0000), which a command, environment variable, "
		 "header or URL cannot carry", path);
	return -EINVAL;
}

json_t *taskctl_build_dispatch(json_t *task, int64_t attempt, int64_t now_ms, char *err, size_t errsz)
{
	json_t *md = json_object_get(task, "metadata"), *spec = spec_of(task), *shell, *env, *e;
	json_t *msg, *outenv, *exec_obj = NULL;
	const char *kinds[] = { "shell", "http", "remote" }, *kind = NULL;
	json_int_t timeout;
	size_t i;

	if (taskctl_check_nul(spec, err, errsz) < 0)
		return NULL;

	if (json_object_get(spec, "container")) {
		snprintf(err, errsz, "the container executor is not supported by this controller version");
		return NULL;
	}
	for (i = 0; i < UTIL_ARRAY_SIZE(kinds); i++) {
		if (!json_object_get(spec, kinds[i]))
			continue;
		if (kind) {
			snprintf(err, errsz, "exactly one of spec.shell, spec.http and spec.remote must be set");
			return NULL;
		}
		kind = kinds[i];
	}
	shell = json_object_get(spec, "shell");
	if (!kind || strcmp(kind, "shell") == 0) {
		if (!json_is_object(shell) || !json_is_array(json_object_get(shell, "command")) ||
		    json_array_size(json_object_get(shell, "command")) == 0) {
			snprintf(err, errsz, "spec.shell.command must be a non-empty list");
			return NULL;
		}
		exec_obj = json_incref(shell);
	} else {
		/* http and remote: the dispatch carries the spec's fields (docs/protocol.md); header
		 * values and the oauth2 client secret from queue secrets are added by apply_queue. */
		json_t *src = json_object_get(spec, kind), *hdrs = json_array(), *h, *v;
		static const char *const http_fields[] = { "method", "body", "successCodes", "followRedirects",
							   "maxRedirects", "maxResponseBytes", "timeoutSeconds" };
		const char *u = json_string_value(json_object_get(src, "url"));

		if (!json_is_object(src) || !u || !*u || strlen(u) > PROTO_MAX_URL) {
			snprintf(err, errsz, "spec.%s.url is required (at most %d bytes)", kind, PROTO_MAX_URL);
			json_decref(hdrs);
			return NULL;
		}
		exec_obj = json_pack("{ss}", "url", u);
		json_array_foreach(json_object_get(src, "headers"), i, h) {
			const char *hn = json_string_value(json_object_get(h, "name"));
			if (!hn) {
				snprintf(err, errsz, "spec.%s.headers[%zu]: name is required", kind, i);
				json_decref(hdrs);
				json_decref(exec_obj);
				return NULL;
			}
			if (json_object_get(h, "valueFrom"))
				continue;   /* a queue secret: resolved at dispatch (apply_queue) */
			v = json_object_get(h, "value");
			if (json_is_string(v) && (strpbrk(json_string_value(v), "\r\n") ||
						  json_string_length(v) > PROTO_MAX_HEADER_VALUE)) {
				snprintf(err, errsz, "spec.%s.headers[%zu] (%s): the value must be at most %d bytes "
					 "without CR or LF", kind, i, hn, PROTO_MAX_HEADER_VALUE);
				json_decref(hdrs);
				json_decref(exec_obj);
				return NULL;
			}
			json_array_append_new(hdrs, json_pack("{ssss}", "name", hn, "value",
							      json_is_string(v) ? json_string_value(v) : ""));
		}
		if (json_array_size(hdrs) > 0)
			json_object_set(exec_obj, "headers", hdrs);
		json_decref(hdrs);
		if (strcmp(kind, "http") == 0) {
			json_t *o = json_object_get(src, "oauth2");
			for (i = 0; i < UTIL_ARRAY_SIZE(http_fields); i++)
				if ((v = json_object_get(src, http_fields[i])))
					json_object_set(exec_obj, http_fields[i], v);
			/* What the runner's decoder would refuse must be refused here, as InvalidSpec. */
			if (json_integer_value(json_object_get(src, "timeoutSeconds")) > INT32_MAX ||
			    json_integer_value(json_object_get(src, "maxResponseBytes")) > (INT64_C(1) << 40) ||
			    json_string_length(json_object_get(src, "body")) > PROTO_MAX_MESSAGE_DEFAULT / 2) {
				snprintf(err, errsz, "spec.http: body, timeoutSeconds or maxResponseBytes out of range");
				json_decref(exec_obj);
				return NULL;
			}
			json_array_foreach(json_object_get(o, "scopes"), i, v) {
				const unsigned char *sc = (const unsigned char *)json_string_value(v);
				int bad = !sc || !*sc;
				for (; sc && *sc; sc++)
					bad |= *sc <= 0x20 || *sc >= 0x7f || *sc == '"' || *sc == '\\';
				if (bad) {
					snprintf(err, errsz, "spec.http.oauth2.scopes[%zu] is not an OAuth2 scope token", i);
					json_decref(exec_obj);
					return NULL;
				}
			}
			if (o) {
				v = json_pack("{ss}", "tokenURL", json_string_value(json_object_get(o, "tokenURL")) ?
						  json_string_value(json_object_get(o, "tokenURL")) : "");
				if (json_is_string(json_object_get(o, "clientID")))
					json_object_set(v, "clientID", json_object_get(o, "clientID"));
				if (json_is_array(json_object_get(o, "scopes")))
					json_object_set(v, "scopes", json_object_get(o, "scopes"));
				json_object_set_new(exec_obj, "oauth2", v);
			}
		}
	}
	outenv = json_array();
	env = json_object_get(spec, "env");
	json_array_foreach(env, i, e) {
		const char *name = json_string_value(json_object_get(e, "name"));
		json_t *val = json_object_get(e, "value");
		if (!name) {
			snprintf(err, errsz, "spec.env[%zu].name is required", i);
			json_decref(outenv);
			json_decref(exec_obj);
			return NULL;
		}
		if (json_object_get(e, "valueFrom"))
			continue;   /* queue secrets are resolved at dispatch (apply_queue) */
		json_array_append_new(outenv, json_pack("{ssss}", "name", name, "value",
							json_is_string(val) ? json_string_value(val) : ""));
	}
	timeout = json_integer_value(json_object_get(spec, "timeoutSeconds"));
	msg = json_pack("{sssssIssss sI so so}",
			"type", "dispatch",
			"taskUid", json_string_value(json_object_get(md, "uid")),
			"attempt", (json_int_t)attempt,
			"namespace", json_string_value(json_object_get(md, "namespace")),
			"name", json_string_value(json_object_get(md, "name")),
			"deadline", (json_int_t)(timeout > 0 ? sat_after_s(now_ms, timeout) : 0),
			kind ? kind : "shell", exec_obj,
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
	if (!h)
		return NULL;
	json_array_foreach(old, i, e)
		if (json_integer_value(json_object_get(e, "attempt")) != at && json_array_append(h, e) < 0)
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
	json_t *exit_code = json_object_get(result, "exitCode"), *output = json_object_get(result, "output");
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
	/* Every field or none: a status missing a field after an allocation failure would be
	 * written as if complete (tests/unit/test_allocfail.c). */
	bad |= json_object_set_new(status, "logTail", json_string(taskctl_utf8_tail(tail ? tail : "", (size_t)log_tail_max))) < 0;
	bad |= json_object_set_new(status, "outputTruncated", json_boolean(json_is_true(json_object_get(result, "truncated")))) < 0;
	if (json_is_integer(exit_code) && json_integer_value(exit_code) >= 0)
		bad |= json_object_set(status, "exitCode", exit_code) < 0;
	if (json_is_integer(json_object_get(result, "httpStatus")))
		bad |= json_object_set(status, "httpStatus", json_object_get(result, "httpStatus")) < 0;
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
		bad |= json_object_set(entry, "httpStatus", json_object_get(result, "httpStatus")) < 0;
	if (entry)
		bad |= json_object_set_new(status, "attemptHistory",
					   history_with(history ? history : json_object_get(json_object_get(task, "status"), "attemptHistory"), entry)) < 0;
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
	if (r == 0) {   /* nothing matched: the caller keeps s */
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
			json_object_set_new(status, fields[i], json_string("[withheld: could not mask queue secrets]"));
		}
		free(m);
	}
	if (json_object_get(status, "output")) {
		char *out = json_dumps(json_object_get(status, "output"), JSON_COMPACT | JSON_ENCODE_ANY);
		char *m = NULL;
		int r = out ? taskctl_mask_string(out, secrets, &m) : -ENOMEM;
		if (r < 0 || m) {   /* a secret inside the output (or no way to tell): keep it out, say why */
			json_object_del(status, "output");
			json_object_set_new(status, "output", json_pack("{ss}", "masked", r < 0 ? "output could not be checked for queue secrets"
										   : "output contained a queue secret"));
		}
		free(m);
		free(out);
	}
}

/* --- status writes ---------------------------------------------------------------------- */

/* Merge-patches the status subresource. Returns 0, -ENOENT when the task is gone, -EAGAIN to
 * retry (conflict, throttling, server errors). The response goes into the cache at once so the
 * next pass does not act on a stale copy. */
static int taskctl_patch_status(struct taskctl *t, json_t *task, json_t *patch)
{
	struct kube_resp resp;
	int r = kube_patch_status(t->cfg.kc, KUBE_GV_TASKED, "tasks", task, patch, &resp);

	if (r == 0 && t->inf && json_is_object(resp.body))
		informer_mutate(t->inf, resp.body);
	kube_resp_free(&resp);
	if (r == 0 && t->cfg.on_status)
		t->cfg.on_status(t->cfg.observer_ud, task, json_object_get(patch, "status"));
	return r;
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
	if (strcmp(cond_status, "Unknown") != 0 && !json_object_get(status, "completionTime")) {
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

static void emit(struct taskctl *t, json_t *task, const char *type, const char *reason, const char *note)
{
	if (t->cfg.recorder)
		recorder_emit(t->cfg.recorder, task, type, reason, reason, note);
}

/* Updates the live record for uid (if it still is the same attempt). */
static void att_mark_written(struct taskctl *t, const char *uid, int64_t attempt, enum att_written w)
{
	struct attempt *a;
	pthread_mutex_lock(&t->lock);
	a = att_find(t, uid);
	if (a && a->attempt == attempt && a->written < w)
		a->written = w;
	pthread_mutex_unlock(&t->lock);
}

static int64_t json_int_at(json_t *o, const char *k1, const char *k2)
{
	json_t *v = json_object_get(o, k1);
	return json_integer_value(k2 ? json_object_get(v, k2) : v);
}

/* Failures that count against retries.limit: every recorded attempt except runner losses. */
static int count_failures(json_t *history)
{
	json_t *e;
	size_t i;
	int n = 0;
	json_array_foreach(history, i, e) {
		const char *reason = json_string_value(json_object_get(e, "reason"));
		if (!reason || (strcmp(reason, "RunnerLost") != 0 && strcmp(reason, "Succeeded") != 0))
			n++;
	}
	return n;
}

static int count_lost(json_t *history)
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
				 ? json_number_value(json_object_get(b, "initialDelaySeconds")) : 1.0;
	double maxd = json_is_number(json_object_get(b, "maxDelaySeconds"))
			      ? json_number_value(json_object_get(b, "maxDelaySeconds")) : 300.0;
	double factor = json_is_number(json_object_get(b, "factor")) ? json_number_value(json_object_get(b, "factor")) : 2.0;
	double d = initial;

	if (factor < 1.0)
		factor = 1.0;
	for (int i = 1; i < failures && d < maxd; i++)
		d *= factor;
	if (d > maxd)
		d = maxd;
	if (!j || json_is_true(j))   /* jitter (default on): "equal jitter", half fixed, half random */
		d = d / 2 + d / 2 * (double)(rnd % 1001) / 1000.0;
	/* The CRD caps the delays at a day; an older CRD or a huge factor must not overflow. */
	return sat_ms_of_seconds(d, TASKCTL_MAX_BACKOFF_MS);
}

int taskctl_should_retry(json_t *spec, json_t *result, int failures)
{
	json_t *retries = json_object_get(spec, "retries"), *codes = json_object_get(retries, "onExitCodes"), *c;
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
		if (json_is_integer(exit_code) && json_integer_value(c) == json_integer_value(exit_code))
			return 1;
	return 0;
}

/* The attempt finished: write the terminal status, or a Retrying status and a timer. */
static int reconcile_finished(struct taskctl *t, json_t *task, const char *key, const char *uid,
			      struct attempt *snap)
{
	json_t *spec = spec_of(task), *patch, *st, *hist;
	const char *phase, *reason;
	int failures, r;
	int64_t limit = json_int_at(spec, "retries", "limit");

	patch = taskctl_terminal_status(task, snap->result, snap->attempt, snap->runner, snap->history,
					util_now_ms(), t->cfg.log_tail_max);
	if (!patch)
		return -ENOMEM;
	st = json_object_get(patch, "status");
	taskctl_mask(st, snap->secrets);
	hist = json_object_get(st, "attemptHistory");
	failures = count_failures(hist);
	phase = json_string_value(json_object_get(st, "phase"));
	reason = json_string_value(json_object_get(st, "reason"));
	if (taskctl_should_retry(spec, snap->result, failures)) {
		unsigned rnd;
		int64_t delay;
		char ts[40], msg[512];
		util_random(&rnd, sizeof(rnd));
		delay = taskctl_retry_delay_ms(json_object_get(spec, "retries"), failures, rnd);
		util_rfc3339(util_now_ms() + delay, ts, sizeof(ts));
		snprintf(msg, sizeof(msg), "attempt %lld failed (%s: %s); retry %d of %lld at %s",
			 (long long)snap->attempt, reason, json_string_value(json_object_get(st, "message")),
			 failures, (long long)limit, ts);
		/* Retrying: the attempt's facts stay visible, the phase says it will run again. */
		json_object_set_new(st, "phase", json_string("Queued"));
		json_object_set_new(st, "reason", json_string("Retrying"));
		json_object_set_new(st, "message", json_string(msg));
		json_object_set_new(st, "nextRetryTime", json_string(ts));
		json_object_set_new(st, "conditions", succeeded_condition(task, "Unknown", "Retrying", msg, util_now_ms()));
		json_object_del(st, "completionTime");
		r = taskctl_patch_status(t, task, patch);
		if (r == 0) {
			log_task("attempt failed; retrying", task, "at", ts);
			emit(t, task, "Warning", "Retrying", msg);
			/* The attempt is settled; the next pass (after the delay) starts a new one
			 * from the status just written. */
			pthread_mutex_lock(&t->lock);
			struct attempt *a = att_find(t, uid);
			if (a && a->attempt == snap->attempt)
				att_drop(t, uid);
			pthread_mutex_unlock(&t->lock);
			broker_ack(t->broker, snap->runner, uid, snap->attempt);
			wq_add_after(t->cfg.queue, key, delay);
		}
		json_decref(patch);
		return r;
	}
	if (limit > 0 && strcmp(phase, "Failed") == 0 && failures > limit &&
	    strcmp(reason, "Cancelled") != 0 && strcmp(reason, "InvalidSpec") != 0) {
		char msg[512];
		snprintf(msg, sizeof(msg), "%lld attempts failed; the last: %s", (long long)failures,
			 json_string_value(json_object_get(st, "message")));
		json_object_set_new(st, "reason", json_string("RetriesExhausted"));
		json_object_set_new(st, "message", json_string(msg));
		json_object_set_new(st, "conditions", succeeded_condition(task, "False", "RetriesExhausted", msg, util_now_ms()));
	}
	r = taskctl_patch_status(t, task, patch);
	if (r == 0) {
		phase = json_string_value(json_object_get(st, "phase"));
		log_task("task finished", task, "phase", phase);
		emit(t, task, strcmp(phase, "Succeeded") == 0 ? "Normal" : "Warning", phase,
		     json_string_value(json_object_get(st, "message")));
		att_mark_written(t, uid, snap->attempt, W_TERMINAL);
		broker_ack(t->broker, snap->runner, uid, snap->attempt);
	}
	json_decref(patch);
	return r;
}

static int reconcile_attempt(struct taskctl *t, json_t *task, const char *key, const char *uid,
			     struct attempt *snap)
{
	json_t *status = json_object_get(task, "status");
	const char *phase = json_string_value(json_object_get(status, "phase"));
	int64_t now = util_now_ms();
	int r;

	if (snap->state == ATT_DONE)
		return snap->written == W_TERMINAL ? 0 : reconcile_finished(t, task, key, uid, snap);
	/* Backstop for the runner's own timeout: if no result arrives well after the deadline,
	 * stop the attempt and fail it here. */
	if (snap->deadline_ms && now > sat_add(snap->deadline_ms, TASKCTL_DEADLINE_GRACE_MS)) {
		json_t *res = json_pack("{sssssssi}", "phase", "Failed", "reason", "TimedOut", "message",
					"exceeded timeoutSeconds and the runner did not report in time", "exitCode", -1);
		struct attempt *a;
		if (snap->runner[0])
			broker_cancel(t->broker, snap->runner, uid, snap->attempt);
		pthread_mutex_lock(&t->lock);
		a = att_find(t, uid);
		if (a && a->attempt == snap->attempt && a->state != ATT_DONE) {
			a->state = ATT_DONE;
			json_decref(a->result);
			a->result = json_incref(res);
		}
		pthread_mutex_unlock(&t->lock);
		snap->state = ATT_DONE;
		json_decref(snap->result);
		snap->result = res;
		log_task("attempt timed out without a result from its runner", task, "runner", snap->runner);
		return reconcile_finished(t, task, key, uid, snap);
	}
	if (snap->deadline_ms)
		wq_add_after(t->cfg.queue, key,
			     sat_delay(sat_add(snap->deadline_ms, TASKCTL_DEADLINE_GRACE_MS + 10), now, TASKCTL_MAX_TIMER_MS));
	if (snap->state == ATT_STARTED && snap->written == W_NONE &&
	    !(phase && strcmp(phase, "Running") == 0 &&
	      json_integer_value(json_object_get(status, "attempts")) == snap->attempt)) {
		char ts[40], msg[160];
		json_t *extra;
		util_rfc3339(snap->start_ms ? snap->start_ms : now, ts, sizeof(ts));
		snprintf(msg, sizeof(msg), "running on %s", snap->runner);
		extra = json_pack("{sssssIsn}", "startTime", ts, "runner", snap->runner,
				  "attempts", (json_int_t)snap->attempt, "nextRetryTime");
		if (snap->history)
			json_object_set(extra, "attemptHistory", snap->history);
		r = taskctl_write_simple(t, task, "Running", "Running", msg, "Unknown", extra);
		json_decref(extra);
		if (r == 0) {
			att_mark_written(t, uid, snap->attempt, W_RUNNING);
			emit(t, task, "Normal", "Started", msg);
		}
		return r;
	}
	return 0;
}

/* --- queues, dependencies, conditions ------------------------------------------------------- */

static const char *executor_of(json_t *spec)
{
	static const char *const kinds[] = { "shell", "http", "remote", "container" };
	for (size_t i = 0; i < UTIL_ARRAY_SIZE(kinds); i++)
		if (json_object_get(spec, kinds[i]))
			return kinds[i];
	return "none";
}

/* Writes a waiting phase (Pending or Queued) once; later passes with the same reason and message
 * cost nothing. */
static int write_waiting(struct taskctl *t, json_t *task, const char *phase, const char *reason, const char *msg)
{
	json_t *st = json_object_get(task, "status");
	const char *p = json_string_value(json_object_get(st, "phase"));
	const char *m = json_string_value(json_object_get(st, "message"));
	int r;
	if (p && strcmp(p, phase) == 0 && m && strcmp(m, msg) == 0)
		return 0;
	r = taskctl_write_simple(t, task, phase, reason, msg, "Unknown", NULL);
	if (r == 0 && strcmp(phase, "Queued") == 0)
		emit(t, task, "Normal", "Queued", msg);
	return r;
}

static void cel_limits_of(json_t *queue, struct cel_limits *l)
{
	json_t *c = json_object_get(json_object_get(json_object_get(queue, "spec"), "policy"), "conditions");
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
	json_t *spec = spec_of(task), *queue = NULL, *vars = NULL, *allowed, *e;
	const char *exec = executor_of(spec), *when = json_string_value(json_object_get(spec, "when"));
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
			snprintf(msg, sizeof(msg), "TaskQueue %s does not exist; the task starts when it is created",
				 strchr(qkey, '/') + 1);
			return write_waiting(t, task, "Pending", "QueueNotFound", msg);
		}
	}
	/* Executors: the queue's allow-list, else shell and http. */
	allowed = json_object_get(json_object_get(json_object_get(queue, "spec"), "policy"), "executors");
	ok = 0;
	if (json_is_array(allowed)) {
		json_array_foreach(allowed, i, e)
			ok |= json_is_string(e) && strcmp(json_string_value(e), exec) == 0;
	} else {
		ok = strcmp(exec, "shell") == 0 || strcmp(exec, "http") == 0;
	}
	if (!ok) {
		snprintf(msg, sizeof(msg), "the %s executor is not allowed by TaskQueue %s (policy.executors)",
			 exec, strchr(qkey, '/') + 1);
		r = taskctl_write_simple(t, task, "Failed", "PolicyDenied", msg, "False", NULL);
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
			snprintf(msg, sizeof(msg), "dependency cycle: %s; these tasks wait for each other and never "
				 "start (change a dependsOn to break it)", cycle);
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
			r = taskctl_write_simple(t, task, "Failed", "ConditionError", msg, "False", NULL);
			if (r == 0)
				emit(t, task, "Warning", "Failed", msg);
			goto out;
		}
		if (!val) {
			r = taskctl_write_simple(t, task, "Skipped", "ConditionFalse", "when evaluated to false", "False", NULL);
			if (r == 0)
				emit(t, task, "Normal", "Skipped", "when evaluated to false");
			goto out;
		}
	} else if (ds == DEPS_FAILED) {
		r = taskctl_write_simple(t, task, "Failed", "DependencyFailed", why, "False", NULL);
		if (r == 0)
			emit(t, task, "Warning", "Failed", why);
		goto out;
	}
	if (t->cfg.queues && queue) {
		const char *ct = json_string_value(json_object_get(json_object_get(task, "metadata"), "creationTimestamp"));
		if (ct)
			util_parse_rfc3339(ct, &created);
		switch (queues_admit(t->cfg.queues, qkey, queue, key,
				     json_integer_value(json_object_get(spec, "priority")), created, &retry_ms)) {
		case QUEUE_ADMITTED:
			break;
		case QUEUE_RATE_LIMITED:
			wq_add_after(t->cfg.queue, key, retry_ms);
			snprintf(msg, sizeof(msg), "waiting for TaskQueue %s's rate limit", strchr(qkey, '/') + 1);
			r = write_waiting(t, task, "Queued", "RateLimited", msg);
			goto out;
		case QUEUE_NO_SLOT:
			snprintf(msg, sizeof(msg), "waiting for a slot in TaskQueue %s", strchr(qkey, '/') + 1);
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

/* Reads one key of a Kubernetes Secret. Never logs the value. -EPERM when the Secret was not
 * opted in for TaskQueues: the controller reads with its own rights, so without the label any
 * Task author could have any Secret of the namespace read for them. */
static int read_secret(struct taskctl *t, const char *ns, const char *name, const char *k, char **ret)
{
	char path[1024];
	struct kube_resp resp;
	const char *b64, *label;
	int r;

	if (!ns || !*ns || !name || !*name || kube_path(path, sizeof(path), "v1", "secrets", ns, name, NULL) < 0)
		return -ENOENT;
	r = kube_request(t->cfg.kc, "GET", path, NULL, NULL, &resp);
	if (r < 0 || resp.status != 200) {
		kube_resp_free(&resp);
		return r < 0 ? -EAGAIN : -ENOENT;
	}
	label = json_string_value(json_object_get(json_object_get(json_object_get(resp.body, "metadata"), "labels"),
						  TASKCTL_QUEUE_SECRET_LABEL));
	if (!label || strcmp(label, "true") != 0) {
		kube_resp_free(&resp);
		return -EPERM;
	}
	b64 = json_string_value(json_object_get(json_object_get(resp.body, "data"), k));
	r = b64 ? util_base64_decode(b64, ret, NULL) : -ENOENT;
	kube_resp_free(&resp);
	return r;
}

/* Resolves one queue secret by name for what (named in errors, never the value). */
static int queue_secret(struct taskctl *t, const char *ns, json_t *qspec, const char *sname, const char *what,
			char **ret, const char **reason, char *err, size_t errsz)
{
	json_t *decl = NULL, *d;
	size_t j;
	int r;

	json_array_foreach(json_object_get(qspec, "secrets"), j, d)
		if (json_is_string(json_object_get(d, "name")) && strcmp(json_string_value(json_object_get(d, "name")), sname) == 0)
			decl = d;
	if (!decl) {
		*reason = "SecretNotFound";
		snprintf(err, errsz, "%s: queue secret %s is not declared by the task's TaskQueue", what, sname);
		return -EINVAL;
	}
	r = read_secret(t, ns, json_string_value(json_object_get(json_object_get(decl, "secretKeyRef"), "name")),
			json_string_value(json_object_get(json_object_get(decl, "secretKeyRef"), "key")), ret);
	if (r == -EAGAIN)
		return r;
	if (r == -EPERM) {
		*reason = "SecretNotFound";
		snprintf(err, errsz, "%s: queue secret %s names Secret %s, which lacks the label %s: \"true\" "
			 "(only Secrets labelled so by someone who may write Secrets are usable by TaskQueues)",
			 what, sname, json_string_value(json_object_get(json_object_get(decl, "secretKeyRef"), "name")),
			 TASKCTL_QUEUE_SECRET_LABEL);
		return -EINVAL;
	}
	if (r < 0) {
		*reason = "SecretNotFound";
		snprintf(err, errsz, "%s: queue secret %s refers to a Secret key that does not exist", what, sname);
		return -EINVAL;
	}
	return 0;
}

/* Applies the queue (defaults, policy, selector) and queue secrets to a dispatch, and resolves
 * $(tasks.…) references. On a task error writes the reason into reason/err and returns -EINVAL;
 * -EAGAIN when the API server could not be asked. */
static int apply_queue(struct taskctl *t, json_t *task, json_t *msg, json_t *queue, json_t *vars,
		       const char **reason, char *err, size_t errsz)
{
	json_t *qspec = json_object_get(queue, "spec"), *env = json_object_get(spec_of(task), "env"), *e;
	json_t *defaults = json_object_get(qspec, "defaults"), *policy = json_object_get(qspec, "policy");
	const char *ns = json_string_value(json_object_get(json_object_get(task, "metadata"), "namespace"));
	size_t i;
	int r;

	if (!json_integer_value(json_object_get(msg, "deadline")) &&
	    json_integer_value(json_object_get(defaults, "timeoutSeconds")) > 0)
		json_object_set_new(msg, "deadline", json_integer(sat_after_s(util_now_ms(),
			json_integer_value(json_object_get(defaults, "timeoutSeconds")))));
	if (json_is_object(policy))
		json_object_set(msg, "policy", policy);
	if (json_integer_value(json_object_get(json_object_get(policy, "shell"), "maxOutputBytes")) > 0)
		json_object_set(json_object_get(msg, "limits"), "maxOutputBytes",
				json_object_get(json_object_get(policy, "shell"), "maxOutputBytes"));
	/* Memory and CPU: the task's, else the queue's or the built-in defaults, within the
	 * queue's maxima (resources.h). */
	{
		struct res_limits rl;
		int64_t to = json_integer_value(json_object_get(spec_of(task), "timeoutSeconds"));
		if (to <= 0)
			to = json_integer_value(json_object_get(defaults, "timeoutSeconds"));
		if ((r = res_decide(spec_of(task), qspec, json_string_value(json_object_get(json_object_get(queue,
				"metadata"), "name")), to > 0 ? to : 0, &rl, reason, err, errsz)) < 0)
			return r;
		if (res_to_limits(&rl, json_object_get(msg, "limits")) < 0)
			return -EAGAIN;
	}
	/* Queue secrets: only names the queue declares, read now, marked so the runner masks them
	 * (and strips them from what a remote executor is sent). */
	json_array_foreach(env, i, e) {
		const char *sname = json_string_value(json_object_get(json_object_get(e, "valueFrom"), "queueSecret"));
		const char *name = json_string_value(json_object_get(e, "name"));
		char *value = NULL, what[300];
		if (!sname)
			continue;
		snprintf(what, sizeof(what), "env %s", name);
		if ((r = queue_secret(t, ns, qspec, sname, what, &value, reason, err, errsz)) < 0)
			return r;
		json_array_append_new(json_object_get(msg, "env"), json_pack("{sssssb}", "name", name, "value", value, "secret", 1));
		OPENSSL_cleanse(value, strlen(value));
		free(value);
	}
	for (const char *const *kind = (const char *const[]){ "http", "remote", NULL }; *kind; kind++) {
		json_t *src = json_object_get(spec_of(task), *kind), *dst = json_object_get(msg, *kind), *h, *o;
		if (!json_is_object(src) || !json_is_object(dst))
			continue;
		json_array_foreach(json_object_get(src, "headers"), i, h) {
			const char *sname = json_string_value(json_object_get(json_object_get(h, "valueFrom"), "queueSecret"));
			const char *name = json_string_value(json_object_get(h, "name"));
			char *value = NULL, what[300];
			if (!sname || !name)
				continue;
			snprintf(what, sizeof(what), "spec.%s.headers %s", *kind, name);
			if ((r = queue_secret(t, ns, qspec, sname, what, &value, reason, err, errsz)) < 0)
				return r;
			if (!json_is_array(json_object_get(dst, "headers")))
				json_object_set_new(dst, "headers", json_array());
			json_array_append_new(json_object_get(dst, "headers"),
					      json_pack("{sssssb}", "name", name, "value", value, "secret", 1));
			OPENSSL_cleanse(value, strlen(value));
			free(value);
		}
		o = json_object_get(src, "oauth2");
		if (strcmp(*kind, "http") == 0 && json_is_object(json_object_get(o, "clientSecret"))) {
			const char *sname = json_string_value(json_object_get(json_object_get(o, "clientSecret"), "queueSecret"));
			char *value = NULL;
			if (!sname || (r = queue_secret(t, ns, qspec, sname, "spec.http.oauth2.clientSecret", &value,
							reason, err, errsz)) < 0) {
				if (!sname) {
					*reason = "InvalidSpec";
					snprintf(err, errsz, "spec.http.oauth2.clientSecret needs queueSecret");
					r = -EINVAL;
				}
				return r;
			}
			json_object_set_new(json_object_get(dst, "oauth2"), "clientSecret", json_string(value));
			OPENSSL_cleanse(value, strlen(value));
			free(value);
		}
	}
	if (deps_resolve_dispatch(msg, vars, err, errsz) < 0) {
		*reason = "InvalidSpec";
		return -EINVAL;
	}
	return 0;
}

static int reconcile_dispatch(struct taskctl *t, json_t *task, const char *key, const char *uid,
			      int64_t attempt, json_t *history, json_t *queue, json_t *vars)
{
	json_t *status = json_object_get(task, "status");
	const char *phase = json_string_value(json_object_get(status, "phase"));
	const char *sreason = json_string_value(json_object_get(status, "reason"));
	json_t *msg, *selector = json_object_get(spec_of(task), "runnerSelector");
	const char *reason = "InvalidSpec";
	char err[512], runner[64];
	int r;

	if (!json_is_object(selector) || json_object_size(selector) == 0)
		selector = json_object_get(json_object_get(queue, "spec"), "runnerSelector");
	msg = taskctl_build_dispatch(task, attempt, util_now_ms(), err, sizeof(err));
	if (msg && (r = apply_queue(t, task, msg, queue, vars, &reason, err, sizeof(err))) < 0) {
		json_decref(msg);
		if (r == -EAGAIN)
			return r;
		msg = NULL;
	}
	if (!msg) {
		log_task("task refused", task, "reason", err);
		r = taskctl_write_simple(t, task, "Failed", reason, err, "False", NULL);
		if (r == 0)
			emit(t, task, "Warning", "Failed", err);
		return r;
	}
	/* Record first, so a result racing the dispatch finds its attempt. */
	pthread_mutex_lock(&t->lock);
	att_drop(t, uid);
	struct attempt *a = att_new(t, uid, key, attempt, NULL);
	if (a) {
		json_t *e;
		size_t i;
		if (json_array_size(history) > 0)
			a->history = json_incref(history);
		a->deadline_ms = json_integer_value(json_object_get(msg, "deadline"));
		json_array_foreach(json_object_get(msg, "env"), i, e) {
			if (!json_is_true(json_object_get(e, "secret")))
				continue;
			if (!a->secrets)
				a->secrets = json_array();
			json_array_append(a->secrets, json_object_get(e, "value"));
		}
	}
	pthread_mutex_unlock(&t->lock);
	if (!a) {
		json_decref(msg);
		return -ENOMEM;
	}
	r = broker_dispatch(t->broker, uid, attempt, selector, msg, runner, sizeof(runner));
	if (r == 0) {
		pthread_mutex_lock(&t->lock);
		a = att_find(t, uid);
		if (a)
			snprintf(a->runner, sizeof(a->runner), "%s", runner);
		pthread_mutex_unlock(&t->lock);
		log_task("task dispatched", task, "runner", runner);
		if (json_integer_value(json_object_get(msg, "deadline")))
			wq_add_after(t->cfg.queue, key,
				     sat_delay(sat_add(json_integer_value(json_object_get(msg, "deadline")),
						       TASKCTL_DEADLINE_GRACE_MS + 10), util_now_ms(), TASKCTL_MAX_TIMER_MS));
		json_decref(msg);
		return 0;
	}
	if (r == -EMSGSIZE) {
		/* Too big for the runner protocol: it can never run, so say so instead of
		 * leaving it Queued (no runner would ever get it). */
		char *text = json_dumps(msg, JSON_COMPACT);
		size_t n = text ? strlen(text) : 0;
		free(text);
		json_decref(msg);
		pthread_mutex_lock(&t->lock);
		att_drop(t, uid);
		pthread_mutex_unlock(&t->lock);
		snprintf(err, sizeof(err), "the task's dispatch message is %zu bytes, over the %d-byte limit of the "
			 "runner protocol (command, env, input and headers together)", n, PROTO_MAX_MESSAGE_DEFAULT);
		log_task("task refused", task, "reason", err);
		r = taskctl_write_simple(t, task, "Failed", "InvalidSpec", err, "False", NULL);
		if (r == 0)
			emit(t, task, "Warning", "Failed", err);
		return r;
	}
	json_decref(msg);
	pthread_mutex_lock(&t->lock);
	att_drop(t, uid);
	json_object_set_new(t->waiting, key, json_true());
	pthread_mutex_unlock(&t->lock);
	if (r != -EAGAIN && r != -ENODEV)
		return r;
	if (phase && strcmp(phase, "Queued") == 0 && !(sreason && strcmp(sreason, "Retrying") == 0) &&
	    json_integer_value(json_object_get(status, "attempts")) == attempt - 1)
		return 0;
	/* Queued carries the attempt count and history, so an attempt lost before it was ever
	 * reported still advances the (task UID, attempt) key. */
	{
		const char *why = r == -ENODEV ? "waiting for a runner that matches runnerSelector"
					       : "waiting for a free runner slot";
		json_t *extra = json_pack("{sIsn}", "attempts", (json_int_t)(attempt - 1), "nextRetryTime");
		if (json_array_size(history) > 0)
			json_object_set(extra, "attemptHistory", history);
		r = taskctl_write_simple(t, task, "Queued", "Queued", why, "Unknown", extra);
		json_decref(extra);
		if (r == 0)
			emit(t, task, "Normal", "Queued", why);
		return r;
	}
}

/* The task is gone: stop whatever still runs for it. */
static void reconcile_deleted(struct taskctl *t, const char *key)
{
	struct attempt *a, snap = { 0 };
	int act = 0;   /* 1 cancel, 2 ack: sent after unlocking (the broker takes its own lock) */

	pthread_mutex_lock(&t->lock);
	for (a = t->attempts; a; a = a->next) {
		if (strcmp(a->key, key) != 0)
			continue;
		act = a->state != ATT_DONE && a->runner[0] ? 1 : a->state == ATT_DONE ? 2 : 0;
		snap = *a;
		att_drop(t, a->uid);
		break;
	}
	json_object_del(t->waiting, key);
	pthread_mutex_unlock(&t->lock);
	if (act == 1) {
		log_info("task deleted; cancelling its attempt", "task", key, "runner", snap.runner);
		broker_cancel(t->broker, snap.runner, snap.uid, snap.attempt);
	} else if (act == 2) {
		broker_ack(t->broker, snap.runner, snap.uid, snap.attempt);
	}
}

/* ttlSecondsAfterFinished: delete on time (with a UID precondition). */
static int reconcile_ttl(struct taskctl *t, json_t *task, const char *key)
{
	json_t *ttl = json_object_get(spec_of(task), "ttlSecondsAfterFinished"), *md = json_object_get(task, "metadata");
	const char *done = json_string_value(json_object_get(json_object_get(task, "status"), "completionTime"));
	int64_t done_ms, due, now = util_now_ms();
	char path[1024];
	struct kube_resp resp;
	json_t *body;
	int r;

	if (!json_is_integer(ttl) || !done || util_parse_rfc3339(done, &done_ms) < 0 ||
	    json_object_get(md, "deletionTimestamp"))
		return 0;
	due = sat_add(done_ms, sat_mul(json_integer_value(ttl), 1000));
	if (now < due) {
		wq_add_after(t->cfg.queue, key, sat_delay(due, now, TASKCTL_MAX_TIMER_MS));
		return 0;
	}
	if (kube_path(path, sizeof(path), KUBE_GV_TASKED, "tasks", json_string_value(json_object_get(md, "namespace")),
		      json_string_value(json_object_get(md, "name")), NULL) < 0)
		return 0;
	body = json_pack("{sssss{sO}ss}", "kind", "DeleteOptions", "apiVersion", "v1", "preconditions",
			 "uid", json_object_get(md, "uid"), "propagationPolicy", "Background");
	r = kube_request(t->cfg.kc, "DELETE", path, NULL, body, &resp);
	json_decref(body);
	if (r == 0 && (resp.status < 300 || resp.status == 404 || resp.status == 409)) {
		log_task("deleted after ttlSecondsAfterFinished", task, "ttl", "expired");
		kube_resp_free(&resp);
		return 0;
	}
	log_warn("ttl delete failed", "task", key, "error", resp.message);
	kube_resp_free(&resp);
	return -EAGAIN;
}

static int reconcile_cancel(struct taskctl *t, json_t *task, const char *uid, struct attempt *snap, int have)
{
	if (have && (snap->state == ATT_DISPATCHED || snap->state == ATT_STARTED)) {
		int64_t now = util_mono_ms();
		pthread_mutex_lock(&t->lock);
		struct attempt *a = att_find(t, uid);
		int send = a && !a->cancel_sent_ms;
		if (send)
			a->cancel_sent_ms = now;
		int64_t sent = a ? a->cancel_sent_ms : now;
		pthread_mutex_unlock(&t->lock);
		if (send) {
			log_task("cancelling", task, "runner", snap->runner);
			broker_cancel(t->broker, snap->runner, uid, snap->attempt);
		}
		if (now - sent < TASKCTL_CANCEL_GRACE_MS) {
			wq_add_after(t->cfg.queue, snap->key, TASKCTL_CANCEL_GRACE_MS - (now - sent) + 10);
			return 0;
		}
		/* The runner did not confirm in time (gone, or partitioned): record the cancel
		 * ourselves; a late result is acknowledged and ignored. */
	}
	{
		json_t *extra = json_pack("{sI}", "attempts", (json_int_t)(have ? snap->attempt : json_int_at(json_object_get(task, "status"), "attempts", NULL)));
		int r = taskctl_write_simple(t, task, "Cancelled", "Cancelled",
					     have ? "cancelled; the runner did not confirm" : "cancelled before it started",
					     "False", extra);
		json_decref(extra);
		if (r == 0) {
			emit(t, task, "Normal", "Cancelled", "cancelled by spec.cancel");
			if (have)
				att_mark_written(t, uid, snap->attempt, W_TERMINAL);
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
		wq_add_after(t->cfg.queue, TASKCTL_ORPHANS_KEY, 500);
		return 0;
	}
	pthread_mutex_lock(&t->lock);
	o = t->orphans;
	t->orphans = json_object();
	pthread_mutex_unlock(&t->lock);
	json_object_foreach(o, uid, v) {
		char *k = informer_key_by_uid(t->inf, uid);
		const char *runner = json_string_value(json_object_get(v, "runner"));
		int64_t attempt = json_integer_value(json_object_get(v, "attempt"));
		if (k) {
			(void)cb_held(t, uid, attempt, runner);
		} else {
			log_info("runner holds an attempt of a deleted task; cancelling it", "uid", uid, "runner", runner);
			broker_cancel(t->broker, runner, uid, attempt);
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
	const char *phase = json_string_value(json_object_get(json_object_get(task, "status"), "phase"));
	struct attempt *a;
	char qkey[512];
	int holds;

	pthread_mutex_lock(&t->lock);
	a = uid ? att_find(t, uid) : NULL;
	holds = a ? (a->state == ATT_DISPATCHED || a->state == ATT_STARTED) && a->written != W_TERMINAL
		  : phase && strcmp(phase, "Running") == 0;
	pthread_mutex_unlock(&t->lock);
	queues_key_of(task, qkey, sizeof(qkey));
	queues_set_holder(t->cfg.queues, qkey, key, holds);
}

int taskctl_reconcile(struct taskctl *t, const char *key)
{
	json_t *task = informer_get(t->inf, key), *status, *spec;
	const char *uid, *phase, *reason;
	struct attempt snap, *a;
	int have = 0, r = 0;
	int64_t attempts;

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
	uid = json_string_value(json_object_get(json_object_get(task, "metadata"), "uid"));
	status = json_object_get(task, "status");
	spec = spec_of(task);
	phase = json_string_value(json_object_get(status, "phase"));
	reason = json_string_value(json_object_get(status, "reason"));
	attempts = json_integer_value(json_object_get(status, "attempts"));
	if (!uid)
		goto out;
	memset(&snap, 0, sizeof(snap));
	pthread_mutex_lock(&t->lock);
	a = att_find(t, uid);
	if (a) {
		snap = *a;
		snap.result = json_incref(a->result);
		snap.history = json_incref(a->history);
		snap.secrets = json_incref(a->secrets);
		have = 1;
	}
	if (is_terminal(phase) && (!a || a->written == W_TERMINAL || a->state != ATT_DONE)) {
		/* The API server has the final word; nothing more to do for this task. The ack or
		 * cancel goes out after unlocking (the broker takes its own lock). */
		int act = a && a->state == ATT_DONE ? 2 : a && a->runner[0] ? 1 : 0;
		att_drop(t, uid);
		json_object_del(t->waiting, key);
		pthread_mutex_unlock(&t->lock);
		if (act == 2)
			broker_ack(t->broker, snap.runner, snap.uid, snap.attempt);
		else if (act == 1)
			broker_cancel(t->broker, snap.runner, snap.uid, snap.attempt);
		r = reconcile_ttl(t, task, key);
		goto out;
	}
	pthread_mutex_unlock(&t->lock);

	if (json_is_true(json_object_get(spec, "cancel")) && !(have && snap.state == ATT_DONE)) {
		r = reconcile_cancel(t, task, uid, &snap, have);
		goto out;
	}
	if (have && snap.state != ATT_LOST) {
		r = reconcile_attempt(t, task, key, uid, &snap);
		goto out;
	}
	if (!have && phase && strcmp(phase, "Queued") == 0 && reason && strcmp(reason, "Retrying") == 0) {
		int64_t at;
		const char *next = json_string_value(json_object_get(status, "nextRetryTime"));
		if (next && util_parse_rfc3339(next, &at) == 0 && at > util_now_ms()) {
			wq_add_after(t->cfg.queue, key, sat_delay(at, util_now_ms(), TASKCTL_MAX_TIMER_MS));
			goto out;
		}
	}
	if (!have && t->cfg.startup_hold_ms > 0) {
		/* Tasks that existed before this controller started may have been dispatched by the
		 * previous instance: give runners time to reconnect and report what they hold. */
		int64_t left = t->cfg.startup_hold_ms - (util_mono_ms() - t->started_ms), created;
		const char *ct = json_string_value(json_object_get(json_object_get(task, "metadata"), "creationTimestamp"));
		if (left > 0 && ct && util_parse_rfc3339(ct, &created) == 0 && created <= t->started_wall_ms) {
			wq_add_after(t->cfg.queue, key, left);
			goto out;
		}
	}
	{
		json_t *base = json_incref(json_object_get(status, "attemptHistory"));
		int64_t next = attempts;
		if (have && snap.attempt > next)
			next = snap.attempt;
		if ((phase && strcmp(phase, "Running") == 0) || (have && snap.state == ATT_LOST)) {
			/* Disruptions do not count against retries; they show in the history and are
			 * bounded on their own. */
			const char *rn = have ? snap.runner : json_string_value(json_object_get(status, "runner"));
			json_t *lost = json_pack("{sIssssss}", "attempt", (json_int_t)next, "runner", rn ? rn : "",
						 "reason", "RunnerLost", "message", "the runner holding this attempt went away");
			json_t *nb = history_with(base, lost);
			json_decref(base);
			json_decref(lost);
			base = nb;
			log_task("attempt lost with its runner", task, "runner", rn ? rn : "");
			emit(t, task, "Warning", "RunnerLost", "the runner holding this attempt went away; starting a new attempt");
			if (count_lost(base) > TASKCTL_MAX_LOST) {
				json_t *extra = json_pack("{sIsO}", "attempts", (json_int_t)next, "attemptHistory", base);
				r = taskctl_write_simple(t, task, "Failed", "RunnerLost",
							 "runners were lost too many times while running this task", "False", extra);
				json_decref(extra);
				json_decref(base);
				if (r == 0)
					emit(t, task, "Warning", "Failed", "runners were lost too many times");
				goto out;
			}
		}
		{
			json_t *queue = NULL, *vars = NULL;
			r = reconcile_gate(t, task, key, next + 1, &queue, &vars);
			if (r == 1)
				r = reconcile_dispatch(t, task, key, uid, next + 1, base, queue, vars);
			json_decref(queue);
			json_decref(vars);
		}
		json_decref(base);
	}
out:
	if (t->cfg.queues)
		sync_holder(t, task, key, uid);
	if (have) {
		json_decref(snap.result);
		json_decref(snap.history);
		json_decref(snap.secrets);
	}
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
			pthread_mutex_lock(&t->lock);
			json_object_set_new(t->standby, key, json_true());
			pthread_mutex_unlock(&t->lock);
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
	t->started_wall_ms = util_now_ms();
	pthread_mutex_unlock(&t->lock);
	json_object_foreach(w, key, v)
		wq_add(t->cfg.queue, key);
	json_decref(w);
}

void taskctl_on_undecodable(const struct informer_bad *b, void *ud)
{
	struct taskctl *t = ud;
	char msg[512];
	json_t *task;
	int r;

	if (!b->uid[0] || !b->name[0] || !b->namespace_[0] || is_terminal(b->phase) ||
	    strcmp(b->reason, "Undecodable") == 0 || (t->cfg.may_act && !t->cfg.may_act(t->cfg.may_act_ud)))
		return;
	/* The write needs only the name and the UID (its precondition): the status subresource
	 * takes a merge patch without the rest of the object. */
	task = json_pack("{s{sssssssI}}", "metadata", "namespace", b->namespace_, "name", b->name, "uid", b->uid,
			 "generation", (json_int_t)b->generation);
	if (!task)
		return;
	snprintf(msg, sizeof(msg), "the controller cannot decode this Task (%.200s): objects nested deeper than "
		 "2048 levels or with a NUL byte in a member name are skipped", b->error);
	r = taskctl_write_simple(t, task, "Failed", "Undecodable", msg, "False", NULL);
	if (r == 0)
		emit(t, task, "Warning", "Undecodable", msg);
	else
		log_warn("could not mark an undecodable task Failed", "namespace", b->namespace_, "task", b->name,
			 "uid", b->uid);
	json_decref(task);
}
