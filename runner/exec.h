#pragma once
/* Runs one dispatched attempt. Shell tasks: a per-task init process (own session, child
 * subreaper, dies with the runner after killing the task tree) forks the task, which gets a
 * private work dir, a cleared environment, its own process group, rlimits, no_new_privs,
 * uid/gid 65532 when the runner is root, and the seccomp filter of sandbox.h, then execve (never
 * a shell). Output is captured through pipes with bounded memory; values marked secret are
 * masked. http and remote tasks go to http.h. See docs/runner.md and docs/security.md.
 *
 * Threading: exec_task_run() blocks and is meant to run on a thread of its own (the thread that
 * forks is the "parent" PR_SET_PDEATHSIG watches, so it stays alive until the child is reaped).
 * exec_task_kill() may be called from any thread while the task exists. */
#include "proto.h"
#include "util.h"

#include <jansson.h>
#include <stdint.h>
#include <sys/types.h>

#define EXEC_TASK_UID 65532
#define EXEC_TASK_GID 65532
#define EXEC_OUTPUT_MAX (32 * 1024)        /* bytes of $TASKED_OUTPUT read */
#define EXEC_LOG_CHUNK_MAX (32 * 1024)     /* raw bytes per log message */
#define EXEC_TASK_PATH "/usr/local/bin:/usr/bin:/bin"
#define EXEC_INPUT_NAME "input.json"
#define EXEC_OUTPUT_NAME "output.json"

enum exec_kill {
	EXEC_KILL_NONE,
	EXEC_KILL_CANCEL,   /* controller sent cancel: phase Cancelled, reason Cancelled */
	EXEC_KILL_SHUTDOWN, /* runner shutting down past its grace period: Failed, RunnerShutdown */
};

struct exec_opts {
	const char *work_root; /* parent of the per-attempt work dirs (borrowed) */
	int drop_uid;          /* run as EXEC_TASK_UID/GID (the runner is root) */
};

/* Receives the attempt's progress; called on the executing thread. */
struct exec_hooks {
	void (*started)(void *userdata, int64_t start_ms);
	/* One chunk of output (valid UTF-8, no NUL, at most EXEC_LOG_CHUNK_MAX bytes).
	 * Returns 0, or a negative errno when the chunk was dropped (the result is then marked
	 * truncated). */
	int (*log)(void *userdata, const char *stream, int64_t seq, const char *data, size_t len);
	void *userdata;
};

struct exec_result {
	const char *phase;   /* "Succeeded", "Failed", "Cancelled" (static) */
	const char *reason;  /* "Succeeded", "ExitCode", "TimedOut", "Cancelled", "ExecFailed",
			      * "InvalidSpec", "RunnerShutdown", "Internal", "OOMKilled" (the task's memory
			      * cgroup's OOM killer acted), "CPULimitExceeded" (SIGXCPU); http and remote add
			      * "HTTPStatus", "SSRFBlocked", "ResponseTooLarge", "TooManyRedirects",
			      * "RequestFailed", "OAuth2Failed", "RemoteFailed", "InvalidResponse"
			      * (static) */
	char message[1024];  /* never contains env values or expanded arguments */
	int exit_code;       /* -1 when the process never ran (and for http and remote tasks) */
	int http_status;     /* http and remote: the final response's status code, 0 when none */
	int retryable;       /* remote: the service's verdict; -1 when it gave none */
	json_t *output;      /* new reference or NULL */
	char *log_tail;      /* valid UTF-8 without NUL, at most logTailBytes; owned */
	int truncated;       /* output past maxOutputBytes was discarded, or log chunks dropped */
	int64_t start_ms, end_ms; /* start 0 when never started */
	pid_t pid;           /* the task's main process (and its process group id); 0 when not
			      * forked */
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

/* Reaps children that belong to no running attempt (processes that left their process group and
 * were reparented to the runner). Call periodically from one thread. */
void exec_reap_strays(void);

/* Appends bytes to out as valid UTF-8 without NUL: invalid bytes and NUL become U+FFFD. */
int exec_utf8_sanitize(const char *in, size_t len, struct buf *out);
