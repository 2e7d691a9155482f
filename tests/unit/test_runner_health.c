/* The runner's health file and its judge (runner/health.c): what the exec probes decide. */
#include "health.h"
#include "tap.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int main(void)
{
	char why[256], dir[] = "/tmp/tasked-health-XXXXXX", path[128], *p;
	const time_t now = 1000000;
	struct timespec ts[2];
	FILE *f;

	ok(health_judge("{\"connected\":true,\"time\":1}", now - 3, now, 1, 30, why, sizeof(why)) ==
		   0,
	   "fresh and connected: live and ready (%s)", why);
	ok(health_judge("{\"connected\":false,\"time\":1}", now - 3, now, 0, 30, why,
			sizeof(why)) == 0,
	   "fresh, not connected: live (%s)", why);
	ok(health_judge("{\"connected\":false,\"time\":1}", now - 3, now, 1, 30, why,
			sizeof(why)) == 1 &&
		   strstr(why, "not connected"),
	   "... but not ready (%s)", why);
	ok(health_judge("{\"connected\":true,\"time\":1}", now - 31, now, 0, 30, why,
			sizeof(why)) == 1 &&
		   strstr(why, "stuck"),
	   "older than the bound: a stuck loop, not live (%s)", why);
	ok(health_judge("{\"connected\":true,\"time\":1}", now - 31, now, 1, 30, why,
			sizeof(why)) == 1,
	   "... and not ready either");
	ok(health_judge("garbage", now, now, 0, 30, why, sizeof(why)) == 1,
	   "not JSON: unhealthy (%s)", why);
	ok(health_judge("{\"connected\":\"yes\"}", now, now, 0, 30, why, sizeof(why)) == 1,
	   "connected must be a bool");
	ok(health_judge(NULL, now, now, 0, 30, why, sizeof(why)) == 1, "no content: unhealthy");

	if (!mkdtemp(dir))
		return 1;
	snprintf(path, sizeof(path), "%s/health", dir);
	ok(health_check(path, 0, 30, why, sizeof(why)) < 0, "a missing file is an error (%s)", why);
	ok(health_write(path, 1, 1234) == 0, "health_write writes the file");
	f = fopen(path, "re");
	p = f ? fgets(why, sizeof(why), f) : NULL;
	if (f)
		fclose(f);
	ok(p && strcmp(why, "{\"connected\":true,\"time\":1234}\n") == 0, "as {connected, time}");
	ok(health_check(path, 1, 30, why, sizeof(why)) == 0, "just written: live and ready (%s)",
	   why);
	ok(health_write(path, 0, 1235) == 0 && health_check(path, 1, 30, why, sizeof(why)) == 1,
	   "rewritten as disconnected: not ready");
	clock_gettime(CLOCK_REALTIME, &ts[0]);
	ts[0].tv_sec -= 60;
	ts[1] = ts[0];
	utimensat(AT_FDCWD, path, ts, 0);
	ok(health_check(path, 0, 30, why, sizeof(why)) == 1, "a minute old: not live (%s)", why);
	{
		/* Written through a temporary and a rename: only the file itself is left. */
		DIR *d = opendir(dir);
		struct dirent *e;
		int n = 0;
		while (d && (e = readdir(d)))
			n += e->d_name[0] != '.';
		if (d)
			closedir(d);
		ok(access(path, F_OK) == 0 && unlink(path) == 0,
		   "the file is replaced in place (no temporary left)");
		ok(n == 1, "... no temporary beside it (%d entries)", n);
	}
	rmdir(dir);
	return done_testing();
}
