#pragma once
/* Bounded, non-recursive JSON scanning, for text a tree parser refused (nested deeper than
 * jansson's compile-time limit, an integer out of range, a NUL in a key) and for measuring
 * nesting before parsing. It finds a few members by path without building a tree: enough to
 * name an object (namespace, name, uid) so it can be skipped and reported. Nothing here
 * allocates and every loop is bounded by the input length; depth is a counter, not a stack.
 *
 * Brackets are counted, not matched, and scalars are not validated: the scanner locates members
 * in text that a JSON encoder produced (the API server's); on garbage it fails or finds
 * nothing, never reads outside [0, len). Spans are byte offsets [start, end) into buf. */
#include <stddef.h>

/* Skips whitespace and one value from *pos; *pos ends just past the value. 0 or -EBADMSG. */
int jscan_skip(const char *buf, size_t len, size_t *pos);

/* Finds member key in the object that starts (after whitespace) at start: 0 with the value's
 * span, -ENOENT when absent, -EBADMSG when the text is not an object. */
int jscan_member(const char *buf, size_t len, size_t start, const char *key, size_t *vs,
		 size_t *ve);

/* Object iteration, the member-wise twin of jscan_next. *pos starts at the object (whitespace
 * allowed before '{'); each call returns 1 with the next member's key span [ks, ke) (quotes
 * included, undecoded) and value span, 0 after the last, or -EBADMSG. */
int jscan_member_next(const char *buf, size_t len, size_t *pos, size_t *ks, size_t *ke, size_t *vs,
		      size_t *ve);

/* Follows path (member names, NULL-terminated) from the value at start. Same returns. */
int jscan_path(const char *buf, size_t len, size_t start, const char *const *path, size_t *vs,
	       size_t *ve);

/* Array iteration. *pos starts at the array (whitespace allowed before '['); each call returns
 * 1 with the next element's span, 0 after the last, or -EBADMSG. */
int jscan_next(const char *buf, size_t len, size_t *pos, size_t *vs, size_t *ve);

/* Decodes the JSON string at [vs, ve) into out as UTF-8, NUL-terminated. -EBADMSG when it is
 * not a string, -ENOBUFS when it does not fit, -EILSEQ when it holds a NUL (a C string would
 * silently end there). On failure out is "". */
int jscan_string(const char *buf, size_t vs, size_t ve, char *out, size_t outsz);

/* Deepest nesting of arrays and objects in [0, len) (a scalar is 0, "[]" is 1). Counting stops
 * early once it passes limit: the result is then limit + 1. */
size_t jscan_depth(const char *buf, size_t len, size_t limit);
