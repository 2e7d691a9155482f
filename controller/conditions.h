#pragma once
/* The status conditions every kind carries for GitOps tools (docs/api.md, "Conditions"): Ready,
 * Reconciling, Stalled and Completed, each with observedGeneration, built from a phase, reason
 * and message. kstatus (Flux, kpt, Config Sync) reads Reconciling and Stalled, `kubectl wait`
 * reads any of them. A condition whose status did not change keeps its lastTransitionTime. Pure;
 * any thread. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* One condition to write. */
struct cond {
	const char *type, *status, *reason, *message;
};

#define COND_RUN_MAX 5 /* Succeeded + the four GitOps conditions */

/* The conditions of one run (a Task or a Flow) in phase, reason, message: Succeeded (True on
 * Succeeded and Skipped, False on Failed and Cancelled, else Unknown), Ready, Reconciling,
 * Stalled, Completed, in that order. A missing phase reads as Pending. Returns how many were
 * filled into out (COND_RUN_MAX); the strings are borrowed from the arguments or static. */
size_t cond_run(const char *phase, const char *reason, const char *message, struct cond *out);

/* A new conditions array: cs in order, each with observedGeneration gen and a lastTransitionTime
 * kept from old (a conditions array, may be NULL) when a condition of that type had the same
 * status, else now_ms. NULL when out of memory. */
json_t *cond_build(json_t *old, const struct cond *cs, size_t n, int64_t gen, int64_t now_ms);

/* cond_run then cond_build. */
json_t *cond_run_array(json_t *old, const char *phase, const char *reason, const char *message,
		       int64_t gen, int64_t now_ms);
