/* Fuzz target: the resource quantity parser. Checks what must hold for every input: results
 * within the cap, millicores and units agreeing (ceil(ceil(1000x)/1000) = ceil(x)), and what
 * qty_format prints parsing back to the same value. */
#include "quantity.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const int64_t cap = INT64_C(1) << 50;
	int64_t v0 = -1, v3 = -1, back = -1;
	char buf[40];
	int r0 = qty_parse((const char *)data, size, 0, cap, &v0);
	int r3 = qty_parse((const char *)data, size, 3, cap, &v3);

	if ((r0 < 0) != (r3 < 0))
		abort(); /* validity does not depend on the scale */
	if (r0 < 0)
		return 0;
	if (v0 < 0 || v0 > cap || v3 < 0 || v3 > cap || (r0 == 1 && v0 != cap) ||
	    (r3 == 1 && v3 != cap))
		abort();
	if (r0 == 0 && r3 == 0 && (v3 + 999) / 1000 != v0)
		abort();
	if (r3 == 1 && r0 == 0 && v0 * 1000 <= cap - 1000)
		abort(); /* the millicore value overflowed though the unit value is far from it */
	qty_format(v0, 0, buf, sizeof(buf));
	if (qty_parse(buf, strlen(buf), 0, cap, &back) != 0 || back != v0)
		abort();
	qty_format(v3, 1, buf, sizeof(buf));
	if (qty_parse(buf, strlen(buf), 3, cap, &back) != 0 || back != v3)
		abort();
	return 0;
}
