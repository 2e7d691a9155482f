/* SSRF policy: the address classifier over every range it blocks, odd IPv4 spellings (checked
 * against the C library's own inet_aton and getaddrinfo), IPv6 embeddings, CIDR exceptions. */
#include "ssrf.h"
#include "tap.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>

static struct ssrf_addr A(const char *s) {
	struct ssrf_addr a;
	if (ssrf_parse_ip(s, &a) < 0) {
		diag("cannot parse %s", s);
		memset(&a, 0, sizeof(a));
	}
	return a;
}

static void
test_classes(void)
{
	static const struct {
		const char *addr;
		enum ssrf_class cls;
	} t[] = {
		/* IPv4 */
		{ "0.0.0.0", SSRF_THIS_NETWORK },
		{ "0.1.2.3", SSRF_THIS_NETWORK },
		{ "0.255.255.255", SSRF_THIS_NETWORK },
		{ "1.0.0.0", SSRF_PUBLIC },
		{ "9.255.255.255", SSRF_PUBLIC },
		{ "10.0.0.0", SSRF_PRIVATE },
		{ "10.255.255.255", SSRF_PRIVATE },
		{ "11.0.0.0", SSRF_PUBLIC },
		{ "100.63.255.255", SSRF_PUBLIC },
		{ "100.64.0.0", SSRF_CGNAT },
		{ "100.127.255.255", SSRF_CGNAT },
		{ "100.128.0.0", SSRF_PUBLIC },
		{ "126.255.255.255", SSRF_PUBLIC },
		{ "127.0.0.0", SSRF_LOOPBACK },
		{ "127.0.0.1", SSRF_LOOPBACK },
		{ "127.0.0.2", SSRF_LOOPBACK },
		{ "127.255.255.255", SSRF_LOOPBACK },
		{ "128.0.0.0", SSRF_PUBLIC },
		{ "169.253.255.255", SSRF_PUBLIC },
		{ "169.254.0.0", SSRF_LINK_LOCAL },
		{ "169.254.169.254", SSRF_LINK_LOCAL }, /* AWS, GCP, Azure metadata */
		{ "169.254.170.2", SSRF_LINK_LOCAL },   /* ECS task metadata */
		{ "169.254.255.255", SSRF_LINK_LOCAL },
		{ "169.255.0.0", SSRF_PUBLIC },
		{ "172.15.255.255", SSRF_PUBLIC },
		{ "172.16.0.0", SSRF_PRIVATE },
		{ "172.31.255.255", SSRF_PRIVATE },
		{ "172.32.0.0", SSRF_PUBLIC },
		{ "192.0.0.0", SSRF_RESERVED },
		{ "192.0.0.170", SSRF_RESERVED },
		{ "192.0.0.255", SSRF_RESERVED },
		{ "192.0.1.0", SSRF_PUBLIC },
		{ "192.0.2.0", SSRF_DOCUMENTATION },
		{ "192.0.2.255", SSRF_DOCUMENTATION },
		{ "192.88.99.1", SSRF_RESERVED },
		{ "192.167.255.255", SSRF_PUBLIC },
		{ "192.168.0.0", SSRF_PRIVATE },
		{ "192.168.1.1", SSRF_PRIVATE },
		{ "192.168.255.255", SSRF_PRIVATE },
		{ "192.169.0.0", SSRF_PUBLIC },
		{ "198.17.255.255", SSRF_PUBLIC },
		{ "198.18.0.0", SSRF_BENCHMARKING },
		{ "198.19.255.255", SSRF_BENCHMARKING },
		{ "198.20.0.0", SSRF_PUBLIC },
		{ "198.51.100.7", SSRF_DOCUMENTATION },
		{ "203.0.113.9", SSRF_DOCUMENTATION },
		{ "8.8.8.8", SSRF_PUBLIC },
		{ "1.1.1.1", SSRF_PUBLIC },
		{ "223.255.255.255", SSRF_PUBLIC },
		{ "224.0.0.0", SSRF_MULTICAST },
		{ "224.0.0.251", SSRF_MULTICAST },
		{ "239.255.255.255", SSRF_MULTICAST },
		{ "240.0.0.0", SSRF_RESERVED },
		{ "254.255.255.255", SSRF_RESERVED },
		{ "255.255.255.254", SSRF_RESERVED },
		{ "255.255.255.255", SSRF_BROADCAST },
		/* IPv6 */
		{ "::", SSRF_UNSPECIFIED },
		{ "::1", SSRF_LOOPBACK },
		{ "::2", SSRF_THIS_NETWORK },          /* ::0.0.0.2, IPv4-compatible */
		{ "::ffff:127.0.0.1", SSRF_LOOPBACK }, /* IPv4-mapped */
		{ "::ffff:7f00:1", SSRF_LOOPBACK },
		{ "::ffff:169.254.169.254", SSRF_LINK_LOCAL },
		{ "::ffff:10.1.2.3", SSRF_PRIVATE },
		{ "::ffff:0.0.0.0", SSRF_THIS_NETWORK },
		{ "::ffff:8.8.8.8", SSRF_PUBLIC },
		{ "::127.0.0.1", SSRF_LOOPBACK }, /* IPv4-compatible (deprecated) */
		{ "::8.8.8.8", SSRF_RESERVED },
		{ "::ffff:0:127.0.0.1", SSRF_LOOPBACK }, /* IPv4-translated (SIIT) */
		{ "::ffff:0:8.8.8.8", SSRF_RESERVED },
		{ "64:ff9b::127.0.0.1", SSRF_LOOPBACK }, /* NAT64 well-known prefix */
		{ "64:ff9b::a9fe:a9fe", SSRF_LINK_LOCAL },
		{ "64:ff9b::192.168.0.1", SSRF_PRIVATE },
		{ "64:ff9b::8.8.8.8", SSRF_PUBLIC },
		{ "64:ff9b:1::1", SSRF_RESERVED },  /* local-use NAT64 */
		{ "2002:7f00:1::", SSRF_LOOPBACK }, /* 6to4 of 127.0.0.1 */
		{ "2002:a9fe:a9fe::1", SSRF_LINK_LOCAL },
		{ "2002:c0a8:101::", SSRF_PRIVATE },
		{ "2002:0808:0808::1", SSRF_PUBLIC },
		{ "100::1", SSRF_RESERVED },  /* discard */
		{ "2001::1", SSRF_RESERVED }, /* Teredo */
		{ "2001:2::1", SSRF_BENCHMARKING },
		{ "2001:10::1", SSRF_RESERVED }, /* ORCHID */
		{ "2001:db8::1", SSRF_DOCUMENTATION },
		{ "3fff::1", SSRF_DOCUMENTATION },
		{ "2001:4860:4860::8888", SSRF_PUBLIC },
		{ "2606:4700:4700::1111", SSRF_PUBLIC },
		{ "2a00:1450::1", SSRF_PUBLIC },
		{ "fc00::1", SSRF_ULA },
		{ "fd00::1", SSRF_ULA },
		{ "fd00:ec2::254", SSRF_ULA }, /* AWS IPv6 metadata */
		{ "fdff:ffff::1", SSRF_ULA },
		{ "fe80::1", SSRF_LINK_LOCAL },
		{ "febf::1", SSRF_LINK_LOCAL },
		{ "fec0::1", SSRF_SITE_LOCAL },
		{ "ff02::1", SSRF_MULTICAST },
		{ "ff05::2", SSRF_MULTICAST },
		{ "4000::1", SSRF_RESERVED }, /* outside 2000::/3 */
		{ "5f00::1", SSRF_RESERVED },
		{ "1::", SSRF_RESERVED },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct ssrf_addr a = A(t[i].addr);
		enum ssrf_class c = ssrf_classify(&a, NULL);
		ok(a.family && c == t[i].cls, "%s is %s (got %s)", t[i].addr,
		   ssrf_class_name(t[i].cls), ssrf_class_name(c));
	}
}

/* Every spelling a resolver accepts for an address ends up as that address: compared with
 * inet_aton and getaddrinfo(AI_NUMERICHOST), which is what curl ends up connecting to. */
static void test_spellings(void)
{
	static const char *const loop[] = {
		"127.0.0.1",        "127.1",           "127.0.1",      "2130706433",
		"0x7f000001",       "0X7F000001",      "0x7f.1",       "0177.0.0.1",
		"0177.1",           "017700000001",    "0x7f.0.0.0x1", "127.0x0.0.1",
		"0x7f.0x0.0x0.0x1", "127.000.000.001",
	};
	static const char *const bad[] = {
		"",
		"1.2.3.4.5",
		"256.0.0.1",
		"127.0.0.1.",
		".127.0.0.1",
		"127..1",
		"0x",
		"0x100000000",
		"4294967296",
		"08",
		"09.1.1.1",
		"1.2.3.4 ",
		" 1.2.3.4",
		"127.0.0.1x",
		"-1",
		"+1",
		"1.2.65536",
		"1.16777216",
		"[127.0.0.1]",
		"fe80::1%eth0",
		"[fe80::1%25eth0]",
		"::ffff:127.1",
		"127.0.0.1/8",
		"1.2.3.0x100",
	};
	struct ssrf_addr want = A("127.0.0.1");
	for (size_t i = 0; i < sizeof(loop) / sizeof(loop[0]); i++) {
		struct ssrf_addr a;
		struct in_addr libc;
		struct addrinfo hints = { .ai_flags = AI_NUMERICHOST, .ai_family = AF_INET },
				*ai = NULL;
		int gai = getaddrinfo(loop[i], NULL, &hints, &ai);
		int same_libc = inet_aton(loop[i], &libc) == 1 && memcmp(&libc, want.a, 4) == 0;
		int same_gai = gai == 0 &&
			       memcmp(&((struct sockaddr_in *)(void *)ai->ai_addr)->sin_addr,
				      want.a, 4) == 0;
		if (ai)
			freeaddrinfo(ai);
		ok(ssrf_parse_ip(loop[i], &a) == 0 && a.family == AF_INET &&
			   memcmp(a.a, want.a, 4) == 0 &&
			   ssrf_classify(&a, NULL) == SSRF_LOOPBACK && same_libc && same_gai,
		   "\"%s\" is 127.0.0.1 for us, inet_aton and getaddrinfo: loopback", loop[i]);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct ssrf_addr a;
		ok(ssrf_parse_ip(bad[i], &a) == -EINVAL, "\"%s\" is not an IP literal", bad[i]);
	}
	{
		struct ssrf_addr a;
		ok(ssrf_parse_ip("[::1]", &a) == 0 && a.family == AF_INET6 &&
			   ssrf_classify(&a, NULL) == SSRF_LOOPBACK,
		   "[::1] in brackets parses (URL host form)");
		ok(ssrf_parse_ip("[::ffff:127.0.0.1]", &a) == 0 &&
			   ssrf_classify(&a, NULL) == SSRF_LOOPBACK,
		   "[::ffff:127.0.0.1] is loopback");
		ok(ssrf_parse_ip("0", &a) == 0 && ssrf_classify(&a, NULL) == SSRF_THIS_NETWORK,
		   "\"0\" is 0.0.0.0 (this host on Linux)");
		ok(ssrf_parse_ip("0xa9fea9fe", &a) == 0 &&
			   ssrf_classify(&a, NULL) == SSRF_LINK_LOCAL,
		   "0xa9fea9fe is the metadata address");
		ok(ssrf_parse_ip("2852039166", &a) == 0 &&
			   ssrf_classify(&a, NULL) == SSRF_LINK_LOCAL,
		   "2852039166 is the metadata address");
		ok(ssrf_parse_ip("012.0.0.1", &a) == 0 && a.a[0] == 10,
		   "octal 012 is 10 (private)");
	}
}

static void test_embedded(void)
{
	struct ssrf_addr a = A("::ffff:169.254.169.254"), e;
	ok(ssrf_classify(&a, &e) == SSRF_LINK_LOCAL && e.family == AF_INET && e.a[0] == 169 &&
		   e.a[3] == 254,
	   "mapped: the embedded IPv4 address is reported");
	a = A("2002:7f00:1::");
	ok(ssrf_classify(&a, &e) == SSRF_LOOPBACK && e.a[0] == 127 && e.a[3] == 1,
	   "6to4: embedded 127.0.0.1");
	a = A("2001:4860::1");
	ok(ssrf_classify(&a, &e) == SSRF_PUBLIC && e.family == 0, "plain IPv6: nothing embedded");
}

static void test_cidrs(void)
{
	struct ssrf_cidr c;
	struct ssrf_addr a;

	ok(ssrf_parse_cidr("10.0.0.0/8", &c) == 0 && c.bits == 8, "10.0.0.0/8 parses");
	a = A("10.200.3.4");
	ok(ssrf_cidr_contains(&c, &a), "10.200.3.4 in 10.0.0.0/8");
	a = A("11.0.0.1");
	ok(!ssrf_cidr_contains(&c, &a), "11.0.0.1 not in 10.0.0.0/8");
	ok(ssrf_parse_cidr("192.168.1.77/24", &c) == 0 && c.addr.a[3] == 0,
	   "host bits are cleared");
	ok(ssrf_parse_cidr("127.0.0.2", &c) == 0 && c.bits == 32, "a bare address is a /32");
	ok(ssrf_parse_cidr("fd00::/8", &c) == 0 && c.bits == 8, "fd00::/8 parses");
	a = A("fdab::1");
	ok(ssrf_cidr_contains(&c, &a), "fdab::1 in fd00::/8");
	a = A("10.0.0.1");
	ok(!ssrf_cidr_contains(&c, &a), "families never match each other");
	ok(ssrf_parse_cidr("0.0.0.0/0", &c) == 0, "/0 parses");
	ok(ssrf_parse_cidr("::/0", &c) == 0 && c.bits == 0, "::/0 parses");
	{
		const char *bad[] = {
			"10.0.0.0/33", "fd00::/129", "10.0.0.0/",     "/8",        "10.0.0.0/8x",
			"10.0.0.0/-1", "nonsense",   "10.0.0.0/0008", "[::1]/128", ""
		};
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
			ok(ssrf_parse_cidr(bad[i], &c) == -EINVAL, "\"%s\" is not a CIDR", bad[i]);
	}
}

static void test_policy(void)
{
	static struct ssrf_policy p;
	struct ssrf_addr a;
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };
	struct sockaddr sun = { .sa_family = AF_UNIX };
	char why[160];

	ssrf_policy_init(&p);
	a = A("127.0.0.1");
	ok(ssrf_check(&p, &a, why, sizeof(why)) == -EACCES &&
		   strcmp(why, "127.0.0.1 is loopback") == 0,
	   "default: loopback blocked (%s)", why);
	a = A("::ffff:127.0.0.1");
	ok(ssrf_check(&p, &a, why, sizeof(why)) == -EACCES && strstr(why, "embedded"),
	   "mapped loopback blocked (%s)", why);
	a = A("93.184.216.34");
	ok(ssrf_check(&p, &a, why, sizeof(why)) == 0, "public allowed");

	is_int(ssrf_policy_allow(&p, "127.0.0.2/32"), 0, "allowedCIDRs entry added");
	a = A("127.0.0.2");
	ok(ssrf_check(&p, &a, NULL, 0) == 0, "allowedCIDRs 127.0.0.2/32 allows 127.0.0.2");
	a = A("::ffff:127.0.0.2");
	ok(ssrf_check(&p, &a, NULL, 0) == 0, "... and its IPv4-mapped form");
	a = A("127.0.0.1");
	ok(ssrf_check(&p, &a, NULL, 0) == -EACCES, "... but not 127.0.0.1");
	a = A("::1");
	ok(ssrf_check(&p, &a, NULL, 0) == -EACCES, "... nor ::1");
	is_int(ssrf_policy_allow(&p, "not a cidr"), -EINVAL, "a bad CIDR is refused");

	ssrf_policy_init(&p);
	p.allow_private = 1;
	a = A("10.1.1.1");
	ok(ssrf_check(&p, &a, NULL, 0) == 0, "allowPrivateNetworks allows RFC 1918");
	a = A("169.254.169.254");
	ok(ssrf_check(&p, &a, NULL, 0) == 0,
	   "allowPrivateNetworks allows every non-public class (CRD)");

	ssrf_policy_init(&p);
	for (int i = 0; i < SSRF_MAX_CIDRS; i++)
		(void)ssrf_policy_allow(&p, "10.0.0.0/8");
	is_int(ssrf_policy_allow(&p, "10.0.0.0/8"), -E2BIG, "at most SSRF_MAX_CIDRS entries");

	ssrf_policy_init(&p);
	inet_pton(AF_INET, "169.254.169.254", &sin.sin_addr);
	ok(ssrf_check_sockaddr(&p, (struct sockaddr *)&sin, sizeof(sin), why, sizeof(why)) ==
		   -EACCES,
	   "sockaddr_in metadata blocked (%s)", why);
	inet_pton(AF_INET6, "::ffff:10.0.0.1", &sin6.sin6_addr);
	ok(ssrf_check_sockaddr(&p, (struct sockaddr *)&sin6, sizeof(sin6), why, sizeof(why)) ==
		   -EACCES,
	   "sockaddr_in6 mapped private blocked (%s)", why);
	inet_pton(AF_INET6, "2001:4860::1", &sin6.sin6_addr);
	ok(ssrf_check_sockaddr(&p, (struct sockaddr *)&sin6, sizeof(sin6), NULL, 0) == 0,
	   "sockaddr_in6 public allowed");
	ok(ssrf_check_sockaddr(&p, &sun, sizeof(sun), why, sizeof(why)) == -EACCES,
	   "AF_UNIX refused (%s)", why);
	ok(ssrf_check_sockaddr(&p, (struct sockaddr *)&sin, 4, NULL, 0) == -EACCES,
	   "short sockaddr refused");
}

int main(void)
{
	test_classes();
	test_spellings();
	test_embedded();
	test_cidrs();
	test_policy();
	return done_testing();
}
