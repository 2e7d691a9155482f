#pragma once
/* Kubernetes resource quantities ("256Mi", "500m", "1.5", "2e3", "1G"), as Task and TaskQueue
 * resources use them. The grammar is the API server's: an optional sign, digits with at most
 * one '.', then one suffix: a binary one (Ki Mi Gi Ti Pi Ei), a decimal one (n u m "" k M G T P
 * E), or a decimal exponent (e or E and a signed integer).
 *
 * Exact integer arithmetic, no floating point: the value is scaled by 10^scale (0 for bytes, 3
 * for millicores) and rounded up, as Kubernetes rounds a quantity it must store in a coarser
 * unit. Results saturate at the caller's maximum instead of overflowing. Negative quantities are
 * refused. Pure functions; no allocation. */
#include <stddef.h>
#include <stdint.h>

#define QTY_MAX_LEN 64 /* longer text is refused: no real quantity needs more */

/* Parses s[0..len) and stores ceil(value * 10^scale), capped at max (>= 0), in *ret.
 * scale: 0..9. Returns 0, 1 when the value was capped at max, or -EINVAL (not a quantity,
 * negative, or longer than QTY_MAX_LEN). */
int qty_parse(const char *s, size_t len, int scale, int64_t max, int64_t *ret);

/* Formats v (already in the unit the caller wants, e.g. bytes) as the shortest exact binary
 * quantity ("256Mi", "1536Ki", "1000") or, with milli set, a CPU quantity from millicores ("2",
 * "500m"). Always NUL-terminates; returns what snprintf returns. */
int qty_format(int64_t v, int milli, char *out, size_t outsz);
