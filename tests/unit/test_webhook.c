/* The admission webhook's checks and its AdmissionReview codec (controller/webhook.c). */
#include "tap.h"
#include "webhook.h"

static json_t *load(const char *s)
{
	json_error_t e;
	json_t *j = json_loads(s, 0, &e);
	if (!j)
		diag("bad test JSON: %s", e.text);
	return j;
}

/* A TaskQueue "restricted" allowing shell only, declaring secret "tok", with a low cost limit;
 * every other name does not exist. */
static json_t *queue(const char *ns, const char *name, void *ud)
{
	(void)ud;
	if (strcmp(ns, "team") != 0 || strcmp(name, "restricted") != 0)
		return NULL;
	return load("{\"metadata\":{\"name\":\"restricted\",\"namespace\":\"team\"},\"spec\":{"
		    "\"secrets\":"
		    "[{\"name\":\"tok\",\"secretKeyRef\":{\"name\":\"s\",\"key\":\"k\"}}],"
		    "\"policy\":{\"executors\":"
		    "[\"shell\"],\"conditions\":{\"maxCost\":50}}}}");
}

/* Reviews kind/op with object (JSON text) in namespace team; returns the message ("" allowed). */
static void review(const char *kind, const char *op, const char *object, const char *old,
		   const char *want, const char *name)
{
	char body[8192];
	struct webhook_request req;
	struct webhook_verdict v;
	char err[256] = "";
	json_t *doc;

	snprintf(body, sizeof(body),
		 "{\"apiVersion\":\"admission.k8s.io/"
		 "v1\",\"kind\":\"AdmissionReview\",\"request\":{\"uid\":\"u-1\","
		 "\"kind\":{\"group\":\"tasked.dev\",\"version\":\"v1alpha1\",\"kind\":\"%s\"},"
		 "\"operation\":\"%s\","
		 "\"namespace\":\"team\",\"object\":%s,\"oldObject\":%s}}",
		 kind, op, object, old ? old : "null");
	doc = webhook_decode(body, strlen(body), &req, err, sizeof(err));
	if (!ok(doc != NULL, "%s: decodes", name)) {
		diag("%s", err);
		return;
	}
	webhook_review(&req, queue, NULL, &v);
	if (!want[0])
		is_str(v.allowed ? "" : v.message, "", name);
	else
		ok(!v.allowed && strstr(v.message, want) != NULL, "%s", name) ||
			(diag("message: %s (allowed %d), expected it to hold: %s", v.message,
			      v.allowed, want),
			 0);
	json_decref(doc);
}

#define FLOW(tasks) \
	"{\"metadata\":{\"name\":\"f\",\"namespace\":\"team\"},\"spec\":{\"tasks\":" tasks "}}"
#define TASK(spec) "{\"metadata\":{\"name\":\"t\",\"namespace\":\"team\"},\"spec\":" spec "}"
#define SH "\"shell\":{\"command\":[\"true\"]}"

static void test_flows(void)
{
	review("Flow", "CREATE",
	       FLOW("[{\"name\":\"a\"," SH "},{\"name\":\"b\",\"dependsOn\":[\"a\"]," SH "}]"),
	       NULL, "", "a valid Flow is allowed");
	review("Flow", "CREATE",
	       FLOW("[{\"name\":\"a\",\"dependsOn\":[\"b\"]," SH
		    "},{\"name\":\"b\",\"dependsOn\":[\"a\"]," SH "}]"),
	       NULL, "spec.tasks: the dependencies form a cycle through task",
	       "a cycle is refused");
	review("Flow", "CREATE", FLOW("[{\"name\":\"a\",\"dependsOn\":[\"a\"]," SH "}]"), NULL,
	       "cycle through task a", "a self-dependency is a cycle");
	review("Flow", "CREATE", FLOW("[{\"name\":\"a\",\"dependsOn\":[\"ghost\"]," SH "}]"), NULL,
	       "spec.tasks: task a depends on ghost, which is not in this Flow",
	       "an unknown dependsOn is refused");
	review("Flow", "CREATE", FLOW("[{\"name\":\"a\"," SH "},{\"name\":\"a\"," SH "}]"), NULL,
	       "spec.tasks: task name a is used twice", "duplicate names are refused");
	review("Flow", "CREATE", FLOW("[]"), NULL, "spec.tasks: spec.tasks is empty",
	       "an empty Flow is refused");
	review("Flow", "CREATE",
	       FLOW("[{\"name\":\"a\"," SH "},{\"name\":\"b\",\"when\":\"tasks.a.phase ==\"," SH
		    "}]"),
	       NULL, "spec.tasks[1].when: 1:", "a syntax error in when names the entry");
	review("Flow", "CREATE",
	       FLOW("[{\"name\":\"a\"," SH "},{\"name\":\"b\",\"shell\":{\"command\":[\"echo\",\"$("
		    "tasks.x.output.v)\"]}}]"),
	       NULL,
	       "spec.tasks[1].shell.command[1]: $(tasks.x.output.v) refers to task x, which is not "
	       "in this Flow",
	       "an unknown $(tasks.x) is refused");
	review("Flow", "CREATE",
	       FLOW("[{\"name\":\"a\"," SH "},{\"name\":\"b\",\"shell\":{\"command\":[\"echo\",\"$("
		    "tasks.a.output.v)\"]}}]"),
	       NULL, "", "a sibling's output may be referenced (any sibling, as at run time)");
	review("Flow", "CREATE",
	       FLOW("[{\"name\":\"a\"," SH "},{\"name\":\"b\",\"env\":[{\"name\":\"X\",\"value\":"
		    "\"$(tasks.a.stdout)\"}]," SH "}]"),
	       NULL,
	       "spec.tasks[1].env[0].value: $(tasks.a.stdout): only output.PATH, exitCode and "
	       "phase",
	       "an unknown field of a reference is refused");
	review("Flow", "CREATE",
	       "{\"metadata\":{\"name\":\"f\"},\"spec\":{\"queue\":\"restricted\",\"tasks\":[{"
	       "\"name\":\"a\","
	       "\"http\":{\"url\":\"https://example.com\"}}]}}",
	       NULL, "spec.tasks[0].http: the http executor is not allowed by TaskQueue restricted",
	       "the Flow's queue policy applies to its entries");
	review("Flow", "CREATE",
	       "{\"metadata\":{\"name\":\"f\"},\"spec\":{\"queue\":\"nope\",\"tasks\":[{\"name\":"
	       "\"a\","
	       "\"container\":{\"image\":\"x\"}}]}}",
	       NULL, "", "a queue that does not exist refuses nothing");
	review("Flow", "UPDATE", FLOW("[{\"name\":\"a\",\"dependsOn\":[\"ghost\"]," SH "}]"),
	       FLOW("[{\"name\":\"a\",\"dependsOn\":[\"ghost\"]," SH "}]"), "",
	       "an update that leaves the spec alone is allowed (the object stays deletable)");
	review("Flow", "UPDATE", FLOW("[{\"name\":\"a\",\"dependsOn\":[\"ghost\"]," SH "}]"),
	       FLOW("[{\"name\":\"a\"," SH "}]"), "which is not in this Flow",
	       "an update of the spec is checked");
	review("Flow", "DELETE", "null", FLOW("[]"), "", "DELETE is not reviewed");
}

static void test_tasks(void)
{
	review("Task", "CREATE", TASK("{" SH "}"), NULL, "", "a plain Task is allowed");
	review("Task", "CREATE", TASK("{\"when\":\"size(\"," SH "}"), NULL,
	       "spec.when: 1:6: unexpected end", "bad when syntax");
	review("Task", "CREATE", TASK("{\"when\":\"nosuchfn(1)\"," SH "}"), NULL,
	       "spec.when:", "unknown function");
	review("Task", "CREATE",
	       TASK("{\"dependsOn\":[\"a\"],\"when\":\"tasks.a.output.ok\"," SH "}"), NULL, "",
	       "a when that reads a missing output key is not refused (the output is known only at "
	       "run time)");
	review("Task", "CREATE", TASK("{\"when\":\"task.attempt == 1\"," SH "}"), NULL, "",
	       "a valid when");
	review("Task", "CREATE",
	       TASK("{\"queue\":\"restricted\",\"when\":\"[1,2,3,4,5,6,7,8,9,10].size() + "
		    "[1,2,3,4,5,6,7,8,9,10].size()"
		    " + [1,2,3,4,5,6,7,8,9,10].size() + [1,2,3,4,5,6,7,8,9,10].size() > 0\"," SH
		    "}"),
	       NULL, "spec.when: cost limit 50 exceeded",
	       "the queue's cost limit applies at admission");
	review("Task", "CREATE",
	       TASK("{\"when\":\"[1,2,3,4,5,6,7,8,9,10].size() + [1,2,3,4,5,6,7,8,9,10].size()"
		    " + [1,2,3,4,5,6,7,8,9,10].size() + [1,2,3,4,5,6,7,8,9,10].size() > 0\"," SH
		    "}"),
	       NULL, "", "the same condition passes the default limits");
	review("Task", "CREATE",
	       TASK("{\"shell\":{\"command\":[\"echo\",\"$(tasks.b.exitCode)\"]}}"), NULL,
	       "spec.shell.command[1]: $(tasks.b.exitCode) refers to task b, which is not in "
	       "dependsOn",
	       "a Task may reference only its dependencies");
	review("Task", "CREATE",
	       TASK("{\"dependsOn\":[\"b\"],\"shell\":{\"command\":[\"echo\",\"$(tasks.b.exitCode) "
		    "$$(tasks.z.phase)"
		    " $(X) $(tasks.b.output.a.0)\"]}}"),
	       NULL, "", "dependencies, escapes and other variables are fine");
	review("Task", "CREATE",
	       TASK("{\"dependsOn\":[\"b\"],\"http\":{\"url\":\"https://x/$(tasks.b.phase.x)\"}}"),
	       NULL, "spec.http.url: $(tasks.b.phase.x): only output.PATH", "phase takes no path");
	review("Task", "CREATE",
	       TASK("{\"queue\":\"restricted\",\"http\":{\"url\":\"https://x\"}}"), NULL,
	       "spec.http: the http executor is not allowed by TaskQueue restricted "
	       "(policy.executors)",
	       "an executor the queue does not allow is refused");
	review("Task", "CREATE",
	       TASK("{\"queue\":\"restricted\",\"env\":[{\"name\":\"T\",\"valueFrom\":{"
		    "\"queueSecret\":\"other\"}}]," SH "}"),
	       NULL,
	       "spec.env[0].valueFrom.queueSecret: TaskQueue restricted declares no secret other",
	       "an undeclared queue secret is refused");
	review("Task", "CREATE",
	       TASK("{\"queue\":\"restricted\",\"env\":[{\"name\":\"T\",\"valueFrom\":{"
		    "\"queueSecret\":\"tok\"}}]," SH "}"),
	       NULL, "", "a declared queue secret is fine");
	review("Task", "CREATE",
	       "{\"metadata\":{\"name\":\"f-b\",\"ownerReferences\":[{\"kind\":\"Flow\","
	       "\"controller\":true,\"name\":\"f\","
	       "\"uid\":\"1\",\"apiVersion\":\"tasked.dev/"
	       "v1alpha1\"}]},\"spec\":{\"shell\":{\"command\":[\"$(tasks.a.phase)\"]}}}",
	       NULL, "", "a Flow's child may name its siblings");
	review("Task", "UPDATE", TASK("{\"cancel\":true," SH "}"), TASK("{" SH "}"), "",
	       "setting cancel is fine");
	review("Task", "CREATE",
	       TASK("{\"queue\":\"restricted\",\"http\":{\"url\":\"https://"
		    "x\",\"oauth2\":{\"tokenURL\":"
		    "\"https://"
		    "t\",\"clientID\":\"c\",\"clientSecret\":{\"queueSecret\":\"nope\"}}}}"),
	       NULL, "spec.http: the http executor", "(the executor is checked first)");
	{
		json_t *q = queue("team", "restricted", NULL), *spec;
		char msg[512] = "";
		json_array_append_new(
			json_object_get(json_object_get(json_object_get(q, "spec"), "policy"),
					"executors"),
			json_string("http"));
		spec = load("{\"http\":{\"url\":\"https://"
			    "x\",\"oauth2\":{\"clientSecret\":{\"queueSecret\":"
			    "\"nope\"}}}}");
		ok(webhook_check_task(spec, NULL, q, "spec", msg, sizeof(msg)) < 0 &&
			   strstr(msg,
				  "spec.http.oauth2.clientSecret.queueSecret: TaskQueue restricted "
				  "declares no secret nope"),
		   "an undeclared oauth2 client secret is refused (%s)", msg);
		json_decref(spec);
		json_decref(q);
	}
	review("TaskQueue", "CREATE", "{\"spec\":{}}", NULL, "", "other kinds are allowed");
}

static void test_codec(void)
{
	struct webhook_request req;
	char err[256], *out;
	size_t n = 0;
	int status;
	json_t *j;

	ok(webhook_decode("{}", 2, &req, err, sizeof(err)) == NULL && req.uid[0] == '\0',
	   "{} is refused");
	ok(webhook_decode("[", 1, &req, err, sizeof(err)) == NULL, "garbage is refused");
	ok(webhook_decode("{\"apiVersion\":\"admission.k8s.io/"
			  "v1beta1\",\"kind\":\"AdmissionReview\",\"request\":"
			  "{\"uid\":\"x\"}}",
			  78, &req, err, sizeof(err)) == NULL,
	   "v1beta1 is refused");
	{
		static const char nul[] = "{\"apiVersion\":\"admission.k8s.io/"
					  "v1\",\"kind\":\"AdmissionReview\",\"request\":"
					  "{\"uid\":\"a\\u0000b\",\"kind\":{\"group\":\"tasked."
					  "dev\",\"kind\":\"Task\"},"
					  "\"operation\":\"CREATE\"}}";
		ok(webhook_decode(nul, sizeof(nul) - 1, &req, err, sizeof(err)) == NULL,
		   "a NUL in the uid is refused");
	}
	{
		/* Deeper than the decoder goes: allowed with a warning, answered under its uid. */
		size_t depth = WEBHOOK_MAX_DEPTH + 10, len = 0;
		char *b = malloc(depth * 2 + 512);
		len += (size_t)sprintf(
			b, "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\","
			   "\"request\":{\"uid\":\"deep-1\",\"kind\":{\"group\":\"tasked.dev\","
			   "\"kind\":\"Task\"},\"operation\":\"CREATE\",\"object\":{\"spec\":{"
			   "\"input\":");
		memset(b + len, '[', depth);
		len += depth;
		memset(b + len, ']', depth);
		len += depth;
		len += (size_t)sprintf(b + len, "}}}}");
		out = webhook_handle(b, len, queue, NULL, &status, &n);
		j = out ? json_loads(out, 0, NULL) : NULL;
		ok(status == 200 && j &&
			   json_is_true(
				   json_object_get(json_object_get(j, "response"), "allowed")) &&
			   strcmp(json_string_value(
					  json_object_get(json_object_get(j, "response"), "uid")),
				  "deep-1") == 0 &&
			   json_array_size(json_object_get(json_object_get(j, "response"),
							   "warnings")) == 1,
		   "a review nested too deep is allowed with a warning, under its uid");
		json_decref(j);
		free(out);
		free(b);
	}
	out = webhook_handle("nonsense", 8, queue, NULL, &status, &n);
	is_int(status, 400, "no uid: 400");
	free(out);
	{
		char *big = calloc(1, WEBHOOK_MAX_BODY + 2);
		memset(big, ' ', WEBHOOK_MAX_BODY + 1);
		ok(webhook_decode(big, WEBHOOK_MAX_BODY + 1, &req, err, sizeof(err)) == NULL &&
			   strstr(err, "exceeds"),
		   "a body over the cap is refused before parsing");
		free(big);
	}
	{
		static const char body[] =
			"{\"apiVersion\":\"admission.k8s.io/"
			"v1\",\"kind\":\"AdmissionReview\",\"request\":{\"uid\":\"u-9\","
			"\"kind\":{\"group\":\"tasked.dev\",\"version\":\"v1alpha1\",\"kind\":"
			"\"Flow\"},\"operation\":\"CREATE\","
			"\"namespace\":\"team\",\"object\":" FLOW(
				"[{\"name\":\"a\",\"dependsOn\":[\"a\"]," SH "}]") "}}";
		json_t *r;
		out = webhook_handle(body, sizeof(body) - 1, queue, NULL, &status, &n);
		j = out ? json_loads(out, 0, NULL) : NULL;
		r = json_object_get(j, "response");
		ok(status == 200 && j &&
			   strcmp(json_string_value(json_object_get(j, "apiVersion")),
				  "admission.k8s.io/v1") == 0 &&
			   strcmp(json_string_value(json_object_get(j, "kind")),
				  "AdmissionReview") == 0 &&
			   strcmp(json_string_value(json_object_get(r, "uid")), "u-9") == 0 &&
			   json_is_false(json_object_get(r, "allowed")) &&
			   json_integer_value(
				   json_object_get(json_object_get(r, "status"), "code")) == 403 &&
			   strstr(json_string_value(
					  json_object_get(json_object_get(r, "status"), "message")),
				  "cycle"),
		   "a refusal is an AdmissionReview v1 response with the uid, allowed false, code "
		   "403 and the message");
		is_int((long long)n, (long long)(out ? strlen(out) : 0), "length reported");
		json_decref(j);
		free(out);
	}
}

int main(void)
{
	test_flows();
	test_tasks();
	test_codec();
	return done_testing();
}
