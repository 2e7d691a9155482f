#pragma once
/* A private /tmp, /dev/shm and System V IPC for each shell task.
 *
 * With namespaces (the runner may create mount and IPC namespaces: it runs as root with
 * CAP_SYS_ADMIN and no seccomp or LSM rule forbids it; probed once at start), the task's init
 * enters new mount and IPC namespaces before forking the task: the directory W/.tmp (W = the
 * task's work dir) is bound on /tmp, W itself again at its own path inside it when W lies
 * below /tmp, and a fresh tmpfs (bounded by the task's memory limit) is mounted on /dev/shm.
 * SysV shared memory, semaphores and message queues and POSIX message queues live in the IPC
 * namespace; the kernel destroys all of them, and both tmpfs views, when the task's last process
 * is gone. Concurrent tasks see none of each other's.
 *
 * Without namespaces (a restricted pod: non-root, no CAP_SYS_ADMIN, RuntimeDefault seccomp),
 * tasks share /tmp, /dev/shm and IPC with each other and the runner. Each task still gets
 * TMPDIR=W/.tmp (removed with W). What tasks leave elsewhere is removed when the runner next
 * has no shell task running: SysV objects and top-level /tmp and /dev/shm entries owned by the
 * tasks' uid that did not exist when the runner last went from idle to busy. Only when the tasks
 * run as the dedicated uid 65532 (never a person's own uid, whose other programs use /dev/shm
 * too). Tasks running at the same time are not isolated from each other this way, and one
 * runner's cleanup can remove objects of another runner's tasks when two runners share a uid
 * and a /tmp, /dev/shm or IPC namespace (two runner containers in one pod). docs/runner.md. */
#include <limits.h>
#include <stdint.h>
#include <sys/types.h>

#define ISO_TMP_NAME ".tmp"                 /* the task's private /tmp, inside its work dir */
#define ISO_SHM_DEFAULT (INT64_C(64) << 20) /* /dev/shm size when the task has no memory limit */
#define ISO_MAX_SNAPSHOT \
	4096 /* entries remembered per kind; more: no cleanup for that busy period */

struct iso_task {
	int ns;              /* the init enters new mount and IPC namespaces */
	int rebind;          /* W lies below /tmp: bind it again at its path inside the new /tmp */
	char tmp[PATH_MAX];  /* W/.tmp (real path) */
	char work[PATH_MAX]; /* W (real path) */
	char shm_opts[64];   /* tmpfs options for /dev/shm */
};

/* Once at start, single-threaded: probes whether tasks can get namespaces (forks a child that
 * tries). task_uid: the uid tasks run as. Returns 1 with namespaces, 0 without. */
int iso_init(uid_t task_uid);
int iso_namespaces(void);
/* Tests: use namespaces or not regardless of the probe (on must only be set where it passed). */
void iso_force_namespaces(int on);
/* A file of the runner's in /tmp or /dev/shm that cleanup must keep (its name is a prefix:
 * atomic rewrites use NAME.tmpXXXXXX). */
void iso_protect(const char *path);

/* Before the fork: creates W/.tmp (mode 01777) and, with namespaces and W below /tmp, the
 * mount point for W inside it. dirfd: W, open. shm_bytes: /dev/shm's size (0: the default). */
int iso_prepare(struct iso_task *it, int dirfd, const char *work_path, int64_t shm_bytes, char *err,
		size_t errsz);
/* Sizes the private /dev/shm (shm_bytes ≤ 0: the default); wd_make calls it for a spare dir. */
void iso_set_shm(struct iso_task *it, int64_t shm_bytes);
/* In the task's init, after fork: enters the namespaces and mounts. Async-signal-safe; 0 or
 * a negative errno. Does nothing without namespaces. Defined in child.c. */
int iso_enter(const struct iso_task *it);

/* Shell tasks without namespaces bracket their run with these (begin before the fork, end after
 * the task's processes are gone); the last end of a busy period cleans up. No-ops with
 * namespaces. */
void iso_begin(void);
void iso_end(void);
/* What the last cleanup removed, and how many cleanups ran (tests). */
struct iso_stats {
	unsigned long shm, sem, msg, devshm, tmp, runs;
};
void iso_stats(struct iso_stats *out);
