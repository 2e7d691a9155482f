/* Saturating time arithmetic: huge user values clamp instead of wrapping. */
#include "sat.h"
#include "tap.h"
#include "util.h"

#include <math.h>

int main(void)
{
	char ts[40];
	int64_t now = INT64_C(1767225600000); /* 2026-01-01T00:00:00Z */

	is_int(sat_add(1, 2), 3, "ordinary addition");
	is_int(sat_add(INT64_MAX, 1), INT64_MAX, "overflow clamps to INT64_MAX");
	is_int(sat_add(INT64_MIN, -1), INT64_MIN, "underflow clamps to INT64_MIN");
	is_int(sat_mul(INT64_C(9223372036854775), 1000), INT64_C(9223372036854775000),
	       "largest exact product");
	is_int(sat_mul(INT64_C(9223372036854776), 1000), INT64_MAX, "one more clamps");
	is_int(sat_mul(INT64_C(-9223372036854776), 1000), INT64_MIN,
	       "negative overflow clamps low");
	is_int(sat_mul(-3, -4), 12, "negative times negative");

	is_int(sat_after_s(now, 604800), now + INT64_C(604800000), "one week after now is exact");
	is_int(sat_after_s(now, INT64_MAX), SAT_TIME_MAX_MS,
	       "timeoutSeconds INT64_MAX: year 9999, not the past");
	is_int(sat_after_s(now, INT64_C(9223372036854775)), SAT_TIME_MAX_MS,
	       "a product that just fits still clamps to 9999");
	is_int(sat_after_s(now, -5), now - 5000,
	       "negative seconds go back (callers refuse them first)");
	is_int(sat_after_s(0, INT64_MIN), 0, "never before the epoch");
	ok(util_rfc3339(sat_after_s(now, INT64_MAX), ts, sizeof(ts)) == 0 &&
		   strcmp(ts, "9999-12-31T23:59:59Z") == 0,
	   "the clamped time formats as RFC 3339 (%s)", ts);

	is_int(sat_ms_of_seconds(1.5, INT64_C(86400000)), 1500, "1.5 s is 1500 ms");
	is_int(sat_ms_of_seconds(1e300, INT64_C(86400000)), INT64_C(86400000),
	       "1e300 s clamps to the maximum");
	is_int(sat_ms_of_seconds(INFINITY, 1000), 1000, "infinity clamps");
	is_int(sat_ms_of_seconds(NAN, 1000), 0, "NaN is no delay");
	is_int(sat_ms_of_seconds(-7, 1000), 0, "negative is no delay");

	is_int(sat_delay(now + 250, now, 1000), 250, "a delay inside the bound");
	is_int(sat_delay(SAT_TIME_MAX_MS, now, INT64_C(3600000)), INT64_C(3600000),
	       "a far deadline: the timer bound");
	is_int(sat_delay(now - 10, now, 1000), 0, "a past time: no delay");
	is_int(sat_delay(INT64_MAX, INT64_MIN, 1000), 1000, "extremes do not overflow");
	is_int(sat_delay(INT64_MIN, INT64_MAX, 1000), 0, "extremes the other way");
	return done_testing();
}
