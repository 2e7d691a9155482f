#pragma once
/* One logger for both binaries: JSON lines on stderr, one object per line.
 * Callers pass key/value string pairs terminated by NULL; never pass a secret value. */
#include <stdarg.h>

enum log_level { LOG_LVL_DEBUG, LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_ERROR };

void log_init(const char *component, enum log_level min);
void log_kv(enum log_level lvl, const char *msg, ...) __attribute__((sentinel));

#define log_debug(...) log_kv(LOG_LVL_DEBUG, __VA_ARGS__, (char *)NULL)
#define log_info(...)  log_kv(LOG_LVL_INFO, __VA_ARGS__, (char *)NULL)
#define log_warn(...)  log_kv(LOG_LVL_WARN, __VA_ARGS__, (char *)NULL)
#define log_error(...) log_kv(LOG_LVL_ERROR, __VA_ARGS__, (char *)NULL)
