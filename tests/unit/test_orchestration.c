/* Pure parts of orchestration: $(tasks.…) references, condition variables, Flow graph
 * validation, secret masking, and the retry policy. */
#include "deps.h"
#include "expand.h"
#include "flowctl.h"
#include "queues.h"
#include "tap.h"
#include "taskctl.h"

static json_t *load(const char *s)
{
	json_error_t e;
	json_t *j = json_loads(s, 0, &e);
	if (!j)
		diag("bad test JSON: %s", e.text);
	return j;
}

static void check_refs(json_t *tasks, const char *in, const char *want, const char *name)
{
	char err[256] = "";
	char *out = deps_resolve_refs(in, tasks, 0, err, sizeof(err));
	is_str(out ? out : err, want, name);
	free(out);
}

static void check_flow(const char *tasks_json, const char *want_reason, const char *want_msg)
{
	json_t *t = load(tasks_json);
	const char *reason = "";
	char msg[256] = "";
	int r = flowctl_validate(t, &reason, msg, sizeof(msg));
	if (!want_reason) {
		is_int(r, 0, "valid graph accepted");
	} else {
		ok(r < 0 && strcmp(reason, want_reason) == 0, "%s refused as %s (%s)", tasks_json,
		   want_reason, reason);
		ok(strstr(msg, want_msg) != NULL, "message names it: %s", msg);
	}
	json_decref(t);
}

int main(void)
{
	json_t *tasks = load(
		"{\"build\": {\"phase\": \"Succeeded\", \"exitCode\": 0,"
		" \"output\": {\"ok\": true, \"n\": 3, \"name\": \"x\", \"list\": [\"a\", {\"b\": 1}]}}}");
	json_t *task, *vars, *st, *secrets, *retries;

	check_refs(tasks, "v=$(tasks.build.output.name)", "v=x", "string output value");
	check_refs(tasks, "$(tasks.build.output.n)+$(tasks.build.output.ok)", "3+true",
		   "numbers and bools as JSON text");
	check_refs(tasks, "$(tasks.build.output.list.1)", "{\"b\":1}",
		   "objects as compact JSON; list index");
	check_refs(tasks, "$(tasks.build.phase)/$(tasks.build.exitCode)", "Succeeded/0",
		   "phase and exitCode");
	check_refs(tasks, "$$(tasks.build.phase) $(NAME)", "$$(tasks.build.phase) $(NAME)",
		   "$$ and env references are left for the runner");
	check_refs(tasks, "$(tasks.other.phase)",
		   "$(tasks.other.phase): no task other among this task's dependencies",
		   "unknown task is an error naming it");
	check_refs(tasks, "$(tasks.build.output.missing)",
		   "$(tasks.build.output.missing): the value does not exist",
		   "missing output path is an error");
	check_refs(tasks, "$(tasks.build.spec)",
		   "$(tasks.build.spec): only output.PATH, exitCode and phase can be referenced",
		   "only output, exitCode and phase");

	task = load(
		"{\"metadata\": {\"name\": \"t\", \"namespace\": \"ns\", \"labels\": {\"env\": \"prod\"}},"
		" \"spec\": {\"shell\": {\"command\": [\"echo\", \"$(tasks.build.output.name)\"]},"
		" \"env\": [{\"name\": \"A\", \"value\": \"$(tasks.build.exitCode)\"}]}}");
	vars = deps_condition_vars(task, json_incref(tasks), 2);
	is_str(json_string_value(json_object_get(json_object_get(vars, "task"), "namespace")), "ns",
	       "task.namespace");
	is_int(json_integer_value(json_object_get(json_object_get(vars, "task"), "attempt")), 2,
	       "task.attempt");
	is_str(json_string_value(json_object_get(
		       json_object_get(json_object_get(vars, "task"), "labels"), "env")),
	       "prod", "task.labels");
	ok(json_object_get(json_object_get(vars, "tasks"), "build") != NULL, "tasks.build");
	json_decref(vars);
	{
		char key[512];
		json_t *flowchild = load(
			"{\"metadata\": {\"name\": \"f-b\", \"namespace\": \"ns\", \"labels\": {\"tasked.dev/flow\": \"f\"}}}");
		deps_key(flowchild, "a", key, sizeof(key));
		is_str(key, "ns/f-a", "inside a Flow, names are siblings");
		deps_key(task, "a", key, sizeof(key));
		is_str(key, "ns/a", "outside, names are Tasks in the namespace");
		json_decref(flowchild);
	}
	{
		json_t *msg = load(
			"{\"shell\": {\"command\": [\"echo\", \"$(tasks.build.output.name)\"]},"
			" \"env\": [{\"name\": \"A\", \"value\": \"$(tasks.build.exitCode)\"}],"
			" \"http\": {\"url\": \"https://x/$(tasks.build.output.n)\", \"headers\": [{\"name\": \"H\", \"value\": \"$(tasks.build.phase)\"}]}}");
		char err[256];
		is_int(deps_resolve_dispatch(msg, tasks, err, sizeof(err)), 0,
		       "dispatch references resolve");
		is_str(json_string_value(json_array_get(
			       json_object_get(json_object_get(msg, "shell"), "command"), 1)),
		       "x", "in command");
		is_str(json_string_value(json_object_get(
			       json_array_get(json_object_get(msg, "env"), 0), "value")),
		       "0", "in env");
		is_str(json_string_value(json_object_get(json_object_get(msg, "http"), "url")),
		       "https://x/3", "in the http url");
		is_str(json_string_value(json_object_get(
			       json_array_get(
				       json_object_get(json_object_get(msg, "http"), "headers"), 0),
			       "value")),
		       "Succeeded", "in http headers");
		json_decref(msg);
	}
	{
		/* Second-order expansion: a dependency's output holding $(TOKEN) stays data. */
		json_t *evil = load(
			"{\"dep\": {\"phase\": \"Succeeded\", \"output\": {\"u\": \"$(TOKEN)\", \"o\": {\"k\": \"$$(X)\"}}}}");
		json_t *msg = load(
			"{\"shell\": {\"command\": [\"echo\", \"$(tasks.dep.output.u)\"]},"
			" \"env\": [{\"name\": \"A\", \"value\": \"$(tasks.dep.output.u)\"}],"
			" \"http\": {\"url\": \"https://x/?q=$(tasks.dep.output.u)\", \"body\": \"$(tasks.dep.output.o)\","
			" \"headers\": [{\"name\": \"H\", \"value\": \"$(tasks.dep.output.u)\"}]},"
			" \"remote\": {\"url\": \"https://r/$(tasks.dep.output.u)\"}}");
		char err[256], *x = NULL;
		json_t *http = json_object_get(msg, "http");
		is_int(deps_resolve_dispatch(msg, evil, err, sizeof(err)), 0,
		       "references to a hostile output resolve");
		is_str(json_string_value(json_array_get(
			       json_object_get(json_object_get(msg, "shell"), "command"), 1)),
		       "$$(TOKEN)", "command: the inserted $ is escaped");
		is_str(json_string_value(json_object_get(http, "url")), "https://x/?q=$$(TOKEN)",
		       "http url: escaped");
		is_str(json_string_value(json_object_get(
			       json_array_get(json_object_get(http, "headers"), 0), "value")),
		       "$$(TOKEN)", "http header: escaped");
		is_str(json_string_value(json_object_get(http, "body")), "{\"k\":\"$$$$(X)\"}",
		       "http body (JSON text): every $ escaped");
		is_str(json_string_value(json_object_get(json_object_get(msg, "remote"), "url")),
		       "https://r/$$(TOKEN)", "remote url: escaped");
		is_str(json_string_value(json_object_get(
			       json_array_get(json_object_get(msg, "env"), 0), "value")),
		       "$(TOKEN)",
		       "env values are not expanded by the runner: inserted as they are");
		ok(expand_vars(json_string_value(json_object_get(http, "url")), NULL, NULL, 1024,
			       &x) == 0 &&
			   strcmp(x, "https://x/?q=$(TOKEN)") == 0,
		   "the runner's expansion gives back the output itself (%s)", x ? x : "");
		free(x);
		json_decref(msg);
		json_decref(evil);
	}

	check_flow(
		"[{\"name\": \"a\"}, {\"name\": \"b\", \"dependsOn\": [\"a\"]}, {\"name\": \"c\", \"dependsOn\": [\"a\", \"b\"]}]",
		NULL, NULL);
	check_flow("[{\"name\": \"a\"}, {\"name\": \"a\"}]", "DuplicateName", "a is used twice");
	check_flow("[{\"name\": \"a\", \"dependsOn\": [\"zz\"]}]", "UnknownDependency", "zz");
	check_flow(
		"[{\"name\": \"a\", \"dependsOn\": [\"c\"]}, {\"name\": \"b\", \"dependsOn\": [\"a\"]}, {\"name\": \"c\", \"dependsOn\": [\"b\"]}]",
		"Cycle", "cycle through task");
	check_flow("[{\"name\": \"a\", \"dependsOn\": [\"a\"]}]", "Cycle", "cycle through task a");
	check_flow("[]", "Empty", "empty");
	{
		/* Ownership, not the name or the label, makes a Flow's child. */
		json_t *own = load(
			"{\"metadata\": {\"labels\": {\"tasked.dev/flow\": \"f\"}, \"ownerReferences\":"
			" [{\"kind\": \"Flow\", \"name\": \"f\", \"uid\": \"U1\", \"controller\": true}]}}");
		json_t *label = load("{\"metadata\": {\"labels\": {\"tasked.dev/flow\": \"f\"}}}");
		json_t *weak = load(
			"{\"metadata\": {\"ownerReferences\": [{\"kind\": \"Flow\", \"name\": \"f\", \"uid\": \"U1\"}]}}");
		json_t *other = load(
			"{\"metadata\": {\"ownerReferences\": [{\"kind\": \"ConfigMap\", \"uid\": \"U1\", \"controller\": true}]}}");
		ok(flowctl_owned_by(own, "U1"),
		   "a controller ownerReference to the Flow's UID: a child");
		ok(!flowctl_owned_by(own, "U2"),
		   "the same name but another Flow UID (an earlier Flow): not a child");
		ok(!flowctl_owned_by(label, "U1"), "the label alone: not a child");
		ok(!flowctl_owned_by(weak, "U1"),
		   "an ownerReference that is not the controller: not a child");
		ok(!flowctl_owned_by(other, "U1"),
		   "a controller of another kind with that UID: not a child");
		json_decref(own);
		json_decref(label);
		json_decref(weak);
		json_decref(other);
	}

	st = load(
		"{\"logTail\": \"token=s3cr3t-value and again s3cr3t-value\", \"message\": \"failed: s3cr3t-value\","
		" \"output\": {\"leak\": \"s3cr3t-value\"}}");
	secrets = load("[\"s3cr3t-value\", \"ab\"]");
	taskctl_mask(st, secrets);
	is_str(json_string_value(json_object_get(st, "logTail")), "token=*** and again ***",
	       "secrets masked in logTail");
	is_str(json_string_value(json_object_get(st, "message")), "failed: ***", "and in message");
	{
		char *out = json_dumps(json_object_get(st, "output"), 0);
		ok(out && !strstr(out, "s3cr3t"), "an output holding a secret is withheld");
		free(out);
	}
	json_decref(st);
	json_decref(secrets);

	retries = load(
		"{\"limit\": 3, \"backoff\": {\"initialDelaySeconds\": 2, \"factor\": 3, \"maxDelaySeconds\": 10, \"jitter\": false}}");
	is_int(taskctl_retry_delay_ms(retries, 1, 0), 2000, "first delay = initialDelaySeconds");
	is_int(taskctl_retry_delay_ms(retries, 2, 0), 6000, "times factor");
	is_int(taskctl_retry_delay_ms(retries, 3, 0), 10000, "capped at maxDelaySeconds");
	json_object_set_new(json_object_get(retries, "backoff"), "jitter", json_true());
	ok(taskctl_retry_delay_ms(retries, 1, 0) == 1000 &&
		   taskctl_retry_delay_ms(retries, 1, 1000) == 2000,
	   "jitter spreads the delay over [d/2, d]");
	{
		json_t *huge = load(
			"{\"backoff\": {\"initialDelaySeconds\": 9223372036854775807, \"maxDelaySeconds\": 9223372036854775807,"
			" \"factor\": 1e300, \"jitter\": false}}");
		is_int(taskctl_retry_delay_ms(huge, 1, 0), 86400000,
		       "initialDelaySeconds INT64_MAX: a day, not a wrapped negative");
		is_int(taskctl_retry_delay_ms(huge, 50, 0), 86400000,
		       "factor 1e300 after 50 failures: still a day");
		json_decref(huge);
	}
	{
		/* A rate limit of 1e-300 per second: the wait clamps instead of overflowing. */
		struct wq *wq = wq_new();
		struct queues *qs = queues_new(NULL, wq, NULL, NULL, NULL);
		json_t *queue = load(
			"{\"spec\": {\"rateLimit\": {\"perSecond\": 1e-300, \"burst\": 1}}}");
		int64_t retry = -1;
		is_int(queues_admit(qs, "ns/slow", queue, "ns/t1", 0, 1, &retry), QUEUE_ADMITTED,
		       "the burst admits one");
		is_int(queues_admit(qs, "ns/slow", queue, "ns/t2", 0, 2, &retry),
		       QUEUE_RATE_LIMITED, "the next waits");
		ok(retry > 0 && retry <= INT64_C(86400001),
		   "... at most a day before it looks again (%lld ms)", (long long)retry);
		json_decref(queue);
		queues_free(qs);
		wq_free(wq);
	}
	{
		json_t *spec = json_pack("{sO}", "retries", retries);
		json_t *failed = load(
			"{\"phase\": \"Failed\", \"reason\": \"ExitCode\", \"exitCode\": 3}");
		json_t *cancelled = load("{\"phase\": \"Failed\", \"reason\": \"Cancelled\"}");
		ok(taskctl_should_retry(spec, failed, 1) && taskctl_should_retry(spec, failed, 3),
		   "failures within the limit retry");
		ok(!taskctl_should_retry(spec, failed, 4), "beyond the limit they do not");
		ok(!taskctl_should_retry(spec, cancelled, 1), "cancelled attempts never retry");
		{
			json_t *perm = load(
				"{\"phase\": \"Failed\", \"reason\": \"RemoteFailed\", \"retryable\": false}");
			json_t *temp = load(
				"{\"phase\": \"Failed\", \"reason\": \"RemoteFailed\", \"retryable\": true}");
			ok(!taskctl_should_retry(spec, perm, 1),
			   "a remote executor's retryable: false is believed");
			ok(taskctl_should_retry(spec, temp, 1),
			   "retryable: true retries within the limit");
			ok(!taskctl_should_retry(spec, temp, 4), "... and not beyond it");
			json_decref(perm);
			json_decref(temp);
		}
		json_object_set_new(retries, "onExitCodes", json_pack("[i]", 7));
		ok(!taskctl_should_retry(spec, failed, 1), "onExitCodes filters exit codes");
		json_object_set_new(failed, "exitCode", json_integer(7));
		ok(taskctl_should_retry(spec, failed, 1), "a listed exit code retries");
		json_decref(spec);
		json_decref(failed);
		json_decref(cancelled);
	}
	json_decref(retries);
	json_decref(task);
	json_decref(tasks);
	return done_testing();
}
