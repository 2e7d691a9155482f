/* Fuzz target: the $(…) scanner and $(VAR) expansion. The first line holds NAME=VALUE pairs
 * separated by ';'. The scanner's tokens must tile the input exactly. */
#include "expand.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *lookup(const char *name, size_t len, void *ud)
{
	const char *env = ud, *p = env;
	while (p && *p) {
		const char *eq = strchr(p, '='), *end = strchr(p, ';');
		if (!end)
			end = p + strlen(p);
		if (eq && eq < end && (size_t)(eq - p) == len && memcmp(p, name, len) == 0) {
			static char val[256];
			size_t n = (size_t)(end - eq - 1);
			if (n >= sizeof(val))
				n = sizeof(val) - 1;
			memcpy(val, eq + 1, n);
			val[n] = '\0';
			return val;
		}
		p = *end ? end + 1 : NULL;
	}
	return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1), *nl, *out;
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	{
		struct expand_token t;
		enum expand_tok k;
		size_t pos = 0, covered = 0;
		while ((k = expand_next(s, &pos, &t)) != EXPAND_END) {
			if (t.start != covered || t.len == 0 || pos != t.start + t.len ||
			    (k == EXPAND_REF && (t.name != t.start + 2 || t.name_len + 3 != t.len)))
				abort();
			covered = pos;
		}
		if (covered != strlen(s))
			abort();
	}
	nl = strchr(s, '\n');
	if (nl) {
		*nl = '\0';
		if (expand_vars(nl + 1, lookup, s, 4096, &out) == 0)
			free(out);
	}
	free(s);
	return 0;
}
