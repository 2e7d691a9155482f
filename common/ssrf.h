#pragma once
/* SSRF policy: which destination addresses an outbound HTTP request may connect to.
 *
 * The runner applies it to the address a socket is about to connect to (after DNS), so a name
 * that resolves to a public address at one moment and to 127.0.0.1 the next (DNS rebinding)
 * cannot slip through. Blocked by default: everything that is not global unicast — loopback,
 * RFC 1918, link-local (cloud metadata), CGNAT, 0.0.0.0/8, multicast, broadcast, documentation,
 * benchmarking and other reserved ranges; IPv6 unspecified, loopback, ULA, link-local,
 * site-local, multicast, documentation, discard, Teredo/ORCHID, and IPv4 embedded in IPv6
 * (mapped, compatible, NAT64, 6to4) is judged by the IPv4 address it embeds. See
 * docs/security.md.
 *
 * Exceptions come only from a TaskQueue's policy: allowPrivateNetworks (every non-public
 * destination) and allowedCIDRs. Pure functions; no allocation. */
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define SSRF_MAX_CIDRS 256
#define SSRF_ADDR_STRLEN 64 /* enough for any formatted address */

enum ssrf_class {
	SSRF_PUBLIC,
	SSRF_THIS_NETWORK,  /* 0.0.0.0/8 ("this host" on Linux) */
	SSRF_UNSPECIFIED,   /* :: */
	SSRF_LOOPBACK,      /* 127.0.0.0/8, ::1 */
	SSRF_PRIVATE,       /* 10/8, 172.16/12, 192.168/16 (RFC 1918) */
	SSRF_CGNAT,         /* 100.64.0.0/10 (RFC 6598) */
	SSRF_LINK_LOCAL,    /* 169.254/16 (cloud metadata), fe80::/10 */
	SSRF_ULA,           /* fc00::/7 */
	SSRF_SITE_LOCAL,    /* fec0::/10 (deprecated) */
	SSRF_MULTICAST,     /* 224/4, ff00::/8 */
	SSRF_BROADCAST,     /* 255.255.255.255 */
	SSRF_DOCUMENTATION, /* 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32, 3fff::/20 */
	SSRF_BENCHMARKING,  /* 198.18/15, 2001:2::/48 */
	SSRF_RESERVED,      /* every other special-purpose or non-global range */
};

struct ssrf_addr {
	int family;    /* AF_INET or AF_INET6 */
	uint8_t a[16]; /* network order; IPv4 in a[0..3] */
};

struct ssrf_cidr {
	struct ssrf_addr addr; /* host bits cleared */
	unsigned bits;
};

struct ssrf_policy {
	int allow_private; /* every non-public class is allowed */
	size_t ncidrs;
	struct ssrf_cidr cidrs[SSRF_MAX_CIDRS]; /* allowed even though their class is blocked */
};

const char *ssrf_class_name(enum ssrf_class c);

/* The class of an address. IPv6 forms that embed an IPv4 address (::ffff:a.b.c.d,
 * ::a.b.c.d, 64:ff9b::a.b.c.d, 2002:AABB:CCDD::) take the class of the embedded address unless
 * that is public; *embedded (may be NULL) receives the embedded IPv4 address when there is one
 * (family 0 otherwise). */
enum ssrf_class ssrf_classify(const struct ssrf_addr *a, struct ssrf_addr *embedded);

/* Parses an IP literal: IPv6 (optionally in brackets; zone ids are refused) or IPv4 with the
 * inet_aton(3) spellings every resolver accepts — 1 to 4 parts, each decimal, octal (leading 0)
 * or hex (0x) — so "2130706433", "0x7f000001", "0177.1" and "127.1" are all 127.0.0.1.
 * Returns 0 or -EINVAL. */
int ssrf_parse_ip(const char *s, struct ssrf_addr *ret);
/* Parses "ADDR/BITS" (or a bare address: /32 or /128); host bits are cleared. 0 or -EINVAL. */
int ssrf_parse_cidr(const char *s, struct ssrf_cidr *ret);
int ssrf_cidr_contains(const struct ssrf_cidr *c, const struct ssrf_addr *a);
/* Formats with inet_ntop into out (at least SSRF_ADDR_STRLEN bytes is always enough). */
void ssrf_format(const struct ssrf_addr *a, char *out, size_t outsz);

/* Initialises the default policy (nothing private allowed, no CIDRs). */
void ssrf_policy_init(struct ssrf_policy *p);
/* Adds an allowed CIDR: 0, -EINVAL (syntax) or -E2BIG (more than SSRF_MAX_CIDRS). */
int ssrf_policy_allow(struct ssrf_policy *p, const char *cidr);

/* Decides whether a connection to a is allowed. Returns 0, or -EACCES with a reason such as
 * "127.0.0.1 is loopback" in why (never NULL-terminated past whysz). */
int ssrf_check(const struct ssrf_policy *p, const struct ssrf_addr *a, char *why, size_t whysz);
/* Same for a socket address; families other than AF_INET/AF_INET6 are refused. */
int ssrf_check_sockaddr(const struct ssrf_policy *p, const struct sockaddr *sa, size_t salen,
			char *why, size_t whysz);
/* Converts a sockaddr_in/sockaddr_in6 into an ssrf_addr: 0 or -EAFNOSUPPORT. */
int ssrf_from_sockaddr(const struct sockaddr *sa, size_t salen, struct ssrf_addr *ret);
