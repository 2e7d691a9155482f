#include "util.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int64_t util_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t util_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int util_fmt_time(int64_t ms, char *out, size_t outsz, int digits)
{
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;
	char base[32];
	int n;

	if (!gmtime_r(&secs, &tm) || strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
		return -EINVAL;
	if (digits == 0)
		n = snprintf(out, outsz, "%sZ", base);
	else if (digits == 3)
		n = snprintf(out, outsz, "%s.%03dZ", base, (int)(ms % 1000));
	else
		n = snprintf(out, outsz, "%s.%03d000Z", base, (int)(ms % 1000));
	return n < 0 || (size_t)n >= outsz ? -ENOBUFS : 0;
}

int util_rfc3339(int64_t ms, char *out, size_t outsz) { return util_fmt_time(ms, out, outsz, 0); }
int util_rfc3339_ms(int64_t ms, char *out, size_t outsz)
{
	return util_fmt_time(ms, out, outsz, 3);
}
int util_rfc3339_us(int64_t ms, char *out, size_t outsz)
{
	return util_fmt_time(ms, out, outsz, 6);
}

int util_parse_rfc3339(const char *s, int64_t *ret_ms)
{
	struct tm tm = { 0 };
	const char *p;
	int64_t frac = 0, scale = 1000;

	if (!s)
		return -EINVAL;
	p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!p)
		return -EINVAL;
	if (*p == '.') {
		for (p++; *p >= '0' && *p <= '9'; p++) {
			if (scale > 1) {
				scale /= 10;
				frac += (*p - '0') * scale;
			}
		}
	}
	if (strcmp(p, "Z") != 0)
		return -EINVAL;
	*ret_ms = (int64_t)timegm(&tm) * 1000 + frac;
	return 0;
}

int util_random(void *buf, size_t len)
{
	unsigned char *p = buf;
	while (len > 0) {
		ssize_t n = getrandom(p, len, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int util_random_hex(char *out, size_t nbytes)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char raw[64];
	int r;

	if (nbytes > sizeof(raw))
		return -EINVAL;
	r = util_random(raw, nbytes);
	if (r < 0)
		return r;
	for (size_t i = 0; i < nbytes; i++) {
		out[2 * i] = hex[raw[i] >> 4];
		out[2 * i + 1] = hex[raw[i] & 15];
	}
	out[2 * nbytes] = '\0';
	OPENSSL_cleanse(raw, sizeof(raw));
	return 0;
}

int util_ct_equal(const void *a, size_t alen, const void *b, size_t blen)
{
	unsigned char da[SHA256_DIGEST_LENGTH], db[SHA256_DIGEST_LENGTH];
	int eq;

	SHA256(a, alen, da);
	SHA256(b, blen, db);
	eq = CRYPTO_memcmp(da, db, sizeof(da)) == 0;
	return eq;
}

int util_base64_decode(const char *in, char **ret, size_t *ret_len)
{
	size_t n = strlen(in);
	unsigned char *out = malloc(n / 4 * 3 + 4);
	EVP_ENCODE_CTX *ctx = EVP_ENCODE_CTX_new();
	int outl = 0, fin = 0;

	if (!out || !ctx) {
		free(out);
		EVP_ENCODE_CTX_free(ctx);
		return -ENOMEM;
	}
	EVP_DecodeInit(ctx);
	if (n > INT_MAX ||
	    EVP_DecodeUpdate(ctx, out, &outl, (const unsigned char *)in, (int)n) < 0 ||
	    EVP_DecodeFinal(ctx, out + outl, &fin) < 0) {
		free(out);
		EVP_ENCODE_CTX_free(ctx);
		return -EINVAL;
	}
	EVP_ENCODE_CTX_free(ctx);
	out[outl + fin] = '\0';
	*ret = (char *)out;
	if (ret_len)
		*ret_len = (size_t)(outl + fin);
	return 0;
}

int util_read_file(const char *path, size_t max, char **ret, size_t *ret_len)
{
	_cleanup_buf_ struct buf b;
	_cleanup_close_ int fd = -1;
	char chunk[4096];

	buf_init(&b, max);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return -errno;
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));
		int r;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		r = buf_append(&b, chunk, (size_t)n);
		if (r < 0)
			return r == -ENOBUFS ? -EFBIG : r;
	}
	if (ret_len)
		*ret_len = b.len;
	*ret = buf_take(&b, NULL);
	return *ret ? 0 : -ENOMEM;
}

int util_write_file(const char *path, const void *data, size_t len, int mode)
{
	char tmp[PATH_MAX];
	const char *p = data;
	int fd, n;

	n = snprintf(tmp, sizeof(tmp), "%s.tmpXXXXXX", path);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return -ENAMETOOLONG;
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fchmod(fd, (mode_t)mode) < 0)
		goto fail;
	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		p += w;
		len -= (size_t)w;
	}
	if (close(fd) < 0) {
		fd = -1;
		goto fail;
	}
	if (rename(tmp, path) < 0) {
		fd = -1;
		goto fail;
	}
	return 0;
fail:
	n = -errno;
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return n;
}

void util_rstrip(char *s)
{
	size_t n = strlen(s);
	while (n > 0 &&
	       (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = '\0';
}

int util_parse_long(const char *s, long min, long max, long *ret)
{
	char *end;
	long v;

	if (!s || !*s)
		return -EINVAL;
	errno = 0;
	v = strtol(s, &end, 10);
	if (*end != '\0')
		return -EINVAL;
	if (errno == ERANGE || v < min || v > max)
		return -ERANGE;
	*ret = v;
	return 0;
}

void buf_init(struct buf *b, size_t max)
{
	b->data = NULL;
	b->len = b->cap = 0;
	b->max = max;
	b->err = 0;
}

/* Fails closed: no partial content outlives an error. */
static int buf_fail(struct buf *b, int err)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
	b->err = err;
	return err;
}

static int buf_reserve(struct buf *b, size_t n)
{
	size_t ncap;
	char *nd;

	if (b->err)
		return b->err;
	if (n > b->max || b->len > b->max - n)
		return buf_fail(b, -ENOBUFS);
	if (b->len + n + 1 <= b->cap)
		return 0;
	ncap = b->cap ? b->cap : 256;
	while (ncap < b->len + n + 1)
		ncap *= 2;
	if (ncap > b->max + 1)
		ncap = b->max + 1;
	nd = realloc(b->data, ncap);
	if (!nd)
		return buf_fail(b, -ENOMEM);
	b->data = nd;
	b->cap = ncap;
	return 0;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
	int r = buf_reserve(b, n);
	if (r < 0)
		return r;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int buf_puts(struct buf *b, const char *s) { return buf_append(b, s, strlen(s)); }

int buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n, r;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return buf_fail(b, -EINVAL);
	r = buf_reserve(b, (size_t)n);
	if (r < 0)
		return r;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

char *buf_take(struct buf *b, size_t *len)
{
	char *d = b->err ? NULL : b->data ? b->data : strdup("");
	size_t n = d ? b->len : 0;

	if (d != b->data)
		free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
	b->err = 0;
	if (len)
		*len = n;
	return d;
}

void buf_reset(struct buf *b)
{
	b->len = 0;
	b->err = 0;
	if (b->data)
		b->data[0] = '\0';
}

void buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
	b->err = 0;
}

void buf_consume(struct buf *b, size_t n)
{
	if (n >= b->len) {
		buf_reset(b);
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
	b->data[b->len] = '\0';
}

void util_closep(int *fd)
{
	if (*fd >= 0)
		close(*fd);
}

int util_host_is_loopback(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;

	if (strcmp(host, "localhost") == 0)
		return 1;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6) ||
		       (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
	return 0;
}

#define UTIL_RM_DEPTH 256

static int util_rm_below(int dfd, int depth)
{
	int fd, r = 0;
	DIR *d;
	struct dirent *e;

	if (depth > UTIL_RM_DEPTH)
		return -ELOOP;
	fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while ((e = readdir(d))) {
		int sub;
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (e->d_type != DT_DIR && unlinkat(dfd, e->d_name, 0) == 0)
			continue;
		if (e->d_type != DT_DIR && e->d_type != DT_UNKNOWN && errno != EISDIR) {
			if (r == 0)
				r = -errno;
			continue;
		}
		sub = openat(dfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub < 0 && errno == EACCES && fchmodat(dfd, e->d_name, 0700, 0) == 0)
			sub = openat(dfd, e->d_name,
				     O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub < 0) {
			if (unlinkat(dfd, e->d_name, 0) < 0 && r == 0)
				r = -errno;
			continue;
		}
		(void)fchmod(sub, 0700);
		int rr = util_rm_below(sub, depth + 1);
		close(sub);
		if (rr < 0 && r == 0)
			r = rr;
		if (unlinkat(dfd, e->d_name, AT_REMOVEDIR) < 0 && r == 0)
			r = -errno;
	}
	closedir(d);
	return r;
}

int util_rm_contents(int dfd) { return util_rm_below(dfd, 0); }
