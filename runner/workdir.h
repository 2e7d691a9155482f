#pragma once
/* The work dir of one shell attempt: "tasked-XXXXXX" below the work root, mode 0700, owned by
 * the task's uid when the runner is root, holding $TASKED_INPUT (written here, before the task
 * exists) and $TASKED_OUTPUT (read back through the dir's fd: no symlink, a regular file the
 * task owns, bounded), the workingDir below it made component by component without following
 * links, and the task's private /tmp (isolate.h). */
#include "isolate.h"

#include <jansson.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>

struct wd {
	int rootfd, dirfd;
	char name[32];       /* "tasked-XXXXXX" below the root */
	char path[PATH_MAX]; /* absolute */
	char cwd[PATH_MAX];  /* path + workingDir */
	char input[PATH_MAX + 32], output[PATH_MAX + 32];
	struct iso_task iso; /* the task's private /tmp (isolate.h) */
};

struct wd_spec {
	const char *root;        /* the work root (parent of the work dirs) */
	const char *working_dir; /* relative, checked; NULL for none */
	const char *input;       /* serialized JSON for $TASKED_INPUT */
	int drop_uid;            /* chown to EXEC_TASK_UID/GID */
	int64_t memory_bytes;    /* sizes the private /tmp (isolate.h) */
};

/* Set rootfd and dirfd to -1 first: wd_remove is then safe whatever wd_make did. Returns 0, or
 * a negative errno with the reason in err. */
int wd_make(struct wd *w, const struct wd_spec *spec, char *err, size_t errsz);
/* Makes a spare work dir below root for a later wd_make (at most a few are kept; a failure
 * only means none): call it off the dispatch path, after an attempt. */
void wd_spare_add(const char *root);
/* Removes the spare work dirs (at shutdown). */
void wd_spare_clear(void);
/* Removes the dir and everything in it (a failure is logged with task_uid). */
void wd_remove(struct wd *w, const char *task_uid);
/* Reads $TASKED_OUTPUT (at most EXEC_OUTPUT_MAX bytes of JSON): sets *ret, or writes why not
 * into msg. Returns 1 when the output nests deeper than PROTO_MAX_OUTPUT_DEPTH (the task fails),
 * else 0. */
int wd_read_output(const struct wd *w, int drop_uid, json_t **ret, char *msg, size_t msgsz);
