#include "webhook.h"
#include "cel.h"
#include "expand.h"
#include "flowctl.h"
#include "jscan.h"
#include "kube.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REVIEW_GV "admission.k8s.io/v1"

static int deny(char *msg, size_t msgsz, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int deny(char *msg, size_t msgsz, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, msgsz, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* A member that must be a C string: NULL when absent, not a string or holding a NUL. */
static const char *cstr(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	const char *s = json_string_value(v);
	return s && strlen(s) == json_string_length(v) ? s : NULL;
}

/* --- decoding ---------------------------------------------------------------------------------- */

/* request.uid found by scanning, for a review that does not decode as a tree. */
static void salvage_uid(const char *body, size_t len, struct webhook_request *req)
{
	static const char *const path[] = { "request", "uid", NULL };
	size_t vs, ve;
	if (jscan_path(body, len, 0, path, &vs, &ve) == 0 &&
	    jscan_string(body, vs, ve, req->uid, sizeof(req->uid)) < 0)
		req->uid[0] = '\0';
}

json_t *webhook_decode(const char *body, size_t len, struct webhook_request *req, char *err,
		       size_t errsz)
{
	json_error_t je;
	json_t *doc, *rq, *md;
	const char *uid;

	memset(req, 0, sizeof(*req));
	if (len > WEBHOOK_MAX_BODY) {
		snprintf(err, errsz, "the review exceeds %d bytes", WEBHOOK_MAX_BODY);
		return NULL;
	}
	if (jscan_depth(body, len, WEBHOOK_MAX_DEPTH) > WEBHOOK_MAX_DEPTH) {
		salvage_uid(body, len, req);
		snprintf(err, errsz, "the object nests deeper than %d levels", WEBHOOK_MAX_DEPTH);
		return NULL;
	}
	doc = kube_json_loadb(body, len, &je);
	if (!doc) {
		salvage_uid(body, len, req);
		snprintf(err, errsz, "the review does not decode: %s", je.text);
		return NULL;
	}
	rq = json_object_get(doc, "request");
	uid = cstr(rq, "uid");
	if (!json_is_object(rq) || !uid || !*uid || strlen(uid) > WEBHOOK_MAX_UID) {
		snprintf(err, errsz, "request.uid is missing or invalid");
		json_decref(doc);
		return NULL;
	}
	snprintf(req->uid, sizeof(req->uid), "%s", uid);
	if (!cstr(doc, "apiVersion") || strcmp(cstr(doc, "apiVersion"), REVIEW_GV) != 0 ||
	    !cstr(doc, "kind") || strcmp(cstr(doc, "kind"), "AdmissionReview") != 0) {
		snprintf(err, errsz, "not an AdmissionReview %s", REVIEW_GV);
		json_decref(doc);
		return NULL;
	}
	req->kind = cstr(json_object_get(rq, "kind"), "kind");
	req->group = cstr(json_object_get(rq, "kind"), "group");
	req->operation = cstr(rq, "operation");
	req->object = json_object_get(rq, "object");
	req->old_object = json_object_get(rq, "oldObject");
	md = json_object_get(req->object, "metadata");
	req->namespace_ = cstr(rq, "namespace");
	if (!req->namespace_ || !*req->namespace_)
		req->namespace_ = cstr(md, "namespace");
	if (!req->kind || !req->group || !req->operation) {
		snprintf(err, errsz, "request.kind or request.operation is missing");
		json_decref(doc);
		return NULL;
	}
	return doc;
}

/* --- checks ------------------------------------------------------------------------------------ */

static const char *executor_of(json_t *spec)
{
	static const char *const kinds[] = { "shell", "http", "remote", "container" };
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (json_object_get(spec, kinds[i]))
			return kinds[i];
	return NULL;
}

static json_t *policy_of(json_t *queue)
{
	return json_object_get(json_object_get(queue, "spec"), "policy");
}

static int check_executor(json_t *spec, json_t *queue, const char *field, char *msg, size_t msgsz)
{
	json_t *allowed = json_object_get(policy_of(queue), "executors"), *e;
	const char *exec = executor_of(spec);
	size_t i;

	if (!queue || !exec || !json_is_array(allowed))
		return 0; /* no queue (yet): its defaults are checked when the task runs */
	json_array_foreach(allowed, i, e)
		if (json_is_string(e) && strcmp(json_string_value(e), exec) == 0)
			return 0;
	return deny(msg, msgsz,
		    "%s.%s: the %s executor is not allowed by TaskQueue %s (policy.executors)",
		    field, exec, exec, cstr(json_object_get(queue, "metadata"), "name") ?: "?");
}

static int secret_declared(json_t *queue, const char *name)
{
	json_t *e;
	size_t i;
	json_array_foreach(json_object_get(json_object_get(queue, "spec"), "secrets"), i, e) {
		const char *n = cstr(e, "name");
		if (n && strcmp(n, name) == 0)
			return 1;
	}
	return 0;
}

/* valueFrom.queueSecret in list[i] (env or headers) must be declared by the queue. */
static int check_secret_list(json_t *list, json_t *queue, const char *field, char *msg,
			     size_t msgsz)
{
	json_t *e;
	size_t i;
	json_array_foreach(list, i, e) {
		json_t *v = json_object_get(json_object_get(e, "valueFrom"), "queueSecret");
		const char *n = json_string_value(v);
		if (!v)
			continue;
		if (!n || strlen(n) != json_string_length(v) || !secret_declared(queue, n))
			return deny(
				msg, msgsz,
				"%s[%zu].valueFrom.queueSecret: TaskQueue %s declares no secret %s "
				"(spec.secrets)",
				field, i, cstr(json_object_get(queue, "metadata"), "name") ?: "?",
				n ? n : "?");
	}
	return 0;
}

static int check_secrets(json_t *spec, json_t *queue, const char *field, char *msg, size_t msgsz)
{
	char f[256];
	int r;

	if (!queue)
		return 0;
	snprintf(f, sizeof(f), "%s.env", field);
	if ((r = check_secret_list(json_object_get(spec, "env"), queue, f, msg, msgsz)) < 0)
		return r;
	for (int k = 0; k < 2; k++) {
		const char *ex = k == 0 ? "http" : "remote";
		json_t *h = json_object_get(spec, ex), *cs;
		snprintf(f, sizeof(f), "%s.%s.headers", field, ex);
		if ((r = check_secret_list(json_object_get(h, "headers"), queue, f, msg, msgsz)) <
		    0)
			return r;
		cs = json_object_get(json_object_get(json_object_get(h, "oauth2"), "clientSecret"),
				     "queueSecret");
		if (cs && (!json_string_value(cs) ||
			   strlen(json_string_value(cs)) != json_string_length(cs) ||
			   !secret_declared(queue, json_string_value(cs))))
			return deny(
				msg, msgsz,
				"%s.%s.oauth2.clientSecret.queueSecret: TaskQueue %s declares no "
				"secret %s (spec.secrets)",
				field, ex, cstr(json_object_get(queue, "metadata"), "name") ?: "?",
				json_string_value(cs) ? json_string_value(cs) : "?");
	}
	return 0;
}

/* The names $(tasks.NAME…) and `when` may use: the dependencies, or inside a Flow every
 * sibling (what deps_check gives the task at run time). New object of name → true. */
static json_t *known_tasks(json_t *spec, json_t *flow_tasks)
{
	json_t *names = json_object(), *e;
	json_t *src = flow_tasks ? flow_tasks : json_object_get(spec, "dependsOn");
	size_t i;

	if (!names)
		return NULL;
	json_array_foreach(src, i, e) {
		const char *n = flow_tasks ? cstr(e, "name") : json_string_value(e);
		if (n && *n &&
		    (!flow_tasks || strlen(n) == json_string_length(json_object_get(e, "name"))))
			json_object_set_new(names, n, json_true());
	}
	return names;
}

static struct cel_limits limits_of(json_t *queue)
{
	struct cel_limits l;
	json_t *c = json_object_get(json_object_get(json_object_get(queue, "spec"), "policy"),
				    "conditions");
	cel_limits_default(&l);
	if (json_is_integer(json_object_get(c, "timeoutMilliseconds")))
		l.timeout_ms = json_integer_value(json_object_get(c, "timeoutMilliseconds"));
	if (json_is_integer(json_object_get(c, "maxCost")))
		l.max_cost = json_integer_value(json_object_get(c, "maxCost"));
	if (json_is_integer(json_object_get(c, "maxDepth")))
		l.max_depth = (int)json_integer_value(json_object_get(c, "maxDepth"));
	return l;
}

/* Syntax, length and nesting at compile time; then the cost, evaluated once with every known
 * task Succeeded with exit code 0 and an empty output. Only a limit hit in that evaluation is a
 * refusal: a missing output key or a timeout (a busy machine) says nothing about the spec. */
static int check_when(json_t *spec, json_t *names, json_t *queue, const char *field, char *msg,
		      size_t msgsz)
{
	json_t *w = json_object_get(spec, "when"), *tasks, *vars, *n;
	struct cel_limits l = limits_of(queue);
	struct cel_program *p = NULL;
	const char *name;
	char err[512] = "";
	int r, val;

	if (!w || json_is_null(w))
		return 0;
	if (!json_is_string(w) || strlen(json_string_value(w)) != json_string_length(w))
		return deny(msg, msgsz, "%s.when: must be a string without NUL", field);
	if (!*json_string_value(w))
		return 0;
	r = cel_compile(json_string_value(w), &l, &p, err, sizeof(err));
	if (r == -ENOMEM)
		return r;
	if (r < 0)
		return deny(msg, msgsz, "%s.when: %s", field, err);
	tasks = json_object();
	json_object_foreach(names, name, n)
		if (!tasks ||
		    json_object_set_new(tasks, name,
					json_pack("{sssiso}", "phase", "Succeeded", "exitCode", 0,
						  "output", json_object())) < 0)
			break;
	vars = json_pack("{sos{sssss{}si}}", "tasks", tasks, "task", "name", "", "namespace", "",
			 "labels", "attempt", 1);
	r = vars && json_object_size(tasks) == json_object_size(names)
		    ? cel_eval_bool(p, vars, &l, &val, err, sizeof(err))
		    : -ENOMEM;
	json_decref(vars);
	cel_program_free(p);
	if (r == -ENOMEM)
		return r;
	if (r == -E2BIG)
		return deny(
			msg, msgsz,
			"%s.when: %s (evaluated with every dependency Succeeded; the limits are "
			"the TaskQueue's policy.conditions)",
			field, err);
	return 0;
}

/* One $(tasks.NAME.FIELD…) reference (ref: what follows "tasks."). */
static int check_ref(const char *ref, size_t len, json_t *names, int in_flow, const char *field,
		     char *msg, size_t msgsz)
{
	const char *dot = memchr(ref, '.', len), *f, *fend;
	char name[256];
	size_t nl = dot ? (size_t)(dot - ref) : len, fl;

	if (nl >= sizeof(name) || memchr(ref, '\0', nl))
		return deny(msg, msgsz, "%s: $(tasks.%.*s…): the task name is too long", field, 64,
			    ref);
	memcpy(name, ref, nl);
	name[nl] = '\0';
	if (!json_object_get(names, name))
		return deny(msg, msgsz, "%s: $(tasks.%.*s) refers to task %s, which is not %s",
			    field, (int)(len > 200 ? 200 : len), ref, name,
			    in_flow ? "in this Flow" : "in dependsOn");
	f = dot ? dot + 1 : ref + len;
	fend = memchr(f, '.', (size_t)(ref + len - f));
	fl = (size_t)((fend ? fend : ref + len) - f);
	if ((fl == 6 && memcmp(f, "output", 6) == 0) ||
	    (!fend && ((fl == 8 && memcmp(f, "exitCode", 8) == 0) ||
		       (fl == 5 && memcmp(f, "phase", 5) == 0))))
		return 0;
	return deny(msg, msgsz,
		    "%s: $(tasks.%.*s): only output.PATH, exitCode and phase can be referenced",
		    field, (int)(len > 200 ? 200 : len), ref);
}

/* Every $(tasks.…) in the string v, scanned as deps_resolve_refs does. */
static int check_refs_in(json_t *v, json_t *names, int in_flow, const char *field, char *msg,
			 size_t msgsz)
{
	const char *s = json_string_value(v);
	struct expand_token t;
	enum expand_tok k;
	size_t pos = 0;
	int r;

	if (!s || !strstr(s, "$(tasks."))
		return 0;
	while ((k = expand_next(s, &pos, &t)) != EXPAND_END) {
		if (k != EXPAND_REF)
			continue;
		if (t.name_len >= 6 && strncmp(s + t.name, "tasks.", 6) == 0) {
			if ((r = check_ref(s + t.name + 6, t.name_len - 6, names, in_flow, field,
					   msg, msgsz)) < 0)
				return r;
		} else {
			pos = t.start + 1; /* not ours: a "$(" inside it still is */
		}
	}
	return 0;
}

static int check_refs(json_t *spec, json_t *names, int in_flow, const char *field, char *msg,
		      size_t msgsz)
{
	json_t *e;
	char f[256];
	size_t i;
	int r;

	json_array_foreach(json_object_get(json_object_get(spec, "shell"), "command"), i, e) {
		snprintf(f, sizeof(f), "%s.shell.command[%zu]", field, i);
		if ((r = check_refs_in(e, names, in_flow, f, msg, msgsz)) < 0)
			return r;
	}
	json_array_foreach(json_object_get(spec, "env"), i, e) {
		snprintf(f, sizeof(f), "%s.env[%zu].value", field, i);
		if ((r = check_refs_in(json_object_get(e, "value"), names, in_flow, f, msg,
				       msgsz)) < 0)
			return r;
	}
	for (int k = 0; k < 2; k++) {
		const char *ex = k == 0 ? "http" : "remote";
		json_t *h = json_object_get(spec, ex);
		for (int m = 0; m < 2; m++) {
			snprintf(f, sizeof(f), "%s.%s.%s", field, ex, m == 0 ? "url" : "body");
			if ((r = check_refs_in(json_object_get(h, m == 0 ? "url" : "body"), names,
					       in_flow, f, msg, msgsz)) < 0)
				return r;
		}
		json_array_foreach(json_object_get(h, "headers"), i, e) {
			snprintf(f, sizeof(f), "%s.%s.headers[%zu].value", field, ex, i);
			if ((r = check_refs_in(json_object_get(e, "value"), names, in_flow, f, msg,
					       msgsz)) < 0)
				return r;
		}
	}
	return 0;
}

/* refs: whether to check $(tasks.…) references (not for a Flow's child: its names are siblings
 * the Flow's own review checked). */
static int check_task(json_t *spec, json_t *flow_tasks, json_t *queue, int refs, const char *field,
		      char *msg, size_t msgsz)
{
	json_t *names;
	int r;

	if (!json_is_object(spec))
		return deny(msg, msgsz, "%s: must be an object", field);
	if ((r = check_executor(spec, queue, field, msg, msgsz)) < 0 ||
	    (r = check_secrets(spec, queue, field, msg, msgsz)) < 0)
		return r;
	names = known_tasks(spec, flow_tasks);
	if (!names)
		return -ENOMEM;
	r = check_when(spec, names, queue, field, msg, msgsz);
	if (r == 0 && refs)
		r = check_refs(spec, names, flow_tasks != NULL, field, msg, msgsz);
	json_decref(names);
	return r;
}

int webhook_check_task(json_t *spec, json_t *flow_tasks, json_t *queue, const char *field,
		       char *msg, size_t msgsz)
{
	return check_task(spec, flow_tasks, queue, 1, field, msg, msgsz);
}

static const char *queue_name(json_t *spec, json_t *fallback)
{
	const char *q = cstr(spec, "queue");
	if (!q && fallback)
		q = cstr(fallback, "queue");
	return q && *q ? q : "default";
}

int webhook_check_flow(json_t *flow, webhook_queue_fn queue, void *ud, const char *ns, char *msg,
		       size_t msgsz)
{
	json_t *spec = json_object_get(flow, "spec"), *tasks = json_object_get(spec, "tasks"), *e;
	const char *reason = NULL;
	char m[768], field[64];
	size_t i;
	int r = 0;

	if (!json_is_array(tasks))
		return deny(msg, msgsz, "spec.tasks: must be a list of tasks");
	json_array_foreach(tasks, i, e)
		if (!json_is_object(e) || !cstr(e, "name"))
			return deny(msg, msgsz, "spec.tasks[%zu].name: must be a string", i);
	if (flowctl_validate(tasks, &reason, m, sizeof(m)) < 0)
		return deny(msg, msgsz, "spec.tasks: %s", m);
	json_array_foreach(tasks, i, e) {
		json_t *q = queue && ns ? queue(ns, queue_name(e, spec), ud) : NULL;
		snprintf(field, sizeof(field), "spec.tasks[%zu]", i);
		r = webhook_check_task(e, tasks, q, field, msg, msgsz);
		json_decref(q);
		if (r < 0)
			return r;
	}
	return 0;
}

/* A Task a Flow created: its references name siblings, which the Flow's review checked. */
static int flow_child(json_t *task)
{
	json_t *e;
	size_t i;
	json_array_foreach(json_object_get(json_object_get(task, "metadata"), "ownerReferences"), i,
			   e) {
		const char *k = cstr(e, "kind");
		if (json_is_true(json_object_get(e, "controller")) && k && strcmp(k, "Flow") == 0)
			return 1;
	}
	return 0;
}

void webhook_review(const struct webhook_request *req, webhook_queue_fn queue, void *ud,
		    struct webhook_verdict *v)
{
	json_t *spec = json_object_get(req->object, "spec"), *q;
	int r = 0;

	memset(v, 0, sizeof(*v));
	v->allowed = 1;
	if (strcmp(req->group, "tasked.dev") != 0 ||
	    (strcmp(req->operation, "CREATE") != 0 && strcmp(req->operation, "UPDATE") != 0))
		return;
	if (strcmp(req->kind, "Task") != 0 && strcmp(req->kind, "Flow") != 0)
		return;
	if (!json_is_object(req->object)) {
		r = deny(v->message, sizeof(v->message), "request.object: missing");
		goto out;
	}
	/* An update that leaves the spec alone (status, labels, finalizers) is not reviewed: an
	 * object admitted while the webhook was away must stay deletable and labelable. */
	if (strcmp(req->operation, "UPDATE") == 0 &&
	    json_equal(spec, json_object_get(req->old_object, "spec")))
		return;
	if (strcmp(req->kind, "Flow") == 0) {
		r = webhook_check_flow(req->object, queue, ud, req->namespace_, v->message,
				       sizeof(v->message));
	} else {
		q = queue && req->namespace_ ? queue(req->namespace_, queue_name(spec, NULL), ud)
					     : NULL;
		r = check_task(spec, NULL, q, !flow_child(req->object), "spec", v->message,
			       sizeof(v->message));
		json_decref(q);
	}
out:
	if (r == -ENOMEM)
		v->error = 1; /* no verdict: the API server applies the failurePolicy */
	else if (r < 0) {
		v->allowed = 0;
		v->code = 403;
	}
}

/* --- encoding ---------------------------------------------------------------------------------- */

char *webhook_encode(const char *uid, const struct webhook_verdict *v, size_t *len)
{
	json_t *resp = json_pack("{sssb}", "uid", uid, "allowed", v->allowed), *doc;
	char *s;

	if (!resp)
		return NULL;
	if (!v->allowed)
		json_object_set_new(resp, "status",
				    json_pack("{sissssss}", "code", v->code ? v->code : 403,
					      "reason", "Forbidden", "message", v->message,
					      "status", "Failure"));
	if (v->warning[0])
		json_object_set_new(resp, "warnings", json_pack("[s]", v->warning));
	doc = json_pack("{ssssso}", "apiVersion", REVIEW_GV, "kind", "AdmissionReview", "response",
			resp);
	s = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
	json_decref(doc);
	if (s && len)
		*len = strlen(s);
	return s;
}

char *webhook_handle(const char *body, size_t len, webhook_queue_fn queue, void *ud, int *status,
		     size_t *outlen)
{
	struct webhook_request req;
	struct webhook_verdict v;
	char err[256] = "";
	json_t *doc = webhook_decode(body, len, &req, err, sizeof(err));
	char *out;

	*status = 200;
	if (!doc && !req.uid[0]) {
		*status = 400;
		out = strdup(err[0] ? err : "not an AdmissionReview");
		if (out && outlen)
			*outlen = strlen(out);
		return out;
	}
	if (!doc) {
		/* The controller checks it again at run time; a review that cannot be read is not
		 * a reason to refuse what the schema accepted. */
		memset(&v, 0, sizeof(v));
		v.allowed = 1;
		snprintf(v.warning, sizeof(v.warning), "tasked: not validated at admission: %.200s",
			 err);
	} else {
		webhook_review(&req, queue, ud, &v);
	}
	if (v.error) {
		json_decref(doc);
		*status = 500;
		out = strdup("out of memory");
		if (out && outlen)
			*outlen = strlen(out);
		return out;
	}
	out = webhook_encode(req.uid, &v, outlen);
	json_decref(doc);
	return out;
}
