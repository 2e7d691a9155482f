/* RunnerPools, the pure parts: scaling arithmetic and decisions, the Deployment builder, the
 * pool token and label matching. */
#include "pools_spec.h"
#include "tap.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

static json_t *pool_obj(const char *spec_json)
{
	json_t *spec = json_loads(spec_json, 0, NULL);
	return json_pack("{s{sssssssI}so}", "metadata", "name", "py", "namespace", "team", "uid",
			 "u-1", "generation", (json_int_t)1, "spec", spec);
}

static const struct pools_env env = { .runner_image = "tasked-runner:1",
				      .broker_url = "ws://b.ns.svc:8081",
				      .apparmor = "Localhost/tasked-runner" };

static void test_desired(void)
{
	is_int(pools_desired(0, 0, 4, 0, 10), 0, "no work, min 0: 0 runners");
	is_int(pools_desired(0, 0, 4, 2, 10), 2, "no work: minRunners");
	is_int(pools_desired(1, 0, 4, 0, 10), 1, "one queued task: one runner");
	is_int(pools_desired(4, 0, 4, 0, 10), 1, "four tasks fill one 4-slot runner");
	is_int(pools_desired(4, 1, 4, 0, 10), 2, "five tasks need two");
	is_int(pools_desired(1000, 0, 1, 0, 10), 10, "clamped to maxRunners");
	is_int(pools_desired(INT64_MAX, INT64_MAX, 1, 0, 1000), 1000, "saturated, no overflow");
	is_int(pools_desired(INT64_MAX, 1, 3, 0, INT64_MAX), INT64_MAX / 3 + 1,
	       "ceil near the top");
	is_int(pools_desired(-5, -7, 0, -1, -3), 0, "negative inputs count as zero");
	is_int(pools_desired(3, 0, 1, 5, 2), 5, "max below min counts as min");
}

static void test_decide(void)
{
	struct pools_scale s = {
		.replicas = 1, .desired = 3, .delay_ms = 300000, .now_ms = 1000000
	};
	is_int(pools_decide(&s), POOLS_SCALE_UP, "more wanted: scale up at once");
	s.desired = 1;
	is_int(pools_decide(&s), POOLS_KEEP, "as wanted: keep");
	s.replicas = 3;
	is_int(pools_decide(&s), POOLS_WAIT_DOWN, "fewer wanted, timer not started: wait");
	s.low_since_ms = s.now_ms - 299999;
	is_int(pools_decide(&s), POOLS_WAIT_DOWN, "before the delay: wait");
	s.low_since_ms = s.now_ms - 300000;
	is_int(pools_decide(&s), POOLS_DRAIN, "after the delay: drain");
	s.delay_ms = 0;
	s.low_since_ms = s.now_ms;
	is_int(pools_decide(&s), POOLS_DRAIN, "delay 0: drain once the timer started");
}

static json_t *jp(json_t *o, const char *path)
{
	char buf[256], *save = NULL;
	snprintf(buf, sizeof(buf), "%s", path);
	for (char *t = strtok_r(buf, ".", &save); t && o; t = strtok_r(NULL, ".", &save)) {
		if (*t >= '0' && *t <= '9')
			o = json_array_get(o, (size_t)(*t - '0'));
		else
			o = json_object_get(o, t);
	}
	return o;
}

static int has_str(json_t *arr, const char *s)
{
	json_t *v;
	size_t i;
	json_array_foreach(arr, i, v)
		if (json_string_value(v) && strcmp(json_string_value(v), s) == 0)
			return 1;
	return 0;
}

static void test_deployment(void)
{
	char err[256] = "";
	json_t *p = pool_obj(
		"{\"image\":\"python:3\",\"labels\":{\"pool\":\"py\"},\"slotsPerRunner\":4,"
		"\"env\":[{\"name\":\"LD_PRELOAD\",\"value\":\"/"
		"x.so\"},{\"name\":\"A\",\"value\":\"b\"}],"
		"\"volumes\":[{\"name\":\"data\",\"mountPath\":\"/data\",\"readOnly\":true,"
		"\"persistentVolumeClaim\":{\"claimName\":\"c\"}}],"
		"\"nodeSelector\":{\"disk\":\"ssd\"},\"resources\":{\"limits\":{\"memory\":"
		"\"256Mi\"}}}");
	json_t *d = pools_build_deployment(p, 3, "py-pool-token-abc", &env, err, sizeof(err));
	json_t *pod = jp(d, "spec.template.spec"), *c = jp(pod, "containers.0"),
	       *sc = jp(c, "securityContext");
	char h1[17], h2[17];

	ok(d != NULL, "the Deployment builds (%s)", err);
	is_str(json_string_value(jp(d, "metadata.name")), "py-pool", "named <pool>-pool");
	is_str(json_string_value(jp(d, "metadata.ownerReferences.0.uid")), "u-1",
	       "owned by the pool");
	ok(json_is_true(jp(d, "metadata.ownerReferences.0.controller")), "as its controller");
	is_int(json_integer_value(jp(d, "spec.replicas")), 3, "replicas as asked");
	is_str(json_string_value(jp(d, "spec.selector.matchLabels." POOLS_LABEL)), NULL,
	       "(a dotted label cannot be read by this path helper)");
	is_str(json_string_value(json_object_get(jp(d, "spec.selector.matchLabels"), POOLS_LABEL)),
	       "py", "selects the pool's pods by tasked.dev/runner-pool");
	ok(json_is_false(jp(pod, "automountServiceAccountToken")), "no service account token");
	is_int(json_integer_value(jp(pod, "securityContext.runAsUser")), 65532,
	       "pod runs as 65532");
	is_str(json_string_value(jp(c, "image")), "python:3",
	       "the runner container is the user's image");
	is_str(json_string_value(jp(c, "command.0")), "/opt/tasked-runner/ld-linux-x86-64.so.2",
	       "started by the bundled loader");
	ok(has_str(jp(c, "args"), "--concurrency=4"), "slotsPerRunner is the runner's concurrency");
	ok(has_str(jp(c, "args"), "--labels=pool=py"), "pool labels are the runner's");
	ok(has_str(jp(c, "args"), "--id=$(TASKED_POD_NAME)"), "the runner id is the pod name");
	ok(has_str(jp(c, "args"), "--controller=ws://b.ns.svc:8081"), "the broker URL");
	ok(json_is_true(jp(sc, "readOnlyRootFilesystem")) &&
		   json_is_false(jp(sc, "allowPrivilegeEscalation")) &&
		   json_is_false(jp(sc, "privileged")) && json_is_true(jp(sc, "runAsNonRoot")),
	   "hardened: read-only root, no escalation, not privileged, non-root");
	is_str(json_string_value(jp(sc, "capabilities.drop.0")), "ALL", "no capabilities");
	is_str(json_string_value(jp(sc, "seccompProfile.type")), "RuntimeDefault",
	       "seccomp RuntimeDefault");
	is_str(json_string_value(jp(sc, "appArmorProfile.localhostProfile")), "tasked-runner",
	       "the chart's AppArmor");
	is_str(json_string_value(jp(pod, "initContainers.0.image")), "tasked-runner:1",
	       "init container: runner image");
	is_str(json_string_value(jp(pod, "initContainers.0.command.0")),
	       "/usr/local/bin/tasked-install", "which copies the bundle");
	ok(jp(pod, "initContainers.0.securityContext.appArmorProfile") == NULL,
	   "the installer needs no runner profile");
	is_str(json_string_value(jp(pod, "volumes.2.secret.secretName")), "py-pool-token-abc",
	       "token from the Secret");
	is_str(json_string_value(jp(pod, "volumes.3.name")), "u-data", "user volume, prefixed");
	is_str(json_string_value(jp(c, "volumeMounts.3.mountPath")), "/data",
	       "mounted where asked");
	ok(json_is_true(jp(c, "volumeMounts.1.readOnly")), "the bundle is mounted read-only");
	is_str(json_string_value(jp(pod, "nodeSelector.disk")), "ssd", "nodeSelector");
	is_str(json_string_value(jp(c, "resources.limits.memory")), "256Mi", "resources");
	{
		json_t *e;
		size_t i;
		int preload = 0, a = 0;
		json_array_foreach(jp(c, "env"), i, e) {
			preload |= strcmp(json_string_value(json_object_get(e, "name")),
					  "LD_PRELOAD") == 0;
			a |= strcmp(json_string_value(json_object_get(e, "name")), "A") == 0;
		}
		ok(!preload && a, "user env kept, LD_* dropped");
	}
	ok(pools_template_hash(d, h1) == 0, "template hash");
	json_decref(d);
	d = pools_build_deployment(p, 7, "py-pool-token-abc", &env, err, sizeof(err));
	pools_template_hash(d, h2);
	is_str(h2, h1, "replicas do not change the template hash");
	json_decref(d);
	d = pools_build_deployment(p, 7, "py-pool-token-def", &env, err, sizeof(err));
	pools_template_hash(d, h2);
	ok(strcmp(h1, h2) != 0, "a new token Secret does");
	json_decref(d);
	json_decref(p);

	p = pool_obj("{\"image\":\"x\",\"volumes\":[{\"name\":\"t\",\"mountPath\":\"/"
		     "opt/tasked-runner/lib\",\"emptyDir\":{}}]}");
	ok(pools_build_deployment(p, 1, "s", &env, err, sizeof(err)) == NULL &&
		   strstr(err, "runner's own"),
	   "a volume over the bundle is refused: %s", err);
	json_decref(p);
	p = pool_obj("{\"image\":\"a b\"}");
	ok(pools_build_deployment(p, 1, "s", &env, err, sizeof(err)) == NULL &&
		   strstr(err, "not a valid image reference"),
	   "an image that is no reference is refused: %s", err);
	json_decref(p);
	p = pool_obj("{\"image\":\"x\",\"labels\":{\"a,b\":\"c\"}}");
	ok(pools_build_deployment(p, 1, "s", &env, err, sizeof(err)) == NULL,
	   "a label key with ',' is refused");
	json_decref(p);
}

static void test_token(void)
{
	char a[POOLS_TOKEN_HEX + 1], b[POOLS_TOKEN_HEX + 1], c[POOLS_TOKEN_HEX + 1], n1[128],
		n2[128];
	ok(pools_token("seed", "ns", "py", "u1", a) == 0 && strlen(a) == 64, "a 64-hex token");
	pools_token("seed", "ns", "py", "u2", b);
	ok(strcmp(a, b) != 0, "a re-created pool (new UID) gets a new token");
	pools_token("seed", "ns2", "py", "u1", c);
	ok(strcmp(a, c) != 0, "another namespace, another token");
	pools_token("seed2", "ns", "py", "u1", c);
	ok(strcmp(a, c) != 0, "a rotated controller token rotates the pool's");
	pools_token("seed", "ns", "py", "u1", c);
	is_str(c, a, "stable across restarts");
	ok(pools_token("", "ns", "py", "u1", c) == -EINVAL, "no seed, no token");
	ok(pools_secret_name("py", a, n1, sizeof(n1)) == 0 &&
		   strncmp(n1, "py-pool-token-", 14) == 0 && strlen(n1) == 24,
	   "Secret name %s", n1);
	pools_secret_name("py", b, n2, sizeof(n2));
	ok(strcmp(n1, n2) != 0, "new token, new Secret");
	{
		json_t *p = pool_obj("{\"image\":\"x\"}"), *sec = pools_build_secret(p, n1, a);
		is_str(json_string_value(jp(sec, "stringData.token")), a,
		       "the Secret holds the token");
		is_str(json_string_value(jp(sec, "metadata.ownerReferences.0.uid")), "u-1",
		       "owned by the pool");
		json_decref(sec);
		json_decref(p);
	}
}

static void test_labels(void)
{
	json_t *l = json_pack("{ssss}", "pool", "py", "gpu", "no");
	json_t *s1 = json_pack("{ss}", "pool", "py"), *s2 = json_pack("{ss}", "pool", "go"),
	       *s3 = json_object();
	ok(pools_labels_match(l, s1), "subset matches");
	ok(!pools_labels_match(l, s2), "other value does not");
	ok(!pools_labels_match(l, s3), "an empty selector reaches no pool");
	ok(!pools_labels_match(l, NULL), "nor does none");
	json_decref(l);
	json_decref(s1);
	json_decref(s2);
	json_decref(s3);
}

/* pools_policy_check on spec (JSON) for a task of queue (JSON of the TaskQueue, or NULL). */
static int pol(const char *spec, const char *queue, const char **reason, char *why, size_t whysz)
{
	json_t *sj = json_loads(spec, 0, NULL), *qj = queue ? json_loads(queue, 0, NULL) : NULL;
	int r;

	*reason = "";
	why[0] = '\0';
	r = pools_policy_check(sj, "py", qj, reason, why, whysz);
	json_decref(sj);
	json_decref(qj);
	return r;
}

#define Q(policy) "{\"metadata\":{\"name\":\"q\"},\"spec\":{\"policy\":{\"container\":" policy "}}}"

static void test_policy(void)
{
	char why[512];
	const char *reason;
	const char *vols = "{\"image\":\"reg.io/py:3.12\",\"volumes\":["
			   "{\"name\":\"d\",\"mountPath\":\"/"
			   "data\",\"persistentVolumeClaim\":{\"claimName\":\"data\"}},"
			   "{\"name\":\"s\",\"mountPath\":\"/s\",\"emptyDir\":{}}]}";

	/* The container executor's strict defaults (podpolicy.h). */
	ok(!pol("{\"image\":\"reg.io/py:3.12\"}", NULL, &reason, why, sizeof(why)) &&
		   strcmp(reason, "PolicyDenied") == 0 && strstr(why, "without a TaskQueue"),
	   "no TaskQueue: the built-in policy allows no image: %s", why);
	ok(!pol("{\"image\":\"reg.io/py:3.12\"}", "{\"metadata\":{\"name\":\"q\"},\"spec\":{}}",
		&reason, why, sizeof(why)) &&
		   strstr(why, "not in TaskQueue q's policy.container.imageAllowlist"),
	   "a queue without a container policy allows no image: %s", why);
	ok(!pol("{\"image\":\"reg.io/py:3.12\"}", Q("{\"imageAllowlist\":[]}"), &reason, why,
		sizeof(why)),
	   "an empty imageAllowlist allows nothing");
	ok(pol("{\"image\":\"reg.io/py:3.12\"}", Q("{\"imageAllowlist\":[\"reg.io/py:3.12\"]}"),
	       &reason, why, sizeof(why)),
	   "an exact entry (%s)", why);
	ok(pol("{\"image\":\"reg.io/py:3.13\"}", Q("{\"imageAllowlist\":[\"reg.io/py:*\"]}"),
	       &reason, why, sizeof(why)),
	   "REPO:* matches any tag");
	ok(!pol("{\"image\":\"reg.io/py/evil:1\"}", Q("{\"imageAllowlist\":[\"reg.io/py:*\"]}"),
		&reason, why, sizeof(why)),
	   "REPO:* is no prefix: another repository under it is refused");
	ok(!pol("{\"image\":\"reg.io/tools/go:1\"}", Q("{\"imageAllowlist\":[\"reg.io/tools/*\"]}"),
		&reason, why, sizeof(why)) &&
		   strcmp(reason, "PolicyDenied") == 0,
	   "a plain '*' prefix is not a pattern: %s", why);
	ok(!pol("{\"image\":\"a b\"}", Q("{\"imageAllowlist\":[\"reg.io/py:*\"]}"), &reason, why,
		sizeof(why)) &&
		   strcmp(reason, "InvalidSpec") == 0,
	   "an image that is no reference: InvalidSpec (%s)", why);
	/* volumes */
	ok(!pol(vols, Q("{\"imageAllowlist\":[\"reg.io/py:3.12\"]}"), &reason, why, sizeof(why)) &&
		   strstr(why, "volumeAllowlist") && strstr(why, "data"),
	   "a claim not in volumeAllowlist is refused: %s", why);
	ok(pol(vols,
	       Q("{\"imageAllowlist\":[\"reg.io/py:3.12\"],\"volumeAllowlist\":[{"
		 "\"persistentVolumeClaim\":\"data\",\"mountPath\":\"/data\"}]}"),
	       &reason, why, sizeof(why)),
	   "an allowed claim at its path (emptyDir needs no entry): %s", why);
	ok(!pol(vols,
		Q("{\"imageAllowlist\":[\"reg.io/py:3.12\"],\"volumeAllowlist\":[{"
		  "\"persistentVolumeClaim\":\"data\",\"mountPath\":\"/elsewhere\"}]}"),
		&reason, why, sizeof(why)),
	   "... only at the path the entry names");
	ok(!pol("{\"image\":\"x\",\"volumes\":[{\"name\":\"k\",\"mountPath\":\"/k\",\"secret\":{"
		"\"secretName\":\"keys\"}}]}",
		Q("{\"imageAllowlist\":[\"x\"]}"), &reason, why, sizeof(why)) &&
		   strstr(why, "Secret keys"),
	   "a Secret the queue does not declare: %s", why);
	ok(pol("{\"image\":\"x\",\"volumes\":[{\"name\":\"k\",\"mountPath\":\"/k\",\"secret\":{"
	       "\"secretName\":\"keys\"}}]}",
	       "{\"metadata\":{\"name\":\"q\"},\"spec\":{\"secrets\":[{\"name\":\"k\","
	       "\"secretKeyRef\":"
	       "{\"name\":\"keys\",\"key\":\"a\"}}],\"policy\":{\"container\":{\"imageAllowlist\":["
	       "\"x\"]}}}}",
	       &reason, why, sizeof(why)),
	   "a Secret the queue declares: %s", why);
	ok(!pol("{\"image\":\"x\",\"volumes\":[{\"name\":\"e\",\"mountPath\":\"/e\",\"emptyDir\":{"
		"\"sizeLimit\":\"9Gi\"}}]}",
		Q("{\"imageAllowlist\":[\"x\"]}"), &reason, why, sizeof(why)) &&
		   strstr(why, "8Gi"),
	   "an emptyDir over 8Gi: %s", why);
	/* resources */
	ok(!pol("{\"image\":\"x\",\"resources\":{\"limits\":{\"memory\":\"4Gi\"}}}",
		Q("{\"imageAllowlist\":[\"x\"],\"maxResources\":{\"memory\":\"1Gi\"}}"), &reason,
		why, sizeof(why)) &&
		   strstr(why, "maxResources.memory"),
	   "a runner over maxResources: %s", why);
	ok(pol("{\"image\":\"x\",\"resources\":{\"requests\":{\"cpu\":\"100m\"}}}",
	       Q("{\"imageAllowlist\":[\"x\"],\"maxResources\":{\"cpu\":\"1\"}}"), &reason, why,
	       sizeof(why)),
	   "within maxResources");
	ok(!pol("{\"image\":\"x\"}", Q("{\"imageAllowlist\":[\"bad*pattern\"]}"), &reason, why,
		sizeof(why)) &&
		   strcmp(reason, "PolicyDenied") == 0 && strstr(why, "imageAllowlist[0]"),
	   "an invalid policy refuses, naming the entry: %s", why);
}

/* "STATUS/REASON" of condition type in conds. */
static const char *cnd(json_t *conds, const char *type, char *buf, size_t n)
{
	json_t *c;
	size_t i;
	json_array_foreach(conds, i, c)
		if (strcmp(json_string_value(json_object_get(c, "type")), type) == 0) {
			snprintf(buf, n, "%s/%s", json_string_value(json_object_get(c, "status")),
				 json_string_value(json_object_get(c, "reason")));
			return buf;
		}
	return "";
}

static void test_conditions(void)
{
	char a[64], b[64], c[64], d[64];
	struct pools_obs o = { .ready = 0, .desired = 0, .replicas = 0, .min = 0 };
	json_t *cs = pools_conditions(NULL, &o, 3, 1000), *cs2;

	is_str(cnd(cs, "Ready", a, sizeof(a)), "True/RunnersReady", "scaled to zero, min 0: Ready");
	is_str(cnd(cs, "Reconciling", b, sizeof(b)), "False/Stable", "... not Reconciling");
	is_str(cnd(cs, "Stalled", c, sizeof(c)), "False/Running", "... not Stalled");
	is_str(cnd(cs, "Completed", d, sizeof(d)), "False/Running", "a pool never completes");
	is_int(json_integer_value(json_object_get(json_array_get(cs, 0), "observedGeneration")), 3,
	       "observedGeneration on each");
	o.desired = o.replicas = 1;
	cs2 = pools_conditions(cs, &o, 3, 999999);
	is_str(cnd(cs2, "Reconciling", b, sizeof(b)), "True/Scaling",
	       "a runner wanted and not connected: Reconciling (kstatus InProgress)");
	is_str(json_string_value(json_object_get(json_array_get(cs2, 2), "lastTransitionTime")),
	       json_string_value(json_object_get(json_array_get(cs, 2), "lastTransitionTime")),
	       "an unchanged condition keeps its lastTransitionTime");
	json_decref(cs2);
	o.min = 1;
	cs2 = pools_conditions(cs, &o, 3, 1000);
	is_str(cnd(cs2, "Ready", a, sizeof(a)), "False/RunnersStarting",
	       "fewer runners than minRunners: not Ready");
	json_decref(cs2);
	o.ready = 1;
	o.desired = 1;
	o.replicas = 3; /* three runners, one connected */
	cs2 = pools_conditions(cs, &o, 3, 1000);
	is_str(cnd(cs2, "Reconciling", b, sizeof(b)), "True/Scaling",
	       "replicas not all connected: Reconciling");
	json_decref(cs2);
	o.ready = 3;
	cs2 = pools_conditions(cs, &o, 3, 1000);
	is_str(cnd(cs2, "Reconciling", b, sizeof(b)), "False/Stable",
	       "waiting out scaleDownDelaySeconds with every runner connected: Stable");
	json_decref(cs2);
	o.error = 1;
	o.why = "reading Deployment: timeout";
	cs2 = pools_conditions(cs, &o, 3, 1000);
	is_str(cnd(cs2, "Reconciling", b, sizeof(b)), "True/ReconcileError",
	       "a failed pass: Reconciling with why");
	json_decref(cs2);
	o.error = 0;
	o.stalled = "InvalidSpec";
	o.why = "spec.volumes[0]: mountPath /tmp is the runner's own";
	cs2 = pools_conditions(cs, &o, 3, 1000);
	is_str(cnd(cs2, "Stalled", c, sizeof(c)), "True/InvalidSpec", "an invalid spec: Stalled");
	is_str(cnd(cs2, "Ready", a, sizeof(a)), "False/InvalidSpec", "... not Ready, same reason");
	is_str(cnd(cs2, "Reconciling", b, sizeof(b)), "False/Stable", "... not Reconciling");
	json_decref(cs2);
	json_decref(cs);
}

int main(void)
{
	test_conditions();
	test_policy();
	test_desired();
	test_decide();
	test_deployment();
	test_token();
	test_labels();
	return done_testing();
}
