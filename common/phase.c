#include "phase.h"
#include "util.h"

#include <string.h>

static int phase_in(const char *phase, const char *const *set, size_t n)
{
	for (size_t i = 0; phase && i < n; i++)
		if (strcmp(phase, set[i]) == 0)
			return 1;
	return 0;
}

int phase_known(const char *phase)
{
	static const char *const all[] = PHASE_NAMES;
	return phase_in(phase, all, UTIL_ARRAY_SIZE(all));
}

int phase_terminal(const char *phase)
{
	static const char *const terminal[] = PHASE_TERMINAL_NAMES;
	return phase_in(phase, terminal, UTIL_ARRAY_SIZE(terminal));
}

int phase_ok(const char *phase)
{
	static const char *const good[] = { "Succeeded", "Skipped" };
	return phase_in(phase, good, UTIL_ARRAY_SIZE(good));
}
