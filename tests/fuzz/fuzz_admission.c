/* Fuzz target: the webhook's AdmissionReview handling (controller/webhook.c), the whole body in
 * and out, with a TaskQueue that allows shell only and a low cost limit. Invariants: an answer
 * always comes back; a 200 is an AdmissionReview v1 response carrying a uid, an allowed flag and,
 * when refused, a message; anything else is a 400 (or a 500 when memory ran out). */
#include "webhook.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static json_t *queue(const char *ns, const char *name, void *ud)
{
	(void)ud;
	if (strcmp(name, "restricted") != 0)
		return NULL;
	return json_pack("{s{ss}s{s[{ss}]s{s[s]s{si}}}}", "metadata", "name", "restricted", "spec",
			 "secrets", "name", "tok", "policy", "executors", "shell", "conditions",
			 "maxCost", 100);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t n = 0;
	int status = 0;
	char *out = webhook_handle((const char *)data, size, queue, NULL, &status, &n);
	json_t *j, *r;

	if (!out)
		return 0; /* out of memory */
	if (n != strlen(out))
		abort();
	if (status == 200) {
		j = json_loads(out, 0, NULL);
		r = json_object_get(j, "response");
		if (!j || !json_is_string(json_object_get(r, "uid")) ||
		    !json_is_boolean(json_object_get(r, "allowed")))
			abort();
		if (json_is_false(json_object_get(r, "allowed")) &&
		    !json_string_length(json_object_get(json_object_get(r, "status"), "message")))
			abort(); /* a refusal must say why */
		json_decref(j);
	} else if (status != 400 && status != 500) {
		abort();
	}
	free(out);
	return 0;
}
