#include "deps.h"
#include "expand.h"
#include "task.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEPS_MAX_RESOLVED (128 * 1024)

static const char *flow_of(json_t *task)
{
	return json_string_value(
		json_object_get(json_object_get(task_metadata(task), "labels"), "tasked.dev/flow"));
}

/* UID of the object's controller ownerReference, or NULL. */
static const char *owner_uid(json_t *obj)
{
	json_t *r;
	size_t i;
	json_array_foreach(json_object_get(task_metadata(obj), "ownerReferences"), i, r)
		if (json_is_true(json_object_get(r, "controller")))
			return json_string_value(json_object_get(r, "uid"));
	return NULL;
}

/* Inside a Flow, a sibling is a Task with the same controller (the Flow's UID): a Task that only
 * took a sibling's name or the Flow's label is a stranger whose output must not flow in. */
static int same_flow(json_t *task, json_t *other)
{
	const char *a = owner_uid(task), *b = owner_uid(other);
	return a && b && strcmp(a, b) == 0;
}

int deps_key(json_t *task, const char *name, char *out, size_t outsz)
{
	const char *ns = task_namespace(task);
	const char *flow = flow_of(task);
	int n = flow ? snprintf(out, outsz, "%s/%s-%s", ns ? ns : "", flow, name)
		     : snprintf(out, outsz, "%s/%s", ns ? ns : "", name);
	return n < 0 || (size_t)n >= outsz ? -ENAMETOOLONG : 0;
}

static json_t *task_facts(json_t *obj)
{
	json_t *st = task_status(obj), *f;
	const char *phase = json_string_value(json_object_get(st, "phase"));
	f = json_pack("{ss}", "phase", phase ? phase : "Pending");
	if (json_object_get(st, "exitCode"))
		json_object_set(f, "exitCode", json_object_get(st, "exitCode"));
	else
		json_object_set_new(f, "exitCode", json_null());
	json_object_set(f, "output",
			json_object_get(st, "output") ? json_object_get(st, "output")
						      : json_object());
	return f;
}

enum deps_state deps_check(struct informer *inf, json_t *task, json_t **vars, char *why,
			   size_t whysz)
{
	json_t *deps = json_object_get(task_spec(task), "dependsOn"), *d;
	enum deps_state st = DEPS_READY;
	const char *flow = flow_of(task);
	size_t i;

	*vars = json_object();
	why[0] = '\0';
	if (flow) {
		/* Inside a Flow, `when` sees every sibling (through the label index, no scan). */
		const char *ns = task_namespace(task);
		json_t *keys = ns ? informer_keys_by_label(inf, ns, flow) : json_array(), *k;
		size_t prefix = strlen(ns ? ns : "") + 1 + strlen(flow) + 1;
		json_array_foreach(keys, i, k) {
			json_t *obj;
			if (strlen(json_string_value(k)) <= prefix)
				continue;
			obj = informer_get(inf, json_string_value(k));
			if (obj && same_flow(task, obj))
				json_object_set_new(*vars, json_string_value(k) + prefix,
						    task_facts(obj));
			json_decref(obj);
		}
		json_decref(keys);
	}
	json_array_foreach(deps, i, d) {
		const char *name = json_string_value(d), *phase;
		char key[512];
		json_t *obj;
		if (!name || deps_key(task, name, key, sizeof(key)) < 0)
			continue;
		obj = informer_get(inf, key);
		if (obj && flow && !same_flow(task, obj)) {
			if (st == DEPS_READY) {
				snprintf(why, whysz,
					 "waiting for task %s: %s is not a child of this Flow",
					 name, key);
				st = DEPS_WAIT;
			}
			json_decref(obj);
			continue;
		}
		if (!obj) {
			if (st == DEPS_READY) {
				snprintf(why, whysz,
					 "waiting for task %s, which does not exist (yet)", name);
				st = DEPS_WAIT;
			}
			continue;
		}
		json_object_set_new(*vars, name, task_facts(obj));
		phase = task_phase(obj);
		if (phase_terminal(phase) && !phase_ok(phase)) { /* Failed or Cancelled */
			if (st != DEPS_FAILED)
				snprintf(why, whysz, "dependency %s %s", name,
					 strcmp(phase, "Failed") == 0 ? "failed" : "was cancelled");
			st = DEPS_FAILED;
		} else if (!phase_ok(phase)) {
			if (st == DEPS_READY) {
				/* Not its phase: the dependent hears of a dependency when it finishes,
				 * so "(Pending)" would stay while it runs. */
				snprintf(why, whysz, "waiting for task %s to finish", name);
				st = DEPS_WAIT;
			}
		}
		json_decref(obj);
	}
	/* A failed dependency decides only once nothing else is running: a `when` may still
	 * want to look at the others. */
	if (st == DEPS_FAILED) {
		json_array_foreach(deps, i, d) {
			json_t *f = json_object_get(*vars, json_string_value(d));
			const char *phase = json_string_value(json_object_get(f, "phase"));
			if (!f || !task_phase_terminal(phase)) {
				snprintf(why, whysz,
					 f ? "waiting for task %s to finish"
					   : "waiting for task %s, which does not exist (yet)",
					 json_string_value(d));
				return DEPS_WAIT;
			}
		}
	}
	return st;
}

json_t *deps_condition_vars(json_t *task, json_t *tasks, int64_t attempt)
{
	json_t *md = task_metadata(task);
	json_t *labels = json_object_get(md, "labels");
	/* "o" takes the reference: an incref'd label map or a new empty one (never leaked). */
	return json_pack("{so s{ss?ss?sosI}}", "tasks", tasks, "task", "name",
			 json_string_value(json_object_get(md, "name")), "namespace",
			 json_string_value(json_object_get(md, "namespace")), "labels",
			 labels ? json_incref(labels) : json_object(), "attempt",
			 (json_int_t)attempt);
}

/* Appends s[0..n), doubling every "$" when escape is set: the runner expands $(VAR) in the
 * fields that get escaped values, and a dependency's output is data, never a reference (an
 * output "$(TOKEN)" must not become the queue secret TOKEN). */
static int deps_append(struct buf *out, const char *s, size_t n, int escape)
{
	const char *d;
	int r = 0;
	while (escape && r == 0 && n > 0 && (d = memchr(s, '$', n))) {
		size_t k = (size_t)(d - s) + 1;
		if ((r = buf_append(out, s, k)) == 0)
			r = buf_append(out, "$", 1);
		s += k;
		n -= k;
	}
	return r < 0 ? r : buf_append(out, s, n);
}

/* Looks up tasks.NAME.FIELD[.PATH] (ref without "tasks." and without the parentheses). */
static int deps_lookup(const char *ref, size_t len, json_t *tasks, int escape, struct buf *out,
		       char *err, size_t errsz)
{
	char path[512], *name, *field, *rest, *save = NULL;
	json_t *t, *v;

	if (len >= sizeof(path)) {
		snprintf(err, errsz, "reference too long");
		return -EINVAL;
	}
	memcpy(path, ref, len);
	path[len] = '\0';
	name = strtok_r(path, ".", &save);
	field = strtok_r(NULL, ".", &save);
	rest = strtok_r(NULL, "", &save);
	t = name ? json_object_get(tasks, name) : NULL;
	if (!t) {
		snprintf(err, errsz, "$(tasks.%.*s): no task %s among this task's dependencies",
			 (int)len, ref, name ? name : "");
		return -EINVAL;
	}
	if (!field ||
	    (strcmp(field, "output") != 0 && strcmp(field, "exitCode") != 0 &&
	     strcmp(field, "phase") != 0) ||
	    (strcmp(field, "output") != 0 && rest)) {
		snprintf(err, errsz,
			 "$(tasks.%.*s): only output.PATH, exitCode and phase can be referenced",
			 (int)len, ref);
		return -EINVAL;
	}
	v = json_object_get(t, field);
	for (char *seg = rest ? strtok_r(rest, ".", &save) : NULL; seg;
	     seg = strtok_r(NULL, ".", &save)) {
		char *end;
		long idx = strtol(seg, &end, 10);
		v = json_is_array(v) && *end == '\0' ? json_array_get(v, (size_t)idx)
						     : json_object_get(v, seg);
		if (!v)
			break;
	}
	if (!v) {
		snprintf(err, errsz, "$(tasks.%.*s): the value does not exist", (int)len, ref);
		return -EINVAL;
	}
	if (json_is_string(v))
		return deps_append(out, json_string_value(v), json_string_length(v), escape);
	{
		char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		int r = s ? deps_append(out, s, strlen(s), escape) : -ENOMEM;
		free(s);
		return r;
	}
}

char *deps_resolve_refs(const char *s, json_t *tasks, int escape, char *err, size_t errsz)
{
	struct buf b;
	struct expand_token t;
	enum expand_tok k;
	size_t pos = 0;
	int r = 0;

	buf_init(&b, DEPS_MAX_RESOLVED);
	while (r == 0 && (k = expand_next(s, &pos, &t)) != EXPAND_END) {
		if (k == EXPAND_ESCAPE) { /* keep the escape for the runner */
			r = buf_append(&b, "$$", 2);
		} else if (k == EXPAND_REF && t.name_len >= 6 &&
			   strncmp(s + t.name, "tasks.", 6) == 0) {
			r = deps_lookup(s + t.name + 6, t.name_len - 6, tasks, escape, &b, err,
					errsz);
		} else if (k ==
			   EXPAND_REF) { /* the runner's to expand; a "$(" inside is still ours */
			r = buf_append(&b, "$", 1);
			pos = t.start + 1;
		} else {
			r = buf_append(&b, s + t.start, t.len);
		}
	}
	if (r == 0 && !b.data)
		r = buf_append(&b, "", 0);
	if (r < 0) {
		if (r == -ENOBUFS)
			snprintf(err, errsz, "resolved value exceeds %d bytes", DEPS_MAX_RESOLVED);
		else if (r != -EINVAL) /* deps_lookup explains its own -EINVAL */
			snprintf(err, errsz, "a referenced value could not be inserted (%s)",
				 strerror(-r));
		buf_free(&b);
		return NULL;
	}
	return b.data;
}

static int resolve_in(json_t *parent, const char *key, json_t *tasks, int escape, char *err,
		      size_t errsz)
{
	json_t *v = json_object_get(parent, key);
	char *s;
	if (!json_is_string(v) || !strstr(json_string_value(v), "$(tasks."))
		return 0;
	s = deps_resolve_refs(json_string_value(v), tasks, escape, err, errsz);
	if (!s)
		return -EINVAL;
	json_object_set_new(parent, key, json_string(s));
	free(s);
	return 0;
}

int deps_resolve_dispatch(json_t *msg, json_t *tasks, char *err, size_t errsz)
{
	json_t *cmd = json_object_get(json_object_get(msg, "shell"), "command"), *e, *http;
	size_t i;
	int r;

	json_array_foreach(cmd, i, e) {
		char *s;
		if (!json_is_string(e) || !strstr(json_string_value(e), "$(tasks."))
			continue;
		s = deps_resolve_refs(json_string_value(e), tasks, 1, err, errsz);
		if (!s)
			return -EINVAL;
		json_array_set_new(cmd, i, json_string(s));
		free(s);
	}
	/* A container's command and args: Kubernetes expands $(VAR) in them like the runner. */
	for (int k = 0; k < 2; k++) {
		json_t *arr = json_object_get(json_object_get(msg, "container"),
					      k == 0 ? "command" : "args");
		json_array_foreach(arr, i, e) {
			char *s;
			if (!json_is_string(e) || !strstr(json_string_value(e), "$(tasks."))
				continue;
			s = deps_resolve_refs(json_string_value(e), tasks, 1, err, errsz);
			if (!s)
				return -EINVAL;
			json_array_set_new(arr, i, json_string(s));
			free(s);
		}
	}
	/* Env values reach the task as they are (the runner does not expand them); everything
	 * else here is expanded by the runner, so inserted values are escaped. */
	json_array_foreach(json_object_get(msg, "env"), i, e)
		if ((r = resolve_in(e, "value", tasks, 0, err, errsz)) < 0)
			return r;
	for (int k = 0; k < 2; k++) {
		http = json_object_get(msg, k == 0 ? "http" : "remote");
		if ((r = resolve_in(http, "url", tasks, 1, err, errsz)) < 0 ||
		    (r = resolve_in(http, "body", tasks, 1, err, errsz)) < 0)
			return r;
		json_array_foreach(json_object_get(http, "headers"), i, e)
			if ((r = resolve_in(e, "value", tasks, 1, err, errsz)) < 0)
				return r;
	}
	return 0;
}

struct deps_index {
	pthread_mutex_t lock;
	json_t *rev; /* dep key -> {dependent key: true} */
	json_t *fwd; /* key -> [dep keys] */
};

struct deps_index *deps_index_new(void)
{
	struct deps_index *x = calloc(1, sizeof(*x));
	if (!x)
		return NULL;
	pthread_mutex_init(&x->lock, NULL);
	x->rev = json_object();
	x->fwd = json_object();
	return x;
}

void deps_index_free(struct deps_index *x)
{
	if (!x)
		return;
	json_decref(x->rev);
	json_decref(x->fwd);
	pthread_mutex_destroy(&x->lock);
	free(x);
}

void deps_index_update(struct deps_index *x, const char *key, json_t *obj)
{
	json_t *old, *d, *deps = obj ? json_object_get(task_spec(obj), "dependsOn") : NULL;
	size_t i;

	pthread_mutex_lock(&x->lock);
	old = json_object_get(x->fwd, key);
	json_array_foreach(old, i, d)
		json_object_del(json_object_get(x->rev, json_string_value(d)), key);
	json_object_del(x->fwd, key);
	if (json_array_size(deps) > 0) {
		json_t *keys = json_array();
		json_array_foreach(deps, i, d) {
			char dk[512];
			json_t *set;
			if (i >= DEPS_MAX || !json_is_string(d) ||
			    deps_key(obj, json_string_value(d), dk, sizeof(dk)) < 0)
				continue;
			set = json_object_get(x->rev, dk);
			if (!set) {
				set = json_object();
				json_object_set_new(x->rev, dk, set);
			}
			json_object_set_new(set, key, json_true());
			json_array_append_new(keys, json_string(dk));
		}
		json_object_set_new(x->fwd, key, keys);
	}
	pthread_mutex_unlock(&x->lock);
}

void deps_index_dependents(struct deps_index *x, const char *key,
			   void (*fn)(const char *dep, void *ud), void *ud)
{
	json_t *set, *v;
	const char *k;
	pthread_mutex_lock(&x->lock);
	set = json_copy(json_object_get(x->rev, key));
	pthread_mutex_unlock(&x->lock);
	json_object_foreach(set, k, v)
		fn(k, ud);
	json_decref(set);
}

#define DEPS_CYCLE_MAX_NODES 256 /* bound on the search (each step parses a cached object) */
#define DEPS_CYCLE_MAX_DEPTH 64

static int deps_unfinished(json_t *obj) { return !task_terminal(obj); }

int deps_find_cycle(struct informer *inf, json_t *task, char *path, size_t pathsz)
{
	struct frame {
		json_t *obj;
		size_t next;
	} st[DEPS_CYCLE_MAX_DEPTH];
	char start[512];
	json_t *seen = json_object();
	size_t sp = 0, nodes = 0;
	int found = 0;

	path[0] = '\0';
	if (!seen || flow_of(task) || informer_key_of(task, start, sizeof(start)) < 0) {
		json_decref(seen);
		return 0;
	}
	st[sp++] = (struct frame){ json_incref(task), 0 };
	json_object_set_new(seen, start, json_true());
	while (sp > 0 && !found) {
		struct frame *fr = &st[sp - 1];
		json_t *deps = json_object_get(json_object_get(fr->obj, "spec"), "dependsOn"), *obj;
		const char *name;
		char key[512];
		if (fr->next >= json_array_size(deps) || fr->next >= DEPS_MAX) {
			json_decref(fr->obj);
			sp--;
			continue;
		}
		name = json_string_value(json_array_get(deps, fr->next++));
		if (!name || deps_key(fr->obj, name, key, sizeof(key)) < 0)
			continue;
		if (strcmp(key, start) == 0) {
			found = 1;
			break;
		}
		if (json_object_get(seen, key) || nodes >= DEPS_CYCLE_MAX_NODES ||
		    sp >= DEPS_CYCLE_MAX_DEPTH)
			continue;
		json_object_set_new(seen, key, json_true());
		nodes++;
		obj = informer_get(inf, key);
		if (!obj || !deps_unfinished(obj) || flow_of(obj)) {
			json_decref(obj);
			continue;
		}
		st[sp++] = (struct frame){ obj, 0 };
	}
	if (found) {
		/* The path: the task, each task on the stack, back to the task. */
		size_t len = 0;
		for (size_t i = 0; i <= sp && len < pathsz; i++) {
			const char *n = json_string_value(json_object_get(
				json_object_get(i < sp ? st[i].obj : task, "metadata"), "name"));
			int w = snprintf(path + len, pathsz - len, "%s%s", i ? " -> " : "",
					 n ? n : "?");
			if (w < 0)
				break;
			len += (size_t)w;
		}
	}
	while (sp > 0)
		json_decref(st[--sp].obj);
	json_decref(seen);
	return found;
}
