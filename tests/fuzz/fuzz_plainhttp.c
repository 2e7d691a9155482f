/* Fuzz target: the runner's plain-HTTP answer parser (runner/plainhttp.c), which reads the
 * controller's reply to the auth POST on ws://. Invariants: on success the status is 100..999
 * and the body lies within the input; parsing never reads past the input (ASan checks, the
 * input is copied to an exactly sized allocation). */
#include "plainhttp.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *in = malloc(size ? size : 1);
	const char *body = NULL;
	size_t blen = 0;
	long status = 0;

	if (!in)
		return 0;
	memcpy(in, data, size);
	if (ph_parse_response(in, size, &status, &body, &blen) == 0) {
		if (status < 100 || status > 999 || body < in || body > in + size ||
		    blen > (size_t)(in + size - body))
			abort();
	}
	free(in);
	return 0;
}
