#include "taskctl_dispatch.h"
#include "deps.h"
#include "podpolicy.h"
#include "resources.h"
#include "proto.h"
#include "sat.h"
#include "task.h"
#include "util.h"

#include <errno.h>
#include <stdbool.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
			if (len == 4 && strcmp(k, "input") == 0) /* spec.input: passed on as JSON */
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
	snprintf(err, errsz,
		 "%s contains a NUL byte (\\u0000), which a command, environment variable, "
		 "header or URL cannot carry",
		 path);
	return -EINVAL;
}

/* The dispatch fields of an http or remote task (docs/protocol.md); header values and the oauth2
 * client secret from queue secrets are added by apply_queue. NULL with err set on a bad spec. */
static json_t *dispatch_http(json_t *spec, const char *kind, char *err, size_t errsz)
{
	json_t *exec_obj;
	size_t i;
	json_t *src = json_object_get(spec, kind), *hdrs = json_array(), *h, *v;
	static const char *const http_fields[] = { "method",        "body",
						   "successCodes",  "followRedirects",
						   "maxRedirects",  "maxResponseBytes",
						   "timeoutSeconds" };
	const char *u = json_string_value(json_object_get(src, "url"));

	if (!json_is_object(src) || !u || !*u || strlen(u) > PROTO_MAX_URL) {
		snprintf(err, errsz, "spec.%s.url is required (at most %d bytes)", kind,
			 PROTO_MAX_URL);
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
			continue; /* a queue secret: resolved at dispatch (apply_queue) */
		v = json_object_get(h, "value");
		if (json_is_string(v) && (strpbrk(json_string_value(v), "\r\n") ||
					  json_string_length(v) > PROTO_MAX_HEADER_VALUE)) {
			snprintf(err, errsz,
				 "spec.%s.headers[%zu] (%s): the value must be at most %d bytes "
				 "without CR or LF",
				 kind, i, hn, PROTO_MAX_HEADER_VALUE);
			json_decref(hdrs);
			json_decref(exec_obj);
			return NULL;
		}
		json_array_append_new(hdrs,
				      json_pack("{ssss}", "name", hn, "value",
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
		    json_integer_value(json_object_get(src, "maxResponseBytes")) >
			    (INT64_C(1) << 40) ||
		    json_string_length(json_object_get(src, "body")) >
			    PROTO_MAX_MESSAGE_DEFAULT / 2) {
			snprintf(
				err, errsz,
				"spec.http: body, timeoutSeconds or maxResponseBytes out of range");
			json_decref(exec_obj);
			return NULL;
		}
		json_array_foreach(json_object_get(o, "scopes"), i, v) {
			const unsigned char *sc = (const unsigned char *)json_string_value(v);
			int bad = !sc || !*sc;
			for (; sc && *sc; sc++)
				bad |= *sc <= 0x20 || *sc >= 0x7f || *sc == '"' || *sc == '\\';
			if (bad) {
				snprintf(
					err, errsz,
					"spec.http.oauth2.scopes[%zu] is not an OAuth2 scope token",
					i);
				json_decref(exec_obj);
				return NULL;
			}
		}
		if (o) {
			v = json_pack("{ss}", "tokenURL",
				      json_string_value(json_object_get(o, "tokenURL"))
					      ? json_string_value(json_object_get(o, "tokenURL"))
					      : "");
			if (json_is_string(json_object_get(o, "clientID")))
				json_object_set(v, "clientID", json_object_get(o, "clientID"));
			if (json_is_array(json_object_get(o, "scopes")))
				json_object_set(v, "scopes", json_object_get(o, "scopes"));
			json_object_set_new(exec_obj, "oauth2", v);
		}
	}
	if (!exec_obj)
		snprintf(err, errsz, "out of memory");
	return exec_obj;
}

json_t *taskctl_build_dispatch(json_t *task, int64_t attempt, int64_t now_ms, char *err,
			       size_t errsz)
{
	json_t *md = task_metadata(task), *spec = task_spec(task), *shell, *env, *e;
	json_t *msg, *outenv, *exec_obj = NULL;
	const char *kinds[] = { "shell", "http", "remote", "container" }, *kind = NULL;
	json_int_t timeout;
	size_t i;

	if (taskctl_check_nul(spec, err, errsz) < 0)
		return NULL;

	for (i = 0; i < UTIL_ARRAY_SIZE(kinds); i++) {
		if (!json_object_get(spec, kinds[i]))
			continue;
		if (kind) {
			snprintf(
				err, errsz,
				"exactly one of spec.shell, spec.http, spec.remote and spec.container must be set");
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
	} else if (strcmp(kind, "container") == 0) {
		/* Checked against the queue's policy in apply_queue (podpolicy.h). */
		exec_obj = json_deep_copy(json_object_get(spec, "container"));
		if (!json_is_object(exec_obj)) {
			snprintf(err, errsz, "spec.container must be an object");
			json_decref(exec_obj);
			return NULL;
		}
	} else {
		exec_obj = dispatch_http(spec, kind, err, errsz);
		if (!exec_obj)
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
			json_decref(exec_obj);
			return NULL;
		}
		if (json_object_get(e, "valueFrom"))
			continue; /* queue secrets are resolved at dispatch (apply_queue) */
		json_array_append_new(outenv,
				      json_pack("{ssss}", "name", name, "value",
						json_is_string(val) ? json_string_value(val) : ""));
	}
	timeout = json_integer_value(json_object_get(spec, "timeoutSeconds"));
	msg = json_pack("{sssssIssss sI so so}", "type", "dispatch", "taskUid",
			json_string_value(json_object_get(md, "uid")), "attempt",
			(json_int_t)attempt, "namespace",
			json_string_value(json_object_get(md, "namespace")), "name",
			json_string_value(json_object_get(md, "name")), "deadline",
			(json_int_t)(timeout > 0 ? sat_after_s(now_ms, timeout) : 0),
			kind ? kind : "shell", exec_obj, "env", outenv);
	if (!msg) {
		snprintf(err, errsz, "task metadata incomplete");
		return NULL;
	}
	if (json_object_get(spec, "input"))
		json_object_set(msg, "input", json_object_get(spec, "input"));
	json_object_set_new(msg, "limits",
			    json_pack("{sIsi}", "maxOutputBytes", (json_int_t)10 * 1024 * 1024,
				      "logTailBytes", 4096));
	return msg;
}

/* Whether a secret's n bytes can travel as an environment variable or a header: JSON strings
 * (the dispatch) are UTF-8, and a NUL would end the value early as a C string on the runner. */
static bool secret_is_text(const char *v, size_t n)
{
	json_t *j;

	if (memchr(v, '\0', n))
		return false;
	j = json_stringn(v, n);
	json_decref(j);
	return j != NULL;
}

/* Resolves one queue secret by name for what (named in errors, never the value). text: the value
 * becomes an environment variable or header, so it must be text; otherwise (a volume) any bytes
 * do and *ret is only a presence check. */
static int queue_secret(const struct taskctl_secret_reader *rd, const char *ns, json_t *qspec,
			const char *sname, const char *what, bool text, char **ret,
			const char **reason, char *err, size_t errsz)
{
	json_t *decl = NULL, *d;
	size_t j, n = 0;
	int r;

	json_array_foreach(json_object_get(qspec, "secrets"), j, d)
		if (json_is_string(json_object_get(d, "name")) &&
		    strcmp(json_string_value(json_object_get(d, "name")), sname) == 0)
			decl = d;
	if (!decl) {
		*reason = "SecretNotFound";
		snprintf(err, errsz, "%s: queue secret %s is not declared by the task's TaskQueue",
			 what, sname);
		return -EINVAL;
	}
	r = rd->read(
		rd->ud, ns,
		json_string_value(json_object_get(json_object_get(decl, "secretKeyRef"), "name")),
		json_string_value(json_object_get(json_object_get(decl, "secretKeyRef"), "key")),
		ret, &n);
	if (r == 0 && text && !secret_is_text(*ret, n)) {
		OPENSSL_cleanse(*ret, n);
		free(*ret);
		*ret = NULL;
		*reason = "InvalidSpec";
		snprintf(err, errsz,
			 "%s: queue secret %s holds a NUL byte or bytes that are not UTF-8, and an "
			 "environment variable or header carries text only (mount it as a volume "
			 "instead)",
			 what, sname);
		return -EINVAL;
	}
	if (r == 0 && !text) {
		OPENSSL_cleanse(*ret, n);
		free(*ret);
		*ret = NULL;
	}
	if (r == -EAGAIN)
		return r;
	if (r == -EPERM) {
		*reason = "SecretNotFound";
		snprintf(
			err, errsz,
			"%s: queue secret %s names Secret %s, which lacks the label %s: \"true\" "
			"(only Secrets labelled so by someone who may write Secrets are usable by TaskQueues)",
			what, sname,
			json_string_value(
				json_object_get(json_object_get(decl, "secretKeyRef"), "name")),
			TASKCTL_QUEUE_SECRET_LABEL);
		return -EINVAL;
	}
	if (r < 0) {
		*reason = "SecretNotFound";
		snprintf(err, errsz,
			 "%s: queue secret %s refers to a Secret key that does not exist", what,
			 sname);
		return -EINVAL;
	}
	return 0;
}

static json_t *secret_decl(json_t *qspec, const char *sname)
{
	json_t *d;
	size_t j;
	json_array_foreach(json_object_get(qspec, "secrets"), j, d)
		if (json_is_string(json_object_get(d, "name")) &&
		    strcmp(json_string_value(json_object_get(d, "name")), sname) == 0)
			return json_object_get(d, "secretKeyRef");
	return NULL;
}

/* A container task: the queue's container policy decides (podpolicy.h); what the pod needs goes
 * into msg.pod. Queue secrets are checked (declared, opted in, present) and then referenced by
 * the pod, never copied into it; their values stay in msg.env (secret: true) only to mask the
 * status. */
static int apply_container(const struct taskctl_secret_reader *rd, json_t *task, json_t *msg,
			   json_t *queue, json_t *vars, const char **reason, char *err,
			   size_t errsz)
{
	json_t *qspec = json_object_get(queue, "spec"), *spec = task_spec(task), *e, *pod, *refs;
	const char *qname = json_string_value(
		json_object_get(json_object_get(queue, "metadata"), "name"));
	const char *ns = task_namespace(task);
	struct podpolicy p;
	struct podres res;
	int64_t to = json_integer_value(json_object_get(spec, "timeoutSeconds"));
	size_t i;
	int r;

	if (to <= 0)
		to = json_integer_value(
			json_object_get(json_object_get(qspec, "defaults"), "timeoutSeconds"));
	r = podpolicy_parse(queue ? json_object_get(json_object_get(qspec, "policy"), "container")
				  : NULL,
			    &p, err, errsz);
	if (r == 0)
		r = podpolicy_check(&p, json_object_get(spec, "container"), qname, &res, reason,
				    err, errsz);
	else
		*reason = "PolicyDenied";
	if (r < 0) {
		podpolicy_release(&p);
		return -EINVAL;
	}
	refs = json_object();
	pod = json_pack("{sssIsIsbsIsIso}", "queue", qname ? qname : "default", "memoryBytes",
			(json_int_t)res.memory_bytes, "cpuMillis", (json_int_t)res.cpu_milli,
			"networkDisabled", p.network_disabled, "maxOutputBytes",
			(json_int_t)p.max_output_bytes, "timeoutSeconds",
			(json_int_t)(to > 0 ? to : 0), "secretRefs", refs);
	podpolicy_release(&p);
	if (!pod || json_object_set_new(msg, "pod", pod) < 0)
		return -EAGAIN;
	json_array_foreach(json_object_get(spec, "env"), i, e) {
		const char *sname = json_string_value(
			json_object_get(json_object_get(e, "valueFrom"), "queueSecret"));
		const char *name = json_string_value(json_object_get(e, "name"));
		char *value = NULL, what[300];
		if (!sname || !name)
			continue;
		snprintf(what, sizeof(what), "env %s", name);
		if ((r = queue_secret(rd, ns, qspec, sname, what, true, &value, reason, err,
				      errsz)) < 0)
			return r;
		r = json_array_append_new(json_object_get(msg, "env"),
					  json_pack("{sssssbsO}", "name", name, "value", value,
						    "secret", 1, "secretKeyRef",
						    secret_decl(qspec, sname)));
		OPENSSL_cleanse(value, strlen(value));
		free(value);
		if (r < 0) /* out of memory: never a task without its secret */
			return -EAGAIN;
	}
	json_array_foreach(json_object_get(json_object_get(spec, "container"), "volumes"), i, e) {
		const char *sname = json_string_value(
			json_object_get(json_object_get(e, "secret"), "queueSecret"));
		char *value = NULL, what[300];
		if (!sname)
			continue;
		snprintf(what, sizeof(what), "spec.container.volumes[%zu]", i);
		if ((r = queue_secret(rd, ns, qspec, sname, what, false, &value, reason, err,
				      errsz)) < 0)
			return r;
		json_object_set(refs, sname, secret_decl(qspec, sname));
	}
	if (deps_resolve_dispatch(msg, vars, err, errsz) < 0) {
		*reason = "InvalidSpec";
		return -EINVAL;
	}
	return 0;
}

/* Applies the queue (defaults, policy, selector) and queue secrets to a dispatch, and resolves
 * $(tasks.…) references. On a task error writes the reason into reason/err and returns -EINVAL;
 * -EAGAIN when the API server could not be asked. */
int taskctl_apply_queue(const struct taskctl_secret_reader *rd, json_t *task, json_t *msg,
			json_t *queue, json_t *vars, int64_t now_ms, const char **reason, char *err,
			size_t errsz)
{
	json_t *qspec = json_object_get(queue, "spec"),
	       *env = json_object_get(task_spec(task), "env"), *e;
	json_t *defaults = json_object_get(qspec, "defaults"),
	       *policy = json_object_get(qspec, "policy");
	const char *ns = task_namespace(task);
	size_t i;
	int r;

	if (!json_integer_value(json_object_get(msg, "deadline")) &&
	    json_integer_value(json_object_get(defaults, "timeoutSeconds")) > 0)
		json_object_set_new(
			msg, "deadline",
			json_integer(sat_after_s(now_ms, json_integer_value(json_object_get(
								 defaults, "timeoutSeconds")))));
	if (json_object_get(msg, "container"))
		return apply_container(rd, task, msg, queue, vars, reason, err, errsz);
	if (json_is_object(policy))
		json_object_set(msg, "policy", policy);
	if (json_integer_value(
		    json_object_get(json_object_get(policy, "shell"), "maxOutputBytes")) > 0)
		json_object_set(
			json_object_get(msg, "limits"), "maxOutputBytes",
			json_object_get(json_object_get(policy, "shell"), "maxOutputBytes"));
	/* Memory and CPU: the task's, else the queue's or the built-in defaults, within the
	 * queue's maxima (resources.h). */
	{
		struct res_limits rl;
		int64_t to = json_integer_value(json_object_get(task_spec(task), "timeoutSeconds"));
		if (to <= 0)
			to = json_integer_value(json_object_get(defaults, "timeoutSeconds"));
		if ((r = res_decide(task_spec(task), qspec,
				    json_string_value(json_object_get(
					    json_object_get(queue, "metadata"), "name")),
				    to > 0 ? to : 0, &rl, reason, err, errsz)) < 0)
			return r;
		if (res_to_limits(&rl, json_object_get(msg, "limits")) < 0)
			return -EAGAIN;
	}
	/* Queue secrets: only names the queue declares, read now, marked so the runner masks them
	 * (and strips them from what a remote executor is sent). */
	json_array_foreach(env, i, e) {
		const char *sname = json_string_value(
			json_object_get(json_object_get(e, "valueFrom"), "queueSecret"));
		const char *name = json_string_value(json_object_get(e, "name"));
		char *value = NULL, what[300];
		if (!sname)
			continue;
		snprintf(what, sizeof(what), "env %s", name);
		if ((r = queue_secret(rd, ns, qspec, sname, what, true, &value, reason, err,
				      errsz)) < 0)
			return r;
		r = json_array_append_new(
			json_object_get(msg, "env"),
			json_pack("{sssssb}", "name", name, "value", value, "secret", 1));
		OPENSSL_cleanse(value, strlen(value));
		free(value);
		if (r < 0) /* out of memory: never a task without its secret */
			return -EAGAIN;
	}
	for (const char *const *kind = (const char *const[]){ "http", "remote", NULL }; *kind;
	     kind++) {
		json_t *src = json_object_get(task_spec(task), *kind),
		       *dst = json_object_get(msg, *kind), *h, *o;
		if (!json_is_object(src) || !json_is_object(dst))
			continue;
		json_array_foreach(json_object_get(src, "headers"), i, h) {
			const char *sname = json_string_value(
				json_object_get(json_object_get(h, "valueFrom"), "queueSecret"));
			const char *name = json_string_value(json_object_get(h, "name"));
			char *value = NULL, what[300];
			if (!sname || !name)
				continue;
			snprintf(what, sizeof(what), "spec.%s.headers %s", *kind, name);
			if ((r = queue_secret(rd, ns, qspec, sname, what, true, &value, reason, err,
					      errsz)) < 0)
				return r;
			if (!json_is_array(json_object_get(dst, "headers")))
				json_object_set_new(dst, "headers", json_array());
			r = json_array_append_new(
				json_object_get(dst, "headers"),
				json_pack("{sssssb}", "name", name, "value", value, "secret", 1));
			OPENSSL_cleanse(value, strlen(value));
			free(value);
			if (r < 0)
				return -EAGAIN;
		}
		o = json_object_get(src, "oauth2");
		if (strcmp(*kind, "http") == 0 &&
		    json_is_object(json_object_get(o, "clientSecret"))) {
			const char *sname = json_string_value(
				json_object_get(json_object_get(o, "clientSecret"), "queueSecret"));
			char *value = NULL;
			if (!sname ||
			    (r = queue_secret(rd, ns, qspec, sname, "spec.http.oauth2.clientSecret",
					      true, &value, reason, err, errsz)) < 0) {
				if (!sname) {
					*reason = "InvalidSpec";
					snprintf(err, errsz,
						 "spec.http.oauth2.clientSecret needs queueSecret");
					r = -EINVAL;
				}
				return r;
			}
			r = json_object_set_new(json_object_get(dst, "oauth2"), "clientSecret",
						json_string(value));
			OPENSSL_cleanse(value, strlen(value));
			free(value);
			if (r < 0)
				return -EAGAIN;
		}
	}
	if (deps_resolve_dispatch(msg, vars, err, errsz) < 0) {
		*reason = "InvalidSpec";
		return -EINVAL;
	}
	return 0;
}
