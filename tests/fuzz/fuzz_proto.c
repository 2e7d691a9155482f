/* Fuzz target: broker message decoding in both directions, and re-encoding what decodes. */
#include "proto.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	for (int dir = 0; dir < 2; dir++) {
		struct proto_msg m;
		char err[160], *out;
		size_t n;
		if (proto_decode((const char *)data, size, 64 * 1024, (enum proto_dir)dir, &m, err, sizeof(err)) == 0) {
			if (proto_encode(m.root, 1 << 20, &out, &n) == 0)
				free(out);
			proto_msg_free(&m);
		}
	}
	return 0;
}
