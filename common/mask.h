#pragma once
/* The one secret masker: every occurrence of every non-empty secret becomes "***", the longest
 * secret winning where several match at one place. It fails closed: when the masked text cannot
 * be built the caller gets an error and no text, never the unmasked input. */
#include <stddef.h>

struct buf;

#define MASK_TEXT "***"

/* Appends s (len bytes) masked to out. The number of secrets replaced (>= 0), or out's error
 * (then out holds nothing). */
int mask_text(const char *s, size_t len, const char *const *secrets, size_t n, struct buf *out)
	__attribute__((warn_unused_result));
/* Masks a NUL-terminated string into a new one (*ret, also when nothing matched). The number
 * of secrets replaced, or -ENOMEM with *ret NULL. */
int mask_string(const char *s, const char *const *secrets, size_t n, char **ret)
	__attribute__((warn_unused_result));
/* Masks b in place: the number replaced, or a negative errno with b emptied. */
int mask_buf(struct buf *b, const char *const *secrets, size_t n)
	__attribute__((warn_unused_result));
/* For streams: the longest end of data (at most hold_max bytes) that is the beginning, not the
 * whole, of a secret. Those bytes wait for the next chunk so a secret written in two pieces is
 * still masked whole. */
size_t mask_pending(const char *data, size_t len, const char *const *secrets, size_t n,
		    size_t hold_max);
