#pragma once
/* Runs one dispatched attempt. Shell tasks: a per-task init process (own session, child
 * subreaper, dies with the runner after killing the task tree) starts the task, which gets a
 * private work dir, a cleared environment, its own process group, rlimits, no_new_privs,
 * uid/gid 65532 when the runner is root, and the seccomp filter of sandbox.h, then execve (never
 * a shell). Output is captured through pipes with bounded memory; values marked secret are
 * masked. http and remote tasks go to http.h. See docs/runner.md and docs/security.md.
 *
 * Threading: exec_task_run() blocks and is meant to run on a thread of its own (the thread that
 * forks is the "parent" PR_SET_PDEATHSIG watches, so it stays alive until the child is reaped).
 * exec_task_kill() may be called from any thread while the task exists. */
#include "executor.h"
#include "proto.h"
#include "util.h"

#include <jansson.h>
#include <stdint.h>
#include <sys/types.h>

#define EXEC_TASK_UID 65532
#define EXEC_TASK_GID 65532
#define EXEC_OUTPUT_MAX (32 * 1024) /* bytes of $TASKED_OUTPUT read */
#define EXEC_TASK_PATH "/usr/local/bin:/usr/bin:/bin"
#define EXEC_INPUT_NAME "input.json"
#define EXEC_OUTPUT_NAME "output.json"

struct exec_opts {
	const char *work_root; /* parent of the per-attempt work dirs (borrowed) */
	int drop_uid;          /* run as EXEC_TASK_UID/GID (the runner is root) */
};

struct exec_task;

/* Once per process before any task: makes the process a child subreaper (orphaned grandchildren
 * come back to be reaped), makes sure fds 0-2 are open, records the runner's PATH for resolving
 * argv[0], and compiles the tasks' seccomp filter. */
int exec_init(void);

/* Prepares an attempt from a decoded dispatch (borrowed; everything needed is copied). A spec
 * problem is not an error here: it is recorded and exec_task_run() reports InvalidSpec. Returns
 * 0 or -ENOMEM. */
int exec_task_new(const struct proto_msg *dispatch, const struct exec_opts *opts,
		  struct exec_task **ret);
void exec_task_free(struct exec_task *t);
const char *exec_task_uid(const struct exec_task *t);
int64_t exec_task_attempt(const struct exec_task *t);

/* Runs the attempt to completion (blocking) and fills *ret (caller frees with
 * exec_result_free). Always produces a result; returns 0. */
int exec_task_run(struct exec_task *t, const struct exec_hooks *hooks, struct exec_result *ret);

/* Asks a running (or not yet started) attempt to stop: its process group gets SIGKILL.
 * Async with respect to exec_task_run; safe from any thread. The first reason wins. */
void exec_task_kill(struct exec_task *t, enum exec_kill why);

void exec_result_free(struct exec_result *r);
/* Returns a new `result` message for the attempt. */
json_t *exec_result_json(const char *task_uid, int64_t attempt, const struct exec_result *r);

/* After an attempt's result is out, in its thread: prepares what the next attempt like it
 * needs (a spare work dir), off the dispatch path. */
void exec_task_after(const struct exec_task *t);
/* At shutdown: removes what exec_task_after prepared. */
void exec_cleanup(void);
/* Reaps children that belong to no running attempt (processes that left their process group and
 * were reparented to the runner). Call periodically from one thread. */
void exec_reap_strays(void);
