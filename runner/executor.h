#pragma once
/* What every executor shares: the kill reasons, the hooks that receive an attempt's progress,
 * its result, and the shape of an entry in exec.c's table of executors (shell there, http and
 * remote through http.h). Apart from exec.h so that an executor does not depend on the shell
 * executor's process machinery. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define EXEC_LOG_CHUNK_MAX (32 * 1024) /* raw bytes per log message */

enum exec_kill {
	EXEC_KILL_NONE,
	EXEC_KILL_CANCEL,   /* controller sent cancel: phase Cancelled, reason Cancelled */
	EXEC_KILL_SHUTDOWN, /* runner shutting down past its grace period: Failed, RunnerShutdown */
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
	const char *phase;  /* "Succeeded", "Failed", "Cancelled" (static) */
	const char *reason; /* "Succeeded", "ExitCode", "TimedOut", "Cancelled", "ExecFailed",
			      * "InvalidSpec", "RunnerShutdown", "Internal", "OOMKilled" (the task's memory
			      * cgroup's OOM killer acted), "CPULimitExceeded" (SIGXCPU); http and remote add
			      * "HTTPStatus", "SSRFBlocked", "ResponseTooLarge", "TooManyRedirects",
			      * "RequestFailed", "OAuth2Failed", "RemoteFailed", "InvalidResponse"
			      * (static) */
	char message[1024]; /* never contains env values or expanded arguments */
	int exit_code;      /* -1 when the process never ran (and for http and remote tasks) */
	int http_status;    /* http and remote: the final response's status code, 0 when none */
	int retryable;      /* remote: the service's verdict; -1 when it gave none */
	json_t *output;     /* new reference or NULL */
	char *log_tail;     /* valid UTF-8 without NUL, at most logTailBytes; owned */
	int truncated;      /* output past maxOutputBytes was discarded, or log chunks dropped */
	int64_t start_ms, end_ms; /* start 0 when never started */
	pid_t pid;                /* the task's main process (and its process group id); 0 when not
			      * forked */
};

struct exec_task;
struct capture;

/* One executor: runs a prepared attempt whose spec passed the common checks (not cancelled, not
 * past its deadline) to completion on the calling thread, sends output through cap and fills
 * res (phase, reason, message, exit code, output, start time). */
struct exec_ops {
	const char *name;
	void (*run)(struct exec_task *t, const struct exec_hooks *hooks, struct capture *cap,
		    struct exec_result *res);
};
