#pragma once
/* The attempt table: what this controller knows about each task's current attempt (dispatched,
 * started, finished, lost), keyed by task UID. Written from broker threads (runner reports) and
 * worker threads (dispatch, status written). Its lock is private and every function returns with
 * it released, having called nothing outside this file: callers act on copies (snapshots). */
#include "proto.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

enum att_state { ATT_DISPATCHED, ATT_STARTED, ATT_DONE, ATT_LOST };
enum att_written { W_NONE, W_RUNNING, W_TERMINAL };

struct attempt {
	struct attempt *next; /* table link; unused in snapshots */
	char uid[PROTO_MAX_ID + 1];
	char key[512];
	char runner[64];
	int64_t attempt;
	enum att_state state;
	enum att_written written;
	int64_t start_ms;
	int64_t deadline_ms;    /* wall clock; 0 = none */
	int64_t cancel_sent_ms; /* monotonic; 0 = not sent */
	json_t *result;         /* the runner's result message, once done */
	json_t *history; /* attemptHistory before this attempt, when the controller changed it */
	json_t *secrets; /* queue secret values sent with this attempt, to mask in status */
};

struct att_table;

struct att_table *att_table_new(void);
void att_table_free(struct att_table *tb);

/* Copies uid's record into *snap (taking references; release with att_snap_release): 1, or 0
 * with *snap zeroed when there is none. */
int att_snapshot(struct att_table *tb, const char *uid, struct attempt *snap);
void att_snap_release(struct attempt *snap);
/* As att_snapshot, and when terminal is set and the record needs nothing more (no record, the
 * terminal status already written, or the attempt never finished) the record is dropped in the
 * same step: returns 1 then. *have says whether a record was found. */
int att_snapshot_settled(struct att_table *tb, const char *uid, int terminal, struct attempt *snap,
			 int *have);
/* Removes the record with that task key, handing it over in *snap (owned): 1 if there was one. */
int att_take_by_key(struct att_table *tb, const char *key, struct attempt *snap);
int att_exists(struct att_table *tb, const char *uid);
/* The task key of uid's record into key: 1, or 0 with key "". */
int att_key(struct att_table *tb, const char *uid, char *key, size_t keysz);

/* A new record for a dispatch (replacing any older one): 0 or -ENOMEM. history and secrets are
 * referenced when given. */
int att_begin(struct att_table *tb, const char *uid, const char *key, int64_t attempt,
	      json_t *history, int64_t deadline_ms, json_t *secrets);
void att_set_runner(struct att_table *tb, const char *uid, const char *runner);
void att_drop(struct att_table *tb, const char *uid);
/* Drops uid's record only while it still is that attempt. */
void att_drop_attempt(struct att_table *tb, const char *uid, int64_t attempt);
void att_mark_written(struct att_table *tb, const char *uid, int64_t attempt, enum att_written w);

/* Runner reports. Each returns 1 with the task key in key when the record changed (the caller
 * then queues the key), else 0. */
int att_started(struct att_table *tb, const char *uid, int64_t attempt, int64_t start_ms, char *key,
		size_t keysz);
int att_lost(struct att_table *tb, const char *uid, int64_t attempt, char *key, size_t keysz);
/* A result: recorded (1, key set) unless it is stale; -ESTALE when nobody waits for it any more
 * (superseded, or already settled by the controller) so the runner may forget it. create_key:
 * make a record under that key when there is none (a result from before a restart). */
int att_result(struct att_table *tb, const char *uid, int64_t attempt, const char *runner,
	       json_t *msg, const char *create_key, char *key, size_t keysz);
/* A runner says it holds this attempt: 1 when the record shows it on that runner. With no record
 * and create_key set, one is made in state STARTED (the task's status shows it). *found: whether
 * a record existed. */
int att_held(struct att_table *tb, const char *uid, int64_t attempt, const char *runner,
	     const char *create_key, int *found);
/* The controller gives up on a running attempt with result res (timeout): 1 if it was not done. */
int att_fail(struct att_table *tb, const char *uid, int64_t attempt, json_t *res);
/* Records that a cancel went out at now_ms (monotonic), unless one did already: returns 1 when
 * the caller should send it; *sent_ms is when the first one went out. */
int att_cancel_once(struct att_table *tb, const char *uid, int64_t now_ms, int64_t *sent_ms);
/* Whether uid's attempt holds a queue slot (dispatched or running, not yet written terminal):
 * 1/0, or -ENOENT with no record. */
int att_holds_slot(struct att_table *tb, const char *uid);
