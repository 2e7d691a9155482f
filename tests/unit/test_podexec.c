/* The container executor's pure parts: image references and allowlist patterns, the TaskQueue
 * container policy (built-in defaults, refusals), the check of a Task's spec.container (naming
 * the rule), and the Pod built for an attempt (name, owner, labels, hardening, resources, input,
 * output, secrets by reference only). */
#include "podexec.h"
#include "podpolicy.h"
#include "podspec.h"
#include "taskctl_dispatch.h"
#include "tap.h"

#include <errno.h>
#include <string.h>

static json_t *J(const char *s)
{
	json_error_t e;
	json_t *j = json_loads(s, 0, &e);
	if (!j)
		diag("bad JSON in test: %s: %s", s, e.text);
	return j;
}

static int M(const char *p, const char *i)
{
	return podpolicy_image_match(p, strlen(p), i, strlen(i));
}

#define DIG "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void test_images(void)
{
	ok(M("reg.io/a/b:1.0", "reg.io/a/b:1.0"), "exact reference matches itself");
	ok(!M("reg.io/a/b:1.0", "reg.io/a/b:1.01"), "exact is exact");
	ok(M("reg.io/a/b:*", "reg.io/a/b:v2"), "REPO:* matches a tag");
	ok(!M("reg.io/a/b:*", "reg.io/a/bc:v2"), "REPO:* does not match a longer repository");
	ok(!M("reg.io/a/b:*", "reg.io/a/b/c:v2"), "REPO:* does not match a sub-repository");
	ok(!M("reg.io/a/b:*", "reg.io/a/b@" DIG), "REPO:* does not match a digest");
	ok(!M("reg.io/a/b:*", "reg.io/a/b:v2@" DIG), "REPO:* does not match tag@digest");
	ok(!M("reg.io/a/b:*", "reg.io/a/b:"), "REPO:* needs a tag");
	ok(!M("reg.io/a/b:*", "reg.io/a/b:-x"), "a tag cannot start with -");
	ok(M("reg.io/a/b@*", "reg.io/a/b@" DIG), "REPO@* matches a sha256 digest");
	ok(!M("reg.io/a/b@*", "reg.io/a/b@sha256:abc"), "a short digest is no digest");
	ok(!M("reg.io/a/b@*", "reg.io/a/b:1"), "REPO@* does not match a tag");
	ok(M("localhost:5000/x:*", "localhost:5000/x:1"),
	   "a registry port is part of the repository");
	ok(!M("*", "anything:1"), "* alone is no pattern");
	ok(!M("reg.io/*:*", "reg.io/a:1"), "no wildcard inside the repository");
	ok(!M("reg.io/a/b:1*", "reg.io/a/b:12"), "no tag prefix patterns");
	ok(!M("reg.io/a/b:v:*", "reg.io/a/b:v:1"), "repo:tag:* is refused");
	ok(!podpolicy_image_valid("a b", 3), "spaces are not a reference");
	ok(!podpolicy_image_valid("a/../b", 6), "no .. in a repository");
	ok(!podpolicy_image_valid("a@b@" DIG, strlen("a@b@" DIG)), "one @ at most");
	ok(!podpolicy_image_valid("", 0), "empty is not a reference");
	ok(podpolicy_image_valid("busybox", 7), "a bare name is a reference");
}

struct chk {
	int r;
	const char *reason;
	char err[512];
	struct podres res;
};

static struct chk check(const char *policy, const char *container, const char *q)
{
	struct chk c = { 0 };
	struct podpolicy p;
	json_t *pj = policy ? J(policy) : NULL, *cj = J(container);
	char perr[256] = "";
	c.reason = "";
	if (podpolicy_parse(pj, &p, perr, sizeof(perr)) < 0) {
		c.r = -100;
		snprintf(c.err, sizeof(c.err), "%s", perr);
	} else {
		c.r = podpolicy_check(&p, cj, q, &c.res, &c.reason, c.err, sizeof(c.err));
	}
	podpolicy_release(&p);
	json_decref(pj);
	json_decref(cj);
	return c;
}

static void test_policy(void)
{
	const char *pol =
		"{\"imageAllowlist\":[\"reg.io/app:*\",\"reg.io/pinned@*\",\"busybox:1\"],"
		"\"volumeAllowlist\":[{\"persistentVolumeClaim\":\"data\",\"mountPath\":\"/data\"},"
		"{\"configMap\":\"cfg\",\"mountPath\":\"/etc/app\"}],"
		"\"defaultResources\":{\"cpu\":\"500m\",\"memory\":\"128Mi\"},"
		"\"maxResources\":{\"cpu\":\"2\",\"memory\":\"1Gi\"},\"maxOutputBytes\":1000}";
	struct podpolicy p;
	char err[256];
	struct chk c;
	json_t *j;

	ok(podpolicy_parse(NULL, &p, err, sizeof(err)) == 0 && json_array_size(p.images) == 0 &&
		   p.network_disabled && p.default_memory == PODPOLICY_DEFAULT_MEMORY &&
		   p.max_output_bytes == PODPOLICY_DEFAULT_OUTPUT,
	   "no queue: no image, network disabled, built-in resources and output cap");
	podpolicy_release(&p);
	c = check(NULL, "{\"image\":\"busybox:1\"}", NULL);
	ok(c.r == -EINVAL && strcmp(c.reason, "PolicyDenied") == 0 &&
		   strstr(c.err, "without a TaskQueue"),
	   "no queue: every image is denied, saying why (%s)", c.err);
	j = J("{\"networkDisabled\":false,\"maxOutputBytes\":99999999999}");
	ok(podpolicy_parse(j, &p, err, sizeof(err)) == 0 && !p.network_disabled &&
		   p.max_output_bytes == PODPOLICY_MAX_OUTPUT,
	   "networkDisabled false; maxOutputBytes saturates at the controller's cap");
	podpolicy_release(&p);
	json_decref(j);
	c = check("{\"imageAllowlist\":[\"reg.io/*\"]}", "{\"image\":\"reg.io/x:1\"}", "q");
	ok(c.r == -100 && strstr(c.err, "imageAllowlist[0]"),
	   "an invalid pattern fails the policy, naming it (%s)", c.err);
	c = check("{\"volumeAllowlist\":[{\"configMap\":\"x\"}]}", "{\"image\":\"a\"}", "q");
	ok(c.r == -100 && strstr(c.err, "volumeAllowlist[0]"), "a volume entry needs a mountPath");
	c = check("{\"allowPrivileged\":true,\"imageAllowlist\":[\"a\"]}", "{\"image\":\"a\"}",
		  "q");
	ok(c.r == 0, "allowPrivileged means nothing (the hardening is not negotiable)");

	c = check(pol, "{\"image\":\"reg.io/app:v1\"}", "q");
	ok(c.r == 0 && c.res.memory_bytes == 128 << 20 && c.res.cpu_milli == 500,
	   "allowed image; queue defaults apply");
	c = check(pol, "{\"image\":\"reg.io/other:v1\"}", "q");
	ok(c.r == -EINVAL && strcmp(c.reason, "PolicyDenied") == 0 &&
		   strstr(c.err, "imageAllowlist") && strstr(c.err, "TaskQueue q"),
	   "an image outside the allowlist: PolicyDenied naming the rule (%s)", c.err);
	c = check(pol, "{\"image\":\"reg.io/app:v1 \"}", "q");
	ok(c.r == -EINVAL && strcmp(c.reason, "InvalidSpec") == 0,
	   "a malformed reference is InvalidSpec");
	c = check(pol,
		  "{\"image\":\"reg.io/app:v1\",\"resources\":{\"limits\":{\"memory\":\"2Gi\"}}}",
		  "q");
	ok(c.r == -EINVAL && strcmp(c.reason, "PolicyDenied") == 0 &&
		   strstr(c.err, "maxResources.memory"),
	   "asking above maxResources: PolicyDenied (%s)", c.err);
	c = check(pol,
		  "{\"image\":\"reg.io/"
		  "app:v1\",\"resources\":{\"requests\":{\"memory\":\"64Mi\",\"cpu\":\"2\"}}}",
		  "q");
	ok(c.r == 0 && c.res.memory_bytes == 64 << 20 && c.res.cpu_milli == 2000,
	   "requests alone become the limits");
	c = check(pol,
		  "{\"image\":\"reg.io/app:v1\",\"resources\":{\"limits\":{\"nvidia.com/gpu\":1}}}",
		  "q");
	ok(c.r == -EINVAL && strcmp(c.reason, "InvalidSpec") == 0, "only cpu and memory");
	c = check("{\"imageAllowlist\":[\"a\"],\"defaultResources\":{\"memory\":\"4Gi\"},"
		  "\"maxResources\":{\"memory\":\"1Gi\"}}",
		  "{\"image\":\"a\"}", "q");
	ok(c.r == 0 && c.res.memory_bytes == INT64_C(1) << 30,
	   "a default above the maximum is lowered to it");

	c = check(
		pol,
		"{\"image\":\"busybox:1\",\"volumes\":[{\"name\":\"d\",\"persistentVolumeClaim\":{"
		"\"claimName\":\"data\"},"
		"\"mountPath\":\"/"
		"data\"},{\"name\":\"c\",\"configMap\":{\"name\":\"cfg\"},\"mountPath\":\"/etc/"
		"app\"},"
		"{\"name\":\"s\",\"emptyDir\":{\"sizeLimit\":\"1Gi\"},\"mountPath\":\"/scratch\"},"
		"{\"name\":\"k\",\"secret\":{\"queueSecret\":\"tok\"},\"mountPath\":\"/secret\"}]}",
		"q");
	ok(c.r == 0, "allowlisted PVC and ConfigMap, an emptyDir and a queue secret (%s)", c.err);
	c = check(pol,
		  "{\"image\":\"busybox:1\",\"volumes\":[{\"name\":\"d\",\"persistentVolumeClaim\":"
		  "{\"claimName\":\"data\"},"
		  "\"mountPath\":\"/elsewhere\"}]}",
		  "q");
	ok(c.r == -EINVAL && strcmp(c.reason, "PolicyDenied") == 0 &&
		   strstr(c.err, "volumeAllowlist"),
	   "an allowlisted PVC at another path: PolicyDenied (%s)", c.err);
	c = check(pol,
		  "{\"image\":\"busybox:1\",\"volumes\":[{\"name\":\"d\",\"persistentVolumeClaim\":"
		  "{\"claimName\":\"other\"},"
		  "\"mountPath\":\"/data\"}]}",
		  "q");
	ok(c.r == -EINVAL && strcmp(c.reason, "PolicyDenied") == 0,
	   "a PVC outside the allowlist: PolicyDenied");
	c = check(pol,
		  "{\"image\":\"busybox:1\",\"volumes\":[{\"name\":\"s\",\"emptyDir\":{},"
		  "\"mountPath\":\"/tmp/x\"}]}",
		  "q");
	ok(c.r == -EINVAL && strcmp(c.reason, "InvalidSpec") == 0, "nothing mounts under /tmp");
	c = check(pol,
		  "{\"image\":\"busybox:1\",\"volumes\":[{\"name\":\"s\",\"emptyDir\":{},"
		  "\"mountPath\":\"/a/../dev\"}]}",
		  "q");
	ok(c.r == -EINVAL, "no .. in a mount path");
	c = check(pol,
		  "{\"image\":\"busybox:1\",\"volumes\":[{\"name\":\"tasked-input\",\"emptyDir\":{}"
		  ",\"mountPath\":\"/x\"}]}",
		  "q");
	ok(c.r == -EINVAL, "the controller's volume names are reserved");
	c = check(pol,
		  "{\"image\":\"busybox:1\",\"volumes\":[{\"name\":\"a\",\"emptyDir\":{},"
		  "\"mountPath\":\"/x\"},"
		  "{\"name\":\"b\",\"emptyDir\":{},\"mountPath\":\"/x\"}]}",
		  "q");
	ok(c.r == -EINVAL, "mount paths are unique");
	c = check(pol,
		  "{\"image\":\"busybox:1\",\"volumes\":[{\"name\":\"a\",\"emptyDir\":{"
		  "\"sizeLimit\":\"100Gi\"},\"mountPath\":\"/x\"}]}",
		  "q");
	ok(c.r == -EINVAL && strcmp(c.reason, "PolicyDenied") == 0,
	   "an emptyDir over 8Gi is denied");
	c = check(pol,
		  "{\"image\":\"busybox:1\",\"volumes\":[{\"name\":\"a\",\"hostPath\":{\"path\":\"/"
		  "\"},\"mountPath\":\"/x\"}]}",
		  "q");
	ok(c.r == -EINVAL && strcmp(c.reason, "InvalidSpec") == 0,
	   "a hostPath volume is no volume the executor knows");
}

static json_t *find_env(json_t *c, const char *name)
{
	json_t *e;
	size_t i;
	json_array_foreach(json_object_get(c, "env"), i, e)
		if (strcmp(json_string_value(json_object_get(e, "name")), name) == 0)
			return e;
	return NULL;
}

static void test_podspec(void)
{
	char name[64], name2[64], err[256];
	struct podspec_opts o = { .apparmor = "RuntimeDefault" };
	json_t *ctr = J("{\"image\":\"busybox:1\",\"command\":[\"sh\",\"-c\",\"echo $(X)\"],"
			"\"volumes\":[{\"name\":\"k\",\"secret\":{\"queueSecret\":\"tok\"},"
			"\"mountPath\":\"/secret\"}]}");
	json_t *env = J("[{\"name\":\"A\",\"value\":\"x$(B)y\"},{\"name\":\"S\",\"secretKeyRef\":{"
			"\"name\":\"sec\",\"key\":\"k\"}}]");
	json_t *refs = J("{\"tok\":{\"name\":\"sec\",\"key\":\"token\"}}");
	json_t *input = J("{\"n\":1}");
	struct podspec_task t = { .ns = "ns",
				  .name = "build.Thing",
				  .uid = "u-1",
				  .queue = "q",
				  .attempt = 2,
				  .container = ctr,
				  .env = env,
				  .input = input,
				  .secret_refs = refs,
				  .timeout_s = 30,
				  .res = { 64 << 20, 250 },
				  .network_disabled = 1 };
	json_t *pod, *ps, *c, *sc, *psc, *md;
	char *text;

	ok(podspec_name("build", "u-1", 1, name, sizeof(name)) == 0 &&
		   podspec_name("build", "u-1", 1, name2, sizeof(name2)) == 0 &&
		   strcmp(name, name2) == 0 && strncmp(name, "build-1-", 8) == 0 &&
		   strlen(name) == 13,
	   "the pod name is deterministic per (uid, attempt): %s", name);
	podspec_name("build", "u-2", 1, name2, sizeof(name2));
	ok(strcmp(name, name2) != 0, "another uid, another name");
	{
		char longn[300];
		memset(longn, 'a', 299);
		longn[299] = 0;
		longn[57] = '.';
		ok(podspec_name(longn, "u", 99999, name, sizeof(name)) == 0 &&
			   strlen(name) <= PODSPEC_NAME_LEN && !strchr(name, '.'),
		   "a long dotted name is cut to a DNS label (%s)", name);
	}
	pod = podspec_build(&t, &o, err, sizeof(err));
	ok(pod != NULL, "pod built (%s)", pod ? "" : err);
	if (!pod)
		return;
	md = json_object_get(pod, "metadata");
	ps = json_object_get(pod, "spec");
	c = json_array_get(json_object_get(ps, "containers"), 0);
	sc = json_object_get(c, "securityContext");
	psc = json_object_get(ps, "securityContext");
	ok(podspec_is_ours(pod, "u-1", 2) && !podspec_is_ours(pod, "u-1", 1) &&
		   !podspec_is_ours(pod, "u-9", 2),
	   "owned by the task (controller=true) with its uid and attempt labels");
	ok(strcmp(json_string_value(
			  json_object_get(json_object_get(md, "labels"), "tasked.dev/network")),
		  "disabled") == 0 &&
		   strcmp(json_string_value(json_object_get(json_object_get(md, "labels"),
							    "tasked.dev/queue")),
			  "q") == 0 &&
		   strcmp(json_string_value(json_object_get(json_object_get(md, "labels"),
							    "tasked.dev/executor")),
			  "container") == 0,
	   "labels: network disabled, queue, executor");
	ok(json_is_true(json_object_get(psc, "runAsNonRoot")) &&
		   json_integer_value(json_object_get(psc, "runAsUser")) == 65532 &&
		   json_integer_value(json_object_get(psc, "runAsGroup")) == 65532 &&
		   strcmp(json_string_value(
				  json_object_get(json_object_get(psc, "seccompProfile"), "type")),
			  "RuntimeDefault") == 0 &&
		   strcmp(json_string_value(
				  json_object_get(json_object_get(psc, "appArmorProfile"), "type")),
			  "RuntimeDefault") == 0,
	   "pod: non-root 65532:65532, seccomp and AppArmor RuntimeDefault");
	ok(json_is_false(json_object_get(ps, "automountServiceAccountToken")) &&
		   json_is_false(json_object_get(ps, "enableServiceLinks")) &&
		   strcmp(json_string_value(json_object_get(ps, "restartPolicy")), "Never") == 0 &&
		   json_integer_value(json_object_get(ps, "activeDeadlineSeconds")) == 30 &&
		   json_integer_value(json_object_get(ps, "terminationGracePeriodSeconds")) == 1,
	   "pod: no token, no service links, Never, deadline from the timeout, grace 1 s");
	ok(json_is_true(json_object_get(sc, "readOnlyRootFilesystem")) &&
		   json_is_false(json_object_get(sc, "allowPrivilegeEscalation")) &&
		   strcmp(json_string_value(json_array_get(
				  json_object_get(json_object_get(sc, "capabilities"), "drop"), 0)),
			  "ALL") == 0 &&
		   !json_object_get(json_object_get(sc, "capabilities"), "add") &&
		   strcmp(json_string_value(json_object_get(c, "imagePullPolicy")),
			  "IfNotPresent") == 0,
	   "container: read-only root, no escalation, drop ALL, IfNotPresent");
	ok(strcmp(json_string_value(json_object_get(
			  json_object_get(json_object_get(c, "resources"), "limits"), "memory")),
		  "64Mi") == 0 &&
		   strcmp(json_string_value(json_object_get(
				  json_object_get(json_object_get(c, "resources"), "requests"),
				  "cpu")),
			  "250m") == 0,
	   "requests = limits from the decided resources");
	ok(strcmp(json_string_value(json_object_get(c, "terminationMessagePolicy")), "File") == 0 &&
		   strcmp(json_string_value(json_object_get(find_env(c, "TASKED_OUTPUT"), "value")),
			  "/dev/termination-log") == 0 &&
		   strcmp(json_string_value(json_object_get(find_env(c, "TASKED_INPUT"), "value")),
			  PODSPEC_INPUT_FILE) == 0,
	   "TASKED_OUTPUT is the termination log, TASKED_INPUT the projected annotation");
	ok(strcmp(json_string_value(
			  json_object_get(json_object_get(md, "annotations"), PODSPEC_ANN_INPUT)),
		  "{\"n\":1}") == 0,
	   "the input is an annotation");
	ok(strcmp(json_string_value(json_object_get(find_env(c, "A"), "value")), "x$$(B)y") == 0,
	   "env values are literal ($ doubled against Kubernetes' expansion)");
	ok(strcmp(json_string_value(json_object_get(
			  json_object_get(json_object_get(find_env(c, "S"), "valueFrom"),
					  "secretKeyRef"),
			  "name")),
		  "sec") == 0 &&
		   !json_object_get(find_env(c, "S"), "value"),
	   "a queue secret is a secretKeyRef, never a value");
	text = json_dumps(pod, JSON_COMPACT);
	ok(text && strstr(text, "\"secretName\":\"sec\"") &&
		   strstr(text, "\"sizeLimit\":\"64Mi\"") && strstr(text, "\"mountPath\":\"/tmp\""),
	   "secret volume by reference, /tmp an emptyDir with a size limit");
	free(text);
	ok(!json_object_get(ps, "initContainers"), "no gate image: no network gate");
	json_decref(pod);
	o.gate_image = "tasked-runner:1";
	o.gate_timeout_s = 20;
	pod = podspec_build(&t, &o, err, sizeof(err));
	{
		json_t *ic = json_object_get(json_object_get(pod, "spec"), "initContainers"),
		       *g = json_array_get(ic, 0), *gsc = json_object_get(g, "securityContext"),
		       *lim = json_object_get(json_object_get(g, "resources"), "limits"),
		       *req = json_object_get(json_object_get(g, "resources"), "requests");
		ok(json_array_size(ic) == 1 &&
			   strcmp(json_string_value(json_object_get(g, "name")),
				  PODSPEC_GATE_CONTAINER) == 0 &&
			   strcmp(json_string_value(json_object_get(g, "image")),
				  "tasked-runner:1") == 0 &&
			   strcmp(json_string_value(
					  json_array_get(json_object_get(g, "command"), 0)),
				  PODSPEC_GATE_COMMAND) == 0 &&
			   strcmp(json_string_value(json_array_get(json_object_get(g, "args"), 1)),
				  "20000") == 0,
		   "without network: the network gate runs first, bounded by gate_timeout_s");
		ok(json_is_true(json_object_get(gsc, "readOnlyRootFilesystem")) &&
			   json_is_false(json_object_get(gsc, "allowPrivilegeEscalation")) &&
			   json_is_true(json_object_get(gsc, "runAsNonRoot")) &&
			   strcmp(json_string_value(json_array_get(
					  json_object_get(json_object_get(gsc, "capabilities"),
							  "drop"),
					  0)),
				  "ALL") == 0 &&
			   json_equal(lim, req) &&
			   strcmp(json_string_value(json_object_get(lim, "memory")),
				  PODSPEC_GATE_MEMORY) == 0 &&
			   !json_object_get(g, "env") && !json_object_get(g, "volumeMounts"),
		   "... hardened like the task, tiny requests = limits, no env, no volumes");
	}
	json_decref(pod);
	t.network_disabled = 0;
	pod = podspec_build(&t, &o, err, sizeof(err));
	ok(pod && !json_object_get(json_object_get(pod, "spec"), "initContainers"),
	   "with network: no gate");
	json_decref(pod);
	o.gate_image = NULL;

	o.apparmor = "None";
	json_object_set_new(refs, "tok", json_null());
	json_object_del(refs, "tok");
	pod = podspec_build(&t, &o, err, sizeof(err));
	ok(!pod && strstr(err, "tok"),
	   "a secret volume naming an undeclared queue secret is refused (%s)", err);
	json_object_set_new(refs, "tok", J("{\"name\":\"sec\",\"key\":\"token\"}"));
	pod = podspec_build(&t, &o, err, sizeof(err));
	ok(pod &&
		   !json_object_get(
			   json_object_get(json_object_get(pod, "spec"), "securityContext"),
			   "appArmorProfile") &&
		   !json_object_get(json_object_get(json_object_get(pod, "metadata"), "labels"),
				    "tasked.dev/network"),
	   "AppArmor None sets no profile; networking on: no network label");
	json_decref(pod);
	{
		json_t *big = json_string_nocheck("");
		char *s = malloc(PODSPEC_MAX_INPUT + 10);
		memset(s, 'x', PODSPEC_MAX_INPUT + 9);
		s[PODSPEC_MAX_INPUT + 9] = 0;
		json_decref(big);
		big = json_string(s);
		free(s);
		t.input = big;
		pod = podspec_build(&t, &o, err, sizeof(err));
		ok(!pod && strstr(err, "spec.input"),
		   "an input too big for an annotation is refused (%s)", err);
		json_decref(big);
	}
	{
		json_t *foreign = J("{\"metadata\":{\"labels\":{\"tasked.dev/"
				    "task-uid\":\"u-1\",\"tasked.dev/attempt\":\"2\","
				    "\"tasked.dev/executor\":\"container\"}}}");
		ok(!podspec_is_ours(foreign, "u-1", 2),
		   "a pod with our labels but no owner reference is foreign");
		json_decref(foreign);
	}
	json_decref(ctr);
	json_decref(env);
	json_decref(refs);
	json_decref(input);
}

static json_t *res_of(const char *pod, int64_t now, int *running)
{
	json_t *p = J(pod), *r;
	int64_t st;
	r = podexec_pod_result(p, now, 60000, running, &st);
	json_decref(p);
	return r;
}

static const char *S(json_t *r, const char *k)
{
	return json_string_value(json_object_get(r, k)) ?: "";
}

static void test_results(void)
{
	int running;
	json_t *r;
	char big[5000], pod[6000];

	r = res_of("{\"status\":{\"phase\":\"Running\",\"containerStatuses\":[{\"name\":\"task\","
		   "\"state\":{\"running\":"
		   "{\"startedAt\":\"2026-01-01T00:00:00Z\"}}}]}}",
		   0, &running);
	ok(!r && running, "a running container: no result yet, started");
	r = res_of("{\"status\":{\"containerStatuses\":[{\"name\":\"task\",\"state\":{"
		   "\"terminated\":{\"exitCode\":0,"
		   "\"reason\":\"Completed\",\"message\":\"{\\\"n\\\":2}\"}}}]}}",
		   0, &running);
	ok(r && strcmp(S(r, "phase"), "Succeeded") == 0 &&
		   json_integer_value(json_object_get(json_object_get(r, "output"), "n")) == 2,
	   "exit 0 with JSON in the termination message: Succeeded with that output");
	json_decref(r);
	r = res_of("{\"status\":{\"containerStatuses\":[{\"name\":\"task\",\"state\":{"
		   "\"terminated\":{\"exitCode\":3,"
		   "\"reason\":\"Error\"}}}]}}",
		   0, &running);
	ok(r && strcmp(S(r, "reason"), "ExitCode") == 0 &&
		   json_integer_value(json_object_get(r, "exitCode")) == 3,
	   "exit 3: ExitCode");
	json_decref(r);
	r = res_of("{\"status\":{\"containerStatuses\":[{\"name\":\"task\",\"state\":{"
		   "\"terminated\":{\"exitCode\":137,"
		   "\"reason\":\"OOMKilled\"}}}]}}",
		   0, &running);
	ok(r && strcmp(S(r, "reason"), "OOMKilled") == 0, "OOMKilled");
	json_decref(r);
	r = res_of("{\"status\":{\"phase\":\"Failed\",\"reason\":\"DeadlineExceeded\","
		   "\"containerStatuses\":[{\"name\":\"task\","
		   "\"state\":{\"terminated\":{\"exitCode\":137,\"reason\":\"Error\"}}}]}}",
		   0, &running);
	ok(r && strcmp(S(r, "reason"), "TimedOut") == 0, "the pod's DeadlineExceeded: TimedOut");
	json_decref(r);
	r = res_of("{\"status\":{\"phase\":\"Failed\",\"reason\":\"DeadlineExceeded\"}}", 0,
		   &running);
	ok(r && strcmp(S(r, "reason"), "TimedOut") == 0,
	   "DeadlineExceeded before any container status: TimedOut");
	json_decref(r);
	r = res_of("{\"status\":{\"phase\":\"Pending\",\"containerStatuses\":[{\"name\":\"task\","
		   "\"state\":{\"waiting\":"
		   "{\"reason\":\"ErrImageNeverPull\",\"message\":\"not present\"}}}]}}",
		   0, &running);
	ok(r && strcmp(S(r, "phase"), "Failed") == 0 &&
		   strcmp(S(r, "reason"), "ImagePullFailed") == 0 &&
		   strstr(S(r, "message"), "ErrImageNeverPull"),
	   "ErrImageNeverPull fails at once (%s)", S(r, "message"));
	json_decref(r);
	r = res_of("{\"status\":{\"phase\":\"Pending\",\"containerStatuses\":[{\"name\":\"task\","
		   "\"state\":{\"waiting\":"
		   "{\"reason\":\"CreateContainerConfigError\"}}}]}}",
		   0, &running);
	ok(r && strcmp(S(r, "reason"), "ContainerConfigError") == 0,
	   "CreateContainerConfigError fails at once");
	json_decref(r);
	r = res_of("{\"status\":{\"phase\":\"Pending\",\"containerStatuses\":[{\"name\":\"task\","
		   "\"state\":{\"waiting\":"
		   "{\"reason\":\"ContainerCreating\"}}}]}}",
		   0, &running);
	ok(!r && !running, "ContainerCreating: waits");
	r = res_of("{\"status\":{\"phase\":\"Pending\",\"initContainerStatuses\":[{\"name\":"
		   "\"tasked-network-gate\",\"state\":{\"running\":{}}}],\"containerStatuses\":[{"
		   "\"name\":\"task\",\"state\":{\"waiting\":{\"reason\":\"PodInitializing\"}}}]}}",
		   0, &running);
	ok(!r && !running, "the network gate running, the task PodInitializing: waits");
	r = res_of("{\"status\":{\"phase\":\"Failed\",\"initContainerStatuses\":[{\"name\":"
		   "\"tasked-network-gate\",\"state\":{\"terminated\":{\"exitCode\":1,\"reason\":"
		   "\"Error\",\"message\":\"10.0.0.1:443 was still reachable\"}}}],"
		   "\"containerStatuses\":[{\"name\":\"task\",\"state\":{\"waiting\":{\"reason\":"
		   "\"PodInitializing\"}}}]}}",
		   0, &running);
	ok(r && strcmp(S(r, "phase"), "Failed") == 0 &&
		   strcmp(S(r, "reason"), "NetworkPolicyNotEnforced") == 0 &&
		   strstr(S(r, "message"), "still reachable") &&
		   json_integer_value(json_object_get(r, "exitCode")) == -1 && !running,
	   "the network gate failed: NetworkPolicyNotEnforced with its message, the task never ran "
	   "(%s)",
	   S(r, "message"));
	json_decref(r);
	r = res_of("{\"status\":{\"phase\":\"Pending\",\"initContainerStatuses\":[{\"name\":"
		   "\"tasked-network-gate\",\"state\":{\"waiting\":{\"reason\":\"ErrImagePull\","
		   "\"message\":\"no such image\"}}}]}}",
		   0, &running);
	ok(r && strcmp(S(r, "reason"), "ImagePullFailed") == 0 &&
		   strstr(S(r, "message"), "network gate"),
	   "the gate's image cannot be pulled: ImagePullFailed naming the gate (%s)",
	   S(r, "message"));
	json_decref(r);
	r = res_of("{\"status\":{\"phase\":\"Running\",\"initContainerStatuses\":[{\"name\":"
		   "\"tasked-network-gate\",\"state\":{\"terminated\":{\"exitCode\":0}}}],"
		   "\"containerStatuses\":[{\"name\":\"task\",\"state\":{\"running\":{}}}]}}",
		   0, &running);
	ok(!r && running, "the gate passed, the task runs");
	r = res_of("{\"status\":{\"phase\":\"Failed\",\"initContainerStatuses\":[{\"name\":"
		   "\"other\",\"state\":{\"terminated\":{\"exitCode\":1}}}]}}",
		   0, &running);
	ok(r && strcmp(S(r, "reason"), "PodFailed") == 0,
	   "an init container of another name is not the gate (PodFailed)");
	json_decref(r);
	r = res_of("{\"metadata\":{\"creationTimestamp\":\"2026-01-01T00:00:00Z\"},\"status\":{"
		   "\"phase\":\"Pending\","
		   "\"conditions\":[{\"type\":\"PodScheduled\",\"status\":\"False\",\"message\":"
		   "\"0/0 nodes are available\"}]}}",
		   INT64_C(1767225600000) + 61000, &running);
	ok(r && strcmp(S(r, "reason"), "PodNotStarted") == 0 &&
		   strstr(S(r, "message"), "0/0 nodes"),
	   "a pod that never starts fails after the start timeout, saying why (%s)",
	   S(r, "message"));
	json_decref(r);
	/* A full node is a queue, not a failure: the Task's own timeout bounds the wait. */
	r = res_of("{\"metadata\":{\"creationTimestamp\":\"2026-01-01T00:00:00Z\"},\"status\":{"
		   "\"phase\":\"Pending\","
		   "\"conditions\":[{\"type\":\"PodScheduled\",\"status\":\"False\",\"reason\":"
		   "\"Unschedulable\",\"message\":\"0/1 nodes are available: 1 Insufficient cpu. "
		   "preemption: 0/1 nodes are available: 1 No preemption victims found.\"}]}}",
		   INT64_C(1767225600000) + 3600000, &running);
	ok(!r && !running,
	   "a pod waiting for room on a full node keeps waiting past the start timeout");
	json_decref(r);
	r = res_of("{\"metadata\":{\"creationTimestamp\":\"2026-01-01T00:00:00Z\"},\"status\":{"
		   "\"phase\":\"Pending\",\"conditions\":[{\"type\":\"PodScheduled\",\"status\":"
		   "\"False\",\"message\":\"0/1 nodes are available: 1 Too many pods.\"}]}}",
		   INT64_C(1767225600000) + 3600000, &running);
	ok(!r, "... and so does one waiting for the node's pod limit");
	json_decref(r);
	/* Bound 100 s after its creation: the start timeout (60 s) runs from the binding. */
	static const char bound[] =
		"{\"metadata\":{\"creationTimestamp\":\"2026-01-01T00:00:00Z\"},\"status\":{"
		"\"phase\":\"Pending\",\"conditions\":[{\"type\":\"PodScheduled\",\"status\":\"True\","
		"\"lastTransitionTime\":\"2026-01-01T00:01:40Z\"}]}}";
	r = res_of(bound, INT64_C(1767225600000) + 130000, &running);
	ok(!r, "a pod bound late gets the whole start timeout from its binding");
	json_decref(r);
	r = res_of(bound, INT64_C(1767225600000) + 161000, &running);
	ok(r && strcmp(S(r, "reason"), "PodNotStarted") == 0,
	   "... and fails PodNotStarted once it has run out (%s)", S(r, "message"));
	json_decref(r);
	r = res_of("{\"status\":{\"containerStatuses\":[{\"name\":\"task\",\"state\":{"
		   "\"terminated\":{\"exitCode\":0,"
		   "\"message\":\"not json\"}}}]}}",
		   0, &running);
	ok(r && strcmp(S(r, "phase"), "Failed") == 0 &&
		   strcmp(S(r, "reason"), "InvalidOutput") == 0,
	   "output that is not JSON: InvalidOutput");
	json_decref(r);
	memset(big, 'x', 4097);
	big[0] = '"';
	big[4097] = 0;
	snprintf(pod, sizeof(pod),
		 "{\"status\":{\"containerStatuses\":[{\"name\":\"task\",\"state\":{\"terminated\":"
		 "{\"exitCode\":0,"
		 "\"message\":\"%s\"}}}]}}",
		 big + 1);
	r = res_of(pod, 0, &running);
	ok(r && strcmp(S(r, "reason"), "OutputTooLarge") == 0 && !json_object_get(r, "output"),
	   "output at the kubelet's 4096-byte limit: OutputTooLarge, never a cut output");
	json_decref(r);
	r = res_of("{\"status\":{\"containerStatuses\":[{\"name\":\"task\",\"state\":{"
		   "\"terminated\":{\"exitCode\":1,"
		   "\"message\":\"not json\"}}}]}}",
		   0, &running);
	ok(r && strcmp(S(r, "reason"), "ExitCode") == 0,
	   "a failed task keeps its own reason whatever its output");
	json_decref(r);
}

/* Secret reader: "creds" is opted in, "plain" is not; "nul" holds a NUL byte, "bin" bytes that
 * are not UTF-8. */
static int rd_read(void *ud, const char *ns, const char *name, const char *key, char **ret,
		   size_t *len)
{
	static const struct {
		const char *name, *v;
		size_t n;
	} secrets[] = { { "creds", "s3cret", 6 },
			{ "nul", "QzX\0Yw", 6 },
			{ "bin", "\xff\xfe", 2 } };

	if (strcmp(name, "plain") == 0)
		return -EPERM;
	for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
		if (strcmp(name, secrets[i].name) == 0) {
			if (!(*ret = malloc(secrets[i].n + 1)))
				return -ENOMEM;
			memcpy(*ret, secrets[i].v, secrets[i].n + 1);
			*len = secrets[i].n;
			return 0;
		}
	return -ENOENT;
}

static void test_dispatch(void)
{
	const struct taskctl_secret_reader rd = { rd_read, NULL };
	json_t *task = J("{\"metadata\":{\"name\":\"t\",\"namespace\":\"ns\",\"uid\":\"u\"},"
			 "\"spec\":{\"timeoutSeconds\":30,"
			 "\"env\":[{\"name\":\"A\",\"value\":\"1\"},{\"name\":\"TOKEN\","
			 "\"valueFrom\":{\"queueSecret\":\"tok\"}}],"
			 "\"container\":{\"image\":\"reg.io/"
			 "app:1\",\"command\":[\"run\",\"$(tasks.a.output.n)\"],"
			 "\"volumes\":[{\"name\":\"k\",\"secret\":{\"queueSecret\":\"tok\"},"
			 "\"mountPath\":\"/k\"}]}}}");
	json_t *queue = J("{\"metadata\":{\"name\":\"q\"},\"spec\":{\"secrets\":[{\"name\":\"tok\","
			  "\"secretKeyRef\":"
			  "{\"name\":\"creds\",\"key\":\"token\"}},"
			  "{\"name\":\"nul\",\"secretKeyRef\":{\"name\":\"nul\",\"key\":\"k\"}},"
			  "{\"name\":\"bin\",\"secretKeyRef\":{\"name\":\"bin\",\"key\":\"k\"}},"
			  "{\"name\":\"bad\","
			  "\"secretKeyRef\":{\"name\":\"plain\",\"key\":\"k\"}}],"
			  "\"policy\":{\"container\":{\"imageAllowlist\":[\"reg.io/"
			  "app:*\"],\"maxOutputBytes\":5000}}}}");
	json_t *vars = J("{\"a\":{\"output\":{\"n\":7}}}"), *msg, *pod, *e, *secret_env = NULL;
	const char *reason = "";
	char err[512] = "", *text;
	size_t i;
	int r;

	msg = taskctl_build_dispatch(task, 1, 1000, err, sizeof(err));
	ok(msg != NULL, "a container task's dispatch is built (%s)", err);
	if (!msg)
		return;
	r = taskctl_apply_queue(&rd, task, msg, queue, vars, 1000, &reason, err, sizeof(err));
	ok(r == 0, "the queue's container policy admits it (%s %s)", reason, err);
	pod = json_object_get(msg, "pod");
	ok(json_integer_value(json_object_get(pod, "maxOutputBytes")) == 5000 &&
		   json_integer_value(json_object_get(pod, "timeoutSeconds")) == 30 &&
		   json_is_true(json_object_get(pod, "networkDisabled")) &&
		   json_integer_value(json_object_get(pod, "memoryBytes")) ==
			   PODPOLICY_DEFAULT_MEMORY &&
		   strcmp(json_string_value(json_object_get(pod, "queue")), "q") == 0,
	   "msg.pod: output cap, timeout, network off, default resources, queue");
	ok(strcmp(json_string_value(json_object_get(
			  json_object_get(json_object_get(pod, "secretRefs"), "tok"), "name")),
		  "creds") == 0,
	   "a secret volume resolves to the Secret the queue declares");
	json_array_foreach(json_object_get(msg, "env"), i, e)
		if (json_is_true(json_object_get(e, "secret")))
			secret_env = e;
	ok(secret_env && strcmp(json_string_value(json_object_get(
					json_object_get(secret_env, "secretKeyRef"), "key")),
				"token") == 0,
	   "a queue secret env entry carries its secretKeyRef (the value only for masking)");
	ok(strcmp(json_string_value(json_array_get(
			  json_object_get(json_object_get(msg, "container"), "command"), 1)),
		  "7") == 0,
	   "$(tasks.a.output.n) in command is resolved");
	{
		struct podspec_task t = { 0 };
		struct podspec_opts o = { 0 };
		json_t *p;
		t.ns = "ns";
		t.name = "t";
		t.uid = "u";
		t.attempt = 1;
		t.container = json_object_get(msg, "container");
		t.env = json_object_get(msg, "env");
		t.secret_refs = json_object_get(pod, "secretRefs");
		t.res.memory_bytes = 1 << 20;
		t.res.cpu_milli = 1;
		p = podspec_build(&t, &o, err, sizeof(err));
		text = p ? json_dumps(p, JSON_COMPACT) : NULL;
		ok(text && !strstr(text, "s3cret") &&
			   strstr(text, "\"secretKeyRef\":{\"name\":\"creds\",\"key\":\"token\"}"),
		   "the pod built from it holds the reference, never the value");
		free(text);
		json_decref(p);
	}
	json_decref(msg);

	/* no queue: the built-in policy allows nothing */
	msg = taskctl_build_dispatch(task, 1, 1000, err, sizeof(err));
	r = taskctl_apply_queue(&rd, task, msg, NULL, vars, 1000, &reason, err, sizeof(err));
	ok(r == -EINVAL && strcmp(reason, "PolicyDenied") == 0,
	   "without a queue: PolicyDenied (%s)", err);
	json_decref(msg);
	/* a secret not opted in */
	json_object_set_new(
		json_object_get(
			json_array_get(json_object_get(json_object_get(task, "spec"), "env"), 1),
			"valueFrom"),
		"queueSecret", json_string("bad"));
	msg = taskctl_build_dispatch(task, 1, 1000, err, sizeof(err));
	r = taskctl_apply_queue(&rd, task, msg, queue, vars, 1000, &reason, err, sizeof(err));
	ok(r == -EINVAL && strcmp(reason, "SecretNotFound") == 0 &&
		   strstr(err, "tasked.dev/queue-secret"),
	   "a Secret without the opt-in label is refused as for shell tasks (%s)", err);
	json_decref(msg);
	/* values an environment variable cannot carry: a clear error, never a cut or dropped one */
	for (const char *const *sn = (const char *const[]){ "nul", "bin", NULL }; *sn; sn++) {
		json_object_set_new(
			json_object_get(
				json_array_get(
					json_object_get(json_object_get(task, "spec"), "env"), 1),
				"valueFrom"),
			"queueSecret", json_string(*sn));
		msg = taskctl_build_dispatch(task, 1, 1000, err, sizeof(err));
		r = taskctl_apply_queue(&rd, task, msg, queue, vars, 1000, &reason, err,
					sizeof(err));
		ok(r == -EINVAL && strcmp(reason, "InvalidSpec") == 0 &&
			   strstr(err, "env TOKEN: queue secret") && strstr(err, "not UTF-8") &&
			   !strstr(err, "QzX") && !strstr(err, "\xff"),
		   "a queue secret with %s bytes as an env var: InvalidSpec, value not in the "
		   "message (%s)",
		   strcmp(*sn, "nul") == 0 ? "a NUL among its" : "non-UTF-8", err);
		json_decref(msg);
	}
	/* the same bytes as a volume are fine: the kubelet writes them to a file */
	json_array_remove(json_object_get(json_object_get(task, "spec"), "env"), 1);
	json_object_set_new(
		json_object_get(
			json_array_get(json_object_get(json_object_get(json_object_get(task, "spec"),
								       "container"),
						       "volumes"),
				       0),
			"secret"),
		"queueSecret", json_string("bin"));
	msg = taskctl_build_dispatch(task, 1, 1000, err, sizeof(err));
	r = taskctl_apply_queue(&rd, task, msg, queue, vars, 1000, &reason, err, sizeof(err));
	ok(r == 0 && strcmp(json_string_value(json_object_get(
				    json_object_get(json_object_get(json_object_get(msg, "pod"),
								    "secretRefs"),
						    "bin"),
				    "name")),
			    "bin") == 0,
	   "a queue secret of binary bytes as a volume is admitted (%s %s)", reason, err);
	json_decref(msg);
	json_decref(task);
	json_decref(queue);
	json_decref(vars);
}

int main(void)
{
	test_dispatch();
	test_results();
	test_images();
	test_policy();
	test_podspec();
	return done_testing();
}
