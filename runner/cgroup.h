#pragma once
/* A memory cgroup per shell task, where the runner has a writable one.
 *
 * Found at start: the runner's own cgroup v1 memory controller directory (from /proc/self/cgroup,
 * under /sys/fs/cgroup/memory), if the runner may create a child in it. The runner makes
 * "tasked-runner-PID" there, and for each task a child with memory.limit_in_bytes (and
 * memory.memsw.limit_in_bytes, so swap cannot extend it) at the task's memory limit; the task's
 * init joins it before forking the task, so the whole process tree counts against one limit and
 * the kernel's OOM killer acts at it. Afterwards the runner reads the cgroup's oom_kill count
 * (the task failed OOMKilled) and removes it.
 *
 * Not used (rlimits instead, see exec.c): cgroup v2 (a process may not sit in a cgroup whose
 * children have the memory controller enabled, so the runner would first have to move itself
 * into a leaf), and any cgroup the runner cannot write, which is the normal case in a pod. */
#include <limits.h>
#include <stdint.h>

struct cg_task {
	char dir[PATH_MAX];  /* empty: no cgroup */
	int procs_fd;        /* its cgroup.procs, for the init to join (-1: none) */
	int64_t limit;
};

/* Once at start. Returns 1 when tasks get memory cgroups, 0 when not. */
int cg_init(void);
int cg_available(void);
/* Removes the runner's own directory (at exit; fails harmlessly while tasks are still in it). */
void cg_cleanup(void);

/* Before the fork: a cgroup for one task (name: unique, e.g. its work dir's) limited to
 * memory_bytes. 0 or a negative errno (then c->dir is empty and rlimits apply). */
int cg_task_create(struct cg_task *c, const char *name, int64_t memory_bytes);
/* In the task's init: moves the calling process into the cgroup. Async-signal-safe. */
int cg_task_join(const struct cg_task *c);
/* After the task's processes are gone: how many times the OOM killer acted in it (0 when
 * unknown), and its peak usage in bytes (max_usage; may be NULL). */
int64_t cg_task_oom_kills(const struct cg_task *c, int64_t *max_usage);
void cg_task_remove(struct cg_task *c);
