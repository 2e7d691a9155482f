/* The Task phase vocabulary (common/phase.c) that the controller and the kubectl plugin share. */
#include "phase.h"
#include "tap.h"

int main(void)
{
	static const char *const all[] = PHASE_NAMES;
	int terminal = 0;

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		ok(phase_known(all[i]), "%s is a phase", all[i]);
		terminal += phase_terminal(all[i]);
	}
	is_int(terminal, 4, "four of them are final");
	ok(!phase_terminal("Pending") && !phase_terminal("Queued") && !phase_terminal("Running"),
	   "Pending, Queued and Running are not final");
	ok(phase_terminal("Cancelled") && phase_terminal("Failed"),
	   "Cancelled and Failed are final");
	ok(phase_ok("Succeeded") && phase_ok("Skipped") && !phase_ok("Failed") &&
		   !phase_ok("Cancelled"),
	   "Succeeded and Skipped count as success");
	ok(!phase_known(NULL) && !phase_terminal(NULL) && !phase_ok(NULL), "NULL is no phase");
	ok(!phase_known("succeeded") && !phase_terminal("Succeeded ") && !phase_known(""),
	   "phases are exact, case-sensitive words");
	return done_testing();
}
