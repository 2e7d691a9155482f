#pragma once
/* The container policy of a TaskQueue (spec.policy.container) and the check of a Task's
 * spec.container against it. Pure functions, no allocation beyond jansson references, any thread.
 * Also used for RunnerPools' pod templates (images, resources).
 *
 * Policy fields (docs/api.md, "Container tasks"):
 *   imageAllowlist   exact references, or patterns "REPO:*" (any tag of REPO) and "REPO@*" (any
 *                    sha256 digest of REPO); nothing else is a pattern. Empty: no image allowed.
 *   networkDisabled  default true: the pod gets the label tasked.dev/network=disabled, which the
 *                    per-namespace deny-all NetworkPolicy selects.
 *   volumeAllowlist  [{persistentVolumeClaim: NAME | configMap: NAME, mountPath: PATH}]: a task may
 *                    mount that volume at exactly that path. emptyDir volumes and queue secrets
 *                    need no entry (their limits are checked here and at dispatch).
 *   maxOutputBytes   log bytes read back from the pod (default PODPOLICY_DEFAULT_OUTPUT).
 *   defaultResources {cpu, memory}: when the task sets none (built-in: 1 CPU, 256Mi).
 *   maxResources     {cpu, memory}: a task asking for more fails PolicyDenied; a default above it
 *                    is lowered to it.
 * There is no way to ask for privileges: every pod gets the same hardening (podspec.h).
 * Without a TaskQueue the built-in policy applies: no image allowed, network disabled. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define PODPOLICY_MAX_IMAGE 1024 /* bytes of an image reference (the CRD's bound) */
#define PODPOLICY_MAX_TAG 128    /* what a registry accepts */
#define PODPOLICY_DEFAULT_OUTPUT (1024 * 1024)
#define PODPOLICY_MAX_OUTPUT (INT64_C(64) * 1024 * 1024)
#define PODPOLICY_DEFAULT_MEMORY (INT64_C(256) << 20)
#define PODPOLICY_DEFAULT_CPU_MILLI 1000
#define PODPOLICY_MAX_VOLUMES 16
#define PODPOLICY_EMPTYDIR_DEFAULT (INT64_C(64) << 20) /* sizeLimit when a task sets none */
#define PODPOLICY_EMPTYDIR_MAX (INT64_C(8) << 30)

struct podpolicy {
	json_t *images;  /* array of strings (own reference; never NULL after parse) */
	json_t *volumes; /* array of allowlist entries (own reference; never NULL) */
	int network_disabled;
	int64_t max_output_bytes;
	int64_t default_memory, default_cpu_milli;
	int64_t max_memory, max_cpu_milli; /* 0: no maximum */
};

/* The resources a pod gets: requests = limits. */
struct podres {
	int64_t memory_bytes, cpu_milli;
};

/* Reads policy (a TaskQueue's spec.policy.container, may be NULL: the built-in defaults; pass
 * the queue's spec.policy.container or NULL when there is no queue). 0, or -EINVAL with a message
 * naming the bad field in err (then *out holds the built-in defaults and must still be released). */
int podpolicy_parse(json_t *policy, struct podpolicy *out, char *err, size_t errsz);
void podpolicy_release(struct podpolicy *p);

/* Whether s is an image reference the policy can reason about: 1..PODPOLICY_MAX_IMAGE bytes of
 * printable ASCII without spaces, no "*", at most one "@" (followed by sha256: and 64 lowercase
 * hex digits). */
int podpolicy_image_valid(const char *s, size_t len);
/* Whether pattern is a valid allowlist entry (an image reference, or REPO:* / REPO@*). */
int podpolicy_pattern_valid(const char *pattern, size_t len);
/* Whether image (a valid reference) matches one allowlist entry: equal; "REPO:*" matches
 * REPO:TAG (a valid tag, no digest); "REPO@*" matches REPO@sha256:HEX. 1 or 0. */
int podpolicy_image_match(const char *pattern, size_t plen, const char *image, size_t ilen);

/* Checks a Task's spec.container against p: the image, each volume, resources. 0 with *res set,
 * or -EINVAL with *reason "InvalidSpec" or "PolicyDenied" and a message naming the rule (and
 * qname, the queue's name for messages, NULL when there is none) in err. */
int podpolicy_check(const struct podpolicy *p, json_t *container, const char *qname,
		    struct podres *res, const char **reason, char *err, size_t errsz);

/* The same policy on a RunnerPool (pools.h) that a task of queue qname (NULL: no TaskQueue, the
 * built-in policy) would run in: the pool's spec.image must match imageAllowlist; each of its
 * spec.volumes a volumeAllowlist entry (configMap, persistentVolumeClaim: name and mountPath),
 * be an emptyDir within the 8Gi maximum, or, for a secret, name a Secret the queue declares in
 * spec.secrets (qsecrets, may be NULL); its resources (limits, else requests) stay within
 * maxResources. 0, or -EINVAL with *reason "PolicyDenied" (or "InvalidSpec" for an image that is
 * not a reference) and a message naming the pool and the rule in err. */
int podpolicy_check_pool(const struct podpolicy *p, json_t *pool_spec, const char *pool,
			 const char *qname, json_t *qsecrets, const char **reason, char *err,
			 size_t errsz);
