/* Fuzz target: the secret masker. The first line holds secrets separated by ';', the rest is
 * the text. Invariants: no secret without a '*' survives in the masked text, and masking in place
 * gives the same bytes as masking into a new buffer. */
#include "mask.h"
#include "util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *sec[8];
	size_t n = 0;
	char *s = malloc(size + 1), *nl, *m = NULL;
	struct buf b;
	int hits;

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	nl = strchr(s, '\n');
	if (!nl) {
		free(s);
		return 0;
	}
	*nl = '\0';
	for (char *p = s, *save = NULL, *t; n < 8 && (t = strtok_r(p, ";", &save)); p = NULL)
		sec[n++] = t;
	hits = mask_string(nl + 1, sec, n, &m);
	if (hits >= 0) {
		/* Unmasked text is only what no secret starts in, and a secret without '*' cannot
		 * straddle a "***": so none may be left. */
		for (size_t i = 0; i < n; i++)
			if (!strchr(sec[i], '*') && strstr(m, sec[i]))
				abort();
		buf_init(&b, 1 << 20);
		if (buf_puts(&b, nl + 1) == 0 && mask_buf(&b, sec, n) >= 0 &&
		    strcmp(b.data ? b.data : "", m) != 0)
			abort();
		buf_free(&b);
	}
	free(m);
	free(s);
	return 0;
}
