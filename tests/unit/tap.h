#pragma once
/* A tiny header-only TAP producer for unit tests run with `prove`.
 *
 *   plan(3);                       or call done_testing() at the end instead
 *   ok(x > 0, "x is positive (x=%d)", x);
 *   is_int(got, 42, "answer");
 *   is_str(got, "hello", "greeting");
 *   return done_testing();         exit status: 0 when every test passed
 *
 * Prints "ok N - name" / "not ok N - name" on stdout and "# " diagnostics; everything is
 * static so each test program includes it once. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_run, tap_failed, tap_planned = -1;

static inline void plan(int n)
{
	tap_planned = n;
	printf("1..%d\n", n);
	fflush(stdout);
}

static inline void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void diag(const char *fmt, ...)
{
	va_list ap;
	fputs("# ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
}

static inline int tap_vok(int cond, const char *fmt, va_list ap)
{
	tap_run++;
	if (!cond)
		tap_failed++;
	printf("%sok %d - ", cond ? "" : "not ", tap_run);
	vprintf(fmt, ap);
	fputc('\n', stdout);
	fflush(stdout);
	return cond;
}

static inline int ok(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline int ok(int cond, const char *fmt, ...)
{
	va_list ap;
	int r;
	va_start(ap, fmt);
	r = tap_vok(cond, fmt, ap);
	va_end(ap);
	return r;
}

static inline int is_int(long long got, long long want, const char *name)
{
	int r = ok(got == want, "%s", name);
	if (!r)
		diag("     got: %lld\n#   expected: %lld", got, want);
	return r;
}

static inline int is_str(const char *got, const char *want, const char *name)
{
	int r = ok(got && want ? strcmp(got, want) == 0 : got == want, "%s", name);
	if (!r)
		diag("     got: %s%s%s\n#   expected: %s%s%s", got ? "\"" : "", got ? got : "NULL",
		     got ? "\"" : "", want ? "\"" : "", want ? want : "NULL", want ? "\"" : "");
	return r;
}

static inline int skip(const char *why)
{
	tap_run++;
	printf("ok %d # SKIP %s\n", tap_run, why);
	fflush(stdout);
	return 1;
}

/* Prints the plan if none was given; returns the process exit status. */
static inline int done_testing(void)
{
	if (tap_planned < 0)
		printf("1..%d\n", tap_run);
	else if (tap_planned != tap_run)
		diag("planned %d tests but ran %d", tap_planned, tap_run);
	if (tap_failed)
		diag("failed %d of %d tests", tap_failed, tap_run);
	fflush(stdout);
	return tap_failed || (tap_planned >= 0 && tap_planned != tap_run) ? 1 : 0;
}
