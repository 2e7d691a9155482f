#pragma once
/* Every shell task runs in a Landlock domain of its own (when the kernel has Landlock), which
 * gives two things the uid alone does not, since concurrent tasks share one uid (65532, or the
 * runner's own when it is not root):
 *
 *  - Landlock's ptrace scoping: a task cannot ptrace, read /proc/PID/environ or /proc/PID/mem
 *    of, any process outside its own domain: not another task (a sibling domain), not the
 *    runner or a task's init. With ABI 6 and later, signal scoping too: it cannot kill them.
 *  - The runner's token file, when the task's uid could otherwise read it, is out of reach:
 *    the ruleset handles only "read a file" and grants it beneath every directory entry except
 *    the ones on the token's real path, so the token (and anything created later in those
 *    few directories) cannot be opened for reading. Everything else is unchanged.
 *
 * The allowed entries are opened (O_PATH) once at start; each task gets a fresh ruleset built
 * from them plus its work directory, which the task's child applies right after
 * PR_SET_NO_NEW_PRIVS. Without Landlock (old kernel, LSM not enabled) tasks run as before and
 * the runner says so once at start. */
#include <sys/types.h>

/* Probes the kernel and prepares the rules. deny_file: the token file (NULL: nothing to hide);
 * it is hidden only when uid/gid (the tasks' credentials) could read it by its mode. Returns
 * the Landlock ABI version (> 0), 0 when the kernel has no Landlock, or a negative errno. */
int ll_init(const char *deny_file, uid_t task_uid, gid_t task_gid);
/* The ABI found by ll_init (0: none), and whether a file is hidden. */
int ll_abi(void);
int ll_hides_file(void);
/* Why the file could not be hidden although the tasks could read it (a negative errno, e.g.
 * -E2BIG past 1024 directory entries on its path), or 0. The domains are used all the same. */
int ll_hide_error(void);
/* A new ruleset for one task, as an O_CLOEXEC fd numbered 10 or more; work_dir and tmp_dir
 * (the task's private /tmp; either may be NULL) are granted besides the prepared rules. -EOPNOTSUPP when Landlock is not in use, else a negative errno. */
int ll_ruleset(const char *work_dir, const char *tmp_dir);
/* In the task's child, after PR_SET_NO_NEW_PRIVS: enters the domain. Async-signal-safe.
 * 0 or a negative errno. Defined in child.c. */
int ll_restrict(int ruleset_fd);
void ll_free(void);
