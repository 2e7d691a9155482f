#include "health.h"
#include "util.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int health_write(const char *path, int connected, int64_t unix_ms)
{
	char body[HEALTH_MAX];
	int n = snprintf(body, sizeof(body), "{\"connected\":%s,\"time\":%lld}\n",
			 connected ? "true" : "false", (long long)unix_ms);
	return util_write_file(path, body, (size_t)n, 0644);
}

int health_judge(const char *content, time_t mtime, time_t now, int want_ready, int max_age_s,
		 char *why, size_t whysz)
{
	json_t *o = content ? json_loads(content, JSON_REJECT_DUPLICATES, NULL) : NULL;
	json_t *conn = json_object_get(o, "connected");
	int bad = 0;

	if (!json_is_boolean(conn)) {
		snprintf(why, whysz,
			 "the health file is not the runner's {\"connected\":bool,\"time\":ms}");
		bad = 1;
	} else if (now - mtime > max_age_s) {
		snprintf(why, whysz,
			 "the runner has not updated its health file for %lld s (more than %d s): "
			 "its event loop is stuck",
			 (long long)(now - mtime), max_age_s);
		bad = 1;
	} else if (want_ready && !json_is_true(conn)) {
		snprintf(why, whysz, "the runner is not connected to the controller");
		bad = 1;
	} else {
		snprintf(why, whysz, "%s, updated %lld s ago",
			 json_is_true(conn) ? "connected" : "live, not connected",
			 (long long)(now - mtime));
	}
	json_decref(o);
	return bad;
}

int health_check(const char *path, int want_ready, int max_age_s, char *why, size_t whysz)
{
	struct stat st;
	char *content = NULL;
	int r;

	if (stat(path, &st) < 0) {
		r = -errno;
		snprintf(why, whysz, "%s: %s", path, strerror(-r));
		return r;
	}
	r = util_read_file(path, HEALTH_MAX, &content, NULL);
	if (r < 0) {
		snprintf(why, whysz, "%s: %s", path, strerror(-r));
		return r;
	}
	r = health_judge(content, st.st_mtime, time(NULL), want_ready, max_age_s, why, whysz);
	free(content);
	return r;
}
