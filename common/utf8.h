#pragma once
/* UTF-8 as both binaries need it: strict validation (the rules jansson applies: no overlongs,
 * no surrogates, nothing past U+10FFFF), encoding, and repair of untrusted output. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;

/* Length of the valid sequence at p (1-4), or 0 when p starts an invalid or incomplete one. */
size_t utf8_seq(const unsigned char *p, size_t len);
bool utf8_valid(const char *s, size_t len);
/* Code points in s, which must be valid. */
size_t utf8_count(const char *s, size_t len);
/* Writes cp to out (up to 4 bytes); 0 for a surrogate or anything past U+10FFFF. */
size_t utf8_put(uint32_t cp, char out[4]);
/* Appends in to out with every invalid byte and every NUL replaced by U+FFFD. 0 or the
 * buffer's error (then out holds nothing: see buf_append). */
int utf8_sanitize(const char *in, size_t len, struct buf *out) __attribute__((warn_unused_result));
/* The longest prefix of s that does not end inside a (so far valid) multi-byte sequence. */
size_t utf8_complete(const char *s, size_t len);
/* The last at most max bytes of s, starting on a character boundary. */
const char *utf8_tail(const char *s, size_t max);
