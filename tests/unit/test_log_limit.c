/* The rate limit on libwebsockets' own log lines: a burst passes, a flood is cut to the refill
 * rate, and the first line let through afterwards reports how many were dropped; log_lws, the
 * sink both binaries give libwebsockets, goes through such a limit. */
#include "log.h"
#include "tap.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

int main(void)
{
	struct log_limit l = LOG_LIMIT_INIT;
	unsigned long long suppressed = 99;
	int passed = 0;

	for (int i = 0; i < 125000; i++) {
		unsigned long long s = 0;
		if (log_limit_allow(&l, 20, 1, &s)) {
			passed++;
			if (passed == 1)
				suppressed = s;
		}
	}
	ok(passed >= 20 && passed <= 22, "125000 lines at once: the burst of 20 passes (%d)",
	   passed);
	is_int((long long)suppressed, 0, "the first line reports nothing suppressed");
	usleep(1100 * 1000);
	suppressed = 0;
	ok(log_limit_allow(&l, 20, 1, &suppressed), "a second later, one more line passes");
	ok(suppressed >= 124970, "... and says how many were dropped (%llu)", suppressed);
	suppressed = 7;
	(void)log_limit_allow(&l, 20, 1, &suppressed);

	{
		static char out[1 << 16];
		int p[2], saved = dup(2);
		ssize_t n;
		if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0 || saved < 0)
			return 1;
		dup2(p[1], 2);
		for (int i = 0; i < 100; i++)
			log_lws(1 /* LLL_ERR */, "accept failed\n");
		dup2(saved, 2);
		n = read(p[0], out, sizeof(out) - 1);
		out[n > 0 ? n : 0] = '\0';
		int lines = 0;
		for (char *q = out; (q = strchr(q, '\n')); q++)
			lines++;
		ok(lines >= 20 && lines <= 22, "log_lws: 100 lines at once, %d logged", lines);
		ok(strstr(out, "\"level\":\"error\"") && strstr(out, "\"msg\":\"libwebsockets\"") &&
			   strstr(out, "\"detail\":\"accept failed\"}"),
		   "... as JSON errors with the line (trailing newline stripped) as detail");
		close(p[0]);
		close(p[1]);
		close(saved);
	}
	return done_testing();
}
