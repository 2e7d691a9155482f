/* The rate limit on libwebsockets' own log lines: a burst passes, a flood is cut to the refill
 * rate, and the first line let through afterwards reports how many were dropped. */
#include "log.h"
#include "tap.h"

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
	ok(passed >= 20 && passed <= 22, "125000 lines at once: the burst of 20 passes (%d)", passed);
	is_int((long long)suppressed, 0, "the first line reports nothing suppressed");
	usleep(1100 * 1000);
	suppressed = 0;
	ok(log_limit_allow(&l, 20, 1, &suppressed), "a second later, one more line passes");
	ok(suppressed >= 124970, "... and says how many were dropped (%llu)", suppressed);
	suppressed = 7;
	(void)log_limit_allow(&l, 20, 1, &suppressed);
	return done_testing();
}
