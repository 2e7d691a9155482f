/* Task memory and CPU limits: defaults, queue maxima, the dispatch's limits (resources.h). */
#include "resources.h"
#include "quantity.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* One quantity from a JSON string or integer (the CRDs allow both, like Kubernetes). 1: set,
 * 0: absent, -EINVAL: not a quantity. scale 3 = millicores. */
static int res_value(json_t *v, int scale, int64_t max, int64_t *ret)
{
	char num[32];
	const char *s;
	int r;

	if (!v || json_is_null(v))
		return 0;
	if (json_is_integer(v)) {
		snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v));
		s = num;
	} else if (json_is_string(v)) {
		s = json_string_value(v);
	} else {
		return -EINVAL;
	}
	r = qty_parse(s, strlen(s), scale, max, ret);
	return r < 0 ? r : 1;
}

struct res_field {
	const char *name; /* "memory", "cpu" */
	int scale;
	int64_t min, builtin, hard_max;
	int milli; /* format as CPU */
};

static int res_one(const struct res_field *f, json_t *spec, json_t *qspec, const char *qname,
		   int64_t *val, enum res_source *from, int *lowered, const char **reason,
		   char *err, size_t errsz)
{
	json_t *tv = json_object_get(json_object_get(spec, "resources"), f->name);
	json_t *dv = json_object_get(
		json_object_get(json_object_get(qspec, "defaults"), "resources"), f->name);
	json_t *mv = json_object_get(
		json_object_get(json_object_get(qspec, "policy"), "maxResources"), f->name);
	int64_t max = f->hard_max;
	char a[32], b[32];
	int r;

	*lowered = 0;
	if ((r = res_value(mv, f->scale, f->hard_max, &max)) < 0) {
		*reason = "InvalidSpec";
		snprintf(err, errsz,
			 "TaskQueue %s: spec.policy.maxResources.%s is not a resource quantity",
			 qname, f->name);
		return -EINVAL;
	}
	if (max < f->min)
		max = f->min;
	/* Parsed with headroom, so a value over the maximum is told apart from one at it. */
	if ((r = res_value(tv, f->scale, f->hard_max + 1, val)) < 0) {
		*reason = "InvalidSpec";
		snprintf(err, errsz, "spec.resources.%s is not a resource quantity (e.g. %s)",
			 f->name, f->milli ? "500m or 2" : "256Mi or 1Gi");
		return -EINVAL;
	}
	if (r == 1 && *val < f->min) {
		qty_format(f->min, f->milli, a, sizeof(a));
		*reason = "InvalidSpec";
		snprintf(err, errsz, "spec.resources.%s must be at least %s", f->name, a);
		return -EINVAL;
	}
	if (r == 1) {
		*from = RES_FROM_TASK;
		if (*val > max) {
			qty_format(*val > f->hard_max ? f->hard_max : *val, f->milli, a, sizeof(a));
			qty_format(max, f->milli, b, sizeof(b));
			*reason = "PolicyDenied";
			if (mv)
				snprintf(
					err, errsz,
					"spec.resources.%s %s%s exceeds the maximum %s of TaskQueue %s "
					"(policy.maxResources.%s)",
					f->name, *val > f->hard_max ? "over " : "", a, b, qname,
					f->name);
			else
				snprintf(err, errsz,
					 "spec.resources.%s exceeds the maximum %s a task may have",
					 f->name, b);
			return -EINVAL;
		}
		return 0;
	}
	if ((r = res_value(dv, f->scale, f->hard_max, val)) < 0) {
		*reason = "InvalidSpec";
		snprintf(err, errsz,
			 "TaskQueue %s: spec.defaults.resources.%s is not a resource quantity",
			 qname, f->name);
		return -EINVAL;
	}
	*from = r == 1 ? RES_FROM_QUEUE : RES_FROM_BUILTIN;
	if (r == 0)
		*val = f->builtin;
	else if (*val < f->min)
		*val = f->min;
	if (*val > max) {
		*val = max;
		*lowered = 1;
	}
	return 0;
}

int res_decide(json_t *spec, json_t *qspec, const char *qname, int64_t timeout_s,
	       struct res_limits *out, const char **reason, char *err, size_t errsz)
{
	static const struct res_field mem = { "memory",       0, RES_MIN_MEMORY, RES_DEFAULT_MEMORY,
					      RES_MAX_MEMORY, 0 };
	static const struct res_field cpu = { "cpu", 3, 1, RES_DEFAULT_CPU_MILLI, RES_MAX_CPU_MILLI,
					      1 };
	int r;

	memset(out, 0, sizeof(*out));
	if (!qname || !*qname)
		qname = "default";
	if ((r = res_one(&mem, spec, qspec, qname, &out->memory_bytes, &out->memory_from,
			 &out->memory_lowered, reason, err, errsz)) < 0 ||
	    (r = res_one(&cpu, spec, qspec, qname, &out->cpu_milli, &out->cpu_from,
			 &out->cpu_lowered, reason, err, errsz)) < 0)
		return r;
	/* CPU seconds for RLIMIT_CPU: the cores the task may use on average over its timeout,
	 * rounded up, at least one second; none without a timeout. */
	if (timeout_s > 0 && out->cpu_milli > 0) {
		if (timeout_s > RES_MAX_CPU_SECONDS)
			timeout_s = RES_MAX_CPU_SECONDS;
		/* both factors are bounded (10^6 and 2^31): the product fits */
		out->cpu_seconds = (out->cpu_milli * timeout_s + 999) / 1000;
		if (out->cpu_seconds > RES_MAX_CPU_SECONDS)
			out->cpu_seconds = RES_MAX_CPU_SECONDS;
	}
	return 0;
}

int res_to_limits(const struct res_limits *l, json_t *limits)
{
	if (!json_is_object(limits))
		return -EINVAL;
	if (json_object_set_new(limits, "memoryBytes", json_integer(l->memory_bytes)) < 0 ||
	    json_object_set_new(limits, "cpuMillis", json_integer(l->cpu_milli)) < 0 ||
	    json_object_set_new(limits, "cpuSeconds", json_integer(l->cpu_seconds)) < 0)
		return -ENOMEM;
	return 0;
}
