/* Conditions for GitOps health (conditions.h). */
#include "conditions.h"
#include "util.h"

#include <string.h>

static int is(const char *a, const char *b) { return a && strcmp(a, b) == 0; }

size_t cond_run(const char *phase, const char *reason, const char *message, struct cond *out)
{
	int good, bad;

	if (!phase || !*phase)
		phase = "Pending";
	if (!reason || !*reason)
		reason = phase;
	if (!message)
		message = "";
	/* Skipped did what was asked (its `when` said not to run): it satisfies `kubectl wait
	 * --for=condition=Succeeded` as it satisfies dependents and `kubectl tasked wait`. */
	good = is(phase, "Succeeded") || is(phase, "Skipped");
	bad = is(phase, "Failed") || is(phase, "Cancelled");
	out[0] = (struct cond){ "Succeeded",
				good  ? "True"
				: bad ? "False"
				      : "Unknown",
				reason, message };
	out[1] = (struct cond){ "Ready", good ? "True" : "False", reason, message };
	if (good || bad) {
		out[2] = (struct cond){ "Reconciling", "False", phase, "finished" };
		out[3] = (struct cond){ "Stalled", bad ? "True" : "False", bad ? reason : phase,
					bad ? message : "finished" };
		out[4] = (struct cond){ "Completed", "True", phase, message };
	} else {
		out[2] = (struct cond){ "Reconciling", "True", reason, message };
		out[3] = (struct cond){ "Stalled", "False", phase, "not finished" };
		out[4] = (struct cond){ "Completed", "False", phase, "not finished" };
	}
	return COND_RUN_MAX;
}

/* The lastTransitionTime of old's condition of this type, if it had this status. */
static const char *kept_ltt(json_t *old, const char *type, const char *status)
{
	json_t *c;
	size_t i;

	json_array_foreach(old, i, c)
		if (is(json_string_value(json_object_get(c, "type")), type) &&
		    is(json_string_value(json_object_get(c, "status")), status))
			return json_string_value(json_object_get(c, "lastTransitionTime"));
	return NULL;
}

json_t *cond_build(json_t *old, const struct cond *cs, size_t n, int64_t gen, int64_t now_ms)
{
	json_t *a = json_array();
	char ts[40];

	if (!a)
		return NULL;
	util_rfc3339(now_ms, ts, sizeof(ts));
	for (size_t i = 0; i < n; i++) {
		const char *ltt = kept_ltt(old, cs[i].type, cs[i].status);
		json_t *c = json_pack("{sssssssssssI}", "type", cs[i].type, "status", cs[i].status,
				      "reason", cs[i].reason ? cs[i].reason : "", "message",
				      cs[i].message ? cs[i].message : "", "lastTransitionTime",
				      ltt ? ltt : ts, "observedGeneration", (json_int_t)gen);
		if (json_array_append_new(a, c) < 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

json_t *cond_run_array(json_t *old, const char *phase, const char *reason, const char *message,
		       int64_t gen, int64_t now_ms)
{
	struct cond cs[COND_RUN_MAX];
	size_t n = cond_run(phase, reason, message, cs);
	return cond_build(old, cs, n, gen, now_ms);
}
