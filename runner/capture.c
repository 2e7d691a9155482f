/* Output capture (pure: no I/O and no clock, the caller passes the time). */
#include "capture.h"
#include "mask.h"
#include "utf8.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* UTF-8 and masking are common/utf8.c and common/mask.c; these names stay for this module's
 * callers and tests. */
int capture_utf8_sanitize(const char *in, size_t len, struct buf *out)
{
	return u8_sanitize(in, len, out);
}

/* ---- output capture -------------------------------------------------------------------- */

static const char *const capture_stream_names[2] = { "stdout", "stderr" };

int capture_init(struct capture *c, const struct exec_hooks *hooks, int64_t max_output,
		 int64_t tail_max, const char *const *secrets, size_t nsecrets)
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

/* Fails closed: when the masked text cannot be built, b is left empty (mask_buf). */
void capture_mask(const char *const *secrets, size_t n, struct buf *b)
{
	int r = n ? mask_buf(b, secrets, n) : 0;
	(void)r;
}

void capture_flush(struct capture *c, int s, int final, int64_t now_ms)
{
	struct buf *p = &c->pend[s];
	size_t cut = final ? p->len : u8_complete(p->data, p->len);
	int r;

	if (!final && c->nsecrets && cut > 0) {
		size_t hold = mask_pending(p->data, cut, c->secrets, c->nsecrets,
					   CAPTURE_MASK_HOLD);
		cut = u8_complete(p->data, cut - hold);
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
			if (space ==
			    0) /* cannot happen: a flush leaves at most 3 + CAPTURE_MASK_HOLD bytes */
				break;
		}
		m = keep < space ? keep : space;
		if (p->len == 0)
			c->pend_since[s] = now_ms;
		if (buf_append(p, data, m) < 0) { /* out of memory: the pending bytes are gone */
			c->truncated = 1;
			buf_reset(p);
		}
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
	if (!out.data) { /* could not be masked: no tail rather than an unmasked one */
		buf_free(&raw);
		return strdup("");
	}
	/* The tail may begin inside a secret: mask a leading piece of 3 bytes or more that ends
	 * one. */
	if (c->total > c->ring_cap)
		for (size_t i = 0; i < c->nsecrets && out.data; i++) {
			size_t sl = strlen(c->secrets[i]);
			for (size_t k = sl > 1 ? sl - 1 : 0; sl >= CAPTURE_MASK_MIN && k >= 3; k--)
				if (k <= out.len &&
				    memcmp(out.data, c->secrets[i] + sl - k, k) == 0) {
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
