/* Fuzz target: the SSRF policy's parsers and classifier. The input is split at its first
 * newline: the first part is parsed as an IP literal (and classified and checked against a policy
 * built from the second part, one CIDR per line), both parts as CIDRs. */
#include "ssrf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct ssrf_policy p;
	char *s = malloc(size + 1), *nl, *line, *save = NULL;
	struct ssrf_addr a, emb;
	struct ssrf_cidr c;
	char why[160], fmt[SSRF_ADDR_STRLEN];

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	nl = strchr(s, '\n');
	if (nl)
		*nl++ = '\0';
	ssrf_policy_init(&p);
	for (line = nl ? strtok_r(nl, "\n", &save) : NULL; line;
	     line = strtok_r(NULL, "\n", &save)) {
		if (strcmp(line, "private") == 0)
			p.allow_private = 1;
		else
			(void)ssrf_policy_allow(&p, line);
	}
	if (ssrf_parse_ip(s, &a) == 0) {
		(void)ssrf_classify(&a, &emb);
		(void)ssrf_check(&p, &a, why, sizeof(why));
		ssrf_format(&a, fmt, sizeof(fmt));
		/* what we print parses back to the same address */
		if (ssrf_parse_ip(fmt, &emb) != 0 || emb.family != a.family ||
		    memcmp(emb.a, a.a, 16) != 0)
			abort();
	}
	if (ssrf_parse_cidr(s, &c) == 0 && ssrf_parse_ip(s, &a) == 0 && !strchr(s, '/') &&
	    !ssrf_cidr_contains(&c, &a))
		abort(); /* a bare address is its own /32 or /128 */
	free(s);
	return 0;
}
