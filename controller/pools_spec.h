#pragma once
/* RunnerPools, the pure parts: how many runners a pool wants, the Deployment that runs them,
 * the pool's runner token and whether a pool's labels match a selector. No I/O, no locks. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* The pool's pod labels select by this (and the Deployment's selector). */
#define POOLS_LABEL "tasked.dev/runner-pool"
/* Where the runner bundle is in the runner image, and where the pod mounts its copy. */
#define POOLS_BUNDLE_SRC "/usr/lib/tasked-bundle"
#define POOLS_BUNDLE_DIR "/opt/tasked-runner"
#define POOLS_TOKEN_HEX 64

struct pools_env {
	const char *runner_image; /* the image with the bundle (init container) */
	const char
		*broker_url; /* what pool runners connect to, e.g. ws://tasked-broker.ns.svc:8081 */
	const char *apparmor;    /* "Localhost/PROFILE", "RuntimeDefault" or "None"/NULL */
	const char *pull_policy; /* imagePullPolicy of both containers (NULL: the default) */
};

/* ceil((queued + running) / slots) within [min, max] (max < min counts as min), saturated: no
 * input makes it overflow or go negative. */
int64_t pools_desired(int64_t queued, int64_t running, int64_t slots, int64_t min, int64_t max);

/* Scale decision, per pass. */
struct pools_scale {
	int64_t replicas;     /* the Deployment's spec.replicas now */
	int64_t desired;      /* pools_desired */
	int64_t low_since_ms; /* when desired first fell below replicas (0: it has not) */
	int64_t delay_ms;     /* scaleDownDelaySeconds */
	int64_t now_ms;
};
enum pools_action { POOLS_KEEP, POOLS_SCALE_UP, POOLS_WAIT_DOWN, POOLS_DRAIN };
/* POOLS_SCALE_UP: set replicas to desired now; POOLS_WAIT_DOWN: demand is lower but not for
 * long enough yet (start or keep the timer); POOLS_DRAIN: drain replicas - desired idle runners,
 * then lower replicas by as many as drained. */
enum pools_action pools_decide(const struct pools_scale *s);

/* The pool's runner token: HMAC-SHA256 keyed by the controller's runner token over the pool's
 * namespace, name and UID, as 64 hex characters. 0 or -EINVAL. */
int pools_token(const char *secret, const char *ns, const char *name, const char *uid,
		char out[POOLS_TOKEN_HEX + 1]);
/* The Secret that holds it: "<pool>-pool-token-<first 10 hex of SHA-256(token)>", so a new
 * token (rotation, re-created pool) is a new Secret and the name says nothing of the token. */
int pools_secret_name(const char *pool, const char *token, char *out, size_t outsz);
/* "<pool>-pool". */
int pools_deployment_name(const char *pool, char *out, size_t outsz);

/* Whether every key of selector (object of strings) has that value in labels. An empty or
 * missing selector matches nothing here: a pool is only reached by asking for it. */
int pools_labels_match(json_t *labels, json_t *selector);

/* The container executor's policy (podpolicy.h) on a pool a task uses: the task's TaskQueue
 * (queue, the object; NULL when it has none) spec.policy.container decides about the pool's
 * image, volumes and resources, as it does for the task's own container; without a TaskQueue or
 * with an empty imageAllowlist no image is allowed. pool names the pool in messages. 1 allowed,
 * 0 refused with *reason (PolicyDenied, or InvalidSpec) and why filled. */
int pools_policy_check(json_t *pool_spec, const char *pool, json_t *queue, const char **reason,
		       char *why, size_t whysz);

/* The Deployment for pool (the RunnerPool object, borrowed) with replicas, running its runners
 * with the token in Secret secret_name. NULL with err filled when the pool cannot be built. */
json_t *pools_build_deployment(json_t *pool, int64_t replicas, const char *secret_name,
			       const struct pools_env *env, char *err, size_t errsz);
/* The Secret holding token for pool (owned by it). */
json_t *pools_build_secret(json_t *pool, const char *secret_name, const char *token);
/* A short hash of the pod template, for the Deployment's tasked.dev/template-hash annotation. */
int pools_template_hash(json_t *deployment, char out[17]);

/* What one reconcile pass saw of a pool, for its status. */
struct pools_obs {
	int64_t ready, desired, replicas, queued, running, min;
	const char *stalled; /* a reason the pool cannot run as specified, or NULL */
	int error;           /* the pass failed in a way the next one may not (why says how) */
	const char *why;
};
/* The kinds' common conditions (conditions.h, docs/api.md) for a pool, which has no phase: Ready
 * while at least minRunners runners are connected; Reconciling while it scales up or its runners
 * start, or after a failed pass that is retried; Stalled when it cannot run as specified (kstatus:
 * Failed); Completed never (a pool runs until it is deleted). Each with observedGeneration gen;
 * lastTransitionTime kept from old where the status did not change. New reference or NULL. */
json_t *pools_conditions(json_t *old, const struct pools_obs *o, int64_t gen, int64_t now_ms);
