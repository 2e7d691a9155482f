/* Fuzz target: $(tasks.…) references resolved by the controller, then the runner's $(VAR)
 * expansion. The first line is a dependency's output value, the rest a template. Invariants:
 * the template resolves or fails with a reason, and an inserted value always comes out of the
 * runner's expansion exactly as the dependency wrote it (no second-order expansion). */
#include "deps.h"
#include "expand.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Every name is known: a reference that survived escaping would change the text. */
static const char *lookup(const char *name, size_t len, void *ud)
{
	(void)name;
	(void)len;
	(void)ud;
	return "EXPANDED-SECRET";
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1), *nl, *out, *x = NULL, err[256] = "";
	const char *tmpl = "";
	json_t *tasks;
	size_t vlen;

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if ((nl = strchr(s, '\n'))) {
		*nl = '\0';
		tmpl = nl + 1;
	}
	vlen = strlen(s);
	tasks = json_pack("{s{sssis{so}}}", "a", "phase", "Succeeded", "exitCode", 0, "output", "v",
			  json_stringn_nocheck(s, vlen));
	out = deps_resolve_refs(tmpl, tasks, 1, err, sizeof(err));
	if (!out && !err[0])
		abort(); /* a failure must say why */
	free(out);
	out = deps_resolve_refs("<$(tasks.a.output.v)>", tasks, 1, err, sizeof(err));
	if (out && expand_vars(out, lookup, NULL, 1 << 20, &x) == 0) {
		if (strlen(x) != vlen + 2 || x[0] != '<' || memcmp(x + 1, s, vlen) != 0 ||
		    x[vlen + 1] != '>')
			abort(); /* the value was changed by the runner's expansion */
		free(x);
	}
	free(out);
	json_decref(tasks);
	free(s);
	return 0;
}
