#include "expand.h"
#include "util.h"

#include <errno.h>
#include <string.h>

enum expand_tok expand_next(const char *s, size_t *pos, struct expand_token *t)
{
	const char *p = s + *pos, *d, *end;

	*t = (struct expand_token){ .start = *pos };
	if (!*p)
		return EXPAND_END;
	if (*p != '$') {
		d = strchr(p, '$');
		t->len = d ? (size_t)(d - p) : strlen(p);
		*pos += t->len;
		return EXPAND_TEXT;
	}
	if (p[1] == '$') {
		t->len = 2;
		*pos += 2;
		return EXPAND_ESCAPE;
	}
	if (p[1] == '(' && (end = strchr(p + 2, ')')) != NULL) {
		t->len = (size_t)(end - p) + 1;
		t->name = *pos + 2;
		t->name_len = (size_t)(end - p) - 2;
		*pos += t->len;
		return EXPAND_REF;
	}
	t->len = 1; /* a lone '$' */
	*pos += 1;
	return EXPAND_TEXT;
}

int expand_vars(const char *in, expand_lookup_fn lookup, void *userdata, size_t max, char **ret)
{
	_cleanup_buf_ struct buf b;
	struct expand_token t;
	enum expand_tok k;
	size_t pos = 0;
	int r = 0;

	buf_init(&b, max);
	while (r == 0 && (k = expand_next(in, &pos, &t)) != EXPAND_END) {
		const char *v = NULL;
		if (k == EXPAND_ESCAPE)
			r = buf_append(&b, "$", 1);
		else if (k == EXPAND_REF && lookup &&
			 (v = lookup(in + t.name, t.name_len, userdata)))
			r = buf_puts(&b, v);
		else
			r = buf_append(&b, in + t.start, t.len);
	}
	if (r < 0)
		return r == -ENOBUFS ? -E2BIG : r;
	*ret = buf_take(&b, NULL);
	return *ret ? 0 : -ENOMEM;
}
