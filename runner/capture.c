/* Output capture (pure: no I/O and no clock, the caller passes the time). */
#include "capture.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- UTF-8 --------------------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at p (1-4), or 0 when p starts an invalid or incomplete
 * one. Same rules as jansson: no overlongs, no surrogates, nothing past U+10FFFF. */
static size_t capture_utf8_seq(const unsigned char *p, size_t len)
{
	unsigned c = p[0], need, cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		need = 2, cp = c & 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		need = 3, cp = c & 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		need = 4, cp = c & 0x07;
	else
		return 0;
	if (len < need)
		return 0;
	for (unsigned i = 1; i < need; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((need == 3 && cp < 0x800) || (need == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return need;
}

int capture_utf8_sanitize(const char *in, size_t len, struct buf *out)
{
	static const char repl[] = "\xef\xbf\xbd";
	const unsigned char *p = (const unsigned char *)in;
	size_t i = 0, run = 0;
	int r = 0;

	while (i < len && r == 0) {
		size_t n = p[i] == 0 ? 0 : capture_utf8_seq(p + i, len - i);
		if (n) {
			i += n;
			run += n;
			continue;
		}
		r = buf_append(out, p + i - run, run);
		if (r == 0)
			r = buf_append(out, repl, 3);
		run = 0;
		i++;
	}
	if (r == 0)
		r = buf_append(out, p + i - run, run);
	return r;
}

/* The longest prefix of p that does not end inside a (so far valid) multi-byte sequence. */
static size_t capture_utf8_complete(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	for (size_t back = 1; back <= 3 && back <= len; back++) {
		unsigned c = p[len - back], need;
		if ((c & 0xc0) == 0x80)
			continue;
		need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
		return need > back ? len - back : len;
	}
	return len;
}

/* ---- output capture -------------------------------------------------------------------- */


static const char *const capture_stream_names[2] = { "stdout", "stderr" };

int capture_init(struct capture *c, const struct exec_hooks *hooks, int64_t max_output, int64_t tail_max,
	     const char *const *secrets, size_t nsecrets)
{
	memset(c, 0, sizeof(*c));
	c->secrets = secrets;
	c->nsecrets = nsecrets;
	c->hooks = hooks && hooks->log ? hooks : NULL;
	c->max_output = (uint64_t)max_output;
	c->ring_cap = (size_t)tail_max;
	if (c->ring_cap && !(c->ring = malloc(c->ring_cap)))
		return -ENOMEM;
	buf_init(&c->pend[0], EXEC_LOG_CHUNK_MAX);
	buf_init(&c->pend[1], EXEC_LOG_CHUNK_MAX);
	buf_init(&c->scratch, 3 * EXEC_LOG_CHUNK_MAX + 16);
	return 0;
}

void capture_free(struct capture *c)
{
	free(c->ring);
	buf_free(&c->pend[0]);
	buf_free(&c->pend[1]);
	buf_free(&c->scratch);
}

/* Replaces every occurrence of each secret in b by "***", in place (it only shrinks). */
void capture_mask(const char *const *secrets, size_t n, struct buf *b)
{
	for (size_t i = 0; i < n; i++) {
		size_t sl = strlen(secrets[i]), w = 0, r = 0;
		if (sl < CAPTURE_MASK_MIN || !b->data)
			continue;
		while (r < b->len) {
			char *hit = memmem(b->data + r, b->len - r, secrets[i], sl);
			size_t pre = hit ? (size_t)(hit - (b->data + r)) : b->len - r;
			memmove(b->data + w, b->data + r, pre);
			w += pre;
			r += pre;
			if (!hit)
				break;
			memcpy(b->data + w, "***", 3);
			w += 3;
			r += sl;
		}
		b->len = w;
		if (b->cap > w)
			b->data[w] = '\0';
	}
}

/* The longest end of data that is the beginning (not the whole) of a secret: those bytes wait
 * for the next chunk, so a secret written in two pieces is still masked whole. */
static size_t capture_mask_pending(const struct capture *c, const char *data, size_t len)
{
	size_t hold = 0;
	for (size_t i = 0; i < c->nsecrets; i++) {
		const char *sec = c->secrets[i];
		size_t sl = strlen(sec), from;
		if (sl < CAPTURE_MASK_MIN || sl > CAPTURE_MASK_HOLD)
			continue;
		from = len > sl - 1 ? len - (sl - 1) : 0;
		for (const char *p = data + from; p < data + len && (size_t)(data + len - p) > hold;) {
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

void capture_flush(struct capture *c, int s, int final, int64_t now_ms)
{
	struct buf *p = &c->pend[s];
	size_t cut = final ? p->len : capture_utf8_complete(p->data, p->len);
	int r;

	if (!final && c->nsecrets && cut > 0) {
		size_t hold = capture_mask_pending(c, p->data, cut);
		cut = capture_utf8_complete(p->data, cut - hold);
	}
	if (!c->hooks || cut == 0)
		return;
	buf_reset(&c->scratch);
	r = capture_utf8_sanitize(p->data, cut, &c->scratch);
	if (r == 0)
		capture_mask(c->secrets, c->nsecrets, &c->scratch);
	/* Replacement characters can grow the chunk: send it in pieces of at most
	 * EXEC_LOG_CHUNK_MAX bytes, never splitting a character. */
	for (size_t off = 0; r == 0 && off < c->scratch.len;) {
		size_t n = c->scratch.len - off;
		if (n > EXEC_LOG_CHUNK_MAX) {
			n = EXEC_LOG_CHUNK_MAX;
			while (n > 0 && ((unsigned char)c->scratch.data[off + n] & 0xc0) == 0x80)
				n--;
		}
		r = c->hooks->log(c->hooks->userdata, capture_stream_names[s], c->seq++,
				  c->scratch.data + off, n);
		off += n;
	}
	if (r < 0)
		c->truncated = 1;
	buf_consume(p, cut);
	c->pend_since[s] = p->len ? now_ms : 0;
}

void capture_add(struct capture *c, int s, const char *data, size_t n, int64_t now_ms)
{
	uint64_t room = c->total < c->max_output ? c->max_output - c->total : 0;
	size_t keep = room < n ? (size_t)room : n;

	c->total += n;
	if (keep < n)
		c->truncated = 1;
	/* The tail always shows how the stream ended, whatever the cap discarded. */
	if (c->ring_cap) {
		const char *src = n > c->ring_cap ? data + n - c->ring_cap : data;
		size_t m = n > c->ring_cap ? c->ring_cap : n;
		size_t first = c->ring_cap - c->ring_head < m ? c->ring_cap - c->ring_head : m;
		memcpy(c->ring + c->ring_head, src, first);
		memcpy(c->ring, src + first, m - first);
		c->ring_head = (c->ring_head + m) % c->ring_cap;
		c->ring_len = c->ring_len + m > c->ring_cap ? c->ring_cap : c->ring_len + m;
	}
	if (!c->hooks)
		return;
	while (keep > 0) {
		struct buf *p = &c->pend[s];
		size_t space = p->max - p->len, m;
		if (space == 0) {
			capture_flush(c, s, 0, now_ms);
			space = p->max - p->len;
			if (space == 0) /* cannot happen: a flush leaves at most 3 + CAPTURE_MASK_HOLD bytes */
				break;
		}
		m = keep < space ? keep : space;
		if (p->len == 0)
			c->pend_since[s] = now_ms;
		(void)buf_append(p, data, m);
		data += m;
		keep -= m;
	}
}

/* The tail as valid UTF-8 of at most ring_cap bytes (new string). */
char *capture_tail(const struct capture *c)
{
	struct buf raw, out;
	size_t start = 0, skip = 0;
	char *ret;

	buf_init(&raw, c->ring_cap + 1);
	buf_init(&out, 3 * c->ring_cap + 16);
	if (c->ring_len == c->ring_cap && c->ring_cap) {
		(void)buf_append(&raw, c->ring + c->ring_head, c->ring_cap - c->ring_head);
		(void)buf_append(&raw, c->ring, c->ring_head);
	} else if (c->ring_len) {
		(void)buf_append(&raw, c->ring, c->ring_len);
	}
	/* The tail began mid-stream: drop a partial character at its start. */
	if (c->total > c->ring_cap)
		while (skip < 3 && skip < raw.len && ((unsigned char)raw.data[skip] & 0xc0) == 0x80)
			skip++;
	if (capture_utf8_sanitize(raw.data ? raw.data + skip : "", raw.len - skip, &out) < 0 ||
	    buf_append(&out, "", 0) < 0) {
		buf_free(&raw);
		buf_free(&out);
		return strdup("");
	}
	capture_mask(c->secrets, c->nsecrets, &out);
	/* The tail may begin inside a secret: mask a leading piece of 3 bytes or more that ends
	 * one. */
	if (c->total > c->ring_cap)
		for (size_t i = 0; i < c->nsecrets && out.data; i++) {
			size_t sl = strlen(c->secrets[i]);
			for (size_t k = sl > 1 ? sl - 1 : 0; sl >= CAPTURE_MASK_MIN && k >= 3; k--)
				if (k <= out.len && memcmp(out.data, c->secrets[i] + sl - k, k) == 0) {
					memcpy(out.data, "***", 3);
					memmove(out.data + 3, out.data + k, out.len - k + 1);
					out.len -= k - 3;
					break;
				}
		}
	/* Replacement characters can make it longer than the cap: keep the end. */
	while (out.len - start > c->ring_cap) {
		start++;
		while (start < out.len && ((unsigned char)out.data[start] & 0xc0) == 0x80)
			start++;
	}
	ret = strdup(out.data + start);
	buf_free(&raw);
	buf_free(&out);
	return ret;
}
int64_t capture_flush_due(struct capture *c, int64_t now_ms, int64_t age_ms)
{
	int64_t next = -1;
	for (int s = 0; s < 2; s++) {
		int64_t due;
		if (!c->pend_since[s])
			continue;
		due = c->pend_since[s] + age_ms - now_ms;
		if (due <= 0) {
			capture_flush(c, s, 0, now_ms);
			due = c->pend_since[s] ? age_ms : -1;
		}
		if (due >= 0 && (next < 0 || due < next))
			next = due;
	}
	return next;
}
