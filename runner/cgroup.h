#pragma once
/* Cgroups per shell task, where the runner has writable ones (cgroup v1).
 *
 * Found at start: the runner's own cgroup v1 directories (from /proc/self/cgroup) of the memory
 * controller, under /sys/fs/cgroup/memory, and of cpuacct, under /sys/fs/cgroup/cpuacct, each
 * used if the runner may create a child in it. The runner makes "tasked-runner-PID" there, and
 * for each task a child; the task's init joins them before forking the task, so the whole
 * process tree is counted:
 *
 *  - memory: memory.limit_in_bytes (and memory.memsw.limit_in_bytes, so swap cannot extend it)
 *    at the task's memory limit; the kernel's OOM killer acts at it, and afterwards the runner
 *    reads the cgroup's oom_kill count (the task failed OOMKilled);
 *  - cpuacct: the CPU time of all the task's processes together, which the runner compares with
 *    the task's CPU seconds while it runs (CPULimitExceeded), instead of RLIMIT_CPU's per
 *    process count alone.
 *
 * Not used (rlimits alone, see exec.c): cgroup v2 (a process may not sit in a cgroup whose
 * children have controllers enabled, so the runner would first have to move itself into a
 * leaf), and any cgroup the runner cannot write, which is the normal case in a pod. Cgroups of
 * runners that are gone (SIGKILL) are removed by the next runner's cg_init. */
#include <limits.h>
#include <stdint.h>

struct cg_task {
	char mem_dir[PATH_MAX]; /* empty: no memory cgroup */
	char cpu_dir[PATH_MAX]; /* empty: no cpuacct cgroup */
	int mem_fd, cpu_fd;     /* their cgroup.procs, for the init to join (-1: none) */
	int64_t limit;          /* the memory limit */
};

/* Once at start. Returns 1 when tasks get a cgroup of either kind, 0 when not. */
int cg_init(void);
int cg_available(void);     /* memory cgroups */
int cg_cpu_available(void); /* cpuacct cgroups */
/* Removes the runner's own directories (at exit; fails harmlessly while tasks are in them). */
void cg_cleanup(void);

/* Before the fork: cgroups for one task (name: unique, e.g. its work dir's): memory limited to
 * memory_bytes (when > 0), and a cpuacct one when cpu is set. Call with c zeroed but fds -1.
 * 0, or the first negative errno (whatever could be made is kept; the rest falls back to
 * rlimits). */
int cg_task_create(struct cg_task *c, const char *name, int64_t memory_bytes, int cpu);
/* In the task's init: moves the calling process into them. Async-signal-safe. Defined in child.c. */
int cg_task_join(const struct cg_task *c);
/* CPU time of the task's processes so far, in nanoseconds; -1 without a cpuacct cgroup. */
int64_t cg_task_cpu_ns(const struct cg_task *c);
/* After the task's processes are gone: how many times the OOM killer acted in its memory
 * cgroup (0 when unknown), and its peak usage in bytes (max_usage; may be NULL). */
int64_t cg_task_oom_kills(const struct cg_task *c, int64_t *max_usage);
void cg_task_remove(struct cg_task *c);
