#pragma once
/* The per-task init and the task, from fork() to execve() (child.c). Everything here runs after
 * fork() in a copy of the multithreaded runner: async-signal-safe calls only, on a struct child
 * the runner fills before forking. The build checks child.c's undefined symbols against
 * runner/child.allow.
 *
 * The runner forks a small per-task init (bubblewrap's --die-with-parent done so that it also
 * reaches grandchildren), and the init starts the task (clone(CLONE_VM|CLONE_VFORK), as
 * posix_spawn does):
 *
 *   runner ── init (runner's uid; setsid; child subreaper; PDEATHSIG = SIGTERM)
 *               └─ task (own process group; 65532 when the runner is root; no_new_privs;
 *                        seccomp; execve)
 *
 * The init waits for the task. When the task's main process exits, when the runner asks
 * (SIGTERM: cancel, timeout, shutdown) or when the runner dies (even by SIGKILL: the parent-death
 * signal is catchable on purpose), it kills the task's process group and then every process
 * that still is its child — the ones that left the group with setsid or setpgid come back to it
 * as subreaper — until none is left, and reports the main process's wait status. Everything in
 * both children runs after fork() in a copy of a multithreaded process: async-signal-safe calls
 * on data prepared before the fork, only. */

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#define CHILD_TASK_UID 65532 /* exec.h's EXEC_TASK_UID/GID */
#define CHILD_TASK_GID 65532

struct iso_task;
struct cg_task;
struct sock_fprog;

enum child_step {
	STEP_PDEATHSIG,
	STEP_SETSID,
	STEP_RLIMIT,
	STEP_STDIO,
	STEP_FDS,
	STEP_SIGNALS,
	STEP_UID,
	STEP_NNP,
	STEP_CHDIR,
	STEP_EXEC,
	STEP_INIT,
	STEP_PGID,
	STEP_SECCOMP,
	STEP_LANDLOCK,
	STEP_ISOLATE,
	STEP_CGROUP,
};

/* task -> init: why the task did not exec (nothing on success: the pipe closes on execve) */
struct child_status {
	int32_t step, err;
};

/* init -> runner, in order: STARTED or FAILED, then EXIT once the task and its processes are
 * gone. Small fixed records: each write is atomic. */
enum { INIT_STARTED = 1, INIT_FAILED, INIT_EXIT };
struct child_msg {
	int32_t kind, pid, step, val; /* FAILED: val = errno; EXIT: val = the task's wait status */
};

struct child {
	const char *path;
	char **argv, **envp;
	const char *cwd;
	int null_r, out_w, err_w, status_w;
	int ll_fd;                  /* the task's Landlock ruleset (landlock.h), or -1 */
	const struct iso_task *iso; /* namespaces and mounts the init sets up (isolate.h) */
	const struct cg_task *cg;   /* the memory cgroup the init joins (cgroup.h) */
	pid_t parent;
	int drop_uid;
	int sigs_dfl; /* every disposition is SIG_DFL already (the spawner's) */
	int begun, begin_step,
		begin_err; /* child_init_begin ran ahead: its step and errno if it failed */
	unsigned max_fd;
	size_t nrl;
	struct {
		int res;
		struct rlimit lim;
	} rl[8];
	sigset_t empty, all, initsigs;
	const struct sock_fprog *filter;
};

/* The init's steps that do not depend on the task (signals blocked, PDEATHSIG towards parent,
 * setsid, subreaper; with ns the new mount and IPC namespaces); all: a full set. 0, or a negative errno with
 * *step set; exits if the parent is already gone. */
/* Every signal's disposition to SIG_DFL, glibc's internal ones included (async-signal-safe). */
void child_signals_default(void);
int child_init_begin(pid_t parent, int ns, const sigset_t *all, int *step);
/* The init: sets itself up, clones the task, reports on c->status_w and exits. Never returns. */
__attribute__((noreturn)) void child_init_run(const struct child *c);
