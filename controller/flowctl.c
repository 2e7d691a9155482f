#include "flowctl.h"
#include "conditions.h"
#include "instance.h"
#include "task.h"
#include "log.h"
#include "sat.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FLOW_MAX_TASKS 256
#define FLOW_LABEL "tasked.dev/flow"

struct flowctl {
	struct flowctl_cfg cfg;
	struct informer *flows;
	struct wq *q;
	pthread_t thread;
	int started;
	pthread_mutex_t lock; /* guards gone and orphaning */
	json_t *gone;         /* key -> UID of a deleted Flow whose children are still to delete */
	json_t *orphaning;    /* UIDs of Flows deleted with propagationPolicy Orphan */
};

struct flowctl *flowctl_new(const struct flowctl_cfg *cfg)
{
	struct flowctl *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->cfg = *cfg;
	f->flows = cfg->flows;
	f->q = wq_new();
	f->gone = json_object();
	f->orphaning = json_object();
	if (!f->q || !f->gone || !f->orphaning) {
		wq_free(f->q);
		json_decref(f->gone);
		json_decref(f->orphaning);
		free(f);
		return NULL;
	}
	pthread_mutex_init(&f->lock, NULL);
	return f;
}

void flowctl_free(struct flowctl *f)
{
	if (!f)
		return;
	flowctl_stop(f);
	wq_free(f->q);
	json_decref(f->gone);
	json_decref(f->orphaning);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

void flowctl_on_task_event(enum informer_event ev, const char *key, json_t *obj, void *ud)
{
	if (ev != INFORMER_RESYNC)
		flowctl_on_task(ud, obj);
}

void flowctl_on_event(enum informer_event ev, const char *key, json_t *obj, void *ud)
{
	struct flowctl *f = ud;
	json_t *md = json_object_get(obj, "metadata"), *fin;
	const char *uid = json_string_value(json_object_get(md, "uid"));
	size_t i;

	if (uid && ev == INFORMER_UPDATED && json_object_get(md, "deletionTimestamp")) {
		/* kubectl delete --cascade=orphan: the garbage collector takes the ownerReferences
		 * off the children before the Flow goes; the user asked to keep them. */
		json_array_foreach(json_object_get(md, "finalizers"), i, fin)
			if (json_is_string(fin) && strcmp(json_string_value(fin), "orphan") == 0) {
				pthread_mutex_lock(&f->lock);
				json_object_set_new(f->orphaning, uid, json_true());
				pthread_mutex_unlock(&f->lock);
			}
	}
	if (uid && ev == INFORMER_DELETED) {
		pthread_mutex_lock(&f->lock);
		if (json_object_get(f->orphaning, uid))
			json_object_del(f->orphaning, uid);
		else
			json_object_set_new(f->gone, key, json_string(uid));
		pthread_mutex_unlock(&f->lock);
	}
	wq_add(f->q, key);
}

void flowctl_on_task(struct flowctl *f, json_t *task)
{
	json_t *md = json_object_get(task, "metadata");
	const char *flow = json_string_value(
		json_object_get(json_object_get(md, "labels"), FLOW_LABEL));
	const char *ns = json_string_value(json_object_get(md, "namespace"));
	char key[512];
	if (!f || !flow || !ns)
		return;
	snprintf(key, sizeof(key), "%s/%s", ns, flow);
	wq_add(f->q, key);
}

/* --- validation ------------------------------------------------------------------------------ */

static int fv_fail(const char **reason, const char *r, char *msg, size_t msgsz, const char *fmt,
		   ...) __attribute__((format(printf, 5, 6)));
static int fv_fail(const char **reason, const char *r, char *msg, size_t msgsz, const char *fmt,
		   ...)
{
	va_list ap;
	*reason = r;
	va_start(ap, fmt);
	vsnprintf(msg, msgsz, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* Iterative DFS with colours; names a task on the cycle. */
static int fv_cycle(json_t *tasks, json_t *index, char *on_cycle, size_t sz)
{
	size_t n = json_array_size(tasks);
	int colour[FLOW_MAX_TASKS] = { 0 }; /* 0 white, 1 grey, 2 black */
	size_t stack[FLOW_MAX_TASKS], edge[FLOW_MAX_TASKS];

	for (size_t root = 0; root < n; root++) {
		size_t sp = 0;
		if (colour[root])
			continue;
		stack[sp] = root;
		edge[sp] = 0;
		colour[root] = 1;
		sp++;
		while (sp > 0) {
			size_t v = stack[sp - 1];
			json_t *deps = json_object_get(json_array_get(tasks, v), "dependsOn");
			if (edge[sp - 1] < json_array_size(deps)) {
				const char *d = json_string_value(
					json_array_get(deps, edge[sp - 1]++));
				size_t w = (size_t)json_integer_value(
					json_object_get(index, d ? d : ""));
				if (colour[w] == 1) {
					snprintf(on_cycle, sz, "%s", d);
					return 1;
				}
				if (colour[w] == 0) {
					colour[w] = 1;
					stack[sp] = w;
					edge[sp] = 0;
					sp++;
				}
			} else {
				colour[v] = 2;
				sp--;
			}
		}
	}
	return 0;
}

int flowctl_validate(json_t *tasks, const char **reason, char *msg, size_t msgsz)
{
	json_t *index = json_object(), *t, *d;
	size_t i, j;
	char cyc[256];
	int r = 0;

	if (json_array_size(tasks) == 0) {
		json_decref(index);
		return fv_fail(reason, "Empty", msg, msgsz, "spec.tasks is empty");
	}
	if (json_array_size(tasks) > FLOW_MAX_TASKS) {
		json_decref(index);
		return fv_fail(reason, "TooManyTasks", msg, msgsz, "a Flow holds at most %d tasks",
			       FLOW_MAX_TASKS);
	}
	json_array_foreach(tasks, i, t) {
		const char *name = json_string_value(json_object_get(t, "name"));
		if (!name || !*name) {
			r = fv_fail(reason, "InvalidSpec", msg, msgsz,
				    "spec.tasks[%zu] has no name", i);
			goto out;
		}
		if (json_object_get(index, name)) {
			r = fv_fail(reason, "DuplicateName", msg, msgsz,
				    "task name %s is used twice", name);
			goto out;
		}
		json_object_set_new(index, name, json_integer((json_int_t)i));
	}
	json_array_foreach(tasks, i, t) {
		json_array_foreach(json_object_get(t, "dependsOn"), j, d) {
			if (!json_is_string(d) || !json_object_get(index, json_string_value(d))) {
				r = fv_fail(reason, "UnknownDependency", msg, msgsz,
					    "task %s depends on %s, which is not in this Flow",
					    json_string_value(json_object_get(t, "name")),
					    json_is_string(d) ? json_string_value(d) : "?");
				goto out;
			}
		}
	}
	if (fv_cycle(tasks, index, cyc, sizeof(cyc))) {
		r = fv_fail(reason, "Cycle", msg, msgsz,
			    "the dependencies form a cycle through task %s", cyc);
		goto out;
	}
out:
	json_decref(index);
	return r;
}

/* --- reconcile ------------------------------------------------------------------------------- */

/* The controller ownerReference of a Task (borrowed), or NULL. */
static json_t *controller_ref(json_t *task)
{
	json_t *r;
	size_t i;
	json_array_foreach(json_object_get(json_object_get(task, "metadata"), "ownerReferences"), i,
			   r)
		if (json_is_true(json_object_get(r, "controller")))
			return r;
	return NULL;
}

int flowctl_owned_by(json_t *task, const char *flow_uid)
{
	json_t *r = controller_ref(task);
	const char *kind = json_string_value(json_object_get(r, "kind"));
	const char *uid = json_string_value(json_object_get(r, "uid"));
	return flow_uid && kind && uid && strcmp(kind, "Flow") == 0 && strcmp(uid, flow_uid) == 0;
}

/* The Flow's children: tasks carrying its label (the cache's label index, no scan) that it owns.
 * Labels can be set by anyone who may create a Task; the controller ownerReference with the
 * Flow's UID is what makes a child. */
static json_t *children_of(struct flowctl *f, const char *ns, const char *flow, const char *uid)
{
	json_t *keys = informer_keys_by_label(f->cfg.tasks, ns, flow), *list = json_array(), *k;
	size_t i;
	json_array_foreach(keys, i, k) {
		json_t *o = informer_get(f->cfg.tasks, json_string_value(k));
		if (o && flowctl_owned_by(o, uid))
			json_array_append(list, o);
		json_decref(o);
	}
	json_decref(keys);
	return list;
}

static int task_path(const char *ns, const char *name, char *out, size_t outsz, const char *suffix)
{
	if (!ns || !*ns || !name)
		return -ENAMETOOLONG;
	return kube_path(out, outsz, KUBE_GV_TASKED, suffix, ns, name, NULL);
}

/* Deletes one Task, only if it still is the object we looked at (UID precondition). */
static int delete_task(struct flowctl *f, json_t *task)
{
	json_t *md = json_object_get(task, "metadata"), *body;
	const char *ns = json_string_value(json_object_get(md, "namespace"));
	const char *name = json_string_value(json_object_get(md, "name"));
	char path[1024];
	struct kube_resp resp;
	int r;

	if (!ns || !name || task_path(ns, name, path, sizeof(path), "tasks") < 0)
		return -EINVAL;
	body = json_pack("{sssss{sO}ss}", "kind", "DeleteOptions", "apiVersion", "v1",
			 "preconditions", "uid", json_object_get(md, "uid"), "propagationPolicy",
			 "Background");
	r = kube_request(f->cfg.kc, "DELETE", path, NULL, body, &resp);
	json_decref(body);
	r = r == 0 && resp.status < 300                            ? 0
	    : r == 0 && (resp.status == 404 || resp.status == 409) ? -ENOENT
								   : -EAGAIN;
	kube_resp_free(&resp);
	return r;
}

/* The Flow uid is gone: delete the children it owned, and nothing else with its label. */
static int delete_children(struct flowctl *f, const char *ns, const char *flow, const char *uid)
{
	json_t *kids = children_of(f, ns, flow, uid), *k;
	size_t i;
	int r = 0;
	json_array_foreach(kids, i, k) {
		int d = delete_task(f, k);
		if (d == 0)
			log_info("deleted a child of a deleted Flow", "namespace", ns, "flow", flow,
				 "task",
				 json_string_value(
					 json_object_get(json_object_get(k, "metadata"), "name")));
		else if (d == -EAGAIN)
			r = -EAGAIN;
	}
	json_decref(kids);
	return r;
}

static int create_child(struct flowctl *f, json_t *flow, json_t *entry)
{
	json_t *md = json_object_get(flow, "metadata"), *spec = json_deep_copy(entry), *body;
	const char *ns = json_string_value(json_object_get(md, "namespace"));
	const char *fname = json_string_value(json_object_get(md, "name"));
	const char *tname = json_string_value(json_object_get(entry, "name"));
	json_t *fq = json_object_get(json_object_get(flow, "spec"), "queue");
	char name[300], path[1024];
	struct kube_resp resp;
	int r;

	snprintf(name, sizeof(name), "%s-%s", fname, tname);
	json_object_del(spec, "name");
	if (json_is_string(fq) && !json_object_get(spec, "queue"))
		json_object_set(spec, "queue", fq);
	body = json_pack("{sssss{sss{ssss}s[{sssssssOsbsb}]}so}", "apiVersion",
			 "tasked.dev/v1alpha1", "kind", "Task", "metadata", "name", name, "labels",
			 FLOW_LABEL, fname, "tasked.dev/flow-task", tname, "ownerReferences",
			 "apiVersion", "tasked.dev/v1alpha1", "kind", "Flow", "name", fname, "uid",
			 json_object_get(md, "uid"), "controller", 1, "blockOwnerDeletion", 1,
			 "spec", spec);
	/* A child belongs to the Flow's install: without the label another controller would run it. */
	if (!body ||
	    instance_copy_label(md, json_object_get(json_object_get(body, "metadata"), "labels")) <
		    0 ||
	    task_path(ns, "", path, sizeof(path), "tasks") < 0) {
		json_decref(body);
		return -ENOMEM;
	}
	r = kube_request(f->cfg.kc, "POST", path, NULL, body, &resp);
	json_decref(body);
	if (r == 0 && resp.status < 300) {
		kube_resp_free(&resp);
		return 0;
	}
	if (r == 0 && resp.status == 409) {
		/* Someone holds the name: the next pass (with the cache caught up) decides whether
		 * it is our own child or a conflict. */
		kube_resp_free(&resp);
		return -EAGAIN;
	}
	log_warn("could not create a Flow's task", "namespace", ns, "flow", fname, "task", name,
		 "error", resp.message);
	r = resp.status == 422 || resp.status == 400 ? -EINVAL : -EAGAIN;
	kube_resp_free(&resp);
	return r;
}

/* Sets spec.cancel on every child that has not finished. */
static void cancel_unfinished(struct flowctl *f, const char *ns, const char *fname, json_t *kids,
			      const char *why)
{
	json_t *e;
	size_t i;
	json_array_foreach(kids, i, e) {
		const char *p = json_string_value(
			json_object_get(json_object_get(e, "status"), "phase"));
		const char *name = json_string_value(
			json_object_get(json_object_get(e, "metadata"), "name"));
		char path[1024];
		struct kube_resp resp;
		json_t *patch;
		if (task_phase_terminal(p) ||
		    json_is_true(json_object_get(json_object_get(e, "spec"), "cancel")) || !name ||
		    task_path(ns, name, path, sizeof(path), "tasks") < 0)
			continue;
		patch = json_pack("{s{sb}}", "spec", "cancel", 1);
		(void)kube_request(f->cfg.kc, "PATCH", path, "application/merge-patch+json", patch,
				   &resp);
		kube_resp_free(&resp);
		json_decref(patch);
		log_info("cancelling a Flow's task", "namespace", ns, "flow", fname, "task", name,
			 "why", why);
	}
}

static int patch_flow_status(struct flowctl *f, json_t *flow, json_t *status)
{
	json_t *patch = json_pack("{sO}", "status", status);
	struct kube_resp resp;
	int r;

	if (!patch)
		return -ENOMEM;
	r = kube_patch_status(f->cfg.kc, KUBE_GV_TASKED, "flows", flow, patch, &resp);
	json_decref(patch);
	if (r == 0 && json_is_object(resp.body))
		informer_mutate(f->flows, resp.body);
	kube_resp_free(&resp);
	return r;
}

/* The conditions of a Flow in phase (conditions.h), keeping what did not change. */
static json_t *flow_conditions(json_t *flow, const char *phase, const char *reason, const char *msg,
			       json_int_t gen)
{
	return cond_run_array(json_object_get(json_object_get(flow, "status"), "conditions"), phase,
			      reason, msg, gen, util_now_ms());
}

/* Writes the status only when it changed in substance (phase, counts, reason, message). */
static int write_if_changed(struct flowctl *f, json_t *flow, json_t *status)
{
	json_t *old = json_object_get(flow, "status");
	const char *keys[] = { "phase", "reason", "message" };
	int same = json_equal(json_object_get(old, "counts"), json_object_get(status, "counts")) &&
		   json_equal(json_object_get(old, "observedGeneration"),
			      json_object_get(status, "observedGeneration"));
	json_t *nc = json_object_get(status, "counts"), *v;
	const char *k;

	for (size_t i = 0; i < UTIL_ARRAY_SIZE(keys); i++)
		same = same &&
		       json_equal(json_object_get(old, keys[i]) ? json_object_get(old, keys[i])
								: json_null(),
				  json_object_get(status, keys[i])
					  ? json_object_get(status, keys[i])
					  : json_null());
	if (same)
		return 0;
	/* A merge patch never removes a key: a phase no child is in any more goes as null, or the
	 * stale count stays and every later reconcile sees a change and patches again. */
	json_object_foreach(json_object_get(old, "counts"), k, v)
		if (json_is_object(nc) && !json_object_get(nc, k))
			json_object_set_new(nc, k, json_null());
	return patch_flow_status(f, flow, status);
}

/* Deletes the children of the deleted Flow recorded for key (unless that is current_uid). */
static int reap_gone(struct flowctl *f, const char *key, const char *ns, const char *fname,
		     const char *current_uid)
{
	char old[256] = "";
	int r;
	pthread_mutex_lock(&f->lock);
	if (json_is_string(json_object_get(f->gone, key)))
		snprintf(old, sizeof(old), "%s", json_string_value(json_object_get(f->gone, key)));
	pthread_mutex_unlock(&f->lock);
	if (!old[0] || (current_uid && strcmp(old, current_uid) == 0))
		return 0;
	r = delete_children(f, ns, fname, old);
	if (r == 0) {
		pthread_mutex_lock(&f->lock);
		json_object_del(f->gone, key);
		pthread_mutex_unlock(&f->lock);
	}
	return r;
}

static void flow_ttl(struct flowctl *f, json_t *flow, const char *key, const char *ns,
		     const char *fname)
{
	json_t *ttl = json_object_get(json_object_get(flow, "spec"), "ttlSecondsAfterFinished");
	const char *ct = json_string_value(
		json_object_get(json_object_get(flow, "status"), "completionTime"));
	int64_t at, due;

	if (!json_is_integer(ttl))
		return;
	if (!ct || util_parse_rfc3339(ct, &at) < 0) {
		wq_add_after(f->q, key, 1000);
		return;
	}
	due = sat_add(at, sat_mul(json_integer_value(ttl), 1000));
	if (util_now_ms() >= due) {
		char path[1024];
		struct kube_resp resp;
		if (task_path(ns, fname, path, sizeof(path), "flows") == 0) {
			(void)kube_request(f->cfg.kc, "DELETE", path, NULL, NULL, &resp);
			kube_resp_free(&resp);
		}
	} else {
		wq_add_after(f->q, key, sat_delay(due, util_now_ms(), INT64_C(3600) * 1000));
	}
}

/* What a Flow's children are at: counts by phase (a new object) and the totals it decides by. */
struct flow_tally {
	int done, failed, cancelled, own_failures, started;
};

static json_t *flow_count(json_t *kids, struct flow_tally *t)
{
	json_t *counts = json_object(), *e;
	size_t i;

	json_array_foreach(kids, i, e) {
		json_t *st = json_object_get(e, "status");
		const char *p = json_string_value(json_object_get(st, "phase"));
		json_t *c;
		p = p ? p : "Pending";
		c = json_object_get(counts, p);
		json_object_set_new(counts, p, json_integer(json_integer_value(c) + 1));
		t->done += task_phase_terminal(p);
		t->failed += strcmp(p, "Failed") == 0 || strcmp(p, "Cancelled") == 0;
		t->cancelled += strcmp(p, "Cancelled") == 0;
		c = json_object_get(st, "reason");
		t->own_failures += strcmp(p, "Failed") == 0 &&
				   !(json_is_string(c) &&
				     strcmp(json_string_value(c), "DependencyFailed") == 0);
		t->started += strcmp(p, "Pending") != 0;
	}
	return counts;
}

static int flow_reconcile(struct flowctl *f, const char *key)
{
	json_t *flow = informer_get(f->flows, key), *md, *spec, *tasks, *kids = NULL, *counts,
	       *status, *e;
	const char *ns, *fname, *uid, *reason = NULL, *phase;
	json_int_t gen;
	char msg[512], ns_buf[256], nm[256], ts[40];
	struct flow_tally tl = { 0 };
	int r = 0, total, missing = 0;
	size_t i;

	if (!flow) {
		const char *slash = strchr(key, '/');
		if (!slash || (size_t)(slash - key) >= sizeof(ns_buf))
			return 0;
		snprintf(ns_buf, sizeof(ns_buf), "%.*s", (int)(slash - key), key);
		snprintf(nm, sizeof(nm), "%s", slash + 1);
		return reap_gone(f, key, ns_buf, nm, NULL);
	}
	md = json_object_get(flow, "metadata");
	spec = json_object_get(flow, "spec");
	tasks = json_object_get(spec, "tasks");
	ns = json_string_value(json_object_get(md, "namespace"));
	fname = json_string_value(json_object_get(md, "name"));
	uid = json_string_value(json_object_get(md, "uid"));
	gen = json_integer_value(json_object_get(md, "generation"));
	if (!ns || !fname || json_object_get(md, "deletionTimestamp"))
		goto out;
	if (flowctl_validate(tasks, &reason, msg, sizeof(msg)) < 0) {
		status = json_pack("{sssssssIso}", "phase", "Failed", "reason", reason, "message",
				   msg, "observedGeneration", gen, "conditions",
				   flow_conditions(flow, "Failed", reason, msg, gen));
		r = write_if_changed(f, flow, status);
		json_decref(status);
		goto out;
	}
	if (!uid)
		goto out;
	/* A predecessor of the same name was deleted: its children go, even if this Flow came
	 * back before we got to them. */
	(void)reap_gone(f, key, ns, fname, uid);
	kids = children_of(f, ns, fname, uid);
	status = json_object_get(flow, "status");
	if (json_is_string(json_object_get(status, "reason")) &&
	    strcmp(json_string_value(json_object_get(status, "reason")), "ChildNameConflict") ==
		    0 &&
	    json_integer_value(json_object_get(status, "observedGeneration")) == gen)
		goto out; /* decided for this generation: a terminal phase does not flip back */
	/* Names first: a Task of a child's name that this Flow does not own is never adopted. One
	 * owned by an earlier Flow of the same name is that Flow's leftover and is deleted. */
	json_array_foreach(tasks, i, e) {
		char child[600];
		json_t *obj, *ref;
		snprintf(child, sizeof(child), "%s/%s-%s", ns, fname,
			 json_string_value(json_object_get(e, "name")));
		obj = informer_get(f->cfg.tasks, child);
		ref = obj ? controller_ref(obj) : NULL;
		if (obj && !flowctl_owned_by(obj, uid)) {
			const char *rk = json_string_value(json_object_get(ref, "kind"));
			const char *rn = json_string_value(json_object_get(ref, "name"));
			if (rk && rn && strcmp(rk, "Flow") == 0 && strcmp(rn, fname) == 0) {
				if (delete_task(f, obj) == -EAGAIN)
					r = -EAGAIN;
				missing++;
			} else {
				snprintf(
					msg, sizeof(msg),
					"task %s-%s already exists and is not owned by this Flow; "
					"delete or rename it, then re-create the Flow (or rename the Flow)",
					fname, json_string_value(json_object_get(e, "name")));
				json_decref(obj);
				cancel_unfinished(f, ns, fname, kids, "a child name is taken");
				status = json_pack("{sssssssIso}", "phase", "Failed", "reason",
						   "ChildNameConflict", "message", msg,
						   "observedGeneration", gen, "conditions",
						   flow_conditions(flow, "Failed",
								   "ChildNameConflict", msg, gen));
				log_warn("a Flow's child name is taken by a Task it does not own",
					 "namespace", ns, "flow", fname, "task", child);
				r = write_if_changed(f, flow, status);
				json_decref(status);
				goto out;
			}
		}
		json_decref(obj);
	}
	if (r < 0)
		goto out;
	/* Create what is missing. */
	json_array_foreach(tasks, i, e) {
		char child[600];
		json_t *obj;
		snprintf(child, sizeof(child), "%s/%s-%s", ns, fname,
			 json_string_value(json_object_get(e, "name")));
		obj = informer_get(f->cfg.tasks, child);
		if (!obj) {
			missing++;
			if ((r = create_child(f, flow, e)) < 0 && r != -EINVAL)
				goto out;
		}
		json_decref(obj);
	}
	counts = flow_count(kids, &tl);
	total = (int)json_array_size(tasks);
	/* failFast: the first failure cancels everything not yet finished. */
	if (tl.failed && json_is_true(json_object_get(spec, "failFast")))
		cancel_unfinished(f, ns, fname, kids, "failFast");
	if (tl.done == total && missing == 0) {
		/* Cancelled when tasks were cancelled and none failed on its own (only dependents
		 * of the cancelled ones): people stopped the run. A failFast cancel after a failure
		 * leaves the failure deciding. */
		int stopped = tl.cancelled > 0 && tl.own_failures == 0;
		phase = !tl.failed ? "Succeeded" : stopped ? "Cancelled" : "Failed";
		reason = !tl.failed ? "Succeeded" : stopped ? "TaskCancelled" : "TaskFailed";
		snprintf(msg, sizeof(msg), "%d of %d tasks failed or were cancelled", tl.failed,
			 total);
		if (stopped)
			snprintf(msg, sizeof(msg), "%d of %d tasks were cancelled", tl.cancelled,
				 total);
		if (!tl.failed)
			snprintf(msg, sizeof(msg), "all %d tasks finished", total);
	} else {
		phase = tl.started ? "Running" : "Pending";
		reason = phase;
		snprintf(msg, sizeof(msg), "%d of %d tasks finished", tl.done, total);
	}
	status = json_pack("{sssssssOsI}", "phase", phase, "reason", reason, "message", msg,
			   "counts", counts, "observedGeneration", gen);
	json_decref(counts);
	json_object_set_new(status, "conditions", flow_conditions(flow, phase, reason, msg, gen));
	util_rfc3339(util_now_ms(), ts, sizeof(ts));
	if (!json_object_get(json_object_get(flow, "status"), "startTime"))
		json_object_set_new(status, "startTime", json_string(ts));
	if (task_phase_terminal(phase) &&
	    !json_object_get(json_object_get(flow, "status"), "completionTime"))
		json_object_set_new(status, "completionTime", json_string(ts));
	r = write_if_changed(f, flow, status);
	json_decref(status);
	/* ttlSecondsAfterFinished: delete the Flow (its children follow). */
	if (r == 0 && task_phase_terminal(phase))
		flow_ttl(f, flow, key, ns, fname);
out:
	json_decref(kids);
	json_decref(flow);
	return r;
}

static void *flow_worker(void *arg)
{
	struct flowctl *f = arg;
	char *key;
	while ((key = wq_get(f->q))) {
		int r = 0;
		if (f->cfg.may_act && !f->cfg.may_act(f->cfg.may_act_ud))
			wq_add_after(f->q, key, 2000);
		else
			r = flow_reconcile(f, key);
		if (r == -EAGAIN)
			wq_add_rate_limited(f->q, key);
		else
			wq_forget(f->q, key);
		wq_done(f->q, key);
		free(key);
	}
	return NULL;
}

int flowctl_start(struct flowctl *f)
{
	if (pthread_create(&f->thread, NULL, flow_worker, f) != 0)
		return -EAGAIN;
	f->started = 1;
	return 0;
}

void flowctl_stop(struct flowctl *f)
{
	if (!f->started)
		return;
	wq_shutdown(f->q);
	pthread_join(f->thread, NULL);
	f->started = 0;
}

static void requeue_flow(const char *key, json_t *obj, void *ud)
{
	struct flowctl *f = ud;
	wq_add(f->q, key);
}

void flowctl_resume(struct flowctl *f)
{
	if (f->flows)
		informer_foreach(f->flows, requeue_flow, f);
}
