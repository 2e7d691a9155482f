#pragma once
/* The Task phase vocabulary, shared by the controller and the kubectl plugin (the CRD's
 * status.phase enum; docs/api.md). One definition of which phases are final. */
#include <stddef.h>

/* Every phase, in lifecycle order. */
#define PHASE_NAMES                                                                           \
	{                                                                                     \
		"Pending", "Queued", "Running", "Succeeded", "Failed", "Skipped", "Cancelled" \
	}
/* The phases after which nothing runs again. */
#define PHASE_TERMINAL_NAMES                                  \
	{                                                     \
		"Succeeded", "Failed", "Skipped", "Cancelled" \
	}

/* 1 when phase is one of PHASE_NAMES. */
int phase_known(const char *phase);
/* 1 when phase is final (NULL and unknown phases are not). */
int phase_terminal(const char *phase);
/* 1 when a final phase counts as success: Succeeded, or Skipped (a `when` said no). */
int phase_ok(const char *phase);
