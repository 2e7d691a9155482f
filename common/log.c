#include "log.h"
#include "util.h"

#include <libwebsockets.h>
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

#define LOG_LINE_MAX 8192
/* Room kept at the end of every record to close a cut one: a quote, the marker, "}\n". */
#define LOG_TAIL ",\"truncated\":true}\n"
#define LOG_RESERVE (1 + sizeof(LOG_TAIL))

struct logbuf {
	char b[LOG_LINE_MAX];
	size_t pos, lim;
	int full; /* something did not fit: the record ends with "truncated":true */
};

/* Structural text: written whole or not at all. */
static void lb_raw(struct logbuf *l, const char *s)
{
	size_t n = strlen(s);
	if (l->full || l->pos + n > l->lim) {
		l->full = 1;
		return;
	}
	memcpy(l->b + l->pos, s, n);
	l->pos += n;
}

/* Appends s as a JSON string body, escaping control characters. When it does not fit it is cut
 * at a UTF-8 character boundary (never inside an escape), so the line stays valid JSON. */
static void lb_str(struct logbuf *l, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	size_t start = l->pos;
	for (const unsigned char *p = (const unsigned char *)s; *p && !l->full; p++) {
		char e[6];
		size_t n = 1;
		if (*p == '"' || *p == '\\') {
			e[0] = '\\';
			e[1] = (char)*p;
			n = 2;
		} else if (*p == '\n') {
			e[0] = '\\';
			e[1] = 'n';
			n = 2;
		} else if (*p < 0x20 || *p == 0x7f) {
			memcpy(e, "\\u00", 4);
			e[4] = hex[*p >> 4];
			e[5] = hex[*p & 15];
			n = 6;
		} else {
			e[0] = (char)*p;
		}
		if (l->pos + n > l->lim) {
			l->full = 1;
			break;
		}
		memcpy(l->b + l->pos, e, n);
		l->pos += n;
	}
	if (l->full) {
		/* Drop a multi-byte character whose tail did not fit. */
		size_t i = l->pos, need;
		while (i > start && i + 4 > l->pos && ((unsigned char)l->b[i - 1] & 0xc0) == 0x80)
			i--;
		if (i > start && (unsigned char)l->b[i - 1] >= 0xc0) {
			unsigned char lead = (unsigned char)l->b[i - 1];
			need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
			if (l->pos - (i - 1) < need)
				l->pos = i - 1;
		}
	}
}

/* ,"k":"v" — a key that does not fit drops the pair; a value that does not fit is cut. */
static void lb_pair(struct logbuf *l, const char *k, const char *v)
{
	size_t mark = l->pos;
	if (l->full)
		return;
	lb_raw(l, ",\"");
	lb_str(l, k);
	lb_raw(l, "\":\"");
	if (l->full) {
		l->pos = mark;
		return;
	}
	lb_str(l, v);
	l->b[l->pos++] = '"'; /* within LOG_RESERVE */
}

void log_kv(enum log_level lvl, const char *msg, ...)
{
	static const char *names[] = { "debug", "info", "warn", "error" };
	struct logbuf l;
	char ts[40];
	va_list ap;

	if (lvl < log_min)
		return;
	l.pos = 0;
	l.full = 0;
	l.lim = sizeof(l.b) - LOG_RESERVE;
	util_rfc3339_ms(util_now_ms(), ts, sizeof(ts));
	lb_raw(&l, "{\"ts\":\"");
	lb_raw(&l, ts);
	lb_raw(&l, "\",\"level\":\"");
	lb_raw(&l, names[lvl]);
	lb_raw(&l, "\"");
	lb_pair(&l, "component", log_component);
	lb_pair(&l, "msg", msg);
	va_start(ap, msg);
	for (;;) {
		const char *k = va_arg(ap, const char *), *v;
		if (!k)
			break;
		v = va_arg(ap, const char *);
		lb_pair(&l, k, v ? v : "");
	}
	va_end(ap);
	if (l.full) {
		memcpy(l.b + l.pos, LOG_TAIL, sizeof(LOG_TAIL) - 1);
		l.pos += sizeof(LOG_TAIL) - 1;
	} else {
		memcpy(l.b + l.pos, "}\n", 2);
		l.pos += 2;
	}
	pthread_mutex_lock(&log_lock);
	(void)!write(STDERR_FILENO, l.b, l.pos);
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

void log_lws(int level, const char *line)
{
	static struct log_limit limit = LOG_LIMIT_INIT;
	unsigned long long suppressed;
	char msg[512], n[24];

	if (!log_limit_allow(&limit, 20, 1, &suppressed))
		return;
	snprintf(msg, sizeof(msg), "%s", line);
	util_rstrip(msg);
	snprintf(n, sizeof(n), "%llu", suppressed);
	log_kv(level & LLL_ERR ? LOG_LVL_ERROR : LOG_LVL_WARN, "libwebsockets", "detail", msg,
	       suppressed ? "suppressedBefore" : NULL, n, (char *)NULL);
}
