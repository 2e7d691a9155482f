#pragma once
/* The spawner: a small single-threaded process forked once at start (exec_init, before any
 * thread and before the runner's large allocations) that starts the per-task inits for the
 * runner. Forking the init from the spawner's small address space instead of from the runner's
 * (threads, lws, the registry) makes the per-task fork cheap.
 *
 * The runner sends a request (the struct child, its strings and its fds by SCM_RIGHTS) over a
 * socketpair. The spawner keeps one init cloned ahead of time with clone(CLONE_PARENT) (a warm
 * init: child_init_begin done) that reads the request itself, answers with its pid and runs the
 * task; the spawner then clones the next. The init is the runner's own child exactly as when
 * the runner forks it: the runner reaps it, watches its pidfd and
 * signals it, and its PDEATHSIG fires with the runner's main thread (the thread that forked the
 * spawner), i.e. with the runner. The spawner dies with the runner too (PDEATHSIG SIGKILL, and
 * EOF on its socket). When the spawner is gone or a request is too large, the runner forks the
 * init itself, as before. */

#include <sys/types.h>

struct child;

/* Once, single-threaded, after the seccomp filter is compiled (the spawner uses its copy); in
 * a process forked from the runner, starts that process's own spawner. 0, or a negative errno
 * (the runner then forks each init itself). */
int spw_start(void);
/* Starts the init for c through the spawner; c->parent must be the runner. Returns its pid, or
 * -ENOTCONN when the caller should fork the init itself (no spawner, a process forked from the
 * runner, a request over the size limit), or another negative errno (clone failed). Serialised
 * by the caller (exec's lock), which must register the pid before any reaping. */
pid_t spw_spawn(const struct child *c);
/* The spawner's pid while the runner uses it, else 0 (tests). */
pid_t spw_process(void);
/* Stops the spawner (tests). */
void spw_stop(void);
