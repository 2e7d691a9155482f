#include "mask.h"
#include "util.h"

#include <errno.h>
#include <string.h>

int mask_text(const char *s, size_t len, const char *const *secrets, size_t n, struct buf *out)
{
	size_t i = 0, run = 0;
	int hits = 0, r = 0;

	while (i < len && r == 0) {
		size_t best = 0;
		for (size_t k = 0; k < n; k++) {
			size_t l = secrets[k] ? strlen(secrets[k]) : 0;
			if (l && l > best && l <= len - i && memcmp(s + i, secrets[k], l) == 0)
				best = l;
		}
		if (!best) {
			i++;
			run++;
			continue;
		}
		r = buf_append(out, s + i - run, run);
		if (r == 0)
			r = buf_append(out, MASK_TEXT, 3);
		run = 0;
		i += best;
		hits++;
	}
	if (r == 0)
		r = buf_append(out, s + i - run, run);
	return r < 0 ? r : hits;
}

int mask_string(const char *s, const char *const *secrets, size_t n, char **ret)
{
	_cleanup_buf_ struct buf b;
	int hits;

	buf_init(&b, SIZE_MAX / 2);
	*ret = NULL;
	hits = mask_text(s, strlen(s), secrets, n, &b);
	if (hits < 0)
		return -ENOMEM;
	*ret = buf_take(&b, NULL);
	return *ret ? hits : -ENOMEM;
}

int mask_buf(struct buf *b, const char *const *secrets, size_t n)
{
	struct buf out;
	int hits;

	if (b->err)
		return b->err;
	/* "***" for a one-byte secret triples the text: allow that much past b's own maximum. */
	buf_init(&out, b->max > 3 * b->len ? b->max : 3 * b->len + 1);
	hits = mask_text(b->data ? b->data : "", b->len, secrets, n, &out);
	if (hits <= 0) {
		buf_free(&out);
		if (hits < 0)
			buf_free(b);
		return hits;
	}
	out.max = b->max; /* later appends still see b's own limit */
	buf_free(b);
	*b = out;
	return hits;
}

size_t mask_pending(const char *data, size_t len, const char *const *secrets, size_t n,
		    size_t hold_max)
{
	size_t hold = 0;
	for (size_t i = 0; i < n; i++) {
		const char *sec = secrets[i];
		size_t sl = sec ? strlen(sec) : 0, from;
		if (sl < 2 || sl > hold_max)
			continue;
		from = len > sl - 1 ? len - (sl - 1) : 0;
		for (const char *p = data + from;
		     p < data + len && (size_t)(data + len - p) > hold;) {
			const char *hit = memchr(p, sec[0], (size_t)(data + len - p));
			if (!hit)
				break;
			if (memcmp(hit, sec, (size_t)(data + len - hit)) == 0) {
				hold = (size_t)(data + len - hit);
				break;
			}
			p = hit + 1;
		}
	}
	return hold;
}
