#include "attempts.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct att_table {
	pthread_mutex_t lock; /* guards list and every record in it; no call out while held */
	struct attempt *list;
};

struct att_table *att_table_new(void)
{
	struct att_table *tb = calloc(1, sizeof(*tb));
	if (tb)
		pthread_mutex_init(&tb->lock, NULL);
	return tb;
}

static void rec_free(struct attempt *a)
{
	json_decref(a->result);
	json_decref(a->history);
	json_decref(a->secrets);
	free(a);
}

void att_table_free(struct att_table *tb)
{
	if (!tb)
		return;
	while (tb->list) {
		struct attempt *a = tb->list;
		tb->list = a->next;
		rec_free(a);
	}
	pthread_mutex_destroy(&tb->lock);
	free(tb);
}

/* Caller holds lock. */
static struct attempt *find(struct att_table *tb, const char *uid)
{
	for (struct attempt *a = tb->list; a; a = a->next)
		if (strcmp(a->uid, uid) == 0)
			return a;
	return NULL;
}

/* Caller holds lock. */
static struct attempt *add(struct att_table *tb, const char *uid, const char *key, int64_t attempt,
			   const char *runner)
{
	struct attempt *a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	snprintf(a->uid, sizeof(a->uid), "%s", uid);
	snprintf(a->key, sizeof(a->key), "%s", key);
	snprintf(a->runner, sizeof(a->runner), "%s", runner ? runner : "");
	a->attempt = attempt;
	a->next = tb->list;
	tb->list = a;
	return a;
}

/* Caller holds lock. Unlinks a without freeing it. */
static void unlink_rec(struct att_table *tb, struct attempt *a)
{
	for (struct attempt **pp = &tb->list; *pp; pp = &(*pp)->next)
		if (*pp == a) {
			*pp = a->next;
			a->next = NULL;
			return;
		}
}

static void copy_out(const struct attempt *a, struct attempt *snap)
{
	*snap = *a;
	snap->next = NULL;
	snap->result = json_incref(a->result);
	snap->history = json_incref(a->history);
	snap->secrets = json_incref(a->secrets);
}

void att_snap_release(struct attempt *snap)
{
	json_decref(snap->result);
	json_decref(snap->history);
	json_decref(snap->secrets);
	snap->result = snap->history = snap->secrets = NULL;
}

int att_snapshot(struct att_table *tb, const char *uid, struct attempt *snap)
{
	struct attempt *a;
	memset(snap, 0, sizeof(*snap));
	pthread_mutex_lock(&tb->lock);
	a = find(tb, uid);
	if (a)
		copy_out(a, snap);
	pthread_mutex_unlock(&tb->lock);
	return a != NULL;
}

int att_snapshot_settled(struct att_table *tb, const char *uid, int terminal, struct attempt *snap,
			 int *have)
{
	struct attempt *a;
	int dropped = 0;
	memset(snap, 0, sizeof(*snap));
	pthread_mutex_lock(&tb->lock);
	a = find(tb, uid);
	*have = a != NULL;
	if (a)
		copy_out(a, snap);
	if (terminal && (!a || a->written == W_TERMINAL || a->state != ATT_DONE)) {
		if (a) {
			unlink_rec(tb, a);
			rec_free(a);
		}
		dropped = 1;
	}
	pthread_mutex_unlock(&tb->lock);
	return dropped;
}

int att_take_by_key(struct att_table *tb, const char *key, struct attempt *snap)
{
	struct attempt *a;
	memset(snap, 0, sizeof(*snap));
	pthread_mutex_lock(&tb->lock);
	for (a = tb->list; a; a = a->next)
		if (strcmp(a->key, key) == 0)
			break;
	if (a) {
		unlink_rec(tb, a);
		*snap = *a; /* the references move with it */
		free(a);
	}
	pthread_mutex_unlock(&tb->lock);
	return a != NULL;
}

int att_exists(struct att_table *tb, const char *uid)
{
	int r;
	pthread_mutex_lock(&tb->lock);
	r = find(tb, uid) != NULL;
	pthread_mutex_unlock(&tb->lock);
	return r;
}

int att_key(struct att_table *tb, const char *uid, char *key, size_t keysz)
{
	struct attempt *a;
	key[0] = '\0';
	pthread_mutex_lock(&tb->lock);
	a = find(tb, uid);
	if (a)
		snprintf(key, keysz, "%s", a->key);
	pthread_mutex_unlock(&tb->lock);
	return a != NULL;
}

int att_begin(struct att_table *tb, const char *uid, const char *key, int64_t attempt,
	      json_t *history, int64_t deadline_ms, json_t *secrets)
{
	struct attempt *a;
	pthread_mutex_lock(&tb->lock);
	a = find(tb, uid);
	if (a) {
		unlink_rec(tb, a);
		rec_free(a);
	}
	a = add(tb, uid, key, attempt, NULL);
	if (a) {
		a->history = json_incref(history);
		a->deadline_ms = deadline_ms;
		a->secrets = json_incref(secrets);
	}
	pthread_mutex_unlock(&tb->lock);
	return a ? 0 : -ENOMEM;
}

void att_set_runner(struct att_table *tb, const char *uid, const char *runner)
{
	struct attempt *a;
	pthread_mutex_lock(&tb->lock);
	a = find(tb, uid);
	if (a)
		snprintf(a->runner, sizeof(a->runner), "%s", runner);
	pthread_mutex_unlock(&tb->lock);
}

static void drop_if(struct att_table *tb, const char *uid, int64_t attempt, int any)
{
	struct attempt *a;
	pthread_mutex_lock(&tb->lock);
	a = find(tb, uid);
	if (a && (any || a->attempt == attempt)) {
		unlink_rec(tb, a);
		rec_free(a);
	}
	pthread_mutex_unlock(&tb->lock);
}

void att_drop(struct att_table *tb, const char *uid) { drop_if(tb, uid, 0, 1); }
void att_drop_attempt(struct att_table *tb, const char *uid, int64_t attempt)
{
	drop_if(tb, uid, attempt, 0);
}

void att_mark_written(struct att_table *tb, const char *uid, int64_t attempt, enum att_written w)
{
	struct attempt *a;
	pthread_mutex_lock(&tb->lock);
	a = find(tb, uid);
	if (a && a->attempt == attempt && a->written < w)
		a->written = w;
	pthread_mutex_unlock(&tb->lock);
}

int att_started(struct att_table *tb, const char *uid, int64_t attempt, int64_t start_ms, char *key,
		size_t keysz)
{
	struct attempt *a;
	int changed = 0;
	key[0] = '\0';
	pthread_mutex_lock(&tb->lock);
	a = find(tb, uid);
	if (a && a->attempt == attempt && a->state == ATT_DISPATCHED) {
		a->state = ATT_STARTED;
		a->start_ms = start_ms;
		snprintf(key, keysz, "%s", a->key);
		changed = 1;
	}
	pthread_mutex_unlock(&tb->lock);
	return changed;
}

int att_lost(struct att_table *tb, const char *uid, int64_t attempt, char *key, size_t keysz)
{
	struct attempt *a;
	int changed = 0;
	key[0] = '\0';
	pthread_mutex_lock(&tb->lock);
	a = find(tb, uid);
	if (a && a->attempt == attempt && a->state != ATT_DONE) {
		a->state = ATT_LOST;
		snprintf(key, keysz, "%s", a->key);
		changed = 1;
	}
	pthread_mutex_unlock(&tb->lock);
	return changed;
}

int att_result(struct att_table *tb, const char *uid, int64_t attempt, const char *runner,
	       json_t *msg, const char *create_key, char *key, size_t keysz)
{
	struct attempt *a;
	int r = 0;
	key[0] = '\0';
	pthread_mutex_lock(&tb->lock);
	a = find(tb, uid);
	if (!a && create_key)
		a = add(tb, uid, create_key, attempt, runner);
	if (a && a->attempt == attempt && a->state != ATT_DONE) {
		a->state = ATT_DONE;
		snprintf(a->runner, sizeof(a->runner), "%s", runner);
		json_decref(a->result);
		a->result = json_incref(msg);
		snprintf(key, keysz, "%s", a->key);
		r = 1;
	} else if (!a || a->attempt != attempt || a->written == W_TERMINAL) {
		r = -ESTALE;
	}
	pthread_mutex_unlock(&tb->lock);
	return r;
}

int att_held(struct att_table *tb, const char *uid, int64_t attempt, const char *runner,
	     const char *create_key, int *found)
{
	struct attempt *a;
	int mine = 0;
	pthread_mutex_lock(&tb->lock);
	a = find(tb, uid);
	*found = a != NULL;
	if (a) {
		mine = a->attempt == attempt && strcmp(a->runner, runner) == 0;
	} else if (create_key) {
		a = add(tb, uid, create_key, attempt, runner);
		if (a)
			a->state = ATT_STARTED;
		mine = a != NULL;
	}
	pthread_mutex_unlock(&tb->lock);
	return mine;
}

int att_fail(struct att_table *tb, const char *uid, int64_t attempt, json_t *res)
{
	struct attempt *a;
	int r = 0;
	pthread_mutex_lock(&tb->lock);
	a = find(tb, uid);
	if (a && a->attempt == attempt && a->state != ATT_DONE) {
		a->state = ATT_DONE;
		json_decref(a->result);
		a->result = json_incref(res);
		r = 1;
	}
	pthread_mutex_unlock(&tb->lock);
	return r;
}

int att_cancel_once(struct att_table *tb, const char *uid, int64_t now_ms, int64_t *sent_ms)
{
	struct attempt *a;
	int send;
	pthread_mutex_lock(&tb->lock);
	a = find(tb, uid);
	send = a && !a->cancel_sent_ms;
	if (send)
		a->cancel_sent_ms = now_ms;
	*sent_ms = a ? a->cancel_sent_ms : now_ms;
	pthread_mutex_unlock(&tb->lock);
	return send;
}

int att_holds_slot(struct att_table *tb, const char *uid)
{
	struct attempt *a;
	int r;
	pthread_mutex_lock(&tb->lock);
	a = find(tb, uid);
	r = !a ? -ENOENT
	       : (a->state == ATT_DISPATCHED || a->state == ATT_STARTED) &&
			    a->written != W_TERMINAL;
	pthread_mutex_unlock(&tb->lock);
	return r;
}
