/* Fuzz target: broker message decoding in both directions, re-encoding what decodes, and the
 * envelope scan used to attribute what does not. */
#include "proto.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum proto_type t;
	char uid[PROTO_MAX_ID + 1];
	int64_t attempt;

	if (proto_envelope((const char *)data, size, &t, uid, sizeof(uid), &attempt) == 0 &&
	    (strlen(uid) == 0 || strlen(uid) > PROTO_MAX_ID || attempt < 1 || attempt > 1000000))
		abort();
	for (int dir = 0; dir < 2; dir++) {
		struct proto_msg m;
		char err[160], *out;
		size_t n;
		if (proto_decode((const char *)data, size, 64 * 1024, (enum proto_dir)dir, &m, err,
				 sizeof(err)) == 0) {
			if (proto_encode(m.root, 1 << 20, &out, &n) == 0)
				free(out);
			proto_msg_free(&m);
		}
	}
	return 0;
}
