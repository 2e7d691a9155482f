/* Fuzz target: the WebSocket frame-header tracker (common/wsframe.c). The first input byte picks
 * the side and a split point; what must hold: the verdict does not depend on how the stream is
 * cut into reads (whole, in two, byte by byte), a refused frame's first byte is located where a
 * whole-stream feed says, and the handshake tracker accepts only a stream ending in its one head. */
#include "wsframe.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wsframe whole, two, bytes;
	struct wsframe_http h;
	enum wsframe_verdict vw, v2 = WSFRAME_OK, vb = WSFRAME_OK;
	long fw = -2, f2 = -2, fb = -2, at2 = -1, atb = -1;
	size_t cut;
	int mask;

	if (size < 1)
		return 0;
	mask = data[0] & 1;
	data++;
	size--;
	cut = size ? (size_t)data[0] % (size + 1) : 0;

	wsframe_init(&whole, mask);
	vw = wsframe_feed(&whole, data, size, &fw);

	wsframe_init(&two, mask);
	v2 = wsframe_feed(&two, data, cut, &f2);
	if (v2 == WSFRAME_BAD_MASK)
		at2 = f2;
	if (v2 == WSFRAME_OK) {
		v2 = wsframe_feed(&two, data + cut, size - cut, &f2);
		if (v2 == WSFRAME_BAD_MASK)
			at2 = f2 >= 0 ? (long)cut + f2 : (long)cut - 1;
	}

	wsframe_init(&bytes, mask);
	for (size_t i = 0; i < size && vb == WSFRAME_OK; i++) {
		vb = wsframe_feed(&bytes, data + i, 1, &fb);
		if (vb == WSFRAME_BAD_MASK)
			atb = fb >= 0 ? (long)i : (long)i - 1;
	}

	if (vw != v2 || vw != vb || whole.frames != two.frames || whole.frames != bytes.frames)
		abort();
	if (vw == WSFRAME_BAD_MASK && (fw < 0 || at2 != fw || atb != fw))
		abort();
	if (vw == WSFRAME_BAD_MASK && (size_t)fw + 1 >= size + 1)
		abort();

	wsframe_http_init(&h);
	wsframe_http_feed(&h, data, size);
	if (wsframe_http_done(&h) == 0 && (size < 2 || data[size - 1] != '\n'))
		abort();
	return 0;
}
