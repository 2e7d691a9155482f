#include "proto.h"
#include "jscan.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const proto_names[PROTO__COUNT] = {
	[PROTO_HELLO] = "hello",     [PROTO_READY] = "ready",       [PROTO_STARTED] = "started",
	[PROTO_LOG] = "log",         [PROTO_RESULT] = "result",     [PROTO_PONG] = "pong",
	[PROTO_WELCOME] = "welcome", [PROTO_DISPATCH] = "dispatch", [PROTO_CANCEL] = "cancel",
	[PROTO_ACK] = "ack",         [PROTO_DRAIN] = "drain",       [PROTO_PING] = "ping",
};

const char *proto_type_name(enum proto_type t)
{
	return (unsigned)t < PROTO__COUNT ? proto_names[t] : "unknown";
}

static int proto_fail(char *err, size_t errsz, const char *fmt, ...)
{
	va_list ap;
	if (err && errsz) {
		va_start(ap, fmt);
		vsnprintf(err, errsz, fmt, ap);
		va_end(ap);
	}
	return -EBADMSG;
}

/* Field accessors: return 0 and set *ret, or fail with a reason naming the field. */
static int get_str(json_t *o, const char *k, int required, size_t maxlen, const char **ret,
		   char *err, size_t errsz)
{
	json_t *v = json_object_get(o, k);
	if (!v) {
		*ret = NULL;
		return required ? proto_fail(err, errsz, "missing field %s", k) : 0;
	}
	if (!json_is_string(v))
		return proto_fail(err, errsz, "field %s must be a string", k);
	if (json_string_length(v) > maxlen || strlen(json_string_value(v)) != json_string_length(v))
		return proto_fail(err, errsz, "field %s too long or contains NUL", k);
	*ret = json_string_value(v);
	return 0;
}

static int get_int(json_t *o, const char *k, int required, int64_t min, int64_t max, int64_t dflt,
		   int64_t *ret, char *err, size_t errsz)
{
	json_t *v = json_object_get(o, k);
	if (!v) {
		*ret = dflt;
		return required ? proto_fail(err, errsz, "missing field %s", k) : 0;
	}
	if (!json_is_integer(v))
		return proto_fail(err, errsz, "field %s must be an integer", k);
	if (json_integer_value(v) < min || json_integer_value(v) > max)
		return proto_fail(err, errsz, "field %s out of range", k);
	*ret = json_integer_value(v);
	return 0;
}

static int get_task(json_t *o, struct proto_msg *m, char *err, size_t errsz)
{
	int r = get_str(o, "taskUid", 1, PROTO_MAX_ID, &m->task_uid, err, errsz);
	if (r == 0 && m->task_uid[0] == '\0')
		r = proto_fail(err, errsz, "field taskUid is empty");
	if (r == 0)
		r = get_int(o, "attempt", 1, 1, 1000000, 0, &m->attempt, err, errsz);
	return r;
}

static int check_string_array(json_t *a, const char *k, size_t maxn, size_t maxlen, int nonempty,
			      char *err, size_t errsz)
{
	size_t i;
	json_t *v;
	if (!json_is_array(a))
		return proto_fail(err, errsz, "field %s must be an array", k);
	if (json_array_size(a) > maxn)
		return proto_fail(err, errsz, "field %s has too many items", k);
	if (nonempty && json_array_size(a) == 0)
		return proto_fail(err, errsz, "field %s is empty", k);
	json_array_foreach(a, i, v) {
		if (!json_is_string(v) || json_string_length(v) > maxlen ||
		    strlen(json_string_value(v)) != json_string_length(v))
			return proto_fail(err, errsz, "field %s[%zu] must be a string without NUL",
					  k, i);
	}
	return 0;
}

static int decode_hello(json_t *o, struct proto_msg *m, char *err, size_t errsz)
{
	const char *k;
	json_t *v;
	size_t i;
	int r;

	if ((r = get_str(o, "runnerId", 1, 63, &m->runner_id, err, errsz)) < 0 ||
	    (r = get_str(o, "version", 1, 64, &m->version, err, errsz)) < 0 ||
	    (r = get_int(o, "capacity", 1, 1, PROTO_MAX_CAPACITY, 0, &m->capacity, err, errsz)) < 0)
		return r;
	if (m->runner_id[0] == '\0')
		return proto_fail(err, errsz, "field runnerId is empty");
	for (const char *p = m->runner_id; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
		      *p == '.' || *p == '_' || (*p >= 'A' && *p <= 'Z')))
			return proto_fail(err, errsz, "field runnerId has invalid characters");
	m->labels = json_object_get(o, "labels");
	if (m->labels) {
		if (!json_is_object(m->labels) || json_object_size(m->labels) > PROTO_MAX_LABELS)
			return proto_fail(err, errsz,
					  "field labels must be an object of at most %d strings",
					  PROTO_MAX_LABELS);
		json_object_foreach(m->labels, k, v) {
			if (strlen(k) > 63 || !json_is_string(v) || json_string_length(v) > 63 ||
			    strlen(json_string_value(v)) != json_string_length(v))
				return proto_fail(
					err, errsz,
					"label values must be strings of at most 63 bytes");
		}
	}
	m->executors = json_object_get(o, "executors");
	if (m->executors &&
	    (r = check_string_array(m->executors, "executors", 16, 32, 0, err, errsz)) < 0)
		return r;
	m->running = json_object_get(o, "running");
	if (m->running) {
		if (!json_is_array(m->running) || json_array_size(m->running) > PROTO_MAX_HELD)
			return proto_fail(err, errsz, "field running must be an array");
		json_array_foreach(m->running, i, v) {
			struct proto_msg t = { 0 };
			if (!json_is_object(v) || get_task(v, &t, err, errsz) < 0)
				return proto_fail(err, errsz,
						  "field running[%zu] must be {taskUid, attempt}",
						  i);
		}
	}
	return 0;
}

static int decode_result(json_t *o, struct proto_msg *m, char *err, size_t errsz)
{
	json_t *t;
	int r;

	if ((r = get_task(o, m, err, errsz)) < 0 ||
	    (r = get_str(o, "phase", 1, 32, &m->phase, err, errsz)) < 0 ||
	    (r = get_str(o, "reason", 0, 64, &m->reason, err, errsz)) < 0 ||
	    (r = get_str(o, "message", 0, 4096, &m->message, err, errsz)) < 0 ||
	    (r = get_str(o, "logTail", 0, 64 * 1024, &m->log_tail, err, errsz)) < 0 ||
	    (r = get_int(o, "exitCode", 0, -1, 255, -1, &m->exit_code, err, errsz)) < 0 ||
	    (r = get_int(o, "httpStatus", 0, 100, 599, 0, &m->http_status, err, errsz)) < 0 ||
	    (r = get_int(o, "startTime", 0, 0, INT64_MAX, 0, &m->start_ms, err, errsz)) < 0 ||
	    (r = get_int(o, "completionTime", 0, 0, INT64_MAX, 0, &m->end_ms, err, errsz)) < 0)
		return r;
	if (strcmp(m->phase, "Succeeded") != 0 && strcmp(m->phase, "Failed") != 0 &&
	    strcmp(m->phase, "Cancelled") != 0)
		return proto_fail(err, errsz, "field phase must be Succeeded, Failed or Cancelled");
	m->output = json_object_get(o, "output");
	t = json_object_get(o, "truncated");
	if (t && !json_is_boolean(t))
		return proto_fail(err, errsz, "field truncated must be a boolean");
	m->truncated = t ? json_is_true(t) : 0;
	t = json_object_get(o, "retryable");
	if (t && !json_is_boolean(t))
		return proto_fail(err, errsz, "field retryable must be a boolean");
	m->retryable = t ? json_is_true(t) : -1;
	return 0;
}

static int get_bool(json_t *o, const char *k, int dflt, int *ret, char *err, size_t errsz)
{
	json_t *v = json_object_get(o, k);
	if (!v) {
		*ret = dflt;
		return 0;
	}
	if (!json_is_boolean(v))
		return proto_fail(err, errsz, "field %s must be a boolean", k);
	*ret = json_is_true(v);
	return 0;
}

/* An optional object field: NULL when absent, an error when present but not an object. */
static int get_obj(json_t *o, const char *k, json_t **ret, char *err, size_t errsz)
{
	*ret = json_object_get(o, k);
	if (*ret && !json_is_object(*ret))
		return proto_fail(err, errsz, "field %s must be an object", k);
	return 0;
}

/* RFC 9110 token characters (header names). */
static int proto_is_token(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || strchr("!#$%&'*+-.^_`|~", *s)))
			return 0;
	return 1;
}

/* [{name, value, secret}]: names are tokens; values carry no CR, LF or NUL (no header
 * injection; the runner checks again after $(VAR) expansion). */
static int check_headers(json_t *a, const char *k, char *err, size_t errsz)
{
	size_t i;
	json_t *v;
	if (!a)
		return 0;
	if (!json_is_array(a) || json_array_size(a) > PROTO_MAX_HEADERS)
		return proto_fail(err, errsz, "field %s must be an array of at most %d", k,
				  PROTO_MAX_HEADERS);
	json_array_foreach(a, i, v) {
		const char *n, *val;
		int secret;
		if (!json_is_object(v) || get_str(v, "name", 1, 256, &n, err, errsz) < 0 ||
		    get_str(v, "value", 1, PROTO_MAX_HEADER_VALUE, &val, err, errsz) < 0 ||
		    get_bool(v, "secret", 0, &secret, err, errsz) < 0 || !proto_is_token(n) ||
		    strpbrk(val, "\r\n"))
			return proto_fail(
				err, errsz,
				"field %s[%zu] must be {name, value, secret} with a token "
				"name and a value without CR or LF",
				k, i);
	}
	return 0;
}

static int check_url(json_t *o, const char *k, char *err, size_t errsz)
{
	const char *u;
	int r = get_str(o, k, 1, PROTO_MAX_URL, &u, err, errsz);
	if (r == 0 && u[0] == '\0')
		r = proto_fail(err, errsz, "field %s is empty", k);
	return r;
}

static int decode_http(json_t *h, char *err, size_t errsz)
{
	static const char *const methods[] = { "GET",   "HEAD",   "POST",   "PUT",
					       "PATCH", "DELETE", "OPTIONS" };
	const char *method, *body, *s;
	json_t *codes, *oauth, *v;
	int64_t n;
	int b, r, ok = 0;
	size_t i;

	if ((r = check_url(h, "url", err, errsz)) < 0 ||
	    (r = get_str(h, "method", 0, 16, &method, err, errsz)) < 0 ||
	    (r = check_headers(json_object_get(h, "headers"), "http.headers", err, errsz)) < 0 ||
	    (r = get_str(h, "body", 0, PROTO_MAX_MESSAGE_DEFAULT, &body, err, errsz)) < 0 ||
	    (r = get_bool(h, "followRedirects", 1, &b, err, errsz)) < 0 ||
	    (r = get_int(h, "maxRedirects", 0, 0, PROTO_MAX_REDIRECTS, 0, &n, err, errsz)) < 0 ||
	    (r = get_int(h, "maxResponseBytes", 0, 0, INT64_C(1) << 40, 0, &n, err, errsz)) < 0 ||
	    (r = get_int(h, "timeoutSeconds", 0, 1, INT32_MAX, 1, &n, err, errsz)) < 0 ||
	    (r = get_obj(h, "oauth2", &oauth, err, errsz)) < 0)
		return r;
	for (i = 0; method && i < sizeof(methods) / sizeof(methods[0]); i++)
		ok |= strcmp(method, methods[i]) == 0;
	if (method && !ok)
		return proto_fail(err, errsz,
				  "field http.method must be one of GET, HEAD, POST, PUT, PATCH, "
				  "DELETE, OPTIONS");
	codes = json_object_get(h, "successCodes");
	if (codes) {
		if (!json_is_array(codes) || json_array_size(codes) > PROTO_MAX_CODES)
			return proto_fail(err, errsz,
					  "field http.successCodes must be an array of at most %d",
					  PROTO_MAX_CODES);
		json_array_foreach(codes, i, v)
			if (!json_is_integer(v) || json_integer_value(v) < 100 ||
			    json_integer_value(v) > 599)
				return proto_fail(err, errsz,
						  "field http.successCodes[%zu] must "
						  "be an integer from 100 to 599",
						  i);
	}
	if (oauth) {
		json_t *scopes = json_object_get(oauth, "scopes");
		if ((r = check_url(oauth, "tokenURL", err, errsz)) < 0 ||
		    (r = get_str(oauth, "clientID", 0, 1024, &s, err, errsz)) < 0 ||
		    (r = get_str(oauth, "clientSecret", 0, PROTO_MAX_HEADER_VALUE, &s, err,
				 errsz)) < 0)
			return r;
		if (scopes && (r = check_string_array(scopes, "http.oauth2.scopes",
						      PROTO_MAX_SCOPES, 256, 0, err, errsz)) < 0)
			return r;
		/* RFC 6749 scope-token: printable ASCII without space, '"' or '\\' */
		json_array_foreach(scopes, i, v) {
			const unsigned char *p = (const unsigned char *)json_string_value(v);
			if (!*p)
				return proto_fail(err, errsz,
						  "field http.oauth2.scopes[%zu] is empty", i);
			for (; *p; p++)
				if (*p <= 0x20 || *p >= 0x7f || *p == '"' || *p == '\\')
					return proto_fail(err, errsz,
							  "field http.oauth2.scopes[%zu] is not a "
							  "scope token",
							  i);
		}
	}
	return 0;
}

static int decode_policy(json_t *p, char *err, size_t errsz)
{
	json_t *h, *sh;
	int64_t n;
	int b, r;

	if ((r = get_obj(p, "http", &h, err, errsz)) < 0 ||
	    (r = get_obj(p, "shell", &sh, err, errsz)) < 0)
		return r;
	if (h) {
		json_t *c = json_object_get(h, "allowedCIDRs");
		if ((r = get_bool(h, "allowPrivateNetworks", 0, &b, err, errsz)) < 0 ||
		    (r = get_int(h, "maxResponseBytes", 0, 0, INT64_C(1) << 40, 0, &n, err,
				 errsz)) < 0 ||
		    (r = get_int(h, "maxRedirects", 0, 0, PROTO_MAX_REDIRECTS, 0, &n, err, errsz)) <
			    0)
			return r;
		if (c && (r = check_string_array(c, "policy.http.allowedCIDRs", PROTO_MAX_CIDRS, 64,
						 0, err, errsz)) < 0)
			return r;
	}
	if (sh &&
	    (r = get_int(sh, "maxOutputBytes", 0, 0, INT64_C(1) << 40, 0, &n, err, errsz)) < 0)
		return r;
	return 0;
}

static int decode_dispatch(json_t *o, struct proto_msg *m, char *err, size_t errsz)
{
	json_t *shell, *limits, *v;
	size_t i;
	int r, kinds;

	if ((r = get_task(o, m, err, errsz)) < 0 ||
	    (r = get_str(o, "namespace", 1, 253, &m->namespace_, err, errsz)) < 0 ||
	    (r = get_str(o, "name", 1, 253, &m->name, err, errsz)) < 0 ||
	    (r = get_int(o, "deadline", 0, 0, INT64_MAX, 0, &m->deadline_ms, err, errsz)) < 0 ||
	    (r = get_obj(o, "shell", &shell, err, errsz)) < 0 ||
	    (r = get_obj(o, "http", &m->http, err, errsz)) < 0 ||
	    (r = get_obj(o, "remote", &m->remote, err, errsz)) < 0 ||
	    (r = get_obj(o, "policy", &m->policy, err, errsz)) < 0)
		return r;
	kinds = !!shell + !!m->http + !!m->remote;
	if (kinds != 1)
		return proto_fail(
			err, errsz,
			"exactly one of the fields shell, http and remote must be an object");
	if (shell) {
		m->executor = PROTO_EXEC_SHELL;
		m->command = json_object_get(shell, "command");
		if ((r = check_string_array(m->command, "shell.command", PROTO_MAX_ARGS, 64 * 1024,
					    1, err, errsz)) < 0)
			return r;
		if ((r = get_str(shell, "workingDir", 0, 1024, &m->working_dir, err, errsz)) < 0)
			return r;
	} else if (m->http) {
		m->executor = PROTO_EXEC_HTTP;
		if ((r = decode_http(m->http, err, errsz)) < 0)
			return r;
	} else {
		m->executor = PROTO_EXEC_REMOTE;
		if ((r = check_url(m->remote, "url", err, errsz)) < 0 ||
		    (r = check_headers(json_object_get(m->remote, "headers"), "remote.headers", err,
				       errsz)) < 0)
			return r;
	}
	if (m->policy && (r = decode_policy(m->policy, err, errsz)) < 0)
		return r;
	m->env = json_object_get(o, "env");
	if (m->env) {
		if (!json_is_array(m->env) || json_array_size(m->env) > PROTO_MAX_ENV)
			return proto_fail(err, errsz, "field env must be an array of at most %d",
					  PROTO_MAX_ENV);
		json_array_foreach(m->env, i, v) {
			const char *n, *val;
			int secret;
			if (!json_is_object(v) || get_str(v, "name", 1, 256, &n, err, errsz) < 0 ||
			    get_str(v, "value", 1, 128 * 1024, &val, err, errsz) < 0 ||
			    n[0] == '\0' || strchr(n, '=') ||
			    get_bool(v, "secret", 0, &secret, err, errsz) < 0)
				return proto_fail(err, errsz,
						  "field env[%zu] must be {name, value, secret}",
						  i);
		}
	}
	m->input = json_object_get(o, "input");
	m->max_output = 10 * 1024 * 1024;
	m->log_tail_max = 4096;
	limits = json_object_get(o, "limits");
	if (limits) {
		if (!json_is_object(limits))
			return proto_fail(err, errsz, "field limits must be an object");
		if ((r = get_int(limits, "maxOutputBytes", 0, 0, INT64_C(1) << 32, m->max_output,
				 &m->max_output, err, errsz)) < 0 ||
		    (r = get_int(limits, "logTailBytes", 0, 0, 64 * 1024, m->log_tail_max,
				 &m->log_tail_max, err, errsz)) < 0 ||
		    (r = get_int(limits, "memoryBytes", 0, 0, INT64_C(1) << 50, 0, &m->memory_bytes,
				 err, errsz)) < 0 ||
		    (r = get_int(limits, "cpuSeconds", 0, 0, INT32_MAX, 0, &m->cpu_seconds, err,
				 errsz)) < 0 ||
		    (r = get_int(limits, "cpuMillis", 0, 0, 1000 * 1000, 0, &m->cpu_millis, err,
				 errsz)) < 0)
			return r;
	}
	return 0;
}

static int decode_body(json_t *o, struct proto_msg *m, char *err, size_t errsz)
{
	int r;
	switch (m->type) {
	case PROTO_HELLO:
		return decode_hello(o, m, err, errsz);
	case PROTO_READY:
		return get_int(o, "slots", 1, 0, PROTO_MAX_CAPACITY, 0, &m->slots, err, errsz);
	case PROTO_STARTED:
		if ((r = get_task(o, m, err, errsz)) < 0)
			return r;
		return get_int(o, "startTime", 0, 0, INT64_MAX, 0, &m->start_ms, err, errsz);
	case PROTO_LOG:
		if ((r = get_task(o, m, err, errsz)) < 0 ||
		    (r = get_int(o, "seq", 1, 0, INT64_MAX, 0, &m->seq, err, errsz)) < 0 ||
		    (r = get_str(o, "stream", 1, 16, &m->stream, err, errsz)) < 0 ||
		    (r = get_str(o, "data", 1, PROTO_MAX_MESSAGE_DEFAULT, &m->data, err, errsz)) <
			    0)
			return r;
		if (strcmp(m->stream, "stdout") != 0 && strcmp(m->stream, "stderr") != 0)
			return proto_fail(err, errsz, "field stream must be stdout or stderr");
		return 0;
	case PROTO_RESULT:
		return decode_result(o, m, err, errsz);
	case PROTO_WELCOME:
		if ((r = get_str(o, "runnerId", 1, 63, &m->runner_id, err, errsz)) < 0 ||
		    (r = get_int(o, "heartbeatSeconds", 0, 1, 3600, 10, &m->heartbeat_s, err,
				 errsz)) < 0)
			return r;
		return get_int(o, "maxMessageBytes", 0, 1024, INT64_C(1) << 30,
			       PROTO_MAX_MESSAGE_DEFAULT, &m->max_message, err, errsz);
	case PROTO_DISPATCH:
		return decode_dispatch(o, m, err, errsz);
	case PROTO_CANCEL:
	case PROTO_ACK:
		return get_task(o, m, err, errsz);
	case PROTO_PONG:
	case PROTO_DRAIN:
	case PROTO_PING:
		return 0;
	case PROTO__COUNT:
		break;
	}
	return proto_fail(err, errsz, "unknown message type");
}

int proto_decode(const char *data, size_t len, size_t max, enum proto_dir dir,
		 struct proto_msg *ret, char *err, size_t errsz)
{
	json_error_t jerr;
	json_t *root, *jt;
	const char *t;
	int r, i;

	memset(ret, 0, sizeof(*ret));
	ret->exit_code = -1;
	if (len > max) {
		proto_fail(err, errsz, "message of %zu bytes exceeds the %zu byte cap", len, max);
		return -EMSGSIZE;
	}
	/* NUL inside strings is valid JSON: free-form fields (input, output) carry it faithfully;
	 * every field read as a C string is checked for it (get_str, check_string_array). */
	root = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
	if (!root)
		return proto_fail(err, errsz, "invalid JSON at line %d column %d", jerr.line,
				  jerr.column);
	if (!json_is_object(root)) {
		json_decref(root);
		return proto_fail(err, errsz, "message must be a JSON object");
	}
	jt = json_object_get(root, "type");
	if (!json_is_string(jt)) {
		json_decref(root);
		return proto_fail(err, errsz, "missing field type");
	}
	t = json_string_value(jt);
	for (i = 0; i < PROTO__COUNT; i++)
		if (strcmp(t, proto_names[i]) == 0)
			break;
	if (i == PROTO__COUNT) {
		json_decref(root);
		return proto_fail(err, errsz, "unknown message type");
	}
	if ((dir == PROTO_FROM_RUNNER) != (i < PROTO_WELCOME)) {
		json_decref(root);
		return proto_fail(err, errsz, "message type %s not allowed in this direction",
				  proto_names[i]);
	}
	ret->type = (enum proto_type)i;
	ret->root = root;
	r = decode_body(root, ret, err, errsz);
	if (r < 0) {
		json_decref(root);
		memset(ret, 0, sizeof(*ret));
		return r;
	}
	return 0;
}

void proto_msg_free(struct proto_msg *m)
{
	json_decref(m->root);
	m->root = NULL;
}

json_t *proto_new(enum proto_type t) { return json_pack("{ss}", "type", proto_type_name(t)); }

json_t *proto_new_task(enum proto_type t, const char *task_uid, int64_t attempt)
{
	return json_pack("{sssssI}", "type", proto_type_name(t), "taskUid", task_uid, "attempt",
			 (json_int_t)attempt);
}

int proto_encode(const json_t *msg, size_t max, char **ret, size_t *ret_len)
{
	char *s = json_dumps(msg, JSON_COMPACT);
	size_t n;
	if (!s)
		return -ENOMEM;
	n = strlen(s);
	if (n > max) {
		free(s);
		return -EMSGSIZE;
	}
	*ret = s;
	*ret_len = n;
	return 0;
}

/* --- envelope: attribution of a message the strict decoder refused --------------------------- */

/* The raw bytes of the string at [s, e) (quotes included) when it holds no escape: an escaped
 * key or value is never taken for one of ours, since its bytes differ from its value. */
static int env_plain(const char *p, size_t s, size_t e, size_t *vs, size_t *vl)
{
	if (e < s + 2 || p[s] != '"' || memchr(p + s, '\\', e - s))
		return -1;
	*vs = s + 1;
	*vl = e - s - 2;
	return 0;
}

int proto_envelope(const char *data, size_t len, enum proto_type *type, char *uid, size_t uidsz,
		   int64_t *attempt)
{
	size_t pos = 0, ks, ke, s, e, k, kl, vs, vl;
	int seen_type = 0, seen_uid = 0, seen_attempt = 0, r;

	while ((r = jscan_member_next(data, len, &pos, &ks, &ke, &s, &e)) == 1) {
		int plain = env_plain(data, ks, ke, &k, &kl) == 0;
#define ENV_KEY(lit) (plain && kl == sizeof(lit) - 1 && memcmp(data + k, lit, kl) == 0)
		if (ENV_KEY("type") || ENV_KEY("taskUid")) {
			int is_type = ENV_KEY("type");
			if ((is_type ? seen_type : seen_uid) ||
			    env_plain(data, s, e, &vs, &vl) < 0 || vl == 0)
				return -EBADMSG;
			if (is_type) {
				int t;
				for (t = 0; t < PROTO__COUNT; t++)
					if (strlen(proto_names[t]) == vl &&
					    memcmp(data + vs, proto_names[t], vl) == 0)
						break;
				if (t == PROTO__COUNT)
					return -EBADMSG;
				*type = (enum proto_type)t;
				seen_type = 1;
			} else {
				if (vl > PROTO_MAX_ID || vl >= uidsz)
					return -EBADMSG;
				for (size_t j = vs; j < vs + vl; j++)
					if ((unsigned char)data[j] <= 0x20 ||
					    (unsigned char)data[j] >= 0x7f)
						return -EBADMSG;
				memcpy(uid, data + vs, vl);
				uid[vl] = '\0';
				seen_uid = 1;
			}
		} else if (ENV_KEY("attempt")) {
			int64_t v = 0;
			size_t i = s, digits = 0;
			if (seen_attempt)
				return -EBADMSG;
			for (; i < e && data[i] >= '0' && data[i] <= '9' && digits < 8;
			     i++, digits++)
				v = v * 10 + (data[i] - '0');
			if (digits == 0 || i != e || v < 1 || v > 1000000)
				return -EBADMSG;
			*attempt = v;
			seen_attempt = 1;
		}
#undef ENV_KEY
	}
	if (r < 0)
		return -EBADMSG;
	return seen_type && seen_uid && seen_attempt ? 0 : -EBADMSG;
}

json_t *proto_load_output(const char *data, size_t len, int *too_deep, json_error_t *err)
{
	json_t *j = json_loadb(data, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL,
			       err);

	/* The text is JSON (it parsed, or only the parser's own depth limit stopped it), so the
	 * bracket count is the nesting. */
	*too_deep = j ? jscan_depth(data, len, PROTO_MAX_OUTPUT_DEPTH) > PROTO_MAX_OUTPUT_DEPTH
		      : json_error_code(err) == json_error_stack_overflow;
	if (*too_deep) {
		json_decref(j);
		j = NULL;
	}
	return j;
}
