#include "utf8.h"
#include "util.h"

#include <string.h>

size_t utf8_seq(const unsigned char *p, size_t len)
{
	unsigned c, need, cp;

	if (len == 0)
		return 0;
	c = p[0];
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

bool utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	for (size_t i = 0, n; i < len; i += n)
		if (!(n = utf8_seq(p + i, len - i)))
			return false;
	return true;
}

size_t utf8_count(const char *s, size_t len)
{
	size_t cnt = 0;
	for (size_t i = 0; i < len; i++)
		if (((unsigned char)s[i] & 0xc0) != 0x80)
			cnt++;
	return cnt;
}

size_t utf8_put(uint32_t cp, char out[4])
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp >= 0xd800 && cp <= 0xdfff)
		return 0;
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	if (cp > 0x10ffff)
		return 0;
	out[0] = (char)(0xf0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

int utf8_sanitize(const char *in, size_t len, struct buf *out)
{
	static const char repl[] = "\xef\xbf\xbd";
	const unsigned char *p = (const unsigned char *)in;
	size_t i = 0, run = 0;
	int r = 0;

	while (i < len && r == 0) {
		size_t n = p[i] == 0 ? 0 : utf8_seq(p + i, len - i);
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

size_t utf8_complete(const char *s, size_t len)
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

const char *utf8_tail(const char *s, size_t max)
{
	size_t n = strlen(s);
	const char *p;
	if (n <= max)
		return s;
	p = s + (n - max);
	while (*p && ((unsigned char)*p & 0xc0) == 0x80)
		p++;
	return p;
}
