/* Task JSON → dispatch message and runner result → status patch (pure functions). */
#include "tap.h"
#include "taskctl.h"
#include "util.h"

static json_t *load(const char *s)
{
	json_error_t e;
	json_t *j = json_loads(s, 0, &e);
	if (!j)
		diag("bad test JSON: %s", e.text);
	return j;
}

int main(void)
{
	char err[512];
	json_t *task, *msg, *res, *patch, *st, *c;

	task = load(
		"{\"apiVersion\":\"tasked.dev/v1alpha1\",\"kind\":\"Task\",\"metadata\":{\"name\":\"hello\","
		"\"namespace\":\"default\",\"uid\":\"1234\",\"generation\":3},\"spec\":{\"shell\":{\"command\":"
		"[\"echo\",\"hello $(NAME)\"]},\"env\":[{\"name\":\"NAME\",\"value\":\"world\"}],\"input\":{\"n\":1},"
		"\"timeoutSeconds\":5}}");
	msg = taskctl_build_dispatch(task, 2, 1000000, err, sizeof(err));
	ok(msg != NULL, "dispatch built");
	is_str(json_string_value(json_object_get(msg, "taskUid")), "1234",
	       "taskUid from metadata.uid");
	is_int(json_integer_value(json_object_get(msg, "attempt")), 2, "attempt number");
	is_int(json_integer_value(json_object_get(msg, "deadline")), 1005000,
	       "deadline = now + timeoutSeconds");
	is_str(json_string_value(json_array_get(
		       json_object_get(json_object_get(msg, "shell"), "command"), 1)),
	       "hello $(NAME)", "argv passed unexpanded (the runner expands from env only)");
	is_str(json_string_value(
		       json_object_get(json_array_get(json_object_get(msg, "env"), 0), "value")),
	       "world", "env value");
	ok(json_is_object(json_object_get(msg, "input")), "input passed");
	json_decref(msg);

	/* Unsupported or invalid specs give a reason for the InvalidSpec condition. */
	json_object_del(json_object_get(task, "spec"), "shell");
	json_object_set_new(json_object_get(task, "spec"), "container",
			    json_pack("{ss}", "image", "busybox"));
	msg = taskctl_build_dispatch(task, 1, 0, err, sizeof(err));
	ok(msg && json_is_object(json_object_get(msg, "container")) &&
		   !json_object_get(msg, "shell"),
	   "a container spec becomes a container dispatch (checked against the queue's policy later)");
	json_decref(msg);
	msg = NULL;
	json_object_del(json_object_get(task, "spec"), "container");
	json_object_set_new(json_object_get(task, "spec"), "http",
			    json_pack("{ss}", "url", "https://example.com/x"));
	msg = taskctl_build_dispatch(task, 1, 0, err, sizeof(err));
	is_str(msg ? json_string_value(json_object_get(json_object_get(msg, "http"), "url")) : err,
	       "https://example.com/x", "an http spec becomes an http dispatch");
	json_decref(msg);
	json_object_del(json_object_get(task, "spec"), "http");
	json_object_set_new(json_object_get(task, "spec"), "shell",
			    json_pack("{s[ss]}", "command", "echo", "hello $(NAME)"));
	json_array_append_new(
		json_object_get(json_object_get(task, "spec"), "env"),
		json_pack("{ss s{ss}}", "name", "TOKEN", "valueFrom", "queueSecret", "api"));
	msg = taskctl_build_dispatch(task, 1, 0, err, sizeof(err));
	ok(msg && json_array_size(json_object_get(msg, "env")) == 1,
	   "a queueSecret entry is left for the queue to resolve at dispatch, never copied as a value");
	json_decref(msg);
	json_array_remove(json_object_get(json_object_get(task, "spec"), "env"), 1);

	/* A failed result becomes a Failed status with a False condition. */
	res = load(
		"{\"type\":\"result\",\"taskUid\":\"1234\",\"attempt\":1,\"phase\":\"Failed\",\"exitCode\":3,"
		"\"reason\":\"ExitCode\",\"logTail\":\"oops\\n\",\"truncated\":false,\"startTime\":1700000000000,"
		"\"completionTime\":1700000001000}");
	patch = taskctl_terminal_status(task, res, 1, "runner-a", NULL, 1700000002000, 4096);
	st = json_object_get(patch, "status");
	is_str(json_string_value(json_object_get(st, "phase")), "Failed", "phase Failed");
	is_int(json_integer_value(json_object_get(st, "exitCode")), 3, "exitCode 3");
	is_str(json_string_value(json_object_get(st, "message")), "exited with code 3",
	       "message from exit code");
	is_str(json_string_value(json_object_get(st, "startTime")), "2023-11-14T22:13:20Z",
	       "startTime RFC 3339");
	is_str(json_string_value(json_object_get(st, "completionTime")), "2023-11-14T22:13:21Z",
	       "completionTime");
	is_str(json_string_value(json_object_get(st, "logTail")), "oops\n", "logTail");
	is_int(json_integer_value(json_object_get(st, "observedGeneration")), 3,
	       "observedGeneration");
	c = json_array_get(json_object_get(st, "conditions"), 0);
	ok(c && strcmp(json_string_value(json_object_get(c, "type")), "Succeeded") == 0 &&
		   strcmp(json_string_value(json_object_get(c, "status")), "False") == 0,
	   "Succeeded condition False");
	is_int(json_integer_value(json_object_get(c, "observedGeneration")), 3,
	       "condition observedGeneration");
	is_int((long long)json_array_size(json_object_get(st, "attemptHistory")), 1,
	       "attempt recorded in history");
	json_decref(patch);
	json_decref(res);

	/* Success with output and a long multi-byte log tail cut at a character boundary. */
	{
		char tail[6000];
		memset(tail, 'a', sizeof(tail));
		memcpy(tail + sizeof(tail) - 4096 - 2, "\xc3\xa9", 2); /* é straddling the cut */
		memcpy(tail + sizeof(tail) - 4096 - 1, "\xc3\xa9", 2);
		tail[sizeof(tail) - 1] = '\0';
		res = json_pack("{sssssIsssIso}", "type", "result", "taskUid", "1234", "attempt",
				(json_int_t)1, "phase", "Succeeded", "exitCode", (json_int_t)0,
				"output", json_pack("{sb}", "ok", 1));
		json_object_set_new(res, "logTail", json_string(tail));
		patch = taskctl_terminal_status(task, res, 1, "runner-a", NULL, 1700000002000,
						4096);
		st = json_object_get(patch, "status");
		is_str(json_string_value(json_object_get(st, "phase")), "Succeeded",
		       "phase Succeeded");
		ok(json_is_true(json_object_get(json_object_get(st, "output"), "ok")),
		   "output copied");
		ok(json_string_length(json_object_get(st, "logTail")) <= 4096,
		   "logTail within 4 KiB (%zu)",
		   json_string_length(json_object_get(st, "logTail")));
		c = json_array_get(json_object_get(st, "conditions"), 0);
		is_str(json_string_value(json_object_get(c, "status")), "True",
		       "Succeeded condition True");
		json_decref(patch);
		json_decref(res);
	}
	is_str(taskctl_utf8_tail("abc", 10), "abc", "short strings unchanged");
	is_str(taskctl_utf8_tail("x\xc3\xa9y", 2), "y", "tail never starts inside a character");
	{
		/* Becoming leader twice must not leak the orphan set (LeakSanitizer checks at exit). */
		struct wq *q = wq_new();
		struct taskctl *t = taskctl_new(&(struct taskctl_cfg){ .queue = q });
		taskctl_resume(t);
		taskctl_resume(t);
		ok(t != NULL, "taskctl_resume twice, then free: nothing leaks");
		taskctl_free(t);
		wq_free(q);
	}
	{
		/* timeoutSeconds far past any date: the deadline clamps at year 9999. */
		json_t *big = load(
			"{\"metadata\":{\"name\":\"b\",\"namespace\":\"d\",\"uid\":\"u\"},"
			"\"spec\":{\"shell\":{\"command\":[\"true\"]},\"timeoutSeconds\":9223372036854775807}}");
		msg = taskctl_build_dispatch(big, 1, 1000000, err, sizeof(err));
		ok(msg && json_integer_value(json_object_get(msg, "deadline")) ==
				   INT64_C(253402300799999),
		   "timeoutSeconds INT64_MAX: deadline at the end of year 9999, not in the past (%lld)",
		   (long long)json_integer_value(json_object_get(msg, "deadline")));
		json_decref(msg);
		json_decref(big);
	}
	json_decref(task);
	return done_testing();
}
