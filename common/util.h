#pragma once
/* Small helpers both binaries share: time, randomness, constant-time compare, bounded buffers,
 * files. Functions returning int give 0 or a negative errno. */
#include <stddef.h>
#include <stdint.h>

int64_t util_now_ms(void);  /* CLOCK_REALTIME in milliseconds */
int64_t util_mono_ms(void); /* CLOCK_MONOTONIC in milliseconds */
/* Formats "2006-01-02T15:04:05Z" (Kubernetes metav1.Time, second precision). */
int util_rfc3339(int64_t ms, char *out, size_t outsz);
/* Formats "2006-01-02T15:04:05.000Z" for logs. */
int util_rfc3339_ms(int64_t ms, char *out, size_t outsz);
/* Formats metav1.MicroTime "2006-01-02T15:04:05.000000Z". */
int util_rfc3339_us(int64_t ms, char *out, size_t outsz);
/* Parses "YYYY-MM-DDTHH:MM:SS[.frac]Z" into ms; -EINVAL on anything else. */
int util_parse_rfc3339(const char *s, int64_t *ret_ms);

int util_random(void *buf, size_t len);        /* getrandom, never blocks after boot */
int util_random_hex(char *out, size_t nbytes); /* writes 2*nbytes hex chars + NUL */
/* Constant-time equality of two byte strings of possibly different lengths: both are hashed
 * with SHA-256 first, so neither content nor length leaks through timing. */
int util_ct_equal(const void *a, size_t alen, const void *b, size_t blen);

/* Decodes standard base64 (newlines allowed) into a new NUL-terminated buffer. */
int util_base64_decode(const char *in, char **ret, size_t *ret_len)
	__attribute__((warn_unused_result));
/* Whether host is "localhost" or a loopback address (127/8, ::1, ::ffff:127.x). */
int util_host_is_loopback(const char *host);
/* Reads a whole file (O_CLOEXEC) up to max bytes; NUL-terminated; -EFBIG past max. */
int util_read_file(const char *path, size_t max, char **ret, size_t *ret_len)
	__attribute__((warn_unused_result));
/* Writes a file atomically (temp + rename) with the given mode. */
int util_write_file(const char *path, const void *data, size_t len, int mode);
/* Strips trailing whitespace/newlines in place. */
void util_rstrip(char *s);
/* Parses a decimal integer in [min, max]; -EINVAL / -ERANGE. */
int util_parse_long(const char *s, long min, long max, long *ret)
	__attribute__((warn_unused_result));

/* A growing byte buffer with a hard maximum (curl's dynbuf idea). Always NUL-terminated once
 * anything was appended. A failed append frees what was there and makes the buffer fail every
 * later append until buf_reset, buf_take or buf_free: partial text never survives, so a caller
 * may append several pieces and check only the last result (or buf_take's). */
struct buf {
	char *data;
	size_t len, cap, max;
	int err; /* the first failure (-ENOBUFS or -ENOMEM), 0 while usable */
};
void buf_init(struct buf *b, size_t max);
int buf_append(struct buf *b, const void *p, size_t n); /* -ENOBUFS past max, -ENOMEM */
int buf_puts(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hands the bytes over (NUL-terminated, "" when empty; *len may be NULL) and leaves the buffer
 * empty; NULL when an append failed or the copy of "" could not be made. */
char *buf_take(struct buf *b, size_t *len) __attribute__((warn_unused_result));
void buf_reset(struct buf *b); /* len = 0, keeps memory */
void buf_free(struct buf *b);
/* Removes the first n bytes. */
void buf_consume(struct buf *b, size_t n);
#define _cleanup_buf_ __attribute__((cleanup(buf_free)))

#define UTIL_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static inline void util_freep(void *p)
{
	extern void free(void *);
	free(*(void **)p);
}
#define _cleanup_free_ __attribute__((cleanup(util_freep)))
/* Closes an fd that is still >= 0 when the variable goes out of scope. */
void util_closep(int *fd);
#define _cleanup_close_ __attribute__((cleanup(util_closep)))

/* Removes everything below the directory dfd, never following a symlink; subdirectories a
 * task made unreadable are chmod'ed first. 0 or the first negative errno (it goes on). */
int util_rm_contents(int dfd);
