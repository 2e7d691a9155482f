/* Kubernetes resource quantities: exact, saturating, bounded (quantity.h). */
#include "quantity.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define QTY_MANT_MAX UINT64_C(100000000000000000) /* 10^17: more digits only round up */
#define QTY_EXP_MAX 1000                          /* |exponent| beyond this saturates anyway */

typedef unsigned __int128 u128;

/* The suffix: *e10 and *e2 get its powers of ten and two. -EINVAL when it is none. */
static int qty_suffix(const char *s, size_t n, int *e10, int *e2)
{
	static const struct {
		const char *sfx;
		int e10, e2;
	} tab[] = {
		{ "Ki", 0, 10 }, { "Mi", 0, 20 }, { "Gi", 0, 30 }, { "Ti", 0, 40 }, { "Pi", 0, 50 },
		{ "Ei", 0, 60 }, { "n", -9, 0 },  { "u", -6, 0 },  { "m", -3, 0 },  { "k", 3, 0 },
		{ "M", 6, 0 },   { "G", 9, 0 },   { "T", 12, 0 },  { "P", 15, 0 },  { "E", 18, 0 },
	};
	int neg = 0, exp = 0, digits = 0;
	size_t i = 1;

	*e10 = *e2 = 0;
	if (n == 0)
		return 0;
	for (size_t k = 0; k < sizeof(tab) / sizeof(tab[0]); k++)
		if (strlen(tab[k].sfx) == n && memcmp(tab[k].sfx, s, n) == 0) {
			*e10 = tab[k].e10;
			*e2 = tab[k].e2;
			return 0;
		}
	/* A decimal exponent: e or E, an optional sign, digits ("E" alone is exa, above). */
	if (s[0] != 'e' && s[0] != 'E')
		return -EINVAL;
	if (i < n && (s[i] == '+' || s[i] == '-'))
		neg = s[i++] == '-';
	for (; i < n; i++, digits++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		if (exp <= QTY_EXP_MAX)
			exp = exp * 10 + (s[i] - '0');
	}
	if (digits == 0)
		return -EINVAL;
	if (exp > QTY_EXP_MAX)
		exp = QTY_EXP_MAX + 1;
	*e10 = neg ? -exp : exp;
	return 0;
}

int qty_parse(const char *s, size_t len, int scale, int64_t max, int64_t *ret)
{
	uint64_t m = 0;
	int e10, e2, digits = 0, dot = 0, inexact = 0, rem = 0, shift = 0;
	size_t i = 0;
	u128 v;

	if (!s || len == 0 || len > QTY_MAX_LEN || scale < 0 || scale > 9 || max < 0)
		return -EINVAL;
	if (s[0] == '+')
		i++;
	/* The mantissa: digits kept up to 10^17, later ones only shift the exponent (before the
	 * point) and make the result round up when they are not zero. */
	for (; i < len; i++) {
		char c = s[i];
		if (c == '.') {
			if (dot)
				return -EINVAL;
			dot = 1;
			continue;
		}
		if (c < '0' || c > '9')
			break;
		digits++;
		if (m < QTY_MANT_MAX) {
			m = m * 10 + (uint64_t)(c - '0');
			shift -= dot;
		} else {
			inexact |= c != '0';
			shift += !dot;
		}
	}
	if (digits == 0 || qty_suffix(s + i, len - i, &e10, &e2) < 0)
		return -EINVAL;
	if (inexact)
		m++; /* an upper bound of the true mantissa: rounding stays upward */
	e10 += shift + scale;
	v = (u128)m << e2; /* m <= 10^18 < 2^60, e2 <= 60: fits in 128 bits */
	if (e10 >= 0) {
		for (int k = 0; k < e10 && v != 0 && v <= (u128)max; k++)
			v *= 10;
	} else {
		for (int k = 0; k < -e10 && v != 0; k++) {
			rem |= v % 10 != 0;
			v /= 10;
		}
		v += rem;
	}
	if (v > (u128)max) {
		*ret = max;
		return 1;
	}
	*ret = (int64_t)v;
	return 0;
}

int qty_format(int64_t v, int milli, char *out, size_t outsz)
{
	static const char *const bin[] = { "Ei", "Pi", "Ti", "Gi", "Mi", "Ki" };

	if (milli)
		return v % 1000 == 0 ? snprintf(out, outsz, "%lld", (long long)(v / 1000))
				     : snprintf(out, outsz, "%lldm", (long long)v);
	for (int k = 0; k < 6 && v > 0; k++) {
		int64_t unit = INT64_C(1) << (10 * (6 - k));
		if (v % unit == 0)
			return snprintf(out, outsz, "%lld%s", (long long)(v / unit), bin[k]);
	}
	return snprintf(out, outsz, "%lld", (long long)v);
}
