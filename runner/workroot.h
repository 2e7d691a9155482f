#pragma once
/* The runner's own directory below --work-dir ("tasked-runner-XXXXXX", 0711): the per-attempt
 * work dirs are made in it. A "lock" file inside is flock()ed for the runner's lifetime, so a
 * later runner can tell a directory whose runner is gone (the lock is free, even after a
 * SIGKILL) from one in use, and removes it: a runner that was killed mid-task does not leave
 * its tasks' files behind for good (an emptyDir /tmp would fill up across restarts).
 *
 * The directory is made under a hidden name and renamed once locked, so a runner starting at
 * the same moment never sees it unlocked. Directories of another uid whose lock file cannot be
 * opened are left alone. */
#include <stddef.h>

/* Removes stale runner directories in work_dir, then makes and locks this runner's. On success
 * writes its path into out and the number of stale directories removed into *removed; 0 or a
 * negative errno. */
int wr_open(const char *work_dir, char *out, size_t outsz, int *removed);
/* Removes this runner's directory (at a clean exit; it should be empty by then). */
void wr_close(void);
