#include "jscan.h"
#include "utf8.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#define JSCAN_KEY_MAX 256 /* longer member names are skipped, never matched */

static size_t jscan_ws(const char *buf, size_t len, size_t pos)
{
	while (pos < len &&
	       (buf[pos] == ' ' || buf[pos] == '\t' || buf[pos] == '\n' || buf[pos] == '\r'))
		pos++;
	return pos;
}

/* pos is at the opening quote; returns the offset just past the closing one, or 0. */
static size_t jscan_string_end(const char *buf, size_t len, size_t pos)
{
	for (pos++; pos < len; pos++) {
		if (buf[pos] == '\\')
			pos++;
		else if (buf[pos] == '"')
			return pos + 1;
	}
	return 0;
}

static int jscan_scalar_char(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       c == '-' || c == '+' || c == '.';
}

int jscan_skip(const char *buf, size_t len, size_t *pos)
{
	size_t p = jscan_ws(buf, len, *pos), depth = 0, start = p;

	if (p >= len)
		return -EBADMSG;
	if (buf[p] != '{' && buf[p] != '[' && buf[p] != '"') {
		while (p < len && jscan_scalar_char(buf[p]))
			p++;
		if (p == start)
			return -EBADMSG;
		*pos = p;
		return 0;
	}
	do {
		if (p >= len)
			return -EBADMSG;
		switch (buf[p]) {
		case '"':
			p = jscan_string_end(buf, len, p);
			if (!p)
				return -EBADMSG;
			continue;
		case '{':
		case '[':
			depth++;
			break;
		case '}':
		case ']':
			if (depth == 0)
				return -EBADMSG;
			depth--;
			break;
		default:
			break;
		}
		p++;
	} while (depth > 0);
	*pos = p;
	return 0;
}

static int jscan_hex4(const char *s, unsigned *ret)
{
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		char c = s[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -EBADMSG;
	}
	*ret = v;
	return 0;
}

int jscan_string(const char *buf, size_t vs, size_t ve, char *out, size_t outsz)
{
	size_t o = 0, p;
	int r = 0;

	if (outsz == 0)
		return -ENOBUFS;
	out[0] = '\0';
	if (ve < vs + 2 || buf[vs] != '"' || buf[ve - 1] != '"')
		return -EBADMSG;
	for (p = vs + 1; p < ve - 1 && r == 0;) {
		char tmp[4];
		size_t n = 1;
		unsigned char c = (unsigned char)buf[p];
		if (c < 0x20) {
			r = -EBADMSG;
			break;
		}
		if (c != '\\') {
			tmp[0] = (char)c;
			p++;
		} else {
			if (p + 1 >= ve - 1) {
				r = -EBADMSG;
				break;
			}
			switch (buf[p + 1]) {
			case '"':
				tmp[0] = '"';
				break;
			case '\\':
				tmp[0] = '\\';
				break;
			case '/':
				tmp[0] = '/';
				break;
			case 'b':
				tmp[0] = '\b';
				break;
			case 'f':
				tmp[0] = '\f';
				break;
			case 'n':
				tmp[0] = '\n';
				break;
			case 'r':
				tmp[0] = '\r';
				break;
			case 't':
				tmp[0] = '\t';
				break;
			case 'u': {
				unsigned cp, lo;
				if (p + 6 > ve - 1 || jscan_hex4(buf + p + 2, &cp) < 0) {
					r = -EBADMSG;
					break;
				}
				p += 4;
				if (cp >= 0xd800 && cp < 0xdc00) {
					if (p + 8 > ve - 1 || buf[p + 2] != '\\' ||
					    buf[p + 3] != 'u' || jscan_hex4(buf + p + 4, &lo) < 0 ||
					    lo < 0xdc00 || lo >= 0xe000) {
						r = -EBADMSG;
						break;
					}
					cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
					p += 6;
				} else if (cp >= 0xdc00 && cp < 0xe000) {
					r = -EBADMSG;
					break;
				}
				if (cp == 0) {
					r = -EILSEQ;
					break;
				}
				n = utf8_put(cp, tmp);
				break;
			}
			default:
				r = -EBADMSG;
				break;
			}
			p += 2;
		}
		if (r == 0 && o + n >= outsz)
			r = -ENOBUFS;
		if (r == 0) {
			memcpy(out + o, tmp, n);
			o += n;
		}
	}
	if (r < 0) {
		out[0] = '\0';
		return r;
	}
	out[o] = '\0';
	return 0;
}

int jscan_member_next(const char *buf, size_t len, size_t *pos, size_t *ks, size_t *ke, size_t *vs,
		      size_t *ve)
{
	size_t p = jscan_ws(buf, len, *pos);

	if (p >= len)
		return -EBADMSG;
	if (buf[p] == '}')
		return 0;
	if (buf[p] == '{') {
		p = jscan_ws(buf, len, p + 1);
		if (p < len && buf[p] == '}') {
			*pos = p;
			return 0;
		}
	} else if (buf[p] == ',') {
		p = jscan_ws(buf, len, p + 1);
	} else {
		return -EBADMSG;
	}
	if (p >= len || buf[p] != '"')
		return -EBADMSG; /* also a trailing comma */
	*ks = p;
	*ke = jscan_string_end(buf, len, p);
	if (!*ke)
		return -EBADMSG;
	p = jscan_ws(buf, len, *ke);
	if (p >= len || buf[p] != ':')
		return -EBADMSG;
	*vs = p = jscan_ws(buf, len, p + 1);
	if (jscan_skip(buf, len, &p) < 0)
		return -EBADMSG;
	*ve = p;
	p = jscan_ws(buf, len, p);
	if (p >= len || (buf[p] != ',' && buf[p] != '}'))
		return -EBADMSG;
	*pos = p;
	return 1;
}

int jscan_member(const char *buf, size_t len, size_t start, const char *key, size_t *vs, size_t *ve)
{
	size_t p = jscan_ws(buf, len, start), ks, ke, s, e;
	int r;

	if (p >= len || buf[p] != '{')
		return -EBADMSG;
	while ((r = jscan_member_next(buf, len, &p, &ks, &ke, &s, &e)) == 1) {
		char name[JSCAN_KEY_MAX];
		int kr = jscan_string(buf, ks, ke, name, sizeof(name));
		if (kr == -EBADMSG)
			return -EBADMSG;
		/* Names that did not decode (too long, a NUL) never equal a C-string key. */
		if (kr == 0 && strcmp(name, key) == 0) {
			*vs = s;
			*ve = e;
			return 0;
		}
	}
	return r == 0 ? -ENOENT : r;
}

int jscan_path(const char *buf, size_t len, size_t start, const char *const *path, size_t *vs,
	       size_t *ve)
{
	size_t s = jscan_ws(buf, len, start), e = len;
	for (; *path; path++) {
		int r = jscan_member(buf, e, s, *path, &s, &e);
		if (r < 0)
			return r;
	}
	*vs = s;
	*ve = e;
	return 0;
}

int jscan_next(const char *buf, size_t len, size_t *pos, size_t *vs, size_t *ve)
{
	size_t p = jscan_ws(buf, len, *pos);

	if (p >= len)
		return -EBADMSG;
	if (buf[p] == ']')
		return 0;
	if (buf[p] == '[') {
		p = jscan_ws(buf, len, p + 1);
		if (p < len && buf[p] == ']') {
			*pos = p;
			return 0;
		}
	} else if (buf[p] == ',') {
		p = jscan_ws(buf, len, p + 1);
	} else {
		return -EBADMSG;
	}
	*vs = p;
	if (jscan_skip(buf, len, &p) < 0)
		return -EBADMSG;
	*ve = p;
	p = jscan_ws(buf, len, p);
	if (p >= len || (buf[p] != ',' && buf[p] != ']'))
		return -EBADMSG;
	*pos = p;
	return 1;
}

size_t jscan_depth(const char *buf, size_t len, size_t limit)
{
	size_t depth = 0, max = 0;
	for (size_t p = 0; p < len; p++) {
		switch (buf[p]) {
		case '"': {
			size_t e = jscan_string_end(buf, len, p);
			if (!e)
				return max;
			p = e - 1;
			break;
		}
		case '{':
		case '[':
			if (++depth > max) {
				max = depth;
				if (max > limit)
					return limit + 1;
			}
			break;
		case '}':
		case ']':
			if (depth > 0)
				depth--;
			break;
		default:
			break;
		}
	}
	return max;
}
