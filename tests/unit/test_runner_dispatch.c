/* The dispatch contract between the two sides: what taskctl_build_dispatch() makes of a Task's
 * http/remote/shell spec decodes on the runner (proto_decode) into an attempt it can run, and
 * what the decoder refuses (the new http, remote, policy and limits fields). Also that
 * taskctl_terminal_status() copies httpStatus. */
#include "exec.h"
#include "log.h"
#include "proto.h"
#include "tap.h"
#include "taskctl.h"
#include "util.h"

#include <errno.h>

static json_t *task(const char *spec_json)
{
	json_error_t e;
	json_t *spec = json_loads(spec_json, 0, &e), *t;
	if (!spec) {
		diag("bad spec JSON: %s", e.text);
		abort();
	}
	t = json_pack("{s{sssssssI}so}", "metadata", "name", "t1", "namespace", "ns", "uid",
		      "uid-1", "generation", (json_int_t)1, "spec", spec);
	return t;
}

/* Builds, encodes and decodes; returns 0 with *m set, or -1 with err set by either side. */
static int roundtrip(const char *spec_json, struct proto_msg *m, char *err, size_t errsz)
{
	json_t *t = task(spec_json), *msg;
	char *text;
	size_t len;
	int r;

	msg = taskctl_build_dispatch(t, 1, 1000, err, errsz);
	json_decref(t);
	if (!msg)
		return -1;
	r = proto_encode(msg, PROTO_MAX_MESSAGE_DEFAULT, &text, &len);
	json_decref(msg);
	if (r < 0)
		return -1;
	r = proto_decode(text, len, PROTO_MAX_MESSAGE_DEFAULT, PROTO_FROM_CONTROLLER, m, err,
			 errsz);
	free(text);
	return r < 0 ? -1 : 0;
}

static void test_build(void)
{
	struct proto_msg m;
	char err[512];
	struct exec_task *et;
	struct exec_opts opts = { .work_root = "/tmp", .drop_uid = 0 };

	ok(roundtrip("{\"shell\":{\"command\":[\"echo\",\"hi\"]}}", &m, err, sizeof(err)) == 0 &&
		   m.executor == PROTO_EXEC_SHELL && json_array_size(m.command) == 2,
	   "shell dispatch round-trips");
	proto_msg_free(&m);

	ok(roundtrip(
		   "{\"http\":{\"url\":\"https://api.example.com/v1?x=1\",\"method\":\"POST\",\"body\":\"{}\","
		   "\"headers\":[{\"name\":\"X-A\",\"value\":\"b\"}],\"successCodes\":[200,201],"
		   "\"followRedirects\":false,\"maxRedirects\":3,\"maxResponseBytes\":1000,\"timeoutSeconds\":9,"
		   "\"oauth2\":{\"tokenURL\":\"https://auth.example.com/token\",\"clientID\":\"c\",\"scopes\":[\"a\",\"b\"]}},"
		   "\"env\":[{\"name\":\"E\",\"value\":\"v\"}],\"input\":{\"k\":1},\"timeoutSeconds\":5}",
		   &m, err, sizeof(err)) == 0,
	   "http dispatch round-trips (%s)", err);
	ok(m.executor == PROTO_EXEC_HTTP && m.http && !m.command, "decoded as an http dispatch");
	is_str(json_string_value(json_object_get(m.http, "url")), "https://api.example.com/v1?x=1",
	       "url carried");
	is_str(json_string_value(json_object_get(m.http, "method")), "POST", "method carried");
	ok(json_array_size(json_object_get(m.http, "successCodes")) == 2 &&
		   json_is_false(json_object_get(m.http, "followRedirects")) &&
		   json_integer_value(json_object_get(m.http, "maxRedirects")) == 3 &&
		   json_integer_value(json_object_get(m.http, "maxResponseBytes")) == 1000 &&
		   json_integer_value(json_object_get(m.http, "timeoutSeconds")) == 9,
	   "codes, redirects, caps, timeout carried");
	ok(json_array_size(json_object_get(json_object_get(m.http, "oauth2"), "scopes")) == 2 &&
		   !json_object_get(json_object_get(m.http, "oauth2"), "clientSecret"),
	   "oauth2 carried (no secret)");
	ok(m.deadline_ms == 1000 + 5000 && json_is_object(m.input),
	   "deadline and input as for shell tasks");
	ok(exec_task_new(&m, &opts, &et) == 0, "the runner accepts it");
	exec_task_free(et);
	proto_msg_free(&m);

	ok(roundtrip(
		   "{\"remote\":{\"url\":\"https://exec.example.com/run\",\"headers\":[{\"name\":\"Authorization\","
		   "\"value\":\"Bearer x\"}]}}",
		   &m, err, sizeof(err)) == 0 &&
		   m.executor == PROTO_EXEC_REMOTE &&
		   json_array_size(json_object_get(m.remote, "headers")) == 1,
	   "remote dispatch round-trips (%s)", err);
	proto_msg_free(&m);

	/* A container task builds (its policy is checked against the queue later, podpolicy.h). */
	{
		json_t *t = task("{\"container\":{\"image\":\"x\"}}"),
		       *msg = taskctl_build_dispatch(t, 1, 0, err, sizeof(err));
		ok(msg && json_is_object(json_object_get(msg, "container")) &&
			   strcmp(json_string_value(json_object_get(
					  json_object_get(msg, "container"), "image")),
				  "x") == 0,
		   "a container task's dispatch carries spec.container (%s)", msg ? "built" : err);
		json_decref(msg);
		json_decref(t);
	}
	/* refused by the controller, as InvalidSpec, before anything reaches a runner */
	{
		struct {
			const char *spec, *why;
		} bad[] = {
			{ "{\"container\":\"x\"}", "spec.container must be an object" },
			{ "{\"shell\":{\"command\":[\"a\"]},\"http\":{\"url\":\"http://x/\"}}",
			  "exactly one" },
			{ "{\"http\":{}}", "url is required" },
			{ "{\"http\":{\"url\":\"http://x/\",\"headers\":[{\"name\":\"A\",\"value\":\"a\\r\\nB: c\"}]}}",
			  "CR or LF" },
			{ "{\"http\":{\"url\":\"http://x/\",\"oauth2\":{\"tokenURL\":\"http://t/\",\"scopes\":[\"a b\"]}}}",
			  "scope token" },
			{ "{\"http\":{\"url\":\"http://x/\",\"timeoutSeconds\":99999999999}}",
			  "out of range" },
		};
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			json_t *t = task(bad[i].spec),
			       *msg = taskctl_build_dispatch(t, 1, 0, err, sizeof(err));
			ok(!msg && strstr(err, bad[i].why), "refused: %s (%s)", bad[i].spec,
			   msg ? "built" : err);
			json_decref(msg);
			json_decref(t);
		}
	}
	{
		/* Queue-secret header values and the oauth2 client secret are not copied by the
		 * builder: the queue resolves them at dispatch and marks them secret. */
		static const char *const deferred[] = {
			"{\"http\":{\"url\":\"http://x/\",\"headers\":[{\"name\":\"A\",\"valueFrom\":{\"queueSecret\":\"s\"}}]}}",
			"{\"remote\":{\"url\":\"http://x/\",\"headers\":[{\"name\":\"A\",\"valueFrom\":{\"queueSecret\":\"s\"}}]}}",
			"{\"http\":{\"url\":\"http://x/\",\"oauth2\":{\"tokenURL\":\"http://t/\",\"clientSecret\":{\"queueSecret\":\"s\"}}}}",
		};
		for (size_t i = 0; i < sizeof(deferred) / sizeof(deferred[0]); i++) {
			json_t *t = task(deferred[i]),
			       *msg = taskctl_build_dispatch(t, 1, 0, err, sizeof(err));
			char *dump = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
			ok(dump && !strstr(dump, "queueSecret") && !strstr(dump, "clientSecret"),
			   "built without the secret reference: %s (%s)", deferred[i],
			   dump ? dump : err);
			free(dump);
			json_decref(msg);
			json_decref(t);
		}
	}
}

static void test_decode(void)
{
	struct {
		const char *fields, *why;
	} bad[] = {
		{ "\"shell\":{\"command\":[\"a\"]},\"remote\":{\"url\":\"http://x/\"}",
		  "exactly one" },
		{ "", "exactly one" },
		{ "\"http\":{\"url\":\"\"}", "empty" },
		{ "\"http\":{}", "missing field url" },
		{ "\"http\":{\"url\":\"http://x/\",\"method\":\"BREW\"}", "http.method" },
		{ "\"http\":{\"url\":\"http://x/\",\"headers\":[{\"name\":\"a b\",\"value\":\"c\"}]}",
		  "http.headers[0]" },
		{ "\"http\":{\"url\":\"http://x/\",\"headers\":[{\"name\":\"A\",\"value\":\"c\\nd\"}]}",
		  "CR or LF" },
		{ "\"http\":{\"url\":\"http://x/\",\"headers\":[{\"name\":\"A\",\"value\":\"c\",\"secret\":\"yes\"}]}",
		  "http.headers[0]" },
		{ "\"http\":{\"url\":\"http://x/\",\"successCodes\":[99]}", "successCodes[0]" },
		{ "\"http\":{\"url\":\"http://x/\",\"maxRedirects\":21}", "out of range" },
		{ "\"http\":{\"url\":\"http://x/\",\"timeoutSeconds\":0}", "out of range" },
		{ "\"http\":{\"url\":\"http://x/\",\"followRedirects\":1}", "boolean" },
		{ "\"http\":{\"url\":\"http://x/\",\"oauth2\":{}}", "tokenURL" },
		{ "\"http\":{\"url\":\"http://x/\",\"oauth2\":{\"tokenURL\":\"t\",\"scopes\":[\"\"]}}",
		  "scopes[0]" },
		{ "\"remote\":{\"url\":1}", "must be a string" },
		{ "\"shell\":{\"command\":[\"a\"]},\"policy\":[]", "policy must be an object" },
		{ "\"shell\":{\"command\":[\"a\"]},\"policy\":{\"http\":{\"allowedCIDRs\":\"10.0.0.0/8\"}}",
		  "allowedCIDRs" },
		{ "\"shell\":{\"command\":[\"a\"]},\"policy\":{\"http\":{\"allowPrivateNetworks\":\"true\"}}",
		  "boolean" },
		{ "\"shell\":{\"command\":[\"a\"]},\"limits\":{\"memoryBytes\":-1}",
		  "out of range" },
		{ "\"shell\":{\"command\":[\"a\"]},\"env\":[{\"name\":\"A\",\"value\":\"b\",\"secret\":1}]",
		  "env[0]" },
	};
	char buf[2048], err[256];
	struct proto_msg m;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int n = snprintf(
			buf, sizeof(buf),
			"{\"type\":\"dispatch\",\"taskUid\":\"u\",\"attempt\":1,\"namespace\":\"n\","
			"\"name\":\"t\"%s%s}",
			bad[i].fields[0] ? "," : "", bad[i].fields);
		int r = proto_decode(buf, (size_t)n, PROTO_MAX_MESSAGE_DEFAULT,
				     PROTO_FROM_CONTROLLER, &m, err, sizeof(err));
		ok(r == -EBADMSG && strstr(err, bad[i].why), "refused %s (%s)", bad[i].fields, err);
		if (r == 0)
			proto_msg_free(&m);
	}
	/* a queue's whole policy object is accepted: keys the runner does not use are ignored */
	{
		const char *d =
			"{\"type\":\"dispatch\",\"taskUid\":\"u\",\"attempt\":1,\"namespace\":\"n\",\"name\":\"t\","
			"\"shell\":{\"command\":[\"a\"]},\"env\":[{\"name\":\"S\",\"value\":\"x\",\"secret\":true}],"
			"\"policy\":{\"executors\":[\"shell\"],\"http\":{\"allowPrivateNetworks\":true,"
			"\"allowedCIDRs\":[\"10.0.0.0/8\"],\"maxResponseBytes\":5,\"maxRedirects\":2},"
			"\"shell\":{\"maxOutputBytes\":100},\"container\":{\"networkDisabled\":true},"
			"\"conditions\":{\"maxCost\":5}},\"limits\":{\"memoryBytes\":1048576,\"cpuSeconds\":3}}";
		int r = proto_decode(d, strlen(d), PROTO_MAX_MESSAGE_DEFAULT, PROTO_FROM_CONTROLLER,
				     &m, err, sizeof(err));
		ok(r == 0 && m.policy && m.memory_bytes == 1048576 && m.cpu_seconds == 3,
		   "policy (with unused keys), secret env and limits decode (%s)", r ? err : "ok");
		if (r == 0)
			proto_msg_free(&m);
	}
	/* results: httpStatus and retryable */
	{
		const char *res =
			"{\"type\":\"result\",\"taskUid\":\"u\",\"attempt\":1,\"phase\":\"Failed\","
			"\"reason\":\"HTTPStatus\",\"httpStatus\":404,\"retryable\":false}";
		int r = proto_decode(res, strlen(res), PROTO_MAX_MESSAGE_DEFAULT, PROTO_FROM_RUNNER,
				     &m, err, sizeof(err));
		ok(r == 0 && m.http_status == 404 && m.retryable == 0,
		   "result with httpStatus and retryable decodes");
		if (r == 0)
			proto_msg_free(&m);
		res = "{\"type\":\"result\",\"taskUid\":\"u\",\"attempt\":1,\"phase\":\"Failed\",\"httpStatus\":42}";
		r = proto_decode(res, strlen(res), PROTO_MAX_MESSAGE_DEFAULT, PROTO_FROM_RUNNER, &m,
				 err, sizeof(err));
		ok(r == -EBADMSG && strstr(err, "httpStatus"), "httpStatus out of range refused");
	}
}

static void test_status(void)
{
	json_t *t = task("{\"http\":{\"url\":\"http://x/\"}}");
	json_t *res = json_pack("{sssssssi}", "phase", "Failed", "reason", "HTTPStatus", "message",
				"HTTP 404 is not a success code", "httpStatus", 404);
	json_t *st = taskctl_terminal_status(t, res, 1, "r1", NULL, 1000, 4096);
	json_t *s = json_object_get(st, "status");
	ok(json_integer_value(json_object_get(s, "httpStatus")) == 404,
	   "status.httpStatus copied from the result");
	ok(!json_object_get(s, "exitCode"), "no exitCode for an http task");
	ok(json_integer_value(json_object_get(
		   json_array_get(json_object_get(s, "attemptHistory"), 0), "httpStatus")) == 404,
	   "attemptHistory[].httpStatus too");
	json_decref(st);
	json_decref(res);
	json_decref(t);
}

int main(void)
{
	log_init("test", LOG_LVL_ERROR);
	test_build();
	test_decode();
	test_status();
	return done_testing();
}
