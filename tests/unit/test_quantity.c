/* Resource quantities: the Kubernetes grammar, exact rounding up, saturation, refusals. */
#include "quantity.h"
#include "tap.h"

#include <errno.h>
#include <string.h>

static int64_t P(const char *s, int scale, int64_t max, int *r)
{
	int64_t v = -1;
	*r = qty_parse(s, strlen(s), scale, max, &v);
	return v;
}

static void test_values(void)
{
	static const struct {
		const char *s;
		int scale;
		int64_t want;
	} t[] = {
		{ "0", 0, 0 },
		{ "1", 0, 1 },
		{ "+1", 0, 1 },
		{ "256Mi", 0, INT64_C(256) << 20 },
		{ "1Ki", 0, 1024 },
		{ "1Gi", 0, INT64_C(1) << 30 },
		{ "1Ti", 0, INT64_C(1) << 40 },
		{ "1Pi", 0, INT64_C(1) << 50 },
		{ "1Ei", 0, INT64_C(1) << 60 },
		{ "1.5Gi", 0, INT64_C(3) << 29 },
		{ "1k", 0, 1000 },
		{ "1M", 0, 1000000 },
		{ "1G", 0, 1000000000 },
		{ "2T", 0, 2000000000000 },
		{ "1P", 0, INT64_C(1000000000000000) },
		{ "1E", 0, INT64_C(1000000000000000000) },
		{ "1e3", 0, 1000 },
		{ "1E3", 0, 1000 },
		{ "1e+3", 0, 1000 },
		{ "15e-1", 0, 2 },
		{ "128974848", 0, 128974848 },
		{ "129e6", 0, 129000000 },
		{ "123Mi", 0, INT64_C(123) << 20 },
		{ ".5", 0, 1 },
		{ "5.", 0, 5 },
		{ "0.0", 0, 0 },
		{ "500m", 0, 1 },
		{ "1n", 0, 1 },
		/* CPU in millicores */
		{ "500m", 3, 500 },
		{ "1", 3, 1000 },
		{ "0.1", 3, 100 },
		{ "2.5", 3, 2500 },
		{ "1.0001", 3, 1001 },
		{ "100u", 3, 1 },
		{ "1n", 3, 1 },
		{ "1500000n", 3, 2 },
		{ "0m", 3, 0 },
		{ "1k", 3, 1000000 },
		{ "4e-3", 3, 4 },
		{ "1Ki", 3, 1024000 },
		/* many digits: exact where it can be, rounded up where it cannot */
		{ "000000000000000000000000001", 0, 1 },
		{ "1.000000000000000000000000", 0, 1 },
		{ "0.000000000000000000000000001", 0, 1 },
		{ "123456789012345678", 0, INT64_C(123456789012345678) },
		{ "1234567890123456789", 0, INT64_C(1234567890123456790) },
		{ "100000000000000000000e-10", 0, 10000000000 },
	};
	int r;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		int64_t v = P(t[i].s, t[i].scale, INT64_MAX, &r);
		ok(r == 0 && v == t[i].want, "%s (scale %d) = %lld (got %lld, r=%d)", t[i].s,
		   t[i].scale, (long long)t[i].want, (long long)v, r);
	}
}

static void test_saturation(void)
{
	int r;
	int64_t v;
	v = P("2Gi", 0, INT64_C(1) << 30, &r);
	ok(r == 1 && v == INT64_C(1) << 30, "capped at max (r=%d v=%lld)", r, (long long)v);
	v = P("1Gi", 0, INT64_C(1) << 30, &r);
	ok(r == 0 && v == INT64_C(1) << 30, "exactly max is not capped");
	v = P("8Ei", 0, INT64_MAX, &r);
	ok(r == 1 && v == INT64_MAX, "8Ei saturates int64");
	v = P("1e1000000000", 0, 1000, &r);
	ok(r == 1 && v == 1000, "huge exponent saturates");
	v = P("999999999999999999999999999999999999999999999999999999999999Ei", 0, INT64_MAX, &r);
	ok(r == 1 && v == INT64_MAX, "60 digits of Ei saturate");
	v = P("1e-1000000000", 3, INT64_MAX, &r);
	ok(r == 0 && v == 1, "a tiny positive value rounds up to 1 (got %lld)", (long long)v);
	v = P("0e1000000000", 0, 5, &r);
	ok(r == 0 && v == 0, "zero stays zero");
	v = P("1", 0, 0, &r);
	ok(r == 1 && v == 0, "max 0");
}

static void test_refused(void)
{
	static const char *const bad[] = {
		"",
		"-1",
		"-0",
		"Mi",
		"1Mib",
		"1 Mi",
		" 1",
		"1MI",
		"1mi",
		"1..0",
		"1.0.0",
		".",
		"+",
		"++1",
		"1e",
		"1e+",
		"1E-",
		"1ee3",
		"1e3.5",
		"1K",
		"0x10",
		"1,5",
		"1b",
		"1Mi1",
		"12345678901234567890123456789012345678901234567890123456789012345",
	};
	int r;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		P(bad[i], 0, INT64_MAX, &r);
		ok(r == -EINVAL, "refused: \"%s\" (r=%d)", bad[i], r);
	}
	int64_t v;
	ok(qty_parse("1\0", 2, 0, INT64_MAX, &v) == -EINVAL, "embedded NUL refused");
	ok(qty_parse("1", 1, 10, INT64_MAX, &v) == -EINVAL, "scale 10 refused");
	ok(qty_parse("1", 1, 0, -1, &v) == -EINVAL, "negative max refused");
	ok(qty_parse(NULL, 0, 0, 1, &v) == -EINVAL, "NULL refused");
}

static void test_format(void)
{
	static const struct {
		int64_t v;
		int milli;
		const char *want;
	} t[] = {
		{ 0, 0, "0" },
		{ 1024, 0, "1Ki" },
		{ INT64_C(256) << 20, 0, "256Mi" },
		{ 1536, 0, "1536" },
		{ INT64_C(3) << 29, 0, "1536Mi" },
		{ INT64_C(1) << 60, 0, "1Ei" },
		{ 1000, 0, "1000" },
		{ 500, 1, "500m" },
		{ 2000, 1, "2" },
		{ 0, 1, "0" },
		{ 1, 1, "1m" },
	};
	char buf[32];
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		qty_format(t[i].v, t[i].milli, buf, sizeof(buf));
		ok(strcmp(buf, t[i].want) == 0, "format %lld%s = %s (got %s)", (long long)t[i].v,
		   t[i].milli ? " milli" : "", t[i].want, buf);
		/* and it parses back */
		int64_t back = -1;
		ok(qty_parse(buf, strlen(buf), t[i].milli ? 3 : 0, INT64_MAX, &back) == 0 &&
			   back == t[i].v,
		   "%s parses back", buf);
	}
	qty_format(INT64_C(1) << 40, 0, buf, 3);
	ok(strlen(buf) == 2, "format truncates and terminates");
}

int main(void)
{
	test_values();
	test_saturation();
	test_refused();
	test_format();
	return done_testing();
}
