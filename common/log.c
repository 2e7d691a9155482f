#include "log.h"
#include "util.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *log_component = "tasked";
static enum log_level log_min = LOG_LVL_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void log_init(const char *component, enum log_level min)
{
	log_component = component;
	log_min = min;
}

/* Appends s as a JSON string body, escaping control characters; truncates at the buffer end. */
static size_t log_escape(char *out, size_t pos, size_t cap, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	for (const unsigned char *p = (const unsigned char *)s; *p && pos + 7 < cap; p++) {
		if (*p == '"' || *p == '\\') {
			out[pos++] = '\\';
			out[pos++] = (char)*p;
		} else if (*p == '\n') {
			out[pos++] = '\\';
			out[pos++] = 'n';
		} else if (*p < 0x20 || *p == 0x7f) {
			memcpy(out + pos, "\\u00", 4);
			out[pos + 4] = hex[*p >> 4];
			out[pos + 5] = hex[*p & 15];
			pos += 6;
		} else {
			out[pos++] = (char)*p;
		}
	}
	return pos;
}

static size_t log_put(char *out, size_t pos, size_t cap, const char *s)
{
	size_t n = strlen(s);
	if (pos + n >= cap)
		n = cap - pos - 1;
	memcpy(out + pos, s, n);
	return pos + n;
}

void log_kv(enum log_level lvl, const char *msg, ...)
{
	static const char *names[] = { "debug", "info", "warn", "error" };
	char line[8192], ts[40];
	size_t pos = 0, cap = sizeof(line) - 2;
	va_list ap;

	if (lvl < log_min)
		return;
	util_rfc3339_ms(util_now_ms(), ts, sizeof(ts));
	pos = log_put(line, pos, cap, "{\"ts\":\"");
	pos = log_put(line, pos, cap, ts);
	pos = log_put(line, pos, cap, "\",\"level\":\"");
	pos = log_put(line, pos, cap, names[lvl]);
	pos = log_put(line, pos, cap, "\",\"component\":\"");
	pos = log_put(line, pos, cap, log_component);
	pos = log_put(line, pos, cap, "\",\"msg\":\"");
	pos = log_escape(line, pos, cap, msg);
	pos = log_put(line, pos, cap, "\"");
	va_start(ap, msg);
	for (;;) {
		const char *k = va_arg(ap, const char *), *v;
		if (!k)
			break;
		v = va_arg(ap, const char *);
		pos = log_put(line, pos, cap, ",\"");
		pos = log_escape(line, pos, cap, k);
		pos = log_put(line, pos, cap, "\":\"");
		pos = log_escape(line, pos, cap, v ? v : "");
		pos = log_put(line, pos, cap, "\"");
	}
	va_end(ap);
	pos = log_put(line, pos, cap + 1, "}\n");
	pthread_mutex_lock(&log_lock);
	(void)!write(STDERR_FILENO, line, pos);
	pthread_mutex_unlock(&log_lock);
}

int log_limit_allow(struct log_limit *l, double burst, double per_s, unsigned long long *suppressed)
{
	int64_t now = util_mono_ms();
	int allow;

	pthread_mutex_lock(&l->lock);
	if (l->last_ms == 0)
		l->tokens = burst;
	else
		l->tokens += (double)(now - l->last_ms) * per_s / 1000.0;
	if (l->tokens > burst)
		l->tokens = burst;
	l->last_ms = now;
	allow = l->tokens >= 1.0;
	if (allow) {
		l->tokens -= 1.0;
		*suppressed = l->suppressed;
		l->suppressed = 0;
	} else if (l->suppressed < ~0ULL) {
		l->suppressed++;
	}
	pthread_mutex_unlock(&l->lock);
	return allow;
}
