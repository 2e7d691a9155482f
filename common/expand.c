#include "expand.h"
#include "util.h"

#include <errno.h>
#include <string.h>

int expand_vars(const char *in, expand_lookup_fn lookup, void *userdata, size_t max, char **ret)
{
	struct buf b;
	const char *p = in;
	int r = 0;

	buf_init(&b, max);
	while (*p && r == 0) {
		const char *d = strchr(p, '$'), *end;
		if (!d) {
			r = buf_append(&b, p, strlen(p));
			break;
		}
		r = buf_append(&b, p, (size_t)(d - p));
		if (r < 0)
			break;
		if (d[1] == '$') {
			r = buf_append(&b, "$", 1);
			p = d + 2;
		} else if (d[1] == '(' && (end = strchr(d + 2, ')')) != NULL) {
			const char *v = lookup ? lookup(d + 2, (size_t)(end - d - 2), userdata)
					       : NULL;
			r = v ? buf_append(&b, v, strlen(v))
			      : buf_append(&b, d, (size_t)(end - d + 1));
			p = end + 1;
		} else {
			r = buf_append(&b, "$", 1);
			p = d + 1;
		}
	}
	if (r == 0 && !b.data)
		r = buf_append(&b, "", 0);
	if (r < 0) {
		buf_free(&b);
		return r == -ENOBUFS ? -E2BIG : r;
	}
	*ret = b.data;
	return 0;
}
