#pragma once
/* Memory and CPU limits of a task: spec.resources {memory, cpu} (Kubernetes quantities), else
 * the TaskQueue's spec.defaults.resources, else the built-in defaults below; an explicit value
 * above the queue's spec.policy.maxResources fails the task with PolicyDenied, a default above it
 * is lowered to it. The result reaches the runner in the dispatch's `limits` (docs/protocol.md):
 * memoryBytes, cpuMillis, and cpuSeconds = cpu × the attempt's timeout (what RLIMIT_CPU can
 * enforce; 0 = none when the attempt has no timeout). Pure logic; docs/runner.md says how the
 * runner enforces it. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Built-in defaults: enough for ordinary tools and compilers, small enough that one runaway task
 * cannot take a node's memory or every core. */
#define RES_DEFAULT_MEMORY (INT64_C(1) << 30) /* 1Gi */
#define RES_DEFAULT_CPU_MILLI 1000            /* "1" */
#define RES_MIN_MEMORY (INT64_C(1) << 20)     /* 1Mi: less cannot even load a program */
/* The CRDs bound both; the controller caps again for objects written before that. */
#define RES_MAX_MEMORY (INT64_C(1) << 40)        /* 1Ti */
#define RES_MAX_CPU_MILLI (INT64_C(1000) * 1000) /* 1000 cores */
#define RES_MAX_CPU_SECONDS INT32_MAX            /* what the protocol carries */

enum res_source { RES_FROM_TASK, RES_FROM_QUEUE, RES_FROM_BUILTIN };

struct res_limits {
	int64_t memory_bytes, cpu_milli, cpu_seconds;
	enum res_source memory_from, cpu_from;
	int memory_lowered, cpu_lowered; /* a default was lowered to the queue's maximum */
};

/* Decides the limits of a task (spec: the Task's spec; qspec: its TaskQueue's spec or NULL;
 * qname: the queue's name, for messages; timeout_s: the attempt's timeout, 0 for none).
 * Returns 0, or -EINVAL with *reason ("InvalidSpec" or "PolicyDenied") and a message naming the
 * field and the limit in err. */
int res_decide(json_t *spec, json_t *qspec, const char *qname, int64_t timeout_s,
	       struct res_limits *out, const char **reason, char *err, size_t errsz);

/* Sets memoryBytes, cpuMillis and cpuSeconds in a dispatch's limits object. */
int res_to_limits(const struct res_limits *l, json_t *limits);
