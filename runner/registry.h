#pragma once
/* What the runner holds and what it has to say, behind one mutex:
 *  - attempts keyed by (taskUid, attempt): running (with their exec task, for cancel) or finished
 *    with a result the controller has not acknowledged yet;
 *  - the outbox: encoded messages waiting for the WebSocket, in order. Log messages share a byte
 *    budget and are refused past it; other messages are never dropped while online.
 * Worker threads push; the lws thread pops. A wake callback (lws_cancel_service) is called after
 * every push so the service loop asks for a writable callback. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct exec_task;
struct reg;

enum reg_kind { REG_MSG_CONTROL, REG_MSG_LOG };

int reg_new(int capacity, size_t log_budget, struct reg **ret);
void reg_free(struct reg *r);
void reg_set_wake(struct reg *r, void (*wake)(void *userdata), void *userdata);

/* Claims a slot for a new attempt. t (borrowed, may be NULL) is what reg_kill() signals.
 * -EEXIST: the attempt is already held (running or unacknowledged); -EBUSY: no free slot;
 * -ESHUTDOWN: draining. */
int reg_begin(struct reg *r, const char *task_uid, int64_t attempt, struct exec_task *t);
/* The attempt finished: frees its slot, keeps msg (a `result`, steals it) until reg_ack, and
 * queues it when online. Works for attempts never begun (refusals): they are added, up to
 * PROTO_MAX_HELD entries in all (-ENOSPC past that, and the result is dropped). */
int reg_finish(struct reg *r, const char *task_uid, int64_t attempt, char *msg, size_t len);
/* Replaces the kept result of a finished attempt (steals msg; freed on error) and queues it when
 * online: for a result the controller refused. -ENOENT when not held; -EBUSY when running. */
int reg_replace(struct reg *r, const char *task_uid, int64_t attempt, char *msg, size_t len);
/* Forgets an acknowledged result. -ENOENT when unknown; -EBUSY when still running. */
int reg_ack(struct reg *r, const char *task_uid, int64_t attempt);
/* Kills a running attempt (exec_task_kill). -ENOENT when not running here; -EALREADY when it
 * has finished and its result is waiting for an ack. */
int reg_kill(struct reg *r, const char *task_uid, int64_t attempt, int why);
int reg_kill_all(struct reg *r, int why); /* returns how many were signalled */

void reg_set_draining(struct reg *r);
int reg_draining(struct reg *r);
int reg_running(struct reg *r);
int reg_unacked(struct reg *r);
int reg_capacity(struct reg *r);
/* New array [{taskUid, attempt}] of everything held, for hello. */
json_t *reg_held_json(struct reg *r);

/* The connection was welcomed: drops anything queued for an older connection, queues every
 * unacknowledged result, and accepts new messages. */
void reg_online(struct reg *r);
/* The connection is gone: drops the queue and refuses messages until reg_online. */
void reg_offline(struct reg *r);
/* Queues an encoded message (steals msg). -ENOTCONN offline, -ENOBUFS (log budget full); msg is
 * freed on error. */
int reg_push(struct reg *r, enum reg_kind kind, char *msg, size_t len);
/* Takes the next message (caller frees). Returns 1, or 0 when the queue is empty. */
int reg_pop(struct reg *r, char **msg, size_t *len);
int reg_has_pending(struct reg *r);
