#include "queues.h"
#include "conditions.h"
#include "resources.h"
#include "task.h"
#include "log.h"
#include "sat.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct qstate {
	struct qstate *next;
	char key[512];
	json_t *ready;   /* task key -> [priority, created_ms] */
	json_t *holders; /* task key -> true */
	json_t *waiting; /* task keys waiting for the queue object to exist */
	double tokens;
	int64_t tokens_ms;
	int primed; /* token bucket initialised */
	char last_status[512];
};

struct queues {
	struct kube_client *kc;
	struct wq *wq;
	struct informer *qinf, *tinf;
	struct broker *broker;
	pthread_mutex_t lock;
	struct qstate *all;
	json_t *holder_of;      /* task key -> queue key it holds a slot in */
	queues_pool_fn pool_fn; /* a runnerSelector that reaches a RunnerPool (may be NULL) */
	void *pool_ud;
};

void queues_set_pools(struct queues *q, queues_pool_fn fn, void *ud)
{
	q->pool_fn = fn;
	q->pool_ud = ud;
}

struct queues *queues_new(struct kube_client *kc, struct wq *tasks_queue,
			  struct informer *queues_inf, struct informer *tasks_inf,
			  struct broker *broker)
{
	struct queues *q = calloc(1, sizeof(*q));
	if (!q)
		return NULL;
	q->kc = kc;
	q->wq = tasks_queue;
	q->qinf = queues_inf;
	q->tinf = tasks_inf;
	q->broker = broker;
	q->holder_of = json_object();
	pthread_mutex_init(&q->lock, NULL);
	return q;
}

void queues_free(struct queues *q)
{
	if (!q)
		return;
	while (q->all) {
		struct qstate *s = q->all;
		q->all = s->next;
		json_decref(s->ready);
		json_decref(s->holders);
		json_decref(s->waiting);
		free(s);
	}
	json_decref(q->holder_of);
	pthread_mutex_destroy(&q->lock);
	free(q);
}

/* Caller holds lock. */
static struct qstate *qs_get(struct queues *q, const char *qkey)
{
	struct qstate *s;
	for (s = q->all; s; s = s->next)
		if (strcmp(s->key, qkey) == 0)
			return s;
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	snprintf(s->key, sizeof(s->key), "%s", qkey);
	s->ready = json_object();
	s->holders = json_object();
	s->waiting = json_object();
	s->next = q->all;
	q->all = s;
	return s;
}

void queues_key_of(json_t *task, char *out, size_t outsz)
{
	const char *ns = task_namespace(task);
	const char *name = json_string_value(json_object_get(task_spec(task), "queue"));
	snprintf(out, outsz, "%s/%s", ns ? ns : "", name && *name ? name : "default");
}

json_t *queues_get(struct queues *q, const char *qkey)
{
	return q->qinf ? informer_get(q->qinf, qkey) : NULL;
}

void queues_wait_for(struct queues *q, const char *qkey, const char *task_key)
{
	struct qstate *s;
	pthread_mutex_lock(&q->lock);
	s = qs_get(q, qkey);
	if (s)
		json_object_set_new(s->waiting, task_key, json_true());
	pthread_mutex_unlock(&q->lock);
}

static void wake_all(struct queues *q, json_t *set)
{
	const char *k;
	json_t *v;
	json_object_foreach(set, k, v)
		wq_add(q->wq, k);
}

void queues_on_event(enum informer_event ev, const char *key, json_t *obj, void *ud)
{
	struct queues *q = ud;
	struct qstate *s;
	json_t *w = NULL, *r = NULL;

	if (ev == INFORMER_RESYNC)
		return;
	pthread_mutex_lock(&q->lock);
	s = qs_get(q, key);
	if (s) {
		/* Settings may have changed (or the queue appeared/vanished): everyone waiting for
		 * it or in it takes another look. */
		w = s->waiting;
		s->waiting = json_object();
		r = json_copy(s->ready);
		s->primed = 0;
	}
	pthread_mutex_unlock(&q->lock);
	if (w)
		wake_all(q, w);
	if (r)
		wake_all(q, r);
	json_decref(w);
	json_decref(r);
}

static int64_t q_int(json_t *queue, const char *a, const char *b, int64_t dflt)
{
	json_t *v = json_object_get(queue, "spec");
	v = json_object_get(v, a);
	if (b)
		v = json_object_get(v, b);
	return json_is_integer(v) ? json_integer_value(v)
	       : json_is_real(v)  ? (int64_t)json_real_value(v)
				  : dflt;
}

static double q_num(json_t *queue, const char *a, const char *b, double dflt)
{
	json_t *v = json_object_get(json_object_get(json_object_get(queue, "spec"), a), b);
	return json_is_number(v) ? json_number_value(v) : dflt;
}

/* Better = higher priority, then older, then smaller key. */
static int better(int64_t pa, int64_t ca, const char *ka, int64_t pb, int64_t cb, const char *kb)
{
	if (pa != pb)
		return pa > pb;
	if (ca != cb)
		return ca < cb;
	return strcmp(ka, kb) < 0;
}

/* The best task waiting in s (caller holds lock); NULL when none. */
static const char *qs_head(struct qstate *s)
{
	const char *k, *best = NULL;
	json_t *v;
	int64_t bp = 0, bc = 0;
	json_object_foreach(s->ready, k, v) {
		int64_t p = json_integer_value(json_array_get(v, 0)),
			c = json_integer_value(json_array_get(v, 1));
		if (!best || better(p, c, k, bp, bc, best)) {
			best = k;
			bp = p;
			bc = c;
		}
	}
	return best;
}

enum queue_admit queues_admit(struct queues *q, const char *qkey, json_t *queue,
			      const char *task_key, int64_t priority, int64_t created_ms,
			      int64_t *retry_ms)
{
	int64_t conc = q_int(queue, "concurrency", NULL, 0);
	double rate = q_num(queue, "rateLimit", "perSecond", 0),
	       burst = q_num(queue, "rateLimit", "burst", 0);
	enum queue_admit res = QUEUE_ADMITTED;
	char wake[512] = "";
	struct qstate *s;
	const char *head;
	int64_t now = util_mono_ms();

	*retry_ms = 0;
	if (!queue) /* built-in defaults: no queue limits; runner slots still apply */
		return QUEUE_ADMITTED;
	pthread_mutex_lock(&q->lock);
	s = qs_get(q, qkey);
	if (!s) {
		pthread_mutex_unlock(&q->lock);
		return QUEUE_NO_SLOT;
	}
	json_object_set_new(s->ready, task_key,
			    json_pack("[II]", (json_int_t)priority, (json_int_t)created_ms));
	if (json_object_get(s->holders, task_key))
		goto admitted; /* already holds its slot (e.g. re-dispatch after no runner slot) */
	if (conc > 0 && (int64_t)json_object_size(s->holders) >= conc) {
		res = QUEUE_NO_SLOT;
		goto out;
	}
	head = qs_head(s);
	if (head && strcmp(head, task_key) != 0) {
		/* Someone ahead of us: let them go first. */
		snprintf(wake, sizeof(wake), "%s", head);
		res = QUEUE_NO_SLOT;
		goto out;
	}
	if (rate > 0) {
		if (burst < 1)
			burst = rate < 1 ? 1 : rate;
		if (!s->primed) {
			s->tokens = burst;
			s->tokens_ms = now;
			s->primed = 1;
		}
		s->tokens += (double)(now - s->tokens_ms) * rate / 1000.0;
		if (s->tokens > burst)
			s->tokens = burst;
		s->tokens_ms = now;
		if (s->tokens < 1.0) {
			/* A tiny perSecond would overflow the conversion: wait at most a day, then look
			 * again (the bucket keeps filling meanwhile). */
			*retry_ms = sat_ms_of_seconds((1.0 - s->tokens) / rate,
						      INT64_C(86400) * 1000) +
				    1;
			res = QUEUE_RATE_LIMITED;
			goto out;
		}
		s->tokens -= 1.0;
	}
	json_object_set_new(s->holders, task_key, json_true());
	json_object_set_new(q->holder_of, task_key, json_string(qkey));
admitted:
	json_object_del(s->ready, task_key);
	/* More room? Let the next one try right away. */
	head = qs_head(s);
	if (head && (conc <= 0 || (int64_t)json_object_size(s->holders) < conc))
		snprintf(wake, sizeof(wake), "%s", head);
out:
	pthread_mutex_unlock(&q->lock);
	if (wake[0])
		wq_add(q->wq, wake);
	return res;
}

void queues_set_holder(struct queues *q, const char *qkey, const char *task_key, int holds)
{
	struct qstate *s;
	char wake[512] = "";
	const char *cur;

	pthread_mutex_lock(&q->lock);
	cur = json_string_value(json_object_get(q->holder_of, task_key));
	if (holds) {
		if (!cur || strcmp(cur, qkey) != 0) {
			if (cur && (s = qs_get(q, cur)))
				json_object_del(s->holders, task_key);
			s = qs_get(q, qkey);
			if (s) {
				json_object_set_new(s->holders, task_key, json_true());
				json_object_del(s->ready, task_key);
				json_object_set_new(q->holder_of, task_key, json_string(qkey));
			}
		}
	} else if (cur) {
		s = qs_get(q, cur);
		if (s) {
			const char *head;
			json_object_del(s->holders, task_key);
			head = qs_head(s);
			if (head)
				snprintf(wake, sizeof(wake), "%s", head);
		}
		json_object_del(q->holder_of, task_key);
	}
	pthread_mutex_unlock(&q->lock);
	if (wake[0])
		wq_add(q->wq, wake);
}

void queues_forget(struct queues *q, const char *task_key)
{
	struct qstate *s;
	queues_set_holder(q, "", task_key, 0);
	pthread_mutex_lock(&q->lock);
	for (s = q->all; s; s = s->next) {
		json_object_del(s->ready, task_key);
		json_object_del(s->waiting, task_key);
	}
	pthread_mutex_unlock(&q->lock);
}

int queues_running(struct queues *q, const char *qkey)
{
	struct qstate *s;
	int n = 0;
	pthread_mutex_lock(&q->lock);
	for (s = q->all; s; s = s->next)
		if (strcmp(s->key, qkey) == 0)
			n = (int)json_object_size(s->holders);
	pthread_mutex_unlock(&q->lock);
	return n;
}

/* --- status -------------------------------------------------------------------------------- */

int queues_task_tag(json_t *task, char *out, size_t outsz)
{
	const char *phase = task_phase(task);
	char qk[512];
	int n;
	queues_key_of(task, qk, sizeof(qk));
	n = snprintf(out, outsz, "%s|%s", qk, phase && *phase ? phase : "Pending");
	return n < 0 || (size_t)n >= outsz ? -ENAMETOOLONG : 0;
}

/* Whether a queue's configuration lets its tasks run, as far as it can be told without a task:
 * 1, or 0 with why (the schema admits quantities the controller refuses, and an empty
 * executors list admits no task). */
static int queue_config_valid(json_t *queue, char *why, size_t whysz)
{
	json_t *spec = json_object_get(queue, "spec"), *empty = json_object();
	json_t *ex = json_object_get(json_object_get(spec, "policy"), "executors");
	const char *name = json_string_value(
		json_object_get(json_object_get(queue, "metadata"), "name"));
	const char *reason = NULL;
	struct res_limits lim;
	int r = empty ? res_decide(empty, spec, name, 0, &lim, &reason, why, whysz) : 0;

	json_decref(empty);
	if (r < 0)
		return 0;
	if (json_is_array(ex) && json_array_size(ex) == 0) {
		snprintf(why, whysz,
			 "spec.policy.executors is empty: no task of this queue can run");
		return 0;
	}
	snprintf(why, whysz, "the configuration is valid");
	return 1;
}

/* RunnersAvailable first (what it always said), then Ready, Reconciling and Stalled: a queue is
 * configuration, Ready when its tasks can run as configured, Stalled (kstatus: Failed) when not. */
static json_t *queue_conditions(json_t *queue, int matched, const char *pool_msg, int valid,
				const char *why)
{
	json_t *md = json_object_get(queue, "metadata");
	/* A selector that reaches a RunnerPool is answered by the pool (pool_msg set). */
	struct cond cs[] = {
		{ "RunnersAvailable", matched ? "True" : "False",
		  pool_msg  ? (matched ? "RunnerPool" : "RunnerPoolStalled")
		  : matched ? "RunnersMatch"
			    : "NoMatchingRunner",
		  pool_msg  ? pool_msg
		  : matched ? "at least one connected runner matches runnerSelector"
			    : "no connected runner matches runnerSelector; tasks will wait" },
		{ "Ready", valid ? "True" : "False", valid ? "Valid" : "InvalidSpec", why },
		{ "Reconciling", "False", "Observed", "the controller has seen this generation" },
		{ "Stalled", valid ? "False" : "True", valid ? "Valid" : "InvalidSpec", why },
	};
	return cond_build(json_object_get(json_object_get(queue, "status"), "conditions"), cs,
			  UTIL_ARRAY_SIZE(cs),
			  json_integer_value(json_object_get(md, "generation")), util_now_ms());
}

struct qlist_ctx {
	json_t *list;
};

static void collect_queue(const char *key, json_t *obj, void *ud)
{
	struct qlist_ctx *c = ud;
	json_array_append(c->list, obj);
}

void queues_write_status(struct queues *q)
{
	struct qlist_ctx ql = { .list = json_array() };
	json_t *tags = NULL;
	json_t *queue;
	size_t i;

	if (!q->qinf || !q->tinf || !informer_synced(q->qinf) || !informer_synced(q->tinf))
		goto out;
	/* Counts come from the task cache's tags ("queue|phase"), kept as events arrive. */
	tags = informer_tag_counts(q->tinf);
	informer_foreach(q->qinf, collect_queue, &ql);
	json_array_foreach(ql.list, i, queue) {
		json_t *md = json_object_get(queue, "metadata"), *patch, *sel;
		const char *ns = json_string_value(json_object_get(md, "namespace"));
		const char *name = json_string_value(json_object_get(md, "name"));
		char qk[512], sig[512], tk[600], why[512], pmsg[300] = "";
		int running, matched, valid, pr = -ENOENT;
		json_int_t pending, queued;
		struct kube_resp resp;
		struct qstate *s;

		if (!ns || !name)
			continue;
		snprintf(qk, sizeof(qk), "%s/%s", ns, name);
		snprintf(tk, sizeof(tk), "%s|Pending", qk);
		pending = json_integer_value(json_object_get(tags, tk));
		snprintf(tk, sizeof(tk), "%s|Queued", qk);
		queued = json_integer_value(json_object_get(tags, tk));
		running = queues_running(q, qk);
		sel = json_object_get(json_object_get(queue, "spec"), "runnerSelector");
		/* Tasks whose selector reaches a pool go to its runners, never to global ones. */
		if (q->pool_fn)
			pr = q->pool_fn(q->pool_ud, ns, sel, pmsg, sizeof(pmsg));
		matched = pr >= 0 ? pr : q->broker ? broker_has_runner(q->broker, sel) : 1;
		valid = queue_config_valid(queue, why, sizeof(why));
		snprintf(sig, sizeof(sig), "%lld/%lld/%d/%d/%d/%lld/%s", (long long)pending,
			 (long long)queued, running, matched, valid,
			 (long long)json_integer_value(json_object_get(md, "generation")), pmsg);
		pthread_mutex_lock(&q->lock);
		s = qs_get(q, qk);
		if (s && strcmp(s->last_status, sig) == 0) {
			pthread_mutex_unlock(&q->lock);
			continue;
		}
		pthread_mutex_unlock(&q->lock);
		patch = json_pack(
			"{s{sIsIsisIso}}", "status", "pending", pending, "queued", queued,
			"running", running, "observedGeneration",
			(json_int_t)json_integer_value(json_object_get(md, "generation")),
			"conditions",
			queue_conditions(queue, matched, pr >= 0 ? pmsg : NULL, valid, why));
		if (!patch)
			continue;
		/* The UID precondition: a queue re-created under the same name gets its own counts. */
		if (kube_patch_status(q->kc, KUBE_GV_TASKED, "taskqueues", queue, patch, &resp) ==
		    0) {
			pthread_mutex_lock(&q->lock);
			s = qs_get(q, qk);
			if (s)
				snprintf(s->last_status, sizeof(s->last_status), "%s", sig);
			pthread_mutex_unlock(&q->lock);
		}
		kube_resp_free(&resp);
		json_decref(patch);
	}
out:
	json_decref(tags);
	json_decref(ql.list);
}
