#include "sat.h"

#include <math.h>

int64_t sat_add(int64_t a, int64_t b)
{
	int64_t r;
	if (__builtin_add_overflow(a, b, &r))
		return b > 0 ? INT64_MAX : INT64_MIN;
	return r;
}

int64_t sat_mul(int64_t a, int64_t b)
{
	int64_t r;
	if (__builtin_mul_overflow(a, b, &r))
		return (a < 0) != (b < 0) ? INT64_MIN : INT64_MAX;
	return r;
}

int64_t sat_after_s(int64_t now_ms, int64_t seconds)
{
	int64_t t = sat_add(now_ms, sat_mul(seconds, 1000));
	return t < 0 ? 0 : t > SAT_TIME_MAX_MS ? SAT_TIME_MAX_MS : t;
}

int64_t sat_ms_of_seconds(double seconds, int64_t max_ms)
{
	double ms = seconds * 1000.0;
	if (isnan(ms) || ms <= 0)
		return 0;
	/* Compare as doubles before converting: the conversion of an out-of-range double is UB. */
	if (ms >= (double)max_ms)
		return max_ms;
	return (int64_t)ms;
}

int64_t sat_delay(int64_t at_ms, int64_t now_ms, int64_t max_ms)
{
	int64_t d = sat_add(at_ms, now_ms == INT64_MIN ? INT64_MAX : -now_ms);
	return d < 0 ? 0 : d > max_ms ? max_ms : d;
}
