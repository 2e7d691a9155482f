#pragma once
/* One logger for both binaries: JSON lines on stderr, one object per line.
 * Callers pass key/value string pairs terminated by NULL; never pass a secret value. */
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>

enum log_level { LOG_LVL_DEBUG, LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_ERROR };

void log_init(const char *component, enum log_level min);
void log_kv(enum log_level lvl, const char *msg, ...) __attribute__((sentinel));

#define log_debug(...) log_kv(LOG_LVL_DEBUG, __VA_ARGS__, (char *)NULL)
#define log_info(...) log_kv(LOG_LVL_INFO, __VA_ARGS__, (char *)NULL)
#define log_warn(...) log_kv(LOG_LVL_WARN, __VA_ARGS__, (char *)NULL)
#define log_error(...) log_kv(LOG_LVL_ERROR, __VA_ARGS__, (char *)NULL)

/* A token bucket for a noisy source (libwebsockets repeats one line per failed accept under fd
 * exhaustion): at most `burst` lines at once and `per_s` per second after that. */
struct log_limit {
	pthread_mutex_t lock;
	double tokens;
	int64_t last_ms;
	unsigned long long suppressed; /* saturating */
};
#define LOG_LIMIT_INIT                             \
	{                                          \
		PTHREAD_MUTEX_INITIALIZER, 0, 0, 0 \
	}
/* 1: log this line, and report *suppressed lines dropped since the last one logged; 0: drop it. */
int log_limit_allow(struct log_limit *l, double burst, double per_s,
		    unsigned long long *suppressed);

/* libwebsockets' log sink, for lws_set_log_level(levels, log_lws) in both binaries: one JSON line
 * per lws line ("libwebsockets", the line as "detail"), an lws error at level error and anything
 * else at warn, through one token bucket (20 at once, 1/s: lws repeats a line per failed accept
 * under fd exhaustion); the next line let through carries "suppressedBefore". */
void log_lws(int level, const char *line);
