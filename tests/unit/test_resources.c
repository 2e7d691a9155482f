/* Task memory and CPU limits: task values, queue defaults, built-in defaults, queue maxima
 * (PolicyDenied naming the limit), refusals, CPU seconds from the timeout, the dispatch fields. */
#include "resources.h"
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

struct out {
	int r;
	const char *reason;
	char err[512];
	struct res_limits l;
};

static struct out decide(const char *spec, const char *qspec, int64_t timeout)
{
	struct out o = { 0 };
	json_t *s = J(spec), *q = qspec ? J(qspec) : NULL;
	o.reason = "";
	o.r = res_decide(s, q, "q", timeout, &o.l, &o.reason, o.err, sizeof(o.err));
	json_decref(s);
	json_decref(q);
	return o;
}

int main(void)
{
	struct out o;

	o = decide("{}", NULL, 0);
	ok(o.r == 0 && o.l.memory_bytes == RES_DEFAULT_MEMORY &&
		   o.l.cpu_milli == RES_DEFAULT_CPU_MILLI && o.l.memory_from == RES_FROM_BUILTIN &&
		   o.l.cpu_from == RES_FROM_BUILTIN && o.l.cpu_seconds == 0,
	   "no queue, nothing set: built-in 1Gi and 1 CPU, no CPU seconds without a timeout");
	o = decide("{}", NULL, 300);
	ok(o.r == 0 && o.l.cpu_seconds == 300,
	   "built-in 1 CPU over a 300 s timeout: 300 CPU seconds (%lld)",
	   (long long)o.l.cpu_seconds);
	o = decide("{\"resources\":{\"memory\":\"64Mi\",\"cpu\":\"500m\"}}", NULL, 5);
	ok(o.r == 0 && o.l.memory_bytes == 64 << 20 && o.l.cpu_milli == 500 &&
		   o.l.cpu_seconds == 3 && o.l.memory_from == RES_FROM_TASK,
	   "task values; 500m over 5 s rounds up to 3 CPU seconds");
	o = decide("{\"resources\":{\"memory\":67108864,\"cpu\":2}}", NULL, 1);
	ok(o.r == 0 && o.l.memory_bytes == 64 << 20 && o.l.cpu_milli == 2000 &&
		   o.l.cpu_seconds == 2,
	   "integers are quantities too");
	o = decide("{\"resources\":{\"cpu\":\"1m\"}}", NULL, 1);
	ok(o.r == 0 && o.l.cpu_seconds == 1, "at least one CPU second");

	/* queue defaults */
	o = decide("{}", "{\"defaults\":{\"resources\":{\"memory\":\"128Mi\",\"cpu\":\"250m\"}}}",
		   8);
	ok(o.r == 0 && o.l.memory_bytes == 128 << 20 && o.l.cpu_milli == 250 &&
		   o.l.cpu_seconds == 2 && o.l.memory_from == RES_FROM_QUEUE &&
		   o.l.cpu_from == RES_FROM_QUEUE,
	   "queue defaults apply");
	o = decide("{\"resources\":{\"memory\":\"32Mi\"}}",
		   "{\"defaults\":{\"resources\":{\"memory\":\"128Mi\"}}}", 0);
	ok(o.r == 0 && o.l.memory_bytes == 32 << 20 && o.l.cpu_milli == 1000 &&
		   o.l.cpu_from == RES_FROM_BUILTIN,
	   "the task's own value wins over the default; the other field falls back to built-in");

	/* queue maxima */
	o = decide("{\"resources\":{\"memory\":\"2Gi\"}}",
		   "{\"policy\":{\"maxResources\":{\"memory\":\"1Gi\"}}}", 0);
	ok(o.r == -EINVAL && strcmp(o.reason, "PolicyDenied") == 0,
	   "a task over the queue's maximum: PolicyDenied");
	ok(strstr(o.err, "spec.resources.memory 2Gi exceeds the maximum 1Gi of TaskQueue q") &&
		   strstr(o.err, "policy.maxResources.memory"),
	   "the message names the field, both values and the limit: %s", o.err);
	o = decide("{\"resources\":{\"cpu\":\"3\"}}",
		   "{\"policy\":{\"maxResources\":{\"cpu\":\"2500m\"}}}", 0);
	ok(o.r == -EINVAL && strcmp(o.reason, "PolicyDenied") == 0 &&
		   strstr(o.err, "cpu 3 exceeds the maximum 2500m"),
	   "cpu over the maximum: %s", o.err);
	o = decide("{\"resources\":{\"memory\":\"1Gi\",\"cpu\":\"2500m\"}}",
		   "{\"policy\":{\"maxResources\":{\"memory\":\"1Gi\",\"cpu\":\"2500m\"}}}", 0);
	ok(o.r == 0 && o.l.memory_bytes == 1 << 30 && o.l.cpu_milli == 2500,
	   "exactly the maximum is allowed");
	o = decide("{}", "{\"policy\":{\"maxResources\":{\"memory\":\"256Mi\",\"cpu\":\"500m\"}}}",
		   10);
	ok(o.r == 0 && o.l.memory_bytes == 256 << 20 && o.l.cpu_milli == 500 &&
		   o.l.memory_lowered && o.l.cpu_lowered && o.l.cpu_seconds == 5,
	   "built-in defaults above the maximum are lowered to it");
	o = decide(
		"{}",
		"{\"defaults\":{\"resources\":{\"memory\":\"4Gi\"}},\"policy\":{\"maxResources\":{\"memory\":\"2Gi\"}}}",
		0);
	ok(o.r == 0 && o.l.memory_bytes == INT64_C(2) << 30 && o.l.memory_lowered,
	   "a queue default above its maximum too");
	o = decide("{\"resources\":{\"memory\":\"8Ei\"}}", NULL, 0);
	ok(o.r == -EINVAL && strcmp(o.reason, "PolicyDenied") == 0 && strstr(o.err, "maximum 1Ti"),
	   "over the built-in ceiling: PolicyDenied (%s)", o.err);
	o = decide("{\"resources\":{\"memory\":\"8Ei\"}}",
		   "{\"policy\":{\"maxResources\":{\"memory\":\"1Gi\"}}}", 0);
	ok(o.r == -EINVAL && strstr(o.err, "over 1Ti exceeds the maximum 1Gi"),
	   "saturated values say so: %s", o.err);

	/* refusals */
	o = decide("{\"resources\":{\"memory\":\"lots\"}}", NULL, 0);
	ok(o.r == -EINVAL && strcmp(o.reason, "InvalidSpec") == 0 &&
		   strstr(o.err, "spec.resources.memory is not"),
	   "not a quantity: InvalidSpec (%s)", o.err);
	o = decide("{\"resources\":{\"cpu\":\"-1\"}}", NULL, 0);
	ok(o.r == -EINVAL && strcmp(o.reason, "InvalidSpec") == 0, "negative: InvalidSpec");
	o = decide("{\"resources\":{\"cpu\":true}}", NULL, 0);
	ok(o.r == -EINVAL && strcmp(o.reason, "InvalidSpec") == 0, "wrong type: InvalidSpec");
	o = decide("{\"resources\":{\"memory\":\"1Ki\"}}", NULL, 0);
	ok(o.r == -EINVAL && strcmp(o.reason, "InvalidSpec") == 0 && strstr(o.err, "at least 1Mi"),
	   "below 1Mi: InvalidSpec (%s)", o.err);
	o = decide("{\"resources\":{\"cpu\":\"0\"}}", NULL, 0);
	ok(o.r == -EINVAL && strstr(o.err, "at least 1m"), "cpu 0: InvalidSpec (%s)", o.err);
	o = decide("{}", "{\"policy\":{\"maxResources\":{\"memory\":\"x\"}}}", 0);
	ok(o.r == -EINVAL && strcmp(o.reason, "InvalidSpec") == 0 &&
		   strstr(o.err, "TaskQueue q: spec.policy.maxResources.memory"),
	   "a broken queue maximum is named (%s)", o.err);

	/* CPU seconds bounds */
	o = decide("{\"resources\":{\"cpu\":\"1000\"}}", NULL, INT64_MAX);
	ok(o.r == 0 && o.l.cpu_seconds == RES_MAX_CPU_SECONDS,
	   "CPU seconds saturate at the protocol's bound");

	/* the dispatch */
	{
		json_t *lim = json_object();
		o = decide("{\"resources\":{\"memory\":\"64Mi\",\"cpu\":\"500m\"}}", NULL, 4);
		ok(res_to_limits(&o.l, lim) == 0 &&
			   json_integer_value(json_object_get(lim, "memoryBytes")) == 64 << 20 &&
			   json_integer_value(json_object_get(lim, "cpuMillis")) == 500 &&
			   json_integer_value(json_object_get(lim, "cpuSeconds")) == 2,
		   "limits: memoryBytes, cpuMillis, cpuSeconds");
		ok(res_to_limits(&o.l, NULL) == -EINVAL, "no limits object");
		json_decref(lim);
	}
	return done_testing();
}
