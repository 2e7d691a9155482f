/* Fuzz target: image references and allowlist patterns (controller/podpolicy.c). The input is
 * PATTERN "\n" IMAGE. Checks what must hold for every input: a match needs a valid pattern and
 * a valid image; an exact pattern matches only itself; a REPO:* pattern matches only REPO:TAG
 * without a digest, a REPO@* pattern only REPO@sha256:HEX; and the policy parser takes the
 * pattern as an allowlist entry exactly when it is valid, and a RunnerPool in IMAGE passes the
 * policy exactly when the image matches. */
#include "podpolicy.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data, *nl = memchr(s, '\n', size);
	size_t plen = nl ? (size_t)(nl - s) : size;
	const char *img = nl ? nl + 1 : "";
	size_t ilen = nl ? size - plen - 1 : 0;
	int m = podpolicy_image_match(s, plen, img, ilen);
	int pv = podpolicy_pattern_valid(s, plen), iv = podpolicy_image_valid(img, ilen);

	if (m && (!pv || !iv))
		abort();
	if (iv && !podpolicy_pattern_valid(img, ilen))
		abort(); /* every image is an exact pattern */
	if (pv && !memchr(s, '*', plen) && m != (plen == ilen && memcmp(s, img, plen) == 0))
		abort();
	if (m && memchr(s, '*', plen)) {
		size_t rl = plen - 2;
		if (ilen <= rl + 1 || memcmp(s, img, rl) != 0 || img[rl] != s[plen - 2])
			abort();
		if (memchr(img + rl + 1, '@', ilen - rl - 1) && s[plen - 2] == ':')
			abort();
		if (memchr(img + rl + 1, '/', ilen - rl - 1))
			abort(); /* never a sub-repository */
	}
	if (plen < 2048) {
		char buf[2100], err[256];
		json_t *pol, *arr;
		struct podpolicy p = { 0 };
		memcpy(buf, s, plen);
		buf[plen] = 0;
		arr = json_array();
		json_array_append_new(arr, json_stringn(buf, plen));
		pol = json_pack("{so}", "imageAllowlist", arr);
		if (pol && json_array_size(arr) == 1 && strlen(buf) == plen &&
		    (podpolicy_parse(pol, &p, err, sizeof(err)) == 0) != pv)
			abort();
		/* A RunnerPool with that image (no volumes, no resources) is allowed exactly when
		 * the image matches the pattern. */
		if (pol && json_array_size(arr) == 1 && strlen(buf) == plen && pv) {
			json_t *img_j = json_stringn(img, ilen), *spec;
			const char *reason = NULL;
			spec = img_j ? json_pack("{so}", "image", img_j) : NULL;
			if (spec && (podpolicy_check_pool(&p, spec, "fuzz", "q", NULL, &reason, err,
							  sizeof(err)) == 0) != m)
				abort();
			json_decref(spec);
		}
		podpolicy_release(&p);
		json_decref(pol);
	}
	return 0;
}
