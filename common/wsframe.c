#include "wsframe.h"

#include <errno.h>
#include <string.h>

enum { ST_HDR1, ST_HDR2, ST_LEN, ST_KEY, ST_PAYLOAD };

void wsframe_http_init(struct wsframe_http *h) { memset(h, 0, sizeof(*h)); }

void wsframe_http_feed(struct wsframe_http *h, const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = p[i];
		if (h->seen < UINT64_MAX)
			h->seen++;
		if (c == '\n' && h->st != 0) {
			if (h->ends < ~0u)
				h->ends++;
			h->end_at = h->seen;
			h->st = 1; /* "\n\n\n" holds two candidates */
		} else if (c == '\n') {
			h->st = 1;
		} else if (c == '\r' && h->st == 1) {
			h->st = 2;
		} else {
			h->st = 0;
		}
	}
}

int wsframe_http_done(const struct wsframe_http *h)
{
	return h->ends == 1 && h->end_at == h->seen ? 0 : -EPROTO;
}

void wsframe_init(struct wsframe *f, int want_mask)
{
	memset(f, 0, sizeof(*f));
	f->want_mask = want_mask ? 1 : 0;
	f->st = ST_HDR1;
}

/* After the length: the masking key if there is one, else the payload (or the next frame). */
static void wsframe_after_len(struct wsframe *f)
{
	if (f->masked) {
		f->st = ST_KEY;
		f->need = 4;
	} else {
		f->st = f->left ? ST_PAYLOAD : ST_HDR1;
	}
}

enum wsframe_verdict wsframe_feed(struct wsframe *f, const unsigned char *p, size_t n, long *first)
{
	size_t i = 0;

	while (i < n && f->verdict == WSFRAME_OK) {
		unsigned char c = p[i];
		switch (f->st) {
		case ST_HDR1:
			/* The offending frame starts here if its second byte says so. */
			*first = (long)i;
			f->st = ST_HDR2;
			i++;
			break;
		case ST_HDR2:
			if (i == 0)
				*first = -1;
			if (f->frames < UINT64_MAX)
				f->frames++;
			f->masked = (c & 0x80) != 0;
			if (f->masked != f->want_mask) {
				f->verdict = WSFRAME_BAD_MASK;
				return WSFRAME_BAD_MASK;
			}
			c &= 0x7f;
			if (c >= 126) {
				f->st = ST_LEN;
				f->need = c == 126 ? 2 : 8;
				f->left = 0;
			} else {
				f->left = c;
				wsframe_after_len(f);
			}
			i++;
			break;
		case ST_LEN:
			if (f->need == 8 && (c & 0x80)) {
				f->verdict = WSFRAME_UNTRACKED;
				return WSFRAME_UNTRACKED;
			}
			f->left = f->left << 8 | c;
			if (--f->need == 0)
				wsframe_after_len(f);
			i++;
			break;
		case ST_KEY:
			if (--f->need == 0)
				f->st = f->left ? ST_PAYLOAD : ST_HDR1;
			i++;
			break;
		default: { /* ST_PAYLOAD */
			uint64_t take = n - i < f->left ? n - i : f->left;
			f->left -= take;
			i += (size_t)take;
			if (f->left == 0)
				f->st = ST_HDR1;
			break;
		}
		}
	}
	return (enum wsframe_verdict)f->verdict;
}
