#include "pools.h"
#include "log.h"
#include "sat.h"
#include "util.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POOLS_DRAIN_SETTLE_MS 2000 /* between marking drained pods and lowering replicas */
#define POOLS_MAX_DRAIN 64         /* runners drained in one pass */
#define POOLS_DELETION_COST "-1000"
#define POOLS_COMMIT_GRACE_MS 60000 /* a drained runner still there after this was not removed */

struct pools {
	struct pools_cfg cfg;
	pthread_mutex_t lock;
	json_t *labels; /* "ns/name" -> {labels, spec} of each known pool (copies) */
	/* "ns/name" -> {lowSince, drainAt, draining: [ids], committedAt, committed: [ids], secret,
	 * status} */
	json_t *state;
	void (*wake)(void *ud);
	void *wake_ud;
};

void pools_set_wake(struct pools *p, void (*wake)(void *ud), void *ud)
{
	p->wake = wake;
	p->wake_ud = ud;
}

struct pools *pools_new(const struct pools_cfg *cfg)
{
	struct pools *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->cfg = *cfg;
	p->labels = json_object();
	p->state = json_object();
	if (!p->labels || !p->state) {
		pools_free(p);
		return NULL;
	}
	pthread_mutex_init(&p->lock, NULL);
	return p;
}

void pools_free(struct pools *p)
{
	if (!p)
		return;
	json_decref(p->labels);
	json_decref(p->state);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

void pools_on_event(enum informer_event ev, const char *key, json_t *obj, void *ud)
{
	struct pools *p = ud;
	json_t *spec = json_object_get(obj, "spec"), *labels = json_object_get(spec, "labels");
	json_t *view = json_pack(
		"{soso}", "labels", json_is_object(labels) ? json_deep_copy(labels) : json_object(),
		"spec", json_is_object(spec) ? json_deep_copy(spec) : json_object());

	int changed = 1;

	pthread_mutex_lock(&p->lock);
	if (ev == INFORMER_DELETED) {
		json_object_del(p->labels, key);
		json_object_del(p->state, key);
	} else if (view) {
		/* Our own status writes come back as updates: only what routing sees counts. */
		changed = !json_equal(json_object_get(p->labels, key), view);
		json_object_set(p->labels, key, view);
	}
	pthread_mutex_unlock(&p->lock);
	json_decref(view);
	if (ev == INFORMER_DELETED && p->cfg.broker)
		broker_pool_remove(p->cfg.broker, key);
	/* Tasks waiting for this pool (or for a pool of this name) are tried again. */
	if (changed && p->wake)
		p->wake(p->wake_ud);
}

int pools_route(struct pools *p, json_t *task, json_t *selector, char *out, size_t outsz, char *why,
		size_t whysz)
{
	json_t *md = json_object_get(task, "metadata");
	const char *ns = json_string_value(json_object_get(md, "namespace"));
	const char *named = json_string_value(
		json_object_get(json_object_get(task, "spec"), "runnerPool"));
	const char *k, *best = NULL;
	char key[512], prefix[300];
	json_t *v;
	int r = 0, n;

	out[0] = '\0';
	if (!p || !ns)
		return 0;
	if (named && *named) {
		n = snprintf(key, sizeof(key), "%s/%s", ns, named);
		pthread_mutex_lock(&p->lock);
		r = n > 0 && (size_t)n < sizeof(key) && json_object_get(p->labels, key) ? 1
											: -ENOENT;
		pthread_mutex_unlock(&p->lock);
		if (r == 1)
			snprintf(out, outsz, "%s", key);
		else
			snprintf(why, whysz, "RunnerPool %s does not exist in namespace %s", named,
				 ns);
		return r;
	}
	if (!json_is_object(selector) || json_object_size(selector) == 0)
		return 0;
	n = snprintf(prefix, sizeof(prefix), "%s/", ns);
	/* Several pools may match: the first by name, so the choice does not depend on order. */
	pthread_mutex_lock(&p->lock);
	json_object_foreach(p->labels, k, v) {
		if (strncmp(k, prefix, (size_t)n) != 0 ||
		    !pools_labels_match(json_object_get(v, "labels"), selector))
			continue;
		if (!best || strcmp(k, best) < 0)
			best = k;
	}
	if (best) {
		snprintf(out, outsz, "%s", best);
		r = 1;
	}
	pthread_mutex_unlock(&p->lock);
	return r;
}

int pools_policy_allows(struct pools *p, const char *pool, json_t *queue, const char **reason,
			char *why, size_t whysz)
{
	json_t *view;
	const char *slash = strchr(pool, '/');
	int r;

	*reason = "PolicyDenied";
	if (!p)
		return 1;
	pthread_mutex_lock(&p->lock);
	view = json_deep_copy(json_object_get(p->labels, pool));
	pthread_mutex_unlock(&p->lock);
	if (!view)
		return 1; /* gone since it was routed: the dispatch finds no runner */
	r = pools_policy_check(json_object_get(view, "spec"), slash ? slash + 1 : pool, queue,
			       reason, why, whysz);
	json_decref(view);
	return r;
}

int pools_queue_runners(void *ud, const char *ns, json_t *selector, char *msg, size_t msgsz)
{
	struct pools *p = ud;
	json_t *probe = json_pack("{s{ss}}", "metadata", "namespace", ns ? ns : ""), *pool, *c;
	char key[512], why[300];
	const char *name, *stalled = NULL, *smsg = NULL;
	struct broker_pool_counts n;
	int64_t max;
	size_t i;
	int r = probe ? pools_route(p, probe, selector, key, sizeof(key), why, sizeof(why)) : 0;

	json_decref(probe);
	if (r != 1 || !p->cfg.pools_inf)
		return -ENOENT;
	name = strchr(key, '/') + 1;
	pool = informer_get(p->cfg.pools_inf, key);
	json_array_foreach(json_object_get(json_object_get(pool, "status"), "conditions"), i, c) {
		const char *t = json_string_value(json_object_get(c, "type"));
		const char *s = json_string_value(json_object_get(c, "status"));
		if (t && s && strcmp(t, "Stalled") == 0 && strcmp(s, "True") == 0) {
			stalled = json_string_value(json_object_get(c, "reason"));
			smsg = json_string_value(json_object_get(c, "message"));
		}
	}
	max = json_integer_value(json_object_get(json_object_get(pool, "spec"), "maxRunners"));
	broker_pool_counts(p->cfg.broker, key, &n);
	if (stalled)
		snprintf(msg, msgsz,
			 "runnerSelector reaches RunnerPool %s, which cannot run: %s: %s", name,
			 stalled, smsg ? smsg : "");
	else if (n.runners > 0)
		snprintf(msg, msgsz, "runnerSelector reaches RunnerPool %s: %d runners connected",
			 name, n.runners);
	else if (max > 0)
		snprintf(msg, msgsz,
			 "runnerSelector reaches RunnerPool %s: no runner connected now; the pool "
			 "starts runners for queued tasks",
			 name);
	else
		snprintf(msg, msgsz,
			 "runnerSelector reaches RunnerPool %s, which has maxRunners 0: tasks wait",
			 name);
	r = !stalled && (n.runners > 0 || max > 0);
	json_decref(pool);
	return r;
}

/* The task's selector, else its queue's (new reference, may be NULL). */
static json_t *pools_selector_of(struct pools *p, json_t *task)
{
	json_t *sel = json_object_get(json_object_get(task, "spec"), "runnerSelector"), *q;
	char qkey[512];

	if (json_is_object(sel) && json_object_size(sel))
		return json_incref(sel);
	if (!p->cfg.queues)
		return NULL;
	queues_key_of(task, qkey, sizeof(qkey));
	q = queues_get(p->cfg.queues, qkey);
	sel = json_incref(json_object_get(json_object_get(q, "spec"), "runnerSelector"));
	json_decref(q);
	return sel;
}

int pools_task_in_pool(struct pools *p, const char *uid, const char *pool)
{
	char *key, out[512], why[256];
	json_t *task, *sel;
	int r = 0;

	if (!p || !p->cfg.tasks_inf || !(key = informer_key_by_uid(p->cfg.tasks_inf, uid)))
		return 0;
	task = informer_get(p->cfg.tasks_inf, key);
	free(key);
	if (!task)
		return 0;
	sel = pools_selector_of(p, task);
	r = pools_route(p, task, sel, out, sizeof(out), why, sizeof(why)) == 1 &&
	    strcmp(out, pool) == 0;
	json_decref(sel);
	json_decref(task);
	return r;
}

/* --- demand ---------------------------------------------------------------------------------- */

/* {pool key: queued tasks}. Only Queued tasks count: running ones are the broker's (busy). */
static json_t *pools_count_queued(struct pools *p)
{
	json_t *counts = json_object(), *tags, *keys, *v;
	const char *tag;
	size_t i, queued = 0;

	if (!counts || !p->cfg.tasks_inf)
		return counts;
	tags = informer_tag_counts(p->cfg.tasks_inf);
	json_object_foreach(tags, tag, v) {
		const char *bar = strrchr(tag, '|');
		if (bar && strcmp(bar + 1, "Queued") == 0)
			queued += (size_t)json_integer_value(v);
	}
	json_decref(tags);
	if (queued == 0)
		return counts; /* the usual case: nothing to parse */
	keys = informer_keys(p->cfg.tasks_inf);
	json_array_foreach(keys, i, v) {
		json_t *task = informer_get(p->cfg.tasks_inf, json_string_value(v)), *sel;
		const char *phase = json_string_value(
			json_object_get(json_object_get(task, "status"), "phase"));
		char pool[512], why[256];
		if (task && phase && strcmp(phase, "Queued") == 0) {
			sel = pools_selector_of(p, task);
			if (pools_route(p, task, sel, pool, sizeof(pool), why, sizeof(why)) == 1)
				json_object_set_new(counts, pool,
						    json_integer(json_integer_value(json_object_get(
									 counts, pool)) +
								 1));
			json_decref(sel);
		}
		json_decref(task);
	}
	json_decref(keys);
	return counts;
}

/* --- the pool's objects ---------------------------------------------------------------------- */

/* The pool's token in the broker and its Secret (created once per token; create only, so the
 * controller needs no right to read Secrets). 0, or -errno with why filled. */
static int pools_ensure_token(struct pools *p, const char *key, json_t *pool, char *secret,
			      size_t secretsz, char *why, size_t whysz)
{
	json_t *md = json_object_get(pool, "metadata"), *st, *body;
	const char *ns = json_string_value(json_object_get(md, "namespace"));
	const char *name = json_string_value(json_object_get(md, "name"));
	char token[POOLS_TOKEN_HEX + 1], path[512], *seed = NULL;
	struct kube_resp resp;
	int r, known;

	if (!p->cfg.token_file || util_read_file(p->cfg.token_file, 4096, &seed, NULL) < 0) {
		snprintf(why, whysz, "the controller cannot read its runner token file");
		return -EIO;
	}
	util_rstrip(seed);
	r = pools_token(seed, ns, name, json_string_value(json_object_get(md, "uid")), token);
	OPENSSL_cleanse(seed, strlen(seed));
	free(seed);
	if (r < 0 || pools_secret_name(name, token, secret, secretsz) < 0) {
		snprintf(why, whysz, "cannot derive the pool's runner token");
		return -EINVAL;
	}
	pthread_mutex_lock(&p->lock);
	st = json_object_get(p->state, key);
	known = st && json_string_value(json_object_get(st, "secret")) &&
		strcmp(json_string_value(json_object_get(st, "secret")), secret) == 0;
	pthread_mutex_unlock(&p->lock);
	if (!known) {
		body = pools_build_secret(pool, secret, token);
		r = body && kube_path(path, sizeof(path), "v1", "secrets", ns, NULL, NULL) == 0
			    ? kube_request(p->cfg.kc, "POST", path, NULL, body, &resp)
			    : -ENOMEM;
		json_decref(body);
		if (r == 0 && resp.status != 201 && resp.status != 409) {
			snprintf(why, whysz, "creating Secret %s: %.200s", secret, resp.message);
			r = -EAGAIN;
		}
		if (r == 0)
			kube_resp_free(&resp);
		if (r < 0) {
			OPENSSL_cleanse(token, sizeof(token));
			return r;
		}
		pthread_mutex_lock(&p->lock);
		st = json_object_get(p->state, key);
		if (st)
			json_object_set_new(st, "secret", json_string(secret));
		pthread_mutex_unlock(&p->lock);
	}
	r = broker_pool_set(p->cfg.broker, key, token);
	OPENSSL_cleanse(token, sizeof(token));
	return r;
}

static int pools_owned(json_t *obj, const char *uid)
{
	json_t *o;
	size_t i;
	json_array_foreach(json_object_get(json_object_get(obj, "metadata"), "ownerReferences"), i,
			   o) {
		const char *u = json_string_value(json_object_get(o, "uid"));
		if (u && strcmp(u, uid) == 0)
			return 1;
	}
	return 0;
}

/* GETs the Deployment: 1 found (*ret), 0 absent, -errno with why. */
static int pools_get_deployment(struct pools *p, const char *ns, const char *dname, json_t **ret,
				char *why, size_t whysz)
{
	char path[512];
	struct kube_resp resp;
	int r;

	*ret = NULL;
	if (kube_path(path, sizeof(path), "apps/v1", "deployments", ns, dname, NULL) < 0)
		return -EINVAL;
	r = kube_request(p->cfg.kc, "GET", path, NULL, NULL, &resp);
	if (r < 0) {
		snprintf(why, whysz, "reading Deployment %s: %s", dname, resp.message);
		kube_resp_free(&resp);
		return r;
	}
	if (resp.status == 404) {
		kube_resp_free(&resp);
		return 0;
	}
	if (resp.status != 200 || !json_is_object(resp.body)) {
		snprintf(why, whysz, "reading Deployment %s: %ld %s", dname, resp.status,
			 resp.message);
		kube_resp_free(&resp);
		return -EAGAIN;
	}
	*ret = json_incref(resp.body);
	kube_resp_free(&resp);
	return 1;
}

/* Creates (cur NULL) or replaces the Deployment with want (its resourceVersion from cur). */
/* The object to send: want itself for a create; for an update the current object with our
 * replicas, template, strategy, labels and hash annotation, so what others keep there (the
 * Deployment controller's revision annotation, say) stays. New reference. */
static json_t *pools_merge_deployment(json_t *cur, json_t *want)
{
	json_t *obj, *md, *ann, *spec, *wspec = json_object_get(want, "spec");
	json_t *wmd = json_object_get(want, "metadata");

	if (!cur)
		return json_incref(want);
	obj = json_deep_copy(cur);
	md = json_object_get(obj, "metadata");
	spec = json_object_get(obj, "spec");
	if (!obj || !json_is_object(md) || !json_is_object(spec)) {
		json_decref(obj);
		return NULL;
	}
	ann = json_object_get(md, "annotations");
	if (!json_is_object(ann)) {
		ann = json_object();
		json_object_set_new(md, "annotations", ann);
	}
	json_object_update(ann, json_object_get(wmd, "annotations"));
	json_object_set(md, "labels", json_object_get(wmd, "labels"));
	json_object_set(spec, "replicas", json_object_get(wspec, "replicas"));
	json_object_set(spec, "strategy", json_object_get(wspec, "strategy"));
	json_object_set(spec, "template", json_object_get(wspec, "template"));
	json_object_del(obj, "status");
	return obj;
}

/* Creates (cur NULL) or updates (under cur's resourceVersion) the Deployment to want. */
static int pools_put_deployment(struct pools *p, json_t *cur, json_t *want, char *why, size_t whysz)
{
	json_t *md = json_object_get(want, "metadata"), *obj;
	const char *ns = json_string_value(json_object_get(md, "namespace"));
	const char *dname = json_string_value(json_object_get(md, "name"));
	char path[512];
	struct kube_resp resp;
	int r;

	if (kube_path(path, sizeof(path), "apps/v1", "deployments", ns, cur ? dname : NULL, NULL) <
		    0 ||
	    !(obj = pools_merge_deployment(cur, want)))
		return -EINVAL;
	r = kube_request(p->cfg.kc, cur ? "PUT" : "POST", path, NULL, obj, &resp);
	json_decref(obj);
	if (r == 0 && resp.status >= 300) {
		snprintf(why, whysz, "%s Deployment %s: %ld %.300s", cur ? "updating" : "creating",
			 dname, resp.status, resp.message);
		r = resp.status == 409 ? -EAGAIN : -EINVAL;
	} else if (r < 0) {
		snprintf(why, whysz, "writing Deployment %s: %.300s", dname, resp.message);
	}
	kube_resp_free(&resp);
	return r;
}

/* Marks a drained runner's pod as the cheapest to delete. Only pods of this pool's Deployment
 * (by name prefix): the runner id is what the runner says, the pod name is the controller's. */
static int pools_mark_pod(struct pools *p, const char *ns, const char *dname, const char *id)
{
	char path[512];
	struct kube_resp resp;
	json_t *patch;
	size_t n = strlen(dname);
	int r;

	if (strncmp(id, dname, n) != 0 || id[n] != '-' ||
	    kube_path(path, sizeof(path), "v1", "pods", ns, id, NULL) < 0)
		return -EINVAL;
	patch = json_pack("{s{s{ss}}}", "metadata", "annotations",
			  "controller.kubernetes.io/pod-deletion-cost", POOLS_DELETION_COST);
	r = kube_request(p->cfg.kc, "PATCH", path, "application/merge-patch+json", patch, &resp);
	json_decref(patch);
	r = r == 0 && resp.status == 200 ? 0 : -EAGAIN;
	kube_resp_free(&resp);
	return r;
}

/* --- scaling --------------------------------------------------------------------------------- */

static int64_t st_int(json_t *st, const char *k)
{
	return json_integer_value(json_object_get(st, k));
}

/* Sets (v stolen) a field of a pool's scale state. */
static void st_set_new(struct pools *p, const char *key, const char *k, json_t *v)
{
	pthread_mutex_lock(&p->lock);
	json_t *st = json_object_get(p->state, key);
	if (st)
		json_object_set_new(st, k, v);
	else
		json_decref(v);
	pthread_mutex_unlock(&p->lock);
}

static void st_set(struct pools *p, const char *key, const char *k, int64_t v)
{
	st_set_new(p, key, k, json_integer(v));
}

/* A copy of a state field (new reference, may be NULL). */
static json_t *st_copy(struct pools *p, const char *key, const char *k)
{
	pthread_mutex_lock(&p->lock);
	json_t *v = json_deep_copy(json_object_get(json_object_get(p->state, key), k));
	pthread_mutex_unlock(&p->lock);
	return v;
}

static void pools_undrain_all(struct pools *p, const char *key, json_t *ids)
{
	json_t *v;
	size_t i;
	json_array_foreach(ids, i, v)
		broker_pool_undrain(p->cfg.broker, key, json_string_value(v));
}

/* Runners drained for a scale-down that already happened but still connected a minute later:
 * the ReplicaSet removed other pods (not Ready ones go first), so these take work again. */
static void pools_check_committed(struct pools *p, const char *key, int64_t now)
{
	json_t *st_at = st_copy(p, key, "committedAt"), *ids;

	if (!json_integer_value(st_at) || now - json_integer_value(st_at) < POOLS_COMMIT_GRACE_MS) {
		json_decref(st_at);
		return;
	}
	json_decref(st_at);
	ids = st_copy(p, key, "committed");
	pools_undrain_all(p, key, ids);
	json_decref(ids);
	st_set(p, key, "committedAt", 0);
	st_set_new(p, key, "committed", json_array());
}

/* Drains up to n idle runners and marks their pods; returns how many were marked (the others
 * take work again at once). */
static int pools_drain(struct pools *p, const char *key, const char *ns, const char *dname,
		       int64_t n, int64_t now)
{
	char ids[POOLS_MAX_DRAIN][64];
	json_t *marked = json_array();
	int k = broker_pool_drain(p->cfg.broker, key,
				  (int)(n > POOLS_MAX_DRAIN ? POOLS_MAX_DRAIN : n), ids,
				  POOLS_MAX_DRAIN);

	for (int i = 0; i < k; i++) {
		if (marked && pools_mark_pod(p, ns, dname, ids[i]) == 0)
			json_array_append_new(marked, json_string(ids[i]));
		else
			broker_pool_undrain(p->cfg.broker, key, ids[i]);
	}
	k = (int)json_array_size(marked);
	if (k) {
		st_set(p, key, "drainAt", now);
		st_set_new(p, key, "draining", marked);
		log_info("runner pool scale-down: drained idle runners", "pool", key);
	} else {
		json_decref(marked);
	}
	return k;
}

/* The replicas the Deployment should have after this pass. Scale-down drains first: idle
 * runners are taken out of dispatch in the broker (so they stay idle), their pods get the lowest
 * pod-deletion-cost, and only a pass later are replicas lowered by as many, so the ReplicaSet
 * removes those pods and no running task is killed. */
static int64_t pools_scale_step(struct pools *p, const char *key, const char *ns, const char *dname,
				int64_t replicas, int64_t desired, int64_t delay_ms)
{
	int64_t now = util_mono_ms(), low, drain_at;
	json_t *draining;
	struct pools_scale s;

	pthread_mutex_lock(&p->lock);
	json_t *st = json_object_get(p->state, key);
	low = st_int(st, "lowSince");
	drain_at = st_int(st, "drainAt");
	pthread_mutex_unlock(&p->lock);
	pools_check_committed(p, key, now);

	s = (struct pools_scale){ .replicas = replicas,
				  .desired = desired,
				  .low_since_ms = low,
				  .delay_ms = delay_ms,
				  .now_ms = now };
	switch (pools_decide(&s)) {
	case POOLS_SCALE_UP:
	case POOLS_KEEP:
		if (drain_at) { /* demand came back before replicas were lowered */
			draining = st_copy(p, key, "draining");
			pools_undrain_all(p, key, draining);
			json_decref(draining);
			st_set(p, key, "drainAt", 0);
			st_set_new(p, key, "draining", json_array());
		}
		st_set(p, key, "lowSince", 0);
		return desired > replicas ? desired : replicas;
	case POOLS_WAIT_DOWN:
		if (!low)
			st_set(p, key, "lowSince", now);
		return replicas;
	case POOLS_DRAIN:
		break;
	}
	if (!drain_at) {
		pools_drain(p, key, ns, dname, replicas - desired, now);
		return replicas;
	}
	if (now - drain_at < POOLS_DRAIN_SETTLE_MS)
		return replicas;
	/* Lower by as many as were drained and marked; remember them to check they went. */
	draining = st_copy(p, key, "draining");
	replicas -= (int64_t)json_array_size(draining);
	st_set(p, key, "drainAt", 0);
	st_set_new(p, key, "draining", json_array());
	st_set(p, key, "committedAt", now);
	st_set_new(p, key, "committed", draining ? draining : json_array());
	return replicas < desired ? desired : replicas;
}

/* --- status ---------------------------------------------------------------------------------- */

/* Writes status when it changed (the last written one is kept in the state). */
static void pools_write_status(struct pools *p, const char *key, json_t *pool,
			       const struct pools_obs *o)
{
	json_t *md = json_object_get(pool, "metadata"), *old = json_object_get(pool, "status");
	json_t *oldc = json_object_get(old, "conditions"), *status, *conds, *patch;
	int64_t gen = json_integer_value(json_object_get(md, "generation"));
	const char *name = json_string_value(json_object_get(md, "name"));
	char sel[512];
	struct kube_resp resp;

	snprintf(sel, sizeof(sel), "app.kubernetes.io/managed-by=tasked,%s=%s", POOLS_LABEL,
		 name ? name : "");
	conds = pools_conditions(oldc, o, gen, util_now_ms());
	status = json_pack("{sIsIsIsIsssIso}", "readyRunners", (json_int_t)o->ready,
			   "desiredRunners", (json_int_t)o->desired, "queued",
			   (json_int_t)o->queued, "running", (json_int_t)o->running, "selector",
			   sel, "observedGeneration", (json_int_t)gen, "conditions", conds);
	if (!status)
		return;
	pthread_mutex_lock(&p->lock);
	json_t *st = json_object_get(p->state, key);
	int same = st && json_equal(json_object_get(st, "status"), status);
	pthread_mutex_unlock(&p->lock);
	if (same || json_equal(old, status)) {
		json_decref(status);
		return;
	}
	patch = json_pack("{sO}", "status", status);
	if (patch &&
	    kube_patch_status(p->cfg.kc, KUBE_GV_TASKED, "runnerpools", pool, patch, &resp) == 0) {
		pthread_mutex_lock(&p->lock);
		st = json_object_get(p->state, key);
		if (st)
			json_object_set(st, "status", status);
		pthread_mutex_unlock(&p->lock);
	}
	kube_resp_free(&resp);
	json_decref(patch);
	json_decref(status);
}

/* --- one pool, every pass -------------------------------------------------------------------- */

static void pools_reconcile_one(struct pools *p, const char *key, json_t *pool, int64_t queued)
{
	json_t *md = json_object_get(pool, "metadata"), *spec = json_object_get(pool, "spec");
	const char *ns = json_string_value(json_object_get(md, "namespace"));
	const char *name = json_string_value(json_object_get(md, "name"));
	const char *uid = json_string_value(json_object_get(md, "uid"));
	struct pools_obs o = { .queued = queued,
			       .min = json_integer_value(json_object_get(spec, "minRunners")) };
	struct broker_pool_counts c;
	char secret[320], dname[128], why[768] = "";
	json_t *cur = NULL, *want = NULL;
	int r;

	if (!ns || !name || !uid || pools_deployment_name(name, dname, sizeof(dname)) < 0)
		return;
	pthread_mutex_lock(&p->lock);
	if (!json_object_get(p->state, key))
		json_object_set_new(p->state, key, json_object());
	pthread_mutex_unlock(&p->lock);
	broker_pool_counts(p->cfg.broker, key, &c);
	o.ready = c.runners;
	o.running = c.busy;
	o.desired = pools_desired(queued, c.busy,
				  json_integer_value(json_object_get(spec, "slotsPerRunner")),
				  o.min, json_integer_value(json_object_get(spec, "maxRunners")));
	if (!p->cfg.env.runner_image || !p->cfg.env.broker_url) {
		o.stalled = "PoolsNotConfigured";
		o.why = "the controller runs without --pool-runner-image and --pool-broker-url";
		goto status;
	}
	if ((r = pools_ensure_token(p, key, pool, secret, sizeof(secret), why, sizeof(why))) < 0 ||
	    (r = pools_get_deployment(p, ns, dname, &cur, why, sizeof(why))) < 0)
		goto failed;
	if (cur && !pools_owned(cur, uid)) {
		snprintf(why, sizeof(why),
			 "Deployment %s exists and is not owned by this RunnerPool", dname);
		o.stalled = "DeploymentNotOwned";
		o.why = why;
		goto status;
	}
	o.replicas = cur ? json_integer_value(
				   json_object_get(json_object_get(cur, "spec"), "replicas"))
			 : 0;
	{
		int64_t target = cur ? pools_scale_step(
					       p, key, ns, dname, o.replicas, o.desired,
					       sat_mul(json_integer_value(json_object_get(
							       spec, "scaleDownDelaySeconds")),
						       1000))
				     : o.desired;
		want = pools_build_deployment(pool, target, secret, &p->cfg.env, why, sizeof(why));
		if (!want) {
			o.stalled = "InvalidSpec";
			o.why = why;
			goto status;
		}
		const char *h0 = json_string_value(json_object_get(
			json_object_get(json_object_get(cur, "metadata"), "annotations"),
			"tasked.dev/template-hash"));
		const char *h1 = json_string_value(json_object_get(
			json_object_get(json_object_get(want, "metadata"), "annotations"),
			"tasked.dev/template-hash"));
		if (!cur || target != o.replicas || !h0 || !h1 || strcmp(h0, h1) != 0) {
			if ((r = pools_put_deployment(p, cur, want, why, sizeof(why))) < 0)
				goto failed;
			if (target != o.replicas)
				log_info("runner pool scaled", "pool", key, "replicas",
					 target > o.replicas ? "up" : "down");
			o.replicas = target;
		}
	}
	goto status;
failed:
	log_warn("runner pool not reconciled", "pool", key, "error", why);
	o.stalled = r == -EINVAL ? "DeploymentRefused" : NULL;
	o.error = !o.stalled;
	o.why = why;
status:
	pools_write_status(p, key, pool, &o);
	json_decref(cur);
	json_decref(want);
}

void pools_reconcile_all(struct pools *p)
{
	json_t *keys, *counts, *v;
	size_t i;

	if (!p || !p->cfg.pools_inf || !informer_synced(p->cfg.pools_inf))
		return;
	keys = informer_keys(p->cfg.pools_inf);
	if (json_array_size(keys) == 0) {
		json_decref(keys);
		return;
	}
	counts = pools_count_queued(p);
	json_array_foreach(keys, i, v) {
		const char *key = json_string_value(v);
		json_t *pool = informer_get(p->cfg.pools_inf, key);
		if (!pool)
			continue;
		pools_reconcile_one(p, key, pool, json_integer_value(json_object_get(counts, key)));
		json_decref(pool);
	}
	json_decref(counts);
	json_decref(keys);
}
