#include "stats.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int64_t bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t bench_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void bench_sleep_until_mono(int64_t t_ns)
{
	struct timespec ts = { .tv_sec = t_ns / 1000000000, .tv_nsec = t_ns % 1000000000 };
	if (t_ns <= bench_mono_ns())
		return;
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static int bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y ? 1 : 0;
}

double bench_percentile(const double *sorted, size_t n, double p)
{
	size_t rank;
	if (n == 0)
		return 0;
	rank = (size_t)ceil(p / 100.0 * (double)n);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return sorted[rank - 1];
}

/* Rounded to microseconds: more digits than that are noise. */
static json_t *bench_ms(double v) { return json_real(round(v * 1000.0) / 1000.0); }

json_t *bench_summary_ms(double *v, size_t n)
{
	json_t *o = json_object();
	double sum = 0;

	if (!o)
		return NULL;
	json_object_set_new(o, "n", json_integer((json_int_t)n));
	if (n == 0)
		return o;
	qsort(v, n, sizeof(*v), bench_cmp_double);
	for (size_t i = 0; i < n; i++)
		sum += v[i];
	json_object_set_new(o, "min", bench_ms(v[0]));
	json_object_set_new(o, "mean", bench_ms(sum / (double)n));
	json_object_set_new(o, "p50", bench_ms(bench_percentile(v, n, 50)));
	json_object_set_new(o, "p95", bench_ms(bench_percentile(v, n, 95)));
	json_object_set_new(o, "p99", bench_ms(bench_percentile(v, n, 99)));
	json_object_set_new(o, "max", bench_ms(v[n - 1]));
	return o;
}

int bench_write_json(const char *path, const json_t *v)
{
	char tmp[4096];
	int n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return -ENAMETOOLONG;
	if (json_dump_file(v, tmp, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(10)) < 0)
		return -EIO;
	if (rename(tmp, path) < 0)
		return -errno;
	return 0;
}

/* Reads a small /proc file into buf (NUL-terminated); bytes read or -1. */
static ssize_t bench_read_small(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n, len = 0;
	if (fd < 0)
		return -1;
	while ((size_t)len + 1 < cap && (n = read(fd, buf + len, cap - 1 - (size_t)len)) > 0)
		len += n;
	close(fd);
	buf[len] = '\0';
	return len;
}

long bench_proc_kib(int pid, const char *field)
{
	return bench_proc_file_kib(pid, "status", field);
}

long bench_proc_file_kib(int pid, const char *file, const char *field)
{
	char path[96], buf[8192], *p;
	size_t fl = strlen(field);

	snprintf(path, sizeof(path), "/proc/%d/%s", pid, file);
	if (bench_read_small(path, buf, sizeof(buf)) <= 0)
		return -1;
	for (p = buf; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		if (strncmp(p, field, fl) == 0 && p[fl] == ':')
			return strtol(p + fl + 1, NULL, 10);
	}
	return -1;
}

double bench_proc_cpu_s(int pid)
{
	char path[64], buf[4096], *p;
	unsigned long long ut, st;
	long hz = sysconf(_SC_CLK_TCK);

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (bench_read_small(path, buf, sizeof(buf)) <= 0)
		return -1;
	/* comm may hold spaces and parentheses: fields start after the last ')'. */
	p = strrchr(buf, ')');
	if (!p || hz <= 0)
		return -1;
	/* after ") ": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15) */
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)hz;
}
