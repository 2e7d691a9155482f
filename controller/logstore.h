#pragma once
/* The controller's in-memory store of task output, fed by the chunks runners stream (taskctl's
 * on_log hook) and read by the API's .../logs endpoint.
 *
 * Bounded three ways: bytes per task (the oldest chunks of that task go first, so the store
 * keeps the end of a long log), bytes in total and number of tasks (whole logs are evicted,
 * least recently written first, finished tasks before running ones). Positions are byte
 * offsets in everything the store was given for a task, so a follower can resume and can tell
 * when what it has not read yet was dropped. Chunks an attempt sends twice (same seq, e.g.
 * after a runner reconnect) are stored once. Thread-safe.
 *
 * With a directory (--log-dir) every log is also kept in a file there (UID.log, format in
 * logfile.h), within the same bounds, and read back when the store is made, so logs survive a
 * restart of the controller; a log's file goes when its log goes (deleted task, eviction). */
#include "util.h"

#include <stddef.h>
#include <stdint.h>

struct logstore;

struct logstore_cfg {
	size_t max_per_task;      /* 0 = 1 MiB */
	size_t max_total;         /* 0 = 64 MiB */
	size_t max_tasks;         /* 0 = 10000 */
	const char *dir;          /* NULL/"" = memory only; else files here (reloaded now) */
	void (*notify)(void *ud); /* called after appends and finishes, outside the lock */
	void *ud;
};

/* A chunk as handed to readers (all borrowed, valid during the callback only). */
struct logstore_chunk {
	uint64_t off; /* offset of data[0] */
	int64_t attempt, seq;
	const char *stream; /* "stdout" / "stderr" */
	const char *data;   /* UTF-8, not NUL-terminated */
	size_t len;
};

/* Where a read ended. */
struct logstore_pos {
	int found;            /* the store knows the task */
	int finished;         /* its output is complete (the task reached a final phase) */
	uint64_t first;       /* offset of the oldest byte still held */
	uint64_t end;         /* offset after the newest byte */
	uint64_t next;        /* where the next read should start */
	uint64_t dropped;     /* bytes skipped because they were evicted before this read */
	int64_t last_attempt; /* the newest attempt seen */
};

/* NULL when out of memory or when cfg->dir cannot be opened (logged). A directory another
 * process holds (a lock file in it) is not used: the store then keeps logs in memory only. */
struct logstore *logstore_new(const struct logstore_cfg *cfg);
void logstore_free(struct logstore *ls);

/* Stores a chunk for task uid ("ns/name" key may be NULL when unknown). Returns 1 when
 * stored, 0 when it was a duplicate or older than the task's current attempt, or a negative
 * errno. A chunk larger than max_per_task keeps its end. */
int logstore_append(struct logstore *ls, const char *uid, const char *key, int64_t attempt,
		    int64_t seq, const char *stream, const char *data, size_t len);
/* Marks the output complete (a final phase was written); creates the entry when needed so a
 * follower of a task that printed nothing still ends. key may be NULL. */
void logstore_finish(struct logstore *ls, const char *uid, const char *key);
/* Forgets a task (it was deleted). */
void logstore_forget(struct logstore *ls, const char *uid);

/* Calls fn for each chunk at or after offset `from` (attempt 0 = every attempt), until
 * max_bytes of data were passed (at least one chunk is always passed when there is one).
 * Looks the task up by uid, or by key when uid is NULL or unknown. fn returns nonzero to stop
 * before that chunk is counted. Fills pos (found = 0 when the task is unknown). */
void logstore_read(struct logstore *ls, const char *uid, const char *key, int64_t attempt,
		   uint64_t from, size_t max_bytes,
		   int (*fn)(void *ud, const struct logstore_chunk *c), void *ud,
		   struct logstore_pos *pos);

/* Just the positions (found, finished, first, end, last_attempt), without walking the chunks. */
void logstore_bounds(struct logstore *ls, const char *uid, const char *key,
		     struct logstore_pos *pos);

/* Forgets every log whose task exists() says is gone (called once the Task cache has synced,
 * for logs reloaded from disk whose task was deleted while the controller was away). exists is
 * called without the store's lock. Returns how many went. */
size_t logstore_sweep(struct logstore *ls, int (*exists)(void *ud, const char *uid), void *ud);

struct logstore_stats {
	uint64_t tasks, bytes, chunks, evicted_tasks, dropped_bytes, disk_bytes, disk_errors;
};
void logstore_stats_get(struct logstore *ls, struct logstore_stats *ret);
