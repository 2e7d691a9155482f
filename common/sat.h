#pragma once
/* Saturating arithmetic for times and durations built from user input (timeoutSeconds,
 * ttlSecondsAfterFinished, backoff): a huge value must mean "a long time", never wrap into the
 * past or produce a date RFC 3339 cannot write. Every result is clamped instead of overflowing. */
#include <stdint.h>

/* 9999-12-31T23:59:59.999Z: the last instant a four-digit RFC 3339 year can express. */
#define SAT_TIME_MAX_MS INT64_C(253402300799999)

int64_t sat_add(int64_t a, int64_t b); /* a + b, clamped to [INT64_MIN, INT64_MAX] */
int64_t sat_mul(int64_t a, int64_t b); /* a * b, clamped likewise */
/* The wall-clock time seconds after now_ms, clamped to [0, SAT_TIME_MAX_MS]. */
int64_t sat_after_s(int64_t now_ms, int64_t seconds);
/* Seconds (a double from JSON: may be huge, negative or NaN) as milliseconds in [0, max_ms]. */
int64_t sat_ms_of_seconds(double seconds, int64_t max_ms);
/* A delay until at_ms from now_ms, clamped to [0, max_ms] (for timers). */
int64_t sat_delay(int64_t at_ms, int64_t now_ms, int64_t max_ms);
