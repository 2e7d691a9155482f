/* SSRF policy: address classification and the allow decision. See ssrf.h and docs/security.md. */
#include "ssrf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

static const char *const ssrf_names[] = {
	[SSRF_PUBLIC] = "public",
	[SSRF_THIS_NETWORK] = "\"this network\" (0.0.0.0/8)",
	[SSRF_UNSPECIFIED] = "unspecified",
	[SSRF_LOOPBACK] = "loopback",
	[SSRF_PRIVATE] = "private (RFC 1918)",
	[SSRF_CGNAT] = "carrier-grade NAT (100.64.0.0/10)",
	[SSRF_LINK_LOCAL] = "link-local (cloud metadata lives here)",
	[SSRF_ULA] = "unique local (fc00::/7)",
	[SSRF_SITE_LOCAL] = "site-local (fec0::/10)",
	[SSRF_MULTICAST] = "multicast",
	[SSRF_BROADCAST] = "broadcast",
	[SSRF_DOCUMENTATION] = "reserved for documentation",
	[SSRF_BENCHMARKING] = "reserved for benchmarking",
	[SSRF_RESERVED] = "reserved (not global unicast)",
};

const char *ssrf_class_name(enum ssrf_class c)
{
	return (unsigned)c < sizeof(ssrf_names) / sizeof(ssrf_names[0]) && ssrf_names[c]
		       ? ssrf_names[c]
		       : "unknown";
}

struct ssrf_range {
	uint8_t a[16];
	unsigned bits;
	enum ssrf_class cls;
};

/* IANA IPv4 special-purpose registry, the parts that are not globally reachable, plus the
 * private, shared and multicast blocks. The first match wins. */
static const struct ssrf_range ssrf_v4[] = {
	{ { 0, 0, 0, 0 }, 8, SSRF_THIS_NETWORK },
	{ { 10, 0, 0, 0 }, 8, SSRF_PRIVATE },
	{ { 100, 64, 0, 0 }, 10, SSRF_CGNAT },
	{ { 127, 0, 0, 0 }, 8, SSRF_LOOPBACK },
	{ { 169, 254, 0, 0 }, 16, SSRF_LINK_LOCAL },
	{ { 172, 16, 0, 0 }, 12, SSRF_PRIVATE },
	{ { 192, 0, 0, 0 }, 24, SSRF_RESERVED },      /* IETF protocol assignments */
	{ { 192, 0, 2, 0 }, 24, SSRF_DOCUMENTATION }, /* TEST-NET-1 */
	{ { 192, 88, 99, 0 }, 24, SSRF_RESERVED },    /* 6to4 relay anycast (deprecated) */
	{ { 192, 168, 0, 0 }, 16, SSRF_PRIVATE },
	{ { 198, 18, 0, 0 }, 15, SSRF_BENCHMARKING },
	{ { 198, 51, 100, 0 }, 24, SSRF_DOCUMENTATION }, /* TEST-NET-2 */
	{ { 203, 0, 113, 0 }, 24, SSRF_DOCUMENTATION },  /* TEST-NET-3 */
	{ { 224, 0, 0, 0 }, 4, SSRF_MULTICAST },
	{ { 255, 255, 255, 255 }, 32, SSRF_BROADCAST },
	{ { 240, 0, 0, 0 }, 4, SSRF_RESERVED },
};

/* IPv6 ranges checked after the IPv4-embedding forms. Anything outside 2000::/3 that is not
 * listed is reserved too. */
static const struct ssrf_range ssrf_v6[] = {
	{ { 0 }, 128, SSRF_UNSPECIFIED },
	{ { [15] = 1 }, 128, SSRF_LOOPBACK },
	{ { 0x01, 0x00 }, 64, SSRF_RESERVED },                             /* 100::/64 discard */
	{ { 0x20, 0x01, 0x00, 0x02, 0x00, 0x00 }, 48, SSRF_BENCHMARKING }, /* 2001:2::/48 */
	{ { 0x20, 0x01, 0x0d, 0xb8 }, 32, SSRF_DOCUMENTATION },            /* 2001:db8::/32 */
	{ { 0x20, 0x01, 0x00, 0x00 }, 23, SSRF_RESERVED }, /* IETF: Teredo, ORCHID, ... */
	{ { 0x3f, 0xff }, 20, SSRF_DOCUMENTATION },        /* 3fff::/20 */
	{ { 0xfc }, 7, SSRF_ULA },
	{ { 0xfe, 0x80 }, 10, SSRF_LINK_LOCAL },
	{ { 0xfe, 0xc0 }, 10, SSRF_SITE_LOCAL },
	{ { 0xff }, 8, SSRF_MULTICAST },
};

static int ssrf_prefix_eq(const uint8_t *a, const uint8_t *b, unsigned bits)
{
	unsigned full = bits / 8, rest = bits % 8;
	if (memcmp(a, b, full) != 0)
		return 0;
	if (rest == 0)
		return 1;
	return ((a[full] ^ b[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

static enum ssrf_class ssrf_classify_v4(const uint8_t *a)
{
	for (size_t i = 0; i < sizeof(ssrf_v4) / sizeof(ssrf_v4[0]); i++)
		if (ssrf_prefix_eq(a, ssrf_v4[i].a, ssrf_v4[i].bits))
			return ssrf_v4[i].cls;
	return SSRF_PUBLIC;
}

enum ssrf_class ssrf_classify(const struct ssrf_addr *a, struct ssrf_addr *embedded)
{
	static const uint8_t mapped[12] = { [10] = 0xff, [11] = 0xff };
	static const uint8_t translated[12] = { [8] = 0xff, [9] = 0xff }; /* ::ffff:0:0:0/96 */
	static const uint8_t nat64[12] = { 0x00, 0x64, 0xff, 0x9b };      /* 64:ff9b::/96 */
	static const uint8_t zero[12] = { 0 };
	const uint8_t *v4 = NULL;
	enum ssrf_class c;
	int public_ok = 0;

	if (embedded)
		memset(embedded, 0, sizeof(*embedded));
	if (a->family == AF_INET)
		return ssrf_classify_v4(a->a);
	if (a->family != AF_INET6)
		return SSRF_RESERVED;

	/* The forms that carry an IPv4 address: the kernel (mapped), a translator (NAT64, SIIT) or
	 * a 6to4 relay would deliver the packet to that IPv4 address. */
	if (memcmp(a->a, mapped, 12) == 0 || memcmp(a->a, nat64, 12) == 0) {
		v4 = a->a + 12;
		public_ok = 1;
	} else if (memcmp(a->a, translated, 12) == 0) {
		v4 = a->a + 12;
	} else if (a->a[0] == 0x20 && a->a[1] == 0x02) { /* 2002:AABB:CCDD::/48 */
		v4 = a->a + 2;
		public_ok = 1;
	} else if (memcmp(a->a, zero, 12) == 0 &&
		   !(a->a[12] == 0 && a->a[13] == 0 && a->a[14] == 0 && a->a[15] <= 1)) {
		v4 = a->a + 12; /* ::a.b.c.d, IPv4-compatible (deprecated) */
	}
	if (v4) {
		if (embedded) {
			embedded->family = AF_INET;
			memcpy(embedded->a, v4, 4);
		}
		c = ssrf_classify_v4(v4);
		if (c != SSRF_PUBLIC)
			return c;
		return public_ok ? SSRF_PUBLIC : SSRF_RESERVED;
	}
	for (size_t i = 0; i < sizeof(ssrf_v6) / sizeof(ssrf_v6[0]); i++)
		if (ssrf_prefix_eq(a->a, ssrf_v6[i].a, ssrf_v6[i].bits))
			return ssrf_v6[i].cls;
	/* Global unicast is 2000::/3; everything else is unassigned or special. */
	return (a->a[0] & 0xe0) == 0x20 ? SSRF_PUBLIC : SSRF_RESERVED;
}

/* ---- parsing ------------------------------------------------------------------------------- */

static int ssrf_digit(char c, unsigned base)
{
	int d;
	if (c >= '0' && c <= '9')
		d = c - '0';
	else if (c >= 'a' && c <= 'f')
		d = c - 'a' + 10;
	else if (c >= 'A' && c <= 'F')
		d = c - 'A' + 10;
	else
		return -1;
	return (unsigned)d < base ? d : -1;
}

/* inet_aton(3) numbers-and-dots, without its tolerance for trailing garbage. */
static int ssrf_parse_v4(const char *s, uint8_t out[4])
{
	uint64_t part[4];
	unsigned n = 0;
	const char *p = s;

	for (;;) {
		uint64_t v = 0;
		unsigned base = 10, digits = 0;
		int d;

		if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
			base = 16;
			p += 2;
		} else if (p[0] == '0' && p[1] >= '0' && p[1] <= '9') {
			base = 8;
			p++;
		}
		while ((d = ssrf_digit(*p, base)) >= 0) {
			v = v * base + (unsigned)d;
			if (v > 0xffffffffu)
				return -EINVAL;
			digits++;
			p++;
		}
		if (digits == 0 && base != 8) /* base 8 consumed a leading 0, itself a digit */
			return -EINVAL;
		part[n++] = v;
		if (*p == '\0')
			break;
		if (*p != '.' || n == 4)
			return -EINVAL;
		p++;
	}
	switch (n) {
	case 1:
		break;
	case 2:
		if (part[0] > 0xff || part[1] > 0xffffff)
			return -EINVAL;
		part[0] = part[0] << 24 | part[1];
		break;
	case 3:
		if (part[0] > 0xff || part[1] > 0xff || part[2] > 0xffff)
			return -EINVAL;
		part[0] = part[0] << 24 | part[1] << 16 | part[2];
		break;
	default:
		for (unsigned i = 0; i < 4; i++)
			if (part[i] > 0xff)
				return -EINVAL;
		part[0] = part[0] << 24 | part[1] << 16 | part[2] << 8 | part[3];
		break;
	}
	out[0] = (uint8_t)(part[0] >> 24);
	out[1] = (uint8_t)(part[0] >> 16);
	out[2] = (uint8_t)(part[0] >> 8);
	out[3] = (uint8_t)part[0];
	return 0;
}

int ssrf_parse_ip(const char *s, struct ssrf_addr *ret)
{
	char buf[INET6_ADDRSTRLEN + 2];
	size_t n = strlen(s);

	memset(ret, 0, sizeof(*ret));
	if (n == 0 || n >= sizeof(buf))
		return -EINVAL;
	if (s[0] == '[') {
		if (n < 3 || s[n - 1] != ']')
			return -EINVAL;
		memcpy(buf, s + 1, n - 2);
		buf[n - 2] = '\0';
	} else {
		memcpy(buf, s, n + 1);
	}
	if (strchr(buf, ':')) {
		if (strchr(buf, '%')) /* zone ids name an interface, not a destination */
			return -EINVAL;
		if (inet_pton(AF_INET6, buf, ret->a) != 1)
			return -EINVAL;
		ret->family = AF_INET6;
		return 0;
	}
	if (s[0] == '[' || ssrf_parse_v4(buf, ret->a) < 0)
		return -EINVAL;
	ret->family = AF_INET;
	return 0;
}

static void ssrf_mask(struct ssrf_addr *a, unsigned bits)
{
	unsigned len = a->family == AF_INET ? 4 : 16;
	for (unsigned i = 0; i < len; i++) {
		unsigned lo = i * 8;
		if (bits <= lo)
			a->a[i] = 0;
		else if (bits < lo + 8)
			a->a[i] &= (uint8_t)(0xff << (lo + 8 - bits));
	}
}

int ssrf_parse_cidr(const char *s, struct ssrf_cidr *ret)
{
	char addr[INET6_ADDRSTRLEN + 2];
	const char *slash = strchr(s, '/');
	size_t alen = slash ? (size_t)(slash - s) : strlen(s);
	unsigned max, bits = 0;

	memset(ret, 0, sizeof(*ret));
	if (alen == 0 || alen >= sizeof(addr))
		return -EINVAL;
	memcpy(addr, s, alen);
	addr[alen] = '\0';
	if (ssrf_parse_ip(addr, &ret->addr) < 0 || addr[0] == '[')
		return -EINVAL;
	max = ret->addr.family == AF_INET ? 32 : 128;
	if (!slash) {
		bits = max;
	} else {
		const char *p = slash + 1;
		if (*p == '\0' || strlen(p) > 3)
			return -EINVAL;
		for (; *p; p++) {
			if (*p < '0' || *p > '9')
				return -EINVAL;
			bits = bits * 10 + (unsigned)(*p - '0');
		}
		if (bits > max)
			return -EINVAL;
	}
	ret->bits = bits;
	ssrf_mask(&ret->addr, bits);
	return 0;
}

int ssrf_cidr_contains(const struct ssrf_cidr *c, const struct ssrf_addr *a)
{
	return c->addr.family == a->family && ssrf_prefix_eq(a->a, c->addr.a, c->bits);
}

void ssrf_format(const struct ssrf_addr *a, char *out, size_t outsz)
{
	char tmp[INET6_ADDRSTRLEN];
	if (!inet_ntop(a->family, a->a, tmp, sizeof(tmp)))
		snprintf(tmp, sizeof(tmp), "?");
	snprintf(out, outsz, "%s", tmp);
}

/* ---- policy -------------------------------------------------------------------------------- */

void ssrf_policy_init(struct ssrf_policy *p)
{
	p->allow_private = 0;
	p->ncidrs = 0;
}

int ssrf_policy_allow(struct ssrf_policy *p, const char *cidr)
{
	struct ssrf_cidr c;
	if (ssrf_parse_cidr(cidr, &c) < 0)
		return -EINVAL;
	if (p->ncidrs >= SSRF_MAX_CIDRS)
		return -E2BIG;
	p->cidrs[p->ncidrs++] = c;
	return 0;
}

int ssrf_check(const struct ssrf_policy *p, const struct ssrf_addr *a, char *why, size_t whysz)
{
	struct ssrf_addr emb;
	enum ssrf_class c = ssrf_classify(a, &emb);
	char s[SSRF_ADDR_STRLEN], e[SSRF_ADDR_STRLEN];

	if (c == SSRF_PUBLIC || (p && p->allow_private))
		return 0;
	for (size_t i = 0; p && i < p->ncidrs; i++)
		if (ssrf_cidr_contains(&p->cidrs[i], a) ||
		    (emb.family && ssrf_cidr_contains(&p->cidrs[i], &emb)))
			return 0;
	if (why && whysz) {
		ssrf_format(a, s, sizeof(s));
		if (emb.family) {
			ssrf_format(&emb, e, sizeof(e));
			snprintf(why, whysz, "%s (IPv4 %s embedded in IPv6) is %s", s, e,
				 ssrf_class_name(c));
		} else {
			snprintf(why, whysz, "%s is %s", s, ssrf_class_name(c));
		}
	}
	return -EACCES;
}

int ssrf_from_sockaddr(const struct sockaddr *sa, size_t salen, struct ssrf_addr *ret)
{
	memset(ret, 0, sizeof(*ret));
	if (sa && sa->sa_family == AF_INET && salen >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
		ret->family = AF_INET;
		memcpy(ret->a, &in->sin_addr, 4);
		return 0;
	}
	if (sa && sa->sa_family == AF_INET6 && salen >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
		ret->family = AF_INET6;
		memcpy(ret->a, &in6->sin6_addr, 16);
		return 0;
	}
	return -EAFNOSUPPORT;
}

int ssrf_check_sockaddr(const struct ssrf_policy *p, const struct sockaddr *sa, size_t salen,
			char *why, size_t whysz)
{
	struct ssrf_addr a;
	if (ssrf_from_sockaddr(sa, salen, &a) < 0) {
		if (why && whysz)
			snprintf(why, whysz, "address family %d is not IPv4 or IPv6",
				 sa ? sa->sa_family : -1);
		return -EACCES;
	}
	return ssrf_check(p, &a, why, whysz);
}
