#pragma once
/* Output capture of one attempt. Pure code: no I/O, no clock (callers pass the monotonic time),
 * so it is unit-tested on its own. Bytes of stdout (stream 0) and stderr (1) become log messages
 * of valid UTF-8 without NUL, secrets masked as "***", at most EXEC_LOG_CHUNK_MAX bytes each, up
 * to max_output bytes in all (the rest is counted and marks the result truncated); the last
 * tail_max bytes of the combined stream are kept for the result's log tail. Memory is bounded:
 * the ring, two pending buffers of EXEC_LOG_CHUNK_MAX and a scratch buffer.
 * Threading: one attempt's thread only. */
#include "executor.h"
#include "util.h"

#include <stddef.h>
#include <stdint.h>

#define CAPTURE_MASK_MIN 1 /* every non-empty secret is masked (common/mask.h) */
#define CAPTURE_MASK_HOLD \
	4096 /* bytes held back so a secret split between two chunks is still
			    * masked */

struct capture {
	uint64_t total, max_output;
	int truncated;
	char *ring; /* the last ring_cap bytes of the combined stream */
	size_t ring_cap, ring_len, ring_head;
	const struct exec_hooks *hooks;
	struct buf pend[2];    /* raw bytes not yet sent as log messages, per stream */
	int64_t pend_since[2]; /* monotonic ms of the oldest pending byte, 0 when none */
	int64_t seq;
	struct buf scratch;
	const char *const *secrets; /* values to mask as "***" (borrowed) */
	size_t nsecrets;
};

/* secrets (borrowed, must outlive c) are masked in log messages and the tail. -ENOMEM or 0. */
int capture_init(struct capture *c, const struct exec_hooks *hooks, int64_t max_output,
		 int64_t tail_max, const char *const *secrets, size_t nsecrets);
void capture_free(struct capture *c);
/* Takes n bytes of stream s (0 stdout, 1 stderr); sends full chunks through hooks->log. */
void capture_add(struct capture *c, int s, const char *data, size_t n, int64_t now_ms);
/* Sends what stream s holds; unless final, keeps back an incomplete character and a piece that
 * may begin a secret. */
void capture_flush(struct capture *c, int s, int final, int64_t now_ms);
/* Flushes each stream whose oldest pending byte is age_ms old; returns the ms until the next
 * flush is due, or -1 when nothing is pending. */
int64_t capture_flush_due(struct capture *c, int64_t now_ms, int64_t age_ms);
/* The tail as valid UTF-8 of at most tail_max bytes, secrets masked (new string; NULL only when
 * out of memory). */
char *capture_tail(const struct capture *c);
/* Replaces every occurrence of each non-empty secret by "***", in place; on failure (out of
 * memory) b is left empty, never unmasked. */
void capture_mask(const char *const *secrets, size_t n, struct buf *b);
/* Appends bytes to out as valid UTF-8 without NUL: invalid bytes and NUL become U+FFFD. */
int capture_utf8_sanitize(const char *in, size_t len, struct buf *out);
