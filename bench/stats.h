#pragma once
/* Shared by the benchmark programs: clocks, percentiles, small JSON summaries. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* CLOCK_REALTIME in nanoseconds: comparable with what bench/stamp prints (same machine). */
int64_t bench_now_ns(void);
/* CLOCK_MONOTONIC in nanoseconds, for durations. */
int64_t bench_mono_ns(void);
/* Sleeps until the CLOCK_MONOTONIC time t_ns (returns at once when it has passed). */
void bench_sleep_until_mono(int64_t t_ns);

/* Summary of n samples (milliseconds): {n, mean, p50, p95, p99, max, min} as a new object.
 * Sorts v in place. Percentiles use the nearest-rank method (value at rank ceil(p·n)). An
 * empty set gives {"n": 0}. */
json_t *bench_summary_ms(double *v, size_t n);
/* The nearest-rank percentile p (0..100] of sorted v; 0 when n is 0. */
double bench_percentile(const double *sorted, size_t n, double p);

/* Writes a JSON value (borrowed) to path atomically, pretty-printed; 0 or a negative errno. */
int bench_write_json(const char *path, const json_t *v);

/* A "Field:  N kB" line of /proc/PID/status ("VmRSS", "VmHWM", "Threads") as N; -1 when
 * unreadable. */
long bench_proc_kib(int pid, const char *field);
/* The same from another /proc/PID file, e.g. "smaps_rollup" ("Pss", "Private_Dirty"). */
long bench_proc_file_kib(int pid, const char *file, const char *field);
/* utime + stime of PID in seconds; -1 when unreadable. */
double bench_proc_cpu_s(int pid);
